"""A distributed Airflow: CeleryExecutor with two workers, Postgres, Redis, two triggerers.

The provider is installed from a built wheel into its own virtualenv with Airflow 3.3 and its
Celery and Postgres providers. Postgres and Redis come from Debian's packages (``.ci/run`` installs
them when missing) and are started here, on loopback ports of their own, with their data in a
temporary folder; without them the module is skipped, saying which one is missing. Each scenario
checks task states through the REST API and runs through the workbench's journal.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_cml._compat import AIRFLOW_VERSION
from tests.system.airflow_services import (
    POSTGRES,
    POSTGRES_MISSING,
    ROOT,
    UV,
    Services,
    free_port,
    postgres,
    runs_started_by,
    server_binary,
    stop_leftovers,
    wait_for,
)
from tests.system.deployed_dags import LOAD_JOB, many

_major, _minor = (int(p) for p in AIRFLOW_VERSION.split(".")[:2])


REDIS = server_binary("redis-server")

pytestmark = [
    pytest.mark.skipif((_major, _minor) < (3, 3), reason="the distributed run is set up for Airflow 3.3+"),
    pytest.mark.skipif(UV is None, reason="needs uv (make install puts it in the virtualenv)"),
    pytest.mark.skipif(not POSTGRES, reason=POSTGRES_MISSING),
    pytest.mark.skipif(REDIS is None, reason="needs redis-server (Debian: redis-server)"),
    pytest.mark.airflow_dag,
    pytest.mark.real_services,
    pytest.mark.distributed,
]

#: Scenario 5's deferred tasks (one job each: a job has one active run at a time).
MANY = many()


@contextlib.contextmanager
def _redis(folder: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=(folder / "redis.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for("redis", lambda: _listening(port), limit=30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Cluster(Services):
    """The running services, and what the scenarios read of their processes in ``/proc``."""

    def _group(self, name: str) -> list[int]:
        """The pids of a service's process group."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == self.processes[name].pid:
                    pids.append(int(stat.parent.name))
        return pids

    def owns_local_port(self, name: str, port: int) -> bool:
        """Whether a service's processes hold the TCP socket whose local port is ``port``."""
        inodes = set()
        for pid in self._group(name):
            for fd in Path(f"/proc/{pid}/fd").glob("*"):
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[9] in inodes:
                return True
        return False

    def cpu_seconds(self, name: str) -> dict[str, float]:
        """User + system CPU so far of a service's processes: ``"main"``, the process started (a
        triggerer's supervisor: Airflow's database loop), and ``"children"``, what it started (a
        triggerer's trigger runner: the event loop where the triggers poll)."""
        ticks = os.sysconf("SC_CLK_TCK")
        leader = self.processes[name].pid
        split = {"main": 0.0, "children": 0.0}
        for pid in self._group(name):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                split["main" if pid == leader else "children"] += (int(fields[11]) + int(fields[12])) / ticks
        return split


@contextlib.contextmanager
def _celery_on_postgres(base: Path) -> Iterator[dict[str, str]]:
    """Postgres and Redis for the deployment in ``base``, and the settings that use them."""
    with postgres(base) as database, _redis(base) as broker:
        yield {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "256",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{database}",
            # SQLAlchemy 2: the Celery result backend needs the psycopg2 dialect named.
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{database}",
            "AIRFLOW__CELERY__BROKER_URL": broker,
            # A killed worker's task is noticed in seconds, not the default five minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "12",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            # A killed triggerer's triggers move to the other one after this many seconds.
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
        }


