"""CmlMetricGateOperator: the comparison rules (pure), then the whole gate over real HTTP to the workbench."""

from __future__ import annotations

import math
import re
import uuid
from typing import Any
from unittest import mock

import pytest

from airflow_provider_cml.exceptions import CmlConfigError, CmlMetricGateError, CmlMetricMissingError
from airflow_provider_cml.operators.experiments import CmlMetricGateOperator
from airflow_provider_cml.workloads.experiments import beats, improvement, number

CANDIDATE = {"project_id": "p", "experiment_id": "e", "run_id": "r", "value": 0.9}


def _gate(**options: Any) -> CmlMetricGateOperator:
    args: dict[str, Any] = {"project": "Analytics", "experiment": "x", "metric": "auc", "run_id": "r"}
    if "baseline_model" not in options:
        args["baseline"] = 0.8
    return CmlMetricGateOperator(task_id="gate", **{**args, **options})


# -- the rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "baseline", "higher", "margin", "passed"),
    [
        (0.9, 0.8, True, 0.0, True),  # higher is better: better
        (0.7, 0.8, True, 0.0, False),  # worse
        (0.8, 0.8, True, 0.0, False),  # as good is not better
        (0.2, 0.3, False, 0.0, True),  # lower is better (a loss): better
        (0.4, 0.3, False, 0.0, False),
        (0.81, 0.8, True, 0.01, False),  # exactly the margin (0.010000000000000009 in floats): not more
        (0.8101, 0.8, True, 0.01, True),
        (0.29, 0.3, False, 0.01, False),  # the margin, lower is better
        (0.79, 0.8, True, -0.02, True),  # a tolerated regression
        (math.inf, math.inf, True, 0.0, False),  # inf - inf: not better
    ],
)
def test_the_candidate_passes_only_when_it_beats_the_baseline_by_more_than_the_margin(
    candidate, baseline, higher, margin, passed
):
    assert beats(improvement(candidate, baseline, higher), margin) is passed
    result = _gate(baseline=0.0, higher_is_better=higher, min_improvement=margin).decide(
        {**CANDIDATE, "value": candidate}, {"value": baseline, "source": "number"}
    )
    assert result["passed"] is passed and ("does not beat" in result["reason"]) is not passed


@pytest.mark.parametrize(
    ("value", "read"),
    [
        *[(0.5, 0.5), (1, 1.0), ("0.25", 0.25), ("Infinity", math.inf), ("NaN", None), (math.nan, None)],
        *[(None, None), (True, None), ("high", None), ({"v": 1}, None)],
    ],
)
def test_metric_values_as_proto3_json_sends_them(value, read):
    assert number(value) == read


def test_no_baseline_passes_or_fails_as_told_and_says_why():
    missing = {"value": None, "source": "deployed model", "missing": "no deployment of model 'm' is deployed"}
    result = _gate(baseline_model="m").decide(CANDIDATE, missing)
    assert result["passed"] is True and result["improvement"] is None
    assert "no deployment of model 'm' is deployed" in result["reason"] and "pass" in result["reason"]
    with pytest.raises(CmlMetricGateError, match=r"no deployment of model 'm'.*if_no_baseline=\"fail\""):
        _gate(baseline_model="m", if_no_baseline="fail").decide(CANDIDATE, missing)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"run_id": None}, "exactly one of run_id and run_tag"),
        ({"run_tag": {"t": "v"}}, "exactly one of run_id and run_tag"),
        ({"baseline": None}, "exactly one of baseline"),
        ({"baseline_model": "m", "baseline": 0.5}, "exactly one of baseline"),
        ({"baseline": math.nan}, "baseline must be a finite number"),
        ({"baseline": "0.8"}, "baseline must be a finite number"),
        ({"min_improvement": math.inf}, "min_improvement must be a finite number"),
        ({"if_no_baseline": "skip"}, "if_no_baseline"),
    ],
)
def test_wrong_arguments_fail_when_the_dag_is_parsed(options, words):
    with pytest.raises(CmlConfigError, match=words):
        _gate(**options)


