"""Checks of what a DAG author passes in, before anything is sent to Cloudera AI."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from airflow_provider_cml.exceptions import CmlConfigError

#: Environment-variable overrides as a DAG passes them: names to strings (numbers and booleans allowed).
Overrides = Mapping[str, Any]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Project and job IDs look like "lv1g-4hu5-a359-wagc".
_RESOURCE_ID = re.compile(r"^[a-z0-9]{4}(-[a-z0-9]{4}){3}$")
# What may never be in one path segment: it would change which resource the request names.
_UNSAFE_SEGMENT = re.compile(r"[/?#\\\x00-\x1f\x7f]")
#: Added to every v2 run's environment by the provider; a DAG may not set it.
START_TOKEN_ENV = "AIRFLOW_CML_START_TOKEN"


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
    """Check override names and turn values into strings, as the API requires.

    str passes; int, float and bool become ``str(value)``; anything else is refused, naming the key
    (never the value, which may be a secret).

    :param environment: the overrides as the DAG gave them.
    """
    if environment is None:
        return {}
    if not isinstance(environment, Mapping):
        raise CmlConfigError(
            f"environment must be a dict of NAME -> string, not {type(environment).__name__}."
        )
    result: dict[str, str] = {}
    for name, value in environment.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise CmlConfigError(
                f"environment key {name!r} is not a valid environment variable name: use letters, digits "
                "and underscores, not starting with a digit."
            )
        if name == START_TOKEN_ENV:
            raise CmlConfigError(
                f"environment may not set {START_TOKEN_ENV}: the provider sets it to find a start whose "
                "answer was lost. Use another name."
            )
        if isinstance(value, str):
            if "\x00" in value:
                raise CmlConfigError(
                    f"environment[{name!r}] contains a NUL character, which no process can receive."
                )
            result[name] = value
        elif isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
            result[name] = str(value)
        else:
            raise CmlConfigError(
                f"environment[{name!r}] is a {type(value).__name__}; Cloudera AI accepts only strings. "
                "Pass a string (json.dumps it if it is structured data)."
            )
    return result


def validate_arguments(arguments: Any) -> str | None:
    """``arguments`` reaches the job as one string (``JOB_ARGUMENTS``).

    :param arguments: what the DAG gave.
    """
    if isinstance(arguments, str) and "\x00" in arguments:
        raise CmlConfigError("arguments contains a NUL character, which no process can receive.")
    if arguments is None or isinstance(arguments, str):
        return arguments
    raise CmlConfigError(
        f"arguments must be a string (it reaches the script as JOB_ARGUMENTS), not "
        f"{type(arguments).__name__}. Join a list with ' '.join(...) first."
    )


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
