"""Experiment runs as a workload kind: spellings, paths and a whole wait against canned answers."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_cml.client.attempts import resume
from airflow_provider_cml.exceptions import (
    CmlApiError,
    CmlConfigError,
    CmlExperimentRunError,
    CmlLookupError,
    CmlWorkloadTimeout,
)
from airflow_provider_cml.waiting.kinds import load_kind
from airflow_provider_cml.waiting.plan import Ended, Sleep, Wait, whole_wait
from airflow_provider_cml.workloads.experiments import (
    EXPERIMENT_RUN,
    ExperimentRunRef,
    check_tags,
    job_run_ref,
    latest_tagged,
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


def test_a_run_is_read_at_its_path_with_its_ids_encoded():
    assert EXPERIMENT_RUN.read_path(REF) == RUN
    assert EXPERIMENT_RUN.read_path(("p", "e x", "r%1")) == "/projects/p/experiments/e%20x/runs/r%251"
    with pytest.raises(CmlConfigError, match="run_id 'r/2'"):  # would name another resource
        EXPERIMENT_RUN.read_path(("p", "e", "r/2"))


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
    wait = Wait(EXPERIMENT_RUN, REF, poll_interval=10, owns=False)
    return _drive_by(lambda *_: answers.pop(0) if len(answers) > 1 else answers[0], wait)


def test_a_whole_wait_polls_until_finished():
    running = {"id": "r1", "experiment_id": "e"}  # no status: running
    ended, sent, waited = _drive(
        [running, {**running, "status": "SCHEDULED"}, {**running, "status": "FINISHED"}]
    )
    assert isinstance(ended, Ended) and ended.how == "success"
    assert sent == [RUN] * 3 and waited == 20


def test_a_whole_wait_on_a_killed_run_fails_and_sends_no_stop():
    ended, sent, _ = _drive([{"id": "r1", "status": "EXPERIMENT_RUN_KILLED"}])
    assert ended.how == "failed" and sent == [RUN]
    with pytest.raises(CmlExperimentRunError, match="killed by a user"):
        ended.result()


# -- finding a run by its tags, and the job run that bounds a wait ----------------------------------

LISTING = "/projects/p/experiments/e/runs"
JOB_RUN_PATH = "/projects/p/jobs/j/runs/jr"


def _tagged(run_id: str, start: str | None, **tags: str) -> dict:
    run = {"id": run_id, "data": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
    return {**run, "start_time": start} if start else run


def _drive_by(answer, wait: Wait, deadline: float | None = None):
    """A whole wait whose requests ``answer(path, params)`` answers; the clock moves by the sleeps."""
    clock, sent = [0.0], []
    steps = whole_wait(wait, deadline, lambda: clock[0], logging.getLogger(__name__), 5.0)
    done, value = resume(steps)
    while not done:
        if isinstance(value, Sleep):
            clock[0] += value.seconds
            done, value = resume(steps, False)
            continue
        assert value.method == "GET"  # a wait on an experiment run only reads, never stops it
        sent.append(value.path)
        reply = answer(value.path, dict(value.params or {}), clock[0])
        error = reply if isinstance(reply, Exception) else None
        done, value = resume(steps, None if error else reply, error)
    return value, sent, clock[0]


def test_the_latest_started_run_with_every_tag_wins_and_a_tie_is_an_error():
    runs = [
        _tagged("old", "2024-06-01T00:00:00Z", airflow_run_id="a", team="x"),
        _tagged("new", "2024-06-01T00:05:00.5Z", airflow_run_id="a", team="x"),  # a retried task's run
        _tagged("other", "2024-06-02T00:00:00Z", airflow_run_id="b", team="x"),
        _tagged("untimed", None, airflow_run_id="a", team="x"),  # no start time: ranks last
    ]
    assert latest_tagged(runs, {"airflow_run_id": "a", "team": "x"})["id"] == "new"
    assert latest_tagged(runs, {"airflow_run_id": "a", "team": "y"}) is None
    assert latest_tagged([runs[3]], {"airflow_run_id": "a"})["id"] == "untimed"
    tie = [runs[1], {**runs[1], "id": "twin"}]
    with pytest.raises(CmlLookupError, match="same time.*new, twin"):
        latest_tagged(tie, {"airflow_run_id": "a"})


@pytest.mark.parametrize("bad", [None, {}, "airflow_run_id=a", {"": "a"}, {"k": None}, {"k": ["a"]}])
def test_run_tag_must_be_a_mapping_of_names_to_strings(bad):
    with pytest.raises(CmlConfigError, match="run_tag"):
        check_tags(bad)


def test_job_run_must_name_project_job_and_run():
    assert job_run_ref({"project_id": "p", "job_id": "j", "run_id": " jr ", "run_url": "x"}) == (
        "p",
        "j",
        "jr",
    )
    for bad in (
        None,
        "jr",
        {"project_id": "p", "job_id": "j"},
        {"project_id": "p", "job_id": "j", "run_id": ""},
    ):
        with pytest.raises(CmlConfigError, match="job_run"):
            job_run_ref(bad)


def test_a_wait_by_tag_pages_the_listing_until_the_run_appears_then_polls_it():
    appeared = [False]

    def answer(path, params, now):
        if path == LISTING and "page_token" not in params:
            return {
                "experiment_runs": [_tagged("x", "2024-06-01T00:00:00Z", t="other")],
                "next_page_token": "2",
            }
        if path == LISTING:  # the second page: the run once it has appeared
            appeared[0] = now >= 20
            return {
                "experiment_runs": [_tagged("r1", "2024-06-01T00:00:00Z", t="mine")] if appeared[0] else []
            }
        assert path == RUN
        return {"id": "r1", "status": "FINISHED" if now >= 30 else "RUNNING"}

    wait = Wait(EXPERIMENT_RUN, REF._replace(run_id=""), poll_interval=10, find={"tags": {"t": "mine"}})
    ended, sent, waited = _drive_by(answer, wait)
    assert ended.how == "success" and ended.ref == REF and waited == 30
    # 3 looks (2 pages each), the found run's answer from the listing, then one more poll 10 s later.
    assert sent == [LISTING] * 6 + [RUN]


def test_a_wait_by_tag_for_a_run_that_never_appears_times_out_saying_what_to_check():
    wait = Wait(EXPERIMENT_RUN, REF._replace(run_id=""), poll_interval=10, find={"tags": {"t": "mine"}})
    ended, sent, waited = _drive_by(lambda *_: {}, wait, deadline=25)  # proto3's empty listing
    assert ended.how == "timeout" and waited == 25 and set(sent) == {LISTING}
    with pytest.raises(CmlWorkloadTimeout, match=r"No run of .* tagged \{'t': 'mine'\}.*mlflow.set_tag"):
        ended.result()


def _bounded(job_status, finished_at=None, run_status="RUNNING", grace=30.0):
    def answer(path, params, now):
        if path == JOB_RUN_PATH:
            job = {"id": "jr", "status": job_status(now)}
            return {**job, "finished_at": finished_at} if finished_at else job
        return {"id": "r1", "experiment_id": "e", "status": run_status}

    bound = {"project_id": "p", "job_id": "j", "run_id": "jr", "grace": grace}
    return answer, Wait(EXPERIMENT_RUN, REF, poll_interval=10, bound=bound)


def test_a_run_left_running_by_its_ended_job_run_ends_the_wait_after_the_grace():
    # The job run ends at 20 s, with no finished_at: the grace counts from when the wait saw it end.
    answer, wait = _bounded(lambda now: "ENGINE_SUCCEEDED" if now >= 20 else "ENGINE_RUNNING")
    ended, sent, waited = _drive_by(answer, wait, deadline=600)
    assert ended.how == "abandoned" and waited == 50
    # The job run is read with each poll until it has ended, then no more.
    assert sent == [RUN, JOB_RUN_PATH, RUN, JOB_RUN_PATH, RUN, JOB_RUN_PATH, RUN, RUN, RUN]
    with pytest.raises(CmlExperimentRunError, match=r"job run jr that logs it \(job j\) ended more than 30s"):
        ended.result()
    assert Ended.of_event(ended.event()).message == ended.message  # a trigger carries it whole


def test_a_job_run_that_ended_long_ago_ends_the_wait_at_once_and_a_finished_run_is_never_bounded():
    answer, wait = _bounded(lambda now: "ENGINE_FAILED", finished_at="2000-01-01T00:00:00Z")
    ended, sent, waited = _drive_by(answer, wait)
    assert ended.how == "abandoned" and waited == 0 and sent == [RUN, JOB_RUN_PATH]
    answer, wait = _bounded(lambda now: "ENGINE_FAILED", run_status="FINISHED")
    ended, sent, _ = _drive_by(answer, wait)
    assert ended.how == "success" and sent == [RUN]


def _api_error(status: int) -> CmlApiError:
    return CmlApiError("refused", http_status=status, method="GET", path="/x")


def test_a_passing_error_looking_for_the_run_or_reading_its_job_run_is_waited_out_a_lasting_one_ends_it():
    errors = {LISTING: [_api_error(503)], JOB_RUN_PATH: [_api_error(502)]}

    def answer(path, params, now):
        if errors.get(path):
            return errors[path].pop()
        if path == LISTING:
            return {"experiment_runs": [_tagged("r1", "2024-06-01T00:00:00Z", t="mine")]}
        if path == JOB_RUN_PATH:
            return {"id": "jr", "status": "ENGINE_RUNNING"}
        return {"id": "r1", "status": "FINISHED" if now >= 30 else "RUNNING"}

    bound = {"project_id": "p", "job_id": "j", "run_id": "jr"}
    wait = Wait(
        EXPERIMENT_RUN, REF._replace(run_id=""), poll_interval=10, find={"tags": {"t": "mine"}}, bound=bound
    )
    ended, sent, _ = _drive_by(answer, wait)
    assert ended.how == "success" and sent[:2] == [LISTING, LISTING] and JOB_RUN_PATH in sent
    for path in (LISTING, JOB_RUN_PATH):  # a 404: the experiment, or the job run, is not there
        errors[path] = [_api_error(404)]
        ended, _, _ = _drive_by(answer, wait)
        assert ended.how == "error" and "refused" in ended.message
        errors[path] = []
