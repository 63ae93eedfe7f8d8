"""A real Airflow for the real-services tests: the provider's wheel, Airflow's services, its REST API.

The provider is built into a wheel and installed with Airflow into a virtualenv of its own (as a
deployment installs it: a triggerer imports trigger classes from the installed package only).
Each service runs as its own process group, so that a kill reaches the children it started (the
api-server's child outlives a TERM to its parent).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).parents[2]
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
#: Task states that end a task instance.
FINAL = ("success", "failed", "upstream_failed", "skipped")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*args: str, **kwargs: Any) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=600, **kwargs)


def wait_for(what: str, check: Callable[[], Any], limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def install(base: Path, airflow_requirement: str) -> Path:
    """Build the provider's wheel and install it with ``airflow_requirement`` into ``base/venv``.

    :returns: the virtualenv.
    """
    assert UV is not None
    run(UV, "build", "--wheel", "--out-dir", str(base / "dist"), str(ROOT))
    wheel = next((base / "dist").glob("airflow_provider_cml-*.whl"))
    venv = base / "venv"
    run(UV, "venv", "--quiet", "--python", sys.executable, str(venv))
    python = str(venv / "bin" / "python")
    run(UV, "pip", "install", "--quiet", "--python", python, airflow_requirement, str(wheel))
    return venv


def server_binary(name: str) -> str | None:
    """A server binary on PATH, or in Debian's versioned PostgreSQL folder."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


