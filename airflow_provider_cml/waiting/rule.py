"""The one waiting rule, shared by every wait (sync, trigger, sensor), for any workload kind.

:meth:`WaitRule.judge` is pure: it takes what the last poll saw (a workload's answer, or the error
that came instead), the time now and the state so far, and says what to do next. What the
statuses mean comes from the rule's :class:`~airflow_provider_cml.waiting.kinds.WorkloadKind`. The
whole wait around it (polls, sleeps, a platform's retries, stopping, how it ended) is
:mod:`~airflow_provider_cml.waiting.plan`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from airflow_provider_cml.client.retry import is_transient
from airflow_provider_cml.exceptions import CmlApiError, CmlException
from airflow_provider_cml.waiting.kinds import WorkloadKind

#: A poll's result: the workload's answer, or the error that came instead.
Observation = Mapping[str, Any] | CmlException


class Log(Protocol):
    """A logger: stdlib and structlog loggers alike (Airflow 3's task and trigger loggers are structlog's)."""

    def info(self, msg: Any, /, *args: Any) -> Any:
        """Log a line.

        :param msg: the message, with ``%s`` placeholders.
        :param args: what fills them.
        """

    def warning(self, msg: Any, /, *args: Any) -> Any:
        """Log a warning.

        :param msg: the message, with ``%s`` placeholders.
        :param args: what fills them.
        """


class Next(enum.Enum):
    """What the waiter does after a poll."""

    WAIT = "wait"  # poll again after ``Decision.sleep`` seconds
    FINISHED = "finished"  # it ended: ``Decision.answer`` says how
    TIMED_OUT = "timed_out"  # the deadline passed first
    UNCLEAR = "unclear"  # the status stayed unclear longer than the grace period
    ERROR = "error"  # a poll failed in a way that will not pass: ``Decision.error``


@dataclass(frozen=True)
class WaitState:
    """What the rule remembers between polls.

    :param status: the last status read (``None`` until one is read).
    :param unclear_since: when it entered an unclear status (``None`` while it is clear).
    :param renewed: an answer has shown the workload since the restart the wait follows (always,
        for a wait that follows none; see ``WaitRule.since``).
    """

    status: str | None = None
    unclear_since: float | None = None
    renewed: bool = False


@dataclass(frozen=True)
class Decision:
    """The rule's answer for one poll.

    :param next: what to do.
    :param state: the state to pass to the next :meth:`WaitRule.judge`.
    :param changed: the status differs from the previous poll's (worth a log line).
    :param answer: the workload's last answer (with ``Next.FINISHED``: how it ended).
    :param error: the lasting error with ``Next.ERROR``; the passing one with ``Next.WAIT``.
    :param sleep: seconds until the next poll, with ``Next.WAIT``.
    """

    next: Next
    state: WaitState
    changed: bool = False
    answer: Mapping[str, Any] | None = None
    error: CmlException | None = None
    sleep: float = 0.0


@dataclass(frozen=True)
class WaitRule:
    """How one wait judges each poll.

    :param poll_interval: seconds between polls.
    :param deadline: the time (on the caller's clock) when waiting ends; ``None``: no limit.
    :param unknown_grace: seconds it may stay in an unclear status; ``None``: no limit.
    :param kind: what is waited on: what its statuses mean.
    :param since: after a restart request, the kind's ``baseline`` of the answer read before it.
        Until an answer shows the workload renewed (``WorkloadKind.renewed``), what the wait reads
        is the old instance: its status, even ``APPLICATION_RUNNING``, says nothing about the
        restart, so it is unclear (graced, then the wait gives up) and never ends the wait.
    :param limit: the task's setting whose end is ``deadline`` (``timeout`` or
        ``execution_timeout``): the one a timeout's message says to raise.
    """

    poll_interval: float
    deadline: float | None
    unknown_grace: float | None
    kind: WorkloadKind
    since: Mapping[str, Any] | None = None
    limit: str = "timeout"

    def judge(self, seen: Observation, now: float, state: WaitState) -> Decision:
        """Decide what follows a poll.

        A terminal answer is reported even when the deadline has passed: the real outcome beats a
        timeout. Transient errors (no answer, 429, 5xx) keep the wait going; any other error ends it.

        :param seen: the answer read by this poll, or the error that came instead.
        :param now: the time now, on the same clock as ``deadline``.
        :param state: the state returned with the previous decision (``WaitState()`` at first).
        """
        if isinstance(seen, CmlException):
            if not (isinstance(seen, CmlApiError) and is_transient(seen)):
                return Decision(Next.ERROR, state, error=seen)
            return replace(self.keep_waiting(state, now, changed=False), error=seen)
        status = self.kind.status_of(seen)
        renewed = state.renewed or self.since is None or self.kind.renewed(seen, self.since)
        changed = status != state.status or renewed != state.renewed
        unclear_since = None
        if not renewed or self.kind.is_unclear(status):
            unclear_since = now if state.unclear_since is None else state.unclear_since
        # The constructor, not dataclasses.replace: this runs on every poll of every trigger.
        state = WaitState(status, unclear_since, renewed)
        if renewed and self.kind.is_terminal(status):
            return Decision(Next.FINISHED, state, changed=changed, answer=seen)
        if self._unclear_too_long(state, now):
            return Decision(Next.UNCLEAR, state, changed=changed, answer=seen)
        return replace(self.keep_waiting(state, now, changed=changed), answer=seen)

    def _unclear_too_long(self, state: WaitState, now: float) -> bool:
        if state.unclear_since is None or self.unknown_grace is None:
            return False
        return now - state.unclear_since >= self.unknown_grace

    def keep_waiting(self, state: WaitState, now: float, *, changed: bool) -> Decision:
        """Wait on (``Next.WAIT``, sleeping no longer than the deadline or the grace allow), or time out.

        :param state: the state so far.
        :param now: the time now.
        :param changed: whether the status changed with this poll.
        """
        if self.deadline is not None and now >= self.deadline:
            return Decision(Next.TIMED_OUT, state, changed=changed)
        sleep = self.poll_interval
        if self.deadline is not None:
            sleep = min(sleep, self.deadline - now)
        if state.unclear_since is not None and self.unknown_grace is not None:
            sleep = min(sleep, max(0.0, state.unclear_since + self.unknown_grace - now))
        return Decision(Next.WAIT, state, changed=changed, sleep=max(0.0, sleep))

    def why_gave_up(self, next_: Next, renewed: bool, waited: float | None) -> tuple[str, str]:
        """What ended the wait and what to do about it: ``(when, advice)`` for its message.

        :param next_: ``Next.TIMED_OUT`` or ``Next.UNCLEAR``.
        :param renewed: whether an answer showed the workload since the restart the wait follows.
        :param waited: seconds the wait lasted, when the caller knows them.
        """
        noun = self.kind.name
        if next_ is Next.UNCLEAR and not renewed:
            return (
                f"for {self.unknown_grace:g}s after the restart request, as it was before it (no new "
                "start seen)",
                f"Cloudera AI may not have restarted it: check the {noun} in the workbench, or raise "
                "unknown_grace",
            )
        if next_ is Next.UNCLEAR:
            return (
                f"for {self.unknown_grace:g}s, a status that says nothing about its progress",
                f"Cloudera AI may have lost track of it, or answers a status this provider does not "
                f"know: check the {noun} in the workbench, or raise unknown_grace",
            )
        when = f"after {waited:g}s" if waited is not None else f"when the task's {self.limit} ran out"
        return when, f"Raise {self.limit} if the {noun} needs longer"


def log_decision(log: Log, what: str, decision: Decision, retry: str = "") -> None:
    """Log what is worth a line: a status change, a failed read. Not every poll.

    :param log: the caller's logger.
    :param what: what is waited on, e.g. ``"run r1"``.
    :param decision: the rule's latest decision.
    :param retry: words for a platform's retry being waited on (``""`` for the first workload).
    """
    state = decision.state
    if decision.changed:
        extra = retry if state.renewed else " (as before the restart: waiting for it to start anew)"
        log.info("Cloudera AI %s is %s%s.", what, state.status, extra)
    elif decision.next is Next.WAIT and decision.error is not None:
        log.warning("Could not read %s this time (%s); polling again.", what, decision.error)


def on_cadence(sleep: float, spent: float) -> float:
    """``sleep`` shortened by the time the poll took.

    So polls start every ``poll_interval`` instead of drifting by each answer's latency (at a 1 s
    interval, 5 ms per answer would cost a poll every 200 s).

    :param sleep: the rule's sleep.
    :param spent: seconds from the poll's start to the decision.
    """
    return max(0.0, sleep - spent) if spent > 0 else sleep
