"""CmlRegisterModelOperator and a deploy from its XCom, over real HTTP against the workbench.

Sync, and deferrable (the trigger it defers to is run here in asyncio, then the task resumed with
its event). A retry of the task registers nothing new; a failed registration fails it with the
registry's words. Real Airflow (dag.test) is in tests/system/test_dags_registry.py.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from airflow_provider_cml.exceptions import (
    CmlConfigError,
    CmlExperimentRunError,
    CmlModelBuildError,
    CmlModelRegistrationError,
)
from airflow_provider_cml.operators.models import CmlDeployModelOperator
from airflow_provider_cml.operators.registry import RESULT_KEYS, CmlRegisterModelOperator
from airflow_provider_cml.testing.server import Faults
from airflow_provider_cml.workloads.models import CmlModelSpec, registered_spec
from tests.conftest import task_context

REGISTER = r"/api/v2/registry/models"


def _context(task_id="register", try_number=1) -> dict:
    return task_context("registry_dag", task_id, try_number, start_date=None)


@pytest.fixture
def trained(wb, monkeypatch):
    """A finished run in a new experiment: (experiment name, run ID)."""
    monkeypatch.setattr(wb.workbench.serving.registry_writes, "ready_after", 0.1)
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    run = wb.workbench.experiments.add_run(pid, f"op-{uuid.uuid4().hex[:8]}", status="FINISHED")
    return run.experiment.name, run.id


def _register(experiment, run_id, **options):
    options.setdefault("model_name", f"churn-{uuid.uuid4().hex[:6]}")
    return CmlRegisterModelOperator(
        task_id="register",
        project="Analytics",
        experiment=experiment,
        run_id=run_id,
        poll_interval=0.05,
        timeout=30,
        **options,
    )


def test_it_registers_waits_until_ready_and_a_retry_registers_nothing_new(wb, trained):
    operator = _register(*trained, tags={"stage": "candidate"})
    result = operator.execute(_context())
    assert tuple(result) == RESULT_KEYS
    assert result["status"] == "READY" and result["version_number"] == 1 and result["run_id"] == trained[1]
    again = _register(*trained, model_name=operator.model_name).execute(_context(try_number=2))
    assert again == result
    assert len(wb.requests("POST", REGISTER)) == 1


def test_a_lost_answer_registers_once_and_the_task_still_returns_the_ready_version(wb, trained):
    wb.faults = Faults(lost_response_rate=1.0, seed=7)  # the POST acts, then its answer is lost
    result = _register(*trained).execute(_context())
    wb.faults = None
    assert result["status"] == "READY"
    [post] = wb.requests("POST", REGISTER)
    assert post.fault == "lost_response"
    [model] = [m for m in wb.workbench.serving.registry.values() if m["name"] == result["model_name"]]
    assert [v["model_version_id"] for v in model["model_versions"]] == [result["model_version_id"]]


def test_without_waiting_it_returns_the_version_as_registered(wb, trained):
    result = _register(*trained, wait=False).execute(_context())
    assert result["status"] == "REGISTERING"


def test_a_failed_registration_fails_the_task_with_the_registrys_message(wb, trained, monkeypatch):
    monkeypatch.setattr(wb.workbench.serving.registry_writes, "fail_with", "no MLmodel under 'model'")
    with pytest.raises(CmlModelRegistrationError, match=r"FAILED.*no MLmodel under 'model'"):
        _register(*trained, model_path="model").execute(_context())


def test_a_running_run_is_refused_and_bad_arguments_are_config_errors(wb):
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    run = wb.workbench.experiments.add_run(pid, f"op-{uuid.uuid4().hex[:8]}")  # RUNNING
    with pytest.raises(CmlExperimentRunError, match="EXPERIMENT_RUN_RUNNING"):
        _register(run.experiment.name, run.id).execute(_context())
    with pytest.raises(CmlConfigError, match="visibility"):
        _register("e", "r", visibility="everyone")
    with pytest.raises(CmlConfigError, match="run_id must be the ID"):
        _register("e", " ").execute(_context())
    assert not wb.requests("POST", REGISTER)


def test_deferrable_it_defers_to_the_trigger_and_resumes_with_the_ready_version(wb, trained):
    try:  # Airflow 3.2+ moved it to the Task SDK
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]
    operator = _register(*trained, deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        operator.execute(_context())
    assert info.value.method_name == "execute_complete"

    async def first():
        async for event in info.value.trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    event = asyncio.run(asyncio.wait_for(first(), 30))
    result = operator.execute_complete(_context(), event)
    assert result["status"] == "READY" and result["model_name"] == operator.model_name
    assert result["registered_model_id"] and result["model_version_id"]


def test_deploy_from_the_register_operators_xcom(wb, trained):
    result = _register(*trained).execute(_context())
    name = f"served-{uuid.uuid4().hex[:6]}"
    deploy = CmlDeployModelOperator(
        task_id="deploy", project="Analytics", model=name, registered_version=result, poll_interval=0.05
    )
    ids = deploy.execute(_context("deploy"))
    serving = wb.workbench.serving
    assert serving.builds[ids["build_id"]].registered_model_version_id == result["model_version_id"]
    assert serving.models[ids["model_id"]].registered_model_id == result["registered_model_id"]
    again = CmlDeployModelOperator(
        task_id="deploy", project="Analytics", model=name, registered_version=result, poll_interval=0.05
    ).execute(_context("deploy", try_number=2))
    assert again == ids  # a retry builds and deploys nothing new
    assert len(wb.requests("POST", r"/api/v2/projects/[^/]+/models/[^/]+/builds")) == 1


def test_a_build_from_a_version_not_ready_fails_and_deploys_nothing(wb, trained):
    result = _register(*trained, wait=False).execute(_context())  # still REGISTERING
    wb.workbench.serving.registry_writes.pending[result["model_version_id"]] = (float("inf"), "")
    deploy = CmlDeployModelOperator(
        task_id="deploy", project="Analytics", model="early", registered_version=result, poll_interval=0.05
    )
    with pytest.raises(CmlModelBuildError, match="BUILD_FAILED"):
        deploy.execute(_context("deploy"))
    assert not wb.requests("POST", r"/api/v2/projects/[^/]+/models/[^/]+/builds/[^/]+/deployments")


def test_the_registered_version_sets_the_specs_ids_whatever_form_the_model_takes():
    version = {"registered_model_id": "m1", "model_version_id": "v1", "status": "READY"}
    for model in (
        "churn",
        {"name": "churn", "cpu": 1},
        CmlModelSpec(name="churn", registered_model_version_id="x"),
    ):
        spec = registered_spec(model, version)
        assert (spec.name, spec.registered_model_id, spec.registered_model_version_id) == (
            "churn",
            "m1",
            "v1",
        )
    with pytest.raises(CmlConfigError, match="file/function and a registered model version"):
        registered_spec({"name": "churn", "file": "p.py", "function": "f"}, version)
    with pytest.raises(CmlConfigError, match="registered_version must name"):
        registered_spec("churn", {"model_version_id": "v1"})
    with pytest.raises(CmlConfigError, match="only a name"):
        CmlDeployModelOperator(task_id="d", project="p", model="churn")._spec()
