"""CmlRunJobOperator below dag.test(): its own decisions, with a stub hook in place of the API.

The operator's HTTP behaviour is covered through real Airflow and the workbench (test_dags.py,
test_hook_workbench.py); here each of its branches is checked on its own.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

try:  # Airflow 3.2+ moved it to the Task SDK
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

from airflow_provider_cml.exceptions import (
    CmlConfigError,
    CmlException,
    CmlJobAlreadyActiveError,
    CmlJobRunError,
    CmlJobRunTimeout,
)
from airflow_provider_cml.links import RUN_URL_XCOM_KEY
from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.waiting.kinds import StopResult
from airflow_provider_cml.waiting.plan import Ended, Wait
from airflow_provider_cml.workloads.job_runs import JOB_RUN, RunRef

REF = RunRef("pppp-pppp-pppp-pppp", "jjjj-jjjj-jjjj-jjjj", "run0000000000001")


class StubHook:
    """What the operator asks of CmlHook, answered from memory, with every call recorded."""

    def __init__(self, *, legacy: bool = False, start_status: str = "ENGINE_SCHEDULING") -> None:
        self.is_legacy_v1 = legacy
        self.start_status = start_status
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.interrupted = False
        #: Called while the task waits (a test's kill, as Airflow's SIGTERM handler calls on_kill then).
        self.during_wait: Any = None

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def resolve_run(self, project: str, job: str, run_id: str) -> RunRef:
        self._record("resolve_run", project, job, run_id)
        return REF._replace(run_id=run_id)

    def start_job_run(self, project: str, job: str, environment: Any = None, arguments: Any = None) -> dict:
        self._record("start_job_run", project, job, environment, arguments)
        if self.is_legacy_v1:
            return {"engine_id": "engine42"}
        return {"id": REF.run_id, "status": self.start_status, "job_id": REF.job_id}

    def job_run_url(self, project: str, job_id: str, run_id: str) -> str:
        return f"https://wb.example/{project}/jobs/{job_id}/runs/{run_id}"

    def monotonic_deadline(self, unix_deadline: float | None) -> float | None:
        return unix_deadline

    @contextlib.contextmanager
    def within(self, deadline: float | None) -> Iterator[None]:
        yield  # the bound itself is tested over real HTTP (test_hostile)

    def wait(self, wait: Wait, timeout: float | None = None) -> Ended:
        options = {"poll_interval": wait.poll_interval, "unknown_grace": wait.unknown_grace}
        options.update(follow_retries=wait.follow_retries, run_url=wait.link, owns=wait.owns)
        self._record("wait", *wait.ref, timeout=timeout, **options)
        if self.during_wait is not None:
            self.during_wait()
        answer = {"id": wait.ref.run_id, "status": "ENGINE_SUCCEEDED"}
        return Ended("success", JOB_RUN, wait.ref, answer, "ENGINE_SUCCEEDED")

    def explain(self, kind: Any, ref: RunRef, run: dict) -> str | None:
        self._record("explain", ref, run)
        return None

    def interrupt(self) -> None:
        self._record("interrupt")
        self.interrupted = True

    def stop_if_active(self, ref: RunRef) -> StopResult:
        self._record("stop_if_active", ref)
        return StopResult.STOPPED


class StubTI:
    def __init__(self, start_date: datetime | None = None) -> None:
        self.dag_id, self.task_id, self.run_id = "d", "t", "manual__1"
        self.map_index, self.try_number = -1, 1
        self.start_date = start_date
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _operator(hook: StubHook, **kwargs: Any) -> CmlRunJobOperator:
    operator = CmlRunJobOperator(**{"task_id": "t", "project": "Analytics", "job": "train", **kwargs})
    operator.__dict__["hook"] = hook  # the cached_property's slot: no connection needed
    return operator


def test_sync_execute_starts_pushes_ids_and_waits_with_the_operator_settings():
    hook, ti = StubHook(), StubTI()
    operator = _operator(hook, environment={"RUN_DATE": "2024-06-01"}, poll_interval=7, timeout=70)
    assert operator.execute({"ti": ti}) == REF.run_id
    assert hook.names() == ["resolve_run", "start_job_run", "wait"]
    _, args, _ = hook.calls[1]
    assert args[2]["RUN_DATE"] == "2024-06-01" and args[2]["AIRFLOW_CTX_TASK_ID"] == "t"
    _, args, options = hook.calls[2]
    assert args == tuple(REF)
    assert 69 < options.pop("timeout") <= 70  # the timeout, less the time the start took
    assert options == {
        "poll_interval": 7,
        "unknown_grace": 600.0,
        "follow_retries": True,
        "run_url": ti.xcom[RUN_URL_XCOM_KEY],
        "owns": True,
    }
    assert {k: ti.xcom[k] for k in ("project_id", "job_id", "run_id")} == REF._asdict()
    assert ti.xcom[RUN_URL_XCOM_KEY].endswith(f"/runs/{REF.run_id}")


def test_no_wait_returns_after_the_start():
    hook = StubHook()
    assert _operator(hook, wait_for_completion=False).execute({"ti": StubTI()}) == REF.run_id
    assert "wait" not in hook.names()


def test_v1_branch_starts_and_returns_the_engine_id():
    hook, ti = StubHook(legacy=True), StubTI()
    operator = _operator(hook, project="alice/analytics", job="208", wait_for_completion=False)
    assert operator.execute({"ti": ti}) == "engine42"
    assert hook.names() == ["start_job_run"]
    assert ti.xcom == {"run_url": None, "engine_id": "engine42"}  # the link's XCom exists, empty


def test_v1_branch_refuses_to_wait_before_starting_anything():
    hook = StubHook(legacy=True)
    with pytest.raises(CmlConfigError, match="cannot report a run's status.*wait_for_completion=False"):
        _operator(hook).execute({"ti": StubTI()})
    assert hook.calls == []


def _deferred_until(operator: CmlRunJobOperator, ti: StubTI) -> tuple[float | None, str]:
    """The deadline and the setting that sets it, as the deferred wait's trigger carries them."""
    with pytest.raises(TaskDeferred) as info:
        operator.execute({"ti": ti})
    kwargs = info.value.trigger.serialize()[1]
    return kwargs["end_time"], kwargs["limit"]


