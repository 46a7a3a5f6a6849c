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
from sdf.tensors._base import MTTKRPSession, Tensor, _float_array, _number, _readonly, \
    _TreeSession
from sdf.tensors._signals import check_densify, read_signals

__all__ = ["HigherOrderLoewnerTensor", "LoewnerTensor"]

_BLOCK_FLOATS = 1 << 20  # entries of C formed at a time


def _cauchy_product(rows: np.ndarray, cols: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``C @ V`` with ``C[i, j] = 1 / (rows[i] - cols[j])``, C formed in row blocks."""
    out = np.empty((rows.size, V.shape[1]), dtype=np.result_type(rows, cols, V, np.float64))
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
        self._inner = _number(np.sum(self._A * row))
        self._all: list[np.ndarray] | None = None

    def inner(self) -> float | complex:
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
        Samples f(t_l), one function (a vector) or several along ``axis``; real or
        complex (a frequency response), finite.
    points : array_like of shape (L,), optional
        Sample points t, real or complex (e.g. ``1j * omega``); default ``0, 1, ..., L - 1``.
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
        x, ax = read_signals(signals, axis, name, complex_ok=True)
        L = x.shape[ax]
        t = np.arange(L, dtype=float) if points is None else _float_array(
            points, name, "points", complex_ok=True)
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
            raise DataError(f"{name}: point {common[0].item()} is in both the row and the column "
                            "set; the Loewner matrix divides by their differences")
        moved = np.moveaxis(x, ax, 0)
        self._rest_shape = moved.shape[1:]
        flat = moved.reshape(L, -1)
        self._F = _readonly(np.ascontiguousarray(flat[r]))
        self._G = _readonly(np.ascontiguousarray(flat[c]))
        self._x, self._y = _readonly(t[r].copy()), _readonly(t[c].copy())
        self._dtype = np.result_type(x, t, np.float64)
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

    @property
    def is_complex(self) -> bool:
        return self._dtype.kind == "c"

    def _norm_squared(self) -> float:
        total = 0.0
        Fn = np.einsum("im,im->i", self._F.conj(), self._F).real
        Gn = np.einsum("jm,jm->j", self._G.conj(), self._G).real
        step = max(1, _BLOCK_FLOATS // max(self._y.size, 1))
        for s in range(0, self._x.size, step):
            C2 = 1.0 / np.abs(self._x[s:s + step, None] - self._y[None, :]) ** 2
            FG = (self._F[s:s + step] @ self._G.conj().T).real
            total += float(np.sum(C2 * (Fn[s:s + step, None] - 2.0 * FG + Gn[None, :])))
        return total

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        return _LoewnerSession(self, mats)  # type: ignore[return-value]

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
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



def _default_sets(L: int, order: int) -> list[np.ndarray]:
    """Tensorlab's interleaved partition: set k holds samples k, k + K, k + 2K, ..."""
    return [np.arange(k, L, order) for k in range(order)]


class _HigherLoewnerSession:
    """Products of the star-shaped Cauchy contractions: P[k][j] = C_kj @ A_j."""

    def __init__(self, data: HigherOrderLoewnerTensor, mats: list[np.ndarray]) -> None:
        d = self._data = data
        K = d.order
        self._A = [mats[d.axis + k] for k in range(K)]
        self._rest = [mats[t] for t in d._rest_modes]
        W = algebra.khatri_rao(self._rest) if self._rest else np.ones((1, self._A[0].shape[1]))
        self._h = [F @ W for F in d._F]  # (I_k, R)
        t = d._points
        self._P = [[_cauchy_product(t[k], t[j], self._A[j]) if j != k else None
                    for j in range(K)] for k in range(K)]
        self._star = [self._product(k, skip=k) for k in range(K)]
        self._inner = _number(sum(np.sum(h * A * S)
                                  for h, A, S in zip(self._h, self._A, self._star)))
        self._all: list[np.ndarray] | None = None

    def _product(self, k: int, skip: int) -> np.ndarray:
        out = np.ones_like(self._h[k])
        for j, P in enumerate(self._P[k]):
            if j != k and j != skip:
                out = out * P
        return out

    def inner(self) -> float | complex:
        return self._inner

    def all(self) -> list[np.ndarray]:
        if self._all is None:
            d = self._data
            K, t = d.order, d._points
            out: list[np.ndarray] = [np.empty(0)] * d.ndim
            for n in range(K):
                M = self._h[n] * self._star[n]
                for k in range(K):
                    if k != n:
                        V = self._h[k] * self._A[k] * self._product(k, skip=n)
                        M = M - _cauchy_product(t[n], t[k], V)  # C_knᵀ = -C_nk
                out[d.axis + n] = M
            if self._rest:
                V = sum(F.T @ (A * S) for F, A, S in zip(d._F, self._A, self._star))
                Vt = np.asarray(V).reshape(*d._rest_shape, -1)
                for q, mode in enumerate(d._rest_modes):
                    out[mode] = _contract_rest(Vt, self._rest, q)
            self._all = out
        return self._all


class HigherOrderLoewnerTensor(Tensor):
    r"""Loewner tensors of order K >= 2 of sampled functions, never expanded.

    The samples are split into K sets (points ``t_k``, values ``F_k``); the entries are
    the divided differences of order K - 1 (Tensorlab's ``loewnerize`` with ``Order``):

    .. math:: T_{i_1 \dots i_K} = \sum_{k=1}^K F_k[i_k]
       \prod_{j \ne k} \frac{1}{t_k[i_k] - t_j[i_j]},

    for K = 2 the Loewner matrix of :class:`LoewnerTensor`. Each of the K terms is a
    star of Cauchy matrices ``C_kj[a, b] = 1 / (t_k[a] - t_j[b])`` around mode k, so an
    MTTKRP session costs K (K - 1) + K (K - 1) products of Cauchy matrices with (I, R)
    blocks, O(K² I² R), instead of the I^K entries. The norm (computed once) sums the
    squared entries slab by slab, O(K I^K) time in bounded memory: its Gramian form
    would lose digits to the cancellation inside the divided differences.

    Parameters
    ----------
    signals : array_like
        Samples f(t_l), one function (a vector) or several along ``axis``; real or
        complex, finite.
    points : array_like of shape (L,), optional
        Sample points, real or complex; default ``0, 1, ..., L - 1``.
    order : int, default 3
        Number K of Loewner modes.
    sets : sequence of K arrays of int, optional
        The sample indices of each set; default interleaved (set k holds samples
        k, k + K, k + 2K, ...), as Tensorlab. No point may be in two sets.
    axis : int, default 0
    name : str, default "data"

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(9.0)
    >>> T = HigherOrderLoewnerTensor(t ** 2, t, order=3)  # f[a, b, c] = 1 for a quadratic
    >>> T.shape, np.allclose(T.to_dense(), 1.0)
    ((3, 3, 3), True)
    """

    kind: ClassVar[str] = "loewner-k"

    def __init__(self, signals: Any, points: Any = None, order: int = 3, sets: Any = None,
                 axis: int = 0, *, name: str = "data") -> None:
        x, ax = read_signals(signals, axis, name, complex_ok=True)
        L = x.shape[ax]
        if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or order < 2:
            raise DataError(f"{name}: order must be an int >= 2, got {order!r}")
        K = int(order)
        t = np.arange(L, dtype=float) if points is None else _float_array(
            points, name, "points", complex_ok=True)
        if t.shape != (L,) or not np.isfinite(t).all():
            raise DataError(f"{name}: points must be {L} finite numbers (one per sample), "
                            f"got shape {t.shape}")
        parts = _default_sets(L, K) if sets is None else self._check_sets(sets, K, L, name)
        if min(p.size for p in parts) == 0:
            raise DataError(f"{name}: every one of the {K} sets needs samples; {L} samples "
                            f"give sets of sizes {[p.size for p in parts]}")
        for k in range(K):
            for j in range(k + 1, K):
                common = np.intersect1d(t[parts[k]], t[parts[j]])
                if common.size:
                    raise DataError(f"{name}: point {common[0].item()} is in sets {k} and "
                                    f"{j}; the Loewner tensor divides by their differences")
        moved = np.moveaxis(x, ax, 0)
        self._rest_shape = moved.shape[1:]
        flat = moved.reshape(L, -1)
        self._F = [_readonly(np.ascontiguousarray(flat[p])) for p in parts]
        self._points = [_readonly(t[p].copy()) for p in parts]
        self._dtype = np.result_type(x, t, np.float64)
        self._axis = ax
        self._shape = x.shape[:ax] + tuple(p.size for p in parts) + x.shape[ax + 1:]
        self._rest_modes = [*range(ax), *range(ax + K, len(self._shape))]
        self._name = name

    @staticmethod
    def _check_sets(sets: Any, K: int, L: int, name: str) -> list[np.ndarray]:
        try:
            parts = [np.asarray(p) for p in sets]
        except TypeError:
            raise DataError(f"{name}: sets must be a sequence of {K} index arrays") from None
        if len(parts) != K or any(p.ndim != 1 or p.dtype.kind not in "iu" for p in parts):
            raise DataError(f"{name}: sets must be {K} one-dimensional integer index arrays")
        every = np.concatenate(parts)
        if every.size and (every.min() < 0 or every.max() >= L):
            raise DataError(f"{name}: set indices must be sample indices in [0, {L})")
        if np.unique(every).size != every.size:
            raise DataError(f"{name}: a sample index appears twice in the sets")
        return [p.astype(np.int64) for p in parts]

    @property
    def order(self) -> int:
        """Number K of Loewner modes."""
        return len(self._F)

    @property
    def axis(self) -> int:
        """First of the Loewner modes."""
        return self._axis

    @property
    def is_complex(self) -> bool:
        return self._dtype.kind == "c"

    @property
    def set_points(self) -> list[np.ndarray]:
        """The points of each set (read-only)."""
        return list(self._points)

    def _extra_repr(self) -> str:
        return f", order={self.order}, axis={self._axis}"

    def _norm_squared(self) -> float:
        # Summed over slabs of the first Loewner mode: the Gramian form of the norm
        # (O(K^3 I^3)) loses digits to the cancellation inside the divided differences,
        # the entries themselves do not lose more than the dense tensor's.
        I0 = self._F[0].shape[0]
        rest = max(1, self.size // I0)
        step = max(1, _BLOCK_FLOATS // rest)
        return float(sum(np.sum(np.abs(self._slab(slice(s, s + step))) ** 2)
                         for s in range(0, I0, step)))

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        return _HigherLoewnerSession(self, mats)  # type: ignore[return-value]

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _HigherLoewnerSession(self, mats).inner()

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return _HigherLoewnerSession(self, mats).all()[n]

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        return _HigherLoewnerSession(self, mats).all()

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        K, ax = self.order, self._axis
        idx = [subs[:, ax + k] for k in range(K)]
        rest = subs[:, self._rest_modes]
        m = np.ravel_multi_index(tuple(rest.T), self._rest_shape) if rest.shape[1] else \
            np.zeros(subs.shape[0], dtype=np.int64)
        out = np.zeros(subs.shape[0], dtype=self._dtype)
        for k in range(K):
            term = self._F[k][idx[k], m]
            for j in range(K):
                if j != k:
                    term = term / (self._points[k][idx[k]] - self._points[j][idx[j]])
            out += term
        return out

    def _slab(self, first: slice) -> np.ndarray:
        """Entries with the first Loewner index in ``first``, shape (b, I_1, ..., M)."""
        K = self.order
        F = [self._F[0][first], *self._F[1:]]
        t = [self._points[0][first], *self._points[1:]]
        sizes = tuple(f.shape[0] for f in F)
        block = np.zeros(sizes + (F[0].shape[1],), dtype=self._dtype)
        for k in range(K):
            term = np.expand_dims(F[k], [a for a in range(K) if a != k])
            for j in range(K):
                if j != k:
                    shape = [1] * (K + 1)
                    shape[k], shape[j] = sizes[k], sizes[j]
                    C = 1.0 / (t[k][:, None] - t[j][None, :])
                    term = term * (C if k < j else C.T).reshape(shape)
            block = block + term
        return block

    def to_dense(self) -> np.ndarray:
        check_densify(self.shape, self._name, "Loewner")
        K = self.order
        block = self._slab(slice(None))
        block = block.reshape(block.shape[:K] + self._rest_shape)
        return np.ascontiguousarray(np.moveaxis(block, list(range(K)),
                                                list(range(self._axis, self._axis + K))))
