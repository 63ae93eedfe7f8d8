"""CmlExperimentRunSensor against the local workbench, over real HTTP (answers contract-checked)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from airflow_provider_cml.exceptions import CmlConfigError, CmlExperimentRunError, CmlLookupError
from airflow_provider_cml.sensors.experiments import CmlExperimentRunSensor

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 2
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]


def _run(wb, **options):
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    name = f"sensed-{uuid.uuid4().hex[:8]}"  # experiment names are unique across the workspace
    return name, wb.workbench.experiments.add_run(pid, name, **options)


def _sensor(experiment, run_id, **options):
    return CmlExperimentRunSensor(
        task_id="s", project="Analytics", experiment=experiment, run_id=run_id, **options
    )


def test_poke_waits_while_running_and_succeeds_once_finished(wb):
    name, run = _run(wb, status="SCHEDULED")
    sensor = _sensor(name, run.id, poke_interval=0.01)
    assert sensor.poke({}) is False
    wb.workbench.experiments.set_run(run.id, status="RUNNING", metrics={"auc": 0.9})
    assert sensor.poke({}) is False
    wb.workbench.experiments.set_run(run.id, status="FINISHED")
    assert sensor.poke({}) is True
    # The experiment was found by name once; every check after reads only the run.
    experiment_reads = [e for e in wb.requests("GET") if e.path.endswith("/experiments")]
    assert len(experiment_reads) == 1


def test_an_experiment_id_needs_no_look_up(wb):
    _, run = _run(wb, status="FINISHED")
    assert _sensor(run.experiment.id, run.id).poke({}) is True
    assert not [e for e in wb.requests("GET") if e.path.endswith("/experiments")]


@pytest.mark.parametrize(("status", "words"), [("FAILED", "raised"), ("KILLED", "killed by a user")])
def test_a_failed_or_killed_run_fails_the_sensor_naming_it(wb, status, words):
    name, run = _run(wb, status=status)
    with pytest.raises(CmlExperimentRunError, match=words) as caught:
        _sensor(name, run.id).poke({})
    assert run.id in str(caught.value) and f"EXPERIMENT_RUN_{status}" in str(caught.value)


def test_unknown_experiment_and_bad_run_id_are_clear_errors(wb):
    with pytest.raises(CmlLookupError, match="no-such-experiment"):
        _sensor("no-such-experiment", "abcd-abcd-abcd-abcd").poke({})
    with pytest.raises(CmlConfigError, match="run_id"):
        _sensor("whatever", "  ").poke({})


def test_deferrable_the_trigger_rebuilt_from_its_serialised_form_ends_it(wb):
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

    name, run = _run(wb)
    sensor = _sensor(name, run.id, deferrable=True, poke_interval=0.05, timeout=30)
    with pytest.raises(TaskDeferred) as info:
        sensor.poke({})
    _, kwargs = info.value.trigger.serialize()
    trigger = CmlWorkloadTrigger(**json.loads(json.dumps(kwargs)))  # as a triggerer rebuilds it

    async def first_event():
        task = asyncio.ensure_future(anext(aiter(trigger.run())))
        await asyncio.sleep(0.1)  # the trigger polls a running run, then it finishes
        assert not task.done()
        wb.workbench.experiments.set_run(run.id, status="FINISHED", metrics={"auc": 0.93})
        return (await task).payload

    event = asyncio.run(first_event())
    assert event["status"] == "success"
    assert "auc" not in json.dumps(event)  # the event carries ids and status, not the run's data
    sensor.execute_complete({}, event)


def test_deferrable_a_killed_run_fails_on_resume(wb):
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

    name, run = _run(wb)
    sensor = _sensor(name, run.id, deferrable=True, poke_interval=0.05, timeout=30)
    with pytest.raises(TaskDeferred) as info:
        sensor.poke({})
    _, kwargs = info.value.trigger.serialize()
    wb.workbench.experiments.set_run(run.id, status="KILLED")

    async def first_event():
        async for event in CmlWorkloadTrigger(**json.loads(json.dumps(kwargs))).run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    with pytest.raises(CmlExperimentRunError, match="EXPERIMENT_RUN_KILLED"):
        sensor.execute_complete({}, event)


def test_it_is_registered_with_the_provider():
    from airflow_provider_cml.get_provider_info import get_provider_info

    modules = [m for s in get_provider_info()["sensors"] for m in s["python-modules"]]
    assert "airflow_provider_cml.sensors.experiments" in modules
