"""Rules: the one waiting rule shared by the sync wait, the trigger and the sensor.

:meth:`WaitRule.judge` is pure: it takes what the last poll saw (a run, or the error that came
instead), the time now and the state so far, and says what to do next. Callers only fetch, sleep
(or await) and act on its :class:`Decision`, so a change to how waiting works is made once.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, Union

from airflow_provider_cml import runs
from airflow_provider_cml.exceptions import CmlApiError, CmlException
from airflow_provider_cml.retry import is_transient

#: How long a run may stay ``ENGINE_UNKNOWN`` (or in a status the API never listed) before the wait
#: gives up on it. Without a bound, a run the platform lost track of is waited on forever.
DEFAULT_UNKNOWN_GRACE = 600.0

#: A poll's result: the run's answer, or the error that came instead.
Observation = Union[Mapping[str, Any], CmlException]


class _Log(Protocol):
    # stdlib and structlog loggers alike (Airflow 3's task and trigger loggers are structlog's).
    def info(self, __msg: Any, *args: Any) -> Any: ...
    def warning(self, __msg: Any, *args: Any) -> Any: ...


class Next(enum.Enum):
    """What the waiter does after a poll."""

    WAIT = "wait"  # poll again after ``Decision.sleep`` seconds
    FINISHED = "finished"  # the run ended: ``Decision.run`` says how
    TIMED_OUT = "timed_out"  # the deadline passed first
    UNCLEAR = "unclear"  # the status stayed unknown longer than the grace period
    ERROR = "error"  # a poll failed in a way that will not pass: ``Decision.error``


@dataclass(frozen=True)
class WaitState:
    """What the rule remembers between polls.

    :param status: the last status read (``None`` until one is read).
    :param unclear_since: when the run entered an unclear status (``None`` while it is clear).
    """

    status: str | None = None
    unclear_since: float | None = None


@dataclass(frozen=True)
class Decision:
    """The rule's answer for one poll.

    :param next: what to do.
    :param state: the state to pass to the next :meth:`WaitRule.judge`.
    :param changed: the status differs from the previous poll's (worth a log line).
    :param run: the finished run, with ``Next.FINISHED``.
    :param error: the lasting error with ``Next.ERROR``; the passing one with ``Next.WAIT``.
    :param sleep: seconds until the next poll, with ``Next.WAIT``.
    """

    next: Next
    state: WaitState
    changed: bool = False
    run: Mapping[str, Any] | None = None
    error: CmlException | None = None
    sleep: float = 0.0


@dataclass(frozen=True)
class WaitRule:
    """How one wait behaves.

    :param poll_interval: seconds between polls.
    :param deadline: the time (on the caller's clock) when waiting ends; ``None``: no limit.
    :param unknown_grace: seconds a run may stay in an unclear status; ``None``: no limit.
    """

    poll_interval: float
    deadline: float | None = None
    unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE

    def judge(self, seen: Observation, now: float, state: WaitState) -> Decision:
        """Decide what follows a poll.

        A terminal run is reported even when the deadline has passed: the real outcome beats a
        timeout. Transient errors (no answer, 429, 5xx) keep the wait going; any other error ends it.

        :param seen: the run read by this poll, or the error that came instead.
        :param now: the time now, on the same clock as ``deadline``.
        :param state: the state returned with the previous decision (``WaitState()`` at first).
        """
        if isinstance(seen, CmlException):
            if not (isinstance(seen, CmlApiError) and is_transient(seen)):
                return Decision(Next.ERROR, state, error=seen)
            return replace(self._keep_waiting(state, now, changed=False), error=seen)
        status = runs.status_of(seen)
        changed = status != state.status
        unclear_since = None
        if runs.is_unclear(status):
            unclear_since = now if state.unclear_since is None else state.unclear_since
        state = replace(state, status=status, unclear_since=unclear_since)
        if runs.is_terminal(status):
            return Decision(Next.FINISHED, state, changed=changed, run=seen)
        if self._unclear_too_long(state, now):
            return Decision(Next.UNCLEAR, state, changed=changed)
        return self._keep_waiting(state, now, changed=changed)

    def _unclear_too_long(self, state: WaitState, now: float) -> bool:
        if state.unclear_since is None or self.unknown_grace is None:
            return False
        return now - state.unclear_since >= self.unknown_grace

    def _keep_waiting(self, state: WaitState, now: float, *, changed: bool) -> Decision:
        if self.deadline is not None and now >= self.deadline:
            return Decision(Next.TIMED_OUT, state, changed=changed)
        sleep = self.poll_interval
        if self.deadline is not None:
            sleep = min(sleep, self.deadline - now)
        if state.unclear_since is not None and self.unknown_grace is not None:
            sleep = min(sleep, max(0.0, state.unclear_since + self.unknown_grace - now))
        return Decision(Next.WAIT, state, changed=changed, sleep=max(0.0, sleep))

    def why_gave_up(self, decision: Decision, waited: float | None) -> tuple[str, str]:
        """What ended the wait and what to do about it, for :func:`runs.gave_up_message`.

        :param decision: a ``TIMED_OUT`` or ``UNCLEAR`` decision.
        :param waited: seconds the wait lasted, when the caller knows them.
        """
        if decision.next is Next.UNCLEAR:
            return (
                f"for {self.unknown_grace:g}s, a status that says nothing about its progress",
                "Cloudera AI may have lost track of it: check the run in the workbench, or raise "
                "unknown_grace",
            )
        when = f"after {waited:g}s" if waited is not None else "when the task's time ran out"
        return when, "Raise the timeout if the job needs longer"


def log_decision(log: _Log, run_id: str, decision: Decision) -> None:
    """Log what is worth a line: a status change, or a poll that failed for now. Not every poll.

    :param log: the caller's logger.
    :param run_id: the run's id.
    :param decision: the rule's latest decision.
    """
    if decision.changed:
        log.info("Cloudera AI run %s is %s.", run_id, decision.state.status)
    elif decision.next is Next.WAIT and decision.error is not None:
        log.warning("Could not read run %s this time (%s); polling again.", run_id, decision.error)
