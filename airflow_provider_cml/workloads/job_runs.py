"""What a v2 JobRun answer means (statuses, outcome, duration) and the messages that say so.

The one definition of run statuses, shared by hook, operator, sensor and trigger. Only
``ENGINE_SUCCEEDED`` is success. ``ENGINE_STOPPING``, ``ENGINE_UNKNOWN`` and statuses this module does
not know are not terminal (unknown ones are graced, then the wait fails naming them). A status is
read in any case, with or without ``ENGINE_`` (``running`` is ``ENGINE_RUNNING``); a run without ``status`` is
scheduling (it is the enum's zero value, which the API may leave out). Nothing here reads a run's
``environment`` into a message: it may hold secrets.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from airflow_provider_cml.exceptions import CmlException, CmlJobRunError, CmlJobRunTimeout
from airflow_provider_cml.validation import ref_path, resource_path
from airflow_provider_cml.waiting.kinds import WorkloadKind, parse_time
from airflow_provider_cml.workloads import api_fields

SCHEDULING = "ENGINE_SCHEDULING"
UNKNOWN = "ENGINE_UNKNOWN"
SUCCEEDED = "ENGINE_SUCCEEDED"
FAILED = "ENGINE_FAILED"
TIMEDOUT = "ENGINE_TIMEDOUT"
STOPPED = "ENGINE_STOPPED"
SKIPPED = "ENGINE_SKIPPED"

#: Every value of the API's EngineStatus enum.
KNOWN_STATUSES: frozenset[str] = frozenset(
    {SCHEDULING, "ENGINE_STARTING", "ENGINE_RUNNING", "ENGINE_STOPPING", STOPPED, UNKNOWN}
    | {SUCCEEDED, FAILED, TIMEDOUT, SKIPPED}
)
SUCCESS_STATES: frozenset[str] = frozenset({SUCCEEDED})
FAILURE_STATES: frozenset[str] = frozenset({FAILED, TIMEDOUT, STOPPED, SKIPPED})
TERMINAL_STATES: frozenset[str] = SUCCESS_STATES | FAILURE_STATES

_FAILURE_HINTS: dict[str, str] = {
    FAILED: "the job's script exited with an error; open the run's page for its output",
    TIMEDOUT: "the job's own timeout (set on the job in Cloudera AI) was reached",
    STOPPED: "the run was stopped by a person or by an API call",
    SKIPPED: "Cloudera AI skipped the run, usually because the job already had an active run",
}


#: ``/projects/{project_id}``, the ID checked and percent-encoded.
project_path = functools.partial(resource_path, "projects")
#: A project's jobs (ListJobs, CreateJob); with a job ID, that job.
jobs_path = functools.partial(resource_path, "projects/jobs")
#: One run's path from its :class:`RunRef` (cached: a wait reads the same run every poll).
run_path = ref_path("projects/jobs/runs")


class RunRef(NamedTuple):
    """The IDs that name one run: project, job, run."""

    project_id: str
    job_id: str
    run_id: str


def job_path(ref: RunRef | tuple[str, str]) -> str:
    """``/projects/{id}/jobs/{id}`` of a run's job (or of a (project ID, job ID) pair).

    :param ref: a run, or the job's IDs.
    """
    return jobs_path(ref[0], ref[1])


def runs_path(ref: RunRef | tuple[str, str]) -> str:
    """The job's runs listing (and where a run is started).

    :param ref: a run, or the job's IDs.
    """
    return resource_path("projects/jobs/runs", ref[0], ref[1])


def retry_run_among(page: Mapping[str, Any], failed: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The platform's retry of ``failed`` in a newest-first runs listing, else ``None``.

    Inference: a retry is the oldest run of the job created after the failed run ended (the API
    marks no run as a retry, and a person could start one at the same time).

    :param page: a ListJobRunsResponse, newest first.
    :param failed: the failed run.
    """
    after = str(failed.get("finished_at") or failed.get("created_at") or "")
    later = [
        run
        for run in page.get("job_runs") or []
        if isinstance(run, Mapping)
        and run.get("id") != failed.get("id")
        and str(run.get("created_at", "")) > after
    ]
    return later[-1] if later else None


