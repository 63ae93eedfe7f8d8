"""CmlModelDeploymentSensor: wait until a model deployment is ``deployed``; it never stops it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.sensors.cml import CmlWorkloadSensor

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.waiting.kinds import WorkloadKind


class CmlModelDeploymentSensor(CmlWorkloadSensor):
    """Succeed when a model deployment is ``deployed``; fail when it is ``failed`` or ``stopped``.

    ``pending``, ``deploying`` and ``stopping`` are progress, bounded by the sensor's ``timeout``;
    any other status says nothing about progress: tolerated for ``unknown_grace``, then the sensor
    fails naming it.

    :param project: project name or ID (templated).
    :param model_id: model ID (templated; e.g. the deploy task's ``model_id`` XCom).
    :param build_id: build ID (templated).
    :param deployment_id: deployment ID (templated).
    :param kwargs: as for :class:`~airflow_provider_cml.sensors.cml.CmlWorkloadSensor`.
    """

    template_fields: Sequence[str] = ("project", "model_id", "build_id", "deployment_id")

    def __init__(
        self, *, project: str, model_id: str, build_id: str, deployment_id: str, **kwargs: Any
    ) -> None:
        super().__init__(kind=None, **kwargs)
        self.project = project
        self.model_id = model_id
        self.build_id = build_id
        self.deployment_id = deployment_id

    @property
    def kind(self) -> WorkloadKind:
        """A model deployment."""
        from airflow_provider_cml.workloads.models import MODEL_DEPLOYMENT

        return MODEL_DEPLOYMENT

    def _ref(self, context: Context | None = None) -> Any:
        from airflow_provider_cml.workloads.models import DeploymentRef

        ids = (self.model_id, self.build_id, self.deployment_id)
        if not all(isinstance(value, str) and value.strip() for value in ids):
            raise CmlConfigError(
                "model_id, build_id and deployment_id must be IDs (e.g. the deploy task's XComs), "
                f"not {ids!r}."
            )
        project_id = str(self.hook.resolve_project(self.project)["id"])
        return DeploymentRef(project_id, *(value.strip() for value in ids))
