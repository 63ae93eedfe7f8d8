"""Triggerer scale: N CmlJobRunTriggers in one event loop beside N DbtCloudRunJobTriggers.

The parent process serves the local Cloudera AI workbench (runs ending over about a minute) and a
small fake dbt Cloud endpoint (HTTPS, as the dbt hook insists on ``https://``), each counting the
TCP connections it accepts and the requests it answers. Each side's triggers then run in a fresh
child process, one event loop, so peak memory and CPU seconds belong to that side alone.

    python benchmarks/trigger_scale.py [--triggers 1000] [--poll 1.0] [--spread 60]
"""

from __future__ import annotations

import argparse
import asyncio
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
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KEY = "bench-key-0123456789"
BASE_DURATION = 5.0


# -- the fake dbt Cloud endpoint -------------------------------------------------------------------


class FakeDbtServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a burst of connections must not overflow the listen backlog

    def __init__(self, ends: dict[int, float], ssl_context: Any) -> None:
        super().__init__(("127.0.0.1", 0), _DbtHandler)
        self.ends = ends
        self.connections = 0
        self.requests = 0
        self.poll_times: dict[int, list[float]] = {}
        self.lock = threading.Lock()
        self.socket = ssl_context.wrap_socket(self.socket, server_side=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)


class _DbtHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeDbtServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        match = re.search(r"/runs/(\d+)/", self.path)
        run_id = int(match.group(1)) if match else -1
        with self.server.lock:
            self.server.requests += 1
            self.server.poll_times.setdefault(run_id, []).append(time.time())
        # dbt Cloud statuses: 3 running, 10 success.
        status = 10 if time.time() >= self.server.ends.get(run_id, 0) else 3
        body = json.dumps({"data": {"id": run_id, "status": status}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# -- children: one event loop full of triggers -----------------------------------------------------


def child(side: str, plan_path: str) -> None:
    import logging

    logging.disable(logging.INFO)  # neither side's per-poll INFO lines are part of the measurement
    plan = json.loads(Path(plan_path).read_text())
    if side == "cml":
        from airflow_provider_cml.triggers.cml import CmlJobRunTrigger

        triggers = [
            CmlJobRunTrigger(project_id=p, job_id=j, run_id=r, poll_interval=plan["poll"])
            for p, j, r in plan["runs"]
        ]
        ids = [r for _, _, r in plan["runs"]]
    else:
        from airflow.providers.dbt.cloud.triggers.dbt import DbtCloudRunJobTrigger

        triggers = [
            DbtCloudRunJobTrigger(
                conn_id="dbt_fake",
                run_id=i,
                end_time=time.time() + 3600,
                poll_interval=plan["poll"],
                account_id=1,
            )
            for i in plan["runs"]
        ]
        ids = plan["runs"]
    fired: dict[str, float] = {}
    statuses: dict[str, str] = {}
    before = resource.getrusage(resource.RUSAGE_SELF)
    rss_before = before.ru_maxrss

    async def wait(trigger: Any, run_id: Any) -> None:
        async for event in trigger.run():
            fired[str(run_id)] = time.time()
            statuses[str(run_id)] = event.payload["status"]
            return

    async def main() -> None:
        await asyncio.gather(*(wait(t, i) for t, i in zip(triggers, ids)))

    asyncio.run(main())
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "fired": fired,
                "statuses": statuses,
                "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "peak_rss_mb": after.ru_maxrss / 1024,
                "rss_growth_mb": (after.ru_maxrss - rss_before) / 1024,
            }
        )
    )


