"""A catalogue of bad inputs: each gets an AirflowException subclass whose message names the problem and
the fix, and none leaves anything running in the workbench. Real HTTP against the local workbench."""

from __future__ import annotations

import json

import pytest

from airflow_provider_cml import exceptions as errors
from airflow_provider_cml._compat import AirflowException
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.sensors.cml import CmlJobRunSensor
from tests.conftest import API_KEY, READONLY_KEY, wait_until
from tests.workloads.test_serving import _context

RUN_PATH = r"/api/v2/projects/[^/]+/jobs/[^/]+/runs/[^/:]+"
PROJECTS = r"/api/v2/projects"


def _conn(monkeypatch, wb, **fields):
    conn = {"conn_type": "cml", "host": wb.url, "password": API_KEY, **fields}
    monkeypatch.setenv("AIRFLOW_CONN_CML_CASE", json.dumps(conn))
    return CmlHook("cml_case")


def _start_and_wait(hook, job, env=None, **wait):
    run = hook.start_job_run("Analytics", job, env)
    return hook.wait_for_job_run("Analytics", job, run["id"], poll_interval=0.1, **wait)


def already_active(wb, monkeypatch):
    hook = CmlHook()
    first = hook.start_job_run("Analytics", "sleeper")
    try:
        hook.start_job_run("Analytics", "sleeper")
    finally:
        hook.stop_job_run("Analytics", "sleeper", first["id"])


def skipped_run(wb, monkeypatch):
    hook = CmlHook()
    first = hook.start_job_run("Analytics", "skips-when-busy")
    try:
        _start_and_wait(hook, "skips-when-busy")
    finally:
        hook.stop_job_run("Analytics", "skips-when-busy", first["id"])


def unknown_status_forever(wb, monkeypatch):
    hook = CmlHook()
    run = hook.start_job_run("Analytics", "sleeper")
    odd = {
        "id": run["id"],
        "job_id": run["job_id"],
        "project_id": run["project_id"],
        "status": "ENGINE_NEW_STATE",
    }
    wb.fail_next("GET", RUN_PATH, 200, times=10_000, body=json.dumps(odd))
    try:
        hook.wait_for_job_run("Analytics", "sleeper", run["id"], poll_interval=0.2, timeout=1)
    finally:
        wb.clear_journal()  # forget the scripted answers so the stop below sees the real run


def _listing(**fields):
    """Listing the projects through a connection with these fields: where a bad connection shows."""
    return lambda wb, mp: _conn(mp, wb, **fields).list_projects()


def _starting(project, job, environment=None, arguments=None, conn_id="cml_default"):
    """Starting a run of ``job``: where a bad name, environment or v1 address shows."""
    return lambda wb, mp: CmlHook(conn_id).start_job_run(project, job, environment, arguments)


def _answered(body, content_type="application/json"):
    """Listing the projects when the server's next answer to that is a 200 with ``body``."""

    def act(wb, mp):
        wb.fail_next("GET", PROJECTS, 200, body=body, content_type=content_type)
        return CmlHook().list_projects()

    return act


def _operator(**fields):
    return lambda wb, mp: CmlRunJobOperator(task_id="t", project="p", job="j", **fields)


def _host_with_a_path(wb, mp):
    _conn(mp, wb, host=wb.url + "/alice/analytics").list_projects()


def _readonly_start(wb, mp):
    _conn(mp, wb, password=READONLY_KEY).start_job_run("Analytics", "report-env")


def _v1_operator_waits(wb, mp):
    CmlRunJobOperator(task_id="t", cml_conn_id="cml_legacy", project="alice/analytics", job="1").execute(
        _context("t")
    )


def _v1_sensor_pokes(wb, mp):
    sensor = CmlJobRunSensor(
        task_id="s", cml_conn_id="cml_legacy", project="alice/analytics", job="1", run_id="x"
    )
    sensor.poke(_context("t"))


