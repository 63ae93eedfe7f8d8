"""The simulated workbench's experiments and experiment runs, and their HTTP routes.

Paths, shapes and statuses are the fact sheet's (``cml-api-v2-experiments.md`` §1, §3, §4): a run
is flat (``data.metrics`` a list of ``{key, value, timestamp, step}``, ``step`` a string), the
listing field is ``experiment_runs``, and GetExperimentRun keeps one metric per key, the latest by
timestamp, ties to the maximum (§5). UpdateExperimentRun (PATCH) takes the run itself, ``status``
as a name in any spelling or as MLflow's 1-based number (RUNNING=1 ... KILLED=5, §4); its metrics
are appended, as ``:logbatch``'s are (whether a real PATCH replaces them is unknown, §10).

MLflow inside a job (§8) needs the workbench's ``cml://`` plugin, which this simulation has not:
a test or a job script makes runs through the API above, or through :meth:`Experiments.add_run`
and :meth:`Experiments.set_run` on ``workbench.experiments``. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.testing.workbench import (
    ApiError,
    _now,
    _resource_id,
    _user,
    child,
    project_collection,
)

if TYPE_CHECKING:
    from airflow_provider_cml.testing.workbench import Project, Workbench

STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")  # MLflow's numbers, 1-based
_EXPERIMENT = r"/projects/([^/]+)/experiments/([^/:]+)"


def run_status(value: Any) -> str:
    """``value`` as an ExperimentRunStatus: a name in any spelling, or MLflow's number 1-5.

    :param value: what a request or a test gave.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= len(STATUSES):
        return "EXPERIMENT_RUN_" + STATUSES[value - 1]
    word = "_".join(str(value).upper().split()).removeprefix("EXPERIMENT_RUN_")
    if word not in STATUSES:
        raise ApiError(400, f"invalid experiment run status: {value!r}")
    return "EXPERIMENT_RUN_" + word


@dataclass
class Experiment:
    """A simulated experiment of a project."""

    id: str
    project: Project
    name: str
    created_at: str = field(default_factory=_now)

    def to_api(self) -> dict[str, Any]:
        """The Experiment object of API v2."""
        return {
            "id": self.id,
            "project_id": self.project.id,
            "name": self.name,
            "artifact_location": f".experiments/{self.id}",
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "lifecycle_stage": "active",
            "user": _user(self.project.owner),
        }


@dataclass
class ExperimentRun:
    """A simulated run: its status and every metric value logged (the answer keeps the latest)."""

    id: str
    experiment: Experiment
    name: str
    status: str = "EXPERIMENT_RUN_RUNNING"
    start_time: str = field(default_factory=_now)
    end_time: str = ""  # until the run ends (UpdateExperimentRun with an end time)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: RegisteredModelMetadata entries, one per version registered from the run (``testing.registry``).
    registered_model_metadata: list[dict[str, Any]] = field(default_factory=list)

    def latest_metrics(self) -> list[dict[str, Any]]:
        """One entry per key: the latest timestamp, ties to the maximum value (sheet §5)."""
        best: dict[str, dict[str, Any]] = {}
        for metric in self.metrics:
            held = best.get(metric["key"])
            if held is None or (metric["timestamp"], metric["value"]) >= (held["timestamp"], held["value"]):
                best[metric["key"]] = metric
        return list(best.values())

    def to_api(self) -> dict[str, Any]:
        """The ExperimentRun object of API v2 (flat; params and tags as ``{key, value}`` lists)."""
        answer: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "experiment_id": self.experiment.id,
            "user": _user(self.experiment.project.owner),
            "status": self.status,
            "start_time": self.start_time,
            "artifact_uri": f".experiments/{self.experiment.id}/{self.id}/artifacts",
            "data": {
                "metrics": self.latest_metrics(),
                "params": [{"key": k, "value": v} for k, v in self.params.items()],
                "tags": [{"key": k, "value": v} for k, v in self.tags.items()],
                "registered_model_metadata": [dict(entry) for entry in self.registered_model_metadata],
            },
        }
        if self.end_time:
            answer["end_time"] = self.end_time
        return answer


