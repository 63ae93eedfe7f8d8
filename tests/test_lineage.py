"""The lineage module: the OpenLineage facet the operators return, and their assets' extras."""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest

from airflow_provider_cml import lineage
from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.operators.models import CmlDeployModelOperator
from airflow_provider_cml.waiting.plan import Ended, Wait
from airflow_provider_cml.workloads.job_runs import RunRef
from airflow_provider_cml.workloads.models import MODEL_DEPLOYMENT, BuildRef, DeploymentRef
from tests.operators.test_cml import REF, StubHook, StubTI, _operator

RUN = RunRef("proj-1", "job-2", "run-3")
RETRY = REF._replace(run_id="run-retry")  # the platform's retry of the run the task started
DEPLOYMENT = DeploymentRef("proj-1", "model-4", "build-5", "dep-6")
RUN_URL = "https://ml.example.com/alice/analytics/jobs"
MODEL_URL = "https://ml.example.com/alice/analytics/models"

needs_openlineage = pytest.mark.skipif(
    not lineage.HAS_OPENLINEAGE, reason="apache-airflow-providers-openlineage is not installed"
)


def _as_event_json(operator_lineage) -> dict:
    """The facet as the listener writes it into an event."""
    from openlineage.client.serde import Serde

    return Serde.to_dict(operator_lineage.run_facets[lineage.FACET_KEY])


@needs_openlineage
def test_a_run_facet_names_the_run_its_job_and_its_page():
    facet = _as_event_json(lineage.operator_lineage(lineage.run_facet(RUN, RUN_URL, "train")))
    assert facet == {
        "_producer": lineage.PRODUCER,
        "_schemaURL": lineage.SCHEMA_URL,
        "workload": "job_run",
        "projectId": "proj-1",
        "jobId": "job-2",
        "jobName": "train",
        "runId": "run-3",
        "url": RUN_URL,
    }


@needs_openlineage
def test_a_deployment_facet_names_model_build_and_deployment():
    facet = _as_event_json(lineage.operator_lineage(lineage.deployment_facet(DEPLOYMENT, MODEL_URL)))
    assert {key: value for key, value in facet.items() if not key.startswith("_")} == {
        "workload": "model_deployment",
        "projectId": "proj-1",
        "modelId": "model-4",
        "buildId": "build-5",
        "deploymentId": "dep-6",
        "url": MODEL_URL,
    }


@needs_openlineage
def test_what_is_unknown_is_left_out_of_the_facet():
    build = BuildRef("proj-1", "model-4", "build-5")
    facet = _as_event_json(lineage.operator_lineage(lineage.deployment_facet(build, None)))
    assert "deploymentId" not in facet and "url" not in facet


@needs_openlineage
def test_the_facet_is_a_run_facet_the_openlineage_client_accepts():
    from openlineage.client.facet_v2 import RunFacet

    facet = lineage.CmlRunFacet(workload="job_run", projectId="p", producer="https://example.com/me")
    assert isinstance(facet, RunFacet)
    assert facet._producer == "https://example.com/me"  # a producer given is kept
    assert "runId" in facet.skip_redact and "url" not in facet.skip_redact


def test_nothing_started_no_facet():
    assert lineage.operator_lineage(None) is None
    assert (
        CmlRunJobOperator(task_id="t", project="p", job="j").get_openlineage_facets_on_complete(None) is None
    )
    deploy = CmlDeployModelOperator(task_id="d", project="p", model={"name": "m", "file": "f.py"})
    assert deploy.get_openlineage_facets_on_complete(None) is None


class _RetriedHook(StubHook):
    """The wait ends on the platform's retry of the run the task started."""

    def wait(self, wait: Wait, timeout: float | None = None) -> Ended:
        return replace(super().wait(wait, timeout), ref=RETRY)


@needs_openlineage
def test_the_run_operator_names_the_run_it_ended_with():
    started = _operator(StubHook(), wait_for_completion=False)
    started.execute({"ti": StubTI()})
    facet = _as_event_json(started.get_openlineage_facets_on_complete(None))
    assert facet["runId"] == REF.run_id and facet["url"].endswith(f"/runs/{REF.run_id}")
    retried = _operator(_RetriedHook())
    retried.execute({"ti": StubTI()})
    assert _as_event_json(retried.get_openlineage_facets_on_complete(None))["runId"] == RETRY.run_id


