"""CmlJobRunTrigger against the local workbench over real HTTP (aiohttp), run in an asyncio loop."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from airflow_provider_cml.exceptions import CmlJobRunError, CmlJobRunTimeout
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.testing import Faults
from airflow_provider_cml.triggers.cml import CmlJobRunTrigger, CmlWorkloadTrigger
from airflow_provider_cml.waiting import plan
from airflow_provider_cml.waiting.plan import Ended
from airflow_provider_cml.workloads.job_runs import JOB_RUN, RunRef
from tests.conftest import API_KEY, wait_until

RUN_PATH = r"/api/v2/projects/[^/]+/jobs/[^/]+/runs/[^/:]+"


def _start(job: str, env: dict | None = None) -> tuple[str, str, str]:
    hook = CmlHook()
    run = hook.start_job_run("Analytics", job, env)
    return run["project_id"], run["job_id"], run["id"]


def _trigger(ids: tuple[str, str, str], **options) -> CmlWorkloadTrigger:
    """A trigger on the run ``ids`` (as :func:`_start` returns them)."""
    return CmlJobRunTrigger(project_id=ids[0], job_id=ids[1], run_id=ids[2], **options)


def _first_event(trigger: CmlWorkloadTrigger, limit: float = 30) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), limit))


def test_serialize_round_trip_uses_plain_json_types():
    trigger = CmlJobRunTrigger(project_id="p", job_id="j", run_id="r", poll_interval=5, end_time=1700000000.5)
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_cml.triggers.cml.CmlWorkloadTrigger"  # one trigger class for every kind
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs["ref"] == {"project_id": "p", "job_id": "j", "run_id": "r"}
    assert CmlWorkloadTrigger(**kwargs).serialize() == (path, kwargs)


def test_success_event_carries_the_run_without_its_environment(wb):
    ids = _start("report-env", {"DB_PASSWORD": "hunter2-very-secret"})
    event = _first_event(_trigger(ids, poll_interval=0.1))
    assert event["status"] == "success" and event["answer"]["status"] == "ENGINE_SUCCEEDED"
    assert "environment" not in event["answer"] and "hunter2" not in json.dumps(event)
    assert Ended.of_event(event).result()["id"] == ids[2]


@pytest.mark.parametrize(("job", "status"), [("fail", "ENGINE_FAILED"), ("times-out", "ENGINE_TIMEDOUT")])
def test_failure_events(wb, job, status):
    ids = _start(job)
    event = _first_event(_trigger(ids, poll_interval=0.1))
    assert event["status"] == "failed" and event["answer"]["status"] == status
    with pytest.raises(CmlJobRunError, match=status):
        Ended.of_event(event).result()


def test_stopped_run_is_a_failure_event(wb):
    ids = _start("sleeper")
    CmlHook().stop_job_run(*ids)
    event = _first_event(_trigger(ids, poll_interval=0.1))
    assert event["status"] == "failed" and event["answer"]["status"] == "ENGINE_STOPPED"


def test_transient_errors_and_429_during_polling_do_not_end_the_wait(wb, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CML_FAST", wb.airflow_connection(API_KEY, retry_backoff=0.05, max_retries=2)
    )
    ids = _start("slow")
    wb.fail_next("GET", RUN_PATH, 503, times=4)  # more than the retries: the trigger keeps polling
    wb.faults = Faults(rate_limit_rate=0.3, retry_after=0.1, error_rate=0.2, seed=7)
    trigger = _trigger(ids, poll_interval=0.1, conn_id="cml_fast")
    event = _first_event(trigger)
    wb.faults = None
    assert event["status"] == "success"
    faults = [e.fault for e in wb.requests("GET", RUN_PATH) if e.fault]
    assert faults.count("scripted") == 4 and "rate_limit" in faults


def test_a_non_transient_error_fires_an_error_event(wb):
    ids = _start("slow")
    wb.fail_next("GET", RUN_PATH, 403)
    event = _first_event(_trigger(ids, poll_interval=0.1))
    assert event["status"] == "error" and "HTTP 403" in event["message"]
    with pytest.raises(Exception, match="HTTP 403"):
        Ended.of_event(event).result()


def test_deadline_stops_the_run(wb, tmp_path):
    marker = tmp_path / "stopped"
    ids = _start("sleeper", {"STOP_MARKER": str(marker)})
    trigger = _trigger(ids, poll_interval=0.2, end_time=time.time() + 1.0)
    event = _first_event(trigger)
    assert event["status"] == "timeout" and "asked to stop" in event["message"]
    with pytest.raises(CmlJobRunTimeout):
        Ended.of_event(event).result()
    wait_until("the run to be stopped", lambda: wb.workbench.runs[ids[2]].status == "ENGINE_STOPPED")
    assert marker.read_text() == "stopped"


def test_sensor_style_deadline_does_not_stop_the_run(wb):
    ids = _start("slow")
    trigger = _trigger(ids, poll_interval=0.1, end_time=time.time(), owns=False)
    assert _first_event(trigger)["status"] == "timeout"
    assert not wb.requests("POST", RUN_PATH + ":stop")


def test_on_kill_stops_the_run(wb):
    ids = _start("sleeper")
    asyncio.run(_trigger(ids).on_kill())
    assert len(wb.requests("POST", RUN_PATH + ":stop")) == 1
    wait_until("the stop to take effect", lambda: wb.workbench.runs[ids[2]].status == "ENGINE_STOPPED")


def test_on_kill_leaves_a_run_the_task_does_not_own(wb):
    """A sensor's run, or the run a busy job was waited for: killing the task must not stop it."""
    ids = _start("sleeper")
    trigger = _trigger(ids, owns=False)
    rebuilt = CmlWorkloadTrigger(**trigger.serialize()[1])  # as the triggerer builds it
    asyncio.run(rebuilt.on_kill())
    assert not wb.requests("POST", RUN_PATH + ":stop")
    assert not wb.workbench.runs[ids[2]].stop_requested


