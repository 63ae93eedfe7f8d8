"""CmlMetricGateOperator: let downstream tasks run only when a candidate run's metric beats a baseline.

The candidate is an experiment run (by ID or by tags the training job set); the baseline a number,
or the metric of the model version currently deployed for a model (the fact sheet's chain,
``cml-api-v2-experiments.md`` §7; see ``CmlHook.experiments.deployed_baseline``).
When the candidate does not pass, downstream tasks are skipped as ``ShortCircuitOperator`` skips
them; the comparison is returned (XCom) and logged in one line either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_cml._compat import AIRFLOW_V_3_0_PLUS, BaseOperator
from airflow_provider_cml.defaults import DEFAULT_CONN_ID
from airflow_provider_cml.exceptions import CmlConfigError, CmlMetricGateError, CmlMetricMissingError
from airflow_provider_cml.hooks.lazy import LazyHook

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context

if TYPE_CHECKING:
    from airflow.sdk import SkipMixin
else:
    try:  # Airflow 3.2+: the Task SDK's
        from airflow.sdk import SkipMixin
    except ImportError:  # Airflow 2.x; 3.0/3.1, where this is the standard provider's (no warning)
        from airflow.models.skipmixin import SkipMixin

NO_BASELINE = ("pass", "fail")


class CmlMetricGateOperator(BaseOperator, SkipMixin):
    """Compare a candidate experiment run's metric with a baseline; skip downstream unless it is better.

    The candidate run must be ``FINISHED`` and have the metric (else the task fails:
    :class:`~airflow_provider_cml.exceptions.CmlMetricGateError`,
    :class:`~airflow_provider_cml.exceptions.CmlMetricMissingError` naming the keys it has). Its
    value is GetExperimentRun's, the latest logged (fact sheet §5). The candidate passes when it
    beats the baseline by strictly more than ``min_improvement`` (a value equal to the baseline does
    not pass with the default ``0.0``; a negative margin tolerates a regression).

    The baseline is ``baseline`` (a number) or, with ``baseline_model``, the same metric of the
    experiment run behind the model version currently deployed for that model: the deployment
    with status ``deployed`` of its newest build that has one → the build's registered model
    version → that version's run (``mlflow_metadata``) → the run's metric. The run is the only
    source: the registry's copy of the metrics is not read. There is no baseline when the model
    does not exist, nothing is deployed, the deployed build came from a file (no registered
    version) or that run lacks the metric: ``if_no_baseline`` says what then (``"pass"``, the
    default: a first deployment goes ahead; ``"fail"``: the task fails).

    Returns (XCom) ``{"passed", "metric", "candidate": {project_id, experiment_id, run_id, value},
    "baseline": {value, source ("number" | "deployed model"), model_id, build_id, deployment_id,
    model_version_id, run_id}, "improvement", "min_improvement", "higher_is_better", "reason"}``,
    also when downstream tasks are skipped.

    :param project: the candidate's project, name or ID (templated).
    :param experiment: the candidate's experiment, name or ID (templated).
    :param metric: the metric key, e.g. ``"auc"`` (templated).
    :param run_id: the candidate run's ID (templated).
    :param run_tag: instead of ``run_id``: tags that name the candidate run (templated); the run
        started last among several.
    :param baseline: a fixed baseline value.
    :param baseline_model: instead of ``baseline``: the model (name or ID) whose deployed version's
        metric is the baseline (templated).
    :param baseline_project: the project of ``baseline_model`` (default: ``project``; templated).
    :param higher_is_better: ``True`` for a score (accuracy, AUC), ``False`` for a loss or error.
    :param min_improvement: the margin the candidate must beat the baseline by.
    :param if_no_baseline: ``"pass"`` or ``"fail"`` when ``baseline_model`` yields no baseline.
    :param ignore_downstream_trigger_rules: skip every downstream task (``True``, as
        ``ShortCircuitOperator``), or only the direct ones, the others following their trigger rules.
    :param cml_conn_id: Airflow connection of type ``cml``.
    :param kwargs: as for ``BaseOperator``.
    """

    template_fields: Sequence[str] = (
        "project",
        "experiment",
        "metric",
        "run_id",
        "run_tag",
        "baseline_model",
        "baseline_project",
    )
    ui_color = "#f96702"
    inherits_from_skipmixin = True

    #: The :class:`~airflow_provider_cml.hooks.cml.CmlHook` for ``cml_conn_id``, made on first use.
    hook = LazyHook()

    def __init__(
        self,
        *,
        project: str,
        experiment: str,
        metric: str,
        run_id: str | None = None,
        run_tag: Mapping[str, str] | None = None,
        baseline: float | None = None,
        baseline_model: str | None = None,
        baseline_project: str | None = None,
        higher_is_better: bool = True,
        min_improvement: float = 0.0,
        if_no_baseline: str = "pass",
        ignore_downstream_trigger_rules: bool = True,
        cml_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (run_id is None) == (run_tag is None):
            raise CmlConfigError(
                "CmlMetricGateOperator needs exactly one of run_id and run_tag to name the candidate run, "
                f"not run_id={run_id!r} and run_tag={run_tag!r}."
            )
        if (baseline is None) == (baseline_model is None):
            raise CmlConfigError(
                "CmlMetricGateOperator needs exactly one of baseline (a number) and baseline_model (the "
                f"model whose deployed version is the baseline), not baseline={baseline!r} and "
                f"baseline_model={baseline_model!r}."
            )
        _check_number("baseline", baseline, allow_none=True)
        _check_number("min_improvement", min_improvement, allow_none=False)
        if if_no_baseline not in NO_BASELINE:
            raise CmlConfigError(f'if_no_baseline must be "pass" or "fail", not {if_no_baseline!r}.')
        # The candidate: its run, by ID or by tag, and the metric read from it.
        self.project = project
        self.experiment = experiment
        self.metric = metric
        self.run_id = run_id
        self.run_tag = run_tag
        # What it must beat: a number, or the metric of the version a model serves.
        self.baseline = baseline
        self.baseline_model = baseline_model
        self.baseline_project = baseline_project
        self.higher_is_better = bool(higher_is_better)
        self.min_improvement = float(min_improvement)
        self.if_no_baseline = if_no_baseline
        self.ignore_downstream_trigger_rules = ignore_downstream_trigger_rules
        self.cml_conn_id = cml_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Read both values, decide, log one line, return the comparison; skip downstream unless passed.

        :param context: the task's Airflow context.
        """
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise CmlConfigError(f"metric must be the key of a metric the run logs, not {self.metric!r}.")
        candidate = self._candidate()
        result = self.decide(candidate, self._baseline())
        base = result["baseline"]["value"]
        self.log.info(
            "Metric gate %s: %s %s=%s, baseline (%s) %s, improvement %s (must beat %s, %s is better). %s",
            "PASSED" if result["passed"] else "NOT PASSED",
            candidate["run_id"],
            result["metric"],
            candidate["value"],
            result["baseline"]["source"],
            "none" if base is None else base,
            result["improvement"],
            self.min_improvement,
            "higher" if self.higher_is_better else "lower",
            result["reason"],
        )
        if not result["passed"]:
            # Pushed here: on Airflow 3 ``skip`` ends execute with an exception, before any return.
            context["ti"].xcom_push(key="return_value", value=result)
            self._skip_downstream(context)
        return result

    def _candidate(self) -> dict[str, Any]:
        """The candidate run's IDs and value (FINISHED, with the metric), else a clear failure."""
        from airflow_provider_cml.workloads.experiments import (
            EXPERIMENT_RUN,
            ExperimentRunRef,
            metrics_of,
            number,
        )

        hook = self.hook
        project_id = str(hook.resolve_project(self.project)["id"])
        experiment_id = str(hook.experiments.resolve_experiment(project_id, self.experiment)["id"])
        if self.run_tag is not None:
            found = hook.experiments.find_run(project_id, experiment_id, self.run_tag)
            if found is None:
                raise CmlMetricGateError(
                    f"No run of experiment {self.experiment!r} is tagged {dict(self.run_tag)!r}: the "
                    "training job did not log one (or sets other tags). Put a CmlExperimentRunSensor "
                    "with the same run_tag before the gate."
                )
            run_id = str(found["id"])
        elif isinstance(self.run_id, str) and self.run_id.strip():
            run_id = self.run_id.strip()
        else:
            raise CmlConfigError(f"run_id must be the ID of an experiment run, not {self.run_id!r}.")
        run = hook.experiments.get_run(ExperimentRunRef(project_id, experiment_id, run_id))
        status = EXPERIMENT_RUN.status_of(run)
        if status != "EXPERIMENT_RUN_FINISHED":
            raise CmlMetricGateError(
                f"Candidate experiment run {run_id} is {status}, not EXPERIMENT_RUN_FINISHED: its metrics "
                "may not be final. Wait for it with CmlExperimentRunSensor before the gate."
            )
        metrics = metrics_of(run)
        value = number(metrics.get(self.metric))
        if value is None:
            keys = ", ".join(sorted(metrics)) or "no metrics at all"
            had = "is NaN or not a number" if self.metric in metrics else "is missing"
            raise CmlMetricMissingError(
                f"Candidate experiment run {run_id} has no usable {self.metric!r} metric (it {had}); "
                f"the run has: {keys}. Check the metric's name against the training job's log_metric."
            )
        return {"project_id": project_id, "experiment_id": experiment_id, "run_id": run_id, "value": value}

    def _baseline(self) -> dict[str, Any]:
        """The baseline's value and where it came from (``missing`` says why there is none)."""
        if self.baseline_model is None:
            return {"value": float(self.baseline), "source": "number", "missing": None}  # type: ignore[arg-type]
        project_id = str(self.hook.resolve_project(self.baseline_project or self.project)["id"])
        found = self.hook.experiments.deployed_baseline(project_id, self.baseline_model, self.metric)
        return {**found, "source": "deployed model"}

    def decide(self, candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
        """The comparison: whether the candidate passes, both values, why (pure: no requests).

        :param candidate: ``project_id``, ``experiment_id``, ``run_id``, ``value``.
        :param baseline: ``value`` (``None``: no baseline; ``missing`` says why), ``source`` and the IDs.
        :raises CmlMetricGateError: no baseline and ``if_no_baseline="fail"``.
        """
        from airflow_provider_cml.workloads.experiments import beats, improvement

        ids = ("model_id", "build_id", "deployment_id", "model_version_id", "run_id")
        base = {
            "value": baseline.get("value"),
            "source": baseline["source"],
            **{k: baseline.get(k) for k in ids},
        }
        result: dict[str, Any] = {
            "metric": self.metric,
            "candidate": dict(candidate),
            "baseline": base,
            "min_improvement": self.min_improvement,
            "higher_is_better": self.higher_is_better,
        }
        value, better = candidate["value"], "higher" if self.higher_is_better else "lower"
        if base["value"] is None:
            why = f"There is no baseline: {baseline.get('missing') or 'none was found'}"
            if self.if_no_baseline == "fail":
                raise CmlMetricGateError(f'{why}; the gate was told to fail then (if_no_baseline="fail").')
            return {
                **result,
                "passed": True,
                "improvement": None,
                "reason": f'{why}; passed (if_no_baseline="pass").',
            }
        gain = improvement(value, base["value"], self.higher_is_better)
        passed = beats(gain, self.min_improvement)
        verdict = "beats" if passed else "does not beat"
        reason = (
            f"Candidate {self.metric}={value} {verdict} the baseline {base['value']} by more than "
            f"{self.min_improvement} ({better} is better; improvement {gain})."
        )
        return {**result, "passed": passed, "improvement": gain, "reason": reason}

    def _skip_downstream(self, context: Context) -> None:
        """Skip the downstream tasks, as ShortCircuitOperator does on this Airflow version."""
        task = context["task"]
        relatives = (
            task.get_flat_relatives(upstream=False)
            if self.ignore_downstream_trigger_rules
            else task.get_direct_relatives(upstream=False)
        )
        to_skip = [t for t in relatives if not getattr(t, "is_teardown", False)]
        if not to_skip:
            return
        self.log.info("Skipping downstream tasks: %s", ", ".join(sorted(t.task_id for t in to_skip)))
        if AIRFLOW_V_3_0_PLUS:
            self.skip(ti=context["ti"], tasks=to_skip)
        else:  # Airflow 2: the dag run, its logical date and the map index
            dag_run = context["dag_run"]
            self.skip(  # type: ignore[call-arg]
                dag_run=dag_run,
                execution_date=dag_run.logical_date,
                tasks=to_skip,
                map_index=context["ti"].map_index,
            )


def _check_number(name: str, value: Any, *, allow_none: bool) -> None:
    """Refuse a value that is not a finite number (NaN compares false with everything)."""
    import math

    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CmlConfigError(f"{name} must be a finite number, not {value!r}.")
