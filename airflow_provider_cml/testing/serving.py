"""The simulated workbench's models, builds, deployments and applications, which really run.

* A build goes ``queued`` → ``pending`` → ``pushing`` → ``built``; its ``pending`` step loads the
  model's file in a fresh Python and checks the function is there, else ``build failed``; a build
  from a registered version fails unless that version exists and is ``READY``.
* A deployment goes ``pending`` → ``deployed`` once a replica process has loaded the build's
  function (``failed`` when it cannot); the model service (``POST /model``) calls that function in
  that process. ``:stop`` ends the process (``stopped``); ``:restart`` starts a new one.
* An application runs its script: ``APPLICATION_STARTING``, then ``APPLICATION_RUNNING`` once it
  has stayed up :attr:`Serving.app_ready_after` seconds; a script that exits is
  ``APPLICATION_FAILED``. ``:stop`` and ``:restart`` act on the process; with
  :attr:`Serving.restart_lag`, reads go on showing the old instance for a while after ``:restart``
  (as a server whose reads lag behind would).

Statuses and shapes are the fact sheet's (``cml-api-v2-models-apps.md``). Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.testing.workbench import ApiError, _crn, _now, _resource_id, _user, child

if TYPE_CHECKING:
    from airflow_provider_cml.testing.workbench import Project, Workbench

# A replica: loads the function, says READY, then answers one JSON request per line.
_REPLICA = r"""
import json, runpy, sys, traceback
file, function = sys.argv[1], sys.argv[2]
try:
    fn = runpy.run_path(file)[function]
except Exception as exc:
    print("LOAD FAILED", type(exc).__name__, exc, file=sys.stderr, flush=True)
    sys.exit(3)
print("READY", flush=True)
for line in sys.stdin:
    try:
        reply = {"success": True, "response": fn(json.loads(line))}
    except Exception as exc:
        reply = {"success": False, "errors": [f"{type(exc).__name__}: {exc}"]}
    print(json.dumps(reply), flush=True)
"""

# A build's check: the file loads and defines the function.
_CHECK = r"""
import runpy, sys
ns = runpy.run_path(sys.argv[1])
if not callable(ns.get(sys.argv[2])):
    sys.exit(f"{sys.argv[1]} defines no function {sys.argv[2]!r}")
"""


@dataclass
class Model:
    """A model: its name, access key and builds."""

    id: str
    project: Project
    name: str
    description: str
    auth_enabled: bool
    registered_model_id: str = ""
    access_key: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created_at: str = field(default_factory=_now)
    deletion_status: str = ""  # DeleteModel marks it; the sheet infers deletion is asynchronous
    #: DefaultResources and DefaultReplicationPolicy, int64 values as strings (UpdateModel sets them).
    default_resources: dict[str, str] = field(
        default_factory=lambda: {"cpu_millicores": "1000", "memory_mb": "2048", "nvidia_gpus": "0"}
    )
    default_replication_policy: dict[str, str] = field(
        default_factory=lambda: {"num_replicas": "1", "type": "fixed"}
    )

    def to_api(self) -> dict[str, Any]:
        """The Model as the API answers it (no status, no URL: the spec has neither)."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "creator": _user(self.project.owner),
            "access_key": self.access_key,
            "deletion_status": self.deletion_status,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "crn": _crn("model", self.id),
            "auth_enabled": self.auth_enabled,
            "project": self.project.to_short(),
            "registered_model_id": self.registered_model_id,
            "visibility": "private",
            "default_resources": dict(self.default_resources),
            "default_replication_policy": dict(self.default_replication_policy),
            "run_as": 0,
            "accelerator_label_id": "0",
            "resource_group_id": 0,
            "resource_profile_id": 0,
        }