def created_before(run: Mapping[str, Any], moment: datetime) -> bool:
    """Whether the run was created before ``moment`` (``False`` when its time is unknown).

    :param run: a JobRun answer.
    :param moment: an aware datetime.
    """
    created = parse_time(run.get("created_at"))
    return created is not None and created < moment


def _seconds(start: Any, end: Any) -> float | None:
    begin, finish = parse_time(start), parse_time(end)
    return max(0.0, (finish - begin).total_seconds()) if begin and finish else None


def run_duration(run: Mapping[str, Any]) -> float | None:
    """Seconds the run ran: from ``running_at`` to ``finished_at``, when both are known.

    :param run: a JobRun answer.
    """
    return _seconds(run.get("running_at"), run.get("finished_at"))


def queue_time(run: Mapping[str, Any]) -> float | None:
    """Seconds from the run's creation to ``running_at`` (scheduling and starting).

    :param run: a JobRun answer.
    """
    return _seconds(run.get("created_at"), run.get("running_at"))


def run_environment(run: Mapping[str, Any]) -> dict[str, str]:
    """The run's environment (a JSON *string* in many API answers). For comparisons only: never log it.

    :param run: a JobRun answer.
    """
    value = api_fields.as_type("json", run.get("environment"))  # a map, or what did not parse
    return value if isinstance(value, dict) else {}


def describe_run(run: Mapping[str, Any]) -> str:
    """A one-line, secret-free summary: id, status, how long it ran and how long it queued.

    :param run: a JobRun answer.
    """
    ran, queued = run_duration(run), queue_time(run)
    took = f" after running {ran:.1f}s" if ran is not None else ""
    waited = f" (queued {queued:.1f}s)" if queued is not None else ""
    return f"run {run.get('id')} of job {run.get('job_id')}: {status_of(run)}{took}{waited}"


# -- why a run failed: the usage and workload-execution listings ---------------------------------
#
# A JobRun carries no exit code or reason. ``GET /usage`` (UsageResponse: message, oom_killed,
# k8s_info.k8s_exit_code) and ``GET /workloads/executions`` (ExecutionDetails.failure_reason) do,
# keyed by workload name and time, not by run id. Matching them to a run is inference: the entry of
# the job's name (and project's name) whose time is closest to the run's, within WINDOW_SLACK.

#: How long after ``retry_delay`` a platform retry may take to appear before the wait stops expecting it.
RETRY_START_GRACE = 60.0
#: Final statuses Job Retry can retry (a success needs none; a stopped run is never retried).
RETRIED_STATUSES = frozenset({FAILED, TIMEDOUT, SKIPPED})
#: One page of a job's newest runs: where the platform's retry of a failed run shows up.
RETRY_LISTING = {"sort": "-created_at", "page_size": 10}


@dataclass(frozen=True)
class JobRetry:
    """The job's own Job Retry settings: Cloudera AI starts each retry as a new run of the job.

    :param max_retry: retries the platform makes at most.
    :param delay: seconds it waits before each.
    :param statuses: final statuses it retries. ``retry_for_script_failure`` and
        ``retry_for_system_failure`` both cover ``ENGINE_FAILED`` (inference: a JobRun does not say
        which kind of failure it was, so either flag makes the wait expect a retry; when none comes,
        the wait ends ``retry_delay`` + :data:`RETRY_START_GRACE` later with the failure).
    """

    max_retry: int
    delay: float
    statuses: frozenset[str]

    @classmethod
    def of(cls, job: Mapping[str, Any] | None) -> JobRetry | None:
        """The settings of a Job answer; ``None`` when the job does not retry.

        :param job: a Job answer (``None`` if it could not be read).
        """
        if not job or not job.get("retry_enabled") or int(job.get("max_retry") or 0) <= 0:
            return None
        flags = {
            FAILED: job.get("retry_for_script_failure") or job.get("retry_for_system_failure"),
            TIMEDOUT: job.get("retry_for_timedout_runs"),
            SKIPPED: job.get("retry_for_skipped_runs"),
        }
        statuses = frozenset(status for status, on in flags.items() if on)
        return cls(int(job["max_retry"]), float(job.get("retry_delay") or 0), statuses) if statuses else None


