"""BTD term: derivatives against autograd on every data type, coupling, recovery, errors."""

import itertools

import numpy as np
import pytest
from _reference import (KINDS, storage, add_noise, check_blocks, check_model, check_state, make_data,
                        multistart, orth_start, subspace_cos, tucker)

import sdf
from sdf.tensors import as_tensor

RANKS = [(2, 1, 2), (1, 2, 2), (2, 2, 1)]


def random_blocks(shape, ranks, rng):
    return [[rng.standard_normal((n, r)) for n, r in zip(shape, R)] + [rng.standard_normal(R)]
            for R in ranks]


@pytest.mark.parametrize("kind", KINDS)
def test_derivatives_match_autograd(kind, rng):
    shape = (5, 4, 3)
    data = make_data(kind, shape, rng)
    blocks = random_blocks(shape, RANKS, rng)
    check_state(sdf.BTD(data, blocks), [x for b in blocks for x in b], rng)


@pytest.mark.parametrize("kind", ["dense", "incomplete", "masked", "sparse"])
def test_derivatives_fourth_order(kind, rng):
    shape = (4, 3, 3, 2)
    blocks = random_blocks(shape, [(2, 1, 2, 1), (1, 2, 1, 2)], rng)
    check_state(sdf.BTD(make_data(kind, shape, rng), blocks), [x for b in blocks for x in b], rng)


@pytest.mark.parametrize("kind", ["dense", "incomplete", "masked"])
def test_blocks_are_exact_diagonal_blocks(kind, rng):
    shape = (5, 4, 3)
    blocks = random_blocks(shape, RANKS[:2], rng)
    values = [x for b in blocks for x in b]
    check_blocks(sdf.BTD(make_data(kind, shape, rng), blocks).prepare(values), values, rng)


def test_shared_factor_across_blocks_and_cpd(rng):
    """One variable in two blocks and in a CPD term: the chain rule sums every use."""
    T, Y = rng.standard_normal((5, 4, 3)), rng.standard_normal((5, 6))
    v = {k: sdf.Variable(rng.standard_normal(s), name=k) for k, s in [
        ("a", (5, 2)), ("b1", (4, 2)), ("c1", (3, 2)), ("s1", (2, 2, 2)),
        ("b2", (4, 1)), ("c2", (3, 2)), ("s2", (2, 1, 2)), ("d", (6, 2))]}
    model = sdf.Model(
        T=sdf.BTD(T, [[v["a"], v["b1"], v["c1"], v["s1"]], [v["a"], v["b2"], v["c2"], v["s2"]]]),
        Y=sdf.CPD(Y, [v["a"], v["d"]]))
    w = model.weights

    def residuals(x):
        M = (tucker([x["a"], x["b1"], x["c1"]], x["s1"])
             + tucker([x["a"], x["b2"], x["c2"]], x["s2"]))
        return [(w["T"], M - T), (w["Y"], x["a"] @ x["d"].T - Y)]

    check_model(model, residuals, rng)


# ----------------------------------------------------------------- planted recovery
SHAPE, BLOCK_RANKS = (10, 9, 8), [(3, 3, 3), (3, 3, 3)]


def match_blocks(found, truth) -> float:
    """Smallest subspace cosine over blocks and modes, for the best block order."""
    return max(
        min(subspace_cos(found[p][n], truth[b][n]) for b, p in enumerate(perm)
            for n in range(len(SHAPE)))
        for perm in itertools.permutations(range(len(truth))))


