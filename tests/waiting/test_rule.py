"""The one waiting rule, as a table: every status, error kind and deadline case, no I/O at all.

The sync wait, the trigger and the sensor only fetch, sleep and act on this rule's decisions; their
own tests check that wiring.
"""

from __future__ import annotations

import pytest

from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError, CmlLookupError
from airflow_provider_cml.waiting.rule import (
    RETRY_START_GRACE,
    JobRetry,
    Next,
    WaitRule,
    WaitState,
    attempt_note,
)
from airflow_provider_cml.workloads.applications import APPLICATION
from airflow_provider_cml.workloads.job_runs import JOB_RUN, KNOWN_STATUSES, NO_RETRY_YET, TERMINAL_STATES
from airflow_provider_cml.workloads.models import MODEL_DEPLOYMENT


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

RULE = WaitRule(poll_interval=10, deadline=100, unknown_grace=60, follow_retries=False)
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
        assert decision.run is seen
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
    decision = rule.judge(_run("ENGINE_UNKNOWN"), 0, WaitState())
    when, advice = rule.why_gave_up(type(decision)(next_, decision.state), waited)
    assert words[0] in when and words[1] in advice


# -- Job Retry: the platform starts each retry as a new run of the job -----------------------------

RETRY_JOB = {
    "retry_enabled": True,
    "max_retry": 2,
    "retry_delay": 30,
    "retry_for_script_failure": True,
    "retry_for_timedout_runs": False,
}


def _failed(run_id: str = "r1", status: str = "ENGINE_FAILED") -> dict:
    return {"id": run_id, "status": status, "created_at": "2024-06-01T00:00:00Z"}


def test_a_retryable_failure_asks_for_the_jobs_retry_settings_once():
    rule = WaitRule(poll_interval=10)
    assert rule.judge(_failed(), 0, WaitState()).next is Next.NEED_JOB
    # a stopped run is never retried: no need to read the job
    assert rule.judge(_failed(status="ENGINE_STOPPED"), 0, WaitState()).next is Next.FINISHED
    assert rule.knowing(None).judge(_failed(), 0, WaitState()).next is Next.FINISHED


@pytest.mark.parametrize(
    ("job", "status", "expected"),
    [
        (RETRY_JOB, "ENGINE_FAILED", Next.WAIT),
        (RETRY_JOB, "ENGINE_TIMEDOUT", Next.FINISHED),  # the job does not retry timeouts
        ({**RETRY_JOB, "retry_enabled": False}, "ENGINE_FAILED", Next.FINISHED),
        ({**RETRY_JOB, "max_retry": 0}, "ENGINE_FAILED", Next.FINISHED),
        (
            {**RETRY_JOB, "retry_for_script_failure": False, "retry_for_system_failure": True},
            "ENGINE_FAILED",
            Next.WAIT,
        ),
        ({**RETRY_JOB, "retry_for_skipped_runs": True}, "ENGINE_SKIPPED", Next.WAIT),
    ],
)
def test_which_failures_wait_for_a_retry(job, status, expected):
    rule = WaitRule(poll_interval=10).knowing(JobRetry.of(job))
    decision = rule.judge(_failed(status=status), 0, WaitState())
    assert decision.next is expected
    if expected is Next.WAIT:
        assert decision.state.failed["id"] == "r1" and decision.run["id"] == "r1"


def test_follows_retries_to_the_final_run_and_counts_them():
    rule = WaitRule(poll_interval=10).knowing(JobRetry.of(RETRY_JOB))
    timeline = [
        (0, _failed("r1")),  # the started run fails: a retry is expected
        (10, NO_RETRY_YET),
        (40, {"id": "r2", "status": "ENGINE_RUNNING"}),  # retry 1
        (50, _failed("r2")),  # fails too: retry 2 expected
        (90, {"id": "r3", "status": "ENGINE_SUCCEEDED"}),  # retry 2 succeeds
    ]
    state, seen = WaitState(), []
    for now, observation in timeline:
        decision = rule.judge(observation, now, state)
        state = decision.state
        seen.append((decision.next, state.run_id, state.attempt))
    assert seen == [
        (Next.WAIT, "r1", 0),
        (Next.WAIT, "r1", 0),
        (Next.WAIT, "r2", 1),
        (Next.WAIT, "r2", 1),
        (Next.FINISHED, "r3", 2),
    ]
    assert attempt_note(state, rule) == " on the platform's retry 2 of 2"


def test_the_last_allowed_retry_failing_ends_the_wait():
    rule = WaitRule(poll_interval=10).knowing(JobRetry.of({**RETRY_JOB, "max_retry": 1}))
    state = rule.judge(_failed("r1"), 0, WaitState()).state
    state = rule.judge({"id": "r2", "status": "ENGINE_RUNNING"}, 30, state).state
    decision = rule.judge(_failed("r2"), 40, state)
    assert decision.next is Next.FINISHED and decision.run["id"] == "r2" and decision.state.attempt == 1


def test_a_retry_that_never_comes_ends_the_wait_with_the_failure():
    rule = WaitRule(poll_interval=10).knowing(JobRetry.of(RETRY_JOB))
    state = rule.judge(_failed("r1"), 0, WaitState()).state
    due = 30 + RETRY_START_GRACE
    assert rule.judge(NO_RETRY_YET, due - 1, state).next is Next.WAIT
    decision = rule.judge(NO_RETRY_YET, due, state)
    assert decision.next is Next.FINISHED and decision.run["id"] == "r1"


def test_the_deadline_still_applies_while_waiting_for_a_retry():
    rule = WaitRule(poll_interval=10, deadline=20).knowing(JobRetry.of(RETRY_JOB))
    state = rule.judge(_failed("r1"), 0, WaitState()).state
    assert rule.judge(NO_RETRY_YET, 20, state).next is Next.TIMED_OUT


def test_polls_keep_their_cadence_whatever_the_answers_latency():
    from airflow_provider_cml.waiting.rule import Decision, Next, WaitState, on_cadence

    waiting = Decision(Next.WAIT, WaitState(), sleep=30.0)
    assert on_cadence(waiting, 0.4).sleep == pytest.approx(29.6)
    assert on_cadence(waiting, 45.0).sleep == 0.0  # a poll slower than the interval: poll at once
    assert on_cadence(waiting, 0.0) is waiting
    done = Decision(Next.FINISHED, WaitState())
    assert on_cadence(done, 0.4) is done


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
    when, said = rule.why_gave_up(decision, None)
    assert said == advice and when == f"when the task's {limit} ran out"
    assert "job" not in said
