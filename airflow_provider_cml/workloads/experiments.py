"""Experiment runs (MLflow runs tracked by the workbench) as workloads, and their API paths.

The statuses are the fact sheet's ("Cloudera AI Workbench API v2: experiments, runs, metrics",
§4): ``EXPERIMENT_RUN_FINISHED`` succeeds, ``..._FAILED`` and ``..._KILLED`` fail,
``..._RUNNING`` and ``..._SCHEDULED`` are progress; the enum's zero (an answer without a status)
is ``EXPERIMENT_RUN_RUNNING``. MLflow's bare words (``FINISHED``) read the same. A run cannot be
stopped through the API (there is no such call): a wait on it never owns it.

A process killed outright can leave its run ``RUNNING`` forever (sheet §4), so a wait on a run
needs a timeout; when the job run that logged it is known, its end bounds the wait too
(:class:`JobRunBound`, the kind's ``bound``).

A run may be named by a tag the training job set (e.g. ``airflow_run_id``) instead of its ID
(:class:`TaggedRuns`, the kind's ``locate``): the experiment's runs are paged and matched
client-side, as the listing's filter syntax for tags is unknown (sheet §2, §10). Several runs with
the tags: the one with the latest ``start_time`` (a retried training task logs a new run under the
same Airflow run ID: the latest is the retry's); runs without a start time rank last, and two
runs with the same latest start time are an error naming both (nothing tells them apart).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Generator, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from airflow_provider_cml.client.attempts import Exchange
from airflow_provider_cml.client.listing import DEFAULT_PAGE_SIZE, MAX_PAGES, odd_listing
from airflow_provider_cml.exceptions import CmlExperimentRunError, CmlLookupError
from airflow_provider_cml.validation import ref_path, resource_path
from airflow_provider_cml.waiting.kinds import WorkloadKind, parse_time
from airflow_provider_cml.workloads.job_runs import JOB_RUN, RunRef

#: Steps: yield requests, are sent their answers, return their result.
Steps = Generator[Exchange, Any, Any]
#: Seconds an experiment run may stay ``RUNNING`` after its job run ended (the script's last write).
JOB_RUN_GRACE = 30.0


class ExperimentRunRef(NamedTuple):
    """The IDs that name one experiment run (a run has no project of its own: the path gives it)."""

    project_id: str
    experiment_id: str
    run_id: str


#: A project's experiments (ListExperiments, CreateExperiment); with an experiment ID, that one.
experiments_path = functools.partial(resource_path, "projects/experiments")
#: An experiment's runs (ListExperimentRuns, CreateExperimentRun); with a run ID, that run.
experiment_runs_path = functools.partial(resource_path, "projects/experiments/runs")
#: One run's path from its :class:`ExperimentRunRef` (GetExperimentRun; cached).
experiment_run_path = ref_path("projects/experiments/runs")


def summary(answer: Mapping[str, Any]) -> str:
    """``experiment run <id> of experiment <id>: <STATUS>``: ids and status only (never params).

    :param answer: the run as the API returned it.
    """
    return (
        f"experiment run {answer.get('id')} of experiment {answer.get('experiment_id')}: "
        f"{EXPERIMENT_RUN.status_of(answer)}"
    )


def tags_of(answer: Mapping[str, Any]) -> dict[str, str]:
    """A run's tags as a dict (the API sends ``data.tags`` as ``{key, value}`` pairs, sheet §3).

    :param answer: the run as the API returned it.
    """
    data = answer.get("data") if isinstance(answer.get("data"), Mapping) else {}
    pairs = data.get("tags") if isinstance(data, Mapping) else None
    return {str(t.get("key")): str(t.get("value")) for t in pairs or [] if isinstance(t, Mapping)}


def metrics_of(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A run's metrics as ``{key: value}``: GetExperimentRun's one value per key (sheet §5).

    :param answer: the run as the API returned it.
    """
    data = answer.get("data") if isinstance(answer.get("data"), Mapping) else {}
    pairs = data.get("metrics") if isinstance(data, Mapping) else None
    return {str(m.get("key")): m.get("value") for m in pairs or [] if isinstance(m, Mapping)}


