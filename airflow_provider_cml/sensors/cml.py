"""Wait for a Cloudera AI workload to end; CmlJobRunSensor for a v2 job run.

:class:`CmlWorkloadSensor` watches any :class:`~airflow_provider_cml.waiting.kinds.WorkloadKind`;
:class:`CmlJobRunSensor` is it for a job run named by project, job and run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml._compat import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    default_deferrable,
)
from airflow_provider_cml.defaults import DEFAULT_CONN_ID, DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.exceptions import CmlConfigError, CmlException, CmlWorkloadTimeout
from airflow_provider_cml.hooks.lazy import LazyHook
from airflow_provider_cml.validation import validate_positive

#: Where the sensor keeps the IDs it resolved from names (Airflow 3.3+'s task state store).
RESOLVED_KEY = "cml_sensor_ids"

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger
    from airflow_provider_cml.waiting.kinds import WorkloadKind
    from airflow_provider_cml.waiting.plan import Ended, Steps, Wait
    from airflow_provider_cml.workloads.job_runs import RunRef

# The waiting rule, the job-run definitions and the hook are imported when a task runs, not when a
# DAG is parsed: parsing pays only for the classes.


class CmlWorkloadSensor(BaseSensorOperator):
    """Succeed when a Cloudera AI workload of any kind succeeds; fail when it ends otherwise.

    Statuses its kind counts as active keep it poking; a status that says nothing about progress
    too, for up to ``unknown_grace``; a transient HTTP error (no answer, 429, 5xx) never fails a
    poke. With ``soft_fail=True`` a failed workload skips the task instead of failing it. The sensor
    never stops what it watches: it does not own it.

    :param kind: what is watched (see :class:`~airflow_provider_cml.waiting.kinds.WorkloadKind`;
        ``None``: a job run).
    :param ref: its IDs, as a dict of the kind's ref fields (templated).
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param deferrable: wait in the triggerer between checks (default: Airflow's
        ``[operators] default_deferrable``). The sensor's ``timeout`` still applies.
    :param unknown_grace: seconds it may stay in an unclear status before the sensor fails;
        ``None``: no limit. Counted within one worker process (``mode="poke"``, or deferrable).
    """

    template_fields: Sequence[str] = ("ref",)
    ui_color = "#f96702"
    #: Whether the platform's retries of a failed workload are waited for (job runs' Job Retry).
    follow_retries = False

    def __init__(
        self,
        *,
        kind: WorkloadKind | None,
        ref: Mapping[str, Any] | None = None,
        cml_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        validate_positive("unknown_grace", unknown_grace)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self._kind = kind
        self.ref = dict(ref or {})
        self.cml_conn_id = cml_conn_id
        self.unknown_grace = unknown_grace
        # The wait so far (a plan paused at its sleep), kept across pokes of one worker process.
        self._plan: Steps[Ended] | None = None

    #: The :class:`~airflow_provider_cml.hooks.cml.CmlHook` for ``cml_conn_id``, made on first use.
    hook = LazyHook()

    @property
    def kind(self) -> WorkloadKind:
        """What is watched."""
        if self._kind is None:
            from airflow_provider_cml.workloads.job_runs import JOB_RUN

            return JOB_RUN
        return self._kind

    def _ref(self, context: Context | None = None) -> Any:
        """The IDs of what is watched."""
        try:
            return self.kind.ref_from(self.ref)
        except (KeyError, TypeError):
            fields = ", ".join(self.kind.ref_type._fields)
            raise CmlConfigError(
                f"ref must name the {self.kind.name}'s {fields}, not {self.ref!r}."
            ) from None

    def _wait(self, context: Context) -> Wait:
        """What the sensor waits on: never owned (a sensor never stops what it watches)."""
        from airflow_provider_cml.waiting.plan import Wait

        return Wait(
            self.kind,
            self._ref(context),
            self.poke_interval,
            self.unknown_grace,
            owns=False,
            follow_retries=self.follow_retries,
        )

    def poke(self, context: Context) -> bool:
        """One status check: the whole-wait plan, driven until it sleeps (deferrable: then defer).

        The plan is kept between pokes of one worker process (``mode="poke"``), so a status that stays
        unclear, or a platform retry awaited, is counted across them. Airflow's own ``execute`` calls
        this: the sensor does not override ``execute``, since calling ``super().execute`` from it is a
        nested operator call (Airflow 2.10 warns, or refuses with ``allow_nested_operators=False``).

        :param context: the task's Airflow context.
        """
        from airflow_provider_cml.waiting.plan import Sleep, whole_wait

        paused = self._plan is not None
        if self._plan is None:
            hook = self.hook
            self._plan = whole_wait(
                self._wait(context), None, hook.clock.monotonic, self.log, hook.config.timeout
            )
        step = self.hook.run_steps(self._plan, paused=paused, until_sleep=True)
        if isinstance(step, Sleep):
            if self.deferrable:
                self._plan = None
                self.defer(trigger=self._trigger(context), method_name="execute_complete")
            return False
        self._plan = None
        self._done(step)
        return True

    def _done(self, ended: Ended) -> None:
        """Succeed, or fail (skip with ``soft_fail``; a timeout as Airflow's sensor timeout)."""
        try:
            answer = ended.result(self.hook.explain)
        except CmlWorkloadTimeout as exc:
            if self.soft_fail:
                raise AirflowSkipException(str(exc)) from exc
            raise AirflowSensorTimeout(str(exc)) from exc
        except CmlException as exc:
            if self.soft_fail:
                raise AirflowSkipException(str(exc)) from exc
            raise
        self.log.info("Cloudera AI %s%s.", self.kind.summary(answer), ended.note)

    def _trigger(self, context: Context) -> CmlWorkloadTrigger:
        """The trigger that waits in the triggerer, until the sensor's ``timeout``."""
        from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

        wait = self._wait(context)
        return CmlWorkloadTrigger.of(wait, conn_id=self.cml_conn_id, end_time=time.time() + self.timeout)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        """Resume after the trigger fired: succeed, or fail (skip with ``soft_fail``) with a clear message.

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        from airflow_provider_cml.waiting.plan import Ended

        self._done(Ended.of_event(event))


class CmlJobRunSensor(CmlWorkloadSensor):
    """Succeed when a Cloudera AI job run succeeds; fail when it ends otherwise.

    ``ENGINE_STOPPING`` keeps the sensor poking; ``ENGINE_UNKNOWN`` too, for up to ``unknown_grace``;
    a transient HTTP error (no answer, 429, 5xx) never fails a poke. With ``soft_fail=True`` a failed
    run skips the task instead of failing it. Needs a v2 connection: the v1 API cannot report status.
    The sensor never stops the run: it does not own it.

    :param project: project name or ID (templated). The upstream operator's ``project_id`` XCom
        saves a look-up per check.
    :param job: job name or ID (templated); likewise its ``job_id`` XCom.
    :param run_id: the run's id, e.g. ``start.output`` of an upstream ``CmlRunJobOperator``
        (templated).
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param deferrable: wait in the triggerer between checks (default: Airflow's
        ``[operators] default_deferrable``). The sensor's ``timeout`` still applies.
    :param unknown_grace: seconds a run may stay ``ENGINE_UNKNOWN`` before the sensor fails;
        ``None``: no limit. Counted within one worker process (``mode="poke"``, or deferrable).
    :param follow_retries: when the job has Job Retry and the run fails in a way it retries, wait
        for the platform's retry runs and end with the last one.
    """

    template_fields: Sequence[str] = ("project", "job", "run_id")

    def __init__(
        self,
        *,
        project: str,
        job: str,
        run_id: str,
        cml_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
        follow_retries: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            kind=None,  # JOB_RUN, read when first needed: see ``kind``
            cml_conn_id=cml_conn_id,
            deferrable=deferrable,
            unknown_grace=unknown_grace,
            **kwargs,
        )
        self.project = project
        self.job = job
        self.run_id = run_id
        self.follow_retries = follow_retries  # type: ignore[misc]

    def _ref(self, context: Context | None = None) -> RunRef:
        if not isinstance(self.run_id, str) or not self.run_id.strip():
            raise CmlConfigError(
                f"run_id must be the id of a Cloudera AI run (e.g. the upstream operator's output), not "
                f"{self.run_id!r}."
            )
        run_id = self.run_id.strip()
        # A reschedule sensor given names runs each check in a fresh process: Airflow 3.3's task
        # state store keeps the IDs it resolved, so later checks cost one request, not three.
        store = context.get("task_state_store") if context else None  # type: ignore[call-overload]
        cached: Any = store.get(RESOLVED_KEY) if store is not None else None
        if isinstance(cached, dict) and cached.get("names") == [self.project, self.job]:
            from airflow_provider_cml.workloads.job_runs import RunRef

            return RunRef(str(cached["project_id"]), str(cached["job_id"]), run_id)
        ref = self.hook.resolve_run(self.project, self.job, run_id)
        if store is not None:
            store.set(RESOLVED_KEY, {"names": [self.project, self.job], **ref._asdict()})
        return ref
