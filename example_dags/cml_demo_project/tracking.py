"""Experiment tracking for the demo's job scripts, through the workbench's API v2.

On a real workbench a script calls MLflow (``mlflow.set_experiment``, ``mlflow.start_run``,
``mlflow.log_metrics``), whose ``cml://`` plugin sends the same calls to the same endpoints. The
local workbench has no such plugin, so the demo scripts call the endpoints directly, with the
variables Cloudera AI sets in every workload (``CDSW_API_URL``, ``CDSW_APIV2_KEY``,
``CDSW_PROJECT_ID``). Standard library only: a job's runtime need not have Airflow.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

# MLflow's run status numbers, which UpdateExperimentRun takes (RUNNING=1 ... KILLED=5).
FINISHED, FAILED = 3, 4


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    root = os.environ["CDSW_API_URL"].removesuffix("/api/v1")
    request = urllib.request.Request(
        f"{root}/api/v2{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": f"Bearer {os.environ['CDSW_APIV2_KEY']}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"{}")


def experiment_id(name: str) -> str:
    """The ID of the project's experiment ``name``, created the first time."""
    base = f"/projects/{os.environ['CDSW_PROJECT_ID']}/experiments"
    try:
        return str(_call("POST", base, {"name": name})["id"])
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # 409: it exists already
            raise
    token = ""
    while True:
        page = _call("GET", f"{base}?page_size=100&page_token={token}")
        for experiment in page.get("experiments") or []:
            if experiment["name"] == name:
                return str(experiment["id"])
        token = page.get("next_page_token") or ""
        if not token:
            raise LookupError(f"experiment {name!r} is neither creatable nor listed")


class Run:
    """One experiment run: started with tags, then metrics, params and a model logged, then ended."""

    def __init__(self, experiment: str, tags: dict[str, str]) -> None:
        self.experiment_id = experiment_id(experiment)
        self.base = f"/projects/{os.environ['CDSW_PROJECT_ID']}/experiments/{self.experiment_id}/runs"
        body = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        self.id = str(_call("POST", self.base, body)["id"])

    def log(self, metrics: dict[str, float], params: dict[str, str], model: dict[str, Any]) -> None:
        """Log metrics, parameters and the model's MLmodel description in one batch."""
        _call(
            "POST",
            f"{self.base}/{self.id}:logbatch",
            {
                "metrics": [{"key": k, "value": v} for k, v in metrics.items()],
                "params": [{"key": k, "value": v} for k, v in params.items()],
                "model_json": json.dumps(model),
            },
        )

    def end(self, status: int = FINISHED) -> None:
        """End the run (``FINISHED`` unless told otherwise)."""
        _call("PATCH", f"{self.base}/{self.id}", {"id": self.id, "status": status})
