"""Register a model version from a run, then deploy it, inside real Airflow (dag.test), sync and deferrable."""

from __future__ import annotations

import uuid

import pytest

from tests.system.test_dags import _states, _xcom

pytestmark = pytest.mark.airflow_dag


def _conf(wb, monkeypatch) -> dict:
    monkeypatch.setattr(wb.workbench.serving.registry_writes, "ready_after", 0.3)
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    tag = uuid.uuid4().hex[:8]
    run = wb.workbench.experiments.add_run(pid, f"dag-reg-{tag}", status="FINISHED", metrics={"auc": 0.91})
    return {
        "experiment": run.experiment.name,
        "run_id": run.id,
        "model_name": f"churn-{tag}",
        "served": f"s-{tag}",
    }


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_register_then_deploy_the_registered_version(wb, dagbag, monkeypatch, mode):
    conf = _conf(wb, monkeypatch)
    dag_run = dagbag.get_dag(f"cml_test_registry_{mode}").test(run_conf=conf)
    assert _states(dag_run) == {"register": "success", "deploy": "success", "smoke_test": "success"}
    registered = _xcom(dag_run, "register", "return_value")
    assert registered["status"] == "READY" and registered["run_id"] == conf["run_id"]
    version = wb.workbench.serving.registered_version(
        registered["registered_model_id"], registered["model_version_id"]
    )
    assert version["tags"] == [{"key": "airflow_run", "value": dag_run.run_id}]
    assert version["model_version_metadata"]["mlflow_metadata"]["metrics"][0]["value"] == 0.91
    reads = wb.requests("GET", rf"/api/v2/registry/models/[^/]+/versions/{registered['model_version_id']}")
    assert reads  # it waited on the version before it was ready
    build_id = _xcom(dag_run, "deploy", "build_id")
    assert wb.workbench.serving.builds[build_id].registered_model_version_id == registered["model_version_id"]
    assert len(wb.requests("POST", r"/api/v2/registry/models")) == 1


def test_a_failed_registration_fails_the_task_and_deploys_nothing(wb, dagbag, monkeypatch, capfd):
    conf = _conf(wb, monkeypatch)
    monkeypatch.setattr(wb.workbench.serving.registry_writes, "fail_with", "no MLmodel under 'artifacts'")
    dag_run = dagbag.get_dag("cml_test_registry_deferrable").test(run_conf=conf)
    assert _states(dag_run)["register"] == "failed" and _states(dag_run)["deploy"] != "success"
    assert "no MLmodel under 'artifacts'" in "".join(capfd.readouterr())
    assert not wb.requests("POST", r"/api/v2/projects/[^/]+/models/[^/]+/builds")
