"""Drive the workbench with cai-mcp-server's job tools, as an agent would; print what each returned.

Run by the Python of a virtualenv that has ``cai-mcp-server`` (0.2.13) and not this provider: a
public client no one here wrote. Settings come from its own variables (CAI_BASE_URL, CAI_API_KEY,
CAI_ENABLE_JOB_RUNS, CAI_ALLOWED_JOBS). Prints one JSON object: tool name -> its answer, or the
error it raised.
"""

from __future__ import annotations

import asyncio
import json
import sys

from cai_mcp_server.config import Settings
from cai_mcp_server.service import WorkbenchService
from cai_mcp_server.workbench_client import WorkbenchClient


async def main() -> dict:
    settings = Settings()
    seen: dict = {}
    async with WorkbenchClient(settings) as client:
        service = WorkbenchService(client, settings)

        async def call(name: str, tool, **kwargs):
            try:
                seen[name] = await tool(**kwargs)
            except Exception as exc:  # the test reads it
                seen[name] = {"error": f"{type(exc).__name__}: {exc}"}
            return seen[name]

        await call("list", service.get_job_status, job_name=None, project_name="Analytics", recent_runs=3)
        await call("details", service.get_job_details, job_name="sleeper", project_name="Analytics")
        await call("run", service.run_job, job_name="sleeper", project_name="Analytics")
        await call(
            "status", service.get_job_status, job_name="sleeper", project_name="Analytics", recent_runs=5
        )
        await call("stop", service.stop_job_run, job_name="sleeper", project_name="Analytics")
        for _ in range(100):  # until the stop has ended the run
            history = await call(
                "history",
                service.get_job_run_history,
                job_name="sleeper",
                project_name="Analytics",
                recent_runs=5,
            )
            if history.get("runs") and history["runs"][0]["status"] == "stopped":
                break
            await asyncio.sleep(0.1)
        await call("run_quick", service.run_job, job_name="report-env", project_name="Analytics")
        for _ in range(100):
            done = await call(
                "status_quick",
                service.get_job_status,
                job_name="report-env",
                project_name="Analytics",
                recent_runs=1,
            )
            if (done.get("latest_run") or {}).get("status") == "succeeded":
                break
            await asyncio.sleep(0.1)
    return seen


if __name__ == "__main__":
    json.dump(asyncio.run(main()), sys.stdout, default=str)
