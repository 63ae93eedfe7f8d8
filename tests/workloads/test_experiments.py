"""Experiment runs as a workload kind: spellings, paths and a whole wait against canned answers."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_cml.client.attempts import resume
from airflow_provider_cml.exceptions import CmlConfigError, CmlExperimentRunError
from airflow_provider_cml.waiting.kinds import load_kind
from airflow_provider_cml.waiting.plan import Ended, Sleep, Wait, whole_wait
from airflow_provider_cml.workloads.experiments import (
    EXPERIMENT_RUN,
    ExperimentRunRef,
    experiment_run_path,
    experiment_runs_path,
    experiments_path,
)

REF = ExperimentRunRef("p", "e", "r1")
RUN = "/projects/p/experiments/e/runs/r1"


@pytest.mark.parametrize(
    ("spelled", "canonical"),
    [
        ("EXPERIMENT_RUN_FINISHED", "EXPERIMENT_RUN_FINISHED"),
        ("FINISHED", "EXPERIMENT_RUN_FINISHED"),  # MLflow's bare word
        ("finished", "EXPERIMENT_RUN_FINISHED"),
        ("experiment run killed", "EXPERIMENT_RUN_KILLED"),
        ("Scheduled", "EXPERIMENT_RUN_SCHEDULED"),
        ("ERROR", "ERROR"),  # not one of ours: kept as the server spelled it
    ],
)
def test_status_spellings(spelled, canonical):
    assert EXPERIMENT_RUN.canonical(spelled) == canonical


def test_terminal_and_success():
    assert EXPERIMENT_RUN.is_success("FINISHED") and EXPERIMENT_RUN.is_terminal("FINISHED")
    for status in ("FAILED", "EXPERIMENT_RUN_KILLED"):
        assert EXPERIMENT_RUN.is_terminal(status) and not EXPERIMENT_RUN.is_success(status)
    for status in ("RUNNING", "EXPERIMENT_RUN_SCHEDULED"):
        assert not EXPERIMENT_RUN.is_terminal(status) and not EXPERIMENT_RUN.is_unclear(status)
    assert EXPERIMENT_RUN.is_unclear("ERROR")


def test_a_missing_status_is_the_enums_zero_running():
    assert EXPERIMENT_RUN.status_of({"id": "r1"}) == "EXPERIMENT_RUN_RUNNING"
    assert EXPERIMENT_RUN.status_of({"id": "r1", "status": ""}) == "EXPERIMENT_RUN_RUNNING"


def test_it_cannot_be_stopped_and_loads_from_its_home():
    assert EXPERIMENT_RUN.stop_path is None
    assert load_kind(EXPERIMENT_RUN.home) is EXPERIMENT_RUN


def test_paths_encode_ids():
    assert experiments_path("p 1") == "/projects/p%201/experiments"
    assert experiment_runs_path("p", "e x") == "/projects/p/experiments/e%20x/runs"
    assert experiment_run_path(("p", "e", "r%1")) == "/projects/p/experiments/e/runs/r%251"
    assert EXPERIMENT_RUN.read_path(REF) == RUN
    for bad in ("..", "r/2", "r?1"):  # would name another resource: refused before any request
        with pytest.raises(CmlConfigError):
            experiment_run_path(("p", "e", bad))


def test_failure_message_names_ids_and_hint_never_params():
    answer = {"id": "r1", "experiment_id": "e", "status": "EXPERIMENT_RUN_FAILED"}
    answer["data"] = {"params": [{"key": "password", "value": "hunter2"}]}
    with pytest.raises(CmlExperimentRunError) as caught:
        EXPERIMENT_RUN.outcome(answer)
    message = str(caught.value)
    assert "experiment run r1 of experiment e: EXPERIMENT_RUN_FAILED" in message
    assert "raised" in message and "hunter2" not in message
    assert caught.value.status == "EXPERIMENT_RUN_FAILED"
    assert EXPERIMENT_RUN.event_answer(answer) == {
        "id": "r1",
        "experiment_id": "e",
        "status": answer["status"],
    }


def _drive(answers: list[dict]):
    """A whole wait on run r1: each poll reads the next answer (the last repeats)."""
    clock, sent = [0.0], []
    wait = Wait(EXPERIMENT_RUN, REF, poll_interval=10, owns=False)
    steps = whole_wait(wait, None, lambda: clock[0], logging.getLogger(__name__), 5.0)
    done, value = resume(steps)
    while not done:
        if isinstance(value, Sleep):
            clock[0] += value.seconds
            done, value = resume(steps, False)
            continue
        sent.append((value.method, value.path))
        done, value = resume(steps, answers.pop(0) if len(answers) > 1 else answers[0])
    return value, sent, clock[0]


def test_a_whole_wait_polls_until_finished():
    running = {"id": "r1", "experiment_id": "e"}  # no status: running
    ended, sent, waited = _drive(
        [running, {**running, "status": "SCHEDULED"}, {**running, "status": "FINISHED"}]
    )
    assert isinstance(ended, Ended) and ended.how == "success"
    assert sent == [("GET", RUN)] * 3 and waited == 20


def test_a_whole_wait_on_a_killed_run_fails_and_sends_no_stop():
    ended, sent, _ = _drive([{"id": "r1", "status": "EXPERIMENT_RUN_KILLED"}])
    assert ended.how == "failed" and sent == [("GET", RUN)]
    with pytest.raises(CmlExperimentRunError, match="killed by a user"):
        ended.result()
