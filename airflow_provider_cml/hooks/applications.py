"""Applications (dashboards, services), as ``CmlHook.applications``.

API v2's application endpoints through one :class:`~airflow_provider_cml.hooks.cml.CmlHook`.
Creating starts the application; ``:restart`` starts a stopped one or restarts a running one,
``:stop`` stops it; both are POSTs without a body whose answer is an acknowledgement, so callers
wait on the application (``CmlHook.wait_for``) to see the effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_cml.client import listing
from airflow_provider_cml.client.create_once import post_once_for
from airflow_provider_cml.exceptions import CmlApiError, CmlLookupError
from airflow_provider_cml.hooks.part import EnsureAction, HookPart
from airflow_provider_cml.workloads.applications import (
    ApplicationRef,
    CmlApplicationSpec,
    application_path,
    applications_path,
)
from airflow_provider_cml.workloads.job_runs import run_environment


class Applications(HookPart):
    """Applications through one hook.

    :param hook: the hook.
    """

    def list_applications(
        self, project_id: str, search_filter: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The project's applications (every page).

        :param project_id: project ID.
        :param search_filter: e.g. ``{"name": "dashboard"}`` (substrings) or ``{"status": "running"}``.
        """
        return self.read_project_listing(
            project_id, applications_path(project_id), "applications", search_filter
        )

    def get_application(self, ref: ApplicationRef) -> dict[str, Any]:
        """One application (GetApplication).

        :param ref: project and application IDs.
        """
        return self.hook.transport.request(
            "GET", application_path(tuple(ref)), not_found=f"application {ref.application_id!r}"
        )

    def find_application(self, project_id: str, name: str) -> dict[str, Any] | None:
        """The application named exactly ``name``; ``None`` when there is none, an error when several are.

        :param project_id: project ID.
        :param name: its name.
        """
        found = self.list_applications(project_id, {"name": name})
        return listing.at_most_one("application", name, found, f" in project {project_id!r}")

    def resolve_application(self, project_id: str, application: str) -> dict[str, Any]:
        """An application by name or ID.

        :param project_id: project ID.
        :param application: its name or ID.
        """
        found = self.find_application(project_id, application)
        if found is not None:
            return found
        try:
            return self.get_application(ApplicationRef(project_id, application))
        except CmlApiError as exc:
            if exc.http_status not in (400, 403, 404):
                raise
        raise CmlLookupError(
            f"Project {project_id!r} has no application named {application!r} (names are case-sensitive), "
            "and no application has that ID. Check the name in the workbench's Applications page."
        )

    def create_application(self, project_id: str, spec: CmlApplicationSpec) -> dict[str, Any]:
        """Create (and so start) an application, exactly once.

        :param project_id: project ID.
        :param spec: its definition.
        """
        return post_once_for(
            self.hook,
            applications_path(project_id),
            spec.create_body(project_id),
            lambda: self.find_application(project_id, spec.name),
            what=f"creation of application {spec.name!r}",
            not_found=f"project {project_id!r}",
            secrets=spec.secrets(),
        )

    def update_application(self, ref: ApplicationRef, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change fields (UpdateApplication, PATCH ``…/applications/{application.id}``).

        ``environment`` must be a JSON string here, unlike create; send only what changes.

        :param ref: project and application IDs.
        :param changes: the fields to set.
        """
        # The environment goes as a JSON string: mask each value, which is what a message would echo.
        secrets = [str(v) for v in run_environment({"environment": changes.get("environment")}).values()]
        return self.hook.transport.request(
            "PATCH",
            application_path(tuple(ref)),
            body={"id": ref.application_id, **changes},
            secrets=secrets,
            not_found=f"application {ref.application_id!r}",
        )

    def ensure_application(
        self, project_id: str, spec: CmlApplicationSpec
    ) -> tuple[dict[str, Any], EnsureAction]:
        """Make the workbench hold the application ``spec`` defines: create, update or leave it.

        :param project_id: project ID.
        :param spec: its definition.
        :returns: the application as answered, and what was done.
        """
        found = self.find_application(project_id, spec.name)
        if found is None:
            app = self.create_application(project_id, spec)
            self.hook.log.info("Created Cloudera AI application %r (%s).", spec.name, app.get("id"))
            return app, "created"
        changes = spec.differences(found)
        if not changes:
            return found, "unchanged"
        # Environment values may be secrets: name the changed fields, not their values.
        self.hook.log.info(
            "Updating Cloudera AI application %r: %s changed.", spec.name, ", ".join(sorted(changes))
        )
        return self.update_application(ApplicationRef(project_id, str(found["id"])), changes), "updated"

    def restart_application(self, ref: ApplicationRef) -> dict[str, Any]:
        """Start or restart it (POST ``:restart``, no body).

        :param ref: project and application IDs.
        """
        return self.hook.transport.request(
            "POST", application_path(tuple(ref)) + ":restart", not_found=f"application {ref.application_id!r}"
        )

    def stop_application(self, ref: ApplicationRef) -> dict[str, Any]:
        """Stop it (POST ``:stop``, no body).

        :param ref: project and application IDs.
        """
        return self.hook.transport.request(
            "POST", application_path(tuple(ref)) + ":stop", not_found=f"application {ref.application_id!r}"
        )
