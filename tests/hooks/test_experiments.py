"""hook.experiments: an experiment by name or ID, and a server that refuses the name filter."""

from __future__ import annotations

import uuid

import pytest

from airflow_provider_cml.exceptions import CmlConfigError, CmlLookupError
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.workloads.experiments import ExperimentRunRef


def _project(wb):
    return next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")


def test_by_name_by_id_and_a_run_read(wb):
    pid, name = _project(wb), f"hooked-{uuid.uuid4().hex[:8]}"
    run = wb.workbench.experiments.add_run(pid, name, status="FINISHED", metrics={"auc": 0.8})
    hook = CmlHook()
    assert hook.experiments.resolve_experiment(pid, name)["id"] == run.experiment.id
    assert hook.experiments.resolve_experiment(pid, run.experiment.id) == {
        "id": run.experiment.id,
        "project_id": pid,
    }
    got = hook.experiments.get_run(ExperimentRunRef(pid, run.experiment.id, run.id))
    assert got["status"] == "EXPERIMENT_RUN_FINISHED" and got["data"]["metrics"][0]["value"] == 0.8
    listed = hook.experiments.list_runs(pid, run.experiment.id, {"status": "EXPERIMENT_RUN_FINISHED"})
    assert [r["id"] for r in listed] == [run.id]


def test_a_refused_name_filter_falls_back_to_every_experiment(wb):
    pid, name = _project(wb), f"unfiltered-{uuid.uuid4().hex[:8]}"
    run = wb.workbench.experiments.add_run(pid, name)
    wb.fail_next("GET", rf"/api/v2/projects/{pid}/experiments", 400)  # a server without the "name" key
    assert CmlHook().experiments.resolve_experiment(pid, name)["id"] == run.experiment.id
    assert len(wb.requests("GET", rf"/api/v2/projects/{pid}/experiments")) == 2


def test_no_such_name_says_so_with_close_matches_and_an_empty_name_is_refused(wb):
    pid, name = _project(wb), f"closely-{uuid.uuid4().hex[:8]}"
    wb.workbench.experiments.add_run(pid, name)
    with pytest.raises(CmlLookupError, match="Close matches"):
        CmlHook().experiments.resolve_experiment(pid, name + "x")
    with pytest.raises(CmlConfigError, match="experiment name or ID"):
        CmlHook().experiments.resolve_experiment(pid, " ")


def ended_job_run(wb) -> dict:
    """A job run that has ended (the scriptless ``oom`` job: killed, as a training script may be)."""
    from airflow_provider_cml.exceptions import CmlJobRunError

    hook = CmlHook()
    started = hook.start_job_run("Analytics", "oom")
    ref = hook.resolve_run("Analytics", "oom", started["id"])
    with pytest.raises(CmlJobRunError):
        hook.wait_for_job_run(ref.project_id, ref.job_id, ref.run_id, poll_interval=0.05, timeout=20)
    return {**ref._asdict(), "run_url": "ignored"}  # as CmlRunJobOperator's XComs give it


def test_find_run_by_tags_picks_the_latest_started_and_none_is_none(wb):
    pid, name = _project(wb), f"tagged-{uuid.uuid4().hex[:8]}"
    first = wb.workbench.experiments.add_run(pid, name, tags={"airflow_run_id": "a", "try": "1"})
    later = wb.workbench.experiments.add_run(pid, name, tags={"airflow_run_id": "a", "try": "2"})
    wb.workbench.experiments.add_run(pid, name, tags={"airflow_run_id": "b"})
    with wb.workbench.lock:
        first.start_time = "2020-01-01T00:00:00Z"
    experiments = CmlHook().experiments
    assert experiments.find_run(pid, first.experiment.id, {"airflow_run_id": "a"})["id"] == later.id
    assert (
        experiments.find_run(pid, first.experiment.id, {"airflow_run_id": "a", "try": "1"})["id"] == first.id
    )
    assert experiments.find_run(pid, first.experiment.id, {"airflow_run_id": "c"}) is None


def test_wait_for_run_by_tag_and_a_run_its_ended_job_run_left_running(wb):
    from airflow_provider_cml.exceptions import CmlExperimentRunError

    pid, name = _project(wb), f"waited-{uuid.uuid4().hex[:8]}"
    done = wb.workbench.experiments.add_run(pid, name, status="FINISHED", tags={"airflow_run_id": "a"})
    experiments = CmlHook().experiments
    ref = ExperimentRunRef(pid, done.experiment.id, "")
    assert experiments.wait_for_run(ref, run_tag={"airflow_run_id": "a"}, timeout=10)["id"] == done.id
    left = wb.workbench.experiments.add_run(pid, name, status="RUNNING")
    job_run = ended_job_run(wb)
    with pytest.raises(CmlExperimentRunError, match=f"job run {job_run['run_id']} that logs it") as caught:
        experiments.wait_for_run(
            ref._replace(run_id=left.id), job_run=job_run, job_run_grace=0.1, poll_interval=0.05, timeout=20
        )
    assert "EXPERIMENT_RUN_RUNNING" in str(caught.value) and "mlflow.end_run" in str(caught.value)
