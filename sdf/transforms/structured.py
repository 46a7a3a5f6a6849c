"""Structured matrices built from a vector of generators.

toeplitz, hankel, vander, cauchy, and the sparsity patterns band, diag, tridiag, tril,
triu (whose input holds the free entries). The input is a vector: shape ``(n,)``, or any
shape with one axis longer than 1 such as ``(n, 1)``; it is read in C order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdf.expr import Node
from sdf.transforms._base import ExprLike
from sdf.transforms._util import (
    as_int, as_shape, Base, fail, Gather, numeric, Shape, vector_length,
)

__all__ = [
    "Band", "Cauchy", "Diag", "Hankel", "Toeplitz", "Tridiag", "Tril", "Triu", "Vander",
    "band", "cauchy", "diag", "hankel", "toeplitz", "tridiag", "tril", "triu", "vander",
]


def _check_vector(
    name: str, shape: Shape, needed: int, what: str, noun: str = "generators"
) -> None:
    if vector_length(tuple(shape)) != needed:
        raise fail(name, f"input has shape {tuple(shape)} but {what} needs {needed} {noun}")


def _square(shape: int | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape, shape)
    m, n = as_shape(shape, name, "shape", ndim=2)
    return m, n


class Toeplitz(Gather):
    """x[i, j] = z[i - j] for i >= j, z[m - 1 + j - i] for i < j: z = [first column; first row[1:]].

    Matches ``scipy.linalg.toeplitz(z[:m], r=[z[0], *z[m:]])``; needs m + n - 1 generators.
    """

    name = "toeplitz"

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = as_shape(shape, "toeplitz", "shape", ndim=2)

    def params(self) -> dict[str, Any]:
        return {"shape": self.shape}

    def _build(self, shape: Shape) -> np.ndarray:
        m, n = self.shape
        _check_vector(self.name, shape, m + n - 1, f"a Toeplitz factor of shape {self.shape}")
        d = np.arange(m)[:, None] - np.arange(n)[None, :]
        return np.where(d >= 0, d, m - 1 - d)


class Hankel(Gather):
    """x[i, j] = z[i + j]: z = [first column; last row[1:]], m + n - 1 generators.

    Matches ``scipy.linalg.hankel(z[:m], z[m - 1:])``.
    """

    name = "hankel"

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = as_shape(shape, "hankel", "shape", ndim=2)

    def params(self) -> dict[str, Any]:
        return {"shape": self.shape}

    def _build(self, shape: Shape) -> np.ndarray:
        m, n = self.shape
        _check_vector(self.name, shape, m + n - 1, f"a Hankel factor of shape {self.shape}")
        return np.arange(m)[:, None] + np.arange(n)[None, :]


class _Pattern(Gather):
    """x = matrix of the given shape, zero outside a pattern; z lists the free entries.

    The free entries are taken in C (row-major) order of their positions.
    """

    shape: tuple[int, int]

    def _mask(self) -> np.ndarray:
        raise NotImplementedError

    def _build(self, shape: Shape) -> np.ndarray:
        mask = self._mask()
        count = int(mask.sum())
        _check_vector(
            self.name, shape, count, f"a {self.name} matrix of shape {self.shape}", "free entries"
        )
        idx = np.full(self.shape, -1, dtype=np.intp)
        idx[mask] = np.arange(count)
        return idx

    def _offsets(self) -> np.ndarray:
        m, n = self.shape
        return np.arange(n)[None, :] - np.arange(m)[:, None]  # j - i


class Band(_Pattern):
    """x[i, j] = free entry for -lower <= j - i <= upper, else 0 (z: the band, row by row)."""

    name = "band"

    def __init__(self, shape: int | tuple[int, int], lower: int, upper: int) -> None:
        self.shape = _square(shape, "band")
        self.lower = as_int(lower, "band", "lower")
        self.upper = as_int(upper, "band", "upper")

    def params(self) -> dict[str, Any]:
        return {"shape": self.shape, "lower": self.lower, "upper": self.upper}

    def _mask(self) -> np.ndarray:
        d = self._offsets()
        return (d >= -self.lower) & (d <= self.upper)


class Diag(_Pattern):
    """x[i, i] = z[i], zero elsewhere: min(m, n) generators."""

    name = "diag"

    def __init__(self, shape: int | tuple[int, int]) -> None:
        self.shape = _square(shape, "diag")

    def params(self) -> dict[str, Any]:
        return {"shape": self.shape}

    def _mask(self) -> np.ndarray:
        return self._offsets() == 0


class Tridiag(_Pattern):
    """x[i, j] = free entry for ``|i - j| <= 1``, else 0 (z: the entries row by row)."""

    name = "tridiag"

    def __init__(self, shape: int | tuple[int, int]) -> None:
        self.shape = _square(shape, "tridiag")

    def params(self) -> dict[str, Any]:
        return {"shape": self.shape}

    def _mask(self) -> np.ndarray:
        return np.abs(self._offsets()) <= 1


class Tril(_Pattern):
    """x[i, j] = free entry for j - i <= k, else 0 (z: the entries row by row)."""

    name = "tril"

    def __init__(self, shape: int | tuple[int, int], k: int = 0) -> None:
        self.shape = _square(shape, "tril")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise fail("tril", f"k must be an integer, got {k!r}")
        self.k = int(k)

    def params(self) -> dict[str, Any]:
        return {"shape": self.shape, "k": self.k}

    def _mask(self) -> np.ndarray:
        mask = self._offsets() <= self.k
        if not mask.any():
            raise fail("tril", f"k={self.k} leaves no free entry in shape {self.shape}")
        return mask


class Triu(_Pattern):
    """x[i, j] = free entry for j - i >= k, else 0 (z: the entries row by row)."""

    name = "triu"

    def __init__(self, shape: int | tuple[int, int], k: int = 0) -> None:
        self.shape = _square(shape, "triu")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise fail("triu", f"k must be an integer, got {k!r}")
        self.k = int(k)

    def params(self) -> dict[str, Any]:
        return {"shape": self.shape, "k": self.k}

    def _mask(self) -> np.ndarray:
        mask = self._offsets() >= self.k
        if not mask.any():
            raise fail("triu", f"k={self.k} leaves no free entry in shape {self.shape}")
        return mask


class Vander(Base[np.ndarray]):
    """x[i, d] = z[i]**d for d = 0, ..., n_cols - 1 (increasing powers, like np.vander(..., increasing=True))."""

    name = "vander"
    complex_vjp = "transpose"

    def __init__(self, n_cols: int) -> None:
        self.n_cols = as_int(n_cols, "vander", "n_cols", minimum=1)

    def params(self) -> dict[str, Any]:
        return {"n_cols": self.n_cols}

    def output_shape(self, *shapes: Shape) -> Shape:
        m = vector_length(tuple(shapes[0]))
        if m is None:
            raise fail("vander", f"input must be a vector of generators, got shape {shapes[0]}")
        return (m, self.n_cols)

    def value(self, z: np.ndarray) -> np.ndarray:
        return numeric(z).reshape(-1, 1) ** np.arange(self.n_cols)

    def _deriv(self, z: np.ndarray) -> np.ndarray:
        zc = numeric(z).reshape(-1, 1)
        powers = np.arange(self.n_cols)
        out = np.zeros((zc.shape[0], self.n_cols), dtype=zc.dtype)
        out[:, 1:] = powers[1:] * zc ** powers[:-1]
        return out

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self._deriv(z) * numeric(dz).reshape(-1, 1)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return (self._deriv(z) * g).sum(axis=1).reshape(np.shape(z))


class Cauchy(Base[np.ndarray]):
    """x[i, j] = 1 / (z[i] - z[m + j]): z = [a (m); b (n)], a Cauchy matrix 1/(a_i - b_j)."""

    name = "cauchy"
    complex_vjp = "transpose"

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = as_shape(shape, "cauchy", "shape", ndim=2)

    def params(self) -> dict[str, Any]:
        return {"shape": self.shape}

    def output_shape(self, *shapes: Shape) -> Shape:
        m, n = self.shape
        _check_vector(self.name, shapes[0], m + n, f"a Cauchy factor of shape {self.shape}")
        return self.shape

    def _split(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = numeric(z).ravel()
        return flat[: self.shape[0]], flat[self.shape[0]:]

    def value(self, z: np.ndarray) -> np.ndarray:
        a, b = self._split(z)
        return 1.0 / (a[:, None] - b[None, :])

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        x2 = self.value(z) ** 2
        da, db = self._split(dz)
        return -x2 * (da[:, None] - db[None, :])

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        h = self.value(z) ** 2 * g
        return np.concatenate([-h.sum(axis=1), h.sum(axis=0)]).reshape(np.shape(z))


# ----------------------------------------------------------------------------- functions


def toeplitz(z: ExprLike, shape: tuple[int, int], *, name: str | None = None) -> Node:
    """x = Toeplitz matrix of the given shape with first column z[:m], first row [z[0], z[m:]].

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Toeplitz((3, 2)).value(np.array([1.0, 2.0, 3.0, 4.0]))
    array([[1., 4.],
           [2., 1.],
           [3., 2.]])
    """
    return Toeplitz(shape)(z, name=name)


def hankel(z: ExprLike, shape: tuple[int, int], *, name: str | None = None) -> Node:
    """x[i, j] = z[i + j]: Hankel matrix of the given shape.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Hankel((2, 3)).value(np.array([1.0, 2.0, 3.0, 4.0]))
    array([[1., 2., 3.],
           [2., 3., 4.]])
    """
    return Hankel(shape)(z, name=name)


def vander(z: ExprLike, n_cols: int, *, name: str | None = None) -> Node:
    """x[i, d] = z[i]**d, d = 0, ..., n_cols - 1: Vandermonde matrix of generators z.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Vander(3).value(np.array([2.0, 3.0]))
    array([[1., 2., 4.],
           [1., 3., 9.]])
    """
    return Vander(n_cols)(z, name=name)


def cauchy(z: ExprLike, shape: tuple[int, int], *, name: str | None = None) -> Node:
    """x[i, j] = 1 / (z[i] - z[m + j]): Cauchy matrix of shape (m, n) from m + n generators.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Cauchy((1, 2)).value(np.array([1.0, 0.0, -1.0]))
    array([[1. , 0.5]])
    """
    return Cauchy(shape)(z, name=name)


def band(
    z: ExprLike, shape: int | tuple[int, int], lower: int, upper: int, *,
    name: str | None = None,
) -> Node:
    """x = band matrix (``lower`` subdiagonals, ``upper`` superdiagonals); z: the band row by row.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Band(3, lower=1, upper=0).value(np.arange(1.0, 6.0))
    array([[1., 0., 0.],
           [2., 3., 0.],
           [0., 4., 5.]])
    """
    return Band(shape, lower, upper)(z, name=name)


def diag(z: ExprLike, shape: int | tuple[int, int], *, name: str | None = None) -> Node:
    """x = diagonal matrix of the given shape (an int n means (n, n)) with diagonal z.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Diag(2).value(np.array([1.0, 2.0]))
    array([[1., 0.],
           [0., 2.]])
    """
    return Diag(shape)(z, name=name)


def tridiag(z: ExprLike, shape: int | tuple[int, int], *, name: str | None = None) -> Node:
    """x = tridiagonal matrix; z: its free entries row by row.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Tridiag(3).value(np.arange(1.0, 8.0))
    array([[1., 2., 0.],
           [3., 4., 5.],
           [0., 6., 7.]])
    """
    return Tridiag(shape)(z, name=name)


def tril(z: ExprLike, shape: int | tuple[int, int], k: int = 0, *, name: str | None = None) -> Node:
    """x = lower triangular matrix (entries with j - i <= k); z: free entries row by row.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Tril(2).value(np.array([1.0, 2.0, 3.0]))
    array([[1., 0.],
           [2., 3.]])
    """
    return Tril(shape, k)(z, name=name)


def triu(z: ExprLike, shape: int | tuple[int, int], k: int = 0, *, name: str | None = None) -> Node:
    """x = upper triangular matrix (entries with j - i >= k); z: free entries row by row.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Triu(2).value(np.array([1.0, 2.0, 3.0]))
    array([[1., 2.],
           [0., 3.]])
    """
    return Triu(shape, k)(z, name=name)
