"""The local workbench's experiments and runs, over real HTTP (every answer contract-checked at teardown)."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from airflow_provider_cml.testing.experiments import run_status
from airflow_provider_cml.testing.workbench import ApiError
from tests.conftest import API_KEY, READONLY_KEY


def _api(wb, key=API_KEY):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    return session, pid, f"{wb.url}/api/v2/projects/{pid}/experiments"


def _name(prefix="exp"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"  # experiment names are unique across the workspace


def test_create_list_by_name_and_get_an_experiment(wb):
    session, pid, api = _api(wb)
    name = _name()
    made = session.post(api, json={"project_id": pid, "name": name}).json()
    assert made["name"] == name and made["project_id"] == pid
    listed = session.get(api, params={"search_filter": json.dumps({"name": name})}).json()
    assert [e["id"] for e in listed["experiments"]] == [made["id"]] and listed["next_page_token"] == ""
    assert session.get(f"{api}/{made['id']}").json() == made
    again = session.post(api, json={"project_id": pid, "name": name})
    assert again.status_code == 409  # RAGMon then looks it up by name (sheet §0)
    assert session.get(f"{api}/nope-nope-nope-nope").status_code == 404


def test_a_run_over_the_api_from_create_to_finished_with_metrics(wb):
    session, pid, api = _api(wb)
    experiment = session.post(api, json={"project_id": pid, "name": _name()}).json()
    runs = f"{api}/{experiment['id']}/runs"
    tags = [{"key": "airflow_run", "value": "manual__1"}]
    run = session.post(runs, json={"project_id": pid, "experiment_id": experiment["id"], "tags": tags}).json()
    assert run["status"] == "EXPERIMENT_RUN_RUNNING" and run["data"]["tags"] == tags
    batch = {
        "metrics": [
            {"key": "auc", "value": 0.7, "timestamp": "2026-01-01T00:00:01Z", "step": "1"},
            {"key": "auc", "value": 0.9, "timestamp": "2026-01-01T00:00:02Z", "step": "2"},
            {"key": "auc", "value": 0.8, "timestamp": "2026-01-01T00:00:02Z", "step": "3"},
        ],
        "params": [{"key": "depth", "value": "4"}],
    }
    assert session.post(f"{runs}/{run['id']}:logbatch", json=batch).json() == {}
    # RAGMon writes the status as MLflow's 1-based number (sheet §4): 3 is FINISHED.
    patched = session.patch(f"{runs}/{run['id']}", json={"id": run["id"], "status": 3}).json()
    assert patched["status"] == "EXPERIMENT_RUN_FINISHED" and patched["end_time"]
    got = session.get(f"{runs}/{run['id']}").json()
    # One value per key: the latest timestamp, ties to the maximum (sheet §5).
    assert [(m["key"], m["value"], m["step"]) for m in got["data"]["metrics"]] == [("auc", 0.9, "2")]
    assert got["data"]["params"] == [{"key": "depth", "value": "4"}]


def test_runs_are_listed_and_filtered_by_status(wb):
    session, pid, api = _api(wb)
    name = _name()
    done = wb.workbench.experiments.add_run(pid, name, status="FINISHED", metrics={"auc": 0.5})
    going = wb.workbench.experiments.add_run(pid, name)
    runs = f"{api}/{done.experiment.id}/runs"
    listed = session.get(runs, params={"page_size": 1}).json()
    assert len(listed["experiment_runs"]) == 1 and listed["next_page_token"]
    finished = session.get(runs, params={"search_filter": json.dumps({"status": "EXPERIMENT_RUN_FINISHED"})})
    assert [r["id"] for r in finished.json()["experiment_runs"]] == [done.id]
    assert going.id != done.id


def test_the_testing_helper_sets_status_and_metrics_seen_over_http(wb):
    session, pid, api = _api(wb)
    run = wb.workbench.experiments.add_run(pid, _name(), tags={"k": "v"})
    url = f"{api}/{run.experiment.id}/runs/{run.id}"
    assert session.get(url).json()["status"] == "EXPERIMENT_RUN_RUNNING"
    wb.workbench.experiments.set_run(run.id, status="experiment run killed", metrics={"loss": 1.5})
    got = session.get(url).json()
    assert got["status"] == "EXPERIMENT_RUN_KILLED" and got["data"]["metrics"][0]["value"] == 1.5


def test_unknown_runs_and_bad_statuses_are_refused_and_readonly_keys_cannot_write(wb):
    session, pid, api = _api(wb)
    run = wb.workbench.experiments.add_run(pid, _name())
    runs = f"{api}/{run.experiment.id}/runs"
    assert session.get(f"{runs}/nope-nope-nope-nope").status_code == 404
    assert session.patch(f"{runs}/{run.id}", json={"status": "DONE"}).status_code == 400
    readonly, _, _ = _api(wb, READONLY_KEY)
    assert readonly.patch(f"{runs}/{run.id}", json={"status": "FINISHED"}).status_code == 403
    with pytest.raises(ApiError):
        run_status(6)


def test_the_contract_knows_the_experiments_shapes():
    from tests.contract import problems_with, route_of

    assert route_of("GET", "/api/v2/projects/p/experiments/e/runs/r") == (None, "ExperimentRun")
    assert problems_with("ExperimentRun", {"status": "FINISHED"})  # the spec's names carry the prefix
    assert problems_with("ListExperimentRunsResponse", {"runs": []})  # MLflow's field, not CML's
    assert problems_with("Metric", {"key": "auc", "value": 1.0, "step": 3})  # int64 travels as a string
