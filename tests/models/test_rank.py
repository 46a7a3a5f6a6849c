"""Rank estimation (L-corner), multilinear ranks, stability."""

from __future__ import annotations

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.models import RankCriteria, fms, lcorner, mlrankest, rankest, stability


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


def test_rankest_incomplete_data_corcondia_from_imputed_fit(rng):
    T = planted(rng, (8, 7, 6), 2, 0.01)
    T[rng.random(T.shape) < 0.2] = np.nan
    est = rankest(T, 3, n_starts=1, seed=0, max_iter=50)
    assert est.rank == 2
    assert np.all(np.isfinite(est.corcondia)) and est.corcondia[1] > 95


def correlated(rng, shape, rank, rho, noise, missing):
    """Planted CPD with column correlation ``rho`` in every mode, noise, missing entries."""
    C = np.full((rank, rank), rho) + (1 - rho) * np.eye(rank)
    L = np.linalg.cholesky(C)
    F = [rng.standard_normal((n, rank)) @ L.T for n in shape]
    T = algebra.cpd_to_tensor(F)
    E = rng.standard_normal(T.shape)
    T = T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E
    T[rng.random(T.shape) < missing] = np.nan
    return T, F


@pytest.fixture(scope="module")
def estimate_rank4():
    """rankest on rank 4, correlated factors (0.6), 5 % noise, 5 % missing."""
    T, F = correlated(np.random.default_rng(3), (16, 12, 10), 4, 0.6, 0.05, 0.05)
    return rankest(T, 6, seed=0, max_iter=100), F


@pytest.mark.slow
def test_rankest_planted_correlated_missing(estimate_rank4):
    est, F = estimate_rank4
    assert est.rank == 4
    assert est.failed[3] == () and "gain" in est.failed[4]
    assert est.stability[3] >= 0.9
    assert fms(est.fits[3], F) > 0.95


@pytest.mark.slow
def test_rankest_says_why_and_names_the_runner_up(estimate_rank4):
    est, _ = estimate_rank4
    assert est.runner_up is not None and est.runner_up != est.rank
    assert est.reason.startswith("rank 4: the largest rank passing every check (gain ")
    assert f"runner-up rank {est.runner_up}" in est.reason
    assert "rank 5 fails gain" in est.reason or est.runner_up == 5


@pytest.mark.slow
def test_rankest_repr_is_compact(estimate_rank4):
    est, _ = estimate_rank4
    text = repr(est)
    assert text.startswith("RankEstimate(rank=4, runner_up=") and "array" not in text
    assert len(text) < 1000
    table = est.summary().splitlines()
    assert len(table) == 1 + est.ranks.size and table[4].endswith("<")


def test_rankest_keeps_every_start(rng):
    T = planted(rng, (8, 7, 6), 2, 0.01)
    est = rankest(T, 3, n_starts=3, seed=0)
    assert est.start_errors.shape == (3, 3)
    np.testing.assert_allclose(est.errors, est.start_errors.min(axis=1))


@pytest.mark.slow
def test_rankest_heldout_error_bottoms_out_at_the_planted_rank(rng):
    T = planted(rng, (10, 9, 8), 3, 0.05)
    T[rng.random(T.shape) < 0.05] = np.nan
    est = rankest(T, 4, n_starts=1, seed=0, criteria=RankCriteria(holdout=0.1), max_iter=50)
    assert est.rank == 3
    assert est.heldout[2] < 0.2 * est.heldout[:2].min()
    # Past the planted rank the held-out error stops improving (it may go up, or down by
    # a hair at the noise level, depending on the rank-4 fit's local optimum) and the
    # rank is rejected.
    assert est.heldout[3] > 0.95 * est.heldout[2]
    assert est.failed[3]


def test_rankest_progress_callback_and_display(rng, capsys):
    T = planted(rng, (8, 7, 6), 2, 0.01)
    seen = []
    rankest(T, 3, n_starts=2, seed=0, progress=seen.append, display=True,
            criteria=RankCriteria(stability_repeats=1))
    fits = [p for p in seen if p.stage == "fit"]
    assert [(p.rank, p.index) for p in fits] == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
    assert [p.stage for p in seen].count("stability") >= 1
    assert np.all(np.diff([p.elapsed for p in seen]) >= 0)
    assert capsys.readouterr().out.count("rankest  R=") == len(seen)


def test_rankest_collects_fit_warnings(rng):
    T = planted(rng, (8, 7, 6), 2, 0.05)
    est = rankest(T, 4, n_starts=1, seed=0, max_iter=3)
    assert est.warnings and all(w.startswith("rank ") for w in est.warnings)
    assert any("still decreasing" in w for w in est.warnings)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"min_gain": -1.0}, r"RankCriteria.min_gain: expected a finite number >= 0"),
     ({"holdout": 0.7}, r"RankCriteria.holdout: expected a finite number in \[0, 0.5\]"),
     ({"stability_repeats": -1}, r"RankCriteria.stability_repeats: expected an integer >= 0"),
     ({"min_stability": 2.0}, r"RankCriteria.min_stability: expected a finite number in")],
)
def test_rank_criteria_are_checked(kwargs, match):
    with pytest.raises(sdf.ModelError, match=match):
        RankCriteria(**kwargs)


def test_rankest_rejects_bad_criteria_and_progress():
    with pytest.raises(sdf.ModelError, match="criteria: expected a RankCriteria, got dict"):
        rankest(np.ones((4, 4, 4)), 2, criteria={"holdout": 0.1})
    with pytest.raises(sdf.ModelError, match="progress: expected True, False or a callable, got int"):
        rankest(np.ones((4, 4, 4)), 2, progress=3)


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
    assert all(r != c for r, c in zip(est.runner_up, est.core_shape))
    assert est.reasons[1].startswith("mode 1: rank 3")
    assert "array" not in repr(est)


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
