"""A real deployment: the provider from a built wheel in its own virtualenv, Airflow's real services.

api-server, scheduler, dag-processor and triggerer run as separate processes (LocalExecutor, SQLite),
a deferrable DAG is triggered through the REST API against the local workbench, and the test checks
the task's states, that its wait went through the triggerer, and that the run was started once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_cml._compat import AIRFLOW_VERSION
from tests.conftest import API_KEY

ROOT = Path(__file__).parent.parent
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
_major, _minor = (int(p) for p in AIRFLOW_VERSION.split(".")[:2])

pytestmark = [
    pytest.mark.skipif((_major, _minor) < (3, 3), reason="the real-services run is set up for Airflow 3.3+"),
    pytest.mark.skipif(
        UV is None, reason="needs uv (make install puts it in the virtualenv) to build the wheel"
    ),
    pytest.mark.airflow_dag,
]

DAG_FILE = """
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_cml.operators.cml import CmlRunJobOperator

with DAG("cml_real_services", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    CmlRunJobOperator(
        task_id="deferred",
        project="Analytics",
        job="sleeper",
        environment={"SLEEP": "8"},  # long enough for many polls after the triggerer picks it up
        poll_interval=0.5,
        deferrable=True,
    )
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*args: str, **kwargs) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, workbench) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("deployment")
    _run(UV, "build", "--wheel", "--out-dir", str(base / "dist"), str(ROOT))
    wheel = next((base / "dist").glob("airflow_provider_cml-*.whl"))
    venv = base / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    _run(
        UV,
        "pip",
        "install",
        "--quiet",
        "--python",
        str(python),
        f"apache-airflow=={AIRFLOW_VERSION}",
        str(wheel),
    )
    (base / "dags").mkdir()
    (base / "dags" / "cml_real_services.py").write_text(DAG_FILE)
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "PYTHONPATH", "VIRTUAL_ENV"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(base / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(base / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW_CONN_CML_DEFAULT": workbench.airflow_connection(API_KEY),
        }
    )
    airflow = [str(venv / "bin" / "airflow")]
    _run(*airflow, "db", "migrate", env=env)
    processes = []
    logs = {}
    for service in (["api-server", "--port", str(port)], ["scheduler"], ["dag-processor"], ["triggerer"]):
        logs[service[0]] = base / f"{service[0]}.log"
        with logs[service[0]].open("w") as out:
            processes.append(subprocess.Popen([*airflow, *service], env=env, stdout=out, stderr=out))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            dead = [p.args[1] for p in processes if p.poll() is not None]
            assert not dead, f"{dead} exited: " + "".join(log.read_text()[-2000:] for log in logs.values())
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.5)
        yield {"url": url, "logs": logs, "home": base / "home"}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_deferrable_task_through_the_real_services(deployment, wb):
    url = deployment["url"]
    headers = {
        "Authorization": f"Bearer {requests.get(f'{url}/auth/token', timeout=10).json()['access_token']}"
    }
    deadline = time.monotonic() + 120
    while (
        requests.get(f"{url}/api/v2/dags/cml_real_services", headers=headers, timeout=10).status_code != 200
    ):
        assert time.monotonic() < deadline, "the dag-processor did not parse the DAG"
        time.sleep(1)
    created = requests.post(
        f"{url}/api/v2/dags/cml_real_services/dagRuns",
        json={"logical_date": None},
        headers=headers,
        timeout=30,
    )
    created.raise_for_status()
    run_id = created.json()["dag_run_id"]
    states: list[str] = []
    deadline = time.monotonic() + 240
    while True:
        ti = requests.get(
            f"{url}/api/v2/dags/cml_real_services/dagRuns/{run_id}/taskInstances/deferred",
            headers=headers,
            timeout=30,
        ).json()
        if not states or states[-1] != ti.get("state"):
            states.append(ti.get("state"))
        if ti.get("state") in ("success", "failed", "upstream_failed"):
            break
        assert time.monotonic() < deadline, f"the task did not finish: {states}"
        time.sleep(0.3)
    logs = {name: path.read_text() for name, path in deployment["logs"].items()}
    assert states[-1] == "success", (states, logs["triggerer"][-3000:], logs["scheduler"][-3000:])
    # The wait went through the triggerer, which logged status changes (not polls) in the task's log.
    task_logs = sorted((deployment["home"] / "logs" / "dag_id=cml_real_services").rglob("*.log"))
    worker_log = "".join(p.read_text() for p in task_logs if ".trigger." not in p.name)
    trigger_log = "".join(p.read_text() for p in task_logs if ".trigger." in p.name)
    assert "Pausing task as DEFERRED" in worker_log, worker_log[-3000:]
    assert "is ENGINE_SUCCEEDED." in trigger_log and trigger_log.count("is ENGINE_RUNNING.") == 1, trigger_log
    # What a deployment used to show and must not: the extra link's missing XCom, masking warnings.
    everything = worker_log + trigger_log + "".join(logs.values())
    assert "XCom not found" not in everything and "Skipping masking" not in everything
    # One start, whatever the services did.
    starts = wb.requests("POST", r"/api/v2/projects/[^/]+/jobs/[^/]+/runs")
    assert len(starts) == 1
    job = wb.workbench.job_by_name("Analytics", "sleeper")
    assert wb.workbench.runs_of(job)[-1].status == "ENGINE_SUCCEEDED"
