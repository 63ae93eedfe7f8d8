"""Sphinx configuration: the API reference from the package's docstrings, the guide from Markdown.

``make docs`` builds it with warnings as errors. The Markdown pages (the user guide, the
maintainers' pages, README and CHANGELOG) are included as they are, through myst-parser, so the
pages GitHub shows and the site are one text.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
# autodoc imports Airflow, which writes its airflow.cfg under AIRFLOW_HOME: keep it in the build
# directory rather than in the user's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", str(DOCS / "_build" / "airflow-home"))

from airflow_provider_cml import __version__  # noqa: E402  (after the path and AIRFLOW_HOME)

project = "airflow-provider-cml"
author = "airflow-provider-cml contributors"
copyright = "the airflow-provider-cml contributors"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# The Markdown pages link to each other's sections (guide.md#the-connection): GitHub's anchors.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True

html_theme = "furo"
html_title = f"airflow-provider-cml {release}"


#: The README links the guide and the maintainers' pages on GitHub (absolute, for PyPI's sake).
GITHUB_DOCS = re.compile(r"\]\(https://github\.com/airflow-provider-cml/airflow-provider-cml/blob/main/docs/")


def _site_links(app, relative_path, parent_docname, content):
    """In the README included as the index, links to the pages of this site stay on the site.

    :param app: the Sphinx application.
    :param relative_path: the included file, relative to docs/.
    :param parent_docname: the document that includes it.
    :param content: the included text, a one-item list Sphinx lets us rewrite.
    """
    content[0] = GITHUB_DOCS.sub("](", content[0])


def _readme_is_the_index(app, docname, source):
    """On GitHub the guide links the README beside it (``../README.md``); here the README is the index.

    :param app: the Sphinx application.
    :param docname: the document read.
    :param source: the document's text, a one-item list Sphinx lets us rewrite.
    """
    source[0] = source[0].replace("](../README.md)", "](index.md)")


def setup(app):
    """Sphinx's entry point for this project's own hooks.

    :param app: the Sphinx application.
    """
    app.connect("source-read", _readme_is_the_index)
    app.connect("include-read", _site_links)
