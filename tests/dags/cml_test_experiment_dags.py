"""Experiment-run DAGs the DAG-level tests run with dag.test(): wait for a run named in the run's conf."""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_cml.sensors.experiments import CmlExperimentRunSensor

ARGS = {"start_date": datetime(2024, 1, 1), "schedule": None, "catchup": False}

for mode, deferrable in (("sync", False), ("deferrable", True)):
    with DAG(f"cml_test_experiment_run_{mode}", **ARGS):
        CmlExperimentRunSensor(
            task_id="trained",
            project="Analytics",
            experiment="{{ dag_run.conf['experiment'] }}",
            run_id="{{ dag_run.conf['run_id'] }}",
            deferrable=deferrable,
            poke_interval=0.2,
            timeout=60,
        )