class _TaskInstance:
    """What ``pushed`` asks of a task instance: its identity and its XComs."""

    task_id, map_index = "d", 3

    def __init__(self, xcoms: dict[str, str], fail: bool = False) -> None:
        self.xcoms, self.fail = xcoms, fail
        self.asked: list[dict] = []

    def xcom_pull(self, **kwargs):
        self.asked.append(kwargs)
        if self.fail:
            raise RuntimeError("the API server is away")
        return self.xcoms.get(kwargs["key"])


@needs_openlineage
def test_a_resumed_deploy_operator_reads_the_models_page_from_xcom():
    op = CmlDeployModelOperator(task_id="d", project="p", model={"name": "m", "file": "f.py"})
    # A new operator resumed from the deferral: it knows the IDs from the event, not the page.
    served = Ended("success", MODEL_DEPLOYMENT, DEPLOYMENT, {"id": "dep-6", "status": "deployed"}, "deployed")
    assert op.execute_complete({}, served.event(carry=DEPLOYMENT._asdict())) == DEPLOYMENT._asdict()
    ti = _TaskInstance({"model_url": MODEL_URL})
    assert _as_event_json(op.get_openlineage_facets_on_complete(ti))["url"] == MODEL_URL
    assert ti.asked == [{"task_ids": "d", "key": "model_url", "map_indexes": 3}]


def test_an_xcom_that_cannot_be_read_is_no_page():
    assert lineage.pushed(_TaskInstance({}, fail=True), "model_url") is None
    assert lineage.pushed(_TaskInstance({}), "model_url") is None


def test_asset_extras_name_the_run_and_the_deployment():
    assert lineage.run_extra(RUN, RUN_URL) == {
        "cml_run_id": "run-3",
        "cml_project_id": "proj-1",
        "cml_job_id": "job-2",
        "cml_run_url": RUN_URL,
    }
    assert lineage.deployment_extra(DEPLOYMENT, None) == {
        "cml_model_id": "model-4",
        "cml_build_id": "build-5",
        "cml_deployment_id": "dep-6",
        "cml_project_id": "proj-1",
    }


class AssetAlias:
    """Named as Airflow's: an alias's events are the ones a task adds itself."""


class _Events(dict):
    def __missing__(self, key):
        self[key] = SimpleNamespace(extra={"kept": True})
        return self[key]


def test_every_outlet_but_an_alias_gets_the_extra():
    alias, events = AssetAlias(), _Events()
    context = {"task": SimpleNamespace(outlets=["asset-a", alias, "asset-b"]), "outlet_events": events}
    lineage.annotate_outlets(context, {"cml_run_id": "run-3"})
    assert events == {
        "asset-a": SimpleNamespace(extra={"kept": True, "cml_run_id": "run-3"}),
        "asset-b": SimpleNamespace(extra={"kept": True, "cml_run_id": "run-3"}),
    }


def test_without_the_openlineage_provider_the_operators_return_no_facet(monkeypatch):
    for module in ("openlineage.client.facet_v2", "airflow.providers.openlineage.extractors"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    try:
        importlib.reload(lineage)
        assert not lineage.HAS_OPENLINEAGE
        op = _operator(StubHook(), wait_for_completion=False)
        op.execute({"ti": StubTI()})  # a run started: what a facet would name
        assert op.get_openlineage_facets_on_complete(None) is None
        assert lineage.run_extra(RUN, None)["cml_run_id"] == "run-3"  # asset extras need no provider
    finally:
        monkeypatch.undo()
        importlib.reload(lineage)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError):
        return False


def _imported_at_parse(module: str) -> set[str]:
    """What importing ``module`` imports: its module-level imports (not in functions, not for typing)."""
    import ast

    source = ast.parse(pathlib.Path(importlib.util.find_spec(module).origin).read_text())
    found: set[str] = set()
    todo = list(source.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        elif isinstance(node, (ast.If, ast.Try)):
            todo.extend([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_parsing_a_dag_imports_no_lineage_code():
    seen, todo = set(), ["airflow_provider_cml.operators.cml", "airflow_provider_cml.operators.models"]
    while todo:  # the package's modules a DAG file's import of the operators pulls in, transitively
        module = todo.pop()
        if module in seen or not _is_module(module):  # a name imported from a module, not a module
            continue
        seen.add(module)
        imported = _imported_at_parse(module)
        assert not {name for name in imported if name.startswith("openlineage")}, module
        assert "airflow_provider_cml.lineage" not in imported, module
        todo.extend(name for name in imported if name.startswith("airflow_provider_cml"))
    assert "airflow_provider_cml.operators.base" in seen  # the walk did follow the imports