def test_deadline_is_the_earlier_of_timeout_and_execution_timeout():
    started = StubTI(start_date=datetime.now(timezone.utc) - timedelta(seconds=30))
    by_timeout = _operator(StubHook(), timeout=100, execution_timeout=timedelta(hours=1), deferrable=True)
    deadline, limit = _deferred_until(by_timeout, started)
    assert deadline is not None and abs(deadline - (time.time() + 100)) < 5 and limit == "timeout"
    by_execution_timeout = _operator(
        StubHook(), timeout=3600, execution_timeout=timedelta(seconds=60), deferrable=True
    )
    deadline, limit = _deferred_until(by_execution_timeout, started)
    assert deadline == pytest.approx(started.start_date.timestamp() + 60) and limit == "execution_timeout"
    assert _deferred_until(_operator(StubHook(), deferrable=True), started) == (None, "timeout")
    # A synchronous wait leaves execution_timeout to Airflow (its kill stops the run via on_kill).
    hook = StubHook()
    _operator(hook, timeout=3600, execution_timeout=timedelta(seconds=60)).execute({"ti": started})
    (waited,) = [options for name, _, options in hook.calls if name == "wait"]
    assert waited["timeout"] == pytest.approx(3600, abs=5)


def test_deadline_counts_from_now_when_airflow_has_no_start_date():
    operator = _operator(StubHook(), execution_timeout=timedelta(seconds=60), deferrable=True)
    deadline, _ = _deferred_until(operator, StubTI(start_date=None))
    assert deadline is not None and abs(deadline - (time.time() + 60)) < 5


def test_deferrable_does_not_defer_a_run_that_already_ended():
    hook = StubHook(start_status="ENGINE_SUCCEEDED")
    assert _operator(hook, deferrable=True).execute({"ti": StubTI()}) == REF.run_id
    hook = StubHook(start_status="ENGINE_FAILED")
    with pytest.raises(CmlJobRunError, match="ENGINE_FAILED did not succeed"):
        _operator(hook, deferrable=True).execute({"ti": StubTI()})


