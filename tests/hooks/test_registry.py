"""hook.registry over real HTTP: a run is registered once per model name, whatever is retried or lost."""

from __future__ import annotations

import uuid

import pytest

from airflow_provider_cml.exceptions import (
    CmlApiError,
    CmlConfigError,
    CmlExperimentRunError,
    CmlModelRegistrationError,
)
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.testing.server import Faults
from airflow_provider_cml.workloads.experiments import ExperimentRunRef
from airflow_provider_cml.workloads.registry import (
    REGISTERED_MODEL_VERSION,
    RegisteredVersionRef,
    Registration,
)
from tests.conftest import MOCK_URL

REGISTER = r"/api/v2/registry/models"


def _run(wb, status="FINISHED") -> ExperimentRunRef:
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    run = wb.workbench.experiments.add_run(
        pid, f"reg-{uuid.uuid4().hex[:8]}", status=status, metrics={"auc": 0.8}
    )
    return ExperimentRunRef(pid, run.experiment.id, run.id)


def _name() -> str:
    return f"churn-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def quick(wb, monkeypatch):
    monkeypatch.setattr(wb.workbench.serving.registry_writes, "ready_after", 0.1)
    return wb


def test_a_run_is_registered_once_and_a_second_call_finds_that_version(quick):
    run, name, hook = _run(quick), _name(), CmlHook()
    version, created = hook.registry.register_model_version(
        run, Registration(name, notes="first", tags={"stage": "c"})
    )
    assert created and version["number"] == 1 and version["model_id"]
    again, created_again = hook.registry.register_model_version(run, name)
    assert not created_again and again["model_version_id"] == version["model_version_id"]
    assert len(quick.requests("POST", REGISTER)) == 1
    ready = hook.wait_for(
        REGISTERED_MODEL_VERSION,
        RegisteredVersionRef(version["model_id"], version["model_version_id"]),
        poll_interval=0.05,
        timeout=10,
    )
    assert ready["status"] == "READY"


def test_a_lost_answer_is_found_through_the_run_and_never_registers_twice(quick):
    run, name = _run(quick), _name()
    quick.faults = Faults(lost_response_rate=1.0, seed=5)  # the POST acts, then its answer is lost
    version, created = CmlHook().registry.register_model_version(run, name)
    quick.faults = None
    assert created and version["number"] == 1
    [post] = quick.requests("POST", REGISTER)
    assert post.fault == "lost_response"
    [model] = [m for m in quick.workbench.serving.registry.values() if m["name"] == name]
    assert [v["model_version_id"] for v in model["model_versions"]] == [version["model_version_id"]]


def test_a_lost_answer_is_found_through_the_registry_when_the_run_names_none(quick, monkeypatch):
    """A server whose run does not (yet) list its registrations: the registry's versions of the run."""
    run, name = _run(quick), _name()
    quick.faults = Faults(lost_response_rate=1.0, seed=5)
    real = quick.workbench.serving.registry_writes.register

    def register_without_the_run_entry(body):
        model = real(body)
        quick.workbench.experiments.runs[run.run_id].registered_model_metadata.clear()
        return model

    monkeypatch.setattr(quick.workbench.serving.registry_writes, "register", register_without_the_run_entry)
    version, created = CmlHook().registry.register_model_version(run, name)
    quick.faults = None
    assert created and len(quick.requests("POST", REGISTER)) == 1
    assert quick.requests("GET", r"/api/v2/registry/models")  # looked up by name in the registry
    [model] = [m for m in quick.workbench.serving.registry.values() if m["name"] == name]
    assert [v["model_version_id"] for v in model["model_versions"]] == [version["model_version_id"]]


