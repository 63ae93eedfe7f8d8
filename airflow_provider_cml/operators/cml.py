"""CmlRunJobOperator: start a Cloudera AI job run, optionally wait for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_cml._compat import BaseOperator, default_deferrable, mask_secret
from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.links import RUN_URL_XCOM_KEY, CmlJobRunLink
from airflow_provider_cml.validation import validate_positive

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.hooks.cml import CmlHook

# The hook module imports requests; importing it only when a task runs keeps DAG parsing light.
DEFAULT_CONN_ID = "cml_default"


class CmlRunJobOperator(BaseOperator):
    """Start a run of a Cloudera AI job, with environment overrides, and wait for it to end.

    The run id is pushed to XCom (key ``run_id``, plus ``project_id`` and ``job_id``) as soon as the
    run exists, and returned (so it is also the task's ``return_value``).

    On a legacy v1 (CDSW Jobs API) connection, ``project`` is ``"<user-or-team>/<project-slug>"`` and
    ``job`` the numeric job ID from the job's web address; the job is started, its ``engine_id`` is
    returned, and ``wait_for_completion`` must be ``False`` because v1 cannot report status.

    :param project: project name or ID (templated).
    :param job: job name or ID within the project (templated).
    :param environment: environment-variable overrides for this run, e.g.
        ``{"RUN_DATE": "{{ ds }}"}`` (templated). Values must be strings, or numbers/booleans, which
        are turned into strings.
    :param arguments: one string given to the job as ``JOB_ARGUMENTS`` (templated, v2 only).
    :param wait_for_completion: wait until the run ends; fail the task unless it succeeded.
    :param poll_interval: seconds between status checks while waiting.
    :param timeout: seconds to wait at most; when it passes the run is stopped and the task fails.
        ``None`` waits as long as the run takes (bounded by ``execution_timeout`` if set).
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param deferrable: wait in the triggerer instead of a worker slot (default: Airflow's
        ``[operators] default_deferrable``). The timeout still stops the run.
    :param reattach_on_retry: on a retry of the same task instance, reattach to the run an earlier
        try started while it is active (or take its success) instead of starting another run.
    """

    template_fields: Sequence[str] = ("project", "job", "environment", "arguments")
    template_fields_renderers = {"environment": "json"}
    ui_color = "#f96702"
    operator_extra_links = (CmlJobRunLink(),)

    def __init__(
        self,
        *,
        project: str,
        job: str,
        environment: Mapping[str, Any] | None = None,
        arguments: str | None = None,
        wait_for_completion: bool = True,
        poll_interval: float = 30,
        timeout: float | None = None,
        cml_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        reattach_on_retry: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        validate_positive("poll_interval", poll_interval, allow_none=False)
        validate_positive("timeout", timeout)
        self.project = project
        self.job = job
        self.environment = environment
        self.arguments = arguments
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.cml_conn_id = cml_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.reattach_on_retry = reattach_on_retry
        self._started: tuple[str, str, str] | None = None
        self._run_url: str | None = None

    @cached_property
    def hook(self) -> CmlHook:
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook(self.cml_conn_id)

    def _mask_sensitive_overrides(self) -> None:
        # Values whose names Airflow deems sensitive (PASSWORD, SECRET, TOKEN, ...) are masked in logs.
        for name, value in (self.environment or {}).items():
            if isinstance(value, str) and value:
                mask_secret(value, name)

    def execute(self, context: Context) -> str:
        from airflow_provider_cml.reattach import EarlierRunFinder, task_identity

        self._mask_sensitive_overrides()
        hook = self.hook
        if hook.config.api_version == "v1":
            return self._execute_v1(context)
        job = hook.resolve_job(self.project, self.job)
        project_id = hook.resolve_project(self.project)["id"]
        finder = EarlierRunFinder(hook, context)
        run = finder.find(project_id, job["id"]) if self.reattach_on_retry else None
        if run is not None:
            self.log.info(
                "Reattaching to run %s (%s) started by an earlier try.", run["id"], run.get("status")
            )
        else:
            environment = {**(self.environment or {}), **task_identity(context)}
            run = hook.start_job_run(project_id, job["id"], environment, self.arguments)
            finder.remember(project_id, job["id"], str(run["id"]))
        run_id = str(run["id"])
        self._started = (project_id, str(job["id"]), run_id)
        self._run_url = hook.job_run_url(self.project, str(job["id"]), run_id)
        self.log.info("Cloudera AI run %s: %s", run_id, self._run_url or "(no link)")
        ti = context["ti"]
        ti.xcom_push(key="run_id", value=run_id)
        ti.xcom_push(key="project_id", value=project_id)
        ti.xcom_push(key="job_id", value=str(job["id"]))
        ti.xcom_push(key=RUN_URL_XCOM_KEY, value=self._run_url)
        if not self.wait_for_completion:
            return run_id
        if self.deferrable:
            self._defer_unless_ended(context, run)
            return run_id
        from airflow_provider_cml.runs import describe_run

        final = hook.wait_for_job_run(
            project_id, str(job["id"]), run_id, poll_interval=self.poll_interval, timeout=self.timeout
        )
        self.log.info("Cloudera AI %s.", describe_run(final))
        return run_id

    def _defer_unless_ended(self, context: Context, run: Mapping[str, Any]) -> None:
        """Hand the waiting to the triggerer unless ``run`` already ended.

        ``run`` is the start's (or the reattach look-up's) fresh answer, so it is the status check;
        asking again right away would only cost a request.
        """
        from airflow_provider_cml import statuses
        from airflow_provider_cml.runs import check_run_outcome
        from airflow_provider_cml.triggers.cml import CmlJobRunTrigger

        project_id, job_id, run_id = self._started  # type: ignore[misc]
        if statuses.is_terminal(run.get("status")):
            check_run_outcome(run, link=self._run_url)
            return
        self.defer(
            trigger=CmlJobRunTrigger(
                project_id=project_id,
                job_id=job_id,
                run_id=run_id,
                conn_id=self.cml_conn_id,
                poll_interval=self.poll_interval,
                end_time=self._deadline(context),
                run_url=self._run_url,
            ),
            method_name="execute_complete",
        )

    def _deadline(self, context: Context) -> float | None:
        """UNIX time when waiting must end: ``timeout`` from now, or the end of ``execution_timeout``.

        The trigger stops the run at that time; without this, Airflow's own deferral timeout would
        fail the task but leave the run going.
        """
        import time

        deadlines = []
        now = time.time()
        if self.timeout is not None:
            deadlines.append(now + self.timeout)
        if self.execution_timeout is not None:
            # The task's start; now when Airflow has not recorded it (Airflow 2's dag.test()).
            start_date = getattr(context["ti"], "start_date", None)
            started = start_date.timestamp() if start_date is not None else now
            deadlines.append(started + self.execution_timeout.total_seconds())
        return min(deadlines) if deadlines else None

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired: return the run id on success, raise a clear error otherwise."""
        from airflow_provider_cml.runs import describe_run
        from airflow_provider_cml.triggers.cml import outcome_of_event

        run = outcome_of_event(event)
        self.log.info("Cloudera AI %s.", describe_run(run))
        return str(run.get("id"))

    def _execute_v1(self, context: Context) -> str:
        if self.wait_for_completion:
            raise CmlConfigError(
                f"Connection {self.cml_conn_id!r} uses the legacy v1 Jobs API, which cannot report a run's "
                "status, so this task cannot wait for the job. Set wait_for_completion=False (the task "
                "then only starts the job), or use a v2 connection."
            )
        answer = self.hook.start_job_run(self.project, self.job, self.environment, self.arguments)
        engine_id = str(answer.get("engine_id"))
        context["ti"].xcom_push(key="engine_id", value=engine_id)
        return engine_id

    def on_kill(self) -> None:
        """Stop the remote run when Airflow kills the task, so nothing keeps running unseen."""
        if self._started and self.wait_for_completion:
            project_id, job_id, run_id = self._started
            self.hook.stop_job_run_quietly(project_id, job_id, run_id)
