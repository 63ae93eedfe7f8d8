"""Short polls for DAGs run against the local workbench, as an Airflow cluster policy.

The example DAGs and the README's snippets carry production values (30 s polls, 5 min sensor
checks); the local workbench's jobs take seconds. ``make demo`` installs :func:`fast_polls` as the
``task_policy`` of its ``airflow_local_settings.py`` (Airflow's own hook for changing tasks at parse
time), and the README's test applies it to the DAGs it builds, so the DAGs users copy stay as written.
"""

from __future__ import annotations

from typing import Any

#: Seconds between polls or pokes, for every waiting task.
FAST = 0.2


def fast_polls(task: Any) -> None:
    """Make a provider task poll every :data:`FAST` seconds.

    :param task: an operator or a mapped operator (``.expand()``), which keeps its operator's
        arguments in ``partial_kwargs``.
    """
    if not task.task_type.startswith("Cml"):
        return
    settings = getattr(task, "partial_kwargs", None)
    if settings is not None:  # mapped: the arguments each instance will be made with
        settings["poke_interval" if task.task_type.endswith("Sensor") else "poll_interval"] = FAST
        return
    for name in ("poll_interval", "poke_interval"):  # an operator's polls; a sensor's checks
        if isinstance(getattr(task, name, None), (int, float)):
            setattr(task, name, FAST)
