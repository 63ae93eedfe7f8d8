"""A real deployment: the provider from a built wheel in its own virtualenv, Airflow's real services.

api-server, scheduler, dag-processor and triggerer run as separate processes (LocalExecutor, a
PostgreSQL of its own),
a deferrable DAG is triggered through the REST API against the local workbench, and the test checks
the task's states, that its wait went through the triggerer, and that the run was started once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_cml._compat import AIRFLOW_VERSION
from tests.conftest import API_KEY
from tests.system.airflow_services import (
    FINAL,
    POSTGRES,
    POSTGRES_MISSING,
    UV,
    Services,
    postgres,
    runs_started_by,
    stop_leftovers,
    wait_for,
)
from tests.system.deployed_dags import KILLED_JOB, RERUN_JOB, model

_major, _minor = (int(p) for p in AIRFLOW_VERSION.split(".")[:2])

pytestmark = [
    pytest.mark.skipif((_major, _minor) < (3, 3), reason="the real-services run is set up for Airflow 3.3+"),
    pytest.mark.skipif(
        UV is None, reason="needs uv (make install puts it in the virtualenv) to build the wheel"
    ),
    pytest.mark.skipif(not POSTGRES, reason=POSTGRES_MISSING),
    pytest.mark.airflow_dag,
    pytest.mark.real_services,
]


@contextlib.contextmanager
def _local_on_postgres(base: Path) -> Iterator[dict[str, str]]:
    """LocalExecutor on a PostgreSQL of the deployment's own."""
    with postgres(base) as database:
        yield {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{database}",
        }


@pytest.fixture(scope="module")
def deployment(airflow_deployment) -> Iterator[Services]:
    with airflow_deployment(
        "deployment",
        dags="real_services",
        extras="postgres",
        backing=_local_on_postgres,
    ) as services:
        yield services


@pytest.fixture(scope="module", autouse=True)
def early(deployment: Services, workbench) -> Iterator[dict[str, Any]]:
    """Scenarios started as the module starts, to go on beside the others, each checked by its test at
    the end of the module: the fan-out (the longest) and the quick deferrable deploy (their run ids),
    the cleared task and the killed worker (each driven in a thread of its own: its future). Their
    tasks use jobs and a model no other scenario does. Runs still going when the module ends are stopped.
    """
    project = workbench.workbench.job_by_name("Analytics", "sleeper").project
    existing = {job.name for job in workbench.workbench.jobs.values()}
    for name in {RERUN_JOB, KILLED_JOB} - existing:
        workbench.workbench.add_job(project, name, script="sleeper.py")
    with concurrent.futures.ThreadPoolExecutor(2) as threads:
        yield {
            "cml_fanout": [deployment.trigger("cml_fanout") for _ in range(3)],
            "cml_deploy_deferrable": [deployment.trigger("cml_deploy_deferrable")],
            "cml_clear_rerun": threads.submit(_clear_and_rerun, deployment),
            "cml_kill_worker": threads.submit(_kill_the_worker, deployment, workbench),
        }
    stop_leftovers(workbench)


@pytest.fixture
def wb(wb_across_tests):
    """The runs of :func:`early` go on across tests: no test's end may stop them."""
    return wb_across_tests


def _logs(deployment: Services) -> str:
    return "".join(path.read_text()[-4000:] for path in deployment.logs.values())


def test_a_deferrable_task_through_the_real_services(deployment, wb):
    url, headers = deployment.url, deployment.headers
    run_id = deployment.trigger("cml_real_services")
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
    logs = {name: path.read_text() for name, path in deployment.logs.items()}
    assert states[-1] == "success", (states, logs["triggerer"][-3000:], logs["scheduler"][-3000:])
    # The wait went through the triggerer, which logged status changes (not polls) in the task's log.
    worker_log = deployment.task_log("cml_real_services", trigger=False)
    trigger_log = deployment.task_log("cml_real_services", trigger=True)
    assert "Pausing task as DEFERRED" in worker_log, worker_log[-3000:]
    assert "is ENGINE_SUCCEEDED." in trigger_log and trigger_log.count("is ENGINE_RUNNING.") == 1, trigger_log
    # What a deployment used to show and must not: the extra link's missing XCom, masking warnings.
    everything = worker_log + trigger_log + "".join(logs.values())
    assert "XCom not found" not in everything and "Skipping masking" not in everything
    # One start, whatever the services did (of the sleeper: the fan-out starts its own job meanwhile).
    job = wb.workbench.job_by_name("Analytics", "sleeper")
    starts = wb.requests("POST", rf"/api/v2/projects/[^/]+/jobs/{job.id}/runs")
    assert len(starts) == 1
    assert wb.workbench.runs_of(job)[-1].status == "ENGINE_SUCCEEDED"


