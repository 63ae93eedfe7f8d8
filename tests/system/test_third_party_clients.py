"""Public clients of the real API, written by others, against the local workbench.

``cai-mcp-server`` 0.2.13 (Cloudera AI's task-level MCP tools) reads a run's ``status`` directly and
sends its own bodies: its job tools (list, details, run, status, stop, history) must work here as on
a real workbench. It lives in a virtualenv of its own (``make test`` builds ``.venv-mcp``): its
dependencies are not Airflow's.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from airflow_provider_cml.testing import local_workbench
from tests.conftest import API_KEY, TESTS
from tests.contract import check_exchanges

MCP_PYTHON = Path(os.environ.get("CML_MCP_PYTHON", TESTS.parent / ".venv-mcp" / "bin" / "python"))

pytestmark = pytest.mark.skipif(
    not MCP_PYTHON.exists(), reason="cai-mcp-server's virtualenv is missing: `make test` builds .venv-mcp"
)

SPEC = {
    "api_keys": {API_KEY: "alice"},
    "projects": [
        {
            "name": "Analytics",
            "owner": "alice",
            "folder": "jobs",
            "jobs": [
                {"name": "sleeper", "script": "sleeper.py", "env": {"SLEEP": "30"}},
                {"name": "report-env", "script": "report_env.py"},
                {"name": "fail", "script": "report_env.py", "env": {"EXIT_CODE": "3"}},
            ],
        },
        {"name": "Other", "owner": "alice", "folder": "jobs", "jobs": [{"name": "sleeper", "duration": 0.1}]},
    ],
}


def test_cai_mcp_server_job_tools_work_against_the_workbench():
    with local_workbench(SPEC, base_dir=TESTS, step_delay=0.05) as server:
        env = {
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("CAI_", "PYTHONPATH", "VIRTUAL_ENV"))
            },
            "CAI_BASE_URL": server.url,
            "CAI_API_KEY": API_KEY,
            "CAI_ENABLE_JOB_RUNS": "true",
            "CAI_ALLOWED_JOBS": "Analytics/sleeper,Analytics/report-env",
        }
        done = subprocess.run(
            [str(MCP_PYTHON), str(TESTS / "clients" / "drive_cai_mcp.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout)
        sleeper = server.workbench.job_by_name("Analytics", "sleeper")
        runs = server.workbench.runs_of(sleeper)
        journal = list(server.journal)
    errors = {name: answer["error"] for name, answer in seen.items() if "error" in answer}
    assert not errors, errors
    # list: every job of the project, by name, with no run yet
    listed = seen["list"]
    assert listed["resolved"] and sorted(j["job_name"] for j in listed["jobs"]) == [
        "fail",
        "report-env",
        "sleeper",
    ]
    # details: the job's settings
    assert seen["details"]["resolved"] and seen["details"]["settings"]["job_name"] == "sleeper"
    # run: started, and its status is known from the first answer (not "unknown")
    assert seen["run"]["started"] and seen["run"]["run"]["status"] == "scheduling"
    assert seen["run"]["run"]["raw_status"] == "ENGINE_SCHEDULING"
    # status: the run it started is the latest, and active
    assert seen["status"]["latest_run"]["status"] in ("scheduling", "starting", "running")
    # stop: found the active run (scheduling counts as active) and stopped it
    assert seen["stop"]["stopped"] and len(runs) == 1 and runs[0].stop_requested
    # history: the stopped run
    assert seen["history"]["runs"][0]["status"] == "stopped" and runs[0].status == "ENGINE_STOPPED"
    # a run that ends by itself
    assert seen["run_quick"]["started"] and seen["status_quick"]["latest_run"]["status"] == "succeeded"
    # Every answer the workbench gave this client matches the API's contract.
    problems = check_exchanges(journal)
    assert not problems, "\n".join(problems[:20])
