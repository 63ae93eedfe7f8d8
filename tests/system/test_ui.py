"""The connection type in the real Airflow 3 API server and UI: form metadata, Test button, a browser."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_cml._compat import AIRFLOW_V_3_0_PLUS
from tests.conftest import API_KEY

pytestmark = pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS, reason="/ui/connections/hook_meta and the React UI are Airflow 3 only"
)
# The README's pictures come from `CML_SCREENSHOT_DIR=docs make test`; otherwise a temporary folder.
SHOTS_ENV = "CML_SCREENSHOT_DIR"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api_server(airflow_db: str) -> Iterator[str]:
    """The real Airflow API server with this provider installed (simple auth: everyone is admin)."""
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    }
    log = Path(airflow_db) / "api-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the API server did not start: " + log.read_text()[-3000:]
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _token(url: str) -> str:
    return requests.get(f"{url}/auth/token", timeout=10).json()["access_token"]


def test_hook_meta_lists_the_cml_form(api_server):
    headers = {"Authorization": f"Bearer {_token(api_server)}"}  # Airflow 3.1 asks for it; 3.3 does not
    answer = requests.get(f"{api_server}/ui/connections/hook_meta", headers=headers, timeout=60)
    answer.raise_for_status()
    cml = next(item for item in answer.json() if item["connection_type"] == "cml")
    assert cml["hook_name"] == "Cloudera AI"
    fields = cml["standard_fields"]
    assert fields["host"]["title"] == "Workbench URL" and not fields["host"]["hidden"]
    assert fields["password"]["title"] == "API key" and not fields["password"]["hidden"]
    assert fields["login"]["hidden"] and fields["port"]["hidden"]
    extra = cml["extra_fields"]
    assert {"api_version", "verify_ssl", "ca_bundle", "timeout", "max_retries", "run_url_template"} <= set(
        extra
    )
    assert extra["api_version"]["schema"]["enum"] == ["v2", "v1"]
    assert extra["verify_ssl"]["value"] is True


def test_the_test_button_calls_test_connection(api_server, wb):
    headers = {"Authorization": f"Bearer {_token(api_server)}"}
    body = {"connection_id": "ui_probe", "conn_type": "cml", "host": wb.url, "password": API_KEY}
    ok = requests.post(f"{api_server}/api/v2/connections/test", json=body, headers=headers, timeout=60).json()
    assert ok["status"] is True and "Connected to Cloudera AI" in ok["message"]
    bad = requests.post(
        f"{api_server}/api/v2/connections/test",
        json={**body, "password": "wrong-key-000"},
        headers=headers,
        timeout=60,
    ).json()
    assert bad["status"] is False and "rejected the API key" in bad["message"]
    assert "wrong-key-000" not in bad["message"]


@pytest.mark.skipif(
    tuple(int(p) for p in __import__("airflow").__version__.split(".")[:2]) < (3, 2),
    reason="the browser walk-through follows the Airflow 3.2+ connection form",
)
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on this machine: `apt-get install chromium` (Debian's package; .ci/run installs it)",
)
def test_new_connection_form_in_a_real_browser(api_server, tmp_path):
    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    screenshots = (shots / "connection-form.png", shots / "connection-form-extra.png")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (the test extra has it)"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"{api_server}/connections", wait_until="networkidle", timeout=90_000)
            page.get_by_role("button", name="Add Connection").click()
            page.get_by_text("Connection Type", exact=False).first.wait_for(timeout=30_000)
            type_select = page.get_by_role("combobox").first
            type_select.click()
            page.keyboard.type("Cloudera AI")
            page.get_by_role("option", name="Cloudera AI").click()
            page.get_by_text("Workbench URL").first.wait_for(timeout=30_000)  # visible, not just present
            page.get_by_text("API key", exact=True).first.wait_for(timeout=30_000)
            assert page.get_by_text("Login", exact=True).count() == 0  # hidden for this type
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshots[0]))
            extra_section = page.get_by_text("Extra Fields", exact=False)
            if extra_section.count():
                extra_section.first.click()
            page.get_by_text("API version").first.wait_for(timeout=30_000)
            for label in ("API version", "CA bundle path", "Request timeout (s)"):
                assert page.get_by_text(label).count() >= 1, label
            page.screenshot(path=str(screenshots[1]))
        finally:
            browser.close()
    assert all(shot.stat().st_size > 10_000 for shot in screenshots)
