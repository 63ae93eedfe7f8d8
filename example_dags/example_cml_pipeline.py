"""Example: prepare data, then train a model in Cloudera AI, from one Airflow DAG.

What it shows:
* ``CmlRunJobOperator`` starting a job with environment overrides rendered by Jinja (``{{ ds }}``
  is the run's logical date), then waiting for the run to end.
* Starting a long job *without* waiting (``wait_for_completion=False``) and waiting for it with
  ``CmlJobRunSensor`` instead, using the run id the operator pushed to XCom. In ``reschedule`` mode
  the sensor frees its worker slot between checks.

Set up a connection ``cml_default`` of type "Cloudera AI": host = workbench URL, password = API key.
``make demo`` runs this DAG against the local workbench simulator.
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

with DAG(
    dag_id="cml_example_pipeline",
    start_date=datetime(2024, 6, 1),
    schedule="@daily",
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["cloudera-ai", "example"],
) as dag:
    # Overrides are strings in Cloudera AI; numbers are turned into strings for you.
    prepare = CmlRunJobOperator(
        task_id="prepare_data",
        project=PROJECT,
        job="prepare-data",
        environment={"RUN_DATE": "{{ ds }}", "SAMPLE_ROWS": 1000},
        poll_interval=2,
        timeout=30 * 60,  # stop the CML run and fail the task if it takes longer
    )

    # Training can take hours: start it and hand the waiting to a sensor.
    start_training = CmlRunJobOperator(
        task_id="start_training",
        project=PROJECT,
        job="train-model",
        environment={"RUN_DATE": "{{ ds }}", "LEARNING_RATE": "0.05"},
        wait_for_completion=False,
    )

    wait_for_training = CmlJobRunSensor(
        task_id="wait_for_training",
        project=PROJECT,
        job="train-model",
        run_id="{{ ti.xcom_pull(task_ids='start_training', key='run_id') }}",
        poke_interval=2,
        timeout=6 * 60 * 60,
        mode="poke",  # use "reschedule" for long runs to free the worker slot between pokes
    )

    prepare >> start_training >> wait_for_training
