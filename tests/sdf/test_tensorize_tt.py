"""Tensor-train data (TTTensor) and the TT-SVD that builds it (sdf.decomp.tt_svd)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sdf
from sdf import algebra
from sdf.decomp import tt_svd
from sdf.errors import DataError
from sdf.tensors import DenseTensor, TTTensor

from test_tensorize import assert_matches_dense


def _random_tt(shape, ranks, rng):
    r = [1, *ranks, 1]
    return TTTensor([rng.standard_normal((r[k], I, r[k + 1])) for k, I in enumerate(shape)])


@pytest.mark.parametrize("shape, ranks", [
    ((4, 5), (3,)),
    ((3, 4, 5), (2, 3)),
    ((2, 3, 2, 4), (2, 4, 3)),
    ((5,) * 5, (1, 2, 3, 2)),
])
def test_tt_operations_match_dense(shape, ranks, rng):
    T = _random_tt(shape, ranks, rng)
    assert T.ranks == (1, *ranks, 1) and T.kind == "tt"
    assert_matches_dense(T, rng)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=5), st.integers(0, 10**6))
def test_tt_random_shapes_match_dense(shape, seed):
    rng = np.random.default_rng(seed)
    ranks = tuple(int(r) for r in rng.integers(1, 4, len(shape) - 1))
    assert_matches_dense(_random_tt(shape, ranks, rng), rng, rank=2)


def test_tt_svd_is_exact_on_a_low_rank_tensor_and_finds_the_ranks(rng):
    T = algebra.cpd_to_tensor([rng.standard_normal((n, 2)) for n in (4, 5, 6, 3)])
    tt = tt_svd(T, tol=1e-10)
    assert tt.ranks == (1, 2, 2, 2, 1)
    np.testing.assert_allclose(tt.to_dense(), T, atol=1e-10)
    for G in tt.cores[:-1]:  # left-orthogonal
        M = G.reshape(-1, G.shape[2])
        np.testing.assert_allclose(M.T @ M, np.eye(G.shape[2]), atol=1e-10)


@pytest.mark.parametrize("tol", [1e-1, 1e-2, 1e-3])
def test_tt_svd_meets_its_error_bound(tol, rng):
    T = rng.standard_normal((6, 5, 4, 5))
    tt = tt_svd(T, tol=tol)
    err = np.linalg.norm(tt.to_dense() - T) / np.linalg.norm(T)
    assert err <= tol * (1 + 1e-12)
    assert max(tt.ranks) < 30  # truncation happened


def test_tt_svd_max_rank_caps_every_rank(rng):
    tt = tt_svd(rng.standard_normal((4, 4, 4, 4)), max_rank=3)
    assert max(tt.ranks) == 3


def _complex(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.mark.parametrize("complex_factors", [False, True])
def test_complex_tt_operations_match_dense(rng, complex_factors):
    """Complex trains (matrix product states) hold complex cores; every operation equals
    the dense tensor's, with real or complex factors (they were refused)."""
    r = (1, 2, 3, 2, 1)
    T = TTTensor([_complex(rng, r[k], I, r[k + 1]) for k, I in enumerate((3, 4, 2, 3))])
    assert T.is_complex
    D = DenseTensor(T.to_dense())
    assert D.is_complex
    assert T.norm_squared() == pytest.approx(D.norm_squared(), rel=1e-12)
    draw = (lambda *s: _complex(rng, *s)) if complex_factors else (
        lambda *s: rng.standard_normal(s))
    A = [draw(I, 3) for I in T.shape]
    assert T.inner_cpd(A) == pytest.approx(D.inner_cpd(A), rel=1e-12)
    session = T.mttkrp_session(A)
    assert session.inner() == pytest.approx(D.inner_cpd(A), rel=1e-12)
    for got, ref in zip(session.all(), D.mttkrp_all(A)):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    U, S = [draw(I, 2) for I in T.shape], draw(2, 2, 2, 2)
    np.testing.assert_allclose(T.project(U), D.project(U), rtol=1e-12, atol=1e-12)
    assert T.inner_tucker(U, S) == pytest.approx(D.inner_tucker(U, S), rel=1e-12)
    subs = np.stack([rng.integers(0, I, 12) for I in T.shape], axis=1)
    np.testing.assert_allclose(T.values_at(subs), D.values_at(subs), rtol=1e-12)
    other = TTTensor([_complex(rng, 1, 3, 2), _complex(rng, 2, 4, 1), _complex(rng, 1, 2, 1),
                      _complex(rng, 1, 3, 1)])
    assert T.inner_tt(other) == pytest.approx(np.sum(T.to_dense() * other.to_dense()),
                                              rel=1e-12)


