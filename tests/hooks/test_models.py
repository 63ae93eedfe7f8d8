"""Two DAG runs deploying a model that does not exist yet: they converge on one model.

Through the workbench, its ``model_lookup_delay`` knob holds every ListModels answer back so that two
threads' look-ups both see no model and both create one. Every creator then keeps the first created;
the one whose new model lost deletes that model, and only it.
"""

from __future__ import annotations

import json
import logging
import threading

import requests

from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.workloads.models import CmlModelSpec
from tests.conftest import API_KEY, MOCK_URL
from tests.workloads.test_serving import MODEL, _deploy, _model

ONE_MODEL = MODEL + r"/[^/]+"


def _project_id(wb) -> str:
    return next(p.id for p in wb.workbench.projects.values() if p.name == "Analytics")


def test_two_concurrent_ensures_create_two_and_converge_on_the_first_created(wb, monkeypatch):
    monkeypatch.setattr(wb.workbench.serving, "model_lookup_delay", 0.5)
    project_id, spec = _project_id(wb), CmlModelSpec.of(_model("raced-model"))
    start = threading.Barrier(2)
    results: list[tuple[dict, bool]] = []

    def ensure() -> None:
        hook = CmlHook()  # one per DAG run
        start.wait()
        results.append(hook.models.ensure_model(project_id, spec))

    threads = [threading.Thread(target=ensure) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    creates = wb.requests("POST", MODEL)
    assert len(creates) == 2  # the knob interleaved them: both saw no model
    made = {json.loads(c.response_body)["id"]: c for c in creates}
    first = min(made, key=lambda i: (wb.workbench.serving.models[i].created_at, i))
    assert {model["id"] for model, _ in results} == {first}  # both use the first created
    assert sorted(created for _, created in results) == [False, True]
    [delete] = wb.requests("DELETE", ONE_MODEL)
    [lost] = [i for i in made if i != first]
    assert delete.path.endswith("/" + lost)  # the loser deleted its own model
    assert delete.peer_port == made[lost].peer_port  # and it was the loser that did
    wb.workbench.serving.model_lookup_delay = 0.0
    assert CmlHook().models.find_model(project_id, "raced-model")["id"] == first


def test_a_later_run_that_finds_duplicates_picks_the_first_created_and_deletes_nothing(wb, caplog, capfd):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_KEY}"
    api = f"{wb.url}/api/v2/projects/{_project_id(wb)}/models"
    ids = [session.post(api, json={"name": "twin-model", "description": "d"}).json()["id"] for _ in range(2)]
    with caplog.at_level(logging.WARNING):
        _, deployed = _deploy("twin-model")
    assert deployed["model_id"] == ids[0]
    logged = caplog.text + "".join(capfd.readouterr())  # Airflow 3 logs through structlog to stdout
    assert "2 models in project" in logged and "using the first created" in logged
    assert not wb.requests("DELETE")  # never a model this task did not create
    _, again = _deploy("twin-model")
    assert again["model_id"] == ids[0]


def test_a_model_found_after_a_lost_answer_is_never_deleted(mock_conn, clock, requests_mock):
    """The create's answer is lost; the look-up finds a model that may be another run's: kept."""
    models = f"{MOCK_URL}/api/v2/projects/p/models"
    mine = {"id": "b", "name": "m", "created_at": "2026-01-01T00:00:02Z"}
    older = {"id": "a", "name": "m", "created_at": "2026-01-01T00:00:01Z"}
    requests_mock.get(
        models,
        [
            {"json": {"models": []}},  # the first look-up: none
            {"json": {"models": [mine]}},  # after the lost answer: one (whose? unknown)
            {"json": {"models": [mine, older]}},  # looking again after creating
        ],
    )
    requests_mock.post(models, exc=requests.exceptions.ReadTimeout)
    deletes = requests_mock.delete(f"{models}/b", json={})
    hook = CmlHook(mock_conn(), clock=clock)
    model, created = hook.models.ensure_model(
        "p", CmlModelSpec.of({"name": "m", "file": "p.py", "function": "f"})
    )
    assert (model["id"], created) == ("a", False)
    assert not deletes.called