# (what is wrong, the action that meets it, the error, what its message must say)
CASES = [
    ("missing host", _listing(host=""), errors.CmlConfigError, "no host.*Workbench URL"),
    ("malformed host", _listing(host="ftp://x.example"), errors.CmlConfigError, "not a workbench URL.*http"),
    ("host with a path", _host_with_a_path, errors.CmlConfigError, "has a path.*Set the host to"),
    (
        "no connection",
        lambda wb, mp: CmlHook("cml_missing_conn").list_projects(),
        errors.CmlConfigError,
        "does not exist.*AIRFLOW_CONN_CML_MISSING_CONN",
    ),
    ("no API key", _listing(password=""), errors.CmlConfigError, "no API key.*User Settings > API Keys"),
    (
        "wrong key",
        _listing(password="wrong-key-zzz"),
        errors.CmlApiError,
        "rejected the API key.*User Settings > API Keys",
    ),
    ("key without permission", _readonly_start, errors.CmlApiError, "HTTP 403.*Ask the project's owner"),
    ("unknown api_version", _listing(extra={"api_version": "v3"}), errors.CmlConfigError, "use 'v2'"),
    (
        "CA bundle missing",
        _listing(extra={"ca_bundle": "/no/ca.pem"}),
        errors.CmlConfigError,
        "not a file on this worker.*PEM",
    ),
    (
        "timeout not a number",
        _listing(extra={"timeout": "soon"}),
        errors.CmlConfigError,
        "'timeout' must be a number",
    ),
    (
        "unknown project",
        _starting("Nope Project", "report-env"),
        errors.CmlLookupError,
        "No project is named exactly 'Nope Project'.*pass the project ID",
    ),
    (
        "unknown job",
        _starting("Analytics", "no-such-job"),
        errors.CmlLookupError,
        "No job in project 'Analytics' is named exactly 'no-such-job'",
    ),
    (
        "ambiguous project name",
        _starting("Duplicate", "x"),
        errors.CmlLookupError,
        r"2 projects are named 'Duplicate' \(IDs: .*Pass the ID",
    ),
    (
        "project name matching only as a substring",
        _starting("Analytic", "fail"),
        errors.CmlLookupError,
        "named exactly 'Analytic'.*Close matches: 'Analytics'",
    ),
    (
        "job name matching only as a prefix",
        _starting("Analytics", "trai"),
        errors.CmlLookupError,
        "named exactly 'trai'.*'train'",
    ),
    (
        "environment value is a dict",
        _starting("Analytics", "report-env", {"CFG": {"a": 1}}),
        errors.CmlConfigError,
        r"environment\['CFG'\] is a dict.*json.dumps",
    ),
    (
        "environment value is None",
        _starting("Analytics", "report-env", {"X": None}),
        errors.CmlConfigError,
        r"environment\['X'\] is a NoneType",
    ),
    (
        "invalid environment name",
        _starting("Analytics", "report-env", {"MY-VAR": "1"}),
        errors.CmlConfigError,
        "not a valid environment variable name: use letters, digits",
    ),
    (
        "environment is not a dict",
        _starting("Analytics", "report-env", "A=1"),
        errors.CmlConfigError,
        "must be a dict of NAME -> string",
    ),
    (
        "non-string arguments",
        _starting("Analytics", "report-env", arguments=["--a", "--b"]),
        errors.CmlConfigError,
        r"arguments must be a string.*' '.join",
    ),
    (
        "poll_interval zero",
        _operator(poll_interval=0),
        errors.CmlConfigError,
        "poll_interval must be a positive, finite number",
    ),
    (
        "negative timeout",
        _operator(timeout=-5),
        errors.CmlConfigError,
        "timeout must be a positive, finite number",
    ),
    (
        "unknown run id",
        lambda wb, mp: CmlHook().get_job_run("Analytics", "report-env", "zzzzzzzzzzzzzzzz"),
        errors.CmlApiError,
        "Not found: run 'zzzzzzzzzzzzzzzz' of job 'report-env' in project 'Analytics'",
    ),
    (
        "v1 connection asked to wait",
        _v1_operator_waits,
        errors.CmlConfigError,
        "cannot report a run's status.*wait_for_completion=False",
    ),
    (
        "v1 connection used by the sensor",
        _v1_sensor_pokes,
        errors.CmlConfigError,
        "needs Cloudera AI API v2.*Set the connection's api_version to v2",
    ),
    (
        "v1 project without owner",
        _starting("analytics", "1", conn_id="cml_legacy"),
        errors.CmlConfigError,
        "'<user-or-team>/<project-slug>'",
    ),
    (
        "v1 job not numeric",
        _starting("alice/analytics", "report-env", conn_id="cml_legacy"),
        errors.CmlConfigError,
        "numeric job ID",
    ),
    (
        "server answers HTML",
        _answered("<html>Sign in</html>", "text/html"),
        errors.CmlApiError,
        "HTML page: is the host the workbench URL",
    ),
    ("truncated JSON", _answered('{"projects": [{"id": "ab'), errors.CmlApiError, "not valid JSON"),
    (
        "200 with an unexpected shape",
        _answered('{"items": []}'),
        errors.CmlApiError,
        "without the expected 'projects' list",
    ),
    (
        "already active",
        already_active,
        errors.CmlJobAlreadyActiveError,
        "one active run per job.*Wait for that run",
    ),
    (
        "run ends ENGINE_SKIPPED",
        skipped_run,
        errors.CmlJobRunError,
        "ENGINE_SKIPPED.*already had an active run",
    ),
    (
        "unknown status that never ends",
        unknown_status_forever,
        errors.CmlJobRunTimeout,
        "still ENGINE_NEW_STATE after 1s; it has been asked to stop.*Raise timeout if the run needs longer",
    ),
    (
        "script fails",
        lambda wb, mp: _start_and_wait(CmlHook(), "fail"),
        errors.CmlJobRunError,
        "ENGINE_FAILED.*script exited with code 3.*See http",
    ),
]


@pytest.mark.parametrize(("action", "error", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(wb, monkeypatch, action, error, message):
    with pytest.raises(error, match=message) as info:
        action(wb, monkeypatch)
    assert isinstance(info.value, AirflowException)
    assert API_KEY not in str(info.value) and READONLY_KEY not in str(info.value)
    wait_until("no run going (a bad input left one)", lambda: wb.workbench.active_runs() == [])


def test_catalogue_size():
    assert len(CASES) >= 25
