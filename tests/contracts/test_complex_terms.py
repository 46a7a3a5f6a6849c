"""Contract tests for complex values: every term that takes them, on every data kind that
holds them, against autograd on the real split.

The engine stores a complex variable as its interleaved real and imaginary parts, so its
gradient and Gauss-Newton product are those of the real function ``f(u)`` of the real
vector ``u``: autograd differentiates the reference objective ``sum w/2 |r|^2`` (``r``
complex) with respect to ``u``, and ``J^T J v`` of the residual ``[Re r; Im r]``. Cases
cover complex data with complex factors, real data with complex factors (the model is
compared in full with the data), complex data with real factors and mixes, one factor
sent through a transform. Terms and transforms that take real values only must refuse
complex ones with a located error; nothing complex is ever made real.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, jacobian

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.errors import ModelError
from sdf.problem import Problem
from sdf.tensors import (CPDTensor, DenseTensor, IncompleteTensor, MaskedTensor, SparseTensor,
                         Tensor, TTTensor, TuckerTensor)

from _reference import tucker as tucker_model

SHAPES = {2: (4, 3), 3: (4, 3, 5)}


def _complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


# ----------------------------------------------------------------------------- data kinds


def dense(shape, rng, cplx=True):
    D = _complex(rng, shape) if cplx else rng.standard_normal(shape)
    return DenseTensor(D), D, None


def incomplete(shape, rng, cplx=True):
    D = _complex(rng, shape) if cplx else rng.standard_normal(shape)
    gaps = rng.random(shape) < 0.4
    gaps.flat[0] = False
    if cplx:  # NaN in either part marks a missing entry
        D = np.where(gaps, np.where(rng.random(shape) < 0.5, np.nan + 1j, 1.0 + 1j * np.nan), D)
    else:
        D = np.where(gaps, np.nan, D)
    return IncompleteTensor(D), D, ~gaps


def masked(shape, rng, cplx=True):
    D = _complex(rng, shape) if cplx else rng.standard_normal(shape)
    gaps = rng.random(shape) < 0.1
    gaps.flat[0] = False
    D = np.where(gaps, np.nan, D)
    return MaskedTensor(D), D, ~gaps


def sparse(shape, rng, cplx=True):
    keep = rng.random(shape) < 0.4
    keep.flat[0] = True
    subs = np.argwhere(keep)
    vals = _complex(rng, (len(subs),)) if cplx else rng.standard_normal(len(subs))
    D = np.zeros(shape, dtype=vals.dtype)
    D[tuple(subs.T)] = vals
    return SparseTensor.from_entries(subs, vals, shape), D, None


def cpd(shape, rng, cplx=True):
    F = [_complex(rng, (n, 2)) if cplx else rng.standard_normal((n, 2)) for n in shape]
    w = _complex(rng, (2,)) if cplx else rng.standard_normal(2)
    return CPDTensor(F, weights=w), algebra.cpd_to_tensor([F[0] * w, *F[1:]]), None


def tucker(shape, rng, cplx=True):
    U = [_complex(rng, (n, 2)) if cplx else rng.standard_normal((n, 2)) for n in shape]
    G = _complex(rng, (2,) * len(shape)) if cplx else rng.standard_normal((2,) * len(shape))
    return TuckerTensor(U, G), algebra.tucker_to_tensor(U, G), None


KINDS: dict[str, Callable[..., tuple[Tensor, np.ndarray, np.ndarray | None]]] = {
    "dense": dense, "incomplete": incomplete, "masked": masked, "sparse": sparse,
    "cpd": cpd, "tucker": tucker,
}
#: Which of the data and the factors are complex: (data, factors).
MIXES = {"complex-complex": (True, True), "real-complex": (False, True),
         "complex-real": (True, False)}


# ----------------------------------------------------------------------------- reference


def _split_unpack(problem: Problem) -> Callable[[Any], dict[str, Any]]:
    """The variables' values (complex where the variable is) from the real vector."""
    def unpack(u: Any) -> dict[str, Any]:
        out = {}
        for k, (name, var) in enumerate(zip(problem.names, problem.variables)):
            seg = u[problem.offsets[k]: problem.offsets[k + 1]]
            if problem.complex_variables[k]:
                seg = seg[0::2] + 1j * seg[1::2]
            out[name] = anp.reshape(seg, var.shape)
        return out
    return unpack


