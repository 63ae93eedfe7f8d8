"""A DAG whose tasks produce assets (datasets on Airflow 2): tests/system/test_lineage.py runs it.

Its events carry which Cloudera AI run, build and deployment produced the data (asset extras), and
with the OpenLineage provider configured, its lineage events carry the ``cml`` run facet.
"""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import DAG, Asset
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.datasets import Dataset as Asset

from airflow_provider_cml.operators.cml import CmlRunJobOperator
from airflow_provider_cml.operators.models import CmlDeployModelOperator

ARGS = {"start_date": datetime(2024, 1, 1), "schedule": None, "catchup": False}
POLL = {"poll_interval": 0.2}
FEATURES = Asset("cml://analytics/features")
SCORES = Asset("cml://analytics/scores")
MODEL = Asset("cml://analytics/models/churn-lineage")

with DAG("cml_test_lineage", **ARGS):
    # Sync and deferred: a resumed task is a new operator, which must still know the run.
    CmlRunJobOperator(task_id="train", project="Analytics", job="train", outlets=[FEATURES], **POLL)
    CmlRunJobOperator(
        task_id="score",
        project="Analytics",
        job="train-extended",
        deferrable=True,
        outlets=[SCORES],
        **POLL,
    )
    # A failed run: its lineage FAIL event still names it (no asset event: the task did not succeed).
    CmlRunJobOperator(task_id="fail", project="Analytics", job="fail", outlets=[FEATURES], **POLL)
    CmlDeployModelOperator(
        task_id="deploy",
        project="Analytics",
        model={"name": "churn-lineage", "file": "model_predict.py", "function": "predict"},
        deferrable=True,
        outlets=[MODEL],
        **POLL,
    )
