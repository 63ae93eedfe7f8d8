"""Wait for a Cloudera AI workload in the triggerer, without holding a worker slot.

:class:`CmlWorkloadTrigger` waits on any :class:`~airflow_provider_cml.waiting.kinds.WorkloadKind`;
:class:`CmlJobRunTrigger` is it for a job run, with the arguments and events job runs always had.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_cml._compat import trigger_event_hold
from airflow_provider_cml.defaults import DEFAULT_CONN_ID
from airflow_provider_cml.exceptions import CmlException
from airflow_provider_cml.waiting.kinds import WorkloadKind, load_kind
from airflow_provider_cml.waiting.rule import (
    DEFAULT_UNKNOWN_GRACE,
    Next,
    Outcome,
    WaitRule,
    WaitState,
    log_decision,
)
from airflow_provider_cml.workloads.job_runs import JOB_RUN, RunRef, StopResult

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook

#: Event kinds for a wait that ended before the run did, and the error each becomes.
_GAVE_UP = {Next.TIMED_OUT: "timeout", Next.UNCLEAR: "unclear"}


class CmlWorkloadTrigger(BaseTrigger):
    """Poll one workload of any kind until it ends, then fire one event.

    The event is a dict with ``status`` one of ``success``, ``failed``, ``timeout``, ``unclear``,
    ``error``, plus ``message``, ``kind``, ``ref`` (the IDs of what it ended on), ``answer`` (the
    kind's event fields of its last answer), ``link``, ``note`` and ``carry``.
    :func:`outcome_of_event` turns it back into a result or an error.

    :param kind: the kind's ``home`` (``module:NAME``; see
        :class:`~airflow_provider_cml.waiting.kinds.WorkloadKind`).
    :param ref: the workload's IDs, as a dict of its kind's ref fields.
    :param conn_id: Airflow connection of type ``cml``.
    :param poll_interval: seconds between status checks.
    :param end_time: UNIX time after which the trigger stops waiting (``None``: no limit).
    :param owns: whether the deferring task started the workload. Only then does the trigger stop
        it, when the wait gives up or the task is killed.
    :param link: its page, repeated in failure messages.
    :param unknown_grace: seconds it may stay in an unclear status before the wait gives up.
    :param follow_retries: wait for the platform's retries of a failed one (job runs' Job Retry).
    :param not_before: UNIX time before which no event fires (default: the deferral plus
        ``[cml] trigger_event_hold`` seconds, never past ``end_time``). An event that comes sooner
        can make Airflow mark a succeeded task failed (apache/airflow issues 71580, 72716).
    :param carry: what the deferring task needs back when it resumes (JSON-serialisable), echoed in
        every event: ``defer(kwargs=...)`` does not survive every runner.
    :param since: after a restart request, the kind's ``baseline`` of the answer read before it
        (status and instance timestamps: plain JSON, no secrets). Only an answer showing the
        workload started anew may end the wait.
    :param limit: the task's setting whose end is ``end_time`` (``timeout`` or
        ``execution_timeout``), named in a timeout's message.
    """

    def __init__(
        self,
        *,
        kind: str,
        ref: Mapping[str, Any],
        conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 30.0,
        end_time: float | None = None,
        owns: bool = True,
        link: str | None = None,
        unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
        follow_retries: bool = False,
        not_before: float | None = None,
        carry: Mapping[str, Any] | None = None,
        since: Mapping[str, Any] | None = None,
        limit: str = "timeout",
    ) -> None:
        super().__init__()
        self.kind = kind
        self.ref = dict(ref)
        self.conn_id = conn_id
        self.end_time = end_time
        self.owns = owns
        if not_before is None:  # built by the deferring task: the hold counts from now
            not_before = time.time() + trigger_event_hold()
        self.not_before = not_before if end_time is None else min(not_before, end_time)
        self.poll_interval = float(poll_interval)  # it may come back from JSON as an int
        self.link = link
        self.unknown_grace = unknown_grace
        self.follow_retries = follow_retries
        self.carry = dict(carry or {})
        self.since = dict(since) if since is not None else None
        self.limit = limit

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and keyword arguments that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "kind": self.kind,
                "ref": self.ref,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "owns": self.owns,
                "link": self.link,
                "unknown_grace": self.unknown_grace,
                "follow_retries": self.follow_retries,
                "not_before": self.not_before,
                "carry": self.carry,
                "since": self.since,
                "limit": self.limit,
            },
        )

    def _hook(self) -> CmlHook:
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook(self.conn_id)

    def _event(
        self, kind: WorkloadKind, status: str, message: str, outcome: Outcome | None = None
    ) -> TriggerEvent:
        answer = outcome.decision.run if outcome else None
        ref = kind.ref_from(self.ref)
        current = kind.current(ref, outcome.decision.state if outcome else None)
        payload = {
            "status": status,
            "message": message,
            "kind": self.kind,
            "ref": current._asdict(),
            "answer": kind.event_answer(answer),
            "link": self.link,
            "note": outcome.note if outcome else "",
            "carry": self.carry,
        }
        return TriggerEvent({**payload, **self._more(ref, current, payload)})

    def _more(self, started: Any, current: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
        """What a subclass adds to every event (nothing here)."""
        return {}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll, sleep and act on the waiting rule's decisions until one ends the wait."""
        hook = self._hook()
        kind = JOB_RUN
        try:
            kind = load_kind(self.kind)
            ref = kind.ref_from(self.ref)
            # The rule's clock is the transport's: monotonic (a UNIX end time is converted once).
            deadline = None if self.end_time is None else time.monotonic() + (self.end_time - time.time())
            rule = WaitRule(
                self.poll_interval,
                deadline,
                self.unknown_grace,
                follow_retries=self.follow_retries,
                kind=kind,
                since=self.since,
                limit=self.limit,
            )
            state = WaitState()
            while True:
                rule, decision = await hook.astep(ref, rule, state)
                state = decision.state
                log_decision(self.log, kind.id_of(ref), decision, kind.name)
                if decision.next is not Next.WAIT:
                    event = await self._final_event(hook, Outcome(ref, rule, decision, self.link))
                    break
                await asyncio.sleep(decision.sleep)
        except CmlException as exc:  # e.g. a bad connection: one error event, not a crashed trigger
            event = self._event(kind, "error", str(exc))
        except Exception as exc:  # anything else a broken server provokes: the same, without details
            self.log.exception("Cloudera AI trigger for %s failed unexpectedly.", self.ref)
            event = self._event(
                kind, "error", f"The Cloudera AI trigger failed unexpectedly ({type(exc).__name__})."
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
        decision, kind = outcome.decision, outcome.rule.kind
        if decision.next is Next.ERROR:
            return self._event(kind, "error", str(decision.error))
        status = decision.state.status
        if decision.next is Next.FINISHED:
            result = "success" if kind.is_success(status) else "failed"
            message = f"Cloudera AI {kind.name} {outcome.current_id} ended {status}{outcome.note}."
            return self._event(kind, result, message, outcome)
        if self.owns:
            current = kind.current(outcome.ref, decision.state)
            stop = await hook.astop_if_active(current, kind)
            self.log.info(
                "Cloudera AI %s %s: %s.", kind.name, outcome.current_id, stop.value or "not stopped"
            )
        else:
            stop = StopResult.NOT_ASKED
        return self._event(kind, _GAVE_UP[decision.next], outcome.gave_up_message(stop), outcome)

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user killed the deferred task (mark failed/success, clear).

        The workload is stopped only when the task started it (``owns``): a sensor's, or the run a
        busy job was waited for, belongs to someone else and keeps going.
        """
        kind = load_kind(self.kind)
        ref = kind.ref_from(self.ref)
        if not self.owns:
            self.log.info(
                "The task was killed; Cloudera AI %s %s is not its own: left running.",
                kind.name,
                kind.id_of(ref),
            )
            return
        hook = self._hook()
        try:
            stop = await hook.astop_if_active(ref, kind)
            self.log.info(
                "The task was killed; Cloudera AI %s %s: %s.", kind.name, kind.id_of(ref), stop.value
            )
        finally:
            await hook.aclose()


class CmlJobRunTrigger(CmlWorkloadTrigger):
    """Poll one job run until it ends, then fire one event.

    Its events also carry ``run_id``, ``project_id``, ``job_id`` (of the run it ended on, a
    platform retry perhaps), ``started_run_id``, ``run`` (the run without its environment) and
    ``run_url``.

    :param project_id: project ID (not a name: names are resolved before deferring).
    :param job_id: job ID.
    :param run_id: run ID.
    :param owns_run: whether the deferring task started this run. Only then does the trigger stop
        it, when the wait gives up or the task is killed; a sensor, or a task waiting for someone
        else's run to free the job, never stops it.
    :param run_url: the run's page, repeated in failure messages.
    :param follow_retries: wait for the platform's Job Retry runs of a failed run.
    :param options: ``conn_id``, ``poll_interval``, ``end_time``, ``unknown_grace``,
        ``not_before``, ``carry``: as for :class:`CmlWorkloadTrigger`.
    """

    def __init__(
        self,
        *,
        project_id: str,
        job_id: str,
        run_id: str,
        owns_run: bool = True,
        run_url: str | None = None,
        follow_retries: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(
            kind=JOB_RUN.home,
            ref=RunRef(project_id, job_id, run_id)._asdict(),
            owns=owns_run,
            link=run_url,
            follow_retries=follow_retries,
            **options,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and keyword arguments that rebuild this trigger in the triggerer."""
        path, kwargs = super().serialize()
        for generic in ("kind", "ref", "owns", "link"):
            kwargs.pop(generic)
        return path, {**self.ref, **kwargs, "owns_run": self.owns, "run_url": self.link}

    def _more(self, started: Any, current: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **current._asdict(),
            "started_run_id": started.run_id,
            "run": payload["answer"],
            "run_url": self.link,
        }


#: What turns a finished run into its result or its error: :meth:`CmlHook.finished`, which adds
#: what the platform's listings say about a failure.
Finish = Callable[..., Mapping[str, Any]]


def outcome_of_event(event: Mapping[str, Any] | None, finish: Finish | None = None) -> Mapping[str, Any]:
    """Turn a trigger event into the finished workload's answer, or raise the matching clear error.

    Shared by the deferrable operators and sensors so all read events the same way.

    :param event: the event's payload.
    :param finish: ``CmlHook.finished`` of the task's hook; without it a failure says the status's hint.
    """
    unexpected = CmlException(f"The Cloudera AI trigger sent an unexpected event: {event!r}")
    if not event or "status" not in event:
        raise unexpected
    status = event["status"]
    if status not in ("success", "failed", "timeout", "unclear"):
        raise CmlException(event.get("message") or f"The Cloudera AI trigger failed: {event!r}")
    if not isinstance(event.get("ref"), Mapping):
        raise unexpected
    kind = load_kind(str(event.get("kind") or JOB_RUN.home))
    ref = kind.ref_from(event["ref"])
    answer = event.get("answer")
    link = event.get("link")
    if status in ("success", "failed") and finish is not None and answer:
        return finish(ref, answer, note=event.get("note", ""), link=link, kind=kind)
    if status == "success":
        return answer or {"id": kind.id_of(ref)}
    if status == "failed":
        kind.outcome(answer or {"id": kind.id_of(ref)}, link=link)
    message = str(event.get("message"))
    if status == "timeout":
        raise kind.timeout_error(message, workload_id=kind.id_of(ref), status=None)
    raise kind.error(message, workload_id=kind.id_of(ref), status=None)  # unclear
