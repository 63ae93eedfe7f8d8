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
