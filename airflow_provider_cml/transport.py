"""Wire: one HTTP exchange, from request to decoded answer or clear error, for both transports.

requests (sync, for tasks) and httpx (async, for triggers) each send a request and describe what
came back as an :class:`Answer`; :func:`settle` alone decides what that answer means (a result, a
final error, an unknown outcome, or a retry after a delay). The two transports only differ in how
they send and how they sleep. A request that is not idempotent is never retried here: its caller
owns that decision (see ``CmlHook.start_job_run``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_cml import __version__
from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError, CmlJobAlreadyActiveError
from airflow_provider_cml.retry import Clock, is_retryable_status

if TYPE_CHECKING:
    import httpx
    import requests

    from airflow_provider_cml.config import CmlClientConfig

log = logging.getLogger(__name__)

_REQUEST_ID_HEADERS = ("x-request-id", "x-cml-request-id", "x-correlation-id")


def request_id(headers: Mapping[str, str]) -> str | None:
    """The answer's request-id header, for Cloudera support.

    :param headers: the answer's headers.
    """
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def server_message(text: str) -> str:
    """grpc-gateway's ``message``, else the older ``error``, else the raw text (shortened)."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


def error_for_response(
    status_code: int,
    headers: Mapping[str, str],
    text: str,
    *,
    method: str,
    path: str,
    not_found: str | None = None,
) -> CmlApiError:
    """The error to raise for an HTTP error answer, with a message that says what to do."""
    message = server_message(text)
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
    elif status_code == 400 and "already active" in message.lower():
        return CmlJobAlreadyActiveError(
            "The job already has an active run, and Cloudera AI allows one active run per job. Wait "
            "for that run to end (e.g. with CmlJobRunSensor) or stop it, then start again. "
            f"Server said: {message}",
            **details,  # type: ignore[arg-type]
        )
    elif is_retryable_status(status_code):
        text_out = f"Cloudera AI is unavailable or busy (HTTP {status_code}: {message})."
    else:
        text_out = f"Cloudera AI refused the request (HTTP {status_code}): {message}"
    return CmlApiError(text_out, **details)  # type: ignore[arg-type]


