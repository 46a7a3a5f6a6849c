"""sdf.decomp on planted complex data: MLSVD, HOOI and GEVD recover the planted structure
exactly, with unitary factors, and agree with numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from sdf.algebra import cpd_to_tensor, frob, inner, tucker_to_tensor, unfold
from sdf.decomp import gevd_init, lmlra_hooi, mlsvd
from sdf.models import fms


def _complex(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _unitary(rng, rows, cols):
    return np.linalg.qr(_complex(rng, rows, cols))[0]


@pytest.fixture
def planted_tucker(rng):
    U = [_unitary(rng, s, r) for s, r in zip((8, 7, 6), (3, 2, 4))]
    core = _complex(rng, 3, 2, 4)
    return tucker_to_tensor(U, core), U, core


def _assert_unitary_columns(U):
    np.testing.assert_allclose(U.conj().T @ U, np.eye(U.shape[1]), atol=1e-12)


def test_inner_products_and_norms_are_hermitian(rng):
    from sdf.algebra import cpd_inner, cpd_norm_squared, gramians

    X, Y = _complex(rng, 3, 4, 5), _complex(rng, 3, 4, 5)
    assert inner(X, Y) == pytest.approx(np.vdot(X, Y))
    assert inner(X, X) == pytest.approx(frob(X) ** 2)
    assert frob(X) == pytest.approx(np.linalg.norm(X.ravel()))
    A, B = [_complex(rng, n, 2) for n in (3, 4, 5)], [_complex(rng, n, 3) for n in (3, 4, 5)]
    assert cpd_inner(A, B) == pytest.approx(np.vdot(cpd_to_tensor(A), cpd_to_tensor(B)))
    assert cpd_norm_squared(A) == pytest.approx(frob(cpd_to_tensor(A)) ** 2)
    np.testing.assert_allclose(gramians(A)[0], A[0].conj().T @ A[0])


def test_mlsvd_recovers_complex_tucker(planted_tucker):
    T, U, _ = planted_tucker
    res = mlsvd(T, core_shape=(3, 2, 4))
    assert np.iscomplexobj(res.core)
    for V, W in zip(res.factors, U):
        _assert_unitary_columns(V)
        assert np.max(scipy.linalg.subspace_angles(V, W)) < 1e-10
    np.testing.assert_allclose(res.to_tensor(), T, atol=1e-12)


def test_mlsvd_singular_values_match_numpy_svd_of_unfoldings(rng):
    T = _complex(rng, 5, 6, 7)
    res = mlsvd(T)  # untruncated: every mode's values are those of the data
    for n in range(3):
        s = np.linalg.svd(unfold(T, n), compute_uv=False)
        np.testing.assert_allclose(res.singular_values[n][: s.size], s, rtol=1e-10)


def test_mlsvd_factors_match_numpy_up_to_column_phase(rng):
    T = _complex(rng, 4, 9, 5)
    res = mlsvd(T, core_shape=(2, 3, 2))
    # mode order by compression: mode 1 (9 / 3) is processed first, on the data itself
    Ur = np.linalg.svd(unfold(T, 1))[0][:, :3]
    phase = np.sum(Ur.conj() * res.factors[1], axis=0)
    np.testing.assert_allclose(np.abs(phase), 1.0, atol=1e-10)
    np.testing.assert_allclose(res.factors[1], Ur * phase, atol=1e-10)


def test_mlsvd_peak_entries_are_real_positive(rng):
    res = mlsvd(_complex(rng, 5, 6, 4), core_shape=(2, 2, 2))
    for U in res.factors:
        peak = U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])]
        np.testing.assert_allclose(peak.imag, 0.0, atol=1e-14)
        assert (peak.real > 0).all()


def test_mlsvd_core_is_hermitian_projection(rng):
    T = _complex(rng, 5, 6, 4)
    res = mlsvd(T, core_shape=(3, 3, 2))
    ref = np.einsum("ijk,ia,jb,kc->abc", T, *(U.conj() for U in res.factors))
    np.testing.assert_allclose(res.core, ref, atol=1e-12)


def test_mlsvd_tol_keeps_planted_complex_ranks(planted_tucker):
    T, _, _ = planted_tucker
    assert mlsvd(T, tol=1e-8).core.shape == (3, 2, 4)


def test_hooi_recovers_complex_tucker_with_noise_free_data(planted_tucker):
    T, U, _ = planted_tucker
    res = lmlra_hooi(T, (3, 2, 4))
    assert res.relerr < 1e-12
    for V, W in zip(res.factors, U):
        _assert_unitary_columns(V)
        assert np.max(scipy.linalg.subspace_angles(V, W)) < 1e-10


def test_hooi_relerr_is_hermitian_and_beats_mlsvd(rng):
    T = _complex(rng, 6, 7, 5)
    res = lmlra_hooi(T, (2, 2, 2), max_iter=100)
    model = res.to_tensor()
    assert res.relerr == pytest.approx(frob(T - model) / frob(T))
    # the optimal core is the Hermitian projection, so the residual is orthogonal to it
    assert abs(inner(model, T - model)) < 1e-10 * frob(T) ** 2
    ml = mlsvd(T, core_shape=(2, 2, 2))
    assert res.relerr <= frob(T - ml.to_tensor()) / frob(T) + 1e-12


def test_gevd_recovers_planted_complex_cpd(rng):
    A = [_complex(rng, n, 4) for n in (7, 6, 5)]
    T = cpd_to_tensor(A)
    F = gevd_init(T, 4, seed=1)
    assert all(np.iscomplexobj(M) for M in F)
    np.testing.assert_allclose(cpd_to_tensor(F), T, atol=1e-9 * frob(T))
    assert fms(F, A) > 1 - 1e-10


def test_gevd_complex_fourth_order(rng):
    A = [_complex(rng, n, 3) for n in (4, 3, 3, 2)]
    T = cpd_to_tensor(A)
    F = gevd_init(T, 3, seed=0)
    np.testing.assert_allclose(cpd_to_tensor(F), T, atol=1e-9 * frob(T))


def test_gevd_complex_generalized_eigenvalues_need_no_pairing(rng):
    # complex data whose pencil has complex-conjugate eigenvalue pairs: a real-pair split
    # would lose them, a complex GEVD keeps every component
    A = [_complex(rng, 5, 2), _complex(rng, 5, 2)]
    C = np.array([[1.0, 1.0], [1.0 + 1j, 1.0 - 1j]])
    T = cpd_to_tensor([A[0], A[1], C])
    F = gevd_init(T, 2, seed=3)
    np.testing.assert_allclose(cpd_to_tensor(F), T, atol=1e-9 * frob(T))


def _complex_rank2_real_tensor(rng):
    """A real 2 x 2 x 2 tensor ``2 Re(z o z o z)``: complex rank 2, real rank 3."""
    z = _complex(rng, 2, 1)
    return (cpd_to_tensor([z, z, z]) + cpd_to_tensor([z.conj()] * 3)).real


def test_gevd_complex_option_gives_exact_complex_cpd_of_real_tensor(rng):
    T = _complex_rank2_real_tensor(rng)
    F = gevd_init(T, 2, seed=0, complex=True)
    assert all(np.iscomplexobj(M) for M in F)
    np.testing.assert_allclose(cpd_to_tensor(F), T, atol=1e-10 * frob(T))


def test_gevd_real_data_keeps_real_factors_by_default(rng):
    T = _complex_rank2_real_tensor(rng)
    F = gevd_init(T, 2, seed=0)
    assert not any(np.iscomplexobj(M) for M in F)
    # no real rank-2 CPD exists: the real start cannot be exact
    assert frob(cpd_to_tensor(F) - T) > 1e-3 * frob(T)


def test_gevd_complex_option_must_be_a_bool(rng):
    from sdf.errors import DataError

    with pytest.raises(DataError, match="complex: expected True or False"):
        gevd_init(_complex_rank2_real_tensor(rng), 2, complex="yes")


def test_randomized_mlsvd_recovers_complex_tucker(planted_tucker):
    from sdf.decomp import mlsvd_rsi

    T, U, _ = planted_tucker
    res = mlsvd_rsi(T, (3, 2, 4), seed=0)
    np.testing.assert_allclose(res.to_tensor(), T, atol=1e-10)
    for V, W in zip(res.factors, U):
        _assert_unitary_columns(V)
        assert np.max(scipy.linalg.subspace_angles(V, W)) < 1e-8
        peak = V[np.argmax(np.abs(V), axis=0), np.arange(V.shape[1])]
        np.testing.assert_allclose(peak.imag, 0.0, atol=1e-14)


def test_randomized_mlsvd_matches_mlsvd_on_noisy_complex_data(rng, planted_tucker):
    from sdf.decomp import mlsvd_rsi

    T, _, _ = planted_tucker
    noisy = T + 1e-3 * _complex(rng, *T.shape)
    fast = mlsvd_rsi(noisy, (3, 2, 4), seed=1)
    exact = mlsvd(noisy, core_shape=(3, 2, 4))
    err = [frob(noisy - r.to_tensor()) for r in (fast, exact)]
    assert err[0] <= 1.01 * err[1]


def test_decompositions_of_tiny_complex_data_are_scaled_exactly(rng):
    A = [_complex(rng, n, 2) for n in (5, 4, 3)]
    T = cpd_to_tensor(A) * 2.0**-300  # sums of squares would underflow unscaled
    ml = mlsvd(T, core_shape=(2, 2, 2))
    np.testing.assert_allclose(ml.to_tensor(), T, atol=1e-12 * frob(T))
    hooi = lmlra_hooi(T, (2, 2, 2))
    assert hooi.relerr < 1e-10
    F = gevd_init(T, 2, seed=0)
    np.testing.assert_allclose(cpd_to_tensor(F), T, atol=1e-9 * frob(T))
