"""Experiments and their runs, as ``CmlHook.experiments``: read-only, for waiting on and gating by runs.

Experiment and run IDs have the shape of project IDs (``xxxx-xxxx-xxxx-xxxx``, fact sheet §0), so
an ID-shaped value is trusted without a request, as projects are. A name is looked up with the
listing's ``search_filter``, then matched exactly: the spec lists no filter keys for
ListExperiments (sheet §2), so when the filtered answer holds no exact match (a server that
ignores or rejects the key), every experiment of the project is read and compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_cml.client import listing
from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError
from airflow_provider_cml.hooks.part import HookPart
from airflow_provider_cml.validation import looks_like_id
from airflow_provider_cml.workloads.experiments import (
    ExperimentRunRef,
    experiment_path,
    experiment_run_path,
    experiment_runs_path,
    experiments_path,
)


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
        found = self.read_all(
            experiments_path(project_id),
            "experiments",
            search_filter=search_filter,
            not_found=f"project {project_id!r}",
        )
        return list(found)

    def get_experiment(self, project_id: str, experiment_id: str) -> dict[str, Any]:
        """One experiment (GetExperiment).

        :param project_id: project ID.
        :param experiment_id: experiment ID.
        """
        return self.hook.transport.request(
            "GET", experiment_path(project_id, experiment_id), not_found=f"experiment {experiment_id!r}"
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
