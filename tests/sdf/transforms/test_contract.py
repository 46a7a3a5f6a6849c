"""Contract tests run over every transform example in transform_cases.CASES."""

from __future__ import annotations

import inspect

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import sdf
from sdf import transforms as tf
from sdf.transforms._base import Transform
from transform_cases import CASES, COVERED, Case

# ----------------------------------------------------------------------------- helpers


def as_tuple(tr: Transform, z):
    return tuple(z) if tr.n_inputs > 1 else (z,)


def from_tuple(tr: Transform, parts):
    return tuple(parts) if tr.n_inputs > 1 else parts[0]


def random_like(tr: Transform, z, rng):
    return from_tuple(tr, [rng.standard_normal(np.shape(a)) for a in as_tuple(tr, z)])


def inner(tr: Transform, a, b) -> float:
    return float(sum(np.vdot(np.asarray(x), np.asarray(y)) for x, y in zip(as_tuple(tr, a), as_tuple(tr, b))))


def flat(tr: Transform, z) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in as_tuple(tr, z)])


def reference_jacobian(case: Case, z) -> np.ndarray:
    """Jacobian of the case's autograd formula, shape (output size, total input size)."""
    tr = case.transform
    shapes = [np.shape(a) for a in as_tuple(tr, z)]
    sizes = [int(np.prod(s, dtype=int)) for s in shapes]
    offsets = np.cumsum([0, *sizes])

    def f(v):
        parts = [anp.reshape(v[offsets[k]:offsets[k + 1]], shapes[k]) for k in range(len(shapes))]
        return anp.ravel(case.ref(*parts))

    return autograd.jacobian(f)(flat(tr, z))


@pytest.fixture(params=CASES, ids=repr)
def case(request) -> Case:
    return request.param


def point(case: Case, rng):
    z = case.make(rng)
    return z, random_like(case.transform, z, rng)


# ----------------------------------------------------------------------------- tests


def test_output_shape_matches_value(case, rng):
    tr = case.transform
    z, _ = point(case, rng)
    shapes = [np.shape(a) for a in as_tuple(tr, z)]
    assert tuple(tr.output_shape(*shapes)) == np.shape(tr.value(z))


def test_value_matches_reference(case, rng):
    tr = case.transform
    z, _ = point(case, rng)
    np.testing.assert_allclose(tr.value(z), case.ref(*as_tuple(tr, z)), rtol=1e-10, atol=1e-12)


def test_jvp_matches_central_differences(case, rng):
    tr = case.transform
    z, dz = point(case, rng)
    h = 1e-6
    plus = from_tuple(tr, [a + h * d for a, d in zip(as_tuple(tr, z), as_tuple(tr, dz))])
    minus = from_tuple(tr, [a - h * d for a, d in zip(as_tuple(tr, z), as_tuple(tr, dz))])
    fd = (np.asarray(tr.value(plus)) - np.asarray(tr.value(minus))) / (2 * h)
    jvp = tr.jvp(z, dz)
    np.testing.assert_allclose(jvp, fd, rtol=1e-5, atol=1e-6 * (1 + np.max(np.abs(fd))))


def test_jvp_and_vjp_match_autograd(case, rng):
    tr = case.transform
    z, dz = point(case, rng)
    J = reference_jacobian(case, z)
    g = rng.standard_normal(np.shape(tr.value(z)))
    np.testing.assert_allclose(np.ravel(tr.jvp(z, dz)), J @ flat(tr, dz), rtol=1e-8, atol=1e-10)
    vjp = tr.vjp(z, g)
    assert [np.shape(a) for a in as_tuple(tr, vjp)] == [np.shape(a) for a in as_tuple(tr, z)]
    np.testing.assert_allclose(flat(tr, vjp), J.T @ np.ravel(g), rtol=1e-8, atol=1e-10)


def test_vjp_is_adjoint_of_jvp(case, rng):
    tr = case.transform
    z, dz = point(case, rng)
    g = rng.standard_normal(np.shape(tr.value(z)))
    lhs = float(np.vdot(g, tr.jvp(z, dz)))
    assert lhs == pytest.approx(inner(tr, tr.vjp(z, g), dz), rel=1e-10, abs=1e-12)


def test_inputs_are_not_modified(case, rng):
    tr = case.transform
    z, dz = point(case, rng)
    g = rng.standard_normal(np.shape(tr.value(z)))
    arrays = [*as_tuple(tr, z), *as_tuple(tr, dz), g]
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.setflags(write=False)  # any in-place write raises
    tr.value(z)
    tr.jvp(z, dz)
    tr.vjp(z, g)
    lin = tr.linearize(z)
    lin.jvp(dz)
    lin.vjp(g)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


def test_linearize_agrees_with_direct_products(case, rng):
    tr = case.transform
    z, dz = point(case, rng)
    lin = tr.linearize(z)
    g = rng.standard_normal(np.shape(lin.value))
    np.testing.assert_allclose(lin.value, tr.value(z), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(lin.jvp(dz), tr.jvp(z, dz), rtol=1e-13, atol=1e-14)
    for a, b in zip(as_tuple(tr, lin.vjp(g)), as_tuple(tr, tr.vjp(z, g))):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("case", [c for c in CASES if c.transform.elementwise], ids=repr)
def test_elementwise_flag_means_diagonal_jacobian(case, rng):
    tr = case.transform
    z, _ = point(case, rng)
    J = reference_jacobian(case, z)
    diagonal = tr.jvp(z, 1.0)  # the engine's probe for the diagonal derivative
    assert np.shape(diagonal) == np.shape(z)
    np.testing.assert_allclose(np.ravel(diagonal), np.diag(J), atol=1e-12)
    np.testing.assert_allclose(J - np.diag(np.diag(J)), 0.0, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if not c.is_chain], ids=repr)
def test_params_rebuild_an_equivalent_transform(case, rng):
    tr = case.transform
    twin = type(tr)(**tr.params())
    z, _ = point(case, rng)
    np.testing.assert_array_equal(twin.value(z), tr.value(z))
    assert twin.name == tr.name
    assert type(tr).__name__ in repr(tr)


def test_calling_on_expressions_builds_a_node(case, rng):
    tr = case.transform
    z, _ = point(case, rng)
    exprs = [sdf.Variable(a, name=f"v{k}") for k, a in enumerate(as_tuple(tr, z))]
    node = tr(*exprs)
    assert node.shape == np.shape(tr.value(z))
    assert node.inputs == tuple(exprs)


def test_every_public_transform_class_has_a_case():
    classes = {
        obj for name, obj in vars(tf).items()
        if inspect.isclass(obj) and issubclass(obj, Transform) and obj is not Transform
    }
    assert classes - COVERED == set()
