"""Every public class and function says what it does; the user-facing ones document each parameter.

ruff's pydocstyle rules check that docstrings exist and are well formed in the whole package; they
do not check Sphinx ``:param:`` lines, so this test does for the modules a DAG author or a hook user
reads (the Airflow docs render them). An async twin that says "Async :meth:`...`" points to the
documented sync method instead of repeating it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest

import airflow_provider_cml

SKIPPED_PARAMS = {"self", "cls"}
USER_FACING = {
    "airflow_provider_cml.hooks.cml",
    "airflow_provider_cml.operators.base",
    "airflow_provider_cml.operators.cml",
    "airflow_provider_cml.sensors.cml",
    "airflow_provider_cml.triggers.cml",
    "airflow_provider_cml.links",
    "airflow_provider_cml.workloads.job_runs",
    "airflow_provider_cml.waiting.rule",
    "airflow_provider_cml.client.retry",
    "airflow_provider_cml.exceptions",
    "airflow_provider_cml.client.config",
    "airflow_provider_cml.validation",
    "airflow_provider_cml.values",
}


def _modules() -> Iterator[object]:
    for info in pkgutil.walk_packages(airflow_provider_cml.__path__, "airflow_provider_cml."):
        if info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


def _public_callables() -> Iterator[tuple[str, object, object]]:
    """(qualified name, callable, the object whose docstring documents its parameters)."""
    for module in _modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj.__init__, obj
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not inspect.isfunction(member):
                        continue
                    yield f"{module.__name__}.{name}.{attr}", member, member
            elif inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj, obj


def _doc(documented_by: object) -> str:
    if inspect.isclass(documented_by):  # a subclass may rely on its base's parameters
        return "\n".join(
            inspect.getdoc(c) or ""
            for c in documented_by.__mro__
            if c.__module__.startswith("airflow_provider_cml")
        )
    return inspect.getdoc(documented_by) or ""


def _missing(func: object, documented_by: object) -> list[str]:
    doc = _doc(documented_by)
    if not doc.strip():
        return ["(no docstring)"]
    if doc.startswith("Async :meth:"):
        return []
    if inspect.isclass(documented_by) and documented_by.__init__ is object.__init__:
        return []
    try:
        params = inspect.signature(func).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []
    missing = []
    for param in params:
        if param.name in SKIPPED_PARAMS or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if f":param {param.name}:" not in doc:
            missing.append(param.name)
    return missing


def test_every_public_callable_documents_its_parameters():
    problems = {}
    for name, func, documented_by in _public_callables():
        if inspect.isclass(documented_by) and not _is_ours(documented_by):
            continue
        if name.rsplit(".", 1)[0] not in USER_FACING and name.rsplit(".", 2)[0] not in USER_FACING:
            continue
        missing = _missing(func, documented_by)
        if missing:
            problems[name] = missing
    assert not problems, problems


def _is_ours(cls: type) -> bool:
    # dataclass-generated or inherited __init__ of a class without parameters of its own is fine;
    # enums and NamedTuples document their members, not constructor parameters.
    import enum

    return not issubclass(cls, (enum.Enum, tuple, Exception)) or cls.__module__.endswith("exceptions")


@pytest.mark.parametrize("module", sorted(m.__name__ for m in _modules()))
def test_every_module_says_what_it_owns(module):
    doc = importlib.import_module(module).__doc__
    assert doc and doc.strip(), f"{module} has no module docstring"
