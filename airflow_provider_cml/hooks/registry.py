"""Registering model versions from experiment runs, exactly once, as ``CmlHook.registry``.

``POST /registry/models`` adds a version each time it is sent, so it is never sent for a run that
already has a usable version under the same model name: before posting, the run's
``data.registered_model_metadata`` is read (the sheet's own way to "avoid registering the same run
twice"), and, when that names none, the registry's versions of that model whose
``mlflow_metadata.run_id`` is the run's. A version that failed (a failure status, an
``error_message``) is not reused: the run is registered again. The POST itself goes through
:func:`~airflow_provider_cml.client.create_once.post_once_for`: an answer lost after the server
acted is looked up by the same two reads (leaving out the versions seen before) before any resend.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from airflow_provider_cml.client.create_once import post_once_for
from airflow_provider_cml.exceptions import CmlApiError, CmlExperimentRunError
from airflow_provider_cml.hooks.part import HookPart
from airflow_provider_cml.workloads.experiments import EXPERIMENT_RUN, ExperimentRunRef
from airflow_provider_cml.workloads.registry import (
    REGISTERED_MODEL_VERSION,
    REGISTERED_MODELS_PATH,
    Registration,
    entries_of_run,
    newest_of_run,
    number_of,
    registered_model_path,
)


class Registry(HookPart):
    """Model registry writes (reads are ``hook.models``'s ``get_registered_model...``).

    :param hook: the hook.
    """

    def register_model_version(
        self,
        run: ExperimentRunRef,
        registration: Registration | str,
        *,
        require_finished: bool = True,
    ) -> tuple[dict[str, Any], bool]:
        """The run's version of the model: one already registered and not failed, else a new one.

        Returns the RegisteredModelVersion (it may not be ready yet: wait on it with
        ``REGISTERED_MODEL_VERSION``) and whether this call registered it.

        :param run: project, experiment and run IDs.
        :param registration: the model's name and the new version's details; a name alone registers
            with the defaults (``Registration(name)``).
        :param require_finished: refuse a run that is not ``EXPERIMENT_RUN_FINISHED`` (its model may
            not be logged yet, or it failed).
        """
        if not isinstance(registration, Registration):  # a name alone (the body refuses a non-string)
            registration = Registration(registration)
        body = registration.body(run.project_id, run.experiment_id, run.run_id)
        model_name = body["model_name"]
        answer = self.hook.experiments.get_run(run)
        status = EXPERIMENT_RUN.status_of(answer)
        if require_finished and not EXPERIMENT_RUN.is_success(status):
            raise CmlExperimentRunError(
                f"Experiment run {run.run_id} is {status}, not EXPERIMENT_RUN_FINISHED: a model is "
                "registered from a finished run only. Wait for it first (CmlExperimentRunSensor), or pass "
                "require_finished=False.",
                workload_id=run.run_id,
                status=status,
            )
        earlier = self.versions_of_run(run, model_name, answer)
        usable = [v for v in earlier if not _failed(v)]
        if usable:
            version = max(usable, key=number_of)
            self.hook.log.info(
                "Experiment run %s is already registered as version %s of %r (%s): not registering again.",
                run.run_id,
                version.get("number"),
                model_name,
                version.get("model_version_id"),
            )
            return version, False
        seen = {str(v.get("model_version_id")) for v in earlier}
        if seen:
            self.hook.log.info("Every earlier version of run %s failed: registering it again.", run.run_id)

        def look_up() -> dict[str, Any] | None:
            new = [
                v for v in self.versions_of_run(run, model_name) if str(v.get("model_version_id")) not in seen
            ]
            return {"model_versions": new} if new else None

        registered = post_once_for(
            self.hook,
            REGISTERED_MODELS_PATH,
            body,
            look_up,
            what=f"registration of run {run.run_id} as model {model_name!r}",
            not_found=f"experiment run {run.run_id!r} of experiment {run.experiment_id!r}",
        )
        version = self._new_version(registered, run.run_id, seen)
        self.hook.log.info(
            "Registered run %s as version %s of %r (%s).",
            run.run_id,
            version.get("number"),
            model_name,
            version.get("model_version_id"),
        )
        return version, True

    def versions_of_run(
        self, run: ExperimentRunRef, model_name: str, answer: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every version of ``model_name`` registered from the run, as the registry has them now.

        From the run's ``data.registered_model_metadata`` (each entry's version read: its status);
        when that names none, from the registry's versions of the model named ``model_name`` whose
        ``mlflow_metadata.run_id`` is the run's.

        :param run: project, experiment and run IDs.
        :param model_name: the registered model's name.
        :param answer: the run as just read (saves a request).
        """
        answer = answer if answer is not None else self.hook.experiments.get_run(run)
        found = []
        for entry in entries_of_run(answer, model_name):
            model_id, version_id = entry.get("model_id"), entry.get("model_version_id")
            if model_id and version_id:
                try:
                    version = self.hook.models.get_registered_model_version(str(model_id), str(version_id))
                except CmlApiError as exc:
                    if exc.http_status not in (403, 404):  # deleted since: not a version of it
                        raise
                    continue
                found.append({"model_id": str(model_id), **version})
        if found:
            return found
        for model in self.hook.models.list_registered_models({"model_name": model_name}):
            if model.get("name") == model_name:  # the filter matches substrings
                model_id = str(model.get("model_id"))
                versions = self.versions(model_id)
                found += [{"model_id": model_id, **v} for v in versions if _run_is(v, run.run_id)]
        return found

    def versions(self, model_id: str) -> list[dict[str, Any]]:
        """Every version of a registered model (GetRegisteredModel pages its ``model_versions``).

        :param model_id: the registry's model ID.
        """
        path, what = registered_model_path(model_id), f"registered model {model_id!r}"
        first = self.hook.transport.request("GET", path, not_found=what)
        if not first.get("next_page_token"):  # one page; proto3 JSON leaves an empty list out
            return [v for v in first.get("model_versions") or [] if isinstance(v, dict)]
        return list(self.read_all(path, "model_versions", not_found=what))

    def _new_version(
        self, registered: Mapping[str, Any], run_id: str, seen: Collection[str]
    ) -> dict[str, Any]:
        """The version a registration added: the run's, else the highest ``number`` (sheet §7)."""
        model_id = str(registered.get("model_id") or "")
        versions: Sequence[Mapping[str, Any]] = [
            v for v in registered.get("model_versions") or [] if isinstance(v, Mapping)
        ]
        if not versions and model_id:  # an answer without its versions: read them
            versions = self.versions(model_id)
        fresh = [v for v in versions if str(v.get("model_version_id")) not in seen]
        version = newest_of_run(fresh, run_id) or max(fresh, key=number_of, default=None)
        if version is None or not version.get("model_version_id"):
            raise CmlApiError(
                f"The registry answered the registration of run {run_id} without a new model version "
                f"(model {model_id or 'unknown'}); look for it in the workbench's Model Registry."
            )
        return {"model_id": model_id, **version} if model_id else dict(version)


def _failed(version: Mapping[str, Any]) -> bool:
    status = REGISTERED_MODEL_VERSION.status_of(version)
    return REGISTERED_MODEL_VERSION.is_terminal(status) and not REGISTERED_MODEL_VERSION.is_success(status)


def _run_is(version: Mapping[str, Any], run_id: str) -> bool:
    return newest_of_run([version], run_id) is not None
