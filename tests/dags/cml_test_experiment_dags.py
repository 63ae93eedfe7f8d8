"""Experiment-run DAGs the DAG-level tests run with dag.test(): runs and models named in the run's conf.

* ``cml_test_experiment_run_{mode}``: wait for a run by its ID.
* ``cml_test_experiment_run_by_tag_{mode}``: wait for the run the training job tagged.
* ``cml_test_experiment_run_bounded``: wait, deferred, for a run whose job run has ended.
* ``cml_test_metric_gate``: gate a candidate run against the deployed model version; ``deploy`` and
  ``smoke`` run only when it passes.
"""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_cml.operators.experiments import CmlMetricGateOperator
from airflow_provider_cml.sensors.experiments import CmlExperimentRunSensor

ARGS = {"start_date": datetime(2024, 1, 1), "schedule": None, "catchup": False}
CONF = "{{ dag_run.conf['%s'] }}"

for mode, deferrable in (("sync", False), ("deferrable", True)):
    with DAG(f"cml_test_experiment_run_{mode}", **ARGS):
        CmlExperimentRunSensor(
            task_id="trained",
            project="Analytics",
            experiment=CONF % "experiment",
            run_id=CONF % "run_id",
            deferrable=deferrable,
            poke_interval=0.2,
            timeout=60,
        )

    with DAG(f"cml_test_experiment_run_by_tag_{mode}", **ARGS):
        CmlExperimentRunSensor(
            task_id="trained",
            project="Analytics",
            experiment=CONF % "experiment",
            run_tag={"airflow_run_id": CONF % "tag"},
            deferrable=deferrable,
            poke_interval=0.2,
            timeout=60,
        )

with DAG("cml_test_experiment_run_bounded", **ARGS):
    CmlExperimentRunSensor(
        task_id="trained",
        project="Analytics",
        experiment=CONF % "experiment",
        run_id=CONF % "run_id",
        # As CmlRunJobOperator's XComs would give it: {{ ti.xcom_pull('train', key='run_id') }}, ...
        job_run={
            key: f"{{{{ dag_run.conf['job_run']['{key}'] }}}}" for key in ("project_id", "job_id", "run_id")
        },
        job_run_grace=0.5,
        deferrable=True,
        poke_interval=0.2,
        timeout=60,
    )

with DAG("cml_test_metric_gate", **ARGS):

    @task
    def deploy() -> str:
        return "deployed"

    @task
    def smoke() -> str:
        return "smoked"

    gate = CmlMetricGateOperator(
        task_id="gate",
        project="Analytics",
        experiment=CONF % "experiment",
        run_tag={"airflow_run_id": CONF % "tag"},
        metric="auc",
        baseline_model=CONF % "model",
        min_improvement=0.01,
    )
    gate >> deploy() >> smoke()
