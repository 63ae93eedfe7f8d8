"""Example: retrain, and deploy the new model only if it beats the one serving.

The loop: a training job logs an experiment run tagged with the Airflow run ID → a sensor waits for
that run to finish (bounded by the job run that logged it) → a metric gate compares the run's AUC
with the AUC of the version deployed now → the run is registered as a new model version → that
version is built and deployed → one prediction checks it. When the new model is not better, the gate
skips everything after it and says why in its log and XCom; the serving model stays.

Set up a connection ``cml_default`` of type "Cloudera AI". ``make demo`` runs this DAG twice
against the local workbench: the first run deploys, the second (noisier labels) is gated out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.10 / 2.11
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.operators.experiments import CmlMetricGateOperator
from airflow_provider_cml.operators.models import CmlDeployModelOperator
from airflow_provider_cml.operators.registry import CmlRegisterModelOperator
from airflow_provider_cml.sensors.experiments import CmlExperimentRunSensor

PROJECT = "Demo Analytics"
EXPERIMENT = "churn-training"
MODEL = "churn-classifier"  # the registered model and the deployed model share the name
THIS_RUN = {"airflow_run_id": "{{ run_id }}"}  # the tag the training script sets on its run

with DAG(
    dag_id="cml_example_model_gate",
    start_date=datetime(2024, 6, 1),
    schedule="@weekly",
    catchup=False,
    params={"label_noise": Param(0.1, type="number", description="share of wrong training labels")},
    tags=["cloudera-ai", "example"],
) as dag:
    train = CmlRunJobOperator(
        task_id="train",
        project=PROJECT,
        job="train-churn",
        environment={"AIRFLOW_RUN_ID": "{{ run_id }}", "LABEL_NOISE": "{{ params.label_noise }}"},
    )
    logged = CmlExperimentRunSensor(
        task_id="training_run",
        project=PROJECT,
        experiment=EXPERIMENT,
        run_tag=THIS_RUN,
        # The job run that logs it (CmlRunJobOperator's XComs): a run still RUNNING once that job
        # run has ended (the script was killed before it ended the run) fails the sensor.
        job_run={
            "project_id": train.output["project_id"],
            "job_id": train.output["job_id"],
            "run_id": train.output,
        },
        timeout=60 * 60,
        deferrable=True,
    )
    gate = CmlMetricGateOperator(
        task_id="gate",
        project=PROJECT,
        experiment=EXPERIMENT,
        run_tag=THIS_RUN,
        metric="auc",
        baseline_model=MODEL,  # the AUC of the version deployed now
        higher_is_better=True,
        min_improvement=0.005,
        if_no_baseline="pass",  # nothing deployed yet: deploy the first model
    )
    register = CmlRegisterModelOperator(
        task_id="register",
        project=PROJECT,
        experiment=EXPERIMENT,
        run_id="{{ ti.xcom_pull(task_ids='gate')['candidate']['run_id'] }}",  # the run the gate passed
        model_name=MODEL,
        model_path="model",
    )
    deploy = CmlDeployModelOperator(
        task_id="deploy",
        project=PROJECT,
        model=MODEL,  # found by name, created the first time
        registered_version=register.output,  # built from the version just registered
        timeout=60 * 60,
        deferrable=True,
    )

    @task
    def smoke_test(ids: dict[str, Any]) -> dict[str, Any]:
        """One request through the model service before anyone depends on the new version."""
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook().models.call_model(ids["project_id"], ids["model_id"], {"tenure_months": 3})

    train >> logged >> gate >> register
    smoke_test(deploy.output)
