"""Static types: mypy passes on ``sdf``, ``sdf.models`` and ``sdf.viz``.

``models/`` and ``viz/`` are installed as ``sdf.models`` and ``sdf.viz`` by a setuptools
package-dir mapping, which mypy does not follow. The check therefore runs on a temporary
``sdf/`` tree whose entries are symlinks into this checkout, so that mypy sees the three
folders under their import names and checks the sources here, not an installed copy.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"models": REPO / "models", "viz": REPO / "viz"}


def _package_tree(root: Path) -> Path:
    """Build ``root/sdf`` mirroring the installed layout; return ``root``."""
    package = root / "sdf"
    package.mkdir()
    for entry in (REPO / "sdf").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for name, source in SUBPACKAGES.items():
        (package / name).symlink_to(source, target_is_directory=True)
    return root


def _repo_paths(report: str) -> str:
    """Rewrite ``sdf/models/...`` and ``sdf/viz/...`` in mypy's report to checkout paths."""
    return re.sub(r"^sdf/(models|viz)/", r"\1/", report, flags=re.MULTILINE)


def test_mypy_passes_on_sdf_models_and_viz(tmp_path):
    root = _package_tree(tmp_path)
    # MYPYPATH and cwd put the tree ahead of site-packages, where `pip install .` puts a
    # copy of the package that may be older than the sources under test.
    env = {**os.environ, "MYPYPATH": str(root)}
    command = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
               "--cache-dir", str(tmp_path / "mypy_cache"), "-p", "sdf"]
    out = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    report, status = _repo_paths(out.stdout + out.stderr), out.returncode
    assert status == 0, f"mypy found errors ({' '.join(command[1:])}):\n{report}"
    # Every source file was checked, the symlinked subpackages included.
    sources = [p for d in (REPO / "sdf", *SUBPACKAGES.values()) for p in d.rglob("*.py")]
    assert f"no issues found in {len(sources)} source files" in report, report
