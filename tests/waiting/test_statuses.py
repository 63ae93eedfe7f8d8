"""Statuses spelled otherwise than our stand-in does, and ones no one listed, for every kind.

The workbench answers them through its ``status_as`` knob (real HTTP); each fault is waited on
by the sync wait, the trigger and the sensor. Lower case and missing or extra prefixes are the
same status; a value no one listed is tolerated for ``unknown_grace``, then the wait fails naming it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_cml.exceptions import (
    CmlApplicationError,
    CmlJobRunError,
    CmlModelBuildError,
    CmlModelDeploymentError,
    CmlWorkloadError,
)
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.waiting.kinds import WorkloadKind
from airflow_provider_cml.workloads.applications import APPLICATION, ApplicationRef, CmlApplicationSpec
from airflow_provider_cml.workloads.job_runs import JOB_RUN, RunRef
from airflow_provider_cml.workloads.models import (
    MODEL_BUILD,
    MODEL_DEPLOYMENT,
    BuildRef,
    CmlModelSpec,
    DeploymentRef,
)
from tests.conftest import wait_until

GRACE = 0.4


@pytest.mark.parametrize(
    ("kind", "spelled", "means"),
    [
        (JOB_RUN, "running", "progress"),
        (JOB_RUN, "Succeeded", "success"),
        (JOB_RUN, "engine_failed", "failure"),
        (JOB_RUN, "error", "unclear"),
        (MODEL_BUILD, "BUILT", "success"),
        (MODEL_BUILD, "MODEL_BUILD_BUILT", "success"),
        (MODEL_BUILD, "BUILD_FAILED", "failure"),
        (MODEL_BUILD, "Build Failed", "failure"),
        (MODEL_BUILD, "pushing", "progress"),
        (MODEL_BUILD, "succeeded", "unclear"),  # listed, but no client deploys from it
        (MODEL_BUILD, "unknown", "unclear"),
        (MODEL_BUILD, "error", "unclear"),
        (MODEL_DEPLOYMENT, "DEPLOYED", "success"),
        (MODEL_DEPLOYMENT, "model_deployment_deployed", "success"),
        (MODEL_DEPLOYMENT, "deployment_failed", "failure"),
        (MODEL_DEPLOYMENT, "deploying", "progress"),
        (MODEL_DEPLOYMENT, "MODEL_DEPLOYMENT_PENDING", "progress"),
        (MODEL_DEPLOYMENT, "error", "unclear"),
        (MODEL_DEPLOYMENT, "unknown", "unclear"),
        (APPLICATION, "running", "success"),
        (APPLICATION, "RUNNING", "success"),
        (APPLICATION, "failed", "failure"),
        (APPLICATION, "starting", "progress"),
        (APPLICATION, "error", "unclear"),
        (APPLICATION, "unknown", "unclear"),
    ],
)
def test_every_spelling_of_a_status_means_one_thing(kind: WorkloadKind, spelled: str, means: str) -> None:
    status = kind.status_of({"status": spelled})
    found = (
        "success"
        if kind.is_success(status)
        else "failure"
        if kind.is_terminal(status)
        else "unclear"
        if kind.is_unclear(status)
        else "progress"
    )
    assert found == means


def test_an_unknown_status_keeps_the_servers_words():
    assert APPLICATION.status_of({"status": "error"}) == "ERROR"
    assert JOB_RUN.status_of({"status": "ENGINE_LOST"}) == "ENGINE_LOST"


# -- through the workbench ------------------------------------------------------------------------


@pytest.fixture
def respelled(wb) -> Iterator[Any]:
    """Set the workbench's ``status_as`` for one test."""
    yield lambda spelling: setattr(wb.workbench, "status_as", dict(spelling))
    wb.workbench.status_as = {}


def _job_run(hook: CmlHook) -> Any:
    run = hook.start_job_run("Analytics", "report-env")
    return RunRef(str(run["project_id"]), str(run["job_id"]), str(run["id"]))


def _project(hook: CmlHook) -> str:
    return str(hook.resolve_project("Analytics")["id"])


def _build(hook: CmlHook, name: str) -> BuildRef:
    spec = CmlModelSpec.of({"name": name, "file": "model_predict.py", "function": "predict"})
    project_id = _project(hook)
    model, _ = hook.models.ensure_model(project_id, spec)
    build = hook.models.create_build(project_id, str(model["id"]), spec, f"spelling {name}")
    return BuildRef(project_id, str(model["id"]), str(build["id"]))


def _deployment(hook: CmlHook, name: str) -> DeploymentRef:
    built = _build(hook, name)
    hook.wait_for(MODEL_BUILD, built, timeout=30, poll_interval=0.05)  # spelled as usual
    spec = CmlModelSpec.of({"name": name, "file": "model_predict.py", "function": "predict"})
    deployment = hook.models.create_deployment(built, spec, {"MARK": name})
    return DeploymentRef(*built, str(deployment["id"]))


def _application(hook: CmlHook, name: str) -> ApplicationRef:
    spec = CmlApplicationSpec.of({"name": name, "subdomain": name, "script": "dashboard.py"})
    project_id = _project(hook)
    app = hook.applications.create_application(project_id, spec)
    return ApplicationRef(project_id, str(app["id"]))


