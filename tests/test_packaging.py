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


def test_license_is_the_bsd_3_clause_that_pyproject_declares():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == {"text": "BSD-3-Clause"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the sdfusion developers" in text
    assert "Neither the name of the copyright holder" in text


def test_changelog_lists_the_released_and_the_unreleased_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## 0.2 (unreleased)", "## 0.1.0"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"## {version}" in headings
