"""The checks of what a DAG hands over before a request: API paths of resources and their IDs."""

from __future__ import annotations

import pytest

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.validation import ref_path, resource_path
from airflow_provider_cml.workloads.applications import application_path, applications_path
from airflow_provider_cml.workloads.experiments import experiment_runs_path, experiments_path
from airflow_provider_cml.workloads.job_runs import jobs_path, run_path
from airflow_provider_cml.workloads.models import build_path, builds_path, deployment_path, models_path


def test_a_collection_takes_one_id_fewer_than_a_resource():
    assert resource_path("projects/models", "p") == "/projects/p/models"
    assert resource_path("projects/models", "p", "m") == "/projects/p/models/m"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (models_path("p 1"), "/projects/p%201/models"),
        (models_path("p", "m"), "/projects/p/models/m"),
        (builds_path("p", "m"), "/projects/p/models/m/builds"),
        (build_path(("p", "m", "b")), "/projects/p/models/m/builds/b"),
        (deployment_path(("p", "m", "b", "d")), "/projects/p/models/m/builds/b/deployments/d"),
        (applications_path("p"), "/projects/p/applications"),
        (application_path(("p", "a%1")), "/projects/p/applications/a%251"),
        (experiments_path("p", "e x"), "/projects/p/experiments/e%20x"),
        (experiment_runs_path("p", "e"), "/projects/p/experiments/e/runs"),
        (jobs_path("p"), "/projects/p/jobs"),
        (jobs_path("p", "j%1"), "/projects/p/jobs/j%251"),
        (run_path(("p", "j", "r")), "/projects/p/jobs/j/runs/r"),
    ],
)
def test_each_domain_names_its_paths_with_ids_percent_encoded(path, expected):
    assert path == expected


@pytest.mark.parametrize(
    ("ids", "field"),
    [
        (("..", "m"), "project_id"),
        (("p", "m/2"), "model_id"),
        (("p", "m?x"), "model_id"),
        (("p", None), "model_id"),
    ],
)
def test_an_id_that_would_name_another_resource_is_refused_by_its_field(ids, field):
    with pytest.raises(CmlConfigError, match=f"^{field} .* is not a valid Cloudera AI identifier"):
        resource_path("projects/models", *ids)


@pytest.mark.parametrize("ids", [(), ("p", "m", "b")])
def test_a_wrong_number_of_ids_is_this_packages_mistake(ids):
    with pytest.raises(TypeError, match="'projects/models' takes 1 or 2 IDs"):
        resource_path("projects/models", *ids)


def test_a_ref_path_is_cached():
    read = ref_path("projects/jobs")
    assert read(("p", "j")) == "/projects/p/jobs/j"
    assert read(("p", "j")) == "/projects/p/jobs/j"
    assert read.cache_info().hits == 1  # type: ignore[attr-defined]
