"""Serving waits: a restart is confirmed, not assumed; a deferrable deploy pays the event hold once.

The workbench's ``restart_lag`` keeps reads showing the old ``APPLICATION_RUNNING`` (with the old
instance's times) for a while after ``:restart``, as a server whose reads lag would. Airflow's
race with quick trigger events (``[cml] trigger_event_hold``) is paid by the build's deferral
only: the resumed task waits out a quick deployment itself.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from airflow_provider_cml.exceptions import CmlApplicationError
from tests.workloads.test_serving import _app, _context, _run_app

try:  # Airflow 3.2+ moved it to the Task SDK
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]


@pytest.fixture
def lagging(wb, monkeypatch):
    """The application's reads lag 1 s behind a restart."""
    monkeypatch.setattr(wb.workbench.serving, "restart_lag", 1.0)
    return wb.workbench.serving


def _running_anew(app, before: str) -> bool:
    """The workbench's own state: running, its new instance started after ``before``."""
    return app.status == "APPLICATION_RUNNING" and app.times["running_at"] > before


def test_a_restart_waits_for_the_new_instance_not_the_old_running(wb, lagging):
    app_id, _ = _run_app(_app("lagging-board"))
    app = lagging.applications[app_id]
    before = app.times["running_at"]
    _run_app("lagging-board")  # restart: reads show the old APPLICATION_RUNNING for 1 s
    assert _running_anew(app, before)  # the wait ended on the new instance, running


def test_a_deferred_restart_carries_the_baseline_to_the_trigger(wb, lagging):
    from airflow_provider_cml.operators.applications import CmlApplicationOperator
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

    app_id, _ = _run_app(_app("deferred-lagging-board"))
    app = lagging.applications[app_id]
    before = app.times["running_at"]
    operator = CmlApplicationOperator(
        task_id="app",
        project="Analytics",
        application="deferred-lagging-board",
        poll_interval=0.05,
        deferrable=True,
    )
    context = _context("app")
    with pytest.raises(TaskDeferred) as info:
        operator.execute(context)
    _, kwargs = info.value.trigger.serialize()
    kwargs = json.loads(json.dumps(kwargs))  # what the triggerer gets: plain JSON
    assert set(kwargs["since"]) == {"status", "starting_at", "running_at"}  # no environment
    assert kwargs["since"]["running_at"] == before

    async def first(trigger):
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first(CmlWorkloadTrigger(**kwargs)))
    assert event["status"] == "success" and _running_anew(app, before)
    assert operator.execute_complete(context, event) == app_id


def test_a_restart_that_never_shows_is_graced_then_fails_saying_so(wb, lagging, monkeypatch):
    _run_app(_app("stuck-board"))
    monkeypatch.setattr(lagging, "restart_lag", 30.0)
    with pytest.raises(CmlApplicationError, match="as it was before it \\(no new start seen\\)"):
        _run_app("stuck-board", unknown_grace=0.3, timeout=10)


# -- a deferrable deploy pays Airflow's event hold once ------------------------------------------


def _deferred_build(name: str, **model):
    """A deferrable deploy's first deferral (the build) and the event its trigger fires."""
    from airflow_provider_cml.operators.models import CmlDeployModelOperator
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger
    from tests.workloads.test_serving import _model

    operator = CmlDeployModelOperator(
        task_id="deploy",
        project="Analytics",
        model=_model(name, **model),
        poll_interval=0.05,
        deferrable=True,
    )
    context = _context("deploy")
    with pytest.raises(TaskDeferred) as info:
        operator.execute(context)
    assert info.value.method_name == "execute_after_build"
    _, kwargs = info.value.trigger.serialize()

    async def first(trigger):
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return operator, context, asyncio.run(first(CmlWorkloadTrigger(**json.loads(json.dumps(kwargs)))))


