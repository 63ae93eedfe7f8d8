"""Wire: one HTTP exchange, from request to decoded answer or clear error, for both transports.

requests (sync, for tasks) and httpx (async, for triggers) each send a request and describe what
came back as an :class:`Answer`; :func:`settle` alone decides what that answer means (a result, a
final error, an unknown outcome, or a retry after a delay). The two transports only differ in how
they send and how they sleep. A request that is not idempotent is never retried here: its caller
owns that decision (see ``CmlHook.start_job_run``).

What a hostile or broken server can do is bounded here: redirects are never followed (a 3xx is an
error naming its target), every answer must be a JSON object, JSON nesting is bounded, every
transport exception becomes a :class:`CmlApiError`, and each attempt has a total time limit (not
only a per-read one), so a server that trickles bytes cannot hold a request.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

from airflow_provider_cml import __version__
from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError
from airflow_provider_cml.http11 import HttpFailure, LeanClient, proxy_applies, text_of
from airflow_provider_cml.retry import Clock, is_retryable_status

if TYPE_CHECKING:
    import httpx
    import requests

    from airflow_provider_cml.config import CmlClientConfig

log = logging.getLogger(__name__)

_REQUEST_ID_HEADERS = ("x-request-id", "x-cml-request-id", "x-correlation-id")
#: Deeper JSON than this is refused (the API's objects nest a few levels; a bomb nests thousands).
MAX_JSON_DEPTH = 64
#: Override values shorter than this are not masked in server messages (they would garble them).
MIN_REDACTED_LENGTH = 3


def request_id(headers: Mapping[str, str]) -> str | None:
    """The answer's request-id header, for Cloudera support.

    :param headers: the answer's headers.
    """
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _json_depth_ok(text: str) -> bool:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return False
        elif char in "]}":
            depth -= 1
    return True


def load_json(text: str) -> Any:
    """``json.loads`` with nesting bounded by :data:`MAX_JSON_DEPTH`; ``ValueError`` otherwise.

    :param text: the answer's body.
    """
    if not _json_depth_ok(text):
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(text)


def redact(text: str, secrets: Collection[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (longest first).

    :param text: e.g. a server's error message, which may echo the request body.
    :param secrets: values sent in the request (environment overrides).
    """
    for secret in sorted((s for s in secrets if len(s) >= MIN_REDACTED_LENGTH), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def server_message(text: str, secrets: Collection[str] = ()) -> str:
    """grpc-gateway's ``message``, else the older ``error``, else the raw text (shortened), redacted.

    :param text: the error answer's body.
    :param secrets: values to mask (see :func:`redact`).
    """
    try:
        body = load_json(text)
    except ValueError:
        body = None
    message = None
    if isinstance(body, dict):
        message = next(
            (body[k] for k in ("message", "error") if isinstance(body.get(k), str) and body[k]), None
        )
    if message is None:
        flat = " ".join(text.split())
        message = flat[:300] + ("..." if len(flat) > 300 else "")
    return redact(message, secrets)


def error_for_response(
    status_code: int,
    headers: Mapping[str, str],
    text: str,
    *,
    method: str,
    path: str,
    not_found: str | None = None,
    secrets: Collection[str] = (),
) -> CmlApiError:
    """The error to raise for an HTTP error answer, with a message that says what to do.

    :param status_code: the HTTP status.
    :param headers: the answer's headers.
    :param text: the answer's body.
    :param method: HTTP method.
    :param path: request path.
    :param not_found: what a 404 (or a 403 on a read) means.
    :param secrets: values sent in the request, masked in the server's message.
    """
    message = server_message(text, secrets)
    details = {
        "http_status": status_code,
        "method": method,
        "path": path,
        "server_message": message,
        "request_id": request_id(headers),
    }
    if status_code == 401:
        text_out = (
            "Cloudera AI rejected the API key (HTTP 401). Put a current key from the workbench's "
            "User Settings > API Keys (audience: API) in the connection's password."
        )
    elif status_code == 403 and not_found and method == "GET":
        # Workbenches answer 403 for IDs that do not exist as well as for ones the key may not use.
        text_out = (
            f"Not found or not permitted for this key: {not_found} (HTTP 403: {message}). Check the ID, "
            "or ask the project's owner for access."
        )
    elif status_code == 403:
        text_out = (
            f"The API key is valid but may not do this (HTTP 403: {message}). Ask the project's owner "
            "for access, or use a key of a user who has it."
        )
    elif status_code == 404:
        text_out = f"Not found: {not_found or 'the requested resource'} (server said: {message})."
    elif is_retryable_status(status_code):
        text_out = f"Cloudera AI is unavailable or busy (HTTP {status_code}: {message})."
    else:
        text_out = f"Cloudera AI refused the request (HTTP {status_code}): {message}"
    return CmlApiError(text_out, **details)  # type: ignore[arg-type]


def redirect_error(config: CmlClientConfig, answer: Answer, *, method: str, path: str) -> CmlApiError:
    """The error for a 3xx: redirects are never followed (they would carry the key and the body away).

    :param config: the client settings.
    :param answer: the 3xx answer.
    :param method: HTTP method.
    :param path: request path.
    """
    target = urlsplit(answer.headers.get("location") or answer.headers.get("Location") or "")
    where = target.hostname or "(no Location header)"
    hint = "Set the connection's host to the workbench URL the redirect points to."
    if config.base_url.startswith("http://") and target.scheme == "https":
        hint = "The workbench redirects to HTTPS: write the host as https://."
    return CmlApiError(
        f"Cloudera AI answered with a redirect (HTTP {answer.status_code}) to {where}; the provider does "
        f"not follow redirects. {hint}",
        http_status=answer.status_code,
        method=method,
        path=path,
        request_id=request_id(answer.headers),
    )


_EMPTY = object()


def decode_object(
    status_code: int, headers: Mapping[str, str], text: str, *, method: str, path: str
) -> dict[str, Any]:
    """The JSON object of a successful answer; a clear error for anything else.

    :param status_code: the HTTP status.
    :param headers: the answer's headers.
    :param text: the answer's body.
    :param method: HTTP method.
    :param path: request path.
    """
    problem = None
    try:
        body = load_json(text) if text.strip() else _EMPTY
    except ValueError as exc:
        content_type = headers.get("content-type", "unknown")
        if "html" in content_type.lower() or text.lstrip().startswith("<"):
            problem = (
                "an HTML page: is the host the workbench URL (not the Cloudera console or a login proxy)?"
            )
        elif "nested deeper" in str(exc):
            problem = f"JSON nested deeper than {MAX_JSON_DEPTH} levels, which the API never sends."
        else:
            problem = "not valid JSON (cut short or garbled in transit)."
    else:
        if body is _EMPTY:
            problem = "an empty body where a JSON object was expected."
        elif not isinstance(body, dict):
            problem = f"a JSON {type(body).__name__} where a JSON object was expected."
    if problem is None:
        return body  # type: ignore[return-value]
    raise CmlApiError(
        f"Cloudera AI answered HTTP {status_code} with {problem}",
        http_status=status_code,
        method=method,
        path=path,
        request_id=request_id(headers),
    )


@dataclass
class Answer:
    """What one attempt produced: a response, or no response (``status_code`` is ``None``)."""

    status_code: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    text: str = ""
    failure: str | None = None
    # False when the connection never opened, so the server cannot have acted on the request.
    maybe_acted: bool = True


class RetryLater(Exception):
    """Control flow: sleep ``delay`` seconds, then send again."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


class NotDone(Exception):
    """A non-idempotent request got no usable answer; whether to send it again is the caller's call.

    :param error: the error to raise if the caller gives up.
    :param retry_after: the answer's ``Retry-After`` header, if any.
    :param maybe_acted: ``False`` when the server cannot have acted on the request (the connection
        never opened, or 429): sending it again is safe. ``True``: the outcome is unknown.
    :param resend_useless: sending it again cannot help (a redirect): look, then give up.
    """

    def __init__(
        self,
        error: CmlApiError,
        *,
        retry_after: str | None = None,
        maybe_acted: bool,
        resend_useless: bool = False,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.maybe_acted = maybe_acted
        self.resend_useless = resend_useless


def tls_error(base_url: str, exc: BaseException) -> CmlConfigError:
    """The error for a failed certificate check, saying how to trust a private CA.

    :param base_url: the workbench URL.
    :param exc: the TLS error.
    """
    return CmlConfigError(
        f"TLS certificate verification failed for {base_url} ({type(exc).__name__}). If the workbench uses "
        "a private CA, set the connection's 'CA bundle path' (extra 'ca_bundle') to a PEM file with that "
        "CA. Turn 'verify_ssl' off only for a throwaway workbench."
    )


def auth_headers(config: CmlClientConfig) -> dict[str, str]:
    """Headers for every request: Bearer for v2; Basic (key as user, empty password) and JSON for v1.

    :param config: the client settings.
    """
    headers = {"User-Agent": f"airflow-provider-cml/{__version__}", "Accept": "application/json"}
    if config.api_version == "v1":
        token = base64.b64encode(f"{config.api_key}:".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        headers["Content-Type"] = "application/json"  # required by v1 even with an empty body
    else:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return headers


@dataclass(frozen=True)
class Exchange:
    """One request as the caller asked for it.

    :param method: HTTP method.
    :param path: path below the API root (segments already percent-encoded).
    :param params: query parameters.
    :param body: JSON body.
    :param not_found: what a 404 means, for its message.
    :param idempotent: ``False``: never retried here (see :class:`NotDone`).
    :param secrets: values in the body to mask in the server's messages.
    :param deadline: the time (on the transport's monotonic clock) by which the whole request,
        retries and sleeps included, ends.
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    not_found: str | None = None
    idempotent: bool = True
    secrets: Collection[str] = ()
    deadline: float | None = None

    def time_left(self, limit: float, now: float) -> float:
        """Seconds this attempt may take: the request timeout, or less as the deadline nears.

        :param limit: the request timeout.
        :param now: the time now, on the deadline's clock.
        """
        if self.deadline is None:
            return limit
        return max(0.0, min(limit, self.deadline - now))


def settle(answer: Answer, *, config: CmlClientConfig, attempt: int, exchange: Exchange, now: float) -> Any:
    """Decode a good answer, or raise: the final error, :class:`NotDone` or :class:`RetryLater`.

    A retry whose back-off (or ``Retry-After``) would pass the deadline is not made: the error is
    raised instead, so a deadline bounds the wall time of the whole request.

    :param answer: what the attempt produced.
    :param config: the client settings (retry policy, base URL for messages).
    :param attempt: the 1-based number of this attempt.
    :param exchange: the request.
    :param now: the time now, on the deadline's clock.
    """
    method, path, policy = exchange.method, exchange.path, config.retry_policy
    retry_after: str | None = None
    if answer.status_code is None:
        error = CmlApiError(
            f"No answer from Cloudera AI at {config.base_url} ({answer.failure}).", method=method, path=path
        )
        maybe_acted = answer.maybe_acted
    elif 300 <= answer.status_code < 400:
        error = redirect_error(config, answer, method=method, path=path)
        if not exchange.idempotent:
            raise NotDone(error, maybe_acted=True, resend_useless=True)
        raise error
    elif answer.status_code < 300:
        try:
            return decode_object(answer.status_code, answer.headers, answer.text, method=method, path=path)
        except CmlApiError as unclear:
            if not exchange.idempotent:  # the start may have happened: look before resending
                raise NotDone(unclear, maybe_acted=True) from None
            raise
    else:
        error = error_for_response(
            answer.status_code,
            answer.headers,
            answer.text,
            method=method,
            path=path,
            not_found=exchange.not_found,
            secrets=exchange.secrets,
        )
        if not is_retryable_status(answer.status_code):
            raise error
        retry_after = answer.headers.get("Retry-After")
        maybe_acted = answer.status_code != 429  # rate limiting refuses before acting
    if not exchange.idempotent:
        raise NotDone(error, retry_after=retry_after, maybe_acted=maybe_acted)
    delay = policy.delay(attempt, retry_after)
    if not policy.can_retry(attempt) or delay >= exchange.time_left(float("inf"), now):
        raise error
    log.warning(
        "%s %s failed (%s); retry %d of %d in %.1fs.",
        method,
        path,
        error.server_message or error.http_status or answer.failure,
        attempt,
        policy.max_retries,
        delay,
    )
    raise RetryLater(delay)


_warned: set[tuple[str, str]] = set()


def _warn_once(kind: str, config: CmlClientConfig, message: str) -> None:
    if (kind, config.base_url) not in _warned:
        _warned.add((kind, config.base_url))
        log.warning(message, config.base_url)


def _is_loopback(base_url: str) -> bool:
    """Whether ``base_url`` names this machine: plain HTTP there never leaves it."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_about_transport_security(config: CmlClientConfig) -> None:
    # Once per process and workbench (each task and each resume is a process of its own); never for
    # a workbench on this machine, such as the local one of the examples.
    if config.base_url.startswith("http://") and not _is_loopback(config.base_url):
        _warn_once("plain", config, "The API key goes to %s over plain HTTP, unencrypted; use https://.")
    if config.verify is False:
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        _warn_once(
            "unverified", config, "TLS verification is off for %s: the API key goes to an unverified server."
        )


class SyncTransport:
    """requests-based transport: one session (connection pool) for the hook's lifetime.

    Each attempt runs in a short-lived daemon thread that the caller waits on for at most the
    request timeout: requests' own timeouts bound each socket read, not the whole answer.

    :param config: the client settings.
    :param clock: what it sleeps by between retries (tests pass a fake one).
    """

    def __init__(self, config: CmlClientConfig, clock: Clock | None = None) -> None:
        import requests

        self.config = config
        self.clock = clock or Clock()
        self.session: requests.Session = requests.Session()
        self.session.headers.update(auth_headers(config))
        #: A deadline every request keeps to, besides its own (set by :meth:`CmlHook.within`).
        self.bound: float | None = None
        _warn_about_transport_security(config)

    def _send_now(self, exchange: Exchange, limit: float) -> Answer:
        import requests

        try:
            response = self.session.request(
                exchange.method,
                self.config.api_root + exchange.path,
                params=exchange.params,
                json=exchange.body,
                timeout=(min(10.0, limit), limit),
                allow_redirects=False,
                # Per request: requests lets REQUESTS_CA_BUNDLE override a session's ``verify``.
                verify=self.config.verify,
            )
            return Answer(response.status_code, response.headers, response.text)
        except requests.exceptions.SSLError as exc:
            raise tls_error(self.config.base_url, exc) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader, ValueError) as exc:
            # Never the exception's text: requests puts header values (the key) into it.
            raise CmlConfigError(
                f"The request to {self.config.base_url} could not be built ({type(exc).__name__}): check "
                "the connection's host and that the API key is one line of plain ASCII."
            ) from None
        except requests.exceptions.RequestException as exc:
            return Answer(None, failure=type(exc).__name__, maybe_acted=_requests_maybe_acted(exc))

    def _send(self, exchange: Exchange) -> Answer:
        limit = exchange.time_left(self.config.timeout, self.clock.monotonic())
        if limit <= 0:
            return Answer(None, failure="no time left before the deadline", maybe_acted=False)
        outcome: list[Any] = []
        done = threading.Event()

        def attempt() -> None:
            try:
                outcome.append(self._send_now(exchange, limit))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)
            done.set()

        threading.Thread(target=attempt, name="cml-http", daemon=True).start()
        if not done.wait(limit + 0.5):
            return Answer(None, failure=f"no complete answer within {limit:g}s", maybe_acted=True)
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        not_found: str | None = None,
        idempotent: bool = True,
        secrets: Collection[str] = (),
        deadline: float | None = None,
    ) -> Any:
        """Send a request, retrying what the policy allows; return the decoded JSON object.

        :param method: HTTP method.
        :param path: path below the API root, e.g. ``/projects`` (segments percent-encoded).
        :param params: query parameters.
        :param body: JSON body.
        :param not_found: what a 404 means, for its message.
        :param idempotent: ``False``: never retried here (see :class:`NotDone`).
        :param secrets: values in the body to mask in the server's messages.
        :param deadline: the time on the transport's clock by which the request, retries and sleeps
            included, ends.
        """
        if self.bound is not None:
            deadline = self.bound if deadline is None else min(deadline, self.bound)
        exchange = Exchange(method, path, params, body, not_found, idempotent, secrets, deadline)
        attempt = 0
        while True:
            attempt += 1
            answer = self._send(exchange)
            try:
                return settle(
                    answer, config=self.config, attempt=attempt, exchange=exchange, now=self.clock.monotonic()
                )
            except RetryLater as later:
                self.clock.sleep(later.delay)


def _requests_maybe_acted(exc: Exception) -> bool:
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return type(reason).__name__ != "NewConnectionError"


#: Connections the triggers of one event loop keep open to a workbench; a burst waits for one.
POOL_SIZE = 20


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """TLS settings from the connection: a CA bundle file, no checks, or the default CAs.

    The default is what httpx (the triggers' client before) and requests (the sync path) trust:
    certifi's bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set.
    """
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    if verify and not (os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")):
        import certifi  # a dependency of requests

        return ssl.create_default_context(cafile=certifi.where())
    context = ssl.create_default_context()  # reads SSL_CERT_FILE/SSL_CERT_DIR
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _query_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class AsyncTransport:
    """Transport for triggers: the lean HTTP/1.1 client, or httpx when a proxy applies.

    The lean client is :mod:`airflow_provider_cml.http11`; httpx is used when an ``HTTP(S)_PROXY``
    or ``ALL_PROXY`` variable applies to the workbench. All transports with the same settings in the
    same event loop share one client, so a triggerer running many triggers keeps one connection pool
    instead of a connection per trigger or per poll. The client is closed when its last user closes.
    ``asyncio.timeout`` bounds each attempt's time.
    """

    _shared: ClassVar[dict[tuple[int, CmlClientConfig], list[Any]]] = {}  # key -> [client, users]

    def __init__(self, config: CmlClientConfig) -> None:
        self.config = config
        self._key = (id(asyncio.get_running_loop()), config)
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    async def client(self) -> LeanClient | httpx.AsyncClient:
        """The shared client; its TLS context (and httpx, when used) is built off the event loop."""
        if self._client is None:
            entry = self._shared.get(self._key)
            if entry is None:
                client = await self._new_client(self.config)
                entry = self._shared.setdefault(self._key, [client, 0])
                if entry[0] is not client:  # another trigger made one meanwhile
                    await client.aclose()
            entry[1] += 1
            self._client = entry[0]
        return self._client

    @staticmethod
    async def _new_client(config: CmlClientConfig) -> LeanClient | httpx.AsyncClient:
        _warn_about_transport_security(config)
        if proxy_applies(config.base_url):  # proxies are httpx's job
            return await asyncio.to_thread(AsyncTransport._httpx_client, config)
        https = config.base_url.startswith("https:")
        context = await asyncio.to_thread(_ssl_context, config.verify) if https else None
        return LeanClient(
            config.base_url,
            headers=auth_headers(config),
            ssl_context=context,
            connect_timeout=min(10.0, config.timeout),
            max_connections=POOL_SIZE,
        )

    @staticmethod
    def _httpx_client(config: CmlClientConfig) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            headers=auth_headers(config),
            verify=_ssl_context(config.verify),
            timeout=httpx.Timeout(config.timeout, connect=min(10.0, config.timeout)),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
        )

    async def _send(self, exchange: Exchange) -> Answer:
        limit = exchange.time_left(self.config.timeout, time.monotonic())
        if limit <= 0:
            return Answer(None, failure="no time left before the deadline", maybe_acted=False)
        client = await self.client()
        try:
            if hasattr(asyncio, "timeout"):  # Python 3.11+: no extra task per request
                async with asyncio.timeout(limit):
                    return await self._exchange(client, exchange)
            return await asyncio.wait_for(self._exchange(client, exchange), limit)
        except asyncio.TimeoutError:
            return Answer(None, failure=f"no complete answer within {limit:g}s", maybe_acted=True)

    async def _exchange(self, client: LeanClient | httpx.AsyncClient, exchange: Exchange) -> Answer:
        if not isinstance(client, LeanClient):
            return await self._exchange_httpx(client, exchange)
        target = urlsplit(self.config.api_root).path + exchange.path
        if exchange.params:
            target += "?" + urlencode(
                {k: _query_value(v) for k, v in exchange.params.items()}, quote_via=quote
            )
        body = None if exchange.body is None else json.dumps(exchange.body).encode()
        try:
            status, headers, payload = await client.request(exchange.method, target, body)
        except ssl.SSLError as exc:  # only raised while connecting: the certificate or TLS setup
            raise tls_error(self.config.base_url, exc) from None
        except HttpFailure as failure:
            return Answer(None, failure=str(failure), maybe_acted=failure.maybe_acted)
        except UnicodeError:
            raise CmlConfigError(
                f"The request to {self.config.base_url} could not be built: check the connection's host "
                "and that the API key is one line of plain ASCII."
            ) from None
        return Answer(status, headers, text_of(payload, headers))

    async def _exchange_httpx(self, client: httpx.AsyncClient, exchange: Exchange) -> Answer:
        import httpx

        try:
            response = await client.request(
                exchange.method,
                self.config.api_root + exchange.path,
                params=exchange.params,
                json=exchange.body,
            )
            return Answer(response.status_code, response.headers, response.text)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            if isinstance(exc.__cause__ or exc.__context__, ssl.SSLError) or "CERTIFICATE" in str(exc):
                raise tls_error(self.config.base_url, exc) from None
            return Answer(None, failure=type(exc).__name__, maybe_acted=False)
        except (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
            return Answer(None, failure=type(exc).__name__, maybe_acted=True)
        except (httpx.InvalidURL, httpx.HTTPError, ValueError, UnicodeError) as exc:
            raise CmlConfigError(
                f"The request to {self.config.base_url} could not be built ({type(exc).__name__}): check "
                "the connection's host and that the API key is one line of plain ASCII."
            ) from None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        not_found: str | None = None,
        idempotent: bool = True,
        secrets: Collection[str] = (),
        deadline: float | None = None,
    ) -> Any:
        """Async :meth:`SyncTransport.request`, with the same policy and errors."""
        exchange = Exchange(method, path, params, body, not_found, idempotent, secrets, deadline)
        attempt = 0
        while True:
            attempt += 1
            answer = await self._send(exchange)
            try:
                return settle(
                    answer, config=self.config, attempt=attempt, exchange=exchange, now=time.monotonic()
                )
            except RetryLater as later:
                await asyncio.sleep(later.delay)

    async def aclose(self) -> None:
        """Leave the shared client; the last one to leave closes it."""
        if self._closed or self._client is None:
            self._closed = True
            return
        self._closed = True
        entry = self._shared.get(self._key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._shared[self._key]
            await entry[0].aclose()
