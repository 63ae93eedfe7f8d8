"""Why a job run failed, as the usage and workload-executions listings say: queries and matching.

A JobRun carries no exit code or platform message; the usage listing (``k8s_info``) and the
executions listing (``failure_reason``) do, but carry no run id either. So entries are matched by job
name, project name and the closest time within :data:`WINDOW_SLACK` (an inference; see
docs/architecture.md). :class:`~airflow_provider_cml.hooks.failures.FailureExplainer` reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_cml.waiting.kinds import parse_time

WINDOW_SLACK = timedelta(seconds=120)


def time_window(run: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """From a little before the run was created to a little after it finished.

    :param run: a finished JobRun answer.
    """
    start = parse_time(run.get("created_at")) or datetime.now(timezone.utc)
    end = parse_time(run.get("finished_at")) or datetime.now(timezone.utc)
    return start - WINDOW_SLACK, end + WINDOW_SLACK


def usage_query(job: Mapping[str, Any], low: datetime, high: datetime) -> dict[str, Any]:
    """``GET /usage`` parameters for a job's workloads in a time window (the spec's formats).

    :param job: the Job answer.
    :param low: the window's start.
    :param high: the window's end.
    """
    return {
        "search_filter": json.dumps({"name": str(job.get("name", "")), "workload_type": "job"}),
        "time_range_search_filter": json.dumps(
            {"created_time": {"min": f"{low:%Y-%m-%d %H:%M:%S}", "max": f"{high:%Y-%m-%d %H:%M:%S}"}}
        ),
        "sort": "-created_at",
        "page_size": 20,
    }


def executions_query(low: datetime, high: datetime, workload_crn: str | None = None) -> dict[str, Any]:
    """``GET /workloads/executions`` parameters: executions that started in a time window, oldest first.

    With ``workload_crn``, only that workload's (the spec's ``multi_column_search_filter``).

    :param low: the window's start.
    :param high: the window's end.
    :param workload_crn: a workload's CRN.
    """
    iso = "%Y-%m-%dT%H:%M:%S.000Z"
    query: dict[str, Any] = {
        "time_range_search_filter": json.dumps(
            {"start_time": {"min": f"{low:{iso}}", "max": f"{high:{iso}}"}}
        ),
        "sort": "start_time",
        "page_size": 100,
    }
    if workload_crn:
        query["multi_column_search_filter"] = json.dumps({"workload_crn": workload_crn})
    return query


def workload_crn(answer: Any, job: Mapping[str, Any]) -> str | None:
    """The CRN of ``job``'s workload among a ListWorkloadExecutionsResponse's workloads, or ``None``.

    :param answer: the ListWorkloadExecutionsResponse.
    :param job: the Job.
    """
    crns = _workload_crns(answer, job)
    return crns.pop() if len(crns) == 1 else None


def _workload_crns(answer: Any, job: Mapping[str, Any]) -> set[str]:
    if not isinstance(answer, Mapping) or not isinstance(answer.get("workloads"), list):
        return set()
    project_name = _project_name(job)
    return {
        str(w.get("workload_crn"))
        for w in answer["workloads"]
        if isinstance(w, Mapping)
        and w.get("workload_crn")
        and w.get("workload_name") == job.get("name")
        and (project_name is None or (w.get("project") or {}).get("name") in (None, project_name))
    }


def _closest(
    candidates: list[Mapping[str, Any]], key: str, when: datetime | None
) -> Mapping[str, Any] | None:
    timed = [(c, parse_time(c.get(key))) for c in candidates]
    timed = [(c, t) for c, t in timed if t is not None and when is not None and abs(t - when) <= WINDOW_SLACK]
    return min(timed, key=lambda ct: abs(ct[1] - when))[0] if timed else None  # type: ignore[operator]


def _project_name(job: Mapping[str, Any]) -> str | None:
    project = job.get("project")
    return project.get("name") if isinstance(project, Mapping) else None


def match_usage(usage: Any, job: Mapping[str, Any], run: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The UsageResponse of ``run`` in a ListUsageResponse, or ``None``.

    :param usage: the ListUsageResponse.
    :param job: the run's Job.
    :param run: the finished JobRun.
    """
    entries = usage.get("usage_response") if isinstance(usage, Mapping) else None
    project_name = _project_name(job)
    same = [
        e
        for e in entries or []
        if isinstance(e, Mapping)
        and e.get("name") == job.get("name")
        and (project_name is None or e.get("project_name") in (None, project_name))
    ]
    return _closest(same, "created_at", parse_time(run.get("created_at")))


def match_execution(answer: Any, job: Mapping[str, Any], run: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ExecutionDetails of ``run`` in a ListWorkloadExecutionsResponse, or ``None``.

    :param answer: the ListWorkloadExecutionsResponse.
    :param job: the run's Job.
    :param run: the finished JobRun.
    """
    if not isinstance(answer, Mapping) or not isinstance(answer.get("executions"), list):
        return None
    crns = _workload_crns(answer, job)
    mine = [
        e for e in answer.get("executions") or [] if isinstance(e, Mapping) and e.get("workload_crn") in crns
    ]
    started = parse_time(run.get("running_at")) or parse_time(run.get("created_at"))
    return _closest(mine, "start_time", started)


def describe_failure(usage: Mapping[str, Any] | None, execution: Mapping[str, Any] | None) -> str | None:
    """Exit code, OOM kill and the platform's own message, in one line; ``None`` if nothing is known.

    :param usage: the run's UsageResponse, if found.
    :param execution: the run's ExecutionDetails, if found.
    """
    parts: list[str] = []
    k8s = (usage or {}).get("k8s_info") or {}
    if (usage or {}).get("oom_killed"):
        parts.append("killed for using more memory than its limit (OOM)")
    code = k8s.get("k8s_exit_code") if isinstance(k8s, Mapping) else None
    if isinstance(code, int) and code != 0:
        parts.append(f"exit code {code}")
    messages = [str(m) for m in ((usage or {}).get("message"), (execution or {}).get("failure_reason")) if m]
    for message in dict.fromkeys(messages):  # the same text from both listings once
        parts.append(f"Cloudera AI says: {message}")
    return "; ".join(parts) or None
