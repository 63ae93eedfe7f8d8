"""The triggers' HTTP client: aiohttp, one shared session per event loop, every attempt bounded.

aiohttp is the asyncio client of the field (Airflow's ``HttpAsyncHook``, the dbt Cloud and
Databricks providers). What an answer means is decided in :mod:`airflow_provider_cml.client.attempts`, as
for the tasks' client; this module only sends, reads and sleeps. Imported only when a trigger runs,
so parsing a DAG never pays for aiohttp.

Why each setting:

- one ``ClientSession`` per event loop and connection settings, shared by every trigger of a
  triggerer, with at most :data:`POOL_SIZE` connections: a thousand triggers do not open a
  thousand sockets;
- the proxy (``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY``, as ``requests`` reads them) is decided
  once per session: aiohttp's ``trust_env`` would look it up on every request, which alone more
  than doubled a poll's CPU;
- TLS from the connection's ``verify_ssl``/``ca_bundle``, else certifi's bundle (or
  ``SSL_CERT_FILE``/``SSL_CERT_DIR``), like ``requests``; hostnames are checked against the
  certificate's subjectAltName only, like ``requests``;
- no redirects, no cookies; each attempt has one total time limit (one timer), the pool wait
  included;
- bodies are read up to :data:`~airflow_provider_cml.client.attempts.MAX_BODY_BYTES` after decompression:
  parsing the largest allowed answer holds the event loop well under a tenth of a second (a
  thread would not help: ``json.loads`` keeps the GIL).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import sys
import time
import urllib.request
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import yarl

from airflow_provider_cml.client import attempts as core
from airflow_provider_cml.client.http_errors import tls_error
from airflow_provider_cml.exceptions import CmlConfigError

if TYPE_CHECKING:
    from airflow_provider_cml.client.config import CmlClientConfig

#: Connections the triggers of one event loop keep open to a workbench; a burst waits for one.
POOL_SIZE = 20
#: Seconds an idle pooled connection is kept (longer than the default 30 s poll interval).
KEEPALIVE = 60.0


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """TLS settings from the connection: a CA bundle file, no checks, or the default CAs.

    The default is what ``requests`` (the tasks' client) trusts: certifi's bundle, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set.

    :param verify: ``True``, ``False`` or the path of a CA bundle.
    """
    if isinstance(verify, str):
        context = ssl.create_default_context(cafile=verify)
    elif verify and not (os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")):
        import certifi  # a dependency of requests

        context = ssl.create_default_context(cafile=certifi.where())
    else:
        context = ssl.create_default_context()  # reads SSL_CERT_FILE/SSL_CERT_DIR
    # Python falls back to the subject's CN when a certificate has no subjectAltName; requests
    # (urllib3) does not, and neither may we: the two paths must trust the same certificates.
    context.hostname_checks_common_name = False
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def proxy_for(base_url: str) -> str | None:
    """The proxy the environment routes ``base_url`` through, or ``None`` (as ``requests`` decides).

    :param base_url: the workbench URL.
    """
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):  # type: ignore[attr-defined]
        return None
    return proxy


class _Session:
    """One aiohttp session with the settings decided for it, and how many transports use it."""

    def __init__(self, config: CmlClientConfig, context: ssl.SSLContext | None) -> None:
        self.proxy = proxy_for(config.base_url)
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=POOL_SIZE,
                ssl=context if context else False,
                # aiohttp closes a connection idle for 15 s; triggers poll every 30 s by default, so
                # each round would open the pool again. Kept for a minute, they are reused.
                keepalive_timeout=KEEPALIVE,
            ),
            headers=core.auth_headers(config),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),  # each attempt is bounded by _send
            trust_env=False,  # the proxy is decided above, once
            raise_for_status=False,
        )
        self.users = 0


class AsyncTransport:
    """aiohttp transport for triggers, with the same policy and errors as the sync one.

    All transports with the same settings in the same event loop share one session (and so one
    connection pool); the session is closed when its last user closes.

    :param config: the client settings.
    """

    _shared: ClassVar[dict[tuple[int, CmlClientConfig], _Session]] = {}

    def __init__(self, config: CmlClientConfig) -> None:
        self.config = config
        self._key = (id(asyncio.get_running_loop()), config)
        self._session: _Session | None = None
        self._closed = False

    async def session(self) -> _Session:
        """The shared session; its TLS context is built off the event loop (reading CA files)."""
        if self._session is None:
            shared = self._shared.get(self._key)
            if shared is None:
                core.warn_about_transport_security(self.config)
                https = self.config.base_url.startswith("https:")
                context = await asyncio.to_thread(ssl_context, self.config.verify) if https else None
                shared = self._shared.get(self._key)  # another trigger may have made one meanwhile
                if shared is None:
                    shared = self._shared[self._key] = _Session(self.config, context)
            shared.users += 1
            self._session = shared
        return self._session

    async def _send(self, exchange: core.Exchange) -> core.Answer:
        limit = exchange.time_left(self.config.timeout, time.monotonic())
        if limit <= 0:
            return core.Answer(None, failure=core.NO_TIME_LEFT, maybe_acted=False)
        session = await self.session()
        try:
            async with _time_limit(limit):
                return await self._exchange(session, exchange)
        except asyncio.TimeoutError:
            return core.Answer(None, failure=f"no complete answer within {limit:g}s", maybe_acted=True)

    async def _exchange(self, session: _Session, exchange: core.Exchange) -> core.Answer:
        params = {k: core.query_value(v) for k, v in exchange.params.items()} if exchange.params else None
        body = None if exchange.body is None else json.dumps(exchange.body).encode()
        try:
            async with session.http.request(
                exchange.method,
                _url(exchange.url(self.config.api_root)),
                params=params,
                data=body,
                headers={"Content-Type": "application/json"} if body is not None else None,
                allow_redirects=False,
                proxy=session.proxy,
            ) as response:
                payload = await _bounded_body(response)
                if payload is None:
                    return core.too_big()
                text = core.text_of(payload, response.headers.get("Content-Type"))
                return core.Answer(response.status, response.headers, text)
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise tls_error(*core.destination(exchange, self.config), exc) from None
        except aiohttp.InvalidURL:
            raise CmlConfigError(
                f"The request to {self.config.base_url} could not be built: check the connection's host."
            ) from None
        except aiohttp.ClientConnectorError as exc:
            unresolved = core.unresolved(exc)
            return core.Answer(None, failure=type(exc).__name__, maybe_acted=False, unresolved=unresolved)
        except (aiohttp.ClientError, ValueError) as exc:  # broken framing, encodings, closed sockets
            return core.Answer(None, failure=type(exc).__name__, maybe_acted=True)

    async def send(self, exchange: core.Exchange) -> Any:
        """Send a request, retrying what the policy allows; return the decoded JSON object.

        The same policy and errors as :meth:`SyncTransport.send
        <airflow_provider_cml.client.sync_client.SyncTransport.send>`; ``exchange.deadline`` is on
        ``time.monotonic()``.

        :param exchange: the request.
        """
        plan = core.attempts(exchange, self.config, time.monotonic)
        next(plan)
        while True:
            done, value = core.resume(plan, await self._send(exchange))
            if done:
                return value
            await asyncio.sleep(value)

    async def aclose(self) -> None:
        """Leave the shared session; the last one to leave closes it."""
        if self._closed or self._session is None:
            self._closed = True
            return
        self._closed = True
        self._session.users -= 1
        if self._session.users <= 0 and self._shared.get(self._key) is self._session:
            del self._shared[self._key]
            await self._session.http.close()


async def _bounded_body(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or ``None`` past :data:`~airflow_provider_cml.client.attempts.MAX_BODY_BYTES`.

    The limit counts the body after decompression.
    """
    length = response.content_length
    if length is not None and length <= core.MAX_BODY_BYTES and "Content-Encoding" not in response.headers:
        return await response.read()  # the usual small answer: its size is known and not inflated
    payload = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        payload += chunk
        if len(payload) > core.MAX_BODY_BYTES:
            return None
    return bytes(payload)


@functools.lru_cache(maxsize=4096)
def _url(text: str) -> yarl.URL:
    """The parsed URL of a request target, cached: a trigger asks for the same run every poll.

    Paths are built percent-encoded (see :mod:`airflow_provider_cml.validation`).
    """
    return yarl.URL(text, encoded=True)


if sys.version_info >= (3, 11):
    _time_limit = asyncio.timeout
else:  # aiohttp's own dependency on Python < 3.11
    from async_timeout import timeout as _time_limit
