"""Why a job run failed, from what the key may read of the platform's usage and executions listings.

A run's answer says only ``ENGINE_FAILED``; Cloudera AI's usage listing has the exit code and
the executions listing the platform's own message (an OOM kill, say). Keys differ in what they may
read, so each listing counts on its own, and one the key may not read is not asked again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.exceptions import CmlApiError, CmlException
from airflow_provider_cml.workloads import run_failures
from airflow_provider_cml.workloads.job_runs import RunRef

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook

#: Pages of the workload-executions listing read to explain one failure.
EXECUTION_PAGES = 3


class FailureExplainer:
    """Explains failed runs for one hook, remembering which listings its key may not read.

    :param hook: the hook whose connection (and bounds) the reads use.
    """

    def __init__(self, hook: CmlHook) -> None:
        self.hook = hook
        #: Listings (``usage``, ``executions``) this key may not read: not asked again.
        self.unreadable: set[str] = set()

    def explain(self, ref: RunRef, run: Mapping[str, Any]) -> str | None:
        """Why a run failed, from the usage and workload-execution listings; ``None`` if unknown.

        Each listing counts on its own: a key may read usage but not executions (often readable
        only by an observability machine user), or the other way round; whatever it may read is
        used. Best effort and bounded: one request timeout for all of it, the job plus one usage
        page plus at most :data:`EXECUTION_PAGES` execution pages. A listing the key may not read
        (403/404) is noted once per hook and not asked again. Nothing here changes the outcome.

        :param ref: the run.
        :param run: its final answer.
        """
        if {"usage", "executions"} <= self.unreadable:
            return None
        with self.hook.within(self.hook.clock.monotonic() + self.hook.config.timeout):  # its own bound
            try:
                job = self.hook.get_job(ref.project_id, ref.job_id)
            except CmlException as exc:
                self.hook.log.warning("Could not read why run %s failed: %s", ref.run_id, exc)
                return None
            low, high = run_failures.time_window(run)
            usage = self._from_listing(
                "usage",
                ref,
                lambda: run_failures.match_usage(
                    self.hook.transport.request(
                        "GET", "/usage", params=run_failures.usage_query(job, low, high)
                    ),
                    job,
                    run,
                ),
            )
            execution = self._from_listing(
                "executions", ref, lambda: self._find_execution(job, run, low, high)
            )
        return run_failures.describe_failure(usage, execution)

    def _from_listing(
        self, listing: str, ref: RunRef, read: Callable[[], Mapping[str, Any] | None]
    ) -> Mapping[str, Any] | None:
        """``read()`` unless the key may not read ``listing``; never raises."""
        if listing in self.unreadable:
            return None
        try:
            return read()
        except CmlApiError as exc:
            if exc.http_status in (403, 404):
                self.unreadable.add(listing)
                rest = "status only" if {"usage", "executions"} <= self.unreadable else "the other listing"
                self.hook.log.warning(
                    "This API key may not read Cloudera AI's %s listing (HTTP %s), so failures are "
                    "explained from %s.",
                    listing,
                    exc.http_status,
                    rest,
                )
            else:
                self.hook.log.warning(
                    "Could not read the %s listing for run %s: %s", listing, ref.run_id, exc
                )
        except Exception as exc:  # never let the explanation change the outcome
            self.hook.log.warning("Could not read the %s listing for run %s: %s", listing, ref.run_id, exc)
        return None

    def _find_execution(
        self, job: Mapping[str, Any], run: Mapping[str, Any], low: datetime, high: datetime
    ) -> Mapping[str, Any] | None:
        """The run's ExecutionDetails: executions that started in the run's window, oldest first.

        On a busy workbench the run may not be on the first page: once the job's workload (and so
        its CRN) is seen, the listing is narrowed to that workload (``multi_column_search_filter``).
        """
        query = run_failures.executions_query(low, high)
        best: Mapping[str, Any] | None = None
        for _ in range(EXECUTION_PAGES):
            page = self.hook.transport.request("GET", "/workloads/executions", params=query)
            token = page.get("next_page_token") if isinstance(page, Mapping) else None
            crn = run_failures.workload_crn(page, job)
            if token and crn and "multi_column_search_filter" not in query:
                # More pages: a closer execution of this job may be on one. Ask for the job's alone.
                query = run_failures.executions_query(low, high, workload_crn=crn)
                continue
            best = run_failures.match_execution(page, job, run) or best
            if not token:
                break
            query = {**query, "page_token": token}
        return best
