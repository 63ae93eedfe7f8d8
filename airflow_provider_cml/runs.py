"""Reading JobRun objects: outcome, duration, a loggable summary. Never exposes ``environment``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow_provider_cml import statuses
from airflow_provider_cml.exceptions import CmlJobRunError


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def run_duration(run: Mapping[str, Any]) -> float | None:
    """Seconds from the run's creation (or scheduling) to its end, when both are known."""
    start = _parse_time(run.get("created_at")) or _parse_time(run.get("scheduling_at"))
    end = _parse_time(run.get("finished_at"))
    if start and end:
        return max(0.0, (end - start).total_seconds())
    return None


def run_environment(run: Mapping[str, Any]) -> dict[str, str]:
    """The run's environment (a JSON *string* in many API answers). For comparisons only: never log it."""
    value = run.get("environment")
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def describe_run(run: Mapping[str, Any]) -> str:
    """A one-line, secret-free summary: id, status and duration."""
    duration = run_duration(run)
    took = f", {duration:.1f}s" if duration is not None else ""
    return f"run {run.get('id')} of job {run.get('job_id')}: {run.get('status')}{took}"


def check_run_outcome(run: Mapping[str, Any], *, link: str | None = None) -> Mapping[str, Any]:
    """Return ``run`` if it succeeded; raise :class:`CmlJobRunError` if it ended otherwise.

    Call only for terminal runs (see :func:`statuses.is_terminal`).
    """
    status = run.get("status")
    if statuses.is_success(status):
        return run
    reason = run.get("failure_reason") or None
    parts = [f"Cloudera AI {describe_run(run)} did not succeed: {reason or statuses.failure_hint(status)}."]
    if link:
        parts.append(f"See {link}")
    raise CmlJobRunError(" ".join(parts), run_id=str(run.get("id")), status=status, reason=reason)
