"""HTTP transports: requests (sync, for tasks) and httpx (async, for triggers), one retry policy.

Both send a request and describe what came back as an :class:`Answer`; :func:`settle` alone decides
what that answer means (a result, a final error, an unknown outcome, or a retry after a delay).
The two transports only differ in how they send and how they sleep.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_cml import __version__
from airflow_provider_cml._http import decode_json, error_for_response
from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError

if TYPE_CHECKING:
    import httpx
    import requests

    from airflow_provider_cml.config import CmlClientConfig

log = logging.getLogger(__name__)


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


class OutcomeUnknown(Exception):
    """A non-idempotent request was sent but its answer was lost (timeout, reset, 5xx)."""

    def __init__(self, error: CmlApiError, retry_after: str | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def tls_error(base_url: str, exc: BaseException) -> CmlConfigError:
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
    """Decode a good answer, or raise: the final error, :class:`OutcomeUnknown` or :class:`RetryLater`.

    A request that is not ``idempotent`` is retried only when the server cannot have acted on it
    (connection never opened, 429); otherwise the caller is told the outcome is unknown.
    """
    policy = config.retry_policy
    retry_after: str | None = None
    if answer.status_code is None:
        error = CmlApiError(
            f"No answer from Cloudera AI at {config.base_url} ({answer.failure}).", method=method, path=path
        )
        if not idempotent and answer.maybe_acted:
            raise OutcomeUnknown(error)
    elif answer.status_code < 400:
        return decode_json(answer.status_code, answer.headers, answer.text, method=method, path=path)
    else:
        error = error_for_response(
            answer.status_code, answer.headers, answer.text, method=method, path=path, not_found=not_found
        )
        if not policy.is_retryable_status(answer.status_code):
            raise error
        retry_after = answer.headers.get("Retry-After")
        if not idempotent and answer.status_code != 429:
            raise OutcomeUnknown(error, retry_after)
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
    """requests-based transport: one session (connection pool) for the hook's lifetime."""

    def __init__(self, config: CmlClientConfig) -> None:
        import requests

        self.config = config
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
                time.sleep(later.delay)


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
