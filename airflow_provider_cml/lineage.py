"""What a task tells downstream about the Cloudera AI workload it ran: OpenLineage facets and asset extras.

Two consumers, one set of identities:

* OpenLineage (``apache-airflow-providers-openlineage``, optional: the ``[openlineage]`` extra): the
  operators' ``get_openlineage_facets_on_complete`` returns a run facet, :class:`CmlRunFacet` under
  the key ``cml``, naming the run (or build and deployment) and its page, as the Databricks and dbt
  Cloud providers name theirs. Without the provider the method returns ``None`` and nothing fails.
* Assets (datasets on Airflow 2): the asset event of each of the task's ``outlets`` carries the
  same IDs in its ``extra`` (``cml_run_id``, ``cml_project_id``...), so an asset-scheduled DAG reads
  which run produced the data from ``triggering_asset_events``.

The operators import this module when a task ends, never when a DAG file is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_cml import __version__

if TYPE_CHECKING:
    from airflow_provider_cml._compat import Context
    from airflow_provider_cml.workloads.job_runs import RunRef
    from airflow_provider_cml.workloads.models import BuildRef, DeploymentRef

#: The key of :class:`CmlRunFacet` among an event's run facets.
FACET_KEY = "cml"
#: Who made the facet (OpenLineage's ``_producer``: a URI naming the code and its version).
PRODUCER = f"https://github.com/airflow-provider-cml/airflow-provider-cml/tree/{__version__}"
#: The facet's JSON schema (OpenLineage's ``_schemaURL``), kept in the repository's docs.
SCHEMA_URL = (
    "https://raw.githubusercontent.com/airflow-provider-cml/airflow-provider-cml/main/"
    "docs/openlineage/CmlRunFacet.json#/$defs/CmlRunFacet"
)

try:  # the OpenLineage client comes with the optional OpenLineage provider
    from attrs import define
    from openlineage.client.facet_v2 import RunFacet
except ImportError:  # pragma: no cover - exercised where the provider is absent
    HAS_OPENLINEAGE = False
else:
    HAS_OPENLINEAGE = True

    @define
    class CmlRunFacet(RunFacet):
        """The Cloudera AI workload an Airflow task ran: its IDs and its page in the workbench.

        A job run sets ``jobId``, ``jobName`` and ``runId``; a model deployment sets ``modelId``,
        ``buildId`` and ``deploymentId``. Fields that do not apply are left out of the event.

        :param workload: ``"job_run"`` or ``"model_deployment"``.
        :param projectId: the project's ID.
        :param url: the workload's page (a run's page, or the project's models page).
        :param jobId: the job's ID.
        :param jobName: the job's name (or ID) as the task named it.
        :param runId: the run's ID (a platform's retry's when the task followed one).
        :param modelId: the model's ID.
        :param buildId: the model build's ID.
        :param deploymentId: the model deployment's ID.
        """

        # camelCase, as OpenLineage names facet fields
        workload: str
        projectId: str
        url: str | None = None
        jobId: str | None = None
        jobName: str | None = None
        runId: str | None = None
        modelId: str | None = None
        buildId: str | None = None
        deploymentId: str | None = None

        # Facets are redacted field by field: IDs hold no secret and are skipped; the page and the job's
        # name are text a DAG author wrote, so they are checked like any other.
        _additional_skip_redact = [
            "workload",
            "projectId",
            "jobId",
            "runId",
            "modelId",
            "buildId",
            "deploymentId",
        ]

        def __attrs_post_init__(self) -> None:
            if not self._producer:
                self._producer = PRODUCER
            super().__attrs_post_init__()

        @staticmethod
        def _get_schema() -> str:
            return SCHEMA_URL


def run_extra(ref: RunRef, url: str | None) -> dict[str, str]:
    """A job run's identity as an asset event's ``extra``.

    :param ref: the run (its project, job and run IDs).
    :param url: the run's page, if known.
    """
    extra = {"cml_run_id": ref.run_id, "cml_project_id": ref.project_id, "cml_job_id": ref.job_id}
    return {**extra, "cml_run_url": url} if url else extra


def deployment_extra(ref: BuildRef | DeploymentRef, url: str | None) -> dict[str, str]:
    """A model deployment's identity (or a build's, when the deployment was not reached) as ``extra``.

    :param ref: the build or the deployment.
    :param url: the model's page (the project's models page), if known.
    """
    extra = {"cml_model_id": ref.model_id, "cml_build_id": ref.build_id, "cml_project_id": ref.project_id}
    deployment_id = getattr(ref, "deployment_id", None)
    if deployment_id:
        extra["cml_deployment_id"] = deployment_id
    return {**extra, "cml_model_url": url} if url else extra


def annotate_outlets(context: Context, extra: Mapping[str, Any]) -> None:
    """Add ``extra`` to the asset (dataset) event of each of the task's outlets.

    Aliases are left alone: their events are the ones a task adds itself, with their own extras.

    :param context: the task's Airflow context (its ``outlet_events`` and its task's ``outlets``).
    :param extra: what to add to each event's ``extra``.
    """
    outlets = getattr(context.get("task"), "outlets", None) or []
    events = context.get("outlet_events")
    if not outlets or events is None:
        return
    for outlet in outlets:
        if type(outlet).__name__ in ("AssetAlias", "DatasetAlias"):
            continue
        events[outlet].extra.update(extra)


def operator_lineage(facet: Mapping[str, Any] | None) -> Any:
    """An ``OperatorLineage`` holding :class:`CmlRunFacet` built from ``facet``'s fields.

    ``None`` when the OpenLineage provider is not installed, or nothing was started (no facet): the
    listener then sends its events without this facet.

    :param facet: the facet's fields (``workload``, ``projectId``, ...), ``None`` ones dropped.
    """
    if not HAS_OPENLINEAGE or not facet:
        return None
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:  # the client without the provider: no listener would ask
        return None
    fields = {key: value for key, value in facet.items() if value is not None}
    return OperatorLineage(run_facets={FACET_KEY: CmlRunFacet(**fields)})


def run_facet(ref: RunRef, url: str | None, job_name: str | None) -> dict[str, Any]:
    """:class:`CmlRunFacet`'s fields for a job run.

    :param ref: the run.
    :param url: its page, if known.
    :param job_name: the job as the task named it.
    """
    return {
        "workload": "job_run",
        "projectId": ref.project_id,
        "url": url,
        "jobId": ref.job_id,
        "jobName": job_name,
        "runId": ref.run_id,
    }


def deployment_facet(ref: BuildRef | DeploymentRef, url: str | None) -> dict[str, Any]:
    """:class:`CmlRunFacet`'s fields for a model build and deployment.

    :param ref: the build, or the deployment once made.
    :param url: the model's page, if known.
    """
    return {
        "workload": "model_deployment",
        "projectId": ref.project_id,
        "url": url,
        "modelId": ref.model_id,
        "buildId": ref.build_id,
        "deploymentId": getattr(ref, "deployment_id", None),
    }


def pushed(ti: Any, key: str) -> str | None:
    """What this task instance pushed to XCom under ``key`` (before a deferral, say); ``None`` if unknown.

    :param ti: the task instance.
    :param key: the XCom key.
    """
    try:
        value = ti.xcom_pull(task_ids=ti.task_id, key=key, map_indexes=ti.map_index)
    except Exception:  # a page is a convenience: never fail the task (or its lineage) for it
        return None
    return str(value) if value else None
