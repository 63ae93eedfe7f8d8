"""The simulated workbench's model registry writes: ``POST /registry/models`` from an experiment run.

As the fact sheets have it (``cml-api-v2-experiments.md`` §7, ``cml-api-v2-models-apps.md`` §6): the
body names the run (``project_id``, ``experiment_id``, ``run_id``), the ``model_path`` it logged
the model under and the ``model_name``; a model of that name gets a new version, else it is made.
The answer is the RegisteredModel with its ``model_versions``. The new version's
``model_version_metadata`` names the project and, in ``mlflow_metadata``, the experiment, the run
and a snapshot of the run's latest metrics, params and tags; the run's
``data.registered_model_metadata`` gets an entry for it.

A version is ``REGISTERING`` (the spec lists no values: a plausible one) until
:attr:`Registry.ready_after` seconds have passed, then ``READY``; with :attr:`Registry.fail_with`
set when it was registered, it ends ``FAILED`` with that ``error_message`` instead. Statuses move
when the registry is read (no thread). Callers hold ``wb.lock``. Standard library only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_cml.testing.workbench import ApiError, _now, _resource_id

if TYPE_CHECKING:
    from airflow_provider_cml.testing.serving import Serving

#: What a registration needs (400 without it).
REQUIRED = ("project_id", "experiment_id", "run_id", "model_path", "model_name")


class Registry:
    """Registrations of one workbench (``workbench.serving.registry_writes``).

    :param serving: the models' state (its ``registry`` holds the registered models).
    :param ready_after: seconds a new version stays ``REGISTERING``.
    """

    def __init__(self, serving: Serving, ready_after: float = 0.3) -> None:
        self.serving = serving
        self.ready_after = ready_after
        #: An ``error_message``: versions registered while it is set end ``FAILED`` with it.
        self.fail_with = ""
        #: version ID -> (monotonic time it settles, the error it settles with or "").
        self.pending: dict[str, tuple[float, str]] = {}

    def register(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """CreateRegisteredModel: a new version of ``model_name`` (the model made when missing).

        :param body: CreateRegisteredModelRequest.
        """
        missing = [key for key in REQUIRED if not str(body.get(key) or "").strip()]
        if missing:
            raise ApiError(400, f"missing required field(s): {', '.join(missing)}")
        wb = self.serving.wb
        experiments = wb.experiments
        run = experiments.run(
            experiments.experiment(wb.project(str(body["project_id"])), str(body["experiment_id"])),
            str(body["run_id"]),
        )
        name = str(body["model_name"])
        model = next((m for m in self.serving.registry.values() if m["name"] == name), None)
        if model is None:
            model = self.serving.register(
                {"name": name, "versions": [], "description": body.get("description") or ""}
            )
        if body.get("visibility"):
            model["visibility"] = str(body["visibility"])
        versions = model["model_versions"]
        number = max((v["number"] for v in versions), default=0) + 1
        version = {
            "model_id": model["model_id"],
            "model_version_id": _resource_id(),
            "version_name": f"v{number}",
            "number": number,
            "notes": str(body.get("notes") or ""),
            "user": wb.project(str(body["project_id"])).owner,
            "created_at": _now(),
            "updated_at": _now(),
            "status": "REGISTERING",
            "model_version_metadata": {
                "mlops_type": "MLFLOW",
                "project_id": str(body["project_id"]),
                "owner": wb.project(str(body["project_id"])).owner,
                "mlflow_metadata": {
                    "experiment_id": run.experiment.id,
                    "run_id": run.id,
                    "metrics": run.latest_metrics(),  # a snapshot: later metrics are the run's only
                    "params": [{"key": k, "value": v} for k, v in run.params.items()],
                    "tags": [{"key": k, "value": v} for k, v in run.tags.items()],
                },
            },
            "tags": [dict(t) for t in body.get("tags") or []],
        }
        versions.append(version)
        model["count"] = len(versions)
        model["updated_at"] = version["created_at"]
        self.pending[version["model_version_id"]] = (time.monotonic() + self.ready_after, self.fail_with)
        run.registered_model_metadata.append(
            {
                "model_path": str(body["model_path"]),
                "model_name": name,
                "model_id": model["model_id"],
                "model_version_id": version["model_version_id"],
                "version_number": number,
                "run_id": run.id,
                "created_at": version["created_at"],
            }
        )
        return model

    def settle(self) -> None:
        """Move every version whose time has come to ``READY`` (or ``FAILED`` with its error)."""
        now = time.monotonic()
        due = {vid: error for vid, (when, error) in self.pending.items() if when <= now}
        if not due:
            return
        for model in self.serving.registry.values():
            for version in model["model_versions"]:
                if version["model_version_id"] in due:
                    error = due[version["model_version_id"]]
                    version["status"] = "FAILED" if error else "READY"
                    if error:
                        version["error_message"] = error
                    version["updated_at"] = _now()
        for vid in due:
            del self.pending[vid]
