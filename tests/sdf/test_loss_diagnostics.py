"""Checks after a fit speak of deviances for terms with a non-Gaussian loss."""

import warnings

import numpy as np

import sdf


def test_poor_poisson_fit_is_compared_with_the_constant_model():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, (8, 7, 6)).astype(float)
    factors = [sdf.Variable(np.full((n, 1), 1.6)) for n in counts.shape]
    model = sdf.Model(x=sdf.CPD(counts, factors, loss="poisson"))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = model.fit(max_iter=1)
    assert res.relerr["x"] > 1
    found = [w for w in res.warnings if "constant model" in w]
    assert found and "poisson loss" in found[0] and "relative error" not in found[0]


def test_still_decreasing_names_the_deviance_ratio():
    rng = np.random.default_rng(1)
    truth = [0.5 * rng.standard_normal((n, 2)) for n in (10, 9, 8)]
    counts = rng.poisson(np.exp(sdf.algebra.cpd_to_tensor(truth))).astype(float)
    factors = [sdf.Variable(0.1 * rng.standard_normal((n, 2))) for n in counts.shape]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = sdf.Model(x=sdf.CPD(counts, factors, loss="poisson")).fit(max_iter=3)
    found = [w for w in res.warnings if "still decreasing" in w]
    assert found and "sqrt(deviance / constant model's)" in found[0]
