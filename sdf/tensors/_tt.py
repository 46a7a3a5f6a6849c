"""Data in tensor-train form, never expanded: :class:`TTTensor`.

``T[i_0, ..., i_{N-1}] = G_0[:, i_0, :] @ G_1[:, i_1, :] @ ... @ G_{N-1}[:, i_{N-1}, :]``
with cores G_k of shape ``(r_k, I_k, r_{k+1})``, ``r_0 = r_N = 1``. Norms, inner products
and MTTKRPs contract the cores from both ends: O(N I r^2 R) per MTTKRP session for a CPD
of rank R, O(N I r^3) for the norm, whatever ``prod(I_k)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from sdf.errors import DataError
from sdf.tensors._base import MTTKRPSession, Tensor, _check_finite, _float_array, _number, \
    _readonly, _TreeSession
from sdf.tensors._signals import check_densify

__all__ = ["TTTensor"]


def _full(cores: Sequence[np.ndarray]) -> np.ndarray:
    """The array of a (small) tensor train."""
    out = cores[0].reshape(cores[0].shape[1], -1)
    shape = [cores[0].shape[1]]
    for G in cores[1:]:
        out = (out @ G.reshape(G.shape[0], -1)).reshape(-1, G.shape[2])
        shape.append(G.shape[1])
    return out.reshape(shape)


def _tt_inner(left: Sequence[np.ndarray], right: Sequence[np.ndarray]) -> float | complex:
    """``sum(T * S)`` of two tensor trains (no conjugation), contracting core pairs from
    the left."""
    M = np.ones((1, 1))
    for G, H in zip(left, right):
        M = np.einsum("ab,aic,bid->cd", M, G, H, optimize=True)
    return _number(M[0, 0])


class _TTSession:
    """The CPD contracted with every core, chained from the left for the inner product and
    from the right too for the MTTKRPs."""

    def __init__(self, cores: Sequence[np.ndarray], mats: list[np.ndarray]) -> None:
        self._cores = cores
        # Z_k[r] = sum_i a_k[i, r] G_k[:, i, :], shape (R, r_k, r_{k+1}).
        self._Z = [np.einsum("aib,ir->rab", G, A, optimize=True)
                   for G, A in zip(cores, mats)]
        R = mats[0].shape[1]
        left = [np.ones((R, 1))]
        for Z in self._Z[:-1]:
            left.append(np.einsum("ra,rab->rb", left[-1], Z))
        self._left = left  # left[k]: modes < k contracted, (R, r_k)
        self._inner = _number(np.einsum("ra,rab->", left[-1], self._Z[-1]))
        self._all: list[np.ndarray] | None = None

    def inner(self) -> float | complex:
        return self._inner

    def all(self) -> list[np.ndarray]:
        if self._all is None:
            N, R = len(self._cores), self._left[0].shape[0]
            out: list[np.ndarray] = [np.empty(0)] * N
            right = np.ones((R, 1))
            for k in range(N - 1, -1, -1):
                out[k] = np.einsum("ra,aib,rb->ir", self._left[k], self._cores[k], right,
                                   optimize=True)
                right = np.einsum("rab,rb->ra", self._Z[k], right)
            self._all = out
        return self._all


class TTTensor(Tensor):
    """Data given as a tensor train (matrix product state), never expanded.

    Parameters
    ----------
    cores : sequence of array_like
        Core k of shape ``(r_k, I_k, r_{k+1})``, with ``r_0 = r_N = 1``; finite, real or
        complex (a complex train, e.g. a quantum state as a matrix product state).
    name : str, default "data"

    Examples
    --------
    >>> import numpy as np
    >>> cores = [np.ones((1, 2, 3)), np.ones((3, 4, 3)), np.ones((3, 5, 1))]
    >>> T = TTTensor(cores)
    >>> T.shape, T.ranks, T.norm_squared()  # 40 entries equal to 9
    ((2, 4, 5), (1, 3, 3, 1), 3240.0)
    """

    kind: ClassVar[str] = "tt"

    def __init__(self, cores: Sequence[Any], *, name: str = "data") -> None:
        try:
            arrays = [_float_array(G, name, f"core {k}", complex_ok=True)
                      for k, G in enumerate(cores)]
        except TypeError:
            raise DataError(f"{name}: cores must be a sequence of 3-D arrays") from None
        if not arrays:
            raise DataError(f"{name}: a tensor train needs at least one core")
        for k, G in enumerate(arrays):
            if G.ndim != 3:
                raise DataError(f"{name}: core {k} must be 3-D (r_k, I_k, r_k+1), "
                                f"got shape {G.shape}")
            prev = 1 if k == 0 else arrays[k - 1].shape[2]
            if G.shape[0] != prev:
                raise DataError(f"{name}: core {k} has shape {G.shape}; its first size must "
                                f"be {prev} (the last size of core {k - 1}, or 1 for core 0)")
        if arrays[-1].shape[2] != 1:
            raise DataError(f"{name}: the last core must end in size 1, got shape "
                            f"{arrays[-1].shape}")
        _check_finite(arrays, name, "cores")
        # No cap on the number of entries (unlike _check_shape): nothing here indexes the
        # tensor linearly, and trains of 10**20 entries and more are what the form is for.
        self._shape = tuple(int(G.shape[1]) for G in arrays)
        if min(self._shape) < 1:
            raise DataError(f"{name}: shape {self._shape} has an empty dimension")
        self._cores = [_readonly(np.array(G, order="C", copy=True)) for G in arrays]
        self._name = name

    @property
    def cores(self) -> list[np.ndarray]:
        """The cores (read-only)."""
        return list(self._cores)

    @property
    def ranks(self) -> tuple[int, ...]:
        """TT ranks ``(1, r_1, ..., r_{N-1}, 1)``."""
        return (1, *(int(G.shape[2]) for G in self._cores))

    @property
    def is_complex(self) -> bool:
        return any(np.iscomplexobj(G) for G in self._cores)

    def _extra_repr(self) -> str:
        return f", ranks={self.ranks}"

    def _norm_squared(self) -> float:
        return float(np.real(_tt_inner(self._cores, [G.conj() for G in self._cores])))

    def inner_tt(self, other: TTTensor) -> float | complex:
        """Inner product ⟨T, S⟩ with another tensor train of the same shape, core by core.

        Costs O(N I r_T r_S (r_T + r_S)), whatever the number of entries. For complex
        trains it is the sum of the entrywise products, without conjugation (as
        :meth:`~sdf.tensors.Tensor.inner_cpd`); ``sum(conj(T) * S)`` is the conjugate of
        this product taken with the conjugated train.

        Examples
        --------
        >>> import numpy as np
        >>> T = TTTensor([np.ones((1, 2, 2)), np.ones((2, 3, 1))])
        >>> S = TTTensor([np.ones((1, 2, 1)), np.full((1, 3, 1), 0.5)])
        >>> T.inner_tt(S)  # 6 entries equal to 2 against 6 equal to 0.5
        6.0
        """
        if not isinstance(other, TTTensor):
            raise DataError(f"inner_tt: expected a TTTensor, got {type(other).__name__}")
        if other.shape != self.shape:
            raise DataError(f"inner_tt: shapes differ: {self.shape} and {other.shape}")
        return _tt_inner(self._cores, other._cores)

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        return _TTSession(self._cores, mats)  # type: ignore[return-value]

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _TTSession(self._cores, mats).inner()

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return _TTSession(self._cores, mats).all()[n]

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        return _TTSession(self._cores, mats).all()

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        return _full([np.einsum("aib,ir->arb", G, U, optimize=True)
                      for G, U in zip(self._cores, mats)])

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        v = np.ones((subs.shape[0], 1))
        for k, G in enumerate(self._cores):
            v = np.einsum("ma,amb->mb", v, G[:, subs[:, k], :])
        return v[:, 0]

    def to_dense(self) -> np.ndarray:
        check_densify(self.shape, self._name, "tensor-train")
        return _full(self._cores)
