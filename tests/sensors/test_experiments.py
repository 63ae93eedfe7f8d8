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


def _deferred(wb):
    """A deferrable sensor on a new running run, deferred: (run, sensor, its trigger rebuilt from its
    serialised form, as a triggerer rebuilds it)."""
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

    name, run = _run(wb)
    sensor = _sensor(name, run.id, deferrable=True, poke_interval=0.05, timeout=30)
    with pytest.raises(TaskDeferred) as info:
        sensor.poke({})
    _, kwargs = info.value.trigger.serialize()
    return run, sensor, CmlWorkloadTrigger(**json.loads(json.dumps(kwargs)))


def test_deferrable_the_trigger_rebuilt_from_its_serialised_form_ends_it(wb):
    run, sensor, trigger = _deferred(wb)

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
    run, sensor, trigger = _deferred(wb)
    wb.workbench.experiments.set_run(run.id, status="KILLED")

    async def first_event():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    with pytest.raises(CmlExperimentRunError, match="EXPERIMENT_RUN_KILLED"):
        sensor.execute_complete({}, event)


def test_it_is_registered_with_the_provider():
    from airflow_provider_cml.get_provider_info import get_provider_info

    modules = [m for s in get_provider_info()["sensors"] for m in s["python-modules"]]
    assert "airflow_provider_cml.sensors.experiments" in modules


def test_exactly_one_of_run_id_and_run_tag():
    for options in ({}, {"run_id": "r", "run_tag": {"t": "v"}}):
        with pytest.raises(CmlConfigError, match="exactly one of run_id"):
            CmlExperimentRunSensor(task_id="s", project="Analytics", experiment="e", **options)
    with pytest.raises(CmlConfigError, match="run_tag"):
        CmlExperimentRunSensor(task_id="s", project="Analytics", experiment="e", run_tag="t=v").poke({})


def test_by_tag_poke_waits_until_a_tagged_run_appears_then_until_it_finishes(wb):
    name, other = _run(wb, tags={"airflow_run_id": "other"})
    sensor = CmlExperimentRunSensor(
        task_id="s",
        project="Analytics",
        experiment=name,
        run_tag={"airflow_run_id": "mine"},
        poke_interval=0.01,
    )
    assert sensor.poke({}) is False  # no run with the tag yet
    run = wb.workbench.experiments.add_run(other.experiment.project.id, name, tags={"airflow_run_id": "mine"})
    assert sensor.poke({}) is False  # found, running
    wb.workbench.experiments.set_run(run.id, status="FINISHED")
    assert sensor.poke({}) is True
    assert wb.requests("GET", rf".*/runs/{run.id}")  # once found, the run itself is read


def test_deferrable_by_tag_the_trigger_finds_the_run_and_the_event_names_it(wb):
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

    name, other = _run(wb)
    tags = {"airflow_run_id": "manual__1"}
    sensor = CmlExperimentRunSensor(
        task_id="s", project="Analytics", experiment=name, run_tag=tags, deferrable=True, poke_interval=0.05
    )
    with pytest.raises(TaskDeferred) as info:
        sensor.poke({})
    _, kwargs = info.value.trigger.serialize()
    assert kwargs["find"] == {"tags": tags} and kwargs["ref"]["run_id"] == ""
    trigger = CmlWorkloadTrigger(**json.loads(json.dumps(kwargs)))
    run = wb.workbench.experiments.add_run(other.experiment.project.id, name, status="FINISHED", tags=tags)
    event = asyncio.run(anext(aiter(trigger.run()))).payload
    assert event["status"] == "success" and event["ref"]["run_id"] == run.id
    sensor.execute_complete({}, event)


def test_a_run_its_ended_job_run_left_running_fails_the_sensor_sync_and_deferred(wb):
    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger
    from tests.hooks.test_experiments import ended_job_run

    name, run = _run(wb)  # RUNNING, and it will stay so: its script was killed
    job_run = ended_job_run(wb)
    sensor = _sensor(name, run.id, job_run=job_run, job_run_grace=0.1, poke_interval=0.05)
    with pytest.raises(CmlExperimentRunError, match="without ending the run"):
        while not sensor.poke({}):
            pass
    sensor = _sensor(name, run.id, job_run=job_run, job_run_grace=0.1, poke_interval=0.05, deferrable=True)
    _, kwargs = sensor._trigger({}).serialize()  # what it defers with (its first poke may end it)
    assert kwargs["bound"] == {**{k: job_run[k] for k in ("project_id", "job_id", "run_id")}, "grace": 0.1}
    event = asyncio.run(anext(aiter(CmlWorkloadTrigger(**json.loads(json.dumps(kwargs))).run()))).payload
    assert event["status"] == "abandoned"
    with pytest.raises(CmlExperimentRunError, match=f"job run {job_run['run_id']} that logs it"):
        sensor.execute_complete({}, event)


def test_reschedule_each_check_a_fresh_sensor_finds_the_run_by_tag_and_honours_the_job_run_bound(wb):
    from tests.hooks.test_experiments import ended_job_run

    name, run = _run(wb, tags={"airflow_run_id": "a"})
    job_run = ended_job_run(wb)

    def check():  # as a reschedule sensor runs: a new process (a new operator) per poke
        sensor = CmlExperimentRunSensor(
            task_id="s",
            project="Analytics",
            experiment=name,
            run_tag={"airflow_run_id": "a"},
            job_run=job_run,
            job_run_grace=30,
            mode="reschedule",
            poke_interval=0.01,
        )
        return sensor.poke({})

    assert check() is False  # the job run ended just now: within the grace for the last write
    wb.workbench.experiments.set_run(run.id, status="FINISHED")
    assert check() is True
    with wb.workbench.lock:  # a job run that ended longer ago than the grace, its run left running
        wb.workbench.experiments.runs[run.id].status = "EXPERIMENT_RUN_RUNNING"
        next(r for r in wb.workbench.runs.values() if r.id == job_run["run_id"]).times["finished_at"] = (
            "2020-01-01T00:00:00Z"
        )
    with pytest.raises(CmlExperimentRunError, match="without ending the run"):
        check()
