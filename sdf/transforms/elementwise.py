"""Elementwise transforms: each output entry depends on the same input entry only.

identity, nonneg, sigmoid, exp, log, sqrt, abs, power, scale, shift and const. Their
Jacobian is diagonal, so ``jvp`` and ``vjp`` coincide (``elementwise = True`` tells the
engine it may map preconditioner blocks through ``jvp(z, 1)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from sdf.expr import Constant, Expr, Node, Variable
from sdf.transforms._base import ExprLike
from sdf.transforms._util import Base, fail, frozen, numeric, readonly, Shape

__all__ = [
    "Abs", "Conj", "Const", "Exp", "Identity", "Log", "Nonneg", "Power", "Scale", "Shift",
    "Sigmoid", "Sqrt", "abs", "conj", "const", "exp", "identity", "log", "nonneg", "power",
    "scale", "shift", "sigmoid", "sqrt",
]


class _Elementwise(Base[np.ndarray]):
    """x = f(z) entrywise; subclasses give ``value`` and the derivative ``_deriv(z)``."""

    elementwise = True

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self._deriv(numeric(z)) * dz

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self._deriv(numeric(z)) * g


class Identity(_Elementwise):
    """x = z (Tensorlab's ``struct_nop``); returns read-only views, no copies."""

    name = "identity"
    complex_vjp = "transpose"

    def value(self, z: np.ndarray) -> np.ndarray:
        return readonly(numeric(z))

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:  # dz may be the scalar 1 (diagonal)
        return np.broadcast_to(numeric(dz), np.shape(z))

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return readonly(numeric(g))


class Nonneg(_Elementwise):
    """x = z**2: a nonnegative factor through squares."""

    name = "nonneg"

    def value(self, z: np.ndarray) -> np.ndarray:
        z = numeric(z)
        return z * z

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        return 2.0 * z

    def curvature(self, z: np.ndarray) -> np.ndarray:
        return np.full(np.shape(z), 2.0)


class Sigmoid(_Elementwise):
    """x = lower + (upper - lower) / (1 + exp(-z)): entries bounded in (lower, upper)."""

    name = "sigmoid"

    def __init__(self, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        try:
            lower, upper = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise fail("sigmoid", f"bounds must be a pair (lower, upper), got {bounds!r}") from None
        if not (np.isfinite(lower) and np.isfinite(upper) and lower < upper):
            raise fail(
                "sigmoid", f"bounds must be finite with lower < upper, got ({lower}, {upper})"
            )
        self.bounds = (lower, upper)

    def params(self) -> dict[str, Any]:
        return {"bounds": self.bounds}

    def value(self, z: np.ndarray) -> np.ndarray:
        lower, upper = self.bounds
        return lower + (upper - lower) * expit(numeric(z))

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        s = expit(z)
        return (self.bounds[1] - self.bounds[0]) * s * (1.0 - s)

    def curvature(self, z: np.ndarray) -> np.ndarray:
        s = expit(numeric(z))
        return (self.bounds[1] - self.bounds[0]) * s * (1.0 - s) * (1.0 - 2.0 * s)


class Exp(_Elementwise):
    """x = exp(z): a positive factor."""

    name = "exp"
    complex_vjp = "transpose"

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.exp(numeric(z))

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        return np.exp(z)

    def curvature(self, z: np.ndarray) -> np.ndarray:
        return np.exp(numeric(z))


class Log(_Elementwise):
    """x = log(z), for positive z."""

    name = "log"
    complex_vjp = "transpose"

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.log(numeric(z))

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        return 1.0 / z


class Sqrt(_Elementwise):
    """x = sqrt(z), for positive z."""

    name = "sqrt"
    complex_vjp = "transpose"

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.sqrt(numeric(z))

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        return 0.5 / np.sqrt(z)


class Abs(_Elementwise):
    """x = sqrt(z**2 + eps**2) - eps (smooth, eps > 0) or x = ``|z|`` (plain, eps = 0).

    The plain form uses the derivative sign(z), taken as 0 at z = 0 where ``|z|`` has a kink;
    the smooth form is differentiable everywhere and tends to ``|z|`` as eps -> 0. For
    complex z the output is the (smoothed) modulus, real: ``jvp`` is ``Re(conj(z) dz) / s``
    and ``vjp`` its adjoint ``g z / s`` for ``Re <a, b>`` (``s = sqrt(|z|^2 + eps^2)``).
    """

    name = "abs"
    complex_vjp = "adjoint"

    def __init__(self, eps: float = 0.0) -> None:
        eps = float(eps)
        if not (np.isfinite(eps) and eps >= 0):
            raise fail("abs", f"eps must be a finite number >= 0, got {eps}")
        self.eps = eps

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def value(self, z: np.ndarray) -> np.ndarray:
        z = numeric(z)
        if self.eps == 0:
            return np.abs(z)
        if np.iscomplexobj(z):
            return np.sqrt(np.abs(z) ** 2 + self.eps**2) - self.eps
        return np.sqrt(z * z + self.eps**2) - self.eps

    def complex_output(self, inputs: tuple[bool, ...]) -> bool:
        return False  # a modulus is real

    def _direction(self, z: np.ndarray) -> np.ndarray:
        """``z / s`` for complex z (zero where s = 0): jvp is Re(conj(.) dz), vjp g (.)."""
        s = np.abs(z) if self.eps == 0 else np.sqrt(np.abs(z) ** 2 + self.eps**2)
        return np.divide(z, s, out=np.zeros_like(z), where=s > 0)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        z = numeric(z)
        if np.iscomplexobj(z):
            return np.real(np.conj(self._direction(z)) * dz)
        return self._deriv(z) * dz

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        z = numeric(z)
        if np.iscomplexobj(z):
            return self._direction(z) * np.real(g)
        return self._deriv(z) * g

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        if self.eps == 0:
            return np.sign(z)
        return z / np.sqrt(z * z + self.eps**2)


class Conj(_Elementwise):
    """x = conj(z), the complex conjugate (z itself when real).

    Not holomorphic: ``jvp`` is ``conj(dz)`` and ``vjp`` its adjoint ``conj(g)`` for the
    real inner product ``Re <a, b>``.
    """

    name = "conj"
    complex_vjp = "adjoint"

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.conj(numeric(z))

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.conj(numeric(dz)), np.shape(z))

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return np.conj(numeric(g))


class Power(_Elementwise):
    """x = z**p (real p; for non-integer p the entries of z must be positive)."""

    name = "power"
    complex_vjp = "transpose"

    def __init__(self, p: float) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise fail("power", f"p must be a real number, got {p!r}")
        if not np.isfinite(p):
            raise fail("power", f"p must be finite, got {p}")
        self.p = int(p) if float(p).is_integer() else float(p)

    def params(self) -> dict[str, Any]:
        return {"p": self.p}

    def value(self, z: np.ndarray) -> np.ndarray:
        return numeric(z) ** self.p

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        if self.p == 0:
            return np.zeros_like(z)
        return self.p * z ** (self.p - 1)


class Scale(_Elementwise):
    """x = factor * z, for a known scalar factor."""

    name = "scale"
    complex_vjp = "transpose"

    def __init__(self, factor: float) -> None:
        try:
            factor = float(factor)
        except (TypeError, ValueError):
            raise fail("scale", f"factor must be a real scalar, got {factor!r}") from None
        if not np.isfinite(factor):
            raise fail("scale", f"factor must be finite, got {factor}")
        self.factor = factor

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def value(self, z: np.ndarray) -> np.ndarray:
        return self.factor * numeric(z)

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        return np.full(z.shape, self.factor)


class Shift(_Elementwise):
    """x = z + offset, for a known offset broadcastable to the input (not changing its shape)."""

    name = "shift"
    complex_vjp = "transpose"

    def __init__(self, offset: ArrayLike) -> None:
        self.offset = frozen(offset, "shift", "offset")

    def params(self) -> dict[str, Any]:
        return {"offset": self.offset}

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = tuple(shapes[0])
        try:
            out = np.broadcast_shapes(shape, self.offset.shape)
        except ValueError:
            out = None
        if out != shape:
            raise fail(
                "shift",
                f"offset of shape {self.offset.shape} does not broadcast to the input shape {shape}",
            )
        return shape

    def value(self, z: np.ndarray) -> np.ndarray:
        return numeric(z) + self.offset

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        return np.ones_like(z)


class Const(_Elementwise):
    """x = where(mask, values, z): entries under the mask frozen at known values.

    With ``mask=None`` every entry is frozen (x = values); frozen entries have zero
    derivative, the others pass through unchanged.
    """

    name = "const"
    complex_vjp = "transpose"

    def __init__(self, values: ArrayLike, mask: ArrayLike | None = None) -> None:
        self.values = frozen(values, "const", "values")
        if mask is None:
            self.mask = None
        else:
            m = np.asarray(mask)
            if m.dtype != bool:
                raise fail("const", f"mask must be a boolean array, got dtype {m.dtype}")
            if m.shape != self.values.shape:
                raise fail(
                    "const",
                    f"mask has shape {m.shape} but values have shape {self.values.shape}",
                )
            self.mask = frozen(m, "const", "mask", dtype=bool)

    def params(self) -> dict[str, Any]:
        return {"values": self.values, "mask": self.mask}

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = tuple(shapes[0])
        if shape != self.values.shape:
            raise fail(
                "const", f"input has shape {shape} but values have shape {self.values.shape}"
            )
        return shape

    def value(self, z: np.ndarray) -> np.ndarray:
        if self.mask is None:
            return self.values.copy()
        return np.where(self.mask, self.values, z)

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        if self.mask is None:
            return np.zeros(z.shape)
        return (~self.mask).astype(float)


# ----------------------------------------------------------------------------- functions


def conj(z: ExprLike, *, name: str | None = None) -> Node:
    """x = conj(z), entrywise complex conjugate.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Conj().value(np.array([1 + 2j, 3.0]))
    array([1.-2.j, 3.-0.j])
    """
    return Conj()(z, name=name)


def identity(z: ExprLike, *, name: str | None = None) -> Node:
    """x = z.

    Examples
    --------
    >>> import sdf
    >>> from sdf import transforms as tf
    >>> tf.identity(sdf.Variable([[1.0, 2.0]])).shape
    (1, 2)
    """
    return Identity()(z, name=name)


def nonneg(z: ExprLike, *, name: str | None = None) -> Node:
    """x = z**2, entrywise: a nonnegative factor.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Nonneg().value(np.array([-2.0, 3.0]))
    array([4., 9.])
    """
    return Nonneg()(z, name=name)


def sigmoid(
    z: ExprLike, bounds: tuple[float, float] = (0.0, 1.0), *, name: str | None = None
) -> Node:
    """x = lower + (upper - lower) / (1 + exp(-z)), entrywise, with ``bounds=(lower, upper)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Sigmoid(bounds=(-1.0, 1.0)).value(np.array([0.0]))
    array([0.])
    """
    return Sigmoid(bounds)(z, name=name)


def exp(z: ExprLike, *, name: str | None = None) -> Node:
    """x = exp(z), entrywise.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Exp().value(np.array([0.0]))
    array([1.])
    """
    return Exp()(z, name=name)


def log(z: ExprLike, *, name: str | None = None) -> Node:
    """x = log(z), entrywise (z > 0).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Log().value(np.array([1.0]))
    array([0.])
    """
    return Log()(z, name=name)


def sqrt(z: ExprLike, *, name: str | None = None) -> Node:
    """x = sqrt(z), entrywise (z > 0).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Sqrt().value(np.array([4.0]))
    array([2.])
    """
    return Sqrt()(z, name=name)


def abs(z: ExprLike, eps: float = 0.0, *, name: str | None = None) -> Node:  # noqa: A001
    """x = ``|z|`` (eps = 0) or the smooth x = sqrt(z**2 + eps**2) - eps (eps > 0), entrywise.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Abs().value(np.array([-2.0, 3.0]))
    array([2., 3.])
    """
    return Abs(eps)(z, name=name)


def power(z: ExprLike, p: float, *, name: str | None = None) -> Node:
    """x = z**p, entrywise.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Power(3).value(np.array([2.0]))
    array([8.])
    """
    return Power(p)(z, name=name)


def scale(z: ExprLike, factor: float, *, name: str | None = None) -> Node:
    """x = factor * z for a known scalar.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Scale(2.0).value(np.array([1.5]))
    array([3.])
    """
    return Scale(factor)(z, name=name)


def shift(z: ExprLike, offset: ArrayLike, *, name: str | None = None) -> Node:
    """x = z + offset for a known array (broadcast to the input's shape).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Shift(1.0).value(np.array([1.5]))
    array([2.5])
    """
    return Shift(offset)(z, name=name)


def const(
    z: ExprLike, mask: ArrayLike | None = None, values: ArrayLike | None = None, *,
    name: str | None = None,
) -> Node:
    """x = where(mask, values, z): freeze all (``mask=None``) or some entries of ``z``.

    Parameters
    ----------
    z : Variable, Constant or expression
        The expression to freeze partly.
    mask : ndarray of bool, shape z.shape, optional
        True where the entry is frozen. None freezes every entry.
    values : array_like, shape z.shape, optional
        The frozen values. By default the initial value of ``z`` when it is a Variable
        (or the value of a Constant), taken once, now: they do not follow the solver.
        Required for derived expressions.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> from sdf import transforms as tf
    >>> a = sdf.Variable([[1.0, 2.0], [3.0, 4.0]], name="a")
    >>> x = tf.const(a, mask=np.array([[True, False], [False, False]]))
    >>> x.transform.value(np.zeros((2, 2)))
    array([[1., 0.],
           [0., 0.]])
    """
    if values is None:
        if isinstance(z, (Variable, Constant)):
            values = z.value
        elif isinstance(z, Expr):
            raise fail(
                "const",
                f"input {z.label()!r} is a derived expression: pass values= explicitly",
            )
        else:
            values = z
    return Const(values, mask)(z, name=name)
