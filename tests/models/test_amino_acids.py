"""The classic amino acids fluorescence data (Bro 1997): three components."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdf.models import corcondia, cpd, rankest

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "amino_acids.npz"


@pytest.fixture(scope="module")
def X():
    return np.load(DATA)["X"].astype(float)


@pytest.fixture(scope="module")
def estimate(X):
    return rankest(X, 5, n_starts=1, seed=0, max_iter=100)


def test_rank_three_error_and_core_consistency(X):
    dec = cpd(X, 3, seed=0)
    assert dec.relerr == pytest.approx(0.025, abs=0.001)
    assert corcondia(X, dec.factors) > 99


def test_more_components_lower_error_but_not_trilinear(estimate):
    assert estimate.errors[3] < estimate.errors[2] - 0.002
    assert estimate.errors[4] < estimate.errors[2] - 0.005
    assert estimate.corcondia[2] > 99
    assert estimate.corcondia[4] < 50


def test_rankest_picks_three(estimate):
    assert estimate.rank == 3
