"""cpd and rankest fit nonnegative factors when asked (nonneg=True)."""

import numpy as np
import pytest

from sdf.algebra import cpd_to_tensor
from sdf.errors import ModelError
from sdf.models import RankCriteria, cpd, fms, rankest


def _planted(rng, shape=(15, 12, 10), rank=3, noise=0.05):
    """Nonnegative factors with exact zeros (half the entries), plus Gaussian noise."""
    P = [np.maximum(rng.standard_normal((n, rank)), 0.0) for n in shape]
    T = cpd_to_tensor(P)
    return P, T + noise * np.linalg.norm(T) / np.sqrt(T.size) * rng.standard_normal(shape)


def test_cpd_nonneg_recovers_planted_nonnegative_factors(rng):
    P, T = _planted(rng)
    dec = cpd(T, 3, nonneg=True, seed=0)
    assert min(F.min() for F in dec.factors) >= 0.0
    assert fms(dec.factors, P) > 0.99
    # The error reported is the one recomputed from the nonnegative factors.
    relerr = np.linalg.norm(cpd_to_tensor(dec.factors) - T) / np.linalg.norm(T)
    assert dec.relerr == pytest.approx(relerr, rel=1e-8)
    assert dec.relerr < 0.06


def test_cpd_nonneg_starts_from_the_compressed_start_and_fits_the_data(rng):
    _, T = _planted(rng, shape=(20, 18, 16), rank=2)
    dec = cpd(T, 2, nonneg=True, seed=0)
    assert [s.name for s in dec.stages] == ["compress", "init", "fit"]
    assert dec.stages[-1].detail.startswith("nonnegative CPD")


def test_cpd_nonneg_on_missing_entries(rng):
    P, T = _planted(rng, noise=0.0)
    T = T.copy()
    T[rng.random(T.shape) < 0.2] = np.nan
    dec = cpd(T, 3, nonneg=True, seed=1)
    assert min(F.min() for F in dec.factors) >= 0.0
    assert fms(dec.factors, P) > 0.99


def test_cpd_nonneg_must_be_a_flag(rng):
    with pytest.raises(ModelError, match="nonneg: expected True or False, got 'yes'"):
        cpd(rng.random((4, 4, 4)), 2, nonneg="yes")


def test_rankest_nonneg_fits_nonnegative_cpds_and_finds_the_planted_rank(rng):
    P, T = _planted(rng, shape=(12, 10, 9), rank=2, noise=0.01)
    est = rankest(T, 3, nonneg=True, n_starts=1, seed=0,
                  criteria=RankCriteria(stability_repeats=0))
    assert est.rank == 2
    for dec in est.fits:
        assert min(F.min() for F in dec.factors) >= 0.0
    assert fms(est.fits[1].factors, P) > 0.99
