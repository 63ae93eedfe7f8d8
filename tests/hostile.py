"""A small hostile HTTP server on 127.0.0.1 for tests: each test scripts the exact bytes it answers.

Raw sockets, not http.server, so answers can be cut short, trickled, mis-gzipped or redirected at
will. Every request is recorded (method, path, headers, body) so a test can assert what the client
sent, and that nothing was sent at all.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


#: What a handler returns: bytes to send, ("sleep", seconds), or ("trickle", bytes, seconds per byte).
Action = Any
Handler = Callable[[Seen], list[Action]]


def answer(
    status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> bytes:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    lines = [
        f"HTTP/1.1 {status} X",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def cut_answer(body: Any, missing: int = 20) -> bytes:
    """Content-Length promises more than is sent; then the connection closes."""
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data) + missing}\r\nConnection: close\r\n\r\n"
    return head.encode() + data


def bad_gzip_answer() -> bytes:
    data = gzip.compress(b'{"id": "x"}')[:-8] + b"garbage!"
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    return head.encode() + data


@dataclass
class HostileServer:
    handler: Handler
    seen: list[Seen] = field(default_factory=list)
    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def start(self) -> HostileServer:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            request = self._read(conn)
            if request is None:
                return
            self.seen.append(request)
            for action in self.handler(request):
                if isinstance(action, bytes):
                    conn.sendall(action)
                elif action[0] == "sleep":
                    time.sleep(action[1])
                elif action[0] == "trickle":
                    for byte in action[1]:
                        if self.stopping.is_set():
                            return
                        conn.sendall(bytes([byte]))
                        time.sleep(action[2])
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _read(conn: socket.socket) -> Seen | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length") or 0)
        while len(body) < length:
            body += conn.recv(65536)
        return Seen(method, target, headers, body)


@contextmanager
def hostile(handler: Handler) -> Iterator[HostileServer]:
    server = HostileServer(handler).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Budget:
    """One attempt's time limit, as the client worked it out (``Exchange.time_left``)."""

    method: str
    path: str
    now: float
    limit: float
    deadline: float | None

    @property
    def ends(self) -> float:
        """When the attempt has to be over, on the client's monotonic clock."""
        return self.now + self.limit


@contextmanager
def budgets() -> Iterator[list[Budget]]:
    """Record each attempt's time limit, sync and trigger clients alike.

    How long a call took depends on the machine's load; the limits the client gave its attempts do
    not (load only makes later limits smaller), so tests that show a deadline holds assert on these.
    """
    from airflow_provider_cml.client.attempts import Exchange

    seen: list[Budget] = []
    original = Exchange.time_left

    def recording(self: Exchange, limit: float, now: float) -> float:
        left = original(self, limit, now)
        if left > 0:
            seen.append(Budget(self.method, self.path, now, left, self.deadline))
        return left

    Exchange.time_left = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Exchange.time_left = original  # type: ignore[method-assign]


@contextmanager
def plain_http_server() -> Iterator[str]:
    """A plain-HTTP server that answers whatever arrives first (a TLS ClientHello too) with a 400.

    As nginx or http.server do when an ``https://`` client reaches their plain-HTTP port; yields
    its ``127.0.0.1:<port>``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(5)
                    conn.recv(65536)
                    conn.sendall(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stopping.set()
        sock.close()
