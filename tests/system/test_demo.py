"""`make demo`'s script, end to end: real Airflow (`airflow dags test`) runs the example DAGs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow_dag
ROOT = Path(__file__).parents[2]


def test_demo_runs_the_example_dags():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__CORE__DAGS"))}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Demo succeeded." in out
    lines = _by_task(out, "cml_example", "(dependent")
    _expect(
        lines,
        {
            "cml_example_pipeline.prepare_data": ("ENGINE_SUCCEEDED", "RUN_DATE=2024-06-01"),
            "cml_example_pipeline.start_training": ("LEARNING_RATE=0.05",),
            "cml_example_pipeline.wait_for_training": ("(task success)",),
            "cml_example_legacy_v1.start_legacy_job": ("ENGINE_SUCCEEDED",),
            "(dependent": ("ENGINE_SUCCEEDED",),
            # @task.cml: the function chose the model by the day (2024-06-01 is a Saturday).
            "cml_example_jobs_as_code.score_today": (
                "ENGINE_SUCCEEDED",
                "PARTITION_DATE=2024-06-01 MODEL=churn-v3-weekend",
            ),
            # MLOps: retrain, deploy (built, deployed: read back from the workbench), one prediction
            # (the model's own answer), the dashboard restarted.
            "cml_example_mlops.retrain": ("ENGINE_SUCCEEDED",),
            "cml_example_mlops.deploy_model": (" deployed ",),
            "cml_example_mlops.smoke_test": ("(task success)", "'churn_probability'"),
            "cml_example_mlops.restart_dashboard": ("(task success)",),
        },
    )
    # Jobs as code: the job defined in the DAG ran five times, one date each; two one-off jobs.
    fanned = sorted(
        line for name, line in lines.items() if name.startswith("cml_example_jobs_as_code.score_each_day")
    )
    assert len(fanned) == 5 and all(
        "ENGINE_SUCCEEDED" in line and "MODEL=churn-v3" in line for line in fanned
    )
    assert {line.split("PARTITION_DATE=")[1].split()[0] for line in fanned} == {
        "2024-05-27",
        "2024-05-28",
        "2024-05-29",
        "2024-05-30",
        "2024-05-31",
    }
    submitted = [
        line for name, line in lines.items() if name.startswith("cml_example_jobs_as_code.backfill_day")
    ]
    assert len(submitted) == 2 and all("(job deleted)" in line for line in submitted)
    # Train → gate → register → deploy, twice: the first training is deployed (nothing served before
    # it), the second (noisier labels, a lower AUC than the serving version's) is gated out.
    first, second = out.split("-- cml_example_model_gate, DAG run ")[1:3]
    gate = "cml_example_model_gate."
    _expect(
        _by_task(first, gate),
        {
            gate + "train": ("LABEL_NOISE=0.1 ",),
            gate + "gate": (" passed ", "no baseline"),
            gate + "register": (" version 1 ",),
            gate + "deploy": (" deployed ",),
            gate + "smoke_test": ("(task success)",),
        },
    )
    _expect(
        _by_task(second, gate),
        {
            gate + "train": ("LABEL_NOISE=0.35 ",),
            gate + "gate": (" gated out ", "does not beat the baseline"),
            **{gate + task: ("(task skipped)",) for task in ("register", "deploy", "smoke_test")},
        },
    )


def _by_task(out: str, *prefixes: str) -> dict[str, str]:
    """The demo's table lines that start with one of ``prefixes``, by their first word (the task)."""
    return {line.split()[0]: line for line in out.splitlines() if line.startswith(prefixes)}


def _expect(lines: dict[str, str], words: dict[str, tuple[str, ...]]) -> None:
    """Each task's line holds each of its words (a missing task fails with its name, not a KeyError)."""
    for task, wanted in words.items():
        assert task in lines, f"no line for {task} in the demo's table"
        for word in wanted:
            assert word in lines[task], f"{task}: {word!r} not in {lines[task]!r}"
