"""LMLRA, BTD and LL1 drivers on planted problems."""

from __future__ import annotations

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.models import btd, ll1, lmlra


def subspace_gap(A, B):
    """Largest sine of the principal angles between the column spaces of A and B."""
    Qa, Qb = np.linalg.qr(A)[0], np.linalg.qr(B)[0]
    s = np.linalg.svd(Qa.T @ Qb, compute_uv=False)
    return float(np.sqrt(max(1 - s.min() ** 2, 0.0)))


def noisy(rng, T, noise):
    E = rng.standard_normal(T.shape)
    return T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E


@pytest.fixture
def tucker(rng):
    U = [rng.standard_normal((n, r)) for n, r in ((12, 2), (11, 3), (10, 2))]
    return U, algebra.tucker_to_tensor(U, rng.standard_normal((2, 3, 2)))


def test_lmlra_exact_subspaces(tucker):
    U, T = tucker
    dec = lmlra(T, (2, 3, 2))
    assert dec.relerr < 1e-10
    assert [s.name for s in dec.stages] == ["init", "hooi", "evaluate"]
    assert dec.stop is sdf.StopReason.TOL_FUN
    assert all(subspace_gap(A, B) < 1e-6 for A, B in zip(dec.factors, U))
    np.testing.assert_allclose(algebra.tucker_to_tensor(dec.factors, dec.core), T, atol=1e-9)


def test_lmlra_noisy_reaches_noise_level(tucker, rng):
    _, T = tucker
    dec = lmlra(noisy(rng, T, 0.01), (2, 3, 2))
    assert dec.relerr < 0.0101


def test_lmlra_mlsvd_at_the_optimum_costs_one_hooi_sweep(tucker, rng):
    _, T = tucker
    dec = lmlra(noisy(rng, T, 1e-6), (2, 3, 2))
    hooi = dec.stages[1]
    assert hooi.name == "hooi" and hooi.iterations == 1
    assert dec.stages[2].name == "evaluate"
    assert dec.relerr == pytest.approx(hooi.relerr, rel=1e-8)


def test_lmlra_hooi_from_a_random_start_runs_until_converged(tucker, rng):
    _, T = tucker
    dec = lmlra(noisy(rng, T, 0.01), (2, 3, 2), init="random", seed=3)
    hooi = dec.stages[1]
    assert hooi.name == "hooi" and hooi.iterations > 1
    assert dec.stages[2].name == "evaluate"
    assert dec.relerr == pytest.approx(hooi.relerr, rel=1e-8)


def test_lmlra_int_core_shape(rng):
    T = rng.standard_normal((5, 5, 5))
    assert lmlra(T, 2).core.shape == (2, 2, 2)


def test_lmlra_incomplete_runs_gauss_newton(tucker, rng):
    U, T = tucker
    D = T.copy()
    D[rng.random(T.shape) < 0.3] = np.nan
    dec = lmlra(D, (2, 3, 2), seed=0)
    assert [s.name for s in dec.stages] == ["init", "fit"]
    assert dec.relerr < 1e-6
    assert all(subspace_gap(A, B) < 1e-4 for A, B in zip(dec.factors, U))


def test_lmlra_without_hooi_uses_engine(tucker):
    _, T = tucker
    dec = lmlra(T, (2, 3, 2), hooi_max_iter=0)
    assert [s.name for s in dec.stages] == ["init", "fit"]
    assert dec.relerr < 1e-8


def test_lmlra_random_and_given_starts(tucker, rng):
    U, T = tucker
    assert lmlra(T, (2, 3, 2), init="random", seed=0).relerr < 1e-8
    assert lmlra(T, (2, 3, 2), init=[A + 0.01 for A in U]).relerr < 1e-8


@pytest.mark.parametrize(
    ("core_shape", "match"),
    [((2, 2), "core_shape: expected 3 sizes"),
     ((2, 2, 9), r"core_shape\[2\]: 9 exceeds the size 5 of mode 2"),
     ((2, 0, 2), r"core_shape\[1\]: expected an integer >= 1")],
)
def test_lmlra_bad_core_shape(core_shape, match):
    with pytest.raises(sdf.ModelError, match=match):
        lmlra(np.ones((5, 5, 5)), core_shape)


def test_lmlra_bad_init():
    with pytest.raises(sdf.ModelError, match="init: expected 'auto', 'random'"):
        lmlra(np.ones((5, 5, 5)), 2, init="hosvd")


