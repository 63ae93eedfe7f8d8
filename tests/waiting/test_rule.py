"""The one waiting rule, as a table: every status, error kind and deadline case, no I/O at all.

The sync wait, the trigger and the sensor only fetch, sleep and act on this rule's decisions; their
own tests check that wiring.
"""

from __future__ import annotations

import functools
import logging

import pytest

from airflow_provider_cml.client.attempts import resume
from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError, CmlLookupError
from airflow_provider_cml.waiting import rule as rules
from airflow_provider_cml.waiting.plan import Sleep, Wait, whole_wait
from airflow_provider_cml.waiting.rule import Next, WaitState
from airflow_provider_cml.workloads.applications import APPLICATION
from airflow_provider_cml.workloads.job_runs import (
    JOB_RUN,
    KNOWN_STATUSES,
    RETRY_START_GRACE,
    TERMINAL_STATES,
    RunRef,
)
from airflow_provider_cml.workloads.models import MODEL_DEPLOYMENT

#: The rule on a job run unless a test says otherwise.
WaitRule = functools.partial(rules.WaitRule, deadline=None, unknown_grace=600, kind=JOB_RUN)


def _run(status: str | None) -> dict:
    run = {"id": "r1", "job_id": "j1"}
    if status is not None:
        run["status"] = status
    return run


NO_ANSWER = CmlApiError("no answer", http_status=None)
RATE_LIMITED = CmlApiError("busy", http_status=429)
SERVER_ERROR = CmlApiError("down", http_status=503)
FORBIDDEN = CmlApiError("no", http_status=403)
NOT_FOUND = CmlApiError("gone", http_status=404)
REFUSED = CmlApiError("bad", http_status=400)
BAD_CONFIG = CmlConfigError("bad TLS")
LOOKUP = CmlLookupError("no such job")

RULE = WaitRule(poll_interval=10, deadline=100, unknown_grace=60)
ACTIVE = ["ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING", "ENGINE_STOPPING"]


@pytest.mark.parametrize(
    ("seen", "now", "expected", "sleep"),
    [
        # Every active status keeps the wait going, one poll interval at a time ...
        *((_run(s), 0, Next.WAIT, 10) for s in ACTIVE),
        # ... but never past the deadline: the last sleep is what is left.
        (_run("ENGINE_RUNNING"), 95, Next.WAIT, 5),
        (_run("ENGINE_RUNNING"), 100, Next.TIMED_OUT, 0),
        (_run("ENGINE_RUNNING"), 250, Next.TIMED_OUT, 0),
        # A missing status is the enum's zero value: scheduling.
        (_run(None), 0, Next.WAIT, 10),
        (_run(""), 0, Next.WAIT, 10),
        # Every terminal status ends the wait, in any case, even after the deadline.
        *((_run(s), 0, Next.FINISHED, 0) for s in sorted(TERMINAL_STATES)),
        *((_run(s.lower()), 0, Next.FINISHED, 0) for s in sorted(TERMINAL_STATES)),
        (_run("ENGINE_SUCCEEDED"), 500, Next.FINISHED, 0),
        (_run("ENGINE_FAILED"), 500, Next.FINISHED, 0),
        # Unclear statuses wait (within their grace period; the first sleep ends at most at its end).
        (_run("ENGINE_UNKNOWN"), 0, Next.WAIT, 10),
        (_run("SOMETHING_NEW"), 0, Next.WAIT, 10),
        # Transient errors keep the wait going; they still respect the deadline.
        (NO_ANSWER, 0, Next.WAIT, 10),
        (RATE_LIMITED, 0, Next.WAIT, 10),
        (SERVER_ERROR, 0, Next.WAIT, 10),
        (SERVER_ERROR, 100, Next.TIMED_OUT, 0),
        # Anything else ends it with that error, deadline or not.
        (FORBIDDEN, 0, Next.ERROR, 0),
        (NOT_FOUND, 0, Next.ERROR, 0),
        (REFUSED, 0, Next.ERROR, 0),
        (BAD_CONFIG, 0, Next.ERROR, 0),
        (LOOKUP, 500, Next.ERROR, 0),
    ],
)
def test_one_poll(seen, now, expected, sleep):
    decision = RULE.judge(seen, now, WaitState())
    assert decision.next is expected
    assert decision.sleep == sleep
    if expected is Next.FINISHED:
        assert decision.answer is seen
    if expected is Next.ERROR:
        assert decision.error is seen
    if expected is Next.WAIT and isinstance(seen, CmlApiError):
        assert decision.error is seen  # for the "could not read this time" log line
        assert not decision.changed


