"""The contract itself: the schemas refuse what the spec lacks, and plain third-party clients work.

Every test that uses the shared workbench already validates all its exchanges at teardown
(tests/conftest.py); this file shows the checker catches what it must.
"""

from __future__ import annotations

import json

import requests

from tests.conftest import API_KEY
from tests.contract import check_exchanges, problems_with, schema_document


def test_the_schema_document_is_valid_json_schema():
    assert "Cloudera AI API v2, spec version 26.06.13" in schema_document()["title"]


def test_fields_the_spec_lacks_are_refused():
    assert problems_with("JobRun", {"id": "r", "status": "ENGINE_FAILED", "failure_reason": "x"})
    assert problems_with("Job", {"id": "j", "project_id": "p"})
    assert problems_with("JobRun", {"id": "r", "status": "ENGINE_TIMEOUT"})  # not an EngineStatus
    assert problems_with("Job", {"id": "j", "timeout": 600})  # int64: a string
    assert problems_with("runtimeError", {"code": 5, "message": "x", "extra": 1})
    assert not problems_with("JobRun", {"id": "r"})  # every field is optional


def test_the_checker_reads_journal_entries(wb):
    pid = next(iter(wb.workbench.projects))
    requests.get(f"{wb.url}/api/v2/projects/{pid}", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    entries = wb.requests("GET")
    assert entries and not check_exchanges(entries)
    bad = [type(entries[0])("GET", entries[0].path, 200, 0.0, None, "", json.dumps({"id": pid, "team": "x"}))]
    assert check_exchanges(bad) == [
        f"GET {entries[0].path} -> 200: Project[]: Additional properties are not allowed ('team' was unexpected)"
    ]
    body = json.dumps({"project_id": "p", "job_id": "j", "environment": {"A": 1}})
    request = type(entries[0])(
        "POST", "/api/v2/projects/p/jobs/j/runs", 400, 0.0, None, body, "", "airflow-provider-cml/0.1.0"
    )
    assert any("(request)" in p for p in check_exchanges([request]))


def test_a_third_party_client_of_the_real_api_works_against_the_workbench(wb):
    """What cai-mcp-server-style clients do with plain requests: read jobs through job["project"]."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_KEY}"
    api = f"{wb.url}/api/v2"
    projects = session.get(
        f"{api}/projects", params={"page_size": 100, "include_public_projects": "true"}
    ).json()
    analytics = next(p for p in projects["projects"] if p["name"] == "Analytics")
    jobs = session.get(f"{api}/projects/{analytics['id']}/jobs", params={"page_size": 100}).json()["jobs"]
    job = next(j for j in jobs if j["name"] == "report-env")
    project_id = job["project"]["public_identifier"]  # no project_id on a Job
    assert project_id == analytics["id"] and job["project"]["slug"] == analytics["slug"]
    run = session.post(
        f"{api}/projects/{project_id}/jobs/{job['id']}/runs", json={"environment": {"X": "1"}}
    ).json()
    fetched = session.get(f"{api}/projects/{project_id}/jobs/{job['id']}/runs/{run['id']}").json()
    assert fetched["id"] == run["id"] and json.loads(fetched["environment"])["X"] == "1"
    all_jobs = session.get(f"{api}/jobs", params={"page_size": 200}).json()["jobs"]
    assert {j["project"]["public_identifier"] for j in all_jobs} >= {project_id}
    key = session.post(f"{api}/auth/validate_key", json={"audience": "API"}).json()
    assert key["valid"] and key["username"] == "alice"


def _api(wb):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_KEY}"
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    return session, f"{wb.url}/api/v2/projects/{pid}"


def test_an_application_keeps_bypass_authentication_on_create_and_update(wb):
    """CreateApplicationRequest and Application both carry bypass_authentication (sheet §7)."""
    session, api = _api(wb)
    body = {"name": "open-board", "subdomain": "open-board", "script": "dashboard.py"}
    app = session.post(f"{api}/applications", json={**body, "bypass_authentication": True}).json()
    assert app["bypass_authentication"] is True
    assert session.get(f"{api}/applications/{app['id']}").json()["bypass_authentication"] is True
    patched = session.patch(f"{api}/applications/{app['id']}", json={"bypass_authentication": False}).json()
    assert patched["bypass_authentication"] is False
    assert session.get(f"{api}/applications/{app['id']}").json()["bypass_authentication"] is False
    session.post(f"{api}/applications/{app['id']}:stop")


def test_update_model_keeps_default_resources_and_replication_policy(wb):
    """UpdateSingleModel carries default_resources and default_replication_policy (sheet §2)."""
    session, api = _api(wb)
    model = session.post(f"{api}/models", json={"name": "sized-model", "description": "d"}).json()
    resources = {"cpu_millicores": "2000", "memory_mb": "4096", "nvidia_gpus": "1"}
    patched = session.patch(
        f"{api}/models/{model['id']}",
        json={
            "id": model["id"],
            "default_resources": resources,
            "default_replication_policy": {"num_replicas": "3"},
        },
    ).json()
    read = session.get(f"{api}/models/{model['id']}").json()
    assert patched["default_resources"] == read["default_resources"] == resources
    assert read["default_replication_policy"] == {"num_replicas": "3", "type": "fixed"}


def test_delete_model_marks_it_deleted_and_the_hook_no_longer_finds_it(wb):
    """DeleteModel answers {}; the sheet infers deletion is asynchronous (deletion_status set)."""
    from airflow_provider_cml.hooks.cml import CmlHook

    session, api = _api(wb)
    model = session.post(f"{api}/models", json={"name": "doomed-model", "description": "d"}).json()
    hook = CmlHook()
    project_id = api.rsplit("/", 1)[1]
    assert hook.models.find_model(project_id, "doomed-model")["id"] == model["id"]
    assert hook.models.delete_model(project_id, model["id"]) is True
    assert session.get(f"{api}/models/{model['id']}").json()["deletion_status"]
    assert hook.models.find_model(project_id, "doomed-model") is None