def test_a_deferrable_deploy_defers_once_when_its_deployment_comes_within_the_hold(wb, monkeypatch):
    """The build's deferral pays the hold; the quick deployment is awaited by the resumed task."""
    monkeypatch.setenv("AIRFLOW__CML__TRIGGER_EVENT_HOLD", "5")
    operator, context, event = _deferred_build("held-once")
    assert event["status"] == "success"
    ids = operator.execute_after_build(context, event)  # no second TaskDeferred: no second hold
    assert wb.workbench.serving.deployments[ids["deployment_id"]].status == "deployed"
    assert len(wb.requests("POST", r".*/deployments$")) == 1


def test_a_deployment_still_going_after_the_hold_is_deferred(wb, monkeypatch):
    from airflow_provider_cml.hooks.cml import CmlHook
    from airflow_provider_cml.workloads.models import DeploymentRef

    monkeypatch.setenv("AIRFLOW__CML__TRIGGER_EVENT_HOLD", "0.5")
    operator, context, event = _deferred_build("slow-after-hold", environment={"SLOW_LOAD": "30"})
    with pytest.raises(TaskDeferred) as info:
        operator.execute_after_build(context, event)
    assert info.value.method_name == "execute_complete"
    _, kwargs = info.value.trigger.serialize()
    assert kwargs["owns"] is True  # the trigger goes on waiting on our deployment (it posts nothing)
    CmlHook().models.stop_deployment(DeploymentRef(**{k: kwargs["ref"][k] for k in DeploymentRef._fields}))


# -- the rule itself (pure) -----------------------------------------------------------------------


def _judge_all(answers, since):
    from airflow_provider_cml.waiting.rule import WaitRule, WaitState
    from airflow_provider_cml.workloads.applications import APPLICATION

    rule, state, decisions = WaitRule(1.0, None, 10.0, kind=APPLICATION, since=since), WaitState(), []
    for now, answer in enumerate(answers):
        decision = rule.judge(answer, float(now), state)
        state = decision.state
        decisions.append(decision.next.value)
    return decisions


OLD = {"status": "APPLICATION_RUNNING", "running_at": "2026-01-01T10:00:00.5Z"}


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        # The old instance, then the new one (a later running_at, in nanoseconds and without a fraction).
        (
            [OLD, {"status": "APPLICATION_RUNNING", "running_at": "2026-01-01T10:05:00.123456789Z"}],
            ["wait", "finished"],
        ),
        ([OLD, {"status": "running", "running_at": "2026-01-01T10:05:00Z"}], ["wait", "finished"]),
        # A start seen under way confirms it; the RUNNING after it ends the wait.
        ([OLD, {"status": "starting"}, {"status": "APPLICATION_RUNNING"}], ["wait", "wait", "finished"]),
        # The old instance's failure or stop says nothing about the restart either.
        ([{**OLD, "status": "APPLICATION_STOPPED"}, OLD], ["wait", "wait"]),
    ],
)
def test_only_a_new_instance_ends_a_wait_after_a_restart(answers, expected):
    from airflow_provider_cml.workloads.applications import APPLICATION

    assert _judge_all(answers, APPLICATION.baseline(OLD)) == expected


def test_without_a_baseline_the_old_running_would_end_the_wait_at_once():
    assert _judge_all([OLD], None) == ["finished"]  # what a wait without ``since`` concluded


def test_the_old_instance_is_graced_then_the_wait_gives_up():
    from airflow_provider_cml.waiting.rule import Next, WaitRule, WaitState
    from airflow_provider_cml.workloads.applications import APPLICATION

    rule = WaitRule(1.0, None, 3.0, kind=APPLICATION, since=APPLICATION.baseline(OLD))
    state = WaitState()
    for now in (0.0, 1.0, 2.0):
        state = rule.judge(OLD, now, state).state
    decision = rule.judge(OLD, 3.0, state)
    assert decision.next is Next.UNCLEAR
    assert (
        "as it was before it (no new start seen)"
        in rule.why_gave_up(decision.next, decision.state.renewed, None)[0]
    )