def test_every_known_status_is_covered_by_the_table():
    covered = set(ACTIVE) | TERMINAL_STATES | {"ENGINE_UNKNOWN"}
    assert covered == KNOWN_STATUSES


def test_no_deadline_waits_forever_on_active_runs():
    rule = WaitRule(poll_interval=30)
    decision = rule.judge(_run("ENGINE_RUNNING"), 10**9, WaitState())
    assert decision.next is Next.WAIT and decision.sleep == 30


def _walk(rule: WaitRule, timeline: list[tuple[float, object]]) -> list[Next]:
    state, seen = WaitState(), []
    for now, observation in timeline:
        decision = rule.judge(observation, now, state)
        state = decision.state
        seen.append(decision.next)
    return seen


def test_unknown_ends_the_wait_after_the_grace_period_counted_from_when_it_began():
    rule = WaitRule(poll_interval=10, unknown_grace=60)
    timeline = [
        (0, _run("ENGINE_RUNNING")),
        (10, _run("ENGINE_UNKNOWN")),  # unclear since 10
        (40, NO_ANSWER),  # a failed read does not reset the clock
        (69, _run("ENGINE_UNKNOWN")),
        (70, _run("ENGINE_UNKNOWN")),  # 60 s since it began
    ]
    assert _walk(rule, timeline) == [Next.WAIT, Next.WAIT, Next.WAIT, Next.WAIT, Next.UNCLEAR]


def test_a_clear_status_resets_the_grace_period():
    rule = WaitRule(poll_interval=10, unknown_grace=60)
    timeline = [
        (0, _run("ENGINE_UNKNOWN")),
        (50, _run("ENGINE_RUNNING")),
        (100, _run("ENGINE_UNKNOWN")),
        (150, _run("ENGINE_UNKNOWN")),
        (160, _run("ENGINE_UNKNOWN")),
    ]
    assert _walk(rule, timeline) == [Next.WAIT, Next.WAIT, Next.WAIT, Next.WAIT, Next.UNCLEAR]


def test_the_sleep_never_passes_the_end_of_the_grace_period():
    rule = WaitRule(poll_interval=30, unknown_grace=45)
    state = rule.judge(_run("ENGINE_UNKNOWN"), 0, WaitState()).state
    assert rule.judge(_run("ENGINE_UNKNOWN"), 30, state).sleep == 15


def test_no_grace_period_waits_on_unknown_forever():
    rule = WaitRule(poll_interval=10, unknown_grace=None)
    timeline = [(0, _run("ENGINE_UNKNOWN")), (10**6, _run("ENGINE_UNKNOWN"))]
    assert _walk(rule, timeline) == [Next.WAIT, Next.WAIT]


def test_status_changes_are_flagged_once():
    rule = WaitRule(poll_interval=10)
    state, changed = WaitState(), []
    for status in ["ENGINE_SCHEDULING", "ENGINE_SCHEDULING", "engine_running", "ENGINE_RUNNING"]:
        decision = rule.judge(_run(status), 0, state)
        state = decision.state
        changed.append(decision.changed)
    assert changed == [True, False, True, False]
    assert state.status == "ENGINE_RUNNING"


