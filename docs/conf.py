"""Sphinx configuration of the estbench documentation (PyData theme, MyST Markdown).

Build (warnings are errors, as in CI, ``.ci/run``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The estimator catalogue, the case-file reference and the tables of what verifies each estimator
are generated at build time from the code (``docs/_ext/estbench_docs.py``, into
``docs/generated/``); the API reference is autodoc.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # the checkout's estbench, also without an install

from estbench import __version__  # noqa: E402

project = "estbench"
author = "estbench developers"
copyright = "estbench developers"  # noqa: A001
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "estbench_docs",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# generated/verified-<kind>.md are fragments that the kinds' pages include, not pages
exclude_patterns = ["_build", "generated/verified-*.md", "generated/overview-*.md"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3  # "#what-estbench-guarantees" style anchors for in-page links

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signatures show the annotations; torch types need no targets
autodoc_default_options = {"members": True, "undoc-members": False}

html_theme = "pydata_sphinx_theme"
html_title = f"estbench {version}"
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
}
