"""DAGs using @task.cml: overrides from the function, a mapped use, a bad return value, deferrable."""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_cml.operators.cml import CmlRunJobOperator

ARGS = {"start_date": datetime(2024, 1, 1), "schedule": None, "catchup": False}
DATES = ["2024-01-01", "2024-01-02", "2024-01-03"]
SECRET = "s3cr3t-Pa55w0rd-DECORATED"

with DAG("cml_test_decorator", **ARGS):
    # The decorator's job and environment (templated), then the function's overrides win.
    @task.cml(
        project="Analytics",
        job="train",
        environment={
            "REPORT_VARS": "STAGE,KEEP,RUN_DATE,FROM_ARG",
            "STAGE": "decorator",
            "KEEP": "{{ dag.dag_id }}",
        },
        poll_interval=0.2,
        allow_nested_operators=False,  # Airflow 2.10 raises on an execute called from another execute
    )
    def pick(from_arg: str, ds=None):
        return {
            "job": "report-env",
            "environment": {"STAGE": "returned", "RUN_DATE": ds, "FROM_ARG": from_arg},
        }

    # A plain environment dict (numbers become strings), the decorator's job kept.
    @task.cml(project="Analytics", job="report-env", poll_interval=0.2)
    def env_only():
        return {"REPORT_VARS": "ROWS", "ROWS": 10}

    pick("{{ ds_nodash }}") >> env_only()

with DAG("cml_test_decorator_mapped", **ARGS):

    @task.cml(project="Analytics", job="report-env", if_active="wait", poll_interval=0.2, timeout=120)
    def each_date(date: str):
        return {"RUN_DATE": date, "REPORT_VARS": "RUN_DATE"}

    each_date.expand(date=DATES)

with DAG("cml_test_decorator_bad_return", **ARGS):

    @task.cml(project="Analytics", job="report-env", poll_interval=0.2)
    def bad():
        return {"DB_PASSWORD": {"nested": SECRET}}

    bad()

with DAG("cml_test_decorator_deferrable", **ARGS):

    @task.cml(project="Analytics", job="train", poll_interval=0.2, deferrable=True)
    def deferred():
        return {"environment": {"REPORT_VARS": "MODE", "MODE": "deferred"}, "arguments": "--deferred"}

    deferred()

with DAG("cml_test_decorator_busy", **ARGS):
    # The job is busy: the task waits in the triggerer, then calls the function again and starts.
    @task.cml(
        project="Analytics", job="fanout", if_active="wait", poll_interval=0.2, timeout=60, deferrable=True
    )
    def when_free():
        return {"SLEEP": "0.1", "PICKED": "by-the-function"}

    # Started right before (not by the test: the first dag.test() takes seconds to get going).
    blocker = CmlRunJobOperator(
        task_id="blocker",
        project="Analytics",
        job="fanout",
        environment={"SLEEP": "2"},
        wait_for_completion=False,
    )
    blocker >> when_free()
