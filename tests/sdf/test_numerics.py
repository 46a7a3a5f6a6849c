"""The engine's shared numerical checks: factor validation, balancing, CPD degeneracy."""

from __future__ import annotations

import numpy as np
import pytest

from sdf.algebra import cpd_to_tensor
from sdf.errors import DataError, ModelError
from sdf.numerics import (DEGENERACY_CONGRUENCE, DEGENERACY_NORM_RATIO, balance_columns,
                          check_factors, cpd_degeneracy)


# ----------------------------------------------------------------------------- check_factors
def test_check_factors_converts_to_float_without_touching_the_input():
    given = [np.arange(6).reshape(3, 2), [[1, 2]]]
    mats = check_factors(given)
    assert [A.dtype for A in mats] == [np.float64, np.float64]
    assert given[0].dtype.kind == "i"


def test_check_factors_keeps_complex_unless_real_is_asked():
    A = np.ones((3, 2)) + 1j
    assert check_factors([A])[0].dtype == np.complex128
    with pytest.raises(DataError, match=r"f\[0\]: expected real numbers, got dtype complex128"):
        check_factors([A], name="f", real=True)


@pytest.mark.parametrize(("factors", "kwargs", "match"), [
    (np.ones((3, 2)), {}, r"factors: expected a sequence of factor matrices .*wrap a single"),
    ("abc", {}, r"factors: expected a sequence of factor matrices"),
    ([], {}, r"factors: expected at least one factor matrix, got none"),
    ([np.ones((3, 2))], {"shape": (3, 4)}, r"expected 2 factor matrices \(one per mode of the "
                                           r"data, shape \(3, 4\)\), got 1"),
    ([np.ones((3, 2)), np.ones(4)], {}, r"factors\[1\]: expected a matrix \(I_n, R\), got "
                                        r"shape \(4,\)"),
    ([np.ones((3, 2)), np.ones((5, 2))], {"shape": (3, 4)},
     r"factors\[1\]: expected 4 rows to match mode 1 of the data, got 5"),
    ([np.ones((3, 2)), np.ones((4, 3))], {"columns": 2}, r"factors\[1\]: expected 2 columns, got 3"),
    ([np.ones((3, 2)), np.ones((4, 3))], {"columns": [2, 2]}, r"factors\[1\]: expected 2 columns"),
    ([np.ones((3, 2)), np.ones((4, 3))], {"columns": "same"},
     r"factors: expected the same number of columns in every factor, got \[2, 3\]"),
    ([np.array([[1.0, np.inf]])], {"finite": True}, r"factors\[0\]: expected finite entries"),
    ([np.array([["a", "b"]])], {}, r"factors\[0\]: expected numbers, got dtype <U1"),
])
def test_check_factors_names_the_bad_factor(factors, kwargs, match):
    with pytest.raises(DataError, match=match):
        check_factors(factors, **kwargs)


def test_check_factors_raises_the_callers_error_class():
    with pytest.raises(ModelError, match=r"init\[0\]: expected 3 rows"):
        check_factors([np.ones((2, 1))], shape=(3,), name="init", error=ModelError)


# ----------------------------------------------------------------------------- balancing
def test_balance_columns_equalises_norms_and_keeps_the_model(rng):
    F = [rng.standard_normal((n, 3)) * [1e-3, 1.0, 1e3] for n in (4, 5, 6)]
    B = balance_columns(F)
    norms = np.array([np.linalg.norm(A, axis=0) for A in B])
    np.testing.assert_allclose(norms, norms[:1].repeat(3, axis=0), rtol=1e-12)
    np.testing.assert_allclose(cpd_to_tensor(B), cpd_to_tensor(F), rtol=1e-12, atol=1e-12)


def test_balance_columns_leaves_a_term_with_a_zero_column_alone(rng):
    F = [rng.standard_normal((n, 2)) for n in (3, 4)]
    F[0][:, 1] = 0.0
    B = balance_columns(F)
    np.testing.assert_array_equal(B[1][:, 1], F[1][:, 1])
    assert np.linalg.norm(B[0][:, 0]) == pytest.approx(np.linalg.norm(B[1][:, 0]))


def test_balance_columns_does_not_overflow():
    # The product of the column norms (1e300) would overflow; their geometric mean does not.
    F = [np.full((2, 1), 1e150)] * 3 + [np.full((2, 1), 1e-150)]
    B = balance_columns(F)
    np.testing.assert_allclose([np.linalg.norm(A) for A in B], 2 ** 0.5 * 1e75, rtol=1e-12)


def test_balance_columns_keeps_complex_phases(rng):
    F = [rng.standard_normal((n, 2)) + 1j * rng.standard_normal((n, 2)) for n in (3, 4, 5)]
    np.testing.assert_allclose(cpd_to_tensor(balance_columns(F)), cpd_to_tensor(F), atol=1e-12)


# ----------------------------------------------------------------------------- degeneracy
def _cancelling(eps: float, scale: float = 1.0) -> list[np.ndarray]:
    a = np.array([[1.0, 1.0], [0.0, eps], [0.0, 0.0]])
    return [scale * a, a, a * [1.0, -1.0]]


def test_the_thresholds_are_one_pair():
    assert (DEGENERACY_CONGRUENCE, DEGENERACY_NORM_RATIO) == (-0.9, 10.0)


def test_cancelling_pair_is_degenerate():
    found = cpd_degeneracy(_cancelling(0.02, 10.0))
    assert found.degenerate and found.pairs[0][:2] == (0, 1)
    assert found.pairs[0][2] == pytest.approx(-(1 / np.sqrt(1 + 0.02**2)) ** 3)
    assert found.norm_ratio > DEGENERACY_NORM_RATIO and found.zero_components == []


def test_model_norm_and_component_norms_are_exact(rng):
    F = [rng.standard_normal((n, 3)) for n in (4, 5, 6)]
    found = cpd_degeneracy(F)
    assert found.model_norm == pytest.approx(np.linalg.norm(cpd_to_tensor(F)))
    np.testing.assert_allclose(found.component_norms,
                               np.prod([np.linalg.norm(A, axis=0) for A in F], axis=0))
    np.testing.assert_allclose(np.diag(found.congruence), 1.0)


def test_opposite_but_not_growing_terms_are_not_degenerate():
    # Congruence -0.94, but the two terms' norms are only ~6x the model's: no swamp.
    found = cpd_degeneracy(_cancelling(0.2))
    assert found.congruence[0, 1] < DEGENERACY_CONGRUENCE
    assert found.norm_ratio < DEGENERACY_NORM_RATIO and not found.degenerate


def test_collinear_healthy_terms_are_not_degenerate(rng):
    base = rng.standard_normal((6, 1))
    F = [np.hstack([base, base + 0.3 * rng.standard_normal((6, 1))]) for _ in range(3)]
    assert not cpd_degeneracy(F).degenerate


def test_zero_components_are_listed(rng):
    F = [rng.standard_normal((n, 3)) for n in (4, 5)]
    F[1][:, 2] = 0.0
    assert cpd_degeneracy(F).zero_components == [2]
    assert cpd_degeneracy([np.zeros((3, 2)), np.zeros((4, 2))]).zero_components == []


def test_complex_cancelling_pair_is_degenerate():
    F = [A.astype(complex) for A in _cancelling(0.02, 10.0)]
    F[0] = F[0] * np.exp(1j * 0.7)
    found = cpd_degeneracy(F)
    assert found.degenerate and found.congruence.dtype == np.float64
