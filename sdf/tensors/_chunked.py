"""Helpers shared by the kinds held in chunks (:mod:`sdf.tensors._dask`,
:mod:`sdf.tensors._dask_entries`): the reduction tree. Nothing here imports dask."""

from __future__ import annotations

from typing import Any

__all__ = ["FAN_IN", "Partial", "is_chunked_array", "merge"]

#: Partial results of chunk tasks, summed key by key.
Partial = dict[tuple[Any, ...], Any]
#: Partial results summed by one task of the reduction tree.
FAN_IN = 8


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
