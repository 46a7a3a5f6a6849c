"""Package-level contracts: light import, sorted exports, runnable docstring examples."""

import doctest
import importlib
import pkgutil
import subprocess
import tempfile
import sys

import pytest

import sdf


def _modules(package_name):
    package = importlib.import_module(package_name)
    names = [package_name]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
        names.append(info.name)
    return names


ALL_MODULES = sorted({m for p in ("sdf", "sdf.models", "sdf.viz") for m in _modules(p)})


def test_import_sdf_loads_no_heavy_optional_modules():
    code = (
        "import sys, sdf\n"
        "heavy = ['matplotlib', 'xarray', 'pandas', 'autograd', 'scipy.optimize', 'sdf.models',"
        " 'sdf.viz']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("name", ALL_MODULES)
def test_public_names_are_sorted_and_exist(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        pytest.skip("private module without __all__")
    assert list(exported) == sorted(exported)
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ lists missing {item!r}"


@pytest.mark.parametrize("name", ALL_MODULES)
def test_docstring_examples_run(name):
    import matplotlib

    matplotlib.use("Agg")
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        if test.filename and not test.filename.endswith(".py"):
            continue
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_version_and_top_level_api():
    for name in ("Variable", "Model", "CPD", "LMLRA", "BTD", "LL1", "L2", "L1", "L0",
                 "Result", "ModelError", "StopReason", "NLSOptions", "MinfOptions"):
        assert hasattr(sdf, name)
    assert sdf.__version__