def _kill_while_deferred(
    deployment: Services, wb, dag_id: str, task_id: str, conf: dict | None = None
) -> str:
    """Trigger ``dag_id``, wait until its task is deferred, mark it failed; return the trigger log."""
    run_id = deployment.trigger(dag_id, conf)

    def state() -> str | None:
        return deployment.only_task(dag_id, run_id)["state"]

    wait_for(f"{dag_id} to defer", lambda: state() == "deferred", limit=120)

    # Killed once the triggerer runs the trigger (it has polled the run), not before it got there.
    polled = str((conf or {}).get("run_id"))
    wait_for(
        f"{dag_id}'s trigger to poll", lambda: polled in deployment.task_log(dag_id, trigger=True), limit=60
    )
    deployment.mark_failed(dag_id, run_id, task_id)
    wait_for(f"{dag_id} to be failed", lambda: state() == "failed", limit=60)

    def everything() -> str:
        files = [*(deployment.home / "logs").rglob("*.log"), *deployment.logs.values()]
        return "".join(path.read_text() for path in files)

    # The triggerer acts on the kill shortly after the state changes, and says what it did.
    said = f"Cloudera AI run {(conf or {}).get('run_id')} is not its own: left running"
    with contextlib.suppress(AssertionError):
        wait_for("the trigger's kill", lambda: said in everything(), limit=20)
    return everything()


@pytest.mark.parametrize(
    ("dag_id", "task_id"), [("cml_kill_busy_wait", "waits"), ("cml_kill_sensor", "watches")]
)
def test_killing_a_deferred_task_never_stops_a_run_it_does_not_own(deployment, wb, dag_id, task_id):
    """A busy-wait task waits for someone else's run; a sensor watches one. Neither owns it."""
    from airflow_provider_cml.hooks.cml import CmlHook

    other = CmlHook().start_job_run("Analytics", "sleeper", {"SLEEP": "120"})
    try:
        log = _kill_while_deferred(deployment, wb, dag_id, task_id, {"run_id": other["id"]})
        time.sleep(3)  # the stop used to come about 2 s after the kill
        run = wb.workbench.runs[other["id"]]
        assert not run.stop_requested and run.status == "ENGINE_RUNNING", log[-3000:]
        assert not wb.requests("POST", r"/api/v2/projects/[^/]+/jobs/[^/]+/runs/[^/]+:stop")
        assert f"Cloudera AI run {other['id']} is not its own: left running" in log
    finally:
        CmlHook().stop_job_run("Analytics", "sleeper", other["id"])


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_killing_a_deploy_stops_its_own_deployment_and_nothing_serving(deployment, wb, mode):
    """The kill reaches the task (sync) or the triggerer (deferrable) while it waits on the task's
    deployment: that one is stopped, and a deployment of the same model serving before is not."""
    from airflow_provider_cml.operators.models import CmlDeployModelOperator

    dag_id, name = f"cml_kill_deploy_{mode}", f"kill-deploy-{mode}"
    serving = wb.workbench.serving
    earlier = CmlDeployModelOperator(  # the same model, serving before the DAG runs
        task_id="earlier",
        project="Analytics",
        model=model(name),
        poll_interval=0.1,
    )
    from types import SimpleNamespace

    ti = SimpleNamespace(
        dag_id="earlier",
        task_id="earlier",
        run_id="r",
        map_index=-1,
        try_number=1,
        xcom_push=lambda **_: None,
    )
    before = earlier.execute({"ti": ti})
    run_id = deployment.trigger(dag_id)

    def ours() -> list:
        return [d for d in serving.deployments.values() if d.environment.get("AIRFLOW_CTX_DAG_ID") == dag_id]

    wait_for("the task's deployment", lambda: len(ours()) == 1, limit=180)
    (mine,) = ours()

    def polled() -> bool:  # deferrable: by the trigger (the resumed task first waits out the hold itself)
        text = deployment.task_log(dag_id, trigger=True if mode == "deferrable" else None)
        return f"model deployment {mine.id} is PENDING" in text

    wait_for("the wait to poll it", polled, limit=120)
    deployment.mark_failed(dag_id, run_id, "deploy")
    wait_for("the kill to stop the task's deployment", lambda: mine.status == "stopped", limit=60)
    assert serving.deployments[before["deployment_id"]].status == "deployed"  # still serving
    stops = wb.requests("POST", r".*/deployments/[^/]+:stop")
    assert [entry.path.rsplit("/", 1)[1] for entry in stops] == [f"{mine.id}:stop"]
    builds = wb.requests("POST", rf".*/models/{mine.build.model.id}/builds")
    assert len(builds) == 2  # the earlier task's and this one's


