"""Turning an Airflow connection (or a workbench session's environment) into client settings.

Pure functions over plain values, so the synchronous hook and the trigger's async path build the
same :class:`CmlClientConfig` from the same inputs.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_cml.client.retry import RetryPolicy
from airflow_provider_cml.connection_fields import CONN_FIELDS, CONN_TYPE
from airflow_provider_cml.exceptions import CmlConfigError

API_VERSIONS = ("v2", "v1")
#: The project's jobs page: a page that exists. A run's own page needs the web UI's numeric job id,
#: which the v2 API does not give; workbenches where users know a better page set ``run_url_template``.
DEFAULT_RUN_URL_TEMPLATE = "{base_url}/{owner}/{project_slug}/jobs"
_DEFAULTS = {f.name: f.default for f in CONN_FIELDS}
_API_SUFFIX = re.compile(r"/api(/v[12])?/*$")
HOST_EXAMPLE = "https://ml-1a2b3c4d.example.cloudera.site"
#: What a run_url_template may use.
URL_PLACEHOLDERS = frozenset({"base_url", "owner", "project_slug", "project_id", "job_id", "run_id"})


@dataclass(frozen=True)
class CmlClientConfig:
    """Everything a client needs to talk to one workbench. ``repr`` never shows the key.

    :param base_url: the workbench URL, without a path.
    :param api_key: the API key (v2) or legacy key (v1).
    :param api_version: ``"v2"`` or ``"v1"``.
    :param verify: verify TLS certificates (``True``/``False``) or the path of a CA bundle.
    :param timeout: seconds per request.
    :param retry_policy: when and how long to wait before retrying.
    :param run_url_template: where a run's page is (see :mod:`airflow_provider_cml.links`).
    :param model_service_url: where deployed models are called; ``""``: the workbench's model
        service, ``<scheme>://modelservice.<workbench host>/model``.
    """

    base_url: str
    api_key: str = field(repr=False)
    api_version: str = "v2"
    verify: bool | str = True
    timeout: float = 60.0
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    run_url_template: str = DEFAULT_RUN_URL_TEMPLATE
    model_service_url: str = ""

    @property
    def model_service(self) -> str:
        """Where deployed models are called (``POST`` with ``{"accessKey", "request"}``)."""
        if self.model_service_url:
            return self.model_service_url
        scheme, _, rest = self.base_url.partition("://")
        return f"{scheme}://modelservice.{rest.split('/')[0]}/model"

    @property
    def api_root(self) -> str:
        """The API's root URL: ``<base_url>/api/<version>``."""
        return f"{self.base_url}/api/{self.api_version}"


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """``https://`` when no scheme; ``/api/v2`` or a trailing slash removed; any other path refused.

    :param host: the connection's host (the workbench URL).
    :param port: the connection's port, if set apart from the host.
    """
    host = (host or "").strip()
    if not host:
        raise CmlConfigError(
            f"The Cloudera AI connection has no host. Set the 'Workbench URL' (host) to your workbench's "
            f"address, e.g. {HOST_EXAMPLE}."
        )
    if "://" not in host:
        host = f"https://{host}"
    parts = urlsplit(host)
    if "@" in parts.netloc:
        # Never echo it: "user:password@" would put a password in the task log.
        raise CmlConfigError(
            "The connection's host has a user name or password in it ('user:password@'); remove it. The "
            "API key goes in the connection's password field."
        )
    try:
        url_port = parts.port
    except ValueError:
        url_port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or url_port == -1
        or any(ord(c) < 33 or ord(c) > 126 for c in parts.netloc)
    ):
        raise CmlConfigError(
            f"The connection's host {host[:200]!r} is not a workbench URL: use http(s)://<workbench domain>"
            f"[:port], e.g. {HOST_EXAMPLE}."
        )
    path = _API_SUFFIX.sub("", parts.path).rstrip("/")
    if path:
        raise CmlConfigError(
            f"The connection's host has a path ({path!r}); Cloudera AI's API lives at the root of the "
            f"workbench domain. Set the host to {parts.scheme}://{parts.netloc} only."
        )
    netloc = parts.netloc
    if port and not url_port:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise CmlConfigError(f"The connection's port must be 1-65535, not {port!r}.")
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}"


def _extra_value(extra: Mapping[str, Any], name: str) -> Any:
    # Airflow 2.x forms may save fields as "extra__cml__<name>"; Airflow 3 saves the bare name.
    for key in (name, f"extra__{CONN_TYPE}__{name}"):
        value = extra.get(key)
        if value not in (None, ""):
            return value
    return _DEFAULTS.get(name)


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise CmlConfigError(f"Connection extra {name!r} must be true or false, not {value!r}.")


