"""plot_residuals for terms with a non-Gaussian loss: deviance and Pearson residuals."""

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.errors import ModelError
from sdf.losses import Bernoulli, Poisson
from sdf.viz import loss_residuals, plot_residuals


@pytest.fixture
def poisson_fit():
    rng = np.random.default_rng(0)
    truth = [0.6 * rng.standard_normal((n, 2)) for n in (12, 10, 8)]
    counts = rng.poisson(np.exp(algebra.cpd_to_tensor(truth))).astype(float)
    variables = [sdf.Variable(A + 0.05 * rng.standard_normal(A.shape)) for A in truth]
    res = sdf.Model(x=sdf.CPD(counts, variables, loss="poisson")).fit(max_iter=30)
    return res, counts, [res[v] for v in variables]


def test_poisson_term_draws_deviance_residuals(poisson_fit):
    res, counts, factors = poisson_fit
    rp = plot_residuals(res)
    assert rp.residual == "deviance" and rp.slab_error == "absolute"
    assert rp.hist_ax.get_xlabel() == "deviance residual"
    # Their squares add up to the term's deviance, the slabs' sums to the slab deviances.
    assert np.sum(rp.residuals**2) == pytest.approx(res.deviance["x"], rel=1e-9)
    M = algebra.cpd_to_tensor(factors)
    slab = 2 * Poisson().value(M, counts).sum(axis=(1, 2))
    np.testing.assert_allclose(rp.sse[0], slab, rtol=1e-9)


def test_pearson_residuals_are_standardised_counts(poisson_fit):
    res, counts, factors = poisson_fit
    rp = plot_residuals(res, residual="pearson")
    mu = np.exp(algebra.cpd_to_tensor(factors))
    np.testing.assert_allclose(rp.residuals, ((counts - mu) / np.sqrt(mu)).ravel(), rtol=1e-10)
    assert rp.hist_ax.get_xlabel() == "pearson residual"


def test_raw_residuals_are_data_minus_mean(poisson_fit):
    res, counts, factors = poisson_fit
    rp = plot_residuals(res, residual="raw")
    mu = np.exp(algebra.cpd_to_tensor(factors))
    np.testing.assert_allclose(rp.residuals, (counts - mu).ravel(), rtol=1e-10)


def test_loss_given_with_plain_factors(poisson_fit):
    _, counts, factors = poisson_fit
    rp = plot_residuals(factors, data=counts, loss="poisson")
    assert rp.residual == "deviance"
    assert plot_residuals(factors, data=counts).residual == "raw"


def test_bernoulli_pearson_formula():
    m, x = np.array([0.0, 2.0]), np.array([1.0, 0.0])
    p = 1 / (1 + np.exp(-m))
    np.testing.assert_allclose(loss_residuals(m, x, Bernoulli(), "pearson"),
                               (x - p) / np.sqrt(p * (1 - p)))


def test_bad_residual_kind_is_named(poisson_fit):
    with pytest.raises(ModelError, match="residual must be 'auto', 'raw', 'deviance' or"):
        plot_residuals(poisson_fit[0], residual="working")
