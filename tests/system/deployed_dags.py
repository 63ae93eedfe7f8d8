"""The DAGs the real-services and distributed tests deploy: one file, copied into each deployment.

``CML_SYSTEM_DAGS`` in the services' environment names the set Airflow builds from it:
``real_services`` (LocalExecutor) or ``distributed`` (Celery); ``CML_DISTRIBUTED_TASKS`` how many
tasks the distributed load scenario maps. The tests import this module for the names only: Airflow
is imported when the variable is set, that is, in the deployment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

SELECT = "CML_SYSTEM_DAGS"
TASKS = "CML_DISTRIBUTED_TASKS"

REAL_SERVICES = (
    "cml_real_services",
    "cml_fanout",
    "cml_kill_busy_wait",
    "cml_kill_sensor",
    "cml_kill_deploy_sync",
    "cml_kill_deploy_deferrable",
    "cml_ui_form_connection",
    "cml_deploy_deferrable",
    "cml_clear_rerun",
    "cml_kill_worker",
)
DISTRIBUTED = (
    "dist_fanout_sync",
    "dist_fanout_deferrable",
    "dist_worker_killed",
    "dist_triggerer_killed",
    "dist_reschedule_sensor",
    "dist_many_deferred",
)
IDS = {"real_services": REAL_SERVICES, "distributed": DISTRIBUTED}
MODES = (("sync", False), ("deferrable", True))
#: Both deployments' fan-outs: one job, each instance waiting for it to be free, at the shortest
#: poll the guide documents for deferrable tasks.
FANOUT = {"project": "Analytics", "job": "fanout", "if_active": "wait", "poll_interval": 1, "timeout": 600}
#: Jobs of the sleeper's script for the LocalExecutor scenarios that run beside the others (a job
#: has one active run at a time): the cleared task's and the killed worker's.
RERUN_JOB, KILLED_JOB = "sleeper-rerun", "sleeper-killed"
#: The distributed test's jobs for its load scenario, one per task (a job has one active run at a time).
LOAD_JOB = "dist-{:03d}"


def many() -> int:
    """How many deferred tasks the distributed load scenario maps (``CML_DISTRIBUTED_TASKS``, 200)."""
    return int(os.environ.get(TASKS, "200"))


def _dag(dag_id: str, **kwargs: Any) -> Any:
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False, **kwargs)


def _job(task_id: str, job: str = "sleeper", sleep: int | None = None, **kwargs: Any) -> Any:
    """A CmlRunJobOperator on a job of Analytics (``sleep``: the sleeper's SLEEP seconds)."""
    from airflow_provider_cml.operators.cml import CmlRunJobOperator

    if sleep is not None:
        kwargs["environment"] = {"SLEEP": str(sleep)}
    return CmlRunJobOperator(task_id=task_id, project="Analytics", job=job, **kwargs)


def _fanout(count: int, deferrable: bool, job: str = "fanout") -> Any:
    """``count`` instances over one job (:data:`FANOUT`)."""
    from airflow_provider_cml.operators.cml import CmlRunJobOperator

    waiting = CmlRunJobOperator.partial(task_id="each", deferrable=deferrable, **{**FANOUT, "job": job})
    return waiting.expand(environment=[{"RUN_DATE": f"2024-01-{i:02d}"} for i in range(1, count + 1)])


def _watch(task_id: str, **kwargs: Any) -> Any:
    """A CmlJobRunSensor on the sleeper's run whose id the DAG run's conf gives."""
    from airflow_provider_cml.sensors.cml import CmlJobRunSensor

    run_id = "{{ dag_run.conf['run_id'] }}"
    return CmlJobRunSensor(task_id=task_id, project="Analytics", job="sleeper", run_id=run_id, **kwargs)


def real_services() -> None:
    """The LocalExecutor deployment's DAGs (``test_real_services.py``)."""
    from airflow_provider_cml.operators.models import CmlDeployModelOperator

    quick = {"poll_interval": 0.5}
    with _dag("cml_real_services"):
        # Long enough for many polls after the triggerer picks it up.
        _job("deferred", sleep=8, deferrable=True, **quick)
    with _dag("cml_fanout", max_active_runs=3):
        # Five instances over one job, each waiting in the triggerer for the job to be free: the
        # pattern that defers and resumes most often, so the one most exposed to Airflow's deferral
        # race (apache/airflow 71580). At the shortest poll the README documents.
        _fanout(5, deferrable=True)
    with _dag("cml_kill_busy_wait"):
        # Waits in the triggerer for someone else's run to free the job; killed there.
        _job("waits", if_active="wait", deferrable=True, **quick)
    for mode, deferrable in MODES:
        with _dag(f"cml_kill_deploy_{mode}"):
            # Deploys a model whose replica takes minutes to load; killed while that deployment is
            # awaited (in the worker, or in the triggerer). The deployment is the task's own: the
            # kill stops it, and nothing else.
            slow = {"name": f"kill-deploy-{mode}", "environment": {"SLOW_LOAD": "300"}}
            CmlDeployModelOperator(
                task_id="deploy", project="Analytics", model=model(**slow), deferrable=deferrable, **quick
            )
    with _dag("cml_ui_form_connection"):
        # Through a connection saved as Airflow 3.3's form saves it: every field's default in the extra.
        _job("run", job="train", cml_conn_id="cml_ui_form", **quick)
    with _dag("cml_deploy_deferrable"):
        # A quick build and a quick deployment: the hold of Airflow's deferral race is paid once.
        CmlDeployModelOperator(
            task_id="deploy", project="Analytics", model=model(name="deferred-once"), deferrable=True, **quick
        )
    with _dag("cml_clear_rerun"):
        # Succeeds, then is cleared through the REST API: the job runs again.
        _job("runs", job=RERUN_JOB, sleep=1, **quick)
    with _dag("cml_kill_worker"):
        # Its worker process is killed with -9 while the run goes on: the retry reattaches to that run.
        _job("survives", job=KILLED_JOB, sleep=20, retries=1, retry_delay=timedelta(seconds=1), **quick)
    with _dag("cml_kill_sensor"):
        _watch("watches", poke_interval=0.5, deferrable=True)


def model(name: str, **more: Any) -> dict[str, Any]:
    """A model spec of Analytics' ``model_predict.py`` (the DAGs' and the tests' own deployments).

    :param name: the model's name.
    :param more: more fields (``environment``).
    """
    return {"name": name, "file": "model_predict.py", "function": "predict", **more}


def distributed() -> None:
    """The Celery deployment's DAGs (``test_distributed.py``)."""
    for mode, deferrable in MODES:
        with _dag(f"dist_fanout_{mode}"):
            # A job for each: the two fan-outs run at the same time.
            _fanout(10, deferrable=deferrable, job=f"fanout-{mode}")
    every_second = {"poll_interval": 1}
    with _dag("dist_worker_killed"):
        _job("long_run", sleep=25, retries=1, retry_delay=timedelta(seconds=1), **every_second)
    with _dag("dist_triggerer_killed"):
        _job("deferred_run", sleep=30, deferrable=True, **every_second)
    with _dag("dist_reschedule_sensor"):
        _watch("by_names", mode="reschedule", poke_interval=1, timeout=300)
    count = many()
    with _dag("dist_many_deferred", max_active_tasks=count):
        from airflow_provider_cml.operators.cml import CmlRunJobOperator

        each = CmlRunJobOperator.partial(
            task_id="each", project="Analytics", timeout=900, deferrable=True, **every_second
        )
        each.expand(job=[LOAD_JOB.format(i) for i in range(count)])


SETS: dict[str, Callable[[], None]] = {"real_services": real_services, "distributed": distributed}
if os.environ.get(SELECT) in SETS:
    SETS[os.environ[SELECT]]()
