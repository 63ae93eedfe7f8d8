"""Operator and sensor inside real Airflow (dag.test on SQLite) against the local workbench."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone

import pytest

from tests.conftest import seen_by, wait_until

pytestmark = pytest.mark.airflow_dag


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}


def _xcom(dag_run, task_id: str, key: str):
    try:
        from airflow.models.xcom import XComModel as XCom
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XCom)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
            .one_or_none()
        )
        if row is None:
            return None
        value = row.value
    import json

    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value.decode() if isinstance(value, bytes) else value
    return value


def test_operator_then_sensor_then_waiting_operator_succeed(wb, dagbag):
    dag_run = dagbag.get_dag("cml_test_success").test()
    assert _states(dag_run) == {"start": "success", "wait": "success", "run_and_wait": "success"}
    run_id = _xcom(dag_run, "start", "run_id")
    assert run_id in wb.workbench.runs
    assert _xcom(dag_run, "start", "return_value") == run_id
    seen = seen_by(wb, run_id)
    assert seen["DAG_ID"] == "cml_test_success"
    assert seen["RUN_DATE"] == dag_run.logical_date.strftime("%Y-%m-%d")
    train_run = _xcom(dag_run, "run_and_wait", "run_id")
    assert wb.workbench.runs[train_run].status == "ENGINE_SUCCEEDED"
    url = f"{wb.url}/alice/analytics/jobs"  # the project's jobs page: a page that exists
    assert _xcom(dag_run, "start", "run_url") == url
    from airflow_provider_cml._compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:  # the worker stores the extra link's value when the task ends
        assert _xcom(dag_run, "start", "_link_CmlJobRunLink") == url


@pytest.mark.parametrize("dag_id", ["cml_test_failure", "cml_test_deferrable_failure"])
def test_failed_run_fails_the_task_with_status_and_reason(wb, dagbag, capfd, dag_id):
    dag_run = dagbag.get_dag(dag_id).test()
    assert _states(dag_run) == {"fail": "failed"}
    out = "".join(capfd.readouterr())
    # The exit code and the platform's message come from the usage and workload listings.
    assert "ENGINE_FAILED" in out and "exit code 3" in out and "script exited with code 3" in out
    run_url = _xcom(dag_run, "fail", "run_url")
    assert run_url == f"{wb.url}/alice/analytics/jobs" and f"See {run_url}" in out


def test_sensor_fails_on_failed_run_and_soft_fail_skips(wb, dagbag):
    from airflow_provider_cml.hooks.cml import CmlHook

    hook = CmlHook()
    run = hook.start_job_run("Analytics", "fail")
    with pytest.raises(Exception, match="ENGINE_FAILED"):
        hook.wait_for_job_run("Analytics", "fail", run["id"], poll_interval=0.1)
    dag_run = dagbag.get_dag("cml_test_sensor_failure").test(run_conf={"run_id": run["id"]})
    assert _states(dag_run) == {"sense": "failed", "sense_soft": "skipped"}


def test_v1_starts_and_refuses_to_wait(wb, dagbag, capfd):
    job = wb.workbench.job_by_name("Analytics", "report-env")
    dag_run = dagbag.get_dag("cml_test_v1").test(run_conf={"v1_job": str(job.v1_id)})
    assert _states(dag_run) == {"v1_start": "success", "v1_wait_refused": "failed"}
    engine_id = _xcom(dag_run, "v1_start", "engine_id")
    assert "v1 Jobs API, which cannot report a run's status" in "".join(capfd.readouterr())
    from airflow_provider_cml.hooks.cml import CmlHook

    CmlHook().wait_for_job_run("Analytics", "report-env", engine_id, poll_interval=0.1)
    assert seen_by(wb, engine_id)["FROM_V1"] == "yes"


RUN_PATH = r"/api/v2/projects/[^/]+/jobs/[^/]+/runs/[^/:]+"
RUNS_PATH = r"/api/v2/projects/[^/]+/jobs/[^/]+/runs"


def test_deferrable_operator_and_sensor_succeed(wb, dagbag):
    dag_run = dagbag.get_dag("cml_test_deferrable").test()
    assert _states(dag_run) == {
        "deferred_run": "success",
        "start_only": "success",
        "deferred_sensor": "success",
    }
    run_id = _xcom(dag_run, "deferred_run", "run_id")
    assert wb.workbench.runs[run_id].status == "ENGINE_SUCCEEDED"
    assert _xcom(dag_run, "deferred_run", "return_value") == run_id


@pytest.mark.parametrize(
    "dag_id", ["cml_test_timeout", "cml_test_deferrable_timeout", "cml_test_deferrable_execution_timeout"]
)
def test_timeout_stops_the_remote_run(wb, dagbag, tmp_path, dag_id):
    marker = tmp_path / "stopped"
    dag_run = dagbag.get_dag(dag_id).test(run_conf={"marker": str(marker)})
    assert _states(dag_run) == {"too_slow": "failed"}
    run = wb.workbench.runs[_xcom(dag_run, "too_slow", "run_id")]
    wait_until("the timed-out run to be stopped", lambda: run.status == "ENGINE_STOPPED")
    assert marker.read_text() == "stopped"


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_retry_reattaches_instead_of_starting_a_second_run(wb, dagbag, mode):
    sleeper = wb.workbench.job_by_name("Analytics", "sleeper")
    before = len(wb.workbench.runs_of(sleeper))
    # The first try fails right after starting the run (a non-transient error reading it).
    wb.fail_next("GET", RUN_PATH, 400, times=1)
    dag_run = dagbag.get_dag(f"cml_test_retry_{mode}").test()
    assert _states(dag_run) == {"flaky_wait": "success"}
    assert [ti.try_number for ti in dag_run.get_task_instances()] == [2]
    assert [e.status for e in wb.requests("GET", RUN_PATH) if e.fault == "scripted"] == [400]
    runs = wb.workbench.runs_of(sleeper)
    assert len(runs) == before + 1, "the retry started a second run"
    assert len(wb.requests("POST", RUNS_PATH)) == 1
    assert runs[-1].status == "ENGINE_SUCCEEDED"
    assert runs[-1].environment["AIRFLOW_CTX_TASK_ID"] == "flaky_wait"
    assert runs[-1].environment["AIRFLOW_CTX_TRY_NUMBER"] == "1"


def _keep_the_dag_run(monkeypatch) -> None:
    """dag.test() clears the logical date's task instances (Airflow's own Clear), then deletes the DAG
    run; kept instead, the cleared task runs again in it, as after a Clear in the UI."""
    from sqlalchemy import select

    from airflow_provider_cml._compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        import airflow.models.dagrun as module

        name, date_field = "get_or_create_dagrun", "logical_date"
    else:
        import airflow.models.dag as module  # type: ignore[no-redef]

        name, date_field = "_get_or_create_dagrun", "execution_date"
    original = getattr(module, name)

    def keep(*, dag, session, **kwargs):
        from airflow.models.dagrun import DagRun

        when = kwargs[date_field]
        found = session.scalar(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, getattr(DagRun, date_field) == when)
        )
        if found is None:
            return original(dag=dag, session=session, **kwargs)
        found.state = "running"
        found.dag = dag  # as the original sets it on the run it makes
        session.commit()
        return found

    monkeypatch.setattr(module, name, keep)


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_clearing_a_succeeded_task_runs_the_job_again(wb, dagbag, mode, capfd, monkeypatch):
    """Try 2 after a Clear of a success starts a new run instead of taking the old one's result."""
    from airflow_provider_cml._compat import AIRFLOW_V_3_0_PLUS

    _keep_the_dag_run(monkeypatch)
    sleeper = wb.workbench.job_by_name("Analytics", "sleeper")
    before = len(wb.workbench.runs_of(sleeper))
    dag = dagbag.get_dag(f"cml_test_retry_{mode}")
    when = datetime(2024, 3, 1, tzinfo=timezone.utc)
    dates = {"logical_date": when, "run_after": when} if AIRFLOW_V_3_0_PLUS else {"execution_date": when}
    first = dag.test(**dates)
    again = dag.test(**dates)
    assert again.run_id == first.run_id and _states(again) == {"flaky_wait": "success"}
    assert [ti.try_number for ti in again.get_task_instances()] == [2]
    runs = wb.workbench.runs_of(sleeper)[before:]
    assert [r.environment["AIRFLOW_CTX_TRY_NUMBER"] for r in runs] == ["1", "2"]
    assert [r.status for r in runs] == ["ENGINE_SUCCEEDED"] * 2
    out = "".join(capfd.readouterr())
    assert "this task instance was cleared since; starting a new run" in out
    assert "taking its result" not in out


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_what_the_platform_does(wb, dagbag, capfd, mode):
    """OOM kill named; ENGINE_UNKNOWN fails after the grace period; Job Retry followed; public project found."""
    dag_run = dagbag.get_dag(f"cml_test_platform_{mode}").test()
    assert _states(dag_run) == {"oom": "failed", "lost": "failed", "flaky": "success", "public": "success"}
    out = "".join(capfd.readouterr())
    assert "killed for using more memory than its limit (OOM); exit code 137" in out
    assert "was still ENGINE_UNKNOWN for 1s" in out and "it has been asked to stop" in out
    lost = wb.workbench.runs[_xcom(dag_run, "lost", "run_id")]
    wait_until("the lost run to be stopped", lambda: lost.status == "ENGINE_STOPPED")
    # Job Retry: the started run failed, the platform's retry 1 succeeded, the task succeeded with it.
    first, final = _xcom(dag_run, "flaky", "run_id"), _xcom(dag_run, "flaky", "return_value")
    assert wb.workbench.runs[first].status == "ENGINE_FAILED"
    assert wb.workbench.runs[final].status == "ENGINE_SUCCEEDED" and wb.workbench.runs[final].attempt == 1
    assert (
        "succeeded on the platform's retry 1 of 2" in out
        or "ENGINE_SUCCEEDED on the platform's retry 1 of 2" in out
    )
    public = wb.workbench.runs[_xcom(dag_run, "public", "run_id")]
    assert public.job.project.name == "Shared Models" and public.status == "ENGINE_SUCCEEDED"


