"""The local workbench's own rules, checked over real HTTP with plain requests (not the hook)."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from airflow_provider_cml.testing import Faults
from tests.conftest import API_KEY, LEGACY_KEY, wait_until


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


def _status(wb, pid, jid, rid):
    return _get(wb, f"/projects/{pid}/jobs/{jid}/runs/{rid}").json().get("status", "ENGINE_SCHEDULING")


def _wait_done(wb, pid, jid, rid):
    going = ("ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING", "ENGINE_STOPPING")
    return wait_until(
        f"run {rid} to end", lambda: (status := _status(wb, pid, jid, rid)) not in going and status
    )


def test_bearer_key_required(wb):
    assert _get(wb, "/projects", key="wrong").status_code == 401
    response = requests.get(f"{wb.url}/api/v2/projects", timeout=5)
    assert response.status_code == 401
    assert response.json()["code"] == 16 and set(response.json()) == {"error", "code", "message", "details"}


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
    assert len(names) == len(wb.workbench.projects) - 1 >= 30  # less the public project of another owner


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


def test_a_workbench_that_omits_zero_values_leaves_status_out_and_the_hook_copes(wb, monkeypatch):
    from airflow_provider_cml.hooks.cml import CmlHook

    monkeypatch.setattr(wb.workbench, "omit_zero_status", True)
    pid, jid = _ids(wb, "Analytics", "slow")
    hook = CmlHook()
    run = hook.start_job_run(pid, jid)
    assert "status" not in run
    assert hook.wait_for_job_run(pid, jid, run["id"], poll_interval=0.1)["status"] == "ENGINE_SUCCEEDED"


def test_a_partial_update_applies_the_fields_it_has(wb):
    """As Cloudera's own MCP server sends it: {"schedule": ...} alone."""
    pid, jid = _ids(wb, "Analytics", "train")
    before = _get(wb, f"/projects/{pid}/jobs/{jid}").json()
    url = f"{wb.url}/api/v2/projects/{pid}/jobs/{jid}"
    answer = requests.patch(
        url, json={"schedule": "0 3 * * *"}, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5
    )
    try:
        assert answer.status_code == 200, answer.text
        after = _get(wb, f"/projects/{pid}/jobs/{jid}").json()
        assert after["schedule"] == "0 3 * * *" and after["type"] == "cron"
        for key in ("name", "script", "environment", "cpu", "memory", "runtime_identifier", "timeout"):
            assert after[key] == before[key], key
    finally:
        requests.patch(url, json={"schedule": ""}, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    assert _get(wb, f"/projects/{pid}/jobs/{jid}").json()["schedule"] == ""


def test_run_lifecycle_already_active_and_environment_as_string(wb):
    pid, jid = _ids(wb, "Analytics", "slow")
    run = _post(wb, f"/projects/{pid}/jobs/{jid}/runs", {"environment": {"X": "1"}}).json()
    # Always there, the enum's zero value included, like the other zero values (public clients read it).
    assert len(run["id"]) == 16 and run["status"] == "ENGINE_SCHEDULING" and run["nvidia_gpu"] == 0
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
    wait_until("the run to be running", lambda: _status(wb, pid, jid, run["id"]) == "ENGINE_RUNNING")
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
    wait_until("the child job to start", lambda: len(wb.workbench.runs_of(child)) > before)
    _wait_done(wb, pid, child.id, wb.workbench.runs_of(child)[-1].id)


def test_v1_start_needs_basic_auth_and_json(wb):
    job = wb.workbench.job_by_name("Analytics", "report-env")
    url = f"{wb.url}/api/v1/projects/alice/analytics/jobs/{job.v1_id}/start"
    basic = "Basic " + base64.b64encode(f"{LEGACY_KEY}:".encode()).decode()
    v2_key_as_basic = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    for wrong in (f"Bearer {API_KEY}", v2_key_as_basic):  # v1 takes only the legacy key
        assert requests.post(url, headers={"Authorization": wrong}, json={}, timeout=5).status_code == 401
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


def test_jobs_have_the_spec_shape(wb):
    pid, jid = _ids(wb, "Analytics", "child")
    job = _get(wb, f"/projects/{pid}/jobs/{jid}").json()
    assert "project_id" not in job and job["project"]["public_identifier"] == pid
    assert job["type"] == "dependent" and job["parent_id"] == _ids(wb, "Analytics", "parent")[1]
    assert job["timeout"] == "0" and job["retry_enabled"] is False


def test_public_projects_of_others_need_include_public_projects(wb):
    names = {p["name"] for p in _get(wb, "/projects", page_size=100).json()["projects"]}
    assert "Shared Models" not in names
    with_public = _get(wb, "/projects", page_size=100, include_public_projects="true").json()["projects"]
    shared = next(p for p in with_public if p["name"] == "Shared Models")
    assert shared["visibility"] == "public" and shared["owner"]["username"] == "erin"


def test_unknown_ids_can_answer_403(wb):
    pid, jid = _ids(wb, "Analytics", "report-env")
    assert _get(wb, f"/projects/{pid}/jobs/{jid}/runs/nosuchrun0000000").status_code == 404
    wb.workbench.unknown_id_status = 403
    try:
        answer = _get(wb, f"/projects/{pid}/jobs/{jid}/runs/nosuchrun0000000")
    finally:
        wb.workbench.unknown_id_status = 404
    assert answer.status_code == 403 and answer.json()["code"] == 7


def test_arguments_reach_the_script_only_as_job_arguments(wb):
    from tests.conftest import seen_by

    pid, jid = _ids(wb, "Analytics", "report-env")
    body = {"arguments": "--full --date x"}
    run = _post(wb, f"/projects/{pid}/jobs/{jid}/runs", body).json()
    assert _wait_done(wb, pid, jid, run["id"]) == "ENGINE_SUCCEEDED"
    seen = seen_by(wb, run["id"])
    assert seen["JOB_ARGUMENTS"] == "--full --date x" and seen["argv"] == []


@pytest.mark.parametrize(
    "body", [{"environment": "A=1"}, {"environment": ["A"]}, {"arguments": ["--x"]}, {"arguments": 3}]
)
def test_bad_request_bodies_get_a_400_error_body(wb, body):
    pid, jid = _ids(wb, "Analytics", "report-env")
    answer = _post(wb, f"/projects/{pid}/jobs/{jid}/runs", body)
    assert answer.status_code == 400 and answer.json()["code"] == 3
    assert not wb.workbench.active_runs()


def test_validate_key_names_the_user(wb):
    answer = _post(wb, "/auth/validate_key", {"audience": "API"}).json()
    assert answer == {"valid": True, "username": "alice", "message": ""}
    assert _post(wb, "/auth/validate_key", {"audience": "API"}, key="wrong").status_code == 401


def test_unknown_phase_lasts_until_stopped(wb):
    pid, jid = _ids(wb, "Analytics", "lost")
    run = _post(wb, f"/projects/{pid}/jobs/{jid}/runs").json()
    wait_until("the run to be ENGINE_UNKNOWN", lambda: _status(wb, pid, jid, run["id"]) == "ENGINE_UNKNOWN")
    _post(wb, f"/projects/{pid}/jobs/{jid}/runs/{run['id']}:stop")
    assert _wait_done(wb, pid, jid, run["id"]) == "ENGINE_STOPPED"


def test_job_retry_starts_new_runs_of_the_same_job(wb):
    pid, jid = _ids(wb, "Analytics", "flaky")
    job = wb.workbench.jobs[jid]
    before = len(wb.workbench.runs_of(job))
    run = _post(wb, f"/projects/{pid}/jobs/{jid}/runs", {"environment": {"X": "1"}}).json()
    assert _wait_done(wb, pid, jid, run["id"]) == "ENGINE_FAILED"
    wait_until("the platform's retry run", lambda: len(wb.workbench.runs_of(job)) > before + 1)
    retry = wb.workbench.runs_of(job)[-1]
    assert retry.attempt == 1 and retry.environment == {"X": "1"}
    assert _wait_done(wb, pid, jid, retry.id) == "ENGINE_SUCCEEDED"


def test_usage_and_executions_say_why_runs_failed(wb):
    pid, jid = _ids(wb, "Analytics", "oom")
    run = _post(wb, f"/projects/{pid}/jobs/{jid}/runs").json()
    assert _wait_done(wb, pid, jid, run["id"]) == "ENGINE_FAILED"
    usage = _get(wb, "/usage", search_filter=json.dumps({"name": "oom"})).json()
    entry = usage["usage_response"][0]
    assert entry["oom_killed"] is True and entry["k8s_info"]["k8s_exit_code"] == 137
    assert usage["total_count"].isdigit()
    executions = _get(wb, "/workloads/executions").json()
    crn = next(w["workload_crn"] for w in executions["workloads"] if w["workload_name"] == "oom")
    failed = [e for e in executions["executions"] if e["workload_crn"] == crn]
    assert "OOMKilled" in failed[0]["failure_reason"]


def test_v1_reads_a_project_and_its_jobs_with_lower_case_statuses(wb):
    basic = {"Authorization": "Basic " + base64.b64encode(f"{LEGACY_KEY}:".encode()).decode()}
    project = requests.get(f"{wb.url}/api/v1/projects/alice/analytics", headers=basic, timeout=5)
    assert project.status_code == 200 and project.json()["name"] == "Analytics"
    jobs = requests.get(f"{wb.url}/api/v1/projects/alice/analytics/jobs", headers=basic, timeout=5).json()
    assert isinstance(jobs, list)
    report = next(j for j in jobs if j["name"] == "report-env")
    assert report["public_identifier"] == _ids(wb, "Analytics", "report-env")[1]
    assert report["html_url"].endswith(f"/alice/analytics/jobs/{report['id']}")
    finished = [j for j in jobs if j["latest"]]
    assert finished and all(j["latest"]["status"].islower() for j in finished)
    missing = requests.get(f"{wb.url}/api/v1/projects/alice/nope", headers=basic, timeout=5)
    assert missing.status_code == 404 and set(missing.json()) == {"message"}
