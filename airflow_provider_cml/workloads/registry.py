"""The model registry: a registered model version as a workload, its API paths, the registration body.

From the fact sheets (``cml-api-v2-experiments.md`` §7, §11; ``cml-api-v2-models-apps.md`` §6):
``POST /registry/models`` registers a model from an experiment run ("if the model already exists a
new version is added") and answers the RegisteredModel, not the version; the new version is the one
whose ``model_version_metadata.mlflow_metadata.run_id`` is the run's, else the highest ``number``.

A version's ``status`` is a plain string whose values the spec does not list; Cloudera's registry
documentation shows ``READY``. So the kind depends on no other spelling: ``READY`` (any case, with or
without a ``MODEL_VERSION_`` prefix) succeeds; a non-empty ``error_message``, or a status word that
says it failed (``FAILED``, ``UPLOAD_FAILED``, ``ERROR``...), fails; anything else, or no status at
all, is progress (never "unclear": registration runs in the background and has no other words),
bounded by the task's ``timeout``. A version cannot be stopped (the API has only DELETE, which this
provider never sends).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from airflow_provider_cml.exceptions import CmlConfigError, CmlModelRegistrationError
from airflow_provider_cml.validation import path_segment
from airflow_provider_cml.waiting.kinds import WorkloadKind

#: The registry's models (ListRegisteredModels, CreateRegisteredModel).
REGISTERED_MODELS_PATH = "/registry/models"
#: What the registry's ``visibility`` takes (``CreateRegisteredModelRequest``).
VISIBILITIES = ("PRIVATE", "PUBLIC")
#: Words in a status that mean the registration failed, whatever the rest of it says.
FAILURE_WORDS = ("FAIL", "ERROR")
#: How much of a version's ``error_message`` a message repeats.
ERROR_MESSAGE_CHARS = 500


class RegisteredVersionRef(NamedTuple):
    """The IDs that name one registered model version (the registry is not inside a project)."""

    model_id: str
    model_version_id: str


def registered_model_path(model_id: str) -> str:
    """One registered model's path (GetRegisteredModel; pages its ``model_versions``).

    :param model_id: the registry's model ID.
    """
    return f"{REGISTERED_MODELS_PATH}/{path_segment('model_id', model_id)}"


@lru_cache(maxsize=4096)
def registered_version_path(ref: tuple[str, str]) -> str:
    """One version's path (GetRegisteredModelVersion; cached: a wait reads it every poll).

    :param ref: the registry's model ID and the version's ID.
    """
    model_id, version_id = ref
    return f"{registered_model_path(model_id)}/versions/{path_segment('version_id', version_id)}"


def error_message(answer: Mapping[str, Any]) -> str:
    """The version's ``error_message`` (stripped, at most :data:`ERROR_MESSAGE_CHARS`), ``""`` if none.

    :param answer: the version as the API returned it.
    """
    return str(answer.get("error_message") or "").strip()[:ERROR_MESSAGE_CHARS]


def summary(answer: Mapping[str, Any]) -> str:
    """``registered model version <id> (number n) of model <id>: <STATUS>``, and the registry's error.

    :param answer: the version as the API returned it.
    """
    status = REGISTERED_MODEL_VERSION.status_of(answer)
    said = str(answer.get("status") or "")
    spelled = f" (status {said!r})" if said and said.upper() != status else ""
    error = error_message(answer)
    return (
        f"registered model version {answer.get('model_version_id')} (number {answer.get('number')}) of "
        f"model {answer.get('model_id')}: {status}{spelled}" + (f", error_message {error!r}" if error else "")
    )


@dataclass(frozen=True)
class _VersionKind(WorkloadKind):
    """A registered version's statuses: READY succeeds, a failure word or an error message fails.

    Every other status is progress (see the module's text), so nothing is ever "unclear".
    """

    def status_of(self, answer: Mapping[str, Any]) -> str:
        """``FAILED`` when the version carries an ``error_message``; else its status read as below.

        :param answer: the version as the API returned it.
        """
        if error_message(answer):
            return "FAILED"
        return super().status_of(answer)

    def canonical(self, status: str) -> str:
        """A status word that says it failed reads ``FAILED``; others as :class:`WorkloadKind` reads them.

        :param status: a status as a server sent it.
        """
        word = super().canonical(status)
        if word not in self.succeeded and any(mark in word for mark in FAILURE_WORDS):
            return "FAILED"
        return word

    def is_unclear(self, status: str | None) -> bool:
        """Never: registration has no statuses but ready and failed that say anything else.

        :param status: a status in any spelling.
        """
        return False


#: A registered model version: from a not-ready status (the workbench says ``REGISTERING``) to ``READY``.
REGISTERED_MODEL_VERSION = _VersionKind(
    home="airflow_provider_cml.workloads.registry:REGISTERED_MODEL_VERSION",
    name="registered model version",
    ref_type=RegisteredVersionRef,
    read_path=registered_version_path,
    succeeded=frozenset({"READY"}),
    failed=frozenset({"FAILED"}),
    active=frozenset({"REGISTERING"}),
    aliases=("REGISTERED_MODEL_VERSION_", "MODEL_VERSION_"),
    missing_status="REGISTERING",
    hints={
        "FAILED": "the registry could not import the model: check that the run logged a model under "
        "model_path (the artifact_path given to log_model) and read the error_message above",
    },
    event_fields=("model_id", "model_version_id", "number", "status", "error_message", "created_at"),
    describe=summary,
    error=CmlModelRegistrationError,
)


def check_visibility(visibility: str | None) -> str | None:
    """``PRIVATE`` or ``PUBLIC`` from any case, ``None`` kept; anything else: :class:`CmlConfigError`.

    :param visibility: what the user gave.
    """
    if visibility is None:
        return None
    word = str(visibility).strip().upper()
    if word not in VISIBILITIES:
        raise CmlConfigError(f"visibility must be 'PRIVATE' or 'PUBLIC', not {visibility!r}.")
    return word


@dataclass(frozen=True)
class Registration:
    """What a run's model is registered as: the one place that lists and checks these options.

    :param model_name: the registered model's name (a new version is added when it exists).
    :param model_path: the ``artifact_path`` the run gave to ``log_model``.
    :param description: the registered model's description.
    :param notes: the version's notes.
    :param tags: tags of the version.
    :param visibility: ``PRIVATE`` or ``PUBLIC`` (the registry's default: ``PRIVATE``).
    """

    model_name: str
    model_path: str = "artifacts"
    description: str | None = None
    notes: str | None = None
    tags: Mapping[str, str] | None = None
    visibility: str | None = None

    def body(self, project_id: str, experiment_id: str, run_id: str) -> dict[str, Any]:
        """The CreateRegisteredModelRequest body, checked (tags as ``{key, value}`` pairs).

        :param project_id: the project of the experiment.
        :param experiment_id: the experiment's ID.
        :param run_id: the run that logged the model.
        """
        named = (("run_id", run_id), ("model_name", self.model_name), ("model_path", self.model_path))
        for what, value in named:
            if not isinstance(value, str) or not value.strip():
                raise CmlConfigError(f"The registration's {what} must be a non-empty string, not {value!r}.")
        body: dict[str, Any] = {
            "project_id": project_id,
            "experiment_id": experiment_id,
            "run_id": run_id.strip(),
            "model_name": self.model_name.strip(),
            "model_path": self.model_path.strip(),
        }
        visibility = check_visibility(self.visibility)
        if visibility is not None:
            body["visibility"] = visibility
        for key, text in (("description", self.description), ("notes", self.notes)):
            if text is not None:
                if not isinstance(text, str):
                    raise CmlConfigError(f"The registration's {key} must be a string, not {text!r}.")
                body[key] = text
        tags = self.tags
        if tags:
            if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in [*tags, *tags.values()]):
                raise CmlConfigError(
                    f"tags must map names to strings, e.g. {{'stage': 'candidate'}}; got {tags!r}."
                )
            body["tags"] = [{"key": key, "value": value} for key, value in tags.items()]
        return body


def run_of(version: Mapping[str, Any]) -> str:
    """The run a version was registered from (``model_version_metadata.mlflow_metadata.run_id``).

    :param version: a RegisteredModelVersion.
    """
    metadata = version.get("model_version_metadata")
    mlflow = metadata.get("mlflow_metadata") if isinstance(metadata, Mapping) else None
    return str(mlflow.get("run_id") or "") if isinstance(mlflow, Mapping) else ""


def newest_of_run(
    versions: Iterable[Mapping[str, Any]], run_id: str, *, besides: Collection[str] = ()
) -> Mapping[str, Any] | None:
    """The version registered from ``run_id`` with the highest ``number``, ``besides`` left out.

    :param versions: a RegisteredModel's ``model_versions``.
    :param run_id: the run.
    :param besides: version IDs that are not the one looked for (earlier, failed ones).
    """
    mine = [v for v in versions if run_of(v) == run_id and str(v.get("model_version_id")) not in besides]
    return max(mine, key=number_of, default=None)


def number_of(version: Mapping[str, Any]) -> int:
    """A version's ``number`` (int32; 0 when absent or unreadable).

    :param version: a RegisteredModelVersion.
    """
    try:
        return int(version.get("number") or 0)
    except (TypeError, ValueError):
        return 0


def entries_of_run(run: Mapping[str, Any], model_name: str) -> list[Mapping[str, Any]]:
    """The run's ``data.registered_model_metadata`` entries for ``model_name``, highest version first.

    :param run: an ExperimentRun.
    :param model_name: the registered model's name.
    """
    data = run.get("data")
    entries = data.get("registered_model_metadata") if isinstance(data, Mapping) else None
    found = [e for e in entries or [] if isinstance(e, Mapping) and e.get("model_name") == model_name]
    return sorted(found, key=lambda e: -number_of({"number": e.get("version_number")}))
