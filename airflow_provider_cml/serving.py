"""Model builds, model deployments and applications as workloads to wait on, and their API paths.

Each is a :class:`~airflow_provider_cml.workloads.WorkloadKind`: data the one waiting rule, the
trigger, the sensor and the sync wait read. The statuses are the fact sheet's
(``docs`` of this project: "Cloudera AI Workbench API v2: models, builds, deployments, registry,
applications"):

* a build is lower case (``built``, ``build failed`` with a space, read as ``BUILD_FAILED``); the
  API lists ``queued``, ``pending`` and ``pushing`` as steps on the way; ``succeeded`` is listed
  but no client treats it as done and the sheet calls it unclear, so it is graced like ``unknown``;
* a deployment has no listed statuses at all: ``deployed`` succeeds, ``failed``, ``stopped`` and
  ``deployment_failed`` fail; ``pending`` is seen in clients, ``deploying`` and ``stopping`` are
  the sheet's in-between values;
* an application has the ``ApplicationStatus`` enum (``APPLICATION_RUNNING``, ...); filters and
  cai-mcp-server use the bare lower-case words (``running``), read as the same statuses.

Any other value (``error``, say) says nothing about progress: a wait tolerates it for its
``unknown_grace``, then fails naming it (:class:`~airflow_provider_cml.workloads.WorkloadKind`).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import NamedTuple

from airflow_provider_cml.exceptions import (
    CmlApplicationError,
    CmlModelBuildError,
    CmlModelDeploymentError,
)
from airflow_provider_cml.runs import project_path
from airflow_provider_cml.validation import path_segment
from airflow_provider_cml.workloads import WorkloadKind


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


class ApplicationRef(NamedTuple):
    """The IDs that name one application."""

    project_id: str
    application_id: str


def models_path(project_id: str) -> str:
    """``/projects/{project_id}/models``.

    :param project_id: project ID.
    """
    return project_path(project_id) + "/models"


def model_path(project_id: str, model_id: str) -> str:
    """One model's path.

    :param project_id: project ID.
    :param model_id: model ID.
    """
    return f"{models_path(project_id)}/{path_segment('model_id', model_id)}"


@lru_cache(maxsize=4096)
def build_path(ref: tuple[str, str, str]) -> str:
    """One build's path (cached: a wait reads it every poll).

    :param ref: project, model and build IDs.
    """
    project_id, model_id, build_id = ref
    return f"{model_path(project_id, model_id)}/builds/{path_segment('build_id', build_id)}"


@lru_cache(maxsize=4096)
def deployment_path(ref: tuple[str, str, str, str]) -> str:
    """One deployment's path (cached: a wait reads it every poll).

    :param ref: project, model, build and deployment IDs.
    """
    project_id, model_id, build_id, deployment_id = ref
    return f"{build_path((project_id, model_id, build_id))}/deployments/" + path_segment(
        "deployment_id", deployment_id
    )


def applications_path(project_id: str) -> str:
    """``/projects/{project_id}/applications``.

    :param project_id: project ID.
    """
    return project_path(project_id) + "/applications"


@lru_cache(maxsize=4096)
def application_path(ref: tuple[str, str]) -> str:
    """One application's path (cached: a wait reads it every poll).

    :param ref: project and application IDs.
    """
    project_id, application_id = ref
    return f"{applications_path(project_id)}/{path_segment('application_id', application_id)}"


#: A model build: from ``queued`` to ``built``. It cannot be stopped (the API has no such call).
MODEL_BUILD = WorkloadKind(
    home="airflow_provider_cml.serving:MODEL_BUILD",
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
    home="airflow_provider_cml.serving:MODEL_DEPLOYMENT",
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

_APP_HINTS = {
    "APPLICATION_FAILED": "the application failed: its script exited or did not start; read its log "
    "on the application's page",
    "APPLICATION_STOPPED": "the application stopped before it was running",
}

#: An application, waited on until it runs. A wait never stops one (it may have been serving).
APPLICATION = WorkloadKind(
    home="airflow_provider_cml.serving:APPLICATION",
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
    home="airflow_provider_cml.serving:APPLICATION_STOP",
    succeeded=frozenset({"APPLICATION_STOPPED"}),
    failed=frozenset({"APPLICATION_FAILED"}),
    active=frozenset({"APPLICATION_STARTING", "APPLICATION_RUNNING", "APPLICATION_STOPPING"}),
)
