"""Mostly-known data held densely with a mask: :class:`MaskedTensor`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sdf import _multilinear as ml
from sdf import algebra
from sdf.numerics import ldexp
from sdf.tensors._base import (
    KnownEntries,
    MTTKRPSession,
    Tensor,
    _check_shape,
    _float_array,
    _max_exponent,
    _native,
    _number,
    _readonly,
    _strides,
    _TreeSession,
)
from sdf.tensors._coordinate import IncompleteTensor, _known_of

__all__ = ["MaskedTensor"]


class MaskedTensor(Tensor):
    """Data with missing entries held as a dense array with zeros there, plus a mask.

    The storage for mostly-known data: 9 bytes per entry of the grid (the float64 array
    and a boolean mask), against about ``8 N + 16`` bytes per *known* entry for the
    coordinates of :class:`IncompleteTensor`. :func:`as_tensor` chooses it when it takes
    no more memory than coordinates (see its docstring for the rule). Every reduction (norm,
    inner products, MTTKRPs, projections) runs on the zero-filled array, which is the
    same as running over the known entries only; terms read the array and the mask
    through :meth:`masked_view`. Like :class:`IncompleteTensor` its ``kind`` is
    ``"incomplete"``: the data are the same, only held differently.

    Parameters
    ----------
    array : array_like
        Data with NaN at the missing entries.
    mask : bool array_like of the same shape, optional
        True marks a known entry. Values where it is False are ignored (may be anything,
        Inf included); a NaN where it is True is an error.

    Examples
    --------
    >>> import numpy as np
    >>> T = MaskedTensor(np.array([[1.0, np.nan], [3.0, 2.0]]))
    >>> T.n_known, T.kind, T.norm_squared()
    (3, 'incomplete', 14.0)
    >>> filled, mask = T.masked_view()
    >>> filled.tolist(), mask.tolist()
    ([[1.0, 0.0], [3.0, 2.0]], [[True, False], [True, True]])
    >>> T.known_entries().subs.tolist()
    [[0, 0], [1, 0], [1, 1]]
    """

    kind: ClassVar[str] = "incomplete"

    def __init__(self, array: Any, mask: Any = None, *, name: str = "data") -> None:
        a = _float_array(array, name, complex_ok=True)
        shape = _check_shape(a.shape, name)
        known = _known_of(a, mask, name)
        self._shape = shape
        self._init(np.where(known, a, 0.0), known)

    def _init(self, filled: np.ndarray, known: np.ndarray) -> None:
        n_known = int(np.count_nonzero(known))
        self._filled = _readonly(np.ascontiguousarray(_native(filled)))
        self._mask = _readonly(np.ascontiguousarray(known, dtype=bool))
        self._n_known = n_known
        self._known: KnownEntries | None = None

    @property
    def n_known(self) -> int:
        """Number of known entries."""
        return self._n_known

    @property
    def density(self) -> float:
        """Fraction of the entries known."""
        return self._n_known / self.size

    @property
    def mask(self) -> np.ndarray:
        """Read-only boolean array, True at the known entries."""
        return self._mask

    def masked_view(self) -> tuple[np.ndarray, np.ndarray]:
        return self._filled, self._mask

    @property
    def is_complex(self) -> bool:
        return bool(np.iscomplexobj(self._filled))

    def known_entries(self) -> KnownEntries:
        """The known entries as coordinates, built on first use (``O(n_known N)``)."""
        if self._known is None:
            subs = np.argwhere(self._mask)
            coords = IncompleteTensor.__new__(IncompleteTensor)
            coords._init(subs, self._filled[self._mask], self._shape,
                         subs @ _strides(self._shape))
            self._known = coords.known_entries()
        return self._known

    def _norm_squared(self) -> float:
        return algebra.frob(self._filled, squared=True)

    def _scale_exponent(self) -> int:
        return _max_exponent([self._filled])

    def _scaled(self, exponent: int) -> MaskedTensor:
        out = MaskedTensor.__new__(MaskedTensor)
        out._shape = self._shape
        out._filled = _readonly(ldexp(self._filled, exponent))
        out._mask = self._mask
        out._n_known = self._n_known
        out._known = None
        return out

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _number(np.sum(mats[0] * self._mttkrp(mats, 0)))

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        if self.ndim == 1:
            return np.outer(self._filled, np.ones(mats[0].shape[1]))
        return algebra.mttkrp(self._filled, mats, n)

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        if self.ndim == 1:
            return [self._mttkrp(mats, 0)]
        return algebra.mttkrp_all(self._filled, mats)

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        if self.ndim == 1:
            return MTTKRPSession(self, mats)
        return _TreeSession(self._filled, mats)

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        return algebra.tmprod(self._filled, mats, transpose=True)

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        Y = ml.leave_one_out(self._filled, [U.T for U in mats], large=True)
        K = [ml.contract_others(Y[n], core, n) for n in range(core.ndim)]
        return ml.mode_product(Y[0], mats[0].T, 0), K

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        where = tuple(subs.T)
        return np.where(self._mask[where], self._filled[where], np.nan)

    def to_dense(self) -> np.ndarray:
        return np.where(self._mask, self._filled, np.nan)

    def _extra_repr(self) -> str:
        return f", known={self._n_known}"
