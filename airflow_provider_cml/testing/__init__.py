"""A local Cloudera AI workbench for tests: the real API's shape, job scripts really run.

Standard library only, so it costs nothing to users who do not use it::

    from airflow_provider_cml.testing import local_workbench

    spec = {"api_keys": ["test-key"], "projects": [{"name": "demo", "owner": "alice",
            "folder": "jobs", "jobs": [{"name": "train", "script": "train.py"}]}]}
    with local_workbench(spec, base_dir=".") as server:
        print(server.url)  # point a ``cml`` connection here, password "test-key"
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow_provider_cml.testing.server import Faults, JournalEntry, WorkbenchServer
from airflow_provider_cml.testing.workbench import ApiError, Job, Project, Run, Workbench


def load_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON workbench spec."""
    return json.loads(Path(path).read_text())


@contextmanager
def local_workbench(
    spec: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike[str] = ".",
    port: int = 0,
    step_delay: float = 0.05,
    ssl_context: ssl.SSLContext | None = None,
    output_dir: str | os.PathLike[str] | None = None,
) -> Iterator[WorkbenchServer]:
    """Serve a workbench built from ``spec`` on loopback for the duration of the block."""
    workbench = Workbench(spec, base_dir=base_dir, step_delay=step_delay, output_dir=output_dir)
    with WorkbenchServer(workbench, port=port, ssl_context=ssl_context) as server:
        yield server


__all__ = [
    "ApiError",
    "Faults",
    "Job",
    "JournalEntry",
    "Project",
    "Run",
    "Workbench",
    "WorkbenchServer",
    "load_spec",
    "local_workbench",
]
