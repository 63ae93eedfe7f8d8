"""The release checks of ``make dist`` (scripts/check_dist.py): the changelog and the package page.

The checks themselves run on the built wheel in ``make dist``; here, in milliseconds, that they find
what they are for, and that CHANGELOG.md and README.md pass them as they stand.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
_spec = importlib.util.spec_from_file_location("check_dist", ROOT / "scripts" / "check_dist.py")
assert _spec is not None and _spec.loader is not None
check_dist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_dist)


def test_the_changelog_has_an_unreleased_section():
    check_dist.check_changelog(ROOT / "CHANGELOG.md")


def test_a_changelog_without_unreleased_fails(tmp_path):
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("# Changelog\n\n## [0.1.0] - 2026-12-03\n\n### Added\n\n- everything\n")
    with pytest.raises(check_dist.CheckFailed, match=r"no '## \[Unreleased\]' section"):
        check_dist.check_changelog(changelog)


def test_the_readme_links_only_absolute_urls():
    assert check_dist.relative_links((ROOT / "README.md").read_text()) == []


def _wheel(tmp_path: Path, description: str) -> Path:
    wheel = tmp_path / "airflow_provider_cml-0.1.0-py3-none-any.whl"
    metadata = (
        "Metadata-Version: 2.4\nName: airflow-provider-cml\nVersion: 0.1.0\n"
        f"Description-Content-Type: text/markdown\n\n{description}"
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("airflow_provider_cml-0.1.0.dist-info/METADATA", metadata)
    return wheel


def test_a_package_page_with_a_relative_link_fails(tmp_path):
    wheel = _wheel(tmp_path, "# airflow-provider-cml\n\nSee [the guide](docs/guide.md).\n")
    with pytest.raises(check_dist.CheckFailed, match=r"lead nowhere on PyPI: docs/guide\.md"):
        check_dist.check_wheel_description(wheel)


def test_a_package_page_with_absolute_links_passes(tmp_path):
    page = "# airflow-provider-cml\n\nSee [the guide](https://example.com/docs/guide.md).\n"
    check_dist.check_wheel_description(_wheel(tmp_path, page))


@pytest.mark.parametrize(
    ("markdown", "found"),
    [
        ("see [the guide](docs/guide.md)", ["docs/guide.md"]),
        ("![form](docs/connection-form.png)", ["docs/connection-form.png"]),
        ("[up](#install) and [abs](https://example.com/x#y)", ["#install"]),
        ("[guide]: docs/guide.md\n", ["docs/guide.md"]),
        ('<img src="logo.png"> <a href="https://example.com">x</a>', ["logo.png"]),
        ("[mail](mailto:a@example.com) [web](http://example.com)", []),
        # Code is not a link, fenced or inline.
        ("```python\nx = a[0](b)\n```\nand `[not](a-link)`", []),
    ],
)
def test_relative_links_are_found(markdown, found):
    assert check_dist.relative_links(markdown) == found


def test_the_version_is_written_alike_in_pyproject_and_the_package():
    from airflow_provider_cml import __version__

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"$', pyproject, re.M).group(1) == __version__


@pytest.mark.parametrize(
    ("printed", "expected"),
    [
        (
            'starting\nexport AIRFLOW_CONN_CML_DEFAULT=\'{"host": "h"}\'\n',
            ("AIRFLOW_CONN_CML_DEFAULT", '{"host": "h"}'),
        ),
        ("export A=1 B=2\n", "not one 'export NAME=VALUE'"),
        ("starting\n", "printed no connection line within 0.2 s"),
    ],
)
def test_the_workbenchs_connection_line_is_read_as_a_shell_reads_it(printed, expected):
    script = f"import sys, time; sys.stdout.write({printed!r}); sys.stdout.flush(); time.sleep(30)"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        if isinstance(expected, tuple):
            assert check_dist.printed_connection(process, within=5) == expected
        else:
            with pytest.raises(check_dist.CheckFailed, match=expected):
                # A line that never comes fails at the first silence that long (short here: a test).
                check_dist.printed_connection(process, within=0.2 if "no connection" in expected else 5)
    finally:
        process.kill()
        process.wait()
