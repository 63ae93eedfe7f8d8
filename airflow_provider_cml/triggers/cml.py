"""Wait for a Cloudera AI workload in the triggerer, without holding a worker slot.

:class:`CmlWorkloadTrigger` drives the same whole-wait plan as a task's wait
(:func:`~airflow_provider_cml.waiting.plan.whole_wait`), with aiohttp, for any
:class:`~airflow_provider_cml.waiting.kinds.WorkloadKind`; :func:`CmlJobRunTrigger` makes one for a
job run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_cml._compat import trigger_event_hold
from airflow_provider_cml.defaults import DEFAULT_CONN_ID, DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.exceptions import CmlException
from airflow_provider_cml.waiting.kinds import load_kind
from airflow_provider_cml.waiting.plan import Wait, whole_wait

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook


class CmlWorkloadTrigger(BaseTrigger):
    """Poll one workload of any kind until it ends, then fire one event.

    The event is :meth:`Ended.event <airflow_provider_cml.waiting.plan.Ended.event>`: a dict with
    ``status`` one of ``success``, ``failed``, ``timeout``, ``unclear``, ``error``, plus ``message``,
    ``kind``, ``ref`` (the IDs of what it ended on), ``answer`` (the kind's event fields of its last
    answer), ``link``, ``note`` and ``carry``. ``Ended.of_event`` turns it back.

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
    :param find: what names the workload when ``ref`` lacks its own id (the kind's ``locate``:
        an experiment run's tags); plain JSON.
    :param bound: another workload whose end bounds the wait (the kind's ``bound``: the job run
        that logs an experiment run); plain JSON.
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
        find: Mapping[str, Any] | None = None,
        bound: Mapping[str, Any] | None = None,
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
        self.find = dict(find) if find is not None else None
        self.bound = dict(bound) if bound is not None else None

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
                "find": self.find,
                "bound": self.bound,
            },
        )

    @classmethod
    def of(
        cls, wait: Wait, *, conn_id: str, end_time: float | None, carry: Mapping[str, Any] | None = None
    ) -> CmlWorkloadTrigger:
        """The trigger that goes on with ``wait`` in the triggerer: the one way tasks defer.

        :param wait: what is waited on, and how.
        :param conn_id: Airflow connection of type ``cml``.
        :param end_time: UNIX time when the wait ends (``None``: no limit).
        :param carry: what the deferring task needs back when it resumes.
        """
        return cls(
            kind=wait.kind.home,
            ref=wait.ref._asdict(),
            conn_id=conn_id,
            poll_interval=wait.poll_interval,
            end_time=end_time,
            owns=wait.owns,
            link=wait.link,
            unknown_grace=wait.unknown_grace,
            follow_retries=wait.follow_retries,
            carry=carry,
            since=wait.since,
            limit=wait.limit,
            find=wait.find,
            bound=wait.bound,
        )

    def _hook(self) -> CmlHook:
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook(self.conn_id)

    def _wait(self) -> Wait:
        return Wait(
            load_kind(self.kind),
            load_kind(self.kind).ref_from(self.ref),
            self.poll_interval,
            self.unknown_grace,
            owns=self.owns,
            follow_retries=self.follow_retries,
            since=self.since,
            limit=self.limit,
            link=self.link,
            find=self.find,
            bound=self.bound,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Drive the whole wait with aiohttp, hold the event until ``not_before``, fire it."""
        hook = self._hook()
        try:
            wait = self._wait()
            # The plan's clock is the transport's: monotonic (a UNIX end time is converted once).
            deadline = None if self.end_time is None else time.monotonic() + (self.end_time - time.time())
            limit = (await hook.aconfig()).timeout
            ended = await hook.arun_steps(whole_wait(wait, deadline, time.monotonic, self.log, limit))
            event = ended.event(self.carry)
        except CmlException as exc:  # e.g. a bad connection: one error event, not a crashed trigger
            event = self._error(str(exc))
        except Exception as exc:  # anything else a broken server provokes: the same, without details
            self.log.exception("Cloudera AI trigger for %s failed unexpectedly.", self.ref)
            event = self._error(f"The Cloudera AI trigger failed unexpectedly ({type(exc).__name__}).")
        finally:
            await hook.aclose()
        await self._hold()
        yield TriggerEvent(event)

    def _error(self, message: str) -> dict[str, Any]:
        return {
            "status": "error",
            "message": message,
            "kind": self.kind,
            "ref": self.ref,
            "carry": self.carry,
        }

    async def _hold(self) -> None:
        """Keep the event until ``not_before``: the scheduler must first see the deferral end."""
        early = self.not_before - time.time()
        if early > 0:
            self.log.debug("Holding the event %.1fs (Airflow's deferral race window).", early)
            await asyncio.sleep(early)

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


def CmlJobRunTrigger(
    *,
    project_id: str,
    job_id: str,
    run_id: str,
    owns: bool = True,
    run_url: str | None = None,
    follow_retries: bool = True,
    **options: Any,
) -> CmlWorkloadTrigger:
    """The trigger that waits for one job run: :class:`CmlWorkloadTrigger` on the job-run kind.

    :param project_id: project ID (not a name: names are resolved before deferring).
    :param job_id: job ID.
    :param run_id: run ID.
    :param owns: whether the deferring task started this run. Only then does the trigger stop it,
        when the wait gives up or the task is killed; a sensor, or a task waiting for someone else's
        run to free the job, never stops it.
    :param run_url: the run's page, repeated in failure messages.
    :param follow_retries: wait for the platform's Job Retry runs of a failed run.
    :param options: ``conn_id``, ``poll_interval``, ``end_time``, ``unknown_grace``, ``not_before``,
        ``carry``, ``limit``: as for :class:`CmlWorkloadTrigger`.
    """
    from airflow_provider_cml.workloads.job_runs import JOB_RUN

    ref = {"project_id": project_id, "job_id": job_id, "run_id": run_id}
    return CmlWorkloadTrigger(
        kind=JOB_RUN.home, ref=ref, owns=owns, link=run_url, follow_retries=follow_retries, **options
    )
