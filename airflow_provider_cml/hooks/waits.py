"""The synchronous wait, for a task in a worker: poll, judge, sleep, and act on how the wait ended.

Any workload kind; the same waiting rule and steps as the trigger and the sensors. Each wait is
bounded as a whole (:meth:`CmlHook.within`), and :meth:`CmlHook.interrupt` (from ``on_kill``)
wakes it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.defaults import DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.exceptions import CmlWorkloadTimeout
from airflow_provider_cml.validation import validate_positive
from airflow_provider_cml.waiting.rule import Next, Outcome, WaitRule, WaitState, log_decision
from airflow_provider_cml.workloads.job_runs import RunRef, StopResult

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook
    from airflow_provider_cml.waiting.kinds import WorkloadKind
    from airflow_provider_cml.waiting.rule import Decision


def wait_for(
    hook: CmlHook,
    kind: WorkloadKind,
    ref: Any,
    *,
    timeout: float | None = None,
    poll_interval: float = 30,
    stop_on_timeout: bool = True,
    unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
    follow_retries: bool = False,
    link: str | Callable[[], str | None] | None = None,
    since: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Poll a workload of any kind until it ends; return it on success, raise otherwise.

    The rule is :class:`~airflow_provider_cml.waiting.rule.WaitRule`: transient errors do not end the
    wait, a status that stays unclear ends it after ``unknown_grace``. :meth:`interrupt` (from
    ``on_kill``) wakes it at once.

    :param hook: the hook.
    :param kind: what the workload is.
    :param ref: its IDs.
    :param timeout: seconds to wait at most; ``None`` waits until it ends.
    :param poll_interval: seconds between status checks.
    :param stop_on_timeout: stop it when the wait gives up (only for what the task started).
    :param unknown_grace: seconds it may stay in an unclear status.
    :param follow_retries: wait for a job's Job Retry runs of a failed run.
    :param link: its page for messages, or how to find it when a message needs it.
    :param since: after a restart request, ``kind.baseline`` of the answer read before it: only an
        answer showing it started anew may end the wait (see ``WaitRule.since``).
    :raises CmlWorkloadError: it ended without success, or stayed unclear too long (for a job
        run, :class:`CmlJobRunError`).
    :raises CmlWorkloadTimeout: the timeout passed first.
    """
    validate_positive("poll_interval", poll_interval, allow_none=False)
    validate_positive("timeout", timeout)
    validate_positive("unknown_grace", unknown_grace)
    deadline = None if timeout is None else hook.clock.monotonic() + timeout
    rule = WaitRule(
        poll_interval, deadline, unknown_grace, follow_retries=follow_retries, kind=kind, since=since
    )
    with hook.within(deadline):
        rule, decision = wait_loop(hook, ref, rule)
        succeeded = decision.next is Next.FINISHED and kind.is_success(decision.state.status)
        if callable(link):
            link = None if succeeded else link()
    return dict(conclude(hook, Outcome(ref, rule, decision, link, timeout), stop_on_timeout))


def wait_a_while(
    hook: CmlHook,
    kind: WorkloadKind,
    ref: Any,
    seconds: float,
    *,
    poll_interval: float = 30,
    unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
    since: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """:func:`wait_for`, for ``seconds`` at most: ``None`` when the workload is still going then.

    Nothing is stopped when the time is up: the caller goes on waiting elsewhere (a deferrable
    task, in the triggerer).

    :param hook: the hook.
    :param kind: what the workload is.
    :param ref: its IDs.
    :param seconds: how long to wait here.
    :param poll_interval: seconds between status checks.
    :param unknown_grace: seconds it may stay in an unclear status.
    :param since: as for :func:`wait_for`.
    :raises CmlWorkloadError: it ended without success, or stayed unclear too long.
    """
    try:
        return wait_for(
            hook,
            kind,
            ref,
            timeout=seconds,
            poll_interval=poll_interval,
            stop_on_timeout=False,
            unknown_grace=unknown_grace,
            since=since,
        )
    except CmlWorkloadTimeout:
        return None


def wait_loop(hook: CmlHook, ref: Any, rule: WaitRule) -> tuple[WaitRule, Decision]:
    """Step, log and sleep until a decision ends the wait; raise when interrupted.

    :param hook: the hook (its clock, and ``interrupted`` from ``on_kill``).
    :param ref: what the wait started with.
    :param rule: the waiting rule, of the workload's kind.
    """
    state = WaitState()
    while not hook.interrupted.is_set():
        rule, decision = hook.step(ref, rule, state)
        state = decision.state
        log_decision(hook.log, rule.kind.id_of(ref), decision, rule.kind.name)
        if decision.next is not Next.WAIT:
            return rule, decision
        hook.clock.sleep(decision.sleep, hook.interrupted)
    kind = rule.kind
    raise kind.error(
        f"The wait for Cloudera AI {kind.name} {kind.id_of(ref)} was interrupted (the task is being killed).",
        workload_id=kind.id_of(ref),
        status=state.status,
    )


def conclude(hook: CmlHook, outcome: Outcome, stop_on_timeout: bool) -> Mapping[str, Any]:
    """Act on a decision that ends the wait: return the answer, or raise what ended it.

    :param hook: the hook.
    :param outcome: how the wait ended.
    :param stop_on_timeout: stop the workload when the wait gave up (only what the task started).
    """
    decision, ref = outcome.decision, outcome.rule.kind.current(outcome.ref, outcome.decision.state)
    kind = outcome.rule.kind
    if decision.next is Next.ERROR:
        raise decision.error  # type: ignore[misc]
    if decision.next is Next.FINISHED and decision.run is not None:
        return hook.finished(ref, decision.run, note=outcome.note, link=outcome.link, kind=kind)
    stop = hook.stop_if_active(ref, kind) if stop_on_timeout else StopResult.NOT_ASKED
    raise outcome.gave_up(stop)


def wait_until_ended(
    hook: CmlHook, ref: RunRef, *, timeout: float | None, poll_interval: float, unknown_grace: float | None
) -> bool:
    """Wait for a run that is not ours to end, whichever way; never stop it. ``False``: timed out.

    By the same waiting rule as :meth:`wait_for_job_run`, without Job Retry (a platform retry
    that occupies the job is found by the next start).

    :param hook: the hook.
    :param ref: the run.
    :param timeout: seconds to wait at most.
    :param poll_interval: seconds between status checks.
    :param unknown_grace: seconds the run may stay ``ENGINE_UNKNOWN``.
    """
    deadline = None if timeout is None else hook.clock.monotonic() + timeout
    with hook.within(deadline):
        _, decision = wait_loop(
            hook, ref, WaitRule(poll_interval, deadline, unknown_grace, follow_retries=False)
        )
    return decision.next is not Next.TIMED_OUT


def end_run(hook: CmlHook, ref: RunRef, *, timeout: float, poll_interval: float = 1.0) -> bool:
    """Stop a run unless it has ended, then wait until it has; ``True`` once it has ended.

    For clean-up that must not act under a live run (deleting its job): ``False`` when the run
    is still active (or its status unreadable) after ``timeout`` seconds.

    :param hook: the hook.
    :param ref: the run (one this task started).
    :param timeout: seconds to wait for the run to end after the stop.
    :param poll_interval: seconds between status checks.
    """
    if hook.stop_if_active(ref) is StopResult.ALREADY_ENDED:
        return True
    deadline = hook.clock.monotonic() + timeout
    with hook.within(deadline):
        _, decision = wait_loop(hook, ref, WaitRule(poll_interval, deadline, None, follow_retries=False))
    return decision.next is Next.FINISHED
