"""Loewner matrices of sampled functions, never expanded: :class:`LoewnerTensor`.

The samples ``f(t_l)`` are split into a row set (points x_i, values F_i) and a column set
(points y_j, values G_j): ``L[i, j] = (F_i - G_j) / (x_i - y_j)``. L is Cauchy-like,
``L = diag(F) C - C diag(G)`` with the Cauchy matrix ``C[i, j] = 1 / (x_i - y_j)``, so
every reduction is a few products of C with tall matrices. They are computed in row
blocks without ever storing L or C: O(I J R) time, O((I + J) (M + R)) memory for I rows,
J columns, M signals and rank R.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sdf import algebra
from sdf.errors import DataError
from sdf.tensors._base import MTTKRPSession, Tensor, _float_array, _readonly, _TreeSession
from sdf.tensors._signals import check_densify, read_signals

__all__ = ["LoewnerTensor"]

_BLOCK_FLOATS = 1 << 20  # entries of C formed at a time


def _cauchy_product(rows: np.ndarray, cols: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``C @ V`` with ``C[i, j] = 1 / (rows[i] - cols[j])``, C formed in row blocks."""
    out = np.empty((rows.size, V.shape[1]))
    step = max(1, _BLOCK_FLOATS // max(cols.size, 1))
    for s in range(0, rows.size, step):
        out[s:s + step] = (1.0 / (rows[s:s + step, None] - cols[None, :])) @ V
    return out


def _contract_rest(W: np.ndarray, mats: list[np.ndarray], q: int) -> np.ndarray:
    """MTTKRP of mode q of the (rest..., R) array W whose last axis is the rank."""
    p = len(mats)
    operands: list[Any] = [W, [*range(p), p]]
    for k, A in enumerate(mats):
        if k != q:
            operands += [A, [k, p]]
    return np.einsum(*operands, [q, p], optimize=True)


class _LoewnerSession:
    def __init__(self, data: LoewnerTensor, mats: list[np.ndarray]) -> None:
        d = data
        self._data = d
        self._A, self._B = mats[d.axis], mats[d.axis + 1]
        self._rest = [mats[t] for t in d._rest_modes]
        K = algebra.khatri_rao(self._rest) if self._rest else np.ones((1, self._A.shape[1]))
        self._h, self._g = d._F @ K, d._G @ K  # (I, R), (J, R)
        self._CB = _cauchy_product(d._x, d._y, self._B)
        row = self._h * self._CB - _cauchy_product(d._x, d._y, self._B * self._g)
        self._row = row
        self._inner = float(np.sum(self._A * row))
        self._all: list[np.ndarray] | None = None

    def inner(self) -> float:
        return self._inner

    def all(self) -> list[np.ndarray]:
        if self._all is None:
            d = self._data
            out: list[np.ndarray] = [np.empty(0)] * d.ndim
            CtA = _cauchy_product(d._y, d._x, self._A)  # = -C^T A
            out[d.axis] = self._row
            out[d.axis + 1] = self._g * CtA - _cauchy_product(d._y, d._x, self._A * self._h)
            if self._rest:
                W = d._F.T @ (self._A * self._CB) + d._G.T @ (self._B * CtA)
                Wt = W.reshape(*d._rest_shape, -1)
                for q, t in enumerate(d._rest_modes):
                    out[t] = _contract_rest(Wt, self._rest, q)
            self._all = out
        return self._all


class LoewnerTensor(Tensor):
    """Loewner matrices of one or several sampled functions, never expanded.

    ``T[..., i, j, ...] = (f[..., r_i, ...] - f[..., c_j, ...]) / (t[r_i] - t[c_j])`` for the
    row samples ``r`` and the column samples ``c`` (the others); the two modes take the
    place of the signal axis. A rational function of degree R gives a Loewner matrix of
    rank R (Loewner-based source separation and system identification).

    Parameters
    ----------
    signals : array_like
        Samples f(t_l), one function (a vector) or several along ``axis``; real, finite.
    points : array_like of shape (L,), optional
        Sample points t; default ``0, 1, ..., L - 1``.
    rows : array_like of int, optional
        Samples in the row set; default the even ones ``0, 2, 4, ...`` (interleaved
        partition); the others, in order, form the column set. No point may be in both.
    axis : int, default 0
        Axis of ``signals`` along which the samples run.
    name : str, default "data"

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(6.0)
    >>> T = LoewnerTensor(1.0 / (t + 1.0), t)  # a degree-1 rational function: rank 1
    >>> T.shape, int(np.linalg.matrix_rank(T.to_dense()))
    ((3, 3), 1)
    """

    kind: ClassVar[str] = "loewner"

    def __init__(self, signals: Any, points: Any = None, rows: Any = None, axis: int = 0, *,
                 name: str = "data") -> None:
        x, ax = read_signals(signals, axis, name)
        L = x.shape[ax]
        t = np.arange(L, dtype=float) if points is None else _float_array(points, name,
                                                                           "points")
        if t.shape != (L,) or not np.isfinite(t).all():
            raise DataError(f"{name}: points must be {L} finite numbers (one per sample), "
                            f"got shape {t.shape}")
        r = self._row_set(rows, L, name)
        c = np.setdiff1d(np.arange(L), r)
        if r.size == 0 or c.size == 0:
            raise DataError(f"{name}: both the row and the column set need samples; rows "
                            f"has {r.size} of {L}")
        common = np.intersect1d(t[r], t[c])
        if common.size:
            raise DataError(f"{name}: point {float(common[0])} is in both the row and the column "
                            "set; the Loewner matrix divides by their differences")
        moved = np.moveaxis(x, ax, 0)
        self._rest_shape = moved.shape[1:]
        flat = moved.reshape(L, -1)
        self._F = _readonly(np.ascontiguousarray(flat[r]))
        self._G = _readonly(np.ascontiguousarray(flat[c]))
        self._x, self._y = _readonly(t[r].copy()), _readonly(t[c].copy())
        self._axis = ax
        self._shape = x.shape[:ax] + (r.size, c.size) + x.shape[ax + 1:]
        self._rest_modes = [*range(ax), *range(ax + 2, len(self._shape))]
        self._name = name

    @staticmethod
    def _row_set(rows: Any, L: int, name: str) -> np.ndarray:
        if rows is None:
            return np.arange(0, L, 2)
        r = np.asarray(rows)
        if r.ndim != 1 or r.dtype.kind not in "iu" or (r.size and (r.min() < 0 or r.max() >= L)):
            raise DataError(f"{name}: rows must be sample indices in [0, {L}), got {rows!r}")
        if np.unique(r).size != r.size:
            raise DataError(f"{name}: rows has repeated sample indices")
        return r.astype(np.int64)

    @property
    def row_points(self) -> np.ndarray:
        """Points x_i of the row set (read-only)."""
        return self._x

    @property
    def column_points(self) -> np.ndarray:
        """Points y_j of the column set (read-only)."""
        return self._y

    @property
    def axis(self) -> int:
        """The row mode (the column mode follows it)."""
        return self._axis

    def _norm_squared(self) -> float:
        total = 0.0
        Fn = np.einsum("im,im->i", self._F, self._F)
        Gn = np.einsum("jm,jm->j", self._G, self._G)
        step = max(1, _BLOCK_FLOATS // max(self._y.size, 1))
        for s in range(0, self._x.size, step):
            C2 = 1.0 / (self._x[s:s + step, None] - self._y[None, :]) ** 2
            FG = self._F[s:s + step] @ self._G.T
            total += float(np.sum(C2 * (Fn[s:s + step, None] - 2.0 * FG + Gn[None, :])))
        return total

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        return _LoewnerSession(self, mats)  # type: ignore[return-value]

    def _inner_cpd(self, mats: list[np.ndarray]) -> float:
        return _LoewnerSession(self, mats).inner()

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return _LoewnerSession(self, mats).all()[n]

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        return _LoewnerSession(self, mats).all()

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        i, j = subs[:, self._axis], subs[:, self._axis + 1]
        rest = subs[:, self._rest_modes]
        m = np.ravel_multi_index(tuple(rest.T), self._rest_shape) if rest.shape[1] else \
            np.zeros(subs.shape[0], dtype=np.int64)
        return (self._F[i, m] - self._G[j, m]) / (self._x[i] - self._y[j])

    def to_dense(self) -> np.ndarray:
        check_densify(self.shape, self._name, "Loewner")
        C = 1.0 / (self._x[:, None] - self._y[None, :])
        block = C[:, :, None] * (self._F[:, None, :] - self._G[None, :, :])
        block = block.reshape(block.shape[:2] + self._rest_shape)
        return np.ascontiguousarray(np.moveaxis(block, [0, 1], [self._axis, self._axis + 1]))

