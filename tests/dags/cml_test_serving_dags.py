"""MLOps DAGs the DAG-level tests run with dag.test(): retrain, deploy, smoke-test, restart the dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_cml.operators.applications import CmlApplicationOperator
from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.operators.models import CmlDeployModelOperator

ARGS = {"start_date": datetime(2024, 1, 1), "schedule": None, "catchup": False}
#: Every task of these DAGs works in the workbench's "Analytics" project and checks often.
ANALYTICS = {"project": "Analytics", "poll_interval": 0.2}


def _model(name: str, **fields: object) -> dict:
    return {"name": name, "file": "model_predict.py", "function": "predict", **fields}


def _app(name: str, **fields: object) -> dict:
    return {"name": name, "subdomain": name, "script": "dashboard.py", **fields}


def _deploy(model: dict, task_id: str = "deploy", **options: object) -> CmlDeployModelOperator:
    return CmlDeployModelOperator(task_id=task_id, model=model, **ANALYTICS, **options)


for mode, deferrable in (("sync", False), ("deferrable", True)):
    with DAG(f"cml_test_mlops_{mode}", **ARGS):
        retrain = CmlRunJobOperator(task_id="retrain", job="train", deferrable=deferrable, **ANALYTICS)
        deploy = _deploy(
            _model(f"churn-{mode}", environment={"MODEL_VERSION": "{{ ds_nodash }}"}, replicas=1),
            deferrable=deferrable,
        )

        @task(task_id="smoke_test")
        def smoke_test(ids: dict) -> dict:
            from airflow_provider_cml.hooks.cml import CmlHook

            answer = CmlHook().models.call_model(ids["project_id"], ids["model_id"], {"x": 21})
            assert answer["doubled"] == 42, answer
            return answer

        dashboard = CmlApplicationOperator(
            task_id="restart_dashboard", application=_app(f"board-{mode}"), deferrable=deferrable, **ANALYTICS
        )
        retrain >> deploy
        smoke_test(deploy.output) >> dashboard

    with DAG(f"cml_test_build_failure_{mode}", **ARGS):
        _deploy(_model(f"no-function-{mode}", function="missing"), deferrable=deferrable)

    with DAG(f"cml_test_deploy_failure_{mode}", **ARGS):
        _deploy(_model(f"no-weights-{mode}", environment={"FAIL_LOAD": "1"}), deferrable=deferrable)

    with DAG(f"cml_test_deploy_timeout_{mode}", **ARGS):
        _deploy(
            _model(f"slow-load-{mode}", environment={"SLOW_LOAD": "30"}), timeout=3, deferrable=deferrable
        )

    # The first try's deployment fails to load; Airflow retries the task: same build, a new deployment.
    with DAG(f"cml_test_deploy_retry_{mode}", **ARGS):
        _deploy(
            _model(f"second-try-{mode}", environment={"FAIL_ON_TRY": "1", "TRY": "{{ ti.try_number }}"}),
            retries=1,
            retry_delay=timedelta(seconds=0),
            deferrable=deferrable,
        )

    with DAG(f"cml_test_app_failure_{mode}", **ARGS):
        CmlApplicationOperator(
            task_id="restart_dashboard",
            application=_app(f"crash-{mode}", environment={"CRASH": "1"}),
            deferrable=deferrable,
            **ANALYTICS,
        )

# tests/system/test_secrets.py: a secret in a deployment's and an application's environment, and the
# model's access key (read by call_model), must appear nowhere Airflow keeps things.
SECRET_ENV = {"DB_PASSWORD": "s3cr3t-Pa55w0rd-XYZ"}

with DAG("cml_test_secrets_mlops", **ARGS):
    deployed = _deploy(_model("secret-model", environment=SECRET_ENV), task_id="deployed", deferrable=True)

    @task(task_id="called")
    def called(ids: dict) -> dict:
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook().models.call_model(ids["project_id"], ids["model_id"], {"x": 1})

    app = CmlApplicationOperator(
        task_id="app", application=_app("secret-app", environment=SECRET_ENV), action="ensure", **ANALYTICS
    )
    called(deployed.output) >> app
