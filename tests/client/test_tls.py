"""TLS: the workbench served over HTTPS with a certificate from a throwaway CA made here."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import pytest

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.testing import local_workbench
from airflow_provider_cml.testing.tls import make_test_pki, server_ssl_context
from airflow_provider_cml.triggers.cml import CmlJobRunTrigger

KEY = "tls-test-key-1234567"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A private CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_workbench(pki):
    context = server_ssl_context(pki)
    spec = {
        "api_keys": [KEY],
        "projects": [{"name": "secure", "owner": "sec", "jobs": [{"name": "quick", "duration": 0.05}]}],
    }
    with local_workbench(spec, ssl_context=context) as server:
        yield server


def _hook(monkeypatch, server, **extra) -> CmlHook:
    conn = {"conn_type": "cml", "host": server.url, "password": KEY, "extra": {"max_retries": 0, **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_CML_TLS", json.dumps(conn))
    return CmlHook("cml_tls")


def test_served_over_https(https_workbench):
    assert https_workbench.url.startswith("https://127.0.0.1:")


def test_default_verification_rejects_a_private_ca_and_says_what_to_do(https_workbench, monkeypatch):
    with pytest.raises(CmlConfigError, match="TLS certificate verification failed.*CA bundle path"):
        _hook(monkeypatch, https_workbench).list_projects()


def _trigger_event(monkeypatch, server, run: dict | None = None, **extra) -> dict:
    """The first event of a trigger on ``run`` (a made-up one when ``None``): the public async path."""
    _hook(monkeypatch, server, **extra)  # sets the connection
    run = run or {"project_id": "a", "job_id": "b", "id": "c"}
    trigger = CmlJobRunTrigger(
        project_id=run["project_id"],
        job_id=run["job_id"],
        run_id=run["id"],
        conn_id="cml_tls",
        poll_interval=0.1,
    )

    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(asyncio.wait_for(first(), 20))


def test_default_verification_rejects_it_in_the_trigger_too(https_workbench, monkeypatch):
    event = _trigger_event(monkeypatch, https_workbench)
    assert event["status"] == "error" and "CA bundle path" in event["message"]


def test_ca_bundle_is_accepted_sync_and_async(https_workbench, monkeypatch, pki):
    hook = _hook(monkeypatch, https_workbench, ca_bundle=pki["ca"])
    assert [p["name"] for p in hook.list_projects()] == ["secure"]
    run = hook.start_job_run("secure", "quick")
    event = _trigger_event(monkeypatch, https_workbench, run, ca_bundle=pki["ca"])
    assert event["status"] == "success" and event["ref"]["run_id"] == run["id"]


def test_a_certificate_naming_the_host_only_in_its_cn_is_refused_sync_and_trigger(monkeypatch, tmp_path):
    pki = make_test_pki(tmp_path, "localhost", cn_only=True)
    spec = {"api_keys": [KEY], "projects": [{"name": "p", "jobs": [{"name": "j"}]}]}
    with local_workbench(spec, ssl_context=server_ssl_context(pki)) as workbench:
        server = SimpleNamespace(url=workbench.url.replace("127.0.0.1", "localhost"))
        with pytest.raises(CmlConfigError, match="TLS certificate verification failed"):
            _hook(monkeypatch, server, ca_bundle=pki["ca"]).list_projects()
        event = _trigger_event(monkeypatch, server, ca_bundle=pki["ca"])
        assert event["status"] == "error" and "TLS certificate verification failed" in event["message"]
        assert workbench.requests() == []  # nothing was sent to it, the key least of all


def test_verify_off_works_and_warns_once(https_workbench, monkeypatch, caplog):
    hook = _hook(monkeypatch, https_workbench, verify_ssl=False)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            hook.list_projects()
    warnings = [r for r in caplog.records if "TLS verification is off" in r.getMessage()]
    assert len(warnings) == 1
    assert KEY not in caplog.text


def test_verify_off_in_the_trigger_too(https_workbench, monkeypatch):
    run = _hook(monkeypatch, https_workbench, verify_ssl=False).start_job_run("secure", "quick")
    event = _trigger_event(monkeypatch, https_workbench, run, verify_ssl=False)
    assert event["status"] == "success" and event["ref"]["run_id"] == run["id"]
