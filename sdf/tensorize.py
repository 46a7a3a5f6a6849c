"""Tensorization of signals and its inverses: Hankel, Loewner, segmentation, decimation.

Each function maps one signal (a vector) or an array of signals (the signals running
along ``axis``) to a tensor whose modes ``axis, ..., axis + K - 1`` replace the signal
axis. The result is a dense ndarray when it is small and a structured data kind of
:mod:`sdf.tensors` otherwise, which every term (``sdf.CPD``, ``sdf.LMLRA``, ...) fits
without expanding it.

Size rule: with ``full=None`` (the default) the result is dense when the tensor has at
most :data:`FULL_LIMIT` entries (10**6, 8 MB) and structured otherwise; ``full=True`` or
``False`` forces one form. The inverses (``dehankelize``, ``desegmentize``,
``dedecimate``) accept both forms and return an ndarray of signals.

Examples
--------
>>> import numpy as np
>>> from sdf.tensorize import dehankelize, hankelize
>>> x = np.arange(6.0)
>>> H = hankelize(x)
>>> H
array([[0., 1., 2.],
       [1., 2., 3.],
       [2., 3., 4.],
       [3., 4., 5.]])
>>> np.allclose(dehankelize(H), x)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import scipy.fft
import scipy.sparse as sp

from sdf import algebra
from sdf.errors import DataError
from sdf.tensors import CPDTensor, Tensor
from sdf.tensors._base import _float_array
from sdf.tensors._hankel import (
    HankelTensor,
    OverlappingSegmentedTensor,
    default_hankel_sizes,
    sample_counts,
)
from sdf.tensors._loewner import HigherOrderLoewnerTensor, LoewnerTensor
from sdf.tensors._segmented import SegmentedTensor
from sdf.tensors._signals import check_axis, check_densify, check_sizes, read_signals

__all__ = [
    "FULL_LIMIT",
    "decimate",
    "dedecimate",
    "dehankelize",
    "desegmentize",
    "hankelize",
    "loewnerize",
    "segmentize",
]

#: Entries up to which tensorization returns a dense ndarray when ``full=None``.
FULL_LIMIT = 10**6


def _dense_wanted(shape: Sequence[int], full: bool | None, name: str) -> bool:
    if full is not None and not isinstance(full, (bool, np.bool_)):
        raise DataError(f"{name}: full must be True, False or None, got {full!r}")
    if full is None:
        return math.prod(int(s) for s in shape) <= FULL_LIMIT
    return bool(full)


def _check_order(order: Any, name: str) -> int:
    if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or order < 2:
        raise DataError(f"{name}: order must be an int >= 2, got {order!r}")
    return int(order)


# ----------------------------------------------------------------------------- Hankel
def hankelize(signals: Any, order: int | None = None, *, sizes: Sequence[int] | None = None,
              axis: int = 0, full: bool | None = None) -> np.ndarray | HankelTensor:
    """Hankel tensor of each signal: ``H[..., i_0, ..., i_{K-1}, ...] = x[..., i_0 + ... +
    i_{K-1}, ...]``.

    A sum of R (damped) exponentials gives a Hankel tensor of rank R whose factor columns
    are Vandermonde vectors of the poles: the classic route to harmonic retrieval.

    Parameters
    ----------
    signals : array_like
        A signal of length L, or an array of signals running along ``axis``.
    order : int, optional
        Number K of Hankel modes: ``len(sizes)`` when sizes are given, else 2.
    sizes : sequence of int, optional
        Their sizes, ``sum(sizes) - K + 1 = L``; default as nearly equal as possible
        (the first ones one larger), like Tensorlab.
    axis : int, default 0
        Signal axis; the K Hankel modes take its place.
    full : bool, optional
        Dense ndarray (True) or :class:`~sdf.tensors.HankelTensor` (False); default dense
        when the tensor has at most :data:`FULL_LIMIT` entries.

    Returns
    -------
    ndarray or HankelTensor
        Of shape ``signals.shape[:axis] + sizes + signals.shape[axis + 1:]``.

    Examples
    --------
    >>> import numpy as np
    >>> hankelize(np.arange(5.0), order=3).shape
    (3, 2, 2)
    >>> hankelize(np.arange(10**6, dtype=float), order=3)
    HankelTensor(shape=(333334, 333334, 333334), sizes=(333334, 333334, 333334), axis=0)
    """
    name = "hankelize"
    x, ax = read_signals(signals, axis, name, complex_ok=True)
    sz = None if sizes is None else check_sizes(sizes, name)
    K = _check_order((2 if sz is None else len(sz)) if order is None else order, name)
    sz = default_hankel_sizes(x.shape[ax], K) if sz is None else sz
    if len(sz) != K:
        raise DataError(f"{name}: sizes {sz} give {len(sz)} modes, but order is {K}")
    H = HankelTensor(x, sz, ax, name=name)
    return H.to_dense() if _dense_wanted(H.shape, full, name) else H


def _conv_columns(mats: Sequence[np.ndarray], length: int,
                  steps: Sequence[int] | None = None) -> np.ndarray:
    """Column-wise full linear convolution of the matrices (rows of matrix k placed
    ``steps[k]`` apart), shape (length, R)."""
    n = scipy.fft.next_fast_len(length, real=True)
    complex_ = any(np.iscomplexobj(A) for A in mats)
    forward = scipy.fft.fft if complex_ else scipy.fft.rfft
    spectrum: np.ndarray | None = None
    for k, A in enumerate(mats):
        st = 1 if steps is None else int(steps[k])
        up = np.zeros((st * (A.shape[0] - 1) + 1, A.shape[1]), dtype=A.dtype)
        up[::st] = A
        S = forward(up, n, axis=0)
        spectrum = S if spectrum is None else spectrum * S
    assert spectrum is not None
    if complex_:
        return scipy.fft.ifft(spectrum, n, axis=0)[:length]
    return scipy.fft.irfft(spectrum, n, axis=0)[:length]


def _signal_length(sizes: Sequence[int], steps: Sequence[int]) -> int:
    return sum(st * (I - 1) for I, st in zip(sizes, steps)) + 1


def _dehankelize_cpd(T: CPDTensor, K: int, ax: int, steps: Sequence[int]) -> np.ndarray:
    sizes = T.shape[ax:ax + K]
    L = _signal_length(sizes, steps)
    mats = T.factors
    conv = _conv_columns(mats[ax:ax + K], L, steps) * T.weights  # (L, R)
    rest = [*mats[:ax], *mats[ax + K:]]
    sums = algebra.cpd_to_tensor([conv, *rest]) if rest else conv.sum(axis=1)
    counts = sample_counts(sizes, steps)
    means = sums / np.maximum(counts, 1).reshape((L,) + (1,) * len(rest))
    return np.moveaxis(means, 0, ax)


def _dehankelize_array(a: np.ndarray, K: int, ax: int, steps: Sequence[int]) -> np.ndarray:
    sizes = a.shape[ax:ax + K]
    L = _signal_length(sizes, steps)
    block = np.moveaxis(a, list(range(ax, ax + K)), list(range(K)))
    values = block.reshape(math.prod(sizes), -1)
    grids = np.ix_(*[st * np.arange(I) for I, st in zip(sizes, steps)])
    sample = sum(grids[1:], start=grids[0]).ravel()
    summing = sp.csr_array((np.ones(sample.size), (sample, np.arange(sample.size))),
                           shape=(L, sample.size))
    # Samples no entry holds (windows shifted by more than their length) come back as 0.
    means = (summing @ values) / np.maximum(sample_counts(sizes, steps), 1)[:, None]
    return np.moveaxis(means.reshape((L,) + block.shape[K:]), 0, ax)


def dehankelize(data: Any, order: int = 2, *, axis: int = 0) -> np.ndarray:
    """Signals from (approximately) Hankel tensors: the mean of each anti-diagonal.

    The mean is the least-squares Hankel approximation, so ``dehankelize(hankelize(x))``
    is ``x`` and a low-rank model of a Hankel tensor gives a denoised signal.

    Parameters
    ----------
    data : array_like, HankelTensor, CPDTensor or Tensor
        Modes ``axis, ..., axis + order - 1`` are the Hankel modes. A HankelTensor gives
        back its signals; a CPDTensor (e.g. ``CPDTensor(result factors)``) is averaged
        in factored form through FFT convolutions, never expanded; other Tensors are
        expanded (refused past the densify limit).
    order : int, default 2
        Number K of Hankel modes.
    axis : int, default 0
        First Hankel mode; it becomes the signal axis of the result.

    Returns
    -------
    ndarray
        Shape ``shape[:axis] + (L,) + shape[axis + K:]`` with ``L = sum(sizes) - K + 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.tensors import CPDTensor
    >>> dehankelize(np.array([[1.0, 2.0], [4.0, 5.0]]))
    array([1., 3., 5.])
    >>> z = 0.9 ** np.arange(7.0)  # rank one: a Vandermonde vector per mode
    >>> dehankelize(CPDTensor([z[:4, None], z[:4, None]]))[:3]
    array([1.  , 0.9 , 0.81])
    """
    name = "dehankelize"
    K = _check_order(order, name)
    if isinstance(data, HankelTensor) and set(data.steps) == {1} and data.order == K \
            and data.axis == check_axis(axis, data.ndim, name):
        return np.array(data.signal)
    ndim = data.ndim if isinstance(data, Tensor) else np.ndim(data)
    ax = check_axis(axis, ndim, name)
    if ax + K > ndim:
        raise DataError(f"{name}: order {K} from axis {ax} needs at least {ax + K} modes, "
                        f"the data have {ndim}")
    if isinstance(data, CPDTensor):
        return _dehankelize_cpd(data, K, ax, (1,) * K)
    if isinstance(data, Tensor):
        check_densify(data.shape, name, data.kind)
        array = data.to_dense()
    else:
        array = _float_array(data, name, complex_ok=True)
    return _dehankelize_array(array, K, ax, (1,) * K)


# ----------------------------------------------------------------------------- Loewner
def loewnerize(signals: Any, points: Any = None, *, rows: Any = None, order: int = 2,
               sets: Any = None, axis: int = 0, full: bool | None = None
               ) -> np.ndarray | LoewnerTensor | HigherOrderLoewnerTensor:
    """Loewner matrix of each sampled function: ``L[i, j] = (f(x_i) - f(y_j)) / (x_i - y_j)``,
    or with ``order`` K > 2 the Loewner tensor of divided differences of order K - 1.

    The samples are split into a row set (points x_i) and a column set (points y_j); a
    rational function of degree R gives a Loewner matrix of rank R, so Loewner matrices
    of mixtures of rational signals have low-rank structure that separates them. With
    K > 2 the samples are split into K sets and
    ``T[i_1, ..., i_K] = sum_k f(t_k[i_k]) / prod_{j != k} (t_k[i_k] - t_j[i_j])``
    (Tensorlab's ``Order`` option, same interleaved partition), held as a
    :class:`~sdf.tensors.HigherOrderLoewnerTensor` whose products with factors are
    Cauchy products, never the I^K entries.

    Parameters
    ----------
    signals : array_like
        Samples f(t_l), one function (a vector) or several along ``axis``; real or
        complex (a frequency response ``H(1j * omega)``).
    points : array_like of shape (L,), optional
        Sample points t, real or complex; default ``0, 1, ..., L - 1``.
    rows : array_like of int, optional
        Order 2: indices of the row-set samples; default the even ones (interleaved
        partition, as in Tensorlab); the others, in order, are the column set.
    order : int, default 2
        Number K of Loewner modes.
    sets : sequence of K arrays of int, optional
        Order K > 2: the samples of each set; default interleaved (set k holds samples
        k, k + K, ...).
    axis : int, default 0
        Signal axis; the Loewner modes take its place.
    full : bool, optional
        Dense ndarray (True) or the structured kind (False); default dense up to
        :data:`FULL_LIMIT` entries.

    Returns
    -------
    ndarray, LoewnerTensor or HigherOrderLoewnerTensor

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(4.0)
    >>> loewnerize(t ** 2, t)  # (x_i^2 - y_j^2) / (x_i - y_j) = x_i + y_j
    array([[1., 3.],
           [3., 5.]])
    >>> t = np.arange(6.0)
    >>> loewnerize(t ** 3, t, order=3)[0, 0]  # divided differences of t^3: sum of points
    array([3., 6.])
    """
    name = "loewnerize"
    K = _check_order(order, name)
    T: LoewnerTensor | HigherOrderLoewnerTensor
    if K == 2 and sets is None:
        T = LoewnerTensor(signals, points, rows, axis, name=name)
    else:
        if rows is not None:
            raise DataError(f"{name}: rows sets the partition of a Loewner matrix; for order "
                            f"{K} give sets instead")
        T = HigherOrderLoewnerTensor(signals, points, K, sets, axis, name=name)
    return T.to_dense() if _dense_wanted(T.shape, full, name) else T


# ----------------------------------------------------------------------------- reshapes
def _reshape_sizes(sizes: Any, L: int, name: str, single: str) -> tuple[int, ...]:
    """Sizes from an int (see ``single``) or a tuple with at most one -1, product L."""
    if isinstance(sizes, (int, np.integer)) and not isinstance(sizes, bool):
        if sizes < 1 or L % int(sizes):
            raise DataError(f"{name}: {single} {sizes} does not divide the signal length {L}")
        return (int(sizes), L // int(sizes)) if single == "segment length" else (
            L // int(sizes), int(sizes))
    raw = list(np.atleast_1d(np.asarray(sizes, dtype=object)))
    if raw.count(-1) > 1:
        raise DataError(f"{name}: at most one size may be -1, got {sizes!r}")
    known = [s for s in raw if s != -1]
    prod = math.prod(check_sizes(known, name)) if known else 1
    if -1 in raw:
        if L % prod:
            raise DataError(f"{name}: sizes {tuple(raw)} cannot reshape a signal of length {L}")
        raw[raw.index(-1)] = L // prod
    out = check_sizes(raw, name)
    if len(out) < 2 or math.prod(out) != L:
        raise DataError(f"{name}: sizes {out} do not reshape a signal of length {L}; "
                        "expected K >= 2 sizes whose product is the length")
    return out


def segmentize(signals: Any, sizes: int | Sequence[int], *, axis: int = 0,
               shift: int | None = None, full: bool | None = None
               ) -> np.ndarray | SegmentedTensor | OverlappingSegmentedTensor:
    """Cut each signal into segments: ``T[..., i, j, ...] = x[..., i + I j, ...]``, or with
    a shift s, into windows starting s samples apart: ``x[..., i + s j, ...]``.

    An int ``I`` gives segments of length I along mode ``axis`` and the segment index
    along the next mode; K sizes give the order-K segmentation (Fortran-order reshape:
    ``x[i_0 + I_0 i_1 + I_0 I_1 i_2 + ...]``). Exponentials, polynomials and sums of them
    give low-rank segmentations. With ``shift`` s < I consecutive windows overlap (the
    structured form is an :class:`~sdf.tensors.OverlappingSegmentedTensor`, holding
    the signal once); there are ``(L - I) // s + 1`` windows and later samples are left
    out.

    Parameters
    ----------
    signals : array_like
        A signal of length L, or an array of signals running along ``axis``.
    sizes : int or sequence of int
        Segment length (it must divide L unless ``shift`` is given), or the K >= 2 sizes
        (product L, one may be -1; not with ``shift``).
    axis : int, default 0
    shift : int, optional
        Distance between the starts of consecutive windows (>= 1); default the segment
        length (no overlap).
    full : bool, optional
        Dense ndarray (True) or the structured kind (False); default dense up to
        :data:`FULL_LIMIT` entries.

    Returns
    -------
    ndarray, SegmentedTensor or OverlappingSegmentedTensor

    Examples
    --------
    >>> import numpy as np
    >>> segmentize(np.arange(6.0), 2)
    array([[0., 2., 4.],
           [1., 3., 5.]])
    >>> segmentize(np.arange(6.0), 4, shift=1)
    array([[0., 1., 2.],
           [1., 2., 3.],
           [2., 3., 4.],
           [3., 4., 5.]])
    """
    name = "segmentize"
    x, ax = read_signals(signals, axis, name, complex_ok=True)
    T: SegmentedTensor | OverlappingSegmentedTensor
    if shift is None:
        sz = _reshape_sizes(sizes, x.shape[ax], name, "segment length")
        T = SegmentedTensor(x, sz, ax, order="F", name=name)
    else:
        if not isinstance(sizes, (int, np.integer)) or isinstance(sizes, bool):
            raise DataError(f"{name}: with a shift, sizes must be the segment length (an "
                            f"int), got {sizes!r}")
        T = OverlappingSegmentedTensor(x, int(sizes), _check_shift(shift, name), ax,
                                       name=name)
    return T.to_dense() if _dense_wanted(T.shape, full, name) else T


def _check_shift(shift: Any, name: str) -> int:
    if not isinstance(shift, (int, np.integer)) or isinstance(shift, bool) or shift < 1:
        raise DataError(f"{name}: shift must be an int >= 1, got {shift!r}")
    return int(shift)


def decimate(signals: Any, sizes: int | Sequence[int], *, axis: int = 0,
             full: bool | None = None) -> np.ndarray | SegmentedTensor:
    """Interleave each signal's decimated versions: ``T[..., i, j, ...] = x[..., i D + j, ...]``.

    An int ``D`` gives column ``j`` = the signal decimated by D from sample j, shape
    ``(L / D, D)``; K sizes give the order-K decimation (C-order reshape:
    ``x[i_0 I_1 ... I_{K-1} + ... + i_{K-1}]``).

    Parameters
    ----------
    signals : array_like
        A signal of length L, or an array of signals running along ``axis``.
    sizes : int or sequence of int
        Decimation factor D (it must divide L), or the K >= 2 sizes (product L, one may
        be -1).
    axis : int, default 0
    full : bool, optional
        Dense ndarray (True) or :class:`~sdf.tensors.SegmentedTensor` (False); default
        dense up to :data:`FULL_LIMIT` entries.

    Returns
    -------
    ndarray or SegmentedTensor

    Examples
    --------
    >>> import numpy as np
    >>> decimate(np.arange(6.0), 2)
    array([[0., 1.],
           [2., 3.],
           [4., 5.]])
    """
    name = "decimate"
    x, ax = read_signals(signals, axis, name, complex_ok=True)
    sz = _reshape_sizes(sizes, x.shape[ax], name, "decimation factor")
    T = SegmentedTensor(x, sz, ax, order="C", name=name)
    return T.to_dense() if _dense_wanted(T.shape, full, name) else T


def _merge(data: Any, order: int, axis: int, layout: Literal["F", "C"], name: str
           ) -> np.ndarray:
    K = _check_order(order, name)
    if isinstance(data, SegmentedTensor) and data.order == layout and len(data.sizes) == K \
            and data.axis == check_axis(axis, data.ndim, name):
        return np.array(data.signal)
    if isinstance(data, Tensor):
        check_densify(data.shape, name, data.kind)
        array = data.to_dense()
    else:
        array = _float_array(data, name, complex_ok=True)
    ax = check_axis(axis, array.ndim, name)
    if ax + K > array.ndim:
        raise DataError(f"{name}: order {K} from axis {ax} needs at least {ax + K} modes, "
                        f"the data have {array.ndim}")
    block = np.moveaxis(array, list(range(ax, ax + K)), list(range(K)))
    merged = block.reshape((-1,) + block.shape[K:], order=layout) if layout == "C" else \
        np.moveaxis(block, list(range(K)), list(range(K))[::-1]).reshape(
            (-1,) + block.shape[K:])
    return np.moveaxis(merged, 0, ax).copy()


def desegmentize(data: Any, order: int = 2, *, axis: int = 0, shift: int | None = None
                 ) -> np.ndarray:
    """Signals from their segmentation (inverse of :func:`segmentize`).

    With a ``shift`` (overlapping windows) each sample is the mean of the entries that
    hold it, the least-squares signal of (approximately) segmented data, as
    :func:`dehankelize` does; a CPDTensor is averaged in factored form.

    Parameters
    ----------
    data : array_like or Tensor
        Modes ``axis, ..., axis + order - 1`` hold the segmentation.
    order : int, default 2
        Must be 2 with a shift.
    axis : int, default 0
    shift : int, optional
        Distance between the starts of consecutive windows; default the segment length.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> desegmentize(segmentize(np.arange(6.0), 3))
    array([0., 1., 2., 3., 4., 5.])
    >>> desegmentize(segmentize(np.arange(6.0), 4, shift=1), shift=1)
    array([0., 1., 2., 3., 4., 5.])
    """
    name = "desegmentize"
    if shift is None:
        return _merge(data, order, axis, "F", name)
    s = _check_shift(shift, name)
    if _check_order(order, name) != 2:
        raise DataError(f"{name}: a shift needs order 2 (windows along one mode), got {order}")
    if isinstance(data, OverlappingSegmentedTensor) and data.shift == s \
            and data.axis == check_axis(axis, data.ndim, name):
        return np.array(data.signal)
    ndim = data.ndim if isinstance(data, Tensor) else np.ndim(data)
    ax = check_axis(axis, ndim, name)
    if ax + 2 > ndim:
        raise DataError(f"{name}: order 2 from axis {ax} needs at least {ax + 2} modes, "
                        f"the data have {ndim}")
    if isinstance(data, CPDTensor):
        return _dehankelize_cpd(data, 2, ax, (1, s))
    if isinstance(data, Tensor):
        check_densify(data.shape, name, data.kind)
        array = data.to_dense()
    else:
        array = _float_array(data, name, complex_ok=True)
    return _dehankelize_array(array, 2, ax, (1, s))


def dedecimate(data: Any, order: int = 2, *, axis: int = 0) -> np.ndarray:
    """Signals from their decimation (inverse of :func:`decimate`).

    Parameters
    ----------
    data : array_like or Tensor
        Modes ``axis, ..., axis + order - 1`` hold the decimation.
    order : int, default 2
    axis : int, default 0

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> dedecimate(decimate(np.arange(6.0), 3))
    array([0., 1., 2., 3., 4., 5.])
    """
    return _merge(data, order, axis, "C", "dedecimate")
