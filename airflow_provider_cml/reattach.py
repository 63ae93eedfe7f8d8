"""Finding the run that an earlier try of the same task instance started, so a retry reattaches to it.

One interface, two mechanisms:

* Airflow 3.3+ gives tasks a ``task_state_store``; the run's ids are kept there.
* Everywhere (and as a fallback), each run carries the task's identity in its environment
  (``AIRFLOW_CTX_DAG_ID``, ``AIRFLOW_CTX_TASK_ID``, ``AIRFLOW_CTX_DAG_RUN_ID``, ``AIRFLOW_CTX_MAP_INDEX``,
  ``AIRFLOW_CTX_TRY_NUMBER``), and the job's recent runs are searched for it.

A run found this way is reattached to while it is active, taken as the result if it succeeded, and
ignored (a new run is started) if it failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_cml import runs
from airflow_provider_cml.exceptions import CmlApiError

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.hooks.cml import CmlHook

STATE_KEY = "cml_job_run"
TRY_NUMBER_VAR = "AIRFLOW_CTX_TRY_NUMBER"
RECENT_RUNS_SEARCHED = 25


def task_identity(context: Context) -> dict[str, str]:
    """Environment variables naming this task instance (and try) in the runs it starts."""
    ti = context["ti"]
    return {
        "AIRFLOW_CTX_DAG_ID": str(ti.dag_id),
        "AIRFLOW_CTX_TASK_ID": str(ti.task_id),
        "AIRFLOW_CTX_DAG_RUN_ID": str(ti.run_id),
        "AIRFLOW_CTX_MAP_INDEX": str(getattr(ti, "map_index", -1)),
        TRY_NUMBER_VAR: str(ti.try_number),
    }


def carries_identity(run: dict[str, Any], context: Context) -> bool:
    """Whether ``run`` was started by this task instance (any try): its environment names it.

    :param run: a run as the API answers it.
    :param context: the task's Airflow context.
    """
    env = runs.run_environment(run)
    wanted = {k: v for k, v in task_identity(context).items() if k != TRY_NUMBER_VAR}
    return all(env.get(k) == v for k, v in wanted.items())


class EarlierRunFinder:
    """Remembers the run a try started and finds it again on a later try."""

    def __init__(self, hook: CmlHook, context: Context) -> None:
        self.hook = hook
        self.context = context
        self.identity = task_identity(context)
        self.store = context.get("task_state_store")  # type: ignore[call-overload]

    def remember(self, project_id: str, job_id: str, run_id: str) -> None:
        """Keep the run's ids where a later try looks first (Airflow 3.3+'s task state store).

        :param project_id: project ID.
        :param job_id: job ID.
        :param run_id: run ID.
        """
        if self.store is not None:
            self.store.set(STATE_KEY, {"project_id": project_id, "job_id": job_id, "run_id": run_id})

    def find(self, project_id: str, job_id: str) -> dict[str, Any] | None:
        """An active or succeeded run from an earlier try of this task instance, else ``None``."""
        if int(self.identity[TRY_NUMBER_VAR]) <= 1:
            return None
        run = self._from_store(project_id, job_id) or self._from_environment(project_id, job_id)
        if run is None:
            return None
        status = runs.status_of(run)
        if runs.is_success(status) or not runs.is_terminal(status):
            return run
        self.hook.log.info("The earlier try's run %s ended %s; starting a new run.", run.get("id"), status)
        return None

    def _from_store(self, project_id: str, job_id: str) -> dict[str, Any] | None:
        stored: Any = self.store.get(STATE_KEY) if self.store is not None else None
        if (
            not isinstance(stored, dict)
            or stored.get("project_id") != project_id
            or stored.get("job_id") != job_id
        ):
            return None
        try:
            return self.hook.get_job_run(project_id, job_id, stored["run_id"])
        except CmlApiError as exc:
            self.hook.log.warning("Could not read the earlier try's run %s: %s", stored["run_id"], exc)
            return None

    def _from_environment(self, project_id: str, job_id: str) -> dict[str, Any] | None:
        for run in self.hook.list_job_runs(project_id, job_id, limit=RECENT_RUNS_SEARCHED):
            if carries_identity(run, self.context):
                return run  # newest first: the latest earlier try
        return None
