"""The demo project's training job, run by the local workbench: it reaches the API as a workload
does (``CDSW_API_URL``, ``CDSW_APIV2_KEY``) and logs an experiment run the DAGs can find."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cml.testing import WorkbenchServer

PROJECT_DIR = Path(__file__).parents[2] / "example_dags" / "cml_demo_project"


@pytest.fixture
def cml_workbench_spec(tmp_path: Path) -> dict[str, Any]:
    spec = json.loads((PROJECT_DIR / "workbench.json").read_text())
    spec["projects"][0]["folder"] = str(PROJECT_DIR)
    spec["projects"][0]["env"]["DATA_DIR"] = str(tmp_path)
    return spec


def _train(hook: Any, noise: str, airflow_run_id: str) -> None:
    run = hook.start_job_run(
        "Demo Analytics", "train-churn", environment={"LABEL_NOISE": noise, "AIRFLOW_RUN_ID": airflow_run_id}
    )
    ended = hook.wait_for_job_run(run["project_id"], run["job_id"], run["id"], poll_interval=0.1, timeout=60)
    assert ended["status"] == "ENGINE_SUCCEEDED", ended


def test_the_training_job_logs_a_tagged_run_whose_auc_falls_with_label_noise(
    cml_connection_env: WorkbenchServer,
):
    from airflow_provider_cml.hooks.cml import CmlHook

    hook = CmlHook()
    _train(hook, "0.1", "scheduled__1")
    _train(hook, "0.35", "scheduled__2")

    project_id = str(hook.resolve_project("Demo Analytics")["id"])
    experiment = hook.experiments.resolve_experiment(project_id, "churn-training")
    runs = hook.experiments.list_runs(project_id, str(experiment["id"]))
    auc = {}
    for run in runs:
        assert run["status"] == "EXPERIMENT_RUN_FINISHED", run
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        auc[tags["airflow_run_id"]] = {m["key"]: m["value"] for m in run["data"]["metrics"]}["auc"]
    assert set(auc) == {"scheduled__1", "scheduled__2"}
    assert 0.5 < auc["scheduled__2"] < auc["scheduled__1"] <= 1.0, auc
    # The script reached the API with its owner's key, as a workload does: the journal shows its calls.
    logged = cml_connection_env.requests(
        "POST", r"/api/v2/projects/[^/]+/experiments/[^/]+/runs/[^/:]+:logbatch"
    )
    assert len(logged) == 2
