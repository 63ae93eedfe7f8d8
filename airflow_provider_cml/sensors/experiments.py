"""CmlExperimentRunSensor: wait until an experiment run is ``FINISHED``; it never stops it (none can)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.sensors.cml import CmlWorkloadSensor

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.waiting.kinds import WorkloadKind


class CmlExperimentRunSensor(CmlWorkloadSensor):
    """Succeed when an experiment run is ``FINISHED``; fail when it is ``FAILED`` or ``KILLED``.

    ``RUNNING`` and ``SCHEDULED`` are progress, bounded by the sensor's ``timeout``: a process killed
    outright can leave its run ``RUNNING`` for ever, so set one. Any other status says nothing about
    progress: tolerated for ``unknown_grace``, then the sensor fails naming it.

    :param project: project name or ID (templated).
    :param experiment: experiment name or ID (templated).
    :param run_id: the run's ID, as MLflow's ``run.info.run_id`` in the job gave it (templated).
    :param kwargs: as for :class:`~airflow_provider_cml.sensors.cml.CmlWorkloadSensor`.
    """

    template_fields: Sequence[str] = ("project", "experiment", "run_id")

    def __init__(self, *, project: str, experiment: str, run_id: str, **kwargs: Any) -> None:
        super().__init__(kind=None, **kwargs)
        self.project = project
        self.experiment = experiment
        self.run_id = run_id
        self._resolved: Any = None

    @property
    def kind(self) -> WorkloadKind:
        """An experiment run."""
        from airflow_provider_cml.workloads.experiments import EXPERIMENT_RUN

        return EXPERIMENT_RUN

    def _ref(self, context: Context | None = None) -> Any:
        if not isinstance(self.run_id, str) or not self.run_id.strip():
            raise CmlConfigError(
                "run_id must be the ID of an experiment run (e.g. an upstream task's XCom), "
                f"not {self.run_id!r}."
            )
        if self._resolved is None:  # names are resolved once per worker process
            from airflow_provider_cml.workloads.experiments import ExperimentRunRef

            project_id = str(self.hook.resolve_project(self.project)["id"])
            found = self.hook.experiments.resolve_experiment(project_id, self.experiment)
            self._resolved = ExperimentRunRef(project_id, str(found["id"]), self.run_id.strip())
        return self._resolved
