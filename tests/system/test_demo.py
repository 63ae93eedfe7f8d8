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
    lines = {
        line.split()[0]: line for line in out.splitlines() if line.startswith(("cml_example", "(dependent"))
    }
    assert "ENGINE_SUCCEEDED" in lines["cml_example_pipeline.prepare_data"]
    assert "RUN_DATE=2024-06-01" in lines["cml_example_pipeline.prepare_data"]
    assert "LEARNING_RATE=0.05" in lines["cml_example_pipeline.start_training"]
    assert "(task success)" in lines["cml_example_pipeline.wait_for_training"]
    assert "ENGINE_SUCCEEDED" in lines["cml_example_legacy_v1.start_legacy_job"]
    assert "ENGINE_SUCCEEDED" in lines["(dependent"]
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
    # @task.cml: the function chose the model by the day (2024-06-01 is a Saturday).
    assert "ENGINE_SUCCEEDED" in lines["cml_example_jobs_as_code.score_today"]
    assert "PARTITION_DATE=2024-06-01 MODEL=churn-v3-weekend" in lines["cml_example_jobs_as_code.score_today"]
    # MLOps: retrain, deploy (built, deployed), one prediction, the dashboard restarted.
    assert "ENGINE_SUCCEEDED" in lines["cml_example_mlops.retrain"]
    assert " deployed " in lines["cml_example_mlops.deploy_model"]  # read back from the workbench
    assert "(task success)" in lines["cml_example_mlops.smoke_test"]
    assert "'churn_probability'" in lines["cml_example_mlops.smoke_test"]  # the model's own answer
    assert "(task success)" in lines["cml_example_mlops.restart_dashboard"]
    submitted = [
        line for name, line in lines.items() if name.startswith("cml_example_jobs_as_code.backfill_day")
    ]
    assert len(submitted) == 2 and all("(job deleted)" in line for line in submitted)
    # Train → gate → register → deploy, twice: the first training is deployed (nothing served before
    # it), the second (noisier labels, a lower AUC than the serving version's) is gated out.
    first, second = out.split("-- cml_example_model_gate, DAG run ")[1:3]
    gated = {line.split()[0]: line for line in second.splitlines() if line.startswith("cml_example")}
    passed = {line.split()[0]: line for line in first.splitlines() if line.startswith("cml_example")}
    assert "LABEL_NOISE=0.1 " in passed["cml_example_model_gate.train"]
    assert (
        " passed " in passed["cml_example_model_gate.gate"]
        and "no baseline" in passed["cml_example_model_gate.gate"]
    )
    assert " version 1 " in passed["cml_example_model_gate.register"]
    assert " deployed " in passed["cml_example_model_gate.deploy"]
    assert "(task success)" in passed["cml_example_model_gate.smoke_test"]
    assert "LABEL_NOISE=0.35 " in gated["cml_example_model_gate.train"]
    assert " gated out " in gated["cml_example_model_gate.gate"]
    assert "does not beat the baseline" in gated["cml_example_model_gate.gate"]
    for task in ("register", "deploy", "smoke_test"):
        assert "(task skipped)" in gated[f"cml_example_model_gate.{task}"]