def _as_number(name: str, value: Any, *, minimum: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CmlConfigError(f"Connection extra {name!r} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise CmlConfigError(f"Connection extra {name!r} must be a finite number, not {value!r}.")
    if number < minimum:
        raise CmlConfigError(f"Connection extra {name!r} must be at least {minimum}, not {value!r}.")
    return number


def clean_api_key(key: str) -> str:
    """The key without surrounding whitespace; a clear error (never showing it) if it cannot be a key.

    :param key: the connection's password.
    """
    key = key.strip()
    if any(ord(c) < 33 or ord(c) > 126 for c in key):
        raise CmlConfigError(
            "The connection's API key contains spaces, control characters or non-ASCII characters, which "
            "no API key has: copy it again from the workbench's User Settings > API Keys."
        )
    return key


def check_url_template(template: str) -> str:
    """``template`` if its placeholders are known and its braces balanced; a clear error otherwise.

    :param template: the connection's ``run_url_template``.
    """
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise CmlConfigError(
            f"Connection extra 'run_url_template' is not a valid template ({exc})."
        ) from None
    unknown = sorted(name or "{}" for name in fields - URL_PLACEHOLDERS)
    if unknown:
        raise CmlConfigError(
            f"Connection extra 'run_url_template' uses unknown placeholders {unknown}; use "
            f"{sorted(URL_PLACEHOLDERS)}."
        )
    return template


def build_client_config(
    *,
    host: str | None,
    password: str | None,
    port: int | None = None,
    extra: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> CmlClientConfig:
    """Settings from connection fields; inside a workbench session the platform's variables fill gaps.

    Cloudera AI sets ``CDSW_APIV2_KEY`` and ``CDSW_DOMAIN``/``CDSW_API_URL`` in every session and job,
    the way the in-session ``cmlapi.default_client()`` finds its workbench.

    :param host: the connection's host.
    :param password: the connection's password (the API key).
    :param port: the connection's port.
    :param extra: the connection's extras.
    :param environ: the environment to read workbench variables from (default: ``os.environ``).
    :param timeout: request timeout overriding the extras.
    :param max_retries: retries overriding the extras.
    """
    extra = extra or {}
    environ = os.environ if environ is None else environ
    # Empty (the form's default, see connection_fields) is v2.
    api_version = str(_extra_value(extra, "api_version") or "").strip().lower() or "v2"
    if api_version not in API_VERSIONS:
        raise CmlConfigError(
            f"Connection extra 'api_version' is {api_version!r}; use 'v2' (Cloudera AI API v2) or 'v1' "
            "(legacy CDSW Jobs API)."
        )
    if not host:
        host = environ.get("CDSW_API_URL") or environ.get("CDSW_DOMAIN")
    if not password:  # inside a Cloudera AI workload: the platform's own keys
        password = environ.get("CDSW_APIV2_KEY" if api_version == "v2" else "CDSW_API_KEY")
    if password is not None and not isinstance(password, str):
        password = str(password)
    if not password or not password.strip():
        raise CmlConfigError(
            "The Cloudera AI connection has no API key. Put the key from the workbench's User Settings > "
            "API Keys in the connection's password ('API key' in the form)."
        )
    verify: bool | str = _as_bool("verify_ssl", _extra_value(extra, "verify_ssl"))
    ca_bundle = _extra_value(extra, "ca_bundle")
    if verify and ca_bundle:
        if not os.path.isfile(str(ca_bundle)):
            raise CmlConfigError(
                f"Connection extra 'ca_bundle' points to {ca_bundle!r}, which is not a file on this worker. "
                "Give the path of a PEM file holding your workbench's CA certificate(s)."
            )
        verify = str(ca_bundle)
    request_timeout = (
        timeout if timeout is not None else _as_number("timeout", _extra_value(extra, "timeout"), minimum=1)
    )
    if (
        not isinstance(request_timeout, (int, float))
        or not math.isfinite(request_timeout)
        or request_timeout <= 0
    ):
        raise CmlConfigError(
            f"The request timeout must be a positive, finite number of seconds, not {timeout!r}."
        )
    retries = (
        max_retries
        if max_retries is not None
        else int(_as_number("max_retries", _extra_value(extra, "max_retries"), minimum=0))
    )
    backoff = _as_number("retry_backoff", _extra_value(extra, "retry_backoff"), minimum=0)
    template = check_url_template(str(_extra_value(extra, "run_url_template") or DEFAULT_RUN_URL_TEMPLATE))
    return CmlClientConfig(
        base_url=normalize_base_url(host, port),
        api_key=clean_api_key(password),
        api_version=api_version,
        verify=verify,
        timeout=float(request_timeout),
        retry_policy=RetryPolicy(max_retries=retries, backoff_base=backoff),
        run_url_template=str(template),
        model_service_url=_service_url(_extra_value(extra, "model_service_url")),
    )


def _service_url(value: Any) -> str:
    """The ``model_service_url`` extra: empty, or an absolute http(s) URL."""
    text = str(value or "").strip()
    if text and not text.startswith(("https://", "http://")):
        raise CmlConfigError(
            f"Connection extra 'model_service_url' is {text!r}; give an absolute URL such as "
            "'https://modelservice.ml-1a2b3c4d.example.cloudera.site/model', or leave it empty."
        )
    return text


def client_config_for(
    conn: Any, conn_id: str, *, timeout: float | None = None, max_retries: int | None = None
) -> CmlClientConfig:
    """Client settings from an Airflow connection, or from the workbench session's variables.

    :param conn: the connection (``None`` when it does not exist: inside a Cloudera AI session,
        ``CDSW_APIV2_KEY`` and ``CDSW_API_URL``/``CDSW_DOMAIN`` are used instead).
    :param conn_id: its id, for the message when neither is there.
    :param timeout: request timeout in seconds, over the connection's.
    :param max_retries: retries per request, over the connection's.
    """
    if conn is None:
        if "CDSW_APIV2_KEY" not in os.environ:
            raise CmlConfigError(
                f"Airflow connection {conn_id!r} does not exist. Create a 'Cloudera AI' connection with "
                f"that id, or set AIRFLOW_CONN_{conn_id.upper()}."
            )
        return build_client_config(host=None, password=None, timeout=timeout, max_retries=max_retries)
    return build_client_config(
        host=conn.host,
        password=conn.password,
        port=conn.port,
        extra=conn.extra_dejson,
        timeout=timeout,
        max_retries=max_retries,
    )
