"""``make demo``: run the example DAGs with real Airflow against the local Cloudera AI workbench.

Everything lives in ``.demo/`` (a throwaway AIRFLOW_HOME on SQLite, the workbench's run output, and
``airflow.log`` with Airflow's own logs). Prints progress and a summary per task; exits non-zero if a
DAG run failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
PROJECT_DIR = ROOT / "example_dags" / "cml_demo_project"
LOGICAL_DATE = "2024-06-01"
DAGS = (
    "cml_example_pipeline",
    "cml_example_legacy_v1",
    "cml_example_jobs_as_code",
    "cml_example_mlops",
    "cml_example_model_gate",
)
# The gated loop runs twice: the first training deploys; the second trains on noisier labels, so
# its AUC is lower than the serving version's and the gate keeps it out.
RUNS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "cml_example_model_gate": [(LOGICAL_DATE, {}), ("2024-06-02", {"label_noise": 0.35})],
}


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def airflow(*args: str, log: Path) -> int:
    with log.open("a") as out:
        out.write(f"\n$ airflow {' '.join(args)}\n")
        out.flush()
        return subprocess.call([sys.executable, "-m", "airflow", *args], stdout=out, stderr=subprocess.STDOUT)


# The example DAGs carry production values (30 s polls, 5 min sensor checks); the demo's jobs take
# seconds. An Airflow cluster policy shortens the intervals without touching the DAGs users copy.
DEMO_POLICY = "from airflow_provider_cml.testing.policy import fast_polls as task_policy\n"


def start_workbench(api_key_holder: dict[str, str]) -> subprocess.Popen[bytes]:
    spec = json.loads((PROJECT_DIR / "workbench.json").read_text())
    for project in spec["projects"]:
        project["folder"] = str(PROJECT_DIR)
        project["env"]["DATA_DIR"] = str(DEMO / "data")
    api_key_holder["key"] = next(iter(spec["api_keys"]))
    api_key_holder["legacy_key"] = spec["legacy_keys"][0]  # v1 takes the legacy key (CDSW_API_KEY)
    (DEMO / "workbench.json").write_text(json.dumps(spec, indent=2))
    url_file = DEMO / "workbench.url"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_cml.testing",
            "--spec",
            str(DEMO / "workbench.json"),
            "--url-file",
            str(url_file),
            "--output-dir",
            str(DEMO / "runs"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(DEMO / "workbench.log").open("w"),
    )
    deadline = time.monotonic() + 20
    while not url_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"The workbench did not start; see {DEMO / 'workbench.log'}")
        time.sleep(0.1)
    return process


def summarize() -> bool:
    """Print one line per task from Airflow's database and the workbench; True if all DAG runs passed."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    from airflow_provider_cml.hooks.cml import CmlHook

    hook = CmlHook()
    all_ok = True
    print()
    print(f"{'task':<48} {'CML run':<18} {'final status':<18} the script saw")
    with create_session() as session:
        for dag_id in DAGS:
            dag_runs = session.query(DagRun).filter_by(dag_id=dag_id).order_by(DagRun.id).all()
            if len(dag_runs) != len(RUNS.get(dag_id, [None])):
                print(f"{dag_id}: {len(dag_runs)} DAG runs found")
                all_ok = False
            for number, dag_run in enumerate(dag_runs, 1):
                if len(dag_runs) > 1:
                    print(f"-- {dag_id}, DAG run {number} of {len(dag_runs)}, conf {dag_run.conf or {}}")
                all_ok &= _summarize_run(session, hook, dag_run)
    # Cloudera AI starts publish-report by itself when train-model succeeds (a dependent job).
    for run in hook.list_job_runs("Demo Analytics", "publish-report"):
        label = "(dependent job) publish-report"
        print(f"{label:<48} {run['id']:<18} {run['status']:<18} {_override_seen(run['id'])}")
    print(f"\nRuns executed by the workbench: {len(list((DEMO / 'runs').glob('*.log')))}")
    return all_ok


