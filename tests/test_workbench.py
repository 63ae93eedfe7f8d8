"""The local workbench's own rules, checked over real HTTP with plain requests (not the hook)."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from airflow_provider_cml.testing import Faults
from tests.conftest import API_KEY


def _get(wb, path, key=API_KEY, **params):
    return requests.get(
        f"{wb.url}/api/v2{path}", headers={"Authorization": f"Bearer {key}"}, params=params, timeout=5
    )


def _post(wb, path, body=None, key=API_KEY):
    return requests.post(
        f"{wb.url}/api/v2{path}", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=5
    )


def _ids(wb, project, job):
    j = wb.workbench.job_by_name(project, job)
    return j.project.id, j.id


def _wait_done(wb, pid, jid, rid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _get(wb, f"/projects/{pid}/jobs/{jid}/runs/{rid}").json()["status"]
        if status not in ("ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING", "ENGINE_STOPPING"):
            return status
        time.sleep(0.05)
    raise AssertionError("run did not end")


def test_bearer_key_required(wb):
    assert _get(wb, "/projects", key="wrong").status_code == 401
    response = requests.get(f"{wb.url}/api/v2/projects", timeout=5)
    assert response.status_code == 401
    assert response.json()["code"] == 16 and "message" in response.json()


def test_default_page_size_is_ten_and_tokens_walk_all(wb):
    first = _get(wb, "/projects").json()
    assert len(first["projects"]) == 10 and first["next_page_token"]
    names, token = [], ""
    while True:
        page = (
            _get(wb, "/projects", pageSize=7, pageToken=token).json()
            if token
            else _get(wb, "/projects", pageSize=7).json()
        )
        names += [p["name"] for p in page["projects"]]
        token = page["next_page_token"]
        if not token:
            break
    assert len(names) == len(wb.workbench.projects) >= 30


def test_search_filter_is_a_substring_match(wb):
    found = _get(wb, "/projects", search_filter=json.dumps({"name": "Analytics"})).json()["projects"]
    assert sorted(p["name"] for p in found) == ["Analytics", "Analytics Archive"]
    camel = _get(wb, "/projects", searchFilter="Archive").json()["projects"]
    assert [p["name"] for p in camel] == ["Analytics Archive"]


def test_ids_and_integer_fields_look_like_the_real_api(wb):
    pid, jid = _ids(wb, "Analytics", "times-out")
    job = _get(wb, f"/projects/{pid}/jobs/{jid}").json()
    assert len(pid) == 19 and pid.count("-") == 3
    assert job["timeout"] == "1"  # integers arrive as strings


def test_run_lifecycle_already_active_and_environment_as_string(wb):
    pid, jid = _ids(wb, "Analytics", "slow")
    run = _post(wb, f"/projects/{pid}/jobs/{jid}/runs", {"environment": {"X": "1"}}).json()
    assert len(run["id"]) == 16 and run["status"] == "ENGINE_SCHEDULING"
    assert isinstance(run["environment"], str)
    second = _post(wb, f"/projects/{pid}/jobs/{jid}/runs", {})
    assert (
        second.status_code == 400
        and "already active" in second.json()["message"]
        and second.json()["code"] == 9
    )
    assert _wait_done(wb, pid, jid, run["id"]) == "ENGINE_SUCCEEDED"
    runs = _get(wb, f"/projects/{pid}/jobs/{jid}/runs", sort="-created_at").json()["job_runs"]
    assert runs[0]["id"] == run["id"] and runs[0]["finished_at"].endswith("Z")


def test_non_string_environment_is_rejected(wb):
    pid, jid = _ids(wb, "Analytics", "report-env")
    response = _post(wb, f"/projects/{pid}/jobs/{jid}/runs", {"environment": {"N": 1}})
    assert response.status_code == 400 and "must be a string" in response.json()["message"]


def test_stop_ends_the_process_and_stopping_a_finished_run_is_an_error(wb, tmp_path):
    pid, jid = _ids(wb, "Analytics", "sleeper")
    marker = tmp_path / "stopped"
    run = _post(wb, f"/projects/{pid}/jobs/{jid}/runs", {"environment": {"STOP_MARKER": str(marker)}}).json()
    deadline = time.monotonic() + 5
    while _get(wb, f"/projects/{pid}/jobs/{jid}/runs/{run['id']}").json()["status"] != "ENGINE_RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)  # let the script install its signal handler
    stopped = _post(wb, f"/projects/{pid}/jobs/{jid}/runs/{run['id']}:stop").json()
    assert stopped["status"] == "ENGINE_STOPPING"
    assert _wait_done(wb, pid, jid, run["id"]) == "ENGINE_STOPPED"
    assert marker.read_text() == "stopped"
    again = _post(wb, f"/projects/{pid}/jobs/{jid}/runs/{run['id']}:stop")
    assert again.status_code == 400


def test_job_timeout_gives_timedout(wb):
    pid, jid = _ids(wb, "Analytics", "times-out")
    run = _post(wb, f"/projects/{pid}/jobs/{jid}/runs").json()
    assert _wait_done(wb, pid, jid, run["id"]) == "ENGINE_TIMEDOUT"


def test_succeeded_parent_starts_its_dependent_job(wb):
    pid, jid = _ids(wb, "Analytics", "parent")
    child = wb.workbench.job_by_name("Analytics", "child")
    before = len(wb.workbench.runs_of(child))
    run = _post(wb, f"/projects/{pid}/jobs/{jid}/runs").json()
    assert _wait_done(wb, pid, jid, run["id"]) == "ENGINE_SUCCEEDED"
    deadline = time.monotonic() + 5
    while len(wb.workbench.runs_of(child)) == before:
        assert time.monotonic() < deadline, "child job did not start"
        time.sleep(0.02)
    _wait_done(wb, pid, child.id, wb.workbench.runs_of(child)[-1].id)


def test_v1_start_needs_basic_auth_and_json(wb):
    job = wb.workbench.job_by_name("Analytics", "report-env")
    url = f"{wb.url}/api/v1/projects/alice/analytics/jobs/{job.v1_id}/start"
    basic = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert (
        requests.post(url, headers={"Authorization": f"Bearer {API_KEY}"}, json={}, timeout=5).status_code
        == 401
    )
    assert requests.post(url, headers={"Authorization": basic}, data="", timeout=5).status_code == 400
    answer = requests.post(
        url, headers={"Authorization": basic, "Content-Type": "application/json"}, timeout=5
    )
    assert answer.status_code == 200 and len(answer.json()["engine_id"]) == 16
    _wait_done(wb, job.project.id, job.id, answer.json()["engine_id"])


def test_readonly_key_may_read_but_not_start(wb):
    from tests.conftest import READONLY_KEY

    pid, jid = _ids(wb, "Analytics", "report-env")
    assert _get(wb, "/projects", key=READONLY_KEY).status_code == 200
    assert _post(wb, f"/projects/{pid}/jobs/{jid}/runs", key=READONLY_KEY).status_code == 403


def test_journal_and_faults(wb):
    wb.faults = Faults(error_rate=1.0, seed=1)
    assert _get(wb, "/projects").status_code in (500, 502, 503)
    wb.faults = Faults(rate_limit_rate=1.0, retry_after=3)
    limited = _get(wb, "/projects")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    wb.faults = Faults(reset_rate=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        _get(wb, "/projects")
    wb.faults = None
    entries = wb.requests("GET", r"/api/v2/projects")
    assert [e.fault for e in entries] == ["error", "rate_limit", "reset"]


def test_lost_response_still_creates_the_run(wb):
    pid, jid = _ids(wb, "Analytics", "report-env")
    before = len(wb.workbench.runs_of(wb.workbench.jobs[jid]))
    wb.faults = Faults(lost_response_rate=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        _post(wb, f"/projects/{pid}/jobs/{jid}/runs")
    wb.faults = None
    runs = wb.workbench.runs_of(wb.workbench.jobs[jid])
    assert len(runs) == before + 1
    _wait_done(wb, pid, jid, runs[-1].id)
