"""The provider as Airflow sees it: entry point, registry, connection form; the workbench's CLI and fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

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
        # tests/test_ui.py checks that path through the real server.
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
