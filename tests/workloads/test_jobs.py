"""Jobs as code: CmlJobSpec's checks, and CmlHook.ensure_job and friends over real HTTP."""

from __future__ import annotations

import inspect
import itertools
import json
import threading
from typing import Any

import pytest

from airflow_provider_cml.exceptions import CmlApiError, CmlConfigError, CmlJobRunTimeout, CmlLookupError
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.operators.jobs import CmlCreateOrUpdateJobOperator, CmlSubmitRunOperator
from airflow_provider_cml.testing import Faults
from airflow_provider_cml.testing.workbench import RUNTIME_ID
from airflow_provider_cml.workloads.jobs import CmlJobSpec
from tests.conftest import READONLY_KEY

JOBS = r"/api/v2/projects/[^/]+/jobs"
R = {"runtime_identifier": RUNTIME_ID}  # every simulated project uses ML Runtimes


def _spec(name: str, **fields: Any) -> CmlJobSpec:
    """A job named ``name`` that runs report_env.py on the workbench's runtime."""
    return CmlJobSpec(name=name, script="report_env.py", runtime_identifier=RUNTIME_ID, **fields)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"name": "j", "script": ""}, "script is missing"),
        ({"name": "j"}, "script is missing: give the job a script"),
        ({"name": " ", "script": "a.py"}, "name is missing"),
        ({"name": "j", "script": "/etc/passwd"}, "must be a path inside the project"),
        ({"name": "j", "script": "jobs/../../x.py"}, "must be a path inside the project"),
        ({"name": "j", "script": "a.py", "memory": -2}, "memory must be a positive number, not -2"),
        ({"name": "j", "script": "a.py", "cpu": 0}, "cpu must be a positive number"),
        ({"name": "j", "script": "a.py", "cpu": float("nan")}, "cpu must be a positive number"),
        ({"name": "j", "script": "a.py", "memory": True}, "memory must be a positive number"),
        ({"name": "j", "script": "a.py", "timeout": 1.5}, "timeout must be a whole number"),
        ({"name": "j", "script": "a.py", "nvidia_gpu": -1}, "nvidia_gpu must be a whole number"),
        (
            {"name": "j", "script": "a.py", "schedule": "0 1 * * *", "parent": "p"},
            "both a schedule and a parent",
        ),
        ({"name": "j", "script": "a.py", "retry_enabled": "yes"}, "retry_enabled must be True or False"),
        ({"name": "j", "script": "a.py", "environment": {"A": {"nested": 1}}}, "A"),
        ({"name": "j", "script": "a.py", "memroy": 4}, "Unknown job spec field.*'memroy'"),
        ({"name": "j\x00", "script": "a.py"}, "name 'j\\\\x00' has a NUL character: remove it"),
        ({"name": "j", "script": 3}, "script must be a string, not 3"),
    ],
)
def test_bad_specs_are_refused_with_what_to_fix(fields, words):
    with pytest.raises(CmlConfigError, match=words):
        CmlJobSpec.of(fields)


def test_spec_takes_templated_numbers_and_compares_in_the_apis_string_forms():
    spec = CmlJobSpec.of(
        {"name": "j", "script": "a.py", "memory": "4", "timeout": "600", "environment": {"N": 1, "B": True}}
    )
    assert (spec.memory, spec.timeout, dict(spec.environment or {})) == (4.0, 600, {"N": "1", "B": "True"})
    as_read = {"memory": 4, "timeout": "600", "environment": json.dumps({"B": "True", "N": "1"})}
    assert spec.differences({**as_read, "name": "j", "script": "a.py"}, None) == {}
    assert spec.differences({**as_read, "name": "j", "script": "a.py", "timeout": "60"}, None) == {
        "timeout": (60, 600)
    }
    body = spec.update_body({**as_read, "id": "x", "paused": True, "kernel": "python3"}, None)
    assert body["timeout"] == "600" and json.loads(body["environment"]) == {"B": "True", "N": "1"}
    assert "id" not in body and "paused" not in body and body["kernel"] == "python3"


def test_ensure_job_creates_then_leaves_alone_then_updates_in_place(wb):
    hook = CmlHook()
    spec = _spec("ensured", memory=2, environment={"STAGE": "one"})
    job, action = hook.jobs.ensure_job("Analytics", spec)
    assert action == "created" and wb.workbench.jobs[job["id"]].env == {"STAGE": "one"}
    assert hook.jobs.ensure_job("Analytics", spec) == (job, "unchanged")
    changed = CmlJobSpec.of({**spec.managed(), "memory": 8, "environment": {"STAGE": "two"}})
    updated, action = hook.jobs.ensure_job("Analytics", changed)
    assert action == "updated" and updated["id"] == job["id"]
    assert (updated["memory"], json.loads(updated["environment"])) == (8.0, {"STAGE": "two"})
    assert len(wb.requests("POST", JOBS)) == 1 and len(wb.requests("PATCH")) == 1


