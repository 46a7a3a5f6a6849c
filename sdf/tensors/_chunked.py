"""Helpers shared by the kinds held in chunks (:mod:`sdf.tensors._dask`,
:mod:`sdf.tensors._dask_entries`): the reduction tree and the BLAS thread limit.
Nothing here imports dask."""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["FAN_IN", "Partial", "is_chunked_array", "merge", "one_blas_thread"]

#: Partial results of chunk tasks, summed key by key.
Partial = dict[tuple[Any, ...], Any]
#: Partial results summed by one task of the reduction tree.
FAN_IN = 8


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """BLAS single-threaded while chunk tasks run in this process: dask's threads give
    the parallelism, and small per-chunk GEMMs on contended BLAS threads run many times
    slower. (Worker processes of dask.distributed start with one BLAS thread already.)"""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def merge(*parts: Partial) -> Partial:
    """Sum partial results key by key (lists concatenate)."""
    out = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            out[key] = out[key] + value if key in out else value
    return out


def is_chunked_array(x: Any) -> bool:
    """A dask or zarr array, recognised without importing either package."""
    root = type(x).__module__.split(".")[0]
    return (root == "dask" and hasattr(x, "chunks") and hasattr(x, "to_delayed")) or (
        root == "zarr" and hasattr(x, "chunks") and hasattr(x, "shape"))