@dataclass
class Build:
    """A model build: what it loads and where it stands."""

    id: str
    model: Model
    comment: str
    file_path: str
    function_name: str
    runtime_identifier: str
    kernel: str
    registered_model_version_id: str
    status: str = "queued"
    created_at: str = field(default_factory=_now)
    built_at: str = ""

    def to_api(self) -> dict[str, Any]:
        """The ModelBuild as the API answers it (``status`` a lower-case string)."""
        return {
            "id": self.id,
            "model_id": self.model.id,
            "creator": _user(self.model.project.owner),
            "comment": self.comment,
            "file_path": self.file_path,
            "function_name": self.function_name,
            "engine_image": "",
            "kernel": self.kernel,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "status": self.status,
            "deletion_status": "",
            "crn": _crn("model-build", self.id),
            **({"built_at": self.built_at} if self.built_at else {}),  # unset timestamps are left out
            "runtime_identifier": self.runtime_identifier,
            "runtime_addon_identifiers": [],
            "registered_model_version_id": self.registered_model_version_id,
            "model_root_dir": "",
            "build_script_path": "",
        }


@dataclass
class Deployment:
    """A model deployment: its resources, environment and replica process."""

    id: str
    build: Build
    cpu: float  # vCPUs per replica
    memory: float  # GiB per replica
    nvidia_gpu: int
    replicas: int
    environment: dict[str, str]
    status: str = "pending"
    created_at: str = field(default_factory=_now)
    stopped_at: str = ""
    process: subprocess.Popen[str] | None = field(default=None, repr=False)
    calls: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def to_api(self) -> dict[str, Any]:
        """The ModelDeployment as the API answers it (``environment`` a JSON string, ``nvidia_gpu``)."""
        model = self.build.model
        return {
            "project_id": model.project.id,
            "model_id": model.id,
            "build_id": self.build.id,
            "id": self.id,
            "cpu": self.cpu,
            "memory": self.memory,
            "nvidia_gpu": self.nvidia_gpu,
            "environment": json.dumps(self.environment),
            "created_at": self.created_at,
            "updated_at": self.created_at,
            **({"stopped_at": self.stopped_at} if self.stopped_at else {}),
            "crn": _crn("model-deployment", self.id),
            "deployer": _user(model.project.owner),
            "status": self.status,
            "replicas": self.replicas,
            "accelerator_label_id": "0",
            "resource_group_id": 0,
            "resource_profile_id": 0,
        }


_APP_FIELDS = ("name", "description", "script", "subdomain", "kernel", "runtime_identifier")
#: What CreateApplication and UpdateApplication set (environment apart).
_APP_SETTINGS = (*_APP_FIELDS, "cpu", "memory", "nvidia_gpu", "bypass_authentication")


@dataclass
class Application:
    """An application: its script, settings and process."""

    id: str
    project: Project
    fields: dict[str, Any]
    environment: dict[str, str]
    status: str = "APPLICATION_STARTING"
    times: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    generation: int = 0  # which start the process belongs to (a restart begins a new one)
    #: What reads still show (the instance before a restart), and until when (monotonic time).
    stale: tuple[dict[str, Any], float] | None = field(default=None, repr=False)

    def to_api(self) -> dict[str, Any]:
        """The Application as the API answers it (``environment`` a JSON string)."""
        if self.stale is not None:
            if time.monotonic() < self.stale[1]:
                return dict(self.stale[0])
            self.stale = None
        return {
            "id": self.id,
            "creator": _user(self.project.owner),
            "status": self.status,
            **{key: stamp for key, stamp in self.times.items() if stamp},  # unset timestamps left out
            "cpu": 1.0,
            "memory": 1.0,
            "nvidia_gpu": 0,
            "bypass_authentication": False,
            "runtime_addon_identifiers": [],
            "run_as": 0,
            "cdv_app": False,
            "accelerator_label_id": "0",
            "resource_group_id": 0,
            "resource_profile_id": 0,
            **{key: "" for key in _APP_FIELDS},
            **self.fields,
            "environment": json.dumps(self.environment),
        }


