"""The HTTP face of the simulated workbench: API v2, the v1 start endpoint, a journal, fault injection.

Built on the standard library's ``http.server`` (it parses HTTP; nothing here does).
"""

from __future__ import annotations

import base64
import json
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_cml.testing import answer_knobs, experiments, serving_routes
from airflow_provider_cml.testing.workbench import ApiError, Workbench

DEFAULT_PAGE_SIZE = 10


@dataclass
class Faults:
    """Faults to inject, each a probability per request (off by default).

    :param error_rate: answer 500/502/503 instead of handling the request.
    :param rate_limit_rate: answer 429 with ``Retry-After: retry_after``.
    :param reset_rate: reset the connection without answering.
    :param lost_response_rate: for POSTs: do the action, then reset the connection (answer lost).
    :param latency: seconds added to a request hit by ``slow_rate`` (or to every request if
        ``slow_rate`` is 0 and ``latency`` is set).
    :param slow_rate: share of requests that get ``latency`` added.
    :param seed: seed of the random generator, for repeatable storms.
    """

    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    reset_rate: float = 0.0
    lost_response_rate: float = 0.0
    latency: float = 0.0
    slow_rate: float = 0.0
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self.rng.seed(self.seed)

    def draw(self, method: str) -> str | None:
        """Which fault (if any) hits this request."""
        roll = self.rng.random()
        for name, rate in (
            ("error", self.error_rate),
            ("rate_limit", self.rate_limit_rate),
            ("reset", self.reset_rate),
            ("lost_response", self.lost_response_rate if method == "POST" else 0.0),
            ("slow", self.slow_rate),
        ):
            if roll < rate:
                return name
            roll -= rate
        return None


@dataclass(frozen=True)
class JournalEntry:
    """One request the workbench saw: method, path, status answered and any fault injected."""

    method: str
    path: str
    status: int | None
    time: float
    fault: str | None = None
    #: What was sent and answered (text), so tests can check both against the API's contract.
    request_body: str = ""
    response_body: str = ""
    client: str = ""  # the request's User-Agent
    query: str = ""  # the query string, as sent
    peer_port: int = 0  # the client's TCP port (which process asked, for tests that need to know)


