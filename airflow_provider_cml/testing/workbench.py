"""The state of a simulated Cloudera AI workbench: projects, jobs and runs that really execute.

Standard library only. The HTTP face is in :mod:`airflow_provider_cml.testing.server`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

_ALNUM = string.ascii_lowercase + string.digits
RUNTIME_ID = "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-python3.11:simulated"
#: What ``GET /runtimes`` offers when the spec file lists none (a Runtime per entry, spec §3.16).
DEFAULT_RUNTIMES = (
    {"image_identifier": RUNTIME_ID, "kernel": "Python 3.11", "editor": "PBJ Workbench"},
    {
        "image_identifier": "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-python3.10:simulated",
        "kernel": "Python 3.10",
        "editor": "PBJ Workbench",
    },
    {
        "image_identifier": "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-r4.3:simulated",
        "kernel": "R 4.3",
        "editor": "PBJ Workbench",
    },
)
ACTIVE = ("ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING", "ENGINE_STOPPING", "ENGINE_UNKNOWN")
#: Which Job Retry flag covers which final status. A script failure and a system failure (e.g. an
#: OOM kill) both end ENGINE_FAILED; the workbench tells them apart by the run's OOM flag.
JOB_RETRY_FIELDS = (
    "retry_enabled",
    "max_retry",
    "retry_delay",
    "retry_for_script_failure",
    "retry_for_system_failure",
    "retry_for_timedout_runs",
    "retry_for_skipped_runs",
)
RETRY_FLAGS = {
    "ENGINE_TIMEDOUT": "retry_for_timedout_runs",
    "ENGINE_SKIPPED": "retry_for_skipped_runs",
}


class ApiError(Exception):
    """An API error with its HTTP status and grpc code, rendered as a grpc-gateway body."""

    GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}

    def __init__(self, http_status: int, message: str, grpc_code: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.grpc_code = grpc_code if grpc_code is not None else self.GRPC.get(http_status, 2)

    def body(self) -> dict[str, Any]:
        """The grpc-gateway error body (``runtimeError``): error, code, message, details."""
        return {"error": self.message, "code": self.grpc_code, "message": self.message, "details": []}


_T = TypeVar("_T")


def child(
    table: Mapping[str, _T], item_id: str, parent_field: str, parent: object, what: str, status: int
) -> _T:
    """``table[item_id]`` if it hangs under ``parent`` (its ``parent_field``), else ``ApiError(status)``.

    A path names a resource under its parent: one under another parent is as unknown as a missing one.

    :param table: the resources by ID.
    :param item_id: the ID the path names.
    :param parent_field: the resource's field that holds its parent.
    :param parent: the parent the path names.
    :param what: the resource's name in the error (``model build``).
    :param status: the error's HTTP status.
    """
    found = table.get(item_id)
    if found is None or getattr(found, parent_field) is not parent:
        raise ApiError(status, f"{what} not found: {item_id}")
    return found


def project_collection(
    wb: Workbench,
    method: str,
    rest: str,
    collection: str,
    items: Iterable[Any],
    create: Callable[[Project, dict[str, Any]], Any],
    body: Callable[[], dict[str, Any]],
    page: Callable[[str, list[dict[str, Any]]], dict[str, Any]],
) -> Any:
    """Answer ``/projects/{id}/<collection>`` (every such listing and create has this shape), else ``None``.

    GET pages the project's ``items`` under the key ``collection``; POST makes one with ``create``.

    :param wb: the workbench (its projects).
    :param method: the HTTP method.
    :param rest: the path below ``/api/v2``.
    :param collection: the path's last segment, also the listing's key (``models``).
    :param items: every resource of the kind (each with ``project`` and ``to_api()``).
    :param create: makes one from the project and the request body.
    :param body: reads the request's JSON body.
    :param page: pages a listing.
    """
    m = re.fullmatch(rf"/projects/([^/]+)/{collection}", rest)
    if not m:
        return None
    project = wb.project(m.group(1))
    if method == "GET":
        return 200, page(collection, [x.to_api() for x in items if x.project is project])
    if method == "POST":
        return 200, create(project, body()).to_api()
    return None


def _resource_id() -> str:
    return "-".join("".join(secrets.choice(_ALNUM) for _ in range(4)) for _ in range(4))


def _run_id() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(16))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _crn(kind: str, name: str) -> str:
    return f"crn:cdp:ml:us-west-1:simulated:{kind}:{name}"


def _user(username: str) -> dict[str, str]:
    return {"username": username, "name": username, "email": f"{username}@example.com"}


@dataclass
class Project:
    """A simulated project: its owner, folder of scripts, environment and jobs."""

    id: str
    name: str
    owner: str
    folder: Path
    env: dict[str, str]
    visibility: str = "private"
    created_at: str = field(default_factory=_now)

    @property
    def slug(self) -> str:
        """The project's URL slug, derived from its name."""
        return self.name.lower().replace(" ", "-")

    def to_api(self) -> dict[str, Any]:
        """The project as the API answers it."""
        return {
            "id": self.id,
            "name": self.name,
            "slug": self.slug,
            "owner": _user(self.owner),
            "creator": _user(self.owner),
            "description": "",
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "default_engine_type": "ml_runtime",
            "environment": json.dumps(self.env),
            "permissions": {"admin": True, "business_user": False, "inherit": False, "operator": True},
            "visibility": self.visibility,
        }

    def to_short(self) -> dict[str, Any]:
        """The ShortProject a Job carries (no ``project_id`` on jobs: this is where the id is)."""
        return {
            "public_identifier": self.id,
            "name": self.name,
            "slug": self.slug,
            "default_project_engine": "ml_runtime",
        }


