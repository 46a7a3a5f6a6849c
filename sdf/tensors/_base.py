"""The data protocol: :class:`Tensor`, what every data kind offers the terms and drivers.

A data kind is one subclass of :class:`Tensor`. It must give its shape, its squared norm
and MTTKRPs (``_norm_squared`` and ``_mttkrp``); everything else has a default built on
those two (inner products, MTTKRP sessions, multilinear projections), which a kind
overrides where its own form is cheaper. Terms choose their strategy by what the data
offer (:meth:`Tensor.known_entries`, :meth:`Tensor.dense_view`), never by the kind's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from sdf import algebra
from sdf.errors import DataError
from sdf.numerics import check_factors, ldexp

__all__ = ["KnownEntries", "MTTKRPSession", "Tensor"]

_INT64_MAX = int(np.iinfo(np.int64).max)


# ----------------------------------------------------------------------------- helpers
def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (``a`` itself keeps its flags)."""
    v = a.view()
    v.setflags(write=False)
    return v


def _float_array(x: Any, name: str, what: str = "data", *,
                 complex_ok: bool = False) -> np.ndarray:
    """Convert ``x`` to a native float64 array; complex data become complex128 where
    ``complex_ok`` (never made real), else fail; non-numeric data fail."""
    try:
        raw = np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise DataError(f"{name}: {what} is not a regular numeric array ({err})") from None
    if np.iscomplexobj(raw):
        if complex_ok:
            return np.asarray(raw, dtype=np.complex128)
        raise DataError(f"{name}: {what} is complex (dtype {raw.dtype}); expected real numbers")
    if raw.dtype.kind in "mM":
        raise DataError(f"{name}: {what} has dtype {raw.dtype} (dates or durations); "
                        "convert them to numbers in the unit you mean first")
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
    """Validate 2-D factor matrices (real or complex): rows matching ``shape``, optionally
    equal columns."""
    return check_factors(factors, shape=shape, columns="same" if same_rank else None,
                         name=name)


