"""Canonical polyadic decomposition term: data ≈ [[A_0, ..., A_{N-1}]].

Two evaluation strategies, chosen by the data type:

* full data (dense, sparse with true zeros, factored CPD/Tucker): the residual is never
  formed. ``f = (||T||^2 - 2<T, M> + ||M||^2) / 2`` with ``<T, M>`` from one all-modes
  MTTKRP and ``||M||^2`` from the Gramians; the Gauss-Newton product needs Gramians only:
  ``(J^T J dA)_n = dA_n W_n + A_n sum_{m != n} (W_nm * (A_m^T dA_m))`` with
  ``W_n = *_{k != n} A_k^T A_k`` and ``W_nm = *_{k != n, m} A_k^T A_k``.
* incomplete data: everything from the known entries (cost O(nnz N R)); the
  preconditioner blocks are exact per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from sdf import algebra
from sdf.errors import ModelError
from sdf.tensors import Tensor, as_tensor
from sdf.terms._base import Term, TermState

__all__ = ["CPD"]

_CHUNK = 1 << 15


def _data_tensor(data: Any, kind: str) -> Tensor:
    return data if isinstance(data, Tensor) else as_tensor(data, name=f"{kind} data")


class CPD(Term):
    """Canonical polyadic decomposition of a data set: ``T ≈ sum_r a_r ∘ b_r ∘ c_r ...``.

    Parameters
    ----------
    data : array_like, sdf.tensors.Tensor or xarray.DataArray
        Any data ``sdf.tensors.as_tensor`` accepts; NaN entries are missing.
    factors : sequence of Expr or array_like, each of shape (I_n, R)
        One factor per mode. The same expression twice makes the term symmetric in those
        modes; an array is a known (constant) factor.
    weight, relweight : float, optional
        See :class:`sdf.terms.Term`.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((4, 2)), rng.standard_normal((5, 2))
    >>> a, b = sdf.Variable.random((4, 2), seed=1), sdf.Variable.random((5, 2), seed=2)
    >>> model = sdf.Model(mat=sdf.CPD(A @ B.T, [a, b]))
    >>> result = model.fit(max_iter=50)
    >>> result.relerr["mat"] < 1e-6
    True
    """

    kind = "CPD"
    is_data_term = True

    def __init__(
        self,
        data: Any,
        factors: Sequence[Any],
        weight: float | None = None,
        relweight: float | None = None,
    ) -> None:
        self.data = _data_tensor(data, self.kind)
        if isinstance(factors, np.ndarray) or not isinstance(factors, Sequence):
            raise ModelError(f"{self.kind}: factors must be a list of expressions, one per mode")
        super().__init__(factors, weight=weight, relweight=relweight)

    @property
    def n_entries(self) -> int:
        return int(self.data.n_known)

    @property
    def data_norm(self) -> float:
        return float(np.sqrt(self.data_norm_squared))

    @property
    def data_norm_squared(self) -> float:
        # Computed once: the data never change, and a dense norm costs a pass over them.
        if not hasattr(self, "_norm_squared"):
            self._norm_squared = float(self.data.norm_squared())
        return self._norm_squared

    @property
    def rank(self) -> int:
        return int(self.inputs[0].shape[-1])

    def check(self, where: str) -> None:
        shape = self.data.shape
        if len(shape) < 2:
            raise ModelError(f"{where}: a CPD needs data of order >= 2, got shape {shape}")
        if len(self.inputs) != len(shape):
            raise ModelError(
                f"{where}: {len(self.inputs)} factors given but the data has {len(shape)} modes "
                f"(shape {shape}); a CPD needs one factor per mode"
            )
        ranks = []
        for n, expr in enumerate(self.inputs):
            place = f"{where}, factor {n} ({expr.label()!r})"
            if len(expr.shape) != 2:
                raise ModelError(f"{place}: expected a matrix (I_n, R), got shape {expr.shape}")
            if expr.shape[0] != shape[n]:
                raise ModelError(
                    f"{place}: expected {shape[n]} rows to match mode {n} of the data, "
                    f"got {expr.shape[0]}"
                )
            ranks.append(expr.shape[1])
        if len(set(ranks)) > 1:
            raise ModelError(
                f"{where}: factors have different numbers of columns {ranks}; "
                "all factors of a CPD share the rank"
            )
        if ranks[0] < 1:
            raise ModelError(f"{where}: rank must be >= 1, got {ranks[0]}")

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        if self.data.kind == "incomplete":
            if not hasattr(self, "_index"):
                # Contiguous copies of the index columns make the row gathers fast.
                self._index = [np.ascontiguousarray(c) for c in self.data.subs.T]
            return _SampledCPDState(self.data, self._index, values)
        return _FullCPDState(self.data, self.data_norm_squared, values)

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        # Below ~1e-6 of ||T||^2, f = (||T||^2 - 2<T,M> + ||M||^2)/2 has lost digits.
        if self.data.kind != "dense" or fval > 1e-6 * self.data_norm_squared:
            return fval
        residual = algebra.cpd_to_tensor(list(values)) - self.data.data
        return 0.5 * float(np.vdot(residual, residual))

    def describe(self) -> str:
        return f"CPD of {self.data.kind} data {self.data.shape}, rank {self.rank}"


def _leave_one_out(mats: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Elementwise products of all matrices but one, for each one (prefix/suffix products)."""
    n = len(mats)
    prefix = [np.ones_like(mats[0])]
    for m in mats[:-1]:
        prefix.append(prefix[-1] * m)
    out = [None] * n
    suffix = np.ones_like(mats[0])
    for k in range(n - 1, -1, -1):
        out[k] = prefix[k] * suffix
        suffix = suffix * mats[k]
    return out  # type: ignore[return-value]


