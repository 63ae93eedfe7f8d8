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
POLL = {"poll_interval": 0.2}


def _model(name: str, **fields: object) -> dict:
    return {"name": name, "file": "model_predict.py", "function": "predict", **fields}


for mode, deferrable in (("sync", False), ("deferrable", True)):
    with DAG(f"cml_test_mlops_{mode}", **ARGS):
        retrain = CmlRunJobOperator(
            task_id="retrain", project="Analytics", job="train", deferrable=deferrable, **POLL
        )
        deploy = CmlDeployModelOperator(
            task_id="deploy",
            project="Analytics",
            model=_model(f"churn-{mode}", environment={"MODEL_VERSION": "{{ ds_nodash }}"}, replicas=1),
            deferrable=deferrable,
            **POLL,
        )

        @task(task_id="smoke_test")
        def smoke_test(ids: dict) -> dict:
            from airflow_provider_cml.hooks.cml import CmlHook

            answer = CmlHook().models.call_model(ids["project_id"], ids["model_id"], {"x": 21})
            assert answer["doubled"] == 42, answer
            return answer

        dashboard = CmlApplicationOperator(
            task_id="restart_dashboard",
            project="Analytics",
            application={"name": f"board-{mode}", "subdomain": f"board-{mode}", "script": "dashboard.py"},
            deferrable=deferrable,
            **POLL,
        )
        retrain >> deploy
        smoke_test(deploy.output) >> dashboard

    with DAG(f"cml_test_build_failure_{mode}", **ARGS):
        CmlDeployModelOperator(
            task_id="deploy",
            project="Analytics",
            model=_model(f"no-function-{mode}", function="missing"),
            deferrable=deferrable,
            **POLL,
        )

    with DAG(f"cml_test_deploy_failure_{mode}", **ARGS):
        CmlDeployModelOperator(
            task_id="deploy",
            project="Analytics",
            model=_model(f"no-weights-{mode}", environment={"FAIL_LOAD": "1"}),
            deferrable=deferrable,
            **POLL,
        )

    with DAG(f"cml_test_deploy_timeout_{mode}", **ARGS):
        CmlDeployModelOperator(
            task_id="deploy",
            project="Analytics",
            model=_model(f"slow-load-{mode}", environment={"SLOW_LOAD": "30"}),
            timeout=3,
            deferrable=deferrable,
            **POLL,
        )

    # The first try's deployment fails to load; Airflow retries the task: same build, a new deployment.
    with DAG(f"cml_test_deploy_retry_{mode}", **ARGS):
        CmlDeployModelOperator(
            task_id="deploy",
            project="Analytics",
            model=_model(
                f"second-try-{mode}", environment={"FAIL_ON_TRY": "1", "TRY": "{{ ti.try_number }}"}
            ),
            retries=1,
            retry_delay=timedelta(seconds=0),
            deferrable=deferrable,
            **POLL,
        )

    with DAG(f"cml_test_app_failure_{mode}", **ARGS):
        CmlApplicationOperator(
            task_id="restart_dashboard",
            project="Analytics",
            application={
                "name": f"crash-{mode}",
                "subdomain": f"crash-{mode}",
                "script": "dashboard.py",
                "environment": {"CRASH": "1"},
            },
            deferrable=deferrable,
            **POLL,
        )

# tests/system/test_secrets.py: a secret in a deployment's and an application's environment, and the
# model's access key (read by call_model), must appear nowhere Airflow keeps things.
SECRET_ENV = {"DB_PASSWORD": "s3cr3t-Pa55w0rd-XYZ"}

with DAG("cml_test_secrets_mlops", **ARGS):
    deployed = CmlDeployModelOperator(
        task_id="deployed",
        project="Analytics",
        model=_model("secret-model", environment=SECRET_ENV),
        deferrable=True,
        **POLL,
    )

    @task(task_id="called")
    def called(ids: dict) -> dict:
        from airflow_provider_cml.hooks.cml import CmlHook

        return CmlHook().models.call_model(ids["project_id"], ids["model_id"], {"x": 1})

    app = CmlApplicationOperator(
        task_id="app",
        project="Analytics",
        application={
            "name": "secret-app",
            "subdomain": "secret-app",
            "script": "dashboard.py",
            "environment": SECRET_ENV,
        },
        action="ensure",
        **POLL,
    )
    called(deployed.output) >> app
