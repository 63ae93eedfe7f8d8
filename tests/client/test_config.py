"""Connection settings: host forms, extras, TLS options, in-workbench fallback; input validation."""

from __future__ import annotations

import pytest

from airflow_provider_cml.client.config import build_client_config, normalize_base_url
from airflow_provider_cml.client.retry import RetryPolicy, parse_retry_after
from airflow_provider_cml.exceptions import CmlConfigError
from airflow_provider_cml.validation import normalize_environment, validate_arguments, validate_positive


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("ml-1234.example.site", None, "https://ml-1234.example.site"),
        ("https://ml-1234.example.site/", None, "https://ml-1234.example.site"),
        ("https://ml-1234.example.site/api/v2", None, "https://ml-1234.example.site"),
        ("https://ml-1234.example.site/api/v1/", None, "https://ml-1234.example.site"),
        ("http://127.0.0.1", 8080, "http://127.0.0.1:8080"),
        ("http://127.0.0.1:9000", 8080, "http://127.0.0.1:9000"),
    ],
)
def test_host_forms(host, port, expected):
    assert normalize_base_url(host, port) == expected


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("", "has no host"),
        (None, "has no host"),
        ("ftp://ml.example.com", "is not a workbench URL"),
        ("https://", "is not a workbench URL"),
        ("https://ml.example.com/alice/proj/jobs/12", "has a path"),
    ],
)
def test_bad_hosts(host, message):
    with pytest.raises(CmlConfigError, match=message):
        normalize_base_url(host)


@pytest.mark.parametrize("value", [None, "", "  ", "v2", " V2 "])
def test_an_empty_api_version_is_v2(value):
    # The form leaves it empty: a two-letter default would make every task warn about masking.
    config = build_client_config(
        host="ml.example.com", password="k" * 10, extra={"api_version": value}, environ={}
    )
    assert config.api_version == "v2"


def test_defaults_and_extras(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----")
    config = build_client_config(host="ml.example.com", password="k" * 10, extra={}, environ={})
    assert (config.api_version, config.verify, config.timeout, config.retry_policy.max_retries) == (
        "v2",
        True,
        60,
        5,
    )
    config = build_client_config(
        host="ml.example.com",
        password="key",
        extra={"api_version": "V1", "ca_bundle": str(ca), "timeout": "15", "max_retries": "2"},
        environ={},
    )
    assert (config.api_version, config.verify, config.timeout, config.retry_policy.max_retries) == (
        "v1",
        str(ca),
        15,
        2,
    )
    # Airflow 2 forms may store prefixed names.
    config = build_client_config(
        host="h.example", password="key", extra={"extra__cml__verify_ssl": "false"}, environ={}
    )
    assert config.verify is False


def test_key_never_in_config_repr():
    config = build_client_config(host="h.example", password="super-secret-key", environ={})
    assert "super-secret-key" not in repr(config)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"api_version": "v3"}, "use 'v2'"),
        ({"verify_ssl": "maybe"}, "true or false"),
        ({"timeout": "soon"}, "must be a number"),
        ({"timeout": 0}, "at least 1"),
        ({"max_retries": -1}, "at least 0"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "not a file on this worker"),
    ],
)
def test_bad_extras(extra, message):
    with pytest.raises(CmlConfigError, match=message):
        build_client_config(host="h.example", password="key", extra=extra, environ={})


def test_missing_key_says_where_to_put_it():
    with pytest.raises(CmlConfigError, match="no API key.*User Settings > API Keys"):
        build_client_config(host="h.example", password=None, environ={})


def test_inside_a_workbench_the_session_variables_fill_in():
    environ = {"CDSW_APIV2_KEY": "session-key", "CDSW_API_URL": "https://ml-9.example.site/api/v1"}
    config = build_client_config(host=None, password=None, environ=environ)
    assert config.base_url == "https://ml-9.example.site" and config.api_key == "session-key"
    config = build_client_config(
        host=None, password="", environ={"CDSW_APIV2_KEY": "k2", "CDSW_DOMAIN": "ml-8.site"}
    )
    assert config.base_url == "https://ml-8.site"
    # v1 takes the legacy key, which a workload has as CDSW_API_KEY (never the v2 key)
    both = {"CDSW_APIV2_KEY": "v2-key", "CDSW_API_KEY": "legacy-key", "CDSW_DOMAIN": "ml-8.site"}
    legacy = build_client_config(host=None, password=None, environ=both, extra={"api_version": "v1"})
    assert legacy.api_key == "legacy-key"


def test_environment_values():
    assert normalize_environment({"A": "x", "B": 2, "C": 0.5, "D": False}) == {
        "A": "x",
        "B": "2",
        "C": "0.5",
        "D": "False",
    }
    assert normalize_environment(None) == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"A": None}, r"environment\['A'\] is a NoneType.*only strings"),
        ({"A": {"x": 1}}, r"environment\['A'\] is a dict"),
        ({"A": [1]}, r"environment\['A'\] is a list"),
        ({"1BAD": "x"}, "not a valid environment variable name"),
        ({"BAD-NAME": "x"}, "not a valid environment variable name"),
        ({"": "x"}, "not a valid environment variable name"),
        ("A=1", "must be a dict"),
    ],
)
def test_bad_environment_names_the_key_not_the_value(env, message):
    with pytest.raises(CmlConfigError, match=message) as info:
        normalize_environment(env)
    assert "{'x': 1}" not in str(info.value)


def test_arguments_and_intervals():
    assert validate_arguments("a b") == "a b"
    with pytest.raises(CmlConfigError, match="arguments must be a string"):
        validate_arguments(["a", "b"])
    for bad in (0, -1, True, "5"):
        with pytest.raises(CmlConfigError, match="positive, finite number of seconds"):
            validate_positive("poll_interval", bad)


def test_retry_after_parsing_and_backoff():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    policy = RetryPolicy(max_retries=2, backoff_base=1, backoff_max=4)
    assert policy.can_retry(2) and not policy.can_retry(3)
    assert all(2 <= policy.delay(10) <= 4 for _ in range(50))  # capped by backoff_max
    assert policy.delay(1, "500") == 120.0  # Retry-After capped


@pytest.mark.parametrize(
    ("status", "terminal", "success"),
    [
        ("ENGINE_SUCCEEDED", True, True),
        ("ENGINE_FAILED", True, False),
        ("ENGINE_TIMEDOUT", True, False),
        ("engine_succeeded", True, True),
        ("Engine_Failed", True, False),
        ("ENGINE_STOPPED", True, False),
        ("ENGINE_SKIPPED", True, False),
        ("ENGINE_STOPPING", False, False),
        ("ENGINE_UNKNOWN", False, False),
        ("ENGINE_RUNNING", False, False),
        ("SOMETHING_NEW", False, False),
        (None, False, False),
    ],
)
def test_one_definition_of_statuses(status, terminal, success):
    from airflow_provider_cml.workloads import job_runs as runs

    assert runs.is_terminal(status) is terminal
    assert runs.is_success(status) is success
