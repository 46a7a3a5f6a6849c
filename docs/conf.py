"""Sphinx configuration of the sdfusion documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` from the
repository root (``pip install ".[docs]"`` first). The gallery runs the scripts in
``examples/``; ``SDF_DOCS_GALLERY`` chooses which: ``all`` (default), a regular expression
searched in the script names, or ``none`` (pages without output or figure).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the installed package: the repository's own sdf/ folder (on the path when
# Sphinx runs from the repository root) lacks sdf.models and sdf.viz, which install from
# models/ and viz/.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
sys.path.insert(0, str(DOCS / "_ext"))

import sdf  # noqa: E402  (after the path set-up, for the version)

project = "sdfusion"
author = "the sdfusion developers"
copyright = "the sdfusion developers, BSD-3-Clause"
version = release = sdf.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sdf_docs",
]

exclude_patterns = ["_build"]
templates_path = ["_templates"]
default_role = "obj"
nitpicky = False

# --- API reference -----------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autosummary_ignore_module_all = False
#: The modules of the API reference, in page order (docs/api/index.rst lists the same).
API_MODULES = ("sdf", "sdf.errors", "sdf.transforms", "sdf.tensors", "sdf.algebra",
               "sdf.decomp", "sdf.solvers", "sdf.fit", "sdf.models", "sdf.models.compress",
               "sdf.viz")


def _secondary_names() -> list[str]:
    """Names re-exported by a later module of API_MODULES than the first to export them.

    Their pages carry ``:no-index:``, so each object has one entry in the index and every
    cross-reference goes to its first page (``sdf.StopReason``, not ``sdf.solvers.StopReason``).
    """
    import importlib

    seen: set[int] = set()
    secondary = []
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (isinstance(obj, type) or callable(obj)):
                continue
            if id(obj) in seen:
                secondary.append(f"{module_name}.{name}")
            seen.add(id(obj))
    return secondary


autosummary_context = {"secondary": _secondary_names()}
autodoc_default_options = {"members": False}
autodoc_typehints = "none"          # the numpydoc "Parameters" sections carry the types
numpydoc_show_class_members = False  # autosummary lists members; avoids duplicate stubs
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False

# --- the guide's code ----------------------------------------------------------------------
# Only `.. doctest::` / `.. testcode::` blocks are run by the doctest builder; the docstring
# examples of the API pages are run by tests/test_package.py.
doctest_test_doctest_blocks = ""
doctest_global_setup = """
import warnings
import numpy as np
import matplotlib
matplotlib.use("Agg")
np.set_printoptions(precision=4, suppress=True)
"""
doctest_global_cleanup = """
import matplotlib.pyplot as plt
plt.close("all")
"""

# --- gallery -------------------------------------------------------------------------------
# docs/_ext/sdf_docs.py runs each script of examples/ as a user runs it (a subprocess, with
# __file__ and its own savefig) and writes docs/gallery/: the report it printed, the figure
# it saved, its source. sphinx-gallery executes scripts inside the build process without
# __file__, which the examples need to find their data and where they save their figure.
sdf_gallery_examples = str(ROOT / "examples")
sdf_gallery_run = os.environ.get("SDF_DOCS_GALLERY", "all")

# --- cross-references and output -------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sdfusion {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_show_sourcelink = False
