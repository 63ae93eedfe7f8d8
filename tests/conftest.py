"""Shared fixtures. Airflow reads its settings at import, so they are set here, first."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

TESTS = Path(__file__).parent
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="cml-test-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(TESTS / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
# dag.test() has no scheduler, so no deferral race to hold events back for (tests of the hold set
# it themselves; the real-services test runs with the default).
os.environ["AIRFLOW__CML__TRIGGER_EVENT_HOLD"] = "0"
for _name in [n for n in os.environ if n.startswith("AIRFLOW_CONN_") or n.startswith("CDSW_")]:
    del os.environ[_name]

import pytest  # noqa: E402

from airflow_provider_cml.client.retry import Clock  # noqa: E402
from airflow_provider_cml.testing import WorkbenchServer, local_workbench  # noqa: E402
from tests.contract import check_exchanges  # noqa: E402

API_KEY = "test-key-7f3a9c1e5b"
READONLY_KEY = "readonly-key-4d2b8e"
LEGACY_KEY = "legacy-v1-key-2c9d7a"  # CDSW_API_KEY: the only key v1 accepts
MOCK_KEY = "mock-secret-key-93k2j4h5"
MOCK_URL = "https://cml.example.com"

#: Files of one test that runs for a minute or more. ``make test`` hands whole files to two workers in
#: collection order: these go first, one to each worker, or the last of them runs alone at the end.
SLOW_FILES = ("test_demo.py", "test_fault_storm.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in SLOW_FILES)  # stable: the rest keep their order


def workbench_spec() -> dict[str, Any]:
    """Projects and jobs of the shared test workbench."""
    many_jobs = [{"name": f"job-{i:02d}", "script": "report_env.py"} for i in range(27)]
    return {
        "api_keys": {API_KEY: "alice"},
        "readonly_keys": [READONLY_KEY],
        "legacy_keys": [LEGACY_KEY],
        "serving": {"step": 0.05, "app_ready_after": 0.5},
        "projects": [
            {
                "name": "Analytics",
                "owner": "alice",
                "folder": "jobs",
                "env": {"PROJECT_LEVEL": "from-project", "OVERRIDDEN": "project"},
                "jobs": [
                    {"name": "report-env", "script": "report_env.py", "env": {"OVERRIDDEN": "job"}},
                    {"name": "fail", "script": "report_env.py", "env": {"EXIT_CODE": "3"}},
                    {"name": "sleeper", "script": "sleeper.py"},
                    {"name": "slow", "script": "sleeper.py", "env": {"SLEEP": "1.5"}},
                    {"name": "times-out", "script": "sleeper.py", "env": {"SLEEP": "30"}, "timeout": 1},
                    {"name": "train", "script": "report_env.py"},
                    {"name": "train-extended", "script": "report_env.py"},
                    # Fan-out: one job that many mapped task instances start (one run at a time).
                    {"name": "fanout", "script": "sleeper.py", "env": {"SLEEP": "0.3"}},
                    {"name": "parent", "script": "report_env.py"},
                    {"name": "child", "script": "report_env.py", "parent": "parent"},
                    {
                        "name": "skips-when-busy",
                        "script": "sleeper.py",
                        "env": {"SLEEP": "30"},
                        "on_concurrent_start": "skip",
                    },
                    # Scriptless jobs for what real scripts cannot show on demand.
                    {"name": "oom", "duration": 0.1, "oom": True},
                    {"name": "lost", "duration": 0.1, "unknown_for": -1},
                    {
                        "name": "flaky",
                        "duration": 0.1,
                        "exit_codes": [1, 0],
                        "retry": {
                            "retry_enabled": True,
                            "max_retry": 2,
                            "retry_delay": 1,
                            "retry_for_script_failure": True,
                        },
                    },
                    {
                        "name": "always-fails",
                        "duration": 0.1,
                        "exit_code": 4,
                        "retry": {
                            "retry_enabled": True,
                            "max_retry": 2,
                            "retry_delay": 0,
                            "retry_for_script_failure": True,
                        },
                    },
                ],
            },
            # Someone else's public project: listed only with include_public_projects=true.
            {
                "name": "Shared Models",
                "owner": "erin",
                "visibility": "public",
                "jobs": [{"name": "score", "duration": 0.1}],
            },
            {"name": "Analytics Archive", "owner": "alice", "folder": "jobs", "jobs": []},
            {"name": "Duplicate", "owner": "bob", "folder": "jobs", "jobs": []},
            {"name": "Duplicate", "owner": "carol", "folder": "jobs", "jobs": []},
            {"name": "Many Jobs", "owner": "team-ml", "folder": "jobs", "jobs": many_jobs},
            *({"name": f"filler-{i:02d}", "owner": "dave", "folder": "jobs"} for i in range(25)),
        ],
    }


@pytest.fixture(scope="session")
def workbench() -> Iterator[WorkbenchServer]:
    """One local workbench for the whole session (faults off)."""
    with local_workbench(workbench_spec(), base_dir=TESTS, step_delay=0.02) as server:
        yield server


@pytest.fixture
def wb(workbench: WorkbenchServer, monkeypatch: pytest.MonkeyPatch) -> WorkbenchServer:
    """The shared workbench with ``cml_default`` pointing at it, a clean journal and no faults."""
    workbench.faults = None
    workbench.clear_journal()
    monkeypatch.setenv("AIRFLOW_CONN_CML_DEFAULT", workbench.airflow_connection(API_KEY))
    monkeypatch.setenv("AIRFLOW_CONN_CML_LEGACY", workbench.airflow_connection(LEGACY_KEY, api_version="v1"))
    yield workbench
    workbench.faults = None
    # Every answer the workbench gave and every body the hook sent must match the API's contract.
    problems = check_exchanges(workbench.journal)
    assert not problems, "contract broken:\n" + "\n".join(problems[:20])
    # Nothing may be left running by a test, nor still stopping when the next one starts its job.
    stopping = workbench.workbench.active_runs()
    for run in stopping:
        if run.status != "ENGINE_STOPPING":
            workbench.workbench.stop_run(run)
    deadline = time.monotonic() + 10
    while any(run.status == "ENGINE_STOPPING" for run in stopping) and time.monotonic() < deadline:
        time.sleep(0.02)


def wait_until(what: str, check: Callable[[], Any], limit: float = 60.0) -> Any:
    """Poll ``check`` until it is truthy (its value returned); fail naming ``what`` after ``limit`` s.

    A guard against a hang, not a measure of speed: its limit is far above what a loaded 2-core
    machine needs (a 5 s limit failed in CI while other suites ran beside it).
    """
    deadline = time.monotonic() + limit
    while not (value := check()):
        assert time.monotonic() < deadline, f"still waiting for {what} after {limit:g}s"
        time.sleep(0.02)
    return value


def seen_by(server: WorkbenchServer, run_id: str) -> dict[str, Any]:
    """What the report_env.py script printed about its environment."""
    for line in server.workbench.run_output(run_id).splitlines():
        if line.startswith("SEEN "):
            return json.loads(line[5:])
    raise AssertionError(f"run {run_id} printed no SEEN line: {server.workbench.run_output(run_id)!r}")


@pytest.fixture
def mock_conn(monkeypatch: pytest.MonkeyPatch):
    """Set a ``cml_mock`` connection to a fake host; returns a setter for its extras."""

    def set_conn(**extra: Any) -> str:
        monkeypatch.setenv(
            "AIRFLOW_CONN_CML_MOCK",
            json.dumps({"conn_type": "cml", "host": MOCK_URL, "password": MOCK_KEY, "extra": extra}),
        )
        return "cml_mock"

    set_conn()
    return set_conn


class FakeClock(Clock):
    """A clock for one hook: sleeping records the seconds and moves its time on, at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float, wake: threading.Event | None = None) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock to hand to ``CmlHook(clock=...)``: no test waits out a back-off or a poll."""
    return FakeClock()


@pytest.fixture
def sleeps(clock: FakeClock) -> list[float]:
    """The seconds the hook built with ``clock`` slept."""
    return clock.sleeps


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[str]:
    """A migrated SQLite metadata database (one per test session)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env={**os.environ},
    )
    with _one_in_process_execution_api():
        yield _AIRFLOW_HOME


