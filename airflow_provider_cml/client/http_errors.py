"""Clear errors for HTTP answers: what went wrong, the server's own words (secrets masked), what to do.

Pure functions of an answer's status, headers and body, shared by the sync and the async client.
A successful answer is decoded here too (:func:`decode_object`): it must be one JSON object.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from airflow_provider_cml.client.retry import is_retryable_status
from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError

if TYPE_CHECKING:
    from airflow_provider_cml.client.config import CmlClientConfig

E = TypeVar("E", bound=BaseException)

_REQUEST_ID_HEADERS = ("x-request-id", "x-cml-request-id", "x-correlation-id")
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


def load_json(text: str) -> Any:
    """``json.loads``, with nesting too deep for the parser reported as a ``ValueError``.

    The parser is C and bounds its own recursion: no character-by-character scan is needed (one
    took 0.8 s of event loop on a 30 MB answer). Bodies are bounded before they get here
    (:data:`~airflow_provider_cml.client.attempts.MAX_BODY_BYTES`).

    :param text: the answer's body.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested deeper than the parser allows") from None


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


def redirect_error(
    config: CmlClientConfig, status_code: int, headers: Mapping[str, str], *, method: str, path: str
) -> CmlApiError:
    """The error for a 3xx: redirects are never followed (they would carry the key and the body away).

    :param config: the client settings.
    :param status_code: the 3xx status.
    :param headers: the answer's headers.
    :param method: HTTP method.
    :param path: request path.
    """
    target = urlsplit(headers.get("location") or headers.get("Location") or "")
    where = target.hostname or "(no Location header)"
    hint = "Set the connection's host to the workbench URL the redirect points to."
    if config.base_url.startswith("http://") and target.scheme == "https":
        hint = "The workbench redirects to HTTPS: write the host as https://."
    return CmlApiError(
        f"Cloudera AI answered with a redirect (HTTP {status_code}) to {where}; the provider does "
        f"not follow redirects. {hint}",
        http_status=status_code,
        method=method,
        path=path,
        request_id=request_id(headers),
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
            problem = "JSON nested deeper than the parser allows, which the API never sends."
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


#: OpenSSL's reasons when the bytes after the ClientHello are not TLS: a plain-HTTP answer.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception in its chain, nearest first.

    Follows what ``requests``/urllib3 (``reason``, ``args``) and aiohttp (``os_error``) wrap, and
    Python's ``__cause__``/``__context__``.

    :param exc: the exception a client raised.
    """
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        todo += [getattr(current, "os_error", None), *current.args]


def cause_of(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` in ``exc``'s chain (:func:`causes`), or ``None``.

    :param exc: the exception a client raised.
    :param kind: the type looked for.
    """
    return next((cause for cause in causes(exc) if isinstance(cause, kind)), None)


def tls_error(url: str, setting: str, exc: BaseException) -> CmlConfigError:
    """The error for a failed TLS handshake: a plain-HTTP server, or a certificate not trusted.

    :param url: where the request went (``https://host[:port]``).
    :param setting: the connection setting that names ``url``, for the message.
    :param exc: the TLS error.
    """
    # aiohttp's own error is an SSLError too, without OpenSSL's reason: the one it wraps has it.
    reasons = [getattr(cause, "reason", None) for cause in causes(exc) if isinstance(cause, ssl.SSLError)]
    reason = next((r for r in reasons if r in _NOT_TLS_REASONS), None)
    if reason:
        return CmlConfigError(
            f"The server at {url} answered in plain HTTP, not TLS ({reason}): it does not speak HTTPS on "
            f"that port. If it serves plain HTTP, write the {setting} with http:// "
            f"({'http://' + url.partition('://')[2]}); otherwise give the port it serves HTTPS on."
        )
    return CmlConfigError(
        f"TLS certificate verification failed for {url} ({type(exc).__name__}). If the workbench uses "
        "a private CA, set the connection's 'CA bundle path' (extra 'ca_bundle') to a PEM file with that "
        "CA. Turn 'verify_ssl' off only for a throwaway workbench."
    )


def unresolved_error(host: str, reason: str, setting: str) -> CmlConfigError:
    """The error for a host name that did not resolve: nothing was sent, and retrying will not help.

    :param host: the host name.
    :param reason: the resolver's words (e.g. "Name or service not known").
    :param setting: the connection setting that names the host, for the message.
    """
    return CmlConfigError(
        f"The host name {host!r} did not resolve (DNS: {reason}); nothing was sent. Check the spelling in "
        f"the {setting}, and that this machine's DNS knows the name."
    )
