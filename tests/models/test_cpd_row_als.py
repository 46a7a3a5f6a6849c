"""The CPD driver's row-wise ALS warm start on incomplete data: exact pieces, monotone
error, planted recovery."""

from __future__ import annotations

import numpy as np
import pytest

from sdf import algebra
from sdf.models import cpd, fms
from sdf.models.cpd import _row_als, _RowALS
from sdf.tensors import IncompleteTensor, MaskedTensor


def _problem(rng, shape, rank, missing, noise=0.0):
    F = [rng.standard_normal((n, rank)) for n in shape]
    T = algebra.cpd_to_tensor(F)
    if noise:
        E = rng.standard_normal(T.shape)
        T = T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E
    mask = rng.random(T.shape) >= missing
    return np.where(mask, T, np.nan), mask, F


def _reference_sweep(filled, mask, factors):
    """One ALS sweep, each row by dense least squares on its known entries."""
    factors = [A.copy() for A in factors]
    for n in range(len(factors)):
        K = algebra.khatri_rao(factors, skip=n)
        M, X = algebra.unfold(mask, n), algebra.unfold(filled, n)
        for i in range(factors[n].shape[0]):
            factors[n][i] = np.linalg.lstsq(K[M[i]], X[i, M[i]], rcond=None)[0]
    return factors


@pytest.mark.parametrize("shape", [(6, 5, 4), (5, 4, 3, 4), (7, 6), (4, 3, 3, 2, 3)])
def test_sweep_solves_each_row_on_its_known_entries(rng, shape):
    D, mask, F = _problem(rng, shape, 2, 0.3, noise=0.1)
    filled = np.where(mask, D, 0.0)
    start = [rng.standard_normal(A.shape) for A in F]
    factors = [A.copy() for A in start]
    err = _RowALS(filled, mask, 2).sweep(factors)
    expected = _reference_sweep(filled, mask, start)
    for got, want in zip(factors, expected):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
    exact = np.linalg.norm(mask * (algebra.cpd_to_tensor(factors) - filled))
    assert err == pytest.approx(exact / np.linalg.norm(filled), rel=1e-8)


@pytest.mark.parametrize("shape, mode", [((5, 4, 3), 0), ((5, 4, 3), 2), ((4, 3, 3, 4), 1),
                                         ((4, 3, 3, 4), 3)])
def test_a_row_without_known_entries_keeps_its_value(rng, shape, mode):
    # Modes of either half: the rows updated by the first pass over the data and by the
    # second.
    D, mask, F = _problem(rng, shape, 2, 0.2)
    hole = (slice(None),) * mode + (1,)
    mask[hole] = False
    D[hole] = np.nan
    filled = np.where(mask, D, 0.0)
    start = [rng.standard_normal(A.shape) for A in F]
    factors = [A.copy() for A in start]
    _RowALS(filled, mask, 2).sweep(factors)
    np.testing.assert_array_equal(factors[mode][1], start[mode][1])
    assert all(np.isfinite(A).all() for A in factors)
    expected = _reference_sweep(filled, mask, start)
    others = [n for n in range(len(shape)) if n != mode]
    for n in others:
        np.testing.assert_allclose(factors[n], expected[n], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", [MaskedTensor, IncompleteTensor])
def test_row_als_error_is_exact_and_recovers_planted_factors(rng, kind):
    D, mask, F = _problem(rng, (14, 12, 10), 3, 0.5, noise=1e-3)
    X = kind(D)
    start = [A + 0.3 * rng.standard_normal(A.shape) for A in F]
    factors, sweeps, err = _row_als(X, start)
    filled = np.where(mask, D, 0.0)
    exact = np.linalg.norm(mask * (algebra.cpd_to_tensor(factors) - filled))
    assert err == pytest.approx(exact / np.linalg.norm(filled), rel=1e-6)
    assert 1 <= sweeps <= 200
    assert fms(factors, F) > 0.999


def test_row_als_never_increases_the_error(rng):
    D, mask, F = _problem(rng, (10, 9, 8), 3, 0.5, noise=0.05)
    X = MaskedTensor(D)
    factors = [rng.standard_normal(A.shape) for A in F]
    errors = []
    for _ in range(8):
        factors, _, err = _row_als(X, factors, max_sweeps=1)
        errors.append(err)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(errors, errors[1:]))


def test_driver_reports_the_exact_error_after_the_warm_start(rng):
    D, mask, F = _problem(rng, (15, 13, 11), 3, 0.5, noise=1e-2)
    start = [rng.standard_normal(A.shape) for A in F]
    dec = cpd(D, 3, init=start)
    assert [s.name for s in dec.stages] == ["init", "als", "fit"]
    filled = np.where(mask, D, 0.0)
    exact = np.linalg.norm(mask * (algebra.cpd_to_tensor(dec.factors) - filled))
    assert dec.relerr == pytest.approx(exact / np.linalg.norm(filled), rel=1e-9)
    assert fms(dec.factors, F) > 0.99
