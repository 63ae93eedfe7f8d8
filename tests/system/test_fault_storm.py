"""100 job runs through CmlRunJobOperator (sync and deferrable) while ~20% of requests fail."""

from __future__ import annotations

import collections
import json

import pytest

from airflow_provider_cml.testing import Faults, local_workbench
from tests.conftest import API_KEY, TESTS
from tests.contract import check_exchanges
from tests.dags.cml_storm_dag import STORM_TASKS, storm_job, storm_should_fail

pytestmark = pytest.mark.airflow_dag


@pytest.fixture
def storm_workbench(monkeypatch):
    jobs = [{"name": storm_job(i), "script": "report_env.py"} for i in range(STORM_TASKS)]
    spec = {
        "api_keys": [API_KEY],
        "projects": [{"name": "Storm", "owner": "ops", "folder": "jobs", "jobs": jobs}],
    }
    with local_workbench(spec, base_dir=TESTS, step_delay=0.01) as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_CML_STORM", server.airflow_connection(API_KEY, max_retries=10, retry_backoff=0.05)
        )
        yield server


def test_fault_storm(storm_workbench, dagbag):
    server = storm_workbench
    server.faults = Faults(
        error_rate=0.07,
        rate_limit_rate=0.05,
        retry_after=0.05,
        reset_rate=0.04,
        lost_response_rate=0.25,  # POSTs only: the run is created, the answer is lost
        slow_rate=0.03,
        latency=0.05,
        seed=20261122,
    )
    dag_run = dagbag.get_dag("cml_test_fault_storm").test()
    server.faults = None

    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    expected = {
        storm_job(i).replace("-", "_"): "failed" if storm_should_fail(i) else "success"
        for i in range(STORM_TASKS)
    }
    runs_per_job = collections.Counter(run.job.name for run in server.workbench.runs.values())
    duplicates = {job: n for job, n in runs_per_job.items() if n != 1}
    faults = collections.Counter(e.fault for e in server.journal if e.fault)
    requests = len(server.journal)
    faulted = sum(faults.values())
    print(
        "\nfault storm: "
        + json.dumps(
            {
                "runs": len(server.workbench.runs),
                "tasks": len(states),
                "requests": requests,
                "faults injected": faulted,
                "fault share": round(faulted / requests, 3),
                "by kind": dict(faults),
                # every fault but "slow" costs the client one retry, or one look-up for a lost start
                "retries or look-ups made": faulted - faults["slow"],
                "duplicates found": len(duplicates),
            }
        )
    )
    assert states == expected, {t: (states.get(t), s) for t, s in expected.items() if states.get(t) != s}
    assert not duplicates, duplicates
    assert len(server.workbench.runs) == STORM_TASKS
    assert 0.15 <= faulted / requests <= 0.30
    assert faults["lost_response"] >= 5 and faults["reset"] >= 5 and faults["rate_limit"] >= 5
    assert not server.workbench.active_runs()
    # Under faults too, every answer and every request body stays within the API's contract.
    problems = check_exchanges(server.journal)
    assert not problems, problems[:10]