def decode_json(status_code: int, headers: Mapping[str, str], text: str, *, method: str, path: str) -> Any:
    """The JSON body of a successful answer; a clear error when it is HTML or cut short."""
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError:
        content_type = headers.get("content-type", "unknown")
        hint = (
            "an HTML page: is the host the workbench URL (not the Cloudera console or a login proxy)?"
            if "html" in content_type.lower() or text.lstrip().startswith("<")
            else "not valid JSON (cut short or garbled in transit)."
        )
        raise CmlApiError(
            f"Cloudera AI answered HTTP {status_code} with {hint}",
            http_status=status_code,
            method=method,
            path=path,
            request_id=request_id(headers),
        ) from None


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
    """

    def __init__(self, error: CmlApiError, *, retry_after: str | None = None, maybe_acted: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.maybe_acted = maybe_acted


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
    """Headers for every request: Bearer for v2; Basic (key as user, empty password) and JSON for v1."""
    headers = {"User-Agent": f"airflow-provider-cml/{__version__}", "Accept": "application/json"}
    if config.api_version == "v1":
        token = base64.b64encode(f"{config.api_key}:".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        headers["Content-Type"] = "application/json"  # required by v1 even with an empty body
    else:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return headers


def settle(
    answer: Answer,
    *,
    config: CmlClientConfig,
    attempt: int,
    method: str,
    path: str,
    not_found: str | None,
    idempotent: bool,
) -> Any:
    """Decode a good answer, or raise: the final error, :class:`NotDone` or :class:`RetryLater`.

    :param answer: what the attempt produced.
    :param config: the client settings (retry policy, base URL for messages).
    :param attempt: the 1-based number of this attempt.
    :param method: HTTP method, for messages.
    :param path: request path, for messages.
    :param not_found: what a 404 means, e.g. ``"run 'x' of job 'y'"``.
    :param idempotent: ``False`` for a request that must not be repeated blindly (a start): it is
        never retried here, but handed back as :class:`NotDone`.
    """
    policy = config.retry_policy
    retry_after: str | None = None
    if answer.status_code is None:
        error = CmlApiError(
            f"No answer from Cloudera AI at {config.base_url} ({answer.failure}).", method=method, path=path
        )
        maybe_acted = answer.maybe_acted
    elif answer.status_code < 400:
        return decode_json(answer.status_code, answer.headers, answer.text, method=method, path=path)
    else:
        error = error_for_response(
            answer.status_code, answer.headers, answer.text, method=method, path=path, not_found=not_found
        )
        if not is_retryable_status(answer.status_code):
            raise error
        retry_after = answer.headers.get("Retry-After")
        maybe_acted = answer.status_code != 429  # rate limiting refuses before acting
    if not idempotent:
        raise NotDone(error, retry_after=retry_after, maybe_acted=maybe_acted)
    if not policy.can_retry(attempt):
        raise error
    delay = policy.delay(attempt, retry_after)
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


def _warn_if_unverified(config: CmlClientConfig) -> None:
    if config.verify is False:
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        log.warning(
            "TLS verification is off for %s: the API key goes to an unverified server.", config.base_url
        )


class SyncTransport:
    """requests-based transport: one session (connection pool) for the hook's lifetime.

    :param config: the client settings.
    :param clock: what it sleeps by between retries (tests pass a fake one).
    """

    def __init__(self, config: CmlClientConfig, clock: Clock | None = None) -> None:
        import requests

        self.config = config
        self.clock = clock or Clock()
        self.session: requests.Session = requests.Session()
        self.session.headers.update(auth_headers(config))
        _warn_if_unverified(config)

    def _send(self, method: str, path: str, params: Any, body: Any) -> Answer:
        import requests

        try:
            response = self.session.request(
                method,
                self.config.api_root + path,
                params=params,
                json=body,
                timeout=(min(10.0, self.config.timeout), self.config.timeout),
                # Per request: requests lets REQUESTS_CA_BUNDLE override a session's ``verify``.
                verify=self.config.verify,
            )
        except requests.exceptions.SSLError as exc:
            raise tls_error(self.config.base_url, exc) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            return Answer(None, failure=type(exc).__name__, maybe_acted=_requests_maybe_acted(exc))
        return Answer(response.status_code, response.headers, response.text)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        not_found: str | None = None,
        idempotent: bool = True,
    ) -> Any:
        """Send a request, retrying what the policy allows; return the decoded JSON answer.

        :param method: HTTP method.
        :param path: path below the API root, e.g. ``/projects``.
        :param params: query parameters.
        :param body: JSON body.
        :param not_found: what a 404 means, for its message.
        :param idempotent: ``False``: never retried here (see :class:`NotDone`).
        """
        attempt = 0
        while True:
            attempt += 1
            answer = self._send(method, path, params, body)
            try:
                return settle(
                    answer,
                    config=self.config,
                    attempt=attempt,
                    method=method,
                    path=path,
                    not_found=not_found,
                    idempotent=idempotent,
                )
            except RetryLater as later:
                self.clock.sleep(later.delay)


def _requests_maybe_acted(exc: Exception) -> bool:
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return type(reason).__name__ != "NewConnectionError"


class AsyncTransport:
    """httpx-based transport for triggers.

    All transports with the same settings in the same event loop share one ``httpx.AsyncClient``, so
    a triggerer running many triggers keeps one connection pool instead of a connection per trigger
    or per poll. The client is closed when its last user closes.
    """

    _shared: ClassVar[dict[tuple[int, CmlClientConfig], list[Any]]] = {}  # key -> [client, users]

    def __init__(self, config: CmlClientConfig) -> None:
        self.config = config
        self._key = (id(asyncio.get_running_loop()), config)
        entry = self._shared.get(self._key)
        if entry is None:
            entry = self._shared[self._key] = [self._new_client(config), 0]
        entry[1] += 1
        self.client: httpx.AsyncClient = entry[0]
        self._closed = False

    @staticmethod
    def _new_client(config: CmlClientConfig) -> httpx.AsyncClient:
        import httpx

        verify: bool | ssl.SSLContext = config.verify if isinstance(config.verify, bool) else True
        if isinstance(config.verify, str):
            verify = ssl.create_default_context(cafile=config.verify)
        _warn_if_unverified(config)
        return httpx.AsyncClient(
            headers=auth_headers(config),
            verify=verify,
            timeout=httpx.Timeout(config.timeout, connect=min(10.0, config.timeout)),
            # A small pool, every connection kept alive between polls (closing idle ones means
            # reconnecting); a burst of triggers queues for a connection instead of opening one each.
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
        )

    async def _send(self, method: str, path: str, params: Any, body: Any) -> Answer:
        import httpx

        try:
            response = await self.client.request(
                method, self.config.api_root + path, params=params, json=body
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            if isinstance(exc.__cause__ or exc.__context__, ssl.SSLError) or "CERTIFICATE" in str(exc):
                raise tls_error(self.config.base_url, exc) from None
            return Answer(None, failure=type(exc).__name__, maybe_acted=False)
        except httpx.TransportError as exc:
            return Answer(None, failure=type(exc).__name__, maybe_acted=True)
        return Answer(response.status_code, response.headers, response.text)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        not_found: str | None = None,
        idempotent: bool = True,
    ) -> Any:
        """Async :meth:`SyncTransport.request`, with the same policy and errors."""
        attempt = 0
        while True:
            attempt += 1
            answer = await self._send(method, path, params, body)
            try:
                return settle(
                    answer,
                    config=self.config,
                    attempt=attempt,
                    method=method,
                    path=path,
                    not_found=not_found,
                    idempotent=idempotent,
                )
            except RetryLater as later:
                await asyncio.sleep(later.delay)

    async def aclose(self) -> None:
        """Leave the shared client; the last one to leave closes it."""
        if self._closed:
            return
        self._closed = True
        entry = self._shared.get(self._key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._shared[self._key]
            await entry[0].aclose()
