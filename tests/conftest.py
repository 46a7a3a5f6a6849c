"""Shared pytest fixtures."""

from __future__ import annotations

import numpy as np
import pytest
from _example_runs import ExampleRuns


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, the same for every test."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def example_runs(tmp_path_factory: pytest.TempPathFactory) -> ExampleRuns:
    """The example scripts' runs, shared by their tests and the docs build."""
    return ExampleRuns(tmp_path_factory.mktemp("example-runs"))
