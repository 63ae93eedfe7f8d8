"""HTTP clients side by side: CPU per keep-alive GET of a small JSON answer, many tasks in one loop.

The triggers' client was chosen by this: httpx (what the provider used), aiohttp (measured only
when installed; never a dependency of the provider) and the provider's lean HTTP/1.1 client
(``airflow_provider_cml.http11``). Each client runs in a fresh child process against the same
lean server (``trigger_scale.FakeApiServer``), with at most 20 connections, as the triggers use.

    python benchmarks/http_clients.py [--tasks 1000] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

CLIENTS = ("lean", "httpx", "aiohttp")
POOL = 20


async def _run(client_name: str, url: str, tasks: int, each: int) -> None:
    path = "/api/v2/projects/p/jobs/j/runs/run0000000000001"
    if client_name == "lean":
        from airflow_provider_cml.http11 import LeanClient

        lean = LeanClient(url, headers={"Authorization": "Bearer k"}, ssl_context=None, connect_timeout=10)

        async def get() -> None:
            _status, _, body = await lean.request("GET", path)
            json.loads(body)

        close = lean.aclose
    elif client_name == "httpx":
        import httpx

        client = httpx.AsyncClient(
            base_url=url, limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        )

        async def get() -> None:
            (await client.get(path)).json()

        close = client.aclose
    else:
        import aiohttp

        session = aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=POOL))

        async def get() -> None:
            async with session.get(path) as response:
                await response.json()

        close = session.close

    async def worker() -> None:
        for _ in range(each):
            await get()

    await get()  # warm: imports, first connection
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    await close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"cpu_s": cpu, "wall_s": elapsed, "requests": tasks * each}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20, help="per task")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_run(args.child[0], args.child[1], args.tasks, args.requests))
        return
    from trigger_scale import FakeApiServer

    server = FakeApiServer("cml", {}).start()
    url = f"http://127.0.0.1:{server.port}"
    rows = {}
    for name in CLIENTS:
        command = [sys.executable, __file__, "--tasks", str(args.tasks), "--requests", str(args.requests)]
        out = subprocess.run([*command, "--child", name, url], capture_output=True, text=True, env=os.environ)
        if out.returncode != 0:
            print(f"{name}: not measured ({out.stderr.strip().splitlines()[-1]})")
            continue
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
    server.shutdown()
    print(
        f"\n{args.tasks} tasks x {args.requests} keep-alive GETs, at most {POOL} connections, one event loop"
    )
    print("client | CPU s | requests | CPU us/request | x lean")
    print("--- | --- | --- | --- | ---")
    lean = rows.get("lean", {}).get("cpu_s", 0) / max(1, rows.get("lean", {}).get("requests", 1))
    for name, row in rows.items():
        per = row["cpu_s"] / row["requests"]
        print(f"{name} | {row['cpu_s']:.2f} | {row['requests']} | {1e6 * per:.0f} | {per / lean:.1f}")


if __name__ == "__main__":
    main()
