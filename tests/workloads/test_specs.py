"""``kernel`` beside ``runtime_identifier``: allowed for every spec kind and sent, as Cloudera's AMPs do."""

from __future__ import annotations

import json

from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.testing.workbench import RUNTIME_ID
from airflow_provider_cml.workloads.applications import CmlApplicationSpec
from airflow_provider_cml.workloads.jobs import CmlJobSpec
from airflow_provider_cml.workloads.models import CmlModelSpec
from tests.workloads.test_serving import APPS, BUILDS, _deploy, _run_app

BOTH = {"runtime_identifier": RUNTIME_ID, "kernel": "python3"}


def test_every_spec_kind_takes_both_and_sends_both():
    job = CmlJobSpec.of({"name": "j", "script": "a.py", **BOTH})
    assert {k: job.create_body("p", None)[k] for k in BOTH} == BOTH
    assert {k: job.update_body({"id": "x"}, None)[k] for k in BOTH} == BOTH
    model = CmlModelSpec.of({"name": "m", "file": "p.py", "function": "f", **BOTH})
    assert {k: model.build_body("p", "m1", "c")[k] for k in BOTH} == BOTH
    app = CmlApplicationSpec.of({"name": "a", "subdomain": "a", "script": "a.py", **BOTH})
    assert {k: app.create_body("p")[k] for k in BOTH} == BOTH
    assert app.differences({"name": "a", "subdomain": "a", "script": "a.py"}) == BOTH


def test_a_job_with_both_is_created_then_left_alone(wb):
    hook = CmlHook()
    spec = CmlJobSpec(name="kernel-and-runtime", script="report_env.py", **BOTH)
    job, action = hook.jobs.ensure_job("Analytics", spec)
    assert action == "created" and {k: job[k] for k in BOTH} == BOTH
    assert hook.jobs.ensure_job("Analytics", spec)[1] == "unchanged"
    [create] = wb.requests("POST", r"/api/v2/projects/[^/]+/jobs")
    assert {k: json.loads(create.request_body)[k] for k in BOTH} == BOTH


def test_a_model_build_with_both_is_built_and_deployed(wb):
    _, ids = _deploy("kernel-model", model=BOTH)
    build = wb.workbench.serving.builds[ids["build_id"]]
    assert (build.runtime_identifier, build.kernel, build.status) == (RUNTIME_ID, "python3", "built")
    [sent] = wb.requests("POST", BUILDS)
    assert {k: json.loads(sent.request_body)[k] for k in BOTH} == BOTH


def test_an_application_with_both_runs_and_keeps_both(wb):
    app_id, _ = _run_app(
        {"name": "kernel-board", "subdomain": "kernel-board", "script": "dashboard.py", **BOTH}
    )
    [sent] = wb.requests("POST", APPS)
    assert {k: json.loads(sent.request_body)[k] for k in BOTH} == BOTH
    assert {k: wb.workbench.serving.applications[app_id].to_api()[k] for k in BOTH} == BOTH
