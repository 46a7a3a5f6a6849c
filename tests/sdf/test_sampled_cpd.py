"""The CPD term on incomplete data against an explicit dense Jacobian.

``_SampledCPDState`` never forms the Jacobian densely; here ``J`` is built column by
column (the model is multilinear, so column (n, i, r) is the model with ``A_n``
replaced by the unit matrix ``E_ir``), and f, ``J^T r``, ``J^T J v`` and the exact
per-row blocks of ``J^T J`` must match it.
"""

import numpy as np
import pytest
from sdf.models import fms

import sdf
from sdf import algebra
from sdf.tensors import IncompleteTensor
from sdf.terms import cpd as cpd_module

SHAPES = [(5, 4), (4, 3, 5), (3, 4, 2, 3)]


def incomplete(shape, rank, rng, known=0.5, empty_row=True):
    """Noisy rank-``rank`` data with a fraction known; optionally a row with no entries."""
    T = algebra.cpd_to_tensor([rng.standard_normal((I, rank)) for I in shape])
    T = T + 0.1 * rng.standard_normal(shape)
    mask = rng.random(shape) < known
    if empty_row:
        mask[(slice(None),) * (len(shape) - 1) + (0,)] = False  # last mode, row 0
    return IncompleteTensor(np.where(mask, T, np.nan))


def dense_jacobian(data, factors):
    subs = tuple(data.subs.T)
    cols = []
    for n, A in enumerate(factors):
        for i in range(A.shape[0]):
            for r in range(A.shape[1]):
                E = np.zeros_like(A)
                E[i, r] = 1.0
                mats = [E if m == n else B for m, B in enumerate(factors)]
                cols.append(algebra.cpd_to_tensor(mats)[subs])
    return np.stack(cols, axis=1)  # columns in (n, i, r) order, i.e. A_n.ravel()


def state_and_reference(shape, rank, rng, **kw):
    data = incomplete(shape, rank, rng, **kw)
    factors = [rng.standard_normal((I, rank)) for I in shape]
    term = sdf.CPD(data, [sdf.Variable(A) for A in factors])
    state = term.prepare(factors)
    J = dense_jacobian(data, factors)
    residual = algebra.cpd_to_tensor(factors)[tuple(data.subs.T)] - data.vals
    return state, factors, J, residual


def flat(parts):
    return np.concatenate([np.asarray(p).ravel() for p in parts])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fval_is_half_squared_residual(shape, rng):
    state, _, _, residual = state_and_reference(shape, 3, rng)
    assert state.fval == pytest.approx(0.5 * residual @ residual, rel=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradient_is_jacobian_transpose_residual(shape, rng):
    state, _, J, residual = state_and_reference(shape, 3, rng)
    np.testing.assert_allclose(flat(state.gradient()), J.T @ residual, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gn_product_is_jtj_v(shape, rng):
    state, factors, J, _ = state_and_reference(shape, 3, rng)
    dvalues = [rng.standard_normal(A.shape) for A in factors]
    out = state.gn_product(dvalues)
    assert [o.shape for o in out] == [A.shape for A in factors]
    np.testing.assert_allclose(flat(out), J.T @ (J @ flat(dvalues)), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_blocks_are_the_row_blocks_of_jtj(shape, rng):
    rank = 3
    state, factors, J, _ = state_and_reference(shape, rank, rng)
    G = J.T @ J
    lo = 0
    for A, block in zip(factors, state.blocks()):
        for i in range(A.shape[0]):
            k = lo + i * rank
            np.testing.assert_allclose(block[i], G[k : k + rank, k : k + rank],
                                       rtol=1e-12, atol=1e-12)
        lo += A.size
    assert np.all(state.blocks()[-1][0] == 0.0)  # the row without known entries


def test_blocks_in_chunks_match_one_pass(rng, monkeypatch):
    state, *_ = state_and_reference((6, 5, 7), 3, rng, known=0.7)
    whole = state.blocks()
    monkeypatch.setattr(cpd_module, "_BLOCK_BUDGET", 20)  # a few rows per chunk
    for a, b in zip(whole, state.blocks()):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_rank_one_and_all_known(rng):
    shape = (3, 4, 2)
    data = IncompleteTensor(rng.standard_normal(shape), mask=np.ones(shape, bool))
    factors = [rng.standard_normal((I, 1)) for I in shape]
    state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    J = dense_jacobian(data, factors)
    v = [rng.standard_normal(A.shape) for A in factors]
    np.testing.assert_allclose(flat(state.gn_product(v)), J.T @ (J @ flat(v)), rtol=1e-12)


def test_same_data_other_rank_gets_its_own_layout(rng):
    data = incomplete((4, 3, 5), 2, rng)
    for rank in (2, 4, 2):
        factors = [rng.standard_normal((I, rank)) for I in data.shape]
        state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
        J = dense_jacobian(data, factors)
        residual = algebra.cpd_to_tensor(factors)[tuple(data.subs.T)] - data.vals
        np.testing.assert_allclose(flat(state.gradient()), J.T @ residual, rtol=1e-12,
                                   atol=1e-12)


def test_planted_fit_recovers_the_factors(rng):
    shape, rank = (15, 12, 10), 3
    truth = [rng.standard_normal((I, rank)) for I in shape]
    mask = rng.random(shape) < 0.3
    data = np.where(mask, algebra.cpd_to_tensor(truth), np.nan)
    start = [A + 0.1 * rng.standard_normal(A.shape) for A in truth]
    variables = [sdf.Variable(A, name=f"x{n}") for n, A in enumerate(start)]
    res = sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=100)
    assert res.relerr["t"] < 1e-8
    assert fms([res.variables[f"x{n}"] for n in range(3)], truth) > 0.9999
