"""The CPD driver on planted problems, every data kind, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import sdf
from sdf import algebra
from sdf.models import Decomposition, cpd, fms
from sdf.tensors import CPDTensor


def planted(rng, shape, rank, noise=0.0):
    factors = [rng.standard_normal((n, rank)) for n in shape]
    T = algebra.cpd_to_tensor(factors)
    if noise:
        E = rng.standard_normal(T.shape)
        T = T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E
    return T, factors


def test_exact_rank_recovers_factors(rng):
    T, F = planted(rng, (12, 10, 8), 3)
    dec = cpd(T, 3, seed=0)
    assert dec.relerr < 1e-8
    assert fms(dec.factors, F) > 0.9999


def test_pipeline_stages_when_compressing(rng):
    T, _ = planted(rng, (30, 25, 20), 4, noise=0.01)
    dec = cpd(T, 4, seed=0)
    assert [s.name for s in dec.stages] == ["compress", "init", "core", "refine"]
    assert dec.stages[0].detail == "MLSVD to core (4, 4, 4)"
    assert dec.stages[1].detail == "gevd"
    assert dec.relerr == pytest.approx(0.01, rel=0.1)


def test_noisy_fit_reaches_noise_level(rng):
    T, F = planted(rng, (15, 14, 13), 3, noise=0.01)
    dec = cpd(T, 3, seed=1)
    assert dec.relerr < 0.0101
    assert fms(dec.factors, F) > 0.99


def test_random_init_same_seed_same_result(rng):
    T, _ = planted(rng, (10, 9, 8), 2, noise=0.01)
    a = cpd(T, 2, init="random", seed=3)
    b = cpd(T, 2, init="random", seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a.factors, b.factors))


def test_given_init_is_not_modified(rng):
    T, F = planted(rng, (10, 9, 8), 2)
    start = [A + 0.1 * rng.standard_normal(A.shape) for A in F]
    copies = [A.copy() for A in start]
    dec = cpd(T, 2, init=start)
    assert all(np.array_equal(a, c) for a, c in zip(start, copies))
    assert fms(dec.factors, F) > 0.9999


def test_no_compression_when_asked(rng):
    T, F = planted(rng, (12, 10, 8), 2)
    dec = cpd(T, 2, compress=False, seed=0)
    assert [s.name for s in dec.stages] == ["init", "fit"]
    assert fms(dec.factors, F) > 0.9999


def test_incomplete_data(rng):
    T, F = planted(rng, (12, 11, 10), 3, noise=0.001)
    D = T.copy()
    D[rng.random(T.shape) < 0.4] = np.nan
    dec = cpd(D, 3, seed=0)
    assert dec.result.model.terms["data"].data.kind == "incomplete"
    assert "als" in [s.name for s in dec.stages]
    assert fms(dec.factors, F) > 0.99
    assert dec.relerr < 0.002


def test_incomplete_without_warm_start(rng):
    T, F = planted(rng, (8, 7, 6), 2)
    D = T.copy()
    D[rng.random(T.shape) < 0.3] = np.nan
    dec = cpd(D, 2, seed=0, compress=False)
    assert [s.name for s in dec.stages] == ["init", "fit"]
    assert fms(dec.factors, F) > 0.999


def test_sparse_data(rng):
    A, B = rng.standard_normal((30, 2)), rng.standard_normal((20, 2))
    A[rng.random(A.shape) < 0.7] = 0.0
    M = sp.csr_array(A @ B.T)
    dec = cpd(M, 2, seed=0)
    assert dec.result.model.terms["data"].data.kind == "sparse"
    assert dec.relerr < 1e-8


def test_factored_data(rng):
    F = [rng.standard_normal((n, 2)) for n in (9, 8, 7)]
    dec = cpd(CPDTensor(F), 2, seed=0)
    assert dec.relerr < 1e-8
    assert fms(dec.factors, F) > 0.9999


def test_fourth_order(rng):
    T, F = planted(rng, (8, 7, 6, 5), 3)
    dec = cpd(T, 3, seed=0)
    assert fms(dec.factors, F) > 0.9999


def test_matrix_rank_reaches_optimum(rng):
    M = rng.standard_normal((10, 2)) @ rng.standard_normal((2, 9))
    dec = cpd(M, 2, seed=0)
    assert dec.relerr < 1e-8


def test_xarray_dims_name_the_factors(rng):
    xr = pytest.importorskip("xarray")
    T, _ = planted(rng, (6, 5, 4), 2)
    da = xr.DataArray(T, dims=("sample", "ex", "em"))
    dec = cpd(da, 2, seed=0)
    assert dec.labels == ["sample", "ex", "em"]
    assert dec.result.variables["ex"].shape == (5, 2)


def test_minf_method(rng):
    T, F = planted(rng, (8, 7, 6), 2)
    dec = cpd(T, 2, method="minf", seed=0)
    assert dec.result.method == "minf"
    assert fms(dec.factors, F) > 0.999


def test_callback_sees_refinement_iterations(rng):
    T, _ = planted(rng, (12, 10, 8), 2, noise=0.01)
    seen = []
    dec = cpd(T, 2, seed=0, callback=lambda info: seen.append(info.iteration))
    assert seen[0] == 0 and len(seen) == len(dec.history.objective)


def test_result_forwards_engine_result(rng):
    T, _ = planted(rng, (8, 7, 6), 2)
    dec = cpd(T, 2, seed=0)
    assert isinstance(dec, Decomposition)
    assert isinstance(dec.result, sdf.Result)
    assert dec.history is dec.result.history
    assert dec.stop is dec.result.stop
    assert dec["mode0"] is dec.result.variables["mode0"]
    assert isinstance(dec.relerr, float)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        dec.nonsense  # noqa: B018


def test_options_reach_the_engine(rng):
    T, _ = planted(rng, (12, 10, 8), 3, noise=0.05)
    dec = cpd(T, 3, init="random", seed=0, compress=False, max_iter=2)
    assert dec.result.iterations <= 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0}, "rank: expected an integer >= 1"),
        ({"rank": 2.5}, "rank: expected an integer >= 1"),
        ({"rank": 2, "init": "svd"}, "init: expected 'auto', 'gevd', 'random'"),
        ({"rank": 2, "compress": "yes"}, "compress: expected 'auto', True or False"),
        ({"rank": 2, "seed": "x"}, "seed: expected None, an int or a numpy Generator"),
        ({"rank": 2, "init": [np.ones((6, 2))]},
         r"init: expected 3 factor matrices \(one per mode of the data"),
        ({"rank": 2, "init": [np.ones((6, 3)), np.ones((5, 2)), np.ones((4, 2))]},
         r"init\[0\]: expected 2 columns, got 3"),
        ({"rank": 2, "max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"rank": 2, "bogus": 1}, "unknown option"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(sdf.ModelError, match=match):
        cpd(np.ones((6, 5, 4)), **kwargs)


def test_compress_true_rejects_incomplete():
    D = np.ones((6, 5, 4))
    D[0, 0, 0] = np.nan
    with pytest.raises(sdf.ModelError, match="compress: only fully known dense data"):
        cpd(D, 2, compress=True)


def test_gevd_forced_where_it_does_not_apply():
    with pytest.raises(sdf.ModelError, match="init: GEVD does not apply"):
        cpd(np.ones((6, 5, 4)), 6, init="gevd", compress=False)


def test_vector_data_rejected():
    with pytest.raises(sdf.DataError, match="data: expected at least 2 modes"):
        cpd(np.ones(5), 1)
