"""How the hook drives steps and waits: sync and async differ only in how a request is sent and a sleep slept.

:class:`HookDriver` is a part of :class:`~airflow_provider_cml.hooks.cml.CmlHook`: it runs the
generators of :mod:`airflow_provider_cml.waiting.plan` (and every other step the hook composes) with
``requests`` or aiohttp, and offers the waits as methods.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_cml.client.attempts import resume
from airflow_provider_cml.defaults import DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.exceptions import CmlException
from airflow_provider_cml.validation import validate_positive
from airflow_provider_cml.waiting import plan
from airflow_provider_cml.waiting.kinds import StopResult, WorkloadKind
from airflow_provider_cml.waiting.plan import Ended, Sleep, Steps, Wait, whole_wait
from airflow_provider_cml.workloads.job_runs import JOB_RUN, RunRef

if TYPE_CHECKING:
    import threading
    from contextlib import AbstractContextManager

    from airflow_provider_cml.client.async_client import AsyncTransport
    from airflow_provider_cml.client.config import CmlClientConfig
    from airflow_provider_cml.client.retry import Clock
    from airflow_provider_cml.client.sync_client import SyncTransport

T = TypeVar("T")


class HookDriver:
    """Runs steps and waits for :class:`~airflow_provider_cml.hooks.cml.CmlHook` (its part, not a hook)."""

    if TYPE_CHECKING:  # what CmlHook provides
        clock: Clock
        interrupted: threading.Event
        log: Any
        _async_transport: AsyncTransport | None

        @property
        def config(self) -> CmlClientConfig: ...  # noqa: D102
        @property
        def transport(self) -> SyncTransport: ...  # noqa: D102
        def within(self, deadline: float | None) -> AbstractContextManager[None]: ...  # noqa: D102
        async def aconfig(self) -> CmlClientConfig: ...  # noqa: D102
        def resolve_run(self, project: str, job: str, run_id: str) -> RunRef: ...  # noqa: D102
        def job_run_url(self, project: str, job_id: str, run_id: str) -> str | None: ...  # noqa: D102

    # -- running steps: the one place where sync and async differ ------------------------------

    def run_steps(self, steps: Steps[T], *, paused: bool = False, until_sleep: bool = False) -> T:
        """Run steps with ``requests`` and ``time``: send each request, hand back its answer; sleep.

        :param steps: the steps (a generator of requests and sleeps).
        :param paused: the steps were left at a sleep (``until_sleep``): go on past it.
        :param until_sleep: return the first :class:`Sleep` instead of sleeping it (a sensor's poke:
            Airflow sleeps between pokes).
        """
        done, value = resume(steps, False) if paused else resume(steps)
        while not done:
            if isinstance(value, Sleep) and until_sleep:
                return value  # type: ignore[return-value]
            if isinstance(value, Sleep):  # True back when the task is being killed
                self.clock.sleep(value.seconds, self.interrupted)
                done, value = resume(steps, self.interrupted.is_set())
                continue
            try:
                reply, error = self.transport.send(value), None
            except CmlException as exc:
                reply, error = None, exc
            done, value = resume(steps, reply, error)
        return value

    async def arun_steps(self, steps: Steps[T]) -> T:
        """Async :meth:`run_steps`, with aiohttp (one session per event loop, shared by triggers).

        :param steps: the steps (a generator of requests and sleeps).
        """
        if self._async_transport is None:
            from airflow_provider_cml.client.async_client import AsyncTransport  # aiohttp: triggers only

            self._async_transport = AsyncTransport(await self.aconfig())
        done, value = resume(steps)
        while not done:
            if isinstance(value, Sleep):
                await asyncio.sleep(value.seconds)
                done, value = resume(steps, False)
                continue
            try:
                reply, error = await self._async_transport.send(value), None
            except CmlException as exc:
                reply, error = None, exc
            done, value = resume(steps, reply, error)
        return value

    # -- waiting on a workload: a job run, or any other kind ------------------------------------

    def wait(self, wait: Wait, timeout: float | None = None) -> Ended:
        """Drive a whole wait here (:func:`~airflow_provider_cml.waiting.plan.whole_wait`): how it ended.

        Every request ends by the deadline, retries and ``Retry-After`` sleeps included; a stop sent
        when it passed has its own bound. :meth:`interrupt` (from ``on_kill``) wakes it at once.

        :param wait: what is waited on, and how.
        :param timeout: seconds to wait at most; ``None``: until it ends.
        """
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        with self.within(deadline):
            plan = whole_wait(wait, deadline, self.clock.monotonic, self.log, self.config.timeout)
            return self.run_steps(plan)

    def wait_for(
        self,
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
    ) -> Mapping[str, Any]:
        """Poll a workload of any kind until it ends; return its answer on success, raise otherwise.

        :param kind: what the workload is.
        :param ref: its IDs.
        :param timeout: seconds to wait at most; ``None`` waits until it ends.
        :param poll_interval: seconds between status checks.
        :param stop_on_timeout: stop it when the wait gives up (only for what the task started).
        :param unknown_grace: seconds it may stay in an unclear status.
        :param follow_retries: follow the platform's retries of a failed one (a job's Job Retry).
        :param link: its page for messages, or how to find it when a message needs it.
        :param since: after a restart request, ``kind.baseline`` of the answer read before it.
        :raises CmlWorkloadError: it ended without success, or stayed unclear too long (for a job
            run, :class:`CmlJobRunError`).
        :raises CmlWorkloadTimeout: the timeout passed first.
        """
        validate_positive("timeout", timeout)
        validate_positive("poll_interval", poll_interval, allow_none=False)
        validate_positive("unknown_grace", unknown_grace)
        wait = Wait(
            kind,
            ref,
            poll_interval,
            unknown_grace,
            owns=stop_on_timeout,
            follow_retries=follow_retries,
            since=since,
            link=link if isinstance(link, str) else None,
            waited=timeout,
        )
        ended = self.wait(wait, timeout)
        if callable(link) and not ended.succeeded:
            ended = replace(ended, link=link())
        if ended.succeeded and ended.note:
            self.log.info("Cloudera AI %s %s succeeded%s.", kind.name, kind.id_of(ended.ref), ended.note)
        return ended.result(self.explain)

    def wait_for_job_run(
        self,
        project: str,
        job: str,
        run_id: str,
        *,
        follow_retries: bool = True,
        run_url: str | None = None,
        **options: Any,
    ) -> Mapping[str, Any]:
        """Poll until the run ends; return it on success, raise on failure or timeout.

        :meth:`wait_for` for a job run given by names or IDs: transient errors do not end the wait,
        ``ENGINE_STOPPING`` keeps it going, a status that stays unclear ends it after
        ``unknown_grace``. :meth:`interrupt` (from ``on_kill``) wakes it at once.

        :param project: project name or ID.
        :param job: job name or ID.
        :param run_id: run ID.
        :param follow_retries: when the job has Job Retry and the failure is one it retries, wait for
            the platform's retry runs and report the last one.
        :param run_url: the link for messages, when the caller has it (saves reading the project).
        :param options: ``timeout`` (seconds, ``None``: until the run ends), ``poll_interval``
            (seconds, default 30), ``stop_on_timeout`` (default ``True``), ``unknown_grace``
            (seconds a run may stay ``ENGINE_UNKNOWN``, default 600): see :meth:`wait_for`.
        :raises CmlJobRunError: the run ended without success, or stayed unclear too long.
        :raises CmlJobRunTimeout: the timeout passed first.
        """
        ref = self.resolve_run(project, job, run_id)
        link = run_url or (lambda: self.job_run_url(project, ref.job_id, ref.run_id))
        return self.wait_for(JOB_RUN, ref, follow_retries=follow_retries, link=link, **options)

    def stop_if_active(self, ref: Any, kind: WorkloadKind = JOB_RUN) -> StopResult:
        """Stop a workload unless it has ended; report instead of raising (for clean-up paths).

        The whole call ends within one request timeout, whatever bound the caller is under (a
        wait's deadline has usually passed when it is called).

        :param ref: the workload.
        :param kind: what it is.
        """
        said = self.run_steps(plan.stop_if_active(kind, ref, self.clock.monotonic(), self.config.timeout))
        return plan.stopped_as_said(self.log, kind, ref, said)

    async def astop_if_active(self, ref: Any, kind: WorkloadKind = JOB_RUN) -> StopResult:
        """Async :meth:`stop_if_active`."""
        limit = (await self.aconfig()).timeout
        said = await self.arun_steps(plan.stop_if_active(kind, ref, time.monotonic(), limit))
        return plan.stopped_as_said(self.log, kind, ref, said)

    def end_run(self, ref: RunRef, *, timeout: float, poll_interval: float = 1.0) -> bool:
        """Stop a run unless it has ended, then wait until it has; ``True`` once it has ended.

        For clean-up that must not act under a live run (deleting its job): ``False`` when the run
        is still active (or its status unreadable) after ``timeout`` seconds.

        :param ref: the run (one this task started).
        :param timeout: seconds to wait for the run to end after the stop.
        :param poll_interval: seconds between status checks.
        """
        if self.stop_if_active(ref) is StopResult.ALREADY_ENDED:
            return True
        return self.wait(Wait(JOB_RUN, ref, poll_interval, None), timeout).how in ("success", "failed")

    def explain(self, kind: WorkloadKind, ref: Any, answer: Mapping[str, Any]) -> str | None:
        """Why a workload failed, from what else the platform says (its kind's ``explain``), or ``None``.

        :param kind: what it is.
        :param ref: the workload.
        :param answer: its final answer.
        """
        return kind.explain(self, ref, answer) if kind.explain is not None else None

    def interrupt(self) -> None:
        """Wake a synchronous wait at once (called from ``on_kill``); it stops the run and raises."""
        self.interrupted.set()
