"""TLS: the workbench served over HTTPS with a certificate from a throwaway CA made here."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.testing import local_workbench
from airflow_provider_cml.testing.tls import make_test_pki, server_ssl_context

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


def test_default_verification_rejects_it_in_the_async_path_too(https_workbench, monkeypatch):
    hook = _hook(monkeypatch, https_workbench)

    async def read():
        try:
            await hook.aget_job_run("a", "b", "c")
        finally:
            await hook.aclose()

    with pytest.raises(CmlConfigError, match="CA bundle path"):
        asyncio.run(read())


def test_ca_bundle_is_accepted_sync_and_async(https_workbench, monkeypatch, pki):
    hook = _hook(monkeypatch, https_workbench, ca_bundle=pki["ca"])
    assert [p["name"] for p in hook.list_projects()] == ["secure"]
    run = hook.start_job_run("secure", "quick")
    hook = _hook(monkeypatch, https_workbench, ca_bundle=pki["ca"])

    async def read():
        try:
            return await hook.aget_job_run(run["project_id"], run["job_id"], run["id"])
        finally:
            await hook.aclose()

    assert asyncio.run(read())["id"] == run["id"]


def test_verify_off_works_and_warns_once(https_workbench, monkeypatch, caplog):
    hook = _hook(monkeypatch, https_workbench, verify_ssl=False)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            hook.list_projects()
    warnings = [r for r in caplog.records if "TLS verification is off" in r.getMessage()]
    assert len(warnings) == 1
    assert KEY not in caplog.text


def test_verify_off_in_the_async_path_too(https_workbench, monkeypatch):
    run = _hook(monkeypatch, https_workbench, verify_ssl=False).start_job_run("secure", "quick")
    hook = _hook(monkeypatch, https_workbench, verify_ssl=False)

    async def read():
        try:
            return await hook.aget_job_run(run["project_id"], run["job_id"], run["id"])
        finally:
            await hook.aclose()

    assert asyncio.run(read())["id"] == run["id"]