@pytest.fixture(scope="module")
def cluster(airflow_deployment, workbench) -> Iterator[Cluster]:
    project = workbench.workbench.job_by_name("Analytics", "train").project
    existing = {job.name for job in workbench.workbench.jobs.values()}
    for i in range(MANY):  # scriptless jobs (90 s runs: a steady stretch of polling) for scenario 5
        if LOAD_JOB.format(i) not in existing:
            workbench.workbench.add_job(project, LOAD_JOB.format(i), script="", duration=90)
    fanout = workbench.workbench.job_by_name("Analytics", "fanout")
    for mode in ("sync", "deferrable"):  # scenario 1's, one a fan-out: the two run at the same time
        if f"fanout-{mode}" not in existing:
            workbench.workbench.add_job(project, f"fanout-{mode}", script=fanout.script, env=fanout.env)
    worker = ["celery", "worker", "-c", "8", "--skip-serve-logs", "--celery-hostname"]
    with airflow_deployment(
        "distributed",
        dags="distributed",
        extras="celery,postgres",
        backing=_celery_on_postgres,
        triggerers=2,
        more={"worker-1": [*worker, "w1@%h"], "worker-2": [*worker, "w2@%h"]},
        kind=Cluster,
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module", autouse=True)
def early(cluster: Cluster, workbench) -> Iterator[dict[str, tuple[str, float]]]:
    """The deferrable fan-out, started with the module to run beside the sync one (each on a job of
    its own); its test comes right after the sync one's, before any scenario kills a service. Runs
    still going when the module ends are stopped."""
    yield {"dist_fanout_deferrable": (cluster.trigger("dist_fanout_deferrable"), time.monotonic())}
    stop_leftovers(workbench)


@pytest.fixture
def wb(wb_across_tests):
    """The runs of :func:`early` go on across tests: no test's end may stop them."""
    return wb_across_tests


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_a_fan_out_over_one_job_waits_its_turn_across_both_workers(cluster, wb, early, mode):
    dag_id = f"dist_fanout_{mode}"
    run_id, started = early[dag_id] if dag_id in early else (cluster.trigger(dag_id), time.monotonic())
    states = cluster.finished(dag_id, [run_id], 10, limit=420)
    took = time.monotonic() - started
    assert states == ["success"] * 10, (states, cluster.logs)
    ours = sorted(runs_started_by(wb, f"fanout-{mode}", dag_id), key=lambda r: r.seq)
    assert len(ours) == 10 and {r.status for r in ours} == {"ENGINE_SUCCEEDED"}
    for before, after in itertools.pairwise(ours):  # one at a time: none overlapped
        assert before.times["finished_at"] <= after.created_at
    logs = {name: cluster.logs[name].read_text() for name in ("worker-1", "worker-2")}
    assert all(dag_id in text for text in logs.values()), "each worker ran some of the fan-out"
    print(f"\n[scenario 1, {mode}] 10 runs, none overlapping, in {took:.1f} s")


def test_a_killed_worker_leads_to_a_reattach_not_a_second_run(cluster, wb):
    dag_id = "dist_worker_killed"
    run_id = cluster.trigger(dag_id)
    wait_for("the run to start", lambda: len(runs_started_by(wb, "sleeper", dag_id)) == 1, limit=120)
    (run,) = runs_started_by(wb, "sleeper", dag_id)
    wait_for("the run to be running", lambda: run.status == "ENGINE_RUNNING", limit=60)
    holder = next(name for name in ("worker-1", "worker-2") if dag_id in cluster.logs[name].read_text())
    killed_at = time.monotonic()
    cluster.kill(holder)
    states = cluster.finished(dag_id, [run_id], 1, limit=300)
    assert states == ["success"], (states, holder)
    assert len(runs_started_by(wb, "sleeper", dag_id)) == 1  # reattached: one run in total
    assert run.status == "ENGINE_SUCCEEDED"
    (ti,) = cluster.task_instances(dag_id, run_id)
    assert ti["try_number"] == 2
    cluster.revive()
    print(
        f"\n[scenario 2] killed {holder}; try 2 reattached; success {time.monotonic() - killed_at:.1f} s later"
    )


def test_a_killed_triggerer_hands_its_trigger_to_the_other(cluster, wb):
    dag_id = "dist_triggerer_killed"
    run_id = cluster.trigger(dag_id)
    wait_for("the task to defer", lambda: cluster.states(dag_id, run_id) == ["deferred"], limit=120)
    (run,) = runs_started_by(wb, "sleeper", dag_id)

    def holder() -> str | None:  # the triggerer whose socket sent the run's latest poll
        polls = wb.requests("GET", rf".*/runs/{run.id}")
        if not polls:
            return None
        port = polls[-1].peer_port
        return next((n for n in ("triggerer-1", "triggerer-2") if cluster.owns_local_port(n, port)), None)

    wait_for("a triggerer to take the trigger", lambda: holder() is not None, limit=60)
    name = holder()
    assert name is not None
    polls_before = len(wb.requests("GET", rf".*/runs/{run.id}"))
    wait_for(
        "the trigger to poll", lambda: len(wb.requests("GET", rf".*/runs/{run.id}")) > polls_before, limit=30
    )
    killed_at, killed_wall = time.monotonic(), time.time()
    cluster.kill(name)
    other = "triggerer-2" if name == "triggerer-1" else "triggerer-1"
    wait_for("the other triggerer to poll the run", lambda: holder() == other, limit=120)
    states = cluster.finished(dag_id, [run_id], 1, limit=240)
    assert states == ["success"], (states, name)
    assert run.status == "ENGINE_SUCCEEDED" and not run.stop_requested
    assert len(wb.requests("POST", r".*/jobs/[^/]+/runs")) == 1  # started once
    after = [e for e in wb.requests("GET", rf".*/runs/{run.id}") if e.time > killed_wall]
    assert after, "polls went on after the kill"
    cluster.revive()
    print(
        f"\n[scenario 3] killed {name}; {other} took over; success {time.monotonic() - killed_at:.1f} s later"
    )


def test_a_reschedule_sensor_resolves_names_once(cluster, wb):
    from airflow_provider_cml.hooks.cml import CmlHook

    run = CmlHook().start_job_run("Analytics", "sleeper", {"SLEEP": "8"})
    wb.clear_journal()
    dag_id = "dist_reschedule_sensor"
    run_id = cluster.trigger(dag_id, {"run_id": run["id"]})
    states = cluster.finished(dag_id, [run_id], 1, limit=180)
    assert states == ["success"]
    reads = wb.requests("GET", rf".*/runs/{run['id']}")
    projects = wb.requests("GET", r"/api/v2/projects")
    jobs = wb.requests("GET", r"/api/v2/projects/[^/]+/jobs")
    assert len(reads) >= 3, "several pokes, each in a fresh process"
    assert len(projects) == 1 and len(jobs) == 1, (len(projects), len(jobs))  # resolved once
    print(
        f"\n[scenario 4] {len(reads)} pokes, names resolved once ({len(projects)} project and {len(jobs)} job listing)"
    )


def _reference_cpu_per_poll(cluster: Cluster) -> dict:
    """``benchmarks/trigger_scale.py`` on this machine, now, with the cluster's Python: the same
    number of triggers polling every second in one bare event loop (the yardstick of scenario 5)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["AIRFLOW_HOME"] = str(cluster.base / "bench-home")
    command = [str(cluster.base / "venv" / "bin" / "python"), str(ROOT / "benchmarks" / "trigger_scale.py")]
    command += ["--sides", "cml", "--triggers", str(MANY), "--poll", "1", "--spread", "10", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["cml"]


def test_two_hundred_deferred_tasks_across_both_triggerers(cluster, wb):
    """All end; the triggerers' CPU per poll beside ``trigger_scale.py``'s for as many triggers.

    Measured over a steady stretch (every task deferred, no event due: what polling costs once the
    triggers are built) and over the whole scenario, split between each triggerer's trigger runner
    (the event loop the triggers poll in, what ``trigger_scale.py`` measures) and its supervisor
    (Airflow's database loop: assigning triggers, cleaning up, heartbeats), whose idle cost is taken
    while the yardstick runs.
    """
    dag_id = "dist_many_deferred"
    triggerers = [name for name in ("triggerer-1", "triggerer-2") if cluster.processes[name].poll() is None]

    def cpu() -> dict[str, float]:
        splits = [cluster.cpu_seconds(name) for name in triggerers]
        return {"supervisor": sum(s["main"] for s in splits), "runner": sum(s["children"] for s in splits)}

    def since(before: dict[str, float]) -> dict[str, float]:
        now = cpu()
        return {part: now[part] - before[part] for part in now}

    def polls() -> int:
        return len(wb.requests("GET", r"/api/v2/projects/[^/]+/jobs/[^/]+/runs/[^/:]+"))

    idle_cpu, idle_at = cpu(), time.monotonic()
    reference = _reference_cpu_per_poll(cluster)
    idle_cpu, idle_for = since(idle_cpu), time.monotonic() - idle_at

    wb.clear_journal()
    cpu_before = cpu()
    run_id = cluster.trigger(dag_id)
    started = time.monotonic()
    # The steady stretch starts once 95% have deferred, or the first task has ended (on a slow
    # machine the first runs end before the last tasks defer), or after 300 s: it only gates the
    # measurement, which says how many were deferred.
    give_up = time.monotonic() + 300
    while time.monotonic() < give_up:
        if cluster.count(dag_id, run_id, "deferred") >= 0.95 * MANY or cluster.count(
            dag_id, run_id, "success"
        ):
            break
        time.sleep(1)
    deferred_at_start = cluster.count(dag_id, run_id, "deferred")
    steady_cpu, steady_polls, steady_at = cpu(), polls(), time.monotonic()
    time.sleep(10)
    steady_cpu, steady_polls = since(steady_cpu), polls() - steady_polls
    steady_for = time.monotonic() - steady_at
    still = cluster.count(dag_id, run_id, "deferred")
    states = cluster.finished(dag_id, [run_id], MANY, limit=600)
    took = time.monotonic() - started
    total_cpu = since(cpu_before)
    assert states == ["success"] * MANY, {s: states.count(s) for s in set(states)}
    runs = {r.id for i in range(MANY) for r in runs_started_by(wb, LOAD_JOB.format(i), dag_id)}
    assert len(runs) == MANY  # one run per task
    total_polls = sum(1 for e in wb.requests("GET", r".*/runs/[^/:]+") if e.path.rsplit("/", 1)[1] in runs)
    assert steady_polls > 0 and steady_cpu["runner"] > 0  # the stretch measured polling triggers

    yardstick = reference["cpu_ms_per_poll"]

    def per_poll(seconds: float, count: int) -> str:
        ms = 1000 * seconds / max(1, count)
        return f"{ms:.2f} ms ({ms / yardstick:.1f}x)"

    print(
        f"\n[scenario 5] {MANY} deferred tasks in {took:.0f} s on {len(triggerers)} triggerers; "
        f"trigger_scale.py, {MANY} triggers in one loop: {yardstick:.2f} ms per poll "
        f"({reference['requests']} polls)\n"
        f"  steady stretch ({steady_for:.1f} s, {deferred_at_start} deferred at its start, {still} at its "
        f"end): {steady_polls} polls; trigger runners {per_poll(steady_cpu['runner'], steady_polls)} "
        f"per poll, whole triggerers {per_poll(sum(steady_cpu.values()), steady_polls)}; supervisors "
        f"{steady_cpu['supervisor'] / steady_for:.3f} CPU s/s (idle: {idle_cpu['supervisor'] / idle_for:.3f}, "
        f"runners idle {idle_cpu['runner'] / idle_for:.3f})\n"
        f"  whole scenario: {total_polls} polls; trigger runners {per_poll(total_cpu['runner'], total_polls)} "
        f"per poll, whole triggerers {per_poll(sum(total_cpu.values()), total_polls)}"
    )
