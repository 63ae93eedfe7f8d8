"""Turning HTTP answers into results or clear errors; shared by the sync and async transports."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_provider_cml.exceptions import CmlApiError, CmlJobAlreadyActiveError
from airflow_provider_cml.retry import RETRYABLE_STATUS_CODES

_REQUEST_ID_HEADERS = ("x-request-id", "x-cml-request-id", "x-correlation-id")


def request_id(headers: Mapping[str, str]) -> str | None:
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
    elif status_code in RETRYABLE_STATUS_CODES:
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


def is_transient(error: CmlApiError) -> bool:
    """Errors that may pass by themselves: no answer at all, rate limiting, server trouble."""
    return error.http_status is None or error.http_status in RETRYABLE_STATUS_CODES