def _runs_of(wb, project: str, job: str):
    return wb.workbench.runs_of(wb.workbench.job_by_name(project, job))


def test_job_defined_in_the_dag_is_created_then_left_alone_then_updated(wb, dagbag):
    dag = dagbag.get_dag("cml_test_job_as_code")
    first = dag.test()
    assert _states(first) == {"define": "success", "run": "success"}
    assert _xcom(first, "define", "job_action") == "created"
    job = wb.workbench.job_by_name("Analytics", "defined-in-dag")
    assert _xcom(first, "define", "job_id") == job.id
    assert (job.memory, job.timeout, job.env["STAGE"]) == (2.0, 600, "defined")
    assert seen_by(wb, _xcom(first, "run", "run_id"))["STAGE"] == "defined"

    second = dag.test()
    assert _xcom(second, "define", "job_action") == "unchanged"
    assert not wb.requests("PATCH") and len(wb.requests("POST", r"/api/v2/projects/[^/]+/jobs")) == 1

    third = dag.test(run_conf={"memory": 4})
    assert _xcom(third, "define", "job_action") == "updated"
    assert _xcom(third, "define", "job_id") == job.id  # the same job, changed in place
    assert job.memory == 4.0 and job.timeout == 600 and job.env["STAGE"] == "defined"
    assert wb.workbench.runs[_xcom(third, "run", "run_id")].to_api()["memory"] == 4.0


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_fanout_over_one_job_waits_its_turn(wb, dagbag, mode):
    from airflow_provider_cml.hooks.cml import CmlHook

    # A run already holds the job, so the first instance must wait for it too.
    blocker = CmlHook().start_job_run("Analytics", "fanout", {"SLEEP": "1"})
    dag_run = dagbag.get_dag(f"cml_test_fanout_wait_{mode}").test()
    tis = [ti for ti in dag_run.get_task_instances() if ti.task_id == "each_date"]
    assert sorted(str(getattr(ti.state, "value", ti.state)) for ti in tis) == ["success"] * 5
    ours = [r for r in _runs_of(wb, "Analytics", "fanout") if r.id != blocker["id"]][-5:]
    assert [r.status for r in ours] == ["ENGINE_SUCCEEDED"] * 5
    assert sorted(r.environment["RUN_DATE"] for r in ours) == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
    ]
    # One at a time: each run started after the one before it finished, the blocker first.
    ordered = [wb.workbench.runs[blocker["id"]], *sorted(ours, key=lambda r: r.seq)]
    for before, after in itertools.pairwise(ordered):
        assert before.times["finished_at"] <= after.created_at


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_submitted_runs_get_a_job_each_deleted_when_asked(wb, dagbag, mode):
    before = set(wb.workbench.jobs)
    dag_run = dagbag.get_dag(f"cml_test_submit_{mode}").test()
    states = [str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()]
    assert states == ["success"] * 6
    created = wb.requests("POST", r"/api/v2/projects/[^/]+/jobs")
    assert len(created) == 6
    names = sorted(json.loads(e.request_body)["name"] for e in created)
    assert names[:5] == [f"airflow cml_test_submit_{mode}.each_date [{i}]" for i in range(5)]
    # The mapped instances' jobs were deleted after their runs; the unmapped one was kept.
    assert len(wb.requests("DELETE")) == 5
    kept = [j for j in wb.workbench.jobs.values() if j.id not in before]
    assert [j.name for j in kept] == [f"submitted-and-kept-{mode}"]
    finished = [
        r for r in wb.workbench.runs.values() if r.job.name.startswith(f"airflow cml_test_submit_{mode}")
    ]
    assert sorted(r.status for r in finished) == ["ENGINE_SUCCEEDED"] * 5
    assert sorted(seen_by(wb, r.id)["RUN_DATE"] for r in finished) == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
    ]


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_a_failed_submitted_run_is_stopped_and_ended_before_its_job_is_deleted(wb, dagbag, mode):
    """A real server might delete a job under its live run: the run must have ended first."""
    dag_run = dagbag.get_dag(f"cml_test_submit_cleanup_{mode}").test()
    states = [str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()]
    assert states == ["failed"]
    (run,) = [r for r in wb.workbench.runs.values() if r.job.name == f"cleanup-{mode}"]
    assert run.status == "ENGINE_STOPPED"
    (delete,) = wb.requests("DELETE")
    assert delete.status == 200 and run.job.id not in wb.workbench.jobs
    finished = datetime.fromisoformat(run.times["finished_at"].replace("Z", "+00:00")).timestamp()
    assert finished <= delete.time