def _match(value: Any, wanted: Any) -> bool:
    return str(wanted).lower() in str(value if value is not None else "").lower()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can reuse connections
    # Head and body leave in one write when the request is handled (handle_one_request flushes), as
    # a real server sends a small answer: unbuffered, the head went alone and every client woke twice.
    wbufsize = 1 << 16
    server: WorkbenchServer

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr logging
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    # -- plumbing ---------------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        scripted = self.server.take_scripted_answer(method, path)
        if scripted is not None:
            status, text, content_type = scripted
            self._record(method, path, status, "scripted", raw, text)
            self._send_raw(status, text.encode(), content_type)
            return
        faults = self.server.faults
        fault = faults.draw(method) if faults else None
        if faults and faults.latency and (fault == "slow" or not faults.slow_rate):
            time.sleep(faults.latency)
        if fault == "reset":
            self._record(method, path, None, fault)
            self._reset()
            return
        if fault in ("error", "rate_limit"):
            # Each answer is journaled before it is sent: a client holding the answer finds it there.
            if fault == "error":
                status = faults.rng.choice((500, 502, 503))  # type: ignore[union-attr]
                body: Any = ApiError(status, "simulated outage", grpc_code=14).body()
                self._record(method, path, status, fault, raw, json.dumps(body))
                self._send(status, body)
            else:
                status, body = 429, ApiError(429, "rate limited").body()
                self._record(method, path, status, fault, raw, json.dumps(body))
                self._send(429, body, {"Retry-After": f"{faults.retry_after:g}"})  # type: ignore[union-attr]
            return
        try:
            status, body = self._route(method, path, parse_qs(parts.query), raw)
        except ApiError as exc:
            status, body = exc.http_status, self._error_body(path, exc)
        body = answer_knobs.shape(self.server.workbench, method, path, status, body)
        if self.server.workbench.respell(body) and fault is None:
            fault = "respelled"  # off the contract on purpose (a server spelling statuses its own way)
        if fault == "lost_response":
            self._record(method, path, status, fault, raw, json.dumps(body))
            self._reset()
            return
        self._record(method, path, status, fault, raw, json.dumps(body))
        self._send(status, body)

    @staticmethod
    def _error_body(path: str, exc: ApiError) -> dict[str, Any]:
        # v1 (CDSW) errors carry only a message; v2 errors are grpc-gateway's runtimeError.
        return {"message": exc.message} if path.startswith("/api/v1/") else exc.body()

    def _record(
        self,
        method: str,
        path: str,
        status: int | None,
        fault: str | None,
        raw: bytes = b"",
        answer: str = "",
    ) -> None:
        request_body = raw.decode("utf-8", "replace")
        client = self.headers.get("User-Agent", "")
        query = urlsplit(self.path).query
        self.server.record(
            JournalEntry(
                method,
                path,
                status,
                time.time(),
                fault,
                request_body,
                answer,
                client,
                query,
                self.client_address[1],
            )
        )

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees "connection reset by peer".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(body).encode(), "application/json", headers)

    def _send_raw(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", f"sim-{self.server.next_request_number()}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    # -- auth -------------------------------------------------------------------------------------

    def _v2_key(self) -> str:
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if (
            scheme.lower() != "bearer"
            or key not in self.server.workbench.api_keys | self.server.workbench.readonly_keys
        ):
            raise ApiError(401, "Unauthorized: invalid or missing API key")
        return key

    def _v1_key(self) -> str:
        """v1 takes the legacy key (``CDSW_API_KEY``) as the Basic user name; a v2 key is refused."""
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, _password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user = ""
        if scheme.lower() != "basic" or user not in self.server.workbench.legacy_keys:
            raise ApiError(401, "Unauthorized: invalid API key (v1 takes the legacy API key, not a v2 key)")
        return user

    # -- routes -----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> tuple[int, Any]:
        wb = self.server.workbench
        if path.startswith("/api/v1/"):
            return self._v1(method, path, raw)
        if method == "POST" and path == "/model":  # the model service, beside the API
            return serving_routes.model_service(wb.serving, query, raw, self.headers.get("Authorization", ""))
        if not path.startswith("/api/v2/"):
            raise ApiError(404, f"no route for {path}", grpc_code=5)
        key = self._v2_key()
        rest = path[len("/api/v2") :]
        if method == "POST" and rest == "/auth/validate_key":
            self._json(raw)
            return 200, {"valid": True, "username": wb.key_users.get(key, "readonly"), "message": ""}
        if method in ("POST", "PATCH", "DELETE") and key in wb.readonly_keys:
            raise ApiError(403, "permission denied: this API key may not change jobs or runs")
        with wb.lock:
            if method == "GET" and rest == "/projects":
                include_public = self._param(query, "include_public_projects") == "true"
                visible = wb.visible_projects(wb.key_users.get(key, "admin"), include_public)
                return 200, self._page(query, "projects", [p.to_api() for p in visible])
            if method == "GET" and rest == "/usage":
                return 200, self._usage(query)
            if method == "GET" and rest == "/workloads/executions":
                return 200, self._executions(query)
            if method == "GET" and rest == "/jobs":
                return 200, self._page(query, "jobs", [j.to_api() for j in wb.jobs.values()])
            m = re.fullmatch(r"/projects/([^/]+)", rest)
            if method == "GET" and m:
                return 200, wb.project(m.group(1)).to_api()
            if method == "GET" and rest == "/runtimes":
                return 200, self._page(query, "runtimes", list(wb.runtimes))
            m = re.fullmatch(r"/projects/([^/]+)/jobs", rest)
            if method == "GET" and m:
                project = wb.project(m.group(1))
                jobs = [j.to_api() for j in wb.jobs.values() if j.project is project]
                return 200, self._page(query, "jobs", jobs)
            if method == "POST" and m:
                return 200, wb.create_job(wb.project(m.group(1)), self._json(raw)).to_api()
            m = re.fullmatch(r"/projects/([^/]+)/jobs/([^/]+)", rest)
            if method == "GET" and m:
                return 200, wb.job(m.group(1), m.group(2)).to_api()
            if method == "PATCH" and m:
                return 200, wb.update_job(wb.job(m.group(1), m.group(2)), self._json(raw)).to_api()
            if method == "DELETE" and m:
                wb.delete_job(wb.job(m.group(1), m.group(2)))
                return 200, {}
            m = re.fullmatch(r"/projects/([^/]+)/jobs/([^/]+)/runs", rest)
            if m:
                job = wb.job(m.group(1), m.group(2))
                if method == "GET":
                    runs = sorted(wb.runs_of(job), key=lambda r: r.seq)
                    return 200, self._page(query, "job_runs", [wb.run_api(r) for r in runs], seq_sort=True)
                if method == "POST":
                    body = self._json(raw)
                    return 200, wb.run_api(wb.start_run(job, body.get("environment"), body.get("arguments")))
            m = re.fullmatch(r"/projects/([^/]+)/jobs/([^/]+)/runs/([^/:]+)(:stop)?", rest)
            if m:
                run = wb.run(m.group(1), m.group(2), m.group(3))
                if method == "GET" and not m.group(4):
                    return 200, wb.run_api(run)
                if method == "POST" and m.group(4):
                    return 200, wb.run_api(wb.stop_run(run))

            def read_body() -> dict[str, Any]:
                return self._json(raw)

            def page(key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
                return self._page(query, key, items)

            served = serving_routes.route(wb.serving, method, rest, read_body, page)
            if served is None:
                served = experiments.route(wb.experiments, method, rest, read_body, page)
            if served is not None:
                return served
        raise ApiError(404, f"no route for {method} {path}", grpc_code=5)

    def _v1(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        """The legacy CDSW API: start a job; read a project and its jobs."""
        wb = self.server.workbench
        self._v1_key()
        m = re.fullmatch(r"/api/v1/projects/([^/]+)/([^/]+)(/jobs(?:/(\d+)/start)?)?", path)
        if not m:
            raise ApiError(404, f"no route for {path}")
        with wb.lock:
            project = wb.find_project_by_slug(m.group(1), m.group(2))
            jobs = [j for j in wb.jobs.values() if j.project is project]
            if method == "GET" and not m.group(3):
                return 200, self._v1_project(project)
            if method == "GET" and m.group(3) == "/jobs":
                return 200, [self._v1_job(j) for j in jobs]
        if method != "POST" or not m.group(4):
            raise ApiError(404, f"no route for {method} {path}")
        if "application/json" not in (self.headers.get("Content-Type") or ""):
            raise ApiError(400, "Content-Type must be application/json")
        with wb.lock:
            job = next((j for j in jobs if j.v1_id == int(m.group(4))), None)
            if job is None:
                raise ApiError(404, f"job {m.group(4)} not found")
            body = self._json(raw)
            run = wb.start_run(job, body.get("environment"), None)
        return 200, {"engine_id": run.id}

    def _v1_project(self, project: Any) -> dict[str, Any]:
        return {
            "id": self.server.workbench.project_number(project),
            "name": project.name,
            "slug": project.slug,
            "owner": {"username": project.owner},
            "html_url": f"{self.server.url}/{project.owner}/{project.slug}",
        }

    def _v1_job(self, job: Any) -> dict[str, Any]:
        runs = self.server.workbench.runs_of(job)
        latest = runs[-1] if runs else None
        return {
            "id": job.v1_id,
            "public_identifier": job.id,
            "name": job.name,
            "script": job.script,
            "html_url": f"{self.server.url}/{job.project.owner}/{job.project.slug}/jobs/{job.v1_id}",
            "latest": {"id": latest.id, "status": latest.status.removeprefix("ENGINE_").lower()}
            if latest
            else None,
        }

    def _usage(self, query: dict[str, list[str]]) -> dict[str, Any]:
        items = self.server.workbench.usage()
        window = self._json_param(query, "time_range_search_filter").get("created_time") or {}
        if window:  # "YYYY-MM-DD hh:mm:ss" in UTC, as the spec's example
            stamp = lambda i: i["created_at"][:19].replace("T", " ")  # noqa: E731
            items = [i for i in items if window.get("min", "") <= stamp(i) <= window.get("max", "~")]
        page = self._page(query, "usage_response", items)
        return {**page, "total_count": str(len(items))}

    def _executions(self, query: dict[str, list[str]]) -> dict[str, Any]:
        workloads, executions = self.server.workbench.executions()
        window = self._json_param(query, "time_range_search_filter").get("start_time") or {}
        if window:
            executions = [
                e for e in executions if window.get("min", "") <= e["start_time"] <= window.get("max", "~")
            ]
        crns = self._json_param(query, "multi_column_search_filter").get("workload_crn")
        if crns:
            executions = [e for e in executions if e["workload_crn"] == crns]
        page = self._page(query, "executions", executions)
        used = {e["workload_crn"] for e in page["executions"]}
        return {"workloads": [w for w in workloads if w["workload_crn"] in used], **page}

    def _json_param(self, query: dict[str, list[str]], name: str) -> dict[str, Any]:
        text = self._param(query, name)
        try:
            value = json.loads(text) if text else {}
        except ValueError:
            raise ApiError(400, f"invalid {name}") from None
        return value if isinstance(value, dict) else {}

    @staticmethod
    def _json(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "invalid JSON body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    @staticmethod
    def _param(query: dict[str, list[str]], *names: str) -> str | None:
        for name in names:
            if query.get(name):
                return query[name][0]
        return None

    def _page(
        self, query: dict[str, list[str]], key: str, items: list[dict[str, Any]], seq_sort: bool = False
    ) -> dict[str, Any]:
        search = self._param(query, "search_filter", "searchFilter")
        if search:
            try:
                wanted = json.loads(search)
            except ValueError:
                wanted = search
            if isinstance(wanted, dict):
                # The registry's filter says model_name for its items' name.
                wanted = {("name" if k == "model_name" else k): v for k, v in wanted.items()}
                items = [i for i in items if all(_match(i.get(k), v) for k, v in wanted.items())]
            else:
                items = [i for i in items if _match(i.get("name"), wanted)]
        sort = self._param(query, "sort")
        if sort:
            reverse = sort.startswith("-")
            name = sort.lstrip("-+")
            # created_at ties (same microsecond) keep creation order
            items = sorted(items, key=lambda i: str(i.get(name, "")), reverse=reverse)
        size_text = self._param(query, "page_size", "pageSize")
        try:
            size = int(size_text) if size_text else DEFAULT_PAGE_SIZE
        except ValueError:
            raise ApiError(400, f"invalid page_size: {size_text}") from None
        size = max(1, min(size, self.server.workbench.max_page_size or size))
        token = self._param(query, "page_token", "pageToken")
        offset = 0
        if token:
            try:
                offset = int(base64.urlsafe_b64decode(token.encode()).decode())
            except ValueError:
                raise ApiError(400, "invalid page_token") from None
        page = items[offset : offset + size]
        next_offset = offset + size
        next_token = (
            base64.urlsafe_b64encode(str(next_offset).encode()).decode() if next_offset < len(items) else ""
        )
        return {key: page, "next_page_token": next_token}


class WorkbenchServer(ThreadingHTTPServer):
    """A :class:`Workbench` served over HTTP(S) on loopback, with a request journal and faults.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    :param workbench: the state to serve.
    :param host: address to bind (loopback by default).
    :param port: port to bind (0 picks a free one).
    :param ssl_context: serve HTTPS with this server-side context.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # bursts of new connections (many triggers at once) must not be dropped

    def __init__(
        self,
        workbench: Workbench,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.workbench = workbench
        self.faults: Faults | None = None
        self.journal: list[JournalEntry] = []
        self._journal_lock = threading.Lock()
        self._request_number = 0
        self._scripted: list[list[Any]] = []
        self.connections_opened = 0  # TCP connections accepted, to check clients reuse them
        self._thread: threading.Thread | None = None
        self.scheme = "https" if ssl_context else "http"
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        workbench.api_url = self.url

    @property
    def url(self) -> str:
        """The workbench's base URL, e.g. ``http://127.0.0.1:41234``."""
        host, port = self.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    def record(self, entry: JournalEntry) -> None:
        """Add a request to the journal.

        :param entry: what was seen.
        """
        with self._journal_lock:
            self.journal.append(entry)

    def next_request_number(self) -> int:
        """A new request number (for request-id headers)."""
        with self._journal_lock:
            self._request_number += 1
            return self._request_number

    def requests(
        self, method: str | None = None, path: str | Callable[[str], bool] | None = None
    ) -> list[JournalEntry]:
        """Journal entries, filtered by method and by a path regex (full match) or predicate."""
        with self._journal_lock:
            entries = list(self.journal)
        if method:
            entries = [e for e in entries if e.method == method]
        if isinstance(path, str):
            entries = [e for e in entries if re.fullmatch(path, e.path)]
        elif path is not None:
            entries = [e for e in entries if path(e.path)]
        return entries

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count the connection, then serve it.

        :param request: the accepted socket.
        :param client_address: the peer's address.
        """
        with self._journal_lock:
            self.connections_opened += 1
        super().process_request(request, client_address)

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        body: str | None = None,
        content_type: str = "application/json",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests whose path fully matches the regex ``path`` with ``status``.

        ``body`` replaces the default grpc-gateway error body (e.g. HTML, truncated JSON, odd shapes).
        """
        if body is None:
            body = json.dumps(ApiError(status, "scripted failure", grpc_code=9).body())
        with self._journal_lock:
            self._scripted.append([method, re.compile(path), status, times, body, content_type])

    def take_scripted_answer(self, method: str, path: str) -> tuple[int, str, str] | None:
        """The next scripted answer for this request (see :meth:`fail_next`), if any.

        :param method: HTTP method.
        :param path: request path.
        """
        with self._journal_lock:
            for rule in self._scripted:
                if rule[0] == method and rule[1].fullmatch(path) and rule[3] > 0:
                    rule[3] -= 1
                    return int(rule[2]), str(rule[4]), str(rule[5])
        return None

    def clear_journal(self) -> None:
        """Forget the journal and any scripted failures not yet used."""
        with self._journal_lock:
            self.journal.clear()
            self._scripted.clear()

    def start(self) -> WorkbenchServer:
        """Serve in a background thread; returns ``self``."""
        self._thread = threading.Thread(target=self.serve_forever, name="cml-workbench", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and stop every active run."""
        self.shutdown()
        self.server_close()
        self.workbench.shutdown()

    def __enter__(self) -> WorkbenchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def airflow_connection(self, api_key: str, **extra: Any) -> str:
        """JSON for ``AIRFLOW_CONN_<ID>`` pointing at this workbench (and at its model service)."""
        extra = {"model_service_url": f"{self.url}/model", **extra}
        return json.dumps({"conn_type": "cml", "host": self.url, "password": api_key, "extra": extra})