def test_deferrable_hands_the_run_to_the_trigger():
    operator = _operator(StubHook(), deferrable=True, poll_interval=15, timeout=60, unknown_grace=120)
    with pytest.raises(TaskDeferred) as info:
        operator.execute({"ti": StubTI()})
    path, kwargs = info.value.trigger.serialize()
    assert path.endswith("CmlWorkloadTrigger") and info.value.method_name == "execute_complete"
    assert kwargs["kind"] == JOB_RUN.home and kwargs["ref"] == REF._asdict()
    assert kwargs["poll_interval"] == 15 and kwargs["unknown_grace"] == 120 and kwargs["owns"]
    assert kwargs["link"].endswith(REF.run_id)


#: What every event of the job-run trigger carries: the kind and the run's IDs.
EVENT = {
    "kind": "airflow_provider_cml.workloads.job_runs:JOB_RUN",
    "ref": {"project_id": "p", "job_id": "j", "run_id": "r9"},
}


@pytest.mark.parametrize(
    ("event", "error", "words"),
    [
        ({**EVENT, "status": "success", "answer": {"id": "r9", "status": "ENGINE_SUCCEEDED"}}, None, None),
        (
            {**EVENT, "status": "failed", "answer": {"id": "r9", "status": "ENGINE_FAILED"}, "link": "L"},
            CmlJobRunError,
            "ENGINE_FAILED did not succeed.*See L",
        ),
        ({**EVENT, "status": "timeout", "message": "still running"}, CmlJobRunTimeout, "still running"),
        ({**EVENT, "status": "unclear", "message": "lost track"}, CmlJobRunError, "lost track"),
        ({"status": "error", "message": "HTTP 403"}, CmlException, "HTTP 403"),
        (None, CmlException, "unexpected event"),
        ({"nothing": 1}, CmlException, "unexpected event"),
        ({"status": "success", "answer": {"id": "r9"}}, CmlException, "unexpected event"),  # no ref
    ],
)
def test_execute_complete(event, error, words):
    operator = _operator(StubHook())
    if error is None:
        assert operator.execute_complete({}, event) == "r9"
        return
    with pytest.raises(error, match=words):
        operator.execute_complete({}, event)


def test_on_kill_wakes_the_wait_and_stops_the_run():
    hook = StubHook()
    operator = _operator(hook)
    hook.during_wait = operator.on_kill
    operator.execute({"ti": StubTI()})
    assert hook.names()[-3:] == ["wait", "interrupt", "stop_if_active"] and hook.calls[-1][1] == (REF,)


def test_on_kill_before_a_start_or_without_waiting_stops_nothing():
    hook = StubHook()
    _operator(hook).on_kill()
    no_wait = _operator(hook, wait_for_completion=False)
    no_wait.execute({"ti": StubTI()})  # started a run it does not wait for
    no_wait.on_kill()
    # A wait for the job to be free may be sleeping before any start: it is woken, nothing stopped.
    assert [name for name in hook.names() if name not in ("resolve_run", "start_job_run")] == [
        "interrupt",
        "interrupt",
    ]


# -- if_active: the job already has an active run ---------------------------------------------------

BLOCKER = {"id": "blocker000000001", "status": "ENGINE_RUNNING"}


class BusyHook(StubHook):
    """A job that is busy for the first ``busy_for`` starts; its active run is ``blocker``."""

    def __init__(self, busy_for: int, blocker: dict | None = BLOCKER, ended: bool = True) -> None:
        super().__init__()
        self.busy_for, self.blocker, self.ended = busy_for, blocker, ended
        self.clock = self  # sleeps are recorded, not slept
        self.interrupted_event = None

    def sleep(self, seconds: float, event: Any = None) -> None:
        self._record("sleep", seconds)

    def start_job_run(self, project: str, job: str, environment: Any = None, arguments: Any = None) -> dict:
        if self.busy_for:
            self.busy_for -= 1
            self._record("start_job_run(busy)")
            raise CmlJobAlreadyActiveError("job run for job jjjj already active")
        return super().start_job_run(project, job, environment, arguments)

    def active_run(self, project_id: str, job_id: str) -> dict | None:
        self._record("active_run", project_id, job_id)
        return self.blocker

    def wait(self, wait: Wait, timeout: float | None = None) -> Ended:
        if wait.owns:  # this task's own run
            return super().wait(wait, timeout)
        options = {
            "timeout": timeout,
            "poll_interval": wait.poll_interval,
            "unknown_grace": wait.unknown_grace,
        }
        self._record("wait_until_ended", wait.ref, **options)
        return Ended("success" if self.ended else "timeout", JOB_RUN, wait.ref)