def test_btd_planted_blocks(rng):
    blocks = [([rng.standard_normal((n, 2)) for n in (9, 8, 7)], rng.standard_normal((2, 2, 2)))
              for _ in range(2)]
    T0 = sum(algebra.tucker_to_tensor(U, S) for U, S in blocks)
    T = noisy(rng, T0, 1e-3)
    dec = btd(T, [(2, 2, 2), (2, 2, 2)], seed=1)
    assert dec.kind == "BTD" and len(dec.factors) == 2 and len(dec.core) == 2
    assert dec.relerr < 1e-3
    model = sum(algebra.tucker_to_tensor(b[:-1], b[-1]) for b in dec.factors)
    assert np.linalg.norm(model - T) / np.linalg.norm(T) == pytest.approx(dec.relerr)
    # Blocks with CP-rank-2 cores may be split differently; the sum is what is unique.
    assert np.linalg.norm(model - T0) / np.linalg.norm(T0) < 1e-3


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_btd_from_a_random_start_fits_data_at_any_scale(rng, scale):
    """Random unit blocks against data at 1e-8: the start is brought to the data's scale
    (it stopped at relative error 95, "converged", with the blocks grown against each
    other)."""
    T = algebra.cpd_to_tensor([rng.standard_normal((n, 2)) for n in (4, 3, 5)]) * scale
    dec = btd(T, [(2, 2, 2), (2, 2, 2)], init="random", seed=0)
    model = sum(algebra.tucker_to_tensor(b[:-1], b[-1]) for b in dec.factors)
    assert dec.relerr < 1e-6
    assert np.linalg.norm(model - T) / np.linalg.norm(T) == pytest.approx(dec.relerr, rel=1e-6,
                                                                         abs=1e-12)


def test_btd_given_init(rng):
    blocks = [[rng.standard_normal((n, 2)) for n in (6, 5, 4)] + [rng.standard_normal((2, 2, 2))]]
    T = algebra.tucker_to_tensor(blocks[0][:-1], blocks[0][-1])
    dec = btd(T, [(2, 2, 2)], init=[[x + 0.01 for x in blocks[0]]])
    assert dec.relerr < 1e-6


@pytest.mark.parametrize(
    ("core_shapes", "match"),
    [([], "core_shapes: expected a non-empty list"),
     ([(2, 2)], r"core_shapes\[0\]: expected 3 sizes"),
     ([(2, 2, 9)], r"core_shapes\[0\]\[2\]: 9 exceeds")],
)
def test_btd_bad_shapes(core_shapes, match):
    with pytest.raises(sdf.ModelError, match=match):
        btd(np.ones((5, 5, 5)), core_shapes)


def test_ll1_planted(rng):
    A, B, C = rng.standard_normal((10, 3)), rng.standard_normal((9, 3)), rng.standard_normal((8, 2))
    T = np.einsum("ir,jr,kr->ijk", A, B, C[:, [0, 0, 1]])
    dec = ll1(noisy(rng, T, 1e-3), [2, 1], seed=0)
    assert dec.L == [2, 1]
    assert [F.shape for F in dec.factors] == [(10, 3), (9, 3), (8, 2)]
    assert dec.relerr < 2e-3
    Ce = dec.factors[2] / np.linalg.norm(dec.factors[2], axis=0)
    Ct = C / np.linalg.norm(C, axis=0)
    assert np.abs(Ce.T @ Ct).max(axis=0).min() > 0.99


def test_ll1_int_L_with_rank(rng):
    A, B, C = rng.standard_normal((7, 4)), rng.standard_normal((6, 4)), rng.standard_normal((5, 2))
    T = np.einsum("ir,jr,kr->ijk", A, B, C[:, [0, 0, 1, 1]])
    dec = ll1(T, 2, rank=2, seed=0)
    assert dec.L == [2, 2] and dec.relerr < 1e-5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"L": [2, 1], "rank": 3}, "rank: 3 does not match the 2 sizes in L"),
     ({"L": []}, "L: expected an int or a non-empty list"),
     ({"L": 1, "init": "svd"}, "init: expected 'auto', 'gevd', 'random' or a list"),
     ({"L": 3, "rank": 2, "init": "gevd"}, r"init: the GEVD start needs sum\(L\) = 6"),
     ({"L": 1, "init": [np.ones((5, 1))] * 2}, "init: expected 3 factor matrices")],
)
def test_ll1_bad_arguments(kwargs, match):
    with pytest.raises(sdf.ModelError, match=match):
        ll1(np.ones((5, 5, 5)), **kwargs)


def test_ll1_needs_third_order():
    with pytest.raises(sdf.ModelError, match="data: an LL1 decomposition needs third-order"):
        ll1(np.ones((3, 3, 3, 3)), 1)