@dataclass
class Job:
    """A simulated job: its script (or a scriptless duration), environment, timeout and parent."""

    id: str
    v1_id: int
    project: Project
    name: str
    script: str
    env: dict[str, str]
    timeout: int = 0
    parent_job_id: str = ""
    arguments: str = ""
    # "error": a start while a run is active gets HTTP 400 "already active" (the common behaviour);
    # "skip": it gets a run that ends ENGINE_SKIPPED (seen on some releases).
    on_concurrent_start: str = "error"
    # A job without a script "runs" for ``duration`` seconds without a process (for load tests).
    duration: float = 0.0
    exit_code: int = 0
    # Scriptless jobs only: exit codes of the first runs, in order (then ``exit_code``), e.g. [1, 0]
    # fails the first run and lets the platform's retry succeed.
    exit_codes: list[int] = field(default_factory=list)
    # Scriptless jobs only: the run is OOM-killed (ENGINE_FAILED, exit code 137) after ``duration``.
    oom: bool = False
    # Scriptless jobs only: seconds spent in ENGINE_UNKNOWN after RUNNING (negative: until stopped).
    unknown_for: float = 0.0
    # Job Retry, as on the real Job: retries are new runs of the same job.
    retry: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)
    # The rest of the definition, as CreateJob/UpdateJob set it (only stored and echoed).
    kernel: str = "python3"
    cpu: float = 1.0
    memory: float = 2.0
    nvidia_gpu: int = 0
    runtime_identifier: str = RUNTIME_ID
    schedule: str = ""
    kill_on_timeout: bool = True
    updated_at: str = ""

    def to_api(self) -> dict[str, Any]:
        """The job as the API answers it (a spec Job: no ``project_id``, ``timeout`` a string)."""
        retry = self.retry
        return {
            "id": self.id,
            "name": self.name,
            "project": self.project.to_short(),
            "owner": _user(self.project.owner),
            "creator": _user(self.project.owner),
            "script": self.script,
            "arguments": self.arguments,
            "environment": json.dumps(self.env),
            "kernel": self.kernel,
            "cpu": self.cpu,
            "memory": self.memory,
            "nvidia_gpu": self.nvidia_gpu,
            "runtime_identifier": self.runtime_identifier,
            "runtime_addon_identifiers": [],
            "engine_image_id": "0",
            "schedule": self.schedule,
            "english_schedule": f"cron {self.schedule}" if self.schedule else "",
            "type": "dependent" if self.parent_job_id else ("cron" if self.schedule else "manual"),
            "parent_id": self.parent_job_id,
            "timeout": str(self.timeout),  # int64: a JSON string
            "kill_on_timeout": self.kill_on_timeout,
            "paused": False,
            "retry_enabled": bool(retry.get("retry_enabled")),
            "max_retry": int(retry.get("max_retry") or 0),
            "retry_delay": int(retry.get("retry_delay") or 0),
            "retry_for_script_failure": bool(retry.get("retry_for_script_failure")),
            "retry_for_system_failure": bool(retry.get("retry_for_system_failure")),
            "retry_for_timedout_runs": bool(retry.get("retry_for_timedout_runs")),
            "retry_for_skipped_runs": bool(retry.get("retry_for_skipped_runs")),
            "created_at": self.created_at,
            "updated_at": self.updated_at or self.created_at,
        }

    def retries(self, run: Run) -> bool:
        """Whether the platform starts a retry after ``run`` ended the way it did."""
        retry = self.retry
        if not retry.get("retry_enabled") or run.attempt >= int(retry.get("max_retry") or 0):
            return False
        if run.status == "ENGINE_FAILED":
            flag = "retry_for_system_failure" if run.oom_killed else "retry_for_script_failure"
        else:
            flag = RETRY_FLAGS.get(run.status, "")
        return bool(flag and retry.get(flag))


