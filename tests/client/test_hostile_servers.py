"""The provider against servers that answer badly on purpose (real HTTP on 127.0.0.1).

One section per fault category; each test asserts the exception type (or the trigger's single
event), the message, the time taken and what the server saw. Sync and trigger paths alike.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import pytest

from airflow_provider_cml.client.create_once import LOOKUPS
from airflow_provider_cml.client.listing import MAX_EMPTY_PAGES
from airflow_provider_cml.exceptions import (
    CmlApiError,
    CmlConfigError,
    CmlException,
    CmlJobRunError,
    CmlJobRunTimeout,
)
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.hooks.starting import START_BUDGET
from airflow_provider_cml.triggers.cml import CmlJobRunTrigger, CmlWorkloadTrigger
from airflow_provider_cml.validation import START_TOKEN_ENV
from tests.hostile import Budget, Seen, answer, bad_gzip_answer, budgets, cut_answer, hostile

# The hang guard: a call that ignores its deadline fails here instead of holding the suite.
pytestmark = pytest.mark.timeout(120)

KEY = "hostile-test-key-5f1e2d"
PID, JID, RID = "aaaa-bbbb-cccc-dddd", "jjjj-kkkk-llll-mmmm", "r000000000000001"
RUNS = f"/api/v2/projects/{PID}/jobs/{JID}/runs"
RUN = f"{RUNS}/{RID}"


def run_json(status: str = "ENGINE_RUNNING", **fields: Any) -> dict[str, Any]:
    return {"id": RID, "job_id": JID, "project_id": PID, "status": status, **fields}


def _hook(monkeypatch, url: str, *, password: str = KEY, **extra: Any) -> CmlHook:
    settings = {"timeout": 2, "max_retries": 1, "retry_backoff": 0.01, **extra}
    conn = {"conn_type": "cml", "host": url, "password": password, "extra": settings}
    monkeypatch.setenv("AIRFLOW_CONN_CML_HOSTILE", json.dumps(conn))
    return CmlHook("cml_hostile")


def _timed(call) -> tuple[BaseException | None, Any, float]:
    started = time.monotonic()
    try:
        result = call()
    except BaseException as exc:  # the test inspects it
        return exc, None, time.monotonic() - started
    return None, result, time.monotonic() - started


def hostile_trigger(*, run_id: str = RID, end_in: float | None = None, **kwargs: Any) -> CmlWorkloadTrigger:
    """A trigger on the hostile server's run (connection ``cml_hostile``), polling every 0.2 s."""
    end_time = None if end_in is None else time.time() + end_in
    return CmlJobRunTrigger(
        project_id=PID,
        job_id=JID,
        run_id=run_id,
        conn_id="cml_hostile",
        poll_interval=0.2,
        end_time=end_time,
        **kwargs,
    )


def _trigger_event(
    monkeypatch, url: str, *, run_id: str = RID, end_in: float | None = None, **extra
) -> tuple[dict, float]:
    _hook(monkeypatch, url, **extra)  # sets the connection
    trigger = hostile_trigger(run_id=run_id, end_in=end_in)

    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    started = time.monotonic()
    event = asyncio.run(asyncio.wait_for(first(), 30))
    return event, time.monotonic() - started


def _paths(server) -> list[str]:
    return [f"{s.method} {s.path.split('?')[0]}" for s in server.seen]


# -- 1. redirects: never followed; a redirected start is "outcome unknown" --------------------------


def test_a_307_on_the_start_never_sends_the_body_to_the_other_host(monkeypatch):
    with hostile(lambda r: [answer(200, run_json())]) as other:

        def main(request: Seen):
            if request.method == "POST":
                return [answer(307, {}, headers={"Location": f"{other.url}{request.path}"})]
            return [answer(200, {"job_runs": []})]

        with hostile(main) as server:
            hook = _hook(monkeypatch, server.url)
            error, _, _ = _timed(lambda: hook.start_job_run(PID, JID, {"DB_PASS": "secret-value-1"}))
    assert isinstance(error, CmlApiError) and "redirect (HTTP 307) to 127.0.0.1" in str(error)
    assert "does not follow redirects" in str(error)
    assert other.seen == []  # nothing, overrides included, reached the redirect's target
    assert _paths(server).count(f"POST {RUNS}") == 1  # looked for the run; never resent
    assert _paths(server).count(f"GET {RUNS}") == LOOKUPS


