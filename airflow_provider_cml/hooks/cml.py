"""CmlHook: the one place that speaks to a Cloudera AI workbench.

It owns the connection (URL, key, TLS, timeouts, retries), looks names up as IDs, and offers every
operation as a method. How each operation is done lives in a module of its own, which the hook
composes: starting runs (:mod:`.starting`), explaining failures (:mod:`.failures`), job definitions
(:mod:`airflow_provider_cml.hooks.jobs`), a whole wait (:mod:`airflow_provider_cml.waiting.plan`).
Sync methods send with ``requests``, async ones (for triggers) with aiohttp; both run the same steps.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_cml import links
from airflow_provider_cml._compat import (
    AirflowNotFoundException,
    BaseHook,
    aget_connection,
    amask_secret,
    mask_secret,
)
from airflow_provider_cml.client import listing
from airflow_provider_cml.client.config import CmlClientConfig, client_config_for
from airflow_provider_cml.client.retry import Clock
from airflow_provider_cml.client.sync_client import SyncTransport
from airflow_provider_cml.connection_fields import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    UI_FIELD_BEHAVIOUR,
    wtforms_widgets,
)
from airflow_provider_cml.exceptions import (
    CmlConfigError,
)
from airflow_provider_cml.hooks import connection_test
from airflow_provider_cml.hooks.failures import FailureExplainer
from airflow_provider_cml.hooks.jobs import JobDefinitions
from airflow_provider_cml.hooks.names import NameCache
from airflow_provider_cml.hooks.starting import RunStarter
from airflow_provider_cml.hooks.waits import HookDriver
from airflow_provider_cml.validation import Overrides
from airflow_provider_cml.values import Arguments, Environment
from airflow_provider_cml.workloads import job_runs as runs
from airflow_provider_cml.workloads.job_runs import RunRef

if TYPE_CHECKING:
    from airflow_provider_cml.client.async_client import AsyncTransport
    from airflow_provider_cml.hooks.applications import Applications
    from airflow_provider_cml.hooks.experiments import Experiments
    from airflow_provider_cml.hooks.models import Models
    from airflow_provider_cml.hooks.registry import Registry

T = TypeVar("T")


class CmlHook(HookDriver, BaseHook):
    """Talks to a Cloudera AI workbench (API v2, or the legacy CDSW v1 Jobs API for starting jobs).

    The connection's host is the workbench URL and its password the API key. Extras (all optional):
    ``api_version`` (``v2``/``v1``), ``verify_ssl``, ``ca_bundle``, ``timeout``, ``max_retries``,
    ``run_url_template``. Without a key, inside a Cloudera AI session, ``CDSW_APIV2_KEY`` and
    ``CDSW_API_URL``/``CDSW_DOMAIN`` are used.

    Projects and jobs may be given by ID or by exact name; names are looked up once per hook. Jobs
    can also be defined from code, through :attr:`jobs` (``hook.jobs.ensure_job(project, spec)``).

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
        #: Projects and jobs by the names (or IDs) they were asked by: looked up once per hook.
        self.names = NameCache(self)
        self._async_transport: AsyncTransport | None = None
        self._starter = RunStarter(self)
        self._explainer = FailureExplainer(self)
        #: Job definitions from code (:class:`.jobs.JobDefinitions`): ``hook.jobs.ensure_job(...)``.
        self.jobs = JobDefinitions(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cml_conn_id={self.cml_conn_id!r})"

    @cached_property
    def models(self) -> Models:
        """Models, builds, deployments and the registry (:class:`.models.Models`); API v2 only."""
        from airflow_provider_cml.hooks.models import Models

        self.require_v2("Models, builds and deployments")
        return Models(self)

    @cached_property
    def applications(self) -> Applications:
        """Applications (:class:`.applications.Applications`); API v2 only."""
        from airflow_provider_cml.hooks.applications import Applications

        self.require_v2("Applications")
        return Applications(self)

    @cached_property
    def experiments(self) -> Experiments:
        """Experiments and their runs (:class:`.experiments.Experiments`); API v2 only."""
        from airflow_provider_cml.hooks.experiments import Experiments

        self.require_v2("Experiments")
        return Experiments(self)

    @cached_property
    def registry(self) -> Registry:
        """Registering model versions from experiment runs (:class:`.registry.Registry`); API v2 only."""
        from airflow_provider_cml.hooks.registry import Registry

        self.require_v2("The model registry")
        return Registry(self)

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's extra fields (wtforms), for Airflow 2.x and 3.0/3.1 (3.2+ reads provider info)."""
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
        return client_config_for(conn, self.cml_conn_id, timeout=self._timeout, max_retries=self._max_retries)

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

    async def aconfig(self) -> CmlClientConfig:
        """:attr:`config`, with the connection read without blocking the event loop."""
        if "config" not in self.__dict__:
            conn = await aget_connection(self, self.cml_conn_id)
            config = self._build_config(conn)
            await amask_secret(config.api_key)
            self.__dict__["config"] = config
        return self.config

    async def aclose(self) -> None:
        """Close the async client (its connection pool)."""
        if self._async_transport is not None:
            await self._async_transport.aclose()
            self._async_transport = None

    def require_v2(self, what: str) -> None:
        """Raise a clear error on a legacy v1 connection, which can only start jobs.

        :param what: what needs API v2, e.g. ``"Listing projects"``.
        """
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
        self.require_v2("Listing projects")
        params = listing.listing_params(search_filter, sort)
        if include_public_projects:
            params["include_public_projects"] = "true"
        return list(listing.paginate(self.transport, "/projects", "projects", params=params))

    def get_project(self, project_id: str) -> dict[str, Any]:
        """One project by ID.

        :param project_id: project ID.
        """
        self.require_v2("Reading a project")
        return self.transport.request(
            "GET", runs.project_path(project_id), not_found=f"project {project_id!r}"
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
            listing.paginate(
                self.transport,
                runs.jobs_path(project_id),
                "jobs",
                params=listing.listing_params(search_filter, sort),
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
            "GET", runs.job_path((project_id, job_id)), not_found=f"job {job_id!r} in project {project!r}"
        )

    def resolve_project(self, project: str) -> dict[str, Any]:
        """The project for an ID or an exact name (looked up over all pages, cached per hook).

        An ID-shaped value is trusted without a request: a wrong one fails with 404 where it is used.

        :param project: project name or ID.
        """
        return self.names.project(project)

    def resolve_job(self, project: str, job: str) -> dict[str, Any]:
        """The job for an ID or an exact name within a project (cached per hook).

        :param project: project name or ID.
        :param job: job name or ID.
        """
        return self.names.job(project, job)

    def resolve_run(self, project: str, job: str, run_id: str) -> RunRef:
        """The IDs naming a run, with the project and job given by ID or name.

        :param project: project name or ID.
        :param job: job name or ID.
        :param run_id: run ID.
        """
        project_id = str(self.resolve_project(project)["id"])
        return RunRef(project_id, str(self.resolve_job(project, job)["id"]), str(run_id))

    # -- runs ------------------------------------------------------------------------------------

    def start_job_run(
        self, project: str, job: str, environment: Overrides | None = None, arguments: str | None = None
    ) -> dict[str, Any]:
        """Start one run of a job and return the API's answer, never starting it twice.

        v2 returns the JobRun (``id``, ``status``, ...); v1 (``project`` as ``owner/slug``, ``job``
        the numeric job ID) returns ``{"engine_id": ...}``. A lost answer is looked up by a token
        the start carries before anything is sent again; a refused start is checked against the
        job's runs (:class:`CmlJobAlreadyActiveError` when it is busy). See
        :meth:`~airflow_provider_cml.hooks.starting.RunStarter.start`.

        :param project: project name or ID (v1: ``owner/slug``).
        :param job: job name or ID (v1: numeric job ID).
        :param environment: overrides of the job's environment variables: a mapping (values become
            strings), checked here before any request, or an
            :class:`~airflow_provider_cml.values.Environment`, already checked.
        :param arguments: one string, seen by the script as ``JOB_ARGUMENTS`` (v2 only).
        :raises CmlConfigError: ``environment`` or ``arguments`` is not what the API can take.
        """
        return self._starter.start(project, job, Environment.of(environment), Arguments.of(arguments))

    def active_run(self, project_id: str, job_id: str) -> dict[str, Any] | None:
        """The job's active run (the one that makes a start fail "already active"), or ``None``.

        :param project_id: project ID.
        :param job_id: job ID.
        """
        return self._starter.active_run(project_id, job_id)

    def budget(self, seconds: float) -> float:
        """The deadline ``seconds`` from now, or the :meth:`within` bound if that comes sooner.

        :param seconds: the time an operation may take.
        """
        deadline = self.clock.monotonic() + seconds
        bound = self.transport.bound
        return deadline if bound is None else min(deadline, bound)

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
        self.require_v2(doing)
        ref = self.resolve_run(project, job, run_id)
        return self.transport.request(
            method,
            runs.run_path(ref) + action,
            not_found=f"run {run_id!r} of job {job!r} in project {project!r}",
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
        self.require_v2("Listing job runs")
        ref = self.resolve_run(project, job, "")
        found: list[dict[str, Any]] = []
        for run in listing.paginate(
            self.transport,
            runs.runs_path(ref),
            "job_runs",
            params={
                **listing.listing_params(None, sort),
                "page_size": min(limit or listing.DEFAULT_PAGE_SIZE, listing.DEFAULT_PAGE_SIZE),
            },
            not_found=f"job {job!r} in project {project!r}",
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

    def job_run_url(self, project: str, job_id: str, run_id: str) -> str | None:
        """The run's page in the workbench (see :func:`.links.run_url_for`); ``None`` if unknown.

        :param project: project name or ID.
        :param job_id: job ID.
        :param run_id: run ID.
        """
        return links.run_url_for(self, project, job_id, run_id)

    def failure_details(self, ref: RunRef, run: Mapping[str, Any]) -> str | None:
        """Why a run failed, from the usage and executions listings the key may read; ``None`` if unknown.

        Best effort, within one request timeout; see :class:`.failures.FailureExplainer`.

        :param ref: the run.
        :param run: its final answer.
        """
        return self._explainer.explain(ref, run)

    def test_connection(self) -> tuple[bool, str]:
        """A cheap authenticated request, for the Connections UI's Test button (:mod:`.connection_test`)."""
        return connection_test.check(self)