def number(value: Any) -> float | None:
    """A metric value as a float; ``None`` when it is absent, not a number, or NaN.

    proto3 JSON sends NaN and the infinities as the strings ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"`` (the sheet says their encoding is unknown, §5): they are read as such, and NaN
    counts as no value (it compares false with everything).

    :param value: ``value`` of a metric entry.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        found = float(value)
    except ValueError:
        return None
    return None if math.isnan(found) else found


def improvement(candidate: float, baseline: float, higher_is_better: bool) -> float:
    """How much better the candidate is than the baseline (negative: worse).

    :param candidate: the candidate's value.
    :param baseline: the baseline's value.
    :param higher_is_better: whether a higher value is better (accuracy) or a lower one (loss).
    """
    gain = candidate - baseline if higher_is_better else baseline - candidate
    return 0.0 if math.isnan(gain) else gain  # inf - inf: equally (un)bounded, not better


def beats(gain: float, min_improvement: float) -> bool:
    """Whether ``gain`` passes the gate: strictly more than ``min_improvement``.

    A gain equal to ``min_improvement`` within float rounding does not pass (``0.81 - 0.8`` is
    ``0.010000000000000009``, which must not beat a required ``0.01``). With ``0.0`` a candidate as
    good as the baseline does not pass: the gate deploys only what is better.

    :param gain: :func:`improvement`.
    :param min_improvement: the margin to beat (negative: a regression tolerated).
    """
    return gain > min_improvement and not math.isclose(gain, min_improvement, rel_tol=1e-9, abs_tol=1e-12)


def check_tags(tags: Any) -> dict[str, str]:
    """``run_tag`` as given by a user: a non-empty mapping of string keys to string values.

    :param tags: e.g. ``{"airflow_run_id": "manual__2024-06-01"}``.
    """
    from airflow_provider_cml.exceptions import CmlConfigError

    if not isinstance(tags, Mapping) or not tags:
        raise CmlConfigError(
            f'run_tag must be a non-empty mapping of tag names to values, e.g. {{"airflow_run_id": '
            f'"{{{{ run_id }}}}"}}, not {tags!r}.'
        )
    bad = [k for k, v in tags.items() if not isinstance(k, str) or not k or not isinstance(v, (str, int))]
    if bad:
        raise CmlConfigError(f"run_tag's names must be non-empty strings and values strings, not {bad!r}.")
    return {k: str(v) for k, v in tags.items()}


def latest_tagged(runs: list[Mapping[str, Any]], tags: Mapping[str, str]) -> Mapping[str, Any] | None:
    """The run carrying every tag of ``tags`` with the latest ``start_time``; ``None`` when none does.

    :param runs: an experiment's runs, as listed.
    :param tags: the tags to match (exact values).
    :raises CmlLookupError: two runs share the latest start time (nothing tells them apart).
    """
    matched = [r for r in runs if tags.items() <= tags_of(r).items()]
    if not matched:
        return None
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    matched.sort(key=lambda r: parse_time(r.get("start_time")) or oldest, reverse=True)
    first = matched[0]
    if len(matched) > 1 and parse_time(first.get("start_time")) == parse_time(matched[1].get("start_time")):
        ids = ", ".join(str(r.get("id")) for r in matched[:5])
        raise CmlLookupError(
            f"Several experiment runs are tagged {dict(tags)!r} and started at the same time ({ids}); "
            "tag each run with a value of its own (e.g. the Airflow run ID and try number), or give run_id."
        )
    return first


def tagged_run(project_id: str, experiment_id: str, tags: Mapping[str, str], deadline: float | None) -> Steps:
    """Steps that page the experiment's runs: the latest one tagged ``tags``, or ``None`` (no run yet).

    :param project_id: project ID.
    :param experiment_id: experiment ID.
    :param tags: the tags to match.
    :param deadline: when the whole look must end.
    """
    path = experiment_runs_path(project_id, experiment_id)
    query: dict[str, Any] = {"page_size": DEFAULT_PAGE_SIZE}
    runs: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = yield Exchange(
            "GET", path, dict(query), not_found=f"experiment {experiment_id!r}", deadline=deadline
        )
        items = page.get("experiment_runs") or [] if isinstance(page, Mapping) else None
        if not isinstance(items, list):
            raise odd_listing(path, "without the expected 'experiment_runs' list")
        runs.extend(r for r in items if isinstance(r, Mapping))
        token = page.get("next_page_token")
        if not token:
            return latest_tagged(runs, tags)
        if str(token) in seen:
            raise odd_listing(path, "with a listing that never ends (a page token repeats)")
        seen.add(str(token))
        query["page_token"] = token
    raise odd_listing(path, f"with more than {MAX_PAGES} pages")


class TaggedRuns:
    """The EXPERIMENT_RUN kind's ``locate``: a wait on a run named by tags, until one appears."""

    def find(self, ref: ExperimentRunRef, find: Mapping[str, Any], deadline: float | None) -> Steps:
        """Steps that look for the run: ``(its ref, its answer)``, or ``None`` while there is none.

        :param ref: project and experiment IDs (the run ID empty).
        :param find: ``{"tags": {...}}``.
        :param deadline: when the look must end.
        """
        found = yield from tagged_run(ref.project_id, ref.experiment_id, find["tags"], deadline)
        if found is None:
            return None
        return ref._replace(run_id=str(found.get("id"))), found

    def missing(self, ref: ExperimentRunRef, find: Mapping[str, Any]) -> str:
        """Why a wait that found no run gave up.

        :param ref: project and experiment IDs.
        :param find: ``{"tags": {...}}``.
        """
        return (
            f"No run of Cloudera AI experiment {ref.experiment_id} was tagged {dict(find['tags'])!r} "
            "by the time the wait ran out. Check that the training job sets that tag "
            "(mlflow.set_tag) and logs to this experiment, or raise the timeout."
        )


