"""What every spec (a job, a model, an application defined in a DAG) shares: building one, checking fields.

A spec is a frozen dataclass whose fields are checked when it is built, so that a DAG with a
mistake fails when it is parsed, with a message that says what is wrong and how to fix it. Values
of ``environment`` may be secrets: they are masked in messages and never shown in a repr.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_cml.exceptions import CmlConfigError

if TYPE_CHECKING:
    from typing_extensions import Self


class Spec:
    """The shared behaviour of the spec dataclasses (:attr:`noun` names the kind in messages)."""

    noun: ClassVar[str] = "job"
    environment: Mapping[str, Any] | None

    @classmethod
    def of(cls, value: Self | Mapping[str, Any]) -> Self:
        """A spec from a spec or a mapping of its fields (a templated dict, say); unknown fields refused.

        :param value: the spec, or its fields.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise CmlConfigError(
                f"A {cls.noun} spec must be a {cls.__name__} or a mapping of its fields, not {value!r}."
            )
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(value) - known)
        if unknown:
            raise CmlConfigError(
                f"Unknown {cls.noun} spec field(s) {', '.join(map(repr, unknown))}; "
                f"known fields: {', '.join(sorted(known))}."
            )
        return cls(**value)

    def secrets(self) -> list[str]:
        """The environment's values: masked wherever a server's message might echo them."""
        return [str(value) for value in (self.environment or {}).values()]


def check_number(key: str, value: Any, kind: type, *, positive: bool, noun: str = "job") -> Any:
    """A finite number of ``kind`` (numeric strings from templates accepted), or ``None``.

    :param key: the field's name, for the message.
    :param value: what was given.
    :param kind: ``int`` or ``float``.
    :param positive: above 0 (else 0 or more).
    :param noun: what the spec defines.
    """
    if value is None:
        return None
    what = "a positive number" if positive else "a whole number, 0 or more"
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise CmlConfigError(f"The {noun} spec's {key} must be {what}, not {value!r}.") from None
    bad = not math.isfinite(number) or (number <= 0 if positive else number < 0)
    if bad or (kind is int and not number.is_integer()):
        raise CmlConfigError(f"The {noun} spec's {key} must be {what}, not {value!r}.")
    return kind(number)


def check_project_file(noun: str, key: str, value: str | None) -> None:
    """Refuse a path that is absolute or leaves the project with ``..``.

    :param noun: what the spec defines.
    :param key: the field's name.
    :param value: the path (``None``: nothing to check).
    """
    if value and (value.startswith("/") or ".." in posixpath.normpath(value).split("/")):
        raise CmlConfigError(
            f"The {noun} spec's {key} {value!r} must be a path inside the project (e.g. 'jobs/train.py'), "
            "not absolute and not leaving the project with '..'."
        )


def check_engine(noun: str, name: str, runtime: str | None, kernel: str | None) -> None:
    """Refuse a spec that names both an ML Runtime and a legacy engine kernel.

    :param noun: what the spec defines.
    :param name: its name.
    :param runtime: its ``runtime_identifier``.
    :param kernel: its ``kernel``.
    """
    if runtime and kernel:
        raise CmlConfigError(
            f"{noun.capitalize()} {name!r} sets both runtime_identifier and kernel: it runs on an ML Runtime "
            "(its kernel comes with it) or on a legacy engine kernel, not both. Keep one."
        )
