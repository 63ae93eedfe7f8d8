"""Where a run's, a model's and an application's pages are, and the operators' extra links.

The URL pattern lives in one place, :data:`airflow_provider_cml.client.config.DEFAULT_RUN_URL_TEMPLATE`:
the project's jobs page ``{base_url}/{owner}/{project_slug}/jobs``, which exists on every workbench.
A run's own page needs the web UI's numeric job id, which API v2 does not give, so a workbench where
users know a better page sets the connection extra ``run_url_template`` (placeholders
``{base_url}``, ``{owner}``, ``{project_slug}``, ``{project_id}``, ``{job_id}``, ``{run_id}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_cml._compat import AIRFLOW_V_3_0_PLUS, BaseOperatorLink
from airflow_provider_cml.exceptions import CmlException

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook

RUN_URL_XCOM_KEY = "run_url"
MODEL_URL_XCOM_KEY = "model_url"
APPLICATION_URL_XCOM_KEY = "application_url"


def project_slug(project: Mapping[str, Any]) -> str:
    """The project's URL slug: the API's ``slug`` when given, else derived from its name.

    :param project: a Project answer.
    """
    slug = project.get("slug")
    if isinstance(slug, str) and slug:
        return slug
    return re.sub(r"[^a-z0-9]+", "-", str(project.get("name", "")).lower()).strip("-")


def project_owner(project: Mapping[str, Any]) -> str:
    """The project owner's username (``owner``, else ``creator``), or ``""``.

    :param project: a Project answer.
    """
    for key in ("owner", "creator"):
        person = project.get(key)
        if isinstance(person, Mapping) and person.get("username"):
            return str(person["username"])
    return ""


def build_run_url(template: str, base_url: str, project: Mapping[str, Any], job_id: str, run_id: str) -> str:
    """Fill the run-page template from what the API returned about the project.

    :param template: the URL template with ``{base_url}``, ``{owner}``, ``{project_slug}``,
        ``{project_id}``, ``{job_id}`` and ``{run_id}`` placeholders.
    :param base_url: the workbench URL.
    :param project: a Project answer.
    :param job_id: job ID.
    :param run_id: run ID.
    """
    return template.format(
        base_url=base_url,
        owner=project_owner(project),
        project_slug=project_slug(project),
        project_id=project.get("id", ""),
        job_id=job_id,
        run_id=run_id,
    )


class _XComLink(BaseOperatorLink):
    """A link the task pushed to XCom under :attr:`pushed_key` (``""`` until it has).

    Not ``xcom_key``: Airflow 3's ``BaseOperatorLink`` uses that name for where it stores a link's
    value when the task ends.
    """

    name = ""
    pushed_key = ""

    def get_link(self, operator: Any, *, ti_key: Any = None) -> str:
        """The page for the task instance, or ``""`` before the task has pushed it.

        :param operator: the operator the link belongs to.
        :param ti_key: the task instance's key.
        """
        if AIRFLOW_V_3_0_PLUS:
            from airflow.sdk.execution_time.xcom import XCom
        else:
            from airflow.models.xcom import XCom  # type: ignore[no-redef]
        return XCom.get_value(key=self.pushed_key, ti_key=ti_key) or ""


class CmlJobRunLink(_XComLink):
    """Opens the Cloudera AI run that the task started (read from the task's ``run_url`` XCom)."""

    name = "Cloudera AI job run"
    pushed_key = RUN_URL_XCOM_KEY


class CmlModelLink(_XComLink):
    """Opens the project's models page in the workbench (the task's ``model_url`` XCom)."""

    name = "Cloudera AI model"
    pushed_key = MODEL_URL_XCOM_KEY


class CmlApplicationLink(_XComLink):
    """Opens the application the task manages, where it is served (the task's ``application_url`` XCom)."""

    name = "Cloudera AI application"
    pushed_key = APPLICATION_URL_XCOM_KEY


def project_page(hook: CmlHook, project: str) -> str | None:
    """The project's page, ``{base_url}/{owner}/{project_slug}``; ``None`` (and a warning) if unknown.

    :param hook: the hook.
    :param project: project name or ID.
    """
    found = _project_for_links(hook, project)
    return None if found is None else f"{hook.config.base_url}/{project_owner(found)}/{project_slug(found)}"


def _project_for_links(hook: CmlHook, project: str) -> Mapping[str, Any] | None:
    """The project with its owner (read once when it was resolved from an ID); ``None`` if unknown."""
    try:
        found = hook.resolve_project(project)
        if "owner" not in found and "creator" not in found:  # resolved from an ID: fetch once
            found = hook.get_project(found["id"])
            hook.names.remember_project(project, found)
    except CmlException as exc:
        hook.log.warning("Could not build the link: %s", exc)
        return None
    return found


def application_url(base_url: str, subdomain: str) -> str:
    """Where an application is served: ``<scheme>://<subdomain>.<workbench host>``.

    :param base_url: the workbench's URL.
    :param subdomain: the application's subdomain.
    """
    scheme, _, rest = base_url.partition("://")
    return f"{scheme}://{subdomain}.{rest.split('/')[0]}"


def run_url_for(hook: CmlHook, project: str, job_id: str, run_id: str) -> str | None:
    """The run's page, from the connection's ``run_url_template``; ``None`` (and a warning) if unknown.

    :param hook: the hook (it reads the project once when it was given by ID).
    :param project: project name or ID.
    :param job_id: job ID.
    :param run_id: run ID.
    """
    found = _project_for_links(hook, project)
    if found is None:
        return None
    return build_run_url(hook.config.run_url_template, hook.config.base_url, found, job_id, run_id)
