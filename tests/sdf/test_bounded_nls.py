"""Bounds inside Gauss-Newton: the projected, active-set trust region of ``method="nls"``."""

import warnings

import numpy as np
import pytest

import sdf
from sdf.models.diagnostics import fms
from sdf.problem import Problem


def planted_nonneg(rng, noise=0.0, shape=(14, 12, 10), rank=3):
    factors = [np.abs(rng.standard_normal((n, rank))) for n in shape]
    for f in factors:
        f[rng.random(f.shape) < 0.3] = 0.0  # entries at the bound in the solution
    T = np.einsum("ir,jr,kr->ijk", *factors)
    if noise:
        T = T + noise * np.linalg.norm(T) / np.sqrt(T.size) * rng.standard_normal(T.shape)
    return T, factors


def nonneg_model(T, rank=3, seed=0):
    vs = [sdf.Variable(np.abs(sdf.Variable.random((n, rank), seed=seed + k).value),
                       name="abc"[k]) for k, n in enumerate(T.shape)]
    return sdf.Model(t=sdf.CPD(T, vs))


def fit_quietly(model, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Warning)
        return model.fit(**options)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_nonnegative_cpd_is_recovered(rng, seed):
    T, factors = planted_nonneg(rng)
    res = fit_quietly(nonneg_model(T, seed=seed), method="nls", lower=0.0, max_iter=200)
    assert res.stop.converged
    assert fms([res["a"], res["b"], res["c"]], factors) > 0.9999
    assert res.relerr["t"] < 1e-6


def test_bounds_are_respected_exactly(rng):
    T, _ = planted_nonneg(rng, noise=0.1)
    upper = {"b": np.full((12, 3), 0.8)}
    res = fit_quietly(nonneg_model(T), method="nls", lower={"a": 0.0, "b": 0.0, "c": 0.0},
                      upper=upper, max_iter=100)
    for name in "abc":
        assert res[name].min() >= 0.0
    assert res["b"].max() <= 0.8
    assert np.any(res["a"] == 0.0)  # a bound reached, exactly


def test_box_solution_of_a_separable_problem_is_exact(rng):
    # With an orthonormal constant factor Q the objective separates per entry of a, so
    # the bounded solution is the clipped least-squares one: entries on both bounds.
    Q = np.linalg.qr(rng.standard_normal((9, 4)))[0]
    X = rng.standard_normal((7, 9))
    a = sdf.Variable(np.full((7, 4), 0.1), name="a")
    res = fit_quietly(sdf.Model(m=sdf.CPD(X, [a, Q])), method="nls", lower=-0.3,
                      upper={"a": 0.5}, max_iter=50)
    expected = np.clip(X @ Q, -0.3, 0.5)
    np.testing.assert_allclose(res["a"], expected, atol=1e-10)
    assert np.any(res["a"] == 0.5) and np.any(res["a"] == -0.3)
    assert res.stop.converged


def test_stops_at_a_kkt_point(rng):
    T, factors = planted_nonneg(rng, noise=0.05)
    model = nonneg_model(T)
    res = fit_quietly(model, method="nls", lower=0.0, tol_fun=0.0, tol_x=0.0, max_iter=300)
    assert res.stop is sdf.StopReason.TOL_GRAD
    problem = Problem.from_model(model)
    z = np.concatenate([res[n].ravel() for n in model.variable_names])
    g = problem.point(z).gradient()
    projected = z - np.maximum(z - g, 0.0)
    assert np.max(np.abs(projected)) <= 1e-6 * np.max(np.abs(problem.point(problem.z0).gradient()))
    assert fms([res["a"], res["b"], res["c"]], factors) > 0.99


def test_reported_error_is_the_recomputed_one(rng):
    T, _ = planted_nonneg(rng, noise=0.1)
    res = fit_quietly(nonneg_model(T), method="nls", lower=0.0, max_iter=50)
    model = np.einsum("ir,jr,kr->ijk", res["a"], res["b"], res["c"])
    assert res.relerr["t"] == pytest.approx(np.linalg.norm(model - T) / np.linalg.norm(T),
                                            rel=1e-10)


def test_start_outside_the_box_is_projected(rng):
    T, _ = planted_nonneg(rng)
    vs = [sdf.Variable.random((n, 3), seed=k, name="abc"[k]) for k, n in enumerate(T.shape)]
    res = fit_quietly(sdf.Model(t=sdf.CPD(T, vs)), method="nls", lower=0.0, max_iter=200)
    assert min(res[n].min() for n in "abc") >= 0.0
    assert res.relerr["t"] < 1e-3


def test_unbounded_variables_stay_free(rng):
    T, _ = planted_nonneg(rng, noise=0.1)
    res = fit_quietly(nonneg_model(T), method="nls", lower={"a": 0.0}, max_iter=50)
    assert res["a"].min() >= 0.0
    unbounded = fit_quietly(nonneg_model(T), method="nls", max_iter=50)
    assert res.relerr["t"] >= unbounded.relerr["t"] - 1e-9


def test_minf_takes_the_same_lower_upper_options(rng):
    T, _ = planted_nonneg(rng, noise=0.1)
    a = fit_quietly(nonneg_model(T), method="minf", lower=0.0, upper={"b": 0.8}, max_iter=30)
    b = fit_quietly(nonneg_model(T), method="minf", max_iter=30,
                    bounds={"a": (0.0, None), "b": (0.0, 0.8), "c": (0.0, None)})
    np.testing.assert_array_equal(a["b"], b["b"])


@pytest.mark.parametrize("options,message", [
    ({"lower": {"zz": 0.0}}, r"NLSOptions.lower: unknown variable\(s\) 'zz'"),
    ({"lower": {"a": np.zeros((3, 3))}}, r"NLSOptions.lower\['a'\]: expected a number or an "
                                          r"array broadcasting to the variable's shape \(14, 3\)"),
    ({"lower": 1.0, "upper": {"b": 0.5}}, r"variable 'b': a lower bound exceeds its upper"),
    ({"lower": "zero"}, r"NLSOptions.lower must be None, a number or a dict"),
    ({"lower": float("nan")}, r"NLSOptions.lower is NaN"),
    ({"lower": 0.0, "trust": "lm"}, r"bounds \(lower/upper\) need trust='dogleg'"),
])
def test_bad_bounds_are_named(rng, options, message):
    T, _ = planted_nonneg(rng)
    with pytest.raises(sdf.OptionError, match=message):
        nonneg_model(T).fit(method="nls", **options)


def test_minf_refuses_both_forms_of_bounds(rng):
    T, _ = planted_nonneg(rng)
    with pytest.raises(sdf.OptionError, match="not both"):
        nonneg_model(T).fit(method="minf", lower=0.0, bounds={"a": (0.0, None)})
