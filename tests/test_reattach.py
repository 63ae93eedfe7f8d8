"""Finding an earlier try's run: through task_state_store, and through the run's environment tags."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_cml.exceptions import CmlJobRunError
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.reattach import EarlierRunFinder, task_identity
from tests.conftest import task_context


class _Store(dict):
    def set(self, key, value):
        self[key] = value


def _context(
    try_number: int, store=None, task_id: str = "train_task", max_tries: int = 3, retries: int = 3
) -> dict:
    """A try's context; ``max_tries`` as Airflow keeps it: ``retries`` at first, and after a Clear
    of try ``n``, ``n + retries``."""
    context = {
        **task_context("dag_a", task_id, try_number, max_tries=max_tries),
        "task": SimpleNamespace(retries=retries),
    }
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
    # Nor after a Clear (max_tries = 1 + retries): the job runs again.
    assert EarlierRunFinder(hook, _context(2, max_tries=4, retries=3)).find(pid, jid) is None


def test_the_store_is_used_when_there_is_one(wb):
    hook = CmlHook()
    pid, jid = _ids(wb, "slow")
    store = _Store()
    run = hook.start_job_run(pid, jid, {})  # no tags: only the store can find it
    EarlierRunFinder(hook, _context(1, store)).remember(pid, jid, run["id"])
    assert EarlierRunFinder(hook, _context(2, store)).find(pid, jid)["id"] == run["id"]
    hook.wait_for_job_run(pid, jid, run["id"], poll_interval=0.1)


def _succeeded_run(hook, pid, jid, context) -> dict:
    run = hook.start_job_run(pid, jid, task_identity(context))
    hook.wait_for_job_run(pid, jid, run["id"], poll_interval=0.1)
    return run


def test_a_cleared_task_does_not_take_its_earlier_success(wb):
    """Clear after success (max_tries raised to 1 + retries): the job runs again; a retry takes it."""
    hook = CmlHook()
    pid, jid = _ids(wb, "train")
    run = _succeeded_run(hook, pid, jid, _context(1, retries=0, max_tries=0))
    # Cleared after try 1 with retries=0: max_tries = 1 + 0.
    assert EarlierRunFinder(hook, _context(2, retries=0, max_tries=1)).find(pid, jid) is None
    # A retry of the same attempt (max_tries untouched): the worker was lost before the run ended.
    found = EarlierRunFinder(hook, _context(2, retries=1, max_tries=1)).find(pid, jid)
    assert found is not None and found["id"] == run["id"]


def test_a_retry_after_a_clear_ignores_the_success_from_before_the_clear(wb):
    """Try 2 (first after a Clear) was lost before it started anything: try 3 starts a run."""
    hook = CmlHook()
    pid, jid = _ids(wb, "train")
    _succeeded_run(hook, pid, jid, _context(1, retries=1, max_tries=1))
    cleared = {"retries": 1, "max_tries": 2}  # cleared after try 1: max_tries = 1 + 1
    assert EarlierRunFinder(hook, _context(3, **cleared)).find(pid, jid) is None
    # Had try 2 started a run that then succeeded, try 3 would take it.
    second = _succeeded_run(hook, pid, jid, _context(2, **cleared))
    assert EarlierRunFinder(hook, _context(3, **cleared)).find(pid, jid)["id"] == second["id"]


def test_a_cleared_task_still_reattaches_to_an_active_run(wb):
    hook = CmlHook()
    pid, jid = _ids(wb, "slow")
    run = hook.start_job_run(pid, jid, task_identity(_context(1, retries=0, max_tries=0)))
    found = EarlierRunFinder(hook, _context(2, retries=0, max_tries=1)).find(pid, jid)
    assert found is not None and found["id"] == run["id"]
    hook.wait_for_job_run(pid, jid, run["id"], poll_interval=0.1)


def test_the_store_keeps_the_try_and_a_clear_ignores_its_success(wb):
    hook = CmlHook()
    pid, jid = _ids(wb, "train")
    store = _Store()
    run = hook.start_job_run(pid, jid, {})  # no tags: only the store can find it, and say its try
    EarlierRunFinder(hook, _context(1, store, retries=0, max_tries=0)).remember(pid, jid, run["id"])
    assert store["cml_job_run"]["try_number"] == 1
    hook.wait_for_job_run(pid, jid, run["id"], poll_interval=0.1)
    assert EarlierRunFinder(hook, _context(2, store, retries=0, max_tries=1)).find(pid, jid) is None
    assert (
        EarlierRunFinder(hook, _context(2, store, retries=1, max_tries=1)).find(pid, jid)["id"] == run["id"]
    )
