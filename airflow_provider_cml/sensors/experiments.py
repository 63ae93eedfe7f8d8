"""CmlExperimentRunSensor: wait until an experiment run is ``FINISHED``; it never stops it (none can)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.sensors.cml import CmlWorkloadSensor
from airflow_provider_cml.validation import validate_positive

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.waiting.kinds import WorkloadKind
    from airflow_provider_cml.waiting.plan import Wait

#: Seconds an experiment run may stay in progress after its job run ended (``job_run_grace``).
DEFAULT_JOB_RUN_GRACE = 30.0


class CmlExperimentRunSensor(CmlWorkloadSensor):
    """Succeed when an experiment run is ``FINISHED``; fail when it is ``FAILED`` or ``KILLED``.

    ``RUNNING`` and ``SCHEDULED`` are progress, bounded by the sensor's ``timeout``: a process killed
    outright can leave its run ``RUNNING`` for ever, so set one, and give ``job_run`` when a job
    logs the run: once that job run has ended and ``job_run_grace`` has passed, a run still in
    progress fails the sensor. Any other status says nothing about progress: tolerated for
    ``unknown_grace``, then the sensor fails naming it.

    The run is named by its ID (``run_id``) or by tags the training job set (``run_tag``, e.g.
    ``{"airflow_run_id": "{{ run_id }}"}``, with ``mlflow.set_tag`` in the job): until a run with
    those tags appears the sensor keeps waiting, within its ``timeout``. Several runs with the tags:
    the one started last (a retried training task logs a new run).

    :param project: project name or ID (templated).
    :param experiment: experiment name or ID (templated).
    :param run_id: the run's ID, as MLflow's ``run.info.run_id`` in the job gave it (templated).
    :param run_tag: instead of ``run_id``: the tags that name the run, ``{name: value}`` (templated).
    :param job_run: the job run that logs the run: a mapping with ``project_id``, ``job_id`` and
        ``run_id`` (templated; e.g. the XComs of an upstream ``CmlRunJobOperator``).
    :param job_run_grace: seconds the run may stay in progress after ``job_run`` ended (the
        script's last write).
    :param kwargs: as for :class:`~airflow_provider_cml.sensors.cml.CmlWorkloadSensor`.
    """

    template_fields: Sequence[str] = ("project", "experiment", "run_id", "run_tag", "job_run")

    def __init__(
        self,
        *,
        project: str,
        experiment: str,
        run_id: str | None = None,
        run_tag: Mapping[str, str] | None = None,
        job_run: Mapping[str, Any] | None = None,
        job_run_grace: float = DEFAULT_JOB_RUN_GRACE,
        **kwargs: Any,
    ) -> None:
        super().__init__(kind=None, **kwargs)
        if (run_id is None) == (run_tag is None):
            raise CmlConfigError(
                "CmlExperimentRunSensor needs exactly one of run_id (the run's ID) and run_tag (tags the "
                f"training job set on it), not run_id={run_id!r} and run_tag={run_tag!r}."
            )
        validate_positive("job_run_grace", job_run_grace, allow_none=False)
        self.project = project
        self.experiment = experiment
        self.run_id = run_id
        self.run_tag = run_tag
        self.job_run = job_run
        self.job_run_grace = job_run_grace
        self._resolved: Any = None

    @property
    def kind(self) -> WorkloadKind:
        """An experiment run."""
        from airflow_provider_cml.workloads.experiments import EXPERIMENT_RUN

        return EXPERIMENT_RUN

    def _ref(self, context: Context | None = None) -> Any:
        run_id = ""
        if self.run_tag is None and (not isinstance(self.run_id, str) or not self.run_id.strip()):
            raise CmlConfigError(
                "run_id must be the ID of an experiment run (e.g. an upstream task's XCom), "
                f"not {self.run_id!r}."
            )
        if self.run_tag is None:
            run_id = str(self.run_id).strip()
        if self._resolved is None:  # names are resolved once per worker process
            from airflow_provider_cml.workloads.experiments import ExperimentRunRef

            project_id = str(self.hook.resolve_project(self.project)["id"])
            found = self.hook.experiments.resolve_experiment(project_id, self.experiment)
            self._resolved = ExperimentRunRef(project_id, str(found["id"]), run_id)
        return self._resolved

    def _wait(self, context: Context) -> Wait:
        """The base sensor's wait, with the tags that name the run and the job run that bounds it."""
        from dataclasses import replace

        from airflow_provider_cml.hooks.experiments import bound_of
        from airflow_provider_cml.workloads.experiments import check_tags

        find = None if self.run_tag is None else {"tags": check_tags(self.run_tag)}
        bound = None if not self.job_run else bound_of(self.job_run, self.job_run_grace)
        return replace(super()._wait(context), find=find, bound=bound)
