"""``python -m airflow_provider_cml.testing --spec spec.json --port 8765``: serve a local workbench.

It prints the workbench's URL, then a line to paste into a shell, ``export
AIRFLOW_CONN_CML_DEFAULT='{...}'`` (Airflow's JSON form): host, the spec's first API key and every
extra the workbench needs, its model service URL included (the default,
``modelservice.<host>``, does not exist on loopback).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from pathlib import Path

from airflow_provider_cml.testing import WorkbenchServer, load_spec, local_workbench


def main(argv: list[str] | None = None) -> int:
    """Serve a local workbench from a spec file until interrupted.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description="Serve a simulated Cloudera AI workbench on loopback.")
    parser.add_argument("--spec", required=True, help="JSON spec of projects, jobs and API keys")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--step-delay", type=float, default=0.2, help="seconds per SCHEDULING/STARTING step")
    parser.add_argument("--url-file", help="write the server's URL to this file once it listens")
    parser.add_argument("--output-dir", help="keep each run's output here as <run id>.log")
    args = parser.parse_args(argv)
    spec_path = Path(args.spec)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with local_workbench(
        load_spec(spec_path),
        base_dir=spec_path.parent,
        port=args.port,
        step_delay=args.step_delay,
        output_dir=args.output_dir,
    ) as server:
        print(f"Cloudera AI workbench simulator listening on {server.url}", flush=True)
        print(connection_line(server), flush=True)
        if args.url_file:
            Path(args.url_file).write_text(server.url)
        stop.wait()
    return 0


def connection_line(server: WorkbenchServer, conn_id: str = "cml_default") -> str:
    """``export AIRFLOW_CONN_<ID>='<JSON>'`` for ``server``, with the spec's first API key.

    :param server: the running workbench.
    :param conn_id: the connection's id.
    """
    key = next(iter(server.workbench.key_users), "<API key>")
    return f"export AIRFLOW_CONN_{conn_id.upper()}={shlex.quote(server.airflow_connection(key))}"


if __name__ == "__main__":
    raise SystemExit(main())