class JobRunBound:
    """The EXPERIMENT_RUN kind's ``bound``: the job run that logs a run ends the wait on it.

    A script killed outright leaves its run ``RUNNING`` (sheet §4): once the job run has ended and
    :data:`JOB_RUN_GRACE` seconds have passed (the script's last write, ``end_run``), a run still
    in progress ends the wait with an error. The bound is plain JSON (a trigger carries it):
    ``{"project_id", "job_id", "run_id"}`` of the job run, and optionally ``"grace"`` (seconds).
    """

    def ended(self, bound: Mapping[str, Any], deadline: float | None) -> Steps:
        """Steps that read the job run: seconds since it ended, or ``None`` while it has not.

        The job run's ``finished_at`` is the server's clock; a missing one counts as just now.

        :param bound: the job run's IDs.
        :param deadline: when the read must end.
        """
        ref = job_run_ref(bound)
        answer = yield Exchange(
            "GET", JOB_RUN.read_path(ref), not_found=f"run {ref.run_id!r}", deadline=deadline
        )
        if not JOB_RUN.is_terminal(JOB_RUN.status_of(answer)):
            return None
        finished = parse_time(answer.get("finished_at"))
        return 0.0 if finished is None else max(0.0, time.time() - finished.timestamp())

    def grace(self, bound: Mapping[str, Any]) -> float:
        """Seconds the run may stay in progress after the job run ended.

        :param bound: the job run's IDs (and ``grace``).
        """
        return float(bound.get("grace", JOB_RUN_GRACE))

    def message(self, bound: Mapping[str, Any], answer: Mapping[str, Any]) -> str:
        """Why the wait ended: the job run ended, the experiment run did not.

        :param bound: the job run's IDs.
        :param answer: the experiment run's last answer.
        """
        return (
            f"Cloudera AI {summary(answer)}, yet the job run {bound.get('run_id')} that logs it "
            f"(job {bound.get('job_id')}) ended more than {self.grace(bound):g}s ago: the script ended "
            "without ending the run (mlflow.end_run). Was it killed, or did it log to another run? "
            "Read the job run's log."
        )


def job_run_ref(job_run: Any) -> RunRef:
    """The job run named by ``job_run``: CmlRunJobOperator's XCom (``project_id``, ``job_id``, ``run_id``).

    :param job_run: a mapping with those keys.
    """
    from airflow_provider_cml.exceptions import CmlConfigError

    try:
        ids = [job_run[k] for k in ("project_id", "job_id", "run_id")]
    except (KeyError, TypeError):
        ids = []
    if len(ids) != 3 or not all(isinstance(v, str) and v.strip() for v in ids):
        raise CmlConfigError(
            "job_run must name the job run that logs the experiment run, as a mapping with "
            f"project_id, job_id and run_id (e.g. CmlRunJobOperator's XComs), not {job_run!r}."
        )
    return RunRef(*(v.strip() for v in ids))


#: An experiment run: from ``EXPERIMENT_RUN_RUNNING`` (or ``..._SCHEDULED``) to ``..._FINISHED``.
EXPERIMENT_RUN = WorkloadKind(
    home="airflow_provider_cml.workloads.experiments:EXPERIMENT_RUN",
    name="experiment run",
    ref_type=ExperimentRunRef,
    read_path=experiment_run_path,
    succeeded=frozenset({"EXPERIMENT_RUN_FINISHED"}),
    failed=frozenset({"EXPERIMENT_RUN_FAILED", "EXPERIMENT_RUN_KILLED"}),
    active=frozenset({"EXPERIMENT_RUN_RUNNING", "EXPERIMENT_RUN_SCHEDULED"}),
    prefix="EXPERIMENT_RUN_",
    # The enum's zero value (sheet §4: "default EXPERIMENT_RUN_RUNNING"), which JSON may leave out.
    missing_status="EXPERIMENT_RUN_RUNNING",
    hints={
        "EXPERIMENT_RUN_FAILED": "the run's code raised (MLflow marks the run FAILED); read the log "
        "of the job or session that ran it",
        "EXPERIMENT_RUN_KILLED": "the run was killed by a user",
    },
    # Ids, status and times only: a run's params and tags are the user's and may hold secrets.
    event_fields=("id", "experiment_id", "status", "start_time", "end_time"),
    describe=summary,
    error=CmlExperimentRunError,
    locate=TaggedRuns(),
    bound=JobRunBound(),
)
