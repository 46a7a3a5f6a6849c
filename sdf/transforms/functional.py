"""Factors sampled from parametric functions at known points: poly, rational and rbf.

The input z holds the coefficients, one column per component: the output column
x[:, r] is the function with coefficients z[:, r] evaluated at the points t. A 1-D z
gives a 1-D x.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from sdf.expr import Node
from sdf.transforms._base import ExprLike
from sdf.transforms._util import (
    as_int, Base, CachedLinearization, fail, frozen, numeric, Shape,
)

__all__ = ["Poly", "RBF", "Rational", "poly", "rational", "rbf"]


def _points(points: ArrayLike, name: str) -> np.ndarray:
    t = frozen(points, name, "points")
    if t.ndim != 1 or t.size == 0:
        raise fail(name, f"points must be a non-empty 1-D array, got shape {t.shape}")
    return t


def _coefficient_shape(name: str, shape: Shape, n_points: int, rows: str) -> Shape:
    shape = tuple(shape)
    if len(shape) not in (1, 2):
        raise fail(name, f"input must be a vector or a matrix of {rows}, got shape {shape}")
    return (n_points, *shape[1:])


class Poly(Base[np.ndarray]):
    """x[i, r] = Σ_d z[d, r] t_i**d: polynomials of degree z.shape[0] - 1 at points t."""

    name = "poly"
    complex_vjp = "transpose"

    def __init__(self, points: ArrayLike) -> None:
        self.points = _points(points, "poly")

    def params(self) -> dict[str, Any]:
        return {"points": self.points}

    def output_shape(self, *shapes: Shape) -> Shape:
        return _coefficient_shape("poly", shapes[0], self.points.size, "coefficients")

    def _basis(self, n: int) -> np.ndarray:
        return self.points[:, None] ** np.arange(n)

    def value(self, z: np.ndarray) -> np.ndarray:
        return self._basis(np.shape(z)[0]) @ z

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self._basis(np.shape(z)[0]) @ dz

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self._basis(np.shape(z)[0]).T @ g


class Rational(Base[np.ndarray]):
    """x = P(t) / Q(t), P(t) = Σ_{d=0}^{p} z[d] t**d, Q(t) = 1 + Σ_{d=1}^{q} z[p + d] t**d.

    ``degree=(p, q)``; z has p + 1 + q rows. The constant term of Q is fixed to 1 (it would
    otherwise be a free scale shared by P and Q).
    """

    name = "rational"
    complex_vjp = "transpose"

    def __init__(self, points: ArrayLike, degree: tuple[int, int]) -> None:
        self.points = _points(points, "rational")
        try:
            p, q = degree
        except (TypeError, ValueError):
            raise fail("rational", f"degree must be a pair (p, q), got {degree!r}") from None
        self.degree = (as_int(p, "rational", "degree[0]"), as_int(q, "rational", "degree[1]"))

    def params(self) -> dict[str, Any]:
        return {"points": self.points, "degree": self.degree}

    def output_shape(self, *shapes: Shape) -> Shape:
        p, q = self.degree
        if len(shapes[0]) not in (1, 2) or shapes[0][0] != p + 1 + q:
            raise fail(
                "rational",
                f"input has shape {tuple(shapes[0])} but degree={self.degree} needs "
                f"{p + 1 + q} rows of coefficients",
            )
        return _coefficient_shape("rational", shapes[0], self.points.size, "coefficients")

    def _parts(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        p, q = self.degree
        vn = self.points[:, None] ** np.arange(p + 1)
        vd = self.points[:, None] ** np.arange(1, q + 1)
        den = 1.0 + vd @ z[p + 1:]
        return vn, vd, den, (vn @ z[: p + 1]) / den

    def value(self, z: np.ndarray) -> np.ndarray:
        return self._parts(numeric(z))[3]

    def linearize(self, z: np.ndarray) -> CachedLinearization:
        z = numeric(z)
        p = self.degree[0]
        vn, vd, den, x = self._parts(z)

        def jvp(dz: np.ndarray) -> np.ndarray:
            return (vn @ dz[: p + 1] - x * (vd @ dz[p + 1:])) / den

        def vjp(g: np.ndarray) -> np.ndarray:
            h = g / den
            return np.concatenate([vn.T @ h, -vd.T @ (x * h)], axis=0)

        return CachedLinearization(self, z, x, jvp, vjp)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self.linearize(z).jvp(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.linearize(z).vjp(g)


class RBF(Base[np.ndarray]):
    """x[i, r] = Σ_k w[k, r] exp(-(t_i - c[k, r])² / s[k, r]²): Gaussian radial basis functions.

    z stacks weights w, centers c and widths s: z = [w; c; s], 3K rows for K kernels.
    """

    name = "rbf"

    def __init__(self, points: ArrayLike) -> None:
        self.points = _points(points, "rbf")

    def params(self) -> dict[str, Any]:
        return {"points": self.points}

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = tuple(shapes[0])
        if len(shape) not in (1, 2) or shape[0] % 3:
            raise fail(
                "rbf",
                f"input has shape {shape} but needs 3K rows (weights, centers, widths of K kernels)",
            )
        return _coefficient_shape("rbf", shape, self.points.size, "coefficients")

    def linearize(self, z: np.ndarray) -> CachedLinearization:
        z = numeric(z)
        vector = z.ndim == 1
        z2 = z[:, None] if vector else z
        k = z2.shape[0] // 3
        w, c, s = z2[:k], z2[k: 2 * k], z2[2 * k:]
        u = self.points[:, None, None] - c  # (I, K, R)
        phi = np.exp(-(u * u) / (s * s))
        dc = w * phi * (2.0 * u / (s * s))  # ∂x/∂c
        ds = dc * (u / s)  # ∂x/∂s = w φ 2u²/s³
        x = np.einsum("ikr,kr->ir", phi, w)

        def shape_out(a: np.ndarray) -> np.ndarray:
            return a[:, 0] if vector else a

        def jvp(dz: np.ndarray) -> np.ndarray:
            d = numeric(dz).reshape(z2.shape)
            out = np.einsum("ikr,kr->ir", phi, d[:k])
            out += np.einsum("ikr,kr->ir", dc, d[k: 2 * k])
            out += np.einsum("ikr,kr->ir", ds, d[2 * k:])
            return shape_out(out)

        def vjp(g: np.ndarray) -> np.ndarray:
            g2 = numeric(g).reshape(x.shape)
            out = np.concatenate([np.einsum("ikr,ir->kr", a, g2) for a in (phi, dc, ds)])
            return out.reshape(z.shape)

        return CachedLinearization(self, z, shape_out(x), jvp, vjp)

    def value(self, z: np.ndarray) -> np.ndarray:
        return self.linearize(z).value

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self.linearize(z).jvp(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.linearize(z).vjp(g)


# ----------------------------------------------------------------------------- functions


def poly(z: ExprLike, points: ArrayLike, *, name: str | None = None) -> Node:
    """x[i, r] = Σ_d z[d, r] points[i]**d: polynomial factor with coefficients z.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Poly(points=[0.0, 1.0, 2.0]).value(np.array([[1.0], [0.0], [1.0]]))  # 1 + t²
    array([[1.],
           [2.],
           [5.]])
    """
    return Poly(points)(z, name=name)


def rational(
    z: ExprLike, points: ArrayLike, degree: tuple[int, int], *, name: str | None = None
) -> Node:
    """x = P(t)/Q(t) with numerator degree p, denominator degree q (Q's constant term is 1).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Rational([0.0, 1.0], degree=(0, 1)).value(np.array([1.0, 1.0]))  # 1 / (1 + t)
    array([1. , 0.5])
    """
    return Rational(points, degree)(z, name=name)


def rbf(z: ExprLike, points: ArrayLike, *, name: str | None = None) -> Node:
    """x[i, r] = Σ_k w[k, r] exp(-(t_i - c[k, r])² / s[k, r]²) with z = [w; c; s].

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.RBF(points=[0.0, 1.0]).value(np.array([2.0, 0.0, 1.0]))  # 2 exp(-t²)
    array([2.        , 0.73575888])
    """
    return RBF(points)(z, name=name)
