"""Jobs as code: creating, updating and deleting job definitions, as ``CmlHook.jobs``.

API v2's CreateJob, UpdateJob, DeleteJob and ListRuntimes, through one
:class:`~airflow_provider_cml.hooks.cml.CmlHook` (its connection, names cache and bounds).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from airflow_provider_cml.client.create_once import post_once_for
from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError, CmlLookupError
from airflow_provider_cml.hooks.part import EnsureAction, HookPart
from airflow_provider_cml.workloads import job_runs as runs
from airflow_provider_cml.workloads.jobs import CmlJobSpec


class JobDefinitions(HookPart):
    """Job definitions through one hook (its connection, names cache and bounds).

    :param hook: the hook.
    """

    def list_runtimes(self, search_filter: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The ML Runtimes the workbench offers (every page).

        :param search_filter: e.g. ``{"kernel": "Python 3.11"}``.
        """
        self.hook.require_v2("Listing runtimes")
        return list(self.read_all("/runtimes", "runtimes", search_filter=search_filter))

    def check_runtime(self, identifier: str) -> None:
        """Raise a clear error unless ``identifier`` is one of the workbench's runtimes.

        :param identifier: a runtime's ``image_identifier``.
        """
        offered = sorted({str(r.get("image_identifier")) for r in self.list_runtimes()})
        if identifier in offered:
            return
        close = difflib.get_close_matches(identifier, offered, n=3, cutoff=0.6)
        hint = f" Close matches: {', '.join(map(repr, close))}." if close else ""
        raise CmlLookupError(
            f"The workbench has no runtime {identifier!r}.{hint} GET /api/v2/runtimes lists the "
            f"{len(offered)} it offers; use one's image_identifier."
        )

    def create_job(
        self, project: str, spec: CmlJobSpec | Mapping[str, Any], parent_id: str | None = None
    ) -> dict[str, Any]:
        """Create a job (CreateJob) and return it; :meth:`ensure_job` is the usual way in.

        Never creates it twice: when the answer is lost, a job of that name is looked for through
        a listing that may lag (:func:`~airflow_provider_cml.client.create_once.post_once`) before the
        request is sent again; the whole create ends within
        :data:`~airflow_provider_cml.client.create_once.CREATE_BUDGET` request timeouts. A job of that
        name that existed before is taken for it, so call this only for a name no job has.

        :param project: project name or ID.
        :param spec: the job's definition.
        :param parent_id: the parent job's ID, for a dependent job.
        """
        spec = CmlJobSpec.of(spec)
        project_id = str(self.hook.resolve_project(project)["id"])
        path = runs.jobs_path(project_id)
        body = spec.create_body(project_id, parent_id)

        def look_up() -> dict[str, Any] | None:
            found = self._named_jobs(project_id, spec.name)
            return found[0] if found else None

        job = post_once_for(
            self.hook,
            path,
            body,
            look_up,
            what=f"creation of job {spec.name!r}",
            not_found=f"project {project!r}",
            secrets=spec.secrets(),
        )
        self._forget_job(project_id, spec.name)
        return job

    def update_job(
        self, project: str, job: Mapping[str, Any], spec: CmlJobSpec, parent_id: str | None = None
    ) -> dict[str, Any]:
        """Make an existing job match ``spec`` (UpdateJob, whose body is the whole Job).

        :param project: project name or ID.
        :param job: the job as read (every field is sent back: UpdateJob has no update mask).
        :param spec: the job's definition.
        :param parent_id: the parent job's ID, for a dependent job.
        """
        project_id = str(self.hook.resolve_project(project)["id"])
        path = runs.jobs_path(project_id, str(job.get("id")))
        answer = self.hook.transport.request(
            "PATCH",
            path,
            body=spec.update_body(job, parent_id),
            secrets=spec.secrets(),
            not_found=f"job {job.get('id')!r} in project {project!r}",
        )
        self._forget_job(project_id, spec.name)
        return answer

    def delete_job(self, project: str, job_id: str) -> bool:
        """Delete a job (DeleteJob); ``False`` when it was already gone.

        :param project: project name or ID.
        :param job_id: job ID.
        """
        project_id = str(self.hook.resolve_project(project)["id"])
        try:
            self.hook.transport.request(
                "DELETE", runs.job_path((project_id, job_id)), not_found=f"job {job_id!r}"
            )
        except CmlApiError as exc:
            if exc.http_status == 404:
                return False
            raise
        self.hook.names.forget_job(project_id, job_id=job_id)
        return True

    def ensure_job(
        self, project: str, spec: CmlJobSpec | Mapping[str, Any]
    ) -> tuple[dict[str, Any], EnsureAction]:
        """Make the workbench hold the job ``spec`` defines.

        The job is created when no job has its name, updated when a field the spec sets differs,
        and left alone otherwise.

        Everything is checked before anything changes: the spec, the project, the parent job and
        (when it is set and would change) the runtime.

        :param project: project name or ID.
        :param spec: the definition (a :class:`~.workloads.jobs.CmlJobSpec` or its fields).
        :returns: the job as the API answers it, and what was done.
        """
        spec = CmlJobSpec.of(spec)
        self.hook.require_v2("Defining a job")
        project_id = str(self.hook.resolve_project(project)["id"])
        parent_id = str(self.hook.resolve_job(project, spec.parent)["id"]) if spec.parent else None
        existing = self._named_jobs(project_id, spec.name)
        if len(existing) > 1:
            ids = ", ".join(str(job.get("id")) for job in existing)
            raise CmlLookupError(
                f"{len(existing)} jobs in project {project!r} are named {spec.name!r} (IDs: {ids}), so the "
                "definition cannot tell which to keep up to date. Rename or delete the extra jobs."
            )
        changes = spec.differences(existing[0], parent_id) if existing else {}
        if spec.runtime_identifier and (not existing or "runtime_identifier" in changes):
            self.check_runtime(spec.runtime_identifier)
        if not existing:
            self._check_engine(project, spec)
            job = self.create_job(project_id, spec, parent_id)
            self.hook.log.info("Created Cloudera AI job %r (%s).", spec.name, job.get("id"))
            return job, "created"
        if not changes:
            self.hook.log.info(
                "Cloudera AI job %r (%s) already matches its definition.", spec.name, existing[0].get("id")
            )
            return existing[0], "unchanged"
        # Environment values may be secrets: name the changed fields, not their values.
        self.hook.log.info("Updating Cloudera AI job %r: %s changed.", spec.name, ", ".join(sorted(changes)))
        self.update_job(project_id, existing[0], spec, parent_id)
        # Read it back: a server may accept an update yet leave a field as it was (an empty or zero
        # value read as "leave unchanged"). Saying "updated" then would repeat the PATCH every run.
        after = self.hook.get_job(project_id, str(existing[0]["id"]))
        left = spec.differences(after, parent_id)
        if left:
            self.hook.log.warning(self._not_applied(spec.name, left))
        return after, "updated" if set(changes) - set(left) else "unchanged"

    @staticmethod
    def _not_applied(name: str, left: Mapping[str, tuple[Any, Any]]) -> str:
        """What did not take in an accepted update, and what to do (never environment values)."""
        shown = [
            key if key == "environment" else f"{key} (still {now!r}, wanted {wanted!r})"
            for key, (now, wanted) in sorted(left.items())
        ]
        return (
            f"Cloudera AI accepted the update of job {name!r} but did not apply {', '.join(shown)}. "
            "The workbench may read an empty or zero value as 'leave unchanged': change it in the job's "
            "settings in the workbench, or delete the job so that its definition creates it anew."
        )

    def _check_engine(self, project: str, spec: CmlJobSpec) -> None:
        """A new job in an ML Runtimes project needs a runtime (the API: "Must be set")."""
        if spec.runtime_identifier or spec.kernel:
            return
        found = self.hook.resolve_project(project)
        engine = found.get("default_engine_type")
        if engine is None:  # resolved from an ID: read it once
            engine = self.hook.get_project(str(found["id"])).get("default_engine_type")
        if engine == "ml_runtime":
            offered = [str(r.get("image_identifier")) for r in self.list_runtimes()][:3]
            raise CmlConfigError(
                f"Job {spec.name!r} needs a runtime_identifier: project {project!r} runs jobs on ML "
                f"Runtimes. The workbench offers e.g. {', '.join(map(repr, offered)) or 'none'} "
                "(CmlHook.list_runtimes() lists them all)."
            )

    def _named_jobs(self, project_id: str, name: str) -> list[dict[str, Any]]:
        """The project's jobs named exactly ``name`` (the server's filter matches substrings)."""
        return [
            job
            for job in self.hook.list_jobs(project_id, search_filter={"name": name})
            if job.get("name") == name
        ]

    def _forget_job(self, project_id: str, name: str) -> None:
        self.hook.names.forget_job(project_id, name)
