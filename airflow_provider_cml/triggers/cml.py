"""CmlJobRunTrigger: wait for a Cloudera AI v2 run in the triggerer, without holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_cml import statuses
from airflow_provider_cml.exceptions import CmlApiError, CmlException, CmlJobRunTimeout
from airflow_provider_cml.runs import check_run_outcome

# Fields of a run that an event may carry: never ``environment`` (it may hold secrets).
_EVENT_RUN_FIELDS = ("id", "job_id", "project_id", "status", "created_at", "finished_at", "failure_reason")


class CmlJobRunTrigger(BaseTrigger):
    """Poll one run until it ends, then fire one event.

    The event is a dict with ``status`` one of ``success``, ``failed``, ``timeout``, ``error``, plus
    ``run_id``, ``project_id``, ``job_id``, ``message`` and ``run`` (the run without its environment).

    :param project_id: project ID (not a name: names are resolved before deferring).
    :param job_id: job ID.
    :param run_id: run ID.
    :param conn_id: Airflow connection of type ``cml``.
    :param poll_interval: seconds between status checks.
    :param end_time: UNIX time after which the trigger stops waiting (``None``: no limit).
    :param stop_on_timeout: stop the remote run when ``end_time`` passes (the operator owns its run;
        a sensor does not).
    :param run_url: the run's page, repeated in failure messages.
    """

    def __init__(
        self,
        *,
        project_id: str,
        job_id: str,
        run_id: str,
        conn_id: str = "cml_default",
        poll_interval: float = 30.0,
        end_time: float | None = None,
        stop_on_timeout: bool = True,
        run_url: str | None = None,
    ) -> None:
        super().__init__()
        self.run_url = run_url
        self.project_id = project_id
        self.job_id = job_id
        self.run_id = run_id
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.stop_on_timeout = stop_on_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "project_id": self.project_id,
                "job_id": self.job_id,
                "run_id": self.run_id,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "stop_on_timeout": self.stop_on_timeout,
                "run_url": self.run_url,
            },
        )

    def _hook(self) -> Any:
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook(self.conn_id)

    def _event(self, status: str, message: str, run: Mapping[str, Any] | None = None) -> TriggerEvent:
        safe_run = {key: run[key] for key in _EVENT_RUN_FIELDS if run and key in run}
        return TriggerEvent(
            {
                "status": status,
                "run_id": self.run_id,
                "project_id": self.project_id,
                "job_id": self.job_id,
                "message": message,
                "run": safe_run,
                "run_url": self.run_url,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_cml._http import is_transient

        hook = self._hook()
        last_status: str | None = None
        try:
            while True:
                try:
                    run = await hook.aget_job_run(self.project_id, self.job_id, self.run_id)
                except CmlApiError as exc:
                    if not is_transient(exc):
                        yield self._event("error", str(exc))
                        return
                    self.log.warning("Could not read run %s this time (%s); polling again.", self.run_id, exc)
                except CmlException as exc:
                    yield self._event("error", str(exc))
                    return
                else:
                    last_status = run.get("status")
                    if statuses.is_terminal(last_status):
                        outcome = "success" if statuses.is_success(last_status) else "failed"
                        yield self._event(outcome, f"Cloudera AI run {self.run_id} ended {last_status}.", run)
                        return
                if self.end_time is not None and time.time() >= self.end_time:
                    stopped = self.stop_on_timeout and await self._stop(hook)
                    yield self._event(
                        "timeout",
                        f"Cloudera AI run {self.run_id} was still {last_status or 'unreadable'} when the "
                        f"task's time ran out{'; it has been asked to stop' if stopped else ''}. Raise the "
                        "timeout if the job needs longer.",
                    )
                    return
                wait = self.poll_interval
                if self.end_time is not None:
                    wait = max(0.0, min(wait, self.end_time - time.time()))
                await asyncio.sleep(wait)
        finally:
            await hook.aclose()

    async def _stop(self, hook: Any) -> bool:
        try:
            run = await hook.aget_job_run(self.project_id, self.job_id, self.run_id)
            if statuses.is_terminal(run.get("status")):
                return False
            await hook.astop_job_run(self.project_id, self.job_id, self.run_id)
            return True
        except CmlException as exc:
            self.log.warning("Could not stop Cloudera AI run %s: %s", self.run_id, exc)
            return False

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user killed the deferred task (mark failed/success, clear); stop the run."""
        hook = self._hook()
        try:
            await self._stop(hook)
        finally:
            await hook.aclose()


def outcome_of_event(event: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Turn a trigger event into the finished run, or raise the matching clear error.

    Shared by the deferrable operator and sensor so both read events the same way.
    """
    if not event or "status" not in event:
        raise CmlException(f"The Cloudera AI trigger sent an unexpected event: {event!r}")
    kind = event["status"]
    if kind == "success":
        return event.get("run") or {"id": event.get("run_id")}
    link = event.get("run_url")
    if kind == "failed":
        check_run_outcome(event["run"], link=link)
    if kind == "timeout":
        message = f"{event['message']} See {link}" if link else event["message"]
        raise CmlJobRunTimeout(message, run_id=str(event.get("run_id")), status=None)
    raise CmlException(event.get("message") or f"The Cloudera AI trigger failed: {event!r}")
