"""The serving sensors, also importable from here (see sensors.models and sensors.applications)."""

from airflow_provider_cml.sensors.applications import CmlApplicationSensor
from airflow_provider_cml.sensors.models import CmlModelDeploymentSensor

__all__ = ["CmlApplicationSensor", "CmlModelDeploymentSensor"]
