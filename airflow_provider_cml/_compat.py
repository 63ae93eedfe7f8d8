"""The few Airflow names that moved between Airflow 2.10/2.11 and 3.x, imported in one place.

Official providers get these from ``apache-airflow-providers-common-compat``; this provider keeps
its own small module instead so it installs on Airflow 2.10 without that dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION

_major, _minor = (int(part) for part in AIRFLOW_VERSION.split(".")[:2])
AIRFLOW_V_3_0_PLUS = (_major, _minor) >= (3, 0)

if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import BaseHook, BaseOperator, BaseOperatorLink, BaseSensorOperator
    from airflow.sdk.log import mask_secret
else:  # Airflow 2.10 / 2.11
    from airflow.hooks.base import BaseHook
    from airflow.models import BaseOperator
    from airflow.models.baseoperatorlink import BaseOperatorLink
    from airflow.sensors.base import BaseSensorOperator
    from airflow.utils.log.secrets_masker import mask_secret

if TYPE_CHECKING:
    from airflow.sdk import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
else:
    try:  # newer Airflow 3 releases: the Task SDK's names (the core ones warn there)
        from airflow.sdk import conf
        from airflow.sdk.exceptions import (
            AirflowException,
            AirflowNotFoundException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )
    except ImportError:  # Airflow 2.x and 3.0/3.1
        from airflow.configuration import conf
        from airflow.exceptions import (
            AirflowException,
            AirflowNotFoundException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )

if TYPE_CHECKING:
    from airflow.sdk import Context
else:
    Context = dict[str, Any]


async def amask_secret(secret: str) -> None:
    """``mask_secret`` for the triggerer's event loop (Airflow 3 has an async twin that cannot deadlock)."""
    try:
        from airflow.sdk.log import amask_secret as sdk_amask_secret
    except ImportError:  # Airflow 2: the masker is local to the process, nothing to wait for
        mask_secret(secret)
    else:
        await sdk_amask_secret(secret)


def _is_sensitive_name(name: str) -> bool:
    try:  # Airflow 3.2+
        from airflow.sdk._shared.secrets_masker import should_hide_value_for_key
    except ImportError:
        try:  # Airflow 3.0 / 3.1
            from airflow.sdk.execution_time.secrets_masker import (  # type: ignore[no-redef]
                should_hide_value_for_key,
            )
        except ImportError:  # Airflow 2
            from airflow.utils.log.secrets_masker import (  # type: ignore[no-redef]
                should_hide_value_for_key,
            )
    return bool(should_hide_value_for_key(name))


def mask_if_sensitive(name: str, value: str) -> None:
    """Mask ``value`` in logs when ``name`` is sensitive (PASSWORD, SECRET, TOKEN, ...).

    Name and length are checked first: Airflow's masker warns about every value shorter than
    ``[logging] min_length_masked_secret``, and would not mask those anyway.
    """
    min_length = conf.getint("logging", "min_length_masked_secret", fallback=5)
    if len(value) >= min_length and _is_sensitive_name(name):
        mask_secret(value, name)


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable``, read when an operator is built."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


#: Seconds a trigger keeps its event after the deferral (see :func:`trigger_event_hold`).
DEFAULT_TRIGGER_EVENT_HOLD = 10.0


def trigger_event_hold() -> float:
    """``[cml] trigger_event_hold``: how long after a deferral a trigger's event may fire at the soonest.

    Airflow can mark a deferred task failed although it succeeded when its trigger fires within
    about 5 s of the deferral (apache/airflow issues 71580 and 72716: the executor's "success" for
    the deferring process is read after the resumed try started). Holding the event past that
    window avoids it; ``0`` turns the hold off.
    """
    return max(0.0, conf.getfloat("cml", "trigger_event_hold", fallback=DEFAULT_TRIGGER_EVENT_HOLD))


__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AirflowException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "Context",
    "amask_secret",
    "conf",
    "default_deferrable",
    "mask_if_sensitive",
    "mask_secret",
    "trigger_event_hold",
]


async def aget_connection(hook: Any, conn_id: str) -> Any:
    """The connection, or ``None`` if it does not exist, without blocking the event loop.

    :param hook: the hook asking (Airflow 3.1+ has an async ``aget_connection`` on hooks).
    :param conn_id: the connection's id.
    """
    try:
        getter = getattr(type(hook), "aget_connection", None)
        if getter is not None:  # Airflow 3.1+
            return await getter(conn_id)
        from asgiref.sync import sync_to_async

        return await sync_to_async(hook.get_connection)(conn_id)
    except AirflowNotFoundException:
        return None