def test_a_302_on_a_read_is_an_error_sync_and_trigger(monkeypatch):
    def main(request: Seen):
        return [answer(302, None, headers={"Location": "http://elsewhere.example/api/v2/projects"})]

    with hostile(main) as server:
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url).get_job_run(PID, JID, RID))
        assert isinstance(error, CmlApiError) and "redirect (HTTP 302) to elsewhere.example" in str(error)
        assert len(server.seen) == 1
        event, _ = _trigger_event(monkeypatch, server.url)
    assert event["status"] == "error" and "redirect (HTTP 302)" in event["message"]


def test_http_to_https_redirect_tells_to_write_https(monkeypatch):
    with hostile(
        lambda r: [answer(301, None, headers={"Location": "https://wb.example/api/v2/x"})]
    ) as server:
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url).get_job_run(PID, JID, RID))
    assert isinstance(error, CmlApiError) and "write the host as https://" in str(error)


def test_a_redirect_loop_is_one_error_not_too_many_redirects(monkeypatch):
    with hostile(lambda r: [answer(301, None, headers={"Location": r.path})]) as server:
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url).get_job_run(PID, JID, RID))
    assert type(error) is CmlApiError and len(server.seen) == 1


# -- 2. paths: every segment checked and encoded before any request ---------------------------------


@pytest.mark.parametrize("bad", ["../../x/runs/victim", "r?x=1", "r#frag", "a/b", "", "  ", "r\n1", ".."])
def test_ids_that_would_change_the_path_are_refused_before_any_request(monkeypatch, bad):
    with hostile(lambda r: [answer(200, run_json())]) as server:
        hook = _hook(monkeypatch, server.url)
        for call in (lambda: hook.stop_job_run(PID, JID, bad), lambda: hook.get_job_run(PID, JID, bad)):
            error, _, _ = _timed(call)
            assert (
                isinstance(error, CmlConfigError) and "run_id" in str(error) and "not a valid" in str(error)
            )
        event, _ = _trigger_event(monkeypatch, server.url, run_id=bad)
    assert event["status"] == "error" and "run_id" in event["message"]
    assert server.seen == []


@pytest.mark.parametrize("project", ["../alice/x", "alice/..", "al?ce/x", "alice/x#y"])
def test_v1_owner_and_slug_are_checked(monkeypatch, project):
    with hostile(lambda r: [answer(200, {"engine_id": "e"})]) as server:
        error, _, _ = _timed(
            lambda: _hook(monkeypatch, server.url, api_version="v1").start_job_run(project, "12")
        )
    assert isinstance(error, CmlConfigError) and server.seen == []


def test_safe_ids_are_percent_encoded(monkeypatch):
    with hostile(lambda r: [answer(200, run_json("ENGINE_SUCCEEDED"))]) as server:
        _hook(monkeypatch, server.url).get_job_run(PID, JID, "r 1%")
    assert server.seen[0].path == f"{RUNS}/r%201%25"


# -- 3. credentials ------------------------------------------------------------------------------------


