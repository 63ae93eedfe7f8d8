"""Example: start a job through the legacy CDSW Jobs API v1.

Use this only for old CDSW installations without API v2. The v1 API can start a job, with
environment overrides, and nothing else: it cannot report a run's status, so the operator must be
told not to wait (``wait_for_completion=False``) and returns the ``engine_id`` the API answers.

Connection ``cml_legacy``: type "Cloudera AI", host = CDSW URL, password = API key, extra
``{"api_version": "v1"}``. ``project`` is "<user-or-team>/<project-slug>" and ``job`` the numeric
job ID, both read from the job's web address (``https://cdsw.example.com/alice/demo-analytics/jobs/1``).
"""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10 / 2.11
    from airflow import DAG

from airflow_provider_cml.operators.cml import CmlRunJobOperator

with DAG(
    dag_id="cml_example_legacy_v1",
    start_date=datetime(2024, 6, 1),
    schedule=None,
    catchup=False,
    tags=["cloudera-ai", "example", "cdsw-v1"],
) as dag:
    CmlRunJobOperator(
        task_id="start_legacy_job",
        cml_conn_id="cml_legacy",
        project="alice/demo-analytics",
        job="1",
        environment={
            "RUN_DATE": "{{ (dag_run.logical_date or dag_run.run_after) | ds }}",
            "SAMPLE_ROWS": "10",
        },
        wait_for_completion=False,  # v1 cannot report status: required
    )