class _FullCPDState(TermState):
    def __init__(self, data: Tensor, norm_squared: float, factors: Sequence[np.ndarray]) -> None:
        self.factors = list(factors)
        self.grams = algebra.gramians(self.factors)
        self.w = _leave_one_out(self.grams)  # W_n = Hadamard of all Gramians but n
        if data.kind == "dense":
            # Half of the dimension tree gives f; the other half only when the gradient
            # is asked for, so a rejected trial point costs one pass over the data.
            self._tree: algebra.MTTKRPTree | None = algebra.MTTKRPTree(data.data, self.factors)
            inner = self._tree.inner()
            self._mttkrps: list[np.ndarray] | None = None
        else:
            self._tree = None
            self._mttkrps = data.mttkrp_all(self.factors)
            inner = float(np.sum(self._mttkrps[0] * self.factors[0]))
        model_sq = float(np.sum(self.w[0] * self.grams[0]))
        self.fval = 0.5 * max(norm_squared - 2.0 * inner + model_sq, 0.0)
        self._w_pairs: dict[tuple[int, int], np.ndarray] = {}

    @property
    def mttkrps(self) -> list[np.ndarray]:
        if self._mttkrps is None:
            assert self._tree is not None
            self._mttkrps = self._tree.all()
            self._tree = None
        return self._mttkrps

    def gradient(self) -> list[np.ndarray]:
        return [A @ W - M for A, W, M in zip(self.factors, self.w, self.mttkrps)]

    def _w_pair(self, n: int, m: int) -> np.ndarray:
        key = (min(n, m), max(n, m))
        if key not in self._w_pairs:
            self._w_pairs[key] = algebra.hadamard(
                [g for k, g in enumerate(self.grams) if k not in key]
            ) if len(self.grams) > 2 else np.ones_like(self.grams[0])
        return self._w_pairs[key]

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        N = len(self.factors)
        cross = [dA.T @ A for A, dA in zip(self.factors, dvalues)]
        out = []
        for n in range(N):
            acc = np.zeros_like(self.grams[0])
            for m in range(N):
                if m != n:
                    acc += self._w_pair(n, m) * cross[m]
            out.append(dvalues[n] @ self.w[n] + self.factors[n] @ acc)
        return out

    def blocks(self) -> list[np.ndarray]:
        return list(self.w)


class _SampledCPDState(TermState):
    def __init__(self, data: Tensor, index: list[np.ndarray],
                 factors: Sequence[np.ndarray]) -> None:
        self.data = data
        self.index = index
        self.factors = list(factors)
        self.rows = [np.take(A, idx, axis=0) for A, idx in zip(self.factors, index)]
        self.others = _leave_one_out(self.rows)  # product of the other modes' rows
        model = np.sum(self.rows[0] * self.others[0], axis=1)
        self.residual = model - data.vals
        self.fval = 0.5 * float(self.residual @ self.residual)

    def _scatter(self, weights: np.ndarray) -> list[np.ndarray]:
        return [
            np.asarray(self.data.mode_indicator(n) @ (weights[:, None] * Q))
            for n, Q in enumerate(self.others)
        ]

    def gradient(self) -> list[np.ndarray]:
        return self._scatter(self.residual)

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        jv = np.zeros(len(self.residual))
        for idx, dA, Q in zip(self.index, dvalues, self.others):
            jv += np.einsum("er,er->e", np.take(dA, idx, axis=0), Q)
        return self._scatter(jv)

    def blocks(self) -> list[np.ndarray]:
        out = []
        for n, (idx, Q) in enumerate(zip(self.index, self.others)):
            R = Q.shape[1]
            rows = self.data.shape[n]
            acc = np.zeros((rows, R * R))
            for lo in range(0, Q.shape[0], _CHUNK):
                q = Q[lo : lo + _CHUNK]
                chunk = sp.csr_matrix(
                    (np.ones(len(q)), (idx[lo : lo + _CHUNK], np.arange(len(q)))),
                    shape=(rows, len(q)),
                )
                acc += chunk @ (q[:, :, None] * q[:, None, :]).reshape(len(q), R * R)
            out.append(acc.reshape(rows, R, R))
        return out
