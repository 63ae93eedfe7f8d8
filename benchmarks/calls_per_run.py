"""HTTP calls per run: a run lasting T seconds should cost 1 start + ceil(T / poll_interval) polls (± 1),
and finding a project and a job by name at most one paged walk each, even among many projects.

Runs against the local workbench (scriptless jobs that run for a set time) and reads its journal.

    python benchmarks/calls_per_run.py
"""

from __future__ import annotations

import json
import math
import os
import re

from airflow_provider_cml.testing import local_workbench

KEY = "bench-key-0123456789"
CASES = [(2.0, 0.5), (3.0, 1.0), (5.0, 1.0), (4.0, 2.0)]  # (run duration T, poll interval)


def main() -> None:
    jobs = [{"name": f"run-{t:g}s-every-{p:g}s", "duration": t} for t, p in CASES]
    projects = [{"name": "Bench", "owner": "perf", "jobs": jobs}]
    projects += [{"name": f"other-{i:03d}", "owner": "perf"} for i in range(150)]  # > 1 page of 100
    with local_workbench({"api_keys": [KEY], "projects": projects}, step_delay=0.0) as server:
        os.environ["AIRFLOW_CONN_CML_DEFAULT"] = server.airflow_connection(KEY)
        from airflow_provider_cml.hooks.cml import CmlHook

        header = ("T s", "poll s", "look-up GETs", "starts", "polls", "expected", "ok")
        print(" ".join(f"{h:>{max(6, len(h))}}" for h in header))
        for (duration, poll), job in zip(CASES, jobs, strict=True):
            hook = CmlHook()  # a fresh hook per task, as in Airflow
            server.clear_journal()
            project = hook.resolve_project("Bench")
            hook.resolve_job("Bench", job["name"])
            lookups = len(server.requests("GET", r"/api/v2/projects(/[^/]+/jobs)?"))
            run = hook.start_job_run("Bench", job["name"])
            hook.wait_for_job_run(project["id"], run["job_id"], run["id"], poll_interval=poll)
            starts = len(server.requests("POST", r".*/runs"))
            polls = len(server.requests("GET", rf".*/runs/{re.escape(run['id'])}"))
            expected = math.ceil(duration / poll)
            ok = abs(polls - expected) <= 1 and starts == 1 and lookups <= 2
            print(f"{duration:>5g} {poll:>7g} {lookups:>13} {starts:>7} {polls:>6} {expected:>9} {ok!s:>4}")
        print(json.dumps({"projects on the workbench": len(projects), "page size asked": 100}))


if __name__ == "__main__":
    main()
