"""A whole wait as one plan: the requests and sleeps it takes, and how it ended.

:func:`whole_wait` is a generator that yields each request (an
:class:`~airflow_provider_cml.client.attempts.Exchange`, sent back its decoded answer or thrown the
error that came instead) and each :class:`Sleep`, and returns an :class:`Ended`. It does no I/O:
``CmlHook.run_steps`` drives it with ``requests`` and ``time``, ``CmlHook.arun_steps`` with aiohttp
and ``asyncio``, and a sensor drives it one poke at a time. So the sync wait, the trigger and the
sensors are thin drivers, and :class:`Ended` is the one place that says how a wait ended: it becomes
a trigger event, comes back from one, and returns or raises for the task.

Deadlines and ``now`` are on the driver's monotonic clock.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from airflow_provider_cml.client.attempts import Exchange
from airflow_provider_cml.client.retry import is_transient
from airflow_provider_cml.defaults import DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.exceptions import CmlApiError, CmlException
from airflow_provider_cml.waiting.kinds import StopResult, WorkloadKind, load_kind, see
from airflow_provider_cml.waiting.rule import (
    Decision,
    Log,
    Next,
    WaitRule,
    WaitState,
    log_decision,
    on_cadence,
)

T = TypeVar("T")
#: Steps: yield requests (and sleeps), are sent their answers, return their result.
Steps = Generator[Any, Any, T]

#: Seconds the status read before a stop may take: past that, the stop is sent unread.
STATUS_BEFORE_STOP = 10.0
#: How each way a wait can end is named in a trigger event.
HOW = ("success", "failed", "timeout", "unclear", "error", "interrupted", "abandoned")
_GAVE_UP = {Next.TIMED_OUT: "timeout", Next.UNCLEAR: "unclear"}


@dataclass(frozen=True)
class Sleep:
    """What a plan yields to be slept (``seconds``); the driver sends back ``True`` if the task is killed."""

    seconds: float


@dataclass(frozen=True)
class Wait:
    """What one wait is on and how it behaves.

    Its values were checked where the user gave them (an operator's or sensor's constructor,
    ``CmlHook.wait_for``) and are not checked again.

    :param kind: what is waited on.
    :param ref: its IDs.
    :param poll_interval: seconds between status checks.
    :param unknown_grace: seconds it may stay in an unclear status; ``None``: no limit.
    :param owns: the task started it: only then is it stopped when the wait gives up.
    :param follow_retries: follow the platform's retries of a failed one (the kind's ``retries``).
    :param since: after a restart request, ``kind.baseline`` of the answer read before it: only an
        answer showing it started anew ends the wait.
    :param limit: the task's setting whose end is the deadline (``timeout``, ``execution_timeout``).
    :param link: its page, for messages.
    :param waited: seconds the wait was given, for a timeout's message (``None``: name ``limit``).
    :param find: what names it when ``ref`` lacks its id (JSON, for the kind's ``locate``: tags).
    :param bound: another workload whose end bounds the wait (JSON, for the kind's ``bound``).
    """

    kind: WorkloadKind
    ref: Any
    poll_interval: float = 30.0
    unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE
    owns: bool = False
    follow_retries: bool = False
    since: Mapping[str, Any] | None = None
    limit: str = "timeout"
    link: str | None = None
    waited: float | None = None
    find: Mapping[str, Any] | None = None
    bound: Mapping[str, Any] | None = None

    def rule(self, deadline: float | None) -> WaitRule:
        """The waiting rule of this wait.

        :param deadline: when it ends, on the driver's clock.
        """
        return WaitRule(self.poll_interval, deadline, self.unknown_grace, self.kind, self.since, self.limit)


@dataclass(frozen=True)
class Ended:
    """How a wait ended: the one place that says so, for the sync wait, the trigger and the sensors.

    :param how: one of :data:`HOW` (``abandoned``: the workload that runs it ended while it did not).
    :param kind: what was waited on.
    :param ref: what it ended on (a platform's retry of what it started with, perhaps).
    :param answer: its last answer (from a trigger event: the kind's ``event_fields`` of it).
    :param status: its last status read.
    :param note: words for a result reached on a platform's retry.
    :param link: its page.
    :param text: the message, when it is not made from the fields (an error; from an event).
    :param gave_up: why a wait gave up, and what became of stopping it (its message, without the link).
    :param error: the error that ended it (in the process that saw it; not carried by events).
    """

    how: str
    kind: WorkloadKind
    ref: Any
    answer: Mapping[str, Any] | None = None
    status: str | None = None
    note: str = ""
    link: str | None = None
    text: str = ""
    gave_up: str = ""
    error: CmlException | None = None

    @classmethod
    def of_answer(cls, wait: Wait, answer: Mapping[str, Any]) -> Ended:
        """A wait that needed no poll: ``answer`` is already terminal.

        :param wait: the wait.
        :param answer: the workload's terminal answer.
        """
        status = wait.kind.status_of(answer)
        how = "success" if wait.kind.is_success(status) else "failed"
        return cls(how, wait.kind, wait.ref, answer, status, link=wait.link)

    @property
    def succeeded(self) -> bool:
        """Whether it ended well."""
        return self.how == "success"

    @property
    def message(self) -> str:
        """How it ended, in words for the DAG author (never more of the answer than id and status)."""
        if self.text:
            return self.text
        kind, what = self.kind, f"{self.kind.name} {self.kind.id_of(self.ref)}"
        if self.how == "success":
            return f"Cloudera AI {what} ended {self.status}{self.note}."
        if self.how == "failed":
            return kind.failure_message(
                self.answer or {"id": kind.id_of(self.ref)}, link=self.link, note=self.note
            )
        if self.gave_up:
            return f"{self.gave_up}{see(self.link)}"
        return f"The wait for Cloudera AI {what} was interrupted (the task is being killed)."

    def event(self, carry: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """This end as a trigger event's payload: plain JSON, no secrets.

        :param carry: what the deferring task needs back when it resumes.
        """
        return {
            "status": self.how,
            "message": self.message,
            "kind": self.kind.home,
            "ref": self.ref._asdict(),
            "answer": self.kind.event_answer(self.answer),
            "link": self.link,
            "note": self.note,
            "carry": dict(carry or {}),
        }

    @classmethod
    def of_event(cls, event: Mapping[str, Any] | None) -> Ended:
        """A trigger event's payload back as how the wait ended.

        :param event: the payload.
        :raises CmlException: the event is not one a trigger of this provider sends.
        """
        unexpected = CmlException(f"The Cloudera AI trigger sent an unexpected event: {event!r}")
        if not isinstance(event, Mapping) or event.get("status") not in HOW:
            raise unexpected
        how = str(event["status"])
        try:
            kind = load_kind(str(event["kind"]))
            ref = kind.ref_from(event["ref"])
        except (KeyError, TypeError, ValueError, ImportError, AttributeError):
            if how == "error":  # a trigger that failed before it knew what it waited on
                raise CmlException(str(event.get("message") or unexpected)) from None
            raise unexpected from None
        answer = event.get("answer") if isinstance(event.get("answer"), Mapping) else None
        status = kind.status_of(answer) if answer and "status" in answer else None
        # A success or failure message is made again from the answer (a failure is explained then).
        text = "" if how in ("success", "failed") else str(event.get("message") or "")
        return cls(how, kind, ref, answer, status, str(event.get("note") or ""), event.get("link"), text)

    def result(
        self, explain: Callable[[WorkloadKind, Any, Mapping[str, Any]], str | None] | None = None
    ) -> Mapping[str, Any]:
        """The final answer if it ended well; otherwise raise the kind's error saying why.

        :param explain: why a failed workload failed, from what else the platform says (``CmlHook.explain``).
        :raises CmlWorkloadError: it ended otherwise, stayed unclear too long, or the wait was interrupted.
        :raises CmlWorkloadTimeout: the deadline passed first.
        :raises CmlException: a poll failed in a way that would not pass.
        """
        kind, workload_id = self.kind, self.kind.id_of(self.ref)
        if self.how == "success":
            return self.answer or {"id": workload_id}
        if self.how == "error":
            raise self.error or CmlException(self.text or "The Cloudera AI trigger failed.")
        if self.how == "failed":
            answer = self.answer or {"id": workload_id}
            details = explain(kind, self.ref, answer) if explain is not None and self.answer else None
            message = kind.failure_message(answer, link=self.link, details=details, note=self.note)
            raise kind.error(message, workload_id=workload_id, status=self.status)
        error = kind.timeout_error if self.how == "timeout" else kind.error
        raise error(self.message, workload_id=workload_id, status=self.status)


def read(kind: WorkloadKind, ref: Any, deadline: float | None = None) -> Exchange:
    """The request that reads one workload.

    :param kind: its kind.
    :param ref: its IDs.
    :param deadline: when the read (retries included) must end.
    """
    what = f"{kind.name} {kind.id_of(ref)!r}"
    return Exchange("GET", kind.read_path(ref), not_found=what, deadline=deadline)


def poll(kind: WorkloadKind, ref: Any, deadline: float | None) -> Steps[Mapping[str, Any] | CmlException]:
    """One status check: the workload's answer, or the error that came instead.

    :param kind: its kind.
    :param ref: its IDs.
    :param deadline: the check (its retries and ``Retry-After`` sleeps included) ends by then.
    """
    try:
        return (yield read(kind, ref, deadline))
    except CmlException as exc:
        return exc


def stop_if_active(
    kind: WorkloadKind, ref: Any, now: float, limit: float
) -> Steps[StopResult | CmlException]:
    """Stop a workload unless it has ended, within ``limit`` seconds from ``now``.

    The status read may take half of it (at most :data:`STATUS_BEFORE_STOP`); when the status
    cannot be read, the stop is sent anyway. Both requests carry their own bound: a wait's deadline
    has usually passed when a stop is sent. Returns what became of it, or the error that kept the
    stop from being sent (for the caller to log).

    :param kind: the workload's kind.
    :param ref: the workload.
    :param now: the time now, on the driver's clock.
    :param limit: seconds the whole may take.
    """
    read_by = now + min(limit / 2, STATUS_BEFORE_STOP)
    try:
        seen: Any = yield replace(read(kind, ref, read_by), own_bound=True)
    except CmlException as exc:
        seen = exc
    if not kind.should_stop(seen):
        return StopResult.ALREADY_ENDED
    if kind.stop_path is None:
        return StopResult.NOT_ASKED
    what = f"{kind.name} {kind.id_of(ref)!r}"
    try:
        yield Exchange("POST", kind.stop_path(ref), not_found=what, deadline=now + limit, own_bound=True)
    except CmlException as exc:
        return exc
    return StopResult.STOPPED


def stopped_as_said(log: Log, kind: WorkloadKind, ref: Any, said: StopResult | CmlException) -> StopResult:
    """What became of a stop, logged: a stop that could not be sent is a warning, not an error.

    :param log: the caller's logger.
    :param kind: what was stopped.
    :param ref: its IDs.
    :param said: what :func:`stop_if_active` returned.
    """
    what = f"{kind.name} {kind.id_of(ref)}"
    if isinstance(said, CmlException):
        log.warning("Could not stop Cloudera AI %s; it may still be running: %s", what, said)
        return StopResult.FAILED
    if said is StopResult.STOPPED:
        log.info("Asked Cloudera AI to stop %s.", what)
    return said


def whole_wait(
    wait: Wait, deadline: float | None, now: Callable[[], float], log: Log, stop_limit: float = 30.0
) -> Steps[Ended]:
    """Poll, judge and sleep until the wait ends; stop the workload when the task owns it and gave up.

    :param wait: what is waited on, and how.
    :param deadline: when waiting ends, on ``now``'s clock (``None``: no limit).
    :param now: the driver's monotonic clock.
    :param log: the caller's logger.
    :param stop_limit: seconds a stop (its status read included) may take: the request timeout.
    """
    kind, ref, rule = wait.kind, wait.ref, wait.rule(deadline)
    retries = kind.retries if wait.follow_retries else None
    policy: Any = None
    seen_retries, policy_read = 0, False
    state, seen = WaitState(), None
    if wait.find is not None:
        located = yield from _locate(wait, rule, now, log)
        if isinstance(located, Ended):
            return located
        ref, seen = located
    bound, limits, bound_ended = (kind.bound if wait.bound else None), wait.bound or {}, None  # ended: when
    while True:
        polled_at = now()
        if seen is None:
            seen = yield from poll(kind, ref, deadline)
        decision = rule.judge(seen, now(), state)
        state, seen = decision.state, None
        note = retries.note(policy, seen_retries) if retries is not None and seen_retries else ""
        log_decision(log, f"{kind.name} {kind.id_of(ref)}", decision, note)
        if decision.next is Next.WAIT and bound is not None and decision.answer is not None:
            if bound_ended is None:
                ago = yield from _ask(bound.ended(limits, deadline), log, "what bounds it")
                if isinstance(ago, CmlException):
                    return Ended("error", kind, ref, text=str(ago), error=ago, link=wait.link)
                bound_ended = None if ago is None else now() - ago
            if bound_ended is not None and now() - bound_ended >= bound.grace(limits):
                why = bound.message(limits, decision.answer)
                return Ended("abandoned", kind, ref, decision.answer, state.status, "", wait.link, text=why)
        if decision.next is Next.WAIT:
            if (yield Sleep(on_cadence(decision.sleep, now() - polled_at))):
                return Ended("interrupted", kind, ref, decision.answer, state.status, note, wait.link)
            continue
        answer = decision.answer or {}
        bad = decision.next is Next.FINISHED and answer is not None and not kind.is_success(state.status)
        if retries is None or not bad or not retries.covers(answer):
            break
        if not policy_read:
            policy, policy_read = (yield from retries.policy(ref, deadline)), True
        if not retries.expects(policy, answer, seen_retries):
            break
        what, status = f"{kind.name} {kind.id_of(ref)}", state.status
        log.info("Cloudera AI %s ended %s; the platform will retry it: waiting for the retry.", what, status)
        found = yield from _await_retry(retries, policy, rule, ref, answer, now, log)
        if found is None:  # the task is being killed: as for any other sleep of the wait
            return Ended("interrupted", kind, ref, answer, state.status, note, wait.link)
        if isinstance(found, Decision):  # none came (the failure stands), the deadline passed, or an error
            if found.next is Next.TIMED_OUT:
                decision = Decision(Next.TIMED_OUT, state, answer=answer)
            elif found.next is Next.ERROR:
                decision = found
            break
        ref, seen, state, seen_retries = (
            kind.with_id(ref, str(found.get("id"))),
            found,
            WaitState(),
            seen_retries + 1,
        )
    note = retries.note(policy, seen_retries) if retries is not None and seen_retries else ""
    return (yield from _ended(wait, rule, decision, ref, note, now, log, stop_limit))


def _ask(steps: Steps[T], log: Log, what: str) -> Steps[T | CmlException | None]:
    """``steps``' result; ``None`` after a passing error (logged); a lasting error, returned."""
    try:
        return (yield from steps)
    except CmlException as exc:
        if isinstance(exc, CmlApiError) and is_transient(exc):
            log.warning("Could not read %s this time (%s); trying again.", what, exc)
            return None
        return exc


def _locate(wait: Wait, rule: WaitRule, now: Callable[[], float], log: Log) -> Steps[tuple[Any, Any] | Ended]:
    """Look for what ``wait.find`` names until it appears: ``(ref, answer)``; else how the wait ended."""
    kind, ref, locate, find = wait.kind, wait.ref, wait.kind.locate, wait.find or {}
    while locate is not None:
        looked_at = now()
        found = yield from _ask(locate.find(ref, find, rule.deadline), log, f"the {kind.name}s")
        if isinstance(found, CmlException):
            return Ended("error", kind, ref, text=str(found), error=found, link=wait.link)
        if found is not None:
            log.info("Found Cloudera AI %s %s.", kind.name, kind.id_of(found[0]))
            return found
        waiting = rule.keep_waiting(WaitState(), now(), changed=False)
        if waiting.next is Next.TIMED_OUT:
            return Ended("timeout", kind, ref, link=wait.link, gave_up=locate.missing(ref, find))
        if (yield Sleep(on_cadence(waiting.sleep, now() - looked_at))):
            return Ended("interrupted", kind, ref, link=wait.link)
    return ref, None


def _await_retry(
    retries: Any,
    policy: Any,
    rule: WaitRule,
    ref: Any,
    failed: Mapping[str, Any],
    now: Callable[[], float],
    log: Log,
) -> Steps[Mapping[str, Any] | Decision | None]:
    """The platform's retry of ``failed`` once it appears; else a decision, or ``None`` on a kill.

    The decision says none came (the failure stands), the deadline passed, or an error.
    """
    failed_at = now()
    while True:
        waiting = rule.keep_waiting(WaitState(), now(), changed=False)
        if waiting.next is Next.TIMED_OUT:
            return waiting
        if (yield Sleep(waiting.sleep)):
            return None
        found = yield from _ask(retries.find(ref, failed, rule.deadline), log, "the platform's retry")
        if isinstance(found, CmlException):
            return Decision(Next.ERROR, WaitState(), error=found)
        if found is not None:
            return found
        if now() - failed_at >= retries.patience(policy):
            return Decision(Next.FINISHED, WaitState())


def _ended(
    wait: Wait,
    rule: WaitRule,
    decision: Decision,
    ref: Any,
    note: str,
    now: Callable[[], float],
    log: Log,
    stop_limit: float,
) -> Steps[Ended]:
    kind, state = wait.kind, decision.state
    if decision.next is Next.ERROR:
        return Ended("error", kind, ref, text=str(decision.error), error=decision.error, link=wait.link)
    if decision.next is Next.FINISHED:
        how = "success" if kind.is_success(state.status) else "failed"
        return Ended(how, kind, ref, decision.answer, state.status, note, wait.link)
    stop = StopResult.NOT_ASKED
    if wait.owns:
        said = yield from stop_if_active(kind, ref, now(), stop_limit)
        stop = stopped_as_said(log, kind, ref, said)
    when, advice = rule.why_gave_up(decision.next, state.renewed, wait.waited)
    stopped = f"; {stop.value}" if stop.value else ""
    still = f"was still {state.status or 'unreadable'} {when}{stopped}"
    why = f"Cloudera AI {kind.name} {kind.id_of(ref)} {still}. {advice}."
    return Ended(
        _GAVE_UP[decision.next], kind, ref, decision.answer, state.status, note, wait.link, gave_up=why
    )
