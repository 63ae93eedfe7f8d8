"""The serving operators, also importable from here (see operators.models and operators.applications)."""

from airflow_provider_cml.operators.applications import CmlApplicationOperator
from airflow_provider_cml.operators.models import CmlDeployModelOperator

__all__ = ["CmlApplicationOperator", "CmlDeployModelOperator"]