def test_deferrable_waits_on_a_run_not_their_own_never_stop_it(wb, dagbag):
    """A busy wait and a sensor, deferred on someone else's run, time out and leave it running."""
    from airflow_provider_cml.hooks.cml import CmlHook

    other = CmlHook().start_job_run("Analytics", "sleeper", {"SLEEP": "60"})
    try:
        dag_run = dagbag.get_dag("cml_test_deferrable_not_ours").test(run_conf={"run_id": other["id"]})
        states = {
            ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()
        }
        assert states == {"busy_wait": "failed", "watch": "failed"}
        assert not wb.requests("POST", r"/api/v2/projects/[^/]+/jobs/[^/]+/runs/[^/]+:stop")
        assert wb.workbench.runs[other["id"]].status == "ENGINE_RUNNING"
        started = [
            e for e in wb.requests("POST", r"/api/v2/projects/[^/]+/jobs/[^/]+/runs") if e.status == 200
        ]
        assert len(started) == 1  # the test's own: the busy wait started nothing
    finally:
        CmlHook().stop_job_run("Analytics", "sleeper", other["id"])


def test_a_submitted_run_and_a_sensor_never_call_execute_from_execute(wb, dagbag, capfd, caplog):
    """Airflow 2.10 warns about a nested execute ("cannot be called outside TaskInstance!"), and
    raises with allow_nested_operators=False, which this DAG sets (on the sensors too, sync and
    deferrable)."""
    dag_run = dagbag.get_dag("cml_test_submit_not_nested").test()
    assert _states(dag_run) == {
        "not_nested": "success",
        "default_nesting": "success",
        "sensed_sync": "success",
        "sensed_deferrable": "success",
    }
    ours = [r for r in wb.workbench.runs.values() if r.job.name in ("not-nested", "default-nesting")]
    assert sorted(r.status for r in ours) == ["ENGINE_SUCCEEDED"] * 2
    logged = "".join(capfd.readouterr()) + caplog.text
    assert "Started Cloudera AI run" in logged  # the task's log is what is searched
    assert "cannot be called outside" not in logged
