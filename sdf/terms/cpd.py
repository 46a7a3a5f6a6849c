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

import math
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from sdf import algebra
from sdf.errors import DegeneracyWarning, ModelError, SdfWarning
from sdf.numerics import cpd_degeneracy
from sdf.expr import Expr
from sdf.tensors import KnownEntries, Tensor
from sdf.terms._base import DataTerm, Findings, Structure, TermState, _exponent_of

__all__ = ["CPD"]


class CPD(DataTerm):
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
    spec_key = "cpd"

    def __init__(
        self,
        data: Any,
        factors: Sequence[Any],
        weight: float | None = None,
        relweight: float | None = None,
    ) -> None:
        if isinstance(factors, np.ndarray) or not isinstance(factors, Sequence):
            raise ModelError(f"{self.kind}: factors must be a list of expressions, one per mode")
        super().__init__(data, factors, weight=weight, relweight=relweight)

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
        entries = self.data.known_entries()
        if entries is not None:
            return _SampledCPDState(entries, values)
        return _FullCPDState(self.data, self.data_norm_squared, values)

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        # Below ~1e-6 of ||T||^2, f = (||T||^2 - 2<T,M> + ||M||^2)/2 has lost digits.
        array = self.data.dense_view()
        if array is None or fval > 1e-6 * self.data_norm_squared:
            return fval
        residual = algebra.cpd_to_tensor(list(values)) - array
        return 0.5 * float(np.vdot(residual, residual))

    def describe_shape(self) -> str:
        return f"rank {self.rank}"

    def mode_factors(self) -> list[Expr]:
        return list(self.inputs)

    def structure(self, values: Sequence[np.ndarray]) -> Structure:
        return Structure("CPD", list(values))

    def model_norm(self, values: Sequence[np.ndarray]) -> float:
        shifts = [_exponent_of(A) for A in values]
        grams = algebra.gramians([np.ldexp(A, -k) for A, k in zip(values, shifts)])
        norm = math.sqrt(max(float(algebra.hadamard(grams).sum()), 0.0))
        return math.ldexp(norm, sum(shifts))

    def check_result(self, name: str, values: Sequence[np.ndarray],
                     start: Sequence[np.ndarray], relerr: float) -> Findings:
        """Degenerate or vanished components; a start far from the data's scale."""
        found = _cpd_findings(name, list(values))
        norm = self.data_norm
        if relerr > 0.5 and norm > 0:
            found += _start_scale(name, self.model_norm(start), norm)
        return found


def _cpd_findings(name: str, factors: list[np.ndarray]) -> Findings:
    """Vanished components and cancelling pairs (see :func:`sdf.numerics.cpd_degeneracy`)."""
    out: Findings = []
    if any(A.ndim != 2 for A in factors) or not all(np.isfinite(A).all() for A in factors):
        return out
    # Normalised factors: the analysis is scale-invariant, their Gramians stay in range.
    found = cpd_degeneracy([np.ldexp(A, -_exponent_of(A)) for A in factors])
    R = found.component_norms.size
    if found.zero_components:
        out.append((SdfWarning,
                    f"term {name!r}: component(s) {found.zero_components} are zero in the "
                    f"result; the effective rank is {R - len(found.zero_components)} of {R} "
                    "(rank-deficient factors: try a lower rank or another start)"))
    if found.pairs:
        listed = ", ".join(f"({r}, {t}): {c:.4f}" for r, t, c in found.pairs[:5])
        out.append((DegeneracyWarning,
                    f"term {name!r}: degenerate CPD, components cancel each other "
                    f"(congruence {listed}; component norms add up to {found.norm_ratio:.3g} "
                    "times the model's norm): try a lower rank, constraints (e.g. "
                    "nonnegativity) or a small L2 regularization"))
    return out


