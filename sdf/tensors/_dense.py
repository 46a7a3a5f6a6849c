"""Fully known data held in memory: :class:`DenseTensor`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sdf import _multilinear as ml
from sdf import algebra
from sdf.numerics import ldexp
from sdf.errors import DataError
from sdf.tensors._base import (
    MTTKRPSession,
    Tensor,
    _check_no_inf,
    _check_shape,
    _float_array,
    _max_exponent,
    _native,
    _number,
    _readonly,
    _TreeSession,
)

__all__ = ["DenseTensor"]


def _mttkrp(X: np.ndarray, mats: list[np.ndarray], n: int) -> np.ndarray:
    """algebra.mttkrp, also for a vector X (an empty Khatri-Rao product is a row of ones)."""
    return algebra.mttkrp(X, mats, n) if X.ndim > 1 else np.outer(X, np.ones(mats[0].shape[1]))


class DenseTensor(Tensor):
    """Fully known data held in a numpy array.

    Parameters
    ----------
    array : array_like
        Real or complex numbers, no NaN or Inf (see :class:`IncompleteTensor` for missing
        entries). Held as a read-only native float64 (complex128) copy, so later changes
        to the caller's array never reach a model built on it.

    Examples
    --------
    >>> import numpy as np
    >>> T = DenseTensor(np.ones((2, 3, 4)))
    >>> T.norm_squared(), T.data.flags.writeable
    (24.0, False)
    """

    kind: ClassVar[str] = "dense"

    def __init__(self, array: Any, *, name: str = "data") -> None:
        a = _float_array(array, name, complex_ok=True)
        self._shape = _check_shape(a.shape, name)
        if np.isnan(a).any():
            idx = tuple(int(i) for i in np.argwhere(np.isnan(a))[0])
            raise DataError(f"{name}: entry {idx} is NaN; a DenseTensor has no missing "
                            "entries (use IncompleteTensor or as_tensor)")
        _check_no_inf(a, name, lambda k: tuple(int(i) for i in np.unravel_index(k, a.shape)))
        self._data = _readonly(np.array(_native(a), order="C", copy=True))

    @property
    def data(self) -> np.ndarray:
        """The read-only float64 (complex128) array."""
        return self._data

    def dense_view(self) -> np.ndarray:
        return self._data

    @property
    def is_complex(self) -> bool:
        return bool(np.iscomplexobj(self._data))

    def _norm_squared(self) -> float:
        return algebra.frob(self._data, squared=True)

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _number(np.sum(mats[0] * _mttkrp(self._data, mats, 0)))

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float | complex:
        projected = algebra.tmprod(self._data, mats, transpose=True)
        if np.iscomplexobj(projected) or np.iscomplexobj(core):
            return complex(np.sum(projected * core))
        return float(np.real(algebra.inner(projected, core)))

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return _mttkrp(self._data, mats, n)

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        if self.ndim == 1:
            return [_mttkrp(self._data, mats, 0)]
        return algebra.mttkrp_all(self._data, mats)

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        if self.ndim == 1:
            return MTTKRPSession(self, mats)
        # Half of the dimension tree gives the inner product; the other half only when
        # the MTTKRPs are asked for, so a rejected trial point costs one pass over T.
        return _TreeSession(self._data, mats)

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        return algebra.tmprod(self._data, mats, transpose=True)

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        Y = ml.leave_one_out(self._data, [U.T for U in mats], large=True)
        K = [ml.contract_others(Y[n], core, n) for n in range(core.ndim)]
        return ml.mode_product(Y[0], mats[0].T, 0), K

    def _scale_exponent(self) -> int:
        return _max_exponent([self._data])

    def _scaled(self, exponent: int) -> DenseTensor:
        out = DenseTensor.__new__(DenseTensor)
        out._shape = self._shape
        out._data = _readonly(ldexp(self._data, exponent))
        return out

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        return self._data[tuple(subs.T)]

    def to_dense(self) -> np.ndarray:
        return self._data.copy()
