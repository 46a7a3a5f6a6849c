"""Data given as block terms: BTDTensor and LL1Tensor, against their dense expansions."""

import warnings

import numpy as np
import pytest

import sdf
import sdf.models
from sdf.errors import DataError
from sdf.tensors import BTDTensor, CPDTensor, LL1Tensor, as_tensor

from test_tensorize import assert_matches_dense


def _btd(shape, core_shapes, rng, flat=False):
    blocks = []
    for cs in core_shapes:
        factors = [rng.standard_normal((I, S)) for I, S in zip(shape, cs)]
        core = rng.standard_normal(cs)
        blocks.append((*factors, core) if flat else (factors, core))
    return BTDTensor(blocks)


def _ll1(sizes, L, rng):
    I, J, K = sizes
    return LL1Tensor([rng.standard_normal((I, sum(L))), rng.standard_normal((J, sum(L))),
                      rng.standard_normal((K, len(L)))], L)


@pytest.mark.parametrize("shape, core_shapes", [
    ((5, 4, 3), [(2, 2, 1), (1, 2, 3)]),
    ((6, 5), [(2, 3), (1, 1), (3, 2)]),
    ((3, 4, 2, 3), [(2, 2, 2, 2)]),
])
def test_btd_operations_match_dense(shape, core_shapes, rng):
    T = _btd(shape, core_shapes, rng)
    assert T.kind == "btd" and T.n_blocks == len(core_shapes) and T.shape == shape
    assert_matches_dense(T, rng)


def test_btd_accepts_flat_blocks_like_the_btd_term(rng):
    a = _btd((4, 3, 2), [(2, 2, 2), (1, 1, 1)], np.random.default_rng(1), flat=True)
    b = _btd((4, 3, 2), [(2, 2, 2), (1, 1, 1)], np.random.default_rng(1))
    np.testing.assert_array_equal(a.to_dense(), b.to_dense())


def test_btd_dense_is_the_sum_of_its_blocks(rng):
    T = _btd((4, 3, 2), [(2, 2, 2), (1, 2, 1)], rng)
    want = sum(np.einsum("abc,ia,jb,kc->ijk", S, U, V, W) for (U, V, W), S in T.blocks)
    np.testing.assert_allclose(T.to_dense(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("L", [(2, 1), (1, 1, 1), (3,)])
def test_ll1_operations_match_dense(L, rng):
    T = _ll1((5, 4, 3), L, rng)
    assert T.kind == "ll1" and T.L == L
    A, B, C = T.ll1_factors
    starts = np.cumsum((0, *L))
    want = sum(np.einsum("ij,k->ijk", A[:, s:e] @ B[:, s:e].T, C[:, r])
               for r, (s, e) in enumerate(zip(starts[:-1], starts[1:])))
    np.testing.assert_allclose(T.to_dense(), want, rtol=1e-12, atol=1e-12)
    assert_matches_dense(T, rng)


def test_block_kinds_pass_through_as_tensor(rng):
    for T in (_btd((4, 3, 2), [(2, 2, 2)], rng), _ll1((4, 3, 2), (1, 2), rng)):
        assert as_tensor(T) is T


def test_scaled_btd_keeps_the_tensor(rng):
    T = _btd((4, 3, 2), [(2, 2, 2), (1, 1, 1)], rng)
    np.testing.assert_allclose(T.scaled(-3).to_dense(), T.to_dense() / 8, rtol=1e-14)


def _start(values, rng, noise=0.01):
    return [sdf.Variable(v + noise * rng.standard_normal(v.shape)) for v in values]


@pytest.mark.parametrize("make_term", ["cpd", "lmlra", "btd", "ll1"])
def test_every_term_fits_block_data_as_it_fits_their_expansion(make_term, rng):
    data = _btd((6, 5, 4), [(2, 2, 2), (1, 1, 1)], rng)
    dense = data.to_dense()
    shape = data.shape
    if make_term == "cpd":
        values = [rng.standard_normal((I, 3)) for I in shape]
        build = lambda X, v: sdf.CPD(X, v)  # noqa: E731
    elif make_term == "lmlra":
        values = [rng.standard_normal((I, 3)) for I in shape] + [rng.standard_normal((3,) * 3)]
        build = lambda X, v: sdf.LMLRA(X, v[:3], v[3])  # noqa: E731
    elif make_term == "btd":
        values = [U for (fs, S) in data.blocks for U in (*fs, S)]
        build = lambda X, v: sdf.BTD(X, [v[:4], v[4:]])  # noqa: E731
    else:
        data = _ll1((6, 5, 4), (2, 1), rng)
        dense = data.to_dense()
        values = data.ll1_factors
        build = lambda X, v: sdf.LL1(X, v, [2, 1])  # noqa: E731
    fits = []
    for X in (data, dense):
        start = _start(values, np.random.default_rng(7))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(sdf.Model(t=build(X, start)).fit(max_iter=15))
    structured, expanded = fits
    assert structured.relerr["t"] == pytest.approx(expanded.relerr["t"], rel=1e-6, abs=1e-6)
    if make_term in ("btd", "ll1"):
        assert structured.relerr["t"] < 1e-6  # planted: started near the truth


def test_drivers_accept_block_data(rng):
    T = _btd((6, 5, 4), [(2, 2, 2), (2, 2, 2)], rng)
    assert sdf.models.lmlra(T, (4, 4, 4), seed=0).relerr < 1e-6
    assert sdf.models.btd(T, [(2, 2, 2), (2, 2, 2)], seed=0).relerr < 1e-6
    L = _ll1((6, 5, 4), (2, 1), rng)
    near = [F + 0.01 * rng.standard_normal(F.shape) for F in L.ll1_factors]
    assert sdf.models.ll1(L, L=[2, 1], init=near).relerr < 1e-6
    assert sdf.models.cpd(CPDTensor(L.factors), rank=3, seed=0).relerr < 1e-6


@pytest.mark.parametrize("call, match", [
    (lambda: BTDTensor([]), "data: blocks must be a non-empty list"),
    (lambda: BTDTensor([np.ones((2, 2))]), "data: block 0 must be"),
    (lambda: BTDTensor([([np.ones((2, 1))], np.ones(1)), ([np.ones((3, 1))], np.ones(1))]),
     r"data: block 1 has mode sizes \(3,\), block 0 has \(2,\)"),
    (lambda: BTDTensor([([np.ones((2, 2)), np.ones((3, 1))], np.ones((2, 2)))]),
     "data, block 0: core must have shape"),
    (lambda: LL1Tensor([np.ones((2, 2)), np.ones((3, 2))], [2]), "needs three factors"),
    (lambda: LL1Tensor([np.ones((2, 3)), np.ones((3, 3)), np.ones((4, 2))], [1, 1]),
     r"L = \(1, 1\) needs C with 2 columns and A, B with 2"),
    (lambda: LL1Tensor([np.ones((2, 2)), np.ones((3, 2)), np.ones((4, 1))], [0]),
     "L must be a non-empty sequence of ints >= 1"),
])
def test_bad_block_input_is_named(call, match):
    with pytest.raises(DataError, match=match):
        call()