def test_a_connection_saved_as_the_form_saves_it_logs_no_masking_warning(deployment, wb):
    """Airflow 3.3's form writes every extra field's value (its default, untouched) into the extra,
    and Airflow masks every extra value: a default under 5 characters would make each task log
    "Skipping masking for a secret as it's too short"."""
    url, headers = deployment.url, deployment.headers
    meta = requests.get(f"{url}/ui/connections/hook_meta", headers=headers, timeout=60).json()
    fields = next(item for item in meta if item["connection_type"] == "cml")["extra_fields"]
    extra = {name: field["value"] for name, field in fields.items()}  # the form's initial values
    assert set(extra) >= {"api_version", "verify_ssl", "timeout", "model_service_url"}
    saved = requests.post(
        f"{url}/api/v2/connections",
        json={
            "connection_id": "cml_ui_form",
            "conn_type": "cml",
            "host": wb.url,
            "password": API_KEY,
            "extra": json.dumps(extra),
        },
        headers=headers,
        timeout=30,
    )
    assert saved.status_code == 201, saved.text
    run_id = deployment.trigger("cml_ui_form_connection")
    wait_for(
        "the task to end",
        lambda: (
            [t["state"] for t in deployment.task_instances("cml_ui_form_connection", run_id)]
            in (["success"], ["failed"])
        ),
    )
    [ti] = deployment.task_instances("cml_ui_form_connection", run_id)
    task_log = deployment.task_log("cml_ui_form_connection")
    assert ti["state"] == "success", (task_log[-3000:], _logs(deployment))
    assert "Started Cloudera AI" in task_log, task_log[-3000:]  # the log read is the task's
    assert "too short" not in task_log and "Skipping masking" not in task_log, task_log[-3000:]


def _clear_and_rerun(deployment: Services) -> str:
    """The first try succeeds, then is cleared through the REST API; wait for the second try's end."""
    dag_id = "cml_clear_rerun"
    run_id = deployment.trigger(dag_id)
    task = functools.partial(deployment.only_task, dag_id, run_id)
    wait_for("the first try", lambda: task()["state"] in FINAL, limit=180)
    assert task()["state"] == "success", _logs(deployment)
    # Cleared only once the scheduler has marked the DAG run successful: once, a clear sent in the same
    # 0.2 s as that marking left the run successful, and the cleared task never ran again.
    wait_for("the DAG run to end", lambda: deployment.run_state(dag_id, run_id) == "success", limit=60)
    cleared = requests.post(
        f"{deployment.url}/api/v2/dags/{dag_id}/clearTaskInstances",
        json={"dag_run_id": run_id, "task_ids": ["runs"], "dry_run": False, "only_failed": False},
        headers=deployment.headers,
        timeout=30,
    )
    cleared.raise_for_status()
    wait_for(
        "the cleared task's second try",
        lambda: task()["try_number"] == 2 and task()["state"] in FINAL,
        limit=180,
    )
    return run_id


def test_clearing_a_succeeded_task_through_the_api_runs_the_job_again(deployment, wb, early):
    """Driven in a thread since the module started (:func:`early`, :func:`_clear_and_rerun`)."""
    dag_id = "cml_clear_rerun"
    run_id = early[dag_id].result()
    task = functools.partial(deployment.only_task, dag_id, run_id)
    assert task()["state"] == "success", deployment.task_log(dag_id)[-3000:]
    ours = runs_started_by(wb, RERUN_JOB, dag_id)
    assert [r.environment["AIRFLOW_CTX_TRY_NUMBER"] for r in ours] == ["1", "2"]
    assert [r.status for r in ours] == ["ENGINE_SUCCEEDED"] * 2
    assert "this task instance was cleared since; starting a new run" in deployment.task_log(dag_id)


