"""Starting a job run exactly once, and telling a busy job from a refusal.

The start carries a fresh token in the run's environment; a lost answer is looked up by it
(:mod:`airflow_provider_cml.client.create_once`). A refused start is checked against the job's runs
listing: one active run per job is allowed, and the listing, not the refusal's wording, says
whether the job is busy.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_cml.client.create_once import Attempt, look_up_lagging, post_once_for
from airflow_provider_cml.client.retry import is_refusal
from airflow_provider_cml.client.sync_client import NotDone
from airflow_provider_cml.exceptions import (
    CmlApiError,
    CmlConfigError,
    CmlException,
    CmlJobAlreadyActiveError,
    Undecidable,
)
from airflow_provider_cml.hooks.part import HookPart
from airflow_provider_cml.validation import path_segment
from airflow_provider_cml.values import START_TOKEN_ENV, Arguments, Environment
from airflow_provider_cml.workloads import job_runs as runs
from airflow_provider_cml.workloads.job_runs import describe_run, run_environment

#: A start (every attempt, look-up and back-off) ends within this many request timeouts.
START_BUDGET = 3
#: After a lost start answer: how many pages of the runs listing each look reads.
LOOKUP_PAGES = 5
#: Server and worker clocks may differ: runs created up to this long before the start still count.
CLOCK_SKEW = timedelta(minutes=5)
#: A job's newest runs searched for the active one (there is at most one, and it is recent).
ACTIVE_RUN_SEARCH = 10
#: Runs per page of a look-up.
PAGE_SIZE = 100


class RunStarter(HookPart):
    """Starts runs for one hook (its connection, retry budget and bounds).

    :param hook: the hook.
    """

    def start(
        self, project: str, job: str, environment: Environment, arguments: Arguments | None
    ) -> dict[str, Any]:
        """Start one run of a job and return the API's answer, never starting it twice.

        v2 returns the JobRun (``id``, ``status``, ...). The start carries a fresh token in the run's
        environment, and one retry budget (the connection's ``max_retries``) covers the whole start.
        Each attempt ends in one of three ways:

        1. **Answered**: the JobRun (or a final error) is returned (or raised).
        2. **Answer lost** (no answer, a reset, a 5xx after sending): the run may exist, so the job's
           newest runs are searched for the token first; the start is sent again only if no run
           carries it. A start that was never sent (connection refused, 429) is sent again directly.
        3. **"Already active" after a lost answer**: the active run may be this start's own, so it is
           looked up by the token before the error is raised.

        v1: ``project`` is ``"<user-or-team>/<project-slug>"``, ``job`` the numeric job ID from the
        job's web address; returns ``{"engine_id": ...}``; a lost answer is an error (v1 runs cannot
        be searched by token).

        :param project: project name or ID (v1: ``owner/slug``).
        :param job: job name or ID (v1: numeric job ID).
        :param environment: overrides of the job's environment variables, checked where they were given.
        :param arguments: one string, seen by the script as ``JOB_ARGUMENTS`` (v2 only), checked too.
        """
        if self.hook.is_legacy_v1:
            return self._start_v1(project, job, environment, arguments)
        ref = self.hook.resolve_run(project, job, "")
        path = runs.runs_path(ref)
        token = uuid.uuid4().hex
        body: dict[str, Any] = {
            "project_id": ref.project_id,
            "job_id": ref.job_id,
            "environment": {**environment, START_TOKEN_ENV: token},
        }
        if arguments is not None:
            body["arguments"] = str(arguments)
        deadline = self.hook.budget(START_BUDGET * self.hook.config.timeout)
        since = datetime.now(timezone.utc) - CLOCK_SKEW
        refused_idle = False

        def on_refusal(exc: CmlApiError, attempt: Attempt) -> Mapping[str, Any] | None:
            nonlocal refused_idle
            if not is_refusal(exc.http_status):
                raise exc
            # Refused: is the job busy? The listing says so, whatever the refusal's wording.
            try:
                listed = self.hook.list_job_runs(ref.project_id, ref.job_id, limit=ACTIVE_RUN_SEARCH)
            except CmlException:  # the look failed: the refusal is the error worth showing
                listed = []
            active = next((run for run in listed if not runs.is_terminal(runs.status_of(run))), None)
            if active is None:
                # Either not about a busy job, or its run ended between the refusal and the look
                # (short runs do): one more start tells. A refusal acted on nothing.
                if not refused_idle and attempt.may_resend(1.0):
                    refused_idle = True
                    self.hook.clock.sleep(1.0)
                    return None
                # Refused twice, free at both looks, yet other runs began since this start did: the
                # job was busy between the looks (starts racing over short runs), not refusing this.
                began = [r for r in listed if r.get("created_at") and not runs.created_before(r, since)]
                if not began:
                    raise exc from None
                active = began[0]
            if attempt.answer_lost:  # the active run may be this start's own
                found = look_up_lagging(
                    lambda: self._started_run(path, token, since, deadline), self.hook.clock, deadline
                )
                if found is not None:
                    return found
            raise self._busy(job, active, exc, attempt.answer_lost) from None

        run = post_once_for(
            self.hook,
            path,
            body,
            lambda: self._started_run(path, token, since, deadline),
            deadline=deadline,
            what=f"start of job {job!r}",
            not_found=f"job {job!r} in project {project!r}",
            secrets=list(environment.values()),
            on_refusal=on_refusal,
        )
        self.hook.log.info("Started Cloudera AI %s.", describe_run(run))
        return run

    @staticmethod
    def _busy(
        job: str, active: Mapping[str, Any], refusal: CmlApiError, answer_lost: bool
    ) -> CmlJobAlreadyActiveError:
        """The start was refused while the job has an active run (one per job is allowed)."""
        mine = (
            " It may be this start's own: an earlier attempt's answer was lost, and the runs listing "
            "does not show it carrying this start's token yet."
            if answer_lost
            else ""
        )
        return CmlJobAlreadyActiveError(
            f"Job {job!r} already has an active run ({describe_run(active)}), and Cloudera AI allows one "
            f"active run per job, so the start was refused.{mine} Wait for that run to end, or stop it, "
            f"then start again. Server said: {refusal.server_message}",
            http_status=refusal.http_status,
            method=refusal.method,
            path=refusal.path,
            server_message=refusal.server_message,
            request_id=refusal.request_id,
        )

    def _started_run(
        self, runs_path: str, token: str, since: datetime, deadline: float
    ) -> dict[str, Any] | None:
        """One look for the run carrying ``token`` among the runs created since the start.

        Callers read it through :func:`~airflow_provider_cml.client.create_once.look_up_lagging` (a listing
        lags behind). Pages are followed until runs older than the start appear (a server may
        ignore ``sort``), at most :data:`LOOKUP_PAGES` pages. A skipped run carrying the token (a
        resent start meeting our own active run) loses to one that was not skipped. A listing that
        shows no run environments cannot tell: that raises rather than risk a second run.
        """
        found, hidden = self._scan_runs_for(runs_path, token, since, deadline)
        if hidden:
            raise Undecidable(
                "The start's answer was lost, and this workbench's runs listing does not show run "
                "environments, so the provider cannot tell whether the run started. It did not send "
                "the start again (that could make a second run): check the job's runs in the "
                "workbench before retrying the task.",
                method="GET",
                path=runs_path,
            )
        return found

    def _scan_runs_for(
        self, runs_path: str, token: str, since: datetime, deadline: float
    ) -> tuple[dict[str, Any] | None, bool]:
        """The run with ``token`` (or ``None``), and whether the listing hides run environments."""
        query: dict[str, Any] = {"sort": "-created_at", "page_size": PAGE_SIZE}
        ours: list[dict[str, Any]] = []
        listed_any = shows_environment = False
        for _ in range(LOOKUP_PAGES):
            page = self.hook.transport.request("GET", runs_path, params=query, deadline=deadline)
            listed = [run for run in page.get("job_runs") or [] if isinstance(run, dict)]
            listed_any = listed_any or bool(listed)
            shows_environment = shows_environment or any("environment" in run for run in listed)
            ours += [run for run in listed if run_environment(run).get(START_TOKEN_ENV) == token]
            older = any(runs.created_before(run, since) for run in listed)
            if not page.get("next_page_token") or older or ours:
                break
            query["page_token"] = page["next_page_token"]
        ours.sort(key=lambda run: runs.status_of(run) == runs.SKIPPED)
        return (ours[0] if ours else None), (not ours and listed_any and not shows_environment)

    def _start_v1(
        self, project: str, job: str, environment: Environment, arguments: Arguments | None
    ) -> dict[str, Any]:
        owner, _, slug = str(project).strip("/").partition("/")
        if not owner or not slug or "/" in slug:
            raise CmlConfigError(
                f"On a v1 connection, project must be '<user-or-team>/<project-slug>' from the job's web "
                f"address (e.g. 'alice/risk-analysis'), not {project!r}."
            )
        if not str(job).isdigit():
            raise CmlConfigError(
                f"On a v1 connection, job must be the numeric job ID from the job's web address "
                f"(.../jobs/208 -> '208'), not {job!r}."
            )
        if arguments is not None:
            raise CmlConfigError("The legacy v1 Jobs API cannot pass arguments; use a v2 connection.")
        path = (
            f"/projects/{path_segment('owner', owner)}/{path_segment('project slug', slug)}/jobs/{job}/start"
        )
        try:
            answer = self.hook.transport.request(
                "POST",
                path,
                body={"environment": dict(environment)} if environment else {},
                idempotent=False,
                not_found=f"v1 job {job!r} of project {project!r}",
            )
        except NotDone as not_done:
            raise CmlApiError(
                "The v1 start request got no answer; the v1 API cannot tell whether the job started. "
                "Check the job's page in the workbench before starting it again.",
                method="POST",
                path=path,
                http_status=not_done.error.http_status,
            ) from None
        self.hook.log.info("Started legacy CDSW job %s/%s: engine %s.", project, job, answer.get("engine_id"))
        return answer

    def active_run(self, project_id: str, job_id: str) -> dict[str, Any] | None:
        """The job's active run (the one that makes a start fail "already active"), or ``None``.

        :param project_id: project ID.
        :param job_id: job ID.
        """
        for run in self.hook.list_job_runs(project_id, job_id, limit=ACTIVE_RUN_SEARCH):
            if not runs.is_terminal(runs.status_of(run)):
                return run
        return None
