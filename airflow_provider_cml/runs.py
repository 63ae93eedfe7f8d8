"""Rules: what a v2 JobRun answer means (statuses, outcome, duration) and the messages that say so.

The one definition of run statuses, shared by hook, operator, sensor and trigger. Only
``ENGINE_SUCCEEDED`` is success. ``ENGINE_STOPPING``, ``ENGINE_UNKNOWN`` and statuses this module does
not know are not terminal. Statuses are compared case-insensitively; a run without ``status`` is
scheduling (it is the enum's zero value, which the API may leave out). Nothing here reads a run's
``environment`` into a message: it may hold secrets.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from airflow_provider_cml.exceptions import CmlJobRunError

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

_FAILURE_HINTS = {
    FAILED: "the job's script exited with an error; open the run's page for its output",
    TIMEDOUT: "the job's own timeout (set on the job in Cloudera AI) was reached",
    STOPPED: "the run was stopped by a person or by an API call",
    SKIPPED: "Cloudera AI skipped the run, usually because the job already had an active run",
}


class RunRef(NamedTuple):
    """The IDs that name one run: project, job, run."""

    project_id: str
    job_id: str
    run_id: str


class StopResult(enum.Enum):
    """What became of a request to stop a run; messages say only what really happened."""

    STOPPED = "it has been asked to stop"
    ALREADY_ENDED = "it had already ended"
    NOT_ASKED = ""
    FAILED = "it could not be stopped and may still be running"


def status_of(run: Mapping[str, Any]) -> str:
    """The run's status in upper case; ``ENGINE_SCHEDULING`` when the answer leaves it out.

    :param run: a JobRun answer.
    """
    value = run.get("status")
    if value is None or value == "":
        return SCHEDULING
    return str(value).strip().upper()


def is_terminal(status: str | None) -> bool:
    """Whether a run in ``status`` has ended (successfully or not).

    :param status: a status as the API sends it (any case).
    """
    return (status or "").upper() in TERMINAL_STATES


def is_success(status: str | None) -> bool:
    """Whether ``status`` is the one success state.

    :param status: a status as the API sends it (any case).
    """
    return (status or "").upper() in SUCCESS_STATES


def is_unclear(status: str | None) -> bool:
    """Whether ``status`` says nothing about progress: ``ENGINE_UNKNOWN`` or a value the API never listed.

    :param status: a status as the API sends it (any case).
    """
    upper = (status or SCHEDULING).upper()
    return upper == UNKNOWN or upper not in KNOWN_STATUSES


def should_stop(run: Mapping[str, Any]) -> bool:
    """The one "stop if still active" rule: a run that has not ended may be stopped.

    :param run: a fresh JobRun answer.
    """
    return not is_terminal(status_of(run))


def failure_hint(status: str | None) -> str:
    """A short human explanation of a terminal failure status.

    :param status: a terminal status.
    """
    return _FAILURE_HINTS.get((status or "").upper(), "the run did not succeed")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def run_duration(run: Mapping[str, Any]) -> float | None:
    """Seconds from the run's creation (or scheduling) to its end, when both are known.

    :param run: a JobRun answer.
    """
    start = _parse_time(run.get("created_at")) or _parse_time(run.get("scheduling_at"))
    end = _parse_time(run.get("finished_at"))
    if start and end:
        return max(0.0, (end - start).total_seconds())
    return None


def run_environment(run: Mapping[str, Any]) -> dict[str, str]:
    """The run's environment (a JSON *string* in many API answers). For comparisons only: never log it.

    :param run: a JobRun answer.
    """
    value = run.get("environment")
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def describe_run(run: Mapping[str, Any]) -> str:
    """A one-line, secret-free summary: id, status and duration.

    :param run: a JobRun answer.
    """
    duration = run_duration(run)
    took = f" after {duration:.1f}s" if duration is not None else ""
    return f"run {run.get('id')} of job {run.get('job_id')}: {status_of(run)}{took}"


def _see(link: str | None) -> str:
    return f" See {link}" if link else ""


def failure_message(run: Mapping[str, Any], *, link: str | None = None) -> str:
    """Why a finished run did not succeed, in words for the DAG author.

    :param run: a terminal JobRun answer.
    :param link: the run's page, if known.
    """
    reason = run.get("failure_reason") or failure_hint(status_of(run))
    return f"Cloudera AI {describe_run(run)} did not succeed: {reason}.{_see(link)}"


def gave_up_message(
    run_id: str,
    *,
    status: str | None,
    when: str,
    advice: str,
    stop: StopResult,
    link: str | None = None,
) -> str:
    """Why a wait ended before the run did (timeout, or a status that stayed unclear too long).

    :param run_id: the run's id.
    :param status: the last status read, ``None`` if none could be read.
    :param when: what ended the wait, e.g. ``"after 25s"``.
    :param advice: what the DAG author can do about it.
    :param stop: what became of stopping the run.
    :param link: the run's page, if known.
    """
    stopped = f"; {stop.value}" if stop.value else ""
    return (
        f"Cloudera AI run {run_id} was still {status or 'unreadable'} {when}{stopped}. {advice}.{_see(link)}"
    )


def check_run_outcome(run: Mapping[str, Any], *, link: str | None = None) -> Mapping[str, Any]:
    """Return ``run`` if it succeeded; raise :class:`CmlJobRunError` if it ended otherwise.

    Call only for terminal runs (see :func:`is_terminal`).

    :param run: a terminal JobRun answer.
    :param link: the run's page, repeated in the error.
    """
    status = status_of(run)
    if is_success(status):
        return run
    raise CmlJobRunError(failure_message(run, link=link), run_id=str(run.get("id")), status=status)
