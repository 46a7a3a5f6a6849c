"""Sphinx extension of the sdfusion documentation: the example gallery and the transform
catalogue.

Gallery. Every script in ``examples/`` is run as a user runs it (``python
examples/NAME.py`` in a subprocess, from an empty working directory, matplotlib's Agg
backend), and gets a page with its docstring, the report it printed, the figure it saved
(``examples/NAME.png``) and its source. The scripts find their data through ``__file__``
and save their own figure, so they are run unchanged rather than inside the builder
process. ``SDF_DOCS_GALLERY`` picks the scripts: ``all`` (default), ``none``, or a regular
expression searched in the script names (``quickstart|coupled``). A script that fails,
prints to stderr a traceback, or writes no fresh figure stops the build with its output.
``SDF_DOCS_RUNS`` names a directory of runs made the same way just before (``NAME.txt``:
what ``examples/NAME.py`` printed; its figure is the one it saved): a script with a run
there is not run again (the test suite runs every example once for its own checks and
builds the docs from those runs).

Tables. ``.. stop-reasons::`` lists :class:`sdf.StopReason` with its messages, and
``.. transform-catalogue::`` writes one table per family of
:mod:`sdf.transforms` from the transform classes themselves: the function's name, the
first line of the class docstring (the formula) and what the engine knows of its
derivative, so the table follows the code.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
GALLERY_DIR = "gallery"
#: The order of the gallery: the quick start first, then from simple to involved.
ORDER = ("quickstart", "coupled_eem", "amino_acids", "nutrimouse", "il2_mutein",
         "counts_and_covariates", "digits_binomial", "compress_network", "compress_onnx")
RUN_TIMEOUT = 600  # seconds per script


# ----------------------------------------------------------------------------- gallery
def _scripts(examples: Path) -> list[Path]:
    found = {p.stem: p for p in examples.glob("*.py")}
    first = [found.pop(stem) for stem in ORDER if stem in found]
    return first + [found[stem] for stem in sorted(found)]


def _selected(stem: str, which: str) -> bool:
    if which == "all":
        return True
    if which == "none":
        return False
    return re.search(which, stem) is not None


def _run(script: Path) -> tuple[str, Path]:
    """Run ``script`` as a user would (or take its run from ``SDF_DOCS_RUNS``); return its
    report and the figure it saved."""
    png = script.with_suffix(".png")
    runs = os.environ.get("SDF_DOCS_RUNS")
    report = None if runs is None else Path(runs) / f"{script.stem}.txt"
    if report is not None and report.is_file() and png.is_file():
        LOGGER.info(f"gallery: {script.name} as run before ({report})")
        return report.read_text(encoding="utf-8"), png
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("SDF_DOCS_GALLERY", None)
    env.pop("SDF_DOCS_RUNS", None)
    start = time.time()
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if proc.returncode != 0:
        raise ExtensionError(f"gallery: {script.name} failed (exit {proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    if "Traceback" in proc.stderr:
        raise ExtensionError(f"gallery: {script.name} printed a traceback:\n{proc.stderr}")
    if not png.is_file() or png.stat().st_mtime < start - 1.0:
        raise ExtensionError(f"gallery: {script.name} wrote no figure {png.name}")
    LOGGER.info(f"gallery: ran {script.name} in {time.time() - start:.1f} s")
    return proc.stdout, png


def _docstring(script: Path) -> tuple[str, str]:
    """Title (the docstring's first line) and the rest of the docstring."""
    doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or script.stem
    title, _, body = doc.partition("\n")
    return title.strip().rstrip("."), body.strip()


def _body_start(script: Path) -> int:
    """First source line after the module docstring (1-based)."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    first = tree.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        return (first.end_lineno or 0) + 2
    return 1


def _page(script: Path, rel_script: str, report: str | None, image: str | None) -> str:
    title, body = _docstring(script)
    lines = [f".. _gallery-{script.stem}:", "", title, "=" * len(title), "", body, "",
             f"Download the script: :download:`{script.name} <{rel_script}>`.", ""]
    if report is not None:
        lines += ["What it prints", "--------------", "", ".. code-block:: text", ""]
        lines += [f"   {line}".rstrip() for line in report.rstrip().splitlines()] + [""]
    if image is not None:
        lines += ["The figure it saves", "-------------------", "",
                  f".. image:: {image}", f"   :alt: the figure saved by {script.name}", ""]
    lines += ["The script", "----------", "", f".. literalinclude:: {rel_script}",
              "   :language: python", f"   :lines: {_body_start(script)}-", ""]
    return "\n".join(lines)


def _index(scripts: list[Path], images: dict[str, str]) -> str:
    lines = ["Gallery", "=======", "",
             "The scripts of ``examples/``, each run as a user runs it: what it prints and "
             "the figure it saves. They use the real data sets shipped in "
             "``examples/data/`` (provenance in its README).", ""]
    for script in scripts:
        title, _ = _docstring(script)
        lines += [f"* :ref:`gallery-{script.stem}` (``{script.name}``)"]
    lines += ["", ".. toctree::", "   :hidden:", ""]
    lines += [f"   {script.stem}" for script in scripts] + [""]
    for script in scripts:
        if script.stem in images:
            lines += [f".. image:: {images[script.stem]}", "   :width: 32%",
                      f"   :target: {script.stem}.html",
                      f"   :alt: {script.stem}", ""]
    return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    # Unchanged sources keep their time stamps, so Sphinx rebuilds only what changed.
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def build_gallery(app: Sphinx) -> None:
    """Run the selected examples and write the gallery's pages (``builder-inited``)."""
    srcdir = Path(app.srcdir)
    examples = Path(app.config.sdf_gallery_examples).resolve()
    which = app.config.sdf_gallery_run
    outdir = srcdir / GALLERY_DIR
    (outdir / "images").mkdir(parents=True, exist_ok=True)
    scripts = _scripts(examples)
    images: dict[str, str] = {}
    for script in scripts:
        rel_script = os.path.relpath(script, outdir)
        report = image = None
        if _selected(script.stem, which):
            report, png = _run(script)
            image = f"images/{script.stem}.png"
            shutil.copyfile(png, outdir / image)
            images[script.stem] = image
        _write_if_changed(outdir / f"{script.stem}.rst",
                          _page(script, rel_script, report, image))
    _write_if_changed(outdir / "index.rst", _index(scripts, images))


# ------------------------------------------------------------------- transform catalogue
FAMILIES = ("elementwise", "structured", "matrix", "combine", "indexing", "functional",
            "shape", "custom")


def _derivative_note(cls: type) -> str:
    from sdf.transforms import Transform

    notes = []
    if cls.elementwise:
        notes.append("elementwise: diagonal Jacobian")
    if cls.n_inputs != 1:
        notes.append(f"{cls.n_inputs} inputs" if cls.n_inputs > 1 else "several inputs")
    if cls.linearize is not Transform.linearize:
        notes.append("set-up cached once per iteration")
    if cls.route_block is not Transform.route_block:
        notes.append("own preconditioner block")
    if cls.curvature is not Transform.curvature:
        notes.append("second derivative kept where positive")
    return "; ".join(notes) or "chain rule via jvp/vjp"


def _catalogue_rows(family: str) -> list[tuple[str, str, str, str]]:
    import sdf.transforms as tf

    rows = []
    for name in tf.__all__:
        obj = getattr(tf, name)
        if not (inspect.isclass(obj) and issubclass(obj, tf.Transform)):
            continue
        if obj.__module__ != f"sdf.transforms.{family}":
            continue
        func_name = name.lower()
        if func_name not in tf.__all__:
            raise ExtensionError(f"transform-catalogue: {name} has no function {func_name}")
        summary = (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")
        rows.append((func_name, name, summary, _derivative_note(obj)))
    return rows


class TransformCatalogue(SphinxDirective):
    """``.. transform-catalogue::``: one table per transform family, from the code."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        import sdf.transforms as tf

        families = {getattr(tf, name).__module__ for name in tf.__all__
                    if inspect.isclass(getattr(tf, name))
                    and issubclass(getattr(tf, name), tf.Transform)
                    and getattr(tf, name) is not tf.Transform}
        unlisted = families - {f"sdf.transforms.{family}" for family in FAMILIES}
        if unlisted:
            raise self.error(f"transform-catalogue: add {sorted(unlisted)} to FAMILIES")
        lines: list[str] = []
        for family in FAMILIES:
            rows = _catalogue_rows(family)
            if not rows:
                raise self.error(f"transform-catalogue: no transforms in family {family!r}")
            lines += [f".. rubric:: {family.capitalize()} (:mod:`sdf.transforms.{family}`)",
                      "", ".. list-table::", "   :header-rows: 1", "   :widths: 14 56 30",
                      "", "   * - function / class", "     - value (from the docstring)",
                      "     - derivative"]
            for func_name, cls_name, summary, note in rows:
                lines += [f"   * - :func:`~sdf.transforms.{func_name}` /"
                          f" :class:`~sdf.transforms.{cls_name}`",
                          f"     - {summary}", f"     - {note}"]
            lines.append("")
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, source="transform-catalogue"),
                                self.content_offset, container)
        return list(container.children)


class StopReasons(SphinxDirective):
    """``.. stop-reasons::``: the members of :class:`sdf.StopReason`, from the enum."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        import sdf

        probe = sdf.Result(model=None, variables={}, objective=0.0, abserr={}, relerr={},
                           history=sdf.History(), iterations=0, stop=sdf.StopReason.TOL_FUN,
                           method="nls")
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 22 54 12 12", "",
                 "   * - ``StopReason``", "     - ``.message``", "     - ``.converged``",
                 "     - ``Result.success``"]
        for reason in sdf.StopReason:
            probe.stop = reason
            lines += [f"   * - ``{reason.name}``", f"     - {reason.message}",
                      f"     - {'yes' if reason.converged else 'no'}",
                      f"     - {'yes' if probe.success else 'no'}"]
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, source="stop-reasons"), self.content_offset,
                                container)
        return list(container.children)


# ------------------------------------------------------------------------ summaries
def keep_summary_literals(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                          lines: list[str]) -> None:
    """Write ``...`` in a docstring's first paragraph as an ellipsis character.

    autosummary cuts a summary at the first ". " even inside an inline literal, so
    ``T = a_0 ∘ ... ∘ a_N`` would end the summary mid-literal; the character keeps the
    formula whole and reads the same.
    """
    started = False
    for k, line in enumerate(lines):
        if not line.strip():
            if started:
                break
            continue
        started = True
        lines[k] = line.replace(" ... ", " … ")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("sdf_gallery_examples", "", "env")
    app.add_config_value("sdf_gallery_run", "all", "env")
    app.connect("builder-inited", build_gallery)
    app.add_directive("transform-catalogue", TransformCatalogue)
    app.add_directive("stop-reasons", StopReasons)
    app.connect("autodoc-process-docstring", keep_summary_literals)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
