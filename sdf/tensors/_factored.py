"""Data given in factored form, never expanded: :class:`CPDTensor` and
:class:`TuckerTensor`."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from sdf import _multilinear as ml
from sdf import algebra
from sdf.numerics import ldexp
from sdf.errors import DataError
from sdf.tensors._base import (
    Tensor,
    _check_core,
    _check_factors,
    _check_finite,
    _check_shape,
    _float_array,
    _max_exponent,
    _native,
    _number,
    _readonly,
)

__all__ = ["CPDTensor", "TuckerTensor"]


def _mttkrp(X: np.ndarray, mats: list[np.ndarray], n: int) -> np.ndarray:
    return algebra.mttkrp(X, mats, n) if X.ndim > 1 else np.outer(X, np.ones(mats[0].shape[1]))


def _dense_inner_cpd(X: np.ndarray, factors: list[np.ndarray], weights: np.ndarray
                     ) -> float | complex:
    """``sum(X * [[weights; factors]])`` for a dense X, never expanding the CPD."""
    return _number(np.sum(factors[0] * _mttkrp(X, factors, 0) * weights))


#: Largest core (entries) a CPD gives as its Tucker form (see :meth:`Tensor.tucker_form`).
MAX_FORM_CORE = 2**22


class _FactoredTensor(Tensor):
    """Shared parts of CPD and Tucker data: factor matrices B_n, read-only."""

    _factors: list[np.ndarray]

    @property
    def factors(self) -> list[np.ndarray]:
        """The factor matrices B_n (read-only)."""
        return list(self._factors)

    @property
    def is_complex(self) -> bool:
        return any(np.iscomplexobj(a) for a in [*self._factors, self._small()])

    def _cross(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        """B_nᵀ A_n for every mode."""
        return [B.T @ A for B, A in zip(self._factors, mats)]

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        rows = [np.take(B, subs[:, m], axis=0) for m, B in enumerate(self._factors)]
        return self._entries(rows)

    @abstractmethod
    def _entries(self, rows: list[np.ndarray]) -> np.ndarray: ...

    @abstractmethod
    def _small(self) -> np.ndarray:
        """The weights (CPD) or the core (Tucker)."""

    def _scale_exponent(self) -> int:
        return sum(_max_exponent([B]) for B in self._factors) + _max_exponent([self._small()])

    def _normalized(self, exponent: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Factors scaled to entries below 1 in magnitude, and weights or core carrying
        the rest of ``2**exponent``: the same tensor times ``2**exponent``, exactly."""
        shifts = [_max_exponent([B]) for B in self._factors]
        factors = [_readonly(ldexp(B, -f)) for B, f in zip(self._factors, shifts)]
        return factors, _readonly(ldexp(self._small(), exponent + sum(shifts)))


class CPDTensor(_FactoredTensor):
    """Data in CPD form ``sum_r w_r b_0^r ∘ ... ∘ b_{N-1}^r``, never expanded.

    Norm via the Gramians BᵀB, inner products and MTTKRPs via the cross-Gramians BᵀA:
    ``mttkrp(A, n) = B_n @ diag(w) @ hadamard(B_mᵀ A_m for m != n)``.

    Parameters
    ----------
    factors : sequence of array_like, each of shape (I_n, R)
    weights : array_like of shape (R,), optional
        Default all ones.

    Examples
    --------
    >>> T = CPDTensor([np.ones((2, 1)), np.ones((3, 1))], weights=[2.0])
    >>> T.norm_squared(), T.rank
    (24.0, 1)
    """

    kind: ClassVar[str] = "cpd"

    def __init__(self, factors: Sequence[Any], weights: Any = None, *,
                 name: str = "data") -> None:
        mats = _check_factors(factors, None, name, same_rank=True)
        R = mats[0].shape[1]
        w = (np.ones(R) if weights is None
             else _float_array(weights, name, "weights", complex_ok=True))
        if w.shape != (R,):
            raise DataError(f"{name}: weights must have shape ({R},), got {w.shape}")
        _check_finite([*mats, w], name, "factors and weights")
        self._shape = _check_shape([A.shape[0] for A in mats], name)
        self._factors = [_readonly(A.copy()) for A in mats]
        self._weights = _readonly(w.copy())

    def tucker_form(self) -> tuple[list[np.ndarray], np.ndarray] | None:
        """``(factors, superdiagonal core of the weights)``; None when that core (rank^N
        entries) would exceed :data:`MAX_FORM_CORE` entries."""
        R, N = self.rank, len(self._factors)
        if R ** N > MAX_FORM_CORE:
            return None
        core = np.zeros((R,) * N, dtype=self._weights.dtype)
        core[(np.arange(R),) * N] = self._weights
        return list(self._factors), core

    @property
    def weights(self) -> np.ndarray:
        """The weights w, shape (R,) (read-only)."""
        return self._weights

    @property
    def rank(self) -> int:
        """Number of rank-one terms R."""
        return int(self._weights.shape[0])

    def _norm_squared(self) -> float:
        H = algebra.hadamard(algebra.gramians(self._factors))
        if np.iscomplexobj(H) or np.iscomplexobj(self._weights):
            return float((self._weights.conj() @ H @ self._weights).real)
        return self._weights @ H @ self._weights

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _number(self._weights @ algebra.hadamard(self._cross(mats)).sum(axis=1))

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float | complex:
        return _dense_inner_cpd(core, [A.T @ B for A, B in zip(mats, self._factors)],
                                self._weights)

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        H = algebra.hadamard(self._cross(mats), skip=n)
        return self._factors[n] @ (self._weights[:, None] * H)

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        C = self._cross(mats)
        return [B @ (self._weights[:, None] * algebra.hadamard(C, skip=n))
                for n, B in enumerate(self._factors)]

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        return algebra.cpd_to_tensor([A.T @ B for A, B in zip(mats, self._factors)],
                                     self._weights)

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        C = [U.T @ B for U, B in zip(mats, self._factors)]  # (R_n, rank)
        w = self._weights
        K = [B @ (w[:, None] * algebra.mttkrp(core, C, n).T)
             for n, B in enumerate(self._factors)]
        return algebra.cpd_to_tensor(C, w), K

    def _small(self) -> np.ndarray:
        return self._weights

    def _scaled(self, exponent: int) -> CPDTensor:
        out = CPDTensor.__new__(CPDTensor)
        out._shape = self._shape
        out._factors, out._weights = self._normalized(exponent)
        return out

    def _entries(self, rows: list[np.ndarray]) -> np.ndarray:
        P = np.broadcast_to(self._weights, (rows[0].shape[0], self.rank))
        for Rm in rows:
            P = P * Rm
        return P.sum(axis=1)

    def to_dense(self) -> np.ndarray:
        mats = [self._factors[0] * self._weights, *self._factors[1:]]
        return np.array(_native(algebra.cpd_to_tensor(mats)))

    def _extra_repr(self) -> str:
        return f", rank={self.rank}"


