"""Data given as a block term decomposition, never expanded: :class:`BTDTensor` (a sum of
Tucker blocks) and :class:`LL1Tensor` (rank-(L_r, L_r, 1) terms)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from sdf import algebra
from sdf.errors import DataError
from sdf.tensors._base import MTTKRPSession, Tensor, _check_factors, _TreeSession
from sdf.tensors._factored import CPDTensor, TuckerTensor

__all__ = ["BTDTensor", "LL1Tensor"]


def _block_parts(block: Any, b: int, name: str) -> tuple[list[Any], Any]:
    """(factors, core) from ``(factors, core)`` or the flat ``(U_0, ..., U_{N-1}, S)``."""
    if isinstance(block, np.ndarray) or not isinstance(block, Sequence) or len(block) < 2:
        raise DataError(f"{name}: block {b} must be (factors, core) or (U_0, ..., U_{{N-1}}, "
                        f"S), got {type(block).__name__}")
    if len(block) == 2 and isinstance(block[0], (list, tuple)):
        return list(block[0]), block[1]
    return list(block[:-1]), block[-1]


class BTDTensor(Tensor):
    """Data as a block term decomposition ``sum_b H_b ×_0 B_{b,0} ... ×_{N-1} B_{b,N-1}``.

    Each block is a :class:`TuckerTensor`; every operation is the sum of the blocks' own
    factored operations (inner products and MTTKRPs through the small matrices
    ``B_{b,n}ᵀ A_n``), and the norm adds the cross terms
    ``<H_b ×_n (B_{c,n}ᵀ B_{b,n}), H_c>``: nothing is ever expanded.

    Parameters
    ----------
    blocks : sequence of blocks
        Each ``(factors, core)`` with factors a list of (I_n, S_{b,n}) matrices and core
        of shape (S_{b,0}, ..., S_{b,N-1}), or flat ``(U_0, ..., U_{N-1}, S)`` as the
        :class:`sdf.BTD` term takes them. All blocks have the same mode sizes I_n.
    name : str, default "data"

    Examples
    --------
    >>> import numpy as np
    >>> block = ([np.eye(2), np.eye(3)], np.ones((2, 3)))
    >>> T = BTDTensor([block, block])
    >>> T.shape, T.n_blocks, T.norm_squared()  # twice a 2 x 3 array of ones
    ((2, 3), 2, 24.0)
    """

    kind: ClassVar[str] = "btd"

    def __init__(self, blocks: Sequence[Any], *, name: str = "data") -> None:
        if isinstance(blocks, np.ndarray) or not isinstance(blocks, Sequence) or not blocks:
            raise DataError(f"{name}: blocks must be a non-empty list of (factors, core)")
        tuckers = []
        for b, block in enumerate(blocks):
            factors, core = _block_parts(block, b, name)
            tuckers.append(TuckerTensor(factors, core, name=f"{name}, block {b}"))
        shape = tuckers[0].shape
        for b, T in enumerate(tuckers[1:], start=1):
            if T.shape != shape:
                raise DataError(f"{name}: block {b} has mode sizes {T.shape}, block 0 has "
                                f"{shape}; every block must have the same")
        self._blocks = tuckers
        self._shape = shape

    def tucker_form(self) -> tuple[list[np.ndarray], np.ndarray]:
        """The blocks side by side: factors concatenated per mode, cores on the
        block diagonal of one core."""
        factors = [np.hstack([T.factors[n] for T in self._blocks]) for n in range(self.ndim)]
        sizes = [np.cumsum([0, *(T.core_shape[n] for T in self._blocks)])
                 for n in range(self.ndim)]
        dtype = np.result_type(*(T.core for T in self._blocks))
        core = np.zeros([int(s[-1]) for s in sizes], dtype=dtype)
        for b, T in enumerate(self._blocks):
            core[tuple(slice(int(s[b]), int(s[b + 1])) for s in sizes)] = T.core
        return factors, core

    @property
    def blocks(self) -> list[tuple[list[np.ndarray], np.ndarray]]:
        """The blocks as (factors, core), read-only arrays."""
        return [(T.factors, T.core) for T in self._blocks]

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return len(self._blocks)

    def _extra_repr(self) -> str:
        return f", core_shapes={[T.core_shape for T in self._blocks]}"

    def _norm_squared(self) -> float:
        total = 0.0
        for b, Tb in enumerate(self._blocks):
            for c, Tc in enumerate(self._blocks[b:], start=b):
                cross = [Bc.conj().T @ Bb for Bb, Bc in zip(Tb.factors, Tc.factors)]
                value = float(np.real(algebra.inner(algebra.tmprod(Tb.core, cross), Tc.core)))
                total += value if b == c else 2.0 * value
        return total

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        total: float | complex = 0.0
        for T in self._blocks:
            total += T._inner_cpd(mats)
        return total

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float | complex:
        total: float | complex = 0.0
        for T in self._blocks:
            total += T._inner_tucker(mats, core)
        return total

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return sum((T._mttkrp(mats, n) for T in self._blocks[1:]),
                   start=self._blocks[0]._mttkrp(mats, n))

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        out = self._blocks[0]._mttkrp_all(mats)
        for T in self._blocks[1:]:
            out = [M + X for M, X in zip(out, T._mttkrp_all(mats))]
        return out

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        return MTTKRPSession(self, mats)

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        return sum((T._project(mats) for T in self._blocks[1:]),
                   start=self._blocks[0]._project(mats))

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        P, K = self._blocks[0]._project_tucker(mats, core)
        for T in self._blocks[1:]:
            Pb, Kb = T._project_tucker(mats, core)
            P, K = P + Pb, [k + kb for k, kb in zip(K, Kb)]
        return P, K

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        return sum((T._values_at(subs) for T in self._blocks[1:]),
                   start=self._blocks[0]._values_at(subs))

    def _scale_exponent(self) -> int:
        return max(T._scale_exponent() for T in self._blocks)

    def _scaled(self, exponent: int) -> BTDTensor:
        out = BTDTensor.__new__(BTDTensor)
        out._shape = self._shape
        out._blocks = [T._scaled(exponent) for T in self._blocks]
        return out

    def to_dense(self) -> np.ndarray:
        return sum((T.to_dense() for T in self._blocks[1:]), start=self._blocks[0].to_dense())


class LL1Tensor(CPDTensor):
    """Data as rank-(L_r, L_r, 1) terms ``sum_r (A_r B_rᵀ) ∘ c_r``, never expanded.

    ``A_r`` and ``B_r`` are the r-th groups of L_r columns of A and B, ``c_r`` the r-th
    column of C: the CPD ``[[A, B, C P]]`` with C's column r repeated L_r times, so
    norms, inner products and MTTKRPs are those of a :class:`CPDTensor` of rank sum(L)
    (the Gramians of A, B and the repeated C).

    Parameters
    ----------
    factors : sequence of three array_like
        A of shape (I, sum L), B of shape (J, sum L), C of shape (K, R).
    L : sequence of int
        The R group sizes L_r >= 1.
    name : str, default "data"

    Examples
    --------
    >>> import numpy as np
    >>> T = LL1Tensor([np.ones((2, 3)), np.ones((4, 3)), np.ones((5, 2))], L=[2, 1])
    >>> T.shape, T.L, T.norm_squared()  # 40 entries equal to 3
    ((2, 4, 5), (2, 1), 360.0)
    """

    kind: ClassVar[str] = "ll1"

    def __init__(self, factors: Sequence[Any], L: Sequence[int], *,
                 name: str = "data") -> None:
        if isinstance(factors, np.ndarray) or not isinstance(factors, Sequence) \
                or len(factors) != 3:
            raise DataError(f"{name}: an LL1 tensor needs three factors [A, B, C]")
        A, B, C = _check_factors(factors, None, name)
        try:
            groups = tuple(int(v) for v in L)
            ok = all(int(v) == v for v in L) and len(groups) > 0 and min(groups) >= 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DataError(f"{name}: L must be a non-empty sequence of ints >= 1, got {L!r}")
        if C.shape[1] != len(groups) or A.shape[1] != sum(groups) \
                or B.shape[1] != sum(groups):
            raise DataError(
                f"{name}: L = {groups} needs C with {len(groups)} columns and A, B with "
                f"{sum(groups)}, got {A.shape[1]}, {B.shape[1]} and {C.shape[1]}")
        super().__init__([A, B, C[:, np.repeat(np.arange(len(groups)), groups)]], name=name)
        self._L = groups
        self._C = C.copy()
        self._C.setflags(write=False)

    @property
    def L(self) -> tuple[int, ...]:
        """The group sizes L_r."""
        return self._L

    @property
    def ll1_factors(self) -> list[np.ndarray]:
        """[A, B, C] as given (C with one column per term), read-only."""
        return [self._factors[0], self._factors[1], self._C]

    def _extra_repr(self) -> str:
        return f", L={self._L}"
