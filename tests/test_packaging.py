"""Every package folder of the source tree is installed (a plain ``pip install .`` lists
packages explicitly in pyproject.toml)."""

import pathlib

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 reads TOML itself
ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = {"sdf": "sdf", "models": "sdf.models", "viz": "sdf.viz"}


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    assert found - listed == set(), f"packages missing from pyproject.toml: {found - listed}"
