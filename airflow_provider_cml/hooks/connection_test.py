"""The Connections UI's Test button: one cheap authenticated request, and what it says in words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from airflow_provider_cml.exceptions import CmlApiError, CmlException

if TYPE_CHECKING:
    from airflow_provider_cml.client.config import CmlClientConfig
    from airflow_provider_cml.hooks.cml import CmlHook


def check(hook: CmlHook) -> tuple[bool, str]:
    """A cheap authenticated request; used by the Connections UI's Test button.

    v2: ``POST /auth/validate_key`` names the key's user; a workbench without that endpoint
    gets one ``GET /projects`` instead. v1: a read of a project that does not exist: the legacy
    API checks the key first (401), so "not found" means the key was accepted (inference).

    :param hook: the hook whose connection is tested.
    """
    try:
        config = hook.config
        if hook.is_legacy_v1:
            return _check_v1(hook, config)
        try:
            answer = hook.transport.request("POST", "/auth/validate_key", body={"audience": "API"})
        except CmlApiError as exc:
            if exc.http_status not in (404, 405, 501):
                raise
            hook.transport.request("GET", "/projects", params={"page_size": 1})
            return True, f"Connected to Cloudera AI at {config.base_url} (API v2)."
    except CmlException as exc:
        return False, str(exc)
    if isinstance(answer, Mapping) and answer.get("valid") is False:
        return (
            False,
            f"Cloudera AI says the key is not valid: {answer.get('message') or 'no reason given'}.",
        )
    user = answer.get("username") if isinstance(answer, Mapping) else None
    return True, f"Connected to Cloudera AI at {config.base_url} (API v2) as {user or 'an unnamed user'}."


def _check_v1(hook: CmlHook, config: CmlClientConfig) -> tuple[bool, str]:
    try:
        hook.transport.request("GET", "/projects/airflow-connection-test/no-such-project")
    except CmlApiError as exc:
        if exc.http_status != 404:
            return False, str(exc)
    return True, f"The legacy v1 API at {config.base_url} accepted the key."
