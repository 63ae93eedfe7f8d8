"""A new workload kind is data: a toy kind waited on by the sync wait, the trigger and the sensor.

``TOY`` below is all the code a new kind needs. The server is a real HTTP server on 127.0.0.1 that
moves each toy through its statuses as it is polled; nothing here writes waiting code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any, NamedTuple

import pytest

from airflow_provider_cml._compat import AirflowSensorTimeout, AirflowSkipException
from airflow_provider_cml.exceptions import CmlWorkloadError, CmlWorkloadTimeout
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.sensors.cml import CmlWorkloadSensor
from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger
from airflow_provider_cml.waiting.kinds import WorkloadKind
from airflow_provider_cml.waiting.plan import Ended
from tests.hostile import Seen, answer, hostile

KEY = "toy-kind-test-key-0001"


class ToyRef(NamedTuple):
    project_id: str
    toy_id: str


TOY = WorkloadKind(
    home="tests.waiting.test_kinds:TOY",
    name="toy",
    ref_type=ToyRef,
    read_path=lambda ref: f"/projects/{ref.project_id}/toys/{ref.toy_id}",
    succeeded=frozenset({"TOY_DONE"}),
    failed=frozenset({"TOY_BROKEN", "TOY_HALTED"}),
    active=frozenset({"TOY_QUEUED", "TOY_WORKING"}),
    stop_path=lambda ref: f"/projects/{ref.project_id}/toys/{ref.toy_id}:halt",
    missing_status="TOY_QUEUED",
    hints={"TOY_BROKEN": "the toy broke; look at its page"},
)

#: Each toy's statuses, one per poll (the last one repeats).
SCRIPTS = {
    "done": ["TOY_QUEUED", "TOY_WORKING", "TOY_WORKING", "TOY_DONE"],
    "broken": ["TOY_WORKING", "TOY_BROKEN"],
    "forever": ["TOY_WORKING"],
    "mystery": ["TOY_WORKING", "TOY_???"],
}


class ToyServer:
    def __init__(self) -> None:
        self.polls: Counter[str] = Counter()
        self.halted: set[str] = set()

    def __call__(self, request: Seen) -> list[Any]:
        toy = request.path.rsplit("/", 1)[-1]
        if request.method == "POST" and toy.endswith(":halt"):
            self.halted.add(toy.removesuffix(":halt"))
            return [answer(200, {})]
        script = SCRIPTS[toy]
        status = "TOY_HALTED" if toy in self.halted else script[min(self.polls[toy], len(script) - 1)]
        self.polls[toy] += 1
        return [answer(200, {"id": toy, "status": status, "secret_setting": "never in an event"})]


@pytest.fixture
def toys(monkeypatch):
    server = ToyServer()
    with hostile(server) as http:
        conn = {"conn_type": "cml", "host": http.url, "password": KEY, "extra": {"max_retries": 0}}
        monkeypatch.setenv("AIRFLOW_CONN_CML_TOYS", json.dumps(conn))
        server.http = http  # type: ignore[attr-defined]
        yield server


def _paths(server: ToyServer) -> list[str]:
    return [f"{s.method} {s.path}" for s in server.http.seen]  # type: ignore[attr-defined]


# -- the sync wait --------------------------------------------------------------------------------


def test_the_sync_wait_follows_a_toy_to_its_end(toys):
    done = CmlHook("cml_toys").wait_for(TOY, ToyRef("p", "done"), poll_interval=0.05, timeout=10)
    assert done["status"] == "TOY_DONE" and toys.polls["done"] == 4
    assert set(_paths(toys)) == {"GET /api/v2/projects/p/toys/done"}


def test_the_sync_wait_raises_the_kinds_error_with_its_hint(toys):
    with pytest.raises(
        CmlWorkloadError, match="toy broken: TOY_BROKEN did not succeed: the toy broke"
    ) as info:
        CmlHook("cml_toys").wait_for(TOY, ToyRef("p", "broken"), poll_interval=0.05, timeout=10)
    assert info.value.workload_id == "broken" and info.value.status == "TOY_BROKEN"


def test_a_sync_wait_that_runs_out_of_time_stops_the_toy_it_owns(toys):
    with pytest.raises(CmlWorkloadTimeout, match="toy forever was still TOY_WORKING .* asked to stop"):
        CmlHook("cml_toys").wait_for(TOY, ToyRef("p", "forever"), poll_interval=0.05, timeout=0.3)
    assert "POST /api/v2/projects/p/toys/forever:halt" in _paths(toys)


def test_a_status_the_kind_does_not_know_is_tolerated_for_its_grace_only(toys):
    with pytest.raises(CmlWorkloadError, match="toy mystery was still TOY_\\?\\?\\? for 0.3s"):
        CmlHook("cml_toys").wait_for(
            TOY,
            ToyRef("p", "mystery"),
            poll_interval=0.05,
            timeout=10,
            unknown_grace=0.3,
            stop_on_timeout=False,
        )
    assert toys.polls["mystery"] >= 4 and not toys.halted


# -- the trigger ----------------------------------------------------------------------------------


def _trigger_event(toy: str, **kwargs: Any) -> dict:
    trigger = CmlWorkloadTrigger(
        kind=TOY.home,
        ref={"project_id": "p", "toy_id": toy},
        conn_id="cml_toys",
        poll_interval=0.05,
        **kwargs,
    )
    # A triggerer rebuilds it from its serialised form: so does this test.
    path, rebuilt_kwargs = trigger.serialize()
    assert path == "airflow_provider_cml.triggers.cml.CmlWorkloadTrigger"
    rebuilt = CmlWorkloadTrigger(**json.loads(json.dumps(rebuilt_kwargs)))

    async def first() -> dict:
        async for event in rebuilt.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(asyncio.wait_for(first(), 20))


def test_the_trigger_follows_a_toy_to_its_end(toys):
    event = _trigger_event("done")
    assert event["status"] == "success" and event["kind"] == TOY.home
    assert event["ref"] == {"project_id": "p", "toy_id": "done"}
    assert event["answer"] == {"id": "done", "status": "TOY_DONE"}  # the kind's event fields only
    assert Ended.of_event(event).result()["status"] == "TOY_DONE"


def test_the_triggers_failure_and_timeout_events_become_the_kinds_errors(toys):
    with pytest.raises(CmlWorkloadError, match="the toy broke"):
        Ended.of_event(_trigger_event("broken")).result()
    event = _trigger_event("forever", end_time=time.time() + 0.4, owns=True)
    assert event["status"] == "timeout" and "asked to stop" in event["message"]
    assert "forever" in toys.halted
    with pytest.raises(CmlWorkloadTimeout):
        Ended.of_event(event).result()


# -- the sensor -----------------------------------------------------------------------------------


def _sensor(toy: str, **kwargs: Any) -> CmlWorkloadSensor:
    kwargs.setdefault("timeout", 5)
    return CmlWorkloadSensor(
        task_id=f"watch_{toy}",
        kind=TOY,
        ref={"project_id": "p", "toy_id": toy},
        cml_conn_id="cml_toys",
        poke_interval=0.05,
        **kwargs,
    )


def test_the_sensor_pokes_a_toy_to_its_end_and_never_stops_it(toys):
    sensor = _sensor("done")
    pokes = [sensor.poke({}) for _ in range(4)]
    assert pokes == [False, False, False, True]
    with pytest.raises(CmlWorkloadError, match="the toy broke"):
        while not _sensor("broken").poke({}):
            pass
    with pytest.raises(AirflowSkipException):
        soft = _sensor("broken", soft_fail=True)
        while not soft.poke({}):
            pass
    assert not toys.halted


def test_the_deferrable_sensor_waits_in_a_trigger_it_does_not_own(toys):
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 2
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

    sensor = _sensor("forever", deferrable=True, timeout=0.4)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, CmlWorkloadTrigger) and trigger.owns is False

    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(first(), 20))
    assert event["status"] == "timeout" and not toys.halted  # never stopped: not its own
    with pytest.raises(AirflowSensorTimeout, match="toy forever was still TOY_WORKING"):
        sensor.execute_complete({}, event)