def test_surrounding_whitespace_in_the_key_is_stripped(monkeypatch):
    with hostile(lambda r: [answer(200, run_json())]) as server:
        _hook(monkeypatch, server.url, password=f"  {KEY}\n").get_job_run(PID, JID, RID)
    assert server.seen[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("password", [f"{KEY[:5]}\x01{KEY[5:]}", f"{KEY}é", f"{KEY[:5]} {KEY[5:]}"])
def test_keys_no_api_would_issue_are_refused_without_showing_them(monkeypatch, password):
    with hostile(lambda r: [answer(200, run_json())]) as server:
        error, _, _ = _timed(
            lambda: _hook(monkeypatch, server.url, password=password).get_job_run(PID, JID, RID)
        )
        event, _ = _trigger_event(monkeypatch, server.url, password=password)
    assert isinstance(error, CmlConfigError) and "API key" in str(error)
    assert event["status"] == "error" and "API key" in event["message"]
    for text in (str(error), json.dumps(event)):
        assert KEY[:5] not in text and KEY[6:] not in text
    assert server.seen == []


def test_user_and_password_in_the_host_are_refused_and_never_printed(monkeypatch):
    with hostile(lambda r: [answer(200, run_json())]) as server:
        url = server.url.replace("http://", "http://admin:pa55w0rd-in-url@")
        error, _, _ = _timed(lambda: _hook(monkeypatch, url).get_job_run(PID, JID, RID))
        event, _ = _trigger_event(monkeypatch, url)
    assert isinstance(error, CmlConfigError) and "user name or password" in str(error)
    assert event["status"] == "error" and "user name or password" in event["message"]
    assert "pa55w0rd" not in str(error) + json.dumps(event) and server.seen == []


@pytest.mark.parametrize(
    ("host", "times"),
    [("cml.internal.example", 1), ("10.1.2.3", 1), ("127.0.0.1", 0), ("localhost", 0)],
)
def test_plain_http_warns_once_per_process_and_never_for_this_machine(
    monkeypatch, caplog, capfd, host, times
):
    from airflow_provider_cml.client import attempts as answers

    monkeypatch.setattr(answers, "_warned", set())
    with hostile(lambda r: [answer(200, run_json())]) as server:
        url = server.url.replace("127.0.0.1", host)
        for _ in range(3):  # three hooks (tasks, resumes) in one process
            hook = _hook(monkeypatch, url, timeout=1, max_retries=0)
            if times == 0:  # this machine: a real exchange
                assert hook.get_job_run(PID, JID, RID)["id"] == RID
            else:  # not reachable from here: building the transport is what warns
                hook.transport  # noqa: B018
    printed = "".join(capfd.readouterr())
    warning = "over plain HTTP, unencrypted"
    assert max(caplog.text.count(warning), printed.count(warning)) == times
    assert KEY not in caplog.text + printed


# -- 4. answers that are not the API's JSON objects ---------------------------------------------------

NOT_OBJECTS = [
    ("list", answer(200, []), "JSON list where a JSON object was expected"),
    ("null", answer(200, None, raw=b"null"), "JSON NoneType where a JSON object was expected"),
    ("number", answer(200, 3), "JSON int where a JSON object was expected"),
    ("empty 200", answer(200, None), "empty body"),
    ("empty 204", answer(204, None), "empty body"),
    ("deep nesting", answer(200, None, raw=b"[" * 100000 + b"]" * 100000), "nested deeper than"),
    ("html", answer(200, None, raw=b"<html>login</html>"), "HTML page"),
]


@pytest.mark.parametrize(("case", "raw", "words"), NOT_OBJECTS, ids=[c[0] for c in NOT_OBJECTS])
def test_answers_that_are_not_objects(monkeypatch, case, raw, words):
    with hostile(lambda r: [raw]) as server:
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url).get_job_run(PID, JID, RID))
        assert type(error) is CmlApiError and words in str(error), repr(error)
        assert len(server.seen) == 1
        event, _ = _trigger_event(monkeypatch, server.url)
    assert event["status"] == "error" and words in event["message"]


@pytest.mark.parametrize(
    ("case", "raw"), [("cut body", cut_answer(run_json())), ("bad gzip", bad_gzip_answer())]
)
def test_broken_transfers_are_transient_errors(monkeypatch, case, raw):
    with hostile(lambda r: [raw]) as server:
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url).get_job_run(PID, JID, RID))
        assert type(error) is CmlApiError and "No answer from Cloudera AI" in str(error), repr(error)
        assert len(server.seen) == 2  # retried once (max_retries=1), then given up
        server.seen.clear()
        event, _ = _trigger_event(monkeypatch, server.url, end_in=1.0)
    assert event["status"] == "timeout"  # kept polling through them until its deadline
    assert len(server.seen) >= 2


