"""The one definition of the ``cml`` connection (its type, default id and form).

Airflow 3.2+ reads ``conn-fields``/``ui-field-behaviour`` from provider info without importing the
hook; Airflow 2.x and 3.0/3.1 call ``CmlHook.get_connection_form_widgets``/``get_ui_field_behaviour``.
Both are generated from :data:`CONN_FIELDS` and :data:`UI_FIELD_BEHAVIOUR` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_cml.defaults import DEFAULT_CONN_ID  # noqa: F401  (the connection's default id, named here too)

CONN_TYPE = "cml"


#: Airflow's ``[logging] min_length_masked_secret``: an extra value that is a shorter string makes
#: every task log "Skipping masking for a secret as it's too short". No default may be one.
MIN_MASKED_LENGTH = 5


@dataclass(frozen=True)
class ConnField:
    """One extra setting of the connection, shown as a form field."""

    name: str
    label: str
    kind: str  # "string" | "integer" | "number" | "boolean"
    default: Any
    description: str
    choices: tuple[str, ...] = ()


CONN_FIELDS: tuple[ConnField, ...] = (
    # No default: Airflow masks every extra value and warns, in each task's log, for any under 5
    # characters; the form writes every field's default into the extra. Empty means v2.
    ConnField(
        "api_version",
        "API version",
        "string",
        None,
        "Empty for v2 (Cloudera AI / CML API v2, Bearer key); v1 only for the legacy CDSW Jobs API "
        "(start only).",
        ("v2", "v1"),
    ),
    ConnField(
        "verify_ssl",
        "Verify TLS certificate",
        "boolean",
        True,
        "Leave on. Turn off only for a throwaway workbench: the API key then travels unverified.",
    ),
    ConnField(
        "ca_bundle",
        "CA bundle path",
        "string",
        None,
        "Path to a PEM file with your private CA (for on-premises workbenches). Used when verifying.",
    ),
    ConnField("timeout", "Request timeout (s)", "integer", 60, "Seconds to wait for each HTTP response."),
    ConnField(
        "max_retries",
        "Retries",
        "integer",
        5,
        "Retries of a request after connection errors, 429 and 5xx answers (with back-off).",
    ),
    ConnField(
        "retry_backoff",
        "Retry back-off (s)",
        "number",
        1.0,
        "First wait before a retry; doubles each time (with jitter), at most 30 s.",
    ),
    ConnField(
        "run_url_template",
        "Run page URL template",
        "string",
        None,
        "Only if your workbench's run pages differ. Fields: {base_url} {owner} {project_slug} "
        "{project_id} {job_id} {run_id}.",
    ),
    ConnField(
        "model_service_url",
        "Model service URL",
        "string",
        None,
        "Only if deployed models are not called at https://modelservice.<workbench host>/model.",
    ),
)

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "login", "port"],
    "relabeling": {"host": "Workbench URL", "password": "API key"},
    "placeholders": {
        "host": "https://ml-1a2b3c4d.example.cloudera.site",
        "password": "API key from User Settings > API Keys",
        "extra": '{"ca_bundle": "/etc/ssl/my-ca.pem", "timeout": 60}',
    },
}


def provider_conn_fields() -> dict[str, Any]:
    """``conn-fields`` for ``get_provider_info()`` (Airflow 3.2+ builds the form from it)."""
    fields: dict[str, Any] = {}
    for field in CONN_FIELDS:
        schema: dict[str, Any] = {"type": [field.kind, "null"]}
        if field.default is not None:
            schema["default"] = field.default
        if field.choices:
            schema["enum"] = list(field.choices)
        fields[field.name] = {"label": field.label, "schema": schema, "description": field.description}
    return fields


def provider_ui_field_behaviour() -> dict[str, Any]:
    """``ui-field-behaviour`` in provider-info spelling (kebab-case keys)."""
    return {
        "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
        "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
        "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
    }


def wtforms_widgets() -> dict[str, Any]:
    """Form widgets for Airflow 2.x and 3.0/3.1; wtforms is imported only here (Airflow 3 lacks it)."""
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, StringField
    from wtforms.validators import Optional, any_of

    widgets: dict[str, Any] = {}
    for field in CONN_FIELDS:
        label = lazy_gettext(field.label)
        if field.kind == "boolean":
            widgets[field.name] = BooleanField(label, default=field.default, description=field.description)
        elif field.kind == "integer":
            widgets[field.name] = IntegerField(
                label,
                default=field.default,
                validators=[Optional()],
                widget=BS3TextFieldWidget(),
                description=field.description,
            )
        else:  # strings and decimals: Airflow's form allows only these four field classes
            validators = [Optional(), any_of(list(field.choices))] if field.choices else [Optional()]
            widgets[field.name] = StringField(
                label,
                default=field.default,
                validators=validators,
                widget=BS3TextFieldWidget(),
                description=field.description,
            )
    return widgets
