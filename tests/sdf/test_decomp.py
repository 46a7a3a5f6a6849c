"""Tests of sdf.decomp on planted structures with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from sdf import decomp
from sdf.algebra import cpd_to_tensor, frob, tucker_to_tensor, unfold
from sdf.decomp import LMLRAResult, MLSVDResult, gevd_applies, gevd_init, lmlra_hooi, mlsvd
from sdf.numerics import balance_columns
from sdf.errors import DataError

FAST = settings(max_examples=25, deadline=None)


def _orth(rng, rows, cols):
    return np.linalg.qr(rng.standard_normal((rows, cols)))[0]


def _planted_tucker(rng, shape, core_shape):
    U = [_orth(rng, s, r) for s, r in zip(shape, core_shape)]
    return tucker_to_tensor(U, rng.standard_normal(core_shape)), U


def _max_angle(U, V):
    return float(np.max(scipy.linalg.subspace_angles(U, V)))


def _congruence(A, B):
    """Best mean over column permutations of prod_n |<a_nr, b_nr>| / (|a_nr| |b_nr|)."""
    R = A[0].shape[1]
    cos = np.ones((R, R))
    for X, Y in zip(A, B):
        Xn = X / np.linalg.norm(X, axis=0)
        Yn = Y / np.linalg.norm(Y, axis=0)
        cos *= np.abs(Xn.conj().T @ Yn)
    return max(np.mean(cos[np.arange(R), list(p)]) for p in itertools.permutations(range(R)))


# ----------------------------------------------------------------------- MLSVD
def test_mlsvd_full_is_exact_orthogonal_transform(rng):
    T = rng.standard_normal((4, 5, 3))
    res = mlsvd(T)
    assert isinstance(res, MLSVDResult)
    assert res.core.shape == T.shape
    for U in res.factors:
        np.testing.assert_allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-12)
    np.testing.assert_allclose(res.to_tensor(), T, atol=1e-12)


def test_mlsvd_first_mode_singular_values_are_the_data_ones(rng):
    T = rng.standard_normal((4, 5, 30))
    res = mlsvd(T)
    np.testing.assert_allclose(
        res.singular_values[0], np.linalg.svd(unfold(T, 0), compute_uv=False), rtol=1e-10
    )


def test_mlsvd_singular_values_of_partially_truncated_tensor(rng):
    T = rng.standard_normal((6, 5, 4))
    res = mlsvd(T, core_shape=(2, 5, 4))  # mode 0 compresses most: processed first
    partial = np.einsum("ijk,ir->rjk", T, res.factors[0])
    expected = np.linalg.svd(unfold(partial, 1), compute_uv=False)
    np.testing.assert_allclose(res.singular_values[1], expected, rtol=1e-10)
    assert [s.shape for s in res.singular_values] == [(6,), (5,), (4,)]


def test_mlsvd_gram_path_matches_svd(rng):
    T = rng.standard_normal((3, 20, 20))  # mode 0 uses the Gram matrix
    res = mlsvd(T)
    np.testing.assert_allclose(
        res.singular_values[0], np.linalg.svd(unfold(T, 0), compute_uv=False), rtol=1e-10
    )
    np.testing.assert_allclose(res.to_tensor(), T, atol=1e-11)


def test_mlsvd_pads_singular_values_of_short_unfoldings(rng):
    T = rng.standard_normal((2, 2, 6))
    res = mlsvd(T, core_shape=(2, 2, 5))
    assert res.singular_values[2].shape == (6,)
    assert np.all(res.singular_values[2][4:] == 0)
    assert res.factors[2].shape == (6, 5)
    np.testing.assert_allclose(res.factors[2].T @ res.factors[2], np.eye(5), atol=1e-12)


@FAST
@given(
    shape=st.lists(st.integers(3, 6), min_size=2, max_size=4).map(tuple),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_mlsvd_recovers_planted_subspaces(shape, seed, data):
    rng = np.random.default_rng(seed)
    core_shape = (data.draw(st.integers(1, 2)),) * len(shape)  # identifiable: R_n <= prod others
    T, U = _planted_tucker(rng, shape, core_shape)
    res = mlsvd(T, core_shape=core_shape)
    for V, W in zip(res.factors, U):
        assert _max_angle(V, W) < 1e-6
    np.testing.assert_allclose(res.to_tensor(), T, atol=1e-10)


def test_mlsvd_tol_finds_planted_ranks(rng):
    T, _ = _planted_tucker(rng, (8, 9, 10), (2, 3, 4))
    T = T + 1e-9 * rng.standard_normal(T.shape)
    assert mlsvd(T, tol=1e-6).core.shape == (2, 3, 4)


def test_mlsvd_tol_bounds_the_error(rng):
    T = rng.standard_normal((6, 7, 8))
    tol = 0.3
    res = mlsvd(T, tol=tol)
    relerr = frob(T - res.to_tensor()) / frob(T)
    assert relerr <= np.sqrt(3) * tol
    assert res.core.shape < T.shape


def test_mlsvd_sign_convention(rng):
    res = mlsvd(rng.standard_normal((5, 4, 3)), core_shape=(2, 2, 2))
    for U in res.factors:
        assert np.all(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])] > 0)


def test_mlsvd_complex(rng):
    T = rng.standard_normal((4, 5, 6)) + 1j * rng.standard_normal((4, 5, 6))
    res = mlsvd(T)
    np.testing.assert_allclose(res.to_tensor(), T, atol=1e-11)


def test_mlsvd_rejects_core_shape_length(rng):
    with pytest.raises(DataError, match=r"core_shape: expected 3 entries.*got 2"):
        mlsvd(rng.standard_normal((3, 4, 5)), core_shape=(2, 2))


def test_mlsvd_rejects_core_shape_entry_out_of_range(rng):
    with pytest.raises(DataError, match=r"core_shape\[1\]: expected an integer in \[1, 4\], got 7"):
        mlsvd(rng.standard_normal((3, 4, 5)), core_shape=(2, 7, 2))


def test_mlsvd_rejects_zero_core_size(rng):
    with pytest.raises(DataError, match=r"core_shape\[0\]: expected an integer in \[1, 3\], got 0"):
        mlsvd(rng.standard_normal((3, 4, 5)), core_shape=(0, 2, 2))


def test_mlsvd_rejects_tol_and_core_shape(rng):
    with pytest.raises(DataError, match="tol: expected None when core_shape is given"):
        mlsvd(rng.standard_normal((3, 4)), core_shape=(2, 2), tol=0.1)


def test_mlsvd_rejects_bad_tol(rng):
    with pytest.raises(DataError, match=r"tol: expected a number in \[0, 1\), got 2"):
        mlsvd(rng.standard_normal((3, 4)), tol=2)


def test_mlsvd_rejects_nan(rng):
    T = rng.standard_normal((3, 4))
    T[1, 1] = np.nan
    with pytest.raises(DataError, match="T: expected finite entries, got NaN or Inf"):
        mlsvd(T)


def test_mlsvd_rejects_vector(rng):
    with pytest.raises(DataError, match=r"T: expected a tensor of order >= 2.*got shape \(3,\)"):
        mlsvd(rng.standard_normal(3))


# ------------------------------------------------------------------------ HOOI
def test_hooi_recovers_planted_tucker(rng):
    T, U = _planted_tucker(rng, (7, 8, 9), (2, 3, 2))
    res = lmlra_hooi(T, (2, 3, 2))
    assert isinstance(res, LMLRAResult)
    assert res.relerr < 1e-12
    for V, W in zip(res.factors, U):
        assert _max_angle(V, W) < 1e-7


def test_hooi_is_no_worse_than_mlsvd(rng):
    T = rng.standard_normal((6, 7, 8, 3))
    core_shape = (2, 3, 2, 2)
    res = lmlra_hooi(T, core_shape, max_iter=100)
    st_err = frob(T - mlsvd(T, core_shape).to_tensor()) / frob(T)
    assert res.relerr <= st_err + 1e-12
    assert res.relerr == pytest.approx(frob(T - res.to_tensor()) / frob(T))
    for V in res.factors:
        np.testing.assert_allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-12)


def test_hooi_from_noisy_planted_init(rng):
    T, U = _planted_tucker(rng, (6, 6, 6), (2, 2, 2))
    start = [W + 0.1 * rng.standard_normal(W.shape) for W in U]
    res = lmlra_hooi(T, (2, 2, 2), init=start)
    assert res.relerr < 1e-10
    assert res.iterations >= 1


def test_hooi_accepts_mlsvd_result_and_zero_iterations(rng):
    T = rng.standard_normal((4, 5, 6))
    init = mlsvd(T, (2, 2, 3))
    res = lmlra_hooi(T, (2, 2, 3), init=init, max_iter=0)
    assert res.iterations == 0
    np.testing.assert_allclose(res.to_tensor(), init.to_tensor(), atol=1e-12)


def test_hooi_rejects_init_shape(rng):
    with pytest.raises(DataError, match=r"init\[1\]: expected shape \(5, 2\).*got \(5, 3\)"):
        lmlra_hooi(rng.standard_normal((4, 5, 6)), (2, 2, 2),
                   init=[np.ones((4, 2)), np.ones((5, 3)), np.ones((6, 2))])


def test_hooi_rejects_negative_max_iter(rng):
    with pytest.raises(DataError, match="max_iter: expected an integer >= 0, got -1"):
        lmlra_hooi(rng.standard_normal((4, 5)), (2, 2), max_iter=-1)


def test_hooi_rejects_core_shape(rng):
    with pytest.raises(DataError, match=r"core_shape\[2\]: expected an integer in \[1, 6\], got 9"):
        lmlra_hooi(rng.standard_normal((4, 5, 6)), (2, 2, 9))


def _hooi_one_projection_per_mode(T, ranks, U, sweeps):
    """Textbook HOOI: each mode's projection formed from T on its own, SVD of the
    unfolding; the reference the sweep sharing partial products must equal."""
    U = [np.linalg.qr(V)[0] for V in U]
    for _ in range(sweeps):
        for n in range(T.ndim):
            others = [m for m in range(T.ndim) if m != n]
            Y = T
            for m in others:
                Y = np.moveaxis(np.tensordot(U[m].conj().T, Y, axes=(1, m)), 0, m)
            U[n] = np.linalg.svd(unfold(Y, n), full_matrices=False)[0][:, : ranks[n]]
    return U


@pytest.mark.parametrize("shape, ranks", [((9, 8, 7), (3, 2, 4)), ((6, 5, 4, 7), (2, 3, 2, 3)),
                                          ((12, 10), (3, 3))])
def test_hooi_sweeps_match_one_projection_per_mode(shape, ranks, rng):
    T = rng.standard_normal(shape)
    start = [_orth(rng, I, R) for I, R in zip(shape, ranks)]
    res = lmlra_hooi(T, ranks, init=start, max_iter=3, tol=0)
    ref = _hooi_one_projection_per_mode(T, ranks, start, 3)
    assert res.iterations == 3
    for V, W in zip(res.factors, ref):
        assert _max_angle(V, W) < 1e-10
    core = tucker_to_tensor([V.T for V in res.factors], T)
    np.testing.assert_allclose(res.core, core, atol=1e-12)


def test_hooi_compare_start_stops_a_converged_start_after_one_sweep(rng):
    T = tucker_to_tensor([rng.standard_normal((n, 2)) for n in (8, 7, 6)],
                         rng.standard_normal((2, 2, 2))) + 1e-3 * rng.standard_normal((8, 7, 6))
    done = lmlra_hooi(T, (2, 2, 2), max_iter=200, tol=1e-14)
    assert done.converged
    assert lmlra_hooi(T, (2, 2, 2), init=done, compare_start=True).iterations == 1
    assert lmlra_hooi(T, (2, 2, 2), init=done).iterations == 2


def test_hooi_compare_start_does_not_stop_a_far_start(rng):
    T = rng.standard_normal((8, 7, 6))
    start = [_orth(rng, n, 2) for n in (8, 7, 6)]
    with_start = lmlra_hooi(T, (2, 2, 2), init=start, compare_start=True)
    without = lmlra_hooi(T, (2, 2, 2), init=start)
    assert with_start.iterations == without.iterations > 1
    assert with_start.relerr == pytest.approx(without.relerr, rel=1e-12)


@pytest.mark.parametrize("shape, ranks", [((9, 8, 7), (3, 2, 4)), ((7, 6, 5, 4), (2, 3, 2, 2)),
                                          ((12, 10), (3, 3)), ((10, 9, 8), (10, 2, 3))])
def test_hooi_first_sweep_from_its_mlsvd_equals_a_full_sweep(shape, ranks, rng):
    # The skipped update repeats the MLSVD's last step: the sweep reusing the MLSVD's
    # partial products gives what a sweep computing everything gives.
    T = rng.standard_normal(shape)
    U, order, suffix = decomp._mlsvd_start(T, list(ranks))
    reused, core, start = decomp._hooi_sweep(T, U, list(ranks), order, True, suffix)
    full, full_core, full_start = decomp._hooi_sweep(T, U, list(ranks), order, True)
    for V, W in zip(reused, full):
        assert _max_angle(V, W) < 1e-10
    np.testing.assert_allclose(tucker_to_tensor(reused, core),
                               tucker_to_tensor(full, full_core), atol=1e-10)
    np.testing.assert_allclose(start, full_start, atol=1e-12)
    np.testing.assert_allclose(start, mlsvd(T, ranks).core, atol=1e-10)


def test_hooi_compare_start_from_its_own_mlsvd_reaches_the_same_optimum(rng):
    T, _ = _planted_tucker(rng, (10, 9, 8), (3, 2, 3))
    T = T + 0.05 * rng.standard_normal(T.shape)
    fused = lmlra_hooi(T, (3, 2, 3), compare_start=True, tol=1e-14, max_iter=500)
    plain = lmlra_hooi(T, (3, 2, 3), tol=1e-14, max_iter=500)
    assert fused.converged and plain.converged
    assert fused.relerr == pytest.approx(plain.relerr, rel=1e-10)
    for V, W in zip(fused.factors, plain.factors):
        assert _max_angle(V, W) < 1e-6
    assert lmlra_hooi(T, (3, 2, 3), init=fused, compare_start=True).iterations == 1


def test_hooi_reports_not_converged_at_max_iter(rng):
    T = rng.standard_normal((8, 7, 6))
    res = lmlra_hooi(T, (2, 2, 2), init=[_orth(rng, n, 2) for n in (8, 7, 6)], max_iter=1)
    assert res.iterations == 1 and not res.converged
    assert not lmlra_hooi(T, (2, 2, 2), max_iter=0).converged


@pytest.mark.parametrize("noise", [1e-1, 1e-2, 1e-4, 1e-9, 0.0])
def test_hooi_relerr_equals_the_residual_of_its_factors(noise, rng):
    T, _ = _planted_tucker(rng, (9, 8, 7), (2, 3, 2))
    E = rng.standard_normal(T.shape)
    T = T + noise * frob(T) / frob(E) * E
    res = lmlra_hooi(T, (2, 3, 2))
    residual = frob(T - res.to_tensor()) / frob(T)
    assert res.relerr == pytest.approx(residual, rel=1e-8, abs=1e-15)


@pytest.mark.parametrize("shape", [(30, 5, 6), (20, 20, 1), (12, 3, 4), (40, 6, 5)])
def test_mlsvd_gram_path_spans_the_svd_subspaces(shape, rng):
    # Unfoldings with as many columns as rows (or a few more) now take the Gram path.
    T, _ = _planted_tucker(rng, shape, (3, 3, 1))
    T = T + 1e-3 * rng.standard_normal(shape)
    ranks = (3, 3, 1)
    res = mlsvd(T, ranks)
    S = T
    for n in decomp._mode_order(list(ranks), shape):
        U = np.linalg.svd(unfold(S, n), full_matrices=False)[0][:, : ranks[n]]
        assert _max_angle(res.factors[n], U) < 1e-10
        S = np.moveaxis(np.tensordot(U.T, S, axes=(1, n)), 0, n)
    np.testing.assert_allclose(res.to_tensor(), tucker_to_tensor(res.factors, res.core),
                               atol=1e-12)


# ------------------------------------------------------------------------ GEVD
@pytest.mark.parametrize(
    ("shape", "rank"),
    [((5, 6, 4), 3), ((4, 4, 2), 4), ((2, 7, 6), 4), ((6, 5, 3, 4), 4), ((3, 4, 2, 3, 2), 4),
     ((8, 2, 2, 2), 3)],
)
def test_gevd_recovers_exact_cpd(rng, shape, rank):
    A = [rng.standard_normal((s, rank)) for s in shape]
    T = cpd_to_tensor(A)
    F = gevd_init(T, rank, seed=0)
    assert [f.shape for f in F] == [a.shape for a in A]
    assert _congruence(F, A) > 1 - 1e-8
    np.testing.assert_allclose(cpd_to_tensor(F), T, atol=1e-9 * frob(T))


def test_gevd_complex_exact_cpd(rng):
    A = [rng.standard_normal((s, 3)) + 1j * rng.standard_normal((s, 3)) for s in (4, 5, 3)]
    F = gevd_init(cpd_to_tensor(A), 3, seed=2)
    assert _congruence(F, A) > 1 - 1e-8


def test_gevd_with_noise_is_close(rng):
    A = [rng.standard_normal((s, 3)) for s in (10, 11, 12)]
    T = cpd_to_tensor(A)
    T = T + 1e-3 * frob(T) / np.sqrt(T.size) * rng.standard_normal(T.shape)
    assert _congruence(gevd_init(T, 3, seed=0), A) > 0.99


def test_gevd_real_factors_when_pencil_has_complex_eigenvalues(rng, monkeypatch):
    seen = []
    original = decomp._real_pairs
    monkeypatch.setattr(
        decomp, "_real_pairs", lambda X, lam: seen.append(lam) or original(X, lam)
    )
    T = rng.standard_normal((5, 5, 5))  # not a CPD: complex eigenvalue pairs for some seeds
    for seed in range(6):
        F = gevd_init(T, 4, seed=seed)
        assert all(np.isrealobj(f) and np.isfinite(f).all() for f in F)
    assert any(np.any(lam.imag != 0) for lam in seen)


def test_gevd_is_reproducible_with_seed(rng):
    T = rng.standard_normal((5, 5, 5))
    F1, F2 = gevd_init(T, 3, seed=7), gevd_init(T, 3, seed=7)
    for a, b in zip(F1, F2):
        np.testing.assert_array_equal(a, b)


def test_gevd_balances_column_norms(rng):
    A = [rng.standard_normal((s, 2)) for s in (4, 5, 6)]
    F = gevd_init(cpd_to_tensor(A), 2, seed=0)
    norms = np.array([np.linalg.norm(f, axis=0) for f in F])
    np.testing.assert_allclose(norms, norms[:1].repeat(3, axis=0), rtol=1e-10)


def test_gevd_rejects_rank_too_large_3way(rng):
    with pytest.raises(DataError, match=r"rank: .*second-largest dimension \(5\).*random"):
        gevd_init(rng.standard_normal((4, 5, 6)), 6)


def test_gevd_rejects_rank_too_large_4way(rng):
    with pytest.raises(DataError, match=r"rank: .*two disjoint groups.*got rank 30"):
        gevd_init(rng.standard_normal((3, 3, 3, 3)), 30)


@pytest.mark.parametrize(("shape", "rank", "applies"), [
    ((4, 5, 6), 5, True), ((4, 5, 6), 6, False), ((6, 5, 1), 5, False), ((4, 5), 2, False),
    ((3, 3, 2, 2, 2), 6, True), ((3, 3, 3, 3), 30, False)])
def test_gevd_applies_exactly_where_gevd_init_runs(rng, shape, rank, applies):
    assert gevd_applies(shape, rank) is applies
    if applies:
        T = cpd_to_tensor([rng.standard_normal((s, rank)) for s in shape])
        assert [F.shape for F in gevd_init(T, rank, seed=0)] == [(s, rank) for s in shape]


def test_gevd_rejects_matrix(rng):
    with pytest.raises(DataError, match=r"T: expected a tensor of order >= 3"):
        gevd_init(rng.standard_normal((4, 5)), 2)


def test_gevd_rejects_bad_rank(rng):
    with pytest.raises(DataError, match="rank: expected an integer >= 1, got 0"):
        gevd_init(rng.standard_normal((4, 5, 3)), 0)


# --------------------------------------------------------------- balancing
def test_balance_columns_equalises_norms_and_keeps_the_cpd(rng):
    A = [rng.standard_normal((s, 3)) * rng.uniform(0.01, 100, 3) for s in (4, 5, 6, 2)]
    B = balance_columns(A)
    norms = np.array([np.linalg.norm(f, axis=0) for f in B])
    np.testing.assert_allclose(norms, norms[:1].repeat(4, axis=0), rtol=1e-12)
    np.testing.assert_allclose(np.prod(norms, axis=0),
                               np.prod([np.linalg.norm(f, axis=0) for f in A], axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(cpd_to_tensor(B), cpd_to_tensor(A), rtol=1e-12, atol=1e-12)


def test_balance_columns_leaves_terms_with_a_zero_column(rng):
    A = [rng.standard_normal((4, 2)), rng.standard_normal((3, 2))]
    A[1][:, 0] = 0.0
    B = balance_columns(A)
    np.testing.assert_array_equal(B[0][:, 0], A[0][:, 0])
    np.testing.assert_array_equal(B[1][:, 0], 0.0)
    assert np.linalg.norm(B[0][:, 1]) == pytest.approx(np.linalg.norm(B[1][:, 1]))


def test_balance_columns_complex(rng):
    A = [rng.standard_normal((s, 2)) + 1j * rng.standard_normal((s, 2)) for s in (3, 4, 5)]
    A[0] *= 50.0
    B = balance_columns(A)
    assert all(np.iscomplexobj(f) for f in B)
    np.testing.assert_allclose(cpd_to_tensor(B), cpd_to_tensor(A), rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(B[0], axis=0), np.linalg.norm(B[2], axis=0))


# --------------------------------------------------------- inputs not modified
def test_decompositions_leave_read_only_inputs_intact(rng):
    A = [rng.standard_normal((s, 2)) for s in (4, 5, 3)]
    T = cpd_to_tensor(A)
    init = [np.linalg.qr(rng.standard_normal((s, 2)))[0] for s in T.shape]
    arrays = [T, *init]
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.flags.writeable = False
    mlsvd(T)
    mlsvd(T, core_shape=(2, 2, 2))
    mlsvd(T, tol=0.1)
    lmlra_hooi(T, (2, 2, 2), init=init)
    gevd_init(T, 2, seed=0)
    balance_columns(init)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


def test_results_are_frozen(rng):
    res = mlsvd(rng.standard_normal((3, 4)))
    with pytest.raises(AttributeError, match="cannot assign"):
        res.core = None  # type: ignore[misc]


def test_all_is_sorted():
    assert decomp.__all__ == sorted(decomp.__all__)


@pytest.mark.parametrize("kind", ["tucker", "cpd", "btd", "complex-cpd"])
def test_mlsvd_of_factored_data_is_computed_from_the_core(kind, monkeypatch):
    from sdf.tensors import BTDTensor, CPDTensor, TuckerTensor

    rng = np.random.default_rng(3)
    shape = (20, 25, 30)
    if kind == "tucker":
        T = TuckerTensor([rng.standard_normal((n, 3)) for n in shape],
                         rng.standard_normal((3, 3, 3)))
    elif kind == "btd":
        T = BTDTensor([([rng.standard_normal((n, 2)) for n in shape],
                        rng.standard_normal((2, 2, 2))) for _ in range(2)])
    else:
        A = [rng.standard_normal((n, 4)) for n in shape]
        if kind == "complex-cpd":
            A = [M + 1j * rng.standard_normal(M.shape) for M in A]
        T = CPDTensor(A)
    dense = T.to_dense()
    want = mlsvd(dense, core_shape=(3, 3, 3))
    monkeypatch.setattr(type(T), "to_dense", lambda self: pytest.fail("expanded"))
    got = mlsvd(T, core_shape=(3, 3, 3))
    for g, w in zip(got.factors, want.factors):
        np.testing.assert_allclose(g, w, atol=1e-10)
    np.testing.assert_allclose(got.core, want.core, atol=1e-9 * np.abs(want.core).max())
    for g, w in zip(got.singular_values, want.singular_values):
        np.testing.assert_allclose(g[:3], w[:3], rtol=1e-9)
        assert g.shape == w.shape
    exact = mlsvd(T, tol=1e-10)
    np.testing.assert_allclose(exact.to_tensor(), dense, atol=1e-9 * np.abs(dense).max())
