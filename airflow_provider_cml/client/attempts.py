"""One attempt's answer, and what it means: a result, a final error, an unknown outcome, or a retry.

Both clients (``requests`` for tasks, aiohttp for triggers) describe what came back as an
:class:`Answer`; :func:`settle` alone decides what it means, and :func:`attempts` alone decides
when to send again, so the two clients differ only in how they send and how they sleep. A request
that is not idempotent is never resent here: its caller decides (see
:mod:`airflow_provider_cml.client.create_once`).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import socket
from collections.abc import Callable, Collection, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_cml import __version__
from airflow_provider_cml.client.http_errors import (
    cause_of,
    decode_object,
    error_for_response,
    redirect_error,
    unresolved_error,
)
from airflow_provider_cml.client.retry import is_retryable_status
from airflow_provider_cml.exceptions import CmlApiError, CmlOutOfTimeError

if TYPE_CHECKING:
    from airflow_provider_cml.client.config import CmlClientConfig

log = logging.getLogger(__name__)

#: The largest answer read (after decompression): the API's biggest pages are well under 1 MiB, and
#: a bomb (97 KB of deflate that would become 96 MiB) ends here, as a failed attempt.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: An attempt's failure when its deadline had passed before it could be sent.
NO_TIME_LEFT = "no time left before the deadline"


def too_big() -> Answer:
    """The attempt's result when the body passed :data:`MAX_BODY_BYTES`."""
    return Answer(None, failure=f"an answer larger than {MAX_BODY_BYTES // 2**20} MiB", maybe_acted=True)