INITDB, PG_CTL, CREATEDB = server_binary("initdb"), server_binary("pg_ctl"), server_binary("createdb")
#: Whether PostgreSQL's tools are here: every deployment's database is a PostgreSQL of its own. On
#: SQLite, Airflow's services writing at once on a loaded 2-core machine failed with "database is
#: locked": the scheduler's loop died, the API answered 500.
POSTGRES = None not in (INITDB, PG_CTL, CREATEDB)
POSTGRES_MISSING = "needs PostgreSQL's initdb, pg_ctl, createdb (Debian: postgresql; .ci/run installs it)"


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the ``postgres`` user."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def postgres(logs: Path) -> Iterator[str]:
    """A PostgreSQL server on a loopback port of its own, with a database ``airflow``.

    :param logs: where a link to the server's log is put.
    :returns: ``user@host:port/database``.
    """
    assert INITDB and PG_CTL and CREATEDB, POSTGRES_MISSING
    # A folder of its own: pytest's are private to root, and the server runs as "postgres".
    folder = Path(tempfile.mkdtemp(prefix="cml-airflow-pg-"))
    data, sockets = folder / "pgdata", folder / "pgsock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    run(*_as_postgres([INITDB, "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8"]))
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off"
    log = folder / "postgres.log"
    run(*_as_postgres([PG_CTL, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]))
    (logs / "postgres.log").symlink_to(log)
    try:
        run(*_as_postgres([CREATEDB, "-h", "127.0.0.1", "-p", str(port), "-U", "airflow", "airflow"]))
        yield f"airflow@127.0.0.1:{port}/airflow"
    finally:
        subprocess.run(
            _as_postgres([PG_CTL, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def environment(base: Path, port: int, cml_connection: str, **settings: str) -> dict[str, str]:
    """This process's environment without Airflow's variables, set for a deployment in ``base``.

    :param base: the deployment's folder (``home``, ``dags`` below it).
    :param port: the api-server's port.
    :param cml_connection: ``AIRFLOW_CONN_CML_DEFAULT``.
    :param settings: more variables (executor, database...).
    """
    # Without PYTHONDONTWRITEBYTECODE (set in some shells and CI images): as in a deployment, the
    # first process to import a module caches its bytecode. With it, each service and each task
    # process compiled Airflow and the provider from source again, a CPU-second or more every time.
    skip = ("AIRFLOW", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        {
            "AIRFLOW_HOME": str(base / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(base / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW_CONN_CML_DEFAULT": cml_connection,
            **settings,
        }
    )
    return env


class Services:
    """Airflow's services by name, each a process group with its log file, and the REST API.

    :param base: the deployment's folder (logs are written there).
    :param venv: the virtualenv Airflow is installed in.
    :param env: the services' environment.
    :param commands: each service's ``airflow`` arguments, by name.
    """

    def __init__(
        self, base: Path, venv: Path, env: Mapping[str, str], commands: Mapping[str, list[str]]
    ) -> None:
        self.base, self.env, self.commands = base, dict(env), dict(commands)
        self.home = base / "home"
        self.airflow = str(venv / "bin" / "airflow")
        self.url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}"
        self.headers: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start one service (its log is appended to)."""
        self.logs[name] = self.base / f"{name}.log"
        with self.logs[name].open("a") as out:
            self.processes[name] = subprocess.Popen(
                [self.airflow, *self.commands[name]],
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        return self.processes[name]

    def up(self, dag_ids: tuple[str, ...]) -> None:
        """Migrate the database, start every service, wait until the API answers and has the DAGs."""
        run(self.airflow, "db", "migrate", env=self.env)
        for name in self.commands:
            self.start(name)

        def healthy() -> bool:
            dead = [name for name, p in self.processes.items() if p.poll() is not None]
            assert not dead, f"{dead} exited: " + "".join(self.logs[n].read_text()[-3000:] for n in dead)
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).ok
            return False

        wait_for("the API server", healthy, limit=180)
        token = requests.get(f"{self.url}/auth/token", timeout=10).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        for dag_id in dag_ids:
            wait_for(
                f"the dag-processor to parse {dag_id}",
                lambda dag_id=dag_id: (
                    requests.get(f"{self.url}/api/v2/dags/{dag_id}", headers=self.headers, timeout=10).ok
                ),
                limit=180,
            )

    def kill(self, name: str) -> None:
        """``kill -9`` a service and everything it started."""
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(timeout=30)

    def revive(self) -> None:
        """Start again every service that has exited."""
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                self.start(name)

    def down(self) -> None:
        """TERM every service's process group; KILL what is still there after 30 s."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """Start a DAG run through the REST API; its run id."""
        created = requests.post(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf or {}},
            headers=self.headers,
            timeout=30,
        )
        created.raise_for_status()
        return str(created.json()["dag_run_id"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """A DAG run's task instances, every page."""
        found: list[dict] = []
        while True:  # the API pages (50 by default, at most [api] maximum_page_limit, 100)
            answer = requests.get(
                f"{self.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": len(found)},
                headers=self.headers,
                timeout=30,
            )
            answer.raise_for_status()
            page = answer.json()
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def only_task(self, dag_id: str, run_id: str) -> dict:
        """The task instance of a DAG run of one task."""
        (ti,) = self.task_instances(dag_id, run_id)
        return ti

    def states(self, dag_id: str, run_id: str) -> list[str]:
        """A DAG run's task instances' states."""
        return [ti["state"] for ti in self.task_instances(dag_id, run_id)]

    def count(self, dag_id: str, run_id: str, state: str) -> int:
        """How many of a DAG run's task instances are in ``state`` (one small answer, however many)."""
        answer = requests.get(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
            params={"state": state, "limit": 1},
            headers=self.headers,
            timeout=30,
        )
        answer.raise_for_status()
        return int(answer.json()["total_entries"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        """A DAG run's state (``queued``, ``running``, ``success``, ``failed``)."""
        answer = requests.get(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=self.headers, timeout=30
        )
        answer.raise_for_status()
        return str(answer.json()["state"])

    def finished(self, dag_id: str, run_ids: list[str], count: int, limit: float) -> list[str]:
        """Wait until DAG runs have ended; their ``count`` task instances' states, in order.

        Polled by the runs' states, not by listing every task instance each time: on a 2-core
        machine the API server serialising hundreds of them twice a second took CPU from the tasks.
        A run ends once each of its tasks has ended; the task instances are then waited for all the same.
        """

        def ended(run_id: str) -> bool:
            return self.run_state(dag_id, run_id) in ("success", "failed")

        def done() -> bool:
            states = [s for run_id in run_ids for s in self.states(dag_id, run_id)]
            return len(states) == count and all(state in FINAL for state in states)

        wait_for(f"{dag_id} to finish", lambda: all(ended(run_id) for run_id in run_ids), limit=limit)
        wait_for(f"{dag_id}'s task instances to be final", done, limit=30)
        return [s for run_id in run_ids for s in self.states(dag_id, run_id)]

    def mark_failed(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Mark a task instance failed through the REST API, as a user killing it does."""
        marked = requests.patch(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
            json={"new_state": "failed"},
            headers=self.headers,
            timeout=30,
        )
        marked.raise_for_status()

    def task_log(self, dag_id: str, trigger: bool | None = None) -> str:
        """The task logs of ``dag_id``: the triggerer's parts only (``trigger=True``), the workers' only
        (``False``) or both."""
        files = sorted((self.home / "logs" / f"dag_id={dag_id}").rglob("*.log"))
        return "".join(p.read_text() for p in files if trigger is None or (".trigger." in p.name) == trigger)


def runs_started_by(wb: Any, job: str, dag_id: str) -> list:
    """The job's runs (in Analytics) whose environment names ``dag_id`` (every run carries its task's
    identity).

    :param wb: the workbench server.
    :param job: the job's name.
    :param dag_id: the DAG.
    """
    found = wb.workbench.runs_of(wb.workbench.job_by_name("Analytics", job))
    return [r for r in found if r.environment.get("AIRFLOW_CTX_DAG_ID") == dag_id]


def stop_leftovers(workbench: Any) -> None:
    """Stop every run still going on the workbench (what ``wb`` does after each test).

    :param workbench: the workbench server.
    """
    for run in workbench.workbench.active_runs():
        workbench.workbench.stop_run(run)
