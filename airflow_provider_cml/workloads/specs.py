"""What every spec (a job, a model, an application defined in a DAG) shares: its fields and their checks.

A spec is a frozen, keyword-only dataclass whose fields are checked when it is built, so that a DAG
with a mistake fails when it is parsed, with a message that says what is wrong and how to fix it.
The fields every workload has (a name, the engine it runs on, cpu, memory, its environment) are
declared and checked once, here; :class:`ScriptSpec` adds what jobs and applications share (a script
and GPUs). Values of ``environment`` may be secrets: they are masked in messages and never shown in a
repr.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.validation import normalize_environment

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True, kw_only=True)
class Spec:
    """The fields and behaviour every spec shares (:attr:`noun` names the kind in messages).

    :param name: the workload's name in the project (it is found again by it).
    :param runtime_identifier: the ML Runtime image it runs on.
    :param kernel: the kernel (e.g. ``python3``): a legacy engine's, or beside ``runtime_identifier``
        (both are sent, as Cloudera's AMPs send them and its Ansible build module asks).
    :param cpu: vCPU.
    :param memory: GB.
    :param environment: variables it sees (values may be secrets: masked, never in a repr).
    """

    noun: ClassVar[str] = "job"

    name: str
    runtime_identifier: str | None = None
    kernel: str | None = None
    cpu: float | None = None
    memory: float | None = None
    environment: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._set("name", check_text(self.noun, "name", self.name, required=True))
        for key in ("runtime_identifier", "kernel"):
            self._set(key, check_text(self.noun, key, getattr(self, key)))
        for key in ("cpu", "memory"):
            self._set(key, check_number(key, getattr(self, key), float, positive=True, noun=self.noun))
        if self.environment is not None:
            self._set("environment", normalize_environment(self.environment))

    def _set(self, key: str, value: Any) -> None:
        """Normalise a field in place, once, while the spec is built (it is frozen after)."""
        object.__setattr__(self, key, value)

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
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name not in value and f.default is MISSING and f.default_factory is MISSING:
                raise CmlConfigError(
                    f"The {cls.noun} spec's {f.name} is missing: give the {cls.noun} a {f.name}."
                )
        return cls(**value)

    def managed(self) -> dict[str, Any]:
        """The fields this spec sets (those left ``None`` are not managed)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def secrets(self) -> list[str]:
        """The environment's values: masked wherever a server's message might echo them."""
        return [str(value) for value in (self.environment or {}).values()]


@dataclass(frozen=True, kw_only=True)
class ScriptSpec(Spec):
    """A workload that runs a script of the project: a job or an application.

    :param script: the script, relative to the project's files (e.g. ``"jobs/train.py"``).
    :param nvidia_gpu: GPUs.
    """

    script: str
    nvidia_gpu: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("script", check_text(self.noun, "script", self.script, required=True))
        check_project_file(self.noun, "script", self.script)
        self._set(
            "nvidia_gpu", check_number("nvidia_gpu", self.nvidia_gpu, int, positive=False, noun=self.noun)
        )


def check_text(noun: str, key: str, value: Any, *, required: bool = False) -> str | None:
    """A stripped string field, or ``None`` when it may be left out; a clear error for anything else.

    :param noun: what the spec defines.
    :param key: the field's name.
    :param value: what was given.
    :param required: it must be a non-empty string.
    """
    if value is None and not required:
        return None
    if required and (value is None or (isinstance(value, str) and not value.strip())):
        raise CmlConfigError(
            f"The {noun} spec's {key} is missing: give the {noun} a {key} (a non-empty string)."
        )
    if not isinstance(value, str):
        raise CmlConfigError(f"The {noun} spec's {key} must be a string, not {value!r}.")
    if "\x00" in value:
        raise CmlConfigError(f"The {noun} spec's {key} {value!r} has a NUL character: remove it.")
    return value.strip()


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
