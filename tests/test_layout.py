"""The source tree imports as the installed package does: ``models/`` as ``sdf.models``
and ``viz/`` as ``sdf.viz``, also when run from the repository root without installing."""

import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_from_root(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` from the repository root with sdfusion not installed.

    ``-I -S``: no user site, no PYTHONPATH and no ``.pth`` files, so an installed copy
    (editable or not) is not found through its finder; the site-packages folders are put
    on the path afterwards for numpy and the other dependencies, behind the current folder
    as ``python -c`` puts it.
    """
    site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
            *sys.path[1:]]
    prelude = f"import sys; sys.path[:0] = [''] + {[p for p in site if p]!r}\n"
    return subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code], cwd=REPO,
                          capture_output=True, text=True, env={"PYTHONPATH": ""})


def test_models_and_viz_import_from_the_repository_root_when_not_installed():
    out = _run_from_root(
        "import sdf.models, sdf.viz, sdf.models.compress\n"
        "print(sdf.__file__); print(sdf.models.__file__); print(sdf.viz.__file__)\n"
        "print(sdf.models.compress.__file__); print(sdf.models.cpd.__module__)\n")
    assert out.returncode == 0, out.stderr
    files = out.stdout.split()
    assert files[:4] == [str(REPO / "sdf" / "__init__.py"), str(REPO / "models" / "__init__.py"),
                         str(REPO / "viz" / "__init__.py"),
                         str(REPO / "models" / "compress" / "__init__.py")]
    assert files[4] == "sdf.models.cpd"


def test_models_reached_as_an_attribute_of_sdf_from_the_repository_root():
    out = _run_from_root("import sdf; print(sdf.models.cpd.__name__, sdf.viz.plot_factors.__name__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cpd", "plot_factors"]
