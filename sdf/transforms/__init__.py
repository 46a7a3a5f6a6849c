"""Transforms: structured factors as functions of expressions.

Use ``from sdf import transforms as tf``. Every transform comes in two spellings:

* a **function** (lowercase, ``tf.nonneg``, ``tf.poly``, ``tf.kr``...) that takes the
  input expression(s) first and the parameters after, and returns an expression
  (:class:`~sdf.expr.Node`): ``tf.poly(a, points=t)``, ``tf.toeplitz(z, (4, 3))``,
  ``tf.kr(a, b, c)``, ``tf.concat([a, b], axis=0)``, ``tf.matvec(X, a)``;
* a **class** (CamelCase, ``tf.Nonneg``, ``tf.Poly``, ``tf.Kr``...) that takes only the
  parameters and is itself a :class:`Transform`. Subclass it, or call it on expressions:
  ``tf.Poly(points=t)(a)`` is ``tf.poly(a, points=t)``.

**Chains** (the dict language's ``("b", f)`` and any place that wants a one-input
callable): use the function when the transform has no parameters and an instance of the
class when it has: ``("b", tf.nonneg)``, ``("t", tf.Poly(points=t))``,
``("z", tf.Toeplitz((4, 3)))``. Both map an expression to an expression; the instance also
carries its ``params()`` so a model can be written back with ``Model.to_dict()``. A function
always returns an expression and a class always a transform: no return type depends on which
arguments were given. :func:`custom` follows the class rule: ``tf.custom(fun)`` is a
transform (usable as a decorator), applied as ``tf.custom(fun)(a, b)``.

Transforms of several inputs accept them as separate arguments or as one list, and their
``value``/``jvp`` take tuples of arrays (``vjp`` returns one). Every transform has
``value(z)``, ``jvp(z, dz)``, ``vjp(z, g)``, ``output_shape(*shapes)``, ``linearize(z)``,
``params()`` (``type(t)(**t.params())`` rebuilds it) and ``name``; bad parameters or input
shapes raise :class:`sdf.errors.TransformError` naming the transform.

Families: :mod:`~sdf.transforms.elementwise` (identity, nonneg, sigmoid, exp, log, sqrt,
abs, conj, power, scale, shift, const), :mod:`~sdf.transforms.structured` (toeplitz,
hankel, vander, cauchy, band, diag, tridiag, tril, triu), :mod:`~sdf.transforms.matrix`
(matvec, mtimes, gram, inv, invsqrtm, invtransp, orth, normalize, transpose, ctranspose),
:mod:`~sdf.transforms.combine` (kr, kron, concat, plus, times, prod),
:mod:`~sdf.transforms.indexing` (select, ll1, reshape, sum, fd),
:mod:`~sdf.transforms.functional` (poly, rational, rbf),
:mod:`~sdf.transforms.shape` (simplex, monotone, unimodal columns) and
:mod:`~sdf.transforms.custom` (custom).

Examples
--------
>>> import numpy as np, sdf
>>> from sdf import transforms as tf
>>> c = sdf.Variable.random((3, 2), seed=0, name="c")
>>> t = np.linspace(0, 1, 50)
>>> tf.poly(c, points=t).shape
(50, 2)
>>> chain = [tf.Poly(points=t), tf.nonneg]
>>> x = c
>>> for step in chain:
...     x = step(x)
>>> x.label()
'nonneg(poly(c))'
"""

from sdf.transforms._base import BlockRoute, ExprLike, Linearization, Transform
from sdf.transforms.combine import (
    Concat, Kr, Kron, Plus, Prod, Times, concat, kr, kron, plus, prod, times,
)
from sdf.transforms.custom import Custom, custom
from sdf.transforms.elementwise import (
    Abs, Conj, Const, Exp, Identity, Log, Nonneg, Power, Scale, Shift, Sigmoid, Sqrt, abs,
    conj, const, exp, identity, log, nonneg, power, scale, shift, sigmoid, sqrt,
)
from sdf.transforms.functional import RBF, Poly, Rational, poly, rational, rbf
from sdf.transforms.indexing import FD, LL1, Reshape, Select, Sum, fd, ll1, reshape, select, sum
from sdf.transforms.matrix import (
    CTranspose, Gram, Inv, Invsqrtm, Invtransp, MatVec, MTimes, Normalize, Orth, Transpose,
    ctranspose, gram, inv, invsqrtm, invtransp, matvec, mtimes, normalize, orth, transpose,
)
from sdf.transforms.shape import Monotone, Simplex, Unimodal, monotone, simplex, unimodal
from sdf.transforms.structured import (
    Band, Cauchy, Diag, Hankel, Toeplitz, Tridiag, Tril, Triu, Vander, band, cauchy, diag,
    hankel, toeplitz, tridiag, tril, triu, vander,
)

__all__ = [
    "Abs", "Band", "BlockRoute", "CTranspose", "Cauchy", "Concat", "Conj", "Const",
    "Custom", "Diag", "Exp", "ExprLike", "FD", "Gram", "Hankel", "Identity", "Inv",
    "Invsqrtm", "Invtransp", "Kr", "Kron", "LL1", "Linearization", "Log", "MTimes",
    "MatVec", "Monotone", "Nonneg", "Normalize", "Orth", "Plus", "Poly", "Power", "Prod",
    "RBF", "Rational", "Reshape", "Scale", "Select", "Shift", "Sigmoid", "Simplex", "Sqrt",
    "Sum", "Times", "Toeplitz", "Transform", "Transpose", "Tridiag", "Tril", "Triu",
    "Unimodal", "Vander", "abs", "band", "cauchy", "concat", "conj", "const", "ctranspose",
    "custom", "diag", "exp", "fd", "gram", "hankel", "identity", "inv", "invsqrtm",
    "invtransp", "kr", "kron", "ll1", "log", "matvec", "monotone", "mtimes", "nonneg",
    "normalize", "orth", "plus", "poly", "power", "prod", "rational", "rbf", "reshape",
    "scale", "select", "shift", "sigmoid", "simplex", "sqrt", "sum", "times", "toeplitz",
    "transpose", "tridiag", "tril", "triu", "unimodal", "vander",
]