def _summarize_run(session: Any, hook: Any, dag_run: Any) -> bool:
    """One line per task of ``dag_run``; True if the DAG run succeeded."""
    from airflow.models import TaskInstance

    try:
        from airflow.models.xcom import XComModel as XCom
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom

    dag_id = dag_run.dag_id
    tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=dag_run.run_id).all()
    for ti in sorted(tis, key=lambda t: t.start_date or dag_run.start_date):
        xcoms = {
            x.key: x.value
            for x in session.query(XCom).filter_by(
                dag_id=dag_id, run_id=dag_run.run_id, task_id=ti.task_id, map_index=ti.map_index
            )
        }
        run_id = _plain(xcoms.get("run_id") or xcoms.get("engine_id"))
        task_state = str(getattr(ti.state, "value", ti.state))
        status, saw = f"(task {task_state})", ""
        if run_id:
            status = _run_status(hook, run_id)
            saw = _override_seen(run_id)
        elif "deployment_id" in xcoms:  # the model's deployment, read back from the workbench
            ids = _value(xcoms["return_value"])
            from airflow_provider_cml.workloads.models import DeploymentRef

            status = str(hook.models.get_deployment(DeploymentRef(**ids))["status"])
            run_id = ids["deployment_id"][:18]
        elif ti.task_id == "smoke_test" and "return_value" in xcoms:
            saw = f"prediction {_plain(xcoms.get('return_value'))}"
        elif ti.task_id == "gate" and "return_value" in xcoms:  # the metric gate's decision
            decision = _value(xcoms["return_value"])
            status = "passed" if decision["passed"] else "gated out"
            saw = decision["reason"]
        elif ti.task_id == "register" and "return_value" in xcoms:
            version = _value(xcoms["return_value"])
            run_id, status = version["model_version_id"][:18], f"version {version['version_number']}"
        name = f"{dag_id}.{ti.task_id}" + (f"[{ti.map_index}]" if ti.map_index >= 0 else "")
        print(f"{name:<48} {run_id or '-':<18} {status:<18} {saw}")
    return str(getattr(dag_run.state, "value", dag_run.state)) == "success"


def _value(value: object) -> Any:
    """An XCom's value as stored (JSON text or bytes on some Airflow versions), decoded."""
    if isinstance(value, bytes):
        value = value.decode()
    return json.loads(value) if isinstance(value, str) else value


def _plain(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    with contextlib.suppress(ValueError):
        value = json.loads(value) if isinstance(value, str) else value
    return str(value)


def _run_status(hook: object, run_id: str) -> str:
    from airflow_provider_cml.hooks.cml import CmlHook

    assert isinstance(hook, CmlHook)
    for job in hook.list_jobs("Demo Analytics"):
        for run in hook.list_job_runs("Demo Analytics", job["id"]):
            if run["id"] == run_id:
                return str(run["status"])
    return "(job deleted)"  # CmlSubmitRunOperator(delete_job_after=True) removed the run's job


def _override_seen(run_id: str) -> str:
    output = DEMO / "runs" / f"{run_id}.log"
    if not output.exists():
        return ""
    for line in output.read_text().splitlines():
        if line.startswith("OVERRIDE "):
            return line[len("OVERRIDE ") :]
    return ""


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    log = DEMO / "airflow.log"
    os.environ.update(
        {
            "AIRFLOW_HOME": str(DEMO / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # dag.test() runs triggers in-process, with no scheduler: no deferral race to hold
            # trigger events back for (a real deployment keeps the default, see the README).
            "AIRFLOW__CML__TRIGGER_EVENT_HOLD": "0",
        }
    )
    (DEMO / "airflow" / "config").mkdir(parents=True)
    (DEMO / "airflow" / "config" / "airflow_local_settings.py").write_text(DEMO_POLICY)
    step(f"Airflow metadata database (SQLite) in {DEMO / 'airflow'}")
    if airflow("db", "migrate", log=log) != 0:
        print(f"airflow db migrate failed; see {log}")
        return 1
    step("Starting the local Cloudera AI workbench with the demo project")
    holder: dict[str, str] = {}
    workbench = start_workbench(holder)
    url = (DEMO / "workbench.url").read_text()
    print(f"    listening on {url}")
    # The local workbench serves its model service beside the API (a real one: modelservice.<domain>).
    connection = {
        "conn_type": "cml",
        "host": url,
        "password": holder["key"],
        "extra": {"model_service_url": f"{url}/model"},
    }
    os.environ["AIRFLOW_CONN_CML_DEFAULT"] = json.dumps(connection)
    legacy = {**connection, "password": holder["legacy_key"], "extra": {"api_version": "v1"}}
    # dag.test() runs deferred tasks' triggers in-process; the demo's deploy task is deferrable.
    os.environ["AIRFLOW_CONN_CML_LEGACY"] = json.dumps(legacy)
    try:
        for dag_id in DAGS:
            for date, conf in RUNS.get(dag_id, [(LOGICAL_DATE, {})]):
                args = ["-c", json.dumps(conf)] if conf else []
                step(f"airflow dags test {' '.join([*args, dag_id, date])}  (Airflow's logs: {log})")
                started = time.monotonic()
                code = airflow("dags", "test", *args, dag_id, date, log=log)
                print(f"    finished in {time.monotonic() - started:.1f}s (exit code {code})")
        time.sleep(1.5)  # let the dependent job that Cloudera AI starts by itself finish
        ok = summarize()
    finally:
        workbench.terminate()
        workbench.wait(timeout=20)
        step("Workbench stopped")
    print("\nDemo " + ("succeeded." if ok else f"FAILED: see {log}"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