def check_complex_model(model: sdf.Model, residuals: Callable[[dict[str, Any]], list],
                        rng: np.random.Generator, rtol: float = 1e-7) -> None:
    """The engine's f, gradient and Gauss-Newton product match autograd on the real
    split; ``residuals(values)`` gives (weight, complex residual) pairs."""
    problem = Problem.from_model(model)
    z = problem.z0 + 0.1 * rng.standard_normal(problem.n)
    point = problem.point(z)
    unpack = _split_unpack(problem)

    def f_ref(u):
        return sum(0.5 * w * anp.sum(anp.real(r) ** 2 + anp.imag(r) ** 2)
                   for w, r in residuals(unpack(u)))

    def r_ref(u):
        parts = []
        for w, r in residuals(unpack(u)):
            parts += [anp.sqrt(w) * anp.ravel(anp.real(r)), anp.sqrt(w) * anp.ravel(anp.imag(r))]
        return anp.concatenate(parts)

    assert point.f == pytest.approx(f_ref(z), rel=rtol)
    g_ref = grad(f_ref)(z)
    np.testing.assert_allclose(point.gradient(), g_ref, rtol=rtol,
                               atol=rtol * np.abs(g_ref).max())
    v = rng.standard_normal(problem.n)
    J = jacobian(r_ref)(z)  # reverse mode only (autograd has no forward mode of inv)
    jtjv = J.T @ (J @ v)
    np.testing.assert_allclose(point.gn_product(v), jtjv, rtol=rtol,
                               atol=rtol * np.abs(jtjv).max())
    # The preconditioner is symmetric positive definite for the real inner product.
    M = point.preconditioner()
    a, b = rng.standard_normal(problem.n), rng.standard_normal(problem.n)
    assert a @ M(b) == pytest.approx(b @ M(a), rel=1e-6, abs=1e-12)
    assert a @ M(a) > 0


def _cpd_full(factors: list[Any]) -> Any:
    letters = "ijklm"[: len(factors)]
    return anp.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)


CASES = [(kind, order, mix) for kind in KINDS for order in SHAPES for mix in MIXES]


# autograd's own reference takes the real part of a real variable's cotangent (as the
# engine does), warning as it casts.
@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning:autograd")
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"cpd-{c[0]}-order{c[1]}-{c[2]}")
def test_complex_cpd_matches_autograd(case, rng):
    kind, order, mix = case
    data_complex, factors_complex = MIXES[mix]
    tensor, dense_form, known = KINDS[kind](SHAPES[order], rng, data_complex)
    assert tensor.is_complex == data_complex
    names = [f"a{n}" for n in range(order)]
    starts = [_complex(rng, (I, 2)) if factors_complex else rng.standard_normal((I, 2))
              for I in SHAPES[order]]
    vs = [sdf.Variable(s, name=n) for s, n in zip(starts, names)]
    # One factor through a transform (holomorphic: a known complex matrix times it), and
    # the last factor real in the complex-complex case (a real variable in a complex term).
    X = _complex(rng, (SHAPES[order][1], SHAPES[order][1]))
    inputs: list[Any] = [vs[0], tf.matvec(X, vs[1]), *vs[2:]]
    if mix == "complex-complex" and order == 3:
        vs[2] = sdf.Variable(rng.standard_normal((SHAPES[order][2], 2)), name="a2")
        inputs[2] = vs[2]
    model = sdf.Model(t=sdf.CPD(tensor, inputs))
    model.check()
    w = model.weights["t"]
    target = dense_form if known is None else dense_form[known]

    def residuals(v):
        M = _cpd_full([v["a0"], anp.dot(X, v["a1"]), *(v[n] for n in names[2:])])
        return [(w, (M if known is None else M[known]) - target)]

    check_complex_model(model, residuals, rng)


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning:autograd")
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("mix", sorted(MIXES))
def test_complex_ll1_matches_autograd(kind, mix, rng):
    data_complex, factors_complex = MIXES[mix]
    tensor, dense_form, known = KINDS[kind](SHAPES[3], rng, data_complex)
    I, J, K = SHAPES[3]
    L = [2, 1]
    index = np.repeat(np.arange(len(L)), L)
    make = (lambda s: _complex(rng, s)) if factors_complex else rng.standard_normal
    a, b, c = (sdf.Variable(make(s), name=n) for s, n in (((I, 3), "a"), ((J, 3), "b"),
                                                          ((K, 2), "c")))
    model = sdf.Model(t=sdf.LL1(tensor, [a, tf.matvec(np.eye(J) * (1 + 0.5j), b), c], L=L))
    model.check()
    w = model.weights["t"]
    target = dense_form if known is None else dense_form[known]

    def residuals(v):
        M = anp.einsum("ir,jr,kr->ijk", v["a"], (1 + 0.5j) * v["b"], v["c"][:, index])
        return [(w, (M if known is None else M[known]) - target)]

    check_complex_model(model, residuals, rng)


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning:autograd")
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"tucker-{c[0]}-order{c[1]}-{c[2]}")
@pytest.mark.parametrize("key", ["lmlra", "btd"])
def test_complex_tucker_terms_match_autograd(key, case, rng):
    kind, order, mix = case
    data_complex, factors_complex = MIXES[mix]
    tensor, dense_form, known = KINDS[kind](SHAPES[order], rng, data_complex)
    make = (lambda s: _complex(rng, s)) if factors_complex else rng.standard_normal
    ranks = [(2,) * order] if key == "lmlra" else [(2,) * order, (1,) * order]
    blocks, names = [], []
    for b, R in enumerate(ranks):
        vs = [sdf.Variable(make((I, r)), name=f"u{b}{n}")
              for n, (I, r) in enumerate(zip(SHAPES[order], R))]
        core = sdf.Variable(make(R), name=f"s{b}")
        blocks.append([*vs, core])
        names.append([v.name for v in vs] + [core.name])
    X = _complex(rng, (SHAPES[order][0],) * 2)
    blocks[0][0] = tf.matvec(X, blocks[0][0])
    term = (sdf.LMLRA(tensor, blocks[0][:-1], blocks[0][-1]) if key == "lmlra"
            else sdf.BTD(tensor, blocks))
    model = sdf.Model(t=term)
    model.check()
    w = model.weights["t"]
    target = dense_form if known is None else dense_form[known]

    def residuals(v):
        M = 0.0
        for b, block in enumerate(names):
            U = [v[n] for n in block[:-1]]
            if b == 0:
                U[0] = anp.dot(X, U[0])
            M = M + tucker_model(U, v[block[-1]])
        return [(w, (M if known is None else M[known]) - target)]

    check_complex_model(model, residuals, rng)


