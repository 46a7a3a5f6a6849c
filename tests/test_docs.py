"""The documentation builds warning-free and every code block of the user guide runs.

Sphinx runs in a subprocess, as ``python -m sphinx -W --keep-going``, writing into a
temporary directory. The doctest builder runs the guide's ``testcode``/``doctest`` blocks
(the API pages left out: their examples run in tests/test_package.py) and fails on any
mismatch. The HTML build fails on any warning, the docstrings' included; it reads every
API page, so it is slow (one build: the pages of the guide, the API and the gallery are
all checked on it). Its gallery shows the examples' runs of the suite (the
``example_runs`` fixture), not runs of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _example_runs import EXAMPLES, ExampleRuns

pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install '.[docs]'")
pytest.importorskip("numpydoc", reason="the docs extra is not installed: pip install '.[docs]'")
pytest.importorskip("pydata_sphinx_theme",
                    reason="the docs extra is not installed: pip install '.[docs]'")

DOCS = Path(__file__).resolve().parents[1] / "docs"
TIMEOUT = 900  # seconds


def _sphinx(builder: str, out: Path, gallery: str, settings: tuple[str, ...] = (),
            runs: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SDF_DOCS_GALLERY": gallery, "MPLBACKEND": "Agg"}
    if runs is not None:  # the gallery's reports from these runs (see docs/_ext/sdf_docs.py)
        env["SDF_DOCS_RUNS"] = str(runs)
    overrides = [arg for setting in settings for arg in ("-D", setting)]
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
           *overrides, "-d", str(out / "doctrees"), str(DOCS), str(out / builder)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=out)


def _report(proc: subprocess.CompletedProcess, out: Path, builder: str) -> str:
    text = f"sphinx exited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    doctest_log = out / builder / "output.txt"
    if doctest_log.is_file():
        text += "\n" + doctest_log.read_text()[-6000:]
    return text


def test_guide_code_blocks_run(tmp_path: Path) -> None:
    guide_only = ("exclude_patterns=_build,api/*,gallery/*", "suppress_warnings=toc.excluded",
                  "autosummary_generate=0")
    proc = _sphinx("doctest", tmp_path, gallery="none", settings=guide_only)
    assert proc.returncode == 0, _report(proc, tmp_path, "doctest")
    summary = (tmp_path / "doctest" / "output.txt").read_text()
    assert "0 failures in tests" in summary
    assert " 0 tests" not in summary


@pytest.mark.slow
def test_html_builds_warning_free_with_every_example(tmp_path: Path,
                                                     example_runs: ExampleRuns) -> None:
    # every example run once for the suite (tests/test_examples.py checks those runs); a
    # script whose run failed is run again by the build, which then fails with its output
    scripts = sorted(EXAMPLES.glob("*.py"))
    for script in scripts:
        example_runs.run(script.name)
    proc = _sphinx("html", tmp_path, gallery="all", runs=example_runs.reports)
    assert proc.returncode == 0, _report(proc, tmp_path, "html")
    html = tmp_path / "html"
    for page in ("index.html", "guide/transforms.html", "api/generated/sdf.Model.html",
                 "api/generated/sdf.transforms.html", "gallery/quickstart.html"):
        assert (html / page).is_file(), page
    gallery_page = (html / "gallery" / "quickstart.html").read_text()
    assert "relative error of the rank-3 fit" in gallery_page
    assert (html / "_images" / "quickstart.png").is_file()
    catalogue = (html / "guide" / "transforms.html").read_text()
    assert "sdf.transforms.toeplitz" in catalogue and "sdf.transforms.Orth" in catalogue
    for stem in (script.stem for script in scripts):
        page = (html / "gallery" / f"{stem}.html").read_text()
        assert "What it prints" in page and f"{stem}.png" in page, stem
