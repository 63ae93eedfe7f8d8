"""The triggers' lean HTTP/1.1 client, byte by byte, against a scripted asyncio server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import pytest

from airflow_provider_cml.http11 import HttpFailure, LeanClient, proxy_applies, text_of


class Scripted:
    """Answers each request with the next scripted bytes; records requests and connections."""

    def __init__(self, answers: list[bytes], close_after_each: bool = False) -> None:
        self.answers = answers
        self.close_after_each = close_after_each
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if not answer:  # b"": close without answering
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


def client(url: str) -> LeanClient:
    return LeanClient(url, headers={"Authorization": "Bearer k"}, ssl_context=None, connect_timeout=5)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_keep_alive_reuses_one_connection_and_sends_what_the_api_needs():
    async def scenario() -> None:
        async with Scripted([ok(b'{"a": 1}'), ok(b'{"b": 2}')]) as server:
            lean = client(server.url)
            assert (await lean.request("GET", "/api/v2/x?q=1"))[2] == b'{"a": 1}'
            status, headers, body = await lean.request("POST", "/api/v2/y:stop")
            assert (status, body, headers.get("Content-Length")) == (200, b'{"b": 2}', "8")
            assert server.connections == 1
            first, second = server.requests
            assert first.startswith(b"GET /api/v2/x?q=1 HTTP/1.1\r\n") and b"Authorization: Bearer k" in first
            assert b"Host: 127.0.0.1:" in first and b"Content-Length" not in first
            assert b"Content-Length: 0\r\n" in second  # a bodiless POST says so
            await lean.aclose()

    run(scenario())


def test_chunked_gzip_and_deflate_answers_are_decoded():
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{"a"\r\n4\r\n: 1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    gzipped = gzip.compress(b'{"g": 1}')
    deflated = zlib.compress(b'{"d": 1}')
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = raw_deflate.compress(b'{"r": 1}') + raw_deflate.flush()

    async def scenario() -> list[bytes]:
        answers = [
            chunked,
            ok(gzipped, "Content-Encoding: gzip"),
            ok(deflated, "Content-Encoding: deflate"),
            ok(raw, "Content-Encoding: deflate"),
        ]
        async with Scripted(answers) as server:
            lean = client(server.url)
            return [(await lean.request("GET", "/"))[2] for _ in range(4)]

    assert [json.loads(b) for b in run(scenario())] == [{"a": 1}, {"g": 1}, {"d": 1}, {"r": 1}]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_kept_alive_connection_closed_unanswered_is_replaced_for_a_get_only(method):
    async def scenario() -> tuple[int, Any]:
        async with Scripted([ok(b"{}"), b"", ok(b'{"again": 1}')]) as server:
            lean = client(server.url)
            await lean.request("GET", "/")
            try:  # the server closes the kept-alive connection on this request, unanswered
                outcome: Any = (await lean.request(method, "/next", b"{}" if method == "POST" else None))[2]
            except HttpFailure as failure:
                outcome = failure
            return server.connections, outcome

    connections, outcome = run(scenario())
    if method == "GET":  # sent again on a fresh connection, transparently
        assert (connections, outcome) == (2, b'{"again": 1}')
    else:  # a POST may have been acted on: the transport's start logic decides, not the client
        assert connections == 1 and isinstance(outcome, HttpFailure) and outcome.maybe_acted


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"cut":', "answer cut short"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x answer"),
        (ok(b"garbage", "Content-Encoding: gzip"), "could not be decoded"),
        (ok(b"x", "Content-Encoding: br"), "unsupported encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", "bad or too large Content-Length"),
        (b"HTTP/1.1 200 OK\r\nbroken header line\r\n\r\n", "malformed answer header"),
    ],
)
def test_broken_answers_are_failures_that_may_have_acted(answer, words):
    async def scenario() -> HttpFailure:
        async with Scripted([answer], close_after_each=True) as server:
            with pytest.raises(HttpFailure) as info:
                await client(server.url).request("GET", "/")
            return info.value

    failure = run(scenario())
    assert words in str(failure) and failure.maybe_acted is True


def test_a_refused_connection_cannot_have_acted():
    async def scenario() -> HttpFailure:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(HttpFailure) as info:
            await client(f"http://127.0.0.1:{port}").request("POST", "/start", b"{}")
        return info.value

    assert run(scenario()).maybe_acted is False


def test_a_burst_waits_for_one_of_the_pools_connections():
    async def scenario() -> int:
        async with Scripted([ok(b"{}") for _ in range(60)]) as server:
            lean = LeanClient(server.url, headers={}, ssl_context=None, connect_timeout=5, max_connections=3)
            await asyncio.gather(*(lean.request("GET", "/") for _ in range(60)))
            return server.connections

    assert run(scenario()) <= 3


def test_text_follows_the_charset_and_replaces_bad_bytes():
    assert text_of("é".encode("latin-1"), {"content-type": "application/json; charset=latin-1"}) == "é"
    assert text_of(b"\xff{}", {}) == "\ufffd{}"


def test_proxy_variables_send_triggers_to_httpx(monkeypatch, wb):
    from airflow_provider_cml.hooks.cml import CmlHook
    from airflow_provider_cml.transport import AsyncTransport

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert not proxy_applies("https://cml.example.com")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    assert proxy_applies("https://cml.example.com") and not proxy_applies("http://cml.example.com")
    monkeypatch.setenv("NO_PROXY", "cml.example.com")
    assert not proxy_applies("https://cml.example.com")

    async def chosen() -> str:
        made = await AsyncTransport._new_client(CmlHook().config)
        await made.aclose()
        return type(made).__name__

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.com:3128")  # the workbench is http://127.0.0.1
    monkeypatch.setenv("NO_PROXY", "")
    assert run(chosen()) == "AsyncClient"  # httpx, which speaks proxies
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert run(chosen()) == "LeanClient"