def _kill_the_worker(deployment: Services, wb) -> str:
    """kill -9 of the process running the task once its run is running; wait for the retry's end."""
    import psutil

    dag_id = "cml_kill_worker"
    run_id = deployment.trigger(dag_id)
    task = functools.partial(deployment.only_task, dag_id, run_id)

    def running() -> bool:
        ours = runs_started_by(wb, KILLED_JOB, dag_id)
        return (
            len(ours) == 1
            and ours[0].status == "ENGINE_RUNNING"
            and "is ENGINE_RUNNING" in (deployment.task_log(dag_id))
        )

    wait_for("the task to wait on its running run", running, limit=180)
    title = f"airflow worker -- {task()['id']}"  # the task runner's process title (Airflow 3)
    victims = [p for p in psutil.process_iter(["cmdline"]) if title in " ".join(p.info["cmdline"] or [])]
    assert len(victims) == 1, [p.info["cmdline"] for p in victims]
    victims[0].kill()
    wait_for("the retry to end", lambda: task()["state"] in FINAL and task()["try_number"] == 2, limit=240)
    return run_id


def test_a_worker_killed_mid_run_is_retried_onto_the_same_run(deployment, wb, early):
    """kill -9 of the process running the task: no on_kill, the run goes on; try 2 reattaches.

    Driven in a thread since the module started (:func:`early`, :func:`_kill_the_worker`).
    """
    dag_id = "cml_kill_worker"
    task = functools.partial(deployment.only_task, dag_id, early[dag_id].result())
    log = deployment.task_log(dag_id)
    assert task()["state"] == "success", log[-3000:]
    (run,) = runs_started_by(wb, KILLED_JOB, dag_id)  # no second run
    assert run.status == "ENGINE_SUCCEEDED" and not run.stop_requested
    assert run.environment["AIRFLOW_CTX_TRY_NUMBER"] == "1"
    assert f"Run {run.id} (ENGINE_RUNNING) was started by an earlier try of this attempt: reattaching" in log


def test_a_deferrable_deploy_defers_once_for_a_quick_deployment(deployment, wb, early):
    """The build's deferral pays [cml] trigger_event_hold; the resumed task waits out the quick
    deployment itself instead of deferring (and holding) again. The task succeeds: no race.
    The run started with the module (:func:`early`)."""
    (run_id,) = early["cml_deploy_deferrable"]

    def state() -> str | None:
        return deployment.only_task("cml_deploy_deferrable", run_id)["state"]

    wait_for("the deploy to end", lambda: state() in ("success", "failed"), limit=240)
    worker_log = deployment.task_log("cml_deploy_deferrable", trigger=False)
    assert state() == "success", (worker_log[-3000:], _logs(deployment))
    assert worker_log.count("Pausing task as DEFERRED") == 1, worker_log[-3000:]
    (mine,) = [
        d
        for d in wb.workbench.serving.deployments.values()
        if d.environment.get("AIRFLOW_CTX_DAG_ID") == "cml_deploy_deferrable"
    ]
    assert mine.status == "deployed"
    wb.workbench.serving.stop_deployment(mine)


def test_a_deferrable_fan_out_at_the_shortest_poll_never_trips_the_deferral_race(deployment, wb, early):
    """Three runs of five instances over one job, each waiting in the triggerer for the job.

    Each instance defers and resumes several times; on LocalExecutor an event sooner than ~5 s
    after a deferral left succeeded tasks marked failed (apache/airflow 71580). Events are held.
    The runs started with the module (:func:`early`): the other scenarios load the scheduler meanwhile.
    """
    states = deployment.finished("cml_fanout", early["cml_fanout"], 15, limit=420)
    assert states == ["success"] * 15, (states, _logs(deployment))
    ours = runs_started_by(wb, "fanout", "cml_fanout")
    assert len(ours) == 15 and {r.status for r in ours} == {"ENGINE_SUCCEEDED"}
    ordered = sorted(ours, key=lambda r: r.seq)
    for before, after in itertools.pairwise(ordered):  # one at a time: none overlapped
        assert before.times["finished_at"] <= after.created_at
