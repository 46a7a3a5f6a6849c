"""The tt and tr drivers on planted trains and rings: fit, completion, starts, errors."""

from __future__ import annotations

import numpy as np
import pytest

from sdf.errors import ModelError
from sdf.models import tr, tt

SHAPE = (8, 9, 10, 11)
RANKS = (1, 3, 4, 3, 1)


def train_array(cores):
    return np.einsum("aib,bjc,ckd,dle->ijkl", *cores)


def ring_array(cores):
    return np.einsum("aib,bjc,cka->ijk", *cores)


@pytest.fixture
def planted(rng):
    cores = [rng.standard_normal((RANKS[k], n, RANKS[k + 1])) for k, n in enumerate(SHAPE)]
    return cores, train_array(cores)


def noisy(T, level, rng):
    noise = rng.standard_normal(T.shape)
    return T + level * np.linalg.norm(T) / np.linalg.norm(noise) * noise


def subspace_gap(A, B, k):
    """Largest sine of the principal angles between the column spaces of the unfoldings
    (first k modes against the rest) of A and B, at the planted rank."""
    r = RANKS[k]
    Ua = np.linalg.svd(A.reshape(int(np.prod(A.shape[:k])), -1), full_matrices=False)[0][:, :r]
    Ub = np.linalg.svd(B.reshape(int(np.prod(B.shape[:k])), -1), full_matrices=False)[0][:, :r]
    return float(np.linalg.norm(Ua - Ub @ (Ub.T @ Ua), 2))


@pytest.mark.parametrize("init, seed", [("auto", 0), ("random", 0), ("random", 1),
                                        ("random", 2)])
def test_planted_train_is_recovered_to_the_noise_level(planted, rng, init, seed):
    cores, T = planted
    X = noisy(T, 1e-3, rng)
    dec = tt(X, RANKS[1:-1], init=init, seed=seed, max_iter=300)
    assert dec.kind == "TT" and [G.shape for G in dec.factors] == [G.shape for G in cores]
    # The best rank-(3, 4, 3) train is within the noise of the data, and nearer to the
    # planted tensor than the noise is.
    assert dec.relerr <= 1.0e-3
    full = train_array(dec.factors)
    assert np.linalg.norm(full - T) / np.linalg.norm(T) < 5e-4
    for k in (1, 2, 3):
        assert subspace_gap(full, T, k) < 1e-2
    assert dec.stages[0].detail == ("TT-SVD" if init == "auto" else "random orthonormal")


def test_exact_train_from_the_tt_svd_start(planted):
    _, T = planted
    dec = tt(T, RANKS)
    assert dec.relerr < 1e-12 and dec.iterations <= 3


def test_reported_error_is_the_recomputed_error(planted, rng):
    _, T = planted
    X = noisy(T, 1e-2, rng)
    dec = tt(X, 2, max_iter=20)
    recomputed = np.linalg.norm(train_array(dec.factors) - X) / np.linalg.norm(X)
    assert dec.relerr == pytest.approx(recomputed, rel=1e-10)
    assert dec.result.relerr["data"] == dec.relerr


@pytest.mark.parametrize("init", ["auto", "random"])
def test_completion_with_half_the_entries_missing(planted, rng, init):
    _, T = planted
    X = T.copy()
    X[rng.random(SHAPE) < 0.5] = np.nan
    dec = tt(X, RANKS[1:-1], init=init, seed=3, max_iter=300)
    full = train_array(dec.factors)
    # The whole tensor, missing entries included, within 1e-8 of the planted one.
    assert np.linalg.norm(full - T) / np.linalg.norm(T) < 1e-8
    known = ~np.isnan(X)
    recomputed = np.linalg.norm((full - T)[known]) / np.linalg.norm(T[known])
    assert dec.relerr == pytest.approx(recomputed, rel=1e-6, abs=1e-13)


@pytest.mark.parametrize("seed", range(4))
def test_planted_ring_is_fitted(seed):
    rng = np.random.default_rng(100 + seed)
    cores = [rng.standard_normal((2, n, 2)) for n in (6, 7, 8)]
    T = ring_array(cores)
    dec = tr(T, 2, seed=seed, max_iter=400)
    assert dec.stages[0].detail == "TR-SVD"
    assert dec.kind == "TR" and [G.shape for G in dec.factors] == [(2, 6, 2), (2, 7, 2),
                                                                     (2, 8, 2)]
    assert dec.relerr < 1e-8
    recomputed = np.linalg.norm(ring_array(dec.factors) - T) / np.linalg.norm(T)
    assert dec.relerr == pytest.approx(recomputed, rel=1e-6, abs=1e-13)