@dataclass
class Run:
    """A simulated run: status, times, environment and the process running its script."""

    id: str
    job: Job
    environment: dict[str, str]
    arguments: str
    status: str = "ENGINE_SCHEDULING"
    created_at: str = field(default_factory=_now)
    seq: int = 0
    times: dict[str, str] = field(default_factory=dict)
    failure_reason: str = ""  # internal: the real JobRun has none (see usage and executions)
    exit_code: int | None = None
    oom_killed: bool = False
    attempt: int = 0  # 0: started by a client; n: the platform's retry n
    stop_requested: bool = False
    stopped: threading.Event = field(default_factory=threading.Event, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    output_path: Path | None = None

    def to_api(self) -> dict[str, Any]:
        """The run as the API answers it (a JobRun)."""
        data: dict[str, Any] = {
            "id": self.id,
            "job_id": self.job.id,
            "project_id": self.job.project.id,
            "created_at": self.created_at,
            "arguments": self.arguments,
            # Often a JSON-encoded *string* in real answers.
            "environment": json.dumps(self.environment),
            "creator": _user(self.job.project.owner),
            "kernel": self.job.kernel,
            "cpu": self.job.cpu,
            "memory": self.job.memory,
            "nvidia_gpu": self.job.nvidia_gpu,
            "runtime_identifier": self.job.runtime_identifier,
        }
        # Always sent, ENGINE_SCHEDULING (the enum's zero value) included, like the other zero values
        # (paused: false, nvidia_gpu: 0): public clients read run["status"] directly.
        data["status"] = self.status
        for key in ("scheduling_at", "starting_at", "running_at", "finished_at"):
            if key in self.times:
                data[key] = self.times[key]
        return data


class Workbench:
    """Projects, jobs and runs of one simulated workbench; runs execute their script for real.

    :param spec: ``{"projects": [{"name", "owner", "folder", "env", "visibility", "jobs": [{"name",
        "script", "env", "timeout", "parent", "retry": {...Job Retry fields}, "duration", "exit_code",
        "exit_codes", "oom", "unknown_for", "on_concurrent_start"}]}], "runtimes": [{"image_identifier",
        "kernel", ...}], "api_keys": [...] or {key: user},
        "readonly_keys": [...], "legacy_keys": [...] (v1), "unknown_id_status": 404 or 403,
        "max_page_size": n, "omit_zero_status": bool, "omit_zero_values": bool,
        "status_as": {status: spelling}, "patch_zero_values": "apply" or "ignore",
        "busy_refusal": {"status": 400, "message": "..."},
        "serving": {"step", "app_ready_after", "restart_lag"}}``.
        A key given in a list belongs to the user ``admin``; projects that are ``public`` or
        ``organization`` and owned by someone else are listed only with ``include_public_projects``.
    :param base_dir: folder that relative project folders are resolved against.
    :param output_dir: where each run's output is kept (``<run id>.log``).
    :param step_delay: seconds spent in each of SCHEDULING and STARTING before the script starts.
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        base_dir: str | os.PathLike[str] = ".",
        output_dir: str | os.PathLike[str] | None = None,
        step_delay: float = 0.05,
    ) -> None:
        import tempfile

        self.lock = threading.RLock()
        self.step_delay = step_delay
        keys = spec.get("api_keys") or []
        self.key_users: dict[str, str] = (
            dict(keys) if isinstance(keys, Mapping) else dict.fromkeys(keys, "admin")
        )
        self.api_keys: set[str] = set(self.key_users)
        self.readonly_keys: set[str] = set(spec.get("readonly_keys") or [])
        self.legacy_keys: set[str] = set(spec.get("legacy_keys") or [])
        #: What an unknown or inaccessible ID gets: 404, or 403 as some workbenches answer.
        self.unknown_id_status: int = int(spec.get("unknown_id_status") or 404)
        #: Leave ``status`` out while a run is scheduling, as a server that omits protobuf zero values
        #: would (the spec allows it; clients must cope).
        self.omit_zero_status: bool = bool(spec.get("omit_zero_status"))
        #: Leave out every zero-valued field of answers about jobs, models and applications, as
        #: proto3 JSON may (see :mod:`airflow_provider_cml.testing.answer_knobs`).
        self.omit_zero_values: bool = bool(spec.get("omit_zero_values"))
        #: Statuses answered in another spelling, or replaced by a value the client may not know:
        #: ``{"APPLICATION_RUNNING": "running", "built": "error"}``, as servers and clients that
        #: spell them otherwise (or invent one) would send. Such answers are journaled
        #: ``respelled``: off the contract on purpose.
        self.status_as: dict[str, str] = dict(spec.get("status_as") or {})
        #: How a start of a busy job is refused: HTTP status and message (``{job_id}`` filled in).
        refusal = spec.get("busy_refusal") or {}
        self.busy_refusal: tuple[int, str] = (
            int(refusal.get("status", 400)),
            str(refusal.get("message", "job run for job {job_id} already active")),
        )
        #: Where a workload reaches this workbench's API (set by the server that serves it): job
        #: scripts get it as ``CDSW_API_URL``/``CDSW_DOMAIN`` with their owner's key as
        #: ``CDSW_APIV2_KEY``, as Cloudera AI sets them in every workload.
        self.api_url: str | None = None
        #: ``"apply"`` (default): a zero value in an UpdateJob body is set; ``"ignore"``: left alone.
        self.patch_zero_values: str = str(spec.get("patch_zero_values") or "apply")
        #: The most items a listing's page holds, whatever ``page_size`` asks (``None``: no cap).
        self.max_page_size: int | None = spec.get("max_page_size")
        #: The runtimes ``GET /runtimes`` lists and CreateJob/UpdateJob accept.
        self.runtimes: list[dict[str, Any]] = [
            {
                "editor": "",
                "kernel": "",
                "edition": "Standard",
                "description": "",
                "full_version": "",
                "status": "ENABLED",
                **r,
            }
            for r in (spec.get("runtimes") or DEFAULT_RUNTIMES)
        ]
        self.projects: dict[str, Project] = {}
        self.jobs: dict[str, Job] = {}
        self.runs: dict[str, Run] = {}
        self._seq = 0
        self._threads: list[threading.Thread] = []
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="cml-workbench-runs-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        from airflow_provider_cml.testing.serving import Serving  # it imports this module's helpers

        #: Models, builds, deployments and applications (:mod:`.serving`).
        self.serving = Serving(self, **dict(spec.get("serving") or {}))
        from airflow_provider_cml.testing.experiments import Experiments

        #: Experiments and their runs (:mod:`.experiments`).
        self.experiments = Experiments(self)
        base = Path(base_dir)
        for p in spec.get("projects") or []:
            self.add_project(
                p["name"],
                owner=p.get("owner", "admin"),
                folder=base / p.get("folder", "."),
                env=p.get("env") or {},
                jobs=p.get("jobs") or [],
                visibility=p.get("visibility", "private"),
            )

    # -- building ---------------------------------------------------------------------------------

    def add_project(
        self,
        name: str,
        *,
        owner: str = "admin",
        folder: str | os.PathLike[str] = ".",
        env: Mapping[str, str] | None = None,
        jobs: list[Mapping[str, Any]] | None = None,
        visibility: str = "private",
    ) -> Project:
        """Add a project and its jobs.

        :param name: the project's name.
        :param owner: the owner's username.
        :param folder: where its jobs' scripts are.
        :param env: project-level environment variables.
        :param jobs: job specs (see the class docstring).
        :param visibility: ``private``, ``organization`` or ``public``.
        """
        with self.lock:
            project = Project(
                _resource_id(), name, owner, Path(folder).resolve(), dict(env or {}), visibility=visibility
            )
            self.projects[project.id] = project
            by_name: dict[str, Job] = {}
            for j in jobs or []:
                parent = by_name.get(j["parent"]) if j.get("parent") else None
                job = self.add_job(
                    project,
                    j["name"],
                    script=j.get("script", ""),
                    env=j.get("env") or {},
                    timeout=int(j.get("timeout") or 0),
                    parent=parent,
                    arguments=j.get("arguments", ""),
                    on_concurrent_start=j.get("on_concurrent_start", "error"),
                    duration=float(j.get("duration") or 0),
                    exit_code=int(j.get("exit_code") or 0),
                )
                job.exit_codes = [int(c) for c in j.get("exit_codes") or []]
                job.oom = bool(j.get("oom"))
                job.unknown_for = float(j.get("unknown_for") or 0)
                job.retry = dict(j.get("retry") or {})
                by_name[job.name] = job
            return project

    def add_job(
        self,
        project: Project,
        name: str,
        *,
        script: str,
        env: Mapping[str, str] | None = None,
        timeout: int = 0,
        parent: Job | None = None,
        arguments: str = "",
        on_concurrent_start: str = "error",
        duration: float = 0.0,
        exit_code: int = 0,
    ) -> Job:
        """Add a job to a project.

        :param project: the project.
        :param name: the job's name.
        :param script: its script, relative to the project's folder (``""``: scriptless).
        :param env: job-level environment variables.
        :param timeout: the job's own timeout in seconds (0: none).
        :param parent: the job whose success starts this one.
        :param arguments: default ``JOB_ARGUMENTS``.
        :param on_concurrent_start: ``"error"`` (400 "already active") or ``"skip"`` (an
            ``ENGINE_SKIPPED`` run) when a start meets an active run.
        :param duration: how long a scriptless run lasts.
        :param exit_code: how a scriptless run ends (0: success).
        """
        with self.lock:
            job = Job(
                _resource_id(),
                len(self.jobs) + 1,
                project,
                name,
                script,
                dict(env or {}),
                timeout,
                parent.id if parent else "",
                arguments,
                on_concurrent_start,
                duration,
                exit_code,
            )
            self.jobs[job.id] = job
            return job

    # -- job definitions (CreateJob, UpdateJob, DeleteJob) -----------------------------------------

    def create_job(self, project: Project, body: Mapping[str, Any]) -> Job:
        """CreateJob: a new job from a CreateJobRequest.

        Spec §3.6: ``environment`` a map, ``timeout`` a number of seconds, ``parent_id`` or its
        deprecated alias ``parent_job_id``.

        :param project: the project.
        :param body: the request body.
        """
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "invalid job name: must not be empty")
        script = body.get("script")
        if not isinstance(script, str) or not script.strip():
            raise ApiError(400, "invalid script: must not be empty")
        environment = body.get("environment") or {}
        if not isinstance(environment, Mapping) or not all(isinstance(v, str) for v in environment.values()):
            raise ApiError(400, "invalid value for environment: must be a map of string to string")
        with self.lock:
            job = self.add_job(project, name, script=script, env=environment)
            self._define(job, {**body, "environment": None}, creating=True)
            return job

    def update_job(self, job: Job, body: Mapping[str, Any]) -> Job:
        """UpdateJob: the fields the body has are applied; the others keep their values.

        ``environment`` comes as a JSON string and ``timeout`` as a string, as a Job carries them.
        Read-only fields are ignored.

        Real clients (Cloudera's own MCP server among them) send partial bodies such as
        ``{"schedule": ...}``. What a real server does with a zero value (``""``, ``0``) is not
        documented: with ``patch_zero_values: "ignore"`` in the spec this workbench takes it as "leave
        unchanged", so clients can be tested against that reading too.

        :param job: the job.
        :param body: the request body.
        """
        if self.patch_zero_values == "ignore":
            body = {key: value for key, value in body.items() if value not in ("", 0, "0", False, None)}
        body = {**job.to_api(), **body}
        text = body.get("environment")
        try:
            environment = json.loads(text) if text else {}
        except (TypeError, ValueError):
            raise ApiError(400, "invalid value for environment: must be a JSON object as a string") from None
        if not isinstance(environment, dict) or not all(isinstance(v, str) for v in environment.values()):
            raise ApiError(400, "invalid value for environment: must be a JSON object of strings")
        name, script = body.get("name"), body.get("script")
        if not isinstance(name, str) or not name.strip() or not isinstance(script, str) or not script.strip():
            raise ApiError(400, "invalid job: name and script must not be empty")
        with self.lock:
            job.name, job.script, job.env = name, script, environment
            self._define(job, body, creating=False)
            job.updated_at = _now()
            return job

    def _define(self, job: Job, body: Mapping[str, Any], *, creating: bool) -> None:
        """Check and store the definition fields shared by CreateJob and UpdateJob."""

        def number(key: str, kind: type, default: Any) -> Any:
            value = body.get(key, default)
            if isinstance(value, bool) or value is None:
                raise ApiError(400, f"invalid value for {key}: {value!r}")
            try:
                result = kind(value)
            except (TypeError, ValueError):
                raise ApiError(400, f"invalid value for {key}: {value!r}") from None
            if result < 0:
                raise ApiError(400, f"invalid value for {key}: must not be negative")
            return result

        defaults = {"cpu": 1.0, "memory": 1.0} if creating else {"cpu": 0.0, "memory": 0.0}
        cpu, memory = number("cpu", float, defaults["cpu"]), number("memory", float, defaults["memory"])
        if creating and (cpu == 0 or memory == 0):
            raise ApiError(400, "invalid resources: cpu and memory must be positive")
        runtime = body.get("runtime_identifier") or ""
        if runtime and runtime not in {r["image_identifier"] for r in self.runtimes}:
            raise ApiError(400, f"runtime not found: {runtime}")
        if not runtime:  # every simulated project uses ML Runtimes: "Must be set if using ML Runtimes"
            raise ApiError(400, "runtime_identifier must be set: the project uses ML Runtimes")
        parent = body.get("parent_id") or body.get("parent_job_id") or ""
        schedule = body.get("schedule") or ""
        if parent and schedule:
            raise ApiError(400, "a dependent job (parent_id) cannot have a schedule")
        if parent and (parent not in self.jobs or self.jobs[parent].project is not job.project):
            raise ApiError(400, f"parent job not found: {parent}")
        if parent == job.id:
            raise ApiError(400, "a job cannot be its own parent")
        job.cpu, job.memory = cpu, memory
        job.nvidia_gpu = number("nvidia_gpu", int, 0)
        job.timeout = number("timeout", int, 0)
        job.runtime_identifier = runtime
        job.kernel = body.get("kernel") or ""
        job.arguments = body.get("arguments") or ""
        job.schedule, job.parent_job_id = schedule, parent
        job.kill_on_timeout = bool(body.get("kill_on_timeout", False))
        job.retry = {key: body[key] for key in JOB_RETRY_FIELDS if key in body}

    def delete_job(self, job: Job) -> None:
        """DeleteJob. A job with an active run is refused (inference: the spec does not say).

        :param job: the job.
        """
        with self.lock:
            if any(r.job is job and r.status in ACTIVE for r in self.runs.values()):
                raise ApiError(400, f"job {job.id} has an active run; stop it first", grpc_code=9)
            del self.jobs[job.id]

    # -- looking up -------------------------------------------------------------------------------

    def project(self, project_id: str) -> Project:
        """A project by ID (KeyError if unknown).

        :param project_id: project ID.
        """
        try:
            return self.projects[project_id]
        except KeyError:
            raise ApiError(self.unknown_id_status, f"project not found: {project_id}") from None

    def job(self, project_id: str, job_id: str) -> Job:
        """A job by IDs (KeyError if unknown).

        :param project_id: project ID.
        :param job_id: job ID.
        """
        project = self.project(project_id)
        job = self.jobs.get(job_id)
        if job is None or job.project is not project:
            raise ApiError(self.unknown_id_status, f"job not found: {job_id}")
        return job

    def run(self, project_id: str, job_id: str, run_id: str) -> Run:
        """A run by IDs (KeyError if unknown).

        :param project_id: project ID.
        :param job_id: job ID.
        :param run_id: run ID.
        """
        job = self.job(project_id, job_id)
        run = self.runs.get(run_id)
        if run is None or run.job is not job:
            raise ApiError(self.unknown_id_status, f"job run not found: {run_id}")
        return run

    def find_project_by_slug(self, owner: str, slug: str) -> Project:
        """A project by its v1 address ``<owner>/<slug>`` (KeyError if unknown).

        :param owner: the owner's username.
        :param slug: the project's slug.
        """
        for project in self.projects.values():
            if project.owner == owner and project.slug == slug:
                return project
        raise ApiError(404, f"project not found: {owner}/{slug}")

    def project_number(self, project: Project) -> int:
        """The project's internal numeric id (the web UI's and v1's; not the API v2 id).

        :param project: the project.
        """
        return list(self.projects).index(project.id) + 1

    def visible_projects(self, user: str, include_public: bool) -> list[Project]:
        """The projects a user's key lists: their own and private ones, others' public ones on request.

        :param user: the key's user.
        :param include_public: the ``include_public_projects`` parameter.
        """
        return [
            p
            for p in self.projects.values()
            if include_public or p.visibility == "private" or p.owner == user
        ]

    def run_api(self, run: Run) -> dict[str, Any]:
        """A run as the API answers it, under this workbench's ``omit_zero_status`` setting.

        :param run: the run.
        """
        data = run.to_api()
        if self.omit_zero_status and data["status"] == "ENGINE_SCHEDULING":
            del data["status"]
        return data

    def respell(self, body: Any) -> bool:
        """Answer ``body``'s statuses (its own, and its listing's items') as :attr:`status_as` says.

        :param body: an answer about to be sent; changed in place.
        :return: whether a status was respelled.
        """
        if not self.status_as or not isinstance(body, dict):
            return False
        items = [body] + [item for value in body.values() if isinstance(value, list) for item in value]
        changed = False
        for item in items:
            status = item.get("status") if isinstance(item, dict) else None
            if isinstance(status, str) and status in self.status_as:
                item["status"], changed = self.status_as[status], True
        return changed

    def job_by_name(self, project_name: str, job_name: str) -> Job:
        """For tests: the job with these names."""
        for job in self.jobs.values():
            if job.project.name == project_name and job.name == job_name:
                return job
        raise KeyError(f"{project_name}/{job_name}")

    def active_runs(self) -> list[Run]:
        """Every run that has not ended."""
        with self.lock:
            return [r for r in self.runs.values() if r.status in ACTIVE]

    def runs_of(self, job: Job) -> list[Run]:
        """A job's runs, oldest first.

        :param job: the job.
        """
        with self.lock:
            return [r for r in self.runs.values() if r.job is job]

    def run_output(self, run_id: str) -> str:
        """What a run's script printed.

        :param run_id: run ID.
        """
        run = self.runs[run_id]
        return run.output_path.read_text() if run.output_path and run.output_path.exists() else ""

    # -- running ----------------------------------------------------------------------------------

    def start_run(self, job: Job, environment: Mapping[str, Any] | None, arguments: str | None) -> Run:
        """Start a run of ``job`` as the API would (one active run per job).

        :param job: the job.
        :param environment: overrides of the job's environment.
        :param arguments: the run's ``JOB_ARGUMENTS``.
        """
        if environment is not None and not isinstance(environment, Mapping):
            raise ApiError(400, "invalid value for environment: must be a map of string to string")
        if arguments is not None and not isinstance(arguments, str):
            raise ApiError(400, "invalid value for arguments: must be a string")
        env = dict(environment or {})
        for name, value in env.items():
            if not isinstance(value, str):
                raise ApiError(400, f"invalid environment value for {name}: must be a string")
        return self._start(job, env, arguments, attempt=0)

    def _start(self, job: Job, env: dict[str, str], arguments: str | None, *, attempt: int) -> Run:
        with self.lock:
            busy = any(r.job is job and r.status in ACTIVE for r in self.runs.values())
            if busy and job.on_concurrent_start != "skip":
                status, message = self.busy_refusal
                raise ApiError(status, message.format(job_id=job.id), grpc_code=9)
            self._seq += 1
            run = Run(_run_id(), job, env, arguments or job.arguments, seq=self._seq, attempt=attempt)
            run.times["scheduling_at"] = run.created_at
            run.output_path = self.output_dir / f"{run.id}.log"
            self.runs[run.id] = run
            if busy:
                run.status = "ENGINE_SKIPPED"
                run.failure_reason = "the job already had an active run"
                run.times["finished_at"] = _now()
                self._retry_later(run)
                return run
        thread = threading.Thread(target=self._execute, args=(run,), name=f"cml-run-{run.id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return run

    def stop_run(self, run: Run) -> Run:
        """Stop a run (its script gets SIGTERM) and mark it ``ENGINE_STOPPED``.

        :param run: the run.
        """
        with self.lock:
            if run.status not in ACTIVE:
                raise ApiError(400, f"job run {run.id} is not running (status {run.status})", grpc_code=9)
            run.stop_requested = True
            run.stopped.set()
            if run.status != "ENGINE_STOPPING":
                run.status = "ENGINE_STOPPING"
            process = run.process
        if process is not None and process.poll() is None:
            self._terminate(process)
        return run

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)

    def _set(self, run: Run, status: str, time_key: str | None = None) -> bool:
        """Move a run on unless a stop was asked for meanwhile; False if it was."""
        with self.lock:
            if run.stop_requested:
                return False
            run.status = status
            if time_key:
                run.times[time_key] = _now()
            return True

    def _finish(self, run: Run, status: str, reason: str = "", exit_code: int | None = None) -> None:
        with self.lock:
            run.status = status
            run.failure_reason = reason
            run.exit_code = exit_code
            run.times["finished_at"] = _now()
        self._retry_later(run)
        if status == "ENGINE_SUCCEEDED":
            for child in [j for j in self.jobs.values() if j.parent_job_id == run.job.id]:
                # A child that is already running is skipped, as the platform does.
                with contextlib.suppress(ApiError):
                    self.start_run(child, {}, None)

    def _retry_later(self, run: Run) -> None:
        """Job Retry: a new run of the same job after ``retry_delay``, as the platform does.

        The retry gets the failed run's environment and arguments (inference: the spec only says
        retries are runs of the same job).
        """
        if not run.job.retries(run):
            return

        def retry() -> None:
            with contextlib.suppress(ApiError):  # the job may be busy by then: no retry, as on the platform
                self._start(run.job, dict(run.environment), run.arguments, attempt=run.attempt + 1)

        timer = threading.Timer(float(run.job.retry.get("retry_delay") or 0), retry)
        timer.daemon = True
        self._threads.append(timer)
        timer.start()

    def _api_env(self, project: Project) -> dict[str, str]:
        """The variables a workload reads to call the API as its owner (none before a server serves it)."""
        if not self.api_url:
            return {}
        keys = [k for k, user in self.key_users.items() if user == project.owner] or list(self.key_users)
        scheme, _, domain = self.api_url.partition("://")
        env = {"CDSW_API_URL": f"{self.api_url}/api/v1", "CDSW_DOMAIN": domain, "CDSW_API_PROTOCOL": scheme}
        return {**env, "CDSW_APIV2_KEY": keys[0]} if keys else env

    def _execute(self, run: Run) -> None:
        job, project = run.job, run.job.project
        time.sleep(self.step_delay)
        if not self._set(run, "ENGINE_STARTING", "starting_at"):
            self._finish(run, "ENGINE_STOPPED", "stopped before it started")
            return
        time.sleep(self.step_delay)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(project.folder),
            "PYTHONUNBUFFERED": "1",
            "CDSW_PROJECT": project.name,
            "CDSW_PROJECT_ID": project.id,
            "CDSW_JOB_ID": job.id,
            "CDSW_RUN_ID": run.id,
            "CDSW_ENGINE_ID": run.id,
            **self._api_env(project),
            **project.env,
            **job.env,
            **run.environment,
            "JOB_ARGUMENTS": run.arguments,
        }
        if not job.script:
            self._simulate(run)
            return
        script = project.folder / job.script
        assert run.output_path is not None
        with self.lock:
            if run.stop_requested:
                self._finish(run, "ENGINE_STOPPED", "stopped before it started")
                return
            with open(run.output_path, "wb") as out:
                run.process = subprocess.Popen(
                    # Arguments reach a real script only as JOB_ARGUMENTS: argv holds the kernel's flags.
                    [sys.executable, str(script)],
                    cwd=project.folder,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            run.status = "ENGINE_RUNNING"
            run.times["running_at"] = _now()
        try:
            code = run.process.wait(timeout=job.timeout or None)
        except subprocess.TimeoutExpired:
            self._terminate(run.process)
            run.process.wait()
            self._finish(run, "ENGINE_TIMEDOUT", f"the job's timeout of {job.timeout}s was reached")
            return
        if run.stop_requested:
            self._finish(run, "ENGINE_STOPPED", "stopped by request")
        elif code == 0:
            self._finish(run, "ENGINE_SUCCEEDED", exit_code=0)
        else:
            self._finish(run, "ENGINE_FAILED", f"script exited with code {code}", exit_code=code)

    def _simulate(self, run: Run) -> None:
        """A scriptless job: RUNNING for its ``duration`` (then UNKNOWN, OOM) and the exit code decides."""
        job = run.job
        if not self._set(run, "ENGINE_RUNNING", "running_at"):
            self._finish(run, "ENGINE_STOPPED", "stopped before it started")
            return
        if run.stopped.wait(job.duration):
            self._finish(run, "ENGINE_STOPPED", "stopped by request")
            return
        lost = job.unknown_for and self._set(run, "ENGINE_UNKNOWN")
        if lost and run.stopped.wait(None if job.unknown_for < 0 else job.unknown_for):
            self._finish(run, "ENGINE_STOPPED", "stopped by request")
            return
        if job.oom:
            run.oom_killed = True
            self._finish(run, "ENGINE_FAILED", "OOMKilled: the run used more memory than its limit", 137)
            return
        code = job.exit_codes[run.attempt] if run.attempt < len(job.exit_codes) else job.exit_code
        if code == 0:
            self._finish(run, "ENGINE_SUCCEEDED", exit_code=0)
        else:
            self._finish(run, "ENGINE_FAILED", f"script exited with code {code}", exit_code=code)

    # -- usage and workload executions (where the real API says why a run failed) -----------------

    def usage(self) -> list[dict[str, Any]]:
        """One UsageResponse per finished run, newest first (what ``GET /api/v2/usage`` lists)."""
        with self.lock:
            finished = [r for r in self.runs.values() if r.status not in ACTIVE]
        return [self._usage_of(r) for r in sorted(finished, key=lambda r: -r.seq)]

    @staticmethod
    def _usage_of(run: Run) -> dict[str, Any]:
        job, project = run.job, run.job.project
        started = _parse(run.times.get("running_at") or run.created_at)
        ended = _parse(run.times.get("finished_at") or run.created_at)
        k8s_reason = "OOMKilled" if run.oom_killed else ("Completed" if run.exit_code == 0 else "Error")
        return {
            "id": f"usage-{run.seq}",
            "name": job.name,
            "creator": project.owner,
            "group": "",
            "project_name": project.name,
            "cpu": 1.0,
            "memory": 2.0,
            "nvidia_gpu": 0.0,
            "workload_type": "job",
            "created_at": run.created_at,
            "duration": str(max(0, int((ended - started).total_seconds()))),
            "status": run.status.removeprefix("ENGINE_").lower(),
            "workload_url": f"/{project.owner}/{project.slug}/jobs",
            "message": run.failure_reason,
            "oom_killed": run.oom_killed,
            "k8s_info": {
                "k8s_exit_code": run.exit_code if run.exit_code is not None else 0,
                "k8s_signal": "SIGKILL" if run.oom_killed else "",
                "k8s_reason": k8s_reason,
                "k8s_message": run.failure_reason,
            },
        }

    def executions(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Workloads (one per job) and executions (one per run), as ``GET /workloads/executions``."""
        with self.lock:
            runs = sorted(self.runs.values(), key=lambda r: -r.seq)
            jobs = {r.job.id: r.job for r in runs}
        workloads = [
            {
                "workload_crn": _crn("workload", job.id),
                "workload_name": job.name,
                "workload_type": "job",
                "create_time": job.created_at,
                "creator_user_name": job.project.owner,
                "project": {
                    "id": self.project_number(job.project),  # numeric, not the public id
                    "crn": _crn("project", job.project.id),
                    "name": job.project.name,
                },
                "deleted": False,
            }
            for job in jobs.values()
        ]
        executions = [
            {
                "workload_crn": _crn("workload", r.job.id),
                "workload_execution_crn": _crn("execution", r.id),
                "pod_name": f"{r.id}-pod",
                "start_time": r.times.get("running_at") or r.created_at,
                **({"end_time": r.times["finished_at"]} if "finished_at" in r.times else {}),
                "status": r.status.removeprefix("ENGINE_").lower(),
                "failure_reason": r.failure_reason,
                "run_as_user_name": r.job.project.owner,
            }
            for r in runs
        ]
        return workloads, executions

    def shutdown(self) -> None:
        """Stop every active run's, replica's and application's process (the workbench is going away)."""
        self.serving.shutdown()
        for run in self.active_runs():
            with contextlib.suppress(ApiError):
                self.stop_run(run)
        for thread in self._threads:
            thread.join(timeout=10)