@pytest.mark.parametrize(
    ("next_", "waited", "words"),
    [
        (Next.TIMED_OUT, 25, ("after 25s", "Raise timeout if the run needs longer")),
        (Next.TIMED_OUT, None, ("when the task's timeout ran out", "Raise timeout")),
        (Next.UNCLEAR, None, ("for 60s", "unknown_grace")),
    ],
)
def test_why_the_wait_gave_up(next_, waited, words):
    rule = WaitRule(poll_interval=10, unknown_grace=60)
    when, advice = rule.why_gave_up(next_, True, waited)
    assert words[0] in when and words[1] in advice


# -- Job Retry: the platform starts each retry as a new run of the job -----------------------------
# A whole wait (waiting.plan) driven against canned answers and a fake clock: the job-run kind's
# retries strategy, followed by the generic plan.

RETRY_JOB = {
    "retry_enabled": True,
    "max_retry": 2,
    "retry_delay": 30,
    "retry_for_script_failure": True,
    "retry_for_timedout_runs": False,
}
JOB, RUNS = "/projects/p/jobs/j", "/projects/p/jobs/j/runs"


def _failed(run_id: str = "r1", status: str = "ENGINE_FAILED", minute: int = 0) -> dict:
    return {"id": run_id, "status": status, "created_at": f"2024-06-01T00:{minute:02d}:00Z"}


def _listing(*runs: dict) -> dict:
    return {"job_runs": list(runs)}


def _drive(
    answers: dict, *, deadline: float | None = None, follow: bool = True, kill_at: float | None = None
):
    """Run a whole wait on run r1: each path answers its list in turn (the last repeats)."""
    clock, sent = [0.0], []
    wait = Wait(JOB_RUN, RunRef("p", "j", "r1"), poll_interval=10, follow_retries=follow)
    steps = whole_wait(wait, deadline, lambda: clock[0], logging.getLogger(__name__), 5.0)
    done, value = resume(steps)
    while not done:
        if isinstance(value, Sleep):
            clock[0] += value.seconds
            done, value = resume(steps, kill_at is not None and clock[0] >= kill_at)
            continue
        sent.append(value.path)
        queue = answers[value.path]
        done, value = resume(steps, queue.pop(0) if len(queue) > 1 else queue[0])
    return value, sent, clock[0]


def test_a_retryable_failure_reads_the_jobs_retry_settings_once_and_a_stop_never():
    ended, sent, _ = _drive({f"{RUNS}/r1": [_failed()], JOB: [{}]})
    assert ended.how == "failed" and sent.count(JOB) == 1  # the job does not retry: its failure stands
    ended, sent, _ = _drive({f"{RUNS}/r1": [_failed(status="ENGINE_STOPPED")]})
    assert (
        ended.how == "failed" and JOB not in sent
    )  # a stopped run is never retried: no need to read the job
    ended, sent, _ = _drive({f"{RUNS}/r1": [_failed()]}, follow=False)
    assert ended.how == "failed" and sent == [f"{RUNS}/r1"]


@pytest.mark.parametrize(
    ("job", "status", "retried"),
    [
        (RETRY_JOB, "ENGINE_FAILED", True),
        (RETRY_JOB, "ENGINE_TIMEDOUT", False),  # the job does not retry timeouts
        ({**RETRY_JOB, "retry_enabled": False}, "ENGINE_FAILED", False),
        ({**RETRY_JOB, "max_retry": 0}, "ENGINE_FAILED", False),
        (
            {**RETRY_JOB, "retry_for_script_failure": False, "retry_for_system_failure": True},
            "ENGINE_FAILED",
            True,
        ),
        ({**RETRY_JOB, "retry_for_skipped_runs": True}, "ENGINE_SKIPPED", True),
    ],
)
def test_which_failures_wait_for_a_retry(job, status, retried):
    retry = {"id": "r2", "status": "ENGINE_SUCCEEDED", "created_at": "2024-06-01T00:01:00Z"}
    ended, _, _ = _drive({f"{RUNS}/r1": [_failed(status=status)], JOB: [job], RUNS: [_listing(retry)]})
    assert (ended.how, ended.ref.run_id) == (("success", "r2") if retried else ("failed", "r1"))


