"""Experiment runs (MLflow runs tracked by the workbench) as workloads, and their API paths.

The statuses are the fact sheet's ("Cloudera AI Workbench API v2: experiments, runs, metrics",
§4): ``EXPERIMENT_RUN_FINISHED`` succeeds, ``..._FAILED`` and ``..._KILLED`` fail,
``..._RUNNING`` and ``..._SCHEDULED`` are progress; the enum's zero (an answer without a status)
is ``EXPERIMENT_RUN_RUNNING``. MLflow's bare words (``FINISHED``) read the same. A run cannot be
stopped through the API (there is no such call): a wait on it never owns it.

A process killed outright can leave its run ``RUNNING`` forever (sheet §4), so a wait on a run
needs a timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from airflow_provider_cml.exceptions import CmlExperimentRunError
from airflow_provider_cml.validation import path_segment
from airflow_provider_cml.waiting.kinds import WorkloadKind
from airflow_provider_cml.workloads.job_runs import project_path


class ExperimentRunRef(NamedTuple):
    """The IDs that name one experiment run (a run has no project of its own: the path gives it)."""

    project_id: str
    experiment_id: str
    run_id: str


def experiments_path(project_id: str) -> str:
    """``/projects/{project_id}/experiments`` (ListExperiments, CreateExperiment).

    :param project_id: project ID.
    """
    return project_path(project_id) + "/experiments"


def experiment_path(project_id: str, experiment_id: str) -> str:
    """One experiment's path (GetExperiment).

    :param project_id: project ID.
    :param experiment_id: experiment ID.
    """
    return f"{experiments_path(project_id)}/{path_segment('experiment_id', experiment_id)}"


def experiment_runs_path(project_id: str, experiment_id: str) -> str:
    """An experiment's runs (ListExperimentRuns, CreateExperimentRun).

    :param project_id: project ID.
    :param experiment_id: experiment ID.
    """
    return experiment_path(project_id, experiment_id) + "/runs"


@lru_cache(maxsize=4096)
def experiment_run_path(ref: tuple[str, str, str]) -> str:
    """One run's path (GetExperimentRun; cached: a wait reads it every poll).

    :param ref: project, experiment and run IDs.
    """
    project_id, experiment_id, run_id = ref
    return f"{experiment_runs_path(project_id, experiment_id)}/{path_segment('run_id', run_id)}"


def summary(answer: Mapping[str, Any]) -> str:
    """``experiment run <id> of experiment <id>: <STATUS>``: ids and status only (never params).

    :param answer: the run as the API returned it.
    """
    return (
        f"experiment run {answer.get('id')} of experiment {answer.get('experiment_id')}: "
        f"{EXPERIMENT_RUN.status_of(answer)}"
    )


#: An experiment run: from ``EXPERIMENT_RUN_RUNNING`` (or ``..._SCHEDULED``) to ``..._FINISHED``.
EXPERIMENT_RUN = WorkloadKind(
    home="airflow_provider_cml.workloads.experiments:EXPERIMENT_RUN",
    name="experiment run",
    ref_type=ExperimentRunRef,
    read_path=experiment_run_path,
    succeeded=frozenset({"EXPERIMENT_RUN_FINISHED"}),
    failed=frozenset({"EXPERIMENT_RUN_FAILED", "EXPERIMENT_RUN_KILLED"}),
    active=frozenset({"EXPERIMENT_RUN_RUNNING", "EXPERIMENT_RUN_SCHEDULED"}),
    prefix="EXPERIMENT_RUN_",
    # The enum's zero value (sheet §4: "default EXPERIMENT_RUN_RUNNING"), which JSON may leave out.
    missing_status="EXPERIMENT_RUN_RUNNING",
    hints={
        "EXPERIMENT_RUN_FAILED": "the run's code raised (MLflow marks the run FAILED); read the log "
        "of the job or session that ran it",
        "EXPERIMENT_RUN_KILLED": "the run was killed by a user",
    },
    # Ids, status and times only: a run's params and tags are the user's and may hold secrets.
    event_fields=("id", "experiment_id", "status", "start_time", "end_time"),
    describe=summary,
    error=CmlExperimentRunError,
)
