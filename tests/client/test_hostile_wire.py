"""Hostile bytes on the wire, through the public hook (sync) and the trigger (aiohttp), real sockets.

One section per kind of fault: compression bombs, malformed framing, an exhausted connection pool,
answers big enough to stall an event loop, header injection, log noise. Every poll must end within
its timeout, and every fault a server may recover from must keep the trigger polling (the trigger
then ends on its deadline with a ``timeout`` event, having polled more than once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import tracemalloc
import zlib
from typing import Any

import pytest

from airflow_provider_cml.client.async_client import POOL_SIZE
from airflow_provider_cml.client.attempts import MAX_BODY_BYTES, unresolved
from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger
from tests.client.test_hostile_servers import (
    JID,
    KEY,
    PID,
    RID,
    RUN,
    _assert_within_the_wait_and_one_stop,
    _hook,
    _timed,
    _trigger_event,
    hostile_trigger,
    run_json,
)
from tests.conftest import FakeClock
from tests.hostile import budgets, hostile, plain_http_server


def raw_answer(head: str, body: bytes) -> bytes:
    """An answer with exactly the given status line and headers (``\\n``-separated) and body."""
    return (head.replace("\n", "\r\n") + "\r\n\r\n").encode("utf-8") + body


def _deflate_bomb(size: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    return squeeze.compress(b"[" + b" " * size + b"]") + squeeze.flush()


def _gzip_bomb(size: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return squeeze.compress(b"{" + b" " * size + b"}") + squeeze.flush()


def _assert_keeps_polling(monkeypatch, url: str, server, **extra: Any) -> None:
    """The trigger ends on its deadline (not on the fault), having polled more than once."""
    with budgets() as limits:
        event, _ = _trigger_event(monkeypatch, url, end_in=1.5, **extra)
    assert event["status"] == "timeout", event
    # Its reads end by its deadline; after it, only the stop, within one request timeout (2 s).
    _assert_within_the_wait_and_one_stop(limits, wait=1.5, request=2)
    assert len(server.seen) >= 2


# -- 1. bombs: bounded after decompression ---------------------------------------------------------


BOMBS = [
    ("raw deflate", "deflate", _deflate_bomb(96 * 2**20)),
    ("gzip", "gzip", _gzip_bomb(96 * 2**20)),
]


@pytest.mark.parametrize(("case", "encoding", "data"), BOMBS, ids=[b[0] for b in BOMBS])
def test_a_compression_bomb_is_cut_at_the_body_bound_sync_and_trigger(monkeypatch, case, encoding, data):
    assert len(data) < 200_000  # ~100 KB on the wire that would inflate to 96 MiB
    bomb = raw_answer(
        f"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Encoding: {encoding}\n"
        f"Content-Length: {len(data)}\nConnection: close",
        data,
    )
    with hostile(lambda r: [bomb]) as server:
        tracemalloc.start()
        try:
            error, _, _ = _timed(lambda: _hook(monkeypatch, server.url).get_job_run(PID, JID, RID))
            assert type(error) is CmlApiError and "larger than 8 MiB" in str(error), repr(error)
            _assert_keeps_polling(monkeypatch, server.url, server)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * MAX_BODY_BYTES  # never the 96 MiB the bomb inflates to


# -- 2. malformed framing: a failed attempt, never a crash ------------------------------------------


BODY = json.dumps(run_json("ENGINE_SUCCEEDED")).encode()
#: (case, bytes, whether the sync client may read it as sent). http.client reads a body whose length
#: it cannot parse up to the connection's close; it then gets the complete object the server sent.
MALFORMED = [
    (
        "negative chunk size",
        raw_answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", b"-5\r\nabcde\r\n0\r\n\r\n"),
        False,
    ),
    (
        "non-hex chunk size",
        raw_answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", b"zz\r\nabcde\r\n0\r\n\r\n"),
        False,
    ),
    (
        "non-ASCII digit in the status",
        raw_answer("HTTP/1.1 2\u0662\u0660 OK\nContent-Length: 2", b"{}"),
        False,
    ),
    (
        "non-ASCII digit in the length",
        raw_answer("HTTP/1.1 200 OK\nContent-Length: \u0661\u0665", BODY),
        True,
    ),
    ("four-digit status", raw_answer(f"HTTP/1.1 2000 OK\nContent-Length: {len(BODY)}", BODY), False),
    # http.client refuses a status below 100; aiohttp read 000 as a success (issue 28, 11a).
    ("status 000", raw_answer(f"HTTP/1.1 000 OK\nContent-Length: {len(BODY)}", BODY), False),
    ("status 099", raw_answer(f"HTTP/1.1 099 OK\nContent-Length: {len(BODY)}", BODY), False),
    ("negative length", raw_answer("HTTP/1.1 200 OK\nContent-Length: -1", BODY), True),
    (
        "two lengths",
        raw_answer(f"HTTP/1.1 200 OK\nContent-Length: 2\nContent-Length: {len(BODY)}", BODY),
        False,
    ),
    ("not HTTP", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False),
    ("header without colon", raw_answer(f"HTTP/1.1 200 OK\nContent-Length {len(BODY)}", BODY), True),
]


@pytest.mark.parametrize(("case", "raw", "sync_reads"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_framing_is_a_failed_attempt_sync_and_trigger(monkeypatch, case, raw, sync_reads):
    with hostile(lambda r: [raw]) as server:
        error, run, _ = _timed(lambda: _hook(monkeypatch, server.url).get_job_run(PID, JID, RID))
        if sync_reads:
            assert error is None and run == json.loads(BODY)
        else:
            assert type(error) is CmlApiError and "No answer from Cloudera AI" in str(error), repr(error)
            assert len(server.seen) == 2  # retried once (max_retries=1), then given up
        server.seen.clear()
        # The trigger never reads a malformed answer as the run's status (it says the run succeeded).
        _assert_keeps_polling(monkeypatch, server.url, server)


# -- 3. an exhausted pool: waiting for a connection counts against the attempt's time ----------------


def test_polls_keep_their_timeout_and_triggers_their_deadline_when_the_pool_is_exhausted(monkeypatch):
    count = POOL_SIZE + 10
    with hostile(lambda r: [("sleep", 20)]) as server:
        _hook(monkeypatch, server.url, timeout=1, max_retries=0)
        end_in = 2.0
        triggers = [hostile_trigger(end_in=end_in, owns=False) for _ in range(count)]

        async def first(trigger: CmlWorkloadTrigger) -> dict:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("no event")

        async def all_of_them() -> list[dict]:
            return await asyncio.gather(*(first(t) for t in triggers))

        with budgets() as limits:
            results = asyncio.run(asyncio.wait_for(all_of_them(), 30))
        opened = len(server.seen)
    assert [event["status"] for event in results] == ["timeout"] * count
    # Each attempt's limit (which includes waiting for a pooled connection) ended by the trigger's
    # deadline; the pool bounds what was sent.
    assert limits and all(b.limit <= 1 for b in limits)
    assert max(b.ends for b in limits) <= limits[0].now + end_in + 0.01
    assert opened <= POOL_SIZE * (end_in + 1) / 1 + POOL_SIZE


# -- 4. a big answer is bounded: refused past the body bound, parsed under it ---------------------
# How long parsing one holds the event loop is measured in benchmarks/loop_stall.py (a timing
# under load is not a test).


def big_answer(mebibytes: int) -> bytes:
    """A run answer padded to about ``mebibytes`` MiB of JSON."""
    filler = [{"id": f"r{i:015d}", "status": "ENGINE_SUCCEEDED", "note": "x" * 40} for i in range(10_000)]
    copies = int(mebibytes * 2**20 / len(json.dumps(filler)))
    return json.dumps({**run_json("ENGINE_SUCCEEDED"), "fill": filler * copies}).encode()


@pytest.mark.parametrize(
    ("mebibytes", "expected"),
    [(30, "timeout"), (7, "success")],  # past the body bound: refused; under it: parsed
)
def test_a_big_answer_is_refused_past_the_body_bound_and_parsed_under_it(monkeypatch, mebibytes, expected):
    body = big_answer(mebibytes)
    assert (len(body) > MAX_BODY_BYTES) is (expected == "timeout")
    page = raw_answer(f"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: {len(body)}", body)
    with hostile(lambda r: [page]) as server:
        _hook(monkeypatch, server.url, timeout=10, max_retries=0)
        trigger = hostile_trigger(end_in=3, owns=False)

        async def first() -> dict:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("no event")

        event = asyncio.run(asyncio.wait_for(first(), 60))
    assert event["status"] == expected, event["message"]


# -- 5. header injection: a key no API would issue never reaches the wire ---------------------------


@pytest.mark.parametrize("password", ["good-key\r\nX-Injected: 1", "good-key\nHost: evil.example"])
def test_a_key_that_would_inject_headers_is_refused_in_the_trigger_before_any_request(monkeypatch, password):
    with hostile(lambda r: [raw_answer("HTTP/1.1 200 OK\nContent-Length: 2", b"{}")]) as server:
        error, _, _ = _timed(
            lambda: _hook(monkeypatch, server.url, password=password).get_job_run(PID, JID, RID)
        )
        assert isinstance(error, CmlConfigError) and "X-Injected" not in str(error)
        event, _ = _trigger_event(monkeypatch, server.url, password=password)
    assert event["status"] == "error" and "API key" in event["message"]
    assert "X-Injected" not in event["message"] and "evil" not in event["message"]
    assert server.seen == []


# -- 6. no log line per request ---------------------------------------------------------------------


def test_polling_logs_no_line_per_request(monkeypatch, caplog, capfd):
    statuses = iter(["ENGINE_SCHEDULING"] + ["ENGINE_RUNNING"] * 6 + ["ENGINE_SUCCEEDED"] * 10)
    body = lambda: json.dumps(run_json(next(statuses))).encode()  # noqa: E731
    with (
        hostile(
            lambda r: [
                raw_answer(
                    f"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: {len(b := body())}", b
                )
            ]
        ) as server,
        caplog.at_level(logging.INFO),
    ):
        event, _ = _trigger_event(monkeypatch, server.url)
    assert event["status"] == "success" and len(server.seen) == 8
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    printed = capfd.readouterr()
    lines += printed.err.splitlines() + printed.out.splitlines()
    per_request = [line for line in lines if "HTTP Request" in line or "/api/v2/" in line or "GET " in line]
    assert per_request == []


# -- 7. proxies: the environment's, decided once per session, honoured by both clients ---------------


def test_the_environments_proxy_carries_sync_and_trigger_requests_and_no_proxy_bypasses_it(monkeypatch):
    nowhere = "http://127.0.0.1:9"  # nothing listens there: only the proxy can answer
    body = json.dumps(run_json("ENGINE_SUCCEEDED")).encode()
    with hostile(lambda r: [raw_answer(f"HTTP/1.1 200 OK\nContent-Length: {len(body)}", body)]) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        assert _hook(monkeypatch, nowhere).get_job_run(PID, JID, RID)["status"] == "ENGINE_SUCCEEDED"
        event, _ = _trigger_event(monkeypatch, nowhere)
        assert event["status"] == "success"
        # absolute-form targets, as a proxy is sent them: the workbench's URL, not the proxy's
        assert [s.path.split("?")[0] for s in proxy.seen] == [f"{nowhere}{RUN}"] * 2
        assert all(s.headers["authorization"] == f"Bearer {KEY}" for s in proxy.seen)

        proxy.seen.clear()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        error, _, _ = _timed(lambda: _hook(monkeypatch, nowhere).get_job_run(PID, JID, RID))
        assert type(error) is CmlApiError and "No answer" in str(error)
        event, _ = _trigger_event(monkeypatch, nowhere, end_in=1.0)
        assert event["status"] == "timeout"  # refused connections are transient: it kept polling
        assert proxy.seen == []


# -- 8. wrong names and wrong schemes: said as such, never retried ----------------------------------


def _no_proxy(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _retries_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "; retry " in r.getMessage()]


def test_plain_http_behind_an_https_url_is_said_so_sync_and_trigger(monkeypatch):
    _no_proxy(monkeypatch)
    with plain_http_server() as address:
        error, _, _ = _timed(lambda: _hook(monkeypatch, f"https://{address}").get_job_run(PID, JID, RID))
        event, _ = _trigger_event(monkeypatch, f"https://{address}")
    for message in (str(error), event["message"]):
        assert "answered in plain HTTP, not TLS" in message, message
        assert f"http://{address}" in message and "certificate" not in message
    assert type(error) is CmlConfigError and event["status"] == "error"


def test_a_name_that_does_not_resolve_is_said_so_at_once_sync_and_trigger(monkeypatch, caplog):
    _no_proxy(monkeypatch)
    clock = FakeClock()
    _hook(monkeypatch, "http://nonexistent.invalid", max_retries=5, retry_backoff=1)
    hook = CmlHook("cml_hostile", clock=clock)
    with caplog.at_level(logging.WARNING):
        read = _timed(lambda: hook.get_job_run(PID, JID, RID))[0]
        start = _timed(lambda: hook.start_job_run(PID, JID))[0]  # not idempotent: no look-ups either
        event, _ = _trigger_event(monkeypatch, "http://nonexistent.invalid", max_retries=5, retry_backoff=1)
    for message in (str(read), str(start), event["message"]):
        assert "host name 'nonexistent.invalid' did not resolve" in message, message
        assert "connection's host ('Workbench URL')" in message
    assert type(read) is CmlConfigError and type(start) is CmlConfigError and event["status"] == "error"
    assert clock.sleeps == [] and _retries_logged(caplog) == []  # failed at once: no retry, no back-off


def test_a_model_service_name_that_does_not_resolve_names_model_service_url(monkeypatch, caplog):
    _no_proxy(monkeypatch)
    hook = _hook(monkeypatch, "http://127.0.0.1:9")  # the default model service: modelservice.127.0.0.1
    with caplog.at_level(logging.WARNING):
        error, _, _ = _timed(lambda: hook.models.call_model(PID, "m1", {"x": 1}, access_key="model-key-1"))
    assert type(error) is CmlConfigError, repr(error)
    assert "'modelservice.127.0.0.1' did not resolve" in str(error)
    assert "connection extra 'model_service_url'" in str(error) and _retries_logged(caplog) == []


def test_only_a_lasting_resolver_failure_counts_as_a_name_that_does_not_resolve():
    lasting = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    temporary = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    wrapped = OSError("Cannot connect to host")
    wrapped.__cause__ = lasting
    assert unresolved(wrapped) == "Name or service not known"
    assert unresolved(temporary) is None and unresolved(OSError("refused")) is None
