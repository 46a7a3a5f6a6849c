"""Losses in models: the dictionary language, errors, reported errors, both solvers, and
planted recovery (each loss recovers factors where least squares does not; mixed-loss
coupled models)."""

from __future__ import annotations

import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.errors import ModelError, SdfWarning
from sdf.losses import Beta, Gamma, Huber, Loss, Poisson, as_loss
from sdf.models.diagnostics import fms
from sdf.problem import Problem

SHAPE, RANK = (22, 20, 18), 3


def _start(rng: np.random.Generator, positive: bool = False) -> list[sdf.Variable]:
    return [sdf.Variable(0.5 * rng.random((n, RANK)) + 0.2 if positive
                         else 0.3 * rng.standard_normal((n, RANK)), name=f"f{k}")
            for k, n in enumerate(SHAPE)]


def _fit(X, loss, seed=1, positive=False, method="nls"):
    """Fitted factors and result of a rank-3 CPD of X under ``loss``."""
    variables = _start(np.random.default_rng(seed), positive)
    inputs = [tf.nonneg(v) for v in variables] if positive else variables
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        res = sdf.Model(t=sdf.CPD(X, inputs, loss=loss)).fit(method=method, max_iter=300)
    return [res[e] for e in inputs], res


# ----------------------------------------------------------------------------- language


def test_loss_round_trips_through_the_dict_language(rng):
    X = rng.poisson(2.0, (4, 5)).astype(float)
    spec = {"variables": {"A": rng.standard_normal((4, 2)), "B": rng.standard_normal((5, 2))},
            "factorizations": {"m": {"data": X, "cpd": ["A", "B"],
                                     "loss": {"name": "huber", "threshold": 0.5}}}}
    model = sdf.Model.from_dict(spec)
    assert model.terms["m"].loss == Huber(0.5)
    entry = model.to_dict()["factorizations"]["m"]
    assert entry["loss"] == {"name": "huber", "threshold": 0.5}
    assert sdf.Model.from_dict(model.to_dict()).terms["m"].loss == Huber(0.5)


def test_gaussian_terms_write_no_loss(rng):
    a = sdf.Variable(rng.standard_normal((4, 2)), name="a")
    model = sdf.Model(m=sdf.LL1(rng.standard_normal((4, 5, 3)), [a, np.ones((5, 2)),
                                                                 np.ones((3, 2))], L=1))
    assert "loss" not in model.to_dict()["factorizations"]["m"]


def test_ll1_writes_its_loss_with_its_group_sizes(rng):
    a = sdf.Variable(rng.standard_normal((4, 2)), name="a")
    term = sdf.LL1(rng.random((4, 5, 3)), [a, np.ones((5, 2)), np.ones((3, 2))], L=1,
                   loss="gamma")
    entry = sdf.Model(m=term).to_dict()["factorizations"]["m"]
    assert entry["L"] == [1, 1] and entry["loss"] == {"name": "gamma", "link": "log"}


def test_unknown_loss_is_a_located_error(rng):
    spec = {"variables": {"A": np.ones((4, 2)), "B": np.ones((5, 2))},
            "factorizations": {"m": {"data": np.ones((4, 5)), "cpd": ["A", "B"],
                                     "loss": "poison"}}}
    with pytest.raises(ModelError, match=r"factorizations\['m'\]: CPD loss: unknown loss "
                                         r"'poison'; known: \['bernoulli'"):
        sdf.Model.from_dict(spec)


@pytest.mark.parametrize(("loss", "data", "match"), [
    ("poisson", -1.0, r"term 'm', loss 'poisson': needs data >= 0 \(counts\), got -1 "
                      r"\(20 such entries\)"),
    ("bernoulli", 2.0, r"term 'm', loss 'bernoulli': needs data in \[0, 1\], got 2"),
    ("gamma", 0.0, r"term 'm', loss 'gamma': needs data > 0, got 0"),
    (Beta(0.0), 0.0, r"term 'm', loss 'beta': needs data > 0 for beta = 0, got 0"),
])
def test_data_outside_the_loss_domain_is_a_located_error(loss, data, match):
    a = sdf.Variable(np.ones((4, 2)), name="a")
    with pytest.raises(ModelError, match=match):
        sdf.Model(m=sdf.CPD(np.full((4, 5), data), [a, np.ones((5, 2))], loss=loss)).check()


@pytest.mark.parametrize(("spec", "match"), [
    ({"name": "huber", "threshold": -1}, r"CPD loss: Huber: threshold must be a finite "
                                         r"number > 0, got -1"),
    ({"name": "poisson", "link": "sqrt"}, r"CPD loss: Poisson: link must be 'log' or "
                                          r"'identity', got 'sqrt'"),
    ({"name": "beta", "b": 1}, r"CPD loss: loss 'beta' does not take the parameters \['b'\]"),
    (3, r"CPD loss: expected a loss name"),
])
def test_bad_loss_parameters_are_errors(spec, match):
    with pytest.raises(ModelError, match=match):
        sdf.CPD(np.ones((4, 5)), [np.ones((4, 1)), np.ones((5, 1))], loss=spec)


