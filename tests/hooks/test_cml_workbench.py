"""CmlHook through real HTTP against the local workbench."""

from __future__ import annotations

import time

import pytest

from airflow_provider_cml import exceptions as errors
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.testing import Faults, local_workbench
from tests.conftest import API_KEY, READONLY_KEY, seen_by, wait_until
from tests.workloads.test_serving import _context

RUNS = r"/api/v2/projects/[^/]+/jobs/[^/]+/runs"


@pytest.fixture
def hook(wb) -> CmlHook:
    return CmlHook()


def test_overrides_arguments_and_job_environment_reach_the_script(wb, hook):
    run = hook.start_job_run(
        "Analytics",
        "report-env",
        {"REPORT_VARS": "RUN_DATE,ROWS,PROJECT_LEVEL,OVERRIDDEN", "RUN_DATE": "2024-06-01", "ROWS": 500},
        arguments="--full --date 2024-06-01",
    )
    final = hook.wait_for_job_run("Analytics", "report-env", run["id"], poll_interval=0.1)
    assert final["status"] == "ENGINE_SUCCEEDED"
    seen = seen_by(wb, run["id"])
    assert seen["RUN_DATE"] == "2024-06-01" and seen["ROWS"] == "500"
    assert seen["PROJECT_LEVEL"] == "from-project" and seen["OVERRIDDEN"] == "job"
    assert seen["JOB_ARGUMENTS"] == "--full --date 2024-06-01"


def test_failed_script_raises_with_status_and_reason(wb, hook):
    run = hook.start_job_run("Analytics", "fail")
    with pytest.raises(errors.CmlJobRunError, match="ENGINE_FAILED.*script exited with code 3") as info:
        hook.wait_for_job_run("Analytics", "fail", run["id"], poll_interval=0.1)
    assert info.value.status == "ENGINE_FAILED"


@pytest.mark.parametrize(
    ("denied", "exit_code_shown"),
    [("/api/v2/usage", False), ("/api/v2/workloads/executions", True)],
)
def test_failure_details_come_from_whichever_listing_the_key_may_read(wb, hook, denied, exit_code_shown):
    """Usage alone gives the exit code and message; executions alone the platform's failure reason."""
    wb.fail_next("GET", denied, 403, times=5)
    run = hook.start_job_run("Analytics", "fail")
    with pytest.raises(errors.CmlJobRunError) as info:
        hook.wait_for_job_run("Analytics", "fail", run["id"], poll_interval=0.1)
    message = str(info.value)
    assert "Cloudera AI says: script exited with code 3" in message
    assert ("exit code 3;" in message) is exit_code_shown
    assert len(wb.requests("GET", denied)) == 1  # asked once, then left alone


def test_the_runs_execution_is_found_on_a_busy_workbench(monkeypatch):
    """Other executions fill the first page: the look-up narrows to the job's own workload."""
    spec = {
        "api_keys": [API_KEY],
        "max_page_size": 2,
        "projects": [
            {
                "name": "Busy",
                "owner": "alice",
                "jobs": [
                    {"name": "fail", "duration": 0.3, "exit_code": 3},
                    {"name": "other-1", "duration": 0.05},
                    {"name": "other-2", "duration": 0.05},
                ],
            }
        ],
    }
    with local_workbench(spec, step_delay=0.01) as server:
        monkeypatch.setenv("AIRFLOW_CONN_CML_BUSY", server.airflow_connection(API_KEY))
        hook = CmlHook("cml_busy")
        earlier = hook.start_job_run("Busy", "fail")  # an earlier run of the job, stopped: no reason
        hook.stop_job_run("Busy", "fail", earlier["id"])
        for job in ("other-1", "other-2"):
            hook.start_job_run("Busy", job)
        wait_until("the other jobs' runs to end", lambda: not server.workbench.active_runs())
        server.fail_next("GET", "/api/v2/usage", 403)  # the execution alone must explain it
        run = hook.start_job_run("Busy", "fail")
        with pytest.raises(errors.CmlJobRunError, match="Cloudera AI says: script exited with code 3"):
            hook.wait_for_job_run("Busy", "fail", run["id"], poll_interval=0.1)
        listed = server.requests("GET", "/api/v2/workloads/executions")
        assert len(listed) == 2  # the busy first page, then the job's own executions
        assert "multi_column_search_filter" in listed[1].query


def test_job_timeout_is_timedout(wb, hook):
    run = hook.start_job_run("Analytics", "times-out")
    with pytest.raises(errors.CmlJobRunError, match="ENGINE_TIMEDOUT"):
        hook.wait_for_job_run("Analytics", "times-out", run["id"], poll_interval=0.1)


def test_wait_timeout_stops_the_run_and_its_process(wb, hook, tmp_path):
    marker = tmp_path / "stopped"
    run = hook.start_job_run("Analytics", "sleeper", {"STOP_MARKER": str(marker)})
    with pytest.raises(errors.CmlJobRunTimeout, match="asked to stop"):
        hook.wait_for_job_run("Analytics", "sleeper", run["id"], poll_interval=0.2, timeout=1.0)
    with pytest.raises(errors.CmlJobRunError, match="ENGINE_STOPPED"):
        hook.wait_for_job_run("Analytics", "sleeper", run["id"], poll_interval=0.1, timeout=10)
    assert marker.read_text() == "stopped"


