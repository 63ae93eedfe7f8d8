"""CmlApplicationSensor: wait until an application runs, or has stopped; it never stops or starts it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.sensors.cml import CmlWorkloadSensor

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.waiting.kinds import WorkloadKind

#: What :class:`CmlApplicationSensor` may wait for.
APP_STATES = ("running", "stopped")


class CmlApplicationSensor(CmlWorkloadSensor):
    """Succeed when an application is running (or, with ``state="stopped"``, stopped).

    Waiting for ``running``: ``APPLICATION_FAILED`` and ``APPLICATION_STOPPED`` fail the sensor.
    Waiting for ``stopped``: ``APPLICATION_FAILED`` fails it.

    :param project: project name or ID (templated).
    :param application: application name or ID (templated).
    :param state: ``"running"`` or ``"stopped"``.
    :param kwargs: as for :class:`~airflow_provider_cml.sensors.cml.CmlWorkloadSensor`.
    """

    template_fields: Sequence[str] = ("project", "application")

    def __init__(self, *, project: str, application: str, state: str = "running", **kwargs: Any) -> None:
        if state not in APP_STATES:
            raise CmlConfigError(f"state must be one of {', '.join(map(repr, APP_STATES))}, not {state!r}.")
        super().__init__(kind=None, **kwargs)
        self.project = project
        self.application = application
        self.state = state
        self._resolved: Any = None

    @property
    def kind(self) -> WorkloadKind:
        """An application, awaited running or stopped."""
        from airflow_provider_cml.workloads.applications import APPLICATION, APPLICATION_STOP

        return APPLICATION if self.state == "running" else APPLICATION_STOP

    def _ref(self, context: Context | None = None) -> Any:
        if self._resolved is None:  # names are resolved once per worker process
            from airflow_provider_cml.workloads.applications import ApplicationRef

            project_id = str(self.hook.resolve_project(self.project)["id"])
            app = self.hook.applications.resolve_application(project_id, self.application)
            self._resolved = ApplicationRef(project_id, str(app["id"]))
        return self._resolved
