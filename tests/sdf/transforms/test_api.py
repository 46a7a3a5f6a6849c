"""The public surface: functions vs classes, chains, dispatch rules, custom, docs."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import subprocess
import tempfile
import sys

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.sparse as sp

import sdf
from sdf import transforms as tf
from sdf.expr import Constant, Node

MODULES = ["__init__", "_util", "combine", "custom", "elementwise", "functional", "indexing",
           "matrix", "structured"]


def test_all_is_sorted_and_complete():
    assert tf.__all__ == sorted(tf.__all__)
    assert all(hasattr(tf, name) for name in tf.__all__)


@pytest.mark.parametrize("module", MODULES)
def test_module_is_short(module):
    path = pathlib.Path(tf.__file__).with_name(f"{module}.py")
    assert len(path.read_text().splitlines()) < 600


@pytest.mark.parametrize("module", [m for m in MODULES if m != "_util"])
def test_docstring_examples_run(module):
    name = "sdf.transforms" if module == "__init__" else f"sdf.transforms.{module}"
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_import_sdf_does_not_import_autograd():
    code = "import sys, sdf, sdf.transforms; print('autograd' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_function_returns_node_and_class_instance_is_a_one_input_callable():
    c = sdf.Variable.random((3, 2), seed=0, name="c")
    t = np.linspace(0, 1, 5)
    node = tf.poly(c, points=t)
    step = tf.Poly(points=t)
    assert isinstance(node, Node) and isinstance(step, tf.Transform)
    chained = c
    for f in (step, tf.nonneg):
        chained = f(chained)
    assert chained.label() == "nonneg(poly(c))"
    assert chained.shape == (5, 2)


def test_node_name_is_kept():
    assert tf.nonneg(sdf.Variable.random(3), name="B").label() == "B"


def test_matvec_dispatch_on_which_operand_is_known(rng):
    a = sdf.Variable.random((4, 2), seed=0)
    X = rng.standard_normal((5, 4))
    left, right = tf.matvec(X, a), tf.matvec(a, X.T[:2, :])
    assert (left.transform.side, left.shape) == ("left", (5, 2))
    assert (right.transform.side, right.shape) == ("right", (4, 5))
    assert tf.matvec(Constant(X), a).transform.side == "left"
    assert tf.matvec(sp.csr_array(X), a).shape == (5, 2)
    assert tf.matvec(a, matrix=X[:, :2].T, side="right").shape == (4, 5)


def test_matvec_copies_its_matrix(rng):
    X = rng.standard_normal((3, 3))
    tr = tf.MatVec(X)
    X[:] = 0.0
    assert np.abs(tr.matrix).sum() > 0


def test_const_takes_values_from_the_variable_once():
    a = sdf.Variable([1.0, 2.0, 3.0])
    x = tf.const(a, mask=np.array([True, False, True]))
    a.value[:] = 0.0  # later changes of the variable do not move the frozen values
    np.testing.assert_array_equal(x.transform.value(np.full(3, 9.0)), [1.0, 9.0, 3.0])


def test_const_accepts_explicit_values_for_derived_expressions():
    b = tf.nonneg(sdf.Variable([1.0, 2.0]))
    x = tf.const(b, values=[4.0, 5.0])
    np.testing.assert_array_equal(x.transform.value(np.zeros(2)), [4.0, 5.0])


def test_times_with_a_scalar_is_scale():
    a = sdf.Variable.random((3, 2))
    assert tf.times(a, 2.0).transform.name == "scale"
    assert tf.times(3, a).transform.factor == 3.0
    assert tf.times(a, a).transform.name == "times"


@pytest.mark.parametrize("fun", [tf.kr, tf.kron, tf.concat, tf.plus, tf.prod])
def test_several_inputs_as_arguments_or_list(fun):
    a, b = sdf.Variable.random((3, 2)), sdf.Variable.random((3, 2))
    assert fun(a, b).shape == fun([a, b]).shape
    assert fun((a, b)).inputs == (a, b)


def test_array_inputs_become_constants(rng):
    a = sdf.Variable.random((3, 2))
    node = tf.plus(a, rng.standard_normal((3, 2)))
    assert isinstance(node.inputs[1], Constant)


def test_custom_binds_its_input_count_at_call():
    f = tf.custom(lambda a, b: a * b, label="mul")
    a, b = sdf.Variable.random((3, 2)), sdf.Variable.random((3, 2))
    node = f(a, b)
    assert node.transform.n_inputs == 2 and f.n_inputs is None
    assert node.transform.name == "custom(mul)"


def test_custom_as_decorator_and_in_a_chain(rng):
    @tf.custom
    def softplus(z):
        return anp.log1p(anp.exp(z))

    z = rng.standard_normal((4, 2))
    x = tf.nonneg(softplus(sdf.Variable(z)))
    assert x.label().startswith("nonneg(custom(softplus)(")
    np.testing.assert_allclose(x.inputs[0].transform.value(z), np.log1p(np.exp(z)))


def test_custom_constant_output_has_zero_derivatives(rng):
    tr = tf.Custom(lambda z: anp.ones((2, 2)) + 0.0 * anp.sum(z), 1)
    z = rng.standard_normal(3)
    np.testing.assert_allclose(tr.jvp(z, np.ones(3)), 0.0)
    np.testing.assert_allclose(tr.vjp(z, np.ones((2, 2))), 0.0)


def test_custom_matches_hand_written_transform(rng):
    z, dz, g = (rng.standard_normal((6, 2)) for _ in range(3))
    hand, auto = tf.Nonneg(), tf.Custom(lambda z: z**2, 1)
    np.testing.assert_allclose(auto.jvp(z, dz), hand.jvp(z, dz))
    np.testing.assert_allclose(auto.vjp(z, g), hand.vjp(z, g))


def test_orth_linearization_caches_one_factorization(rng, monkeypatch):
    calls = []
    eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda a: calls.append(1) or eigh(a))
    lin = tf.Orth().linearize(rng.standard_normal((6, 3)))
    for _ in range(5):
        lin.jvp(rng.standard_normal((6, 3)))
        lin.vjp(rng.standard_normal((6, 3)))
    assert len(calls) == 1


def test_invsqrtm_of_indefinite_matrix_is_nan():
    x = tf.Invsqrtm().value(np.diag([1.0, -1.0]))
    assert np.isnan(x).any()