def test_a_failed_version_is_not_reused_the_run_is_registered_again(quick, monkeypatch):
    run, name, hook = _run(quick), _name(), CmlHook()
    monkeypatch.setattr(
        quick.workbench.serving.registry_writes, "fail_with", "no MLmodel file under 'artifacts'"
    )
    failed, _ = hook.registry.register_model_version(run, name)
    ref = RegisteredVersionRef(failed["model_id"], failed["model_version_id"])
    with pytest.raises(CmlModelRegistrationError, match=r"no MLmodel file under 'artifacts'"):
        hook.wait_for(REGISTERED_MODEL_VERSION, ref, poll_interval=0.05, timeout=10)
    monkeypatch.setattr(quick.workbench.serving.registry_writes, "fail_with", "")
    second, created = hook.registry.register_model_version(run, name)
    assert created and second["number"] == 2 and second["model_version_id"] != failed["model_version_id"]


def test_a_run_not_finished_is_refused_unless_asked_and_an_unknown_run_is_a_404(quick):
    running, name, hook = _run(quick, status="RUNNING"), _name(), CmlHook()
    with pytest.raises(
        CmlExperimentRunError, match=r"EXPERIMENT_RUN_RUNNING, not EXPERIMENT_RUN_FINISHED.*Sensor"
    ):
        hook.registry.register_model_version(running, name)
    assert not quick.requests("POST", REGISTER)
    _, created = hook.registry.register_model_version(running, name, require_finished=False)
    assert created
    with pytest.raises(CmlApiError) as caught:
        hook.registry.register_model_version(running._replace(run_id="nope-nope-nope-nope"), name)
    assert caught.value.http_status == 404


# -- answers the workbench does not give: requests-mock ---------------------------------------------

RUN = ExperimentRunRef("pppp-pppp-pppp-pppp", "eeee-eeee-eeee-eeee", "rrrr-rrrr-rrrr-rrrr")


def _mocked(requests_mock, answer):
    base = f"{MOCK_URL}/api/v2"
    run_path = f"{base}/projects/{RUN.project_id}/experiments/{RUN.experiment_id}/runs/{RUN.run_id}"
    requests_mock.get(run_path, json={"id": RUN.run_id, "status": "EXPERIMENT_RUN_FINISHED", "data": {}})
    requests_mock.get(f"{base}/registry/models", json={"models": []})
    return requests_mock.post(f"{base}/registry/models", json=answer)


def test_an_answer_without_versions_is_completed_by_reading_the_model(mock_conn, clock, requests_mock):
    _mocked(requests_mock, {"model_id": "m1", "name": "churn"})
    requests_mock.get(
        f"{MOCK_URL}/api/v2/registry/models/m1",
        json={"model_id": "m1", "model_versions": [{"model_version_id": "v1", "number": 1}]},
    )
    version, created = CmlHook(mock_conn(), clock=clock).registry.register_model_version(RUN, "churn")
    assert created and (version["model_id"], version["model_version_id"]) == ("m1", "v1")


def test_versions_without_the_runs_metadata_pick_the_highest_number(mock_conn, clock, requests_mock):
    versions = [{"model_version_id": f"v{n}", "number": n} for n in (3, 7, 5)]
    _mocked(requests_mock, {"model_id": "m1", "model_versions": versions})
    version, _ = CmlHook(mock_conn(), clock=clock).registry.register_model_version(RUN, "churn")
    assert version["model_version_id"] == "v7"


def test_an_answer_with_no_version_at_all_is_an_error_naming_the_model(mock_conn, clock, requests_mock):
    _mocked(requests_mock, {"model_id": "m1", "model_versions": []})
    requests_mock.get(f"{MOCK_URL}/api/v2/registry/models/m1", json={"model_id": "m1"})
    with pytest.raises(CmlApiError, match=r"without a new model version \(model m1\)"):
        CmlHook(mock_conn(), clock=clock).registry.register_model_version(RUN, "churn")


def test_a_missing_model_name_is_refused_before_any_request(mock_conn, clock, requests_mock):
    with pytest.raises(CmlConfigError, match="model_name must be a non-empty string, not None"):
        CmlHook(mock_conn(), clock=clock).registry.register_model_version(RUN, None)  # type: ignore[arg-type]
    assert not requests_mock.request_history
