"""LL1 term: derivatives against autograd on every data type, coupling, recovery, errors."""

import itertools

import numpy as np
import pytest
from _reference import (KINDS, storage, add_noise, check_blocks, check_model, check_state, ll1_model,
                        make_data, multistart, subspace_cos)

import sdf
from sdf.tensors import as_tensor
from sdf.terms import cpd as cpd_module


def random_factors(shape, L, rng):
    return [rng.standard_normal((shape[0], sum(L))), rng.standard_normal((shape[1], sum(L))),
            rng.standard_normal((shape[2], len(L)))]


@pytest.mark.parametrize("L", [[2, 1], [1, 1, 1], 2])
@pytest.mark.parametrize("kind", KINDS)
def test_derivatives_match_autograd(kind, L, rng):
    shape = (5, 4, 3)
    sizes = [L] * 2 if isinstance(L, int) else L
    values = random_factors(shape, sizes, rng)
    check_state(sdf.LL1(make_data(kind, shape, rng), values, L), values, rng)


@pytest.mark.parametrize("kind", ["dense", "incomplete"])
def test_blocks_are_exact_diagonal_blocks(kind, rng):
    values = random_factors((5, 4, 3), [2, 1], rng)
    term = sdf.LL1(make_data(kind, (5, 4, 3), rng), values, [2, 1])
    check_blocks(term.prepare(values), values, rng)


def test_blocks_on_masked_data_are_known_fractions_of_the_full_data_blocks(rng,
                                                                           monkeypatch):
    """Masked data with many entries missing: each row's block is the fraction of its
    entries known times the block of the same factors on complete data (the CPD
    engine's masked strategy, mapped through the column groups)."""
    monkeypatch.setattr(cpd_module, "_SHARED_ROW_SPREAD", -1.0)  # a block per row
    values = random_factors((5, 4, 3), [2, 1], rng)
    data = make_data("masked", (5, 4, 3), rng)
    mask = data.masked_view()[1]
    masked = sdf.LL1(data, values, [2, 1]).prepare(values).blocks()
    full = sdf.LL1(np.zeros((5, 4, 3)), values, [2, 1]).prepare(values).blocks()
    for n, (got, W) in enumerate(zip(masked, full)):
        rho = np.moveaxis(mask, n, 0).reshape(mask.shape[n], -1).mean(axis=1)
        np.testing.assert_allclose(got, rho[:, None, None] * W, rtol=1e-12, atol=1e-12)


def test_coupled_with_cpd_derivatives(rng):
    T, Y = rng.standard_normal((5, 4, 3)), rng.standard_normal((3, 6))
    a, b, c = (sdf.Variable(x, name=n) for x, n in zip(random_factors((5, 4, 3), [2, 1], rng),
                                                       "abc"))
    d = sdf.Variable(rng.standard_normal((6, 2)), name="d")
    model = sdf.Model(T=sdf.LL1(T, [a, b, c], [2, 1]), Y=sdf.CPD(Y, [c, d]))
    w = model.weights

    def residuals(x):
        return [(w["T"], ll1_model([x["a"], x["b"], x["c"]], [2, 1]) - T),
                (w["Y"], x["c"] @ x["d"].T - Y)]

    check_model(model, residuals, rng)


# ----------------------------------------------------------------- planted recovery
SHAPE, L = (10, 9, 8), [2, 2, 1]


def ll1_match(found, truth) -> float:
    """Smallest, over the terms matched in the best order, of the product of the cosines of
    the largest principal angles of A_r, B_r and of the angle between c_r's."""
    st = np.concatenate([[0], np.cumsum(L)])
    best = 0.0
    for perm in itertools.permutations(range(len(L))):
        if any(L[p] != L[q] for q, p in enumerate(perm)):
            continue
        score = min(
            subspace_cos(found[0][:, st[p]:st[p + 1]], truth[0][:, st[q]:st[q + 1]])
            * subspace_cos(found[1][:, st[p]:st[p + 1]], truth[1][:, st[q]:st[q + 1]])
            * subspace_cos(found[2][:, [p]], truth[2][:, [q]])
            for q, p in enumerate(perm))
        best = max(best, score)
    return best


