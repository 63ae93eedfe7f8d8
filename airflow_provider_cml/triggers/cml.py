"""Triggers: CmlJobRunTrigger waits for a Cloudera AI v2 run in the triggerer, without a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_cml import runs
from airflow_provider_cml.connection_fields import DEFAULT_CONN_ID
from airflow_provider_cml.exceptions import CmlException, CmlJobRunError, CmlJobRunTimeout
from airflow_provider_cml.runs import RunRef, StopResult
from airflow_provider_cml.waiting import (
    DEFAULT_UNKNOWN_GRACE,
    Decision,
    Next,
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
    "failure_reason",
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
    :param stop_on_timeout: stop the remote run when the wait gives up (the operator owns its run;
        a sensor does not).
    :param run_url: the run's page, repeated in failure messages.
    :param unknown_grace: seconds a run may stay ``ENGINE_UNKNOWN`` before the wait gives up.
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
        stop_on_timeout: bool = True,
        run_url: str | None = None,
        unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
    ) -> None:
        super().__init__()
        self.ref = RunRef(project_id, job_id, run_id)
        self.conn_id = conn_id
        self.end_time = end_time
        self.stop_on_timeout = stop_on_timeout
        self.poll_interval = float(poll_interval)  # it may come back from JSON as an int
        self.run_url = run_url
        self.unknown_grace = unknown_grace

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and keyword arguments that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.ref._asdict(),
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "stop_on_timeout": self.stop_on_timeout,
                "run_url": self.run_url,
                "unknown_grace": self.unknown_grace,
            },
        )

    def _hook(self) -> CmlHook:
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook(self.conn_id)

    def _event(self, kind: str, message: str, run: Mapping[str, Any] | None = None) -> TriggerEvent:
        safe_run = {key: run[key] for key in _EVENT_RUN_FIELDS if run and key in run}
        return TriggerEvent(
            {
                "status": kind,
                **self.ref._asdict(),
                "message": message,
                "run": safe_run,
                "run_url": self.run_url,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll, sleep and act on the waiting rule's decisions until one ends the wait."""
        hook = self._hook()
        rule = WaitRule(self.poll_interval, self.end_time, self.unknown_grace)
        state = WaitState()
        try:
            while True:
                decision = rule.judge(await hook.apoll(self.ref), time.time(), state)
                state = decision.state
                log_decision(self.log, self.ref.run_id, decision)
                if decision.next is not Next.WAIT:
                    yield await self._final_event(hook, rule, decision)
                    return
                await asyncio.sleep(decision.sleep)
        finally:
            await hook.aclose()

    async def _final_event(self, hook: CmlHook, rule: WaitRule, decision: Decision) -> TriggerEvent:
        if decision.next is Next.ERROR:
            return self._event("error", str(decision.error))
        status = decision.state.status
        if decision.next is Next.FINISHED:
            kind = "success" if runs.is_success(status) else "failed"
            return self._event(kind, f"Cloudera AI run {self.ref.run_id} ended {status}.", decision.run)
        stop = await hook.astop_if_active(self.ref) if self.stop_on_timeout else StopResult.NOT_ASKED
        when, advice = rule.why_gave_up(decision, None)
        message = runs.gave_up_message(
            self.ref.run_id, status=status, when=when, advice=advice, stop=stop, link=self.run_url
        )
        return self._event(_GAVE_UP[decision.next], message)

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user killed the deferred task (mark failed/success, clear); stop the run."""
        hook = self._hook()
        try:
            await hook.astop_if_active(self.ref)
        finally:
            await hook.aclose()


def outcome_of_event(event: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Turn a trigger event into the finished run, or raise the matching clear error.

    Shared by the deferrable operator and sensor so both read events the same way.

    :param event: the event's payload.
    """
    if not event or "status" not in event:
        raise CmlException(f"The Cloudera AI trigger sent an unexpected event: {event!r}")
    kind = event["status"]
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
