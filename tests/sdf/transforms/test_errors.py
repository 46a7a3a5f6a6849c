"""Every parameter and input-shape error names the transform, the parameter and the values."""

from __future__ import annotations

import re

import numpy as np
import pytest

import sdf
from sdf import transforms as tf
from sdf.errors import TransformError

V = sdf.Variable


def var(*shape):
    return V(np.ones(shape))


ERRORS = [  # literal message fragments (matched with re.escape)
    # (id, thunk, message pattern)
    ("toeplitz-size", lambda: tf.toeplitz(var(5, 2), (4, 3)),
     "toeplitz: input has shape (5, 2) but a Toeplitz factor of shape (4, 3) needs 6 generators"),
    ("toeplitz-shape", lambda: tf.Toeplitz((4,)), "toeplitz: shape must be a tuple of 2 positive integers, got (4,)"),
    ("hankel-size", lambda: tf.hankel(var(5), (3, 4)),
     "hankel: input has shape (5,) but a Hankel factor of shape (3, 4) needs 6 generators"),
    ("cauchy-size", lambda: tf.cauchy(var(4), (2, 3)), "cauchy: input has shape (4,) but a Cauchy factor"),
    ("vander-ncols", lambda: tf.Vander(0), "vander: n_cols must be an integer >= 1, got 0"),
    ("vander-matrix", lambda: tf.vander(var(3, 2), 3), "vander: input must be a vector of generators, got shape (3, 2)"),
    ("band-size", lambda: tf.band(var(3), 3, 1, 1),
     "band: input has shape (3,) but a band matrix of shape (3, 3) needs 7 free entries"),
    ("band-lower", lambda: tf.Band(3, -1, 0), "band: lower must be an integer >= 0, got -1"),
    ("diag-size", lambda: tf.diag(var(2), 3), "diag: input has shape (2,) but a diag matrix of shape (3, 3) needs 3"),
    ("tril-k", lambda: tf.tril(var(1), 3, k=-5), "tril: k=-5 leaves no free entry in shape (3, 3)"),
    ("triu-k-type", lambda: tf.Triu(3, k=0.5), "triu: k must be an integer, got 0.5"),
    ("tridiag-shape", lambda: tf.Tridiag((3, 0)), "tridiag: shape must be a tuple of 2 positive integers, got (3, 0)"),
    ("sigmoid-bounds", lambda: tf.Sigmoid((1.0, 0.0)), "sigmoid: bounds must be finite with lower < upper, got (1.0, 0.0)"),
    ("sigmoid-pair", lambda: tf.Sigmoid(1.0), "sigmoid: bounds must be a pair"),
    ("abs-eps", lambda: tf.Abs(-1.0), "abs: eps must be a finite number >= 0, got -1.0"),
    ("power-p", lambda: tf.Power("2"), "power: p must be a real number, got '2'"),
    ("power-inf", lambda: tf.Power(np.inf), "power: p must be finite, got inf"),
    ("scale-factor", lambda: tf.Scale("x"), "scale: factor must be a real scalar, got 'x'"),
    ("shift-shape", lambda: tf.shift(var(4, 3), np.ones(4)),
     "shift: offset of shape (4,) does not broadcast to the input shape (4, 3)"),
    ("const-mask-dtype", lambda: tf.Const(np.ones(3), mask=np.ones(3)), "const: mask must be a boolean array, got dtype float64"),
    ("const-mask-shape", lambda: tf.Const(np.ones(3), mask=np.ones(2, bool)), "const: mask has shape (2,) but values have shape (3,)"),
    ("const-values-shape", lambda: tf.const(var(3), values=np.ones(2)), "const: input has shape (3,) but values have shape (2,)"),
    ("const-node", lambda: tf.const(tf.nonneg(var(3))), "is a derived expression: pass values= explicitly"),
    ("const-nonfinite", lambda: tf.Const([1.0, np.nan]), "const: values has non-finite entries"),
    ("matvec-rows", lambda: tf.matvec(np.ones((5, 4)), var(3, 2)),
     "matvec: matrix of shape (5, 4) times input of shape (3, 2): the input needs 4 rows"),
    ("matvec-cols", lambda: tf.matvec(var(2, 3), np.ones((5, 4))),
     "matvec: input of shape (2, 3) times matrix of shape (5, 4): the input needs 5 columns"),
    ("matvec-side", lambda: tf.MatVec(np.ones((2, 2)), side="top"), "matvec: side must be 'left' or 'right', got 'top'"),
    ("matvec-ndim", lambda: tf.MatVec(np.ones(3)), "matvec: matrix must be 2-D, got shape (3,)"),
    ("matvec-two-exprs", lambda: tf.matvec(var(2, 2), var(2, 2)), "matvec: both operands are expressions; use tf.mtimes"),
    ("matvec-missing", lambda: tf.matvec(var(2, 2)), "matvec: needs a known matrix and an expression"),
    ("matvec-both", lambda: tf.matvec(var(2, 2), np.eye(2), matrix=np.eye(2)), "matvec: give the matrix either positionally or as matrix="),
    ("matvec-side-conflict", lambda: tf.matvec(np.eye(2), var(2, 2), side="right"), "matvec: the matrix is the first operand but side='right'"),
    ("mtimes-shapes", lambda: tf.mtimes(var(2, 3), var(2, 3)), "mtimes: inputs of shapes (2, 3) and (2, 3) cannot be multiplied"),
    ("gram-vector", lambda: tf.gram(var(3)), "gram: input must be a matrix, got shape (3,)"),
    ("inv-square", lambda: tf.inv(var(2, 3)), "inv: input must be a square matrix, got shape (2, 3)"),
    ("invsqrtm-square", lambda: tf.invsqrtm(var(3)), "invsqrtm: input must be a square matrix, got shape (3,)"),
    ("invtransp-square", lambda: tf.invtransp(var(3, 2)), "invtransp: input must be a square matrix, got shape (3, 2)"),
    ("orth-wide", lambda: tf.orth(var(2, 3)), "orth: input must be a tall matrix (rows >= columns), got shape (2, 3)"),
    ("normalize-3d", lambda: tf.normalize(var(2, 2, 2)), "normalize: input must be a vector or matrix, got shape (2, 2, 2)"),
    ("transpose-axes", lambda: tf.transpose(var(2, 3), (0, 0)), "transpose: axes (0, 0) is not a permutation of the 2 input axes"),
    ("kr-columns", lambda: tf.kr(var(2, 3), var(4, 2)), "kr: inputs must be matrices with equal column counts, got (2, 3), (4, 2)"),
    ("kr-none", lambda: tf.kr(), "kr: needs at least one input expression, got none"),
    ("kron-vector", lambda: tf.kron(var(2), var(2, 2)), "kron: inputs must be matrices, got (2,), (2, 2)"),
    ("concat-shapes", lambda: tf.concat([var(2, 3), var(2, 4)], axis=0),
     "concat: inputs must have equal shapes except along axis 0, got (2, 3), (2, 4)"),
    ("concat-axis", lambda: tf.concat([var(2), var(2)], axis=1), "concat: axis 1 is out of range for inputs with 1 axes"),
    ("concat-axis-type", lambda: tf.Concat(2, axis="0"), "concat: axis must be an integer, got '0'"),
    ("concat-n", lambda: tf.Concat(0), "concat: n_inputs must be an integer >= 1, got 0"),
    ("plus-broadcast", lambda: tf.plus(var(2, 3), var(4)), "plus: input shapes (2, 3), (4,) do not broadcast"),
    ("prod-broadcast", lambda: tf.prod(var(2), var(3)), "prod: input shapes (2,), (3,) do not broadcast"),
    ("times-broadcast", lambda: tf.times(var(2), var(3)), "times: input shapes (2,), (3,) do not broadcast"),
    ("n-inputs", lambda: tf.Kr(2)(var(2, 2)), "kr: expected 2 input expression(s), got 1"),
    ("select-range", lambda: tf.select(var(3, 2), [3], axis=0),
     "select: index along axis 0 out of range: needs -3 <= index < 3 for shape (3, 2)"),
    ("select-flat-range", lambda: tf.select(var(3, 2), [6]), "select: flat index out of range: needs -6 <= index < 6"),
    ("select-dtype", lambda: tf.Select([0.5]), "select: index must hold integers or booleans, got dtype float64"),
    ("select-mask", lambda: tf.select(var(3, 2), np.ones(3, bool)), "select: mask has shape (3,) but the input has shape (3, 2)"),
    ("select-axis", lambda: tf.select(var(3, 2), [0], axis=2), "select: axis 2 is out of range for input shape (3, 2)"),
    ("select-bool-axis", lambda: tf.select(var(3, 2), np.ones(2, bool), axis=0),
     "select: boolean index has shape (2,) but axis 0 has length 3"),
    ("ll1-columns", lambda: tf.ll1(var(4, 2), [1, 2, 3]),
     "LL1: input has shape (4, 2) but L=[1, 2, 3] needs a matrix with 3 columns"),
    ("ll1-L", lambda: tf.LL1([2, 0]), "LL1: L must be a sequence of positive integers, got [2, 0]"),
    ("reshape-size", lambda: tf.reshape(var(3, 4), (5, -1)), "reshape: cannot reshape input of shape (3, 4) into (5, -1)"),
    ("reshape-shape", lambda: tf.Reshape((-1, -1)), "reshape: shape must hold positive integers and at most one -1, got (-1, -1)"),
    ("sum-axis", lambda: tf.sum(var(3), axis=1), "sum: axis 1 is out of range for input shape (3,)"),
    ("sum-axis-type", lambda: tf.Sum(axis=1.0), "sum: axis must be an integer or None, got 1.0"),
    ("fd-order", lambda: tf.FD(order=0), "fd: order must be an integer >= 1, got 0"),
    ("fd-length", lambda: tf.fd(var(2, 3), order=2),
     "fd: order 2 needs more than 2 entries along axis 0, got input shape (2, 3)"),
    ("fd-axis", lambda: tf.FD(axis=None), "fd: axis must be an integer, got None"),
    ("poly-points", lambda: tf.Poly(np.ones((2, 2))), "poly: points must be a non-empty 1-D array, got shape (2, 2)"),
    ("poly-points-nan", lambda: tf.Poly([0.0, np.nan]), "poly: points has non-finite entries"),
    ("poly-input", lambda: tf.poly(var(2, 2, 2), np.ones(3)), "poly: input must be a vector or a matrix of coefficients, got shape (2, 2, 2)"),
    ("rational-rows", lambda: tf.rational(var(3, 2), np.ones(4), degree=(2, 2)),
     "rational: input has shape (3, 2) but degree=(2, 2) needs 5 rows of coefficients"),
    ("rational-degree", lambda: tf.Rational(np.ones(3), degree=2), "rational: degree must be a pair"),
    ("rational-negative", lambda: tf.Rational(np.ones(3), degree=(1, -1)), "rational: degree[1] must be an integer >= 0, got -1"),
    ("rbf-rows", lambda: tf.rbf(var(4, 2), np.ones(3)),
     "rbf: input has shape (4, 2) but needs 3K rows (weights, centers, widths of K kernels)"),
    ("custom-callable", lambda: tf.custom(3), "custom: fun must be callable, got int"),
    ("custom-fails", lambda: tf.custom(lambda a: a @ a, label="sq")(var(2, 3)),
     "custom(sq): evaluating the function on inputs of shapes (2, 3) failed: ValueError"),
    ("custom-n-inputs", lambda: tf.custom(lambda a: a, n_inputs=2, label="f")(var(2)),
     "custom(f): expected 2 input expression(s), got 1"),
]


@pytest.mark.parametrize(("thunk", "pattern"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_message(thunk, pattern):
    with pytest.raises(TransformError, match=re.escape(pattern)):
        thunk()


def test_errors_are_model_and_value_errors():
    with pytest.raises(ValueError, match=re.escape("kr: needs at least one input")):
        tf.kr()
    with pytest.raises(sdf.errors.ModelError, match="gram: input must be a matrix"):
        tf.gram(var(3))
