"""How long one big answer holds the event loop every trigger of a triggerer shares.

A trigger polls a hostile local server that answers a run padded to ``--mebibytes`` MiB of JSON
(under the 8 MiB body bound it is read and parsed; past it, refused). A 10 ms ticker runs beside it
on the same loop; the longest gap between ticks is how long the loop stood still. It is printed
beside the time ``json.loads`` alone takes for the same body, as a ratio: the provider's share of a
stall is what the ratio says above 1 (reading in chunks, decompression, the status check).

    python benchmarks/loop_stall.py [--mebibytes 7 30] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.client.test_hostile_servers import hostile_trigger
from tests.client.test_hostile_wire import big_answer, raw_answer
from tests.hostile import hostile


async def _with_ticker(trigger: Any) -> tuple[str, float]:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        async for event in trigger.run():
            return event.payload["status"], max(gaps or [0.0])
        raise RuntimeError("no event")
    finally:
        stop.set()
        await ticker


def stall(mebibytes: int) -> tuple[str, float, float]:
    """One trigger against a ``mebibytes`` answer: its status, the longest loop gap, json.loads's time."""
    body = big_answer(mebibytes)
    started = time.perf_counter()
    json.loads(body)
    parse = time.perf_counter() - started
    page = raw_answer(f"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: {len(body)}", body)
    with hostile(lambda r: [page]) as server:
        conn = {"conn_type": "cml", "host": server.url, "password": "bench-key-0123"}
        conn["extra"] = {"timeout": 10, "max_retries": 0}
        os.environ["AIRFLOW_CONN_CML_HOSTILE"] = json.dumps(conn)
        status, gap = asyncio.run(_with_ticker(hostile_trigger(end_in=3, owns=False)))
    return status, gap, parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mebibytes", type=int, nargs="+", default=[7, 30])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| answer | event | longest loop gap ms (median) | json.loads alone ms | ratio |")
    print("|---|---|---|---|---|")
    for size in args.mebibytes:
        results = [stall(size) for _ in range(args.runs)]
        gap = statistics.median(r[1] for r in results) * 1000
        parse = statistics.median(r[2] for r in results) * 1000
        print(f"| {size} MiB | {results[0][0]} | {gap:.0f} | {parse:.0f} | {gap / parse:.2f} |")


if __name__ == "__main__":
    main()
