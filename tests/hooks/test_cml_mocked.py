"""CmlHook rules, checked against requests-mock: retries, Retry-After, paging, names, errors, no double start."""

from __future__ import annotations

import base64
import json
import re

import pytest
import requests

from airflow_provider_cml.client.create_once import LOOKUPS
from airflow_provider_cml.exceptions import (
    CmlApiError,
    CmlConfigError,
    CmlJobAlreadyActiveError,
    CmlJobRunError,
    CmlJobRunTimeout,
    CmlLookupError,
)
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.validation import START_TOKEN_ENV
from airflow_provider_cml.workloads.job_runs import RunRef
from tests.conftest import MOCK_KEY, MOCK_URL

API = f"{MOCK_URL}/api/v2"
PID, JID, RID = "aaaa-bbbb-cccc-dddd", "jjjj-kkkk-llll-mmmm", "r1234567890abcde"
RUNS = f"{API}/projects/{PID}/jobs/{JID}/runs"
PROJECT = {"id": PID, "name": "Risk Analysis", "owner": {"username": "alice"}}


@pytest.fixture
def hook(mock_conn, clock) -> CmlHook:
    return CmlHook(mock_conn(), clock=clock)


def _project_route(requests_mock) -> None:
    """The project (the link needs its owner), the job, and empty usage/execution listings."""
    requests_mock.get(f"{API}/projects/{PID}", json=PROJECT)
    requests_mock.get(f"{API}/projects/{PID}/jobs/{JID}", json={"id": JID, "name": "train"})
    requests_mock.get(f"{API}/usage", json={"usage_response": [], "total_count": "0"})
    requests_mock.get(f"{API}/workloads/executions", json={"workloads": [], "executions": []})


def _run(status: str = "ENGINE_SCHEDULING", **fields) -> dict:
    return {"id": RID, "job_id": JID, "project_id": PID, "status": status, **fields}


