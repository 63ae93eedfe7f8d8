"""Wire: a lean HTTP/1.1 keep-alive client on asyncio streams, for the triggers' polls.

Why not httpx here: a triggerer runs thousands of triggers in one event loop, and httpx's pool
(httpcore) re-checks every pooled connection, through anyio's typed attributes, each time a
request is queued or finished. At 1,000 triggers that bookkeeping was most of the CPU a poll cost
(``benchmarks/trigger_scale.py --profile``). This client does only what the provider's requests
need: one origin, keep-alive, TLS with the connection's verification settings, ``Content-Length``
and chunked bodies, gzip/deflate, no redirects (the transport reports them), a bounded pool where
a burst waits for a free connection. Proxies are not spoken here: a connection that an
``HTTP(S)_PROXY``/``ALL_PROXY`` variable applies to uses httpx (see :func:`proxy_applies`).

Errors are :class:`HttpFailure` with ``maybe_acted``: ``False`` when the request cannot have
reached the server (the connection never opened), as the transport's retry rules need.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

#: Larger heads or bodies are not a Cloudera AI answer.
MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class HttpFailure(Exception):
    """No usable answer. ``maybe_acted``: the server may have received (and acted on) the request."""

    def __init__(self, reason: str, *, maybe_acted: bool) -> None:
        super().__init__(reason)
        self.maybe_acted = maybe_acted


class Headers(dict):  # type: ignore[type-arg]
    """Response headers with lower-case names; ``get`` takes any case."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """The header's value (names are case-insensitive).

        :param key: header name.
        :param default: what to return when it is absent.
        """
        return super().get(key.lower(), default)


def proxy_applies(url: str) -> bool:
    """Whether the environment's proxy variables route ``url`` through a proxy (as httpx would).

    :param url: the workbench URL.
    """
    import urllib.request  # only when a trigger starts: it is not a light import

    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    return not bypass(parts.hostname or "", proxies)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        # Bytes waiting on an idle connection answer nothing we asked: it is not reused.
        unread = bool(getattr(self.reader, "_buffer", b""))
        return not (self.reader.at_eof() or self.writer.is_closing() or unread)

    def close(self) -> None:
        self.writer.close()


class LeanClient:
    """HTTP/1.1 to one origin, with at most ``max_connections`` connections kept alive.

    :param base_url: ``http(s)://host[:port]``; request targets are paths below it.
    :param headers: sent with every request.
    :param ssl_context: for https (``None``: plain http).
    :param connect_timeout: seconds to open a connection (and finish TLS).
    :param max_connections: connections open at most; more requests wait for one.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        max_connections: int = 20,
    ) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if default_port else f"{host}:{self.port}"
        self.ssl_context = ssl_context if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        fixed = {"Host": authority, "Accept-Encoding": "gzip, deflate", **headers}
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        has_type = any(name.lower() == "content-type" for name in fixed)
        self._content_type = "" if has_type else "Content-Type: application/json\r\n"
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def aclose(self) -> None:
        """Close the idle connections (ones in use close when their exchange ends)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def request(
        self, method: str, target: str, body: bytes | None = None
    ) -> tuple[int, Headers, bytes]:
        """Send one request and read its whole answer.

        :param method: HTTP method.
        :param target: path and query, e.g. ``/api/v2/projects?page_size=1``.
        :param body: a JSON body, if any.
        """
        if body is not None:
            extra = f"{self._content_type}Content-Length: {len(body)}\r\n"
        else:  # a bodiless POST still says so: some proxies refuse it otherwise (411)
            extra = "Content-Length: 0\r\n" if method in ("POST", "PUT", "PATCH") else ""
        message = f"{method} {target} HTTP/1.1\r\n{self._head}{extra}\r\n".encode("latin-1") + (body or b"")
        async with self._slots:
            connection, reused = await self._connection()
            try:
                try:
                    connection.writer.write(message)
                    status, headers, payload, keep = await self._read_answer(connection.reader, method)
                except HttpFailure as failure:
                    # A kept-alive connection the server closed meanwhile: nothing was read, so an
                    # idempotent request goes again on a fresh connection.
                    if not (reused and failure.args[0] == "closed before answering" and method == "GET"):
                        raise
                    connection.close()
                    connection, reused = await self._connection(fresh=True)
                    connection.writer.write(message)
                    status, headers, payload, keep = await self._read_answer(connection.reader, method)
            except BaseException:
                connection.close()  # cancelled or broken mid-exchange: its state is unknown
                raise
            if keep:
                self._idle.append(connection)
            else:
                connection.close()
        return status, headers, payload

    async def _connection(self, fresh: bool = False) -> tuple[_Connection, bool]:
        while self._idle and not fresh:
            connection = self._idle.pop()
            if connection.usable():
                return connection, True
            connection.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host if self.ssl_context else None,
                    limit=MAX_HEAD,
                ),
                self.connect_timeout,
            )
        except ssl.SSLError:
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            raise HttpFailure(f"connect failed ({type(exc).__name__})", maybe_acted=False) from None
        return _Connection(reader, writer), False

    @staticmethod
    async def _read_answer(reader: asyncio.StreamReader, method: str) -> tuple[int, Headers, bytes, bool]:
        head = b""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                status, version, headers = _parse_head(head)
                if not 100 <= status < 200:
                    break
            if method == "HEAD" or status in _NO_BODY_STATUSES:
                body, framed = b"", True
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body, framed = await _read_chunked(reader), True
            elif "content-length" in headers:
                length = _length(headers["content-length"])
                body, framed = await reader.readexactly(length), True
            else:
                body, framed = await _read_to_end(reader), False
        except asyncio.IncompleteReadError as exc:
            reason = "closed before answering" if not (head or exc.partial) else "answer cut short"
            raise HttpFailure(reason, maybe_acted=True) from None
        except asyncio.LimitOverrunError:
            raise HttpFailure("answer head too large", maybe_acted=True) from None
        except (ConnectionError, OSError) as exc:
            raise HttpFailure(f"connection broke ({type(exc).__name__})", maybe_acted=True) from None
        body = _decode(body, headers.get("content-encoding", ""))
        connection = headers.get("connection", "").lower()
        keep = framed and version == "HTTP/1.1" and "close" not in connection
        return status, headers, body, keep


def _parse_head(head: bytes) -> tuple[int, str, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpFailure("not an HTTP/1.x answer", maybe_acted=True)
    headers = Headers()
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpFailure("malformed answer header", maybe_acted=True)
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(code), version, headers


def _length(value: str) -> int:
    if not value.strip().isdigit() or int(value) > MAX_BODY:
        raise HttpFailure("bad or too large Content-Length", maybe_acted=True)
    return int(value)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpFailure("malformed chunked answer", maybe_acted=True) from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise HttpFailure("answer too large", maybe_acted=True)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise HttpFailure("malformed chunked answer", maybe_acted=True)


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    data = await reader.read(MAX_BODY + 1)
    while True:
        more = await reader.read(MAX_BODY + 1 - len(data))
        if not more:
            break
        data += more
        if len(data) > MAX_BODY:
            raise HttpFailure("answer too large", maybe_acted=True)
    return data


def _decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise HttpFailure(f"answer in an unsupported encoding ({encoding})", maybe_acted=True)
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    try:
        decompressor = zlib.decompressobj(wbits)
        data = decompressor.decompress(body, MAX_BODY)
        if decompressor.unconsumed_tail or not decompressor.eof:
            raise zlib.error("truncated or too large")
        return data
    except zlib.error:
        if encoding == "deflate":  # some servers send raw deflate without the zlib header
            try:
                return zlib.decompress(body, -zlib.MAX_WBITS)
            except zlib.error:
                pass
        raise HttpFailure("answer could not be decoded", maybe_acted=True) from None


def text_of(body: bytes, headers: Mapping[str, str]) -> str:
    """The body as text, by the answer's charset (UTF-8 by default, bad bytes replaced).

    :param body: the body.
    :param headers: the answer's headers.
    """
    charset = "utf-8"
    for part in str(headers.get("content-type", "")).split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip("\"'")
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")
