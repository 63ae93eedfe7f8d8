"""Example: retrain, deploy the new model, check one prediction, restart the dashboard.

What it shows:
* ``CmlDeployModelOperator``: the model is found by name (created the first time), built from
  its file and function, and the build deployed; the task waits for ``built`` and ``deployed``
  (in the triggerer: ``deferrable=True``) and returns the project, model, build and deployment
  IDs. A retry of the task reuses its build and deployment instead of making new ones.
* A smoke test that calls the deployed model through the model service with
  ``CmlHook().models.call_model`` before anything depends on it.
* ``CmlApplicationOperator``: the dashboard application is created (or updated) from its spec,
  restarted so it reads the new model, and awaited until it is running.

Set up a connection ``cml_default`` of type "Cloudera AI": host = workbench URL, password = API key.
``make demo`` runs this DAG against the local workbench simulator (with shorter intervals).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.10 / 2.11
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_cml.operators.applications import CmlApplicationOperator
from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.operators.models import CmlDeployModelOperator
from airflow_provider_cml.workloads.applications import CmlApplicationSpec
from airflow_provider_cml.workloads.models import CmlModelSpec

PROJECT = "Demo Analytics"
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

# [START howto_cml_model_spec]
CHURN_MODEL = CmlModelSpec(
    name="churn-scorer",
    file="churn_model.py",  # in the project
    function="predict",  # called with each request's JSON
    cpu=1,  # and memory (GB), replicas, ...
    environment={"MODEL_STAGE": "production"},
)
# [END howto_cml_model_spec]
# [START howto_cml_application_spec]
DASHBOARD = CmlApplicationSpec(
    name="churn-dashboard",
    subdomain="churn-dashboard",  # served at https://churn-dashboard.<workbench domain>
    script="dashboard.py",
    environment={"MODEL_NAME": "churn-scorer"},
)
# [END howto_cml_application_spec]

with DAG(
    dag_id="cml_example_mlops",
    start_date=datetime(2024, 6, 1),
    schedule="@daily",
    catchup=False,
    max_active_runs=1,  # one retrain-and-deploy at a time: two at once would race to deploy one model
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["cloudera-ai", "example"],
) as dag:
    prepare = CmlRunJobOperator(
        task_id="prepare_data", project=PROJECT, job="prepare-data", environment={"RUN_DATE": RUN_DATE}
    )
    retrain = CmlRunJobOperator(
        task_id="retrain", project=PROJECT, job="train-model", environment={"RUN_DATE": RUN_DATE}
    )

    # [START howto_cml_deploy_model]
    deploy = CmlDeployModelOperator(
        task_id="deploy_model",
        project=PROJECT,
        model=CHURN_MODEL,
        timeout=60 * 60,  # build and deployment together; our half-finished deployment is stopped
        deferrable=True,
    )
    # [END howto_cml_deploy_model]

    @task
    def smoke_test(ids: dict[str, Any]) -> dict[str, Any]:
        """One prediction through the model service before the dashboard points at the new model."""
        from airflow_provider_cml.hooks.cml import CmlHook

        answer = CmlHook().models.call_model(ids["project_id"], ids["model_id"], {"tenure_months": 3})
        if not 0.0 <= answer["churn_probability"] <= 1.0:
            raise ValueError(f"The new model answered {answer!r}: not a probability.")
        return answer

    # [START howto_cml_restart_application]
    restart_dashboard = CmlApplicationOperator(
        task_id="restart_dashboard",
        project=PROJECT,
        application=DASHBOARD,
        action="restart",  # created when missing, updated when the spec changed, then restarted
        timeout=15 * 60,  # never stops the app: it may have been serving before
    )
    # [END howto_cml_restart_application]

    prepare >> retrain >> deploy
    smoke_test(deploy.output) >> restart_dashboard
