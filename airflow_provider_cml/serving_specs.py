"""Models and applications as code: what a DAG says a served model or an application should be.

:class:`CmlModelSpec` defines a model, how it is built (a file and function on a runtime, or a
registered model version) and how it is deployed (cpu, memory, GPUs, replicas, environment).
:class:`CmlApplicationSpec` defines an application. Both check their fields when built, so a DAG
with a mistake fails at parse time, and both write the request bodies exactly as API v2 wants them:
``environment`` is a map when creating and a JSON string in an application update, GPUs are
``nvidia_gpus`` on a deployment and ``nvidia_gpu`` on an application.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow_provider_cml import api_fields
from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.specs import ScriptSpec, Spec, check_number, check_project_file, check_text

_SUBDOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


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


@dataclass(frozen=True, kw_only=True)
class CmlApplicationSpec(ScriptSpec):
    """An application (a dashboard, say) served from the workbench at ``<subdomain>.<domain>``.

    :param name: the application's name in the project (applications are found by it).
    :param subdomain: where it is served: lower-case letters, digits and single hyphens.
    :param script: the entry point, relative to the project.
    :param runtime_identifier: the ML Runtime image it runs on.
    :param kernel: the kernel, alone on a legacy engine or beside the runtime.
    :param cpu: vCPU.
    :param memory: GB.
    :param nvidia_gpu: GPUs.
    :param environment: variables it sees (values may be secrets: masked).
    :param description: its description.
    :param bypass_authentication: serve it without a login.
    """

    noun: ClassVar[str] = "application"

    subdomain: str
    description: str | None = None
    bypass_authentication: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # name, script, engine, cpu, memory, GPUs, environment
        self._set("subdomain", check_text("application", "subdomain", self.subdomain, required=True))
        self._set("description", check_text("application", "description", self.description))
        parts = self.subdomain.split("-")
        if not set(self.subdomain) <= _SUBDOMAIN_CHARS or not all(parts):
            raise CmlConfigError(
                f"Application {self.name!r} has subdomain {self.subdomain!r}: use lower-case letters, "
                "digits and single hyphens, not at either end (e.g. 'sales-dashboard')."
            )
        if self.bypass_authentication is not None and not isinstance(self.bypass_authentication, bool):
            raise CmlConfigError(
                "The application spec's bypass_authentication must be True or False, "
                f"not {self.bypass_authentication!r}."
            )

    def create_body(self, project_id: str) -> dict[str, Any]:
        """The CreateApplicationRequest body (``environment`` a map).

        :param project_id: the project's ID.
        """
        body = {"project_id": project_id, **self.managed()}
        if self.environment is not None:
            body["environment"] = dict(self.environment)
        return body

    def differences(self, app: Mapping[str, Any]) -> dict[str, Any]:
        """The UpdateApplication body: only the fields that differ (``environment`` a JSON string).

        :param app: the application as read.
        """
        changed: dict[str, Any] = {}
        for key, wanted in self.managed().items():
            # A field the answer leaves out is its type's zero (proto3 JSON omits zeros), not a change.
            if api_fields.read("Application", app, key) != wanted:
                changed[key] = json.dumps(dict(wanted), sort_keys=True) if key == "environment" else wanted
        return changed
