"""Calling a deployed model through the command-line workbench and the connection line it prints.

The workbench runs as users run it (``python -m airflow_provider_cml.testing``); the tests take the
``export AIRFLOW_CONN_CML_DEFAULT=...`` line it prints as a user would paste it, deploy a model
through it and call it; then call a model service that is not there, with and without the
``model_service_url`` extra. Only the provider's own errors may come out, naming the URL called.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.operators.models import CmlDeployModelOperator
from tests.test_release import check_dist  # the release check reads the same line
from tests.workloads.test_serving import _context

TESTS = Path(__file__).parents[1]
KEY = "model-service-key-1"
#: Nothing listens on the discard port of this machine: the connection is refused.
NOWHERE = "http://127.0.0.1:9/model"


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """The ``(variable, value)`` of the connection line the command-line workbench prints."""
    folder = tmp_path_factory.mktemp("cli-workbench")
    (folder / "models").mkdir()
    shutil.copy(TESTS / "jobs" / "model_predict.py", folder / "models")
    spec = {
        "api_keys": {KEY: "alice"},
        "serving": {"step": 0.05},
        "projects": [{"name": "Serve", "owner": "alice", "folder": "models", "jobs": []}],
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_cml.testing", "--spec", str(folder / "spec.json")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        name, value = check_dist.printed_connection(process, within=30)
        yield name, value
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def _connect(monkeypatch, printed: tuple[str, str], **changes: Any) -> dict[str, Any]:
    name, value = printed
    conn = json.loads(value)
    conn.update(changes)
    monkeypatch.setenv(name, json.dumps(conn))
    return conn


@pytest.fixture(scope="module")
def deployed(printed) -> dict[str, Any]:
    """A model deployed through the printed connection, as the deploy operator does it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _connect(monkeypatch, printed)
        model = {"name": "doubler", "file": "model_predict.py", "function": "predict"}
        operator = CmlDeployModelOperator(task_id="deploy", project="Serve", model=model, poll_interval=0.05)
        return operator.execute(_context("deploy"))


def test_the_printed_line_is_a_complete_connection(printed):
    name, value = printed
    conn = json.loads(value)
    assert name == "AIRFLOW_CONN_CML_DEFAULT" and conn["conn_type"] == "cml" and conn["password"] == KEY
    assert conn["extra"]["model_service_url"] == f"{conn['host']}/model"


def test_a_model_is_called_through_the_printed_connection(monkeypatch, printed, deployed):
    _connect(monkeypatch, printed)
    answer = CmlHook().models.call_model(deployed["project_id"], deployed["model_id"], {"x": 21})
    assert answer == {"doubled": 42, "version": ""}


def test_an_unreachable_model_service_is_a_provider_error_naming_it(monkeypatch, printed, deployed):
    conn = _connect(monkeypatch, printed)
    _connect(monkeypatch, printed, extra={**conn["extra"], "model_service_url": NOWHERE, "max_retries": 3})
    with pytest.raises(CmlApiError) as caught:
        CmlHook().models.call_model(deployed["project_id"], deployed["model_id"], {"x": 1})
    message = str(caught.value)
    assert type(caught.value) is CmlApiError and caught.value.http_status is None
    assert f"model service {NOWHERE} got no usable answer" in message
    assert "No answer from the model service at http://127.0.0.1:9" in message
    assert "set the connection extra 'model_service_url'" in message and conn["host"] not in message


def test_the_readme_connection_without_model_service_url_says_to_set_it(monkeypatch, printed, deployed):
    conn = _connect(monkeypatch, printed)
    _connect(monkeypatch, printed, extra={})  # host and key only, as the README's table had it
    with pytest.raises(CmlConfigError) as caught:
        CmlHook().models.call_model(deployed["project_id"], deployed["model_id"], {"x": 1})
    host = conn["host"].partition("://")[2].split(":")[0]
    assert f"host name 'modelservice.{host}' did not resolve" in str(caught.value)
    assert "connection extra 'model_service_url'" in str(caught.value)