class JobRetries:
    """How a wait follows a job's Job Retry (the :class:`~.waiting.kinds.Retries` of :data:`JOB_RUN`)."""

    def covers(self, answer: Mapping[str, Any]) -> bool:
        """Whether Job Retry may retry a run that ended so (a stopped run never is).

        :param answer: the failed run.
        """
        return status_of(answer) in RETRIED_STATUSES

    def policy(self, ref: RunRef, deadline: float | None) -> Any:
        """Steps that read the job's Job Retry settings (``None`` when it does not retry, or cannot be read).

        :param ref: the failed run.
        :param deadline: when the read must end.
        """
        from airflow_provider_cml.client.attempts import Exchange  # not at DAG parsing: specs import this

        try:
            job = yield Exchange("GET", job_path(ref), deadline=deadline)
        except CmlException as exc:
            logging.getLogger(__name__).warning(
                "Could not read the job's retry settings (%s); not waiting for platform retries.", exc
            )
            return None
        return JobRetry.of(job)

    def expects(self, policy: JobRetry | None, answer: Mapping[str, Any], retries: int) -> bool:
        """Whether Job Retry will retry this failure.

        :param policy: the job's settings.
        :param answer: the failed run.
        :param retries: retries already seen.
        """
        status = status_of(answer)
        return (
            policy is not None and status in RETRIED_STATUSES & policy.statuses and retries < policy.max_retry
        )

    def find(self, ref: RunRef, failed: Mapping[str, Any], deadline: float | None) -> Any:
        """Steps that look for the retry among the job's newest runs (``None`` while there is none).

        :param ref: the failed run.
        :param failed: its final answer.
        :param deadline: when the look must end.
        """
        from airflow_provider_cml.client.attempts import Exchange

        page = yield Exchange("GET", runs_path(ref), RETRY_LISTING, deadline=deadline)
        return retry_run_among(page, failed)

    def patience(self, policy: JobRetry | None) -> float:
        """``retry_delay`` + :data:`RETRY_START_GRACE`.

        :param policy: the job's settings.
        """
        return (policy.delay if policy else 0.0) + RETRY_START_GRACE

    def note(self, policy: JobRetry | None, retries: int) -> str:
        """E.g. ``" on the platform's retry 2 of 3"``.

        :param policy: the job's settings.
        :param retries: retries seen.
        """
        of = f" of {policy.max_retry}" if policy else ""
        return f" on the platform's retry {retries}{of}"


def _explain(hook: Any, ref: RunRef, answer: Mapping[str, Any]) -> str | None:
    """Why a run failed, from the usage and executions listings the hook's key may read."""
    return hook.failure_details(ref, answer)


#: A job run, as a workload to wait on (see :mod:`airflow_provider_cml.waiting.kinds`).
JOB_RUN = WorkloadKind(
    home="airflow_provider_cml.workloads.job_runs:JOB_RUN",
    name="run",
    ref_type=RunRef,
    read_path=run_path,
    succeeded=SUCCESS_STATES,
    failed=FAILURE_STATES,
    active=KNOWN_STATUSES - TERMINAL_STATES - {UNKNOWN},
    prefix="ENGINE_",
    stop_path=lambda ref: run_path(ref) + ":stop",
    missing_status=SCHEDULING,
    hints=_FAILURE_HINTS,
    event_fields=(
        "id",
        "job_id",
        "project_id",
        "status",
        "created_at",
        "scheduling_at",
        "running_at",
        "finished_at",
    ),
    retries=JobRetries(),
    describe=describe_run,
    error=CmlJobRunError,
    timeout_error=CmlJobRunTimeout,
    explain=_explain,
)

#: The run's status in upper case; ``ENGINE_SCHEDULING`` when the answer leaves it out.
status_of = JOB_RUN.status_of
#: Whether a run in a status has ended (successfully or not).
is_terminal = JOB_RUN.is_terminal
#: Whether a status is the one success state.
is_success = JOB_RUN.is_success
#: A short human explanation of a terminal failure status.
failure_hint = JOB_RUN.hint
#: Why a finished run did not succeed, in words for the DAG author.
failure_message = JOB_RUN.failure_message
#: The run if it succeeded; raise :class:`CmlJobRunError` if it ended otherwise.
check_run_outcome = JOB_RUN.outcome