def text_of(body: bytes, content_type: str | None) -> str:
    """The body as text, by the answer's charset (UTF-8 by default, bad bytes replaced).

    :param body: the body.
    :param content_type: the answer's ``Content-Type``.
    """
    charset = "utf-8"
    for part in str(content_type or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip("\"'")
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


@dataclass
class Answer:
    """What one attempt produced: a response, or no response (``status_code`` is ``None``)."""

    status_code: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    text: str = ""
    failure: str | None = None
    # False when the connection never opened, so the server cannot have acted on the request.
    maybe_acted: bool = True
    #: The resolver's words when the host name did not resolve: nothing was sent, and no retry helps.
    unresolved: str | None = None


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
    :param path: path below the API root (segments already percent-encoded), or an absolute
        ``http(s)://`` URL for what is served beside the API (the model service).
    :param params: query parameters.
    :param body: JSON body.
    :param not_found: what a 404 means, for its message.
    :param idempotent: ``False``: never retried here (see :class:`NotDone`).
    :param secrets: values in the body to mask in the server's messages.
    :param deadline: the time (on the transport's monotonic clock) by which the whole request,
        retries and sleeps included, ends.
    :param own_bound: ``deadline`` replaces any bound the caller is under (``CmlHook.within``): a
        stop sent when a wait's deadline has passed still gets its own short time.
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    not_found: str | None = None
    idempotent: bool = True
    secrets: Collection[str] = ()
    deadline: float | None = None
    own_bound: bool = False

    def url(self, api_root: str) -> str:
        """Where the request goes: ``api_root`` + ``path``, or ``path`` when it is absolute.

        :param api_root: the API's root URL.
        """
        return self.path if self.absolute else api_root + self.path

    @property
    def absolute(self) -> bool:
        """Whether ``path`` is a whole URL (the model service) rather than a path below the API."""
        return self.path.startswith(("https://", "http://"))

    def time_left(self, limit: float, now: float) -> float:
        """Seconds this attempt may take: the request timeout, or less as the deadline nears.

        :param limit: the request timeout.
        :param now: the time now, on the deadline's clock.
        """
        if self.deadline is None:
            return limit
        return max(0.0, min(limit, self.deadline - now))


#: The connection settings that name where a request goes, for messages that say what to fix.
HOST_SETTING = "connection's host ('Workbench URL')"
SERVICE_SETTING = "connection extra 'model_service_url'"


def destination(exchange: Exchange, config: CmlClientConfig) -> tuple[str, str]:
    """Where the request goes (``scheme://host[:port]``) and the connection setting that names it.

    :param exchange: the request.
    :param config: the client settings.
    """
    if exchange.absolute:  # the model service, beside the API
        parts = urlsplit(exchange.path)
        return f"{parts.scheme}://{parts.netloc}", SERVICE_SETTING
    return config.base_url, HOST_SETTING


def valid_status(answer: Answer) -> Answer:
    """``answer``, or a failed attempt when its status is outside 100-599 (``HTTP/1.1 000 OK``).

    ``requests`` refuses such a status line itself and aiohttp reads it: here both follow one rule.

    :param answer: what the attempt produced.
    """
    if answer.status_code is None or 100 <= answer.status_code <= 599:
        return answer
    return Answer(None, failure=f"an invalid status line, HTTP {answer.status_code:03d}", maybe_acted=True)


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
    url, setting = destination(exchange, config)
    if answer.unresolved is not None:  # a wrong name stays wrong: no retry, no look-up
        raise unresolved_error(urlsplit(url).hostname or url, answer.unresolved, setting)
    answer = valid_status(answer)
    if answer.failure == NO_TIME_LEFT and attempt == 1:  # not the server's doing: nothing was sent
        raise CmlOutOfTimeError(
            f"{method} {path} was not sent: the deadline it had to keep had passed. Nothing was asked of "
            "Cloudera AI; the task's timeout (or execution_timeout) ran out first. A deferred task also "
            "waits out [cml] trigger_event_hold before it resumes: raise the timeout if it needs longer.",
            method=method,
            path=path,
        )
    if answer.status_code is None:
        who = "the model service" if setting == SERVICE_SETTING else "Cloudera AI"
        error = CmlApiError(f"No answer from {who} at {url} ({answer.failure}).", method=method, path=path)
        maybe_acted = answer.maybe_acted
    elif 300 <= answer.status_code < 400:
        error = redirect_error(config, answer.status_code, answer.headers, method=method, path=path)
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


def attempts(
    exchange: Exchange, config: CmlClientConfig, now: Callable[[], float]
) -> Generator[float, Answer, Any]:
    """The retry loop of one request, without I/O: both clients drive it.

    Started with ``next()``, it is sent each attempt's :class:`Answer` and yields the seconds to
    sleep before the next; it returns the decoded object or raises what :func:`settle` raises.

    :param exchange: the request.
    :param config: the client settings (retry policy).
    :param now: the deadline's clock.
    """
    delay, attempt = 0.0, 0
    while True:
        attempt += 1
        answer = yield delay
        try:
            return settle(answer, config=config, attempt=attempt, exchange=exchange, now=now())
        except RetryLater as later:
            delay = later.delay


def resume(
    plan: Generator[Any, Any, Any], reply: Any = None, error: BaseException | None = None
) -> tuple[bool, Any]:
    """Hand a generator its next input: ``(False, what it yields next)`` or ``(True, what it returned)``.

    The one driver step for :func:`attempts` (sent each attempt's :class:`Answer`) and for
    :mod:`~airflow_provider_cml.waiting.steps` (sent each decoded answer, or thrown the error).

    :param plan: the generator.
    :param reply: what to send it (``None`` to start it).
    :param error: an error to throw into it instead.
    """
    try:
        return False, (plan.send(reply) if error is None else plan.throw(error))
    except StopIteration as done:
        return True, done.value


def unresolved(exc: BaseException) -> str | None:
    """The resolver's words when ``exc`` comes of a host name that does not resolve, else ``None``.

    A temporary failure of the resolver (``EAI_AGAIN``: no DNS server answered) is not one: it may
    pass, so it stays a failed attempt like a refused connection, and a long wait outlives it.

    :param exc: what a client raised for an attempt.
    """
    failure = cause_of(exc, socket.gaierror)
    if failure is None or failure.errno == socket.EAI_AGAIN:
        return None
    return str(failure.strerror or failure)


def query_value(value: Any) -> str:
    """A query parameter as the API reads it (booleans as ``true``/``false``)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


_warned: set[tuple[str, str]] = set()


def _warn_once(kind: str, config: CmlClientConfig, message: str) -> None:
    if (kind, config.base_url) not in _warned:
        _warned.add((kind, config.base_url))
        log.warning(message, config.base_url)


def is_loopback(base_url: str) -> bool:
    """Whether ``base_url`` names this machine: plain HTTP there never leaves it."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_about_transport_security(config: CmlClientConfig) -> None:
    """Warn (once per process and workbench) when the key travels unencrypted or unverified.

    :param config: the client settings.
    """
    # Once per process and workbench (each task and each resume is a process of its own); never for
    # a workbench on this machine, such as the local one of the examples.
    if config.base_url.startswith("http://") and not is_loopback(config.base_url):
        _warn_once("plain", config, "The API key goes to %s over plain HTTP, unencrypted; use https://.")
    if config.verify is False:
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        _warn_once(
            "unverified", config, "TLS verification is off for %s: the API key goes to an unverified server."
        )
