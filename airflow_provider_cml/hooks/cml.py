"""Hook: CmlHook, the one place that speaks to a Cloudera AI workbench (names, runs, waiting)."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_cml import runs
from airflow_provider_cml._compat import AirflowNotFoundException, BaseHook, amask_secret, mask_secret
from airflow_provider_cml.config import CmlClientConfig, build_client_config
from airflow_provider_cml.connection_fields import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    UI_FIELD_BEHAVIOUR,
    wtforms_widgets,
)
from airflow_provider_cml.create_once import Attempt, Undecidable, look_up_lagging, post_once
from airflow_provider_cml.exceptions import (
    CmlApiError,
    CmlConfigError,
    CmlException,
    CmlJobAlreadyActiveError,
    CmlJobRunError,
    CmlLookupError,
)
from airflow_provider_cml.hooks.jobs import JobDefinitions
from airflow_provider_cml.links import build_run_url
from airflow_provider_cml.retry import Clock, is_refusal
from airflow_provider_cml.runs import RunRef, StopResult, describe_run, run_environment
from airflow_provider_cml.transport import NotDone, SyncTransport
from airflow_provider_cml.validation import (
    START_TOKEN_ENV,
    Overrides,
    looks_like_id,
    normalize_environment,
    path_segment,
    validate_arguments,
    validate_positive,
)
from airflow_provider_cml.waiting import (
    DEFAULT_UNKNOWN_GRACE,
    Decision,
    JobRetry,
    Next,
    Observation,
    Outcome,
    WaitRule,
    WaitState,
    log_decision,
    on_cadence,
)

if TYPE_CHECKING:
    from airflow_provider_cml.async_client import AsyncTransport

DEFAULT_PAGE_SIZE = 100
#: Bounds on one listing: 1,000 pages of 100 are far beyond any workbench; a loop is a broken server.
MAX_PAGES = 1000
MAX_EMPTY_PAGES = 5
#: A start (every attempt, look-up and back-off) ends within this many request timeouts.
START_BUDGET = 3
#: Seconds the status read before a stop may take: past that, the stop is sent unread.
STATUS_BEFORE_STOP = 10.0
#: After a lost start answer: how many pages of the runs listing each look reads.
LOOKUP_PAGES = 5
#: Server and worker clocks may differ: runs created up to this long before the start still count.
CLOCK_SKEW = timedelta(minutes=5)
#: One page of a job's newest runs: where the platform's retry of a failed run shows up.
RETRY_LISTING = {"sort": "-created_at", "page_size": 10}
#: A job's newest runs searched for the active one (there is at most one, and it is recent).
ACTIVE_RUN_SEARCH = 10
#: Pages of the workload-executions listing read to explain one failure.
EXECUTION_PAGES = 3


async def _aget_connection(hook: BaseHook, conn_id: str) -> Any:
    """The connection, or ``None`` if it does not exist, without blocking the event loop."""
    try:
        getter = getattr(type(hook), "aget_connection", None)
        if getter is not None:  # Airflow 3.1+
            return await getter(conn_id)
        from asgiref.sync import sync_to_async

        return await sync_to_async(hook.get_connection)(conn_id)
    except AirflowNotFoundException:
        return None


class CmlHook(JobDefinitions, BaseHook):
    """Talks to a Cloudera AI workbench (API v2, or the legacy CDSW v1 Jobs API for starting jobs).

    The connection's host is the workbench URL and its password the API key. Extras (all optional):
    ``api_version`` (``v2``/``v1``), ``verify_ssl``, ``ca_bundle``, ``timeout``, ``max_retries``,
    ``run_url_template``. Without a key, inside a Cloudera AI session, ``CDSW_APIV2_KEY`` and
    ``CDSW_API_URL``/``CDSW_DOMAIN`` are used.

    Projects and jobs may be given by ID or by exact name; names are looked up once per hook. Jobs
    can also be defined from code (:meth:`ensure_job`, :meth:`create_job`, :meth:`update_job`,
    :meth:`delete_job`, :meth:`list_runtimes`: see :mod:`airflow_provider_cml.hooks.jobs`).

    :param cml_conn_id: Airflow connection id of type ``cml``.
    :param timeout: request timeout in seconds; overrides the connection's ``timeout``.
    :param max_retries: retries per request; overrides the connection's ``max_retries``.
    :param clock: what the synchronous paths read the time from and sleep by (tests pass a fake).
    """

    conn_name_attr = "cml_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Cloudera AI"

    def __init__(
        self,
        cml_conn_id: str = DEFAULT_CONN_ID,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.cml_conn_id = cml_conn_id
        self._timeout = timeout
        self._max_retries = max_retries
        self.clock = clock or Clock()
        #: Set by :meth:`interrupt` (from ``on_kill``): a sync wait stops sleeping at once.
        self.interrupted = threading.Event()
        #: Listings (``usage``, ``executions``) this key may not read: not asked again.
        self._unreadable: set[str] = set()
        self._projects: dict[str, dict[str, Any]] = {}
        self._jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self._async_transport: AsyncTransport | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cml_conn_id={self.cml_conn_id!r})"

    # -- connection form (Airflow 2.x and 3.0/3.1; 3.2+ reads provider info) -----------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's extra fields (wtforms), for Airflow versions that ask the hook."""
        return wtforms_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Which standard form fields are hidden or relabelled, for Airflow versions that ask the hook."""
        return dict(UI_FIELD_BEHAVIOUR)

    # -- configuration and transport ------------------------------------------------------------

    @cached_property
    def config(self) -> CmlClientConfig:
        """Client settings from the Airflow connection (or the workbench session's variables)."""
        try:
            conn = self.get_connection(self.cml_conn_id)
        except AirflowNotFoundException:
            conn = None
        config = self._build_config(conn)
        mask_secret(config.api_key)
        return config

    def _build_config(self, conn: Any) -> CmlClientConfig:
        if conn is None:
            if "CDSW_APIV2_KEY" not in os.environ:
                raise CmlConfigError(
                    f"Airflow connection {self.cml_conn_id!r} does not exist. Create a 'Cloudera AI' "
                    f"connection with that id, or set AIRFLOW_CONN_{self.cml_conn_id.upper()}."
                )
            config = build_client_config(
                host=None, password=None, timeout=self._timeout, max_retries=self._max_retries
            )
        else:
            config = build_client_config(
                host=conn.host,
                password=conn.password,
                port=conn.port,
                extra=conn.extra_dejson,
                timeout=self._timeout,
                max_retries=self._max_retries,
            )
        return config

    @property
    def is_legacy_v1(self) -> bool:
        """Whether the connection uses the legacy CDSW v1 Jobs API (start only, no status)."""
        return self.config.api_version == "v1"

    @cached_property
    def transport(self) -> SyncTransport:
        """The synchronous transport: one ``requests.Session`` per hook, reused across polls."""
        return SyncTransport(self.config, self.clock)

    @contextlib.contextmanager
    def within(self, deadline: float | None) -> Iterator[None]:
        """Every request made inside ends by ``deadline`` (on :attr:`clock`), retries and sleeps included.

        Replaces an outer bound for its duration: a stop sent when a wait's deadline passed gets its
        own short bound this way. ``None`` lifts the bound.

        :param deadline: the time on the hook's monotonic clock, or ``None``.
        """
        transport = self.transport
        outer, transport.bound = transport.bound, deadline
        try:
            yield
        finally:
            transport.bound = outer

    def monotonic_deadline(self, unix_deadline: float | None) -> float | None:
        """A UNIX-time deadline (an operator's or a trigger's) on the hook's monotonic clock.

        :param unix_deadline: seconds since the epoch, or ``None``.
        """
        if unix_deadline is None:
            return None
        return self.clock.monotonic() + (unix_deadline - time.time())

    # -- async (triggers): same policy, same errors, the lean asyncio client instead of requests --

    async def aconfig(self) -> CmlClientConfig:
        """:attr:`config`, with the connection read without blocking the event loop."""
        if "config" not in self.__dict__:
            conn = await _aget_connection(self, self.cml_conn_id)
            config = self._build_config(conn)
            await amask_secret(config.api_key)
            self.__dict__["config"] = config
        return self.config

    async def _arequest(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        not_found: str | None = None,
        deadline: float | None = None,
    ) -> Any:
        if self._async_transport is None:
            from airflow_provider_cml.async_client import AsyncTransport  # aiohttp: triggers only

            self._async_transport = AsyncTransport(await self.aconfig())
        transport = self._async_transport
        return await transport.request(method, path, params=params, not_found=not_found, deadline=deadline)

    async def astep(
        self, ref: RunRef, rule: WaitRule, state: WaitState, now: Callable[[], float]
    ) -> tuple[WaitRule, Decision]:
        """Async :meth:`step`, on the caller's clock (a trigger's deadline is UNIX time).

        :param ref: the run the wait started with.
        :param rule: the rule so far.
        :param state: the rule's state so far.
        :param now: the clock.
        """
        deadline = None if rule.deadline is None else time.monotonic() + (rule.deadline - now())
        polled_at = now()
        seen = await self.apoll(ref, state, deadline)
        decision = rule.judge(seen, now(), state)
        if decision.next is Next.NEED_JOB:
            rule = rule.knowing(await self.ajob_retry(ref, deadline))
            decision = rule.judge(seen, now(), state)
        return rule, on_cadence(decision, now() - polled_at)

    async def apoll(
        self, ref: RunRef, state: WaitState | None = None, deadline: float | None = None
    ) -> Observation:
        """Async :meth:`poll` (``deadline`` on ``time.monotonic()``).

        :param ref: the run the wait started with.
        :param state: the waiting rule's state.
        :param deadline: the wait's deadline.
        """
        try:
            if state is not None and state.failed is not None:
                path = self._runs_path(*ref[:2])
                page = await self._arequest("GET", path, params=RETRY_LISTING, deadline=deadline)
                return runs.retry_run_among(page, state.failed)
            current = runs.current_ref(ref, state)
            what = self._what_run(current.run_id, current.job_id)
            return await self._arequest("GET", self._run_path(current), not_found=what, deadline=deadline)
        except CmlException as exc:
            return exc

    async def ajob_retry(self, ref: RunRef, deadline: float | None = None) -> JobRetry | None:
        """Async :meth:`job_retry`.

        :param ref: a run of the job.
        :param deadline: the wait's deadline (``time.monotonic()``).
        """
        try:
            job = await self._arequest("GET", self._job_path(ref.project_id, ref.job_id), deadline=deadline)
        except CmlException as exc:
            self._retry_unknown(exc)
            return None
        return JobRetry.of(job)

    async def astop_if_active(self, ref: RunRef) -> StopResult:
        """Async :meth:`stop_if_active`.

        :param ref: the run.
        """
        now, limit = time.monotonic(), (await self.aconfig()).timeout
        try:
            seen = await self.apoll(ref, deadline=now + min(limit / 2, STATUS_BEFORE_STOP))
            if not runs.should_stop(seen):
                return StopResult.ALREADY_ENDED
            await self._arequest("POST", self._run_path(ref) + ":stop", deadline=now + limit)
        except CmlException as exc:
            return self._stop_failed(ref, exc)
        return self._stopped(ref)

    async def aclose(self) -> None:
        """Close the async client (its connection pool)."""
        if self._async_transport is not None:
            await self._async_transport.aclose()
            self._async_transport = None

    def paginate(
        self, path: str, key: str, *, params: Mapping[str, Any] | None = None, not_found: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every item of a listing, following ``next_page_token`` through all pages.

        The same filter and sort are sent with every page, as the API requires. A listing that never
        ends (a token seen before, :data:`MAX_PAGES` pages, or :data:`MAX_EMPTY_PAGES` empty pages in a
        row that still promise more) stops with a clear error instead of looping.

        :param path: the listing's path, e.g. ``/projects``.
        :param key: the answer's list field, e.g. ``"projects"``.
        :param params: filter and sort parameters.
        :param not_found: what a 404 means, for its message.
        """
        query: dict[str, Any] = {"page_size": DEFAULT_PAGE_SIZE, **(params or {})}
        seen_tokens: set[str] = set()
        empty_in_a_row = 0
        for _ in range(MAX_PAGES):
            page = self.transport.request("GET", path, params=query, not_found=not_found)
            items = page.get(key)
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise self._odd_listing(path, f"without the expected {key!r} list of objects")
            yield from items
            token = page.get("next_page_token")
            if not token:
                return
            empty_in_a_row = 0 if items else empty_in_a_row + 1
            if str(token) in seen_tokens or empty_in_a_row >= MAX_EMPTY_PAGES:
                raise self._odd_listing(
                    path,
                    "with a listing that never ends (a page token repeats, or empty "
                    "pages keep promising more)",
                )
            seen_tokens.add(str(token))
            query["page_token"] = token
        raise self._odd_listing(path, f"with more than {MAX_PAGES} pages")

    @staticmethod
    def _odd_listing(path: str, what: str) -> CmlApiError:
        return CmlApiError(
            f"Cloudera AI answered GET {path} {what}; is the host a Cloudera AI workbench? Stopped reading.",
            method="GET",
            path=path,
        )

    @staticmethod
    def _listing_params(search_filter: Mapping[str, Any] | None, sort: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if search_filter:
            params["search_filter"] = json.dumps(dict(search_filter))
        if sort:
            params["sort"] = sort
        return params

    def _require_v2(self, what: str) -> None:
        if self.is_legacy_v1:
            raise CmlConfigError(
                f"{what} needs Cloudera AI API v2, but connection {self.cml_conn_id!r} uses the legacy v1 "
                "Jobs API, which can only start jobs. Set the connection's api_version to v2."
            )

    # -- projects and jobs ----------------------------------------------------------------------

    def list_projects(
        self,
        search_filter: Mapping[str, Any] | None = None,
        sort: str | None = None,
        include_public_projects: bool = True,
    ) -> list[dict[str, Any]]:
        """All projects the key may use (every page), public and organisation ones included.

        :param search_filter: e.g. ``{"name": "demo"}``; the server matches by substring.
        :param sort: e.g. ``"-created_at"``.
        :param include_public_projects: also list others' public and organisation projects (the
            API's default is not to, so a project the key can run jobs in would be "not found").
        """
        self._require_v2("Listing projects")
        params = self._listing_params(search_filter, sort)
        if include_public_projects:
            params["include_public_projects"] = "true"
        return list(self.paginate("/projects", "projects", params=params))

    def get_project(self, project_id: str) -> dict[str, Any]:
        """One project by ID.

        :param project_id: project ID.
        """
        self._require_v2("Reading a project")
        return self.transport.request(
            "GET", self._project_path(project_id), not_found=f"project {project_id!r}"
        )

    def list_jobs(
        self, project: str, search_filter: Mapping[str, Any] | None = None, sort: str | None = None
    ) -> list[dict[str, Any]]:
        """All jobs of a project, every page.

        :param project: project name or ID.
        :param search_filter: e.g. ``{"name": "train"}``; the server matches by substring.
        :param sort: e.g. ``"name"``.
        """
        project_id = self.resolve_project(project)["id"]
        return list(
            self.paginate(
                self._project_path(project_id) + "/jobs",
                "jobs",
                params=self._listing_params(search_filter, sort),
                not_found=f"project {project!r}",
            )
        )

    def get_job(self, project: str, job_id: str) -> dict[str, Any]:
        """One job by ID.

        :param project: project name or ID.
        :param job_id: job ID.
        """
        project_id = self.resolve_project(project)["id"]
        return self.transport.request(
            "GET", self._job_path(project_id, job_id), not_found=f"job {job_id!r} in project {project!r}"
        )

    @staticmethod
    def _pick_one(kind: str, wanted: str, items: list[dict[str, Any]], scope: str) -> dict[str, Any]:
        exact = [item for item in items if item.get("name") == wanted]
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            ids = ", ".join(str(item.get("id")) for item in exact)
            raise CmlLookupError(
                f"{len(exact)} {kind}s{scope} are named {wanted!r} (IDs: {ids}). Pass the ID of the one you "
                "mean instead of the name."
            )
        names = sorted({str(item.get("name")) for item in items})
        close = difflib.get_close_matches(wanted, names, n=5, cutoff=0.5)
        if close:
            hint = f" Close matches: {', '.join(repr(n) for n in close)}."
        elif names:
            hint = f" Names there include: {', '.join(repr(n) for n in names[:5])}."
        else:
            hint = ""
        raise CmlLookupError(
            f"No {kind}{scope} is named exactly {wanted!r} (names are case-sensitive).{hint} Check the name "
            f"in the workbench, or pass the {kind} ID."
        )

    def resolve_project(self, project: str) -> dict[str, Any]:
        """The project for an ID or an exact name (looked up over all pages, cached per hook).

        An ID-shaped value is trusted without a request: a wrong one fails with 404 where it is used.

        :param project: project name or ID.
        """
        self._require_v2("Looking up a project")
        if not isinstance(project, str) or not project.strip():
            raise CmlConfigError(f"project must be a project name or ID, not {project!r}.")
        if project in self._projects:
            return self._projects[project]
        if looks_like_id(project):
            found: dict[str, Any] = {"id": project}
        else:
            candidates = self.list_projects(search_filter={"name": project})
            if not candidates:
                # Nothing matched even as a substring: every name is worth comparing for hints.
                candidates = self.list_projects()
            found = self._pick_one("project", project, candidates, "")
        self._projects[project] = found
        return found

    def resolve_job(self, project: str, job: str) -> dict[str, Any]:
        """The job for an ID or an exact name within a project (cached per hook).

        :param project: project name or ID.
        :param job: job name or ID.
        """
        project_id = self.resolve_project(project)["id"]
        if not isinstance(job, str) or not job.strip():
            raise CmlConfigError(f"job must be a job name or ID, not {job!r}.")
        key = (project_id, job)
        if key in self._jobs:
            return self._jobs[key]
        if looks_like_id(job):
            found: dict[str, Any] = {"id": job, "project_id": project_id}
        else:
            candidates = self.list_jobs(project_id, search_filter={"name": job})
            if not candidates:
                candidates = self.list_jobs(project_id)
            found = self._pick_one("job", job, candidates, f" in project {project!r}")
        self._jobs[key] = found
        return found

    def resolve_run(self, project: str, job: str, run_id: str) -> RunRef:
        """The IDs naming a run, with the project and job given by ID or name.

        :param project: project name or ID.
        :param job: job name or ID.
        :param run_id: run ID.
        """
        project_id = str(self.resolve_project(project)["id"])
        return RunRef(project_id, str(self.resolve_job(project, job)["id"]), str(run_id))

    # Every ID that goes into a path is checked and percent-encoded here, whether it came from a DAG
    # or from a server's answer: "../x" must not name another resource.

    @staticmethod
    def _project_path(project_id: str) -> str:
        return f"/projects/{path_segment('project_id', project_id)}"

    @classmethod
    def _job_path(cls, project_id: str, job_id: str) -> str:
        return f"{cls._project_path(project_id)}/jobs/{path_segment('job_id', job_id)}"

    @classmethod
    def _runs_path(cls, project_id: str, job_id: str) -> str:
        return f"{cls._job_path(project_id, job_id)}/runs"

    @classmethod
    def _run_path(cls, ref: RunRef) -> str:
        return f"{cls._runs_path(ref.project_id, ref.job_id)}/{path_segment('run_id', ref.run_id)}"

    @staticmethod
    def _what(project: str, job: str) -> str:
        return f"job {job!r} in project {project!r}"

    @staticmethod
    def _what_run(run_id: str, job: str, project: str | None = None) -> str:
        return f"run {run_id!r} of job {job!r}" + (f" in project {project!r}" if project else "")

    # -- runs -----------------------------------------------------------------------------------

    def start_job_run(
        self, project: str, job: str, environment: Overrides | None = None, arguments: str | None = None
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
        :param environment: overrides of the job's environment variables (values become strings).
        :param arguments: one string, seen by the script as ``JOB_ARGUMENTS`` (v2 only).
        """
        env = normalize_environment(environment)
        args = validate_arguments(arguments)
        if self.is_legacy_v1:
            return self._start_v1(project, job, env, args)
        ref = self.resolve_run(project, job, "")
        path = self._runs_path(ref.project_id, ref.job_id)
        token = uuid.uuid4().hex
        body: dict[str, Any] = {
            "project_id": ref.project_id,
            "job_id": ref.job_id,
            "environment": {**env, START_TOKEN_ENV: token},
        }
        if args is not None:
            body["arguments"] = args
        deadline = self.budget(START_BUDGET * self.config.timeout)
        since = datetime.now(timezone.utc) - CLOCK_SKEW
        refused_idle = False

        def on_refusal(exc: CmlApiError, attempt: Attempt) -> Mapping[str, Any] | None:
            nonlocal refused_idle
            if not is_refusal(exc.http_status):
                raise exc
            # Refused: is the job busy? The listing says so, whatever the refusal's wording.
            try:
                active = self.active_run(ref.project_id, ref.job_id)
            except CmlException:  # the look failed: the refusal is the error worth showing
                active = None
            if active is None:
                # Either not about a busy job, or its run ended between the refusal and the look
                # (short runs do): one more start tells. A refusal acted on nothing.
                if refused_idle or not attempt.may_resend(1.0):
                    raise exc from None
                refused_idle = True
                self.clock.sleep(1.0)
                return None
            if attempt.answer_lost:  # the active run may be this start's own
                found = look_up_lagging(
                    lambda: self._started_run(path, token, since, deadline), self.clock, deadline
                )
                if found is not None:
                    return found
            raise self._busy(job, active, exc, attempt.answer_lost) from None

        with self.within(deadline):  # the look-ups too
            run = post_once(
                lambda: self.transport.request(
                    "POST",
                    path,
                    body=body,
                    idempotent=False,
                    not_found=self._what(project, job),
                    secrets=list(env.values()),
                    deadline=deadline,
                ),
                lambda: self._started_run(path, token, since, deadline),
                policy=self.config.retry_policy,
                clock=self.clock,
                deadline=deadline,
                what=f"start of job {job!r}",
                log=self.log,
                on_refusal=on_refusal,
            )
        self.log.info("Started Cloudera AI %s.", describe_run(run))
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

    def budget(self, seconds: float) -> float:
        """The deadline ``seconds`` from now, or the :meth:`within` bound if that comes sooner.

        :param seconds: the time an operation may take.
        """
        deadline = self.clock.monotonic() + seconds
        bound = self.transport.bound
        return deadline if bound is None else min(deadline, bound)

    def _started_run(
        self, runs_path: str, token: str, since: datetime, deadline: float
    ) -> dict[str, Any] | None:
        """One look for the run carrying ``token`` among the runs created since the start.

        Callers read it through :func:`~airflow_provider_cml.create_once.look_up_lagging` (a listing
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
        query: dict[str, Any] = {"sort": "-created_at", "page_size": DEFAULT_PAGE_SIZE}
        ours: list[dict[str, Any]] = []
        listed_any = shows_environment = False
        for _ in range(LOOKUP_PAGES):
            page = self.transport.request("GET", runs_path, params=query, deadline=deadline)
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

    def _start_v1(self, project: str, job: str, env: dict[str, str], args: str | None) -> dict[str, Any]:
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
        if args is not None:
            raise CmlConfigError("The legacy v1 Jobs API cannot pass arguments; use a v2 connection.")
        path = (
            f"/projects/{path_segment('owner', owner)}/{path_segment('project slug', slug)}/jobs/{job}/start"
        )
        try:
            answer = self.transport.request(
                "POST",
                path,
                body={"environment": env} if env else {},
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
        self.log.info("Started legacy CDSW job %s/%s: engine %s.", project, job, answer.get("engine_id"))
        return answer

    def get_job_run(self, project: str, job: str, run_id: str) -> dict[str, Any]:
        """One run: its ``status`` and times.

        :param project: project name or ID.
        :param job: job name or ID.
        :param run_id: run ID.
        """
        return self._run_request("GET", project, job, run_id, doing="Reading a job run's status")

    def _run_request(
        self, method: str, project: str, job: str, run_id: str, *, doing: str, action: str = ""
    ) -> Any:
        self._require_v2(doing)
        ref = self.resolve_run(project, job, run_id)
        return self.transport.request(
            method, self._run_path(ref) + action, not_found=self._what_run(run_id, job, project)
        )

    def list_job_runs(
        self, project: str, job: str, sort: str | None = "-created_at", limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Runs of a job, newest first by default.

        :param project: project name or ID.
        :param job: job name or ID.
        :param sort: sort key, e.g. ``"-created_at"``.
        :param limit: stop paging once this many runs were read.
        """
        self._require_v2("Listing job runs")
        ref = self.resolve_run(project, job, "")
        found: list[dict[str, Any]] = []
        for run in self.paginate(
            self._runs_path(ref.project_id, ref.job_id),
            "job_runs",
            params={
                **self._listing_params(None, sort),
                "page_size": min(limit or DEFAULT_PAGE_SIZE, DEFAULT_PAGE_SIZE),
            },
            not_found=self._what(project, job),
        ):
            found.append(run)
            if limit is not None and len(found) >= limit:
                break
        return found

    def stop_job_run(self, project: str, job: str, run_id: str) -> dict[str, Any]:
        """Ask Cloudera AI to stop a run.

        Stopping a run that already ended is an API error; clean-up paths use :meth:`stop_if_active`.

        :param project: project name or ID.
        :param job: job name or ID.
        :param run_id: run ID.
        """
        return self._run_request("POST", project, job, run_id, doing="Stopping a job run", action=":stop")

    def stop_if_active(self, ref: RunRef) -> StopResult:
        """Stop a run unless it has ended; report instead of raising (for clean-up paths).

        The status read may take half a request timeout; when it cannot be read (a hanging or
        failing server), the stop is sent anyway. The whole call ends within one request timeout,
        whatever bound the caller is under (a wait's deadline has usually passed when it is called).

        :param ref: the run.
        """
        now, limit = self.clock.monotonic(), self.config.timeout
        try:
            with self.within(now + limit):  # its own bound: the wait's deadline may have passed
                seen = self.poll(ref, deadline=now + min(limit / 2, STATUS_BEFORE_STOP))
                if not runs.should_stop(seen):
                    return StopResult.ALREADY_ENDED
                self.transport.request("POST", self._run_path(ref) + ":stop")
        except CmlException as exc:
            return self._stop_failed(ref, exc)
        return self._stopped(ref)

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
        deadline = self.clock.monotonic() + timeout
        with self.within(deadline):
            _, decision = self._wait(ref, WaitRule(poll_interval, deadline, None, follow_retries=False))
        return decision.next is Next.FINISHED

    def _stopped(self, ref: RunRef) -> StopResult:
        self.log.info("Asked Cloudera AI to stop run %s.", ref.run_id)
        return StopResult.STOPPED

    def _stop_failed(self, ref: RunRef, exc: CmlException) -> StopResult:
        self.log.warning("Could not stop Cloudera AI run %s; it may still be running: %s", ref.run_id, exc)
        return StopResult.FAILED

    def interrupt(self) -> None:
        """Wake a synchronous wait at once (called from ``on_kill``); it stops the run and raises."""
        self.interrupted.set()

    def job_run_url(self, project: str, job_id: str, run_id: str) -> str | None:
        """The run's page in the workbench (see :mod:`airflow_provider_cml.links`); ``None`` if unknown.

        :param project: project name or ID.
        :param job_id: job ID.
        :param run_id: run ID.
        """
        try:
            found = self.resolve_project(project)
            if "owner" not in found and "creator" not in found:  # resolved from an ID: fetch once
                found = self.get_project(found["id"])
                self._projects[project] = found
        except CmlException as exc:
            self.log.warning("Could not build the run's link: %s", exc)
            return None
        return build_run_url(self.config.run_url_template, self.config.base_url, found, job_id, run_id)

    def wait_for_job_run(
        self,
        project: str,
        job: str,
        run_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 30,
        stop_on_timeout: bool = True,
        unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
        follow_retries: bool = True,
        run_url: str | None = None,
    ) -> dict[str, Any]:
        """Poll until the run ends; return it on success, raise on failure or timeout.

        The rule is :class:`~airflow_provider_cml.waiting.WaitRule`: transient errors do not end the
        wait, ``ENGINE_STOPPING`` keeps it going, a status that stays unclear ends it after
        ``unknown_grace``. :meth:`interrupt` (from ``on_kill``) wakes it at once.

        :param project: project name or ID.
        :param job: job name or ID.
        :param run_id: run ID.
        :param poll_interval: seconds between status checks.
        :param timeout: seconds to wait at most; ``None`` waits until the run ends.
        :param stop_on_timeout: stop the remote run when the wait gives up.
        :param unknown_grace: seconds a run may stay ``ENGINE_UNKNOWN`` before the wait gives up.
        :param follow_retries: when the job has Job Retry and the failure is one it retries, wait for
            the platform's retry runs and report the last one.
        :param run_url: the link for messages, when the caller has it (saves reading the project).
        :raises CmlJobRunError: the run ended without success, or stayed unclear too long.
        :raises CmlJobRunTimeout: the timeout passed first.
        """
        validate_positive("poll_interval", poll_interval, allow_none=False)
        validate_positive("timeout", timeout)
        validate_positive("unknown_grace", unknown_grace)
        ref = self.resolve_run(project, job, run_id)
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        rule = WaitRule(poll_interval, deadline, unknown_grace, follow_retries=follow_retries)
        with self.within(deadline):
            rule, decision = self._wait(ref, rule)
            succeeded = decision.next is Next.FINISHED and runs.is_success(decision.state.status)
            link = run_url or (None if succeeded else self.job_run_url(project, ref.job_id, ref.run_id))
        return dict(self._conclude(Outcome(ref, rule, decision, link, timeout), stop_on_timeout))

    def _wait(self, ref: RunRef, rule: WaitRule) -> tuple[WaitRule, Decision]:
        """Step, log and sleep until a decision ends the wait; raise when interrupted."""
        state = WaitState()
        while not self.interrupted.is_set():
            rule, decision = self.step(ref, rule, state)
            state = decision.state
            log_decision(self.log, ref.run_id, decision)
            if decision.next is not Next.WAIT:
                return rule, decision
            self.clock.sleep(decision.sleep, self.interrupted)
        raise CmlJobRunError(
            f"The wait for Cloudera AI run {ref.run_id} was interrupted (the task is being killed).",
            run_id=ref.run_id,
            status=state.status,
        )

    def active_run(self, project_id: str, job_id: str) -> dict[str, Any] | None:
        """The job's active run (the one that makes a start fail "already active"), or ``None``.

        :param project_id: project ID.
        :param job_id: job ID.
        """
        for run in self.list_job_runs(project_id, job_id, limit=ACTIVE_RUN_SEARCH):
            if not runs.is_terminal(runs.status_of(run)):
                return run
        return None

    def wait_until_ended(
        self, ref: RunRef, *, timeout: float | None, poll_interval: float, unknown_grace: float | None
    ) -> bool:
        """Wait for a run that is not ours to end, whichever way; never stop it. ``False``: timed out.

        By the same waiting rule as :meth:`wait_for_job_run`, without Job Retry (a platform retry
        that occupies the job is found by the next start).

        :param ref: the run.
        :param timeout: seconds to wait at most.
        :param poll_interval: seconds between status checks.
        :param unknown_grace: seconds the run may stay ``ENGINE_UNKNOWN``.
        """
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        with self.within(deadline):
            _, decision = self._wait(
                ref, WaitRule(poll_interval, deadline, unknown_grace, follow_retries=False)
            )
        return decision.next is not Next.TIMED_OUT

    def step(self, ref: RunRef, rule: WaitRule, state: WaitState) -> tuple[WaitRule, Decision]:
        """One poll, judged by the waiting rule; reads the job's retry settings when the rule asks.

        :param ref: the run the wait started with.
        :param rule: the rule so far.
        :param state: the rule's state so far.
        """
        polled_at = self.clock.monotonic()
        seen = self.poll(ref, state, deadline=rule.deadline)
        decision = rule.judge(seen, self.clock.monotonic(), state)
        if decision.next is Next.NEED_JOB:  # a failure the job's Job Retry may retry
            rule = rule.knowing(self.job_retry(ref))
            decision = rule.judge(seen, self.clock.monotonic(), state)
        return rule, on_cadence(decision, self.clock.monotonic() - polled_at)

    def poll(self, ref: RunRef, state: WaitState | None = None, deadline: float | None = None) -> Observation:
        """One status check for the waiting rule: the run, or the error that came instead.

        While the rule awaits the platform's retry of a failed run, the check looks for that retry
        among the job's newest runs instead (``NO_RETRY_YET`` while there is none).

        :param ref: the run the wait started with.
        :param state: the waiting rule's state.
        :param deadline: the wait's deadline on the hook's clock: the check (its retries and
            ``Retry-After`` sleeps included) ends by then.
        """
        try:
            if state is not None and state.failed is not None:
                page = self.transport.request(
                    "GET", self._runs_path(*ref[:2]), params=RETRY_LISTING, deadline=deadline
                )
                return runs.retry_run_among(page, state.failed)
            current = runs.current_ref(ref, state)
            return self.transport.request(
                "GET",
                self._run_path(current),
                not_found=self._what_run(current.run_id, current.job_id),
                deadline=deadline,
            )
        except CmlException as exc:
            return exc

    def job_retry(self, ref: RunRef) -> JobRetry | None:
        """The job's Job Retry settings (``None`` when it does not retry, or cannot be read).

        :param ref: a run of the job.
        """
        try:
            return JobRetry.of(self.get_job(ref.project_id, ref.job_id))
        except CmlException as exc:
            self._retry_unknown(exc)
            return None

    def _retry_unknown(self, exc: CmlException) -> None:
        self.log.warning(
            "Could not read the job's retry settings (%s); not waiting for platform retries.", exc
        )

    def _conclude(self, outcome: Outcome, stop_on_timeout: bool) -> Mapping[str, Any]:
        """Act on a decision that ends the wait: return the run, or raise what ended it."""
        decision, ref = outcome.decision, runs.current_ref(outcome.ref, outcome.decision.state)
        if decision.next is Next.ERROR:
            raise decision.error  # type: ignore[misc]
        if decision.next is Next.FINISHED and decision.run is not None:
            return self.finished(ref, decision.run, note=outcome.note, link=outcome.link)
        stop = self.stop_if_active(ref) if stop_on_timeout else StopResult.NOT_ASKED
        raise outcome.gave_up(stop)

    def finished(
        self, ref: RunRef, run: Mapping[str, Any], *, note: str = "", link: str | None = None
    ) -> Mapping[str, Any]:
        """Return a finished run that succeeded; raise why it did not otherwise.

        A failure's message carries what Cloudera AI's usage and workload listings say (exit code,
        OOM kill, the platform's message) when the key may read them.

        :param ref: the run.
        :param run: its final answer.
        :param note: words for a result reached on a platform retry.
        :param link: the run's page.
        """
        status = runs.status_of(run)
        if runs.is_success(status):
            if note:
                self.log.info("Cloudera AI run %s succeeded%s.", ref.run_id, note)
            return run
        details = self.failure_details(ref, run)
        raise CmlJobRunError(
            runs.failure_message(run, link=link, details=details, note=note), run_id=ref.run_id, status=status
        )

    def failure_details(self, ref: RunRef, run: Mapping[str, Any]) -> str | None:
        """Why a run failed, from the usage and workload-execution listings; ``None`` if unknown.

        Each listing counts on its own: a key may read usage but not executions (often readable
        only by an observability machine user), or the other way round; whatever it may read is
        used. Best effort and bounded: one request timeout for all of it, the job plus one usage
        page plus at most :data:`EXECUTION_PAGES` execution pages. A listing the key may not read
        (403/404) is noted once per hook and not asked again. Nothing here changes the outcome.

        :param ref: the run.
        :param run: its final answer.
        """
        if {"usage", "executions"} <= self._unreadable:
            return None
        with self.within(self.clock.monotonic() + self.config.timeout):  # its own bound
            try:
                job = self.get_job(ref.project_id, ref.job_id)
            except CmlException as exc:
                self.log.warning("Could not read why run %s failed: %s", ref.run_id, exc)
                return None
            low, high = runs.time_window(run)
            usage = self._from_listing(
                "usage",
                ref,
                lambda: runs.match_usage(
                    self.transport.request("GET", "/usage", params=runs.usage_query(job, low, high)), job, run
                ),
            )
            execution = self._from_listing(
                "executions", ref, lambda: self._find_execution(job, run, low, high)
            )
        return runs.describe_failure(usage, execution)

    def _from_listing(
        self, listing: str, ref: RunRef, read: Callable[[], Mapping[str, Any] | None]
    ) -> Mapping[str, Any] | None:
        """``read()`` unless the key may not read ``listing``; never raises."""
        if listing in self._unreadable:
            return None
        try:
            return read()
        except CmlApiError as exc:
            if exc.http_status in (403, 404):
                self._unreadable.add(listing)
                rest = "status only" if {"usage", "executions"} <= self._unreadable else "the other listing"
                self.log.warning(
                    "This API key may not read Cloudera AI's %s listing (HTTP %s), so failures are "
                    "explained from %s.",
                    listing,
                    exc.http_status,
                    rest,
                )
            else:
                self.log.warning("Could not read the %s listing for run %s: %s", listing, ref.run_id, exc)
        except Exception as exc:  # never let the explanation change the outcome
            self.log.warning("Could not read the %s listing for run %s: %s", listing, ref.run_id, exc)
        return None

    def _find_execution(
        self, job: Mapping[str, Any], run: Mapping[str, Any], low: datetime, high: datetime
    ) -> Mapping[str, Any] | None:
        """The run's ExecutionDetails: executions that started in the run's window, oldest first.

        On a busy workbench the run may not be on the first page: once the job's workload (and so
        its CRN) is seen, the listing is narrowed to that workload (``multi_column_search_filter``).
        """
        query = runs.executions_query(low, high)
        best: Mapping[str, Any] | None = None
        for _ in range(EXECUTION_PAGES):
            page = self.transport.request("GET", "/workloads/executions", params=query)
            token = page.get("next_page_token") if isinstance(page, Mapping) else None
            crn = runs.workload_crn(page, job)
            if token and crn and "multi_column_search_filter" not in query:
                # More pages: a closer execution of this job may be on one. Ask for the job's alone.
                query = runs.executions_query(low, high, workload_crn=crn)
                continue
            best = runs.match_execution(page, job, run) or best
            if not token:
                break
            query = {**query, "page_token": token}
        return best

    def test_connection(self) -> tuple[bool, str]:
        """A cheap authenticated request; used by the Connections UI's Test button.

        v2: ``POST /auth/validate_key`` names the key's user; a workbench without that endpoint
        gets one ``GET /projects`` instead. v1: a read of a project that does not exist: the legacy
        API checks the key first (401), so "not found" means the key was accepted (inference).
        """
        try:
            config = self.config
            if self.is_legacy_v1:
                return self._test_v1(config)
            try:
                answer = self.transport.request("POST", "/auth/validate_key", body={"audience": "API"})
            except CmlApiError as exc:
                if exc.http_status not in (404, 405, 501):
                    raise
                self.transport.request("GET", "/projects", params={"page_size": 1})
                return True, f"Connected to Cloudera AI at {config.base_url} (API v2)."
        except CmlException as exc:
            return False, str(exc)
        if isinstance(answer, Mapping) and answer.get("valid") is False:
            return (
                False,
                f"Cloudera AI says the key is not valid: {answer.get('message') or 'no reason given'}.",
            )
        user = answer.get("username") if isinstance(answer, Mapping) else None
        return True, f"Connected to Cloudera AI at {config.base_url} (API v2) as {user or 'an unnamed user'}."

    def _test_v1(self, config: CmlClientConfig) -> tuple[bool, str]:
        try:
            self.transport.request("GET", "/projects/airflow-connection-test/no-such-project")
        except CmlApiError as exc:
            if exc.http_status != 404:
                return False, str(exc)
        return True, f"The legacy v1 API at {config.base_url} accepted the key."
