"""Model deployments and applications inside real Airflow (dag.test) against the local workbench, sync and deferrable."""

from __future__ import annotations

import pytest

from tests.system.test_dags import _states, _xcom

pytestmark = pytest.mark.airflow_dag

MODES = ("sync", "deferrable")


@pytest.mark.parametrize("mode", MODES)
def test_retrain_deploy_smoke_test_restart_the_dashboard(wb, dagbag, mode):
    dag_run = dagbag.get_dag(f"cml_test_mlops_{mode}").test()
    assert _states(dag_run) == {
        "retrain": "success",
        "deploy": "success",
        "smoke_test": "success",
        "restart_dashboard": "success",
    }
    ids = _xcom(dag_run, "deploy", "return_value")
    serving = wb.workbench.serving
    assert serving.builds[ids["build_id"]].status == "built"
    deployment = serving.deployments[ids["deployment_id"]]
    assert deployment.status == "deployed"
    assert deployment.environment["MODEL_VERSION"] == dag_run.logical_date.strftime("%Y%m%d")  # templated
    assert _xcom(dag_run, "deploy", "deployment_id") == ids["deployment_id"]
    assert _xcom(dag_run, "smoke_test", "return_value")["doubled"] == 42
    app_id = _xcom(dag_run, "restart_dashboard", "return_value")
    assert serving.applications[app_id].status == "APPLICATION_RUNNING"
    from airflow_provider_cml._compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:  # the worker stores the extra links' values when the task ends
        assert _xcom(dag_run, "deploy", "_link_CmlModelLink") == f"{wb.url}/alice/analytics/models"
        assert _xcom(dag_run, "restart_dashboard", "_link_CmlApplicationLink").startswith(
            f"http://board-{mode}."
        )


@pytest.mark.parametrize("mode", MODES)
def test_a_build_failure_fails_the_task_and_deploys_nothing(wb, dagbag, capfd, mode):
    dag_run = dagbag.get_dag(f"cml_test_build_failure_{mode}").test()
    assert _states(dag_run) == {"deploy": "failed"}
    assert "BUILD_FAILED" in "".join(capfd.readouterr())
    assert not wb.requests("POST", r".*/deployments")


@pytest.mark.parametrize("mode", MODES)
def test_a_deployment_failure_fails_the_task(wb, dagbag, capfd, mode):
    dag_run = dagbag.get_dag(f"cml_test_deploy_failure_{mode}").test()
    assert _states(dag_run) == {"deploy": "failed"}
    assert "model deployment" in "".join(capfd.readouterr())
    deployment_id = _xcom(dag_run, "deploy", "deployment_id")
    assert wb.workbench.serving.deployments[deployment_id].status == "failed"


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_stops_the_deployment_the_task_created(wb, dagbag, mode):
    dag_run = dagbag.get_dag(f"cml_test_deploy_timeout_{mode}").test()
    assert _states(dag_run) == {"deploy": "failed"}
    deployment_id = _xcom(dag_run, "deploy", "deployment_id")
    assert wb.workbench.serving.deployments[deployment_id].status == "stopped"
    assert len(wb.requests("POST", r".*/deployments/[^/]+:stop")) == 1


@pytest.mark.parametrize("mode", MODES)
def test_airflows_retry_reuses_the_build_and_deploys_again(wb, dagbag, mode):
    dag_run = dagbag.get_dag(f"cml_test_deploy_retry_{mode}").test()
    assert _states(dag_run) == {"deploy": "success"}
    assert len(wb.requests("POST", r".*/models/[^/]+/builds")) == 1  # no second build
    deployments = wb.requests("POST", r".*/deployments")
    assert len(deployments) == 2  # try 1's failed to load; try 2 deployed the same build again
    statuses = sorted(
        d.status
        for d in wb.workbench.serving.deployments.values()
        if f"second-try-{mode}" in (d.build.model.name)
    )
    assert statuses == ["deployed", "failed"]


@pytest.mark.parametrize("mode", MODES)
def test_an_application_that_fails_to_start_fails_the_task(wb, dagbag, capfd, mode):
    dag_run = dagbag.get_dag(f"cml_test_app_failure_{mode}").test()
    assert _states(dag_run) == {"restart_dashboard": "failed"}
    assert "APPLICATION_FAILED" in "".join(capfd.readouterr())