def test_a_cut_answer_to_the_start_is_an_unknown_outcome_looked_up_by_token(monkeypatch):
    tokens: list[str] = []

    def main(request: Seen):
        if request.method == "POST":
            tokens.append(request.json()["environment"][START_TOKEN_ENV])
            return [cut_answer(run_json())]
        return [answer(200, {"job_runs": [run_json(environment=json.dumps({START_TOKEN_ENV: tokens[0]}))]})]

    with hostile(main) as server:
        run = _hook(monkeypatch, server.url).start_job_run(PID, JID)
    assert run["id"] == RID and _paths(server) == [f"POST {RUNS}", f"GET {RUNS}"]


def test_a_bad_port_is_a_config_error(monkeypatch):
    error, _, _ = _timed(lambda: _hook(monkeypatch, "http://127.0.0.1:99999").get_job_run(PID, JID, RID))
    assert isinstance(error, CmlConfigError) and "not a workbench URL" in str(error)


# -- 5. listings that never end -------------------------------------------------------------------------


def test_a_repeated_page_token_stops_the_listing(monkeypatch):
    page = {"projects": [{"id": "p", "name": "x"}], "next_page_token": "same"}
    with hostile(lambda r: [answer(200, page)]) as server:
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url).list_projects())
    assert type(error) is CmlApiError and "never ends" in str(error) and len(server.seen) == 2


def test_empty_pages_that_keep_promising_more_stop_the_listing(monkeypatch):
    with hostile(
        lambda r: [answer(200, {"projects": [], "next_page_token": f"t{time.monotonic()}"})]
    ) as server:
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url).list_projects())
    assert type(error) is CmlApiError and "never ends" in str(error) and len(server.seen) == MAX_EMPTY_PAGES


# -- 6. deadlines: per request, per start, per wait ---------------------------------------------------


def test_a_trickling_server_cannot_hold_a_request_past_its_timeout(monkeypatch):
    with hostile(lambda r: [("trickle", answer(200, run_json()), 0.4)]) as server:
        error, _, _ = _timed(
            lambda: _hook(monkeypatch, server.url, timeout=1, max_retries=0).get_job_run(PID, JID, RID)
        )
    assert type(error) is CmlApiError and "no complete answer within 1s" in str(error)
    assert len(server.seen) == 1


def test_a_silent_server_holds_a_start_for_one_budget_at_most(monkeypatch):
    with hostile(lambda r: [("sleep", 30)]) as server:
        hook = _hook(monkeypatch, server.url, timeout=1, max_retries=5)
        with budgets() as limits:
            error, _, _ = _timed(lambda: hook.start_job_run(PID, JID))
    assert type(error) is CmlApiError and "No answer" in str(error)
    # Every attempt and look-up had to end within the start's budget (5 retries would take 6).
    assert limits and all(b.limit <= 1 for b in limits)
    assert max(b.ends for b in limits) <= limits[0].now + START_BUDGET * 1 + 0.01
    assert _paths(server).count(f"POST {RUNS}") <= 2  # looked for it in between; never a storm


def test_a_silent_server_holds_a_job_create_for_one_budget_at_most(monkeypatch):
    from airflow_provider_cml.client.create_once import CREATE_BUDGET

    with hostile(lambda r: [("sleep", 30)]) as server:
        hook = _hook(monkeypatch, server.url, timeout=1, max_retries=5)
        spec = {"name": "nightly", "script": "a.py", "runtime_identifier": "rt"}
        with budgets() as limits:
            error, _, _ = _timed(lambda: hook.jobs.create_job(PID, spec))
    assert isinstance(error, CmlApiError) and "No answer" in str(error)
    assert limits and max(b.ends for b in limits) <= limits[0].now + CREATE_BUDGET * 1 + 0.01
    assert _paths(server).count(f"POST /api/v2/projects/{PID}/jobs") <= 2