@contextlib.contextmanager
def _one_in_process_execution_api() -> Iterator[None]:
    """On Airflow 3, let every task ``dag.test()`` runs share one in-process Execution API app.

    ``dag.test()`` builds a new FastAPI app for each task it runs, and on Airflow 3.1 building one
    (its versioned routes) costs about a second of CPU: most of a DAG test's time there. The app is
    stateless between requests (``dag.test()`` sets its DAG bag again for each task), so one is kept.
    """
    try:
        from airflow.sdk.execution_time import supervisor
    except ImportError:  # Airflow 2 runs tasks without it
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(supervisor, "in_process_api_server", functools.cache(supervisor.in_process_api_server))
        yield


@pytest.fixture(scope="session")
def dagbag(airflow_db: str):
    """The test DAGs, parsed once."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    bag = DagBag(dag_folder=str(TESTS / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


def task_context(
    dag_id: str, task_id: str, try_number: int = 1, run_id: str = "manual__1", **ti_fields: Any
) -> dict[str, Any]:
    """A task try's context as the provider reads it: ``ti`` with its IDs and an ``xcom_push`` that
    keeps what it is given in ``ti.pushed``; ``ti_fields`` add to ``ti`` (``max_tries``...)."""
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        map_index=-1,
        try_number=try_number,
        xcom_push=lambda key, value: pushed.__setitem__(key, value),
        pushed=pushed,
        **ti_fields,
    )
    return {"ti": ti}
