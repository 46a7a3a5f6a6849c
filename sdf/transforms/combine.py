"""Transforms of several inputs: kr, kron, concat, plus, times and prod.

Each takes its inputs as separate arguments or as one list: ``tf.kr(a, b, c)`` and
``tf.kr([a, b, c])`` are the same. z, dz and the result of vjp are tuples, one array per
input.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from sdf.expr import Expr, Node
from sdf.transforms._base import ExprLike
from sdf.transforms._util import (
    Arrays, as_int, Base, fail, fmt_shapes, numeric, Shape, unbroadcast, unpack_inputs,
)
from sdf.transforms.elementwise import Scale

__all__ = [
    "Concat", "Kr", "Kron", "Plus", "Prod", "Times", "concat", "kr", "kron", "plus", "prod",
    "times",
]


class _Multi(Base[Arrays]):
    """A transform of ``n_inputs`` inputs (fixed when it is made)."""

    min_inputs = 1
    complex_vjp = "transpose"

    def __init__(self, n_inputs: int = 2) -> None:
        self.n_inputs = as_int(n_inputs, self.name, "n_inputs", minimum=self.min_inputs)

    def params(self) -> dict[str, Any]:
        return {"n_inputs": self.n_inputs}


class Kr(_Multi):
    """x[(i_1, ..., i_N), r] = Π_n z_n[i_n, r]: column-wise Khatri-Rao product.

    Rows in C order (the last input's index varies fastest), as in ``sdf.algebra.khatri_rao``;
    inputs (I_n, R) give an output (I_1 ... I_N, R).
    """

    name = "kr"

    def output_shape(self, *shapes: Shape) -> Shape:
        if any(len(s) != 2 for s in shapes) or len({s[1] for s in shapes}) != 1:
            raise fail(
                "kr", f"inputs must be matrices with equal column counts, got {fmt_shapes(shapes)}"
            )
        return (int(np.prod([s[0] for s in shapes])), shapes[0][1])

    def _product(self, arrays: tuple[np.ndarray, ...]) -> np.ndarray:
        out = arrays[0]
        for a in arrays[1:]:
            out = (out[:, None, :] * a[None, :, :]).reshape(-1, a.shape[1])
        return out

    def value(self, z: Arrays) -> np.ndarray:
        return self._product(tuple(numeric(a) for a in z))

    def jvp(self, z: Arrays, dz: Arrays) -> np.ndarray:
        out: float | np.ndarray = 0.0
        for n in range(self.n_inputs):
            out = out + self._product((*z[:n], dz[n], *z[n + 1:]))
        return np.asarray(out)

    def vjp(self, z: Arrays, g: np.ndarray) -> tuple[np.ndarray, ...]:
        # one Khatri-Rao product of the other inputs and one batched contraction per
        # input (an einsum with path optimisation spent most of a small fit's time
        # searching its path)
        n_in = self.n_inputs
        rows = [a.shape[0] for a in z]
        gt = np.reshape(g, (*rows, -1))
        out = []
        for n in range(n_in):
            others = [z[m] for m in range(n_in) if m != n]
            if not others:
                out.append(np.array(gt))
                continue
            gn = np.moveaxis(gt, n, 0).reshape(rows[n], -1, gt.shape[-1])
            out.append(np.einsum("ipr,pr->ir", gn, self._product(tuple(others))))
        return tuple(out)


class Kron(_Multi):
    """x = z_1 ⊗ z_2 ⊗ ... ⊗ z_N (Kronecker product of matrices, as np.kron)."""

    name = "kron"

    def output_shape(self, *shapes: Shape) -> Shape:
        if any(len(s) != 2 for s in shapes):
            raise fail("kron", f"inputs must be matrices, got {fmt_shapes(shapes)}")
        return (int(np.prod([s[0] for s in shapes])), int(np.prod([s[1] for s in shapes])))

    @staticmethod
    def _product(arrays: Arrays) -> np.ndarray:
        out = numeric(arrays[0])
        for a in arrays[1:]:
            out = np.kron(out, a)
        return out

    def value(self, z: Arrays) -> np.ndarray:
        return self._product(z)

    def jvp(self, z: Arrays, dz: Arrays) -> np.ndarray:
        out: float | np.ndarray = 0.0
        for n in range(self.n_inputs):
            out = out + self._product((*z[:n], dz[n], *z[n + 1:]))
        return np.asarray(out)

    def vjp(self, z: Arrays, g: np.ndarray) -> tuple[np.ndarray, ...]:
        n_in = self.n_inputs
        if n_in > 12:
            raise fail("kron", f"at most 12 inputs are supported, got {n_in}")
        rows = string.ascii_lowercase[:n_in]
        cols = string.ascii_uppercase[:n_in]
        gt = np.reshape(g, (*[a.shape[0] for a in z], *[a.shape[1] for a in z]))
        out = []
        for n in range(n_in):
            ops = [f"{rows[m]}{cols[m]}" for m in range(n_in) if m != n]
            spec = f"{rows}{cols}" + "".join("," + o for o in ops) + f"->{rows[n]}{cols[n]}"
            args = [z[m] for m in range(n_in) if m != n]
            out.append(np.einsum(spec, gt, *args, optimize=n_in > 2))
        return tuple(out)


class Concat(_Multi):
    """x = concatenate([z_1, ..., z_N], axis): shapes equal except along ``axis``."""

    name = "concat"

    def __init__(self, n_inputs: int = 2, axis: int = 0) -> None:
        super().__init__(n_inputs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise fail("concat", f"axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def params(self) -> dict[str, Any]:
        return {"n_inputs": self.n_inputs, "axis": self.axis}

    def output_shape(self, *shapes: Shape) -> Shape:
        ndim = len(shapes[0])
        if not -ndim <= self.axis < ndim:
            raise fail("concat", f"axis {self.axis} is out of range for inputs with {ndim} axes")
        ax = self.axis % ndim
        rest = {tuple(s[:ax]) + tuple(s[ax + 1:]) for s in shapes}
        if len(rest) != 1 or any(len(s) != ndim for s in shapes):
            raise fail(
                "concat",
                f"inputs must have equal shapes except along axis {self.axis}, "
                f"got {fmt_shapes(shapes)}",
            )
        out = list(shapes[0])
        out[ax] = int(sum(s[ax] for s in shapes))
        return tuple(out)

    def value(self, z: Arrays) -> np.ndarray:
        return np.concatenate([numeric(a) for a in z], axis=self.axis)

    def jvp(self, z: Arrays, dz: Arrays) -> np.ndarray:
        return self.value(dz)

    def vjp(self, z: Arrays, g: np.ndarray) -> tuple[np.ndarray, ...]:
        ax = self.axis % np.ndim(g)
        cuts = np.cumsum([np.shape(a)[ax] for a in z])[:-1]
        return tuple(np.split(g, cuts, axis=ax))


class Plus(_Multi):
    """x = z_1 + z_2 + ... + z_N (numpy broadcasting allowed)."""

    name = "plus"

    def output_shape(self, *shapes: Shape) -> Shape:
        try:
            return tuple(np.broadcast_shapes(*shapes))
        except ValueError:
            raise fail(self.name, f"input shapes {fmt_shapes(shapes)} do not broadcast") from None

    def value(self, z: Arrays) -> np.ndarray:
        out = numeric(z[0])
        for a in z[1:]:
            out = out + a
        return out

    def jvp(self, z: Arrays, dz: Arrays) -> np.ndarray:
        return self.value(dz)

    def vjp(self, z: Arrays, g: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(unbroadcast(numeric(g), np.shape(a)) for a in z)


class Prod(Plus):
    """x = z_1 ∘ z_2 ∘ ... ∘ z_N: elementwise (Hadamard) product (broadcasting allowed)."""

    name = "prod"

    def value(self, z: Arrays) -> np.ndarray:
        out = numeric(z[0])
        for a in z[1:]:
            out = out * a
        return out

    def _others(self, z: Arrays) -> list[np.ndarray]:
        """Products of all inputs but the n-th (prefix and suffix products; no division)."""
        n = len(z)
        prefix = [np.ones(())]
        for a in z[:-1]:
            prefix.append(prefix[-1] * a)
        out = [np.ones(())] * n
        suffix: np.ndarray = np.ones(())
        for k in range(n - 1, -1, -1):
            out[k] = prefix[k] * suffix
            suffix = suffix * z[k]
        return out

    def jvp(self, z: Arrays, dz: Arrays) -> np.ndarray:
        others = self._others(z)
        out = others[0] * dz[0]
        for o, d in zip(others[1:], dz[1:]):
            out = out + o * d
        return np.broadcast_to(out, self.output_shape(*(np.shape(a) for a in z))).copy()

    def vjp(self, z: Arrays, g: np.ndarray) -> tuple[np.ndarray, ...]:
        others = self._others(z)
        return tuple(unbroadcast(np.asarray(g * o), np.shape(a)) for o, a in zip(others, z))


class Times(Prod):
    """x = z_1 ∘ z_2: elementwise product of two expressions (broadcasting allowed)."""

    name = "times"
    min_inputs = 2

    def __init__(self) -> None:
        super().__init__(2)

    def params(self) -> dict[str, Any]:
        return {}


# ----------------------------------------------------------------------------- functions


def _inputs(name: str, inputs: tuple[ExprLike | Sequence[ExprLike], ...]) -> tuple[ExprLike, ...]:
    exprs = unpack_inputs(inputs)
    if not exprs:
        raise fail(name, "needs at least one input expression, got none")
    return exprs


def kr(*inputs: ExprLike | Sequence[ExprLike], name: str | None = None) -> Node:
    """x = z_1 ⊙ z_2 ⊙ ... (column-wise Khatri-Rao product, C-order rows).

    Examples
    --------
    >>> import sdf
    >>> from sdf import transforms as tf
    >>> tf.kr(sdf.Variable.random((3, 2)), sdf.Variable.random((4, 2))).shape
    (12, 2)
    """
    exprs = _inputs("kr", inputs)
    return Kr(len(exprs))(*exprs, name=name)


def kron(*inputs: ExprLike | Sequence[ExprLike], name: str | None = None) -> Node:
    """x = z_1 ⊗ z_2 ⊗ ... (Kronecker product).

    Examples
    --------
    >>> import sdf
    >>> from sdf import transforms as tf
    >>> tf.kron(sdf.Variable.random((3, 2)), sdf.Variable.random((4, 5))).shape
    (12, 10)
    """
    exprs = _inputs("kron", inputs)
    return Kron(len(exprs))(*exprs, name=name)


def concat(
    *inputs: ExprLike | Sequence[ExprLike], axis: int = 0, name: str | None = None
) -> Node:
    """x = concatenate(inputs, axis).

    Examples
    --------
    >>> import sdf
    >>> from sdf import transforms as tf
    >>> tf.concat([sdf.Variable.random((3, 2)), sdf.Variable.random((4, 2))], axis=0).shape
    (7, 2)
    """
    exprs = _inputs("concat", inputs)
    return Concat(len(exprs), axis)(*exprs, name=name)


def plus(*inputs: ExprLike | Sequence[ExprLike], name: str | None = None) -> Node:
    """x = z_1 + z_2 + ... (arrays act as known offsets).

    Examples
    --------
    >>> import numpy as np, sdf
    >>> from sdf import transforms as tf
    >>> tf.plus(sdf.Variable.random((3, 2)), np.ones((3, 2))).shape
    (3, 2)
    """
    exprs = _inputs("plus", inputs)
    return Plus(len(exprs))(*exprs, name=name)


def prod(*inputs: ExprLike | Sequence[ExprLike], name: str | None = None) -> Node:
    """x = z_1 ∘ z_2 ∘ ... (Hadamard product of several expressions).

    Examples
    --------
    >>> import sdf
    >>> from sdf import transforms as tf
    >>> a, b, c = (sdf.Variable.random((3, 2)) for _ in range(3))
    >>> tf.prod(a, b, c).shape
    (3, 2)
    """
    exprs = _inputs("prod", inputs)
    return Prod(len(exprs))(*exprs, name=name)


def times(a: ExprLike, b: ExprLike, *, name: str | None = None) -> Node:
    """x = a ∘ b (elementwise), or x = b * a when b (or a) is a plain scalar.

    A number gives the one-input :class:`~sdf.transforms.Scale`; anything else the
    two-input :class:`Times`.

    Examples
    --------
    >>> import sdf
    >>> from sdf import transforms as tf
    >>> a, b = sdf.Variable.random((3, 2)), sdf.Variable.random((3, 2))
    >>> tf.times(a, b).transform.name, tf.times(a, 2.0).transform.name
    ('times', 'scale')
    """
    if np.isscalar(b) and isinstance(a, Expr):
        return Scale(b)(a, name=name)  # type: ignore[arg-type]
    if np.isscalar(a) and isinstance(b, Expr):
        return Scale(a)(b, name=name)  # type: ignore[arg-type]
    return Times()(a, b, name=name)
