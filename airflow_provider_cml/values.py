"""Values checked once: a run's ``environment`` and ``arguments``, as the provider carries them.

A DAG author (or a hook user) hands over a plain mapping and a string. They are checked where they
are handed over, by :meth:`Environment.of` and :meth:`Arguments.of`, and from then on travel as
these types: every later function accepts them as they are (``of`` returns a checked value
unchanged), so a value is never checked twice and never half-checked. An :class:`Environment` is
immutable, and its repr shows names only: its values may be secrets.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from airflow_provider_cml._compat import mask_if_sensitive
from airflow_provider_cml.exceptions import CmlConfigError

#: Added to every v2 run's environment by the provider; a DAG may not set it.
START_TOKEN_ENV = "AIRFLOW_CML_START_TOKEN"
#: What a process accepts as a variable's name.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Environment(Mapping[str, str]):
    """Environment-variable overrides, checked: valid names, string values, no NUL byte.

    Made only by :meth:`of` (calling the class directly is refused, so no unchecked one exists).
    Immutable; equal to a ``dict`` with the same items; ``{**environment}`` or ``dict(environment)``
    gives the plain mapping a request body needs.
    """

    __slots__ = ("_values",)
    _values: dict[str, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Make an Environment with Environment.of(mapping), which checks the mapping.")

    @classmethod
    def of(cls, environment: Mapping[str, Any] | None) -> Environment:
        """The checked overrides; an :class:`Environment` is returned as it is, not checked again.

        ``None`` is no overrides. Names must be valid variable names (and not
        :data:`START_TOKEN_ENV`, which the provider sets); str values pass, int, float and bool
        become ``str(value)``; anything else is refused, naming the key (never the value, which may
        be a secret).

        :param environment: the overrides as the DAG (or a hook call) gave them.
        :raises CmlConfigError: what is wrong with them, and how to fix it.
        """
        if isinstance(environment, Environment):
            return environment
        if environment is None:
            return cls._made({})
        if not isinstance(environment, Mapping):
            raise CmlConfigError(
                f"environment must be a dict of NAME -> string, not {type(environment).__name__}."
            )
        return cls._made(
            {_checked_name(name): _checked_value(name, value) for name, value in environment.items()}
        )

    @classmethod
    def _made(cls, values: dict[str, str]) -> Environment:
        """An Environment of ``values``, which the caller checked or wrote itself."""
        made = object.__new__(cls)
        object.__setattr__(made, "_values", values)
        return made

    def tagged(self, tags: Mapping[str, str]) -> Environment:
        """These overrides plus variables the provider writes (a task's identity); a tag wins a clash.

        The tags are the provider's own strings, so they are not put through the DAG author's rules
        (the start token is a tag a DAG may not set).

        :param tags: names to strings.
        """
        return Environment._made({**self._values, **tags})

    def mask_sensitive(self) -> None:
        """Have Airflow mask the values whose names say they are secret (PASSWORD, TOKEN, ...) in logs."""
        for name, value in self._values.items():
            mask_if_sensitive(name, value)

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        # Names only: a repr ends up in logs, tracebacks and the UI.
        return f"Environment({sorted(self._values)!r}, values hidden)"

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("An Environment cannot be changed: make another with Environment.of(...).")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("An Environment cannot be changed: make another with Environment.of(...).")

    def __reduce__(self) -> tuple[Any, tuple[dict[str, str]]]:
        # Copying and pickling go through _made: the values were checked when first made.
        return (Environment._made, (dict(self._values),))


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not ENV_NAME.match(name):
        raise CmlConfigError(
            f"environment key {name!r} is not a valid environment variable name: use letters, digits "
            "and underscores, not starting with a digit."
        )
    if name == START_TOKEN_ENV:
        raise CmlConfigError(
            f"environment may not set {START_TOKEN_ENV}: the provider sets it to find a start whose "
            "answer was lost. Use another name."
        )
    return name


def _checked_value(name: str, value: Any) -> str:
    if isinstance(value, str):
        if "\x00" in value:
            raise CmlConfigError(
                f"environment[{name!r}] contains a NUL character, which no process can receive."
            )
        return value
    if isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    raise CmlConfigError(
        f"environment[{name!r}] is a {type(value).__name__}; Cloudera AI accepts only strings. "
        "Pass a string (json.dumps it if it is structured data)."
    )


class Arguments(str):
    """``arguments`` of a run, checked: one string without NUL, which the script sees as ``JOB_ARGUMENTS``.

    Made by :meth:`of`; a ``str`` in every other way (it goes into a request body as one).
    """

    __slots__ = ()

    @classmethod
    def of(cls, arguments: Any) -> Arguments | None:
        """The checked arguments (``None``: none); :class:`Arguments` are returned as they are.

        :param arguments: what the DAG (or a hook call) gave.
        :raises CmlConfigError: not a string, or a NUL byte in it.
        """
        if arguments is None or isinstance(arguments, Arguments):
            return arguments
        if not isinstance(arguments, str):
            raise CmlConfigError(
                f"arguments must be a string (it reaches the script as JOB_ARGUMENTS), not "
                f"{type(arguments).__name__}. Join a list with ' '.join(...) first."
            )
        if "\x00" in arguments:
            raise CmlConfigError("arguments contains a NUL character, which no process can receive.")
        return cls(arguments)
