"""The registry's kind, body and version picking (pure), and the workbench's POST /registry/models over HTTP."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from airflow_provider_cml.exceptions import CmlConfigError, CmlModelRegistrationError
from airflow_provider_cml.waiting.kinds import load_kind
from airflow_provider_cml.workloads.registry import (
    REGISTERED_MODEL_VERSION,
    RegisteredVersionRef,
    Registration,
    entries_of_run,
    newest_of_run,
    registered_version_path,
)
from tests.conftest import API_KEY

KIND = REGISTERED_MODEL_VERSION


# -- statuses: READY succeeds, a failure word or an error_message fails, anything else is progress --


@pytest.mark.parametrize("said", ["READY", "ready", "MODEL_VERSION_READY", "Ready"])
def test_ready_in_any_spelling_succeeds(said):
    assert KIND.is_success(KIND.status_of({"status": said}))


@pytest.mark.parametrize("said", ["FAILED", "failed", "UPLOAD_FAILED", "Registration failed", "ERROR"])
def test_a_failure_word_fails(said):
    status = KIND.status_of({"status": said})
    assert status == "FAILED" and KIND.is_terminal(status) and not KIND.is_success(status)


@pytest.mark.parametrize("said", ["REGISTERING", "PENDING", "importing", "", None, "SOMETHING_NEW"])
def test_any_other_status_is_progress_never_unclear(said):
    status = KIND.status_of({} if said is None else {"status": said})
    assert not KIND.is_terminal(status) and not KIND.is_unclear(status)


def test_an_error_message_fails_whatever_the_status_says():
    answer = {"status": "READY", "error_message": "no MLmodel under artifacts", "model_version_id": "v1"}
    assert KIND.status_of(answer) == "FAILED"
    with pytest.raises(
        CmlModelRegistrationError,
        match=r"no MLmodel under artifacts.*status 'READY'|status 'READY'.*no MLmodel",
    ):
        KIND.outcome(answer)


def test_the_kind_travels_to_a_triggerer_and_reads_one_version():
    assert load_kind(KIND.home) is KIND
    ref = RegisteredVersionRef("m1", "v1")
    assert KIND.read_path(ref) == registered_version_path(("m1", "v1")) == "/registry/models/m1/versions/v1"
    assert KIND.ref_from({"model_id": "m1", "model_version_id": "v1"}) == ref


# -- the body and picking the new version -----------------------------------------------------------


def test_the_body_is_checked_and_tags_are_key_value_pairs():
    registration = Registration(
        "churn", tags={"stage": "candidate"}, visibility="public", notes="n", description="d"
    )
    body = registration.body("p", "e", " r ")
    assert body == {
        "project_id": "p",
        "experiment_id": "e",
        "run_id": "r",
        "model_name": "churn",
        "model_path": "artifacts",
        "visibility": "PUBLIC",
        "description": "d",
        "notes": "n",
        "tags": [{"key": "stage", "value": "candidate"}],
    }
    with pytest.raises(CmlConfigError, match="model_name must be a non-empty string"):
        Registration(" ").body("p", "e", "r")
    with pytest.raises(CmlConfigError, match="PRIVATE' or 'PUBLIC"):
        Registration("m", visibility="shared").body("p", "e", "r")
    with pytest.raises(CmlConfigError, match="tags must map names to strings"):
        Registration("m", tags={"n": 1}).body("p", "e", "r")  # type: ignore[dict-item]


def _version(vid, number, run_id):
    return {
        "model_version_id": vid,
        "number": number,
        "model_version_metadata": {"mlflow_metadata": {"run_id": run_id}},
    }


def test_the_new_version_is_the_runs_highest_number_leaving_out_those_seen_before():
    versions = [_version("a", 1, "r"), _version("b", 3, "other"), _version("c", 2, "r")]
    assert newest_of_run(versions, "r")["model_version_id"] == "c"
    assert newest_of_run(versions, "r", besides={"c"})["model_version_id"] == "a"
    assert newest_of_run(versions, "nobody") is None
    run = {
        "data": {
            "registered_model_metadata": [
                {"model_name": "m", "version_number": 1},
                {"model_name": "x", "version_number": 5},
                {"model_name": "m", "version_number": 2},
            ]
        }
    }
    assert [e["version_number"] for e in entries_of_run(run, "m")] == [2, 1]
    assert entries_of_run({"data": {}}, "m") == []


# -- the workbench: POST /registry/models as the sheet has it ---------------------------------------


def _post(wb, body):
    return requests.post(
        f"{wb.url}/api/v2/registry/models",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )


def _finished_run(wb, metrics=None):
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    run = wb.workbench.experiments.add_run(
        pid, f"reg-{uuid.uuid4().hex[:8]}", status="FINISHED", metrics=metrics or {"auc": 0.9}
    )
    return pid, run


def test_the_workbench_registers_a_version_per_post_that_becomes_ready(wb, monkeypatch):
    monkeypatch.setattr(wb.workbench.serving.registry_writes, "ready_after", 0.2)
    pid, run = _finished_run(wb)
    name = f"wb-model-{uuid.uuid4().hex[:6]}"
    body = {
        "project_id": pid,
        "experiment_id": run.experiment.id,
        "run_id": run.id,
        "model_path": "artifacts",
        "model_name": name,
        "tags": [{"key": "k", "value": "v"}],
    }
    first = _post(wb, body).json()
    second = _post(wb, body).json()  # "if the model already exists a new version is added"
    assert first["model_id"] == second["model_id"] and second["count"] == 2
    newest = max(second["model_versions"], key=lambda v: v["number"])
    assert newest["status"] == "REGISTERING" and newest["number"] == 2
    metadata = newest["model_version_metadata"]
    assert metadata["project_id"] == pid
    assert metadata["mlflow_metadata"]["run_id"] == run.id
    assert metadata["mlflow_metadata"]["metrics"][0]["value"] == 0.9
    entries = run.to_api()["data"]["registered_model_metadata"]
    assert [e["version_number"] for e in entries] == [1, 2] and entries[0]["model_name"] == name
    time.sleep(0.25)
    path = f"{wb.url}/api/v2/registry/models/{first['model_id']}/versions/{newest['model_version_id']}"
    got = requests.get(path, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).json()
    assert got["status"] == "READY"


def test_the_workbench_refuses_a_missing_field_and_an_unknown_run(wb):
    pid, run = _finished_run(wb)
    body = {
        "project_id": pid,
        "experiment_id": run.experiment.id,
        "run_id": run.id,
        "model_path": "artifacts",
    }
    missing = _post(wb, body)
    assert missing.status_code == 400 and "model_name" in missing.json()["message"]
    unknown = _post(wb, {**body, "model_name": "m", "run_id": "nope-nope-nope-nope"})
    assert unknown.status_code == 404
    assert _post(wb, {**body, "model_name": "m", "experiment_id": "nope-nope-nope-nope"}).status_code == 404
