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

with DAG("cml_test_success", **ARGS):
    start = CmlRunJobOperator(
        task_id="start",
        project="Analytics",
        job="report-env",
        environment={"REPORT_VARS": "RUN_DATE,DAG_ID", "RUN_DATE": "{{ ds }}", "DAG_ID": "{{ dag.dag_id }}"},
        wait_for_completion=False,
    )
    wait = CmlJobRunSensor(
        task_id="wait",
        project="Analytics",
        job="report-env",
        run_id="{{ ti.xcom_pull(task_ids='start', key='run_id') }}",
        poke_interval=0.2,
        timeout=60,
    )
    again = CmlRunJobOperator(task_id="run_and_wait", project="Analytics", job="train", poll_interval=0.2)
    start >> wait >> again

with DAG("cml_test_failure", **ARGS):
    CmlRunJobOperator(task_id="fail", project="Analytics", job="fail", poll_interval=0.2)

with DAG("cml_test_timeout", **ARGS):
    CmlRunJobOperator(
        task_id="too_slow",
        project="Analytics",
        job="sleeper",
        environment={"STOP_MARKER": "{{ dag_run.conf['marker'] }}"},
        poll_interval=0.2,
        timeout=1.5,
    )

with DAG("cml_test_sensor_failure", **ARGS):
    CmlJobRunSensor(
        task_id="sense", project="Analytics", job="fail", run_id=RUN_ID_FROM_CONF, poke_interval=0.2
    )
    CmlJobRunSensor(
        task_id="sense_soft",
        project="Analytics",
        job="fail",
        run_id=RUN_ID_FROM_CONF,
        poke_interval=0.2,
        soft_fail=True,
    )

with DAG("cml_test_v1", **ARGS):
    CmlRunJobOperator(
        task_id="v1_start",
        cml_conn_id="cml_legacy",
        project="alice/analytics",
        job="{{ dag_run.conf['v1_job'] }}",
        environment={"REPORT_VARS": "FROM_V1", "FROM_V1": "yes"},
        wait_for_completion=False,
    )
    CmlRunJobOperator(
        task_id="v1_wait_refused",
        cml_conn_id="cml_legacy",
        project="alice/analytics",
        job="{{ dag_run.conf['v1_job'] }}",
    )

with DAG("cml_test_deferrable", **ARGS):
    waited = CmlRunJobOperator(
        task_id="deferred_run", project="Analytics", job="slow", poll_interval=0.2, deferrable=True
    )
    started = CmlRunJobOperator(
        task_id="start_only", project="Analytics", job="train", wait_for_completion=False, deferrable=True
    )
    sensed = CmlJobRunSensor(
        task_id="deferred_sensor",
        project="Analytics",
        job="train",
        run_id="{{ ti.xcom_pull(task_ids='start_only', key='run_id') }}",
        poke_interval=0.2,
        timeout=60,
        deferrable=True,
    )
    waited >> started >> sensed

with DAG("cml_test_deferrable_failure", **ARGS):
    CmlRunJobOperator(task_id="fail", project="Analytics", job="fail", poll_interval=0.2, deferrable=True)

with DAG("cml_test_deferrable_timeout", **ARGS):
    CmlRunJobOperator(
        task_id="too_slow",
        project="Analytics",
        job="sleeper",
        environment={"STOP_MARKER": "{{ dag_run.conf['marker'] }}"},
        poll_interval=0.2,
        timeout=1.5,
        deferrable=True,
    )

with DAG("cml_test_deferrable_not_ours", **ARGS):
    # Both wait in the triggerer on a run someone else started, and give up at their timeout:
    # neither may stop it.
    CmlRunJobOperator(
        task_id="busy_wait",
        project="Analytics",
        job="sleeper",
        if_active="wait",
        poll_interval=0.2,
        timeout=1.5,
        deferrable=True,
    )
    CmlJobRunSensor(
        task_id="watch",
        project="Analytics",
        job="sleeper",
        run_id="{{ dag_run.conf['run_id'] }}",
        poke_interval=0.2,
        timeout=1.5,
        deferrable=True,
    )

for _deferrable in (False, True):
    with DAG(f"cml_test_retry_{'deferrable' if _deferrable else 'sync'}", **ARGS):
        CmlRunJobOperator(
            task_id="flaky_wait",
            project="Analytics",
            job="sleeper",
            environment={"SLEEP": "2"},
            poll_interval=0.2,
            deferrable=_deferrable,
            retries=1,
            retry_delay=0,
        )

SECRET_ENV = {"DB_PASSWORD": "s3cr3t-Pa55w0rd-XYZ", "REPORT_VARS": "DB_PASSWORD"}

with DAG("cml_test_secrets", **ARGS):
    sync_ok = CmlRunJobOperator(
        task_id="sync_ok", project="Analytics", job="report-env", environment=SECRET_ENV, poll_interval=0.2
    )
    deferred_ok = CmlRunJobOperator(
        task_id="deferred_ok",
        project="Analytics",
        job="train",
        environment=SECRET_ENV,
        poll_interval=0.2,
        deferrable=True,
    )
    sensed = CmlJobRunSensor(
        task_id="sensed",
        project="Analytics",
        job="report-env",
        run_id="{{ ti.xcom_pull(task_ids='sync_ok', key='run_id') }}",
        poke_interval=0.2,
        deferrable=True,
    )
    failing = CmlRunJobOperator(
        task_id="failing",
        project="Analytics",
        job="fail",
        environment=SECRET_ENV,
        poll_interval=0.2,
        retries=1,
        retry_delay=0,
    )
    sync_ok >> deferred_ok >> sensed >> failing

with DAG("cml_test_deferrable_execution_timeout", **ARGS):
    CmlRunJobOperator(
        task_id="too_slow",
        project="Analytics",
        job="sleeper",
        environment={"STOP_MARKER": "{{ dag_run.conf['marker'] }}"},
        poll_interval=0.2,
        deferrable=True,
        execution_timeout=timedelta(seconds=3),
    )

# What the real API does that a guess-built client missed: OOM kills, a run the platform lost track
# of, Job Retry, someone else's public project.
for _deferrable in (False, True):
    with DAG(f"cml_test_platform_{'deferrable' if _deferrable else 'sync'}", **ARGS):
        _common = {"poll_interval": 0.2, "deferrable": _deferrable}
        CmlRunJobOperator(task_id="oom", project="Analytics", job="oom", **_common)
        CmlRunJobOperator(task_id="lost", project="Analytics", job="lost", unknown_grace=1, **_common)
        CmlRunJobOperator(task_id="flaky", project="Analytics", job="flaky", **_common)
        CmlRunJobOperator(task_id="public", project="Shared Models", job="score", **_common)
