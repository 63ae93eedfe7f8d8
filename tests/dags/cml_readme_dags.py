"""One DAG per README snippet that makes tasks: ``cml_readme_<n>``, the snippet as it stands.

Each ```python block of the README that imports an operator or a sensor (or uses ``@task.cml``) is run as the body of a
DAG, unchanged (so it must bring its own imports and names); :func:`fast_polls` then shortens the
production poll intervals it shows, as ``make demo`` does. ``tests/system/test_readme.py`` runs the DAGs
against a local workbench holding the demo project.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_cml.testing.policy import fast_polls

README = Path(__file__).resolve().parents[2] / "README.md"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
MAKES_TASKS = re.compile(r"^(from airflow_provider_cml\.(operators|sensors)\b|@task\.cml\b)", re.M)


def snippets() -> list[str]:
    """The README's ```python blocks, in order."""
    return PYTHON_BLOCK.findall(README.read_text())


for number, code in enumerate(snippets(), 1):
    if not MAKES_TASKS.search(code):
        continue
    with DAG(f"cml_readme_{number}", start_date=datetime(2024, 6, 1), schedule=None, catchup=False) as dag:
        exec(compile(code, f"README.md snippet {number}", "exec"), {"__name__": f"readme_{number}"})
    for each in dag.tasks:
        fast_polls(each)
    globals()[dag.dag_id] = dag
