"""Data stored as coordinates: :class:`IncompleteTensor` (known entries only) and
:class:`SparseTensor` (stored entries, the others zero)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp

from sdf import _multilinear as ml
from sdf.numerics import ldexp
from sdf.errors import DataError
from sdf.tensors._base import (
    KnownEntries,
    Tensor,
    _check_no_inf,
    _check_shape,
    _check_subs,
    _float_array,
    _max_exponent,
    _native,
    _number,
    _readonly,
    _strides,
)

__all__ = ["IncompleteTensor", "SparseTensor"]


def _known_of(a: np.ndarray, mask: Any, name: str) -> np.ndarray:
    """The known entries of ``a`` (not NaN, and marked by ``mask`` if given), checked:
    a boolean array of ``a``'s shape with at least one True and no Inf where True."""
    known = ~np.isnan(a)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            raise DataError(f"{name}: mask must be a boolean array (True = known), "
                            f"got dtype {m.dtype}")
        if m.shape != a.shape:
            raise DataError(f"{name}: mask must have the data's shape {a.shape}, "
                            f"got {m.shape}")
        if (m & ~known).any():
            idx = tuple(int(i) for i in np.argwhere(m & ~known)[0])
            raise DataError(f"{name}: entry {idx} is NaN but the mask marks it known")
        known = m
    bad = known & np.isinf(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{name}: entry {idx} is inf; Inf is not allowed (NaN marks a missing entry)")
    if not known.any():
        raise DataError(f"{name}: all entries are missing; expected at least one known "
                        "entry")
    return known


_C = TypeVar("_C", bound="_CoordinateTensor")


class _CoordinateTensor(Tensor):
    """Shared storage of incomplete and sparse data: C-sorted ``subs`` and ``vals``."""

    _missing_value: ClassVar[float]

    @classmethod
    def from_entries(cls: type[_C], subs: Any, vals: Any, shape: Sequence[int], *,
                     name: str = "data") -> _C:
        """Build from entries ``T[tuple(subs[k])] = vals[k]``.

        Parameters
        ----------
        subs : int array_like of shape (nnz, N)
            Indices in any order (sorted here); duplicates are rejected.
        vals : array_like of shape (nnz,)
            Real or complex, no Inf; NaN (in either part) marks a missing entry (dropped)
            for incomplete data.
        shape : sequence of int

        Examples
        --------
        >>> T = IncompleteTensor.from_entries([[1, 2], [0, 0]], [5.0, 7.0], (2, 3))
        >>> T.subs.tolist(), T.vals.tolist(), T.linear_index.tolist()
        ([[0, 0], [1, 2]], [7.0, 5.0], [0, 5])
        """
        shp = _check_shape(shape, name)
        s = _check_subs(subs, shp, name)
        v = _float_array(vals, name, "vals", complex_ok=True)
        if v.shape != (s.shape[0],):
            raise DataError(f"{name}: vals must have shape ({s.shape[0]},) to match subs, "
                            f"got {v.shape}")
        _check_no_inf(v, name, lambda k: tuple(int(i) for i in s[k]))
        nan = np.isnan(v)
        if nan.any() and cls._missing_value == 0.0:
            k = tuple(int(i) for i in s[np.flatnonzero(nan)[0]])
            raise DataError(f"{name}: entry {k} is NaN; the entries of sparse data are known "
                            "(use missing='unknown' for incomplete data)")
        if nan.any():
            s, v = s[~nan], v[~nan]
        if cls._missing_value != 0.0 and s.shape[0] == 0:
            raise DataError(f"{name}: all entries are missing; expected at least one known entry")
        lin = s @ _strides(shp)
        if np.any(np.diff(lin) <= 0):
            order = np.argsort(lin, kind="stable")
            lin, s, v = lin[order], s[order], v[order]
            dup = np.flatnonzero(np.diff(lin) == 0)
            if dup.size:
                k = tuple(int(i) for i in s[dup[0]])
                raise DataError(f"{name}: entry {k} appears more than once in subs; "
                                "each entry may be given only once")
        obj = object.__new__(cls)
        obj._init(s, np.array(_native(v)), shp, lin)
        return obj

    def _init(self, subs: np.ndarray, vals: np.ndarray, shape: tuple[int, ...],
              lin: np.ndarray) -> None:
        self._shape = shape
        self._subs = _readonly(np.asfortranarray(subs, dtype=np.int64))  # columns contiguous
        self._vals = _readonly(vals)
        self._lin = _readonly(lin)
        self._indicators: dict[int, sp.csr_array] = {}
        self._known: KnownEntries | None = None

    @property
    def subs(self) -> np.ndarray:
        """Indices of the stored entries, int64 of shape (nnz, N), in C order."""
        return self._subs

    @property
    def vals(self) -> np.ndarray:
        """Values of the stored entries, float64 (complex128) of shape (nnz,)."""
        return self._vals

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self._vals.shape[0])

    @property
    def is_complex(self) -> bool:
        return bool(np.iscomplexobj(self._vals))

    @property
    def density(self) -> float:
        """Fraction of the entries stored: ``nnz / size``."""
        return self.nnz / self.size

    @property
    def linear_index(self) -> np.ndarray:
        """C-order flat index of each stored entry, int64 of shape (nnz,), increasing."""
        return self._lin

    def mode_indicator(self, mode: int) -> sp.csr_array:
        """Sparse (I_mode, nnz) matrix with ones at (subs[k, mode], k); built once, cached.

        ``T.mode_indicator(n) @ W`` sums the rows of W, shape (nnz, R), per mode-n index.

        Examples
        --------
        >>> T = SparseTensor.from_entries([[0, 1], [1, 1]], [2.0, 3.0], (2, 2))
        >>> T.mode_indicator(1).toarray()
        array([[0., 0.],
               [1., 1.]])
        """
        n = self._mode(mode)
        if n not in self._indicators:
            idx = self._subs[:, n]
            indptr = np.zeros(self.shape[n] + 1, dtype=np.int64)
            np.cumsum(np.bincount(idx, minlength=self.shape[n]), out=indptr[1:])
            order = np.argsort(idx, kind="stable")
            self._indicators[n] = sp.csr_array(
                (np.ones(self.nnz), order, indptr), shape=(self.shape[n], self.nnz))
        return self._indicators[n]

    def _rows(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        """Row subs[k, m] of factor m for every stored entry k: (nnz, R_m) each."""
        return [np.take(A, self._subs[:, m], axis=0) for m, A in enumerate(mats)]

    def _norm_squared(self) -> float:
        if np.iscomplexobj(self._vals):
            return float(np.vdot(self._vals, self._vals).real)
        return float(self._vals @ self._vals)

    def _scale_exponent(self) -> int:
        return _max_exponent([self._vals])

    def _scaled(self, exponent: int) -> Tensor:
        out = type(self).__new__(type(self))
        out._init(self._subs, _readonly(ldexp(self._vals, exponent)), self._shape,
                  self._lin)
        out._indicators = self._indicators  # the same entries: share the index structures
        return out

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        return ml.rows_outer_sum(self._vals, self._rows(mats), tuple(A.shape[1] for A in mats))

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        rows = self._rows(mats)
        z = ml.rows_leave_one_out(core, rows)
        K = [np.asarray(self.mode_indicator(n) @ (self._vals[:, None] * z[n]))
             for n in range(self.ndim)]
        return ml.rows_outer_sum(self._vals, rows, core.shape), K

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        rows = self._rows(mats)
        P = rows[0]
        for Rm in rows[1:]:
            P = P * Rm
        return _number(self._vals @ P.sum(axis=1))

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float | complex:
        return _number(self._vals @ ml.rows_values(core, self._rows(mats)))

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        W = np.repeat(self._vals[:, None], mats[0].shape[1], axis=1)
        if any(np.iscomplexobj(A) for A in mats):
            W = W.astype(np.complex128)
        for m, A in enumerate(mats):
            if m != n:
                W *= np.take(A, self._subs[:, m], axis=0)
        return np.asarray(self.mode_indicator(n) @ W)

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        rows, N = self._rows(mats), self.ndim
        # left[n] = vals * prod_{m<n} rows[m]; right = prod_{m>n} rows[m], built backwards
        left = [np.broadcast_to(self._vals[:, None], rows[0].shape)]
        for m in range(N - 1):
            left.append(left[-1] * rows[m])
        out: list[np.ndarray] = [left[0]] * N
        right = None
        for n in range(N - 1, -1, -1):
            out[n] = np.asarray(self.mode_indicator(n) @ (left[n] if right is None
                                                           else left[n] * right))
            right = rows[n] if right is None else right * rows[n]
        return out

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        q, lin = subs @ _strides(self.shape), self._lin
        if self.nnz == 0:
            return np.full(q.shape, self._missing_value)
        pos = np.minimum(np.searchsorted(lin, q), self.nnz - 1)
        return np.where(lin[pos] == q, self._vals[pos], self._missing_value)

    def to_dense(self) -> np.ndarray:
        out = np.full(self.shape, self._missing_value, dtype=self._vals.dtype)
        out[tuple(self._subs.T)] = self._vals
        return out

    def _extra_repr(self) -> str:
        return f", nnz={self.nnz}"


class IncompleteTensor(_CoordinateTensor):
    """Data with missing entries, stored as the known entries only.

    Every operation costs O(nnz·N·R) and works on the known entries only (the missing
    ones count as zero in norms, inner products and MTTKRPs).

    Parameters
    ----------
    array : array_like
        Data with NaN at the missing entries (see also :meth:`from_entries`).
    mask : bool array_like of the same shape, optional
        True marks a known entry. Values where it is False are ignored (may be anything,
        Inf included); a NaN where it is True is an error.

    Examples
    --------
    >>> T = IncompleteTensor(np.array([[1.0, np.nan], [np.nan, 2.0]]))
    >>> T.nnz, T.n_known, T.density, T.linear_index.tolist()
    (2, 2, 0.5, [0, 3])
    """

    kind: ClassVar[str] = "incomplete"
    _missing_value: ClassVar[float] = np.nan

    def __init__(self, array: Any, mask: Any = None, *, name: str = "data") -> None:
        a = _float_array(array, name, complex_ok=True)
        shape = _check_shape(a.shape, name)
        known = _known_of(a, mask, name)
        subs = np.argwhere(known)  # C order already
        self._init(subs, a[known], shape, subs @ _strides(shape))

    @property
    def n_known(self) -> int:
        """Number of known entries (nnz)."""
        return self.nnz

    def known_entries(self) -> KnownEntries:
        if self._known is None:
            self._known = KnownEntries(self.shape, self._subs, self._vals, self.mode_indicator)
        return self._known


class SparseTensor(_CoordinateTensor):
    """Data whose entries not stored are zeros (true values, not missing).

    Norms, inner products and MTTKRPs read the stored entries only: O(nnz·N·R).

    Parameters
    ----------
    matrix : scipy.sparse array or matrix, any format
        Duplicate entries are summed, as scipy does (see also :meth:`from_entries`).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> T = SparseTensor(sp.eye(3, format="csr"))
    >>> T.nnz, T.norm_squared(), T.n_known
    (3, 3.0, 9)
    """

    kind: ClassVar[str] = "sparse"
    _missing_value: ClassVar[float] = 0.0

    def __init__(self, matrix: Any, *, name: str = "data") -> None:
        if not sp.issparse(matrix):
            raise DataError(f"{name}: expected a scipy.sparse array or matrix, got "
                            f"{type(matrix).__name__} (see SparseTensor.from_entries)")
        coo = matrix.tocoo(copy=True)
        coo.sum_duplicates()
        coords = getattr(coo, "coords", None) or (coo.row, coo.col)
        T = SparseTensor.from_entries(np.stack(coords, axis=1).astype(np.int64), coo.data,
                                      coo.shape, name=name)
        self._init(T._subs, T._vals, T._shape, T._lin)
