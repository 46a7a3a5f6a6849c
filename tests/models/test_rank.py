"""Rank estimation (L-corner), multilinear ranks, stability."""

from __future__ import annotations

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.models import lcorner, mlrankest, rankest, stability


def planted(rng, shape, rank, noise):
    F = [rng.standard_normal((n, rank)) for n in shape]
    T = algebra.cpd_to_tensor(F)
    E = rng.standard_normal(T.shape)
    return T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E


def test_lcorner_picks_the_sharpest_drop():
    assert lcorner([0.6, 0.36, 0.025, 0.021, 0.017]) == 2


def test_lcorner_first_exact_fit():
    assert lcorner([0.5, 1e-15, 1e-16]) == 1


def test_lcorner_rank_one_possible():
    assert lcorner([0.01, 0.009, 0.008]) == 0


def test_lcorner_needs_two_errors():
    with pytest.raises(sdf.ModelError, match="errors: expected at least two finite errors"):
        lcorner([0.5])


def test_rankest_finds_planted_rank(rng):
    T = planted(rng, (10, 9, 8), 3, 0.01)
    est = rankest(T, 4, seed=0, max_iter=50)
    assert est.rank == 3
    assert est.ranks.tolist() == [1, 2, 3, 4]
    assert np.all(np.diff(est.errors[:3]) < 0)
    assert est.corcondia[2] > 95
    assert [d.factors[0].shape[1] for d in est.fits] == [1, 2, 3, 4]


def test_rankest_stops_at_exact_fit(rng):
    F = [rng.standard_normal((n, 2)) for n in (7, 6, 5)]
    est = rankest(algebra.cpd_to_tensor(F), 5, seed=0)
    assert est.rank == 2 and est.errors.size == 2


def test_rankest_incomplete_data_has_no_corcondia(rng):
    T = planted(rng, (8, 7, 6), 2, 0.01)
    T[rng.random(T.shape) < 0.2] = np.nan
    est = rankest(T, 3, n_starts=1, seed=0)
    assert est.rank == 2
    assert np.all(np.isnan(est.corcondia))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_rank": 1}, "max_rank: expected an integer >= 2"),
     ({"max_rank": 3, "n_starts": 0}, "n_starts: expected an integer >= 1")],
)
def test_rankest_bad_arguments(kwargs, match):
    with pytest.raises(sdf.ModelError, match=match):
        rankest(np.ones((4, 4, 4)), **kwargs)


def test_mlrankest_planted(rng):
    U = [rng.standard_normal((n, r)) for n, r in ((12, 2), (11, 3), (10, 4))]
    T = algebra.tucker_to_tensor(U, rng.standard_normal((2, 3, 4)))
    est = mlrankest(T + 1e-4 * rng.standard_normal(T.shape))
    assert est.core_shape == (2, 3, 4)
    assert [e.size for e in est.errors] == [11, 10, 9]


def test_mlrankest_max_ranks_caps_the_curve(rng):
    T = rng.standard_normal((6, 6, 6))
    est = mlrankest(T, max_ranks=3)
    assert all(e.size == 3 for e in est.errors)


def test_mlrankest_rejects_incomplete():
    T = np.ones((3, 3, 3))
    T[0, 0, 0] = np.nan
    with pytest.raises(sdf.ModelError, match="data: mlrankest needs fully known data"):
        mlrankest(T)


def test_split_half_stable_for_true_rank(rng):
    T = planted(rng, (16, 7, 6), 2, 0.01)
    st = stability(T, 2, n_repeats=3, seed=0)
    assert st.stable and st.min > 0.95 and st.scores.shape == (3,)


def test_bootstrap_scheme(rng):
    T = planted(rng, (16, 7, 6), 2, 0.01)
    st = stability(T, 2, scheme="bootstrap", n_repeats=2, seed=0)
    assert st.stable


def test_overfactored_rank_is_less_stable(rng):
    T = planted(rng, (16, 7, 6), 2, 0.05)
    good = stability(T, 2, n_repeats=3, seed=1)
    bad = stability(T, 3, n_repeats=3, seed=1, max_iter=50)
    assert bad.mean < good.mean


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"scheme": "jackknife"}, "scheme: expected 'split-half' or 'bootstrap'"),
     ({"mode": 5}, r"mode: expected an int in \[0, 3\)"),
     ({"mode": 2}, "mode 2 has 3 slices; stability needs at least 4")],
)
def test_stability_bad_arguments(kwargs, match):
    with pytest.raises(sdf.ModelError, match=match):
        stability(np.ones((8, 5, 3)), 1, **kwargs)
