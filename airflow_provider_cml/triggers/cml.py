"""Triggers: CmlJobRunTrigger waits for a Cloudera AI v2 run in the triggerer, without a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_cml import runs
from airflow_provider_cml._compat import trigger_event_hold
from airflow_provider_cml.connection_fields import DEFAULT_CONN_ID
from airflow_provider_cml.exceptions import CmlException, CmlJobRunError, CmlJobRunTimeout
from airflow_provider_cml.runs import RunRef, StopResult
from airflow_provider_cml.waiting import (
    DEFAULT_UNKNOWN_GRACE,
    Next,
    Outcome,
    WaitRule,
    WaitState,
    log_decision,
)

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook

# Fields of a run that an event may carry: never ``environment`` (it may hold secrets).
_EVENT_RUN_FIELDS = (
    "id",
    "job_id",
    "project_id",
    "status",
    "created_at",
    "scheduling_at",
    "running_at",
    "finished_at",
)
#: Event kinds for a wait that ended before the run did, and the error each becomes.
_GAVE_UP = {Next.TIMED_OUT: "timeout", Next.UNCLEAR: "unclear"}


class CmlJobRunTrigger(BaseTrigger):
    """Poll one run until it ends, then fire one event.

    The event is a dict with ``status`` one of ``success``, ``failed``, ``timeout``, ``unclear``,
    ``error``, plus ``run_id``, ``project_id``, ``job_id``, ``message``, ``run_url`` and ``run`` (the
    run without its environment). :func:`outcome_of_event` turns it back into a result or an error.

    :param project_id: project ID (not a name: names are resolved before deferring).
    :param job_id: job ID.
    :param run_id: run ID.
    :param conn_id: Airflow connection of type ``cml``.
    :param poll_interval: seconds between status checks.
    :param end_time: UNIX time after which the trigger stops waiting (``None``: no limit).
    :param owns_run: whether the deferring task started this run. Only then does the trigger stop
        it, when the wait gives up or the task is killed; a sensor, or a task waiting for someone
        else's run to free the job, never stops it.
    :param run_url: the run's page, repeated in failure messages.
    :param unknown_grace: seconds a run may stay ``ENGINE_UNKNOWN`` before the wait gives up.
    :param follow_retries: wait for the platform's Job Retry runs of a failed run.
    :param not_before: UNIX time before which no event fires (default: the deferral plus
        ``[cml] trigger_event_hold`` seconds, never past ``end_time``). An event that comes sooner
        can make Airflow mark a succeeded task failed (apache/airflow issues 71580, 72716).
    :param stop_on_timeout: the former name of ``owns_run`` (triggers serialised by earlier builds).
    :param carry: what the deferring task needs back when it resumes (JSON-serialisable), echoed in
        every event as ``carry``: ``defer(kwargs=...)`` does not survive every runner (``dag.test()``
        replaces them with the event).
    """

    def __init__(
        self,
        *,
        project_id: str,
        job_id: str,
        run_id: str,
        conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 30.0,
        end_time: float | None = None,
        owns_run: bool = True,
        run_url: str | None = None,
        unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
        follow_retries: bool = True,
        not_before: float | None = None,
        carry: Mapping[str, Any] | None = None,
        stop_on_timeout: bool | None = None,
    ) -> None:
        super().__init__()
        self.ref = RunRef(project_id, job_id, run_id)
        self.conn_id = conn_id
        self.end_time = end_time
        self.owns_run = owns_run if stop_on_timeout is None else stop_on_timeout
        if not_before is None:  # built by the deferring task: the hold counts from now
            not_before = time.time() + trigger_event_hold()
        self.not_before = not_before if end_time is None else min(not_before, end_time)
        self.poll_interval = float(poll_interval)  # it may come back from JSON as an int
        self.run_url = run_url
        self.unknown_grace = unknown_grace
        self.follow_retries = follow_retries
        self.carry = dict(carry or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and keyword arguments that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.ref._asdict(),
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "owns_run": self.owns_run,
                "run_url": self.run_url,
                "unknown_grace": self.unknown_grace,
                "follow_retries": self.follow_retries,
                "not_before": self.not_before,
                "carry": self.carry,
            },
        )

    def _hook(self) -> CmlHook:
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook(self.conn_id)

    def _event(self, kind: str, message: str, outcome: Outcome | None = None) -> TriggerEvent:
        run = outcome.decision.run if outcome else None
        safe_run = {key: run[key] for key in _EVENT_RUN_FIELDS if run and key in run}
        current = runs.current_ref(self.ref, outcome.decision.state if outcome else None)
        return TriggerEvent(
            {
                "status": kind,
                **current._asdict(),
                "started_run_id": self.ref.run_id,
                "message": message,
                "run": safe_run,
                "run_url": self.run_url,
                "note": outcome.note if outcome else "",
                "carry": self.carry,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll, sleep and act on the waiting rule's decisions until one ends the wait."""
        hook = self._hook()
        rule = WaitRule(
            self.poll_interval, self.end_time, self.unknown_grace, follow_retries=self.follow_retries
        )
        state = WaitState()
        try:
            while True:
                rule, decision = await hook.astep(self.ref, rule, state, time.time)
                state = decision.state
                log_decision(self.log, self.ref.run_id, decision)
                if decision.next is not Next.WAIT:
                    event = await self._final_event(hook, Outcome(self.ref, rule, decision, self.run_url))
                    break
                await asyncio.sleep(decision.sleep)
        except CmlException as exc:  # e.g. a bad connection: one error event, not a crashed trigger
            event = self._event("error", str(exc))
        except Exception as exc:  # anything else a broken server provokes: the same, without details
            self.log.exception("Cloudera AI trigger for run %s failed unexpectedly.", self.ref.run_id)
            event = self._event(
                "error", f"The Cloudera AI trigger failed unexpectedly ({type(exc).__name__})."
            )
        finally:
            await hook.aclose()
        await self._hold()
        yield event

    async def _hold(self) -> None:
        """Keep the event until ``not_before``: the scheduler must first see the deferral end."""
        early = self.not_before - time.time()
        if early > 0:
            self.log.debug("Holding the event %.1fs (Airflow's deferral race window).", early)
            await asyncio.sleep(early)

    async def _final_event(self, hook: CmlHook, outcome: Outcome) -> TriggerEvent:
        decision = outcome.decision
        if decision.next is Next.ERROR:
            return self._event("error", str(decision.error))
        status = decision.state.status
        current = runs.current_ref(self.ref, decision.state)
        if decision.next is Next.FINISHED:
            kind = "success" if runs.is_success(status) else "failed"
            return self._event(
                kind, f"Cloudera AI run {current.run_id} ended {status}{outcome.note}.", outcome
            )
        if self.owns_run:
            stop = await hook.astop_if_active(current)
            self.log.info("Cloudera AI run %s: %s.", current.run_id, stop.value or "not stopped")
        else:
            stop = StopResult.NOT_ASKED
        return self._event(_GAVE_UP[decision.next], outcome.gave_up_message(stop), outcome)

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user killed the deferred task (mark failed/success, clear).

        The run is stopped only when the task started it (``owns_run``): a sensor's run, or the run
        a busy job was waited for, belongs to someone else and keeps going.
        """
        if not self.owns_run:
            self.log.info(
                "The task was killed; Cloudera AI run %s is not its own: left running.", self.ref.run_id
            )
            return
        hook = self._hook()
        try:
            stop = await hook.astop_if_active(self.ref)
            self.log.info("The task was killed; Cloudera AI run %s: %s.", self.ref.run_id, stop.value)
        finally:
            await hook.aclose()


#: What turns a finished run into its result or its error: :meth:`CmlHook.finished`, which adds
#: what the platform's listings say about a failure.
Finish = Callable[..., Mapping[str, Any]]


def outcome_of_event(event: Mapping[str, Any] | None, finish: Finish | None = None) -> Mapping[str, Any]:
    """Turn a trigger event into the finished run, or raise the matching clear error.

    Shared by the deferrable operator and sensor so both read events the same way.

    :param event: the event's payload.
    :param finish: ``CmlHook.finished`` of the task's hook; without it a failure says the status's hint.
    """
    if not event or "status" not in event:
        raise CmlException(f"The Cloudera AI trigger sent an unexpected event: {event!r}")
    kind = event["status"]
    if kind in ("success", "failed") and finish is not None and event.get("run"):
        ref = RunRef(str(event.get("project_id")), str(event.get("job_id")), str(event.get("run_id")))
        return finish(ref, event["run"], note=event.get("note", ""), link=event.get("run_url"))
    if kind == "success":
        return event.get("run") or {"id": event.get("run_id")}
    if kind == "failed":
        runs.check_run_outcome(event["run"], link=event.get("run_url"))
    run_id, message = str(event.get("run_id")), str(event.get("message"))
    if kind == "timeout":
        raise CmlJobRunTimeout(message, run_id=run_id, status=None)
    if kind == "unclear":
        raise CmlJobRunError(message, run_id=run_id, status=runs.UNKNOWN)
    raise CmlException(event.get("message") or f"The Cloudera AI trigger failed: {event!r}")
