"""The ``hook`` attribute of the provider's operators and sensors: one CmlHook per task, made on first use.

One hook per task process means one HTTP session and one names cache for all of its requests.
The hook's module is imported then, not when a DAG file is parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook


class LazyHook:
    """``task.hook``: the :class:`~airflow_provider_cml.hooks.cml.CmlHook` for ``task.cml_conn_id``.

    Made on first access and kept in the instance's ``__dict__`` (where a test may put its own).
    """

    @overload
    def __get__(self, task: None, owner: Any = None) -> LazyHook: ...

    @overload
    def __get__(self, task: object, owner: Any = None) -> CmlHook: ...

    def __get__(self, task: object | None, owner: Any = None) -> LazyHook | CmlHook:
        if task is None:
            return self
        from airflow_provider_cml.hooks.cml import CmlHook

        hook = task.__dict__["hook"] = CmlHook(task.cml_conn_id)  # type: ignore[attr-defined]
        return hook
