"""An experiment-run sensor inside real Airflow (dag.test) against the local workbench, sync and deferrable."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.system.test_dags import _states, _xcom

pytestmark = pytest.mark.airflow_dag


def _started_run(wb, finish_as: str):
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    name = f"dag-{uuid.uuid4().hex[:8]}"
    run = wb.workbench.experiments.add_run(pid, name)

    def finish() -> None:  # as the job's MLflow code would, once the sensor has seen it running
        deadline = time.monotonic() + 60
        while not wb.requests("GET", rf".*/runs/{run.id}") and time.monotonic() < deadline:
            time.sleep(0.05)
        wb.workbench.experiments.set_run(run.id, status=finish_as)

    timer = threading.Thread(target=finish, daemon=True)
    timer.start()
    return name, run, timer


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_the_sensor_waits_for_the_run_to_finish(wb, dagbag, mode):
    name, run, timer = _started_run(wb, "FINISHED")
    dag_run = dagbag.get_dag(f"cml_test_experiment_run_{mode}").test(
        run_conf={"experiment": name, "run_id": run.id}
    )
    timer.join()
    assert _states(dag_run) == {"trained": "success"}
    reads = wb.requests("GET", rf".*/runs/{run.id}")
    assert len(reads) >= 2  # it saw the run running before it saw it finished


def test_a_failed_run_fails_the_task(wb, dagbag, capfd):
    name, run, timer = _started_run(wb, "FAILED")
    dag_run = dagbag.get_dag("cml_test_experiment_run_deferrable").test(
        run_conf={"experiment": name, "run_id": run.id}
    )
    timer.join()
    assert _states(dag_run) == {"trained": "failed"}
    assert "EXPERIMENT_RUN_FAILED" in "".join(capfd.readouterr())


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_the_sensor_finds_the_run_by_its_tag_once_the_job_logs_it(wb, dagbag, mode):
    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    name, tag = f"dag-tag-{uuid.uuid4().hex[:8]}", f"manual__{uuid.uuid4().hex[:8]}"
    first = wb.workbench.experiments.add_run(pid, name, tags={"airflow_run_id": "another-dag-run"})
    listing = rf".*/experiments/{first.experiment.id}/runs"

    def train() -> None:  # the job logs its run (tagged) once the sensor has looked for it in vain
        deadline = time.monotonic() + 60
        while not wb.requests("GET", listing) and time.monotonic() < deadline:
            time.sleep(0.05)
        wb.workbench.experiments.add_run(pid, name, status="FINISHED", tags={"airflow_run_id": tag})

    timer = threading.Thread(target=train, daemon=True)
    timer.start()
    dag_run = dagbag.get_dag(f"cml_test_experiment_run_by_tag_{mode}").test(
        run_conf={"experiment": name, "tag": tag}
    )
    timer.join()
    assert _states(dag_run) == {"trained": "success"}
    assert len(wb.requests("GET", listing)) >= 2  # it looked before the run was there, and after


def test_a_run_its_ended_job_run_left_running_fails_the_deferred_sensor(wb, dagbag, capfd):
    from tests.hooks.test_experiments import ended_job_run

    pid = next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")
    name = f"dag-bounded-{uuid.uuid4().hex[:8]}"
    run = wb.workbench.experiments.add_run(pid, name)  # RUNNING for ever: its script was killed
    job_run = ended_job_run(wb)
    dag_run = dagbag.get_dag("cml_test_experiment_run_bounded").test(
        run_conf={"experiment": name, "run_id": run.id, "job_run": job_run}
    )
    assert _states(dag_run) == {"trained": "failed"}
    assert f"job run {job_run['run_id']} that logs it" in "".join(capfd.readouterr())


@pytest.mark.parametrize(("auc", "states"), [(0.9, "success"), (0.805, "skipped")])
def test_the_gate_lets_a_better_model_through_and_skips_deployment_otherwise(wb, dagbag, capfd, auc, states):
    from tests.operators.test_experiments import deployed_version, trained

    _, serving_run = trained(wb, metrics={"auc": 0.8})
    model = deployed_version(wb, serving_run)
    tag = f"manual__{uuid.uuid4().hex[:8]}"
    name, candidate = trained(wb, metrics={"auc": auc}, tags={"airflow_run_id": tag})
    dag_run = dagbag.get_dag("cml_test_metric_gate").test(
        run_conf={"experiment": name, "tag": tag, "model": model}
    )
    assert _states(dag_run) == {"gate": "success", "deploy": states, "smoke": states}
    result = _xcom(dag_run, "gate", "return_value")
    assert result["passed"] is (states == "success") and result["candidate"]["run_id"] == candidate.id
    assert result["baseline"]["value"] == 0.8 and result["baseline"]["run_id"] == serving_run.id
    logged = "".join(capfd.readouterr())
    assert f"{candidate.id} auc={auc}, baseline (deployed model) 0.8" in logged
