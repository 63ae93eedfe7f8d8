"""Rules: checks of what a DAG author passes in, before anything is sent to Cloudera AI."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_cml.exceptions import CmlConfigError

#: Environment-variable overrides as a DAG passes them: names to strings (numbers and booleans allowed).
Overrides = Mapping[str, Any]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Project and job IDs look like "lv1g-4hu5-a359-wagc".
_RESOURCE_ID = re.compile(r"^[a-z0-9]{4}(-[a-z0-9]{4}){3}$")


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
        if isinstance(value, str):
            result[name] = value
        elif isinstance(value, (bool, int, float)):
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
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise CmlConfigError(f"{name} must be a positive number of seconds, not {value!r}.")
