"""CmlJobRunSensor: wait for a Cloudera AI v2 job run to end."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_cml import statuses
from airflow_provider_cml._compat import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    default_deferrable,
)
from airflow_provider_cml.exceptions import CmlApiError, CmlJobRunError
from airflow_provider_cml.operators.cml import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.hooks.cml import CmlHook


class CmlJobRunSensor(BaseSensorOperator):
    """Succeed when a Cloudera AI job run succeeds; fail when it ends otherwise.

    ``ENGINE_STOPPING``, ``ENGINE_UNKNOWN`` and unknown statuses keep the sensor poking; a transient
    HTTP error (no answer, 429, 5xx) never fails a poke. With ``soft_fail=True`` a failed run skips
    the task instead of failing it. Needs a v2 connection: the v1 API cannot report status.

    :param project: project name or ID (templated).
    :param job: job name or ID (templated).
    :param run_id: the run's id, e.g. ``"{{ ti.xcom_pull(task_ids='train', key='run_id') }}"``
        (templated).
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param deferrable: wait in the triggerer between checks (default: Airflow's
        ``[operators] default_deferrable``). The sensor's ``timeout`` still applies; the run is not
        stopped by the sensor, which does not own it.
    """

    template_fields: Sequence[str] = ("project", "job", "run_id")
    ui_color = "#f96702"

    def __init__(
        self,
        *,
        project: str,
        job: str,
        run_id: str,
        cml_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.project = project
        self.job = job
        self.run_id = run_id
        self.cml_conn_id = cml_conn_id

    @cached_property
    def hook(self) -> CmlHook:
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook(self.cml_conn_id)

    def poke(self, context: Context) -> bool:
        from airflow_provider_cml._http import is_transient
        from airflow_provider_cml.runs import check_run_outcome

        try:
            run = self.hook.get_job_run(self.project, self.job, self.run_id)
        except CmlApiError as exc:
            if is_transient(exc):
                self.log.warning("Could not read run %s this time (%s); poking again.", self.run_id, exc)
                return False
            raise
        status = run.get("status")
        self.log.info("Cloudera AI run %s is %s.", self.run_id, status)
        if not statuses.is_terminal(status):
            return False
        try:
            check_run_outcome(run)
        except CmlJobRunError as exc:
            if self.soft_fail:
                raise AirflowSkipException(str(exc)) from exc
            raise
        return True

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        import time

        from airflow_provider_cml.triggers.cml import CmlJobRunTrigger

        project_id = self.hook.resolve_project(self.project)["id"]
        job_id = self.hook.resolve_job(project_id, self.job)["id"]
        self.defer(
            trigger=CmlJobRunTrigger(
                project_id=project_id,
                job_id=job_id,
                run_id=self.run_id,
                conn_id=self.cml_conn_id,
                poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout,
                stop_on_timeout=False,
            ),
            method_name="execute_complete",
        )
        return None

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        """Resume after the trigger fired: succeed, or fail (skip with ``soft_fail``) with a clear message."""
        from airflow_provider_cml.exceptions import CmlJobRunTimeout
        from airflow_provider_cml.runs import describe_run
        from airflow_provider_cml.triggers.cml import outcome_of_event

        try:
            run = outcome_of_event(event)
        except CmlJobRunTimeout as exc:
            if self.soft_fail:
                raise AirflowSkipException(str(exc)) from exc
            raise AirflowSensorTimeout(str(exc)) from exc
        except CmlJobRunError as exc:
            if self.soft_fail:
                raise AirflowSkipException(str(exc)) from exc
            raise
        self.log.info("Cloudera AI %s.", describe_run(run))
