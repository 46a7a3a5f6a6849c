"""Contract tests for complex values through every transform of transform_cases.CASES.

Each transform (chains step by step) is fed complex inputs and fitted to a complex target
by an L2 term, compiled by the engine: f, the gradient and the Gauss-Newton product must
match autograd on the real split (see test_complex_terms). Holomorphic transforms and the
ones that conjugate (conj, ctranspose, abs, normalize, custom functions) are covered
alike; a transform for real values only must refuse a complex input with a located error.
"""

from __future__ import annotations

from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest

import sdf
from sdf import transforms as tf
from sdf.errors import ModelError
from test_complex_terms import check_complex_model
from transform_cases import CASES, TOEP53, X54, Case, Chain


def _steps(case: Case) -> tuple[Any, ...]:
    return case.transform.steps if isinstance(case.transform, Chain) else (case.transform,)


def _takes_complex(case: Case) -> bool:
    return all(step.complex_vjp is not None for step in _steps(case))


def _complexify(z: Any, rng: np.random.Generator) -> Any:
    """The case's valid real input plus a small imaginary part (near the real axis, so
    logarithms, roots and inverses stay on their principal branches)."""
    if isinstance(z, tuple):
        return tuple(_complexify(a, rng) for a in z)
    return z + 0.3j * rng.standard_normal(np.shape(z))


#: The autograd formulas of transforms whose complex form conjugates (the real cases'
#: references transpose).
def _normalize(z: Any) -> Any:
    return z / anp.sqrt(anp.sum(anp.abs(z) ** 2, axis=0))


def _orth(z: Any) -> Any:
    """z (z^H z)^(-1/2) by the Denman-Beavers iteration (autograd-differentiable)."""
    S = anp.dot(anp.conj(z).T, z)
    Y, Z = S, anp.eye(S.shape[0])
    for _ in range(40):
        Y, Z = 0.5 * (Y + anp.linalg.inv(Z)), 0.5 * (Z + anp.linalg.inv(Y))
    return anp.dot(z, Z)


COMPLEX_REFS = {
    "gram": lambda z: anp.dot(anp.conj(z).T, z),
    "orth": _orth,
    "chain-toeplitz-orth-transpose": lambda z: _orth(z[TOEP53]).T,
    "normalize": _normalize,
    "normalize-vector": _normalize,
    "abs-smooth": lambda z: anp.sqrt(anp.abs(z) ** 2 + 0.01) - 0.1,
    "chain-matvec-normalize-exp": lambda z: anp.exp(_normalize(anp.dot(X54, z))),
}

EXTRA = [
    Case("abs-complex", tf.Abs(), lambda rng: rng.standard_normal((4, 3)), anp.abs),
    Case("abs-smooth-complex", tf.Abs(eps=0.1), lambda rng: rng.standard_normal((4, 3)),
         lambda z: anp.sqrt(anp.abs(z) ** 2 + 0.01) - 0.1),
    Case("custom-nonholomorphic", tf.Custom(lambda z: anp.conj(z) * z ** 2, 1, "c"),
         lambda rng: rng.standard_normal((4, 3)), lambda z: anp.conj(z) * z ** 2),
    Case("matvec-complex-matrix", tf.MatVec(np.arange(20).reshape(5, 4) * (1 - 0.5j)),
         lambda rng: rng.standard_normal((4, 3)),
         lambda z: anp.dot(np.arange(20).reshape(5, 4) * (1 - 0.5j), z)),
]
COMPLEX_CASES = [c for c in CASES + EXTRA if _takes_complex(c)]
REAL_ONLY = [c for c in CASES if not _takes_complex(c)]


def _model(case: Case, inputs: tuple[np.ndarray, ...], target: np.ndarray | None,
           rng: np.random.Generator) -> tuple[sdf.Model, list[str], np.ndarray]:
    names = [f"z{k}" for k in range(len(inputs))]
    vs = [sdf.Variable(a, name=n) for a, n in zip(inputs, names)]
    expr: Any = _steps(case)[0](*vs)
    for step in _steps(case)[1:]:
        expr = step(expr)
    if target is None:
        shape = expr.shape
        target = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        if case.id.startswith("abs"):
            target = target.real
    return sdf.Model(r=sdf.L2(expr, weight=0.7, target=target)), names, target


@pytest.mark.parametrize("case", COMPLEX_CASES, ids=repr)
def test_complex_transform_matches_autograd(case, rng):
    z = case.make(rng)
    inputs = _complexify(z if isinstance(z, tuple) else (z,), rng)
    model, names, target = _model(case, inputs, None, rng)
    model.check()
    ref = COMPLEX_REFS.get(case.id, case.ref)
    check_complex_model(
        model, lambda v: [(0.7, ref(*(v[n] for n in names)) - target)], rng, rtol=1e-6)


@pytest.mark.parametrize("case", REAL_ONLY, ids=repr)
def test_real_only_transform_refuses_complex_input(case, rng):
    z = case.make(rng)
    inputs = _complexify(z if isinstance(z, tuple) else (z,), rng)
    names = [f"z{k}" for k in range(len(inputs))]
    vs = [sdf.Variable(a, name=n) for a, n in zip(inputs, names)]
    expr: Any = _steps(case)[0](*vs)
    for step in _steps(case)[1:]:
        expr = step(expr)
    refused = next(s for s in _steps(case) if s.complex_vjp is None)
    with pytest.raises(ModelError, match=rf"term 'r', factor 0 \(.*\): {refused.name} "
                                         r"takes real values only, but its input .* is complex"):
        sdf.Model(r=sdf.L2(expr)).check()


def test_conj_and_ctranspose_of_real_values_are_real(rng):
    a = sdf.Variable(rng.standard_normal((3, 2)), name="a")
    res = sdf.Model(r=sdf.L2(tf.ctranspose(tf.conj(a)), target=np.ones((2, 3)),
                             weight=1.0)).fit(max_iter=20)
    assert res[a].dtype == np.float64
    np.testing.assert_allclose(res[a], np.ones((3, 2)), atol=1e-8)