class TuckerTensor(_FactoredTensor):
    """Data in Tucker form ``H ×_0 B_0 ... ×_{N-1} B_{N-1}``, never expanded.

    Everything runs on the core contracted with the small matrices B_mᵀB_m or B_mᵀA_m:
    ``mttkrp(A, n) = B_n @ mttkrp(H, [B_mᵀ A_m], n)``.

    Parameters
    ----------
    factors : sequence of array_like, each of shape (I_n, S_n)
    core : array_like of shape (S_0, ..., S_{N-1})

    Examples
    --------
    >>> T = TuckerTensor([np.eye(2), np.eye(3)], np.ones((2, 3)))
    >>> T.norm_squared(), T.core_shape
    (6.0, (2, 3))
    """

    kind: ClassVar[str] = "tucker"

    def __init__(self, factors: Sequence[Any], core: Any, *, name: str = "data") -> None:
        mats = _check_factors(factors, None, name)
        G = _check_core(core, mats, name)
        _check_finite([*mats, G], name, "factors and core")
        self._shape = _check_shape([A.shape[0] for A in mats], name)
        self._factors = [_readonly(A.copy()) for A in mats]
        self._core = _readonly(G.copy())

    @property
    def core(self) -> np.ndarray:
        """The core tensor H (read-only)."""
        return self._core

    def tucker_form(self) -> tuple[list[np.ndarray], np.ndarray]:
        """``(factors, core)`` as held (read-only)."""
        return list(self._factors), self._core

    @property
    def core_shape(self) -> tuple[int, ...]:
        """Multilinear size of the representation (S_0, ..., S_{N-1})."""
        return tuple(self._core.shape)

    def _norm_squared(self) -> float:
        P = algebra.tmprod(self._core, algebra.gramians(self._factors))
        return float(np.real(algebra.inner(P, self._core)))

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _dense_inner_cpd(self._core, self._cross(mats), np.ones(mats[0].shape[1]))

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float | complex:
        C = [A.T @ B for A, B in zip(mats, self._factors)]
        projected = algebra.tmprod(self._core, C)
        if np.iscomplexobj(projected) or np.iscomplexobj(core):
            return complex(np.sum(projected * core))
        return float(np.real(algebra.inner(projected, core)))

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return self._factors[n] @ _mttkrp(self._core, self._cross(mats), n)

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        return algebra.tmprod(self._core, [A.T @ B for A, B in zip(mats, self._factors)])

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        C = [U.T @ B for U, B in zip(mats, self._factors)]
        Y = ml.leave_one_out(np.asarray(self._core), C, large=True)
        K = [B @ ml.contract_others(Y[n], core, n) for n, B in enumerate(self._factors)]
        return ml.mode_product(Y[0], C[0], 0), K

    def _small(self) -> np.ndarray:
        return self._core

    def _scaled(self, exponent: int) -> TuckerTensor:
        out = TuckerTensor.__new__(TuckerTensor)
        out._shape = self._shape
        out._factors, out._core = self._normalized(exponent)
        return out

    def _entries(self, rows: list[np.ndarray]) -> np.ndarray:
        return ml.rows_values(self._core, rows) if rows[0].shape[0] else np.zeros(0)

    def to_dense(self) -> np.ndarray:
        return np.array(_native(algebra.tucker_to_tensor(self._factors, self._core)))

    def _extra_repr(self) -> str:
        return f", core_shape={self.core_shape}"
