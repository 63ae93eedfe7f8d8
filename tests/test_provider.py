"""The provider as Airflow sees it: entry point, registry, connection form; the workbench's CLI and fixtures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from airflow_provider_cml.get_provider_info import get_provider_info

pytest_plugins = ["pytester"]


def test_provider_info_is_valid_against_airflows_schema():
    import airflow
    import jsonschema

    schema_path = Path(airflow.__file__).parent / "provider_info.schema.json"
    if not schema_path.exists():
        pytest.skip(f"this Airflow ships no {schema_path.name}")
    jsonschema.validate(get_provider_info(), json.loads(schema_path.read_text()))


def test_providers_manager_finds_the_hook_and_the_form_fields():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-cml" in manager.providers
    hook_info = manager.hooks["cml"]
    assert hook_info is not None and hook_info.hook_name == "Cloudera AI"
    assert hook_info.connection_id_attribute_name == "cml_conn_id"
    widgets = manager.connection_form_widgets
    import importlib.util

    if not widgets and importlib.util.find_spec("wtforms") is None:
        # Airflow 3.0/3.1 read only the hook's wtforms widgets and mock wtforms in the API server:
        # tests/system/test_ui.py checks that path through the real server.
        pytest.skip("this Airflow builds the form from wtforms widgets, and wtforms is not installed")
    assert {"extra__cml__api_version", "extra__cml__ca_bundle", "extra__cml__verify_ssl"} <= set(widgets)
    behaviour = manager.field_behaviours["cml"]
    assert behaviour["relabeling"] == {"host": "Workbench URL", "password": "API key"}
    assert set(behaviour["hidden_fields"]) == {"schema", "login", "port"}


def test_wtforms_widgets_come_from_the_same_field_list():
    pytest.importorskip("wtforms")
    pytest.importorskip("flask_appbuilder")
    from airflow_provider_cml.connection_fields import CONN_FIELDS
    from airflow_provider_cml.hooks.cml import CmlHook

    assert set(CmlHook.get_connection_form_widgets()) == {f.name for f in CONN_FIELDS}


def test_provider_conn_fields_match_the_field_list():
    from airflow_provider_cml.connection_fields import CONN_FIELDS

    conn = get_provider_info()["connection-types"][0]
    assert list(conn["conn-fields"]) == [f.name for f in CONN_FIELDS]
    assert conn["conn-fields"]["api_version"]["schema"]["enum"] == ["v2", "v1"]


def _airflows_masker() -> Any:
    try:  # Airflow 3: what a task masks a connection's extra with
        from airflow.sdk._shared.secrets_masker import SecretsMasker
    except ImportError:  # Airflow 2
        from airflow.utils.log.secrets_masker import SecretsMasker  # type: ignore[no-redef]
    return SecretsMasker


def test_no_form_default_is_a_value_airflow_warns_it_cannot_mask(monkeypatch):
    from airflow_provider_cml.client.config import build_client_config
    from airflow_provider_cml.connection_fields import CONN_FIELDS, MIN_MASKED_LENGTH, wtforms_widgets

    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    # Airflow 3.3's form saves every field's value, untouched ones as their defaults, in the extra.
    extra = {name: field["schema"].get("default") for name, field in fields.items()}
    short = [
        name for name, value in extra.items() if isinstance(value, str) and len(value) < MIN_MASKED_LENGTH
    ]
    assert short == []
    assert [
        f.name for f in CONN_FIELDS if isinstance(f.default, str) and len(f.default) < MIN_MASKED_LENGTH
    ] == []
    if importlib.util.find_spec("wtforms") and importlib.util.find_spec(
        "flask_appbuilder"
    ):  # Airflow 2/3.1 forms
        defaults = {name: field.kwargs.get("default") for name, field in wtforms_widgets().items()}
        assert [n for n, v in defaults.items() if isinstance(v, str) and len(v) < MIN_MASKED_LENGTH] == []
    # What Airflow's own masker says when a task reads that extra: nothing.
    masker = _airflows_masker()
    warned: list[str] = []
    monkeypatch.setattr(masker, "_has_warned_short_secret", False, raising=False)
    monkeypatch.setattr(
        sys.modules[masker.__module__],
        "log",
        SimpleNamespace(warning=lambda msg, *a, **k: warned.append(msg % a)),
    )
    masker().add_mask(extra, None)
    assert not any("too short" in line for line in warned), warned
    # ... and the empty API version it leaves is v2.
    config = build_client_config(host="ml.example.com", password="k" * 10, extra=extra, environ={})
    assert config.api_version == "v2"


def test_command_line_workbench(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"api_keys": ["cli-key-123"], "projects": [{"name": "p", "owner": "o"}]}))
    url_file = tmp_path / "url"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_cml.testing",
            "--spec",
            str(spec),
            "--url-file",
            str(url_file),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not url_file.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        answer = requests.get(
            f"{url_file.read_text()}/api/v2/projects",
            headers={"Authorization": "Bearer cli-key-123"},
            timeout=5,
        )
        assert [p["name"] for p in answer.json()["projects"]] == ["p"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_pytest_fixtures_for_users(pytester):
    pytester.makeconftest(
        """
import pytest

@pytest.fixture
def cml_workbench_spec(tmp_path):
    (tmp_path / "hello.py").write_text("print('hi')")
    return {"api_keys": ["user-key-123"], "projects": [
        {"name": "mine", "owner": "me", "jobs": [{"name": "hello", "script": "hello.py"}]}]}
"""
    )
    pytester.makepyfile(
        """
def test_runs_my_job(cml_connection_env):
    from airflow_provider_cml.hooks.cml import CmlHook
    hook = CmlHook()
    run = hook.start_job_run("mine", "hello")
    assert hook.wait_for_job_run("mine", "hello", run["id"], poll_interval=0.1)["status"] == "ENGINE_SUCCEEDED"
    assert cml_connection_env.workbench.run_output(run["id"]).strip() == "hi"
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
