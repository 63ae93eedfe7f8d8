"""Example: prepare data, then train a model in Cloudera AI, from one Airflow DAG.

What it shows:
* ``CmlRunJobOperator`` starting a job with environment overrides rendered by Jinja, then waiting
  for the run to end. ``RUN_DATE`` comes from the run's logical date, or from when it was triggered
  for manual runs, which have no logical date on Airflow 3 (so ``{{ ds }}`` would be undefined).
* Starting a long job *without* waiting (``wait_for_completion=False``) and waiting for it with a
  deferrable ``CmlJobRunSensor``: the wait happens in the triggerer, not in a worker slot. The sensor
  takes the project, job and run ids from the operator's XComs, so each check is one request.

Set up a connection ``cml_default`` of type "Cloudera AI": host = workbench URL, password = API key.
``make demo`` runs this DAG against the local workbench simulator (with shorter intervals).
"""

from __future__ import annotations

from datetime import datetime, timedelta

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10 / 2.11
    from airflow import DAG

from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.sensors.cml import CmlJobRunSensor

PROJECT = "Demo Analytics"  # a project name (looked up once per task) or its ID
# Defined for every run: the logical date, or (manual runs on Airflow 3) when it was triggered.
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

with DAG(
    dag_id="cml_example_pipeline",
    start_date=datetime(2024, 6, 1),
    schedule="@daily",
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["cloudera-ai", "example"],
) as dag:
    # [START howto_cml_run_job]
    prepare = CmlRunJobOperator(
        task_id="prepare_data",
        project=PROJECT,  # name (exact, looked up over all pages) or project ID
        job="prepare-data",  # name or job ID
        environment={"RUN_DATE": RUN_DATE, "SAMPLE_ROWS": 1000},  # templated; numbers -> strings
        arguments="--full",  # reaches the script as JOB_ARGUMENTS
        poll_interval=30,  # seconds between status checks
        timeout=30 * 60,  # then the run is stopped and the task fails
    )
    # [END howto_cml_run_job]

    # [START howto_cml_start_then_sense]
    # Training can take hours: start it, then wait in the triggerer instead of a worker slot.
    start_training = CmlRunJobOperator(
        task_id="start_training",
        project=PROJECT,
        job="train-model",
        environment={"RUN_DATE": RUN_DATE, "LEARNING_RATE": "0.05"},
        wait_for_completion=False,
    )
    wait_for_training = CmlJobRunSensor(
        task_id="wait_for_training",
        project=start_training.output["project_id"],  # IDs from XCom: one request per check
        job=start_training.output["job_id"],
        run_id=start_training.output,
        poke_interval=5 * 60,
        timeout=6 * 60 * 60,
        deferrable=True,
    )
    # [END howto_cml_start_then_sense]

    prepare >> start_training >> wait_for_training
