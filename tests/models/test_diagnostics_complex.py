"""FMS, cpderr, congruence, degeneracy and imputation on complex factors: Hermitian inner
products, and a complex scaling (a unit-modulus phase per column) ignored or resolved."""

from __future__ import annotations

import numpy as np
import pytest

from sdf.models import congruence, cpderr, degeneracy, fms, impute


def _complex(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.fixture
def factors(rng):
    return [_complex(rng, n, 3) for n in (7, 6, 5)]


def _scaled(factors, rng, perm=(2, 0, 1)):
    """Columns permuted, each scaled by a random complex number (phase and modulus)."""
    scales = [_complex(rng, 3) for _ in factors]
    return [F[:, list(perm)] * s for F, s in zip(factors, scales)], scales


def test_fms_ignores_complex_scaling_and_permutation(factors, rng):
    est, _ = _scaled(factors, rng)
    assert fms(est, factors) == pytest.approx(1.0, abs=1e-12)


def test_fms_uses_hermitian_inner_product(rng):
    # a and conj(a) are not parallel in C^n: the bilinear a^T b would call them so.
    a = _complex(rng, 6, 1)
    ref = [a, np.ones((4, 1))]
    expected = abs(np.vdot(a, a.conj())) / np.vdot(a, a).real
    assert fms([a.conj(), np.ones((4, 1))], ref) == pytest.approx(expected)
    assert expected < 0.9


def test_fms_of_real_part_only_is_below_one(factors):
    assert fms([F.real for F in factors], factors) < 0.9


def test_cpderr_resolves_phase_and_scale(factors, rng):
    est, scales = _scaled(factors, rng, perm=(1, 2, 0))
    err = cpderr(est, factors)
    assert err.permutation.tolist() == [2, 0, 1]
    np.testing.assert_allclose(err.errors, 0.0, atol=1e-12)
    # the scale that maps the estimate's column back is 1 / (the scale applied)
    np.testing.assert_allclose(err.scales[0], 1.0 / scales[0][[2, 0, 1]])
    assert np.iscomplexobj(err.scales[0])


def test_cpderr_pure_phase_is_unit_modulus(factors):
    phase = np.exp(1j * np.array([0.3, -2.0, 1.1]))
    err = cpderr([F * phase for F in factors], factors)
    np.testing.assert_allclose(np.abs(err.scales[1]), 1.0)
    np.testing.assert_allclose(err.scales[1], phase.conj())
    np.testing.assert_allclose(err.errors, 0.0, atol=1e-12)


def test_cpderr_matches_numpy_reference(factors, rng):
    noisy = [F + 0.1 * _complex(rng, *F.shape) for F in factors]
    err = cpderr(noisy, factors)
    for n, (A, B) in enumerate(zip(noisy, factors)):
        d = np.array([np.vdot(A[:, r], B[:, r]) / np.vdot(A[:, r], A[:, r]) for r in range(3)])
        ref = np.linalg.norm(B - A * d) / np.linalg.norm(B)
        assert err.errors[n] == pytest.approx(ref)
    assert err.permutation.tolist() == [0, 1, 2]


def test_congruence_is_real_part_of_hermitian_cosines(factors):
    C = congruence(factors)
    R = factors[0].shape[1]
    ref = np.ones((R, R), dtype=complex)
    for A in factors:
        U = A / np.linalg.norm(A, axis=0)
        ref *= U.conj().T @ U
    np.testing.assert_allclose(C, ref.real)
    np.testing.assert_allclose(np.diag(C), 1.0)


def test_congruence_is_invariant_to_column_phases(factors):
    phase = np.exp(1j * np.array([0.4, 2.0, -1.0]))
    rotated = [factors[0] * phase, factors[1] * phase.conj(), factors[2]]
    np.testing.assert_allclose(congruence(rotated), congruence(factors), atol=1e-12)


def test_degeneracy_flags_cancelling_complex_components():
    a = np.array([[1.0, 1.0], [0.0, 0.05]]) * np.exp(0.8j)
    report = degeneracy([a, a, a * [1.0, -1.0]], warn=False)
    assert report.degenerate and report.pairs[0][:2] == (0, 1)


def test_impute_fills_missing_entries_with_complex_model(rng):
    F = [_complex(rng, n, 2) for n in (3, 4)]
    full = F[0] @ F[1].T
    known = np.where(rng.random(full.shape) < 0.7, full.real, np.nan)
    filled = impute(known, F)
    missing = np.isnan(known)
    np.testing.assert_array_equal(filled[~missing], known[~missing])
    np.testing.assert_allclose(filled[missing], full[missing])
    assert np.iscomplexobj(filled)