def test_tt_svd_of_complex_data(rng):
    """Complex data give complex, left-unitary cores; the bound holds as for real data."""
    T = algebra.cpd_to_tensor([_complex(rng, n, 2) for n in (4, 5, 6, 3)])
    tt = tt_svd(T, tol=1e-10)
    assert tt.ranks == (1, 2, 2, 2, 1) and tt.is_complex
    np.testing.assert_allclose(tt.to_dense(), T, atol=1e-10)
    for G in tt.cores[:-1]:
        M = G.reshape(-1, G.shape[2])
        np.testing.assert_allclose(M.conj().T @ M, np.eye(G.shape[2]), atol=1e-10)
    noisy = T + 0.1 * _complex(rng, *T.shape)
    for tol in (0.3, 0.05):
        tt = tt_svd(noisy, tol=tol)
        assert np.linalg.norm(tt.to_dense() - noisy) <= tol * np.linalg.norm(noisy) * (1 + 1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda: tt_svd(np.ones(4)), "expected a tensor of order >= 2"),
    (lambda: tt_svd(np.ones((2, 2)), tol=-1.0), "tol: expected a real number >= 0"),
    (lambda: tt_svd(np.ones((2, 2)), max_rank=0), "max_rank: expected an int >= 1"),
    (lambda: TTTensor([np.ones((1, 2, 2)), np.ones((3, 2, 1))]),
     r"core 1 has shape \(3, 2, 1\); its first size must be 2"),
    (lambda: TTTensor([np.ones((1, 2, 2)), np.ones((2, 2, 2))]), "last core must end in size 1"),
    (lambda: TTTensor([np.ones((2, 2))]), "core 0 must be 3-D"),
    (lambda: TTTensor([]), "needs at least one core"),
    (lambda: TTTensor([np.full((1, 2, 1), np.nan)]), "cores must be finite"),
])
def test_tt_bad_input_is_named(call, match):
    with pytest.raises(DataError, match=match):
        call()


def test_tt_with_twenty_modes_works_in_factored_form_only(rng):
    T = _random_tt((10,) * 20, (5,) * 19, rng)
    assert T.size == 10**20
    A = [rng.standard_normal((10, 3)) for _ in range(20)]
    session = T.mttkrp_session(A)
    M = session.all()
    # <T, CPD> from any mode's MTTKRP equals the chained inner product.
    for n in (0, 7, 19):
        assert float(np.sum(M[n] * A[n])) == pytest.approx(session.inner(), rel=1e-9)
    assert T.norm_squared() > 0
    with pytest.raises(DataError, match=r"expanding this tensor-train tensor .* 1e\+20 entries"):
        T.to_dense()


def test_cpd_fit_of_tt_data_equals_the_dense_fit(rng):
    A = [rng.standard_normal((n, 2)) for n in (5, 4, 6)]
    dense = algebra.cpd_to_tensor(A) + 1e-3 * rng.standard_normal((5, 4, 6))
    tt = tt_svd(dense)
    start = [a + 0.1 * rng.standard_normal(a.shape) for a in A]
    fits = []
    for data in (tt, dense):
        variables = [sdf.Variable(s.copy(), name=k) for s, k in zip(start, "abc")]
        fits.append(sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=100))
    assert fits[0].relerr["t"] == pytest.approx(fits[1].relerr["t"], rel=1e-6)
    for k in "abc":
        np.testing.assert_allclose(fits[0].variables[k], fits[1].variables[k], atol=1e-6)


def test_tt_inner_product_with_another_train(rng):
    T = _random_tt((3, 4, 2, 3), (2, 3, 2), rng)
    S = _random_tt((3, 4, 2, 3), (1, 2, 3), rng)
    assert T.inner_tt(S) == pytest.approx(float(np.sum(T.to_dense() * S.to_dense())), rel=1e-12)
    assert T.inner_tt(T) == pytest.approx(T.norm_squared(), rel=1e-14)
    with pytest.raises(DataError, match=r"inner_tt: shapes differ: \(3, 4, 2, 3\) and \(3, 4\)"):
        T.inner_tt(_random_tt((3, 4), (2,), rng))
