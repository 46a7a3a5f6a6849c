"""Data types for the tensors a model is fitted to, and :func:`as_tensor`.

Every data set enters the engine as one of five :class:`Tensor` kinds, each with the same
small set of operations a term needs: the norm, inner products with a CPD or Tucker model,
MTTKRPs (matricized tensor times Khatri-Rao product) and sampling at given entries:
:class:`DenseTensor` (all known), :class:`IncompleteTensor` (known entries only, missing
ones unknown), :class:`SparseTensor` (stored entries, the others zero), :class:`CPDTensor`
and :class:`TuckerTensor` (factored, never expanded).

Conventions: C order, ``mttkrp(factors, n) = unfold(T, n) @ khatri_rao([A_m, m != n])``
with the last mode fastest, as in :mod:`sdf.algebra`. Values are held as read-only native
float64. Constructors take a keyword ``name`` that starts every error message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import scipy.sparse as sp

from sdf import algebra
from sdf.errors import DataError

__all__ = [
    "CPDTensor",
    "DenseTensor",
    "IncompleteTensor",
    "SparseTensor",
    "Tensor",
    "TensorKind",
    "TuckerTensor",
    "as_tensor",
]

TensorKind = Literal["dense", "incomplete", "sparse", "cpd", "tucker"]
_INT64_MAX = int(np.iinfo(np.int64).max)


# ----------------------------------------------------------------------------- helpers
def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (``a`` itself keeps its flags)."""
    v = a.view()
    v.setflags(write=False)
    return v


def _float_array(x: Any, name: str, what: str = "data") -> np.ndarray:
    """Convert ``x`` to a native float64 array; complex and non-numeric data fail."""
    try:
        raw = np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise DataError(f"{name}: {what} is not a regular numeric array ({err})") from None
    if np.iscomplexobj(raw):
        raise DataError(f"{name}: {what} is complex (dtype {raw.dtype}); expected real numbers")
    if raw.dtype.kind not in "biuf":
        try:
            return np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(
                f"{name}: {what} has dtype {raw.dtype}; expected real numbers") from None
    return np.asarray(raw, dtype=np.float64)