class TestRetries:
    def test_retries_5xx_then_succeeds(self, hook, requests_mock, sleeps):
        requests_mock.get(
            f"{API}/projects/{PID}",
            [
                {"status_code": 503, "json": {"code": 14, "message": "down"}},
                {"status_code": 502, "text": "bad"},
                {"json": {"id": PID, "name": "p"}},
            ],
        )
        assert hook.get_project(PID)["name"] == "p"
        assert requests_mock.call_count == 3
        assert len(sleeps) == 2
        assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # exponential back-off with jitter

    def test_honours_retry_after_seconds_and_caps_it(self, hook, requests_mock, sleeps):
        requests_mock.get(
            f"{API}/projects/{PID}",
            [
                {"status_code": 429, "headers": {"Retry-After": "7"}, "json": {"message": "slow down"}},
                {"status_code": 429, "headers": {"Retry-After": "100000"}, "json": {}},
                {"json": {"id": PID}},
            ],
        )
        hook.get_project(PID)
        assert sleeps == [7.0, 120.0]

    def test_honours_retry_after_http_date(self, hook, requests_mock, sleeps):
        requests_mock.get(
            f"{API}/projects/{PID}",
            [
                {"status_code": 503, "headers": {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, "json": {}},
                {"json": {"id": PID}},
            ],
        )
        hook.get_project(PID)
        assert sleeps == [0.0]  # a date in the past means "now"

    def test_connection_errors_and_timeouts_are_retried(self, hook, requests_mock, sleeps):
        requests_mock.get(
            f"{API}/projects/{PID}",
            [
                {"exc": requests.exceptions.ConnectionError("reset")},
                {"exc": requests.exceptions.ReadTimeout},
                {"json": {"id": PID}},
            ],
        )
        assert hook.get_project(PID)["id"] == PID
        assert len(sleeps) == 2

    def test_gives_up_after_max_retries(self, mock_conn, clock, requests_mock):
        hook = CmlHook(mock_conn(max_retries=2), clock=clock)
        requests_mock.get(f"{API}/projects/{PID}", status_code=500, json={"code": 13, "message": "boom"})
        with pytest.raises(CmlApiError, match="HTTP 500: boom") as info:
            hook.get_project(PID)
        assert requests_mock.call_count == 3
        assert info.value.http_status == 500

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
    def test_client_errors_are_not_retried(self, hook, requests_mock, sleeps, status):
        requests_mock.get(f"{API}/projects/{PID}", status_code=status, json={"message": "no"})
        with pytest.raises(CmlApiError):
            hook.get_project(PID)
        assert requests_mock.call_count == 1 and sleeps == []

    def test_every_request_has_a_timeout_and_reuses_one_session(self, hook, requests_mock):
        requests_mock.get(f"{API}/projects/{PID}", json={"id": PID})
        hook.get_project(PID)
        session = hook.transport.session
        hook.get_project(PID)
        assert hook.transport.session is session
        assert all(r.timeout == (10.0, 60.0) for r in requests_mock.request_history)


class TestNoDoubleStart:
    def test_lost_answer_finds_the_run_instead_of_starting_again(self, hook, requests_mock, sleeps):
        posted = []

        def on_post(request, context):
            posted.append(request.json())
            context.status_code = 504
            return {"message": "gateway timeout"}

        requests_mock.post(RUNS, json=on_post)

        def on_list(request, context):
            token = posted[0]["environment"][START_TOKEN_ENV]
            other = _run(id="other0000000000x", environment=json.dumps({START_TOKEN_ENV: "not-ours"}))
            return {"job_runs": [other, _run(environment=json.dumps({START_TOKEN_ENV: token}))]}

        requests_mock.get(RUNS, json=on_list)
        run = hook.start_job_run(PID, JID)
        assert run["id"] == RID
        assert len(posted) == 1
        assert requests_mock.request_history[1].qs["sort"] == ["-created_at"]

    def test_read_timeout_on_start_is_checked_not_resent(self, hook, requests_mock, sleeps):
        requests_mock.post(RUNS, [{"exc": requests.exceptions.ReadTimeout}, {"json": _run()}])
        requests_mock.get(RUNS, json={"job_runs": []})
        run = hook.start_job_run(PID, JID)
        assert run["id"] == RID
        methods = [r.method for r in requests_mock.request_history]
        # resent only after the listing (which may lag) was read LOOKUPS times without finding it
        assert methods == ["POST", *["GET"] * LOOKUPS, "POST"]
        assert sleeps[: LOOKUPS - 1] == [1.0] * (LOOKUPS - 1)

    def test_refused_connection_is_resent_without_checking(self, hook, requests_mock, sleeps):
        from urllib3.exceptions import MaxRetryError, NewConnectionError

        refused = requests.exceptions.ConnectionError(
            MaxRetryError(None, "/", NewConnectionError(None, "refused"))
        )
        requests_mock.post(RUNS, [{"exc": refused}, {"json": _run()}])
        hook.start_job_run(PID, JID)
        assert [r.method for r in requests_mock.request_history] == ["POST", "POST"]

    def test_429_on_start_is_retried_directly(self, hook, requests_mock, sleeps):
        requests_mock.post(
            RUNS, [{"status_code": 429, "headers": {"Retry-After": "2"}, "json": {}}, {"json": _run()}]
        )
        hook.start_job_run(PID, JID)
        assert [r.method for r in requests_mock.request_history] == ["POST", "POST"]
        assert sleeps == [2.0]

    def test_already_active_after_lost_answer_is_our_own_run(self, hook, requests_mock, sleeps):
        tokens = []

        def on_post(request, context):
            tokens.append(request.json()["environment"][START_TOKEN_ENV])
            if len(tokens) == 1:
                context.status_code = 502
                return {"message": "bad gateway"}
            context.status_code = 400
            return {"code": 9, "message": f"job run for job {JID} already active"}

        lists = []

        def on_list(request, context):
            lists.append(1)
            # The looks after the lost answer find nothing yet (the listing lags); a later one finds it.
            return {
                "job_runs": [] if len(lists) <= LOOKUPS else [_run(environment={START_TOKEN_ENV: tokens[0]})]
            }

        requests_mock.post(RUNS, json=on_post)
        requests_mock.get(RUNS, json=on_list)
        assert hook.start_job_run(PID, JID)["id"] == RID
        assert tokens[0] == tokens[1]  # the same start, not a new one

    @pytest.mark.parametrize(
        ("status", "words"),
        [(400, f"job run for job {JID} already active"), (409, "conflict"), (412, "Job is busy"), (422, "")],
    )
    def test_a_refused_start_is_busy_when_the_listing_shows_an_active_run(
        self, hook, requests_mock, status, words
    ):
        """Recognised by the runs listing, not by the refusal's code or wording."""
        requests_mock.post(RUNS, status_code=status, json={"code": 9, "message": words})
        requests_mock.get(RUNS, json={"job_runs": [_run("ENGINE_RUNNING", id="other-run-0001")]})
        with pytest.raises(CmlJobAlreadyActiveError, match="already has an active run .run other-run-0001"):
            hook.start_job_run(PID, JID)

    def test_a_refused_start_with_no_active_run_is_tried_once_more_then_the_refusal(
        self, hook, requests_mock, sleeps
    ):
        starts = requests_mock.post(
            RUNS, status_code=400, json={"code": 3, "message": "job run for job x already active"}
        )
        requests_mock.get(RUNS, json={"job_runs": [_run("ENGINE_SUCCEEDED")]})
        with pytest.raises(CmlApiError) as info:
            hook.start_job_run(PID, JID)
        assert type(info.value) is CmlApiError and "refused the request (HTTP 400)" in str(info.value)
        assert starts.call_count == 2 and sleeps == [1.0]

    def test_refused_twice_while_other_runs_began_and_ended_between_the_looks_is_busy(
        self, hook, requests_mock, sleeps
    ):
        """Starts racing over short runs: each look finds the job free, yet runs began since this
        start did. That is a busy job (a waiting task tries again), not a refusal of this start."""
        from datetime import datetime, timezone

        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        starts = requests_mock.post(
            RUNS, status_code=400, json={"code": 3, "message": "job run for job x already active"}
        )
        requests_mock.get(
            RUNS, json={"job_runs": [_run("ENGINE_SUCCEEDED", id="raced-0000001", created_at=now)]}
        )
        with pytest.raises(CmlJobAlreadyActiveError, match="raced-0000001"):
            hook.start_job_run(PID, JID)
        assert starts.call_count == 2 and sleeps == [1.0]

    def test_a_blocker_that_ended_between_the_refusal_and_the_look_is_no_error(
        self, hook, requests_mock, sleeps
    ):
        """Short runs end fast: the job was busy at the start and free at the look."""
        requests_mock.post(
            RUNS,
            [
                {"status_code": 400, "json": {"code": 9, "message": "job run for job x already active"}},
                {"json": _run("ENGINE_SCHEDULING")},
            ],
        )
        requests_mock.get(RUNS, json={"job_runs": [_run("ENGINE_SUCCEEDED", id="ended-00000001")]})
        assert hook.start_job_run(PID, JID)["id"] == RID

    @pytest.mark.parametrize("status", [401, 403, 404])
    def test_key_and_path_errors_are_not_looked_into(self, hook, requests_mock, status):
        requests_mock.post(RUNS, status_code=status, json={"code": 7, "message": "no"})
        listing = requests_mock.get(RUNS, json={"job_runs": []})
        with pytest.raises(CmlApiError):
            hook.start_job_run(PID, JID)
        assert listing.call_count == 0


class TestPagingAndNames:
    def _pages(self, requests_mock, url, key, items, page_size=2):
        seen_params = []

        def handler(request, context):
            seen_params.append(request.qs)
            offset = int(request.qs.get("page_token", ["0"])[0])
            page = items[offset : offset + page_size]
            nxt = str(offset + page_size) if offset + page_size < len(items) else ""
            return {key: page, "next_page_token": nxt}

        requests_mock.get(url, json=handler)
        return seen_params

    def test_follows_every_page_with_the_same_filter(self, hook, requests_mock):
        items = [{"id": f"p{i}", "name": f"proj-{i}"} for i in range(7)]
        params = self._pages(requests_mock, f"{API}/projects", "projects", items)
        result = hook.list_projects(search_filter={"name": "proj"}, sort="name")
        assert [p["id"] for p in result] == [f"p{i}" for i in range(7)]
        assert len(params) == 4
        assert all(p["search_filter"] == ['{"name": "proj"}'] and p["sort"] == ["name"] for p in params)

    def test_name_resolves_to_the_exact_match_among_substring_matches(self, hook, requests_mock):
        items = [
            {"id": "a", "name": "train-extended"},
            {"id": "b", "name": "pre-train"},
            {"id": "c", "name": "train"},
        ]
        self._pages(requests_mock, f"{API}/projects", "projects", items)
        assert hook.resolve_project("train")["id"] == "c"

    def test_ambiguous_name_lists_the_ids(self, hook, requests_mock):
        items = [{"id": "id-one", "name": "demo"}, {"id": "id-two", "name": "demo"}]
        self._pages(requests_mock, f"{API}/projects", "projects", items)
        with pytest.raises(CmlLookupError, match=r"2 projects are named 'demo' \(IDs: id-one, id-two\)"):
            hook.resolve_project("demo")

    def test_unknown_name_suggests_close_matches(self, hook, requests_mock):
        def handler(request, context):
            if "search_filter" in request.qs:
                return {"projects": []}
            return {"projects": [{"id": "x", "name": "customer-churn"}, {"id": "y", "name": "zzz"}]}

        requests_mock.get(f"{API}/projects", json=handler)
        with pytest.raises(
            CmlLookupError, match=r"No project is named exactly 'customer-chrun'.*'customer-churn'"
        ):
            hook.resolve_project("customer-chrun")

    def test_name_lookup_is_cached_per_hook(self, hook, requests_mock):
        self._pages(requests_mock, f"{API}/projects", "projects", [{"id": "c", "name": "train"}])
        hook.resolve_project("train")
        hook.resolve_project("train")
        assert requests_mock.call_count == 1

    def test_name_lookups_include_public_projects(self, hook, requests_mock):
        self._pages(requests_mock, f"{API}/projects", "projects", [{"id": "c", "name": "shared"}])
        hook.resolve_project("shared")
        assert requests_mock.last_request.qs["include_public_projects"] == ["true"]

    def test_unexpected_shape_is_a_clear_error(self, hook, requests_mock):
        requests_mock.get(f"{API}/projects", json={"items": []})
        with pytest.raises(CmlApiError, match="without the expected 'projects' list"):
            hook.list_projects()


class TestErrors:
    def test_401_says_the_key_was_rejected_and_never_shows_it(self, hook, requests_mock):
        requests_mock.get(
            f"{API}/projects/{PID}",
            status_code=401,
            json={"code": 16, "message": "unauthenticated"},
            headers={"X-Request-Id": "req-42"},
        )
        with pytest.raises(CmlApiError) as info:
            hook.get_project(PID)
        text = str(info.value)
        assert "rejected the API key" in text and "User Settings > API Keys" in text
        assert "GET /projects/" in text and "HTTP 401" in text and "req-42" in text
        assert MOCK_KEY not in text and MOCK_KEY not in repr(hook)

    def test_404_names_what_was_missing(self, hook, requests_mock):
        _project_route(requests_mock)
        requests_mock.get(f"{RUNS}/{RID}", status_code=404, json={"code": 5, "message": "not found"})
        with pytest.raises(CmlApiError, match=f"Not found: run '{RID}' of job '{JID}'"):
            hook.get_job_run(PID, JID, RID)

    def test_403_on_a_read_says_not_found_or_not_permitted_and_names_the_id(self, hook, requests_mock):
        _project_route(requests_mock)
        requests_mock.get(f"{RUNS}/{RID}", status_code=403, json={"code": 7, "message": "permission denied"})
        with pytest.raises(CmlApiError, match=f"Not found or not permitted for this key: run '{RID}'"):
            hook.get_job_run(PID, JID, RID)

    @pytest.mark.parametrize(
        ("body", "expected"),
        [({"code": 3, "message": "bad thing"}, "bad thing"), ({"error": "old style"}, "old style")],
    )
    def test_reads_message_then_error(self, hook, requests_mock, body, expected):
        requests_mock.get(f"{API}/projects/{PID}", status_code=400, json=body)
        with pytest.raises(CmlApiError, match=expected):
            hook.get_project(PID)

    def test_raw_text_when_body_is_not_json(self, hook, requests_mock):
        requests_mock.get(f"{API}/projects/{PID}", status_code=400, text="plain failure")
        with pytest.raises(CmlApiError, match="plain failure"):
            hook.get_project(PID)

    def test_html_instead_of_json(self, hook, requests_mock):
        requests_mock.get(
            f"{API}/projects/{PID}", text="<html>login</html>", headers={"Content-Type": "text/html"}
        )
        with pytest.raises(CmlApiError, match="HTML page: is the host the workbench URL"):
            hook.get_project(PID)

    def test_truncated_json(self, hook, requests_mock):
        requests_mock.get(
            f"{API}/projects/{PID}", text='{"id": "aaaa', headers={"Content-Type": "application/json"}
        )
        with pytest.raises(CmlApiError, match="not valid JSON"):
            hook.get_project(PID)

    def test_tls_failure_points_to_ca_bundle(self, hook, requests_mock):
        requests_mock.get(
            f"{API}/projects/{PID}", exc=requests.exceptions.SSLError("certificate verify failed")
        )
        with pytest.raises(CmlConfigError, match="CA bundle path"):
            hook.get_project(PID)


class TestRequests:
    def test_v2_uses_bearer(self, hook, requests_mock):
        requests_mock.get(f"{API}/projects/{PID}", json={"id": PID})
        hook.get_project(PID)
        assert requests_mock.last_request.headers["Authorization"] == f"Bearer {MOCK_KEY}"

    def test_start_sends_environment_as_strings_and_arguments(self, hook, requests_mock):
        _project_route(requests_mock)
        requests_mock.post(RUNS, json=_run())
        hook.start_job_run(PID, JID, {"A": "x", "N": 3, "F": 1.5, "B": True}, arguments="--fast")
        body = requests_mock.last_request.json()
        env = body["environment"]
        assert {k: env[k] for k in "ANFB"} == {"A": "x", "N": "3", "F": "1.5", "B": "True"}
        assert body["arguments"] == "--fast" and body["project_id"] == PID and body["job_id"] == JID

    def test_v1_start_uses_basic_auth_and_json_content_type(self, mock_conn, requests_mock, clock):
        hook = CmlHook(mock_conn(api_version="v1"), clock=clock)
        url = f"{MOCK_URL}/api/v1/projects/alice/risk-analysis/jobs/208/start"
        requests_mock.post(url, json={"engine_id": "cwg6wclmg0x482u0"})
        answer = hook.start_job_run("alice/risk-analysis", "208", {"START_DATE": "2017-01-01"})
        assert answer == {"engine_id": "cwg6wclmg0x482u0"}
        request = requests_mock.last_request
        assert (
            request.headers["Authorization"] == "Basic " + base64.b64encode(f"{MOCK_KEY}:".encode()).decode()
        )
        assert request.headers["Content-Type"] == "application/json"
        assert request.json() == {"environment": {"START_DATE": "2017-01-01"}}

    def test_v1_lost_answer_is_not_resent(self, mock_conn, requests_mock, clock):
        hook = CmlHook(mock_conn(api_version="v1"), clock=clock)
        url = f"{MOCK_URL}/api/v1/projects/alice/risk-analysis/jobs/208/start"
        requests_mock.post(url, exc=requests.exceptions.ReadTimeout)
        with pytest.raises(CmlApiError, match="cannot tell whether the job started"):
            hook.start_job_run("alice/risk-analysis", "208")
        assert requests_mock.call_count == 1


class TestWaiting:
    def test_keeps_polling_through_stopping_unknown_and_transient_errors(self, hook, requests_mock, sleeps):
        _project_route(requests_mock)
        requests_mock.get(
            f"{RUNS}/{RID}",
            [
                {"json": _run("ENGINE_RUNNING")},
                {"json": _run("ENGINE_UNKNOWN")},
                {"json": _run("SOMETHING_NEW")},
                {"status_code": 503, "json": {}},
                {"status_code": 503, "json": {}},
                {"json": _run("ENGINE_SUCCEEDED")},
            ],
        )
        hook = CmlHook(hook.cml_conn_id, max_retries=0, clock=hook.clock)
        assert hook.wait_for_job_run(PID, JID, RID, poll_interval=5)["status"] == "ENGINE_SUCCEEDED"
        assert requests_mock.call_count == 6

    @pytest.mark.parametrize(
        "status", ["ENGINE_FAILED", "ENGINE_TIMEDOUT", "ENGINE_STOPPED", "ENGINE_SKIPPED"]
    )
    def test_terminal_failures_raise_with_status_and_hint(self, hook, requests_mock, status):
        from airflow_provider_cml.workloads.job_runs import failure_hint

        _project_route(requests_mock)
        requests_mock.get(f"{RUNS}/{RID}", json=_run(status))
        with pytest.raises(
            CmlJobRunError, match=re.escape(f"{status} did not succeed: {failure_hint(status)}")
        ) as info:
            hook.wait_for_job_run(PID, JID, RID, poll_interval=1)
        assert info.value.status == status
        assert f"See {MOCK_URL}/alice/risk-analysis/jobs" in str(info.value)

    def test_run_url_template_can_be_overridden(self, mock_conn, requests_mock, clock):
        hook = CmlHook(mock_conn(run_url_template="{base_url}/p/{project_id}/r/{run_id}?owner={owner}"))
        _project_route(requests_mock)
        assert hook.job_run_url(PID, JID, RID) == f"{MOCK_URL}/p/{PID}/r/{RID}?owner=alice"

    def test_timeout_stops_the_run(self, hook, requests_mock, sleeps):
        _project_route(requests_mock)
        requests_mock.get(f"{RUNS}/{RID}", json=_run("ENGINE_RUNNING"))
        stop = requests_mock.post(f"{RUNS}/{RID}:stop", json=_run("ENGINE_STOPPING"))
        with pytest.raises(
            CmlJobRunTimeout, match="still ENGINE_RUNNING after 25s; it has been asked to stop"
        ):
            hook.wait_for_job_run(PID, JID, RID, poll_interval=5, timeout=25)
        assert stop.call_count == 1
        assert sleeps == [5, 5, 5, 5, 5]  # polls at 0, 5, ..., 25 s on the hook's clock


class TestFailureDetails:
    FINISHED = _run(
        "ENGINE_FAILED",
        created_at="2024-06-01T10:00:00Z",
        running_at="2024-06-01T10:00:05Z",
        finished_at="2024-06-01T10:01:00Z",
    )

    def _usage(self, **entry):
        base = {"name": "train", "project_name": "Risk Analysis", "created_at": "2024-06-01T10:00:00.5Z"}
        return {"usage_response": [{**base, **entry}], "total_count": "1"}

    def test_exit_code_and_message_from_the_usage_listing(self, hook, requests_mock):
        _project_route(requests_mock)
        requests_mock.get(
            f"{API}/projects/{PID}/jobs/{JID}",
            json={"id": JID, "name": "train", "project": {"name": "Risk Analysis"}},
        )
        requests_mock.get(f"{API}/usage", json=self._usage(message="boom", k8s_info={"k8s_exit_code": 2}))
        details = hook.failure_details(RunRef(PID, JID, RID), self.FINISHED)
        assert details == "exit code 2; Cloudera AI says: boom"
        query = requests_mock.request_history[1].qs
        assert json.loads(query["search_filter"][0]) == {"name": "train", "workload_type": "job"}
        window = json.loads(query["time_range_search_filter"][0])["created_time"]
        assert window == {"min": "2024-06-01 09:58:00", "max": "2024-06-01 10:03:00"}

    def test_entries_of_other_jobs_projects_or_times_are_not_taken(self, hook, requests_mock):
        _project_route(requests_mock)
        requests_mock.get(
            f"{API}/projects/{PID}/jobs/{JID}",
            json={"id": JID, "name": "train", "project": {"name": "Risk Analysis"}},
        )
        others = [
            {"name": "train", "project_name": "Other", "created_at": "2024-06-01T10:00:00Z", "message": "x"},
            {
                "name": "train",
                "project_name": "Risk Analysis",
                "created_at": "2024-06-01T11:00:00Z",
                "message": "y",
            },
            {
                "name": "other",
                "project_name": "Risk Analysis",
                "created_at": "2024-06-01T10:00:00Z",
                "message": "z",
            },
        ]
        requests_mock.get(f"{API}/usage", json={"usage_response": others, "total_count": "3"})
        assert hook.failure_details(RunRef(PID, JID, RID), self.FINISHED) is None

    JOB = {"id": JID, "name": "train", "project": {"name": "Risk Analysis"}}
    WORKLOAD = {"workload_crn": "crn:w:train", "workload_name": "train", "project": {"name": "Risk Analysis"}}

    def _execution(self, start: str, reason: str) -> dict:
        return {"workload_crn": "crn:w:train", "start_time": start, "failure_reason": reason}

    @pytest.mark.parametrize(
        ("usage_status", "executions_status", "expected", "note"),
        [
            (
                403,
                200,
                "Cloudera AI says: Error: exit 2",
                "usage listing (HTTP 403), so failures are explained from the other",
            ),
            (
                200,
                404,
                "exit code 2; Cloudera AI says: boom",
                "executions listing (HTTP 404), so failures are explained from the other",
            ),
            (200, 200, "exit code 2; Cloudera AI says: boom; Cloudera AI says: Error: exit 2", None),
            (403, 403, None, "status only"),
        ],
    )
    def test_each_listing_counts_on_its_own(
        self, hook, requests_mock, capfd, caplog, usage_status, executions_status, expected, note
    ):
        _project_route(requests_mock)
        requests_mock.get(f"{API}/projects/{PID}/jobs/{JID}", json=self.JOB)
        denied = {"code": 7, "message": "denied"}
        usage = self._usage(message="boom", k8s_info={"k8s_exit_code": 2})
        executions = {
            "workloads": [self.WORKLOAD],
            "executions": [self._execution("2024-06-01T10:00:05Z", "Error: exit 2")],
        }
        requests_mock.get(
            f"{API}/usage", status_code=usage_status, json=usage if usage_status == 200 else denied
        )
        requests_mock.get(
            f"{API}/workloads/executions",
            status_code=executions_status,
            json=executions if executions_status == 200 else denied,
        )
        ref = RunRef(PID, JID, RID)
        assert hook.failure_details(ref, self.FINISHED) == expected
        listings = [
            r.path for r in requests_mock.request_history if "usage" in r.path or "workloads" in r.path
        ]
        assert hook.failure_details(ref, self.FINISHED) == expected
        again = [r.path for r in requests_mock.request_history if "usage" in r.path or "workloads" in r.path]
        # A listing the key may not read is not asked again; a readable one is.
        unreadable = {
            path
            for path, status in (
                ("/api/v2/usage", usage_status),
                ("/api/v2/workloads/executions", executions_status),
            )
            if status != 200
        }
        assert sorted(again[len(listings) :]) == sorted(set(listings) - unreadable)
        printed = "".join(capfd.readouterr())
        if note:
            assert max(caplog.text.count(note), printed.count(note)) == 1

    def test_the_execution_is_found_past_a_busy_first_page(self, hook, requests_mock):
        """Page one holds other workloads' executions and one of this job's; the job's own listing follows."""
        _project_route(requests_mock)
        requests_mock.get(f"{API}/projects/{PID}/jobs/{JID}", json=self.JOB)
        other = {
            "workload_crn": "crn:w:other",
            "workload_name": "other",
            "project": {"name": "Risk Analysis"},
        }
        busy = {
            "workloads": [other, self.WORKLOAD],
            "executions": [
                {"workload_crn": "crn:w:other", "start_time": "2024-06-01T10:00:04Z", "failure_reason": "no"},
                self._execution("2024-06-01T09:59:00Z", "an earlier run of train"),
            ],
            "next_page_token": "p2",
        }
        narrowed = {
            "workloads": [self.WORKLOAD],
            "executions": [
                self._execution("2024-06-01T09:59:00Z", "an earlier run of train"),
                self._execution("2024-06-01T10:00:05Z", "this run"),
            ],
        }
        listing = requests_mock.get(
            f"{API}/workloads/executions",
            [{"json": busy}, {"json": narrowed}],
        )
        assert hook.failure_details(RunRef(PID, JID, RID), self.FINISHED) == "Cloudera AI says: this run"
        first, second = (json.loads(json.dumps(r.qs)) for r in listing.request_history)
        assert first["sort"] == ["start_time"] and "multi_column_search_filter" not in first
        window = json.loads(first["time_range_search_filter"][0])["start_time"]
        # (requests-mock lower-cases query strings)
        assert window == {"min": "2024-06-01t09:58:00.000z", "max": "2024-06-01t10:03:00.000z"}
        assert json.loads(second["multi_column_search_filter"][0]) == {"workload_crn": "crn:w:train"}

    def test_the_executions_look_up_is_bounded(self, hook, requests_mock):
        _project_route(requests_mock)
        requests_mock.get(f"{API}/projects/{PID}/jobs/{JID}", json=self.JOB)
        endless = requests_mock.get(
            f"{API}/workloads/executions",
            json={"workloads": [], "executions": [], "next_page_token": "again"},
        )
        assert hook.failure_details(RunRef(PID, JID, RID), self.FINISHED) is None
        assert endless.call_count == 3

    def test_garbage_in_the_listings_never_raises(self, hook, requests_mock):
        _project_route(requests_mock)
        requests_mock.get(f"{API}/usage", json={"usage_response": [None, 3, {"created_at": "not a time"}]})
        requests_mock.get(f"{API}/workloads/executions", json={"workloads": "x", "executions": [1]})
        assert hook.failure_details(RunRef(PID, JID, RID), self.FINISHED) is None


def test_test_connection_reports_success_and_failure(hook, requests_mock):
    requests_mock.post(f"{API}/auth/validate_key", json={"valid": True, "username": "alice", "message": ""})
    ok, message = hook.test_connection()
    assert ok and MOCK_URL in message and "as alice" in message
    assert requests_mock.last_request.json() == {"audience": "API"}
    requests_mock.post(f"{API}/auth/validate_key", status_code=404, json={"message": "no route"})
    requests_mock.get(f"{API}/projects", json={"projects": []})
    ok, message = CmlHook(hook.cml_conn_id).test_connection()
    assert ok and requests_mock.last_request.path == "/api/v2/projects"  # older workbenches
    requests_mock.post(f"{API}/auth/validate_key", status_code=401, json={"message": "nope"})
    fresh = CmlHook(hook.cml_conn_id)
    ok, message = fresh.test_connection()
    assert not ok and "rejected the API key" in message and MOCK_KEY not in message


class TestJobDefinitions:
    JOBS = f"{API}/projects/{PID}/jobs"

    def test_a_lost_create_answer_is_looked_up_through_a_lagging_listing(self, hook, requests_mock, sleeps):
        made = {"id": JID, "name": "nightly", "script": "a.py", "environment": "{}", "timeout": "0"}
        requests_mock.post(self.JOBS, exc=requests.exceptions.ReadTimeout)
        # The ensure_job look-up finds nothing; after the lost answer the listing lags once more.
        requests_mock.get(
            self.JOBS, [{"json": {"jobs": []}}, {"json": {"jobs": []}}, {"json": {"jobs": [made]}}]
        )
        job, action = hook.jobs.ensure_job(PID, {"name": "nightly", "script": "a.py", "kernel": "python3"})
        assert (job["id"], action) == (JID, "created")
        methods = [r.method for r in requests_mock.request_history]
        assert methods == ["GET", "POST", "GET", "GET"] and sleeps[:1] == [1.0]

    def test_a_create_answer_lost_for_good_is_resent_after_the_look_ups(self, hook, requests_mock, sleeps):
        made = {"id": JID, "name": "nightly", "script": "a.py"}
        requests_mock.post(self.JOBS, [{"exc": requests.exceptions.ReadTimeout}, {"json": made}])
        requests_mock.get(self.JOBS, json={"jobs": []})
        assert hook.jobs.create_job(PID, {"name": "nightly", "script": "a.py"})["id"] == JID
        methods = [r.method for r in requests_mock.request_history]
        assert methods == ["POST", *["GET"] * LOOKUPS, "POST"]

    def test_update_sends_the_whole_job_in_its_own_spelling(self, hook, requests_mock):
        current = {
            "id": JID,
            "name": "nightly",
            "script": "a.py",
            "memory": 1,
            "timeout": "60",
            "environment": '{"A": "1"}',
            "retry_enabled": True,
            "created_at": "2026-01-01T00:00:00Z",
            "paused": False,
        }
        requests_mock.get(self.JOBS, json={"jobs": [current]})
        patch = requests_mock.patch(f"{self.JOBS}/{JID}", json={**current, "memory": 4})
        requests_mock.get(f"{self.JOBS}/{JID}", json={**current, "memory": 4})  # read back
        job, action = hook.jobs.ensure_job(
            PID, {"name": "nightly", "script": "a.py", "memory": 4, "timeout": 60}
        )
        assert action == "updated" and job["memory"] == 4
        body = patch.last_request.json()
        assert body["memory"] == 4 and body["timeout"] == "60" and body["environment"] == '{"A": "1"}'
        assert body["retry_enabled"] is True and "created_at" not in body and "paused" not in body