def test_if_active_must_be_known():
    with pytest.raises(CmlConfigError, match="if_active must be one of 'fail', 'wait', 'reattach'"):
        _operator(StubHook(), if_active="queue")


def test_if_active_fail_raises_the_busy_error_with_what_the_task_can_do():
    hook = BusyHook(busy_for=1)
    with pytest.raises(CmlJobAlreadyActiveError) as info:
        _operator(hook).execute({"ti": StubTI()})
    assert "already active" in str(info.value) and "if_active='wait' starts this task's run" in str(
        info.value
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_if_active_fail_says_when_the_active_run_is_this_task_instances_own():
    ti = StubTI()
    identity = {
        "AIRFLOW_CTX_DAG_ID": "d",
        "AIRFLOW_CTX_TASK_ID": "t",
        "AIRFLOW_CTX_DAG_RUN_ID": "manual__1",
        "AIRFLOW_CTX_MAP_INDEX": "-1",
    }
    hook = BusyHook(busy_for=1, blocker={**BLOCKER, "environment": json.dumps(identity)})
    with pytest.raises(CmlJobAlreadyActiveError) as info:
        _operator(hook).execute({"ti": ti})
    assert "was started by this task instance" in str(info.value) and "if_active='reattach' adopts it" in str(
        info.value
    )
    assert "if_active='wait'" not in str(info.value)


def test_an_error_while_waiting_for_a_busy_job_does_not_chain_the_busy_error():
    """A kill or timeout during if_active='wait' must not show the busy error's advice with it."""
    hook = BusyHook(busy_for=1, ended=False)
    with pytest.raises(CmlJobRunTimeout) as info:
        _operator(hook, if_active="wait", timeout=5).execute({"ti": StubTI()})
    assert info.value.__context__ is None and "nothing was started" in str(info.value)


def test_if_active_wait_waits_for_the_other_run_then_starts():
    hook = BusyHook(busy_for=1)
    assert (
        _operator(hook, if_active="wait", timeout=100, poll_interval=3).execute({"ti": StubTI()})
        == REF.run_id
    )
    assert hook.names() == [
        "resolve_run",
        "start_job_run(busy)",
        "active_run",
        "wait_until_ended",
        "start_job_run",
        "wait",
    ]
    _, (blocker,), options = hook.calls[3]
    assert blocker == REF._replace(run_id=BLOCKER["id"])
    assert options["poll_interval"] == 3 and 99 < options["timeout"] <= 100


def test_if_active_wait_gives_up_at_the_timeout_with_nothing_started():
    hook = BusyHook(busy_for=5, ended=False)
    with pytest.raises(CmlJobRunTimeout, match="still busy with run blocker000000001.*nothing was started"):
        _operator(hook, if_active="wait", timeout=100).execute({"ti": StubTI()})
    assert "start_job_run" not in hook.names() and "stop_if_active" not in hook.names()


def test_if_active_wait_tries_again_when_the_active_run_is_already_gone():
    hook = BusyHook(busy_for=2, blocker=None)
    assert _operator(hook, if_active="wait").execute({"ti": StubTI()}) == REF.run_id
    assert hook.names().count("sleep") == 2 and "wait_until_ended" not in hook.names()


def test_if_active_wait_deferrable_waits_for_the_other_run_in_the_triggerer():
    operator = _operator(BusyHook(busy_for=1), if_active="wait", deferrable=True, timeout=60)
    with pytest.raises(TaskDeferred) as info:
        operator.execute({"ti": StubTI()})
    _, kwargs = info.value.trigger.serialize()
    assert info.value.method_name == "execute_after_busy"
    assert kwargs["ref"]["run_id"] == BLOCKER["id"] and not kwargs["owns"] and not kwargs["follow_retries"]
    assert kwargs["carry"]["deadline"] == pytest.approx(time.time() + 60, abs=5)
    # The other run ended: the start happens now (and defers on this task's own run).
    resumed = _operator(StubHook(), if_active="wait", deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        resumed.execute_after_busy(
            {"ti": StubTI()},
            {**EVENT, "status": "failed", "ref": {**EVENT["ref"], "run_id": BLOCKER["id"]}, "carry": {}},
        )
    assert info.value.method_name == "execute_complete"
    assert info.value.trigger.serialize()[1]["ref"]["run_id"] == REF.run_id
    # The deadline set before the first deferral still bounds the wait after it.
    resumed = _operator(StubHook(), if_active="wait", deferrable=True)
    later = time.time() + 30
    with pytest.raises(TaskDeferred) as info:
        resumed.execute_after_busy(
            {"ti": StubTI()}, {**EVENT, "status": "success", "carry": {"deadline": later}}
        )
    assert info.value.trigger.serialize()[1]["end_time"] == later
    # The deadline passed first: nothing is started.
    late = StubHook()
    with pytest.raises(CmlJobRunTimeout, match="nothing was started"):
        _operator(late, if_active="wait").execute_after_busy(
            {"ti": StubTI()}, {**EVENT, "status": "timeout", "ref": {**EVENT["ref"], "run_id": "b"}}
        )
    assert late.calls == []


def test_if_active_reattach_adopts_only_this_task_instances_run():
    ti = StubTI()
    identity = {
        "AIRFLOW_CTX_DAG_ID": ti.dag_id,
        "AIRFLOW_CTX_TASK_ID": ti.task_id,
        "AIRFLOW_CTX_DAG_RUN_ID": ti.run_id,
        "AIRFLOW_CTX_MAP_INDEX": "-1",
        "AIRFLOW_CTX_TRY_NUMBER": "1",
    }
    ours = {**BLOCKER, "environment": identity}
    hook = BusyHook(busy_for=1, blocker=ours)
    assert _operator(hook, if_active="reattach").execute({"ti": ti}) == BLOCKER["id"]
    assert [n for n in hook.names() if n.startswith("start")] == ["start_job_run(busy)"]
    theirs = {**BLOCKER, "environment": {**identity, "AIRFLOW_CTX_MAP_INDEX": "3"}}
    with pytest.raises(CmlJobAlreadyActiveError, match="was not started by this task instance"):
        _operator(BusyHook(busy_for=1, blocker=theirs), if_active="reattach").execute({"ti": ti})


class SubmitHook(StubHook):
    """StubHook plus the job-definition calls CmlSubmitRunOperator makes (``hook.jobs.*``)."""

    @property
    def jobs(self) -> SubmitHook:
        return self

    def ensure_job(self, project: str, spec: Any) -> tuple[dict, str]:
        self._record("ensure_job", project, spec.name)
        return {"id": REF.job_id}, "created"

    def delete_job(self, project: str, job_id: str) -> bool:
        self._record("delete_job", project, job_id)
        return True


def test_submitted_job_is_deleted_when_a_deferrable_run_ended_before_deferring():
    from airflow_provider_cml.operators.jobs import CmlSubmitRunOperator

    hook = SubmitHook(start_status="ENGINE_SUCCEEDED")
    operator = CmlSubmitRunOperator(
        task_id="t", project="Analytics", job_spec={"script": "a.py"}, deferrable=True, delete_job_after=True
    )
    operator.__dict__["hook"] = hook
    assert operator.execute({"ti": StubTI()}) == REF.run_id
    assert hook.calls[0][1] == ("Analytics", "airflow d.t")
    assert hook.names()[-1] == "delete_job" and hook.calls[-1][1] == ("Analytics", REF.job_id)
