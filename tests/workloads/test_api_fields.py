"""Answers that leave zero values out (proto3 JSON): a spec that matches is not updated again.

Unit tests read fields through ``api_fields``; the rest go through the real workbench with its
``omit_zero_values`` knob on, and count the PATCH and ``:restart`` requests in its journal.
"""

from __future__ import annotations

import json

import pytest
import requests

from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.testing.answer_knobs import without_zeros
from airflow_provider_cml.testing.workbench import RUNTIME_ID
from airflow_provider_cml.workloads import api_fields
from airflow_provider_cml.workloads.applications import CmlApplicationSpec
from airflow_provider_cml.workloads.jobs import CmlJobSpec
from tests.conftest import API_KEY
from tests.workloads.test_serving import APPS, DEPLOYMENTS, _context, _deploy, _run_app

#: One spec field per category a proto3 answer leaves out.
ZERO_APP_FIELDS = {
    "nvidia_gpu": 0,  # numeric zero
    "bypass_authentication": False,  # false bool
    "description": "",  # empty string
    "environment": {},  # empty environment
}


# -- reading a field: its type's zero when left out ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "key", "zero"),
    [
        ("Application", "nvidia_gpu", 0),
        ("Application", "cpu", 0.0),
        ("Application", "bypass_authentication", False),
        ("Application", "description", ""),
        ("Application", "environment", {}),
        ("Job", "timeout", 0),  # int64
        ("Job", "kill_on_timeout", False),
        ("Job", "arguments", ""),
        ("Job", "environment", {}),
        ("Model", "default_resources.nvidia_gpus", 0),  # nested, the message present
    ],
)
def test_a_field_left_out_reads_as_its_types_zero(kind, key, zero):
    answer = {"id": "x", "default_resources": {"cpu_millicores": "1000"}}
    value = api_fields.read(kind, answer, key)
    assert value == zero and type(value) is type(zero)


def test_a_nested_value_reads_as_zero_when_its_whole_message_is_left_out():
    assert api_fields.read("Model", {"id": "m"}, "default_resources.memory_mb") == 0
    assert (
        api_fields.read("Model", {"default_resources": {"memory_mb": "2048"}}, "default_resources.memory_mb")
        == 2048
    )


def test_present_values_are_read_in_the_specs_terms():
    answer = {"timeout": "600", "cpu": 2, "environment": '{"A": 1}', "kill_on_timeout": True}
    assert api_fields.read("Job", answer, "timeout") == 600
    assert api_fields.read("Job", answer, "cpu") == 2.0
    assert api_fields.read("Job", answer, "environment") == {"A": "1"}
    assert api_fields.read("Job", answer, "kill_on_timeout") is True
    assert api_fields.read("Job", {"timeout": "soon"}, "timeout") == "soon"  # unparsable: unequal to any


def test_an_application_answer_without_its_zero_fields_matches_the_spec():
    spec = CmlApplicationSpec.of(
        {"name": "a", "subdomain": "a", "script": "a.py", "cpu": 1, **ZERO_APP_FIELDS}
    )
    assert spec.differences({"name": "a", "subdomain": "a", "script": "a.py", "cpu": 1.0}) == {}
    changed = spec.differences({"name": "a", "subdomain": "a", "script": "a.py", "cpu": 1.0, "nvidia_gpu": 1})
    assert changed == {"nvidia_gpu": 0}


#: A job spec's fields set to their zero values, every type of them.
JOB_ZEROS = {
    "nvidia_gpu": 0,
    "timeout": 0,
    "kill_on_timeout": False,
    "arguments": "",
    "environment": {},
    "retry_enabled": False,
    "max_retry": 0,
}


def test_a_job_answer_without_its_zero_fields_matches_the_spec():
    spec = CmlJobSpec(name="j", script="a.py", **JOB_ZEROS)
    assert spec.differences({"name": "j", "script": "a.py"}, None) == {}


