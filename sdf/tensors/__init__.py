"""Data kinds a model is fitted to, the data protocol they share, and :func:`as_tensor`.

Every data set enters the engine as a :class:`Tensor`, with the same small set of
operations whatever its kind: the squared norm, inner products with a CPD or Tucker model,
an MTTKRP session (inner product first, then the MTTKRPs of all modes, sharing work),
multilinear projections, and sampling at given entries. The kinds shipped:
:class:`DenseTensor` (all known), :class:`MaskedTensor` (mostly known: a zero-filled
array and a mask), :class:`IncompleteTensor` (known entries only, missing ones unknown),
:class:`SparseTensor` (stored entries, the others zero), :class:`CPDTensor`,
:class:`TuckerTensor`, :class:`BTDTensor` and :class:`LL1Tensor` (factored, never
expanded), :class:`DaskTensor` (held in chunks by dask: in memory, on disk or on a
cluster; dask is imported only for such data) and :class:`DaskEntriesTensor`
(coordinates and values in chunks), the kinds built from signals by
:mod:`sdf.tensorize` -- :class:`HankelTensor` (FFT convolutions), :class:`LoewnerTensor`
and :class:`HigherOrderLoewnerTensor` (Cauchy-like products), :class:`SegmentedTensor`
(reshapes, no copies) and :class:`OverlappingSegmentedTensor` (overlapping windows, as a
Hankel tensor with steps) -- :class:`TTTensor` (tensor trains, see
:func:`sdf.decomp.tt_svd`) and :class:`Cumulant4Tensor` (the fourth-order cumulant of
observations, see :mod:`sdf.statistics`). A new
kind is one subclass of :class:`Tensor` (it must give ``_norm_squared`` and ``_mttkrp``;
the rest has defaults) and, for :func:`as_tensor` to accept a new input type, one
:func:`register_data_kind`.

Conventions: C order, ``mttkrp(factors, n) = unfold(T, n) @ khatri_rao([A_m, m != n])``
with the last mode fastest, as in :mod:`sdf.algebra`. Values are held as read-only native
float64 copies. Constructors take a keyword ``name`` that starts every error message.
"""

from sdf.tensors._base import KnownEntries, MTTKRPSession, Tensor
from sdf.tensors._blockterm import BTDTensor, LL1Tensor
from sdf.tensors._convert import as_tensor, register_data_kind
from sdf.tensors._coordinate import IncompleteTensor, SparseTensor
from sdf.tensors._cumulant import Cumulant4Tensor
from sdf.tensors._dask import DaskTensor
from sdf.tensors._dask_entries import DaskEntriesTensor
from sdf.tensors._dense import DenseTensor
from sdf.tensors._factored import CPDTensor, TuckerTensor
from sdf.tensors._hankel import HankelTensor, OverlappingSegmentedTensor
from sdf.tensors._loewner import HigherOrderLoewnerTensor, LoewnerTensor
from sdf.tensors._masked import MaskedTensor
from sdf.tensors._segmented import SegmentedTensor
from sdf.tensors._tt import TTTensor

__all__ = [
    "BTDTensor",
    "CPDTensor",
    "Cumulant4Tensor",
    "DaskEntriesTensor",
    "DaskTensor",
    "DenseTensor",
    "HankelTensor",
    "HigherOrderLoewnerTensor",
    "IncompleteTensor",
    "KnownEntries",
    "LL1Tensor",
    "LoewnerTensor",
    "MTTKRPSession",
    "MaskedTensor",
    "OverlappingSegmentedTensor",
    "SegmentedTensor",
    "SparseTensor",
    "TTTensor",
    "Tensor",
    "TuckerTensor",
    "as_tensor",
    "register_data_kind",
]
