"""DAGs the DAG-level tests run with dag.test(); the workbench URL comes from AIRFLOW_CONN_CML_DEFAULT."""

from __future__ import annotations

from datetime import datetime, timedelta

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.sensors.cml import CmlJobRunSensor

ARGS = {"start_date": datetime(2024, 1, 1), "schedule": None, "catchup": False}
RUN_ID_FROM_CONF = "{{ dag_run.conf['run_id'] }}"
#: Every task of these DAGs runs a job of the workbench's "Analytics" project and checks it often.
ANALYTICS = {"project": "Analytics", "poll_interval": 0.2}


def _pushed_by(task_id: str) -> str:
    """The run that task ``task_id`` started, as it pushed it to XCom."""
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}', key='run_id') }}}}"


def _sensor(task_id: str, job: str, run_id: str, **options: object) -> CmlJobRunSensor:
    """A sensor on run ``run_id`` (templated) of ``job``."""
    return CmlJobRunSensor(
        task_id=task_id, project="Analytics", job=job, run_id=run_id, poke_interval=0.2, **options
    )


def _too_slow(**limits: object) -> CmlRunJobOperator:
    """A sleeper run that outlives the task's limit; stopped, it writes the file the run's conf names."""
    marker = {"STOP_MARKER": "{{ dag_run.conf['marker'] }}"}
    return CmlRunJobOperator(task_id="too_slow", job="sleeper", environment=marker, **ANALYTICS, **limits)


with DAG("cml_test_success", **ARGS):
    start = CmlRunJobOperator(
        task_id="start",
        project="Analytics",
        job="report-env",
        environment={"REPORT_VARS": "RUN_DATE,DAG_ID", "RUN_DATE": "{{ ds }}", "DAG_ID": "{{ dag.dag_id }}"},
        wait_for_completion=False,
    )
    wait = _sensor("wait", "report-env", _pushed_by("start"), timeout=60)
    again = CmlRunJobOperator(task_id="run_and_wait", job="train", **ANALYTICS)
    start >> wait >> again

with DAG("cml_test_sensor_failure", **ARGS):
    for _soft_fail in (False, True):
        _sensor("sense_soft" if _soft_fail else "sense", "fail", RUN_ID_FROM_CONF, soft_fail=_soft_fail)

with DAG("cml_test_v1", **ARGS):
    _v1 = {"cml_conn_id": "cml_legacy", "project": "alice/analytics", "job": "{{ dag_run.conf['v1_job'] }}"}
    CmlRunJobOperator(
        task_id="v1_start",
        environment={"REPORT_VARS": "FROM_V1", "FROM_V1": "yes"},
        wait_for_completion=False,
        **_v1,
    )
    CmlRunJobOperator(task_id="v1_wait_refused", **_v1)

with DAG("cml_test_deferrable", **ARGS):
    waited = CmlRunJobOperator(task_id="deferred_run", job="slow", deferrable=True, **ANALYTICS)
    started = CmlRunJobOperator(
        task_id="start_only", project="Analytics", job="train", wait_for_completion=False, deferrable=True
    )
    sensed = _sensor("deferred_sensor", "train", _pushed_by("start_only"), timeout=60, deferrable=True)
    waited >> started >> sensed

# The same scenarios waited for in the worker (sync) and in the triggerer (deferrable).
for _deferrable in (False, True):
    _mode = "deferrable" if _deferrable else "sync"
    _prefix = "cml_test_deferrable_" if _deferrable else "cml_test_"

    with DAG(f"{_prefix}failure", **ARGS):
        CmlRunJobOperator(task_id="fail", job="fail", deferrable=_deferrable, **ANALYTICS)

    with DAG(f"{_prefix}timeout", **ARGS):
        _too_slow(timeout=1.5, deferrable=_deferrable)

    with DAG(f"cml_test_retry_{_mode}", **ARGS):
        CmlRunJobOperator(
            task_id="flaky_wait",
            job="sleeper",
            environment={"SLEEP": "2"},
            deferrable=_deferrable,
            retries=1,
            retry_delay=0,
            **ANALYTICS,
        )

    # What the real API does that a guess-built client missed: OOM kills, a run the platform lost
    # track of, Job Retry, someone else's public project.
    with DAG(f"cml_test_platform_{_mode}", **ARGS):
        _common = {"poll_interval": 0.2, "deferrable": _deferrable}
        CmlRunJobOperator(task_id="oom", project="Analytics", job="oom", **_common)
        CmlRunJobOperator(task_id="lost", project="Analytics", job="lost", unknown_grace=1, **_common)
        CmlRunJobOperator(task_id="flaky", project="Analytics", job="flaky", **_common)
        CmlRunJobOperator(task_id="public", project="Shared Models", job="score", **_common)

with DAG("cml_test_deferrable_not_ours", **ARGS):
    # Both wait in the triggerer on a run someone else started, and give up at their timeout:
    # neither may stop it.
    CmlRunJobOperator(
        task_id="busy_wait", job="sleeper", if_active="wait", timeout=1.5, deferrable=True, **ANALYTICS
    )
    _sensor("watch", "sleeper", RUN_ID_FROM_CONF, timeout=1.5, deferrable=True)

with DAG("cml_test_deferrable_execution_timeout", **ARGS):
    _too_slow(deferrable=True, execution_timeout=timedelta(seconds=3))

SECRET_ENV = {"DB_PASSWORD": "s3cr3t-Pa55w0rd-XYZ", "REPORT_VARS": "DB_PASSWORD"}

with DAG("cml_test_secrets", **ARGS):
    sync_ok = CmlRunJobOperator(task_id="sync_ok", job="report-env", environment=SECRET_ENV, **ANALYTICS)
    deferred_ok = CmlRunJobOperator(
        task_id="deferred_ok", job="train", environment=SECRET_ENV, deferrable=True, **ANALYTICS
    )
    sensed = _sensor("sensed", "report-env", _pushed_by("sync_ok"), deferrable=True)
    failing = CmlRunJobOperator(
        task_id="failing", job="fail", environment=SECRET_ENV, retries=1, retry_delay=0, **ANALYTICS
    )
    sync_ok >> deferred_ok >> sensed >> failing
