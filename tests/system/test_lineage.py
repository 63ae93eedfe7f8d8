"""What a DAG run tells downstream about the Cloudera AI workloads it ran, through real Airflow.

One run of ``cml_test_lineage`` (a sync run, a deferred run, a deferred model deployment, each
with an asset outlet) per module: its asset events' ``extra`` and, when the OpenLineage provider is
installed, the events Airflow's OpenLineage listener emitted through a file transport.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.test_dags import _states, _xcom

pytestmark = pytest.mark.airflow_dag


def _has_openlineage() -> bool:
    try:
        import airflow.providers.openlineage.plugins.listener  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _openlineage_listener(events: Path) -> Iterator[None]:
    """Airflow's OpenLineage listener, writing every event to ``events`` (JSON lines), for the ``with``.

    The provider's plugin registers its listener when Airflow loads plugins, once per process, and
    only if a transport is configured then; the tests' process started without one. So the listener
    is registered here, after its configuration is set and the provider's cached settings cleared,
    and unregistered at the end, leaving the process as it was.
    """
    if not _has_openlineage():
        yield
        return
    from airflow.providers.openlineage import conf as ol_conf
    from airflow.providers.openlineage.plugins.listener import OpenLineageListener

    settings = {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        # A thread, not a fork: the test process has threads (the workbench's) a fork would copy badly.
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "cml-tests",
    }

    def clear_cached_settings() -> None:
        for value in vars(ol_conf).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()

    managers = []
    with contextlib.suppress(ImportError):  # Airflow 3.2+: the task runner's own listener manager
        from airflow.sdk.listener import get_listener_manager as task_listeners

        managers.append(task_listeners())
    from airflow.listeners.listener import get_listener_manager

    if all(manager is not get_listener_manager() for manager in managers):
        managers.append(get_listener_manager())
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        clear_cached_settings()
        listener = OpenLineageListener()
        for manager in managers:
            manager.add_listener(listener)
        try:
            yield
        finally:
            for manager in managers:
                manager.pm.unregister(listener)
    clear_cached_settings()


@pytest.fixture(scope="module")
def lineage_run(workbench, dagbag, tmp_path_factory) -> tuple[Any, Path]:
    """The DAG run, and the file of the OpenLineage events it emitted."""
    from airflow_provider_cml._compat import AIRFLOW_V_3_0_PLUS
    from tests.conftest import API_KEY

    events = tmp_path_factory.mktemp("openlineage") / "events.jsonl"
    dag = dagbag.get_dag("cml_test_lineage")
    if not AIRFLOW_V_3_0_PLUS:  # Airflow 2's dag.test() does not register the DAG's datasets, so an
        dag.sync_to_db()  # event of a dataset it never saw would be dropped ("DatasetModel not found")
    with pytest.MonkeyPatch.context() as patch, _openlineage_listener(events):
        workbench.faults = None
        patch.setenv("AIRFLOW_CONN_CML_DEFAULT", workbench.airflow_connection(API_KEY))
        dag_run = dag.test()
    return dag_run, events


def _asset_extras(dag_run) -> dict[str, dict[str, Any]]:
    """The asset (dataset) events of the run's tasks, by task: their ``extra``, from the metadata DB."""
    from airflow.utils.session import create_session

    try:
        from airflow.models.asset import AssetEvent
    except ImportError:  # Airflow 2
        from airflow.models.dataset import DatasetEvent as AssetEvent
    with create_session() as session:
        rows = session.query(AssetEvent).filter_by(source_dag_id=dag_run.dag_id, source_run_id=dag_run.run_id)
        return {row.source_task_id: dict(row.extra or {}) for row in rows}


def test_the_tasks_succeed(lineage_run):
    dag_run, _ = lineage_run
    assert _states(dag_run) == {"train": "success", "score": "success", "deploy": "success", "fail": "failed"}
    assert "fail" not in _asset_extras(dag_run)  # a failed task emits no asset event


@pytest.mark.parametrize("task_id", ["train", "score"])
def test_a_run_names_itself_in_its_asset_event(lineage_run, workbench, task_id):
    dag_run, _ = lineage_run
    extra = _asset_extras(dag_run)[task_id]
    run_id = _xcom(dag_run, task_id, "run_id")
    assert run_id in workbench.workbench.runs
    assert extra == {
        "cml_run_id": run_id,
        "cml_project_id": _xcom(dag_run, task_id, "project_id"),
        "cml_job_id": _xcom(dag_run, task_id, "job_id"),
        "cml_run_url": f"{workbench.url}/alice/analytics/jobs",
    }


def test_a_deployment_names_itself_in_its_asset_event(lineage_run, workbench):
    dag_run, _ = lineage_run
    ids = _xcom(dag_run, "deploy", "return_value")
    assert workbench.workbench.serving.deployments[ids["deployment_id"]].status == "deployed"
    assert _asset_extras(dag_run)["deploy"] == {
        "cml_model_id": ids["model_id"],
        "cml_build_id": ids["build_id"],
        "cml_deployment_id": ids["deployment_id"],
        "cml_project_id": ids["project_id"],
        "cml_model_url": f"{workbench.url}/alice/analytics/models",
    }


def _ending_events(events: Path, tasks: set[str]) -> dict[str, dict[str, Any]]:
    """The COMPLETE (or FAIL) event of each task, once the listener has written them all (in a thread)."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = events.read_text().splitlines() if events.exists() else []
        for line in lines:
            event = json.loads(line)
            task = event["job"]["name"].rpartition(".")[2]
            if event["eventType"] in ("COMPLETE", "FAIL") and task in tasks:
                found[task] = event
        if set(found) == tasks:
            return found
        time.sleep(0.1)
    raise AssertionError(f"COMPLETE events of {sorted(tasks - set(found))} missing from {events}")


@pytest.mark.skipif(not _has_openlineage(), reason="apache-airflow-providers-openlineage is not installed")
def test_the_lineage_events_carry_the_cml_run_facet(lineage_run, workbench):
    dag_run, events = lineage_run
    found = _ending_events(events, {"train", "score", "deploy", "fail"})
    assert {task: event["eventType"] for task, event in found.items()} == {
        "train": "COMPLETE",
        "score": "COMPLETE",
        "deploy": "COMPLETE",
        "fail": "FAIL",
    }
    for task_id in ("train", "score", "fail"):  # the failed run is named too
        facet = found[task_id]["run"]["facets"]["cml"]
        assert facet["workload"] == "job_run"
        assert facet["runId"] == _xcom(dag_run, task_id, "run_id")
        assert facet["jobId"] == _xcom(dag_run, task_id, "job_id")
        assert facet["projectId"] == _xcom(dag_run, task_id, "project_id")
        assert facet["url"] == f"{workbench.url}/alice/analytics/jobs"
        assert facet["_schemaURL"].endswith("CmlRunFacet.json#/$defs/CmlRunFacet")
    assert found["train"]["run"]["facets"]["cml"]["jobName"] == "train"
    ids = _xcom(dag_run, "deploy", "return_value")
    facet = found["deploy"]["run"]["facets"]["cml"]
    assert facet["workload"] == "model_deployment"
    assert {key: facet[key] for key in ("modelId", "buildId", "deploymentId", "projectId")} == {
        "modelId": ids["model_id"],
        "buildId": ids["build_id"],
        "deploymentId": ids["deployment_id"],
        "projectId": ids["project_id"],
    }
    assert facet["url"] == f"{workbench.url}/alice/analytics/models"
    assert found["train"]["job"]["namespace"] == "cml-tests"
