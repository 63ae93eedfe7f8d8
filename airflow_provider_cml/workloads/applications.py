"""Applications: what one should be (:class:`CmlApplicationSpec`), and an application as a workload.

Its API paths are here too: an application is waited on until it runs, or has stopped.

The statuses are the ``ApplicationStatus`` enum (``APPLICATION_RUNNING``, ...); filters and
cai-mcp-server use the bare lower-case words (``running``), read as the same statuses. Any other
value says nothing about progress: a wait tolerates it for its ``unknown_grace``, then fails naming
it. ``environment`` is a map when creating and a JSON string in an update; GPUs are ``nvidia_gpu``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, NamedTuple

from airflow_provider_cml.exceptions import CmlApplicationError, CmlConfigError
from airflow_provider_cml.validation import ref_path, resource_path
from airflow_provider_cml.waiting.kinds import WorkloadKind
from airflow_provider_cml.workloads import api_fields
from airflow_provider_cml.workloads.specs import ScriptSpec, check_text

_SUBDOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


class ApplicationRef(NamedTuple):
    """The IDs that name one application."""

    project_id: str
    application_id: str


#: A project's applications; with an application ID, that application.
applications_path = functools.partial(resource_path, "projects/applications")
#: One application's path from its :class:`ApplicationRef` (cached).
application_path = ref_path("projects/applications")


_APP_HINTS = {
    "APPLICATION_FAILED": "the application failed: its script exited or did not start; read its log "
    "on the application's page",
    "APPLICATION_STOPPED": "the application stopped before it was running",
}

#: An application, waited on until it runs. A wait never stops one (it may have been serving).
APPLICATION = WorkloadKind(
    home="airflow_provider_cml.workloads.applications:APPLICATION",
    name="application",
    ref_type=ApplicationRef,
    read_path=application_path,
    succeeded=frozenset({"APPLICATION_RUNNING"}),
    failed=frozenset({"APPLICATION_FAILED", "APPLICATION_STOPPED"}),
    active=frozenset({"APPLICATION_STARTING", "APPLICATION_STOPPING"}),
    prefix="APPLICATION_",
    missing_status="APPLICATION_UNKNOWN",
    hints=_APP_HINTS,
    event_fields=("id", "name", "subdomain", "status", "running_at", "stopped_at"),
    error=CmlApplicationError,
    instance_marks=("starting_at", "running_at"),
)

#: An application, waited on until it has stopped (after a stop request).
APPLICATION_STOP = replace(
    APPLICATION,
    home="airflow_provider_cml.workloads.applications:APPLICATION_STOP",
    succeeded=frozenset({"APPLICATION_STOPPED"}),
    failed=frozenset({"APPLICATION_FAILED"}),
    active=frozenset({"APPLICATION_STARTING", "APPLICATION_RUNNING", "APPLICATION_STOPPING"}),
)


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
