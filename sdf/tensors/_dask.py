"""Data held in chunks by dask (in memory, on disk as zarr or netCDF, or on a cluster):
:class:`DaskTensor`.

Every operation of the data protocol is computed chunk by chunk: one task per chunk
reads the chunk and the rows of the factors its index ranges meet, and returns a small
partial result (a number, a few rows of an MTTKRP, a core-sized projection); a tree of
sums brings the partial results together. The factors stay numpy arrays on the caller's
side; only they and the partial results travel, so memory stays at a few chunks (per
worker thread) plus the factors. Whatever dask scheduler is active runs the tasks: the
threaded one by default, or a ``dask.distributed.Client`` when one has been created
(``Client("tcp://scheduler:8786")`` for a real cluster): no change to the model.

Costs, in passes over the data (each pass reads every chunk once):

* the norm, the count of missing entries and the check for Inf: one pass, on first use;
* an MTTKRP session (:meth:`Tensor.mttkrp_session`): one pass gives the inner product
  and every mode's MTTKRP at once, so a rejected trial point of a solver costs one pass
  and an accepted one no more;
* a multilinear projection, or the Tucker model's ``P`` and ``K_n``: one pass.

Missing entries (NaN) are fitted on the known entries only, as for every other data kind.
Least-squares fits of incomplete data need the coordinates of the known entries in
memory (their Jacobian is sparse, one row per known entry), so :meth:`known_entries`
collects them, chunk by chunk, when they take at most ``max_known_bytes``
(``8 (N + 1)`` bytes per known entry, ``8 (N + 2)`` when complex; default
:data:`MAX_KNOWN_BYTES`); beyond that it raises a :class:`~sdf.errors.DataError` saying
how much is needed. The fit then holds ``O(known · N · R)`` more for its Jacobian: data
with missing entries fit in memory by their known entries, fully known data of any size
fit chunk by chunk. Complex chunks are read as complex128 and stay complex.

``import sdf`` never imports dask: this module imports it only when a dask array is
converted (:func:`~sdf.tensors.as_tensor` recognises dask and zarr arrays by their
type's module name).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from sdf import _multilinear as ml
from sdf import algebra
from sdf.errors import DataError
from sdf.tensors._base import (
    KnownEntries,
    MTTKRPSession,
    Tensor,
    _check_no_inf,
    _check_shape,
    _native,
    _number,
)
from sdf._blas import one_blas_thread
from sdf.tensors._chunked import FAN_IN, Partial, is_chunked_array, merge
from sdf.tensors._convert import register_data_kind

__all__ = ["DaskTensor", "MAX_DENSE_BYTES", "MAX_KNOWN_BYTES"]

#: Bytes of known-entry coordinates (int64 indices and float64 or complex128 values) up
#: to which data with missing entries are gathered in memory for a fit (see the module
#: docstring).
MAX_KNOWN_BYTES = 2**30
#: Bytes (as float64 or complex128) up to which :meth:`DaskTensor.to_dense` builds the full
#: array.
MAX_DENSE_BYTES = 2**30



# ----------------------------------------------------------------------------- chunk tasks
def _as_float(block: Any) -> np.ndarray:
    """A chunk as float64 (complex128 when complex), missing entries (NaN in either part)
    as zeros: reductions run over known ones."""
    X = _native(block)
    missing = np.isnan(X)
    return np.where(missing, 0.0, X) if missing.any() else X


def _scan_chunk(block: Any) -> Partial:
    X = _native(block)
    missing, infinite = np.isnan(X), np.isinf(X)
    known = np.where(missing | infinite, 0.0, X)
    return {("sumsq",): float(np.real(np.vdot(known, known))), ("nan",): int(missing.sum()),
            ("inf",): int(infinite.sum())}


def _first_inf_chunk(block: Any, offset: tuple[int, ...]) -> Partial:
    bad = np.argwhere(np.isinf(_native(block)))
    return {("at",): [tuple(int(i + o) for i, o in zip(bad[0], offset))] if len(bad) else []}


def _known_chunk(block: Any, offset: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    X = _native(block)
    known = ~np.isnan(X)
    subs = np.argwhere(known)
    subs += np.asarray(offset, dtype=np.int64)
    return subs.astype(np.int64), X[known]


def _pick_chunk(block: Any, local: np.ndarray) -> np.ndarray:
    return _native(np.asarray(block)[tuple(local.T)])


def _session_chunk(block: Any, index: tuple[int, ...], *rows: np.ndarray) -> Partial:
    X = _as_float(block)
    if X.ndim == 1:
        M = [np.outer(X, np.ones(rows[0].shape[1]))]
    else:
        M = algebra.MTTKRPTree(X, list(rows)).all()
    return {("M", n, b): Mn for n, (b, Mn) in enumerate(zip(index, M))}


def _mttkrp_chunk(block: Any, index: tuple[int, ...], n: int, *rows: np.ndarray) -> Partial:
    X = _as_float(block)
    Mn = algebra.mttkrp(X, list(rows), n) if X.ndim > 1 else np.outer(
        X, np.ones(rows[0].shape[1]))
    return {("M", n, index[n]): Mn}


def _inner_chunk(block: Any, *rows: np.ndarray) -> Partial:
    X = _as_float(block)
    if X.ndim == 1:
        return {("inner",): _number(np.sum(X[:, None] * rows[0]))}
    return {("inner",): algebra.MTTKRPTree(X, list(rows)).inner()}


def _project_chunk(block: Any, *rows: np.ndarray) -> Partial:
    X = _as_float(block)
    return {("P",): ml.products(X, [U.T for U in rows], range(X.ndim), large=True)}


def _tucker_chunk(block: Any, index: tuple[int, ...], core: np.ndarray,
                  *rows: np.ndarray) -> Partial:
    X = _as_float(block)
    Y = ml.leave_one_out(X, [U.T for U in rows], large=True)
    out: Partial = {("K", n, b): ml.contract_others(Y[n], core, n)
                    for n, b in enumerate(index)}
    out[("P",)] = ml.mode_product(Y[0], rows[0].T, 0)
    return out


# ----------------------------------------------------------------------------- the kind
class DaskTensor(Tensor):
    """Data held as a dask array: every operation runs chunk by chunk.

    See the module docstring (:mod:`sdf.tensors._dask`) for what each operation costs
    and how missing entries are handled. :func:`~sdf.tensors.as_tensor` builds one from
    a ``dask.array.Array``, a ``zarr`` array (opened lazily) or a dask-backed
    ``xarray.DataArray`` (dims and coords kept); nothing is loaded until a fit asks.

    Parameters
    ----------
    array : dask.array.Array
        Real numbers (any integer, bool or float dtype; chunks are read as float64) or
        complex ones (read as complex128); NaN (in either part) marks a missing entry,
        Inf is an error (found on first use).
    name : str, default "data"
        Starts every error message.
    max_known_bytes : int, optional
        Memory allowed for the coordinates of the known entries when some are missing
        (default :data:`MAX_KNOWN_BYTES`).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sdf.tensors import as_tensor
    >>> x = da.from_array(np.arange(24.0).reshape(2, 3, 4), chunks=(1, 2, 2))
    >>> T = as_tensor(x)
    >>> T.kind, T.shape, T.chunks, T.dense_view() is None
    ('dask', (2, 3, 4), ((1, 1), (2, 1), (2, 2)), True)
    >>> T.norm_squared() == float(np.sum(np.arange(24.0) ** 2))
    True
    """

    kind: ClassVar[str] = "dask"
    #: Capability read by drivers: every pass reads the data from their chunks, so
    #: algorithms that read the data a few times (randomized MLSVD) pay off.
    out_of_core: ClassVar[bool] = True

    def __init__(self, array: Any, *, name: str = "data",
                 max_known_bytes: int | None = None) -> None:
        dtype = np.dtype(array.dtype)
        if dtype.kind not in "biufc":
            raise DataError(f"{name}: data have dtype {dtype}; expected real or complex "
                            "numbers")
        self._complex = dtype.kind == "c"
        if array.ndim == 0:
            raise DataError(f"{name}: expected an array with at least one mode, got a scalar")
        self._shape = _check_shape(array.shape, name)
        if any(math.isnan(c) for chunks in array.chunks for c in chunks):
            raise DataError(f"{name}: the dask array has unknown chunk sizes; call "
                            "x.compute_chunk_sizes() first")
        self._name = name
        self._array = array
        self._max_known = MAX_KNOWN_BYTES if max_known_bytes is None else int(max_known_bytes)
        self._bounds = [np.concatenate([[0], np.cumsum(c)]).astype(np.int64)
                        for c in array.chunks]
        self._blocks = array.to_delayed(optimize_graph=True).ravel().tolist()
        self._index = list(np.ndindex(*array.numblocks))
        self._stats_cache: Partial | None = None
        self._known: KnownEntries | None = None

    @property
    def array(self) -> Any:
        """The dask array (as given; chunks are converted to float64, or complex128, when
        read)."""
        return self._array

    @property
    def is_complex(self) -> bool:
        return self._complex

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Chunk sizes along every mode (dask's ``chunks``)."""
        return tuple(tuple(int(c) for c in cs) for cs in self._array.chunks)

    @property
    def n_known(self) -> int:
        """Number of known (non-NaN) entries (one pass over the data on first use)."""
        return self.size - int(self._stats()[("nan",)])

    # ------------------------------------------------------------ running passes
    def _offset(self, index: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(int(self._bounds[n][b]) for n, b in enumerate(index))

    def _row_slices(self, mats: Sequence[np.ndarray]) -> list[list[Any]]:
        """Per mode and chunk index, the factor rows the chunk meets, as graph keys."""
        import dask

        return [[dask.delayed(np.ascontiguousarray(A[lo:hi]), pure=True)
                 for lo, hi in zip(b[:-1], b[1:])] for A, b in zip(mats, self._bounds)]

    def _reduce(self, task: Callable[..., Partial],
                args: Callable[[tuple[int, ...]], Sequence[Any]]) -> Partial:
        """Run ``task(chunk, *args(index))`` on every chunk and sum the partial results."""
        import dask

        level = [dask.delayed(task, pure=True)(block, *args(index))
                 for block, index in zip(self._blocks, self._index)]
        while len(level) > 1:
            level = [dask.delayed(merge, pure=True)(*level[k:k + FAN_IN])
                     for k in range(0, len(level), FAN_IN)]
        with one_blas_thread():
            (out,) = dask.compute(level[0])
        return dict(out)

    def _rows_pass(self, task: Callable[..., Partial], mats: Sequence[np.ndarray],
                   *front: Any, index_first: bool = True) -> Partial:
        rows = self._row_slices(mats)

        def args(index: tuple[int, ...]) -> list[Any]:
            mine = [rows[n][b] for n, b in enumerate(index)]
            return [index, *front, *mine] if index_first else [*front, *mine]

        return self._reduce(task, args)

    def _stacked(self, out: Partial, tag: str, n: int) -> np.ndarray:
        return np.concatenate([out[(tag, n, b)] for b in range(len(self._bounds[n]) - 1)])

    def _stats(self) -> Partial:
        """Squared norm of the known entries and the numbers of NaN and Inf (one pass)."""
        if self._stats_cache is None:
            stats = self._reduce(_scan_chunk, lambda index: ())
            if stats[("inf",)]:
                at = self._reduce(_first_inf_chunk, lambda index: (self._offset(index),))
                raise DataError(f"{self._name}: entry {min(at[('at',)])} is inf; Inf is "
                                "not allowed (NaN marks a missing entry)")
            if stats[("nan",)] == self.size:
                raise DataError(f"{self._name}: all entries are missing; expected at least "
                                "one known entry")
            self._stats_cache = stats
        return self._stats_cache

    # ------------------------------------------------------------ capabilities
    def known_entries(self) -> KnownEntries | None:
        """The known entries, gathered in memory, when some entries are missing (NaN).

        Raises :class:`~sdf.errors.DataError` when their coordinates would take more
        than ``max_known_bytes``.
        """
        if self._stats()[("nan",)] == 0:
            return None
        if self._known is None:
            self._known = self._gather_known()
        return self._known

    def _gather_known(self) -> KnownEntries:
        import dask

        from sdf.tensors._coordinate import IncompleteTensor

        need = self.n_known * (8 * self.ndim + (16 if self._complex else 8))
        if need > self._max_known:
            raise DataError(
                f"{self._name}: dask data with {self.size - self.n_known} missing (NaN) "
                f"entries are fitted on their {self.n_known} known entries, whose "
                f"coordinates need {need / 2**30:.3g} GiB in memory, above the limit of "
                f"{self._max_known / 2**30:.3g} GiB; raise it with "
                "DaskTensor(x, max_known_bytes=...), or fit a subset or filled data")
        with one_blas_thread():
            parts = dask.compute(*[dask.delayed(_known_chunk, pure=True)(b, self._offset(i))
                                   for b, i in zip(self._blocks, self._index)])
        subs = np.concatenate([p[0] for p in parts])
        vals = np.concatenate([p[1] for p in parts])
        return IncompleteTensor.from_entries(subs, vals, self.shape,
                                             name=self._name).known_entries()

    # ------------------------------------------------------------ reductions
    def _norm_squared(self) -> float:
        return float(self._stats()[("sumsq",)])

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _number(self._rows_pass(_inner_chunk, mats, index_first=False)[("inner",)])

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return self._stacked(self._rows_pass(_mttkrp_chunk, mats, n), "M", n)

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        out = self._rows_pass(_session_chunk, mats)
        return [self._stacked(out, "M", n) for n in range(self.ndim)]

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession:
        return _OnePassSession(self, mats)

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        P = self._rows_pass(_project_chunk, mats, index_first=False)[("P",)]
        return np.asarray(P).reshape([A.shape[1] for A in mats])

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        import dask

        core_key = dask.delayed(np.ascontiguousarray(core, dtype=np.result_type(core, np.float64)),
                                pure=True)
        out = self._rows_pass(_tucker_chunk, mats, core_key)
        return out[("P",)], [self._stacked(out, "K", n) for n in range(self.ndim)]

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        # One task per chunk holding requested entries: it reads that chunk and gathers.
        import dask

        out = np.zeros(subs.shape[0], dtype=np.complex128 if self._complex else np.float64)
        if subs.shape[0] == 0:
            return out
        where = np.stack([np.searchsorted(b, subs[:, n], side="right") - 1
                          for n, b in enumerate(self._bounds)])
        flat = np.ravel_multi_index(tuple(where), self._array.numblocks)
        order = np.argsort(flat, kind="stable")
        chunk_ids, starts = np.unique(flat[order], return_index=True)
        groups = np.split(order, starts[1:])
        tasks = []
        for k, picked in zip(chunk_ids, groups):
            index = self._index[int(k)]
            local = subs[picked] - np.asarray(self._offset(index), dtype=np.int64)
            tasks.append(dask.delayed(_pick_chunk, pure=True)(self._blocks[int(k)], local))
        with one_blas_thread():
            values = dask.compute(*tasks)
        for picked, vals in zip(groups, values):
            out[picked] = vals
        return out

    def to_dense(self) -> np.ndarray:
        """The full array in memory (NaN at missing entries), up to :data:`MAX_DENSE_BYTES`."""
        dtype = np.complex128 if self._complex else np.float64
        need = np.dtype(dtype).itemsize * self.size
        if need > MAX_DENSE_BYTES:
            raise DataError(
                f"{self._name}: dask data of shape {self.shape} take {need / 2**30:.3g} GiB "
                f"as {np.dtype(dtype).name}, above the limit of "
                f"{MAX_DENSE_BYTES / 2**30:.3g} GiB for "
                "to_dense(); work with them through the Tensor operations (chunk by chunk) "
                "or compute a slice of the dask array")
        a = np.asarray(self._array.compute(), dtype=dtype)
        _check_no_inf(a, self._name, lambda k: tuple(int(i) for i in np.unravel_index(
            k, a.shape)))
        return a

    def _extra_repr(self) -> str:
        return f", chunks={tuple(max(c) for c in self.chunks)}"


class _OnePassSession(MTTKRPSession):
    """An MTTKRP session whose one pass over the chunks gives every mode's MTTKRP, and so
    the inner product too (reading the data is what costs)."""

    def __init__(self, data: DaskTensor, factors: list[np.ndarray]) -> None:
        super().__init__(data, factors)
        self._all = data._mttkrp_all(factors)


# ----------------------------------------------------------------------------- registration
def _convert(x: Any, mask: Any, name: str) -> Tensor:
    if mask is not None:
        raise DataError(f"{name}: a mask cannot be combined with dask data; put NaN at the "
                        "missing entries instead (e.g. dask.array.where(mask, x, np.nan))")
    if type(x).__module__.split(".")[0] == "zarr":
        import dask.array as da

        x = da.from_zarr(x)
    return DaskTensor(x, name=name)


register_data_kind(is_chunked_array, _convert)
