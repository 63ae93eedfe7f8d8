"""CmlRegisterModelOperator: register a model version from an experiment run, once, and wait until ready.

The hook's ``registry`` makes the registration (never twice for a run and model name, see
:mod:`airflow_provider_cml.hooks.registry`); the wait is the one waiting rule on
:data:`~airflow_provider_cml.workloads.registry.REGISTERED_MODEL_VERSION`. Nothing is ever deleted,
and a version cannot be stopped: a task killed while waiting leaves the registration to finish.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.operators.base import CmlBaseOperator

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context

#: What the operator returns (its XCom), in this order.
RESULT_KEYS = (
    "project_id",
    "experiment_id",
    "run_id",
    "registered_model_id",
    "model_version_id",
    "version_number",
    "model_name",
    "status",
)


class CmlRegisterModelOperator(CmlBaseOperator):
    """Register the model an experiment run logged as a new version in the Model Registry, and wait for it.

    ``POST /registry/models`` with the run, the ``model_path`` the run gave ``mlflow.<flavor>.log_model``
    (``artifact_path``) and the ``model_name``: a model of that name gets a new version, else it is
    made. Then the version is awaited until ``READY``; a failure status, or the registry's
    ``error_message``, fails the task with that message (:class:`~.exceptions.CmlModelRegistrationError`).

    Registered once: a run that already has a version of ``model_name`` that did not fail (a retry of
    this task, a lost answer, another DAG run registering the same run) is not registered again; that
    version is returned. Only a ``FINISHED`` run is registered (a running one may not have logged its
    model yet): a run in any other status fails the task with
    :class:`~.exceptions.CmlExperimentRunError`; wait for it first with
    :class:`~airflow_provider_cml.sensors.experiments.CmlExperimentRunSensor`.

    Returns (XCom ``return_value``) ``project_id``, ``experiment_id``, ``run_id``,
    ``registered_model_id``, ``model_version_id``, ``version_number``, ``model_name`` and ``status``:
    hand it to :class:`~airflow_provider_cml.operators.models.CmlDeployModelOperator`'s
    ``registered_version`` (e.g. ``registered_version=register.output``).

    :param project: project name or ID (templated).
    :param experiment: experiment name or ID (templated).
    :param run_id: the run's ID, e.g. an upstream task's XCom (templated).
    :param model_name: the registered model's name (templated).
    :param model_path: the ``artifact_path`` the run logged the model under (templated; default
        ``artifacts``, as Cloudera's examples log it).
    :param description: the registered model's description (templated).
    :param notes: the version's notes (templated).
    :param tags: the version's tags, names to strings (templated).
    :param visibility: ``PRIVATE`` or ``PUBLIC``; ``None``: the registry's default (``PRIVATE``).
    :param wait: wait until the version is ready (default); ``False``: return once registered.
    :param kwargs: ``poll_interval``, ``timeout``, ``cml_conn_id``, ``deferrable``,
        ``unknown_grace`` (as for every operator of this provider) and ``BaseOperator``'s.
    """

    template_fields: Sequence[str] = (
        "project",
        "experiment",
        "run_id",
        "model_name",
        "model_path",
        "description",
        "notes",
        "tags",
    )

    def __init__(
        self,
        *,
        project: str,
        experiment: str,
        run_id: str,
        model_name: str,
        model_path: str = "artifacts",
        description: str | None = None,
        notes: str | None = None,
        tags: Mapping[str, str] | None = None,
        visibility: str | None = None,
        wait: bool = True,
        **kwargs: Any,
    ) -> None:
        from airflow_provider_cml.workloads.registry import check_visibility

        super().__init__(**kwargs)
        self.project = project
        self.experiment = experiment
        self.run_id = run_id
        self.model_name = model_name
        self.model_path = model_path
        self.description = description
        self.notes = notes
        self.tags = tags
        self.visibility = visibility
        self.wait = wait
        # Checked here too (the rest once templated, in the body): a wrong word fails the DAG's parse.
        check_visibility(visibility)
        if not isinstance(wait, bool):
            raise CmlConfigError(f"wait must be True or False, not {wait!r}.")

    def execute(self, context: Context) -> dict[str, Any]:
        """Register the run's model (or find its registration) and wait until the version is ready.

        :param context: the task's Airflow context.
        """
        from airflow_provider_cml.waiting.plan import Wait
        from airflow_provider_cml.workloads.experiments import ExperimentRunRef
        from airflow_provider_cml.workloads.registry import (
            REGISTERED_MODEL_VERSION,
            RegisteredVersionRef,
            Registration,
        )

        if not isinstance(self.run_id, str) or not self.run_id.strip():
            raise CmlConfigError(
                "run_id must be the ID of an experiment run (e.g. an upstream task's XCom), "
                f"not {self.run_id!r}."
            )
        deadline = self._deadline(context)
        with self._bounded(deadline):
            project_id = str(self.hook.resolve_project(self.project)["id"])
            experiment = self.hook.experiments.resolve_experiment(project_id, self.experiment)
            run = ExperimentRunRef(project_id, str(experiment["id"]), self.run_id.strip())
            registration = Registration(
                self.model_name, self.model_path, self.description, self.notes, self.tags, self.visibility
            )
            version, _ = self.hook.registry.register_model_version(run, registration)
            result = _result(run, str(self.model_name).strip(), version)
            if not self.wait:
                return result
            ref = RegisteredVersionRef(result["registered_model_id"], result["model_version_id"])
            wait = Wait(REGISTERED_MODEL_VERSION, ref, self.poll_interval, self.unknown_grace)
            ended = self.wait_or_defer(
                wait, deadline, resume="execute_complete", answer=version, carry=result
            )
            return self._ready(result, ended.result(self.hook.explain))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the version ended (deferrable).

        :param context: the task's Airflow context.
        :param event: the trigger's event.
        """
        ended, carried = self.resumed(event)
        result = {key: carried.get(key) for key in RESULT_KEYS}
        return self._ready(result, ended.result(self.hook.explain))

    def _ready(self, result: dict[str, Any], answer: Mapping[str, Any]) -> dict[str, Any]:
        from airflow_provider_cml.workloads.registry import REGISTERED_MODEL_VERSION

        result = {**result, "status": REGISTERED_MODEL_VERSION.status_of(answer)}
        self.log.info(
            "Version %s of registered model %r is %s (model %s, version %s).",
            result["version_number"],
            result["model_name"],
            result["status"],
            result["registered_model_id"],
            result["model_version_id"],
        )
        return result


def _result(run: Any, model_name: str, version: Mapping[str, Any]) -> dict[str, Any]:
    """The operator's XCom: the run, and the version's IDs, number and status."""
    from airflow_provider_cml.workloads.registry import REGISTERED_MODEL_VERSION, number_of

    return {
        "project_id": run.project_id,
        "experiment_id": run.experiment_id,
        "run_id": run.run_id,
        "registered_model_id": str(version.get("model_id") or ""),
        "model_version_id": str(version.get("model_version_id") or ""),
        "version_number": number_of(version),
        "model_name": model_name,
        "status": REGISTERED_MODEL_VERSION.status_of(version),
    }
