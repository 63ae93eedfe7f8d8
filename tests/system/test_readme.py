"""The README's snippets: each stands alone and runs against the local workbench; its links work on PyPI.

The snippets that make tasks run as DAGs (``tests/dags/cml_readme_dags.py``) with ``dag.test()``
against a workbench holding the demo project; the others run as they are. The example DAGs'
``[START howto_...]`` blocks appear in them verbatim, so the two never drift apart.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from airflow_provider_cml.testing import local_workbench
from tests.dags.cml_readme_dags import MAKES_TASKS, snippets

ROOT = Path(__file__).parents[2]
BLOCK = re.compile(r"# \[START (howto_\w+)\]\n(.*?)\n\s*# \[END \1\]", re.S)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for dag_file in sorted((ROOT / "example_dags").glob("*.py")):
        for name, body in BLOCK.findall(dag_file.read_text()):
            found.append((name, textwrap.dedent(body).strip()))
    return found


def test_the_example_dags_have_howto_blocks():
    assert {name for name, _ in _blocks()} >= {"howto_cml_run_job", "howto_cml_start_then_sense"}


@pytest.mark.parametrize(("name", "body"), _blocks(), ids=[name for name, _ in _blocks()])
def test_readme_shows_the_block_as_tested(name, body):
    assert body in (ROOT / "README.md").read_text(), f"README's {name} snippet differs from the example DAG"


DEMO_PROJECT = ROOT / "example_dags" / "cml_demo_project"
TASK_SNIPPETS = [n for n, code in enumerate(snippets(), 1) if MAKES_TASKS.search(code)]


@pytest.mark.parametrize("number", [n for n in range(1, len(snippets()) + 1) if n not in TASK_SNIPPETS])
def test_each_snippet_without_tasks_runs_as_it_stands(number, monkeypatch):
    """In a fresh namespace, with nothing defined before it: its own imports and names suffice.

    (The snippets that make tasks run the same way, inside a DAG: see the next test.)
    """
    monkeypatch.delenv("AIRFLOW_CONN_CML_DEFAULT", raising=False)  # the workbench snippet sets it
    exec(compile(snippets()[number - 1], f"README.md snippet {number}", "exec"), {"__name__": "snippet"})


@pytest.fixture(scope="module")
def demo_workbench(tmp_path_factory):
    """A workbench holding the demo project, as ``make demo`` starts it."""
    spec = json.loads((DEMO_PROJECT / "workbench.json").read_text())
    data = tmp_path_factory.mktemp("data")
    for project in spec["projects"]:
        project["folder"] = str(DEMO_PROJECT)
        project["env"]["DATA_DIR"] = str(data)
    with local_workbench(spec, step_delay=0.02) as server:
        yield server, next(iter(spec["api_keys"]))


@pytest.mark.airflow_dag
@pytest.mark.parametrize("number", TASK_SNIPPETS)
def test_each_snippet_that_makes_tasks_runs_in_a_dag_against_the_workbench(
    number, demo_workbench, dagbag, monkeypatch
):
    from tests.system.test_dags import _states

    server, key = demo_workbench
    monkeypatch.setenv("AIRFLOW_CONN_CML_DEFAULT", server.airflow_connection(key))
    dag_run = dagbag.get_dag(f"cml_readme_{number}").test()
    states = _states(dag_run)
    assert states and set(states.values()) == {"success"}, states
    assert server.requests("GET", r"/api/v2/projects")  # it really asked the workbench


def test_every_snippet_is_covered():
    assert len(snippets()) >= 6 and len(TASK_SNIPPETS) >= 6  # run, TaskFlow, jobs as code, sensor, model, app


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_links_are_absolute_where_the_package_index_shows_them():
    source = re.search(r'^Source = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    links = LINK.findall((ROOT / "README.md").read_text())
    assert links
    relative = [link for link in links if not link.startswith(("https://", "http://", "#"))]
    assert not relative, f"relative links break on PyPI's page: {relative}"
    ours = [link for link in links if link.startswith(source)]
    for link in ours:  # a link into the repository names a file that exists
        path = link.removeprefix(source).split("#")[0]
        path = re.sub(r"^/(blob|raw)/main/", "", path)
        assert (ROOT / path).exists(), link
