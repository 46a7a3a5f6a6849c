"""The CPD driver on mostly-known masked data: MLSVD compression of the zero-filled array,
the core's fit, and the refinement on the known entries (planted recovery, exact error)."""

from __future__ import annotations

import numpy as np
import pytest

from sdf import algebra
from sdf.models import cpd, fms
from sdf.tensors import MaskedTensor, as_tensor


def _mostly_known(rng, shape, rank, missing, noise=0.01, complex_values=False):
    def draw(size):
        Z = rng.standard_normal(size)
        return Z + 1j * rng.standard_normal(size) if complex_values else Z

    F = [draw((n, rank)) for n in shape]
    T = algebra.cpd_to_tensor(F)
    E = draw(shape)
    T = T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E
    mask = rng.random(shape) >= missing
    return np.where(mask, T, np.nan), mask, F


def _known_relerr(factors, D, mask):
    residual = (algebra.cpd_to_tensor(factors) - np.where(mask, D, 0.0))[mask]
    return np.linalg.norm(residual) / np.linalg.norm(D[mask])


@pytest.mark.parametrize("complex_values", [False, True], ids=["real", "complex"])
def test_planted_mostly_known_data_are_compressed_then_refined(rng, complex_values):
    D, mask, F = _mostly_known(rng, (14, 13, 12, 11), 3, 0.005,
                               complex_values=complex_values)
    assert isinstance(as_tensor(D), MaskedTensor)
    dec = cpd(D, 3, seed=1)
    assert [s.name for s in dec.stages] == ["compress", "init", "core", "refine"]
    assert dec.stages[0].detail.endswith("of the zero-filled data")
    assert fms(dec.factors, F) > 0.999
    # the error reported is that of the known entries, recomputed from the factors
    assert dec.relerr == pytest.approx(_known_relerr(dec.factors, D, mask), rel=1e-8)
    assert dec.relerr < 0.0102


def test_given_start_is_projected_on_the_bases_of_the_zero_filled_data(rng):
    D, mask, F = _mostly_known(rng, (12, 11, 10), 2, 0.01)
    start = [rng.standard_normal(A.shape) for A in F]
    dec = cpd(D, 2, init=start)
    assert [s.name for s in dec.stages] == ["compress", "init", "core", "refine"]
    assert dec.stages[1].detail == "given, projected on the MLSVD bases"
    assert fms(dec.factors, F) > 0.999
    assert dec.relerr == pytest.approx(_known_relerr(dec.factors, D, mask), rel=1e-8)


def test_no_compression_when_asked_or_when_many_entries_are_missing(rng):
    D, _, F = _mostly_known(rng, (12, 11, 10), 2, 0.005)
    assert [s.name for s in cpd(D, 2, seed=0, compress=False).stages] == ["init", "fit"]
    D, _, F = _mostly_known(rng, (12, 11, 10), 2, 0.1)
    names = [s.name for s in cpd(D, 2, seed=0).stages]
    assert "compress" not in names and "als" in names


def test_core_as_large_as_the_data_is_not_compressed(rng):
    D, _, F = _mostly_known(rng, (4, 4, 4), 4, 0.01, noise=0.0)
    D[0, 0, 0] = np.nan
    dec = cpd(D, 4, seed=0)
    assert "compress" not in [s.name for s in dec.stages]