def _start_scale(name: str, start_norm: float, data_norm: float) -> Findings:
    """A warning when the start's model and the data differ in scale by more than 1e6."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ratio = start_norm / data_norm
    if np.isfinite(ratio) and 1e-6 <= ratio <= 1e6:
        return []
    return [(SdfWarning, f"term {name!r}: the initial model's norm ({start_norm:.3g}) and "
             f"the data's norm ({data_norm:.3g}) differ by a factor {ratio:.3g}, and no "
             "variable enters this term alone so the start could not be rescaled; scale "
             "the initial values to the data")]


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
        # The data give <T, M> now and the MTTKRPs only when the gradient is asked for,
        # so a rejected trial point costs one pass over dense data.
        self._session = data.mttkrp_session(self.factors)
        inner = self._session.inner()
        model_sq = float(np.sum(self.w[0] * self.grams[0]))
        self.fval = 0.5 * max(norm_squared - 2.0 * inner + model_sq, 0.0)
        self._pairs: np.ndarray | None = None

    @property
    def mttkrps(self) -> list[np.ndarray]:
        return self._session.all()

    def gradient(self) -> list[np.ndarray]:
        return [A @ W - M for A, W, M in zip(self.factors, self.w, self.mttkrps)]

    def _pair_weights(self) -> np.ndarray:
        """``P[n, m] = W_nm`` (Hadamard of the Gramians but n and m), zero for m == n."""
        if self._pairs is None:
            N, R = len(self.grams), self.grams[0].shape[0]
            P = np.zeros((N, N, R, R))
            for n in range(N):
                for m in range(n + 1, N):
                    rest = [g for k, g in enumerate(self.grams) if k not in (n, m)]
                    P[n, m] = P[m, n] = algebra.hadamard(rest) if rest else 1.0
            self._pairs = P
        return self._pairs

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        # (J^T J dA)_n = dA_n W_n + A_n sum_{m != n} W_nm * (dA_m^T A_m), all modes at once.
        cross = np.stack([dA.T @ A for A, dA in zip(self.factors, dvalues)])
        acc = np.einsum("nmrs,mrs->nrs", self._pair_weights(), cross)
        return [dA @ W + A @ a for A, dA, W, a in zip(self.factors, dvalues, self.w, acc)]

    def blocks(self) -> list[np.ndarray]:
        return list(self.w)


class _SampledLayout:
    """Index structure of the sampled CPD Jacobian, shared by every point of one data set.

    Row ``e`` of ``J`` (nnz x sum_n I_n R) holds ``Q_n[e, r]`` in column (n, i_n(e), r),
    ``Q_n`` being the Hadamard product of the other modes' rows at the known entries.
    ``J v = sum_n J_n v_n`` uses the stacked blocks ``[J_0; ...; J_{N-1}]`` (CSR with
    rows (n, e), values ``Q`` of shape (N, nnz, R)); ``J^T w`` uses ``K = J^T`` (CSR, rows
    (n, r, i), row (n, r, i) holding the entries ``order_n[ptr_n[i] : ptr_n[i + 1]]`` of
    the mode-n indicator). Both products are then gathers with contiguous writes.
    """

    def __init__(self, data: KnownEntries, rank: int) -> None:
        N, nnz = data.ndim, data.nnz
        index = data.index
        self.shape = tuple(int(I) for I in data.shape)
        self.rank, self.nnz = rank, nnz
        small = N * rank * max(nnz, 1) + rank * sum(self.shape) < np.iinfo(np.int32).max
        itype = np.int32 if small else np.int64
        offsets = np.concatenate([[0], np.cumsum(self.shape)[:-1]])
        # (N, nnz): rows of the stacked factors, for one fused gather of all modes' rows
        self.stacked_index = np.stack([c + o for c, o in zip(index, offsets)])
        self.j_indices = (self.stacked_index[:, :, None] * rank
                          + np.arange(rank)).astype(itype).ravel()
        self.j_indptr = np.arange(0, N * rank * nnz + 1, rank, dtype=itype)
        self.ptr: list[np.ndarray] = []
        self.order: list[np.ndarray | None] = []  # None: mode-n order is the stored order
        k_indices, k_indptr = [], []
        for n in range(N):
            S = data.mode_indicator(n)
            order, ptr = np.asarray(S.indices), np.asarray(S.indptr, dtype=np.int64)
            self.ptr.append(ptr)
            self.order.append(None if np.array_equal(order, np.arange(nnz)) else order)
            k_indices.append(np.tile(order.astype(itype), rank))
            k_indptr += [(n * rank + r) * nnz + ptr[:-1] for r in range(rank)]
        k_indptr.append(np.array([N * rank * nnz]))
        self.k_indices = np.concatenate(k_indices)
        self.k_indptr = np.concatenate(k_indptr).astype(itype)
        self.n_cols = rank * sum(self.shape)


_LAYOUTS: weakref.WeakKeyDictionary[KnownEntries, dict[int, _SampledLayout]] = (
    weakref.WeakKeyDictionary())
_BLOCK_BUDGET = 1 << 22  # floats in one chunk of the row-block products


def _sampled_layout(data: KnownEntries, rank: int) -> _SampledLayout:
    per_rank = _LAYOUTS.setdefault(data, {})
    if rank not in per_rank:
        per_rank[rank] = _SampledLayout(data, rank)
    return per_rank[rank]


def _row_blocks(Q: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """``B[i] = sum_{e in segment i} q_e q_e^T`` for ``Q`` (R, nnz) sorted into segments."""
    R = Q.shape[0]
    upper = np.triu_indices(R)
    out = np.zeros((len(ptr) - 1, R, R))
    rows = np.flatnonzero(np.diff(ptr))  # empty rows keep a zero block
    if len(rows) == 0:
        return out
    per_chunk = max(1, _BLOCK_BUDGET // len(upper[0]))
    lo_row = 0
    while lo_row < len(rows):
        # rows[lo_row:hi_row] hold at most per_chunk entries (or are a single row)
        hi_row = max(lo_row + 1, int(np.searchsorted(
            ptr[rows + 1], ptr[rows[lo_row]] + per_chunk, side="right")))
        chunk = rows[lo_row:hi_row]
        lo, hi = ptr[chunk[0]], ptr[chunk[-1] + 1]
        P = np.empty((len(upper[0]), hi - lo))
        k = 0
        for r in range(R):
            np.multiply(Q[r, lo:hi], Q[r:, lo:hi], out=P[k : k + R - r])
            k += R - r
        sums = np.add.reduceat(P, ptr[chunk] - lo, axis=1).T
        out[chunk[:, None], upper[0], upper[1]] = sums
        out[chunk[:, None], upper[1], upper[0]] = sums
        lo_row = hi_row
    return out


class _SampledCPDState(TermState):
    """The CPD on the known entries through its sparse Jacobian (see _SampledLayout).

    Building the state gathers every mode's rows at once and forms ``Q`` (N, nnz, R),
    the values of ``J``, by prefix/suffix products; ``f`` needs the residual
    ``r = sum_r rows_0 * Q_0 - vals``. The gradient ``J^T r``, Gauss-Newton products
    ``J^T (J v)`` (two sparse passes, no nnz x R temporaries) and the preconditioner's
    exact row blocks (segment sums of ``q q^T``) use ``J^T``, built on first use.
    """

    def __init__(self, data: KnownEntries, factors: Sequence[np.ndarray]) -> None:
        self.factors = list(factors)
        N, R = len(self.factors), self.factors[0].shape[1]
        lay = self.layout = _sampled_layout(data, R)
        rows = np.take(np.concatenate(self.factors), lay.stacked_index, axis=0)
        Q = self.Q = np.empty_like(rows)  # (N, nnz, R): Q[n] = prod_{m != n} rows[m]
        Q[1] = rows[0]
        for n in range(2, N):
            np.multiply(Q[n - 1], rows[n - 1], out=Q[n])
        Q[0] = rows[N - 1]  # the suffix product, finally prod_{m >= 1} rows[m]
        for n in range(N - 2, 0, -1):
            Q[n] *= Q[0]
            Q[0] *= rows[n]
        self.J = sp.csr_array((Q.reshape(-1), lay.j_indices, lay.j_indptr),
                              shape=(N * lay.nnz, lay.n_cols), copy=False)
        self._K: sp.csr_array | None = None
        self.residual = np.einsum("er,er->e", rows[0], Q[0]) - data.vals
        self.fval = 0.5 * float(self.residual @ self.residual)

    @property
    def K(self) -> sp.csr_array:
        """``J^T`` as CSR; its values per mode are ``Q_n`` in mode-n order, (R, nnz)."""
        if self._K is None:
            lay = self.layout
            N, R = len(self.factors), lay.rank
            values = np.empty((N, R, lay.nnz))
            for n, order in enumerate(lay.order):
                Qn = self.Q[n] if order is None else np.take(self.Q[n], order, axis=0)
                values[n] = Qn.T
            self._K = sp.csr_array((values.reshape(-1), lay.k_indices, lay.k_indptr),
                                   shape=(lay.n_cols, lay.nnz), copy=False)
        return self._K

    def _split(self, flat: np.ndarray) -> list[np.ndarray]:
        out, lo, R = [], 0, self.layout.rank
        for I in self.layout.shape:
            out.append(flat[lo : lo + R * I].reshape(R, I).T)
            lo += R * I
        return out

    def gradient(self) -> list[np.ndarray]:
        return self._split(self.K @ self.residual)

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        v = np.concatenate([np.asarray(dA, dtype=float).ravel() for dA in dvalues])
        jv = (self.J @ v).reshape(len(self.factors), -1).sum(axis=0)
        return self._split(self.K @ jv)

    def blocks(self) -> list[np.ndarray]:
        lay, values = self.layout, self.K.data.reshape(len(self.factors), self.layout.rank, -1)
        return [_row_blocks(Qn, ptr) for Qn, ptr in zip(values, lay.ptr)]