@pytest.mark.parametrize("kind", ["dense", "incomplete", "masked"])
def test_planted_recovery(kind, rng):
    """Start: random orthonormal factors and projected cores; seeded restarts (seeds 0, 1,
    2) until the fit reaches the noise level."""
    truth = [orth_start(SHAPE, R, rng) + [rng.standard_normal(R)] for R in BLOCK_RANKS]
    T = add_noise(sum(tucker(b[:-1], b[-1]) for b in truth), 0.01, rng)
    if kind in ("incomplete", "masked"):
        T[rng.random(SHAPE) < 0.2] = np.nan
    data = storage(kind)(T)

    def build(r):
        blocks = []
        for R in BLOCK_RANKS:
            u0 = orth_start(SHAPE, R, r)
            s0 = np.einsum("ijk,ia,jb,kc->abc", np.nan_to_num(T), *u0)
            blocks.append([sdf.Variable(x) for x in u0] + [sdf.Variable(s0)])
        return sdf.Model(T=sdf.BTD(data, blocks)), blocks

    result, blocks = multistart(build, range(3), target=0.02)
    found = [[result[x] for x in blk[:-1]] for blk in blocks]
    assert match_blocks(found, [b[:-1] for b in truth]) >= 0.99
    assert result.relerr["T"] < 0.02


# ----------------------------------------------------------------- errors and text
def test_describe():
    blk = [np.ones((4, 2)), np.ones((3, 2)), np.ones((2, 1)), np.ones((2, 2, 1))]
    term = sdf.BTD(np.zeros((4, 3, 2)), [blk, blk])
    assert term.describe() == "BTD of dense data (4, 3, 2), 2 blocks, cores (2, 2, 1), (2, 2, 1)"
    assert term.n_blocks == 2 and term.block_sizes == (4, 4)


def _model(shapes):
    blocks = [[sdf.Variable(np.ones(s), name=f"U{b}{k}") for k, s in enumerate(blk)]
              for b, blk in enumerate(shapes)]
    return sdf.Model(t=sdf.BTD(np.zeros((4, 3, 2)), blocks))


@pytest.mark.parametrize("shapes,message", [
    ([[(4, 2), (3, 2), (2, 2), (2, 2, 2)], [(4, 2), (3, 2), (2, 2)]],
     r"term 't', block 1: 2 factors given but the data has 3 modes"),
    ([[(4, 2), (3, 2), (3, 2), (2, 2, 2)]],
     r"term 't', block 0, factor 2 \('U02'\): expected 2 rows to match mode 2 of the data, got 3"),
    ([[(4, 2), (3, 2), (2, 1), (2, 2, 2)]],
     r"term 't', block 0, core \('U03'\): expected shape \(2, 2, 1\) to match"),
])
def test_check_errors(shapes, message):
    with pytest.raises(sdf.ModelError, match=message):
        _model(shapes).check()


@pytest.mark.parametrize("blocks,message", [
    ([], "BTD: blocks must be a non-empty list"),
    (np.ones((2, 2)), "BTD: blocks must be a non-empty list"),
    ([np.ones((2, 2))], r"BTD: block 0 must be a sequence \(U_0, ..., U_\{N-1\}, S\)"),
])
def test_bad_blocks(blocks, message):
    with pytest.raises(sdf.ModelError, match=message):
        sdf.BTD(np.zeros((2, 2)), blocks)


def test_relerr_near_the_data_equals_the_residual_of_the_blocks(rng):
    # Near the data the norms' expansion of f loses its digits: the reported error is
    # recomputed from the residual.
    shape = (7, 6, 5)
    blocks = random_blocks(shape, RANKS, rng)
    T = sum(sdf.algebra.tucker_to_tensor(b[:-1], b[-1]) for b in blocks)
    E = rng.standard_normal(shape)
    T = T + 1e-8 * np.linalg.norm(T) / np.linalg.norm(E) * E
    start = [[sdf.Variable(x + 1e-9 * rng.standard_normal(x.shape)) for x in b] for b in blocks]
    result = sdf.Model(T=sdf.BTD(T, start)).fit(max_iter=3)
    fitted = [[result[v] for v in b] for b in start]
    model = sum(sdf.algebra.tucker_to_tensor(b[:-1], b[-1]) for b in fitted)
    residual = np.linalg.norm(T - model) / np.linalg.norm(T)
    assert result.relerr["T"] == pytest.approx(residual, rel=1e-6)
