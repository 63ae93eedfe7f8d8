"""Jobs as code. CmlCreateOrUpdateJobOperator and CmlSubmitRunOperator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml._compat import BaseOperator, mask_if_sensitive
from airflow_provider_cml.defaults import DEFAULT_CONN_ID
from airflow_provider_cml.exceptions import CmlConfigError, CmlException
from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.workloads.jobs import CmlJobSpec

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.hooks.cml import CmlHook
    from airflow_provider_cml.workloads.job_runs import RunRef

JobSpecLike = CmlJobSpec | Mapping[str, Any]
#: Seconds a failed task's clean-up waits for its stopped run to end before deleting the job.
CLEAN_UP_WAIT = 60


def _mask_environment(spec: CmlJobSpec) -> None:
    for name, value in (spec.environment or {}).items():
        mask_if_sensitive(name, value)


class CmlCreateOrUpdateJobOperator(BaseOperator):
    """Make a Cloudera AI job match its definition in the DAG; return (and XCom) the job's ID.

    The job is found by name in the project: created when missing, updated when a field the
    definition sets differs, left alone when it matches. The definition is checked before any
    request (a script path, positive resources, not both a schedule and a parent); a runtime is
    checked against the workbench's runtimes before the job is created or changed.

    :param project: project name or ID (templated).
    :param job_spec: the job's definition: a :class:`~airflow_provider_cml.workloads.jobs.CmlJobSpec`, or a
        mapping of its fields (templated when a mapping), e.g. ``{"name": "train", "script":
        "train.py", "memory": 4, "runtime_identifier": "..."}``.
    :param cml_conn_id: Airflow connection of type ``cml``.
    """

    template_fields: Sequence[str] = ("project", "job_spec")
    template_fields_renderers = {"job_spec": "json"}
    ui_color = "#f96702"

    def __init__(
        self, *, project: str, job_spec: JobSpecLike, cml_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(job_spec, (CmlJobSpec, Mapping)):
            raise CmlConfigError(
                f"job_spec must be a CmlJobSpec or a mapping of its fields, not {job_spec!r}."
            )
        self.project = project
        self.job_spec = job_spec
        self.cml_conn_id = cml_conn_id

    def execute(self, context: Context) -> str:
        """Create or update the job; push ``job_id`` and ``job_action`` (created/updated/unchanged).

        :param context: the task's Airflow context.
        """
        from airflow_provider_cml.hooks.cml import CmlHook

        spec = CmlJobSpec.of(self.job_spec)
        _mask_environment(spec)
        job, action = CmlHook(self.cml_conn_id).jobs.ensure_job(self.project, spec)
        job_id = str(job["id"])
        context["ti"].xcom_push(key="job_id", value=job_id)
        context["ti"].xcom_push(key="job_action", value=action)
        return job_id


class CmlSubmitRunOperator(CmlRunJobOperator):
    """Run a script once in Cloudera AI without a hand-made job: define the job, run it, wait.

    The job is named for the task (``airflow <dag_id>.<task_id>``, or ``job_name``) and, in a
    mapped task, for its map index too (``... [3]``), so instances of one ``.expand()`` never meet
    each other's active runs. It is created or updated to match ``job_spec`` (see
    :class:`CmlCreateOrUpdateJobOperator`), then started and waited for exactly as by
    :class:`~airflow_provider_cml.operators.cml.CmlRunJobOperator` (environment overrides,
    deferrable, timeout, reattach, Job Retry), whose parameters it takes too.

    :param project: project name or ID (templated).
    :param job_spec: the job's definition (``name`` optional): a
        :class:`~airflow_provider_cml.workloads.jobs.CmlJobSpec` or a mapping of its fields (templated).
    :param job_name: the job's name instead of the task's (the map index is still added).
    :param delete_job_after: delete the job once its run ended (success or not), if this task
        created it; needs ``wait_for_completion``.
    :param kwargs: :class:`~airflow_provider_cml.operators.cml.CmlRunJobOperator` parameters
        (``environment``, ``arguments``, ``timeout``, ``deferrable``...).
    """

    template_fields: Sequence[str] = (*CmlRunJobOperator.template_fields, "job_spec", "job_name")
    template_fields_renderers = {**CmlRunJobOperator.template_fields_renderers, "job_spec": "json"}

    def __init__(
        self,
        *,
        project: str,
        job_spec: JobSpecLike,
        job_name: str | None = None,
        delete_job_after: bool = False,
        **kwargs: Any,
    ) -> None:
        if "job" in kwargs:
            raise CmlConfigError(
                "CmlSubmitRunOperator defines its own job: give job_spec (and job_name), not job."
            )
        super().__init__(project=project, job="", **kwargs)
        if not isinstance(job_spec, (CmlJobSpec, Mapping)):
            raise CmlConfigError(
                f"job_spec must be a CmlJobSpec or a mapping of its fields, not {job_spec!r}."
            )
        if delete_job_after and not self.wait_for_completion:
            raise CmlConfigError(
                "delete_job_after=True needs wait_for_completion=True: the job can only be deleted once "
                "its run has ended."
            )
        self.job_spec = job_spec
        self.job_name = job_name
        self.delete_job_after = delete_job_after
        self._job_created = False

    def job_name_for(self, context: Context) -> str:
        """The job's name for this task instance: ``job_name`` (or the task's), plus the map index.

        :param context: the task's Airflow context.
        """
        ti = context["ti"]
        given = self.job_spec.name if isinstance(self.job_spec, CmlJobSpec) else self.job_spec.get("name")
        base = self.job_name or given or f"airflow {ti.dag_id}.{ti.task_id}"
        map_index = getattr(ti, "map_index", -1)
        return f"{base} [{map_index}]" if map_index is not None and map_index >= 0 else str(base)

    def execute(self, context: Context) -> str:
        """Create or update the task's job, then start and wait as CmlRunJobOperator does.

        :param context: the task's Airflow context.
        """
        name = self.job_name_for(context)
        if isinstance(self.job_spec, CmlJobSpec):
            spec = self.job_spec.replace_name(name)
        else:
            spec = CmlJobSpec.of({**self.job_spec, "name": name})
        _mask_environment(spec)
        job, action = self.hook.jobs.ensure_job(self.project, spec)
        self.job = str(job["id"])
        self._job_created = action == "created"
        context["ti"].xcom_push(key="job_action", value=action)
        try:
            result = self.run_job(context)  # not super().execute: see run_job
        except Exception:
            self._clean_up(self._started)  # a failure: the run may still be active
            raise
        # Returning (not deferring) means the run has ended, also when deferrable: a run that ended
        # before the deferral is never handed to the trigger.
        if self.wait_for_completion:
            self._clean_up(None)
        return result

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired; then delete the job if asked.

        :param context: the task's Airflow context.
        :param event: the trigger's event (its ``carry``: the job's ID, whether this task created it).
        """
        try:
            result = super().execute_complete(context, event)
        except Exception:
            # A timeout's stop may not have ended the run yet; an error event says nothing of it.
            self._clean_up(self._run_of(event))
            raise
        self._clean_up(None)
        return result

    @staticmethod
    def _run_of(event: Mapping[str, Any] | None) -> RunRef | None:
        ref = (event or {}).get("ref")
        ids = (
            [str(ref.get(key) or "") for key in ("project_id", "job_id", "run_id")]
            if isinstance(ref, Mapping)
            else []
        )
        from airflow_provider_cml.workloads.job_runs import RunRef

        return RunRef(*ids) if ids and all(ids) else None

    def _carried(self) -> dict[str, Any]:
        return {"job_id": self.job, "job_created": self._job_created}

    def _restore(self, carried: Mapping[str, Any]) -> None:
        self.job = str(carried.get("job_id") or self.job)
        self._job_created = bool(carried.get("job_created"))

    def _clean_up(self, active: RunRef | None) -> None:
        """Delete the job this task created, once its run ended (never fails the task).

        :param active: this task's run when it may still be active (a failure path): it is stopped
            and waited for first, so the job is never deleted under a live run.
        """
        if not (self.delete_job_after and self._job_created and self.job):
            return
        hook: CmlHook = self.hook
        try:
            if active is not None and not hook.end_run(
                active, timeout=CLEAN_UP_WAIT, poll_interval=min(self.poll_interval, 5.0)
            ):
                self.log.warning(
                    "Cloudera AI job %s was not deleted: its run %s was asked to stop but had not ended "
                    "within %ds. Delete the job once the run has ended.",
                    self.job,
                    active.run_id,
                    CLEAN_UP_WAIT,
                )
                return
            hook.jobs.delete_job(self.project, self.job)
            self.log.info("Deleted Cloudera AI job %s, created for this run.", self.job)
        except CmlException as exc:
            self.log.warning("Could not delete Cloudera AI job %s; delete it by hand: %s", self.job, exc)