def test_names_are_found_across_pages(wb, hook):
    assert len(hook.list_projects()) == len(wb.workbench.projects) > 25
    assert len(hook.list_jobs("Many Jobs")) == 27
    job = hook.resolve_job("Many Jobs", "job-26")
    assert job["id"] == wb.workbench.job_by_name("Many Jobs", "job-26").id
    project = hook.resolve_project("filler-24")
    assert project["name"] == "filler-24"


def test_prefix_names_resolve_exactly(wb, hook):
    assert hook.resolve_job("Analytics", "train")["id"] == wb.workbench.job_by_name("Analytics", "train").id
    assert hook.resolve_project("Analytics")["name"] == "Analytics"


def test_lookup_errors(wb, hook):
    with pytest.raises(errors.CmlLookupError, match=r"2 projects are named 'Duplicate' \(IDs: "):
        hook.resolve_project("Duplicate")
    with pytest.raises(errors.CmlLookupError, match="No project is named exactly 'Analytic'.*'Analytics'"):
        hook.resolve_project("Analytic")
    with pytest.raises(
        errors.CmlLookupError, match="No job in project 'Analytics' is named exactly 'trian'.*'train'"
    ):
        hook.resolve_job("Analytics", "trian")


def test_already_active(wb, hook):
    run = hook.start_job_run("Analytics", "slow")
    with pytest.raises(errors.CmlJobAlreadyActiveError, match="one active run per job"):
        hook.start_job_run("Analytics", "slow")
    hook.wait_for_job_run("Analytics", "slow", run["id"], poll_interval=0.1)


@pytest.mark.parametrize(
    "refusal",
    [(409, "Conflict: job {job_id} has a running execution"), (400, "cannot start job {job_id} now")],
)
def test_a_busy_job_is_recognised_by_its_active_run_not_by_the_refusals_wording(
    wb, hook, monkeypatch, refusal
):
    monkeypatch.setattr(wb.workbench, "busy_refusal", refusal)
    first = hook.start_job_run("Analytics", "sleeper")
    with pytest.raises(errors.CmlJobAlreadyActiveError, match=f"active run .run {first['id']}"):
        hook.start_job_run("Analytics", "sleeper")
    hook.stop_job_run("Analytics", "sleeper", first["id"])


