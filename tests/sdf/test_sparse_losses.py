"""Sparse count and binary data with non-Gaussian losses: exact objective where the loss
is linear at zero, stratified sampling of the zeros otherwise (planted problems)."""

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.errors import ModelError
from sdf.losses import Poisson, ZeroSampling
from sdf.models import fms
from sdf.tensors import SparseTensor

SHAPE = (40, 30, 20)


def _sparse(X):
    return SparseTensor.from_entries(np.argwhere(X != 0), X[X != 0], X.shape)


@pytest.fixture
def sparse_counts():
    rng = np.random.default_rng(0)
    truth = [rng.gamma(0.3, 1.0, (n, 3)) for n in SHAPE]
    scale = np.cbrt(0.2 / algebra.cpd_to_tensor(truth).mean())
    truth = [A * scale for A in truth]
    X = rng.poisson(algebra.cpd_to_tensor(truth)).astype(float)
    return truth, X


@pytest.fixture
def sparse_binary():
    rng = np.random.default_rng(1)
    truth = [rng.standard_normal((n, 2)) for n in (60, 50, 40)]
    truth[0][:, 0] = -1.5  # with the other factors' first columns: a low base rate
    truth[1][:, 0] = 1.0 + 0.1 * rng.standard_normal(50)
    truth[2][:, 0] = 2.0 + 0.1 * rng.standard_normal(40)
    p = 1.0 / (1.0 + np.exp(-algebra.cpd_to_tensor(truth)))
    return truth, (rng.random(p.shape) < p).astype(float)


def test_identity_link_objective_and_gradient_are_exact(sparse_counts, rng):
    truth, X = sparse_counts
    values = [np.abs(A + 0.1 * rng.standard_normal(A.shape)) for A in truth]
    loss = Poisson(link="identity")
    sparse = sdf.CPD(_sparse(X), [sdf.Variable(v) for v in values], loss=loss)
    dense = sdf.CPD(X, [sdf.Variable(v) for v in values], loss=loss)
    s, d = sparse.prepare(values), dense.prepare(values)
    assert s.fval == pytest.approx(d.fval, rel=1e-12)
    for gs, gd in zip(s.gradient(), d.gradient()):
        np.testing.assert_allclose(gs, gd, rtol=1e-10, atol=1e-12 * np.abs(gd).max())
    assert sparse.null_fval == pytest.approx(dense.null_fval, rel=1e-12)


def test_identity_link_fit_on_sparse_counts_recovers_factors(sparse_counts):
    truth, X = sparse_counts
    rng = np.random.default_rng(2)
    variables = [sdf.Variable(np.sqrt(rng.random((n, 3)))) for n in SHAPE]
    factors = [tf.nonneg(v) for v in variables]
    res = sdf.Model(x=sdf.CPD(_sparse(X), factors, loss=Poisson(link="identity"))).fit(
        max_iter=200)
    fitted = [res[f] for f in factors]
    assert fms(fitted, truth) > 0.95
    M = algebra.cpd_to_tensor(fitted)
    assert res.deviance["x"] == pytest.approx(
        2 * np.sum(Poisson(link="identity").value(M, X)), rel=1e-9)


def test_negative_factor_is_outside_the_domain(sparse_counts):
    truth, X = sparse_counts
    values = [A.copy() for A in truth]
    values[0][0, 0] = -1e-3
    term = sdf.CPD(_sparse(X), [sdf.Variable(v) for v in values], loss=Poisson(link="identity"))
    assert term.prepare(values).fval == np.inf


def test_sampled_zeros_estimate_the_objective(sparse_binary):
    truth, X = sparse_binary
    S = _sparse(X)
    variables = [sdf.Variable(A) for A in truth]
    exact = sdf.CPD(X, variables, loss="bernoulli").prepare(truth).fval
    estimates = [sdf.CPD(S, variables, loss="bernoulli",
                         sampling=ZeroSampling(zeros=20_000, seed=s)).prepare(truth).fval
                 for s in range(4)]
    assert len(set(estimates)) == 4
    assert np.mean(estimates) == pytest.approx(exact, rel=0.02)
    again = sdf.CPD(S, variables, loss="bernoulli",
                    sampling={"zeros": 20_000, "seed": 0}).prepare(truth).fval
    assert again == estimates[0]


def test_sampled_bernoulli_fit_recovers_factors(sparse_binary):
    truth, X = sparse_binary
    assert X.mean() < 0.2
    rng = np.random.default_rng(3)
    variables = [sdf.Variable(A + 0.3 * rng.standard_normal(A.shape)) for A in truth]
    term = sdf.CPD(_sparse(X), variables, loss="bernoulli",
                   sampling=ZeroSampling(zeros=30_000, seed=0))
    res = sdf.Model(x=term).fit(max_iter=100)
    assert fms([res[v] for v in variables], truth) > 0.9


def test_sampling_needs_sparse_data_and_another_loss(sparse_counts):
    _, X = sparse_counts
    a = [sdf.Variable(np.ones((n, 1))) for n in SHAPE]
    with pytest.raises(ModelError, match="sampling= applies to sparse data with a non-Gauss"):
        sdf.Model(x=sdf.CPD(X, a, loss="poisson", sampling=ZeroSampling(zeros=10))).check()
    with pytest.raises(ModelError, match="sampling= applies to sparse data"):
        sdf.Model(x=sdf.CPD(_sparse(X), a, sampling=ZeroSampling(zeros=10))).check()
    with pytest.raises(ModelError, match=r"CPD sampling: ZeroSampling.zeros must be an integer"):
        sdf.CPD(_sparse(X), a, loss="poisson", sampling={"zeros": 0})
    with pytest.raises(ValueError, match="ZeroSampling.seed must be an integer >= 0"):
        ZeroSampling(zeros=5, seed=-1)


def test_sampling_goes_through_the_dict_language(sparse_counts):
    _, X = sparse_counts
    a = [sdf.Variable(np.ones((n, 1)), name=f"a{n}") for n in SHAPE]
    model = sdf.Model(x=sdf.CPD(_sparse(X), a, loss="poisson",
                                sampling=ZeroSampling(zeros=100, seed=3)))
    spec = model.to_dict()
    again = sdf.Model.from_dict(spec)
    assert again.terms["x"].sampling == ZeroSampling(zeros=100, seed=3)
