"""README snippets are copied from the tested example DAGs: each ``[START howto_...]`` block appears verbatim."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
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
