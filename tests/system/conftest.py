"""The one way the real-services tests deploy Airflow: ``airflow_deployment``.

``test_real_services.py`` (LocalExecutor, PostgreSQL) and ``test_distributed.py`` (Celery, Postgres,
Redis, two triggerers) differ in what they run, not in how: both build the provider's wheel into a
virtualenv of its own, deploy ``deployed_dags.py`` (each its set of DAGs), set the environment and
start the same core services.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cml._compat import AIRFLOW_VERSION
from tests.conftest import API_KEY
from tests.contract import check_exchanges
from tests.system import deployed_dags
from tests.system.airflow_services import Services, environment, free_port, install


@pytest.fixture(scope="session")
def airflow_deployment(tmp_path_factory: pytest.TempPathFactory, workbench: Any) -> Callable[..., Any]:
    """Deploy Airflow against the shared workbench: a context manager that yields its running services.

    Its arguments: ``name`` (the deployment's temporary folder), ``dags`` (which set of
    :mod:`tests.system.deployed_dags` it runs; waited for until the API has parsed them), and
    optionally ``extras`` (Airflow's pip extras: ``"celery,postgres"``), ``backing`` (given the
    folder, a context manager yielding more settings: the database and broker it started, stopped
    after the services), ``settings``,
    ``triggerers`` (how many), ``more`` (more services' ``airflow`` arguments by name: workers) and
    ``kind`` (a :class:`Services` subclass). The services are stopped when the ``with`` ends.
    """

    @contextlib.contextmanager
    def deploy(
        name: str,
        *,
        dags: str,
        extras: str = "",
        backing: Callable[[Path], AbstractContextManager[Mapping[str, str]]] | None = None,
        settings: Mapping[str, str] | None = None,
        triggerers: int = 1,
        more: Mapping[str, list[str]] | None = None,
        kind: type[Services] = Services,
    ) -> Iterator[Services]:
        base = tmp_path_factory.mktemp(name)
        venv = install(base, f"apache-airflow{f'[{extras}]' if extras else ''}=={AIRFLOW_VERSION}")
        (base / "dags").mkdir()
        shutil.copy(deployed_dags.__file__, base / "dags")
        chosen = {deployed_dags.SELECT: dags, deployed_dags.TASKS: str(deployed_dags.many())}
        with backing(base) if backing else contextlib.nullcontext({}) as backing_settings:
            port = free_port()
            env = environment(
                base,
                port,
                workbench.airflow_connection(API_KEY),
                **chosen,
                **backing_settings,
                **(settings or {}),
            )
            names = ["triggerer"] if triggerers == 1 else [f"triggerer-{i}" for i in range(1, triggerers + 1)]
            services = kind(
                base,
                venv,
                env,
                {
                    "api-server": ["api-server", "--port", str(port)],
                    # Without --skip-serve-logs a log server listens on every interface.
                    "scheduler": ["scheduler", "--skip-serve-logs"],
                    "dag-processor": ["dag-processor"],
                    **{triggerer: ["triggerer", "--skip-serve-logs"] for triggerer in names},
                    **(more or {}),
                },
            )
            try:
                services.up(deployed_dags.IDS[dags])
                yield services
            finally:
                services.down()

    return deploy


@pytest.fixture
def wb_across_tests(workbench: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``tests/conftest.py``'s ``wb`` without its last step, stopping every run still going, for the
    modules whose DAG runs go on across tests (started with the module, beside the other scenarios,
    checked by a later test); those modules stop what is left when they end
    (:func:`~tests.system.airflow_services.stop_leftovers`).
    """
    workbench.faults = None
    workbench.clear_journal()
    monkeypatch.setenv("AIRFLOW_CONN_CML_DEFAULT", workbench.airflow_connection(API_KEY))
    yield workbench
    problems = check_exchanges(workbench.journal)
    assert not problems, "contract broken:\n" + "\n".join(problems[:20])
