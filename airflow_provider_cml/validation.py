"""Checks of what a DAG author passes in, before anything is sent to Cloudera AI."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
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


def resource_path(collections: str, *ids: Any) -> str:
    """The API path of a resource below its parents, or of their collection, each ID checked.

    ``resource_path("projects/models", p)`` is a project's models, ``resource_path("projects/models",
    p, m)`` one model. Each ID passes :func:`path_segment`, which names it by its collection
    (``model_id``).

    :param collections: the collections from the root, ``/``-separated.
    :param ids: one ID for each collection (one resource), or one fewer (the last collection).
    """
    names = collections.split("/")
    if len(ids) not in (len(names) - 1, len(names)):  # a mistake in this package, not in a DAG
        raise TypeError(f"{collections!r} takes {len(names) - 1} or {len(names)} IDs, not {len(ids)}")
    parts = [""]
    for i, name in enumerate(names):
        parts.append(name)
        if i < len(ids):
            parts.append(path_segment(name[:-1] + "_id", ids[i]))
    return "/".join(parts)


def ref_path(collections: str) -> Callable[[tuple[str, ...]], str]:
    """:func:`resource_path` of one resource given as the tuple of its IDs (a ``...Ref``), cached.

    A wait reads the same path every poll.

    :param collections: as for :func:`resource_path`.
    """
    return functools.lru_cache(maxsize=4096)(lambda ref: resource_path(collections, *ref))


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
