"""Example: define a Cloudera AI job in the DAG, fan it out over five dates, and submit one-off runs.

What it shows:
* ``CmlCreateOrUpdateJobOperator`` keeping a job's definition (script, runtime, resources, default
  environment, timeout) in the DAG: the first run creates the job, later runs leave it alone, and a
  change to the definition here updates the job in place.
* One job, five mapped task instances (``.expand()`` over dates). Cloudera AI allows one active run
  per job; ``if_active="wait"`` makes each instance wait for the job to be free, so the five runs
  happen one after another and none fails "already active".
* ``@task.cml``: a Python function decides the run's overrides when the task runs (here the model,
  by the day of the week); the job then runs and is awaited as by ``CmlRunJobOperator``.
* ``CmlSubmitRunOperator``: no hand-made job at all. Each mapped instance gets a job of its own
  (named for the task and map index), runs it, and deletes it afterwards (``delete_job_after``).

``make demo`` runs this DAG against the local workbench simulator (with shorter intervals).
"""

from __future__ import annotations

from datetime import date, datetime

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.10 / 2.11
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.operators.jobs import CmlCreateOrUpdateJobOperator, CmlSubmitRunOperator
from airflow_provider_cml.workloads.jobs import CmlJobSpec

PROJECT = "Demo Analytics"
RUNTIME = (
    "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-pbj-workbench-python3.11-standard:2025.09.1-b5"
)
DAY = "(dag_run.logical_date or dag_run.run_after) | ds"
#: The five days before the run's date, one per mapped task instance.
PARTITIONS = [{"PARTITION_DATE": f"{{{{ macros.ds_add({DAY}, -{n}) }}}}"} for n in range(1, 6)]

with DAG(
    dag_id="cml_example_jobs_as_code",
    start_date=datetime(2024, 6, 1),
    schedule="@daily",
    catchup=False,
    tags=["cloudera-ai", "example"],
) as dag:
    # [START howto_cml_define_job]
    define_scoring = CmlCreateOrUpdateJobOperator(
        task_id="define_scoring_job",
        project=PROJECT,
        job_spec=CmlJobSpec(
            name="score-partition",
            script="score_partition.py",  # relative to the project's files
            runtime_identifier=RUNTIME,  # checked against the workbench's runtimes
            environment={"MODEL": "churn-v3"},  # the job's defaults; runs may override them
        ),
    )
    # [END howto_cml_define_job]

    # [START howto_cml_fan_out]
    score_each_day = CmlRunJobOperator.partial(
        task_id="score_each_day",
        project=PROJECT,
        job="score-partition",
        if_active="wait",  # one run at a time: wait for the job to be free, then start
        poll_interval=30,
        timeout=3 * 60 * 60,  # bounds the waiting for the job too
    ).expand(environment=PARTITIONS)
    # [END howto_cml_fan_out]

    # @task.cml: a function decides the run's overrides when the task runs; the job then runs as above.
    @task.cml(project=PROJECT, job="score-partition", if_active="wait", poll_interval=30, timeout=60 * 60)
    def score_today(day: str) -> dict[str, str]:
        """Runs in the worker; returns the run's environment (or {"job": ..., "environment": ...})."""
        weekend = date.fromisoformat(day).weekday() >= 5
        return {"PARTITION_DATE": day, "MODEL": "churn-v3-weekend" if weekend else "churn-v3"}

    score_today_run = score_today(f"{{{{ {DAY} }}}}")  # templated; the task returns the run's id

    backfill = CmlSubmitRunOperator.partial(
        task_id="backfill_day",
        project=PROJECT,
        job_spec={"script": "score_partition.py", "runtime_identifier": RUNTIME, "memory": 1},
        delete_job_after=True,  # each instance's job is removed once its run ended
        poll_interval=30,
    ).expand(environment=PARTITIONS[:2])

    define_scoring >> score_each_day >> score_today_run >> backfill
