"""Finding an earlier try's run: through task_state_store, and through the run's environment tags."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_cml.exceptions import CmlJobRunError
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.reattach import EarlierRunFinder, task_identity


class _Store(dict):
    def set(self, key, value):
        self[key] = value


def _context(try_number: int, store=None, task_id: str = "train_task") -> dict:
    ti = SimpleNamespace(
        dag_id="dag_a", task_id=task_id, run_id="manual__1", map_index=-1, try_number=try_number
    )
    context = {"ti": ti}
    if store is not None:
        context["task_state_store"] = store
    return context


def _ids(wb, job):
    j = wb.workbench.job_by_name("Analytics", job)
    return j.project.id, j.id


def test_first_try_never_looks(wb):
    hook = CmlHook()
    assert EarlierRunFinder(hook, _context(1)).find(*_ids(wb, "slow")) is None
    assert wb.requests("GET") == []


def test_environment_tags_find_the_active_run_without_a_store(wb):
    hook = CmlHook()
    pid, jid = _ids(wb, "slow")
    first = hook.start_job_run(pid, jid, task_identity(_context(1)))
    found = EarlierRunFinder(hook, _context(2)).find(pid, jid)
    assert found is not None and found["id"] == first["id"]
    # Another task's run is not ours.
    assert EarlierRunFinder(hook, _context(2, task_id="other")).find(pid, jid) is None
    hook.wait_for_job_run(pid, jid, first["id"], poll_interval=0.1)
    # A succeeded run counts as the result.
    assert EarlierRunFinder(hook, _context(3)).find(pid, jid)["status"] == "ENGINE_SUCCEEDED"


def test_a_failed_earlier_run_is_not_reattached(wb):
    hook = CmlHook()
    pid, jid = _ids(wb, "fail")
    run = hook.start_job_run(pid, jid, task_identity(_context(1)))
    with pytest.raises(CmlJobRunError):
        hook.wait_for_job_run(pid, jid, run["id"], poll_interval=0.1)
    assert wb.workbench.runs[run["id"]].status == "ENGINE_FAILED"
    assert EarlierRunFinder(hook, _context(2)).find(pid, jid) is None


def test_the_store_is_used_when_there_is_one(wb):
    hook = CmlHook()
    pid, jid = _ids(wb, "slow")
    store = _Store()
    run = hook.start_job_run(pid, jid, {})  # no tags: only the store can find it
    EarlierRunFinder(hook, _context(1, store)).remember(pid, jid, run["id"])
    assert EarlierRunFinder(hook, _context(2, store)).find(pid, jid)["id"] == run["id"]
    hook.wait_for_job_run(pid, jid, run["id"], poll_interval=0.1)
