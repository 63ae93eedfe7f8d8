"""Registry DAGs the DAG-level tests run with dag.test(): register a run's model, deploy that version, call it.

The run (experiment name and run ID), the registered model's name and the served model's name come
from the DAG run's conf.
"""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_cml.operators.models import CmlDeployModelOperator
from airflow_provider_cml.operators.registry import CmlRegisterModelOperator

ARGS = {"start_date": datetime(2024, 1, 1), "schedule": None, "catchup": False}

for mode, deferrable in (("sync", False), ("deferrable", True)):
    with DAG(f"cml_test_registry_{mode}", **ARGS):
        register = CmlRegisterModelOperator(
            task_id="register",
            project="Analytics",
            experiment="{{ dag_run.conf['experiment'] }}",  # each test logs a run of its own
            run_id="{{ dag_run.conf['run_id'] }}",
            model_name="{{ dag_run.conf['model_name'] }}",
            tags={"airflow_run": "{{ run_id }}"},  # the version says which DAG run registered it
            deferrable=deferrable,
            poll_interval=0.1,
            timeout=60,
        )
        deploy = CmlDeployModelOperator(
            task_id="deploy",
            project="Analytics",
            model="{{ dag_run.conf['served'] }}",
            registered_version=register.output,
            deferrable=deferrable,
            poll_interval=0.1,
            timeout=60,
        )

        @task(task_id="smoke_test")
        def smoke_test(ids: dict) -> dict:
            from airflow_provider_cml.hooks.cml import CmlHook

            return CmlHook().models.call_model(ids["project_id"], ids["model_id"], {"x": 21})

        smoke_test(deploy.output)