def tensor_train(shape, rng, cplx=True):
    sizes = [1, *([2] * (len(shape) - 1)), 1]
    make = (lambda s: _complex(rng, s)) if cplx else rng.standard_normal
    T = TTTensor([make((sizes[k], n, sizes[k + 1])) for k, n in enumerate(shape)])
    return T, T.to_dense(), None


def _ring_full(cores: list[Any]) -> Any:
    bonds, modes = "abcd", "ijkl"
    n = len(cores)
    spec = ",".join(f"{bonds[k]}{modes[k]}{bonds[(k + 1) % n]}" for k in range(n))
    return anp.einsum(f"{spec}->{modes[:n]}", *cores)


RING_KINDS = {**KINDS, "tt": tensor_train}


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning:autograd")
@pytest.mark.parametrize("case", [(kind, order, mix) for kind in RING_KINDS for order in SHAPES
                                  for mix in MIXES],
                         ids=lambda c: f"{c[0]}-order{c[1]}-{c[2]}")
@pytest.mark.parametrize("key", ["TT", "TR"])
def test_complex_ring_terms_match_autograd(key, case, rng):
    """Tensor trains and rings: residual formed (dense data and data expanded once),
    known entries (completion), tensor-train data contracted core by core."""
    kind, order, mix = case
    data_complex, factors_complex = MIXES[mix]
    tensor, dense_form, known = RING_KINDS[kind](SHAPES[order], rng, data_complex)
    check_ring_model(key, tensor, dense_form, known, factors_complex, mix, order, rng)


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning:autograd")
@pytest.mark.parametrize("kind", ["cpd", "tucker", "sparse"])
@pytest.mark.parametrize("mix", sorted(MIXES))
@pytest.mark.parametrize("key", ["TT", "TR"])
def test_complex_ring_terms_through_mttkrps_match_autograd(key, kind, mix, rng, monkeypatch):
    """Data too large to expand are read through MTTKRPs of the (conjugated) ring seen as
    a CPD."""
    import sdf.terms.tt

    monkeypatch.setattr(sdf.terms.tt, "_MAX_EXPAND", 0)
    data_complex, factors_complex = MIXES[mix]
    tensor, dense_form, known = KINDS[kind](SHAPES[3], rng, data_complex)
    check_ring_model(key, tensor, dense_form, known, factors_complex, mix, 3, rng)


