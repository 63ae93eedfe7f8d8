"""Models, builds, deployments and applications: hook, operators and sensors over real HTTP.

The shared workbench (``wb``) really loads the model files in ``tests/jobs`` (``model_predict.py``)
and really runs ``dashboard.py``; every exchange is checked against the contract at teardown.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from airflow_provider_cml.exceptions import (
    CmlApplicationError,
    CmlConfigError,
    CmlException,
    CmlLookupError,
    CmlModelBuildError,
    CmlModelCallError,
    CmlModelDeploymentError,
    CmlWorkloadError,
    CmlWorkloadTimeout,
)
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.operators.applications import CmlApplicationOperator
from airflow_provider_cml.operators.models import CmlDeployModelOperator
from airflow_provider_cml.testing.server import Faults
from airflow_provider_cml.workloads.applications import APPLICATION, CmlApplicationSpec
from airflow_provider_cml.workloads.models import (
    MODEL_BUILD,
    MODEL_DEPLOYMENT,
    BuildRef,
    CmlModelSpec,
    DeploymentRef,
)
from tests.conftest import API_KEY, task_context
from tests.hostile import budgets

MODEL = r"/api/v2/projects/[^/]+/models"
BUILDS = MODEL + r"/[^/]+/builds"
DEPLOYMENTS = BUILDS + r"/[^/]+/deployments"
APPS = r"/api/v2/projects/[^/]+/applications"


def _context(task_id: str, try_number: int = 1, run_id: str = "manual__1") -> dict:
    return task_context("serving_dag", task_id, try_number, run_id)


def _model(name: str, **fields) -> dict:
    return {"name": name, "file": "model_predict.py", "function": "predict", **fields}


def _deploy(name: str, context=None, **options):
    operator = CmlDeployModelOperator(
        task_id="deploy",
        project="Analytics",
        model=_model(name, **options.pop("model", {})),
        poll_interval=0.05,
        **options,
    )
    return operator, operator.execute(context or _context("deploy"))


# -- statuses, as the sheet says ------------------------------------------------------------------


def test_build_statuses_are_lower_case_and_succeeded_is_not_final():
    assert MODEL_BUILD.is_success(MODEL_BUILD.status_of({"status": "built"}))
    for failed in ("build failed", "timedout", "Build Failed"):
        status = MODEL_BUILD.status_of({"status": failed})
        assert MODEL_BUILD.is_terminal(status) and not MODEL_BUILD.is_success(status)
    succeeded = MODEL_BUILD.status_of({"status": "succeeded"})  # the sheet: unclear, graced
    assert not MODEL_BUILD.is_terminal(succeeded) and MODEL_BUILD.is_unclear(succeeded)
    assert MODEL_BUILD.is_unclear(MODEL_BUILD.status_of({"status": "unknown"}))
    assert MODEL_BUILD.is_unclear(MODEL_BUILD.status_of({}))  # no status at all: unclear, graced


def test_deployment_statuses_tolerate_a_prefix_and_read_unlisted_ones_as_progress():
    assert MODEL_DEPLOYMENT.is_success(MODEL_DEPLOYMENT.status_of({"status": "MODEL_DEPLOYMENT_DEPLOYED"}))
    for failed in ("failed", "stopped", "deployment_failed", "MODEL_DEPLOYMENT_FAILED"):
        status = MODEL_DEPLOYMENT.status_of({"status": failed})
        assert MODEL_DEPLOYMENT.is_terminal(status) and not MODEL_DEPLOYMENT.is_success(status)
    for going in ("pending", "deploying", "stopping", "MODEL_DEPLOYMENT_PENDING"):
        status = MODEL_DEPLOYMENT.status_of({"status": going})
        assert not MODEL_DEPLOYMENT.is_terminal(status) and not MODEL_DEPLOYMENT.is_unclear(status)


def test_application_statuses_follow_the_enum():
    assert APPLICATION.is_success("APPLICATION_RUNNING")
    assert APPLICATION.is_terminal("APPLICATION_FAILED") and APPLICATION.is_terminal("APPLICATION_STOPPED")
    assert APPLICATION.is_unclear(APPLICATION.status_of({}))  # the enum's zero value, left out
    assert not APPLICATION.is_unclear("APPLICATION_STARTING")


# -- specs: each mistake a clear error ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"name": ""}, "name is missing: give the model a name (a non-empty string)"),
        ({"file": "p.py", "function": "f"}, "name is missing: give the model a name."),
        ({"name": 7, "file": "p.py", "function": "f"}, "name must be a string, not 7"),
        ({"name": "m"}, "needs what to build"),
        ({"name": "m", "file": "p.py"}, "needs what to build"),
        ({"name": "m", "file": "/abs/p.py", "function": "f"}, "inside the project"),
        ({"name": "m", "file": "../p.py", "function": "f"}, "inside the project"),
        (_model("m", registered_model_version_id="v1"), "both a file/function and a registered"),
        (_model("m", cpu=0), "cpu must be a positive number"),
        (_model("m", replicas=1.5), "replicas must be a positive number"),
        (_model("m", nvidia_gpus=-1), "nvidia_gpus must be a whole number"),
        (_model("m", disable_authentication="yes"), "disable_authentication must be True or False"),
        (_model("m", environment={"A": object()}), "environment"),
        ({**_model("m"), "gpus": 1}, "Unknown model spec field(s) 'gpus'"),
    ],
)
def test_a_model_spec_mistake_is_a_clear_error(fields, words):
    with pytest.raises(CmlConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        CmlModelSpec.of(fields)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"name": "a", "subdomain": "Sales", "script": "app.py"}, "lower-case letters"),
        ({"name": "a", "subdomain": "-sales", "script": "app.py"}, "lower-case letters"),
        ({"name": "a", "subdomain": "sales--x", "script": "app.py"}, "lower-case letters"),
        (
            {"name": "a", "subdomain": "sales", "script": ""},
            "script is missing: give the application a script",
        ),
        ({"name": "a", "script": "app.py"}, "subdomain is missing: give the application a subdomain"),
        ({"name": "a", "subdomain": "sales", "script": "../app.py"}, "inside the project"),
        (
            {"name": "a", "subdomain": "sales", "script": "a.py", "memory": "lots"},
            "memory must be a positive",
        ),
    ],
)
def test_an_application_spec_mistake_is_a_clear_error(fields, words):
    with pytest.raises(CmlConfigError, match=words):
        CmlApplicationSpec.of(fields)


def test_bodies_are_written_as_the_api_wants_them():
    spec = CmlModelSpec.of(_model("m", nvidia_gpus=1, environment={"N": 3}, cpu="2"))
    deploy = spec.deployment_body("p", "m1", "b1", {"MARK": "x"})
    assert deploy["nvidia_gpus"] == 1 and "nvidia_gpu" not in deploy  # plural on create
    assert deploy["environment"] == {"N": "3", "MARK": "x"} and deploy["cpu"] == 2.0  # a map of strings
    app = CmlApplicationSpec.of({"name": "a", "subdomain": "a", "script": "a.py", "environment": {"K": "v"}})
    assert app.create_body("p")["environment"] == {"K": "v"}  # a map on create
    changed = app.differences({"name": "a", "subdomain": "a", "script": "a.py", "environment": '{"K": "w"}'})
    assert changed == {"environment": '{"K": "v"}'}  # a JSON string in an update, only what changed


# -- deploy: build, wait, deploy, wait, call ---------------------------------------------------


def test_deploy_builds_waits_deploys_and_the_model_service_calls_it(wb):
    context = _context("deploy")
    _, ids = _deploy("churn", context, model={"environment": {"MODEL_VERSION": "7"}})
    serving = wb.workbench.serving
    assert serving.builds[ids["build_id"]].status == "built"
    assert serving.deployments[ids["deployment_id"]].status == "deployed"
    pushed = context["ti"].pushed
    assert {k: pushed[k] for k in ("model_id", "build_id", "deployment_id")} == {
        k: ids[k] for k in ("model_id", "build_id", "deployment_id")
    }
    assert pushed["model_url"] == f"{wb.url}/alice/analytics/models"
    answer = CmlHook().models.call_model(ids["project_id"], ids["model_id"], {"x": 21})
    assert answer == {"doubled": 42, "version": "7"}  # the function ran in the deployment's replica
    [call] = wb.requests("POST", r"/model")
    assert "accessKey" in call.request_body and call.status == 200


def test_a_rerun_of_the_same_task_instance_builds_and_deploys_once(wb):
    _, first = _deploy("rerun-model", _context("deploy", try_number=1))
    _, second = _deploy("rerun-model", _context("deploy", try_number=2))
    assert first == second
    assert len(wb.requests("POST", BUILDS)) == 1 and len(wb.requests("POST", DEPLOYMENTS)) == 1
    _, other_run = _deploy("rerun-model", _context("deploy", run_id="manual__2"))  # another DAG run
    assert other_run["build_id"] != first["build_id"]


def test_a_cleared_deploy_builds_and_deploys_again_and_a_retry_does_not(wb):
    def attempt(try_number: int, max_tries: int) -> dict:
        context = _context("deploy", try_number=try_number)
        context["ti"].max_tries = max_tries  # Airflow's: a Clear sets it to the last try + retries
        context["task"] = SimpleNamespace(retries=1)
        return context

    _, first = _deploy("cleared-model", attempt(1, 1))
    _, retry = _deploy("cleared-model", attempt(2, 1))  # a retry of the same attempt
    assert retry == first
    _, cleared = _deploy("cleared-model", attempt(3, 3))  # the first try after a Clear
    assert cleared["build_id"] != first["build_id"] and cleared["deployment_id"] != first["deployment_id"]
    assert len(wb.requests("POST", BUILDS)) == 2 and len(wb.requests("POST", DEPLOYMENTS)) == 2
    # The earlier attempt's deployment is left serving, as any other deployment of the model.
    assert wb.workbench.serving.deployments[first["deployment_id"]].status == "deployed"


def test_a_rerun_after_a_failed_deployment_deploys_again_on_the_same_build(wb):
    context = _context("deploy", try_number=1)
    with pytest.raises(CmlModelDeploymentError):
        _deploy("flaky-load", context, model={"environment": {"FAIL_LOAD": "1"}})
    _, ids = _deploy("flaky-load", _context("deploy", try_number=2))
    assert ids["build_id"] == context["ti"].pushed["build_id"]  # the built build is reused
    assert len(wb.requests("POST", BUILDS)) == 1 and len(wb.requests("POST", DEPLOYMENTS)) == 2


def test_lost_answers_create_no_model_build_or_deployment_twice(wb):
    wb.faults = Faults(lost_response_rate=1.0, seed=3)  # every POST acts, then its answer is lost
    _, ids = _deploy("lost-answers")
    wb.faults = None
    serving = wb.workbench.serving
    assert [m.name for m in serving.models.values()].count("lost-answers") == 1
    model = serving.models[ids["model_id"]]
    assert len(serving.builds_of(model)) == 1
    assert len(serving.deployments_of(serving.builds[ids["build_id"]])) == 1
    assert all(entry.fault == "lost_response" for entry in wb.requests("POST", MODEL + ".*"))


def test_a_build_that_cannot_load_its_function_fails_the_task_and_deploys_nothing(wb):
    with pytest.raises(CmlModelBuildError, match=r"BUILD_FAILED.*defines its function"):
        _deploy("no-function", model={"function": "missing"})
    assert not wb.requests("POST", DEPLOYMENTS)


def test_a_deployment_that_cannot_load_fails_with_what_the_platform_said(wb):
    with pytest.raises(CmlModelDeploymentError, match=r"FAILED.*could not be loaded"):
        _deploy("fails-to-load", model={"environment": {"FAIL_LOAD": "1"}})


def _serving_before(name: str) -> DeploymentRef:
    """A deployment of ``name`` that serves before the task under test starts."""
    _, ids = _deploy(name, _context("earlier", run_id="earlier"))
    return DeploymentRef(**ids)


def test_a_timeout_stops_only_the_deployment_this_task_created(wb):
    before = _serving_before("slow-model")
    with pytest.raises(CmlWorkloadTimeout):
        _deploy("slow-model", model={"environment": {"SLOW_LOAD": "30"}}, timeout=1.5)
    serving = wb.workbench.serving
    stops = wb.requests("POST", DEPLOYMENTS + r"/[^/]+:stop")
    assert len(stops) == 1 and before.deployment_id not in stops[0].path
    assert serving.deployments[before.deployment_id].status == "deployed"  # still serving
    ours = stops[0].path.rsplit("/", 1)[1].removesuffix(":stop")
    assert serving.deployments[ours].status == "stopped"


def test_a_deferred_deploy_ends_its_wait_when_execution_timeout_does(wb):
    """The trigger's end is the task's execution_timeout, so it stops our deployment then, not later."""
    try:  # Airflow 3.2+ moved it to the Task SDK
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]
    context = _context("deploy")
    started = time.time() - 30
    context["ti"].start_date = datetime.fromtimestamp(started, timezone.utc)
    with pytest.raises(TaskDeferred) as info:
        _deploy("deadline-model", context, deferrable=True, execution_timeout=timedelta(seconds=600))
    _, kwargs = info.value.trigger.serialize()
    assert info.value.method_name == "execute_after_build"
    assert kwargs["end_time"] == pytest.approx(started + 600, abs=2)
    assert kwargs["carry"]["deadline"] == pytest.approx(started + 600, abs=2)
    # What ended it is said, and travels to the task that resumes (which may defer again).
    assert kwargs["limit"] == kwargs["carry"]["limit"] == "execution_timeout"


@pytest.mark.parametrize("operator", ["deploy", "application"])
def test_timeout_bounds_the_whole_task_when_the_workbench_hangs_before_any_wait(wb, monkeypatch, operator):
    """Every request hangs: the look-ups and creates before the wait end by ``timeout`` too."""
    settings = {"timeout": 1, "max_retries": 3, "retry_backoff": 0.01}
    monkeypatch.setenv("AIRFLOW_CONN_CML_DEFAULT", wb.airflow_connection(API_KEY, **settings))
    wb.faults = Faults(latency=5)
    with budgets() as limits, pytest.raises(CmlException):
        if operator == "deploy":
            _deploy("hung-model", timeout=1.5)
        else:
            _run_app(_app("hung-app"), timeout=1.5)
    wb.faults = None
    # Every attempt had to end within the task's 1.5 s (unbounded: 4 attempts of 1 s each, at least).
    assert limits and max(b.ends for b in limits) <= limits[0].now + 1.5 + 0.01, limits
    assert not wb.requests("POST", r".*")  # it never got as far as creating anything


def test_a_kill_wakes_the_wait_and_stops_only_our_half_finished_deployment(wb):
    before = _serving_before("killed-model")
    operator = CmlDeployModelOperator(
        task_id="deploy",
        project="Analytics",
        model=_model("killed-model", environment={"SLOW_LOAD": "30"}),
        poll_interval=0.5,
    )
    killed_at: list[float] = []

    def on_term(signum, frame):  # what the task runner does on SIGTERM
        killed_at.append(time.monotonic())
        operator.on_kill()

    previous = signal.signal(signal.SIGALRM, on_term)
    signal.setitimer(signal.ITIMER_REAL, 2.0)  # after the build (~0.5 s), while the deployment loads
    try:
        with pytest.raises(CmlWorkloadError, match="interrupted"):
            operator.execute(_context("deploy"))
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert killed_at  # "interrupted": the kill woke the wait, not a later poll
    stops = wb.requests("POST", DEPLOYMENTS + r"/[^/]+:stop")
    assert len(stops) == 1 and before.deployment_id not in stops[0].path
    assert wb.workbench.serving.deployments[before.deployment_id].status == "deployed"


def test_call_model_says_what_the_function_raised(wb):
    _, ids = _deploy("strict-model")
    with pytest.raises(CmlModelCallError, match="KeyError"):
        CmlHook().models.call_model(ids["project_id"], ids["model_id"], {"no_x": 1})


def test_deploy_from_a_registered_model_version(wb):
    entry = wb.workbench.serving.register(
        {"name": "registered-churn", "versions": [{"number": 1}, {"number": 2}]}
    )
    hook = CmlHook()
    assert [m["name"] for m in hook.models.list_registered_models({"model_name": "registered-churn"})] == [
        "registered-churn"
    ]
    newest = max(
        hook.models.get_registered_model(entry["model_id"])["model_versions"], key=lambda v: v["number"]
    )
    version = hook.models.get_registered_model_version(entry["model_id"], newest["model_version_id"])
    assert version["number"] == 2 and version["status"] == "READY"
    spec = {
        "name": "from-registry",
        "registered_model_id": entry["model_id"],
        "registered_model_version_id": version["model_version_id"],
    }
    operator = CmlDeployModelOperator(task_id="deploy", project="Analytics", model=spec, poll_interval=0.05)
    ids = operator.execute(_context("deploy"))
    assert (
        wb.workbench.serving.builds[ids["build_id"]].registered_model_version_id
        == version["model_version_id"]
    )


# -- applications ---------------------------------------------------------------------------------


def _app(name: str, **fields) -> dict:
    return {"name": name, "subdomain": name, "script": "dashboard.py", **fields}


def _run_app(application, action="restart", **options):
    operator = CmlApplicationOperator(
        task_id="app",
        project="Analytics",
        application=application,
        action=action,
        poll_interval=0.05,
        **options,
    )
    context = _context("app")
    return operator.execute(context), context["ti"].pushed


def test_an_application_is_created_running_then_updated_restarted_and_stopped(wb):
    app_id, pushed = _run_app(_app("sales-board", environment={"REFRESHED": "1"}))
    apps = wb.workbench.serving.applications
    assert apps[app_id].status == "APPLICATION_RUNNING"
    assert pushed["application_url"] == "http://sales-board." + wb.url.split("://")[1]
    assert not wb.requests("POST", APPS + r"/[^/]+:restart")  # creating started it
    first_process = apps[app_id].process
    _run_app(_app("sales-board", environment={"REFRESHED": "2"}))
    [patch] = wb.requests("PATCH", APPS + r"/[^/]+")
    assert '"environment": "{\\"REFRESHED\\": \\"2\\"}"' in patch.request_body  # a JSON string
    assert len(wb.requests("POST", APPS + r"/[^/]+:restart")) == 1
    assert apps[app_id].environment == {"REFRESHED": "2"} and apps[app_id].process is not first_process
    _run_app("sales-board", action="ensure")  # a name: ensure takes a spec, a name restarts
    _run_app(_app("sales-board", environment={"REFRESHED": "2"}), action="ensure")  # running, unchanged
    assert len(wb.requests("POST", APPS + r"/[^/]+:restart")) == 2
    _run_app("sales-board", action="stop")
    assert apps[app_id].status == "APPLICATION_STOPPED"


def test_an_application_that_exits_fails_the_task(wb):
    with pytest.raises(CmlApplicationError, match="APPLICATION_FAILED"):
        _run_app(_app("crashing-board", environment={"CRASH": "1"}))


def test_an_application_timeout_never_stops_it(wb):
    _run_app(_app("slow-board"))
    with pytest.raises(CmlWorkloadTimeout):
        _run_app("slow-board", timeout=0.1)  # restarted; running only after 0.5 s
    assert not wb.requests("POST", APPS + r"/[^/]+:stop")


def test_an_unknown_application_name_is_a_clear_error(wb):
    with pytest.raises(CmlLookupError, match="no application named 'no-such-board'"):
        _run_app("no-such-board")


def test_an_unknown_action_is_refused_when_the_dag_is_parsed():
    with pytest.raises(CmlConfigError, match="action must be one of"):
        CmlApplicationOperator(task_id="a", project="p", application="x", action="redeploy")


# -- sensors and the trigger --------------------------------------------------------------------


def test_the_sensors_see_a_deployment_deployed_and_an_application_running_or_failed(wb):
    from airflow_provider_cml.sensors.applications import CmlApplicationSensor
    from airflow_provider_cml.sensors.models import CmlModelDeploymentSensor

    _, ids = _deploy("sensed-model")
    sensor = CmlModelDeploymentSensor(
        task_id="s", project="Analytics", **{k: ids[k] for k in ("model_id", "build_id", "deployment_id")}
    )
    assert sensor.poke({}) is True
    _run_app(_app("sensed-board"))
    assert CmlApplicationSensor(task_id="s", project="Analytics", application="sensed-board").poke({}) is True
    waiting_stop = CmlApplicationSensor(
        task_id="s", project="Analytics", application="sensed-board", state="stopped"
    )
    assert waiting_stop.poke({}) is False
    with pytest.raises(CmlApplicationError):
        _run_app(_app("failing-board", environment={"CRASH": "1"}))
    with pytest.raises(CmlApplicationError, match="APPLICATION_FAILED"):
        CmlApplicationSensor(task_id="s", project="Analytics", application="failing-board").poke({})


def test_the_trigger_waits_on_a_deployment_and_stops_it_on_timeout_only_when_it_owns_it(wb):
    import asyncio
    import json

    from airflow_provider_cml.triggers.cml import CmlWorkloadTrigger

    def rebuilt(trigger):  # as a triggerer does: from its serialised form
        _, kwargs = trigger.serialize()
        return CmlWorkloadTrigger(**json.loads(json.dumps(kwargs)))

    hook = CmlHook()
    _, ids = _deploy("triggered-model")
    built = BuildRef(ids["project_id"], ids["model_id"], ids["build_id"])
    spec = CmlModelSpec.of(_model("triggered-model", environment={"SLOW_LOAD": "30"}))

    async def first_event(trigger):
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    for owns in (False, True):
        slow = hook.models.create_deployment(built, spec, {"MARK": f"owns-{owns}"})
        ref = DeploymentRef(*built, slow["id"])
        trigger = rebuilt(
            CmlWorkloadTrigger(
                kind=MODEL_DEPLOYMENT.home,
                ref=ref._asdict(),
                poll_interval=0.05,
                end_time=time.time() + 1,
                owns=owns,
            )
        )
        event = asyncio.run(first_event(trigger))
        assert event["status"] == "timeout"
        status = wb.workbench.serving.deployments[slow["id"]].status
        assert status == ("stopped" if owns else "pending")
        if not owns:
            hook.models.stop_deployment(ref)  # clean up what the test started
    done = rebuilt(
        CmlWorkloadTrigger(kind=MODEL_DEPLOYMENT.home, ref=DeploymentRef(**ids)._asdict(), poll_interval=0.05)
    )
    assert asyncio.run(first_event(done))["status"] == "success"


def test_a_deploy_resumed_after_its_deadline_says_time_ran_out_and_sends_nothing(wb):
    """The trigger's event hold may use up the deadline: the resumed task blames the time, not the server."""
    try:  # Airflow 3.2+ moved it to the Task SDK
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]
    from airflow_provider_cml.exceptions import CmlOutOfTimeError

    context = _context("deploy")
    with pytest.raises(TaskDeferred) as info:
        _deploy("late-model", context, deferrable=True, timeout=60)
    carry = {**info.value.trigger.serialize()[1]["carry"], "deadline": time.time() - 1}
    wb.clear_journal()
    resumed = CmlDeployModelOperator(
        task_id="deploy", project="Analytics", model=_model("late-model"), deferrable=True, timeout=60
    )
    with pytest.raises(CmlOutOfTimeError) as error:
        event = {"status": "success", "kind": MODEL_BUILD.home, "carry": carry, "answer": {}}
        resumed.execute_after_build(context, {**event, "ref": {k: carry[k] for k in BuildRef._fields}})
    assert "was not sent" in str(error.value) and "No answer" not in str(error.value)
    assert "trigger_event_hold" in str(error.value)
    assert not wb.requests(None, r".*")  # nothing reached the workbench
