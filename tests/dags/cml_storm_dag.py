"""The fault-storm DAG: 100 independent job runs (40 on Airflow 3.0/3.1), odd ones deferrable, every 10th fails."""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_cml.operators.cml import CmlRunJobOperator

STORM_TASKS = 100


def storm_job(i: int) -> str:
    return f"storm-{i:03d}"


def storm_should_fail(i: int) -> bool:
    return i % 10 == 3


with DAG("cml_test_fault_storm", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    for _i in range(STORM_TASKS):
        CmlRunJobOperator(
            task_id=storm_job(_i).replace("-", "_"),
            cml_conn_id="cml_storm",
            project="Storm",
            job=storm_job(_i),
            environment={"EXIT_CODE": "3" if storm_should_fail(_i) else "0", "TASK_NUMBER": _i},
            poll_interval=0.1,
            deferrable=bool(_i % 2),
        )