def test_wrong_and_readonly_keys(wb, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CML_BAD", wb.airflow_connection("wrong-key-123456"))
    with pytest.raises(errors.CmlApiError, match="rejected the API key") as info:
        CmlHook("cml_bad").list_projects()
    assert "wrong-key-123456" not in str(info.value)
    monkeypatch.setenv("AIRFLOW_CONN_CML_RO", wb.airflow_connection(READONLY_KEY))
    with pytest.raises(errors.CmlApiError, match="HTTP 403"):
        CmlHook("cml_ro").start_job_run("Analytics", "report-env")


def test_unknown_run_id(wb, hook):
    with pytest.raises(errors.CmlApiError, match="Not found: run 'zzzzzzzzzzzzzzzz'"):
        hook.get_job_run("Analytics", "report-env", "zzzzzzzzzzzzzzzz")


def test_lost_start_answer_makes_one_run(wb, clock):
    hook = CmlHook(clock=clock)
    job = wb.workbench.job_by_name("Analytics", "report-env")
    before = len(wb.workbench.runs_of(job))
    hook.resolve_job("Analytics", "report-env")
    wb.faults = Faults(lost_response_rate=1.0)
    run = hook.start_job_run("Analytics", "report-env")
    wb.faults = None
    assert len(wb.workbench.runs_of(job)) == before + 1
    assert run["id"] == wb.workbench.runs_of(job)[-1].id
    assert len(wb.requests("POST", RUNS)) == 1
    CmlHook().wait_for_job_run("Analytics", "report-env", run["id"], poll_interval=0.1)


def test_v1_start_with_basic_auth(wb):
    hook = CmlHook("cml_legacy")
    job = wb.workbench.job_by_name("Analytics", "report-env")
    answer = hook.start_job_run(
        "alice/analytics", str(job.v1_id), {"REPORT_VARS": "START_DATE", "START_DATE": "2017-01-01"}
    )
    engine_id = answer["engine_id"]
    assert engine_id in wb.workbench.runs
    CmlHook().wait_for_job_run("Analytics", "report-env", engine_id, poll_interval=0.1)
    assert seen_by(wb, engine_id)["START_DATE"] == "2017-01-01"
    with pytest.raises(errors.CmlConfigError, match="needs Cloudera AI API v2"):
        hook.get_job_run("alice/analytics", "1", engine_id)
    with pytest.raises(errors.CmlConfigError, match="'<user-or-team>/<project-slug>'"):
        hook.start_job_run("analytics", "1")


def test_calls_per_run(wb, hook):
    hook.resolve_job("Analytics", "report-env")
    wb.clear_journal()
    before = wb.connections_opened
    run = hook.start_job_run("Analytics", "report-env")
    hook.wait_for_job_run("Analytics", "report-env", run["id"], poll_interval=0.1)
    posts, gets = wb.requests("POST"), wb.requests("GET")
    assert len(posts) == 1 and len(gets) >= 1 and all(e.path.endswith(run["id"]) for e in gets)
    assert wb.connections_opened - before <= 1  # the session's connection is reused (0: still open)


def test_test_connection(wb, hook, monkeypatch):
    ok, message = hook.test_connection()
    assert ok, message
    monkeypatch.setenv("AIRFLOW_CONN_CML_BAD", wb.airflow_connection("wrong-key-123456"))
    ok, message = CmlHook("cml_bad").test_connection()
    assert not ok and "rejected the API key" in message
    assert API_KEY not in message


def test_operator_on_kill_stops_its_run_and_ends_the_process(wb, tmp_path):
    """The task runs in the main thread, as Airflow runs it (Airflow 2.11's execute guard works only
    there); the kill comes from another thread once the run is running."""
    import threading

    from airflow_provider_cml.operators.cml import CmlRunJobOperator

    marker = tmp_path / "stopped"
    operator = CmlRunJobOperator(
        task_id="killed",
        project="Analytics",
        job="sleeper",
        environment={"STOP_MARKER": str(marker)},
        timeout=120,  # should the kill never come, the task still ends (and the test fails below)
    )
    context, killer_failed = _context("killed"), []

    def kill_once_running() -> None:
        try:
            wait_until(
                "the task's run to be running",
                lambda: (
                    "run_id" in context["ti"].pushed
                    and wb.workbench.runs[context["ti"].pushed["run_id"]].status == "ENGINE_RUNNING"
                ),
            )
            time.sleep(0.3)  # the script installs its SIGTERM handler
        except AssertionError as exc:
            killer_failed.append(exc)
        operator.on_kill()

    killer = threading.Thread(target=kill_once_running, daemon=True)
    killer.start()
    with pytest.raises(errors.CmlJobRunError, match="was interrupted \\(the task is being killed\\)"):
        operator.execute(context)
    killer.join(10)
    assert not killer_failed, killer_failed
    with pytest.raises(errors.CmlJobRunError, match="ENGINE_STOPPED"):
        CmlHook().wait_for_job_run(
            "Analytics", "sleeper", context["ti"].pushed["run_id"], poll_interval=0.1, timeout=10
        )
    assert marker.read_text() == "stopped"


# A wait the kill did not wake would sleep out its 30 s poll interval: the guard fails it first.
@pytest.mark.timeout(20)
def test_a_kill_wakes_the_sync_wait_at_once_and_stops_the_run(wb):
    """Airflow's SIGTERM handler calls on_kill in the waiting thread; the wait must not sleep on."""
    import signal

    from airflow_provider_cml.operators.cml import CmlRunJobOperator

    operator = CmlRunJobOperator(task_id="killed", project="Analytics", job="sleeper", poll_interval=30)
    context = _context("killed")
    push = context["ti"].xcom_push
    killed_at: list[float] = []

    def xcom_push(key, value):
        push(key=key, value=value)
        if key == "run_id":  # started: the kill comes half a second into the wait's 30 s poll interval
            signal.setitimer(signal.ITIMER_REAL, 0.5)

    def on_term(signum, frame):  # what the task runner does on SIGTERM
        killed_at.append(time.monotonic())
        operator.on_kill()

    context["ti"].xcom_push = xcom_push
    previous = signal.signal(signal.SIGALRM, on_term)
    try:
        with pytest.raises(errors.CmlJobRunError, match="interrupted"):
            operator.execute(context)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert killed_at, "the signal never came"  # "interrupted": the kill woke it, not the next poll
    assert len(wb.requests("POST", RUNS + r"/[^/]+:stop")) == 1


def test_a_rescheduled_sensor_given_names_looks_them_up_once(wb):
    """Each reschedule check is a fresh sensor; Airflow 3.3's task state store keeps the IDs."""
    from airflow_provider_cml.sensors.cml import CmlJobRunSensor

    class Store(dict):
        def set(self, key, value):
            self[key] = value

    run = CmlHook().start_job_run("Analytics", "report-env")
    CmlHook().wait_for_job_run("Analytics", "report-env", run["id"], poll_interval=0.1)
    store = Store()
    wb.clear_journal()
    for _ in range(2):  # two checks, two processes
        sensor = CmlJobRunSensor(task_id="s", project="Analytics", job="report-env", run_id=run["id"])
        assert sensor.poke({"task_state_store": store}) is True
    paths = [e.path for e in wb.requests("GET")]
    assert paths.count("/api/v2/projects") == 1 and sum("/runs/" in p for p in paths) == 2
    assert len(paths) == 4  # project look-up, job look-up, then one read per check
