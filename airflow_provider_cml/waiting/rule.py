"""The one waiting rule, shared by the sync wait, the trigger and the sensors, for any workload kind.

:meth:`WaitRule.judge` is pure: it takes what the last poll saw (a workload's answer, or the error
that came instead), the time now and the state so far, and says what to do next. Callers only
fetch, sleep (or await) and act on its :class:`Decision`, so a change to how waiting works is
made once. What the statuses mean comes from the rule's
:class:`~airflow_provider_cml.waiting.kinds.WorkloadKind` (a job run by default).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from airflow_provider_cml.client.retry import is_transient
from airflow_provider_cml.defaults import DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.exceptions import CmlApiError, CmlException, CmlWorkloadError
from airflow_provider_cml.waiting.kinds import WorkloadKind
from airflow_provider_cml.workloads import job_runs as runs
from airflow_provider_cml.workloads.job_runs import JOB_RUN, StopResult

#: How long after ``retry_delay`` a platform retry may take to appear before the wait stops expecting it.
RETRY_START_GRACE = 60.0


#: Final statuses Job Retry can retry (a success needs none; a stopped run is never retried).
RETRIED_STATUSES = frozenset({runs.FAILED, runs.TIMEDOUT, runs.SKIPPED})

#: A poll's result: the run's answer, the error that came instead, or no retry run yet.
Observation = Mapping[str, Any] | CmlException | runs.NoRetryYet


@dataclass(frozen=True)
class JobRetry:
    """The job's own Job Retry settings: Cloudera AI starts each retry as a new run of the job.

    :param max_retry: retries the platform makes at most.
    :param delay: seconds it waits before each.
    :param statuses: final statuses it retries. ``retry_for_script_failure`` and
        ``retry_for_system_failure`` both cover ``ENGINE_FAILED`` (inference: a JobRun does not say
        which kind of failure it was, so either flag makes the wait expect a retry; when none comes,
        the wait ends ``retry_delay`` + :data:`RETRY_START_GRACE` later with the failure).
    """

    max_retry: int
    delay: float
    statuses: frozenset[str]

    @classmethod
    def of(cls, job: Mapping[str, Any] | None) -> JobRetry | None:
        """The settings of a Job answer; ``None`` when the job does not retry.

        :param job: a Job answer (``None`` if it could not be read).
        """
        if not job or not job.get("retry_enabled") or int(job.get("max_retry") or 0) <= 0:
            return None
        flags = {
            runs.FAILED: job.get("retry_for_script_failure") or job.get("retry_for_system_failure"),
            runs.TIMEDOUT: job.get("retry_for_timedout_runs"),
            runs.SKIPPED: job.get("retry_for_skipped_runs"),
        }
        statuses = frozenset(status for status, on in flags.items() if on)
        return cls(int(job["max_retry"]), float(job.get("retry_delay") or 0), statuses) if statuses else None


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
    NEED_JOB = "need_job"  # a failed run may be retried: read the job's retry settings, judge again


@dataclass(frozen=True)
class WaitState:
    """What the rule remembers between polls.

    :param status: the last status read (``None`` until one is read).
    :param unclear_since: when the run entered an unclear status (``None`` while it is clear).
    :param run_id: the run now waited on: the started one, then each platform retry.
    :param attempt: 0 for the started run, ``n`` for the platform's retry ``n``.
    :param failed: the failed run whose retry is expected (``None`` when none is).
    :param failed_since: when that failure was seen.
    :param renewed: an answer has shown the workload since the restart the wait follows (always,
        for a wait that follows none; see ``WaitRule.since``).
    """

    status: str | None = None
    unclear_since: float | None = None
    run_id: str | None = None
    attempt: int = 0
    failed: Mapping[str, Any] | None = None
    failed_since: float | None = None
    renewed: bool = False


@dataclass(frozen=True)
class Decision:
    """The rule's answer for one poll.

    :param next: what to do.
    :param state: the state to pass to the next :meth:`WaitRule.judge`.
    :param changed: the status differs from the previous poll's (worth a log line).
    :param run: the finished run with ``Next.FINISHED``; with ``Next.WAIT``, a failed run whose
        platform retry is awaited.
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
    :param follow_retries: when a run fails in a way the job's Job Retry covers, wait for the
        platform's retry runs and report the last one.
    :param retry: the job's retry settings, once read (see ``Next.NEED_JOB``).
    :param retry_known: whether ``retry`` has been read.
    :param kind: what is waited on: what its statuses mean.
    :param since: after a restart request, the kind's ``baseline`` of the answer read before it.
        Until an answer shows the workload renewed (``WorkloadKind.renewed``), what the wait reads
        is the old instance: its status, even ``APPLICATION_RUNNING``, says nothing about the
        restart, so it is unclear (graced, then the wait gives up) and never ends the wait.
    :param limit: the task's setting whose end is ``deadline`` (``timeout`` or
        ``execution_timeout``): the one a timeout's message says to raise.
    """

    poll_interval: float
    deadline: float | None = None
    unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE
    follow_retries: bool = True
    retry: JobRetry | None = None
    retry_known: bool = False
    kind: WorkloadKind = JOB_RUN
    since: Mapping[str, Any] | None = None
    limit: str = "timeout"

    def knowing(self, retry: JobRetry | None) -> WaitRule:
        """This rule, with the job's retry settings read.

        :param retry: the settings (``None``: the job does not retry).
        """
        return replace(self, retry=retry, retry_known=True)

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
        if isinstance(seen, runs.NoRetryYet):
            return self._no_retry_yet(state, now)
        if state.failed is not None and seen.get("id") != state.run_id:  # the platform's retry
            state = replace(state, attempt=state.attempt + 1, failed=None, failed_since=None, status=None)
        status = self.kind.status_of(seen)
        renewed = state.renewed or self.since is None or self.kind.renewed(seen, self.since)
        changed = status != state.status or renewed != state.renewed
        unclear_since = None
        if not renewed or self.kind.is_unclear(status):
            unclear_since = now if state.unclear_since is None else state.unclear_since
        # The constructor, not dataclasses.replace: this runs on every poll of every trigger.
        state = WaitState(
            status,
            unclear_since,
            str(seen.get("id")),
            state.attempt,
            state.failed,
            state.failed_since,
            renewed,
        )
        if renewed and self.kind.is_terminal(status):
            return self._ended(seen, status, now, state, changed)
        if self._unclear_too_long(state, now):
            return Decision(Next.UNCLEAR, state, changed=changed)
        return self._keep_waiting(state, now, changed=changed)

    def _ended(
        self, run: Mapping[str, Any], status: str, now: float, state: WaitState, changed: bool
    ) -> Decision:
        if status not in RETRIED_STATUSES or not (self.follow_retries and self.kind.platform_retries):
            return Decision(Next.FINISHED, state, changed=changed, run=run)
        if not self.retry_known:
            return Decision(Next.NEED_JOB, state, changed=changed)
        retry = self.retry
        if retry is None or status not in retry.statuses or state.attempt >= retry.max_retry:
            return Decision(Next.FINISHED, state, changed=changed, run=run)
        waiting = replace(state, failed=run, failed_since=now)
        return replace(self._keep_waiting(waiting, now, changed=changed), run=run)

    def _no_retry_yet(self, state: WaitState, now: float) -> Decision:
        retry_due = (self.retry.delay if self.retry else 0.0) + RETRY_START_GRACE
        since = now if state.failed_since is None else state.failed_since
        if state.failed is not None and now - since >= retry_due:
            return Decision(Next.FINISHED, replace(state, failed=None), run=state.failed)
        return self._keep_waiting(state, now, changed=False)

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
        noun = self.kind.name
        if decision.next is Next.UNCLEAR and not decision.state.renewed:
            return (
                f"for {self.unknown_grace:g}s after the restart request, as it was before it (no new "
                "start seen)",
                f"Cloudera AI may not have restarted it: check the {noun} in the workbench, or raise "
                "unknown_grace",
            )
        if decision.next is Next.UNCLEAR:
            return (
                f"for {self.unknown_grace:g}s, a status that says nothing about its progress",
                f"Cloudera AI may have lost track of it, or answers a status this provider does not "
                f"know: check the {noun} in the workbench, or raise unknown_grace",
            )
        when = f"after {waited:g}s" if waited is not None else f"when the task's {self.limit} ran out"
        return when, f"Raise {self.limit} if the {noun} needs longer"


def log_decision(log: _Log, run_id: str, decision: Decision, noun: str = "run") -> None:
    """Log what is worth a line: a status change, a retry awaited, a failed read. Not every poll.

    :param log: the caller's logger.
    :param run_id: the id of what the wait started with.
    :param decision: the rule's latest decision.
    :param noun: what is waited on (the kind's name).
    """
    state = decision.state
    current = state.run_id or run_id
    if decision.next is Next.WAIT and decision.run is not None and decision.changed:
        log.info(
            "Cloudera AI run %s ended %s; the job's Job Retry will start another run: waiting for it.",
            current,
            state.status,
        )
    elif decision.changed:
        retry = f" (the platform's retry {state.attempt} of run {run_id})" if state.attempt else ""
        if not state.renewed:
            retry = " (as before the restart: waiting for it to start anew)"
        log.info("Cloudera AI %s %s is %s%s.", noun, current, state.status, retry)
    elif decision.next is Next.WAIT and decision.error is not None:
        log.warning("Could not read %s %s this time (%s); polling again.", noun, current, decision.error)


def attempt_note(state: WaitState, rule: WaitRule) -> str:
    """Words for a result reached on a platform retry, e.g. ``" on the platform's retry 2 of 3"``.

    :param state: the final state.
    :param rule: the rule (it knows the job's ``max_retry``).
    """
    if not state.attempt:
        return ""
    of = f" of {rule.retry.max_retry}" if rule.retry else ""
    return f" on the platform's retry {state.attempt}{of}"


@dataclass(frozen=True)
class Outcome:
    """How a wait ended, with what its messages need (shared by the sync wait and the trigger).

    :param ref: what the wait started with (its kind's ref).
    :param rule: the rule (it knows the kind, and a job's retry settings).
    :param decision: the decision that ended the wait.
    :param link: its page.
    :param waited: the wait's timeout in seconds, when the caller knows it.
    """

    ref: Any
    rule: WaitRule
    decision: Decision
    link: str | None = None
    waited: float | None = None

    @property
    def note(self) -> str:
        """Words for a result reached on a platform retry (``""`` otherwise)."""
        return attempt_note(self.decision.state, self.rule)

    def gave_up_message(self, stop: StopResult) -> str:
        """Why the wait ended before the run did, and what became of stopping it.

        :param stop: what became of stopping the run.
        """
        when, advice = self.rule.why_gave_up(self.decision, self.waited)
        status = self.decision.state.status
        return runs.gave_up_message(
            self.current_id,
            noun=self.rule.kind.name,
            status=status,
            when=when,
            advice=advice,
            stop=stop,
            link=self.link,
        )

    @property
    def current_id(self) -> str:
        """The id of what the wait ended on (a job run's platform retry, or what it started with)."""
        kind = self.rule.kind
        return kind.id_of(kind.current(self.ref, self.decision.state))

    def gave_up(self, stop: StopResult) -> CmlWorkloadError:
        """The error for a wait that ended before the workload did.

        :param stop: what became of stopping it.
        """
        kind = self.rule.kind
        error = kind.timeout_error if self.decision.next is Next.TIMED_OUT else kind.error
        return error(
            self.gave_up_message(stop), workload_id=self.current_id, status=self.decision.state.status
        )


def on_cadence(decision: Decision, spent: float) -> Decision:
    """``decision`` with its sleep shortened by the time the poll took.

    So polls start every ``poll_interval`` instead of drifting by each answer's latency (at a 1 s
    interval, 5 ms per answer would cost a poll every 200 s).

    :param decision: the rule's decision.
    :param spent: seconds from the poll's start to the decision.
    """
    if decision.next is not Next.WAIT or spent <= 0:
        return decision
    sleep = max(0.0, decision.sleep - spent)
    return Decision(decision.next, decision.state, decision.changed, decision.run, decision.error, sleep)