def test_as_loss_passes_loss_objects_through():
    loss = Gamma(link="identity")
    assert as_loss(loss) is loss
    assert as_loss({"name": "gamma", "link": "identity"}) == loss


# ----------------------------------------------------------------------------- errors


def test_relative_error_is_the_square_root_of_the_deviance_ratio(rng):
    X = rng.poisson(3.0, (6, 5)).astype(float)
    A, B = sdf.Variable(0.1 * rng.standard_normal((6, 2))), sdf.Variable(
        0.1 * rng.standard_normal((5, 2)))
    res = sdf.Model(m=sdf.CPD(X, [A, B], loss="poisson")).fit(max_iter=30)
    mu = np.exp(res[A] @ res[B].T)
    deviance = 2 * np.sum(mu - X + np.where(X > 0, X * np.log(np.where(X > 0, X, 1) / mu), 0))
    m0 = X.mean()
    null = 2 * np.sum(m0 - X + np.where(X > 0, X * np.log(np.where(X > 0, X, 1) / m0), 0))
    assert res.relerr["m"] == pytest.approx(np.sqrt(deviance / null), rel=1e-9)
    assert res.abserr["m"] == pytest.approx(np.sqrt(deviance), rel=1e-9)


@pytest.mark.parametrize("method", ["nls", "minf"])
def test_reported_objective_is_recomputed_from_the_returned_factors(method, rng):
    X = rng.poisson(2.0, (6, 5, 4)).astype(float)
    X[0, 0, 0] = np.nan
    vs = [sdf.Variable(0.1 * rng.standard_normal((n, 2))) for n in (6, 5, 4)]
    model = sdf.Model(m=sdf.CPD(X, vs, loss="poisson"))
    res = model.fit(method=method, max_iter=40)
    problem = Problem.from_model(model)
    z = np.concatenate([res.variables[n].ravel() for n in problem.names])
    assert res.objective == pytest.approx(problem.point(z).f, rel=1e-12)


# ----------------------------------------------------------------------------- solvers


LOSS_DATA = {
    "poisson": lambda rng, M: rng.poisson(np.exp(M)).astype(float),
    "bernoulli": lambda rng, M: (rng.random(M.shape) < 1 / (1 + np.exp(-M))).astype(float),
    "gamma": lambda rng, M: np.exp(M) * rng.gamma(2.0, 0.5, M.shape),
    "huber": lambda rng, M: M + 0.1 * rng.standard_normal(M.shape),
    "beta": lambda rng, M: np.abs(M) + rng.random(M.shape),
}


@pytest.mark.parametrize("loss", sorted(LOSS_DATA))
def test_lbfgs_decreases_every_loss(loss, rng):
    M = algebra.cpd_to_tensor([0.5 * rng.standard_normal((n, 2)) for n in (6, 5, 4)])
    X = LOSS_DATA[loss](rng, M)
    X[1, 1, 1] = np.nan
    positive = loss == "beta"
    vs = [sdf.Variable(0.5 * rng.random((n, 2)) + 0.3 if positive
                       else 0.1 * rng.standard_normal((n, 2))) for n in (6, 5, 4)]
    inputs = [tf.nonneg(v) for v in vs] if positive else vs
    model = sdf.Model(m=sdf.CPD(X, inputs, loss=loss))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        res = model.fit(method="minf", max_iter=40)
    assert res.success and np.isfinite(res.objective)
    assert res.objective < res.history.objective[0]


def test_a_user_loss_fits_like_the_builtin_one(rng):
    class MyPoisson(Loss):
        name = "my-poisson"

        def value(self, model, data):
            return np.exp(model) - data * model

        def derivative(self, model, data):
            return np.exp(model) - data

        def curvature(self, model, data):
            return np.exp(model)

    X = rng.poisson(2.0, (6, 5, 4)).astype(float)
    fits = []
    for loss in (MyPoisson(), "poisson"):
        vs = [sdf.Variable(np.random.default_rng(3).standard_normal((n, 2)) * 0.1)
              for n in (6, 5, 4)]
        res = sdf.Model(m=sdf.CPD(X, vs, loss=loss)).fit(max_iter=60)
        fits.append(algebra.cpd_to_tensor([res[v] for v in vs]))
    np.testing.assert_allclose(fits[0], fits[1], atol=1e-5)


# ----------------------------------------------------------------------------- recovery


