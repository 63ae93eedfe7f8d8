"""Neither the API key nor a secret-looking override appears anywhere Airflow keeps things."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_cml.hooks.cml import CmlHook
from tests.conftest import API_KEY, seen_by
from tests.system.test_dags import _states, _xcom

pytestmark = pytest.mark.airflow_dag

SECRET = "s3cr3t-Pa55w0rd-XYZ"


def _rows(model, dag_run):
    from airflow.utils.session import create_session

    with create_session() as session:
        return [
            {c.name: getattr(row, c.name) for c in model.__table__.columns}
            for row in session.query(model).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id)
        ]


def _places(dag_run, dag, capfd, caplog, airflow_db) -> dict[str, str]:
    """The text of everywhere Airflow keeps things for one DAG run, by where."""
    try:
        from airflow.models.xcom import XComModel as XCom
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom
    from airflow.models.renderedtifields import RenderedTaskInstanceFields

    places: dict[str, str] = {}
    out, err = capfd.readouterr()
    places["task logs (stdout/stderr)"] = out + err
    places["python logging"] = caplog.text
    places["log files"] = "".join(
        p.read_text(errors="replace") for p in Path(airflow_db).rglob("*.log") if p.is_file()
    )
    places["xcom"] = repr(_rows(XCom, dag_run))
    places["rendered template fields"] = repr(_rows(RenderedTaskInstanceFields, dag_run))
    for task in dag.tasks:
        places[f"repr of {task.task_id}"] = repr(task) + repr(vars(task).get("hook", ""))
    return places


def test_no_secret_in_logs_xcom_rendered_fields_errors_or_reprs(wb, dagbag, capfd, caplog, airflow_db):
    dag = dagbag.get_dag("cml_test_secrets")
    dag_run = dag.test()
    assert _states(dag_run) == {
        "sync_ok": "success",
        "deferred_ok": "success",
        "sensed": "success",
        "failing": "failed",
    }
    # The secret did reach the job: the check below is not vacuous.
    assert seen_by(wb, str(_xcom(dag_run, "sync_ok", "run_id")))["DB_PASSWORD"] == SECRET

    places = _places(dag_run, dag, capfd, caplog, airflow_db)
    hook = CmlHook()
    hook.list_projects()
    places["hook repr"] = repr(hook) + repr(hook.config)
    from airflow_provider_cml.triggers.cml import CmlJobRunTrigger

    trigger = CmlJobRunTrigger(project_id="p", job_id="j", run_id="r", run_url="http://x/y")
    places["trigger repr and serialization"] = repr(trigger) + json.dumps(trigger.serialize())
    try:
        hook.start_job_run("Analytics", "fail", {"DB_PASSWORD": {"nested": SECRET}})
    except Exception as exc:
        places["exception message"] = str(exc) + repr(exc)

    assert places["rendered template fields"].count("environment") >= 1  # the field was stored, masked
    for where, text in places.items():
        assert API_KEY not in text, f"the API key leaked into {where}"
        assert SECRET not in text, f"the secret override leaked into {where}"


def test_no_secret_of_a_deployment_or_an_application_anywhere(wb, dagbag, capfd, caplog, airflow_db):
    """A deployment's and an application's environment, and the model's access key."""
    dag = dagbag.get_dag("cml_test_secrets_mlops")
    dag_run = dag.test()
    assert _states(dag_run) == {"deployed": "success", "called": "success", "app": "success"}
    serving = wb.workbench.serving
    # They reached the workbench, and the model was called with its key: the checks are not vacuous.
    model = next(m for m in serving.models.values() if m.name == "secret-model")
    deployment = next(d for d in serving.deployments.values() if d.build.model is model)
    app = next(a for a in serving.applications.values() if a.fields.get("name") == "secret-app")
    assert deployment.environment["DB_PASSWORD"] == SECRET and app.environment["DB_PASSWORD"] == SECRET
    assert wb.requests("POST", "/model")

    places = _places(dag_run, dag, capfd, caplog, airflow_db)
    assert places["rendered template fields"].count("environment") >= 2  # stored, masked
    for where, text in places.items():
        assert API_KEY not in text, f"the API key leaked into {where}"
        assert SECRET not in text, f"the secret environment value leaked into {where}"
        assert model.access_key not in text, f"the model's access key leaked into {where}"
