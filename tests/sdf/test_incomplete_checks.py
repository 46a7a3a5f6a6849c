"""Checks after a fit on incomplete data: poor local minima and blown-up factors."""

import warnings

import numpy as np

import sdf
from sdf._incomplete import imputed_mlsvd_error
from sdf.models import cpd
from sdf.tensors import IncompleteTensor


def planted_missing(mask_seed=0, shape=(20, 20, 20), rank=3, missing=0.7):
    rng = np.random.default_rng(mask_seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    T = np.einsum("ir,jr,kr->ijk", *factors)
    return T, np.where(rng.random(shape) < missing, np.nan, T)


def fit_from_random(data, rank=3, seeds=(10, 11, 12), **options):
    vs = [sdf.Variable.random((n, rank), seed=s, name="abc"[k])
          for k, (n, s) in enumerate(zip(data.shape, seeds))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sdf.Model(t=sdf.CPD(data, vs)).fit(**options)
    return res, [str(w.message) for w in caught]


def test_a_bad_local_minimum_on_70_percent_missing_data_is_reported():
    # From this random start the fit on the known entries held as coordinates ends with
    # relative error 0.38 on them and a model far too large elsewhere; the driver
    # recovers the data.
    T, data = planted_missing()
    res, messages = fit_from_random(IncompleteTensor(data), seeds=(22, 23, 24), max_iter=60)
    full = np.einsum("ir,jr,kr->ijk", res["a"], res["b"], res["c"])
    assert np.linalg.norm(full - T) > 10 * np.linalg.norm(T)   # the bad minimum is there
    poor = [m for m in messages if "far above" in m]
    blown = [m for m in messages if "norm over the whole grid" in m]
    assert len(poor) == 1 and "sdf.models.cpd" in poor[0] and "n_starts" in poor[0]
    assert len(blown) == 1 and "sdf.L2" in blown[0]
    assert any("far above" in w for w in res.warnings)
    dec = cpd(data, 3, seed=0)
    assert dec.relerr < 1e-6
    assert not [w for w in dec.warnings if "far above" in w or "whole grid" in w]


def test_a_good_fit_on_incomplete_data_is_not_reported():
    _, data = planted_missing(mask_seed=1)
    res, messages = fit_from_random(data, seeds=(13, 14, 15))
    assert res.relerr["t"] < 1e-8
    assert not [m for m in messages if "far above" in m or "whole grid" in m]


def test_noisy_fits_at_the_noise_level_are_not_reported():
    T, data = planted_missing(mask_seed=3, missing=0.5)
    rng = np.random.default_rng(5)
    noisy = data + 0.05 * np.std(T) * rng.standard_normal(T.shape)
    res, messages = fit_from_random(noisy, seeds=(19, 20, 21))
    assert res.relerr["t"] < 0.1
    assert not [m for m in messages if "far above" in m or "whole grid" in m]


def test_imputed_mlsvd_error_is_small_for_low_rank_data():
    _, data = planted_missing(mask_seed=2, missing=0.5)
    assert imputed_mlsvd_error(data, (3, 3, 3)) < 0.05
    assert imputed_mlsvd_error(data, (1, 1, 1)) > 0.3