def test_a_wait_ends_on_time_when_reads_hang_and_still_sends_the_stop(monkeypatch):
    def main(request: Seen):
        return [answer(200, run_json())] if request.method == "POST" else [("sleep", 30)]

    with hostile(main) as server:
        hook = _hook(monkeypatch, server.url, timeout=1, max_retries=3)
        with budgets() as limits:
            error, _, took = _timed(
                lambda: hook.wait_for_job_run(PID, JID, RID, poll_interval=0.5, timeout=2, run_url="L")
            )
    assert isinstance(error, CmlJobRunTimeout) and "after 2s; it has been asked to stop" in str(error)
    assert took >= 2
    _assert_within_the_wait_and_one_stop(limits, wait=2)
    assert f"POST {RUN}:stop" in _paths(server)


def test_retry_after_cannot_stretch_a_wait_and_a_refused_stop_is_reported_as_such(monkeypatch):
    with hostile(
        lambda r: [answer(429, {"code": 8, "message": "slow down"}, headers={"Retry-After": "1000"})]
    ) as server:
        hook = _hook(monkeypatch, server.url, timeout=1, max_retries=5)
        with budgets() as limits:
            error, _, _ = _timed(
                lambda: hook.wait_for_job_run(PID, JID, RID, poll_interval=0.5, timeout=2, run_url="L")
            )
    assert isinstance(error, CmlJobRunTimeout)
    _assert_within_the_wait_and_one_stop(limits, wait=2)  # Retry-After: 1000 stretched nothing
    assert "it could not be stopped and may still be running" in str(error)
    assert "asked to stop" not in str(error)


def _operator_run(monkeypatch, url: str, **kwargs: Any) -> tuple[BaseException | None, float]:
    from airflow_provider_cml.operators.cml import CmlRunJobOperator
    from tests.operators.test_cml import StubTI

    _hook(monkeypatch, url, timeout=1, max_retries=3)
    operator = CmlRunJobOperator(
        task_id="t", project=PID, job=JID, cml_conn_id="cml_hostile", poll_interval=0.5, **kwargs
    )
    error, _, took = _timed(lambda: operator.execute({"ti": StubTI()}))
    return error, took


def _assert_within_the_wait_and_one_stop(limits: list[Budget], *, wait: float, request: float = 1) -> None:
    """Every read ended by the wait's deadline; after it only the stop went on (a fresh read of the
    status, then the stop request), within one request timeout."""
    assert limits, "no attempt was made"
    # An operator's deadline is wall-clock time (it outlives a deferral), put on the monotonic clock
    # by reading both clocks in turn; under load the two reads can be a scheduler slice apart, so
    # the wait's own deadline may land a few tens of milliseconds after the first request's start.
    deadline = limits[0].now + wait + 0.1
    late = [b for b in limits if b.ends > deadline]
    assert late and late[-1].path.endswith(":stop"), late
    assert max(b.ends for b in late) <= min(b.now for b in late) + request + 0.01, late


def test_an_operator_wait_overruns_its_timeout_by_one_request_timeout_at_most_when_all_hangs(monkeypatch):
    """The start is answered; every read after it (link, polls, retry settings) and the stop hang."""

    def main(request: Seen):
        return [answer(200, run_json())] if request.path.split("?")[0] == RUNS else [("sleep", 30)]

    with hostile(main) as server, budgets() as limits:
        error, took = _operator_run(monkeypatch, server.url, timeout=2)
    assert isinstance(error, CmlJobRunTimeout), repr(error)
    assert took >= 2
    _assert_within_the_wait_and_one_stop(limits, wait=2)
    assert f"POST {RUN}:stop" in _paths(server)


