"""Import ``sdf.models`` and ``sdf.viz`` from a checkout that is not installed."""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

__all__: list[str] = []  # nothing public: importing sdf installs the finder when needed


class _SourceTreeFinder(importlib.abc.MetaPathFinder):
    """Find ``sdf.models`` and ``sdf.viz`` in the folders beside ``sdf/`` in a checkout.

    An installation maps ``models/`` to ``sdf.models`` and ``viz/`` to ``sdf.viz``; run
    from the repository root, the folder ``sdf/`` shadows the installation and holds
    neither, so this finder maps them the same way.
    """

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


def _install_source_tree_finder() -> None:
    here = Path(__file__).resolve().parent
    root = here.parent
    if not (root / "pyproject.toml").is_file():  # an installed copy: setuptools mapped them
        return
    folders = {f"sdf.{name}": root / name for name in ("models", "viz")
               if (root / name / "__init__.py").is_file() and not (here / name).exists()}
    if folders and not any(isinstance(f, _SourceTreeFinder) for f in sys.meta_path):
        # First in line, so that the checkout's own folders win over another copy's.
        sys.meta_path.insert(0, _SourceTreeFinder(folders))


_install_source_tree_finder()
