"""The release checks of ``make dist`` (scripts/check_dist.py): the changelog and the package page.

The checks themselves run on the built wheel in ``make dist``; here, in milliseconds, that they find
what they are for, and that CHANGELOG.md and README.md pass them as they stand.
"""

from __future__ import annotations

import importlib.util
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
