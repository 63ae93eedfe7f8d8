"""Finding the run that an earlier try of the same task instance started, so a retry reattaches to it.

One interface, two mechanisms:

* Airflow 3.3+ gives tasks a ``task_state_store``; the run's ids are kept there.
* Everywhere (and as a fallback), each run carries the task's identity in its environment
  (``AIRFLOW_CTX_DAG_ID``, ``AIRFLOW_CTX_TASK_ID``, ``AIRFLOW_CTX_DAG_RUN_ID``, ``AIRFLOW_CTX_MAP_INDEX``,
  ``AIRFLOW_CTX_TRY_NUMBER``), and the job's recent runs are searched for it.

What a run found this way means depends on how the new try came about. A Clear is how people run a
task again; a retry after a lost worker is the same attempt going on. So:

* a run that is still active is reattached to (whichever try started it);
* a run that succeeded is taken as the result only when a try of the *current attempt* started it
  (the worker was lost, or the try failed, before it saw the run end); after a Clear, it is history
  and a new run is started;
* a run that failed is never reused: a new run is started.

The current attempt's first try is ``max_tries - retries + 1``: Airflow sets ``max_tries`` to
``try_number + retries`` when a task instance is cleared and leaves it alone on a retry (2.10 to
3.3; Airflow's own sensors find a rescheduled sensor's first try with the same sum).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_cml.exceptions import CmlApiError
from airflow_provider_cml.workloads import job_runs as runs

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


def first_try_of_attempt(context: Context) -> int:
    """The try number this task instance's current attempt began with: 1, or the first after a Clear.

    A Clear sets ``max_tries`` to the last try number plus ``retries``; a retry keeps it. When the
    context does not say (no ``max_tries``), every earlier try counts as this attempt's.

    :param context: the task's Airflow context.
    """
    ti = context["ti"]
    task = context.get("task") or getattr(ti, "task", None)
    max_tries, retries = getattr(ti, "max_tries", None), getattr(task, "retries", None)
    if not isinstance(max_tries, int) or not isinstance(retries, int) or max_tries < 0:
        return 1
    return max(1, max_tries - retries + 1)


def _try_number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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
            self.store.set(
                STATE_KEY,
                {
                    "project_id": project_id,
                    "job_id": job_id,
                    "run_id": run_id,
                    "try_number": int(self.identity[TRY_NUMBER_VAR]),
                },
            )

    def find(self, project_id: str, job_id: str) -> dict[str, Any] | None:
        """An earlier try's run to adopt (active, or a success of this attempt), else ``None``.

        :param project_id: project ID.
        :param job_id: job ID.
        """
        current = int(self.identity[TRY_NUMBER_VAR])
        if current <= 1:
            return None
        found = self._from_store(project_id, job_id) or self._from_environment(project_id, job_id)
        if found is None:
            return None
        run, started_by = found
        status = runs.status_of(run)
        if not runs.is_terminal(status):
            return run
        first = first_try_of_attempt(self.context)
        if runs.is_success(status) and started_by is not None and first <= started_by < current:
            return run
        why = (
            "this task instance was cleared since"
            if runs.is_success(status)
            else "a failed run is not reused"
        )
        self.hook.log.info(
            "The earlier run %s (try %s) ended %s and %s; starting a new run.",
            run.get("id"),
            started_by if started_by is not None else "unknown",
            status,
            why,
        )
        return None

    def _from_store(self, project_id: str, job_id: str) -> tuple[dict[str, Any], int | None] | None:
        stored: Any = self.store.get(STATE_KEY) if self.store is not None else None
        if (
            not isinstance(stored, dict)
            or stored.get("project_id") != project_id
            or stored.get("job_id") != job_id
        ):
            return None
        try:
            run = self.hook.get_job_run(project_id, job_id, stored["run_id"])
        except CmlApiError as exc:
            self.hook.log.warning("Could not read the earlier try's run %s: %s", stored["run_id"], exc)
            return None
        started_by = _try_number(runs.run_environment(run).get(TRY_NUMBER_VAR))
        return run, started_by if started_by is not None else _try_number(stored.get("try_number"))

    def _from_environment(self, project_id: str, job_id: str) -> tuple[dict[str, Any], int | None] | None:
        for run in self.hook.list_job_runs(project_id, job_id, limit=RECENT_RUNS_SEARCHED):
            if carries_identity(run, self.context):  # newest first: the latest earlier try
                return run, _try_number(runs.run_environment(run).get(TRY_NUMBER_VAR))
        return None
