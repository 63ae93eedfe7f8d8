"""Projects and jobs by the names DAGs give: looked up once per hook, exactly, with hints when none match.

The server's name filter matches substrings, so a name is looked up with it and then matched
exactly (:func:`.listing.pick_one`); an ID-shaped value is trusted without a request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_cml.client import listing
from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.validation import looks_like_id

if TYPE_CHECKING:
    from airflow_provider_cml.hooks.cml import CmlHook


class NameCache:
    """Names (and IDs) resolved through one hook, kept for its lifetime.

    :param hook: the hook whose listings are read.
    """

    def __init__(self, hook: CmlHook) -> None:
        self.hook = hook
        self.projects: dict[str, dict[str, Any]] = {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}

    def project(self, project: str) -> dict[str, Any]:
        """The project for an ID or an exact name (looked up over all pages, cached per hook).

        An ID-shaped value is trusted without a request: a wrong one fails with 404 where it is used.

        :param project: project name or ID.
        """
        self.hook.require_v2("Looking up a project")
        if not isinstance(project, str) or not project.strip():
            raise CmlConfigError(f"project must be a project name or ID, not {project!r}.")
        if project in self.projects:
            return self.projects[project]
        if looks_like_id(project):
            found: dict[str, Any] = {"id": project}
        else:
            candidates = self.hook.list_projects(search_filter={"name": project})
            if not candidates:
                # Nothing matched even as a substring: every name is worth comparing for hints.
                candidates = self.hook.list_projects()
            found = listing.pick_one("project", project, candidates, "")
        self.projects[project] = found
        return found

    def job(self, project: str, job: str) -> dict[str, Any]:
        """The job for an ID or an exact name within a project (cached per hook).

        :param project: project name or ID.
        :param job: job name or ID.
        """
        project_id = self.project(project)["id"]
        if not isinstance(job, str) or not job.strip():
            raise CmlConfigError(f"job must be a job name or ID, not {job!r}.")
        key = (project_id, job)
        if key in self.jobs:
            return self.jobs[key]
        if looks_like_id(job):
            found: dict[str, Any] = {"id": job, "project_id": project_id}
        else:
            candidates = self.hook.list_jobs(project_id, search_filter={"name": job})
            if not candidates:
                candidates = self.hook.list_jobs(project_id)
            found = listing.pick_one("job", job, candidates, f" in project {project!r}")
        self.jobs[key] = found
        return found

    def remember_project(self, project: str, found: dict[str, Any]) -> None:
        """Keep a project's full answer for the name or ID it was asked by.

        :param project: project name or ID.
        :param found: the project as read.
        """
        self.projects[project] = found

    def forget_job(self, project_id: str, name: str | None = None, job_id: str | None = None) -> None:
        """Drop a job from the names cache (after it was created, renamed or deleted).

        :param project_id: the job's project ID.
        :param name: the name it was looked up by.
        :param job_id: drop every name that led to this job.
        """
        if name is not None:
            self.jobs.pop((project_id, name), None)
        if job_id is not None:
            self.jobs = {key: value for key, value in self.jobs.items() if value.get("id") != job_id}