def _number(x: Any) -> float | complex:
    """A scalar as a float, or a complex when it is complex (never made real)."""
    return complex(x) if np.iscomplexobj(x) else float(x)


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` as a native float64 array, or complex128 when complex."""
    return np.asarray(a, dtype=np.complex128 if np.iscomplexobj(a) else np.float64)


def _check_core(core: Any, mats: list[np.ndarray], name: str) -> np.ndarray:
    G = _float_array(core, name, "core", complex_ok=True)
    want = tuple(A.shape[1] for A in mats)
    if G.shape != want:
        raise DataError(f"{name}: core must have shape {want} (the factors' columns), "
                        f"got {G.shape}")
    return G


def _max_exponent(arrays: Sequence[np.ndarray]) -> int:
    """``e`` with ``2**(e-1) <= max |a| < 2**e`` over the arrays (0 when all are zero)."""
    top = max((float(np.max(np.abs(a), initial=0.0)) for a in arrays), default=0.0)
    return int(np.frexp(top)[1]) if top > 0 and np.isfinite(top) else 0


def _expanded(mats: Sequence[np.ndarray], skip: int) -> list[np.ndarray]:
    """Factors whose Khatri-Rao product (skipping ``skip``) is the Kronecker product.

    Column ``(r_m)_{m != skip}`` (C order) of every returned matrix but ``skip`` repeats
    column ``r_m`` of ``mats[m]``, so an MTTKRP with them computes
    ``unfold(T, skip) @ kron([mats[m] for m != skip])``.
    """
    sizes = [A.shape[1] for m, A in enumerate(mats) if m != skip]
    grids = np.indices(sizes).reshape(len(sizes), -1) if sizes else np.zeros((0, 1), int)
    out, k = [], 0
    for m, A in enumerate(mats):
        if m == skip:
            out.append(np.zeros((A.shape[0], grids.shape[1])))
            continue
        out.append(A[:, grids[k]])
        k += 1
    return out


# ----------------------------------------------------------------------------- capabilities
class MTTKRPSession:
    """The inner product with a CPD model first, then every mode's MTTKRP, sharing work.

    The default session asks the data for the inner product and computes the MTTKRPs only
    when :meth:`all` is called, so a rejected trial point costs one inner product. Dense
    data use a dimension tree (:class:`sdf.algebra.MTTKRPTree`) instead.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.tensors import as_tensor
    >>> T = as_tensor(np.arange(6.0).reshape(2, 3))
    >>> s = T.mttkrp_session([np.ones((2, 1)), np.ones((3, 1))])
    >>> s.inner(), [M.ravel().tolist() for M in s.all()]
    (15.0, [[3.0, 12.0], [3.0, 5.0, 7.0]])
    """

    def __init__(self, data: Tensor, factors: list[np.ndarray]) -> None:
        self._data = data
        self._factors = factors
        self._all: list[np.ndarray] | None = None

    def inner(self) -> float | complex:
        """``sum(T * [[A_0, ..., A_{N-1}]])`` over the known entries (no conjugation:
        complex when the data or the factors are)."""
        if self._all is not None:
            return _number(np.sum(self._all[0] * self._factors[0]))
        return _number(self._data._inner_cpd(self._factors))

    def all(self) -> list[np.ndarray]:
        """The MTTKRP of every mode, each of shape (I_n, R)."""
        if self._all is None:
            self._all = list(self._data._mttkrp_all(self._factors))
        return self._all


class _TreeSession:
    """Session over a dense array: half of a dimension tree gives the inner product."""

    def __init__(self, array: np.ndarray, factors: list[np.ndarray]) -> None:
        self._tree: algebra.MTTKRPTree | None = algebra.MTTKRPTree._unchecked(array, factors)
        self._inner = self._tree.inner()
        self._all: list[np.ndarray] | None = None

    def inner(self) -> float | complex:
        return _number(self._inner)

    def all(self) -> list[np.ndarray]:
        if self._all is None:
            assert self._tree is not None
            self._all = self._tree.all()
            self._tree = None
        return self._all


class KnownEntries:
    """Data known at some entries only, as coordinates: what sampled strategies need.

    Attributes
    ----------
    shape : tuple of int
        Shape of the whole tensor.
    subs : ndarray of int64, shape (nnz, N)
        Indices of the known entries, C order.
    vals : ndarray of float64, shape (nnz,)
        Their values.
    index : list of ndarray
        ``subs[:, n]`` as contiguous arrays (fast row gathers).
    """

    def __init__(self, shape: tuple[int, ...], subs: np.ndarray, vals: np.ndarray,
                 indicator: Any) -> None:
        self.shape = shape
        self.subs = subs
        self.vals = vals
        self.index = [np.ascontiguousarray(c) for c in subs.T]
        self._indicator = indicator

    @property
    def nnz(self) -> int:
        """Number of known entries."""
        return int(self.vals.shape[0])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def mode_indicator(self, mode: int) -> sp.csr_array:
        """Sparse (I_mode, nnz) matrix with ones at ``(subs[k, mode], k)``."""
        return self._indicator(mode)


# ----------------------------------------------------------------------------- base
class Tensor(ABC):
    """Base class of the data kinds: one small set of operations for every kind.

    Public methods check their arguments and raise :class:`~sdf.errors.DataError` naming
    them; subclasses implement the private ``_norm_squared`` and ``_mttkrp`` and may
    override the other private methods where their form is cheaper. For incomplete data
    every reduction (norm, inner products, MTTKRP) runs over the known entries only, i.e.
    as if the missing entries were zero. ``kind`` names the class in messages
    (``"dense", "incomplete", "sparse", "cpd", "tucker"``, ...); nothing outside
    :mod:`sdf.tensors` branches on it.

    The capabilities terms choose their strategy by:

    * :meth:`known_entries`: the data are known at some entries only (None: all known);
    * :meth:`dense_view`: the data as an in-memory array, without copying (None: not
      held so);
    * :meth:`masked_view`: data with missing entries as a zero-filled array and a mask
      (None: not held so; such data also offer :meth:`known_entries`);
    * :meth:`mttkrp_session`, :meth:`project`, :meth:`project_tucker`: the reductions
      of CPD and Tucker models, in the data's own form.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.tensors import as_tensor
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

    kind: ClassVar[str] = "custom"
    #: True for data read in passes over chunks (on disk or on a cluster): algebraic
    #: starts then use randomized, few-pass methods instead of expanding them.
    out_of_core: ClassVar[bool] = False
    _shape: tuple[int, ...]
    _dims: tuple[str, ...] | None = None
    _coords: dict[str, np.ndarray] | None = None
    _attrs: dict[str, Any] | None = None
    _coord_attrs: dict[str, dict[str, Any]] | None = None
    _norm_squared_cache: float | None = None
    _scale_exponent_cache: int | None = None

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
    def is_complex(self) -> bool:
        """Whether the data are complex (dense, incomplete, masked, sparse and factored
        data may be, and the Hankel tensors, windows, segmentations and Loewner
        tensors of complex signals; the other kinds are real)."""
        return False

    @property
    def dims(self) -> tuple[str, ...] | None:
        """Names of the modes (from an ``xarray.DataArray``), or None."""
        return self._dims

    @property
    def coords(self) -> dict[str, np.ndarray] | None:
        """Coordinate values per dim (``np.arange`` where the DataArray had none), or None."""
        return None if self._coords is None else dict(self._coords)

    @property
    def attrs(self) -> dict[str, Any]:
        """The DataArray's attributes (``units``, ``long_name``...), or ``{}``."""
        return dict(self._attrs or {})

    @property
    def coord_attrs(self) -> dict[str, dict[str, Any]]:
        """Per dim, its coordinate's attributes (``{"wavelength": {"units": "nm"}}``)."""
        return {d: dict(a) for d, a in (self._coord_attrs or {}).items()}

    def _set_labels(self, dims: Sequence[str], coords: dict[str, np.ndarray],
                    attrs: dict[str, Any] | None = None,
                    coord_attrs: dict[str, dict[str, Any]] | None = None) -> Tensor:
        self._dims = tuple(dims)
        self._coords = {d: _readonly(np.asarray(c)) for d, c in coords.items()}
        self._attrs = dict(attrs) if attrs else None
        self._coord_attrs = ({d: dict(a) for d, a in coord_attrs.items() if a}
                             if coord_attrs else None)
        return self

    def _factors_in(self, factors: Any, cpd: bool = True) -> list[np.ndarray]:
        return _check_factors(factors, self.shape, same_rank=cpd)

    def _mode(self, mode: int) -> int:
        if not (isinstance(mode, (int, np.integer)) and -self.ndim <= mode < self.ndim):
            raise DataError(f"mode: expected an int in [0, {self.ndim}), got {mode!r}")
        return int(mode) % self.ndim

    # ------------------------------------------------------------ capabilities
    def known_entries(self) -> KnownEntries | None:
        """The known entries when only some are known; None when every entry is known."""
        return None

    def dense_view(self) -> np.ndarray | None:
        """The data as an in-memory read-only float64 (complex128 for complex data) array
        (no copy), or None."""
        return None

    def tucker_form(self) -> tuple[list[np.ndarray], np.ndarray] | None:
        """The data as a Tucker model ``(factors, core)`` with ``T = core x_n factors[n]``
        when they are held in such a factored form (factored kinds), else None.

        Algebra that needs only orthogonal bases of the modes (e.g. the MLSVD,
        :func:`sdf.decomp.mlsvd`) then works on the small core, never on the expansion.
        """
        return None

    def masked_view(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Data with missing entries held densely: ``(filled, mask)``, read-only arrays of
        the data's shape, float64 with zeros at the missing entries and bool True at the
        known ones (no copy); None when not held so."""
        return None

    # ------------------------------------------------------------ scale
    def scale_exponent(self) -> int:
        """``e`` with the largest known entry's magnitude about ``2**e`` (computed once).

        Terms fit data whose ``e`` is far from 0 through :meth:`scaled` copies, so that
        norms and inner products neither underflow nor overflow. Kinds that cannot tell
        return 0 (the default).

        Examples
        --------
        >>> import numpy as np
        >>> from sdf.tensors import as_tensor
        >>> as_tensor(np.full((2, 2), 1e-200)).scale_exponent()
        -664
        """
        if self._scale_exponent_cache is None:
            self._scale_exponent_cache = int(self._scale_exponent())
        return self._scale_exponent_cache

    def scaled(self, exponent: int) -> Tensor:
        """The same data times ``2**exponent``, exactly (a new tensor; dims kept).

        Examples
        --------
        >>> import numpy as np
        >>> from sdf.tensors import as_tensor
        >>> as_tensor(np.full((2, 2), 1e-200)).scaled(664).norm() > 1
        True
        """
        out = self._scaled(int(exponent))
        if self._dims is not None and self._coords is not None:
            out._set_labels(self._dims, self._coords, self._attrs, self._coord_attrs)
        return out

    # ------------------------------------------------------------ reductions
    def norm(self) -> float:
        """Frobenius norm over the known entries."""
        return float(np.sqrt(max(self.norm_squared(), 0.0)))

    def norm_squared(self) -> float:
        """Squared Frobenius norm over the known entries (computed once: data never change).

        Factored data use their Gramians; nothing is expanded.
        """
        if self._norm_squared_cache is None:
            self._norm_squared_cache = float(self._norm_squared())
        return self._norm_squared_cache

    def inner_cpd(self, factors: Sequence[np.ndarray]) -> float | complex:
        """Inner product ⟨T, [[A_0, ..., A_{N-1}]]⟩ over the known entries.

        For complex data or factors it is the sum of the entrywise products, without
        conjugation (a complex number); ``⟨T, M⟩ = sum(conj(T) * M)`` is the conjugate of
        this product taken with the conjugated factors.

        Parameters
        ----------
        factors : sequence of ndarray, each of shape (I_n, R)
        """
        return _number(self._inner_cpd(self._factors_in(factors)))

    def inner_tucker(self, factors: Sequence[np.ndarray], core: np.ndarray
                     ) -> float | complex:
        """Inner product ⟨T, G ×_0 A_0 ... ×_{N-1} A_{N-1}⟩ over the known entries
        (without conjugation for complex data or factors, as :meth:`inner_cpd`).

        Parameters
        ----------
        factors : sequence of ndarray, each of shape (I_n, R_n)
        core : ndarray of shape (R_0, ..., R_{N-1})
        """
        mats = self._factors_in(factors, cpd=False)
        return _number(self._inner_tucker(mats, _check_core(core, mats, "core")))

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

    def mttkrp_session(self, factors: Sequence[np.ndarray]) -> MTTKRPSession | _TreeSession:
        """The inner product with ``[[A_0, ..., A_{N-1}]]`` now, the MTTKRPs on demand.

        Returns an object with ``inner()`` and ``all()`` (see :class:`MTTKRPSession`).
        Factors are used as given (not validated: this is the engine's hot path).
        """
        return self._mttkrp_session(list(factors))

    def project(self, matrices: Sequence[np.ndarray]) -> np.ndarray:
        """The multilinear projection ``T ×_0 U_0ᵀ ... ×_{N-1} U_{N-1}ᵀ``.

        Parameters
        ----------
        matrices : sequence of ndarray, each of shape (I_n, R_n)

        Returns
        -------
        ndarray of shape (R_0, ..., R_{N-1})

        Examples
        --------
        >>> import numpy as np
        >>> from sdf.tensors import as_tensor
        >>> as_tensor(np.arange(6.0).reshape(2, 3)).project([np.ones((2, 1)), np.eye(3)])
        array([[3., 5., 7.]])
        """
        return self._project(self._factors_in(matrices, cpd=False))

    def project_tucker(self, factors: Sequence[np.ndarray], core: np.ndarray
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
        """What a Tucker model's value and gradient need from the data, in one pass.

        Returns ``P = T ×_n U_nᵀ`` (all modes) and, per mode n,
        ``K_n = unfold(T ×_{m≠n} U_mᵀ, n) @ unfold(S, n)ᵀ`` of shape (I_n, R_n).
        Factors and core are used as given (the engine's hot path).
        """
        return self._project_tucker(list(factors), np.asarray(core))

    def values_at(self, subs: np.ndarray) -> np.ndarray:
        """Values, shape (m,), at entries ``subs`` (int, shape (m, N)); NaN where unknown."""
        return self._values_at(_check_subs(subs, self.shape, "subs"))

    def to_dense(self) -> np.ndarray:
        """The full array as a new float64 ndarray (NaN at missing entries)."""
        raise DataError(f"{type(self).__name__}: these data cannot be expanded to an array")

    # ------------------------------------------------------------ what kinds implement
    @abstractmethod
    def _norm_squared(self) -> float: ...

    @abstractmethod
    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray: ...

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        return [self._mttkrp(mats, n) for n in range(self.ndim)]

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        return MTTKRPSession(self, mats)

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _number(np.sum(mats[0] * self._mttkrp(mats, 0)))

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float | complex:
        projected = self._project(mats)
        if np.iscomplexobj(projected) or np.iscomplexobj(core):
            return complex(np.sum(projected * core))
        return float(np.vdot(projected, core))

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        # unfold(T, 0) @ kron(U_1, ..., U_{N-1}) through one MTTKRP, then U_0ᵀ.
        Y = self._mttkrp(_expanded(mats, 0), 0)
        return (mats[0].T @ Y).reshape([A.shape[1] for A in mats])

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        K, P = [], None
        for n in range(self.ndim):
            Yn = self._mttkrp(_expanded(mats, n), n)  # (I_n, prod_{m != n} R_m), C order
            K.append(Yn @ np.moveaxis(core, n, 0).reshape(core.shape[n], -1).T)
            if n == 0:
                P = (mats[0].T @ Yn).reshape(core.shape)
        assert P is not None
        return P, K

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        raise DataError(f"{type(self).__name__}: these data cannot be read entry by entry")

    def _scale_exponent(self) -> int:
        return 0

    def _scaled(self, exponent: int) -> Tensor:
        return _ScaledTensor(self, exponent)

    def __repr__(self) -> str:
        dims = "" if self._dims is None else f", dims={self._dims}"
        return f"{type(self).__name__}(shape={self.shape}{self._extra_repr()}{dims})"

    def _extra_repr(self) -> str:
        return ""


class _ScaledTensor(Tensor):
    """Any data kind times ``2**exponent``: its reductions, scaled after the fact.

    Exact for data whose own reductions stay in range; kinds that hold their values
    override :meth:`Tensor._scaled` with a truly scaled copy.
    """

    def __init__(self, base: Tensor, exponent: int) -> None:
        self._base = base
        self._exponent = exponent
        self._shape = base.shape
        self.kind = base.kind  # type: ignore[misc]  # messages name the underlying kind

    @property
    def n_known(self) -> int:
        return self._base.n_known

    @property
    def is_complex(self) -> bool:
        return self._base.is_complex

    def _norm_squared(self) -> float:
        return float(ldexp(self._base._norm_squared(), 2 * self._exponent))

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return ldexp(self._base._mttkrp(mats, n), self._exponent)

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        return [ldexp(M, self._exponent) for M in self._base._mttkrp_all(mats)]

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _number(ldexp(np.asarray(self._base._inner_cpd(mats)), self._exponent))

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        return ldexp(self._base._project(mats), self._exponent)

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        P, K = self._base._project_tucker(mats, core)
        return ldexp(P, self._exponent), [ldexp(k, self._exponent) for k in K]

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        return ldexp(self._base._values_at(subs), self._exponent)

    def known_entries(self) -> KnownEntries | None:
        entries = self._base.known_entries()
        if entries is None:
            return None
        return KnownEntries(entries.shape, entries.subs,
                            ldexp(entries.vals, self._exponent), entries.mode_indicator)

    def to_dense(self) -> np.ndarray:
        return ldexp(self._base.to_dense(), self._exponent)