class Serving:
    """Models and applications of one :class:`~airflow_provider_cml.testing.workbench.Workbench`.

    :param workbench: the workbench (its lock, projects and keys).
    :param step: seconds each build or deployment step takes.
    :param app_ready_after: seconds an application's script must stay up to count as running.
    :param restart_lag: seconds after ``:restart`` during which reads of the application still
        show it as it was (``APPLICATION_RUNNING`` with the old instance's times, say).
    :param registry: registered models to start with (see :meth:`register`).
    :param registry_ready_after: seconds a version registered from a run stays ``REGISTERING``.
    """

    def __init__(
        self,
        workbench: Workbench,
        *,
        step: float = 0.2,
        app_ready_after: float = 1.0,
        restart_lag: float = 0.0,
        registry: list[dict[str, Any]] | None = None,
        registry_ready_after: float = 0.3,
    ) -> None:
        self.wb = workbench
        from airflow_provider_cml.testing.registry import Registry  # it imports this module's helpers

        #: Registrations from experiment runs (``POST /registry/models``, :mod:`.registry`).
        self.registry_writes = Registry(self, registry_ready_after)
        #: Registered models, as GetRegisteredModel answers them (read-only here).
        self.registry: dict[str, dict[str, Any]] = {}
        for entry in registry or []:
            self.register(entry)
        self.step = step
        self.app_ready_after = app_ready_after
        self.restart_lag = restart_lag
        self.models: dict[str, Model] = {}
        self.builds: dict[str, Build] = {}
        self.deployments: dict[str, Deployment] = {}
        self.applications: dict[str, Application] = {}
        self.app_output_dir = Path(workbench.output_dir)
        #: Seconds a ListModels answer waits before it is sent (see ``testing.answer_knobs``).
        self.model_lookup_delay: float = 0.0

    # -- model registry (read) --------------------------------------------------------------------

    def register(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Add a registered model: ``{"name", "versions": [{"number", "status"}]}``; returns it."""
        model_id = entry.get("model_id") or _resource_id()
        versions = [
            {
                "model_id": model_id,
                "model_version_id": v.get("model_version_id") or _resource_id(),
                "version_name": f"v{v.get('number', i + 1)}",
                "number": int(v.get("number", i + 1)),
                "status": v.get("status", "READY"),
                "created_at": _now(),
                "updated_at": _now(),
            }
            for i, v in enumerate(entry.get("versions", [{}]))
        ]
        model = {
            "model_id": model_id,
            "name": entry["name"],
            "description": entry.get("description", ""),
            "owner": "admin",
            "visibility": "PRIVATE",
            "created_at": _now(),
            "updated_at": _now(),
            "count": len(versions),
            "model_versions": versions,
        }
        self.registry[model_id] = model
        return model

    def registered(self, model_id: str) -> dict[str, Any]:
        """GetRegisteredModel."""
        if model_id not in self.registry:
            raise ApiError(self.wb.unknown_id_status, f"registered model not found: {model_id}")
        return self.registry[model_id]

    def registered_version(self, model_id: str, version_id: str) -> dict[str, Any]:
        """GetRegisteredModelVersion."""
        for version in self.registered(model_id)["model_versions"]:
            if version["model_version_id"] == version_id:
                return dict(version)
        raise ApiError(self.wb.unknown_id_status, f"registered model version not found: {version_id}")

    # -- models and builds ------------------------------------------------------------------------

    def create_model(self, project: Project, body: dict[str, Any]) -> Model:
        """CreateModel: a model needs a name and (as the sheet infers the server insists) a description."""
        name = str(body.get("name") or "")
        if not name:
            raise ApiError(400, "model name is required")
        if not body.get("description"):  # Ansible insists; the sheet infers the server does too
            raise ApiError(400, "model description is required")
        model = Model(
            str(uuid.uuid4()),
            project,
            name,
            str(body["description"]),
            not body.get("disable_authentication"),
            str(body.get("registered_model_id") or ""),
        )
        self.models[model.id] = model
        return model

    def model(self, project: Project, model_id: str) -> Model:
        """A model of the project by ID (the unknown-ID status otherwise)."""
        return child(self.models, model_id, "project", project, "model", self.wb.unknown_id_status)

    def update_model(self, model: Model, body: dict[str, Any]) -> Model:
        """UpdateModel: name, description, and the defaults (int64 values kept as strings)."""
        if body.get("name"):
            model.name = str(body["name"])
        if body.get("description"):
            model.description = str(body["description"])
        for key in ("default_resources", "default_replication_policy"):
            given = body.get(key)
            if isinstance(given, dict):  # a message: the fields it has are set, the others kept
                # int64 as a string, as the sheet says it travels (a JSON number is accepted too).
                getattr(model, key).update({str(k): str(v) for k, v in given.items()})
        return model

    def delete_model(self, model: Model) -> None:
        """DeleteModel: marked at once (``deletion_status``), as the sheet infers it is asynchronous."""
        model.deletion_status = "deleting"

    def create_build(self, model: Model, body: dict[str, Any]) -> Build:
        """CreateModelBuild: queued at once, then built (or not) in the background."""
        version = str(body.get("registered_model_version_id") or "")
        if not version and not (body.get("file_path") and body.get("function_name")):
            raise ApiError(400, "file_path and function_name are required (or registered_model_version_id)")
        build = Build(
            str(uuid.uuid4()),
            model,
            str(body.get("comment") or ""),
            str(body.get("file_path") or ""),
            str(body.get("function_name") or ""),
            str(body.get("runtime_identifier") or ""),
            str(body.get("kernel") or ""),
            version,
        )
        self.builds[build.id] = build
        self._spawn(self._build, build)
        return build

    def build(self, model: Model, build_id: str) -> Build:
        """A build of the model by ID."""
        return child(self.builds, build_id, "model", model, "model build", self.wb.unknown_id_status)

    def builds_of(self, model: Model) -> list[Build]:
        """The model's builds, in creation order."""
        return [b for b in self.builds.values() if b.model is model]

    def _build(self, build: Build) -> None:
        time.sleep(self.step)
        self._status(build, "pending")
        ok = True
        if build.file_path:
            folder = build.model.project.folder
            check = subprocess.run(
                [sys.executable, "-c", _CHECK, build.file_path, build.function_name],
                cwd=folder,
                capture_output=True,
                timeout=60,
            )
            ok = check.returncode == 0
        else:  # from the registry: the version must be there and READY, as a real build needs its files
            with self.wb.lock:
                self.registry_writes.settle()
                ok = any(
                    v["model_version_id"] == build.registered_model_version_id and v.get("status") == "READY"
                    for m in self.registry.values()
                    for v in m["model_versions"]
                )
        time.sleep(self.step)
        if not ok:
            self._status(build, "build failed")
            return
        self._status(build, "pushing")
        time.sleep(self.step)
        with self.wb.lock:
            build.status, build.built_at = "built", _now()

    # -- deployments ------------------------------------------------------------------------------

    def create_deployment(self, build: Build, body: dict[str, Any]) -> Deployment:
        """CreateModelDeployment of a built build: pending, then deployed once a replica loads it."""
        if build.status != "built":
            raise ApiError(
                400, f"model build {build.id} is {build.status}, not built: wait for it to be built"
            )
        env = body.get("environment") or {}
        if not isinstance(env, dict):
            raise ApiError(400, "environment must be a map of strings")
        deployment = Deployment(
            str(uuid.uuid4()),
            build,
            float(body.get("cpu") or 1),
            float(body.get("memory") or 2),
            int(body.get("nvidia_gpus") or 0),
            int(body.get("replicas") or 1),
            {str(k): str(v) for k, v in env.items()},
        )
        self.deployments[deployment.id] = deployment
        self._spawn(self._deploy, deployment)
        return deployment

    def deployment(self, build: Build, deployment_id: str) -> Deployment:
        """A deployment of the build by ID."""
        return child(
            self.deployments, deployment_id, "build", build, "model deployment", self.wb.unknown_id_status
        )

    def deployments_of(self, build: Build) -> list[Deployment]:
        """The build's deployments, in creation order."""
        return [d for d in self.deployments.values() if d.build is build]

    def _deploy(self, deployment: Deployment) -> None:
        time.sleep(self.step)
        build = deployment.build
        if not build.file_path:  # a registry build: nothing of ours to load, it serves an echo
            self._status(deployment, "deployed")
            return

        env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1", **deployment.environment}
        process = subprocess.Popen(
            [sys.executable, "-c", _REPLICA, build.file_path, build.function_name],
            cwd=build.model.project.folder,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        with self.wb.lock:
            if deployment.status != "pending":  # stopped meanwhile
                process.kill()
                return
            deployment.process = process
        ready = process.stdout.readline().strip() if process.stdout else ""
        self._status(deployment, "deployed" if ready == "READY" else "failed")

    def stop_deployment(self, deployment: Deployment) -> Deployment:
        """``:stop``: the replica ends; the deployment is stopped."""
        process = deployment.process
        deployment.status, deployment.stopped_at, deployment.process = "stopped", _now(), None
        if process is not None:
            self._spawn(_end, process)
        return deployment

    def restart_deployment(self, deployment: Deployment) -> Deployment:
        """``:restart``: a new replica loads the function; pending until it is up."""
        self.stop_deployment(deployment)
        deployment.status, deployment.stopped_at = "pending", ""
        self._spawn(self._deploy, deployment)
        return deployment

    def predict(self, access_key: str, request: Any, api_key: str | None) -> tuple[int, dict[str, Any]]:
        """The model service: call the live deployment of the model whose access key this is."""
        with self.wb.lock:
            model = next((m for m in self.models.values() if m.access_key == access_key), None)
            if model is None:
                return 404, {"success": False, "errors": ["no model has this accessKey"]}
            if model.auth_enabled and api_key not in self.wb.api_keys:
                return 401, {"success": False, "errors": ["Unauthorized: this model needs an API key"]}
            live = [d for d in self.deployments.values() if d.build.model is model and d.status == "deployed"]
        if not live:
            return 503, {"success": False, "errors": ["the model has no deployed replica"]}
        deployment = live[-1]
        if deployment.process is None:  # a registry build's deployment
            return 200, {"success": True, "response": request}
        with deployment.calls:  # one request per replica at a time
            stdin, stdout = deployment.process.stdin, deployment.process.stdout
            try:
                assert stdin is not None and stdout is not None
                stdin.write(json.dumps(request) + "\n")
                stdin.flush()
                reply = json.loads(stdout.readline())
            except (OSError, ValueError, AssertionError):
                return 503, {"success": False, "errors": ["the replica went away"]}
        return 200, reply  # a function's error too: callers read "success" (as the sheet's FTS code does)

    # -- applications -----------------------------------------------------------------------------

    def create_application(self, project: Project, body: dict[str, Any]) -> Application:
        """CreateApplication: starts it; a taken subdomain is refused (409)."""
        for key in ("name", "subdomain", "script"):
            if not body.get(key):
                raise ApiError(400, f"application {key} is required")
        if any(a.fields.get("subdomain") == body["subdomain"] for a in self.applications.values()):
            raise ApiError(409, f"subdomain {body['subdomain']} is taken", grpc_code=6)
        env = body.get("environment") or {}
        if not isinstance(env, dict):
            raise ApiError(400, "environment must be a map of strings")
        fields = {k: body[k] for k in _APP_SETTINGS if k in body}
        app = Application(_resource_id(), project, fields, {str(k): str(v) for k, v in env.items()})
        app.times["created_at"] = app.times["updated_at"] = _now()
        self.applications[app.id] = app
        self._start_app(app)
        return app

    def application(self, project: Project, application_id: str) -> Application:
        """An application of the project by ID."""
        return child(
            self.applications, application_id, "project", project, "application", self.wb.unknown_id_status
        )

    def update_application(self, app: Application, body: dict[str, Any]) -> Application:
        """UpdateApplication: ``environment`` must be a JSON string, as an Application carries it."""
        if "environment" in body:
            value = body["environment"]
            if not isinstance(value, str):  # UpdateApplication's body is an Application: a JSON string
                raise ApiError(400, "environment must be a JSON-encoded string in an update")
            try:
                app.environment = {str(k): str(v) for k, v in json.loads(value or "{}").items()}
            except (ValueError, AttributeError):
                raise ApiError(400, "environment is not a JSON object") from None
        app.fields.update({k: body[k] for k in _APP_SETTINGS if k in body})
        app.times["updated_at"] = _now()
        return app

    def restart_application(self, app: Application) -> Application:
        """``:restart``: ends the script's process (if any) and starts it again."""
        before = app.to_api() if self.restart_lag > 0 else None
        self._end_app(app)
        self._start_app(app)
        if before is not None:
            app.stale = (before, time.monotonic() + self.restart_lag)
        return app

    def stop_application(self, app: Application) -> Application:
        """``:stop``: stopping, then stopped once the process is gone."""
        if app.status != "APPLICATION_STOPPED":
            app.status = "APPLICATION_STOPPING"
            self._end_app(app)
            self._spawn(self._stopped, app, app.generation)
        return app

    def _stopped(self, app: Application, generation: int) -> None:
        time.sleep(self.step)
        with self.wb.lock:
            if app.generation == generation and app.status == "APPLICATION_STOPPING":
                app.status, app.times["stopped_at"] = "APPLICATION_STOPPED", _now()

    def _start_app(self, app: Application) -> None:
        app.generation += 1
        app.status, app.times["starting_at"] = "APPLICATION_STARTING", _now()
        self._spawn(self._run_app, app, app.generation)

    def _end_app(self, app: Application) -> None:
        app.generation += 1  # the old process's watcher must not report its end
        process, app.process = app.process, None
        if process is not None:
            self._spawn(_end, process)

    def _run_app(self, app: Application, generation: int) -> None:

        time.sleep(self.step)
        folder = app.project.folder
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONUNBUFFERED": "1",
            "HOME": str(folder),
            "CDSW_APP_PORT": "0",
            **app.project.env,
            **app.environment,
        }
        with self.wb.lock:
            if app.generation != generation:
                return
            log = open(self.app_output_dir / f"app-{app.id}-{generation}.log", "wb")  # noqa: SIM115
            app.process = process = subprocess.Popen(
                [sys.executable, str(folder / str(app.fields["script"]))],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            process.wait(timeout=self.app_ready_after)
        except subprocess.TimeoutExpired:
            self._app_status(app, generation, "APPLICATION_RUNNING", "running_at")
            process.wait()
        finally:
            log.close()
        self._app_status(app, generation, "APPLICATION_FAILED", "stopped_at")

    def _app_status(self, app: Application, generation: int, status: str, stamp: str) -> None:
        with self.wb.lock:
            if app.generation == generation:
                app.status, app.times[stamp] = status, _now()

    # -- plumbing ---------------------------------------------------------------------------------

    def _status(self, item: Build | Deployment, status: str) -> None:
        with self.wb.lock:
            if item.status not in ("stopped",):
                item.status = status

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()

    def shutdown(self) -> None:
        """End every replica and application process."""
        with self.wb.lock:
            processes: list[subprocess.Popen[Any] | None] = [d.process for d in self.deployments.values()]
            processes += [a.process for a in self.applications.values()]
            for app in self.applications.values():
                app.generation += 1
        for process in processes:
            if process is not None:
                _end(process)


def _end(process: subprocess.Popen[Any]) -> None:
    """Terminate a process group, then kill it if it lingers."""
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