def test_huber_recovers_factors_despite_gross_outliers(rng):
    truth = [rng.standard_normal((n, RANK)) for n in SHAPE]
    M = algebra.cpd_to_tensor(truth)
    X = M + 0.1 * rng.standard_normal(SHAPE)
    outliers = rng.random(SHAPE) < 0.05
    X[outliers] += 20 * np.abs(M).max() * rng.standard_normal(int(outliers.sum()))
    robust, _ = _fit(X, Huber(0.3))
    least_squares, _ = _fit(X, "gaussian")
    assert fms(robust, truth) > 0.99
    assert fms(least_squares, truth) < 0.5


PLANTED = {  # loss, truth maker, data maker, positive model
    "poisson": ("poisson", lambda rng: [0.7 * rng.standard_normal((n, RANK)) for n in SHAPE],
                lambda rng, M: rng.poisson(np.exp(M)).astype(float), False),
    "bernoulli": ("bernoulli",
                  lambda rng: [rng.standard_normal((n, RANK)) for n in SHAPE],
                  LOSS_DATA["bernoulli"], False),
    "gamma": ("gamma", lambda rng: [0.6 * rng.standard_normal((n, RANK)) for n in SHAPE],
              LOSS_DATA["gamma"], False),
    "itakura-saito": (Beta(0.0),  # entries over orders of magnitude, multiplicative noise
                      lambda rng: [np.exp(1.5 * rng.standard_normal((n, RANK))) for n in SHAPE],
                      lambda rng, M: M * rng.exponential(1.0, M.shape), True),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(PLANTED))
def test_loss_recovers_planted_factors_where_least_squares_does_not(case, rng):
    loss, make_truth, make_data, positive = PLANTED[case]
    truth = make_truth(rng)
    X = make_data(rng, algebra.cpd_to_tensor(truth))
    fitted, res = _fit(X, loss, positive=positive)
    least_squares, _ = _fit(X, "gaussian", positive=positive)
    assert res.success
    assert fms(fitted, truth) > 0.85
    assert fms(least_squares, truth) < fms(fitted, truth) - 0.15


@pytest.mark.slow
def test_poisson_identity_recovers_a_nonnegative_model_with_missing_counts(rng):
    truth = [rng.random((n, RANK)) + 0.1 for n in SHAPE]
    X = rng.poisson(3 * algebra.cpd_to_tensor(truth)).astype(float)
    X[rng.random(SHAPE) < 0.3] = np.nan
    fitted, res = _fit(X, Poisson(link="identity"), positive=True)
    assert res.success
    assert fms(fitted, truth) > 0.9


def test_coupled_counts_and_continuous_data_match_autograd(rng):
    a = sdf.Variable(0.3 * rng.standard_normal((5, 2)), name="a")
    b = sdf.Variable(0.3 * rng.standard_normal((4, 2)), name="b")
    c = sdf.Variable(0.3 * rng.standard_normal((3, 2)), name="c")
    d = sdf.Variable(rng.standard_normal((6, 2)), name="d")
    counts = rng.poisson(2.0, (5, 4, 3)).astype(float)
    Y = rng.standard_normal((5, 6))
    model = sdf.Model(counts=sdf.CPD(counts, [a, b, c], loss="poisson"),
                      conc=sdf.CPD(Y, [a, d], weight=0.5))
    problem = Problem.from_model(model)
    w = model.weights["counts"]

    def f_ref(z):
        v = {n: anp.reshape(z[problem.offsets[k]: problem.offsets[k + 1]], var.shape)
             for k, (n, var) in enumerate(zip(problem.names, problem.variables))}
        M = anp.einsum("ir,jr,kr->ijk", v["a"], v["b"], v["c"])
        xlogx = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1)), 0)
        poisson = anp.sum(anp.exp(M) - counts * M + xlogx - counts)
        return w * poisson + 0.25 * anp.sum((v["a"] @ v["d"].T - Y) ** 2)

    point = problem.point(problem.z0)
    assert point.f == pytest.approx(f_ref(problem.z0), rel=1e-10)
    np.testing.assert_allclose(point.gradient(), grad(f_ref)(problem.z0), rtol=1e-8)


@pytest.mark.slow
def test_coupled_model_with_two_losses_recovers_the_shared_factor(rng):
    truth = [0.6 * rng.standard_normal((n, RANK)) for n in SHAPE]
    D = rng.standard_normal((15, RANK))
    counts = rng.poisson(np.exp(algebra.cpd_to_tensor(truth))).astype(float)
    Y = truth[0] @ D.T + 0.05 * rng.standard_normal((SHAPE[0], 15))
    vs = _start(np.random.default_rng(1))
    d = sdf.Variable(0.3 * np.random.default_rng(2).standard_normal((15, RANK)), name="d")
    model = sdf.Model(counts=sdf.CPD(counts, vs, loss="poisson"),
                      conc=sdf.CPD(Y, [vs[0], d]))
    res = model.fit(max_iter=300)
    assert res.success
    assert fms([res[v] for v in vs], truth) > 0.9
    assert res.relerr["conc"] < 0.1
