"""The API contract, checked by machine: JSON Schemas written from the v2 fact sheet, and a checker.

``check_exchanges`` validates what the local workbench answered and what this provider's hook sent
(requests whose User-Agent is ours), using the maintained ``jsonschema`` library.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_FILE = Path(__file__).with_name("cml-api-v2.schema.json")
_ID = r"[^/:]+"
_MODEL = rf"/api/v2/projects/{_ID}/models/{_ID}"
_EXPERIMENT = rf"/api/v2/projects/{_ID}/experiments/{_ID}"
#: (method, path regex) -> (request schema or None, response schema)
ROUTES: list[tuple[str, str, str | None, str]] = [
    ("GET", r"/api/v2/projects", None, "ListProjectsResponse"),
    ("GET", rf"/api/v2/projects/{_ID}", None, "Project"),
    ("GET", r"/api/v2/jobs", None, "ListJobsResponse"),
    ("GET", rf"/api/v2/projects/{_ID}/jobs", None, "ListJobsResponse"),
    ("POST", rf"/api/v2/projects/{_ID}/jobs", "CreateJobRequest", "Job"),
    ("GET", rf"/api/v2/projects/{_ID}/jobs/{_ID}", None, "Job"),
    ("PATCH", rf"/api/v2/projects/{_ID}/jobs/{_ID}", "Job", "Job"),
    ("DELETE", rf"/api/v2/projects/{_ID}/jobs/{_ID}", None, "DeleteJobResponse"),
    ("GET", r"/api/v2/runtimes", None, "ListRuntimesResponse"),
    ("GET", rf"/api/v2/projects/{_ID}/jobs/{_ID}/runs", None, "ListJobRunsResponse"),
    ("POST", rf"/api/v2/projects/{_ID}/jobs/{_ID}/runs", "CreateJobRunRequest", "JobRun"),
    ("GET", rf"/api/v2/projects/{_ID}/jobs/{_ID}/runs/{_ID}", None, "JobRun"),
    ("POST", rf"/api/v2/projects/{_ID}/jobs/{_ID}/runs/{_ID}:stop", None, "JobRun"),
    ("POST", r"/api/v2/auth/validate_key", "ValidateAPIKeyRequest", "ValidateAPIKeyResponse"),
    ("GET", r"/api/v2/usage", None, "ListUsageResponse"),
    ("GET", r"/api/v2/workloads/executions", None, "ListWorkloadExecutionsResponse"),
    # Models, builds, deployments, registry, applications (cml-api-v2-models-apps.md §1).
    ("GET", rf"/api/v2/projects/{_ID}/models", None, "ListModelsResponse"),
    ("POST", rf"/api/v2/projects/{_ID}/models", "CreateModelRequest", "Model"),
    ("GET", rf"/api/v2/projects/{_ID}/models/{_ID}", None, "Model"),
    ("PATCH", rf"/api/v2/projects/{_ID}/models/{_ID}", "UpdateSingleModel", "Model"),
    ("DELETE", rf"/api/v2/projects/{_ID}/models/{_ID}", None, "DeleteJobResponse"),  # `{}` too
    ("GET", rf"{_MODEL}/builds", None, "ListModelBuildsResponse"),
    ("POST", rf"{_MODEL}/builds", "CreateModelBuildRequest", "ModelBuild"),
    ("GET", rf"{_MODEL}/builds/{_ID}", None, "ModelBuild"),
    ("GET", rf"{_MODEL}/builds/{_ID}/deployments", None, "ListModelDeploymentsResponse"),
    ("POST", rf"{_MODEL}/builds/{_ID}/deployments", "CreateModelDeploymentRequest", "ModelDeployment"),
    ("GET", rf"{_MODEL}/builds/{_ID}/deployments/{_ID}", None, "ModelDeployment"),
    ("POST", rf"{_MODEL}/builds/{_ID}/deployments/{_ID}:restart", "EmptyBody", "ModelDeployment"),
    ("POST", rf"{_MODEL}/builds/{_ID}/deployments/{_ID}:stop", "EmptyBody", "ModelDeployment"),
    ("GET", r"/api/v2/registry/models", None, "ListRegisteredModelsResponse"),
    ("POST", r"/api/v2/registry/models", "CreateRegisteredModelRequest", "RegisteredModel"),
    ("GET", rf"/api/v2/registry/models/{_ID}", None, "RegisteredModel"),
    ("GET", rf"/api/v2/registry/models/{_ID}/versions/{_ID}", None, "RegisteredModelVersion"),
    ("GET", rf"/api/v2/projects/{_ID}/applications", None, "ListApplicationsResponse"),
    ("POST", rf"/api/v2/projects/{_ID}/applications", "CreateApplicationRequest", "Application"),
    ("GET", rf"/api/v2/projects/{_ID}/applications/{_ID}", None, "Application"),
    ("PATCH", rf"/api/v2/projects/{_ID}/applications/{_ID}", "Application", "Application"),
    ("POST", rf"/api/v2/projects/{_ID}/applications/{_ID}:restart", "EmptyBody", "Application"),
    ("POST", rf"/api/v2/projects/{_ID}/applications/{_ID}:stop", "EmptyBody", "Application"),
    # Experiments and their runs (cml-api-v2-experiments.md §1); UpdateExperimentRun's body is a run.
    ("GET", rf"/api/v2/projects/{_ID}/experiments", None, "ListExperimentsResponse"),
    ("POST", rf"/api/v2/projects/{_ID}/experiments", "CreateExperimentRequest", "Experiment"),
    ("GET", rf"{_EXPERIMENT}", None, "Experiment"),
    ("GET", rf"{_EXPERIMENT}/runs", None, "ListExperimentRunsResponse"),
    ("POST", rf"{_EXPERIMENT}/runs", "CreateExperimentRunRequest", "ExperimentRun"),
    ("GET", rf"{_EXPERIMENT}/runs/{_ID}", None, "ExperimentRun"),
    ("PATCH", rf"{_EXPERIMENT}/runs/{_ID}", "ExperimentRun", "ExperimentRun"),
    ("POST", rf"{_EXPERIMENT}/runs/{_ID}:logbatch", "LogExperimentRunBatchRequest", "DeleteJobResponse"),
]
OUR_CLIENT = "airflow-provider-cml/"


@cache
def schema_document() -> dict[str, Any]:
    document = json.loads(SCHEMA_FILE.read_text())
    Draft202012Validator.check_schema(document)
    return document


@cache
def validator(name: str) -> Draft202012Validator:
    document = schema_document()
    return Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": document["$defs"]})


def problems_with(name: str, value: Any) -> list[str]:
    """Every way ``value`` breaks schema ``name`` (empty when it conforms)."""
    return [f"{name}{list(e.absolute_path)}: {e.message}" for e in validator(name).iter_errors(value)]


def route_of(method: str, path: str) -> tuple[str | None, str] | None:
    for route_method, pattern, request, response in ROUTES:
        if route_method == method and re.fullmatch(pattern, path):
            return request, response
    return None


def check_exchanges(entries: Iterable[Any]) -> list[str]:
    """Contract problems in journal entries: v2 answers, and request bodies our hook sent.

    Scripted answers (``fail_next``) and respelled ones (the workbench's ``status_as``) are left
    out: they are off-contract on purpose. So are
    requests to paths the spec has no route for (the workbench answers those 404 with runtimeError,
    which is checked).
    """
    problems: list[str] = []
    for entry in entries:
        if entry.fault in ("scripted", "respelled") or not entry.path.startswith("/api/v2/"):
            continue
        where = f"{entry.method} {entry.path} -> {entry.status}"
        route = route_of(entry.method, entry.path)
        if entry.status is not None and entry.response_body:
            answer = json.loads(entry.response_body)
            if entry.status >= 400:
                problems += [f"{where}: {p}" for p in problems_with("runtimeError", answer)]
            elif route is not None:
                problems += [f"{where}: {p}" for p in problems_with(route[1], answer)]
            else:
                problems.append(f"{where}: the workbench answered a path the contract does not know")
        if route and route[0] and entry.client.startswith(OUR_CLIENT) and entry.request_body:
            problems += [
                f"{where} (request): {p}" for p in problems_with(route[0], json.loads(entry.request_body))
            ]
    return problems
