"""Wait for a Cloudera AI workload to end; CmlJobRunSensor for a v2 job run.

:class:`CmlWorkloadSensor` watches any :class:`~airflow_provider_cml.waiting.kinds.WorkloadKind`;
:class:`CmlJobRunSensor` is it for a job run named by project, job and run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_cml._compat import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    default_deferrable,
)
from airflow_provider_cml.defaults import DEFAULT_CONN_ID, DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.exceptions import CmlConfigError, CmlException, CmlWorkloadError, CmlWorkloadTimeout
from airflow_provider_cml.hooks.lazy import LazyHook
from airflow_provider_cml.validation import validate_positive

#: Where the sensor keeps the IDs it resolved from names (Airflow 3.3+'s task state store).
RESOLVED_KEY = "cml_sensor_ids"

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger
    from airflow_provider_cml.waiting.kinds import WorkloadKind
    from airflow_provider_cml.waiting.rule import WaitRule, WaitState
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
        # What the waiting rule learnt so far, kept across pokes of one worker process.
        self._wait_state: WaitState | None = None
        self._rule: WaitRule | None = None

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

    def poke(self, context: Context) -> bool:
        """One status check, judged by the shared waiting rule (deferrable: then wait in the triggerer).

        Airflow's own ``execute`` calls this: the sensor does not override ``execute``, since calling
        ``super().execute`` from it is a nested operator call (Airflow 2.10 warns, or refuses with
        ``allow_nested_operators=False``).

        :param context: the task's Airflow context.
        """
        done = self._check(context)
        if not done and self.deferrable:
            self.defer(trigger=self._trigger(context), method_name="execute_complete")
        return done

    def _check(self, context: Context) -> bool:
        """One status check: ``True`` when it ended well, ``False`` while it goes on; else it raises."""
        from airflow_provider_cml.waiting import rule as waiting
        from airflow_provider_cml.waiting.rule import Next
        from airflow_provider_cml.workloads.job_runs import StopResult

        ref, kind = self._ref(context), self.kind
        rule = self._rule or waiting.WaitRule(
            self.poke_interval, None, self.unknown_grace, follow_retries=self.follow_retries, kind=kind
        )
        self._rule, decision = self.hook.step(ref, rule, self._wait_state or waiting.WaitState())
        self._wait_state = decision.state
        waiting.log_decision(self.log, kind.id_of(ref), decision, kind.name)
        if decision.next is Next.WAIT:
            return False
        if decision.next is Next.ERROR:
            raise decision.error  # type: ignore[misc]
        outcome = waiting.Outcome(ref, self._rule, decision)
        if decision.next is Next.FINISHED and decision.run is not None:
            current = kind.current(ref, decision.state)
            answer = decision.run
            self._fail_unless_succeeded(
                lambda: self.hook.finished(current, answer, note=outcome.note, kind=kind)
            )
            return True
        self._fail(outcome.gave_up(StopResult.NOT_ASKED))

    def _fail_unless_succeeded(self, finish: Callable[[], Any]) -> None:
        try:
            finish()
        except CmlWorkloadError as exc:
            self._fail(exc)

    def _fail(self, exc: CmlException) -> NoReturn:
        if self.soft_fail:
            raise AirflowSkipException(str(exc)) from exc
        raise exc

    def _trigger(self, context: Context) -> CmlWorkloadTrigger:
        """The trigger that waits in the triggerer: never the owner of what it watches."""
        from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

        ref = self._ref(context)._asdict()
        return CmlWorkloadTrigger(kind=self.kind.home, ref=ref, owns=False, **self._trigger_options())

    def _trigger_options(self) -> dict[str, Any]:
        """What every trigger of this sensor is given: its connection, cadence, deadline, grace."""
        return {
            "conn_id": self.cml_conn_id,
            "poll_interval": self.poke_interval,
            "end_time": time.time() + self.timeout,
            "unknown_grace": self.unknown_grace,
            "follow_retries": self.follow_retries,
        }

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        """Resume after the trigger fired: succeed, or fail (skip with ``soft_fail``) with a clear message.

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        from airflow_provider_cml.triggers.cml import outcome_of_event

        try:
            answer = outcome_of_event(event, self.hook.finished)
        except CmlWorkloadTimeout as exc:
            if self.soft_fail:
                raise AirflowSkipException(str(exc)) from exc
            raise AirflowSensorTimeout(str(exc)) from exc
        except CmlException as exc:
            self._fail(exc)
        self.log.info("Cloudera AI %s.", self.kind.summary(answer))


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

    def _trigger(self, context: Context) -> CmlWorkloadTrigger:
        from airflow_provider_cml.triggers.cml import CmlJobRunTrigger

        return CmlJobRunTrigger(**self._ref(context)._asdict(), owns_run=False, **self._trigger_options())
