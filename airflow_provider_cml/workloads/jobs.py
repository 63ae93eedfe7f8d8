"""A Cloudera AI job defined in a DAG (:class:`CmlJobSpec`), checked before any request.

The API spells one job two ways: CreateJob takes ``environment`` as a map and ``timeout`` as a
number of seconds; a Job (as read, and as UpdateJob's body) carries ``environment`` as a JSON string
and ``timeout`` as an int64 string. A spec compares itself to a job in its own terms, so a job that
already matches is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.validation import validate_arguments
from airflow_provider_cml.workloads import api_fields
from airflow_provider_cml.workloads.specs import ScriptSpec, check_number

#: Job fields that are output only (spec §3.4): never sent back in an UpdateJob body.
READ_ONLY_JOB_FIELDS = frozenset(
    {"id", "created_at", "engine_image_id", "english_schedule", "type", "paused", "timezone", "updated_at"}
)
_JOB_INTS = ("timeout", "max_retry", "retry_delay")
_BOOLS = (
    "kill_on_timeout",
    "retry_enabled",
    "retry_for_script_failure",
    "retry_for_system_failure",
    "retry_for_timedout_runs",
    "retry_for_skipped_runs",
)


@dataclass(frozen=True, kw_only=True)
class CmlJobSpec(ScriptSpec):
    """A job's definition, as a DAG states it.

    Fields left ``None`` are not managed: a new job gets the platform's default and an existing job
    keeps what it has.

    :param name: the job's name (unique within the project: it is how the job is found again).
    :param script: the script to run, relative to the project's files (e.g. ``"jobs/train.py"``).
    :param runtime_identifier: the ML Runtime image (checked against ``GET /runtimes``).
    :param kernel: the kernel (``python3``, ``r``...): a legacy engine's, or beside the runtime.
    :param cpu: vCPU cores per run.
    :param memory: memory per run, in GB.
    :param nvidia_gpu: GPUs per run.
    :param environment: the job's default environment variables (strings; numbers and booleans
        are turned into strings).
    :param arguments: the job's default arguments (one string, ``JOB_ARGUMENTS``).
    :param timeout: seconds a run may take (``0``: no limit).
    :param kill_on_timeout: stop a run that exceeds ``timeout``.
    :param schedule: a cron schedule for the workbench's own scheduler; not with ``parent``.
    :param parent: name or ID of the job whose success starts this one (a dependent job).
    :param retry_enabled: Job Retry: the platform retries failed runs.
    :param max_retry: Job Retry: retries at most.
    :param retry_delay: Job Retry: seconds before a retry.
    :param retry_for_script_failure: Job Retry covers script failures.
    :param retry_for_system_failure: Job Retry covers system failures (e.g. an OOM kill).
    :param retry_for_timedout_runs: Job Retry covers timed-out runs.
    :param retry_for_skipped_runs: Job Retry covers skipped runs.
    """

    noun: ClassVar[str] = "job"

    arguments: str | None = None
    timeout: int | None = None
    kill_on_timeout: bool | None = None
    schedule: str | None = None
    parent: str | None = None
    retry_enabled: bool | None = None
    max_retry: int | None = None
    retry_delay: int | None = None
    retry_for_script_failure: bool | None = None
    retry_for_system_failure: bool | None = None
    retry_for_timedout_runs: bool | None = None
    retry_for_skipped_runs: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # name, script, engine, cpu, memory, GPUs, environment
        for key in _JOB_INTS:
            self._set(key, check_number(key, getattr(self, key), int, positive=False))
        for key in _BOOLS:
            value = getattr(self, key)
            if value is not None and not isinstance(value, bool):
                raise CmlConfigError(f"The job spec's {key} must be True or False, not {value!r}.")
        for key in ("arguments", "schedule", "parent"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or "\x00" in value):
                raise CmlConfigError(f"The job spec's {key} must be a string, not {value!r}.")
        validate_arguments(self.arguments)
        if self.schedule and self.parent:
            raise CmlConfigError(
                f"Job {self.name!r} has both a schedule and a parent: a dependent job runs when its parent "
                "succeeds and cannot have a schedule of its own. Keep one of the two."
            )

    def replace_name(self, name: str) -> CmlJobSpec:
        """The same definition under another name.

        :param name: the new name.
        """
        return CmlJobSpec.of({**self.managed(), "name": name, "parent": self.parent})

    def managed(self) -> dict[str, Any]:
        """The fields this spec sets (``parent`` excepted: it is resolved to ``parent_id``)."""
        return {key: value for key, value in super().managed().items() if key != "parent"}

    def create_body(self, project_id: str, parent_id: str | None) -> dict[str, Any]:
        """The CreateJobRequest body (``environment`` a map, ``timeout`` a number).

        :param project_id: the project's ID (the body repeats the path's).
        :param parent_id: the parent job's ID, when the spec has a parent.
        """
        body: dict[str, Any] = {"project_id": project_id, **self.managed()}
        if self.environment is not None:
            body["environment"] = dict(self.environment)
        if parent_id:
            body["parent_id"] = parent_id
        return body

    def differences(self, job: Mapping[str, Any], parent_id: str | None) -> dict[str, tuple[Any, Any]]:
        """The managed fields where ``job`` (as the API answers it) differs: ``{field: (now, wanted)}``.

        :param job: the job as read.
        :param parent_id: the parent job's ID, when the spec has a parent.
        """
        wanted = self.managed()
        if self.parent is not None:
            wanted["parent_id"] = parent_id or ""
        changed = {}
        for key, value in wanted.items():
            current = api_fields.read("Job", job, key)  # a field left out is its type's zero
            if current != value:
                changed[key] = (current, value)
        return changed

    def update_body(self, job: Mapping[str, Any], parent_id: str | None) -> dict[str, Any]:
        """The UpdateJob body: the whole job as read, with this spec's fields applied.

        UpdateJob has no update mask, so every field is sent (a field left out could be reset);
        ``environment`` goes as a JSON string and ``timeout`` as a string, as a Job carries them.

        :param job: the job as read.
        :param parent_id: the parent job's ID, when the spec has a parent.
        """
        body = {key: value for key, value in job.items() if key not in READ_ONLY_JOB_FIELDS}
        body.update(self.managed())
        if self.environment is not None:
            body["environment"] = json.dumps(dict(self.environment), sort_keys=True)
        if self.timeout is not None:
            body["timeout"] = str(self.timeout)
        if self.parent is not None:
            body["parent_id"] = parent_id or ""
        return body
