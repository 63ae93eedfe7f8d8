"""Triggerer scale: N CmlJobRunTriggers in one event loop beside the dbt Cloud and Databricks triggers.

Each side's N triggers run in a fresh child process, one event loop, so CPU seconds and peak memory
belong to that side alone. The parent serves what they poll from one lean asyncio server (see
:class:`FakeApiServer`): Cloudera AI JobRuns and the Databricks Jobs API over plain HTTP, dbt Cloud
over HTTPS (its hook insists on ``https://``); runs end over ``--spread`` seconds. It counts the TCP
connections each side opens and the time of every poll.

Sides: ``cml`` (the provider as shipped: aiohttp, one shared session per event loop), ``dbt``
(``DbtCloudRunJobTrigger``) and ``databricks`` (``DatabricksExecutionTrigger``). INFO logging is
off in every child: the Databricks trigger logs every poll, ours only status changes. Children
cache bytecode in a private folder, warmed by a small run of each side first, as an installed
triggerer does: without it, modules imported on the first poll would be compiled on the clock.

    python benchmarks/trigger_scale.py --triggers 1000 --poll 1      # CPU per poll, polls short
    python benchmarks/trigger_scale.py --triggers 10000 --poll 30    # memory, connections
    python benchmarks/trigger_scale.py --profile                     # where a poll's CPU goes
    python benchmarks/trigger_scale.py --sides cml --json            # figures for a caller to compare
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

KEY = "bench-key-0123456789"
BASE_DURATION = 5.0
SIDES = ("cml", "dbt", "databricks")


# -- one fake endpoint for all three APIs -----------------------------------------------------------


class FakeApiServer:
    """Answers run-status reads of one API ("cml", "dbt" or "databricks") on an asyncio server.

    The same lean server for every side, in its own thread and event loop, so that answering costs
    each side the same and stays far below what the triggers cost (Python's http.server could not
    answer 1,000 polls a second on this machine, and the triggers then fell behind through no fault
    of their own). Counts TCP connections, and the time of every poll per run.
    """

    def __init__(self, api: str, ends: dict[Any, float], ssl_context: Any = None) -> None:
        self.api = api
        self.ends = ends
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests = 0
        self.poll_times: dict[Any, list[float]] = {}
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def start(self) -> FakeApiServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def shutdown(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.ssl_context, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                target = lines[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
                }
                length = int(headers.get("content-length") or 0)
                sent = json.loads(await reader.readexactly(length)) if length else {}
                body = json.dumps(self._answer(target, sent)).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _answer(self, target: str, sent: dict[str, Any]) -> dict[str, Any]:
        path, _, query = target.partition("?")
        if self.api == "cml":
            run_id: Any = path.rsplit("/", 1)[-1]
        elif self.api == "dbt":
            match = re.search(r"/runs/(\d+)/", path)
            run_id = int(match.group(1)) if match else -1
        else:  # Databricks sends run_id as a query parameter, or as a JSON body even on GET
            found = parse_qs(query).get("run_id")
            run_id = int(found[0]) if found else int(sent.get("run_id", -1))
        now = time.time()
        self.requests += 1
        self.poll_times.setdefault(run_id, []).append(now)
        ended = now >= self.ends.get(run_id, 0)
        if self.api == "cml":  # a spec JobRun
            parts = path.split("/")
            return {
                "id": run_id,
                "project_id": parts[-5],
                "job_id": parts[-3],
                "status": "ENGINE_SUCCEEDED" if ended else "ENGINE_RUNNING",
                "created_at": "2026-12-01T00:00:00Z",
                "running_at": "2026-12-01T00:00:01Z",
                **({"finished_at": "2026-12-01T00:01:00Z"} if ended else {}),
            }
        if self.api == "dbt":  # dbt Cloud statuses: 3 running, 10 success
            return {"data": {"id": run_id, "status": 10 if ended else 3}}
        state = {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"} if ended else {}
        return {
            "run_id": run_id,
            "state": {"life_cycle_state": "RUNNING", "state_message": "", **state},
            "run_page_url": f"http://databricks.local/run/{run_id}",
            "tasks": [],
        }


# -- children: one event loop full of triggers -----------------------------------------------------


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _triggers(side: str, plan: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    poll = plan["poll"]
    if side == "cml":
        from airflow_provider_cml.triggers.cml import CmlJobRunTrigger

        triggers = [
            CmlJobRunTrigger(project_id=p, job_id=j, run_id=r, poll_interval=poll) for p, j, r in plan["runs"]
        ]
        return triggers, [r for _, _, r in plan["runs"]]
    if side == "dbt":
        from airflow.providers.dbt.cloud.triggers.dbt import DbtCloudRunJobTrigger

        triggers = [
            DbtCloudRunJobTrigger(
                conn_id="dbt_fake", run_id=i, end_time=time.time() + 3600, poll_interval=poll, account_id=1
            )
            for i in plan["runs"]
        ]
        return triggers, plan["runs"]
    from airflow.providers.databricks.triggers.databricks import DatabricksExecutionTrigger

    triggers = [
        DatabricksExecutionTrigger(
            run_id=i, databricks_conn_id="databricks_fake", polling_period_seconds=poll
        )
        for i in plan["runs"]
    ]
    return triggers, plan["runs"]


def child(side: str, plan_path: str, profile_path: str | None = None) -> None:
    import logging

    logging.disable(logging.INFO)  # see the module docstring
    _raise_fd_limit()
    plan = json.loads(Path(plan_path).read_text())
    triggers, ids = _triggers(side, plan)
    fired: dict[str, float] = {}
    statuses: dict[str, str] = {}
    before = resource.getrusage(resource.RUSAGE_SELF)

    async def wait(trigger: Any, run_id: Any) -> None:
        async for event in trigger.run():
            fired[str(run_id)] = time.time()
            payload = event.payload
            status = payload.get("status")
            if side == "databricks":
                status = (
                    "success" if json.loads(payload["run_state"])["result_state"] == "SUCCESS" else "failed"
                )
            statuses[str(run_id)] = status if status in ("success", "failed") else str(status)
            return

    async def main() -> None:
        await asyncio.gather(*(wait(t, i) for t, i in zip(triggers, ids, strict=True)))

    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    asyncio.run(main())
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_path)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "fired": fired,
                "statuses": statuses,
                "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "peak_rss_mb": after.ru_maxrss / 1024,
            }
        )
    )


#: Children's bytecode: written even where PYTHONDONTWRITEBYTECODE is set (see the module docstring).
BYTECODE = tempfile.mkdtemp(prefix="trigger-scale-pyc-")


def run_child(
    side: str, plan: dict[str, Any], env: dict[str, str], profile: str | None = None
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(plan, handle)
    command = [sys.executable, __file__, "--child", side, handle.name] + ([profile] if profile else [])
    inherited = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    child_env = {**inherited, **env, "PYTHONPYCACHEPREFIX": BYTECODE}
    out = subprocess.run(command, env=child_env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{side} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the parent: servers, plans, the table ---------------------------------------------------------


def _polls_short(poll_times: dict[Any, list[float]], ends: dict[Any, float], poll: float) -> list[int]:
    """Per run: polls missed, read from the gaps between its polls as the server saw them.

    A gap of about one interval is on time; a gap of two intervals is one poll missed, and so on
    (``round(gap / poll) - 1``). Every trigger here sleeps the interval after each poll, so its
    polls drift later by the time a poll takes; counting "polls needed" from the first poll and the
    run's end instead (``ceil((end - first) / poll) + 1``) called such a drifted trigger short when
    its drift carried a poll past the end one tick sooner than the count expects.
    """
    short = []
    for run, times in poll_times.items():
        if run not in ends:
            continue
        ordered = sorted(times)
        short.append(sum(max(0, round((b - a) / poll) - 1) for a, b in itertools.pairwise(ordered)))
    return short


def _polls_short_by_count(
    poll_times: dict[Any, list[float]], ends: dict[Any, float], poll: float
) -> list[int]:
    """The earlier count (see :func:`_polls_short`), printed beside it for comparison."""
    return [
        (max(0, math.ceil((ends[run] - min(times)) / poll)) + 1) - len(times)
        for run, times in poll_times.items()
        if run in ends
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(
    report: dict[str, Any], polls: dict[Any, list[float]], ends: dict[Any, float], **extra: Any
) -> dict[str, Any]:
    requests = sum(len(times) for times in polls.values())
    return {
        **report,
        **extra,
        "requests": requests,
        "cpu_ms_per_poll": 1000 * report["cpu_s"] / max(1, requests),
        # Runs that ended before their trigger's first poll count from that first poll.
        "delays": [
            report["fired"][str(run)] - max(ends[run], min(times))
            for run, times in polls.items()
            if str(run) in report["fired"] and run in ends
        ],
        "short": _polls_short(polls, ends, extra["poll"]),
        "short_by_count": _polls_short_by_count(polls, ends, extra["poll"]),
    }


def measure(
    side: str, n: int, durations: list[float], poll: float, profile: str | None = None
) -> dict[str, Any]:
    from airflow_provider_cml.testing.tls import make_test_pki, server_ssl_context

    api = "cml" if side.startswith("cml") else side
    with tempfile.TemporaryDirectory() as folder:
        start = time.time() + 5  # children take a few seconds to import; runs end over the same spread
        if api == "cml":
            runs = [(f"proj-{i:05d}", f"job-{i:05d}", f"run{i:013d}") for i in range(n)]
            ends: dict[Any, float] = {run: start + d for (_, _, run), d in zip(runs, durations, strict=True)}
            plan: dict[str, Any] = {"runs": runs, "poll": poll}
        else:
            ends = {i: start + d for i, d in enumerate(durations)}
            plan = {"runs": list(range(n)), "poll": poll}
        if api == "dbt":
            pki = make_test_pki(folder)
            server = FakeApiServer(api, ends, server_ssl_context(pki)).start()
            conn = {
                "conn_type": "dbt_cloud",
                "host": f"127.0.0.1:{server.port}",
                "login": "1",
                "password": "t",
            }
            env = {"AIRFLOW_CONN_DBT_FAKE": json.dumps(conn), "SSL_CERT_FILE": pki["ca"]}
        elif api == "databricks":
            server = FakeApiServer(api, ends).start()
            conn = {
                "conn_type": "databricks",
                "host": "127.0.0.1",
                "port": server.port,
                "schema": "http",
                "password": "dapi-bench-token",
            }
            env = {"AIRFLOW_CONN_DATABRICKS_FAKE": json.dumps(conn)}
        else:
            server = FakeApiServer(api, ends).start()
            conn = {"conn_type": "cml", "host": f"http://127.0.0.1:{server.port}", "password": KEY}
            # The event hold (a guard against Airflow's deferral race, 10 s by default) is policy,
            # not polling: off here, so "delay" compares how soon each side's polls see the end.
            env = {"AIRFLOW_CONN_CML_DEFAULT": json.dumps(conn), "AIRFLOW__CML__TRIGGER_EVENT_HOLD": "0"}
        try:
            report = run_child(side, plan, env, profile)
        finally:
            server.shutdown()
        return _summary(report, server.poll_times, ends, connections=server.connections, poll=poll)


def print_table(n: int, poll: float, spread: float, results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{n} triggers in one event loop, poll interval {poll:g}s, runs ending over {spread:g}s (2 cores)"
    )
    header = (
        "side",
        "events",
        "peak RSS MB",
        "CPU s",
        "polls",
        "CPU ms/poll",
        "TCP conns",
        "polls short max",
        "(by count)",
        "delay p50 s",
        "delay p99 s",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, r in results.items():
        delays = r["delays"] or [float("nan")]
        short = r["short"] or [0]
        row = (
            name,
            f"{sum(1 for s in r['statuses'].values() if s == 'success')}/{n}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['cpu_s']:.1f}",
            r["requests"],
            f"{r['cpu_ms_per_poll']:.2f}",
            r["connections"],
            max(short),
            max(r["short_by_count"] or [0]),
            f"{statistics.median(delays):.2f}",
            f"{_percentile(delays, 0.99):.2f}",
        )
        print(" | ".join(str(v) for v in row))
    if "cml" in results:
        cml = results["cml"]
        for name, r in results.items():
            if name == "cml":
                continue
            print(
                f"ratios {name}/cml: CPU per poll {r['cpu_ms_per_poll'] / cml['cpu_ms_per_poll']:.1f}x, "
                f"peak RSS {r['peak_rss_mb'] / cml['peak_rss_mb']:.1f}x, "
                f"TCP connections {r['connections'] / max(1, cml['connections']):.1f}x"
            )


def profile(n: int, poll: float, spread: float) -> None:
    """One profiled run per client; CPU by category (tottime of the functions in each)."""
    import pstats

    durations = [BASE_DURATION + spread * i / max(1, n - 1) for i in range(n)]
    categories = {
        "waiting in epoll (idle, not CPU)": ("'poll' of 'select.epoll'",),
        "HTTP client (aiohttp, yarl, multidict)": ("aiohttp", "yarl", "multidict", "propcache"),
        "sockets and TLS (send, recv, ssl)": ("'send'", "'recv'", "socket", "ssl", "selector_events"),
        "asyncio machinery (tasks, timers, streams)": ("asyncio", "'_contextvars", "heapq", "selectors.py"),
        "JSON": ("json",),
        "provider: transport, hook, rule, trigger": ("airflow_provider_cml",),
        "logging": ("logging",),
        "Airflow (connections, masking, triggers)": ("airflow/", "airflow\\"),
    }
    for side in ("cml",):
        measure(side, 20, [BASE_DURATION + 2.0 * i / 19 for i in range(20)], poll)  # warm-up
        path = os.environ.get("CML_PROFILE_PATH") or tempfile.mktemp(suffix=".prof")
        result = measure(side, n, durations, poll, profile=path)
        stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
        totals = dict.fromkeys(categories, 0.0)
        totals["other"] = 0.0
        for (file, line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
            where = f"{file}:{line}({name})"
            for category, marks in categories.items():
                if any(mark in where for mark in marks):
                    totals[category] += tottime
                    break
            else:
                totals["other"] += tottime
        busy = sum(v for k, v in totals.items() if not k.startswith("waiting"))
        others = sorted(
            (
                (st[2], f"{f}:{ln}({fn})")
                for (f, ln, fn), st in stats.items()
                if not any(any(m in f"{f}:{ln}({fn})" for m in marks) for marks in categories.values())
            ),
            reverse=True,
        )[:5]
        per_poll = result["cpu_ms_per_poll"]
        print(f"\n{side}: {result['requests']} polls, {result['cpu_s']:.2f} CPU s, {per_poll:.2f} ms/poll")
        print("  (profiled: cProfile adds its own overhead; the shares are what matters)")
        for category, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
            share = 100 * seconds / busy if busy and not category.startswith("waiting") else float("nan")
            print(
                f"  {category:<52} {1e6 * seconds / max(1, result['requests']):8.1f} us/poll  {share:5.1f}%"
            )
        polls = max(1, result["requests"])
        print(
            "  largest in 'other': " + "; ".join(f"{where} {1e6 * t / polls:.1f} us" for t, where in others)
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which runs end")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    parser.add_argument("--profile", action="store_true", help="profile the cml side's polls instead")
    parser.add_argument("--json", action="store_true", help="print each side's figures as one JSON line")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    _raise_fd_limit()
    if args.profile:
        profile(min(args.triggers, 300), args.poll, min(args.spread, 20.0))
        return
    n = args.triggers
    durations = [BASE_DURATION + args.spread * i / max(1, n - 1) for i in range(n)]
    results: dict[str, dict[str, Any]] = {}
    for side in args.sides.split(","):
        measure(side, 20, [BASE_DURATION + 2.0 * i / 19 for i in range(20)], args.poll)  # warm-up
        started = time.monotonic()
        results[side] = measure(side, n, durations, args.poll)
        print(f"{side}: measured in {time.monotonic() - started:.0f}s", file=sys.stderr)
    if args.json:  # for a caller that compares (the distributed test): the scalar figures only
        scalars = (int, float, str)
        figures = {s: {k: v for k, v in r.items() if isinstance(v, scalars)} for s, r in results.items()}
        print(json.dumps(figures))
    else:
        print_table(n, args.poll, args.spread, results)


if __name__ == "__main__":
    main()