class Experiments:
    """The workbench's experiments and runs (``workbench.experiments``); callers hold ``wb.lock``.

    :param wb: the workbench.
    """

    def __init__(self, wb: Workbench) -> None:
        self.wb = wb
        self.experiments: dict[str, Experiment] = {}
        self.runs: dict[str, ExperimentRun] = {}

    def create_experiment(self, project: Project, body: Mapping[str, Any]) -> Experiment:
        """CreateExperiment: 409 when the name is taken (names are unique across the workspace).

        :param project: its project.
        :param body: CreateExperimentRequest.
        """
        name = str(body.get("name") or "")
        if not name:
            raise ApiError(400, "an experiment needs a name")
        if any(e.name == name for e in self.experiments.values()):
            raise ApiError(409, f"experiment already exists: {name}")
        experiment = Experiment(_resource_id(), project, name)
        self.experiments[experiment.id] = experiment
        return experiment

    def experiment(self, project: Project, experiment_id: str) -> Experiment:
        """An experiment of ``project`` by ID (404 when there is none).

        :param project: its project.
        :param experiment_id: its ID.
        """
        return child(self.experiments, experiment_id, "project", project, "experiment", 404)

    def run(self, experiment: Experiment, run_id: str) -> ExperimentRun:
        """A run of ``experiment`` by ID (404 when there is none).

        :param experiment: its experiment.
        :param run_id: its ID.
        """
        return child(self.runs, run_id, "experiment", experiment, "experiment run", 404)

    def create_run(self, experiment: Experiment, body: Mapping[str, Any]) -> ExperimentRun:
        """CreateExperimentRun: a ``RUNNING`` run (the request has no status, sheet §3).

        :param experiment: its experiment.
        :param body: CreateExperimentRunRequest.
        """
        run = ExperimentRun(_resource_id(), experiment, str(body.get("run_name") or ""))
        run.start_time = str(body.get("start_time") or run.start_time)
        run.tags.update({t["key"]: t["value"] for t in body.get("tags") or []})
        self.runs[run.id] = run
        return run

    def update_run(self, run: ExperimentRun, body: Mapping[str, Any]) -> ExperimentRun:
        """UpdateExperimentRun / ``:logbatch``: status, name, end time; metrics appended, params and tags set.

        :param run: the run.
        :param body: an ExperimentRun (PATCH) or a LogExperimentRunBatchRequest (``:logbatch``).
        """
        if body.get("status") not in (None, ""):
            run.status = run_status(body["status"])
            if run.status in ("EXPERIMENT_RUN_FINISHED", "EXPERIMENT_RUN_FAILED", "EXPERIMENT_RUN_KILLED"):
                run.end_time = str(body.get("end_time") or run.end_time or _now())
        run.name = str(body.get("name") or run.name)
        given = body.get("data")
        data: Mapping[str, Any] = given if isinstance(given, Mapping) else body
        for metric in data.get("metrics") or []:
            run.metrics.append(
                {
                    "key": str(metric["key"]),
                    "value": float(metric["value"]),
                    "timestamp": str(metric.get("timestamp") or _now()),
                    "step": str(metric.get("step") or 0),
                }
            )
        run.params.update({p["key"]: p["value"] for p in data.get("params") or []})
        run.tags.update({t["key"]: t["value"] for t in data.get("tags") or []})
        return run

    # -- for tests and job scripts: no HTTP needed ------------------------------------------------

    def add_run(
        self,
        project_id: str,
        experiment: str,
        *,
        status: str | int = "RUNNING",
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ExperimentRun:
        """A new run in the project's experiment named ``experiment`` (made if missing).

        :param project_id: the project's ID.
        :param experiment: the experiment's name.
        :param status: its status, in any spelling (or MLflow's number).
        :param metrics: metric values to log now.
        :param tags: its tags.
        """
        with self.wb.lock:
            project = self.wb.project(project_id)
            found = next((e for e in self.experiments.values() if e.name == experiment), None)
            found = found or self.create_experiment(project, {"name": experiment})
            run = self.create_run(found, {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]})
            return self.set_run(run.id, status=status, metrics=metrics)

    def set_run(
        self, run_id: str, *, status: str | int | None = None, metrics: Mapping[str, float] | None = None
    ) -> ExperimentRun:
        """Set a run's status and log metric values, as the job script's MLflow calls would.

        :param run_id: the run's ID.
        :param status: its new status, in any spelling (or MLflow's number); ``None``: unchanged.
        :param metrics: metric values to log now.
        """
        with self.wb.lock:
            run = self.runs[run_id]
            logged = [{"key": k, "value": v} for k, v in (metrics or {}).items()]
            return self.update_run(run, {"status": status, "metrics": logged})


def route(
    experiments: Experiments,
    method: str,
    rest: str,
    body: Callable[[], dict[str, Any]],
    page: Callable[[str, list[dict[str, Any]]], dict[str, Any]],
) -> Any:
    """Answer one API v2 request below ``/api/v2`` if it is an experiments path, else ``None``.

    :param experiments: the state.
    :param method: the HTTP method.
    :param rest: the path below ``/api/v2``.
    :param body: reads the request's JSON body.
    :param page: pages a listing (``search_filter`` on ``name`` and ``status``, sort, page size, token).
    """
    wb = experiments.wb
    found = experiments.experiments.values()
    create = experiments.create_experiment
    listed = project_collection(wb, method, rest, "experiments", found, create, body, page)
    if listed is not None:
        return listed
    m = re.fullmatch(_EXPERIMENT + r"(/runs)?", rest)
    if m:
        experiment = experiments.experiment(wb.project(m.group(1)), m.group(2))
        if method == "GET" and not m.group(3):
            return 200, experiment.to_api()
        if method == "GET":
            runs = [r.to_api() for r in experiments.runs.values() if r.experiment is experiment]
            return 200, page("experiment_runs", runs)
        if method == "POST" and m.group(3):
            return 200, experiments.create_run(experiment, body()).to_api()
    m = re.fullmatch(_EXPERIMENT + r"/runs/([^/:]+)(:logbatch)?", rest)
    if m:
        run = experiments.run(experiments.experiment(wb.project(m.group(1)), m.group(2)), m.group(3))
        if method == "GET" and not m.group(4):
            return 200, run.to_api()
        if method == "PATCH" and not m.group(4):
            return 200, experiments.update_run(run, body()).to_api()
        if method == "POST" and m.group(4):
            experiments.update_run(run, {**body(), "status": None})
            return 200, {}
    return None