def _make(hook: CmlHook, kind: WorkloadKind, name: str) -> Any:
    if kind is JOB_RUN:
        return _job_run(hook)
    if kind is MODEL_BUILD:
        return _build(hook, name)
    if kind is MODEL_DEPLOYMENT:
        return _deployment(hook, name)
    return _application(hook, name)


def _sync(hook: CmlHook, kind: WorkloadKind, ref: Any) -> Any:
    return hook.wait_for(kind, ref, timeout=8, poll_interval=0.05, unknown_grace=GRACE, stop_on_timeout=False)


def _trigger(hook: CmlHook, kind: WorkloadKind, ref: Any) -> Any:
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger
    from airflow_provider_cml.waiting.plan import Ended

    trigger = CmlWorkloadTrigger(
        kind=kind.home,
        ref=ref._asdict(),
        poll_interval=0.05,
        end_time=time.time() + 8,
        owns=False,
        unknown_grace=GRACE,
    )
    _, kwargs = trigger.serialize()
    rebuilt = CmlWorkloadTrigger(**json.loads(json.dumps(kwargs)))  # as the triggerer does

    async def first() -> Any:
        async for event in rebuilt.run():
            return event.payload
        raise AssertionError("no event")

    return Ended.of_event(asyncio.run(first())).result()


def _sensor(hook: CmlHook, kind: WorkloadKind, ref: Any) -> Any:
    from airflow_provider_cml.sensors.cml import CmlWorkloadSensor

    sensor = CmlWorkloadSensor(
        task_id="s", kind=kind, ref=ref._asdict(), poke_interval=0.05, unknown_grace=GRACE
    )
    return bool(wait_until("the sensor to end", lambda: sensor.poke({})))


WAYS = {"sync": _sync, "trigger": _trigger, "sensor": _sensor}

#: Spellings that mean success, by kind: lower case, no prefix, a prefix where none is usual.
SUCCESS_SPELLINGS = [
    (JOB_RUN, {"ENGINE_RUNNING": "running", "ENGINE_SUCCEEDED": "succeeded"}),
    (MODEL_BUILD, {"pending": "MODEL_BUILD_PENDING", "pushing": "PUSHING", "built": "MODEL_BUILD_BUILT"}),
    (MODEL_DEPLOYMENT, {"pending": "MODEL_DEPLOYMENT_PENDING", "deployed": "DEPLOYED"}),
    (APPLICATION, {"APPLICATION_STARTING": "starting", "APPLICATION_RUNNING": "running"}),
]

#: What ends each kind well, replaced by a value no one listed.
UNLISTED = [
    (JOB_RUN, "ENGINE_SUCCEEDED", CmlJobRunError),
    (MODEL_BUILD, "built", CmlModelBuildError),
    (MODEL_DEPLOYMENT, "deployed", CmlModelDeploymentError),
    (APPLICATION, "APPLICATION_RUNNING", CmlApplicationError),
]


def _clean(hook: CmlHook, kind: WorkloadKind, ref: Any) -> None:
    if kind is MODEL_DEPLOYMENT:
        hook.models.stop_deployment(ref)
    elif kind is APPLICATION:
        hook.applications.stop_application(ref)


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize(("kind", "spelling"), SUCCESS_SPELLINGS, ids=lambda k: getattr(k, "name", ""))
def test_a_success_spelled_otherwise_ends_the_wait_well(wb, respelled, kind, spelling, way):
    hook = CmlHook()
    ref = _make(hook, kind, f"spelled-{kind.name.replace(' ', '-')}-{way}")
    respelled(spelling)
    try:
        assert WAYS[way](hook, kind, ref)
        assert wb.requests("GET", ".*") and any(e.fault == "respelled" for e in wb.journal)
    finally:
        respelled({})
        _clean(hook, kind, ref)


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize(("kind", "success", "error"), UNLISTED, ids=lambda k: getattr(k, "name", ""))
def test_a_status_no_one_listed_is_graced_then_fails_naming_it(wb, respelled, kind, success, error, way):
    hook = CmlHook()
    ref = _make(hook, kind, f"odd-{kind.name.replace(' ', '-')}-{way}")
    respelled({success: "error"})
    try:
        with pytest.raises(error, match=r"still ERROR for 0\.4s, a status that says nothing"):
            WAYS[way](hook, kind, ref)
    finally:
        respelled({})
        _clean(hook, kind, ref)


@pytest.mark.parametrize(
    ("ends", "error"),
    [
        ("succeeded", r"still SUCCEEDED for 0\.4s"),
        ("unknown", r"still UNKNOWN for 0\.4s"),
        ("timedout", r"TIMEDOUT did not succeed: the build ran out of time"),
    ],
)
def test_the_workbench_can_end_a_build_in_every_listed_status(wb, respelled, ends, error):
    hook = CmlHook()
    ref = _build(hook, f"build-ends-{ends}")
    respelled({"built": ends})
    with pytest.raises(CmlWorkloadError, match=error):
        _sync(hook, MODEL_BUILD, ref)