def _check_shape(shape: Any, name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
        ok = all(int(s) == s for s in shape)
    except (TypeError, ValueError):
        raise DataError(f"{name}: shape must be a tuple of ints, got {shape!r}") from None
    if not ok or not out:
        raise DataError(f"{name}: shape must be a non-empty tuple of ints, got {shape!r}")
    if min(out) < 1:
        raise DataError(f"{name}: shape {out} has an empty dimension; every size must be >= 1")
    if int(np.prod(out, dtype=object)) > _INT64_MAX:
        raise DataError(f"{name}: shape {out} has more than 2**63 - 1 entries")
    return out


def _check_no_inf(vals: np.ndarray, name: str, where: Any) -> None:
    """Raise if ``vals`` holds an inf; ``where(k)`` gives the index of flat position k."""
    bad = np.isinf(vals)
    if bad.any():
        k = int(np.flatnonzero(bad.ravel())[0])
        raise DataError(
            f"{name}: entry {where(k)} is inf; Inf is not allowed (NaN marks a missing entry)")


def _check_finite(arrays: list[np.ndarray], name: str, what: str) -> None:
    if not all(np.isfinite(a).all() for a in arrays):
        raise DataError(f"{name}: {what} must be finite (no NaN or Inf)")


def _strides(shape: tuple[int, ...]) -> np.ndarray:
    return np.array([int(np.prod(shape[m + 1:], dtype=object)) for m in range(len(shape))],
                    dtype=np.int64)


def _check_subs(subs: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Validate an (m, N) integer index array against ``shape``; returns int64 (F order)."""
    s = np.asarray(subs)
    N = len(shape)
    if s.dtype.kind not in "iu" or s.ndim != 2 or s.shape[1] != N:
        raise DataError(f"{name}: subs must be an (nnz, {N}) integer array, "
                        f"got shape {s.shape} and dtype {s.dtype}")
    s = np.asarray(s, dtype=np.int64, order="F")
    if s.shape[0]:
        bad = (s < 0) | (s >= np.asarray(shape, dtype=np.int64))
        if bad.any():
            k, m = np.argwhere(bad)[0]
            raise DataError(f"{name}: subs row {k} is {tuple(int(v) for v in s[k])}: index "
                            f"{int(s[k, m])} out of range for mode {m} of size {shape[m]}")
    return s


def _check_factors(factors: Any, shape: tuple[int, ...] | None, name: str = "factors",
                   same_rank: bool = False) -> list[np.ndarray]:
    """Validate 2-D factor matrices: rows matching ``shape``, optionally equal columns."""
    mats = [_float_array(A, name, "a factor") for A in factors]
    if shape is not None and len(mats) != len(shape):
        raise DataError(f"{name}: expected {len(shape)} factors (one per mode), got {len(mats)}")
    if not mats:
        raise DataError(f"{name}: expected at least one factor, got none")
    for n, A in enumerate(mats):
        if A.ndim != 2:
            raise DataError(f"{name}: factor {n} must be 2-D, got shape {A.shape}")
        if shape is not None and A.shape[0] != shape[n]:
            raise DataError(f"{name}: factor {n} has {A.shape[0]} rows, expected {shape[n]} "
                            f"(mode {n} of the data)")
    if same_rank and len({A.shape[1] for A in mats}) > 1:
        raise DataError(f"{name}: all factors need the same number of columns, "
                        f"got {[A.shape[1] for A in mats]}")
    return mats


def _check_core(core: Any, mats: list[np.ndarray], name: str) -> np.ndarray:
    G = _float_array(core, name, "core")
    want = tuple(A.shape[1] for A in mats)
    if G.shape != want:
        raise DataError(f"{name}: core must have shape {want} (the factors' columns), "
                        f"got {G.shape}")
    return G


def _mttkrp(X: np.ndarray, mats: list[np.ndarray], n: int) -> np.ndarray:
    """algebra.mttkrp, also for a vector X (an empty Khatri-Rao product is a row of ones)."""
    return algebra.mttkrp(X, mats, n) if X.ndim > 1 else np.outer(X, np.ones(mats[0].shape[1]))


def _dense_inner_cpd(X: np.ndarray, factors: list[np.ndarray], weights: np.ndarray) -> float:
    """<X, [[weights; factors]]> for a dense X, never expanding the CPD."""
    return float(np.sum(factors[0] * _mttkrp(X, factors, 0) * weights))


def _tucker_rows(core: np.ndarray, rows: list[np.ndarray]) -> np.ndarray:
    """Entries of core x_m rows_m where rows_m (m, R_m) holds one factor row per entry."""
    m = rows[0].shape[0]
    X = rows[0] @ core.reshape(core.shape[0], -1)
    for Rm in rows[1:]:
        X = np.einsum("er,erk->ek", Rm, X.reshape(m, Rm.shape[1], -1))
    return X.reshape(m)


# ----------------------------------------------------------------------------- base
class Tensor(ABC):
    """Base class of the data types: one small set of operations for every kind.

    Public methods check their arguments and raise :class:`~sdf.errors.DataError` naming
    them; subclasses implement the private ``_norm_squared``, ``_inner_cpd``, ... For
    incomplete data every reduction (norm, inner products, MTTKRP) runs over the known
    entries only, i.e. as if the missing entries were zero. ``kind`` is one of
    ``"dense", "incomplete", "sparse", "cpd", "tucker"``.

    Examples
    --------
    >>> T = as_tensor(np.array([[0.0, 1.0, 2.0], [3.0, 4.0, np.nan]]))
    >>> T.kind, T.shape, T.ndim, T.size, T.n_known, T.dims
    ('incomplete', (2, 3), 2, 6, 5, None)
    >>> A = [np.ones((2, 1)), np.ones((3, 1))]
    >>> T.norm_squared(), T.inner_cpd(A), T.inner_tucker(A, np.ones((1, 1)))
    (30.0, 10.0, 10.0)
    >>> T.mttkrp(A, 0).ravel(), [M.ravel() for M in T.mttkrp_all(A)]
    (array([3., 7.]), [array([3., 7.]), array([3., 5., 2.])])
    >>> T.values_at(np.array([[1, 0], [1, 2]]))
    array([ 3., nan])
    >>> T.to_dense()
    array([[ 0.,  1.,  2.],
           [ 3.,  4., nan]])
    """

    kind: ClassVar[TensorKind]
    _shape: tuple[int, ...]
    _dims: tuple[str, ...] | None = None
    _coords: dict[str, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Size of each mode."""
        return self._shape

    @property
    def ndim(self) -> int:
        """Number of modes N."""
        return len(self._shape)

    @property
    def size(self) -> int:
        """Number of entries, known or not (a Python int)."""
        return int(np.prod(self._shape, dtype=object))

    @property
    def n_known(self) -> int:
        """Number of known entries: ``size``, except nnz for incomplete data."""
        return self.size

    @property
    def dims(self) -> tuple[str, ...] | None:
        """Names of the modes (from an ``xarray.DataArray``), or None."""
        return self._dims

    @property
    def coords(self) -> dict[str, np.ndarray] | None:
        """Coordinate values per dim (``np.arange`` where the DataArray had none), or None."""
        return None if self._coords is None else dict(self._coords)

    def _set_labels(self, dims: Sequence[str], coords: dict[str, np.ndarray]) -> Tensor:
        self._dims = tuple(dims)
        self._coords = {d: _readonly(np.asarray(c)) for d, c in coords.items()}
        return self

    def _factors_in(self, factors: Any, cpd: bool = True) -> list[np.ndarray]:
        return _check_factors(factors, self.shape, same_rank=cpd)

    def _mode(self, mode: int) -> int:
        if not (isinstance(mode, (int, np.integer)) and -self.ndim <= mode < self.ndim):
            raise DataError(f"mode: expected an int in [0, {self.ndim}), got {mode!r}")
        return int(mode) % self.ndim

    def norm(self) -> float:
        """Frobenius norm over the known entries."""
        return float(np.sqrt(max(self.norm_squared(), 0.0)))

    def norm_squared(self) -> float:
        """Squared Frobenius norm over the known entries (factored data: via Gramians)."""
        return float(self._norm_squared())

    def inner_cpd(self, factors: Sequence[np.ndarray]) -> float:
        """Inner product ⟨T, [[A_0, ..., A_{N-1}]]⟩ over the known entries.

        Parameters
        ----------
        factors : sequence of ndarray, each of shape (I_n, R)
        """
        return float(self._inner_cpd(self._factors_in(factors)))

    def inner_tucker(self, factors: Sequence[np.ndarray], core: np.ndarray) -> float:
        """Inner product ⟨T, G ×_0 A_0 ... ×_{N-1} A_{N-1}⟩ over the known entries.

        Parameters
        ----------
        factors : sequence of ndarray, each of shape (I_n, R_n)
        core : ndarray of shape (R_0, ..., R_{N-1})
        """
        mats = self._factors_in(factors, cpd=False)
        return float(self._inner_tucker(mats, _check_core(core, mats, "core")))

    def mttkrp(self, factors: Sequence[np.ndarray], mode: int) -> np.ndarray:
        """MTTKRP ``unfold(T, mode) @ khatri_rao([A_m, m != mode])``, shape (I_mode, R).

        Parameters
        ----------
        factors : sequence of ndarray, each of shape (I_n, R)
            ``factors[mode]`` only sets R; its values are not used.
        mode : int
        """
        return self._mttkrp(self._factors_in(factors), self._mode(mode))

    def mttkrp_all(self, factors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """MTTKRP for every mode, ``[T.mttkrp(factors, n) for n in range(N)]``, shared work."""
        return list(self._mttkrp_all(self._factors_in(factors)))

    def values_at(self, subs: np.ndarray) -> np.ndarray:
        """Values, shape (m,), at entries ``subs`` (int, shape (m, N)); NaN where unknown."""
        return self._values_at(_check_subs(subs, self.shape, "subs"))

    @abstractmethod
    def to_dense(self) -> np.ndarray:
        """The full array as a new float64 ndarray (NaN at missing entries)."""

    @abstractmethod
    def _norm_squared(self) -> float: ...

    @abstractmethod
    def _inner_cpd(self, mats: list[np.ndarray]) -> float: ...

    @abstractmethod
    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float: ...

    @abstractmethod
    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray: ...

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        return [self._mttkrp(mats, n) for n in range(self.ndim)]

    @abstractmethod
    def _values_at(self, subs: np.ndarray) -> np.ndarray: ...

    def __repr__(self) -> str:
        dims = "" if self._dims is None else f", dims={self._dims}"
        return f"{type(self).__name__}(shape={self.shape}{self._extra_repr()}{dims})"

    def _extra_repr(self) -> str:
        return ""


# ----------------------------------------------------------------------------- dense
class DenseTensor(Tensor):
    """Fully known data held in a numpy array.

    Parameters
    ----------
    array : array_like
        Real numbers, no NaN or Inf (see :class:`IncompleteTensor` for missing entries).
        Held as a read-only native float64 array: a view when no conversion is needed.

    Examples
    --------
    >>> T = DenseTensor(np.ones((2, 3, 4)))
    >>> T.norm_squared(), T.data.flags.writeable
    (24.0, False)
    """

    kind: ClassVar[TensorKind] = "dense"

    def __init__(self, array: Any, *, name: str = "data") -> None:
        a = _float_array(array, name)
        self._shape = _check_shape(a.shape, name)
        if np.isnan(a).any():
            idx = tuple(int(i) for i in np.argwhere(np.isnan(a))[0])
            raise DataError(f"{name}: entry {idx} is NaN; a DenseTensor has no missing "
                            "entries (use IncompleteTensor or as_tensor)")
        _check_no_inf(a, name, lambda k: tuple(int(i) for i in np.unravel_index(k, a.shape)))
        self._data = _readonly(np.ascontiguousarray(a))

    @property
    def data(self) -> np.ndarray:
        """The read-only float64 array."""
        return self._data

    def _norm_squared(self) -> float:
        return algebra.frob(self._data, squared=True)

    def _inner_cpd(self, mats: list[np.ndarray]) -> float:
        return _dense_inner_cpd(self._data, mats, np.ones(mats[0].shape[1]))

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float:
        return algebra.inner(algebra.tmprod(self._data, mats, transpose=True), core)

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return _mttkrp(self._data, mats, n)

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        if self.ndim == 1:
            return [_mttkrp(self._data, mats, 0)]
        return algebra.mttkrp_all(self._data, mats)

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        return self._data[tuple(subs.T)]

    def to_dense(self) -> np.ndarray:
        return self._data.copy()


# ----------------------------------------------------------------------------- coordinate
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
            Real, no Inf; NaN marks a missing entry (dropped) for incomplete data.
        shape : sequence of int

        Examples
        --------
        >>> T = IncompleteTensor.from_entries([[1, 2], [0, 0]], [5.0, 7.0], (2, 3))
        >>> T.subs.tolist(), T.vals.tolist(), T.linear_index.tolist()
        ([[0, 0], [1, 2]], [7.0, 5.0], [0, 5])
        """
        shp = _check_shape(shape, name)
        s = _check_subs(subs, shp, name)
        v = _float_array(vals, name, "vals")
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
        obj = cls.__new__(cls)
        obj._init(s, np.array(v, dtype=np.float64), shp, lin)
        return obj

    def _init(self, subs: np.ndarray, vals: np.ndarray, shape: tuple[int, ...],
              lin: np.ndarray) -> None:
        self._shape = shape
        self._subs = _readonly(np.asfortranarray(subs, dtype=np.int64))  # columns contiguous
        self._vals = _readonly(vals)
        self._lin = _readonly(lin)
        self._indicators: dict[int, sp.csr_array] = {}

    @property
    def subs(self) -> np.ndarray:
        """Indices of the stored entries, int64 of shape (nnz, N), in C order."""
        return self._subs

    @property
    def vals(self) -> np.ndarray:
        """Values of the stored entries, float64 of shape (nnz,)."""
        return self._vals

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self._vals.shape[0])

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
        return self._vals @ self._vals

    def _inner_cpd(self, mats: list[np.ndarray]) -> float:
        rows = self._rows(mats)
        P = rows[0]
        for Rm in rows[1:]:
            P = P * Rm
        return self._vals @ P.sum(axis=1)

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float:
        return self._vals @ _tucker_rows(core, self._rows(mats))

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        W = np.repeat(self._vals[:, None], mats[0].shape[1], axis=1)
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
        out = np.full(self.shape, self._missing_value)
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

    kind: ClassVar[TensorKind] = "incomplete"
    _missing_value: ClassVar[float] = np.nan

    def __init__(self, array: Any, mask: Any = None, *, name: str = "data") -> None:
        a = _float_array(array, name)
        shape = _check_shape(a.shape, name)
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
        subs = np.argwhere(known)  # C order already
        vals = a[known]
        _check_no_inf(vals, name, lambda k: tuple(int(i) for i in subs[k]))
        if vals.size == 0:
            raise DataError(f"{name}: all entries are missing; expected at least one known "
                            "entry")
        self._init(subs, vals, shape, subs @ _strides(shape))

    @property
    def n_known(self) -> int:
        """Number of known entries (nnz)."""
        return self.nnz


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

    kind: ClassVar[TensorKind] = "sparse"
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


# ----------------------------------------------------------------------------- factored
class _FactoredTensor(Tensor):
    """Shared parts of CPD and Tucker data: factor matrices B_n, read-only."""

    _factors: list[np.ndarray]

    @property
    def factors(self) -> list[np.ndarray]:
        """The factor matrices B_n (read-only)."""
        return list(self._factors)

    def _cross(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        """B_nᵀ A_n for every mode."""
        return [B.T @ A for B, A in zip(self._factors, mats)]

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        rows = [np.take(B, subs[:, m], axis=0) for m, B in enumerate(self._factors)]
        return self._entries(rows)

    @abstractmethod
    def _entries(self, rows: list[np.ndarray]) -> np.ndarray: ...


class CPDTensor(_FactoredTensor):
    """Data in CPD form ``sum_r w_r b_0^r ∘ ... ∘ b_{N-1}^r``, never expanded.

    Norm via the Gramians BᵀB, inner products and MTTKRPs via the cross-Gramians BᵀA:
    ``mttkrp(A, n) = B_n @ diag(w) @ hadamard(B_mᵀ A_m for m != n)``.

    Parameters
    ----------
    factors : sequence of array_like, each of shape (I_n, R)
    weights : array_like of shape (R,), optional
        Default all ones.

    Examples
    --------
    >>> T = CPDTensor([np.ones((2, 1)), np.ones((3, 1))], weights=[2.0])
    >>> T.norm_squared(), T.rank
    (24.0, 1)
    """

    kind: ClassVar[TensorKind] = "cpd"

    def __init__(self, factors: Sequence[Any], weights: Any = None, *,
                 name: str = "data") -> None:
        mats = _check_factors(factors, None, name, same_rank=True)
        R = mats[0].shape[1]
        w = np.ones(R) if weights is None else _float_array(weights, name, "weights")
        if w.shape != (R,):
            raise DataError(f"{name}: weights must have shape ({R},), got {w.shape}")
        _check_finite([*mats, w], name, "factors and weights")
        self._shape = _check_shape([A.shape[0] for A in mats], name)
        self._factors = [_readonly(A.copy()) for A in mats]
        self._weights = _readonly(w.copy())

    @property
    def weights(self) -> np.ndarray:
        """The weights w, shape (R,) (read-only)."""
        return self._weights

    @property
    def rank(self) -> int:
        """Number of rank-one terms R."""
        return int(self._weights.shape[0])

    def _norm_squared(self) -> float:
        return self._weights @ algebra.hadamard(algebra.gramians(self._factors)) @ self._weights

    def _inner_cpd(self, mats: list[np.ndarray]) -> float:
        return self._weights @ algebra.hadamard(self._cross(mats)).sum(axis=1)

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float:
        return _dense_inner_cpd(core, [A.T @ B for A, B in zip(mats, self._factors)],
                                self._weights)

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        H = algebra.hadamard(self._cross(mats), skip=n)
        return self._factors[n] @ (self._weights[:, None] * H)

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        C = self._cross(mats)
        return [B @ (self._weights[:, None] * algebra.hadamard(C, skip=n))
                for n, B in enumerate(self._factors)]

    def _entries(self, rows: list[np.ndarray]) -> np.ndarray:
        P = np.broadcast_to(self._weights, (rows[0].shape[0], self.rank))
        for Rm in rows:
            P = P * Rm
        return P.sum(axis=1)

    def to_dense(self) -> np.ndarray:
        mats = [self._factors[0] * self._weights, *self._factors[1:]]
        return np.array(algebra.cpd_to_tensor(mats), dtype=np.float64)

    def _extra_repr(self) -> str:
        return f", rank={self.rank}"


class TuckerTensor(_FactoredTensor):
    """Data in Tucker form ``H ×_0 B_0 ... ×_{N-1} B_{N-1}``, never expanded.

    Everything runs on the core contracted with the small matrices B_mᵀB_m or B_mᵀA_m:
    ``mttkrp(A, n) = B_n @ mttkrp(H, [B_mᵀ A_m], n)``.

    Parameters
    ----------
    factors : sequence of array_like, each of shape (I_n, S_n)
    core : array_like of shape (S_0, ..., S_{N-1})

    Examples
    --------
    >>> T = TuckerTensor([np.eye(2), np.eye(3)], np.ones((2, 3)))
    >>> T.norm_squared(), T.core_shape
    (6.0, (2, 3))
    """

    kind: ClassVar[TensorKind] = "tucker"

    def __init__(self, factors: Sequence[Any], core: Any, *, name: str = "data") -> None:
        mats = _check_factors(factors, None, name)
        G = _check_core(core, mats, name)
        _check_finite([*mats, G], name, "factors and core")
        self._shape = _check_shape([A.shape[0] for A in mats], name)
        self._factors = [_readonly(A.copy()) for A in mats]
        self._core = _readonly(G.copy())

    @property
    def core(self) -> np.ndarray:
        """The core tensor H (read-only)."""
        return self._core

    @property
    def core_shape(self) -> tuple[int, ...]:
        """Multilinear size of the representation (S_0, ..., S_{N-1})."""
        return tuple(self._core.shape)

    def _norm_squared(self) -> float:
        P = algebra.tmprod(self._core, algebra.gramians(self._factors))
        return algebra.inner(P, self._core)

    def _inner_cpd(self, mats: list[np.ndarray]) -> float:
        return _dense_inner_cpd(self._core, self._cross(mats), np.ones(mats[0].shape[1]))

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float:
        C = [A.T @ B for A, B in zip(mats, self._factors)]
        return algebra.inner(algebra.tmprod(self._core, C), core)

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return self._factors[n] @ _mttkrp(self._core, self._cross(mats), n)

    def _entries(self, rows: list[np.ndarray]) -> np.ndarray:
        return _tucker_rows(self._core, rows) if rows[0].shape[0] else np.zeros(0)

    def to_dense(self) -> np.ndarray:
        return np.array(algebra.tucker_to_tensor(self._factors, self._core),
                        dtype=np.float64)

    def _extra_repr(self) -> str:
        return f", core_shape={self.core_shape}"


# ----------------------------------------------------------------------------- as_tensor
def _from_array(x: Any, mask: Any, name: str) -> Tensor:
    a = _float_array(x, name)
    if a.ndim == 0:
        raise DataError(f"{name}: expected an array with at least one mode, got a scalar")
    _check_shape(a.shape, name)
    T = IncompleteTensor(a, mask, name=name) if mask is not None or np.isnan(a).any() else None
    if T is None or T.nnz == T.size:  # everything known: dense storage is cheaper
        return DenseTensor(a if T is None else T.to_dense(), name=name)
    return T


def as_tensor(x: Any, mask: Any = None, name: str = "data", *,
              missing: Literal["zero", "unknown"] = "zero") -> Tensor:
    """Turn any supported data into a :class:`Tensor`.

    - a :class:`Tensor` is returned as is;
    - an array (or nested lists) gives a :class:`DenseTensor`, or an
      :class:`IncompleteTensor` if it has NaN or a ``mask`` marks entries unknown;
    - scipy.sparse input and any 3-tuple ``(subs, vals, shape)`` give a
      :class:`SparseTensor`, or an :class:`IncompleteTensor` if ``missing="unknown"``;
    - an ``xarray.DataArray`` is read as its data and keeps ``dims`` and ``coords``
      (``np.arange`` for dims without coordinates).

    Integer, bool, float32 and big-endian data become native float64; the input is never
    modified.

    Parameters
    ----------
    x : array_like, scipy.sparse, tuple, xarray.DataArray or Tensor
        The data.
    mask : bool array_like of x's shape, optional
        Known entries of a dense ``x``.
    name : str, default "data"
        Name of the argument, used as the start of every error message.
    missing : {"zero", "unknown"}, default "zero"
        For sparse input (scipy.sparse or triplets): whether the entries not given are
        zeros (``SparseTensor``) or unknown (``IncompleteTensor``).

    Returns
    -------
    Tensor

    Raises
    ------
    DataError
        Inf entries, complex or non-numeric data, a scalar or empty array, no known
        entry, a bad mask, or subs/vals/shape that do not fit together.

    Examples
    --------
    >>> as_tensor([[1, 2], [3, 4]]).kind
    'dense'
    >>> as_tensor(np.array([1.0, np.nan])).kind
    'incomplete'
    >>> as_tensor(([[0, 0], [1, 1]], [1.0, 2.0], (2, 2)), missing="unknown").n_known
    2
    """
    if missing not in ("zero", "unknown"):
        raise DataError(f"missing: expected 'zero' or 'unknown', got {missing!r}")
    if isinstance(x, Tensor):
        if mask is not None:
            raise DataError(f"{name}: a mask cannot be combined with a {type(x).__name__}")
        return x
    if type(x).__module__.startswith("xarray"):
        dims = tuple(str(d) for d in x.dims)
        coords = {str(d): (np.asarray(x.coords[d].values) if d in x.coords
                           else np.arange(n)) for d, n in zip(x.dims, x.shape)}
        if type(mask).__module__.startswith("xarray"):
            mask = mask.transpose(*x.dims)
        return as_tensor(x.values, mask=None if mask is None else np.asarray(mask),
                         name=name, missing=missing)._set_labels(dims, coords)
    cls = SparseTensor if missing == "zero" else IncompleteTensor
    if sp.issparse(x):
        if mask is not None:
            raise DataError(f"{name}: a mask cannot be combined with a scipy.sparse input")
        T = SparseTensor(x, name=name)
        return T if cls is SparseTensor else IncompleteTensor.from_entries(
            T.subs, T.vals, T.shape, name=name)
    if isinstance(x, tuple) and len(x) == 3:
        if mask is not None:
            raise DataError(f"{name}: a mask cannot be combined with (subs, vals, shape)")
        return cls.from_entries(x[0], x[1], x[2], name=name)
    return _from_array(x, mask, name)
