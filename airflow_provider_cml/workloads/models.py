"""Models: what a model should be (:class:`CmlModelSpec`), and its builds and deployments as workloads.

Their API paths are here too.

The statuses are the fact sheet's ("Cloudera AI Workbench API v2: models, builds, deployments"):

* a build is lower case (``built``, ``build failed`` with a space, read as ``BUILD_FAILED``); the
  API lists ``queued``, ``pending`` and ``pushing`` as steps on the way; ``succeeded`` is listed
  but no client treats it as done and the sheet calls it unclear, so it is graced like ``unknown``;
* a deployment has no listed statuses at all: ``deployed`` succeeds, ``failed``, ``stopped`` and
  ``deployment_failed`` fail; ``pending`` is seen in clients, ``deploying`` and ``stopping`` are
  the sheet's in-between values.

Any other value (``error``, say) says nothing about progress: a wait tolerates it for its
``unknown_grace``, then fails naming it. :class:`CmlModelSpec` checks its fields when built and
writes the request bodies as API v2 wants them (``environment`` a map, ``nvidia_gpus`` plural).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, NamedTuple

from airflow_provider_cml.exceptions import CmlConfigError, CmlModelBuildError, CmlModelDeploymentError
from airflow_provider_cml.validation import ref_path, resource_path
from airflow_provider_cml.waiting.kinds import WorkloadKind
from airflow_provider_cml.workloads.specs import Spec, check_number, check_project_file, check_text


class BuildRef(NamedTuple):
    """The IDs that name one model build."""

    project_id: str
    model_id: str
    build_id: str


class DeploymentRef(NamedTuple):
    """The IDs that name one model deployment (deployments hang under a build)."""

    project_id: str
    model_id: str
    build_id: str
    deployment_id: str


#: A project's models; with a model ID, that model.
models_path = functools.partial(resource_path, "projects/models")
#: A model's builds (where one is made); with a build ID, that build.
builds_path = functools.partial(resource_path, "projects/models/builds")
#: A build's deployments (where one is made); with a deployment ID, that deployment.
deployments_path = functools.partial(resource_path, "projects/models/builds/deployments")
#: One build's path from its :class:`BuildRef` (cached).
build_path = ref_path("projects/models/builds")
#: One deployment's path from its :class:`DeploymentRef` (cached).
deployment_path = ref_path("projects/models/builds/deployments")


#: A model build: from ``queued`` to ``built``. It cannot be stopped (the API has no such call).
MODEL_BUILD = WorkloadKind(
    home="airflow_provider_cml.workloads.models:MODEL_BUILD",
    name="model build",
    ref_type=BuildRef,
    read_path=build_path,
    succeeded=frozenset({"BUILT"}),
    failed=frozenset({"BUILD_FAILED", "TIMEDOUT"}),
    # SUCCEEDED is listed by the API, but no client deploys from it and the sheet calls it
    # unclear: graced (and logged, as every status change is) like UNKNOWN, then the wait fails.
    active=frozenset({"QUEUED", "PENDING", "PUSHING", "BUILDING"}),
    aliases=("MODEL_BUILD_",),
    missing_status="UNKNOWN",
    hints={
        "BUILD_FAILED": "the build failed: check that the model's file exists and defines its function, "
        "and read the build's log on the model's page",
        "TIMEDOUT": "the build ran out of time on the workbench",
    },
    event_fields=("id", "model_id", "status", "created_at", "built_at"),
    error=CmlModelBuildError,
)

#: A model deployment, waited on until ``deployed``. Stopping one stops serving it.
MODEL_DEPLOYMENT = WorkloadKind(
    home="airflow_provider_cml.workloads.models:MODEL_DEPLOYMENT",
    name="model deployment",
    ref_type=DeploymentRef,
    read_path=deployment_path,
    succeeded=frozenset({"DEPLOYED"}),
    failed=frozenset({"FAILED", "STOPPED", "DEPLOYMENT_FAILED"}),
    active=frozenset({"PENDING", "DEPLOYING", "STOPPING"}),
    aliases=("MODEL_DEPLOYMENT_",),
    missing_status="UNKNOWN",
    stop_path=lambda ref: deployment_path(ref) + ":stop",
    hints={
        "FAILED": "the deployment failed: the model's function could not be loaded or its replicas "
        "did not start; read the deployment's log on the model's page",
        "DEPLOYMENT_FAILED": "the deployment failed: read the deployment's log on the model's page",
        "STOPPED": "the deployment was stopped before it was serving",
    },
    event_fields=("id", "model_id", "build_id", "status", "created_at"),
    error=CmlModelDeploymentError,
)


@dataclass(frozen=True, kw_only=True)
class CmlModelSpec(Spec):
    """A model served from the workbench: what to build and how to deploy it.

    Build from a file (``file`` and ``function``) or from a registered model version
    (``registered_model_version_id``, with ``registered_model_id``), not both.

    :param name: the model's name in the project (models are found by it).
    :param file: the script that defines the function, relative to the project.
    :param function: the function called for each request.
    :param runtime_identifier: the ML Runtime image to build on.
    :param kernel: the kernel (e.g. ``python3``), alone on a legacy engine or beside the runtime.
    :param cpu: vCPU per replica.
    :param memory: GB per replica.
    :param nvidia_gpus: GPUs per replica.
    :param replicas: how many replicas serve it.
    :param environment: variables the deployment's replicas see (values may be secrets: masked).
    :param description: the model's description.
    :param disable_authentication: let callers in without an API key (default: keys needed).
    :param registered_model_id: the model registry entry to deploy from.
    :param registered_model_version_id: the registry version to build.
    """

    noun: ClassVar[str] = "model"

    file: str | None = None
    function: str | None = None
    nvidia_gpus: int | None = None
    replicas: int | None = None
    description: str | None = None
    disable_authentication: bool = False
    registered_model_id: str | None = None
    registered_model_version_id: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # name, engine, cpu, memory, environment
        for key in ("file", "function", "description", "registered_model_id", "registered_model_version_id"):
            self._set(key, check_text("model", key, getattr(self, key)))
        check_project_file("model", "file", self.file)
        self._set(
            "nvidia_gpus", check_number("nvidia_gpus", self.nvidia_gpus, int, positive=False, noun="model")
        )
        self._set("replicas", check_number("replicas", self.replicas, int, positive=True, noun="model"))
        if not isinstance(self.disable_authentication, bool):
            raise CmlConfigError(
                "The model spec's disable_authentication must be True or False, "
                f"not {self.disable_authentication!r}."
            )
        from_file = bool(self.file or self.function)
        if from_file and self.registered_model_version_id:
            raise CmlConfigError(
                f"Model {self.name!r} names both a file/function and a registered model version: a build "
                "comes from one of them. Keep file and function, or registered_model_version_id."
            )
        if not self.registered_model_version_id and not (self.file and self.function):
            raise CmlConfigError(
                f"Model {self.name!r} needs what to build: file and function (e.g. file='predict.py', "
                "function='predict'), or registered_model_version_id."
            )

    def model_body(self, project_id: str) -> dict[str, Any]:
        """The CreateModelRequest body.

        :param project_id: the project's ID (the body repeats the path's).
        """
        body: dict[str, Any] = {"project_id": project_id, "name": self.name}
        body["description"] = self.description or f"{self.name} (deployed from Airflow)"
        if self.disable_authentication:
            body["disable_authentication"] = True
        if self.registered_model_id:
            body["registered_model_id"] = self.registered_model_id
        return body

    def build_body(self, project_id: str, model_id: str, comment: str) -> dict[str, Any]:
        """The CreateModelBuildRequest body.

        :param project_id: the project's ID.
        :param model_id: the model's ID.
        :param comment: the build's comment (it names the task that asked for it).
        """
        body: dict[str, Any] = {"project_id": project_id, "model_id": model_id, "comment": comment}
        for key, wire in (
            ("file", "file_path"),
            ("function", "function_name"),
            ("runtime_identifier", "runtime_identifier"),
            ("kernel", "kernel"),
            ("registered_model_version_id", "registered_model_version_id"),
        ):
            if getattr(self, key):
                body[wire] = getattr(self, key)
        return body

    def deployment_body(
        self, project_id: str, model_id: str, build_id: str, marks: Mapping[str, str]
    ) -> dict[str, Any]:
        """The CreateModelDeploymentRequest body (``environment`` a map, ``nvidia_gpus`` plural).

        :param project_id: the project's ID.
        :param model_id: the model's ID.
        :param build_id: the build's ID.
        :param marks: variables naming the task that deploys (found again on a re-run).
        """
        body: dict[str, Any] = {"project_id": project_id, "model_id": model_id, "build_id": build_id}
        for key in ("cpu", "memory", "nvidia_gpus", "replicas"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        body["environment"] = {**dict(self.environment or {}), **marks}
        return body


def registered_spec(model: CmlModelSpec | Mapping[str, Any] | str, version: Any) -> CmlModelSpec:
    """``model`` built from a registered version: what ``CmlRegisterModelOperator`` returned, say.

    :param model: the model's spec, its fields, or only its name.
    :param version: a mapping with ``registered_model_id`` (or ``model_id``) and ``model_version_id``
        (or ``registered_model_version_id``).
    """
    ids = version if isinstance(version, Mapping) else {}
    model_id = str(ids.get("registered_model_id") or ids.get("model_id") or "").strip()
    version_id = str(ids.get("model_version_id") or ids.get("registered_model_version_id") or "").strip()
    if not (model_id and version_id):
        raise CmlConfigError(
            "registered_version must name a registered model version: a dict with registered_model_id "
            "and model_version_id, as CmlRegisterModelOperator returns (e.g. registered_version="
            f"register.output); got {version!r}."
        )
    registered = {"registered_model_id": model_id, "registered_model_version_id": version_id}
    if isinstance(model, CmlModelSpec):
        return replace(model, registered_model_id=model_id, registered_model_version_id=version_id)
    fields = {"name": model} if isinstance(model, str) else model
    return CmlModelSpec.of({**fields, **registered} if isinstance(fields, Mapping) else fields)