def check_ring_model(key, tensor, dense_form, known, factors_complex, mix, order, rng):
    shape = SHAPES[order]
    r0 = 2 if key == "TR" else 1
    sizes = [r0, *([2] * (order - 1)), r0]
    make = (lambda s: _complex(rng, s)) if factors_complex else rng.standard_normal
    vs = [sdf.Variable(make((sizes[k], n, sizes[k + 1])), name=f"g{k}")
          for k, n in enumerate(shape)]
    if mix == "complex-complex" and order == 3:  # a real core in a complex term
        vs[2] = sdf.Variable(rng.standard_normal(vs[2].shape), name="g2")
    model = sdf.Model(t=getattr(sdf, key)(tensor, vs))
    model.check()
    w = model.weights["t"]
    target = dense_form if known is None else dense_form[known]

    def residuals(v):
        M = _ring_full([v[f"g{k}"] for k in range(order)])
        return [(w, (M if known is None else M[known]) - target)]

    check_complex_model(model, residuals, rng)


def test_complex_l2_matches_autograd(rng):
    a = sdf.Variable(_complex(rng, (4, 2)), name="a")
    b = sdf.Variable(rng.standard_normal((3, 2)), name="b")
    targets = [_complex(rng, (4, 2)), _complex(rng, (3, 2))]
    model = sdf.Model(r=sdf.L2([a, tf.scale(b, 2.0)], weight=0.3, target=targets))
    check_complex_model(model, lambda v: [(0.3, anp.concatenate([
        anp.ravel(v["a"] - targets[0]), anp.ravel(2.0 * v["b"] - targets[1])]))], rng)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("make, match", [
    (lambda a, T: sdf.CPD(T, [tf.nonneg(a), a]),
     r"term 't', factor 0 \('nonneg\(a\)'\): nonneg takes real values only, but its input "
     r"'a' is complex"),
    (lambda a, T: sdf.CPD(T, [tf.sigmoid(a), a]),
     r"term 't', factor 0 \('sigmoid\(a\)'\): sigmoid takes real values only"),
    (lambda a, T: sdf.CPD(T, [a, a], loss="poisson"),
     r"term 't': the 'poisson' loss takes real data and models only"),
    (lambda a, T: sdf.L1([a], weight=1.0),
     r"term 't': L1 terms take real data and factors only"),
    (lambda a, T: sdf.L0([a], weight=1.0),
     r"term 't': L0 terms take real data and factors only"),
])
def test_complex_values_where_they_make_no_sense_are_refused(make, match, rng):
    a = sdf.Variable(_complex(rng, (4, 2)), name="a")
    T = rng.poisson(3.0, (4, 4)).astype(float)
    with pytest.raises(ModelError, match=match):
        sdf.Model(t=make(a, T)).check()


def test_complex_data_in_a_real_only_term_is_refused(rng):
    a = sdf.Variable(_complex(rng, (4, 2)), name="a")
    with pytest.raises(ModelError, match=r"term 't': L1 terms take real data"):
        sdf.Model(t=sdf.L1([a], weight=1.0)).check()


# ----------------------------------------------------------------------------- never made real


def test_variable_keeps_the_imaginary_part(rng):
    z = _complex(rng, (3, 2))
    v = sdf.Variable(z)
    assert v.is_complex and v.value.dtype == np.complex128
    np.testing.assert_array_equal(v.value, z)
    assert sdf.Variable.random((3, 2), seed=1, dtype=complex).value.imag.any()
    assert np.array_equal(sdf.Variable.random((3, 2), seed=1, dtype=complex).value,
                          sdf.Variable.random((3, 2), seed=1, dtype=complex).value)
    with pytest.raises(ModelError, match=r"Variable.random: dtype must be float or complex"):
        sdf.Variable.random(3, dtype=int)


@pytest.mark.parametrize("kind", sorted(RING_KINDS))
def test_each_data_kind_keeps_the_imaginary_part(kind, rng):
    tensor, dense_form, known = RING_KINDS[kind](SHAPES[3], rng)
    assert tensor.is_complex
    got = tensor.to_dense()
    assert got.dtype == np.complex128
    where = np.ones(got.shape, bool) if known is None else known
    np.testing.assert_allclose(got[where], dense_form[where], rtol=1e-12, atol=1e-12)
    keep = dense_form[where]
    assert tensor.norm_squared() == pytest.approx(float(np.vdot(keep, keep).real), rel=1e-12)
    A = [_complex(rng, (n, 2)) for n in SHAPES[3]]
    M = algebra.cpd_to_tensor(A)
    assert tensor.inner_cpd(A) == pytest.approx(complex(np.sum(np.where(where, dense_form, 0)
                                                                * M)), rel=1e-10)


def test_complex_constant_and_target_stay_complex(rng):
    X = _complex(rng, (3, 2))
    assert sdf.expr.as_expr(X).value.dtype == np.complex128
    assert sdf.L2(sdf.Variable(np.ones((3, 2))), target=X).target[0].dtype == np.complex128