def _planted_ring_with_gaps(seed):
    rng = np.random.default_rng(seed)
    cores = [rng.standard_normal((2, n, 2)) for n in (6, 7, 8)]
    T = ring_array(cores)
    X = T.copy()
    X[rng.random(T.shape) < 0.3] = np.nan
    return T, X


def test_ring_with_missing_entries():
    T, X = _planted_ring_with_gaps(200)
    dec = tr(X, 2, max_iter=400)
    assert np.linalg.norm(ring_array(dec.factors) - T) / np.linalg.norm(T) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("seed", [203, 205])
def test_ring_completion_needs_at_most_two_starts(seed):
    # Ring fits have local minima: on these data one of the TR-SVD and a random start
    # ends in one, the other recovers the ring.
    T, X = _planted_ring_with_gaps(seed)
    fits = [tr(X, 2, init=init, seed=seed - 200, max_iter=400) for init in ("auto", "random")]
    errors = [np.linalg.norm(ring_array(d.factors) - T) / np.linalg.norm(T) for d in fits]
    assert min(errors) < 1e-6


def test_given_cores_are_copied(planted):
    cores, T = planted
    start = [G + 0.01 for G in cores]
    copies = [G.copy() for G in start]
    dec = tt(T, RANKS, init=start, max_iter=50)
    assert dec.stages[0].detail == "given" and dec.relerr < 1e-10
    for G, c in zip(start, copies):
        np.testing.assert_array_equal(G, c)


def _complex_cores(rng, ranks, shape):
    return [rng.standard_normal((ranks[k], n, ranks[k + 1]))
            + 1j * rng.standard_normal((ranks[k], n, ranks[k + 1]))
            for k, n in enumerate(shape)]


@pytest.mark.parametrize("init", ["auto", "random"])
def test_complex_train_from_either_start(rng, init):
    """A complex train (a matrix product state) from the complex TT-SVD or a circular
    complex Gaussian start (a real random start stopped at relative error 0.81); given
    complex cores are taken as they are."""
    cores = _complex_cores(rng, RANKS, SHAPE)
    T = train_array(cores)
    dec = tt(T, RANKS[1:-1], init=init, seed=0, max_iter=300)
    assert all(np.iscomplexobj(G) for G in dec.factors)
    assert dec.relerr < 1e-8
    recomputed = np.linalg.norm(train_array(dec.factors) - T) / np.linalg.norm(T)
    assert dec.relerr == pytest.approx(recomputed, rel=1e-6, abs=1e-13)
    given = tt(T, RANKS, init=[G + 0.01 for G in cores], max_iter=50)
    assert given.stages[0].detail == "given" and given.relerr < 1e-10


@pytest.mark.parametrize("ranks, start", [(2, "TR-SVD"),
                                          ((4, 2, 2), "TT-SVD of the train on closing index 0")])
@pytest.mark.parametrize("init", ["auto", "random"])
def test_complex_ring_from_either_start(ranks, start, init):
    """Complex rings from the TR-SVD (``r_0 r_1 <= I_0``), the TT-SVD of a train placed on
    the closing index, or random complex cores: fitted to the rounding level (rings have
    local minima: on the (4, 2, 2) ring random starts of seeds 0-5 end there in 1 of 6
    fits, real ones in 2 of 6; seed 1 ends at the ring)."""
    rng = np.random.default_rng(7)
    sizes = [ranks] * 3 if isinstance(ranks, int) else list(ranks)
    cores = _complex_cores(rng, [*sizes, sizes[0]], (6, 7, 8))
    T = ring_array(cores)
    dec = tr(T, ranks, init=init, seed=1, max_iter=500)
    assert dec.stages[0].detail == (start if init == "auto" else
                                    "random orthonormal of the train on closing index 0")
    assert all(np.iscomplexobj(G) for G in dec.factors)
    assert np.linalg.norm(ring_array(dec.factors) - T) / np.linalg.norm(T) < 1e-6


def test_non_numeric_given_cores_are_a_located_error():
    T = np.ones((3, 4, 5))
    with pytest.raises(ModelError, match=r"init\[1\]: expected a numeric core, got str"):
        tt(T, (1, 1), init=[np.ones((1, 3, 1)), "core", np.ones((1, 5, 1))])
