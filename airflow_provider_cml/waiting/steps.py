"""The requests a wait makes, and what their answers mean: written once, run by the sync and async hook.

Each step here is a generator that yields the :class:`~airflow_provider_cml.client.attempts.Exchange` it
needs sent and is sent back the decoded answer (or has the :class:`CmlException` that came instead
thrown in). It does no I/O: ``CmlHook.run_steps`` sends with ``requests`` and
``CmlHook.arun_steps`` with aiohttp, so a sync and an async method differ only in that one call.

Steps take a :class:`~airflow_provider_cml.waiting.kinds.WorkloadKind`: a job run, or any other kind.
Deadlines and ``now`` are on the driving hook's monotonic clock.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

from airflow_provider_cml.client.attempts import Exchange
from airflow_provider_cml.exceptions import CmlException
from airflow_provider_cml.waiting.kinds import WorkloadKind
from airflow_provider_cml.waiting.rule import (
    Decision,
    JobRetry,
    Next,
    Observation,
    WaitRule,
    WaitState,
    on_cadence,
)
from airflow_provider_cml.workloads import job_runs as runs
from airflow_provider_cml.workloads.job_runs import StopResult

T = TypeVar("T")
#: A step: yields requests, is sent their answers, returns its result.
Steps = Generator[Exchange, Any, T]

#: One page of a job's newest runs: where the platform's retry of a failed run shows up.
RETRY_LISTING = {"sort": "-created_at", "page_size": 10}
#: Seconds the status read before a stop may take: past that, the stop is sent unread.
STATUS_BEFORE_STOP = 10.0


def read(kind: WorkloadKind, ref: Any, deadline: float | None = None) -> Exchange:
    """The request that reads one workload.

    :param kind: its kind.
    :param ref: its IDs.
    :param deadline: when the read (retries included) must end.
    """
    what = f"{kind.name} {kind.id_of(ref)!r}"
    return Exchange("GET", kind.read_path(ref), not_found=what, deadline=deadline)


def poll(kind: WorkloadKind, ref: Any, state: WaitState | None, deadline: float | None) -> Steps[Observation]:
    """One status check for the waiting rule: the workload, or the error that came instead.

    While the rule awaits the platform's retry of a failed job run, the check looks for it among
    the job's newest runs instead (``NO_RETRY_YET`` while there is none).

    :param kind: the workload's kind.
    :param ref: the workload the wait started with.
    :param state: the waiting rule's state (``None``: a fresh read).
    :param deadline: the check (its retries and ``Retry-After`` sleeps included) ends by then.
    """
    try:
        if state is not None and state.failed is not None:
            page = yield Exchange("GET", runs.runs_path(ref), RETRY_LISTING, deadline=deadline)
            return runs.retry_run_among(page, state.failed)
        return (yield read(kind, kind.current(ref, state), deadline))
    except CmlException as exc:
        return exc


def job_retry(ref: Any, deadline: float | None, log: Any) -> Steps[JobRetry | None]:
    """The job's Job Retry settings (``None`` when it does not retry, or cannot be read).

    :param ref: a run of the job.
    :param deadline: when the read must end.
    :param log: the caller's logger.
    """
    try:
        job = yield Exchange("GET", runs.job_path(ref), deadline=deadline)
    except CmlException as exc:
        log.warning("Could not read the job's retry settings (%s); not waiting for platform retries.", exc)
        return None
    return JobRetry.of(job)


def step(
    ref: Any, rule: WaitRule, state: WaitState, now: Callable[[], float], log: Any
) -> Steps[tuple[WaitRule, Decision]]:
    """One poll judged by the waiting rule; reads the job's Job Retry settings when the rule asks.

    :param ref: the workload the wait started with (of the rule's kind).
    :param rule: the rule so far.
    :param state: the rule's state so far.
    :param now: the clock of ``rule.deadline``.
    :param log: the caller's logger.
    """
    polled_at = now()
    seen = yield from poll(rule.kind, ref, state, rule.deadline)
    decision = rule.judge(seen, now(), state)
    if decision.next is Next.NEED_JOB:  # a failure the job's Job Retry may retry
        rule = rule.knowing((yield from job_retry(ref, rule.deadline, log)))
        decision = rule.judge(seen, now(), state)
    return rule, on_cadence(decision, now() - polled_at)


def stop_if_active(
    kind: WorkloadKind, ref: Any, now: float, limit: float
) -> Steps[StopResult | CmlException]:
    """Stop a workload unless it has ended, within ``limit`` seconds from ``now``.

    The status read may take half of it (at most :data:`STATUS_BEFORE_STOP`); when the status
    cannot be read, the stop is sent anyway. Returns what became of it, or the error that kept the
    stop from being sent (for the caller to log).

    :param kind: the workload's kind (one that can be stopped).
    :param ref: the workload.
    :param now: the time now, on the driving hook's clock.
    :param limit: seconds the whole may take.
    """
    seen = yield from poll(kind, ref, None, now + min(limit / 2, STATUS_BEFORE_STOP))
    if not kind.should_stop(seen):
        return StopResult.ALREADY_ENDED
    if kind.stop_path is None:
        return StopResult.NOT_ASKED
    try:
        yield Exchange(
            "POST", kind.stop_path(ref), not_found=f"{kind.name} {kind.id_of(ref)!r}", deadline=now + limit
        )
    except CmlException as exc:
        return exc
    return StopResult.STOPPED