@pytest.mark.parametrize("kind", ["dense", "incomplete", "masked"])
def test_planted_recovery(kind, rng):
    """Start: random Gaussian factors; seeded restarts (seeds 0..5, at most 60 iterations
    each) until the fit reaches the noise level."""
    truth = random_factors(SHAPE, L, rng)
    T = add_noise(ll1_model(truth, L), 0.01, rng)
    if kind in ("incomplete", "masked"):
        T[rng.random(SHAPE) < 0.2] = np.nan
    data = storage(kind)(T)

    def build(r):
        factors = [sdf.Variable(r.standard_normal(x.shape)) for x in truth]
        return sdf.Model(T=sdf.LL1(data, factors, L)), factors

    result, factors = multistart(build, range(6), target=0.02)
    assert ll1_match([result[f] for f in factors], truth) >= 0.99
    assert result.relerr["T"] < 0.02


def test_coupled_with_cpd_recovery(rng):
    """The LL1 mode-2 factor shared with a matrix CPD; both fit at the noise level."""
    truth = random_factors(SHAPE, L, rng)
    D = rng.standard_normal((6, 3))
    T = add_noise(ll1_model(truth, L), 0.01, rng)
    Y = add_noise(truth[2] @ D.T, 0.01, rng)

    def build(r):
        a, b, c = (sdf.Variable(r.standard_normal(x.shape)) for x in truth)
        d = sdf.Variable(r.standard_normal(D.shape))
        return sdf.Model(T=sdf.LL1(T, [a, b, c], L), Y=sdf.CPD(Y, [c, d])), [a, b, c]

    result, factors = multistart(build, range(6), target=0.02)
    assert ll1_match([result[f] for f in factors], truth) >= 0.99
    assert result.relerr["T"] < 0.02 and result.relerr["Y"] < 0.02


# ----------------------------------------------------------------- errors and text
def test_describe_and_int_L():
    term = sdf.LL1(np.zeros((4, 3, 2)), [np.ones((4, 4)), np.ones((3, 4)), np.ones((2, 2))], 2)
    assert term.L == (2, 2)
    assert term.describe() == "LL1 of dense data (4, 3, 2), L = [2, 2]"


def _model(data_shape, shapes, L):
    vs = [sdf.Variable(np.ones(s), name=n) for s, n in zip(shapes, "ABC")]
    return sdf.Model(t=sdf.LL1(np.zeros(data_shape), vs, L))


@pytest.mark.parametrize("data_shape,shapes,L,message", [
    ((4, 3), [(4, 3), (3, 3), (2, 2)], [2, 1], r"term 't': an LL1 term needs third-order data"),
    ((4, 3, 2), [(4, 3), (3, 3), (2, 3)], [2, 1],
     r"term 't', factor 2 \('C'\): expected 2 columns, one per entry of L = \[2, 1\], got 3"),
    ((4, 3, 2), [(4, 4), (3, 3), (2, 2)], [2, 1],
     r"term 't', factor 0 \('A'\): expected sum\(L\) = 3 columns for L = \[2, 1\], got 4"),
    ((4, 3, 2), [(4, 3), (5, 3), (2, 2)], [2, 1],
     r"term 't', factor 1 \('B'\): expected 3 rows to match mode 1 of the data, got 5"),
])
def test_check_errors(data_shape, shapes, L, message):
    with pytest.raises(sdf.ModelError, match=message):
        _model(data_shape, shapes, L).check()


@pytest.mark.parametrize("L,message", [
    ([2, 0], r"LL1: every L_r must be an int >= 1, got \[2, 0\]"),
    (0, r"LL1: every L_r must be an int >= 1, got 0"),
    ([], r"LL1: L must be an int or a non-empty list of ints"),
    ([1.5], r"LL1: every L_r must be an int >= 1"),
])
def test_bad_L(L, message):
    with pytest.raises(sdf.ModelError, match=message):
        sdf.LL1(np.zeros((2, 2, 2)), [np.ones((2, 1))] * 3, L)


def test_needs_three_factors():
    with pytest.raises(sdf.ModelError, match=r"LL1: expected 3 factors \[A, B, C\], got 2"):
        sdf.LL1(np.zeros((2, 2, 2)), [np.ones((2, 1))] * 2, 1)
