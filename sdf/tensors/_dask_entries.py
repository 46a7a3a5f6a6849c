"""Entries held in chunks: coordinates and values as dask (or zarr) arrays.

Sparse data too many for memory (event counts, interaction logs) are often stored as a
coordinate list: a ``(nnz, N)`` integer array of indices and a ``(nnz,)`` array of
values, chunked along the entries. :class:`DaskEntriesTensor` keeps them so: every
reduction (norm, inner products with CPD and Tucker models, MTTKRPs, projections) runs
chunk by chunk over the entries and sums the partial results, at a cost proportional
to the number of entries, with a few chunks and the factors in memory. It follows the
active dask scheduler (threads, processes, or a ``dask.distributed`` cluster).

Two meanings of the entries not given, as for in-memory triplets
(:func:`~sdf.tensors.as_tensor`'s ``missing``):

* ``missing="zero"`` (default): they are zeros; the data are fully known and every fit
  runs chunk by chunk;
* ``missing="unknown"``: they are missing; fits work on the given entries only, which
  the engine's incomplete-data strategies need in memory (``8 (N + 1)`` bytes per entry,
  gathered once, up to ``max_known_bytes``).

Each index must appear at most once. The first pass checks every chunk (indices in
range, no Inf, no NaN for zero-filled data, no repeated index in a chunk) and checks
across chunks where their index ranges overlap (none do when the entries are sorted, as
most coordinate stores keep them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from sdf.errors import DataError
from sdf.tensors._base import KnownEntries, Tensor, _check_shape, _native, _number, _strides
from sdf._blas import one_blas_thread
from sdf.tensors._chunked import FAN_IN, Partial, merge
from sdf.tensors._coordinate import IncompleteTensor, SparseTensor

__all__ = ["DaskEntriesTensor"]

#: Bytes for the entries gathered in memory when the others are missing.
MAX_KNOWN_BYTES = 2**30
#: Bytes (as float64 or complex128) up to which :meth:`DaskEntriesTensor.to_dense` builds
#: the array.
MAX_DENSE_BYTES = 2**30


def _chunk_tensor(subs: Any, vals: Any, shape: tuple[int, ...], name: str) -> SparseTensor:
    """One chunk of entries as an in-memory sparse tensor (checked; complex values stay
    complex)."""
    return SparseTensor.from_entries(np.asarray(subs, dtype=np.int64), _native(vals), shape,
                                     name=name)


def _scan(k: int, subs: Any, vals: Any, shape: tuple[int, ...], name: str) -> Partial:
    T = _chunk_tensor(subs, vals, shape, name)
    lin = T.linear_index
    return {("sumsq",): T.norm_squared(), ("nnz",): T.nnz,
            ("ranges",): [(k, int(lin[0]), int(lin[-1]))] if T.nnz else [],
            ("exponent",): [T.scale_exponent()] if T.nnz else []}


def _linear(subs: Any, shape: tuple[int, ...]) -> np.ndarray:
    return np.sort(np.asarray(subs, dtype=np.int64) @ _strides(shape))


def _task(op: str, subs: Any, vals: Any, shape: tuple[int, ...], name: str,
          *args: Any) -> Partial:
    T = _chunk_tensor(subs, vals, shape, name)
    if op == "mttkrp_all":
        return {("M", n): M for n, M in enumerate(T._mttkrp_all(list(args)))}
    if op == "mttkrp":
        n, mats = args[0], list(args[1:])
        return {("M", n): T._mttkrp(mats, n)}
    if op == "inner":
        return {("inner",): T._inner_cpd(list(args))}
    if op == "project":
        return {("P",): T._project(list(args))}
    if op == "project_tucker":
        P, K = T._project_tucker(list(args[1:]), args[0])
        out: Partial = {("K", n): Kn for n, Kn in enumerate(K)}
        out[("P",)] = P
        return out
    if op == "values_at":
        q = args[0]
        lin, vals_sorted = T.linear_index, T.vals
        pos = np.minimum(np.searchsorted(lin, q), max(T.nnz - 1, 0))
        hit = (lin[pos] == q) if T.nnz else np.zeros(q.shape, dtype=bool)
        return {("hit",): hit, ("val",): np.where(hit, vals_sorted[pos] if T.nnz else 0.0,
                                                  0.0)}
    if op == "entries":
        return {("subs",): [T.subs], ("vals",): [T.vals]}
    raise AssertionError(op)


class DaskEntriesTensor(Tensor):
    """Coordinates and values of entries held as dask arrays, reduced chunk by chunk.

    See the module docstring (:mod:`sdf.tensors._dask_entries`) for the costs and the
    two meanings of the entries not given. :func:`~sdf.tensors.as_tensor` builds one from
    a triplet ``(subs, vals, shape)`` whose ``subs`` or ``vals`` is a dask or zarr array.

    Parameters
    ----------
    subs : dask.array.Array or zarr array of int, shape (nnz, N)
        Indices of the entries, chunked along the entries (columns are joined).
    vals : dask.array.Array or zarr array, shape (nnz,)
        Their values, real or complex (rechunked to match ``subs``).
    shape : sequence of int
        Size of each mode.
    missing : {"zero", "unknown"}, default "zero"
        Whether the entries not given are zeros or missing.
    name : str, default "data"
        Starts every error message.
    max_known_bytes : int, optional
        Memory allowed for the entries gathered when ``missing="unknown"`` (default
        :data:`MAX_KNOWN_BYTES`).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sdf.tensors import as_tensor
    >>> subs = da.from_array(np.array([[0, 0, 0], [1, 2, 3], [1, 0, 2]]), chunks=(2, 3))
    >>> vals = da.from_array(np.array([1.0, 2.0, 3.0]), chunks=2)
    >>> T = as_tensor((subs, vals, (2, 3, 4)))
    >>> T.kind, T.nnz, T.norm_squared(), T.n_known
    ('dask-entries', 3, 14.0, 24)
    >>> A = [np.ones((I, 1)) for I in T.shape]
    >>> T.mttkrp(A, 0).ravel().tolist()
    [1.0, 5.0]
    """

    kind: ClassVar[str] = "dask-entries"
    out_of_core: ClassVar[bool] = True

    def __init__(self, subs: Any, vals: Any, shape: Sequence[int], *,
                 missing: Literal["zero", "unknown"] = "zero", name: str = "data",
                 max_known_bytes: int | None = None) -> None:
        import dask.array as da

        if missing not in ("zero", "unknown"):
            raise DataError(f"missing: expected 'zero' or 'unknown', got {missing!r}")
        self._name = name
        self._shape = _check_shape(shape, name)
        subs, vals = (a if hasattr(a, "to_delayed") else
                      da.from_zarr(a) if type(a).__module__.split(".")[0] == "zarr" else
                      da.asarray(a) for a in (subs, vals))
        if subs.ndim != 2 or subs.shape[1] != len(self._shape):
            raise DataError(f"{name}: subs must have shape (nnz, {len(self._shape)}) for data "
                            f"of order {len(self._shape)}, got {subs.shape}")
        if vals.shape != (subs.shape[0],):
            raise DataError(f"{name}: vals must have shape ({subs.shape[0]},) to match subs, "
                            f"got {vals.shape}")
        if np.dtype(subs.dtype).kind not in "iu":
            raise DataError(f"{name}: subs must be integers, got dtype {subs.dtype}")
        if np.dtype(vals.dtype).kind not in "biufc":
            raise DataError(f"{name}: vals must be real or complex numbers, got dtype "
                            f"{vals.dtype}")
        self._complex = np.dtype(vals.dtype).kind == "c"
        subs = subs.rechunk({1: -1})
        vals = vals.rechunk(subs.chunks[0])
        self._subs, self._vals = subs, vals
        self._missing = missing
        self._max_known = MAX_KNOWN_BYTES if max_known_bytes is None else int(max_known_bytes)
        self._pairs = list(zip(subs.to_delayed().ravel().tolist(),
                               vals.to_delayed().ravel().tolist()))
        self._stats_cache: Partial | None = None
        self._known: KnownEntries | None = None

    @property
    def is_complex(self) -> bool:
        return self._complex

    @property
    def nnz(self) -> int:
        """Number of entries given."""
        return int(self._subs.shape[0])

    @property
    def n_known(self) -> int:
        """Entries known: all (``missing="zero"``) or those given (``"unknown"``)."""
        return self.size if self._missing == "zero" else self.nnz

    # ------------------------------------------------------------ passes
    def _reduce(self, op: str, *args: Any) -> Partial:
        import dask

        keys = [dask.delayed(a, pure=True) if isinstance(a, np.ndarray) else a for a in args]
        level = [dask.delayed(_task, pure=True)(op, s, v, self._shape, self._name, *keys)
                 for s, v in self._pairs]
        return self._sum(level)

    def _sum(self, level: list[Any]) -> Partial:
        import dask

        while len(level) > 1:
            level = [dask.delayed(merge, pure=True)(*level[k:k + FAN_IN])
                     for k in range(0, len(level), FAN_IN)]
        with one_blas_thread():
            (out,) = dask.compute(level[0])
        return dict(out)

    def _stats(self) -> Partial:
        """Squared norm, entry count and per-chunk index ranges (one checked pass)."""
        if self._stats_cache is None:
            import dask

            stats = self._sum([dask.delayed(_scan, pure=True)(k, s, v, self._shape,
                                                               self._name)
                               for k, (s, v) in enumerate(self._pairs)])
            if self._missing == "unknown" and stats[("nnz",)] == 0:
                raise DataError(f"{self._name}: all entries are missing; expected at least "
                                "one known entry")
            self._check_overlaps(stats[("ranges",)])
            self._stats_cache = stats
        return self._stats_cache

    def _check_overlaps(self, ranges: list[tuple[int, int, int]]) -> None:
        """Entries repeated across chunks: compared where chunks' index ranges overlap."""
        import dask

        ranges = sorted(ranges, key=lambda r: r[1])
        pairs = []
        for i, (a, _, hi_a) in enumerate(ranges):
            for b, lo_b, _ in ranges[i + 1:]:
                if lo_b > hi_a:
                    break
                pairs.append((a, b))
        if not pairs:
            return
        chunks = sorted({k for p in pairs for k in p})
        lin = dict(zip(chunks, dask.compute(*[dask.delayed(_linear, pure=True)(
            self._pairs[k][0], self._shape) for k in chunks])))
        for a, b in pairs:
            both = np.intersect1d(lin[a], lin[b], assume_unique=True)
            if both.size:
                k = tuple(int(i) for i in np.unravel_index(int(both[0]), self._shape))
                raise DataError(f"{self._name}: entry {k} appears more than once in subs "
                                f"(in two chunks); each entry may be given only once")

    # ------------------------------------------------------------ capabilities
    def known_entries(self) -> KnownEntries | None:
        """The given entries, gathered in memory, when the others are missing.

        Raises :class:`~sdf.errors.DataError` when they would take more than
        ``max_known_bytes``.
        """
        if self._missing == "zero":
            return None
        if self._known is None:
            need = self.nnz * (8 * self.ndim + (16 if self._complex else 8))
            if need > self._max_known:
                raise DataError(
                    f"{self._name}: incomplete data given by {self.nnz} entries in chunks "
                    f"are fitted on those entries, which need {need / 2**30:.3g} GiB in "
                    f"memory, above the limit of {self._max_known / 2**30:.3g} GiB; raise "
                    "it with DaskEntriesTensor(..., max_known_bytes=...)")
            self._stats()
            out = self._reduce("entries")
            T = IncompleteTensor.from_entries(np.concatenate(out[("subs",)]),
                                              np.concatenate(out[("vals",)]), self.shape,
                                              name=self._name)
            self._known = T.known_entries()
        return self._known

    # ------------------------------------------------------------ reductions
    def _norm_squared(self) -> float:
        return float(self._stats()[("sumsq",)])

    def _scale_exponent(self) -> int:
        exps = self._stats()[("exponent",)]
        return max(exps) if exps else 0

    def _checked(self, op: str, *args: Any) -> Partial:
        self._stats()
        return self._reduce(op, *args)

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return np.asarray(self._checked("mttkrp", n, *mats)[("M", n)])

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        out = self._checked("mttkrp_all", *mats)
        return [np.asarray(out[("M", n)]) for n in range(self.ndim)]

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _number(self._checked("inner", *mats)[("inner",)])

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self._checked("project", *mats)[("P",)])

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        out = self._checked("project_tucker", np.ascontiguousarray(core), *mats)
        return out[("P",)], [out[("K", n)] for n in range(self.ndim)]

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        q = subs @ _strides(self.shape)
        out = self._checked("values_at", q)
        return np.where(out[("hit",)], out[("val",)],
                        0.0 if self._missing == "zero" else np.nan)

    def _scaled(self, exponent: int) -> Tensor:
        return DaskEntriesTensor(self._subs, self._vals * 2.0 ** exponent, self.shape,
                                 missing=self._missing, name=self._name,
                                 max_known_bytes=self._max_known)

    def to_dense(self) -> np.ndarray:
        """The full array in memory (zeros or NaN where no entry is given), up to
        :data:`MAX_DENSE_BYTES`."""
        dtype = np.dtype(np.complex128 if self._complex else np.float64)
        need = dtype.itemsize * self.size
        if need > MAX_DENSE_BYTES:
            raise DataError(
                f"{self._name}: data of shape {self.shape} take {need / 2**30:.3g} GiB as "
                f"{dtype.name}, above the limit of {MAX_DENSE_BYTES / 2**30:.3g} GiB for "
                "to_dense(); work with them through the Tensor operations (chunk by chunk)")
        self._stats()
        out = self._reduce("entries")
        dense = np.full(self.shape, 0.0 if self._missing == "zero" else np.nan, dtype=dtype)
        subs = np.concatenate(out[("subs",)])
        dense[tuple(subs.T)] = np.concatenate(out[("vals",)])
        return dense

    def _extra_repr(self) -> str:
        return (f", nnz={self.nnz}, chunks={max(self._subs.chunks[0])}, "
                f"missing={self._missing!r}")
