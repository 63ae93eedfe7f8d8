"""TLS: the workbench served over HTTPS with a certificate from a throwaway CA made here."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.hooks.cml import CmlHook
from airflow_provider_cml.testing import local_workbench

KEY = "tls-test-key-1234567"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A private CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Test Private CA"))
        .issuer_name(_name("Test Private CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = folder / "ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_pem = folder / "server.pem"
    cert_pem.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = folder / "server.key"
    key_pem.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {"ca": str(ca_pem), "cert": str(cert_pem), "key": str(key_pem)}


@pytest.fixture(scope="module")
def https_workbench(pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    spec = {"api_keys": [KEY], "projects": [{"name": "secure", "owner": "sec", "jobs": []}]}
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
    project_id = hook.resolve_project("secure")["id"]
    hook = _hook(monkeypatch, https_workbench, ca_bundle=pki["ca"])

    async def read():
        try:
            return await hook._arequest("GET", f"/projects/{project_id}")
        finally:
            await hook.aclose()

    assert asyncio.run(read())["name"] == "secure"


def test_verify_off_works_and_warns_once(https_workbench, monkeypatch, caplog):
    hook = _hook(monkeypatch, https_workbench, verify_ssl=False)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            hook.list_projects()
    warnings = [r for r in caplog.records if "TLS verification is off" in r.getMessage()]
    assert len(warnings) == 1
    assert KEY not in caplog.text
