"""@task.cml inside real Airflow (dag.test on SQLite) against the local workbench."""

from __future__ import annotations

import pytest

from tests.conftest import seen_by
from tests.dags.cml_test_decorator_dags import DATES, SECRET
from tests.system.test_dags import RUNS_PATH, _states, _xcom


def _variables(wb, run_id: str) -> dict[str, str]:
    """The variables the run's script reported (REPORT_VARS), without what it always reports."""
    seen = seen_by(wb, run_id)
    return {k: v for k, v in seen.items() if k not in ("JOB_ARGUMENTS", "argv")}


pytestmark = pytest.mark.airflow_dag


def test_the_functions_overrides_win_over_the_decorators(wb, dagbag, capfd, caplog):
    dag_run = dagbag.get_dag("cml_test_decorator").test()
    assert "cannot be called outside" not in "".join(capfd.readouterr()) + caplog.text
    assert _states(dag_run) == {"pick": "success", "env_only": "success"}
    run_id = _xcom(dag_run, "pick", "return_value")
    assert run_id == _xcom(dag_run, "pick", "run_id")
    run = wb.workbench.runs[run_id]
    assert run.job.name == "report-env" and run.status == "ENGINE_SUCCEEDED"  # the returned job, not "train"
    day = dag_run.logical_date.strftime("%Y-%m-%d")
    assert _variables(wb, run_id) == {
        "STAGE": "returned",  # returned over the decorator's
        "KEEP": "cml_test_decorator",  # the decorator's, templated
        "RUN_DATE": day,  # a context key the function asked for
        "FROM_ARG": day.replace("-", ""),  # the function's argument, templated
    }
    plain = _xcom(dag_run, "env_only", "return_value")
    assert wb.workbench.runs[plain].job.name == "report-env"
    assert _variables(wb, plain) == {"ROWS": "10"}


def test_a_mapped_use_starts_one_run_per_instance(wb, dagbag):
    report_env = wb.workbench.job_by_name("Analytics", "report-env")
    before = len(wb.workbench.runs_of(report_env))
    dag_run = dagbag.get_dag("cml_test_decorator_mapped").test()
    tis = dag_run.get_task_instances()
    assert sorted(str(getattr(ti.state, "value", ti.state)) for ti in tis) == ["success"] * len(DATES)
    runs = wb.workbench.runs_of(report_env)[before:]
    assert [r.status for r in runs] == ["ENGINE_SUCCEEDED"] * len(DATES)
    assert sorted(seen_by(wb, r.id)["RUN_DATE"] for r in runs) == DATES


def test_a_bad_return_value_fails_clearly_and_starts_nothing(wb, dagbag, capfd, caplog):
    dag_run = dagbag.get_dag("cml_test_decorator_bad_return").test()
    assert _states(dag_run) == {"bad": "failed"}
    logged = "".join(capfd.readouterr()) + caplog.text
    assert "CmlTaskReturnError" in logged
    assert "The @task.cml function 'bad' returned a dict {'DB_PASSWORD': dict}" in logged
    assert "environment['DB_PASSWORD'] is a dict" in logged
    assert SECRET not in logged
    assert not wb.requests("POST", RUNS_PATH)


def test_deferrable(wb, dagbag, capfd, caplog):
    dag_run = dagbag.get_dag("cml_test_decorator_deferrable").test()
    assert _states(dag_run) == {"deferred": "success"}
    assert "[DAG TEST] running trigger in line" in "".join(capfd.readouterr()) + caplog.text
    run_id = _xcom(dag_run, "deferred", "run_id")
    assert _xcom(dag_run, "deferred", "return_value") == run_id
    run = wb.workbench.runs[run_id]
    assert run.status == "ENGINE_SUCCEEDED" and run.arguments == "--deferred"
    assert _variables(wb, run_id) == {"MODE": "deferred"}


def test_a_busy_job_waited_for_in_the_triggerer_then_the_functions_overrides_start(wb, dagbag, capfd, caplog):
    dag_run = dagbag.get_dag("cml_test_decorator_busy").test()
    assert _states(dag_run) == {"blocker": "success", "when_free": "success"}
    out, text = "".join(capfd.readouterr()), caplog.text
    assert "waiting for it to end before starting (if_active='wait')" in out + text
    # Called once before the deferral, once after it: the overrides never went through the triggerer.
    called = "The function's overrides: job unchanged, environment ['PICKED', 'SLEEP']"
    assert max(out.count(called), text.count(called)) == 2
    run = wb.workbench.runs[_xcom(dag_run, "when_free", "return_value")]
    assert run.environment["PICKED"] == "by-the-function" and run.environment["SLEEP"] == "0.1"
    assert run.status == "ENGINE_SUCCEEDED"
    blocker = wb.workbench.runs[_xcom(dag_run, "blocker", "run_id")]
    assert blocker.times["finished_at"] <= run.created_at