def test_a_field_the_server_does_not_apply_is_named_once_and_not_called_updated(
    wb, monkeypatch, caplog, capfd
):
    """A server that reads a zero value as "leave unchanged": timeout 30 -> 0 does not take."""
    hook = CmlHook()
    fields = {"name": "zero-values", "script": "report_env.py", "runtime_identifier": RUNTIME_ID}
    hook.jobs.ensure_job("Analytics", {**fields, "timeout": 30})
    monkeypatch.setattr(wb.workbench, "patch_zero_values", "ignore")
    job, action = hook.jobs.ensure_job("Analytics", {**fields, "timeout": 0, "memory": 3})
    assert action == "updated" and job["memory"] == 3.0 and job["timeout"] == "30"  # memory took
    job, action = hook.jobs.ensure_job("Analytics", {**fields, "timeout": 0, "memory": 3})
    assert action == "unchanged" and len(wb.requests("PATCH")) == 2  # nothing took: not "updated"
    printed = "".join(capfd.readouterr())
    note = "did not apply timeout (still 30, wanted 0)"
    assert max(caplog.text.count(note), printed.count(note)) == 2  # once per ensure_job, not per field
    assert "delete the job so that its definition creates it anew" in caplog.text + printed


def test_update_sends_the_whole_job_so_unmanaged_fields_survive(wb):
    # UpdateJob has no update mask: Job Retry set in the workbench must survive a definition that
    # does not mention it, whether a server keeps or resets what a body leaves out.
    hook = CmlHook()
    spec = _spec("keeps-retry", retry_enabled=True, max_retry=2, timeout=30)
    hook.jobs.ensure_job("Analytics", spec)
    hook.jobs.ensure_job("Analytics", _spec("keeps-retry", memory=3))
    job = wb.workbench.job_by_name("Analytics", "keeps-retry")
    assert job.memory == 3.0 and job.retry["retry_enabled"] is True and job.retry["max_retry"] == 2
    assert job.timeout == 30
    patch = json.loads(wb.requests("PATCH")[0].request_body)
    assert isinstance(patch["environment"], str) and patch["timeout"] == "30"


def test_dependent_job_by_parent_name(wb):
    hook = CmlHook()
    job, _ = hook.jobs.ensure_job(
        "Analytics", {"name": "after-parent", "script": "report_env.py", "parent": "parent", **R}
    )
    assert job["parent_id"] == wb.workbench.job_by_name("Analytics", "parent").id
    assert job["type"] == "dependent"


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        (
            {"runtime_identifier": RUNTIME_ID.replace("3.11", "3.12")},
            CmlLookupError,
            "no runtime .*3.12.*Close matches: .*3.11",
        ),
        ({"parent": "no-such-parent"}, CmlLookupError, "No job in project 'Analytics' is named exactly"),
    ],
)
def test_bad_runtime_or_parent_fails_before_anything_is_created(wb, fields, error, words):
    with pytest.raises(error, match=words):
        CmlHook().jobs.ensure_job(
            "Analytics", {"name": "never-made", "script": "report_env.py", **R, **fields}
        )
    assert not wb.requests("POST") and not wb.requests("PATCH")


def test_two_jobs_of_one_name_are_ambiguous(wb):
    project = wb.workbench.job_by_name("Analytics", "train").project
    for _ in range(2):
        wb.workbench.add_job(project, "twin", script="report_env.py")
    with pytest.raises(CmlLookupError, match="2 jobs in project 'Analytics' are named 'twin'"):
        CmlHook().jobs.ensure_job("Analytics", {"name": "twin", "script": "report_env.py", **R})


def test_a_lost_create_answer_creates_one_job(wb):
    wb.faults = Faults(lost_response_rate=1.0)  # every POST acts, then its answer is lost
    job, action = CmlHook().jobs.ensure_job(
        "Analytics", {"name": "created-once", "script": "report_env.py", **R}
    )
    wb.faults = None
    assert action == "created"
    assert [j.id for j in wb.workbench.jobs.values() if j.name == "created-once"] == [job["id"]]


def test_delete_job_and_a_read_only_key(wb, monkeypatch):
    hook = CmlHook()
    job, _ = hook.jobs.ensure_job("Analytics", {"name": "to-delete", "script": "report_env.py", **R})
    assert hook.jobs.delete_job("Analytics", job["id"]) is True
    assert hook.jobs.delete_job("Analytics", job["id"]) is False  # already gone
    assert job["id"] not in wb.workbench.jobs
    monkeypatch.setenv("AIRFLOW_CONN_CML_READONLY", wb.airflow_connection(READONLY_KEY))
    with pytest.raises(CmlApiError, match="HTTP 403"):
        CmlHook("cml_readonly").jobs.ensure_job(
            "Analytics", {"name": "not-allowed", "script": "report_env.py", **R}
        )


