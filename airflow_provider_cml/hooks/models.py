"""Models, builds, deployments and the model registry, as ``CmlHook.models``.

API v2's model endpoints through one :class:`~airflow_provider_cml.hooks.cml.CmlHook` (its
connection, retries and bounds). Creating a model, a build or a deployment goes through
:func:`~airflow_provider_cml.client.create_once.post_once_for`: a lost answer is looked up before any
resend, so nothing is created twice. Restart and stop are POSTs without a body whose answers are
only acknowledgements: the caller waits on the deployment (``CmlHook.wait_for``) to see the effect.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from airflow_provider_cml.client import listing
from airflow_provider_cml.client.attempts import NotDone
from airflow_provider_cml.client.create_once import post_once_for
from airflow_provider_cml.exceptions import CmlApiError, CmlModelCallError
from airflow_provider_cml.hooks.part import HookPart
from airflow_provider_cml.validation import path_segment
from airflow_provider_cml.workloads.job_runs import run_environment
from airflow_provider_cml.workloads.models import (
    BuildRef,
    CmlModelSpec,
    DeploymentRef,
    build_path,
    builds_path,
    deployment_path,
    deployments_path,
    models_path,
)

#: Builds or deployments read when looking for the one a task made.
RECENT_SEARCHED = 50


class Models(HookPart):
    """Models, builds, deployments and registry entries through one hook.

    :param hook: the hook.
    """

    # -- models -----------------------------------------------------------------------------------

    def list_models(
        self, project_id: str, search_filter: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The project's models (every page; deleted ones, whose ``deletion_status`` is set, left out).

        :param project_id: project ID.
        :param search_filter: e.g. ``{"name": "churn"}`` (the server matches substrings).
        """
        found = self.read_project_listing(project_id, models_path(project_id), "models", search_filter)
        return [model for model in found if not model.get("deletion_status")]

    def get_model(self, project_id: str, model_id: str) -> dict[str, Any]:
        """One model (GetModel); it carries the ``access_key`` that calls reach it by.

        :param project_id: project ID.
        :param model_id: model ID.
        """
        return self.hook.transport.request(
            "GET",
            models_path(project_id, model_id),
            not_found=f"model {model_id!r} in project {project_id!r}",
        )

    def find_model(self, project_id: str, name: str) -> dict[str, Any] | None:
        """The model named exactly ``name``, ``None`` when there is none.

        Several of that name (two DAG runs that created it at once, say) are not an error: every
        caller picks the same one, the first created (:func:`~.listing.first_created`), and warns.

        :param project_id: project ID.
        :param name: the model's name.
        """
        found = self._named(project_id, name)
        if not found:
            return None
        chosen = dict(listing.first_created(found))
        if len(found) > 1:
            self.hook.log.warning(
                "%d models in project %r are named %r (IDs: %s); using the first created, %s. Delete the "
                "others in the workbench.",
                len(found),
                project_id,
                name,
                ", ".join(str(m.get("id")) for m in found),
                chosen.get("id"),
            )
        return chosen

    def _named(self, project_id: str, name: str) -> list[dict[str, Any]]:
        """The project's models named exactly ``name`` (the server's filter matches substrings)."""
        return [m for m in self.list_models(project_id, {"name": name}) if m.get("name") == name]

    def create_model(self, project_id: str, spec: CmlModelSpec) -> dict[str, Any]:
        """Create a model (CreateModel), exactly once; :meth:`ensure_model` is the usual way in.

        :param project_id: project ID.
        :param spec: the model's definition.
        """
        return self._create_model(project_id, spec)[0]

    def _create_model(self, project_id: str, spec: CmlModelSpec) -> tuple[dict[str, Any], bool]:
        """Create a model; whether this call surely made it (not found after a lost answer)."""
        found_instead: list[Mapping[str, Any]] = []

        def look_up() -> dict[str, Any] | None:
            model = self.find_model(project_id, spec.name)
            if model is not None:
                found_instead.append(model)
            return model

        model = post_once_for(
            self.hook,
            models_path(project_id),
            spec.model_body(project_id),
            look_up,
            what=f"creation of model {spec.name!r}",
            not_found=f"project {project_id!r}",
        )
        # A model found after a lost answer may be another caller's: it is never ours to delete.
        return model, not found_instead

    def delete_model(self, project_id: str, model_id: str) -> bool:
        """Delete a model (DeleteModel; the sheet infers it is asynchronous); ``False`` if it was gone.

        :param project_id: project ID.
        :param model_id: model ID.
        """
        try:
            self.hook.transport.request(
                "DELETE", models_path(project_id, model_id), not_found=f"model {model_id!r}"
            )
        except CmlApiError as exc:
            if exc.http_status == 404:
                return False
            raise
        return True

    def update_model(self, project_id: str, model_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change a model's fields (UpdateModel, PATCH ``…/models/{model.id}``).

        :param project_id: project ID.
        :param model_id: model ID.
        :param changes: the fields to set, e.g. ``{"description": "..."}``.
        """
        return self.hook.transport.request(
            "PATCH",
            models_path(project_id, model_id),
            body={"id": model_id, **changes},
            not_found=f"model {model_id!r} in project {project_id!r}",
        )

    def ensure_model(self, project_id: str, spec: CmlModelSpec) -> tuple[dict[str, Any], bool]:
        """The model named by ``spec``, created when missing; whether it was created.

        Two callers (two DAG runs) that both find none both create one; looking again afterwards,
        each keeps the first created, and a caller whose own new model lost deletes that model (only
        one it surely created: not one found after a lost answer, which may be another's).

        :param project_id: project ID.
        :param spec: the model's definition.
        """
        found = self.find_model(project_id, spec.name)
        if found is not None:
            return found, False
        model, ours = self._create_model(project_id, spec)
        self.hook.log.info("Created Cloudera AI model %r (%s).", spec.name, model.get("id"))
        # Another DAG run may have found none too, and created one: look again, and every creator
        # keeps the same one (the first created), ours counted even if the listing lags behind.
        kept = dict(listing.first_created([model, *self._named(project_id, spec.name)]))
        if str(kept.get("id")) == str(model.get("id")):
            return model, True
        self.hook.log.warning(
            "Model %r was created at the same time by another task (%s); using that one.",
            spec.name,
            kept.get("id"),
        )
        if ours:  # only the model this call created, never one it did not
            try:
                self.delete_model(project_id, str(model["id"]))
                self.hook.log.info("Deleted the duplicate model %s this task had created.", model["id"])
            except CmlApiError as exc:  # the kept one serves; later look-ups pick it too
                self.hook.log.warning("Could not delete the duplicate model %s: %s", model["id"], exc)
        return kept, False

    # -- builds -----------------------------------------------------------------------------------

    def list_builds(
        self, project_id: str, model_id: str, limit: int = RECENT_SEARCHED
    ) -> list[dict[str, Any]]:
        """The model's builds, newest first (sorted explicitly: the API's default order is not defined).

        :param project_id: project ID.
        :param model_id: model ID.
        :param limit: how many at most.
        """
        found = self.read_all(
            builds_path(project_id, model_id),
            "model_builds",
            sort="-created_at",
            not_found=f"model {model_id!r}",
            page_size=min(limit, 100),
        )
        return list(itertools.islice(found, limit))

    def get_build(self, ref: BuildRef) -> dict[str, Any]:
        """One build (GetModelBuild).

        :param ref: project, model and build IDs.
        """
        return self.hook.transport.request(
            "GET", build_path(tuple(ref)), not_found=f"model build {ref.build_id!r}"
        )

    def create_build(
        self, project_id: str, model_id: str, spec: CmlModelSpec, comment: str
    ) -> dict[str, Any]:
        """Start a build (CreateModelBuild), exactly once: a lost answer is looked for by ``comment``.

        :param project_id: project ID.
        :param model_id: model ID.
        :param spec: the model's definition (file and function, or registry version).
        :param comment: a comment no other build has (it names the task that asks).
        """
        return post_once_for(
            self.hook,
            builds_path(project_id, model_id),
            spec.build_body(project_id, model_id, comment),
            lambda: self.find_build(project_id, model_id, comment),
            what=f"build of model {spec.name!r}",
            not_found=f"model {model_id!r}",
        )

    def find_build(self, project_id: str, model_id: str, comment: str) -> dict[str, Any] | None:
        """The newest build whose comment is ``comment``, or ``None``.

        :param project_id: project ID.
        :param model_id: model ID.
        :param comment: the comment.
        """
        return next((b for b in self.list_builds(project_id, model_id) if b.get("comment") == comment), None)

    # -- deployments ------------------------------------------------------------------------------

    def list_deployments(self, ref: BuildRef) -> list[dict[str, Any]]:
        """The build's deployments (every page).

        :param ref: project, model and build IDs.
        """
        found = self.read_all(
            deployments_path(*ref),
            "model_deployments",
            sort="-created_at",
            not_found=f"model build {ref.build_id!r}",
        )
        return list(found)

    def get_deployment(self, ref: DeploymentRef) -> dict[str, Any]:
        """One deployment (GetModelDeployment); its ``environment`` is a JSON string.

        :param ref: project, model, build and deployment IDs.
        """
        return self.hook.transport.request(
            "GET", deployment_path(tuple(ref)), not_found=f"model deployment {ref.deployment_id!r}"
        )

    def create_deployment(
        self, ref: BuildRef, spec: CmlModelSpec, marks: Mapping[str, str]
    ) -> dict[str, Any]:
        """Deploy a build (CreateModelDeployment), exactly once: a lost answer is looked for by ``marks``.

        :param ref: project, model and build IDs.
        :param spec: the model's definition (resources, replicas, environment).
        :param marks: variables no other deployment of the build has (they name the task).
        """
        return post_once_for(
            self.hook,
            deployments_path(*ref),
            spec.deployment_body(ref.project_id, ref.model_id, ref.build_id, marks),
            lambda: self.find_deployment(ref, marks),
            what=f"deployment of model {spec.name!r}",
            not_found=f"model build {ref.build_id!r}",
            secrets=spec.secrets(),
        )

    def find_deployment(self, ref: BuildRef, marks: Mapping[str, str]) -> dict[str, Any] | None:
        """The newest deployment of the build whose environment holds ``marks``, or ``None``.

        :param ref: project, model and build IDs.
        :param marks: the variables to look for.
        """
        for deployment in self.list_deployments(ref):
            env = run_environment(deployment)
            if all(env.get(key) == value for key, value in marks.items()):
                return deployment
        return None

    def restart_deployment(self, ref: DeploymentRef) -> dict[str, Any]:
        """Ask for a restart (POST ``:restart``, no body); wait on the deployment to see it.

        :param ref: project, model, build and deployment IDs.
        """
        return self._verb(deployment_path(tuple(ref)) + ":restart", f"model deployment {ref.deployment_id!r}")

    def stop_deployment(self, ref: DeploymentRef) -> dict[str, Any]:
        """Ask for a stop (POST ``:stop``, no body): the model stops serving from this deployment.

        :param ref: project, model, build and deployment IDs.
        """
        return self._verb(deployment_path(tuple(ref)) + ":stop", f"model deployment {ref.deployment_id!r}")

    # -- calling a deployed model -----------------------------------------------------------------

    def call_model(
        self, project_id: str, model_id: str, request: Any, *, access_key: str | None = None
    ) -> Any:
        """Call a deployed model through the model service and return its ``response``.

        Sent once (a model call may act): an error, or a lost answer, raises a :class:`CmlApiError`
        naming the model service's URL (a name that does not resolve: a ``CmlConfigError``). The
        model's access key is read from the model unless given; it is masked in messages.

        :param project_id: project ID.
        :param model_id: model ID.
        :param request: what the model's function receives (JSON).
        :param access_key: the model's access key, when the caller has it.
        """
        key = access_key or str(self.get_model(project_id, model_id).get("access_key") or "")
        url = self.hook.config.model_service
        try:
            answer = self.hook.transport.request(
                "POST",
                url,
                body={"accessKey": key, "request": request},
                idempotent=False,
                secrets=[key],
                not_found=f"a deployed model {model_id!r} at the model service {url}",
            )
        except NotDone as lost:  # never resent (a call may act): say where it went and how to point it
            raise CmlApiError(
                f"The call to model {model_id!r} at the model service {url} got no usable answer "
                f"({lost.error}); it was not sent again, as a model call may act. If {url} is not where "
                "your workbench serves models, set the connection extra 'model_service_url' (e.g. "
                "https://modelservice.<workbench domain>/model).",
                http_status=lost.error.http_status,
                server_message=lost.error.server_message,
                request_id=lost.error.request_id,
            ) from None
        if not answer.get("success"):
            errors = "; ".join(map(str, answer.get("errors") or ["no reason given"]))[:500]
            raise CmlModelCallError(
                f"Cloudera AI model {model_id!r} answered without success: {errors}. "
                "Check the request against what the model's function expects, and the deployment's log."
            )
        return answer.get("response")

    # -- registry (read) --------------------------------------------------------------------------

    def list_registered_models(self, search_filter: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Registered models (every page), e.g. ``search_filter={"model_name": "churn"}``.

        :param search_filter: the listing's filter.
        """
        return list(self.read_all("/registry/models", "models", search_filter=search_filter))

    def get_registered_model(self, model_id: str) -> dict[str, Any]:
        """One registered model with its versions (the first page of them).

        :param model_id: the registry's model ID.
        """
        path = "/registry/models/" + path_segment("model_id", model_id)
        return self.hook.transport.request("GET", path, not_found=f"registered model {model_id!r}")

    def get_registered_model_version(self, model_id: str, version_id: str) -> dict[str, Any]:
        """One version of a registered model.

        :param model_id: the registry's model ID.
        :param version_id: the version's ID.
        """
        path = f"/registry/models/{path_segment('model_id', model_id)}/versions/" + path_segment(
            "version_id", version_id
        )
        return self.hook.transport.request("GET", path, not_found=f"registered model version {version_id!r}")

    # -- shared -----------------------------------------------------------------------------------

    def _verb(self, path: str, what: str) -> dict[str, Any]:
        return self.hook.transport.request("POST", path, not_found=what)