def test_an_event_is_held_until_the_race_window_after_the_deferral_passed(wb, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CML__TRIGGER_EVENT_HOLD", "1.5")
    ids = _start("report-env")
    deferred = time.time()
    trigger = _trigger(ids, poll_interval=0.1)
    trigger = CmlWorkloadTrigger(**trigger.serialize()[1])  # the hold travels with the trigger
    event = _first_event(trigger)
    assert event["status"] == "success"
    assert time.time() - deferred >= 1.5
    # The run itself ended long before: the event, not the polling, was held.
    assert len(wb.requests("GET", RUN_PATH)) <= 3


def test_the_hold_never_passes_the_deadline(wb, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CML__TRIGGER_EVENT_HOLD", "30")
    ids = _start("report-env")
    end_time = time.time() + 1.0
    trigger = _trigger(ids, poll_interval=0.1, end_time=end_time)
    assert trigger.not_before == end_time  # 30 s from now, cut to the deadline
    trigger = CmlWorkloadTrigger(**trigger.serialize()[1])
    assert trigger.not_before == end_time
    assert _first_event(trigger)["status"] == "success"


def test_one_connection_reused_across_polls(wb):
    ids = _start("slow")
    trigger = _trigger(ids, poll_interval=0.1)
    before = wb.connections_opened
    assert _first_event(trigger)["status"] == "success"
    assert len(wb.requests("GET", RUN_PATH)) >= 5
    assert wb.connections_opened - before == 1
    assert API_KEY not in repr(trigger) and API_KEY not in json.dumps(trigger.serialize())


def test_triggers_in_one_loop_share_one_connection_pool(wb):
    started = [_start(job) for job in ("slow", "train", "train-extended", "report-env")]
    triggers = [CmlJobRunTrigger(project_id=p, job_id=j, run_id=r, poll_interval=0.1) for p, j, r in started]
    before = wb.connections_opened

    async def run_all():
        hooks = []

        async def first(trigger):
            async for event in trigger.run():
                return event.payload

        # Two hooks made in the same loop get the same client.
        from airflow_provider_cml.hooks.cml import CmlHook as Hook

        for _ in range(2):
            hook = Hook()
            await hook.arun_steps(plan.poll(JOB_RUN, RunRef(*started[0]), None))
            hooks.append(hook)
        clients = [await hook._async_transport.session() for hook in hooks]
        same = clients[0] is clients[1]
        events = await asyncio.gather(*(first(t) for t in triggers))
        for hook in hooks:
            await hook.aclose()
        return same, events

    same, events = asyncio.run(asyncio.wait_for(run_all(), 30))
    assert same
    assert [e["status"] for e in events] == ["success"] * 4
    polls = len(wb.requests("GET", RUN_PATH))
    assert polls >= 8
    assert wb.connections_opened - before <= 4 < polls  # never a connection per poll


@pytest.mark.parametrize("limit", ["timeout", "execution_timeout"])
def test_a_timeout_event_names_the_setting_that_ended_the_wait(wb, limit):
    ids = _start("sleeper")
    trigger = _trigger(ids, poll_interval=0.1, end_time=time.time() + 0.3, limit=limit)
    trigger = CmlWorkloadTrigger(**trigger.serialize()[1])  # the limit travels with the trigger
    event = _first_event(trigger)
    assert event["status"] == "timeout"
    assert f"when the task's {limit} ran out" in event["message"]
    assert f"Raise {limit} if the run needs longer" in event["message"]
