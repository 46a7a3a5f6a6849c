"""Contract tests of the losses: every loss on every data term and data kind.

Each loss is checked on its own against an independent autograd formula (value, first
derivative, and the Gauss-Newton weight: the expected second derivative, i.e. the second
derivative at data equal to the mean, or the reweighting ``ell'(r) / r`` for Huber).
Then every data term under every loss, on every data kind the loss can read, compiled
into a model: the engine's f, gradient and generalized Gauss-Newton product
``J^T diag(c) J v`` must match autograd on the dense model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import elementwise_grad as egrad
from autograd import make_jvp, make_vjp

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.errors import ModelError
from sdf.losses import MEAN_EPS, Bernoulli, Beta, Gamma, Gaussian, Huber, Loss, Poisson
from sdf.problem import Problem
from sdf.tensors import CPDTensor, DenseTensor, IncompleteTensor, MaskedTensor, SparseTensor

from _reference import btd_model, ll1_model, lmlra_model, tucker

EPS = 1e-10


def _xlogx(x: Any) -> Any:
    return anp.where(x > 0, x * anp.log(anp.where(x > 0, x, 1.0)), 0.0)


#: Independent references: (loss, ell(m, x) in autograd, mean(m), positive model needed).
REFERENCES: dict[str, tuple[Loss, Callable[[Any, Any], Any], Callable[[Any], Any], bool]] = {
    "gaussian": (Gaussian(), lambda m, x: 0.5 * (m - x) ** 2, lambda m: m, False),
    "poisson-log": (Poisson(), lambda m, x: anp.exp(m) - x * m + _xlogx(x) - x,
                    anp.exp, False),
    "poisson-identity": (Poisson(link="identity"),
                         lambda m, x: (m + EPS) - x + _xlogx(x) - x * anp.log(m + EPS),
                         lambda m: m + EPS, True),
    "bernoulli": (Bernoulli(),
                  lambda m, x: anp.log1p(anp.exp(m)) - x * m + _xlogx(x) + _xlogx(1 - x),
                  lambda m: 1 / (1 + anp.exp(-m)), False),
    "gamma-log": (Gamma(), lambda m, x: x * anp.exp(-m) + m - anp.log(x) - 1,
                  anp.exp, False),
    "gamma-identity": (Gamma(link="identity"),
                       lambda m, x: x / (m + EPS) - anp.log(x / (m + EPS)) - 1,
                       lambda m: m + EPS, True),
    "huber": (Huber(0.7), lambda m, x: anp.where(anp.abs(m - x) <= 0.7, 0.5 * (m - x) ** 2,
                                                  0.7 * (anp.abs(m - x) - 0.35)),
              lambda m: m, False),
    "beta-0.5": (Beta(0.5), lambda m, x: (x**0.5 - 0.5 * (m + EPS) ** 0.5
                                          - 0.5 * x * (m + EPS) ** -0.5) / -0.25,
                 lambda m: m + EPS, True),
    "beta-kl": (Beta(1.0), lambda m, x: _xlogx(x) - x * anp.log(m + EPS) - x + m + EPS,
                lambda m: m + EPS, True),
    "beta-is": (Beta(0.0), lambda m, x: x / (m + EPS) - anp.log(x / (m + EPS)) - 1,
                lambda m: m + EPS, True),
    "beta-3": (Beta(3.0), lambda m, x: (x**3 + 2 * (m + EPS) ** 3 - 3 * x * (m + EPS) ** 2) / 6,
               lambda m: m + EPS, True),
}


def sample_data(name: str, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Data drawn around ``mean`` inside the loss's domain."""
    if name.startswith("poisson"):
        return rng.poisson(mean).astype(float)
    if name == "bernoulli":
        return (rng.random(mean.shape) < mean).astype(float)
    if name.startswith(("gamma", "beta")):
        return mean * rng.gamma(2.0, 0.5, size=mean.shape) + 0.01
    return mean + rng.standard_normal(mean.shape)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_loss_value_and_derivative_match_autograd(name, rng):
    loss, ell, mean, positive = REFERENCES[name]
    m = rng.random(50) + 0.2 if positive else rng.standard_normal(50)
    x = sample_data(name, np.asarray(mean(m)), rng)
    np.testing.assert_allclose(loss.value(m, x), ell(m, x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss.derivative(m, x), egrad(ell, 0)(m, x), rtol=1e-8,
                               atol=1e-10)
    value, slope, weight = loss.evaluate(m, x)
    np.testing.assert_array_equal(value, loss.value(m, x))
    assert np.all(loss.value(m, x) >= -1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_loss_weight_is_its_expected_curvature(name, rng):
    loss, ell, mean, positive = REFERENCES[name]
    m = rng.random(50) + 0.2 if positive else rng.standard_normal(50)
    x = sample_data(name, np.asarray(mean(m)), rng)
    weight = loss.curvature(m, x)
    if name == "huber":  # the reweighting ell'(r) / r of the quadratic majorizer
        r = m - x
        want = np.where(np.abs(r) <= 0.7, 1.0, 0.7 / np.abs(r))
    else:  # Fisher information: the second derivative at data equal to the mean
        want = egrad(egrad(ell, 0), 0)(m, np.asarray(mean(m)))
    np.testing.assert_allclose(weight, want, rtol=1e-7)
    assert np.all(weight >= 0)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_loss_is_zero_at_an_exact_fit(name, rng):
    loss, _, mean, positive = REFERENCES[name]
    m = rng.random(20) + 0.2 if positive else rng.standard_normal(20)
    x = np.asarray(mean(m))
    if name == "bernoulli":
        x = np.clip(x, 0.0, 1.0)
    np.testing.assert_allclose(loss.value(m, x), 0.0, atol=1e-9)


# ----------------------------------------------------------------------------- terms


SHAPE = (4, 3, 5)
KINDS = ["dense", "incomplete", "masked", "sparse", "cpd"]


def make_data(name: str, kind: str, rng: np.random.Generator) -> tuple[Any, np.ndarray,
                                                                         np.ndarray | None]:
    """(tensor, dense values, known mask or None) for the loss ``name``."""
    _, _, mean, positive = REFERENCES[name]
    base = rng.random(SHAPE) + 0.3 if positive else 0.5 * rng.standard_normal(SHAPE)
    D = sample_data(name, np.asarray(mean(base)), rng)
    if kind == "dense":
        return DenseTensor(D), D, None
    if kind in ("incomplete", "masked"):
        holed = D.copy()
        holed[rng.random(SHAPE) < 0.3] = np.nan
        holed.flat[0] = D.flat[0]
        cls = IncompleteTensor if kind == "incomplete" else MaskedTensor
        return cls(holed), holed, ~np.isnan(holed)
    if kind == "sparse":
        keep = (rng.random(SHAPE) < 0.5) & (D != 0)
        keep.flat[0] = D.flat[0] != 0
        dense = np.where(keep, D, 0.0)
        subs = np.argwhere(keep)
        return SparseTensor.from_entries(subs, D[keep], SHAPE), dense, None
    F = [0.5 * rng.random((n, 2)) + 0.1 for n in SHAPE]
    return CPDTensor(F), algebra.cpd_to_tensor(F), None


def _positive(v: sdf.Variable | Any, positive: bool) -> Any:
    return tf.nonneg(v) if positive else v


def _vars(shapes: list[tuple[int, ...]], names: list[str], rng: np.random.Generator,
          positive: bool) -> list[sdf.Variable]:
    scale = 0.8 if positive else 0.5
    return [sdf.Variable(scale * (rng.random(s) + 0.3 if positive else rng.standard_normal(s)),
                         name=n) for s, n in zip(shapes, names)]


def build(key: str, data: Any, loss: Loss, positive: bool, rng: np.random.Generator
          ) -> tuple[sdf.Term, Callable[[dict[str, Any]], Any]]:
    """A term under ``loss`` (inputs through x -> x^2 when the model must be positive,
    one input through it otherwise) and its dense model from the variables by name."""
    sq = (lambda a: a**2) if positive else (lambda a: a)
    if key == "cpd":
        vs = _vars([(n, 2) for n in SHAPE], ["a", "b", "c"], rng, positive)
        term = sdf.CPD(data, [_positive(vs[0], positive), tf.nonneg(vs[1]),
                              _positive(vs[2], positive)], loss=loss)
        return term, lambda v: anp.einsum("ir,jr,kr->ijk", sq(v["a"]), v["b"] ** 2,
                                           sq(v["c"]))
    if key == "lmlra":
        vs = _vars([(n, 2) for n in SHAPE] + [(2, 2, 2)], ["u", "v", "w", "s"], rng, positive)
        term = sdf.LMLRA(data, [_positive(vs[0], positive), tf.nonneg(vs[1]),
                                _positive(vs[2], positive)], _positive(vs[3], positive),
                         loss=loss)
        return term, lambda v: lmlra_model([sq(v["u"]), v["v"] ** 2, sq(v["w"]), sq(v["s"])])
    if key == "btd":
        names = ["u0", "v0", "w0", "s0", "u1", "v1", "w1", "s1"]
        shapes = [(n, 2) for n in SHAPE] + [(2, 2, 2)] + [(n, 1) for n in SHAPE] + [(1, 1, 1)]
        vs = _vars(shapes, names, rng, positive)
        blocks = [[_positive(x, positive) for x in vs[:4]],
                  [_positive(x, positive) for x in vs[4:]]]
        term = sdf.BTD(data, blocks, loss=loss)
        return term, lambda v: btd_model([sq(v[n]) for n in names], [4, 4])
    vs = _vars([(SHAPE[0], 3), (SHAPE[1], 3), (SHAPE[2], 2)], ["a", "b", "c"], rng, positive)
    term = sdf.LL1(data, [_positive(vs[0], positive), _positive(vs[1], positive),
                          tf.nonneg(vs[2])], L=[2, 1], loss=loss)
    return term, lambda v: ll1_model([sq(v["a"]), sq(v["b"]), v["c"] ** 2], [2, 1])


CASES = [(key, name, kind) for key in ("cpd", "lmlra", "btd", "ll1")
         for name in sorted(REFERENCES) if name != "gaussian" for kind in KINDS
         if not (kind == "sparse" and name.startswith(("gamma", "beta-is", "beta-0.5")))]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_term_under_loss_matches_autograd(case, rng):
    key, name, kind = case
    loss, ell, _, positive = REFERENCES[name]
    data, dense, known = make_data(name, kind, rng)
    term, model_fn = build(key, data, loss, positive, rng)
    model = sdf.Model(t=term)
    model.check()
    w = model.weights["t"]
    problem = Problem.from_model(model)
    z = problem.z0
    point = problem.point(z)
    mask = np.ones(SHAPE, bool) if known is None else known
    target = np.where(mask, dense, 1.0)

    def unpack(zz: Any) -> dict[str, Any]:
        return {n: anp.reshape(zz[problem.offsets[k]: problem.offsets[k + 1]], v.shape)
                for k, (n, v) in enumerate(zip(problem.names, problem.variables))}

    def model_at(zz: Any) -> Any:
        return model_fn(unpack(zz))[mask]

    def f_ref(zz: Any) -> Any:
        return w * anp.sum(ell(model_at(zz), target[mask]))

    assert point.f == pytest.approx(f_ref(z), rel=1e-9)
    g_ref = make_vjp(f_ref)(z)[0](1.0)
    np.testing.assert_allclose(point.gradient(), g_ref, rtol=1e-7,
                               atol=1e-9 * np.abs(g_ref).max())
    v = rng.standard_normal(problem.n)
    m = model_at(z)
    c = w * loss.curvature(m, target[mask])
    if key in ("cpd", "ll1") and kind == "sparse" and loss.linear_at_zero:
        # The CPD engine (LL1 runs on it) is exact at O(nnz R) there: the zeros are
        # linear in the model (no curvature), the stored
        # entries weigh with the exact second derivative x / mu^2.
        c = w * target[mask] / (m + MEAN_EPS) ** 2
    jtcjv = make_vjp(model_at)(z)[0](c * make_jvp(model_at)(z)(v)[1])
    out = point.gn_product(v)
    for var_id, extra in point.curvature().items():  # the transforms' own curvature
        k = problem.var_index[var_id]
        sl = slice(problem.offsets[k], problem.offsets[k + 1])
        out[sl] -= extra.ravel() * v[sl]
    np.testing.assert_allclose(out, jtcjv, rtol=1e-7, atol=1e-9 * np.abs(jtcjv).max())


@pytest.mark.parametrize("key", ["cpd", "lmlra", "btd", "ll1"])
def test_term_under_loss_has_exact_blocks(key, rng):
    data, _, _ = make_data("poisson-log", "masked", rng)
    term, _ = build(key, data, Poisson(), False, rng)
    point = Problem.from_model(sdf.Model(t=term)).point(Problem.from_model(
        sdf.Model(t=term)).z0)
    values = [point.value(e) for e in term.inputs]
    state = point.states[0]
    for k, block in enumerate(state.blocks()):
        if block is None or np.isscalar(block):
            continue
        dv = [np.zeros_like(x) for x in values]
        dv[k] = rng.standard_normal(values[k].shape)
        out = state.gn_product(dv)[k]
        want = dv[k] @ block if np.ndim(block) == 2 else np.einsum("ir,irs->is", dv[k], block)
        np.testing.assert_allclose(out, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


def test_loss_on_data_without_entries_names_the_term(rng):
    from sdf.tensors import Tensor

    class Opaque(Tensor):
        kind = "opaque"

        def __init__(self) -> None:
            self._shape = SHAPE

        def _norm_squared(self) -> float:
            return 1.0

        def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
            return np.zeros((SHAPE[n], mats[0].shape[1]))

    term, _ = build("cpd", Opaque(), Poisson(), False, rng)
    with pytest.raises(ModelError, match=r"term 't', loss 'poisson': needs the data's "
                                         r"entries, and opaque data cannot be read"):
        sdf.Model(t=term).check()