def test_an_operator_busy_wait_is_not_stretched_by_retry_after(monkeypatch):
    """The job is busy; every later answer is 429 with Retry-After: 3600."""
    busy = answer(400, {"code": 9, "message": "job run for job x already active"})
    slow_down = answer(429, {"code": 8, "message": "slow down"}, headers={"Retry-After": "3600"})

    def main(request: Seen):
        return [busy] if request.method == "POST" else [slow_down]

    with hostile(main) as server, budgets() as limits:
        error, _ = _operator_run(monkeypatch, server.url, timeout=2, if_active="wait")
    assert isinstance(error, CmlException), repr(error)
    assert limits and max(b.ends for b in limits) <= limits[0].now + 2 + 0.01  # Retry-After: 3600 too
    assert not any(p.endswith(":stop") for p in _paths(server))  # not ours: never stopped


def test_a_trigger_deadline_holds_when_reads_hang(monkeypatch):
    with hostile(lambda r: [("sleep", 30)]) as server, budgets() as limits:
        event, _ = _trigger_event(monkeypatch, server.url, end_in=1.5, timeout=1)
    assert event["status"] == "timeout"
    _assert_within_the_wait_and_one_stop(limits, wait=1.5)
    assert "could not be stopped" in event["message"] or "asked to stop" in event["message"]


# -- 8. everything checked before a start ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"run_url_template": "{base_url}/{nope}"}, "unknown placeholders"),
        ({"run_url_template": "{base_url"}, "not a valid template"),
        ({"timeout": "nan"}, "finite"),
        ({"max_retries": "inf"}, "finite"),
        ({"retry_backoff": float("nan")}, "finite"),
    ],
)
def test_bad_connection_settings_fail_before_any_request(monkeypatch, extra, words):
    with hostile(lambda r: [answer(200, run_json())]) as server:
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url, **extra).start_job_run(PID, JID))
    assert isinstance(error, CmlConfigError) and words in str(error) and server.seen == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"environment": "A=1"}, "must be a dict"),
        ({"environment": ["A"]}, "must be a dict"),
        ({"environment": {"A": "x\x00y"}}, "NUL"),
        ({"environment": {START_TOKEN_ENV: "mine"}}, "may not set"),
        ({"environment": {"A": math.nan}}, "accepts only strings"),
        ({"arguments": "a\x00b"}, "NUL"),
        ({"poll_interval": math.nan}, "finite"),
        ({"timeout": math.inf}, "finite"),
    ],
)
def test_bad_task_arguments_fail_before_any_request(monkeypatch, kwargs, words):
    from airflow_provider_cml.operators.cml import CmlRunJobOperator
    from tests.operators.test_cml import StubTI

    with hostile(lambda r: [answer(200, run_json())]) as server:
        _hook(monkeypatch, server.url)

        def run() -> Any:
            operator = CmlRunJobOperator(
                task_id="t", project=PID, job=JID, cml_conn_id="cml_hostile", **kwargs
            )
            return operator.execute({"ti": StubTI()})

        error, _, _ = _timed(run)
    assert isinstance(error, CmlConfigError) and words in str(error), repr(error)
    assert server.seen == []


def test_an_empty_sensor_run_id_fails_before_any_request(monkeypatch):
    from airflow_provider_cml.sensors.cml import CmlJobRunSensor

    with hostile(lambda r: [answer(200, run_json())]) as server:
        _hook(monkeypatch, server.url)
        sensor = CmlJobRunSensor(task_id="s", project=PID, job=JID, run_id="", cml_conn_id="cml_hostile")
        error, _, _ = _timed(lambda: sensor.poke({}))
    assert isinstance(error, CmlConfigError) and "run_id" in str(error) and server.seen == []


# -- 9. no duplicate run after a lost start answer -----------------------------------------------------


def _lost_start(listing):
    tokens: list[str] = []

    def main(request: Seen):
        if request.method == "POST":
            tokens.append(request.json()["environment"][START_TOKEN_ENV])
            return [answer(504, {"code": 14, "message": "gateway timeout"})]
        return [answer(200, listing(tokens, request))]

    return main, tokens


