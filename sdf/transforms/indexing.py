"""Linear re-arrangements and reductions: select, LL1, reshape, sum and fd."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from sdf.expr import Node
from sdf.transforms._base import ExprLike
from sdf.transforms._util import as_int, Base, fail, Gather, numeric, readonly, Shape

__all__ = ["FD", "LL1", "Reshape", "Select", "Sum", "fd", "ll1", "reshape", "select", "sum"]


def _axis(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise fail(name, f"axis must be an integer or None, got {value!r}")
    return int(value)


class Select(Gather):
    """x = z[index] (``axis=None``, flat C-order indices or a boolean mask of z's shape)
    or x = take(z, index, axis): entries, rows or columns by index (repeats allowed).
    """

    name = "select"

    def __init__(self, index: ArrayLike, axis: int | None = None) -> None:
        idx = np.asarray(index)
        if idx.dtype != bool and not np.issubdtype(idx.dtype, np.integer):
            raise fail("select", f"index must hold integers or booleans, got dtype {idx.dtype}")
        idx = idx.copy()
        idx.setflags(write=False)
        self.index = idx
        self.axis = _axis(axis, "select")

    def params(self) -> dict[str, Any]:
        return {"index": self.index, "axis": self.axis}

    def _build(self, shape: Shape) -> np.ndarray:
        size = int(np.prod(shape, dtype=int))
        positions = np.arange(size).reshape(shape)
        idx = self.index
        if self.axis is None:
            if idx.dtype == bool:
                if idx.shape != tuple(shape):
                    raise fail("select", f"mask has shape {idx.shape} but the input has shape {shape}")
                return positions[idx]
            where, n = "flat index", size
        else:
            if not -len(shape) <= self.axis < len(shape):
                raise fail("select", f"axis {self.axis} is out of range for input shape {shape}")
            n = shape[self.axis]
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise fail(
                        "select",
                        f"boolean index has shape {idx.shape} but axis {self.axis} has length {n}",
                    )
                idx = np.flatnonzero(idx)
            where = f"index along axis {self.axis}"
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise fail("select", f"{where} out of range: needs -{n} <= index < {n} for shape {shape}")
        idx = idx % n if idx.size else idx
        if self.axis is None:
            return positions.ravel()[idx]
        return np.take(positions, idx, axis=self.axis)


class LL1(Gather):
    """x = z[:, [0]*L_0 + [1]*L_1 + ...]: column r of z (K x R) repeated L_r times.

    Expands the third factor of a rank-(L_r, L_r, 1) block term decomposition so it can be
    used in a CPD of rank sum(L).
    """

    name = "LL1"

    def __init__(self, L: Sequence[int]) -> None:
        sizes = np.atleast_1d(np.asarray(L))
        if sizes.ndim != 1 or not np.issubdtype(sizes.dtype, np.integer) or (sizes < 1).any():
            raise fail("LL1", f"L must be a sequence of positive integers, got {L!r}")
        self.L = tuple(int(s) for s in sizes)

    def params(self) -> dict[str, Any]:
        return {"L": self.L}

    def _build(self, shape: Shape) -> np.ndarray:
        if len(shape) != 2 or shape[1] != len(self.L):
            raise fail(
                "LL1",
                f"input has shape {tuple(shape)} but L={list(self.L)} needs a matrix with "
                f"{len(self.L)} columns",
            )
        positions = np.arange(shape[0] * shape[1]).reshape(shape)
        return positions[:, np.repeat(np.arange(len(self.L)), self.L)]


class Reshape(Base[np.ndarray]):
    """x = z.reshape(shape) (C order; one -1 entry is inferred). Read-only views."""

    name = "reshape"
    complex_vjp = "transpose"

    def __init__(self, shape: int | Sequence[int]) -> None:
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in shape) or any(
            s < -1 or s == 0 for s in shape
        ) or shape.count(-1) > 1:
            raise fail("reshape", f"shape must hold positive integers and at most one -1, got {shape}")
        self.shape = tuple(int(s) for s in shape)

    def params(self) -> dict[str, Any]:
        return {"shape": self.shape}

    def output_shape(self, *shapes: Shape) -> Shape:
        size = int(np.prod(shapes[0], dtype=int))
        known = int(np.prod([s for s in self.shape if s != -1], dtype=int))
        if -1 in self.shape:
            if size % known:
                raise fail("reshape", f"cannot reshape input of shape {tuple(shapes[0])} into {self.shape}")
            return tuple(size // known if s == -1 else s for s in self.shape)
        if known != size:
            raise fail("reshape", f"cannot reshape input of shape {tuple(shapes[0])} into {self.shape}")
        return self.shape

    def value(self, z: np.ndarray) -> np.ndarray:
        return readonly(numeric(z).reshape(self.shape))

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return readonly(numeric(dz).reshape(self.shape))

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return readonly(numeric(g).reshape(np.shape(z)))


class Sum(Base[np.ndarray]):
    """x = z.sum(axis, keepdims=keepdims): sum along an axis (None: all entries)."""

    name = "sum"
    complex_vjp = "transpose"

    def __init__(self, axis: int | None = None, keepdims: bool = False) -> None:
        self.axis = _axis(axis, "sum")
        self.keepdims = bool(keepdims)

    def params(self) -> dict[str, Any]:
        return {"axis": self.axis, "keepdims": self.keepdims}

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = tuple(shapes[0])
        if self.axis is not None and not -len(shape) <= self.axis < len(shape):
            raise fail("sum", f"axis {self.axis} is out of range for input shape {shape}")
        return np.empty(shape).sum(axis=self.axis, keepdims=self.keepdims).shape

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(np.sum(z, axis=self.axis, keepdims=self.keepdims))

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self.value(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        g = numeric(g)
        shape = np.shape(z)
        if not self.keepdims:
            g = np.expand_dims(g, tuple(range(len(shape))) if self.axis is None else self.axis)
        return np.broadcast_to(g, shape).copy()


class FD(Base[np.ndarray]):
    """x = diff(z, order, axis): finite differences, e.g. x[i] = z[i + 1] - z[i] (order 1)."""

    name = "fd"
    complex_vjp = "transpose"

    def __init__(self, order: int = 1, axis: int = 0) -> None:
        self.order = as_int(order, "fd", "order", minimum=1)
        ax = _axis(axis, "fd")
        if ax is None:
            raise fail("fd", "axis must be an integer, got None")
        self.axis = ax

    def params(self) -> dict[str, Any]:
        return {"order": self.order, "axis": self.axis}

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = list(shapes[0])
        if not -len(shape) <= self.axis < len(shape):
            raise fail("fd", f"axis {self.axis} is out of range for input shape {tuple(shape)}")
        if shape[self.axis] <= self.order:
            raise fail(
                "fd",
                f"order {self.order} needs more than {self.order} entries along axis "
                f"{self.axis}, got input shape {tuple(shape)}",
            )
        shape[self.axis] -= self.order
        return tuple(shape)

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.diff(numeric(z), n=self.order, axis=self.axis)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self.value(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        g = numeric(g)
        pad = [(0, 0)] * g.ndim
        pad[self.axis] = (1, 1)
        for _ in range(self.order):  # adjoint of one difference: -diff of the zero-padded g
            g = -np.diff(np.pad(g, pad), axis=self.axis)
        return g


# ----------------------------------------------------------------------------- functions


def select(
    z: ExprLike, index: ArrayLike, axis: int | None = None, *, name: str | None = None
) -> Node:
    """x = z[index] (flat indices or a mask) or x = take(z, index, axis) (rows, columns...).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Select([2, 0], axis=0).value(np.array([[1.0], [2.0], [3.0]]))
    array([[3.],
           [1.]])
    """
    return Select(index, axis)(z, name=name)


def ll1(z: ExprLike, L: Sequence[int], *, name: str | None = None) -> Node:
    """x = z with column r repeated L[r] times (Tensorlab's struct_LL1).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.LL1([2, 1]).value(np.array([[1.0, 2.0]]))
    array([[1., 1., 2.]])
    """
    return LL1(L)(z, name=name)


def reshape(z: ExprLike, shape: int | Sequence[int], *, name: str | None = None) -> Node:
    """x = z.reshape(shape) in C order.

    Examples
    --------
    >>> import sdf
    >>> from sdf import transforms as tf
    >>> tf.reshape(sdf.Variable.random((4, 3)), (2, -1)).shape
    (2, 6)
    """
    return Reshape(shape)(z, name=name)


def sum(  # noqa: A001
    z: ExprLike, axis: int | None = None, keepdims: bool = False, *, name: str | None = None
) -> Node:
    """x = z.sum(axis, keepdims=keepdims).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Sum(axis=0).value(np.array([[1.0, 2.0], [3.0, 4.0]]))
    array([4., 6.])
    """
    return Sum(axis, keepdims)(z, name=name)


def fd(z: ExprLike, order: int = 1, axis: int = 0, *, name: str | None = None) -> Node:
    """x = diff(z, order, axis): finite differences along the rows (axis 0) by default.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.FD().value(np.array([1.0, 4.0, 9.0]))
    array([3., 5.])
    """
    return FD(order, axis)(z, name=name)
