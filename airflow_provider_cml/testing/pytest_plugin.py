"""pytest fixtures for users' own tests (registered through the ``pytest11`` entry point).

Override ``cml_workbench_spec`` (and ``cml_workbench_base_dir``) in your ``conftest.py`` to serve your
own projects; ``cml_workbench`` then yields a running :class:`WorkbenchServer`, and
``cml_connection_env`` points ``AIRFLOW_CONN_CML_DEFAULT`` at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_cml.testing import WorkbenchServer, local_workbench

CML_TEST_API_KEY = "cml-test-api-key"


@pytest.fixture
def cml_workbench_spec() -> dict[str, Any]:
    """Projects and jobs to serve; an empty workbench with one API key by default."""
    return {"api_keys": [CML_TEST_API_KEY], "projects": []}


@pytest.fixture
def cml_workbench_base_dir(tmp_path: Any) -> Any:
    """Folder that relative project folders in the spec are resolved against."""
    return tmp_path


@pytest.fixture
def cml_workbench(
    cml_workbench_spec: dict[str, Any], cml_workbench_base_dir: Any
) -> Iterator[WorkbenchServer]:
    """A running local workbench; stopped (with all its runs) after the test."""
    with local_workbench(cml_workbench_spec, base_dir=cml_workbench_base_dir, step_delay=0.02) as server:
        yield server


@pytest.fixture
def cml_connection_env(cml_workbench: WorkbenchServer, monkeypatch: pytest.MonkeyPatch) -> WorkbenchServer:
    """Point the ``cml_default`` Airflow connection at the local workbench."""
    keys = sorted(cml_workbench.workbench.api_keys)
    monkeypatch.setenv("AIRFLOW_CONN_CML_DEFAULT", cml_workbench.airflow_connection(keys[0]))
    return cml_workbench