def test_follows_retries_to_the_final_run_and_counts_them():
    r2 = {**_failed("r2", minute=1), "status": "ENGINE_RUNNING"}
    r3 = {**_failed("r3", minute=2), "status": "ENGINE_SUCCEEDED"}
    ended, sent, _ = _drive(
        {
            f"{RUNS}/r1": [_failed("r1")],
            JOB: [RETRY_JOB],
            RUNS: [_listing(), _listing(r2), _listing(r3, r2)],  # newest first
            f"{RUNS}/r2": [{**r2, "status": "ENGINE_FAILED"}],
        }
    )
    assert (ended.how, ended.ref.run_id) == ("success", "r3")
    assert ended.note == " on the platform's retry 2 of 2" and sent.count(JOB) == 1


def test_the_last_allowed_retry_failing_ends_the_wait():
    r2 = _failed("r2", minute=1)
    ended, _, _ = _drive(
        {f"{RUNS}/r1": [_failed("r1")], JOB: [{**RETRY_JOB, "max_retry": 1}], RUNS: [_listing(r2)]}
    )
    assert (ended.how, ended.ref.run_id, ended.note) == ("failed", "r2", " on the platform's retry 1 of 1")


def test_a_retry_that_never_comes_ends_the_wait_with_the_failure():
    ended, _, waited = _drive({f"{RUNS}/r1": [_failed("r1")], JOB: [RETRY_JOB], RUNS: [_listing()]})
    assert (ended.how, ended.ref.run_id) == ("failed", "r1")
    assert 30 + RETRY_START_GRACE <= waited < 30 + RETRY_START_GRACE + 10


def test_the_deadline_still_applies_while_waiting_for_a_retry():
    ended, _, waited = _drive(
        {f"{RUNS}/r1": [_failed("r1")], JOB: [RETRY_JOB], RUNS: [_listing()]}, deadline=20
    )
    assert ended.how == "timeout" and waited == 20


def test_a_kill_while_a_retry_is_awaited_ends_the_wait_as_interrupted_not_timed_out():
    answers = {f"{RUNS}/r1": [_failed("r1")], JOB: [RETRY_JOB], RUNS: [_listing()]}
    ended, _, _ = _drive(answers, kill_at=15)
    assert (ended.how, ended.ref.run_id) == ("interrupted", "r1")
    assert "interrupted (the task is being killed)" in ended.message


def test_polls_keep_their_cadence_whatever_the_answers_latency():
    from airflow_provider_cml.waiting.rule import on_cadence

    assert on_cadence(30.0, 0.4) == pytest.approx(29.6)
    assert on_cadence(30.0, 45.0) == 0.0  # a poll slower than the interval: poll at once
    assert on_cadence(30.0, 0.0) == 30.0


@pytest.mark.parametrize(
    ("kind", "limit", "advice"),
    [
        (MODEL_DEPLOYMENT, "timeout", "Raise timeout if the model deployment needs longer"),
        (APPLICATION, "execution_timeout", "Raise execution_timeout if the application needs longer"),
        (JOB_RUN, "execution_timeout", "Raise execution_timeout if the run needs longer"),
    ],
)
def test_a_timeout_names_what_was_waited_on_and_the_setting_that_ended_it(kind, limit, advice):
    rule = WaitRule(poll_interval=10, deadline=5, kind=kind, limit=limit)
    decision = rule.judge({"id": "w1", "status": "pending"}, 10, WaitState())
    assert decision.next is Next.TIMED_OUT
    when, said = rule.why_gave_up(decision.next, decision.state.renewed, None)
    assert said == advice and when == f"when the task's {limit} ran out"
    assert "job" not in said
