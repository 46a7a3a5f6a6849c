"""Turning what users pass into a :class:`~sdf.tensors.Tensor`: :func:`as_tensor` and the
registry through which a new data kind makes itself known."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from sdf.errors import DataError
from sdf.tensors._base import Tensor, _check_shape, _float_array
from sdf.tensors._chunked import is_chunked_array
from sdf.tensors._coordinate import IncompleteTensor, SparseTensor, _known_of
from sdf.tensors._dense import DenseTensor
from sdf.tensors._masked import MaskedTensor

__all__ = ["as_tensor", "register_data_kind"]


def _masked_is_smaller(n_known: int, shape: tuple[int, ...], itemsize: int) -> bool:
    """Whether an array with ``n_known`` known entries takes no more memory held densely
    with a boolean mask (``itemsize + 1`` bytes per entry of the grid) than as
    coordinates (``N`` int64 subscripts, the int64 linear index and the value per known
    entry); see :func:`as_tensor`."""
    size = math.prod(shape)
    return (itemsize + 1) * size <= (8 * len(shape) + 8 + itemsize) * n_known

#: Converters of registered data kinds, tried newest first: (accepts, convert).
_REGISTRY: list[tuple[Callable[[Any], bool], Callable[[Any, Any, str], Tensor]]] = []


def register_data_kind(accepts: Callable[[Any], bool],
                       convert: Callable[[Any, Any, str], Tensor]) -> Callable[[], None]:
    """Let :func:`as_tensor` (and so every term and driver) accept a new kind of input.

    Parameters
    ----------
    accepts : callable
        ``accepts(x)`` is True for the inputs this kind handles (e.g. a dask array); it
        must be cheap and must not import optional packages the user has not imported.
    convert : callable
        ``convert(x, mask, name)`` returns the :class:`Tensor`; ``mask`` is None or a
        boolean array of known entries, ``name`` starts its error messages.

    Returns
    -------
    callable
        Calling it removes the registration again.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.tensors import DenseTensor, as_tensor
    >>> class Doubled:  # a toy input type
    ...     def __init__(self, a): self.a = a
    >>> unregister = register_data_kind(lambda x: isinstance(x, Doubled),
    ...                                 lambda x, mask, name: DenseTensor(2 * x.a, name=name))
    >>> as_tensor(Doubled(np.ones((2, 2)))).norm_squared()
    16.0
    >>> unregister()
    """
    if not (callable(accepts) and callable(convert)):
        raise DataError("register_data_kind: accepts and convert must be callables")
    entry = (accepts, convert)
    _REGISTRY.append(entry)

    def unregister() -> None:
        if entry in _REGISTRY:
            _REGISTRY.remove(entry)

    return unregister


def _from_array(x: Any, mask: Any, name: str) -> Tensor:
    if isinstance(x, np.ma.MaskedArray):
        # Masked entries are missing, like NaN (their hidden values are never read).
        hidden = np.ma.getmaskarray(x)
        known = ~hidden if mask is None else (np.asarray(mask, dtype=bool) & ~hidden)
        a = _float_array(np.ma.getdata(x), name, complex_ok=True)
        a = np.where(known, a, np.nan) if hidden.any() else a
        return _from_array(a, known if mask is not None or hidden.any() else None, name)
    a = _float_array(x, name, complex_ok=True)
    if a.ndim == 0:
        raise DataError(f"{name}: expected an array with at least one mode, got a scalar")
    _check_shape(a.shape, name)
    if mask is None and not np.isnan(a).any():
        return DenseTensor(a, name=name)
    known = _known_of(a, mask, name)
    n_known = int(np.count_nonzero(known))
    if n_known == a.size:
        return DenseTensor(a, name=name)
    if _masked_is_smaller(n_known, a.shape, a.itemsize):
        return MaskedTensor(a, known, name=name)
    return IncompleteTensor(a, known, name=name)


def _is_xarray(x: Any) -> bool:
    return type(x).__module__.startswith("xarray")


def as_tensor(x: Any, mask: Any = None, name: str = "data", *,
              missing: Literal["zero", "unknown"] = "zero") -> Tensor:
    """Turn any supported data into a :class:`Tensor`.

    - a :class:`Tensor` is returned as is;
    - an array (or nested lists) gives a :class:`DenseTensor`; if it has NaN, masked
      entries (``numpy.ma``) or a ``mask`` marks entries unknown, it gives a
      :class:`MaskedTensor` when that takes no more memory than an
      :class:`IncompleteTensor`, else the latter: the masked kind keeps the array and a
      mask, 9 bytes per entry of the grid (17 complex), the coordinates ``8 N + 16``
      bytes per known entry (``8 N + 24`` complex), so an order-3 real array is held
      masked when at least 22.5 % of its entries are known (28 % for a matrix, 19 % at
      order 4). The masked kind is also the faster one there: a CPD on it costs a dense
      fit plus work on the missing entries, against work in proportion to the known
      entries on coordinates, which costs more per entry (measured at 100^3, rank 5,
      one BLAS thread: see ``benchmarks/bench_incomplete.py``). Build either kind
      directly to choose yourself;
    - scipy.sparse input and any 3-tuple ``(subs, vals, shape)`` give a
      :class:`SparseTensor`, or an :class:`IncompleteTensor` if ``missing="unknown"``;
      a triplet whose ``subs`` or ``vals`` is a dask or zarr array gives a
      :class:`DaskEntriesTensor` (entries read chunk by chunk, never all in memory);
    - an ``xarray.DataArray`` is read through its underlying array (a lazily backed one
      stays lazy when its kind is registered, see :func:`register_data_kind`) and keeps
      ``dims`` and ``coords`` (``np.arange`` for dims without coordinates);
    - inputs of a kind registered with :func:`register_data_kind`.

    Integer, bool, float32 and big-endian data become native float64; the input is never
    modified, and the tensor holds its own copy, so later changes to the input do not
    reach it.

    Parameters
    ----------
    x : array_like, numpy.ma.MaskedArray, scipy.sparse, tuple, xarray.DataArray or Tensor
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
        Inf entries, complex, date or non-numeric data, a scalar or empty array, no known
        entry, a bad mask, or subs/vals/shape that do not fit together.

    Examples
    --------
    >>> import numpy as np
    >>> as_tensor([[1, 2], [3, 4]]).kind
    'dense'
    >>> type(as_tensor(np.array([1.0, 2.0, np.nan]))).__name__
    'MaskedTensor'
    >>> type(as_tensor(np.array([1.0, np.nan, np.nan]))).__name__
    'IncompleteTensor'
    >>> as_tensor(np.ma.masked_array([1.0, 2.0], mask=[False, True])).n_known
    1
    >>> as_tensor(([[0, 0], [1, 1]], [1.0, 2.0], (2, 2)), missing="unknown").n_known
    2
    """
    if missing not in ("zero", "unknown"):
        raise DataError(f"missing: expected 'zero' or 'unknown', got {missing!r}")
    if isinstance(x, Tensor):
        if mask is not None:
            raise DataError(f"{name}: a mask cannot be combined with a {type(x).__name__}")
        return x
    for accepts, convert in reversed(_REGISTRY):
        if accepts(x):
            return convert(x, mask, name)
    if _is_xarray(x):
        dims = tuple(str(d) for d in x.dims)
        coords = {str(d): (np.asarray(x.coords[d].values) if d in x.coords
                           else np.arange(n)) for d, n in zip(x.dims, x.shape)}
        if _is_xarray(mask):
            mask = np.asarray(mask.transpose(*x.dims))
        coord_attrs = {str(d): dict(x.coords[d].attrs) for d in x.dims if d in x.coords}
        return as_tensor(x.data, mask=mask, name=name, missing=missing)._set_labels(
            dims, coords, dict(x.attrs), coord_attrs)
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
        if is_chunked_array(x[0]) or is_chunked_array(x[1]):
            from sdf.tensors._dask_entries import DaskEntriesTensor

            return DaskEntriesTensor(x[0], x[1], x[2], missing=missing, name=name)
        return cls.from_entries(x[0], x[1], x[2], name=name)
    return _from_array(x, mask, name)