# -- through real HTTP against the workbench ---------------------------------------------------------


def analytics(wb) -> str:
    return next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")


def trained(wb, status="FINISHED", metrics=None, tags=None):
    """A run of a fresh experiment (names are unique across the workspace): ``(experiment name, run)``."""
    name = f"gate-{uuid.uuid4().hex[:8]}"
    return name, wb.workbench.experiments.add_run(
        analytics(wb), name, status=status, metrics=metrics, tags=tags
    )


def deployed_version(wb, run, *, from_file: bool = False, deployment_status: str = "deployed") -> str:
    """A model serving the registered version ``run`` logged: its name.

    Set up on the workbench's objects, since its registry answers only GETs (the registry's POST is
    another branch's): a registered model whose version's ``mlflow_metadata`` names ``run``, a model
    linked to it, a built build from that version (``from_file``: from a file, no version) and a
    deployment in ``deployment_status``. An older build's stopped deployment sits beside it.
    """
    from airflow_provider_cml.testing.serving import Build, Deployment

    serving, name = wb.workbench.serving, f"scorer-{uuid.uuid4().hex[:8]}"
    with wb.workbench.lock:
        project = wb.workbench.project(analytics(wb))
        registered = serving.register({"name": name, "versions": [{"number": 1}]})
        version = registered["model_versions"][0]
        version["model_version_metadata"] = {
            "mlops_type": "MLFLOW",
            "project_id": project.id,
            "mlflow_metadata": {"experiment_id": run.experiment.id, "run_id": run.id},
        }
        model = serving.create_model(
            project, {"name": name, "description": "gated", "registered_model_id": registered["model_id"]}
        )
        for status in ("stopped", deployment_status):
            source = ("model.py", "predict", "") if from_file else ("", "", version["model_version_id"])
            build = Build(str(uuid.uuid4()), model, "", source[0], source[1], "", "", source[2], "built")
            serving.builds[build.id] = build
            deployment = Deployment(str(uuid.uuid4()), build, 1.0, 2.0, 0, 1, {}, status)
            serving.deployments[deployment.id] = deployment
    return name


def _context(downstream=()):
    task = mock.Mock(**{"get_flat_relatives.return_value": list(downstream)})
    return {"ti": mock.Mock(map_index=-1), "task": task, "dag_run": mock.Mock()}


def test_a_better_run_than_the_deployed_version_passes_with_the_whole_chain_in_the_result(wb):
    _, serving_run = trained(wb, metrics={"auc": 0.8, "loss": 0.4})
    model = deployed_version(wb, serving_run)
    name, candidate = trained(wb, metrics={"auc": 0.85})
    gate = _gate(experiment=name, run_id=candidate.id, baseline_model=model, min_improvement=0.01)
    result = gate.execute(_context())
    assert result["passed"] is True and result["improvement"] == pytest.approx(0.05)
    assert result["candidate"] == {
        "project_id": analytics(wb),
        "experiment_id": candidate.experiment.id,
        "run_id": candidate.id,
        "value": 0.85,
    }
    baseline = result["baseline"]
    serving = wb.workbench.serving
    deployment = serving.deployments[baseline["deployment_id"]]
    assert deployment.status == "deployed" and deployment.build.id == baseline["build_id"]
    assert baseline["model_version_id"] == deployment.build.registered_model_version_id
    assert baseline == {**baseline, "value": 0.8, "source": "deployed model", "run_id": serving_run.id}
    assert baseline["model_id"] == deployment.build.model.id