def test_the_workbench_knob_leaves_out_every_zero_nested_ones_too():
    answer = {
        "a": 0,
        "b": False,
        "c": "",
        "d": "0",
        "e": {},
        "f": {"g": 0, "h": "1"},
        "environment": "{}",
        "i": [0],
        "j": [],
    }
    assert without_zeros(answer) == {"f": {"h": "1"}, "i": [0]}
    assert without_zeros({"models": [], "next_page_token": ""}) == {}


# -- through the workbench -------------------------------------------------------------------------


@pytest.fixture
def omitting(wb, monkeypatch):
    """The shared workbench, answering about jobs, models and applications without zero values."""
    monkeypatch.setattr(wb.workbench, "omit_zero_values", True)
    return wb


@pytest.mark.parametrize("category", [*ZERO_APP_FIELDS, "all"])
def test_a_second_ensure_of_an_application_sends_no_patch_and_no_restart(omitting, category):
    name = f"zero-{category.replace('_', '-')}"
    zeros = ZERO_APP_FIELDS if category == "all" else {category: ZERO_APP_FIELDS[category]}
    spec = {"name": name, "subdomain": name, "script": "dashboard.py", **zeros}
    app_id, _ = _run_app(spec, action="ensure")
    [created] = omitting.requests("POST", APPS)
    assert not set(zeros) & set(json.loads(created.response_body))  # the answer left them out
    _run_app(spec, action="ensure")
    _run_app(spec, action="ensure")
    assert not omitting.requests("PATCH", APPS + r"/[^/]+")
    assert not omitting.requests("POST", APPS + r"/[^/]+:restart")
    assert omitting.workbench.serving.applications[app_id].status == "APPLICATION_RUNNING"
    _run_app(name, action="stop")


def test_an_empty_listing_left_out_entirely_is_read_as_empty(omitting):
    hook = CmlHook()
    project_id = str(hook.resolve_project("Analytics Archive")["id"])
    assert hook.applications.list_applications(project_id) == []
    assert hook.models.list_models(project_id) == []
    assert json.loads(omitting.requests("GET", APPS)[-1].response_body) == {}  # not {"applications": []}


def test_a_second_ensure_of_a_job_sends_no_patch(omitting):
    hook = CmlHook()
    spec = CmlJobSpec(name="zero-job", script="report_env.py", runtime_identifier=RUNTIME_ID, **JOB_ZEROS)
    assert hook.jobs.ensure_job("Analytics", spec)[1] == "created"
    assert hook.jobs.ensure_job("Analytics", spec)[1] == "unchanged"
    answer = json.loads(omitting.requests("GET", r"/api/v2/projects/[^/]+/jobs")[-1].response_body)
    read = next(j for j in answer["jobs"] if j["name"] == "zero-job")
    assert not {"nvidia_gpu", "timeout", "kill_on_timeout", "arguments", "environment"} & set(read)
    assert not omitting.requests("PATCH")


def test_a_model_answer_leaves_out_a_nested_zero_and_reads_as_it(omitting):
    hook = CmlHook()
    project_id = str(hook.resolve_project("Analytics")["id"])
    spec_fields = {"name": "zero-model", "file": "model_predict.py", "function": "predict"}
    from airflow_provider_cml.workloads.models import CmlModelSpec

    model, created = hook.models.ensure_model(project_id, CmlModelSpec.of(spec_fields))
    assert created
    got = requests.get(
        f"{omitting.url}/api/v2/projects/{project_id}/models/{model['id']}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=5,
    ).json()
    assert "nvidia_gpus" not in got["default_resources"] and "deletion_status" not in got
    assert api_fields.read("Model", got, "default_resources.nvidia_gpus") == 0
    assert hook.models.ensure_model(project_id, CmlModelSpec.of(spec_fields)) == (model, False)


def test_a_model_deploy_and_its_rerun_work_on_answers_without_zeros(omitting):
    context = _context("deploy")
    _, first = _deploy("zero-deploy", context)
    _, again = _deploy("zero-deploy", _context("deploy", try_number=2))
    assert first == again  # the re-run found its build and deployment in the zero-less listings
    assert omitting.workbench.serving.deployments[first["deployment_id"]].status == "deployed"
    deployment = json.loads(omitting.requests("POST", DEPLOYMENTS)[0].response_body)
    assert "nvidia_gpu" not in deployment