def test_list_runtimes_pages_and_filters(wb):
    runtimes = CmlHook().jobs.list_runtimes()
    assert RUNTIME_ID in {r["image_identifier"] for r in runtimes}
    assert [r["kernel"] for r in CmlHook().jobs.list_runtimes({"kernel": "R 4.3"})] == ["R 4.3"]


class _TI:
    def __init__(self, map_index: int) -> None:
        self.dag_id, self.task_id, self.run_id = "fan", "each", "manual__1"
        self.map_index, self.try_number, self.start_date = map_index, 1, None
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_five_concurrent_starts_of_one_job_run_one_after_another(wb):
    """Five task instances at once (as five workers would), one job: five runs, none overlapping."""
    results: dict[int, Any] = {}

    def instance(i: int) -> None:
        operator = CmlRunJobOperator(
            task_id="each", project="Analytics", job="fanout", if_active="wait", poll_interval=0.1, timeout=60
        )
        try:
            # Airflow 2's ExecutorSafeguard keeps its bookkeeping in a thread-local set up on the main
            # thread only; the operator's own execute is what each worker would run.
            results[i] = inspect.unwrap(type(operator).execute)(operator, {"ti": _TI(i)})
        except Exception as exc:  # collected, asserted below
            results[i] = exc

    threads = [threading.Thread(target=instance, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert all(isinstance(r, str) for r in results.values()) and len(results) == 5, results
    ours = sorted((wb.workbench.runs[r] for r in results.values()), key=lambda r: r.seq)
    assert [r.status for r in ours] == ["ENGINE_SUCCEEDED"] * 5
    assert sorted(r.environment["AIRFLOW_CTX_MAP_INDEX"] for r in ours) == ["0", "1", "2", "3", "4"]
    for before, after in itertools.pairwise(ours):
        assert before.times["finished_at"] <= after.created_at


def test_wait_for_a_busy_job_is_bounded_by_the_timeout(wb):
    hook = CmlHook()
    blocker = hook.start_job_run("Analytics", "fanout", {"SLEEP": "30"})
    operator = CmlRunJobOperator(
        task_id="each", project="Analytics", job="fanout", if_active="wait", poll_interval=0.1, timeout=1
    )
    with pytest.raises(CmlJobRunTimeout, match=f"still busy with run {blocker['id']}.*nothing was started"):
        operator.execute({"ti": _TI(-1)})
    assert len(wb.workbench.runs_of(wb.workbench.job_by_name("Analytics", "fanout"))) >= 1
    assert wb.workbench.runs[blocker["id"]].status == "ENGINE_RUNNING"  # not ours: never stopped


def test_operators_refuse_a_bad_spec_before_any_request(wb):
    for operator in (
        CmlCreateOrUpdateJobOperator(
            task_id="d", project="Analytics", job_spec={"name": "x", "script": "a.py", "memory": -1}
        ),
        CmlSubmitRunOperator(task_id="s", project="Analytics", job_spec={"script": "a.py", "memory": -1}),
    ):
        with pytest.raises(CmlConfigError, match="memory must be a positive number"):
            operator.execute({"ti": _TI(-1)})
    assert wb.requests() == []  # nothing was asked of the workbench
    with pytest.raises(CmlConfigError, match="delete_job_after=True needs wait_for_completion=True"):
        CmlSubmitRunOperator(
            task_id="s",
            project="A",
            job_spec={"script": "a.py"},
            delete_job_after=True,
            wait_for_completion=False,
        )
    with pytest.raises(CmlConfigError, match="give job_spec"):
        CmlSubmitRunOperator(task_id="s", project="A", job="train", job_spec={"script": "a.py"})


def test_job_environment_values_never_show(wb):
    secret = "s3cr3t-job-value-XYZ"
    spec = _spec("secretive", environment={"DB_PASSWORD": secret})
    assert secret not in repr(spec) and secret not in str(spec)
    echo = {"error": f"bad env {secret}", "code": 3, "message": f"bad env {secret}", "details": []}
    wb.fail_next("POST", JOBS, 400, body=json.dumps(echo))
    with pytest.raises(CmlApiError) as info:
        CmlHook().jobs.ensure_job("Analytics", spec)
    assert "bad env" in str(info.value) and secret not in str(info.value)


def test_a_new_job_without_a_runtime_in_an_ml_runtimes_project_is_refused_before_creating(wb):
    with pytest.raises(
        CmlConfigError, match="needs a runtime_identifier: project 'Analytics' runs jobs on ML Runtimes"
    ):
        CmlHook().jobs.ensure_job("Analytics", {"name": "no-runtime", "script": "report_env.py"})
    assert not wb.requests("POST")