def test_a_worse_run_is_gated_out_and_downstream_tasks_are_skipped_with_the_comparison_pushed(wb):
    _, serving_run = trained(wb, metrics={"loss": 0.30})
    model = deployed_version(wb, serving_run)
    name, candidate = trained(wb, metrics={"loss": 0.31})
    gate = _gate(
        experiment=name, run_id=candidate.id, metric="loss", baseline_model=model, higher_is_better=False
    )
    downstream = [mock.Mock(task_id="deploy", is_teardown=False), mock.Mock(task_id="tidy", is_teardown=True)]
    context = _context(downstream)
    with mock.patch.object(CmlMetricGateOperator, "skip") as skip:
        result = gate.execute(context)
    assert result["passed"] is False and result["improvement"] == pytest.approx(-0.01)
    context["ti"].xcom_push.assert_called_once_with(key="return_value", value=result)
    assert [t.task_id for t in skip.call_args.kwargs["tasks"]] == ["deploy"]  # never a teardown


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("file", "built from a file, not a registered model version"),
        ("pending", "no deployment of model .* is deployed"),
        ("no metric", r"has no usable 'auc' metric \(its metrics: loss\)"),
        ("no model", "no model named 'no-such-model'"),
    ],
)
def test_no_baseline_from_the_deployed_model_passes_or_fails_as_told(wb, setup, words):
    _, serving_run = trained(wb, metrics={"auc": 0.9} if setup != "no metric" else {"loss": 0.1})
    model = "no-such-model"
    if setup != "no model":
        status = "pending" if setup == "pending" else "deployed"
        model = deployed_version(wb, serving_run, from_file=setup == "file", deployment_status=status)
    name, candidate = trained(wb, metrics={"auc": 0.5})
    result = _gate(experiment=name, run_id=candidate.id, baseline_model=model).execute(_context())
    assert result["passed"] is True and result["baseline"]["value"] is None
    assert re.search(words, result["reason"])
    with pytest.raises(CmlMetricGateError, match=words):
        _gate(experiment=name, run_id=candidate.id, baseline_model=model, if_no_baseline="fail").execute(
            _context()
        )


def test_a_candidate_without_the_metric_fails_naming_the_keys_it_has(wb):
    name, candidate = trained(wb, metrics={"accuracy": 0.9, "loss": 0.2})
    with pytest.raises(
        CmlMetricMissingError, match=r"no usable 'auc' metric \(it is missing\).*accuracy, loss"
    ):
        _gate(experiment=name, run_id=candidate.id).execute(_context())


@pytest.mark.parametrize("status", ["RUNNING", "FAILED"])
def test_a_candidate_that_has_not_finished_fails_the_gate(wb, status):
    name, candidate = trained(wb, status=status, metrics={"auc": 0.99})
    with pytest.raises(CmlMetricGateError, match=f"is EXPERIMENT_RUN_{status}, not EXPERIMENT_RUN_FINISHED"):
        _gate(experiment=name, run_id=candidate.id).execute(_context())


def test_a_candidate_by_tag_is_the_latest_tagged_run_and_none_tagged_is_a_clear_failure(wb):
    name, first = trained(wb, metrics={"auc": 0.7}, tags={"airflow_run_id": "r1"})
    retried = wb.workbench.experiments.add_run(
        analytics(wb), name, status="FINISHED", metrics={"auc": 0.95}, tags={"airflow_run_id": "r1"}
    )
    with wb.workbench.lock:  # the retry's run started later
        first.start_time = "2020-01-01T00:00:00Z"
    result = _gate(experiment=name, run_id=None, run_tag={"airflow_run_id": "r1"}).execute(_context())
    assert result["candidate"]["run_id"] == retried.id and result["passed"] is True
    with pytest.raises(
        CmlMetricGateError, match=r"No run of experiment .* is tagged \{'airflow_run_id': 'r2'\}"
    ):
        _gate(experiment=name, run_id=None, run_tag={"airflow_run_id": "r2"}).execute(_context())


def test_it_is_registered_with_the_provider():
    from airflow_provider_cml.get_provider_info import get_provider_info

    modules = [m for s in get_provider_info()["operators"] for m in s["python-modules"]]
    assert "airflow_provider_cml.operators.experiments" in modules
