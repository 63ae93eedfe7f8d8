"""DAGs for jobs as code and fan-out: a job defined in the DAG, one job over five dates, submitted runs."""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.operators.jobs import CmlCreateOrUpdateJobOperator, CmlSubmitRunOperator
from airflow_provider_cml.sensors.cml import CmlJobRunSensor
from airflow_provider_cml.testing.workbench import RUNTIME_ID
from airflow_provider_cml.workloads.jobs import CmlJobSpec

ARGS = {"start_date": datetime(2024, 1, 1), "schedule": None, "catchup": False}
DATES = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]

with DAG("cml_test_job_as_code", **ARGS):
    # The memory comes from the run's conf, so a test can "change the DAG" between runs.
    define = CmlCreateOrUpdateJobOperator(
        task_id="define",
        project="Analytics",
        job_spec={
            "name": "defined-in-dag",
            "script": "report_env.py",
            "runtime_identifier": RUNTIME_ID,
            "memory": "{{ dag_run.conf.get('memory', 2) }}",
            "cpu": 1,
            "timeout": 600,
            "environment": {"REPORT_VARS": "STAGE", "STAGE": "defined"},
        },
    )
    run = CmlRunJobOperator(
        task_id="run",
        project="Analytics",
        job="{{ ti.xcom_pull(task_ids='define', key='job_id') }}",
        poll_interval=0.2,
    )
    define >> run

for _deferrable in (False, True):
    _mode = "deferrable" if _deferrable else "sync"
    with DAG(f"cml_test_fanout_wait_{_mode}", **ARGS):
        # One job, five mapped instances: each waits for the job to be free, none fails "already active".
        CmlRunJobOperator.partial(
            task_id="each_date",
            project="Analytics",
            job="fanout",
            if_active="wait",
            poll_interval=0.2,
            timeout=120,
            deferrable=_deferrable,
        ).expand(environment=[{"RUN_DATE": d, "REPORT_VARS": "RUN_DATE"} for d in DATES])

    with DAG(f"cml_test_submit_{_mode}", **ARGS):
        # No hand-made job: each mapped instance gets (and here deletes) a job of its own.
        CmlSubmitRunOperator.partial(
            task_id="each_date",
            project="Analytics",
            job_spec={"script": "report_env.py", "memory": 1, "runtime_identifier": RUNTIME_ID},
            delete_job_after=True,
            poll_interval=0.2,
            deferrable=_deferrable,
        ).expand(environment=[{"RUN_DATE": d, "REPORT_VARS": "RUN_DATE"} for d in DATES])
        CmlSubmitRunOperator(
            task_id="kept",
            project="Analytics",
            job_spec=CmlJobSpec(
                name="submitted-and-kept", script="report_env.py", runtime_identifier=RUNTIME_ID, cpu=1
            ),
            job_name=f"submitted-and-kept-{_mode}",
            poll_interval=0.2,
            deferrable=_deferrable,
        )

    with DAG(f"cml_test_submit_cleanup_{_mode}", **ARGS):
        # The run outlives the task's timeout: it is stopped, and its job deleted only once it ended.
        CmlSubmitRunOperator(
            task_id="times_out",
            project="Analytics",
            job_spec={
                "script": "sleeper.py",
                "runtime_identifier": RUNTIME_ID,
                "environment": {"SLEEP": "30"},
            },
            job_name=f"cleanup-{_mode}",
            delete_job_after=True,
            timeout=1.5,
            poll_interval=0.2,
            deferrable=_deferrable,
        )

with DAG("cml_test_submit_not_nested", **ARGS):
    # Airflow 2.10 raises on an execute called from another execute when this is False.
    not_nested = CmlSubmitRunOperator(
        task_id="not_nested",
        project="Analytics",
        job_spec={"script": "report_env.py", "runtime_identifier": RUNTIME_ID},
        job_name="not-nested",
        poll_interval=0.2,
        allow_nested_operators=False,
    )
    CmlSubmitRunOperator(  # Airflow's default (True): 2.10 would log the warning instead
        task_id="default_nesting",
        project="Analytics",
        job_spec={"script": "report_env.py", "runtime_identifier": RUNTIME_ID},
        job_name="default-nesting",
        poll_interval=0.2,
    )
    for _mode, _deferrable in (("sync", False), ("deferrable", True)):
        # A sensor's execute is Airflow's own: sync or deferred, nothing calls one execute from another.
        CmlJobRunSensor(
            task_id=f"sensed_{_mode}",
            project=not_nested.output["project_id"],
            job=not_nested.output["job_id"],
            run_id=not_nested.output,
            poke_interval=0.2,
            deferrable=_deferrable,
            allow_nested_operators=False,
        )
