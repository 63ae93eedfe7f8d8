"""Checks of what a DAG author passes in, before anything is sent to Cloudera AI."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.values import START_TOKEN_ENV as START_TOKEN_ENV  # still read from here
from airflow_provider_cml.values import Arguments, Environment

#: Environment-variable overrides as a DAG passes them: names to strings (numbers and booleans allowed).
Overrides = Mapping[str, Any]

# Project and job IDs look like "lv1g-4hu5-a359-wagc".
_RESOURCE_ID = re.compile(r"^[a-z0-9]{4}(-[a-z0-9]{4}){3}$")
# What may never be in one path segment: it would change which resource the request names.
_UNSAFE_SEGMENT = re.compile(r"[/?#\\\x00-\x1f\x7f]")


def path_segment(field: str, value: Any) -> str:
    """``value`` as one percent-encoded URL path segment, or a clear error naming ``field``.

    IDs and v1 owner/slug values with ``/``, ``..``, ``?``, ``#``, backslashes or control characters
    are refused before any request: they would make the request name another resource.

    :param field: what the value is, e.g. ``"run_id"``.
    :param value: the value from a DAG or from a server's answer.
    """
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if not text or text in (".", "..") or _UNSAFE_SEGMENT.search(text):
        raise CmlConfigError(
            f"{field} {value!r} is not a valid Cloudera AI identifier: it must be non-empty and contain no "
            "'/', '..', '?', '#', backslashes or control characters."
        )
    return quote(text, safe="")


def looks_like_id(value: str) -> bool:
    """Whether ``value`` has the shape of a Cloudera AI project or job ID.

    :param value: a project or job given by a DAG.
    """
    return bool(_RESOURCE_ID.match(value))


def normalize_environment(environment: Mapping[str, Any] | None) -> dict[str, str]:
    """The overrides as checked by :meth:`Environment.of <.values.Environment.of>`, as a dict.

    For what keeps a plain dict (a job's, model's or application's spec); a run's overrides travel
    as the :class:`~airflow_provider_cml.values.Environment` itself.

    :param environment: the overrides as the DAG gave them.
    """
    return dict(Environment.of(environment))


def validate_arguments(arguments: Any) -> str | None:
    """``arguments`` as checked by :meth:`Arguments.of <.values.Arguments.of>`.

    :param arguments: what the DAG gave.
    """
    return Arguments.of(arguments)


def validate_positive(name: str, value: float | None, *, allow_none: bool = True) -> None:
    """Refuse zero or negative intervals and timeouts early, with the parameter's name.

    :param name: the parameter's name, for the message.
    :param value: its value.
    :param allow_none: whether ``None`` (no limit) is allowed.
    """
    if value is None and allow_none:
        return
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise CmlConfigError(f"{name} must be a positive, finite number of seconds, not {value!r}.")


def validate_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` when it is one of ``choices``; a clear error naming them otherwise.

    :param name: the parameter's name, for the message.
    :param value: its value.
    :param choices: what it may be.
    """
    if value not in choices:
        raise CmlConfigError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}.")
    return str(value)