def run_child(side: str, plan: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(plan, handle)
    out = subprocess.run(
        [sys.executable, __file__, "--child", side, handle.name],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- the parent: servers, plans, the table ---------------------------------------------------------


def _iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _extra_polls(poll_times: dict[Any, list[float]], ends: dict[Any, float], poll: float) -> list[int]:
    """Per run: polls made minus polls needed (one per interval from the first poll until the run
    ended, plus the one that saw it end). Negative: a poll cycle took longer than the interval."""
    return [
        len(times) - (max(0, math.ceil((ends[run] - min(times)) / poll)) + 1)
        for run, times in poll_times.items()
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which runs end")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "PLAN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from airflow_provider_cml.testing import local_workbench
    from airflow_provider_cml.testing.tls import make_test_pki, server_ssl_context

    n = args.triggers
    durations = [BASE_DURATION + args.spread * i / max(1, n - 1) for i in range(n)]
    results: dict[str, dict[str, Any]] = {}

    # Cloudera AI side
    jobs = [{"name": f"job-{i:04d}", "duration": d} for i, d in enumerate(durations)]
    spec = {"api_keys": [KEY], "projects": [{"name": "Scale", "owner": "perf", "jobs": jobs}]}
    with local_workbench(spec, step_delay=0.0) as server:
        os.environ["AIRFLOW_CONN_CML_DEFAULT"] = server.airflow_connection(KEY)
        from airflow_provider_cml.hooks.cml import CmlHook

        hook = CmlHook()
        project_id = hook.resolve_project("Scale")["id"]
        runs = []
        for job in server.workbench.jobs.values():
            run = hook.start_job_run(project_id, job.id)
            runs.append((project_id, job.id, run["id"]))
        server.clear_journal()
        connections_before = server.connections_opened
        report = run_child("cml", {"runs": runs, "poll": args.poll}, {})
        finished = {r.id: _iso(r.times["finished_at"]) for r in server.workbench.runs.values()}
        polls: dict[str, list[float]] = {}
        for entry in server.journal:
            polls.setdefault(entry.path.rsplit("/", 1)[-1], []).append(entry.time)
        extra = _extra_polls(polls, finished, args.poll)
        results["airflow-provider-cml"] = {
            **report,
            "connections": server.connections_opened - connections_before,
            "requests": len(server.journal),
            # Runs that ended before their trigger's first poll count from that first poll.
            "delays": [report["fired"][rid] - max(finished[rid], min(polls[rid])) for rid in report["fired"]],
            "extra_polls": extra,
        }

    # dbt Cloud side
    with tempfile.TemporaryDirectory() as folder:
        pki = make_test_pki(folder)
        start = time.time() + 5  # children take a few seconds to import; runs end over the same spread
        ends = {i: start + d for i, d in enumerate(durations)}
        dbt = FakeDbtServer(ends, server_ssl_context(pki))
        threading.Thread(target=dbt.serve_forever, daemon=True).start()
        conn = json.dumps(
            {
                "conn_type": "dbt_cloud",
                "host": f"127.0.0.1:{dbt.server_address[1]}",
                "login": "1",
                "password": "t",
            }
        )
        report = run_child(
            "dbt",
            {"runs": list(range(n)), "poll": args.poll},
            {"AIRFLOW_CONN_DBT_FAKE": conn, "SSL_CERT_FILE": pki["ca"]},
        )
        dbt.shutdown()
        results["dbt Cloud provider"] = {
            **report,
            "connections": dbt.connections,
            "requests": dbt.requests,
            "delays": [
                report["fired"][str(i)] - max(ends[i], min(dbt.poll_times[i]))
                for i in range(n)
                if str(i) in report["fired"]
            ],
            "extra_polls": _extra_polls(dbt.poll_times, ends, args.poll),
        }

    print(f"{n} triggers in one event loop, poll interval {args.poll:g}s, runs ending over {args.spread:g}s")
    header = (
        "provider",
        "events",
        "peak RSS MB",
        "CPU s",
        "TCP conns",
        "HTTP reqs",
        "delay p50 s",
        "delay p99 s",
    )
    print(" | ".join(header))
    for name, r in results.items():
        delays = r["delays"] or [float("nan")]
        row = (
            name,
            f"{sum(1 for s in r['statuses'].values() if s == 'success')}/{n}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['cpu_s']:.1f}",
            r["connections"],
            r["requests"],
            f"{statistics.median(delays):.2f}",
            f"{_percentile(delays, 0.99):.2f}",
        )
        print(" | ".join(str(v) for v in row))
    cml, dbt_r = results["airflow-provider-cml"], results["dbt Cloud provider"]
    print(
        f"ratios dbt/cml: CPU {dbt_r['cpu_s'] / cml['cpu_s']:.1f}x, TCP connections "
        f"{dbt_r['connections'] / max(1, cml['connections']):.0f}x, peak RSS "
        f"{dbt_r['peak_rss_mb'] / cml['peak_rss_mb']:.1f}x"
    )
    for name, r in results.items():
        kinds: dict[str, int] = {}
        for status in r["statuses"].values():
            kinds[status] = kinds.get(status, 0) + 1
        print(f"{name} events by status: {kinds}")
    for name, r in results.items():
        extra = r["extra_polls"]
        print(
            f"{name}: polls made minus polls needed per run: max {max(extra)}, median "
            f"{statistics.median(extra):g}, min {min(extra)} (below 0: a cycle took longer than the interval)"
        )


if __name__ == "__main__":
    main()
