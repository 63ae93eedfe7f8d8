"""The provider's single registry, read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_cml import __version__
from airflow_provider_cml.connection_fields import (
    CONN_TYPE,
    provider_conn_fields,
    provider_ui_field_behaviour,
)

INTEGRATION = "Cloudera AI"


def get_provider_info() -> dict[str, Any]:
    """Everything Airflow learns about this provider: modules, connection type and its form, links."""
    return {
        "package-name": "airflow-provider-cml",
        "name": "Cloudera AI",
        "description": (
            "Run Cloudera AI (Cloudera Machine Learning, CDSW) jobs, deploy models and restart "
            "applications from Airflow."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://docs.cloudera.com/machine-learning/cloud/api/index.html",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_cml.hooks.cml"]}],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_cml.operators.base",
                    "airflow_provider_cml.operators.cml",
                    "airflow_provider_cml.operators.jobs",
                    "airflow_provider_cml.operators.models",
                    "airflow_provider_cml.operators.registry",
                    "airflow_provider_cml.operators.applications",
                    "airflow_provider_cml.operators.experiments",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_cml.sensors.cml",
                    "airflow_provider_cml.sensors.models",
                    "airflow_provider_cml.sensors.applications",
                    "airflow_provider_cml.sensors.experiments",
                ],
            }
        ],
        "triggers": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_cml.triggers.cml"]}
        ],
        # @task.cml: Airflow's TaskFlow collection looks the name up here.
        "task-decorators": [{"name": "cml", "class-name": "airflow_provider_cml.decorators.cml.cml_task"}],
        "extra-links": [
            "airflow_provider_cml.links.CmlJobRunLink",
            "airflow_provider_cml.links.CmlModelLink",
            "airflow_provider_cml.links.CmlApplicationLink",
        ],
        "config": {
            "cml": {
                "description": "Settings of the Cloudera AI provider.",
                "options": {
                    "trigger_event_hold": {
                        "description": (
                            "Seconds after a deferral before a Cloudera AI trigger's event may fire at "
                            "the soonest. An event sooner than about 5 s can make Airflow mark a "
                            "succeeded deferred task failed (apache/airflow issues 71580, 72716). "
                            "Never past the task's timeout; 0 turns the hold off."
                        ),
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "10",
                        "default": "10",
                    }
                },
            }
        },
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_provider_cml.hooks.cml.CmlHook",
                "hook-name": "Cloudera AI",
                "ui-field-behaviour": provider_ui_field_behaviour(),
                "conn-fields": provider_conn_fields(),
            }
        ],
    }
