"""An experiment-run sensor inside real Airflow (dag.test) against the local workbench, sync and deferrable."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.system.test_dags import _states

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
