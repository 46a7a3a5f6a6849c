"""Helpers shared by the data kinds built from signals (Hankel, Loewner, segmented) and by
tensor trains: reading the signals, the densify limit, index sums.

A signal array holds one or more signals along ``axis``; the kinds keep a read-only copy
with that axis first (shape ``(L, M_0, ..., M_{p-1})``), so the other axes (``rest``) stay
in their original order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sdf.errors import DataError
from sdf.tensors._base import _check_finite, _float_array, _readonly

__all__ = ["DENSIFY_LIMIT", "check_axis", "check_densify", "check_sizes", "read_signals",
           "signals_first"]

#: Entries above which a structured data kind refuses to expand itself (``to_dense``):
#: 10**8 float64 entries are 800 MB.
DENSIFY_LIMIT = 10**8


def check_densify(shape: Sequence[int], name: str, kind: str) -> None:
    """Raise a DataError when a tensor of ``shape`` is too large to expand."""
    size = math.prod(int(s) for s in shape)
    if size > DENSIFY_LIMIT:
        raise DataError(
            f"{name}: expanding this {kind} tensor of shape {tuple(shape)} needs {size:.3g} "
            f"entries ({8 * size:.3g} bytes), more than the limit of {DENSIFY_LIMIT:.0e} "
            "(sdf.tensors._signals.DENSIFY_LIMIT); use it in its structured form (norm, "
            "inner products, MTTKRPs, Model.fit) or expand a smaller part")


def check_axis(axis: Any, ndim: int, name: str) -> int:
    """An axis of an ndim-dimensional signal array, negative values counted from the end."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) \
            or not -ndim <= axis < ndim:
        raise DataError(f"{name}: axis must be an int in [{-ndim}, {ndim}), got {axis!r}")
    return int(axis) % ndim


def check_sizes(sizes: Any, name: str, what: str = "sizes") -> tuple[int, ...]:
    """A tuple of positive ints."""
    try:
        out = tuple(int(s) for s in np.atleast_1d(np.asarray(sizes)))
        ok = all(float(s) == o for s, o in zip(np.atleast_1d(np.asarray(sizes)), out))
    except (TypeError, ValueError):
        raise DataError(f"{name}: {what} must be ints, got {sizes!r}") from None
    if not ok or not out or min(out) < 1:
        raise DataError(f"{name}: {what} must be positive ints, got {sizes!r}")
    return out


def signals_first(x: np.ndarray, axis: int) -> np.ndarray:
    """A read-only C-contiguous float64 (or complex128) copy of a validated signal array,
    ``axis`` first."""
    return _readonly(np.array(np.moveaxis(x, axis, 0), dtype=np.result_type(x, np.float64),
                              order="C", copy=True))


def read_signals(signals: Any, axis: Any, name: str, *, complex_ok: bool = False
                 ) -> tuple[np.ndarray, int]:
    """Validate a signal array and an axis; returns (signals as float64, or complex128
    where ``complex_ok`` and they are complex, axis)."""
    x = _float_array(signals, name, "signal", complex_ok=complex_ok)
    if x.ndim == 0:
        raise DataError(f"{name}: expected a signal (a vector, or an array of signals), "
                        "got a scalar")
    _check_finite([x], name, "signal")
    return x, check_axis(axis, x.ndim, name)
