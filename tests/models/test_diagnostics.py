"""FMS, cpderr, congruence, degeneracy and core consistency."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.models import (DegeneracyWarning, congruence, corcondia, cpd, cpderr, degeneracy,
                        fms, impute)
from sdf.tensors import CPDTensor


@pytest.fixture
def factors(rng):
    return [rng.standard_normal((n, 3)) for n in (7, 6, 5)]


def test_fms_ignores_permutation_scaling_and_sign(factors):
    perm = [2, 0, 1]
    other = [F[:, perm] * s for F, s in zip(factors, ([2.0, -1.0, 3.0], [-0.5, 1, 1], [1, 1, -1]))]
    assert fms(other, factors) == pytest.approx(1.0)


def test_fms_of_unrelated_factors_is_low(factors, rng):
    other = [rng.standard_normal(F.shape) for F in factors]
    assert fms(other, factors) < 0.5


def test_fms_definition_on_a_small_case():
    ref = [np.eye(2), np.eye(2)]
    est = [np.array([[1.0, 0.0], [1.0, 1.0]]), np.eye(2)]
    # column 0 of est vs ref 0: cos 1/sqrt(2); column 1 vs ref 1: cos 1
    assert fms(est, ref) == pytest.approx((1 / np.sqrt(2) + 1) / 2)


def test_fms_uses_best_subset_of_extra_components(factors, rng):
    est = [np.hstack([F, rng.standard_normal((F.shape[0], 1))]) for F in factors]
    assert fms(est, factors) == pytest.approx(1.0)


def test_fms_accepts_decomposition(rng):
    F = [rng.standard_normal((n, 2)) for n in (6, 5, 4)]
    dec = cpd(algebra.cpd_to_tensor(F), 2, seed=0)
    assert fms(dec, F) > 0.9999


def test_cpderr_recovers_scales_and_permutation(factors):
    scales = [np.array([2.0, -1.0, 0.5]), np.array([1.0, 3.0, -2.0]), np.ones(3)]
    est = [F[:, [1, 2, 0]] / np.array(s)[[1, 2, 0]] for F, s in zip(factors, scales)]
    err = cpderr(est, factors)
    assert err.permutation.tolist() == [2, 0, 1]
    np.testing.assert_allclose(err.errors, 0.0, atol=1e-12)
    np.testing.assert_allclose(err.scales[0], scales[0])
    assert err.fms == pytest.approx(1.0)


def test_cpderr_grows_with_perturbation(factors, rng):
    noisy = [F + 0.1 * rng.standard_normal(F.shape) for F in factors]
    err = cpderr(noisy, factors)
    assert np.all((err.errors > 0.01) & (err.errors < 0.2))


@pytest.mark.parametrize(
    ("est", "match"),
    [
        ([np.ones((7, 3)), np.ones((6, 3))], "fms: 2 estimated factors but 3 reference"),
        ([np.ones((7, 2)), np.ones((6, 2)), np.ones((5, 2))], "fewer than the reference's 3"),
        ([np.ones((8, 3)), np.ones((6, 3)), np.ones((5, 3))], "factor 0 has 8 rows"),
        ([np.ones((7, 3)), np.ones((6, 2)), np.ones((5, 3))], "the same number of columns in every factor"),
        (np.ones((7, 3)), "estimate: expected a sequence of factor matrices"),
    ],
)
def test_fms_bad_input(est, match, factors):
    with pytest.raises(sdf.ModelError, match=match):
        fms(est, factors)


def test_congruence_is_signed_product_of_cosines():
    a = np.array([[1.0, 1.0], [0.0, 1.0]])
    C = congruence([a, a, a * [1.0, -1.0]])
    assert C[0, 1] == pytest.approx(-(1 / np.sqrt(2)) ** 3)
    np.testing.assert_allclose(np.diag(C), 1.0)


def test_degeneracy_flags_cancelling_pair_and_warns():
    a = np.array([[1.0, 1.0], [0.0, 0.02], [0.0, 0.0]])
    with pytest.warns(DegeneracyWarning, match=r"components cancel each other.*\(0, 1\)"):
        report = degeneracy([10 * a, a, a * [1.0, -1.0]])
    assert report.degenerate and report.pairs[0][:2] == (0, 1)
    assert report.norm_ratio > 10


def test_degeneracy_quiet_on_good_solution(factors):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = degeneracy(factors)
    assert not report.degenerate and report.pairs == []


def test_degeneracy_shares_the_engines_thresholds():
    import inspect

    from sdf.numerics import DEGENERACY_CONGRUENCE

    default = inspect.signature(degeneracy).parameters["threshold"].default
    assert default == DEGENERACY_CONGRUENCE


def test_degeneracy_ignores_opposite_terms_whose_norms_do_not_grow():
    # Congruence about -0.94 but norms only ~6x the model's: correlated, not a swamp.
    a = np.array([[1.0, 1.0], [0.0, 0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = degeneracy([a, a, a * [1.0, -1.0]])
    assert report.congruence[0, 1] < -0.9 and not report.degenerate


def test_degeneracy_bad_threshold(factors):
    with pytest.raises(sdf.ModelError, match=r"threshold: expected a number in \(-1, 0\)"):
        degeneracy(factors, threshold=0.5)


def test_corcondia_exact_cpd_is_100(factors):
    T = algebra.cpd_to_tensor(factors)
    assert corcondia(T, factors) == pytest.approx(100.0)


def test_corcondia_is_invariant_to_scaling_between_modes(factors, rng):
    T = algebra.cpd_to_tensor(factors) + 0.05 * rng.standard_normal((7, 6, 5))
    d = np.array([10.0, 0.1, 3.0])
    moved = [factors[0] * d, factors[1] / d, factors[2]]
    assert corcondia(T, moved) == pytest.approx(corcondia(T, factors))


def test_corcondia_low_for_too_many_components(rng):
    F = [rng.standard_normal((n, 2)) for n in (8, 7, 6)]
    T = algebra.cpd_to_tensor(F) + 0.01 * rng.standard_normal((8, 7, 6))
    over = cpd(T, 4, seed=0)
    assert corcondia(T, cpd(T, 2, seed=0).factors) > 99
    assert corcondia(T, over.factors) < 90


def test_corcondia_factored_data_matches_dense(factors):
    assert corcondia(CPDTensor(factors), factors) == pytest.approx(100.0)


def test_corcondia_rejects_incomplete(factors):
    T = algebra.cpd_to_tensor(factors)
    T[0, 0, 0] = np.nan
    with pytest.raises(sdf.DataError, match="data: corcondia needs fully known data"):
        corcondia(T, factors)


def test_corcondia_factor_rows_checked(factors):
    with pytest.raises(sdf.ModelError, match=r"factors\[1\]: expected 6 rows to match mode 1 of the data, got 4"):
        corcondia(np.ones((7, 6, 5)), [factors[0], np.ones((4, 3)), factors[2]])


def test_impute_fills_missing_entries_from_the_model(factors, rng):
    T = algebra.cpd_to_tensor(factors) + 0.01 * rng.standard_normal((7, 6, 5))
    missing = rng.random(T.shape) < 0.1
    T[missing] = np.nan
    before = T.copy()
    D = impute(T, factors)
    np.testing.assert_allclose(D[missing], algebra.cpd_to_tensor(factors)[missing])
    np.testing.assert_array_equal(D[~missing], T[~missing])
    np.testing.assert_array_equal(np.isnan(T), np.isnan(before))  # input untouched


def test_impute_then_corcondia_on_incomplete_data(factors, rng):
    T = algebra.cpd_to_tensor(factors)
    T[rng.random(T.shape) < 0.2] = np.nan
    assert corcondia(impute(T, factors), factors) == pytest.approx(100.0)


def test_impute_checks_factor_rows(factors):
    with pytest.raises(sdf.ModelError, match=r"factors\[0\]: expected 8 rows"):
        impute(np.ones((8, 6, 5)), factors)


def test_corcondia_on_incomplete_points_to_impute(factors):
    T = algebra.cpd_to_tensor(factors)
    T[0, 0, 0] = np.nan
    with pytest.raises(sdf.DataError, match=r"corcondia\(impute\(data, factors\), factors\)"):
        corcondia(T, factors)
