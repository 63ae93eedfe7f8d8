"""The tasks' HTTP client: ``requests``, one session per hook, every attempt bounded in time and size.

What an answer means is decided in :mod:`airflow_provider_cml.client.attempts`, the same for the triggers'
client (:mod:`airflow_provider_cml.client.async_client`); this module only sends, reads and sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.client.attempts import (
    MAX_BODY_BYTES,
    NO_TIME_LEFT,
    Answer,
    Exchange,
    NotDone,
    attempts,
    auth_headers,
    destination,
    resume,
    text_of,
    too_big,
    unresolved,
    warn_about_transport_security,
)
from airflow_provider_cml.client.http_errors import tls_error
from airflow_provider_cml.client.retry import Clock
from airflow_provider_cml.exceptions import CmlConfigError

if TYPE_CHECKING:
    import requests

    from airflow_provider_cml.client.config import CmlClientConfig

__all__ = ["Exchange", "NotDone", "SyncTransport"]


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
        warn_about_transport_security(config)

    def _send_now(self, exchange: Exchange, limit: float) -> Answer:
        import requests

        url = exchange.url(self.config.api_root)
        try:
            prepared = self.session.prepare_request(
                requests.Request(exchange.method, url, params=exchange.params, json=exchange.body)
            )
        except (requests.exceptions.RequestException, ValueError) as exc:
            # Never the exception's text: requests puts header values (the key) into it.
            raise CmlConfigError(
                f"The request to {self.config.base_url} could not be built ({type(exc).__name__}): check "
                "the connection's host and that the API key is one line of plain ASCII."
            ) from None
        # As Session.request does: proxies from the environment, and REQUESTS_CA_BUNDLE where verify is on.
        settings = self.session.merge_environment_settings(url, {}, True, self.config.verify, None)
        try:
            with self.session.send(
                prepared, timeout=(min(10.0, limit), limit), allow_redirects=False, **settings
            ) as response:
                body = bytearray()
                for chunk in response.raw.stream(65536, decode_content=True):
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        return too_big()
                text = text_of(bytes(body), response.headers.get("content-type"))
                return Answer(response.status_code, response.headers, text)
        except requests.exceptions.SSLError as exc:
            raise tls_error(*destination(exchange, self.config), exc) from None
        except requests.exceptions.RequestException as exc:
            return Answer(
                None,
                failure=type(exc).__name__,
                maybe_acted=_requests_maybe_acted(exc),
                unresolved=unresolved(exc),
            )
        except Exception as exc:  # urllib3's own (a broken chunk, a bad gzip) while streaming
            return Answer(None, failure=type(exc).__name__, maybe_acted=True)

    def _send(self, exchange: Exchange) -> Answer:
        limit = exchange.time_left(self.config.timeout, self.clock.monotonic())
        if limit <= 0:
            return Answer(None, failure=NO_TIME_LEFT, maybe_acted=False)
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
        return self.send(Exchange(method, path, params, body, not_found, idempotent, secrets, deadline))

    def send(self, exchange: Exchange) -> Any:
        """:meth:`request`, for a request already described (as steps yield them).

        :param exchange: the request.
        """
        if self.bound is not None and not exchange.own_bound:
            deadline = self.bound if exchange.deadline is None else min(exchange.deadline, self.bound)
            exchange = replace(exchange, deadline=deadline)
        plan = attempts(exchange, self.config, self.clock.monotonic)
        next(plan)
        while True:
            done, value = resume(plan, self._send(exchange))
            if done:
                return value
            self.clock.sleep(value)


def _requests_maybe_acted(exc: Exception) -> bool:
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return type(reason).__name__ != "NewConnectionError"
