"""Experiments and their runs, as ``CmlHook.experiments``: read-only, for waiting on and gating by runs.

Experiment and run IDs have the shape of project IDs (``xxxx-xxxx-xxxx-xxxx``, fact sheet §0), so
an ID-shaped value is trusted without a request, as projects are. A name is looked up with the
listing's ``search_filter``, then matched exactly: the spec lists no filter keys for
ListExperiments (sheet §2), so when the filtered answer holds no exact match (a server that
ignores or rejects the key), every experiment of the project is read and compared.

The metric of the model version currently deployed follows the sheet's chain (§7, §11):
deployment (status ``deployed``) → its build → ``registered_model_version_id`` →
GetRegisteredModelVersion(``Model.registered_model_id``, version) →
``mlflow_metadata.experiment_id``/``run_id`` in ``model_version_metadata.project_id`` →
GetExperimentRun → ``data.metrics``. The run is the one source of the value:
``mlflow_metadata.metrics`` is never read (whether it is filled, and whether it is a snapshot, is
unknown, §10), so a baseline is always the value a run shows now, as the candidate's is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_cml.client import listing
from airflow_provider_cml.defaults import DEFAULT_UNKNOWN_GRACE
from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError
from airflow_provider_cml.hooks.part import HookPart
from airflow_provider_cml.validation import looks_like_id, validate_positive
from airflow_provider_cml.workloads.experiments import (
    EXPERIMENT_RUN,
    JOB_RUN_GRACE,
    ExperimentRunRef,
    check_tags,
    experiment_run_path,
    experiment_runs_path,
    experiments_path,
    job_run_ref,
    metrics_of,
    number,
    tagged_run,
)
from airflow_provider_cml.workloads.models import BuildRef

#: How many of a model's newest builds are searched for the deployed one.
BUILDS_SEARCHED = 20


class Experiments(HookPart):
    """Experiments and runs through one hook.

    :param hook: the hook.
    """

    def list_experiments(
        self, project_id: str, search_filter: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The project's experiments (every page).

        :param project_id: project ID.
        :param search_filter: e.g. ``{"name": "churn"}`` (the spec lists no keys: a server may ignore it).
        """
        return self.read_project_listing(
            project_id, experiments_path(project_id), "experiments", search_filter
        )

    def get_experiment(self, project_id: str, experiment_id: str) -> dict[str, Any]:
        """One experiment (GetExperiment).

        :param project_id: project ID.
        :param experiment_id: experiment ID.
        """
        return self.hook.transport.request(
            "GET", experiments_path(project_id, experiment_id), not_found=f"experiment {experiment_id!r}"
        )

    def resolve_experiment(self, project_id: str, experiment: str) -> dict[str, Any]:
        """An experiment by exact name or ID (an ID-shaped value is trusted without a request).

        :param project_id: project ID.
        :param experiment: its name or ID.
        """
        if not isinstance(experiment, str) or not experiment.strip():
            raise CmlConfigError(f"experiment must be an experiment name or ID, not {experiment!r}.")
        if looks_like_id(experiment):
            return {"id": experiment, "project_id": project_id}
        scope = f" in project {project_id!r}"
        try:
            filtered = self.list_experiments(project_id, {"name": experiment})
        except CmlApiError as exc:
            if exc.http_status != 400:  # a server refusing the filter key: read them all
                raise
            filtered = []
        found = listing.at_most_one("experiment", experiment, filtered, scope)
        if found is not None:
            return found
        return listing.pick_one("experiment", experiment, self.list_experiments(project_id), scope)

    def get_run(self, ref: ExperimentRunRef) -> dict[str, Any]:
        """One run (GetExperimentRun): its status and one value per metric, the latest (sheet §5).

        :param ref: project, experiment and run IDs.
        """
        return self.hook.transport.request(
            "GET", experiment_run_path(tuple(ref)), not_found=f"experiment run {ref.run_id!r}"
        )

    def list_runs(
        self,
        project_id: str,
        experiment_id: str,
        search_filter: Mapping[str, Any] | None = None,
        sort: str | None = None,
    ) -> list[dict[str, Any]]:
        """An experiment's runs (every page; the listing field is ``experiment_runs``).

        :param project_id: project ID.
        :param experiment_id: experiment ID.
        :param search_filter: keys the spec lists: ``name``, ``status``, ``creator.*`` (metric, tag
            and param keys are declared, their spelling unknown).
        :param sort: e.g. ``"-start_time"``.
        """
        found = self.read_all(
            experiment_runs_path(project_id, experiment_id),
            "experiment_runs",
            search_filter=search_filter,
            sort=sort,
            not_found=f"experiment {experiment_id!r}",
        )
        return list(found)

    def find_run(self, project_id: str, experiment_id: str, tags: Mapping[str, str]) -> dict[str, Any] | None:
        """The run tagged ``tags`` (every page, matched here), ``None`` when there is none yet.

        Several runs with those tags: the latest ``start_time`` wins (a retried training task logs
        a new run under the same Airflow run ID); two with the same latest start time are an error.

        :param project_id: project ID.
        :param experiment_id: experiment ID.
        :param tags: e.g. ``{"airflow_run_id": "manual__2024-06-01"}`` (exact values).
        """
        found = self.hook.run_steps(tagged_run(project_id, experiment_id, check_tags(tags), None))
        return None if found is None else dict(found)

    def wait_for_run(
        self,
        ref: ExperimentRunRef,
        *,
        run_tag: Mapping[str, str] | None = None,
        job_run: Mapping[str, Any] | None = None,
        job_run_grace: float = JOB_RUN_GRACE,
        timeout: float | None = None,
        poll_interval: float = 30,
        unknown_grace: float | None = DEFAULT_UNKNOWN_GRACE,
    ) -> Mapping[str, Any]:
        """Wait until the run is ``FINISHED``; return it, raise when it failed, was killed or is abandoned.

        :param ref: project, experiment and run IDs (the run ID ``""`` when ``run_tag`` names it).
        :param run_tag: the tags that name the run: it is waited for until it appears.
        :param job_run: the job run that logs it (``project_id``, ``job_id``, ``run_id``): once that
            has ended and ``job_run_grace`` has passed, a run still in progress ends the wait with
            :class:`~airflow_provider_cml.exceptions.CmlExperimentRunError`.
        :param job_run_grace: seconds the run may stay in progress after its job run ended.
        :param timeout: seconds to wait at most; ``None``: until it ends.
        :param poll_interval: seconds between status checks.
        :param unknown_grace: seconds it may stay in an unclear status.
        :raises CmlExperimentRunError: it failed, was killed, or its job run ended first.
        :raises CmlWorkloadTimeout: the timeout passed first (or no tagged run appeared).
        """
        from airflow_provider_cml.waiting.plan import Wait

        validate_positive("timeout", timeout)
        validate_positive("poll_interval", poll_interval, allow_none=False)
        wait = Wait(
            EXPERIMENT_RUN,
            ref,
            poll_interval,
            unknown_grace,
            waited=timeout,
            find=None if run_tag is None else {"tags": check_tags(run_tag)},
            bound=None if job_run is None else bound_of(job_run, job_run_grace),
        )
        return self.hook.wait(wait, timeout).result()

    def deployed_baseline(self, project_id: str, model: str, metric: str) -> dict[str, Any]:
        """The metric of the model version currently deployed for ``model`` (the sheet's chain, §7).

        Returns ``value`` (``None`` when there is no baseline, ``missing`` then says why), the IDs
        on the way (``model_id``, ``build_id``, ``deployment_id``, ``model_version_id``,
        ``project_id``, ``experiment_id``, ``run_id``; ``None`` where the chain stopped).

        :param project_id: the model's project ID.
        :param model: the model's name or ID.
        :param metric: the metric key.
        """
        found: dict[str, Any] = dict.fromkeys(
            ("value", "model_id", "build_id", "deployment_id", "model_version_id", "experiment_id", "run_id")
        )
        found.update(project_id=None, missing=None)
        answer = self.hook.models.find_model(project_id, model)
        if answer is None and looks_like_id(model):
            answer = self.hook.models.get_model(project_id, model)
        if answer is None:
            return {**found, "missing": f"no model named {model!r} exists in project {project_id!r}"}
        found["model_id"] = model_id = str(answer["id"])
        deployment = self._deployed(project_id, model_id)
        if deployment is None:
            return {**found, "missing": f"no deployment of model {model!r} is deployed"}
        found.update(build_id=deployment["build_id"], deployment_id=deployment.get("id"))
        build = self.hook.models.get_build(BuildRef(project_id, model_id, str(deployment["build_id"])))
        version_id = build.get("registered_model_version_id")
        if not version_id:
            why = (
                f"the deployed build {build.get('id')} was built from a file, not a registered model version"
            )
            return {**found, "missing": why}
        found["model_version_id"] = version_id
        registered_id = answer.get("registered_model_id")
        if not registered_id:  # a listing may leave it out: GetModel has it
            registered_id = self.hook.models.get_model(project_id, model_id).get("registered_model_id")
        if not registered_id:
            why = f"model {model!r} names no registered model, so its version {version_id} cannot be read"
            return {**found, "missing": why}
        version = self.hook.models.get_registered_model_version(str(registered_id), str(version_id))
        meta = version.get("model_version_metadata") or {}
        mlflow = meta.get("mlflow_metadata") or {}
        ids = (meta.get("project_id") or project_id, mlflow.get("experiment_id"), mlflow.get("run_id"))
        if not ids[1] or not ids[2]:
            return {**found, "missing": f"registered model version {version_id} names no experiment run"}
        found.update(project_id=ids[0], experiment_id=ids[1], run_id=ids[2])
        metrics = metrics_of(self.get_run(ExperimentRunRef(*map(str, ids))))
        value = number(metrics.get(metric))
        if value is None:
            keys = ", ".join(sorted(metrics)) or "none"
            why = f"the deployed version's run {ids[2]} has no usable {metric!r} metric (its metrics: {keys})"
            return {**found, "missing": why}
        return {**found, "value": value}

    def _deployed(self, project_id: str, model_id: str) -> dict[str, Any] | None:
        """The deployment with status ``deployed`` of the model's newest build that has one."""
        for build in self.hook.models.list_builds(project_id, model_id, BUILDS_SEARCHED):
            for deployment in self.hook.models.list_deployments(
                BuildRef(project_id, model_id, str(build["id"]))
            ):
                if str(deployment.get("status", "")).lower() == "deployed":
                    return {**deployment, "build_id": str(build["id"])}
        return None


def bound_of(job_run: Mapping[str, Any], grace: float = JOB_RUN_GRACE) -> dict[str, Any]:
    """A wait's ``bound`` for the job run that logs an experiment run (checked; plain JSON).

    :param job_run: ``project_id``, ``job_id``, ``run_id`` (CmlRunJobOperator's XComs).
    :param grace: seconds the experiment run may stay in progress after the job run ended.
    """
    validate_positive("job_run_grace", grace, allow_none=False)
    return {**job_run_ref(job_run)._asdict(), "grace": float(grace)}