def test_a_listing_without_environments_is_not_trusted_and_the_start_not_resent(monkeypatch):
    main, _ = _lost_start(lambda tokens, r: {"job_runs": [run_json()]})  # no "environment" field
    with hostile(main) as server:
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url, max_retries=3).start_job_run(PID, JID))
    assert isinstance(error, CmlApiError) and "cannot tell whether the run started" in str(error)
    assert _paths(server).count(f"POST {RUNS}") == 1


def test_a_lagging_listing_is_read_again_before_a_resend(monkeypatch):
    reads: list[int] = []

    def listing(tokens, request):
        reads.append(1)
        mine = run_json(environment=json.dumps({START_TOKEN_ENV: tokens[0]}))
        return {"job_runs": [mine] if len(reads) >= 2 else []}

    main, _ = _lost_start(listing)
    with hostile(main) as server:
        run = _hook(monkeypatch, server.url).start_job_run(PID, JID)
    assert run["id"] == RID and _paths(server).count(f"POST {RUNS}") == 1 and len(reads) == 2


def test_a_listing_that_ignores_sort_is_paged_through(monkeypatch):
    old = {
        "id": "old",
        "status": "ENGINE_SUCCEEDED",
        "created_at": "2020-01-01T00:00:00Z",
        "environment": "{}",
    }

    def listing(tokens, request):
        mine = run_json(environment=json.dumps({START_TOKEN_ENV: tokens[0]}))
        if "page_token" not in request.path:  # oldest first: ours is on the second page
            return {
                "job_runs": [dict(old, created_at=f"2099-01-0{i}T00:00:00Z") for i in range(1, 4)],
                "next_page_token": "p2",
            }
        return {"job_runs": [mine], "next_page_token": ""}

    main, _ = _lost_start(listing)
    with hostile(main) as server:
        run = _hook(monkeypatch, server.url).start_job_run(PID, JID)
    assert run["id"] == RID and _paths(server).count(f"POST {RUNS}") == 1


# -- 10. statuses in any case ----------------------------------------------------------------------------


def test_lower_case_statuses_end_the_wait_sync_and_trigger(monkeypatch):
    with hostile(lambda r: [answer(200, run_json("engine_succeeded"))]) as server:
        run = _hook(monkeypatch, server.url).wait_for_job_run(PID, JID, RID, poll_interval=0.1)
        assert run["status"] == "engine_succeeded"
        event, _ = _trigger_event(monkeypatch, server.url)
    assert event["status"] == "success"
    assert not [p for p in _paths(server) if p.endswith(":stop")]


def test_a_lower_case_failure_is_a_failure(monkeypatch):
    with hostile(
        lambda r: (
            [answer(200, {"job_runs": []})]
            if "/usage" in r.path or "executions" in r.path
            else [answer(200, run_json("engine_failed"))]
        )
    ) as server:
        error, _, _ = _timed(
            lambda: _hook(monkeypatch, server.url).wait_for_job_run(
                PID, JID, RID, poll_interval=0.1, run_url="L", follow_retries=False
            )
        )
    assert isinstance(error, CmlJobRunError) and "ENGINE_FAILED did not succeed" in str(error)


# -- 11. a server that echoes the request body ------------------------------------------------------------


def test_echoed_override_values_are_masked_in_errors(monkeypatch):
    def main(request: Seen):
        echoed = json.dumps(request.json())
        return [answer(400, {"code": 3, "message": f"invalid request: {echoed}"})]

    with hostile(main) as server:
        env = {"DB_PASS": "hunter2-db-secret", "CREDENTIALS": "token-abc-123456"}
        error, _, _ = _timed(lambda: _hook(monkeypatch, server.url).start_job_run(PID, JID, env))
    assert type(error) is CmlApiError and "invalid request" in str(error)
    assert "hunter2-db-secret" not in str(error) and "token-abc-123456" not in str(error)
    assert "***" in str(error) and "hunter2" not in repr(error.server_message)
