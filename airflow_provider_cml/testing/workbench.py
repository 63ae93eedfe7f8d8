"""The state of a simulated Cloudera AI workbench: projects, jobs and runs that really execute.

Standard library only. The HTTP face is in :mod:`airflow_provider_cml.testing.server`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_ALNUM = string.ascii_lowercase + string.digits
RUNTIME_ID = "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-python3.11:simulated"
ACTIVE = ("ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING", "ENGINE_STOPPING")


class ApiError(Exception):
    """An API error with its HTTP status and grpc code, rendered as a grpc-gateway body."""

    GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}

    def __init__(self, http_status: int, message: str, grpc_code: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.grpc_code = grpc_code if grpc_code is not None else self.GRPC.get(http_status, 2)


def _resource_id() -> str:
    return "-".join("".join(secrets.choice(_ALNUM) for _ in range(4)) for _ in range(4))


def _run_id() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(16))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Project:
    """A simulated project: its owner, folder of scripts, environment and jobs."""

    id: str
    name: str
    owner: str
    folder: Path
    env: dict[str, str]
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
            "owner": {"username": self.owner, "name": self.owner, "email": f"{self.owner}@example.com"},
            "creator": {"username": self.owner, "name": self.owner, "email": f"{self.owner}@example.com"},
            "description": "",
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "default_engine_type": "ml_runtime",
            "environment": json.dumps(self.env),
            "permissions": {"admin": True, "business_user": False, "inherit": False, "operator": True},
            "visibility": "private",
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
    created_at: str = field(default_factory=_now)

    def to_api(self) -> dict[str, Any]:
        """The job as the API answers it."""
        return {
            "id": self.id,
            "name": self.name,
            "project_id": self.project.id,
            "script": self.script,
            "arguments": self.arguments,
            "environment": json.dumps(self.env),
            "kernel": "python3",
            "cpu": 1,
            "memory": 2,
            "nvidia_gpu": 0,
            "runtime_identifier": RUNTIME_ID,
            "schedule": "",
            "parent_job_id": self.parent_job_id,
            # The real API sends integer fields as strings.
            "timeout": str(self.timeout),
            "kill_on_timeout": True,
            "paused": False,
            "creator": {"username": self.project.owner, "name": self.project.owner, "email": ""},
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


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
    failure_reason: str = ""
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
            "status": self.status,
            "created_at": self.created_at,
            "arguments": self.arguments,
            # Often a JSON-encoded *string* in real answers.
            "environment": json.dumps(self.environment),
            "creator": {"username": self.job.project.owner, "name": self.job.project.owner, "email": ""},
            "kernel": "python3",
            "cpu": 1,
            "memory": 2,
            "nvidia_gpu": 0,
            "runtime_identifier": RUNTIME_ID,
        }
        for key in ("scheduling_at", "starting_at", "running_at", "finished_at"):
            if key in self.times:
                data[key] = self.times[key]
        if self.failure_reason:
            data["failure_reason"] = self.failure_reason
        return data


class Workbench:
    """Projects, jobs and runs of one simulated workbench; runs execute their script for real.

    :param spec: ``{"projects": [{"name", "owner", "folder", "env", "jobs": [{"name", "script", "env",
        "timeout", "parent"}]}], "api_keys": [...], "readonly_keys": [...]}``.
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
        self.api_keys: set[str] = set(spec.get("api_keys") or [])
        self.readonly_keys: set[str] = set(spec.get("readonly_keys") or [])
        self.projects: dict[str, Project] = {}
        self.jobs: dict[str, Job] = {}
        self.runs: dict[str, Run] = {}
        self._seq = 0
        self._threads: list[threading.Thread] = []
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="cml-workbench-runs-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        base = Path(base_dir)
        for p in spec.get("projects") or []:
            self.add_project(
                p["name"],
                owner=p.get("owner", "admin"),
                folder=base / p.get("folder", "."),
                env=p.get("env") or {},
                jobs=p.get("jobs") or [],
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
    ) -> Project:
        """Add a project and its jobs.

        :param name: the project's name.
        :param owner: the owner's username.
        :param folder: where its jobs' scripts are.
        :param env: project-level environment variables.
        :param jobs: job specs (see the class docstring).
        """
        with self.lock:
            project = Project(_resource_id(), name, owner, Path(folder).resolve(), dict(env or {}))
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

    # -- looking up -------------------------------------------------------------------------------

    def project(self, project_id: str) -> Project:
        """A project by ID (KeyError if unknown).

        :param project_id: project ID.
        """
        try:
            return self.projects[project_id]
        except KeyError:
            raise ApiError(404, f"project not found: {project_id}") from None

    def job(self, project_id: str, job_id: str) -> Job:
        """A job by IDs (KeyError if unknown).

        :param project_id: project ID.
        :param job_id: job ID.
        """
        project = self.project(project_id)
        job = self.jobs.get(job_id)
        if job is None or job.project is not project:
            raise ApiError(404, f"job not found: {job_id}")
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
            raise ApiError(404, f"job run not found: {run_id}")
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
        env = dict(environment or {})
        for name, value in env.items():
            if not isinstance(value, str):
                raise ApiError(400, f"invalid environment value for {name}: must be a string")
        with self.lock:
            busy = any(r.job is job and r.status in ACTIVE for r in self.runs.values())
            if busy and job.on_concurrent_start != "skip":
                raise ApiError(400, f"job run for job {job.id} already active", grpc_code=9)
            self._seq += 1
            run = Run(_run_id(), job, env, arguments or job.arguments, seq=self._seq)
            run.times["scheduling_at"] = run.created_at
            run.output_path = self.output_dir / f"{run.id}.log"
            self.runs[run.id] = run
            if busy:
                run.status = "ENGINE_SKIPPED"
                run.failure_reason = "the job already had an active run"
                run.times["finished_at"] = _now()
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

    def _finish(self, run: Run, status: str, reason: str = "") -> None:
        with self.lock:
            run.status = status
            run.failure_reason = reason
            run.times["finished_at"] = _now()
        if status == "ENGINE_SUCCEEDED":
            for child in [j for j in self.jobs.values() if j.parent_job_id == run.job.id]:
                # A child that is already running is skipped, as the platform does.
                with contextlib.suppress(ApiError):
                    self.start_run(child, {}, None)

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
                    [sys.executable, str(script), *run.arguments.split()],
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
            self._finish(run, "ENGINE_SUCCEEDED")
        else:
            self._finish(run, "ENGINE_FAILED", f"script exited with code {code}")

    def _simulate(self, run: Run) -> None:
        """A scriptless job: RUNNING for its ``duration``, then the ``exit_code`` decides."""
        if not self._set(run, "ENGINE_RUNNING", "running_at"):
            self._finish(run, "ENGINE_STOPPED", "stopped before it started")
            return
        if run.stopped.wait(run.job.duration):
            self._finish(run, "ENGINE_STOPPED", "stopped by request")
        elif run.job.exit_code == 0:
            self._finish(run, "ENGINE_SUCCEEDED")
        else:
            self._finish(run, "ENGINE_FAILED", f"script exited with code {run.job.exit_code}")

    def shutdown(self) -> None:
        """Stop every active run's process (the workbench is going away)."""
        for run in self.active_runs():
            with contextlib.suppress(ApiError):
                self.stop_run(run)
        for thread in self._threads:
            thread.join(timeout=10)
