"""Canonical polyadic decomposition term: data ≈ [[A_0, ..., A_{N-1}]].

Two evaluation strategies, chosen by the data type:

Complex data or factors: the model is holomorphic in the factors, so the Gauss-Newton
Gramian is ``J^H J`` and the gradient ``J^H r`` (the conjugate cogradient, see
:mod:`sdf.problem`), both in complex arithmetic: every formula below holds with the
Gramians ``A^T conj(A) = conj(A^H A)``, MTTKRPs with the conjugated factors and
Hermitian row blocks. Real data with complex factors compare the full complex model with
the data (the residual is complex and ``f`` sums ``|r|^2``), as Tensorlab does.

* full data (dense, sparse with true zeros, factored CPD/Tucker): the residual is never
  formed. ``f = (||T||^2 - 2<T, M> + ||M||^2) / 2`` with ``<T, M>`` from one all-modes
  MTTKRP and ``||M||^2`` from the Gramians; the Gauss-Newton product needs Gramians only:
  ``(J^T J dA)_n = dA_n W_n + A_n sum_{m != n} (W_nm * (A_m^T dA_m))`` with
  ``W_n = *_{k != n} A_k^T A_k`` and ``W_nm = *_{k != n, m} A_k^T A_k``.
* data known at some entries as coordinates: everything from the known entries (cost
  O(nnz N R); within a fixed budget the Jacobian at the entries is kept as a sparse
  matrix, beyond it only the residual per entry); the preconditioner blocks are exact
  per row.
* masked data (a zero-filled array and a mask): with few entries missing, the full-data
  pieces on the array minus the same pieces on the missing entries (exact: the dense fit
  plus O(missing N R)), exact row blocks; with many missing, dense masked residuals and
  model directions (each Gauss-Newton product one all-mode MTTKRP), row blocks the
  full-data ones times the fraction of each row's entries known (their expectation
  when entries are missing at random: no pass over the data).

A non-Gaussian loss (:mod:`sdf.losses`) weighs every known entry: the masked strategy
with the loss's derivative ``ell'(M)`` as residual and its curvature ``c`` in place of the
mask (``J^T diag(c) J v`` as one all-mode MTTKRP of ``c * (J v)``) on data held densely
(or expandable: sparse, factored), the coordinate strategy with the same weights on data
known at coordinates. Cost O(known entries · R) per product.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from sdf import algebra
from sdf.errors import DegeneracyWarning, ModelError, SdfWarning
from sdf.numerics import cpd_degeneracy, ldexp
from sdf.expr import Expr
from sdf.losses import MEAN_EPS, Loss, LossLike, ZeroSampling
from sdf.tensors import KnownEntries, SparseTensor, Tensor
from sdf.terms._base import (DataTerm, Findings, LossData, Structure, TermState, _cancels,
                             _exponent_of)

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
    loss : str, dict or sdf.losses.Loss, default "gaussian"
        How a model value is compared with a data entry (see :mod:`sdf.losses`):
        ``"gaussian"`` (least squares), ``"poisson"``, ``"bernoulli"``, ``"gamma"``,
        ``"huber"``, ``"beta"``, a dict with parameters, or a user's Loss.
    sampling : sdf.losses.ZeroSampling or dict, optional
        Sparse data (:class:`sdf.tensors.SparseTensor`) with a non-Gaussian loss only:
        fit every stored entry and a seeded sample of the zeros (see
        :class:`sdf.losses.ZeroSampling`; a dict ``{"zeros": n, "seed": s}`` in the
        dictionary language). Without it sparse data are fitted exactly: at O(nnz R)
        where the loss is linear at zero (``Poisson(link="identity")``,
        ``Beta(1.0)``), else over every entry (see :mod:`sdf.losses`).

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

    Counts with the Poisson loss (log link: the model is the log of the mean):

    >>> counts = rng.poisson(np.exp(0.3 * A @ B.T)).astype(float)
    >>> model = sdf.Model(mat=sdf.CPD(counts, [a, b], loss="poisson"))
    >>> result = model.fit(max_iter=50)
    >>> bool(result.relerr["mat"] < 1)  # deviance below the constant model's
    True
    """

    kind = "CPD"
    spec_key = "cpd"
    complex_values = True

    def __init__(
        self,
        data: Any,
        factors: Sequence[Any],
        weight: float | None = None,
        relweight: float | None = None,
        loss: LossLike = "gaussian",
        sampling: ZeroSampling | dict[str, int] | None = None,
    ) -> None:
        if isinstance(factors, np.ndarray) or not isinstance(factors, Sequence):
            raise ModelError(f"{self.kind}: factors must be a list of expressions, one per mode")
        super().__init__(data, factors, weight=weight, relweight=relweight, loss=loss)
        self.sampling = _as_sampling(sampling, self.kind)

    spec_options = ("loss", "sampling")

    def spec_option_values(self) -> dict[str, Any]:
        out = super().spec_option_values()
        if self.sampling is not None:
            out["sampling"] = self.sampling.spec()
        return out

    def _sparse(self) -> _SparseEntries | None:
        """The entries a non-Gaussian loss reads from sparse data (None: the general
        strategies), made once per term."""
        if self.loss.is_gaussian or not isinstance(self.data, SparseTensor):
            return None
        if self.sampling is None and not self.loss.linear_at_zero:
            return None  # no closed form: the exact objective reads every entry
        cached = getattr(self, "_sparse_cache", None)
        if cached is None or cached[0] is not self.data or cached[1] != self.sampling:
            cached = (self.data, self.sampling, _SparseEntries(self.data, self.sampling))
            self._sparse_cache = cached
        return cached[2]

    def _pattern(self, key: np.ndarray, index: Sequence[np.ndarray],
                 values: Sequence[np.ndarray]) -> _JacobianPattern | None:
        """The Jacobian's pattern at these entries when it fits :data:`_JACOBIAN_FLOATS`,
        made once per entries (``key``: an array the entries keep) and rank."""
        rank = int(values[0].shape[1])
        if int(index[0].shape[0]) * len(index) * rank > _JACOBIAN_FLOATS:
            return None
        cached = getattr(self, "_pattern_cache", None)
        if cached is None or cached[0] is not key or cached[1] != rank:
            cached = (key, rank, _JacobianPattern(self.data.shape, index, rank))
            self._pattern_cache = cached
        return cached[2]

    @property
    def null_fval(self) -> float | None:
        sparse = None if self.loss.is_gaussian else self._sparse()
        if sparse is None:
            return super().null_fval
        return sparse.null_fval(self.loss)

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
        if self.sampling is not None and (self.loss.is_gaussian
                                          or not isinstance(self.data, SparseTensor)):
            raise ModelError(f"{where}: sampling= applies to sparse data with a non-Gaussian "
                             f"loss, got {self.data.kind} data with the {self.loss.name} loss")
        sparse = self._sparse()
        if sparse is None:
            super().check(where)
        else:
            sparse.check(self.loss, f"{where}, loss {self.loss.name!r}")

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        if not self.loss.is_gaussian:
            sparse = self._sparse()
            if sparse is not None:
                return sparse.state(self.loss, values)
            return _loss_state(self.loss, self.loss_data(), values)
        masked = self.data.masked_view()
        if masked is not None:
            filled, mask = masked
            if self.data.size - self.data.n_known <= _COMPLEMENT_MAX_MISSING * self.data.size:
                missing = _missing_index(self.data, mask)
                return _ComplementCPDState(self.data, self.data_norm_squared, missing, values,
                                           self._pattern(missing[0], missing, values))
            return _MaskedCPDState(filled, mask, values, _mask_rows(self.data, mask))
        entries = self.data.known_entries()
        if entries is not None:
            return _SampledCPDState(entries.shape, entries.index, entries.vals, values,
                                    self._pattern(entries.subs, entries.index, values))
        return _FullCPDState(self.data, self.data_norm_squared, values)

    def iterate_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        if fval <= 0.0 or _cancels(fval, self.data_norm_squared, _cpd_expansion_size(values)):
            return self.exact_fval(values, fval)
        return fval

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        # Below ~1e-6 of ||T||^2, f = (||T||^2 - 2<T,M> + ||M||^2)/2 has lost digits; so
        # it has below ~1e-6 of the sizes of the terms of ||M||^2, which exceed ||M||^2
        # where components cancel (a degenerate CPD: components far larger than M).
        if (fval > 1e-6 * max(self.data_norm_squared, _cpd_expansion_size(values))
                or not self.loss.is_gaussian):
            return fval
        array, masked = self.data.dense_view(), self.data.masked_view()
        if array is None and masked is None:
            return fval
        residual = algebra.cpd_to_tensor(list(values)) - (array if masked is None
                                                           else masked[0])
        if masked is not None:
            residual *= masked[1]
        return 0.5 * float(np.vdot(residual, residual).real)

    def describe_shape(self) -> str:
        return f"rank {self.rank}"

    def mode_factors(self) -> list[Expr]:
        return list(self.inputs)

    def structure(self, values: Sequence[np.ndarray]) -> Structure:
        return Structure("CPD", list(values))

    def model_log2_norm(self, values: Sequence[np.ndarray]) -> float | None:
        if self.loss.link != "identity":
            return None  # the model is not on the data's scale
        shifts = [_exponent_of(A) for A in values]
        grams = algebra.gramians([ldexp(A, -k) for A, k in zip(values, shifts)])
        norm = math.sqrt(max(float(np.real(algebra.hadamard(grams).sum())), 0.0))
        return math.log2(norm) + sum(shifts) if norm > 0 else -math.inf

    def check_result(self, name: str, values: Sequence[np.ndarray],
                     start: Sequence[np.ndarray], relerr: float) -> Findings:
        """Degenerate or vanished components; a start far from the data's scale."""
        found = _cpd_findings(name, list(values))
        start_log2 = self.model_log2_norm(start)
        if relerr > 0.5 and start_log2 is not None:
            found += _start_scale(name, start_log2 - self.data_log2_norm())
        return found


def _cpd_findings(name: str, factors: list[np.ndarray]) -> Findings:
    """Vanished components and cancelling pairs (see :func:`sdf.numerics.cpd_degeneracy`)."""
    out: Findings = []
    if any(A.ndim != 2 for A in factors) or not all(np.isfinite(A).all() for A in factors):
        return out
    # Normalised factors: the analysis is scale-invariant, their Gramians stay in range.
    found = cpd_degeneracy([ldexp(A, -_exponent_of(A)) for A in factors])
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


def _start_scale(name: str, log2_ratio: float) -> Findings:
    """A warning when the start's model and the data differ in scale by more than 1e6."""
    if not math.isfinite(log2_ratio) or abs(log2_ratio) <= math.log2(1e6):
        return []
    return [(SdfWarning, f"term {name!r}: the initial model's norm and the data's norm "
             f"differ by a factor 1e{log2_ratio * math.log10(2):.0f}, and no variable "
             "enters this term alone so the start could not be rescaled; scale the "
             "initial values to the data")]


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


def _conjugated(factors: list[np.ndarray]) -> list[np.ndarray]:
    """The factors conjugated (the same list when all are real)."""
    if any(_is_complex(A) for A in factors):
        return [np.conj(A) for A in factors]
    return factors


def _is_complex(A: Any) -> bool:
    """``np.iscomplexobj(A)``, read from the dtype of an array (fewer calls: per point)."""
    dtype = getattr(A, "dtype", None)
    return bool(np.iscomplexobj(A)) if dtype is None else dtype.kind == "c"


def _cpd_expansion_size(factors: Sequence[np.ndarray]) -> float:
    """``sum_{r,s} prod_n |A_n^H A_n|_{rs}``: the sum of the sizes of the terms whose sum
    is ``||M||^2`` (the rounding of ``||M||^2`` from the Gramians is about ``eps`` times
    it; far above ``||M||^2`` where components cancel)."""
    total = np.ones((factors[0].shape[1],) * 2)
    for A in factors:
        total = total * np.abs(algebra._ct(A) @ A)
    return float(total.sum())


class _FullCPDState(TermState):
    def __init__(self, data: Tensor, norm_squared: float, factors: Sequence[np.ndarray]) -> None:
        self.factors = list(factors)
        self._conj = _conjugated(self.factors)
        # Gramians conj(A^H A) = (conj A)^H (conj A): J^H J in complex arithmetic.
        self.grams = ([C.T @ C for C in self._conj] if self._conj is self.factors
                      else [algebra._ct(C) @ C for C in self._conj])
        self.w = _leave_one_out(self.grams)  # W_n = Hadamard of all Gramians but n
        # The data give <T, M> now and the MTTKRPs only when the gradient is asked for,
        # so a rejected trial point costs one pass over dense data.
        self._session = data.mttkrp_session(self._conj)
        inner = float(np.real(self._session.inner()))  # Re <T, M>
        model_sq = float(np.real(np.sum(self.w[0] * self.grams[0])))
        self.fval = 0.5 * max(norm_squared - 2.0 * inner + model_sq, 0.0)
        self._pairs: np.ndarray | None = None
        self._stack: tuple[np.ndarray, np.ndarray] | tuple[()] | None = None

    @property
    def mttkrps(self) -> list[np.ndarray]:
        return self._session.all()

    def gradient(self) -> list[np.ndarray]:
        return [A @ W - M for A, W, M in zip(self.factors, self.w, self.mttkrps)]

    def _pair_weights(self) -> np.ndarray:
        """``P[n, m] = W_nm`` (Hadamard of the Gramians but n and m), zero for m == n."""
        if self._pairs is None:
            N, R = len(self.grams), self.grams[0].shape[0]
            P = np.zeros((N, N, R, R), dtype=np.result_type(*self.grams))
            for n in range(N):
                for m in range(n + 1, N):
                    rest = [g for k, g in enumerate(self.grams) if k not in (n, m)]
                    P[n, m] = P[m, n] = functools.reduce(np.multiply, rest) if rest else 1.0
            self._pairs = P
        return self._pairs

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        # (J^T J dA)_n = dA_n W_n + A_n sum_{m != n} W_nm * (dA_m^T A_m), all modes at once.
        cross = np.stack([dA.T @ Ac for Ac, dA in zip(self._conj, dvalues)])
        acc = np.einsum("nmrs,mrs->nrs", self._pair_weights(), cross)
        return [dA @ W + A @ a for A, dA, W, a in zip(self.factors, dvalues, self.w, acc)]

    def gn_product_flat(self, dflat: np.ndarray) -> np.ndarray | None:
        if self._conj is not self.factors:
            return None  # complex factors: the per-input form
        stacked = self._stacked()
        if stacked is None:  # factors of different sizes: one mode at a time
            ends = np.cumsum([A.size for A in self.factors])
            dvalues = [d.reshape(A.shape) for d, A in zip(np.split(dflat, ends[:-1]),
                                                          self.factors)]
            return np.concatenate([p.ravel() for p in self.gn_product(dvalues)])
        # Equal factor shapes: the modes as one batch (N, I, R), a few BLAS calls in all.
        F, W = stacked
        V = dflat.reshape(F.shape)
        acc = np.einsum("nmrs,mrs->nrs", self._pair_weights(),
                        np.matmul(V.transpose(0, 2, 1), F))
        out = np.matmul(V, W)
        out += np.matmul(F, acc)
        return out.reshape(-1)

    def _stacked(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The factors and the ``W_n`` stacked, ``(N, I, R)`` and ``(N, R, R)``, when all
        factors have one shape (else None); made once per state."""
        if self._stack is None:
            shape = self.factors[0].shape
            # np.array of equally shaped arrays stacks them (one call, unlike np.stack).
            self._stack = ((np.array(self.factors), np.array(self.w))
                           if all(A.shape == shape for A in self.factors) else ())
        return self._stack or None

    def blocks(self) -> list[np.ndarray]:
        return list(self.w)


#: Entries per chunk of the sampled products: (R, chunk) temporaries of at most this
#: many floats, so their memory does not grow with the number of entries.
_CHUNK_FLOATS = 1 << 18
#: Floats of per-entry Jacobian values (the leave-one-out rows) a sampled state may keep
#: between products: a fixed budget (8 MB), never a cost per entry.
_CACHE_FLOATS = 1 << 20


def _leave_one_out_rows(rows: list[np.ndarray]) -> list[np.ndarray]:
    """``Q_n = prod_{m != n} rows[m]`` (elementwise) for each n, by prefix/suffix products."""
    N = len(rows)
    if N == 2:
        return [rows[1], rows[0]]
    out = [np.empty(0)] * N
    out[1] = rows[0].copy()
    for n in range(2, N):
        out[n] = out[n - 1] * rows[n - 1]
    suffix = rows[N - 1].copy()
    for n in range(N - 2, 0, -1):
        out[n] *= suffix
        suffix *= rows[n]
    out[0] = suffix
    return out


class _SampledCPDState(TermState):
    """The CPD on a set of entries (the known ones, or the missing ones of masked data).

    Residual ``r_e = M_e - v_e`` at the entries ``e`` (``v = 0`` when no values are
    given). Row ``e`` of the Jacobian holds ``Q_n[e] = prod_{m != n} A_m[i_m(e)]`` in the
    columns of row ``i_n(e)`` of ``A_n``; the gradient ``J^T r``, the products ``J^T J v``
    and the exact row blocks ``sum_e Q_n[e] Q_n[e]^T`` come from it in one of two ways:

    * with a ``pattern`` (:class:`_JacobianPattern`, given when ``N R`` values per entry
      fit :data:`_JACOBIAN_FLOATS`): ``J`` is kept as one CSR matrix per mode over that
      pattern, so a product is ``2 N`` sparse matrix-vector products and the blocks one
      batched matrix product per mode; the values are made once per state.
    * else chunk by chunk from the factors' rows, with segment sums by ``np.bincount``:
      the state keeps the residual (one float per entry) and at most
      :data:`_CACHE_FLOATS` floats of ``Q``, no Jacobian values per entry.

    ``curvature``, when set (one weight per entry), weighs the products and blocks:
    ``J^T diag(curvature) J``.
    """

    curvature: np.ndarray | None = None
    products_read_data = True

    def __init__(self, shape: Sequence[int], index: Sequence[np.ndarray],
                 vals: np.ndarray | None, factors: Sequence[np.ndarray],
                 pattern: _JacobianPattern | None = None) -> None:
        self.factors = list(factors)
        self.shape = tuple(int(I) for I in shape)
        self.index = list(index)
        R = self.rank = self.factors[0].shape[1]
        #: Complex factors: J^H products scatter conj(Q) (the model is holomorphic).
        self._complex = any(np.iscomplexobj(A) for A in self.factors)
        rows_type = np.complex128 if self._complex else None  # mixed: all complex
        #: With a pattern: the Jacobian's column blocks, one CSR matrix per mode.
        self._jacobians: list[sp.csr_matrix] | None = None
        self._pattern = pattern
        if pattern is not None:
            self._init_jacobians(pattern, vals, rows_type)
            return
        self._rows_t = [np.ascontiguousarray(A.T, dtype=rows_type)
                        for A in self.factors]  # (R, I_n)
        nnz = int(self.index[0].shape[0])
        step = max(1, _CHUNK_FLOATS // R)
        self._chunks = [slice(lo, min(lo + step, nnz)) for lo in range(0, nnz, step)]
        self._cache: dict[int, list[np.ndarray]] = {}
        budget = _CACHE_FLOATS // max(R * len(self.factors), 1)
        model = np.empty(nnz, dtype=np.complex128 if self._complex else float)
        for k, sl in enumerate(self._chunks):
            rows = self._rows(sl)
            Q = _leave_one_out_rows(rows)
            if sl.stop <= budget:
                self._cache[k] = Q
            model[sl] = np.einsum("re,re->e", rows[0], Q[0])
        self.residual = model if vals is None else model - vals
        if np.iscomplexobj(self.residual):
            self.fval = 0.5 * float(np.vdot(self.residual, self.residual).real)
        else:
            self.fval = 0.5 * float(self.residual @ self.residual)

    def _init_jacobians(self, pattern: _JacobianPattern, vals: np.ndarray | None,
                        rows_type: type | None) -> None:
        """The Jacobian at the entries as one CSR matrix per mode: row ``e`` of block
        ``n`` holds ``Q_n[e]`` in the columns of row ``i_n(e)`` of ``A_n``."""
        rows = [np.take(np.asarray(A, dtype=rows_type), idx, axis=0)
                for A, idx in zip(self.factors, pattern.gather)]  # (nnz, R) each
        Q = _leave_one_out_rows(rows)
        model = np.einsum("er,er->e", rows[0], Q[0])
        self._jacobians = [pattern.matrix(n, Qn) for n, Qn in enumerate(Q)]
        self._transposes = [J.T for J in self._jacobians]  # CSC views, made once
        self.residual = model if vals is None else model - vals
        if np.iscomplexobj(self.residual):
            self.fval = 0.5 * float(np.vdot(self.residual, self.residual).real)
        else:
            self.fval = 0.5 * float(self.residual @ self.residual)

    def _jt_explicit(self, jacobians: list[sp.csr_matrix], weights: np.ndarray | None,
                     dvalues: Sequence[np.ndarray] | None) -> list[np.ndarray]:
        """``J^H w`` (``w = weights`` or ``J dv``) with the explicit Jacobian: sparse
        matrix-vector products, ``J_n^H u = conj(J_n^T conj(u))`` (no conjugated copy)."""
        if dvalues is None:
            assert weights is not None
            u = weights
        else:
            u = sum(J @ _numeric(dA).reshape(-1) for J, dA in zip(jacobians, dvalues))
            if self.curvature is not None:
                u = u * self.curvature
        if self._complex:
            uc = np.conj(u)
            return [np.conj(JT @ uc).reshape(I, self.rank)
                    for JT, I in zip(self._transposes, self.shape)]
        return [(JT @ u).reshape(I, self.rank) for JT, I in zip(self._transposes, self.shape)]

    def _rows(self, sl: slice) -> list[np.ndarray]:
        return [np.take(At, idx[sl], axis=1) for At, idx in zip(self._rows_t, self.index)]

    def _q(self, k: int, sl: slice) -> list[np.ndarray]:
        Q = self._cache.get(k)
        return _leave_one_out_rows(self._rows(sl)) if Q is None else Q

    def _scatter(self, out: np.ndarray, idx: np.ndarray, W: np.ndarray) -> None:
        """``out[:, i] += sum_{e: idx[e] = i} W[:, e]`` for ``out`` of shape (K, I)."""
        K, I = out.shape
        flat = (idx + (I * np.arange(K))[:, None]).ravel()
        if np.iscomplexobj(W):  # bincount sums real weights: the two parts apart
            out += (np.bincount(flat, weights=W.real.ravel(), minlength=K * I)
                    + 1j * np.bincount(flat, weights=W.imag.ravel(), minlength=K * I)
                    ).reshape(K, I)
            return
        out += np.bincount(flat, weights=W.ravel(), minlength=K * I).reshape(K, I)

    def _jt(self, weights: np.ndarray | None, dvalues: Sequence[np.ndarray] | None
            ) -> list[np.ndarray]:
        """``J^T w`` for ``w = weights``, or for ``w = J dv`` when ``dvalues`` are given."""
        if self._jacobians is not None:
            return self._jt_explicit(self._jacobians, weights, dvalues)
        dt = None if dvalues is None else [np.ascontiguousarray(_numeric(dA).T)
                                           for dA in dvalues]
        complex_out = (self._complex or (weights is not None and np.iscomplexobj(weights))
                       or (dt is not None and any(np.iscomplexobj(d) for d in dt)))
        dtype = np.complex128 if complex_out else float
        out = [np.zeros((self.rank, I), dtype=dtype) for I in self.shape]
        for k, sl in enumerate(self._chunks):
            Q = self._q(k, sl)
            if dt is None:
                assert weights is not None
                w = weights[sl]
            else:
                w = np.zeros(sl.stop - sl.start, dtype=dtype)
                for dAt, idx, Qn in zip(dt, self.index, Q):
                    w += np.einsum("re,re->e", np.take(dAt, idx[sl], axis=1), Qn)
                if self.curvature is not None:
                    w *= self.curvature[sl]
            for n, (idx, Qn) in enumerate(zip(self.index, Q)):
                self._scatter(out[n], idx[sl], (np.conj(Qn) if self._complex else Qn) * w)
        return [o.T for o in out]

    def gradient(self) -> list[np.ndarray]:
        return self._jt(self.residual, None)

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._jt(None, dvalues)

    def blocks(self) -> list[np.ndarray]:
        R = self.rank
        upper = np.triu_indices(R)
        if self._jacobians is not None and self._pattern is not None:
            return self._explicit_blocks(self._jacobians, self._pattern, upper)
        dtype = np.complex128 if self._complex else float
        sums = [np.zeros((len(upper[0]), I), dtype=dtype) for I in self.shape]
        for k, sl in enumerate(self._chunks):
            for n, (idx, Qn) in enumerate(zip(self.index, self._q(k, sl))):
                # Hermitian blocks B_rs = sum_e Q_r conj(Q_s) for complex factors.
                pairs = Qn[upper[0]] * (np.conj(Qn[upper[1]]) if self._complex
                                        else Qn[upper[1]])
                if self.curvature is not None:
                    pairs *= self.curvature[sl]
                self._scatter(sums[n], idx[sl], pairs)
        return [_hermitian_blocks(S.T, R, upper) for S in sums]

    def _explicit_blocks(self, jacobians: list[sp.csr_matrix], pattern: _JacobianPattern,
                         upper: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
        """Exact row blocks from the Jacobian's values, ``sum_e Q_n[e] Q_n[e]^H`` over
        each factor row's entries: one batched matrix product per mode on the entries
        laid out row by row (zero-padded), or segment sums where that padding is large."""
        R = self.rank
        out = []
        for J, idx, I, slots, width in zip(jacobians, self.index, self.shape, pattern.slots,
                                           pattern.widths):
            Qn = J.data.reshape(-1, R)
            if slots is None:
                Qt = np.ascontiguousarray(Qn.T)  # (R, nnz): whole rows for the pairs
                pairs = Qt[upper[0]] * (np.conj(Qt[upper[1]]) if self._complex
                                        else Qt[upper[1]])
                if self.curvature is not None:
                    pairs *= self.curvature
                S = np.zeros((len(upper[0]), I), dtype=pairs.dtype)
                self._scatter(S, idx, pairs)
                out.append(_hermitian_blocks(S.T, R, upper))
                continue
            padded = np.zeros((I * width, R), dtype=Qn.dtype)
            padded[slots] = Qn
            P = padded.reshape(I, width, R)
            right = np.conj(P) if self._complex else P
            if self.curvature is not None:
                weights = np.zeros(I * width)
                weights[slots] = self.curvature
                right = right * weights.reshape(I, width, 1)
            out.append(np.matmul(P.transpose(0, 2, 1), right))
        return out


class _JacobianPattern:
    """Where the Jacobian of a CPD at fixed entries is nonzero, made once per entries.

    Column block ``n`` (the unknowns of ``A_n``, row-major) of row ``e`` (an entry with
    indices ``i_0(e), ..., i_{N-1}(e)``) is nonzero in the ``R`` columns ``i_n(e) R + r``,
    so a state's block ``n`` is this pattern with the values ``Q_n`` (nnz, R) as they
    come: no sorting per state. ``slots`` lay each mode's entries out row by row for the
    row blocks.
    """

    def __init__(self, shape: Sequence[int], index: Sequence[np.ndarray], rank: int) -> None:
        nnz, R = int(index[0].shape[0]), rank
        self.shapes = [(nnz, int(I) * R) for I in shape]
        itype = np.int32 if max(int(I) * R for I in shape) < np.iinfo(np.int32).max \
            and nnz * R < np.iinfo(np.int32).max else np.int64
        #: Row gathers index with intp arrays (several times faster than int32 ones).
        self.gather = [np.asarray(idx, dtype=np.intp) for idx in index]
        self.indices = [(idx.astype(itype)[:, None] * R + np.arange(R, dtype=itype)).ravel()
                        for idx in index]
        self.indptr = np.arange(0, nnz * R + 1, R, dtype=itype)
        #: Per mode: the entries laid out row by row, ``slots[e] = i_n(e) * width + k``
        #: (the k-th entry of its row), ``width`` the most entries of any row; None where
        #: that padding would exceed :data:`_PAD_FACTOR` times the entries.
        self.widths: list[int] = []
        self.slots: list[np.ndarray | None] = []
        for idx, I in zip(self.gather, shape):
            counts = np.bincount(idx, minlength=int(I))
            width = int(counts.max()) if nnz else 0
            self.widths.append(width)
            if int(I) * width > _PAD_FACTOR * nnz:
                self.slots.append(None)
                continue
            order = np.argsort(idx, kind="stable")
            starts = np.cumsum(counts) - counts
            row = idx[order]
            slots = np.empty(nnz, dtype=np.intp)
            slots[order] = row * width + np.arange(nnz) - starts[row]
            self.slots.append(slots)

    def matrix(self, mode: int, values: np.ndarray) -> sp.csr_matrix:
        """Column block ``mode`` of the Jacobian with these values (nnz, R), the pattern
        shared, not copied."""
        return sp.csr_matrix((values.reshape(-1), self.indices[mode], self.indptr),
                             shape=self.shapes[mode], copy=False)


#: Largest zero-padding (times the entries) of the batched row blocks.
_PAD_FACTOR = 4

#: Floats of the explicit Jacobian at sampled entries (its values; the cached pattern
#: adds as many indices): up to this, products are two sparse matrix-vector products,
#: beyond it they go chunk by chunk from the factors' rows.
_JACOBIAN_FLOATS = 1 << 22


def _numeric(a: np.ndarray) -> np.ndarray:
    """``a`` as a float64 array, or complex128 when complex (never made real)."""
    return np.asarray(a, dtype=np.complex128 if np.iscomplexobj(a) else float)


def _hermitian_blocks(S: np.ndarray, R: int, upper: tuple[np.ndarray, np.ndarray]
                      ) -> np.ndarray:
    """Row blocks (I, R, R) from their upper triangles ``S`` (I, R(R+1)/2): symmetric, or
    Hermitian when complex."""
    B = np.empty((S.shape[0], R, R), dtype=S.dtype)
    B[:, upper[0], upper[1]] = S
    B[:, upper[1], upper[0]] = np.conj(S) if np.iscomplexobj(S) else S
    return B


#: Masked data with at most this fraction of entries missing are fitted as the dense fit
#: minus a sampled correction on the missing entries, else with dense masked tensors.
_COMPLEMENT_MAX_MISSING = 0.02
_MISSING: weakref.WeakKeyDictionary[Tensor, list[np.ndarray]] = weakref.WeakKeyDictionary()


def _missing_index(data: Tensor, mask: np.ndarray) -> list[np.ndarray]:
    """Indices of the missing entries per mode (int32 where they fit), cached per data."""
    if data not in _MISSING:
        itype = np.int32 if max(mask.shape) < np.iinfo(np.int32).max else np.int64
        _MISSING[data] = [idx.astype(itype) for idx in np.nonzero(~mask)]
    return _MISSING[data]


class _ComplementCPDState(TermState):
    """Mostly-known data: the dense fit on the zero-filled array minus the missing entries.

    With ``T`` zero at the missing entries, ``||mask * (M - T)||^2 = ||M - T||^2 -
    ||M_missing||^2``, so f, the gradient, ``J^T J v`` and the row blocks are those of the
    full-data state (Gramians and one all-mode MTTKRP of the array) minus those of the
    sampled state on the missing entries with zero data: exact, at the cost of the dense
    fit plus O(missing · N · R).
    """

    def __init__(self, data: Tensor, norm_squared: float, missing: list[np.ndarray],
                 factors: Sequence[np.ndarray], pattern: _JacobianPattern | None = None
                 ) -> None:
        self.full = _FullCPDState(data, norm_squared, factors)
        self.missing = _SampledCPDState(data.shape, missing, None, factors, pattern)
        self.fval = max(self.full.fval - self.missing.fval, 0.0)

    def gradient(self) -> list[np.ndarray]:
        return [g - h for g, h in zip(self.full.gradient(), self.missing.gradient())]

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [g - h for g, h in zip(self.full.gn_product(dvalues),
                                      self.missing.gn_product(dvalues))]

    def blocks(self) -> list[np.ndarray]:
        return [W - B for W, B in zip(self.full.blocks(), self.missing.blocks())]


def _kr_direction(mats: Sequence[np.ndarray], dmats: Sequence[np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``K = khatri_rao(mats)`` and its derivative in the direction ``dmats``."""
    K, dK = mats[-1], dmats[-1]
    R = K.shape[1]
    for A, dA in zip(mats[-2::-1], dmats[-2::-1]):
        dK = (A[:, None, :] * dK[None] + dA[:, None, :] * K[None]).reshape(-1, R)
        K = (A[:, None, :] * K[None]).reshape(-1, R)
    return K, dK


#: Masked data of at most this many entries keep their mask as 0.0/1.0 floats too (8
#: bytes per entry, once per data set): a product by it is about twice as fast as by
#: the boolean mask, and every Gauss-Newton product applies the mask once.
_FLOAT_MASK_ENTRIES = 1 << 20


#: Modes whose rows' known fractions all lie within this relative distance of their mean
#: share one preconditioner block (the mean fraction times the full-data block).
_SHARED_ROW_SPREAD = 0.1


class _MaskRows:
    """What the masked strategy reads from a mask once per data set: the fraction of the
    entries known in each row of each mode (``fractions[n]``, shape (I_n,)); per mode,
    their mean where every row is within :data:`_SHARED_ROW_SPREAD` of it (``shared[n]``,
    else None); and the mask to multiply by (``weights``: floats up to
    :data:`_FLOAT_MASK_ENTRIES` entries, else the boolean mask itself)."""

    def __init__(self, mask: np.ndarray) -> None:
        N = mask.ndim
        self.fractions = [
            np.count_nonzero(mask, axis=tuple(k for k in range(N) if k != n))
            / max(mask.size // max(mask.shape[n], 1), 1) for n in range(N)]
        self.shared: list[float | None] = []
        for rho in self.fractions:
            mean = float(rho.mean()) if rho.size else 0.0
            even = mean > 0 and bool(np.all(np.abs(rho - mean) <= _SHARED_ROW_SPREAD * mean))
            self.shared.append(mean if even else None)
        self.weights = mask.astype(float) if mask.size <= _FLOAT_MASK_ENTRIES else mask


#: Floats of one column chunk of a tensor-sized array (the residual, a model direction)
#: on masked data: small enough to stay in cache between the operations reading it.
_PRODUCT_CHUNK_FLOATS = 1 << 16


def _column_chunks(rows: int, cols: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(lo, hi, scratch)`` over the column ranges of a (rows, cols) array, about
    :data:`_PRODUCT_CHUNK_FLOATS` floats each, with a C-contiguous (rows, hi - lo)
    scratch array for each (views of one buffer, so one chunk's scratch is the next's)."""
    step = max(1, _PRODUCT_CHUNK_FLOATS // max(rows, 1))
    buffer = np.empty(rows * min(step, cols))
    for lo in range(0, cols, step):
        hi = min(lo + step, cols)
        yield lo, hi, buffer[: rows * (hi - lo)].reshape(rows, hi - lo)


_MASK_ROWS: weakref.WeakKeyDictionary[Tensor, _MaskRows] = weakref.WeakKeyDictionary()


def _mask_rows(data: Tensor, mask: np.ndarray) -> _MaskRows:
    """The :class:`_MaskRows` of masked data, cached per data set."""
    rows = _MASK_ROWS.get(data)
    if rows is None:
        rows = _MASK_ROWS[data] = _MaskRows(mask)
    return rows


class _MaskedCPDState(TermState):
    """Masked data with many entries missing, on dense tensors of the data's shape.

    Residual ``E = mask * (M - T)``; gradient ``mttkrp_all(E)``; ``J^T J v`` as the
    all-mode MTTKRP of ``mask * (J v)``, ``J v = [A_0 | dA_0] [dK | K]^T`` (mode-0
    unfolding, ``K`` the Khatri-Rao product of the other factors and ``dK`` its
    derivative).

    Real factors on real data take a faster route: ``K`` and the Khatri-Rao products it
    is built from are kept rank first, ``(R, I_1 ... I_{N-1})``, once per state (they do
    not depend on the direction). f and the gradient come from one pass over the data
    (``E`` formed column chunk by column chunk of the mode-0 unfolding, never stored); a
    product is the direction's ``dK`` (product rule over the kept suffixes), then, chunk
    by chunk, one GEMM for ``J v``, the mask, and the two GEMMs of the all-mode MTTKRP
    (``D K^T`` for mode 0, ``A_0^T D`` for the dimension tree of the others) while the
    chunk is in cache. Memory: Khatri-Rao-sized arrays and one chunk; the other routes
    keep the residual and form one direction tensor per product.

    The preconditioner's row blocks are ``rho_n[i] W_n``: the full-data block
    ``W_n = *_{k != n} A_k^H A_k`` times the fraction ``rho_n[i]`` of the entries known in
    row ``i`` of mode ``n`` (``rows``, made once per data set); one block ``mean(rho_n)
    W_n`` shared by all rows where the fractions are all within 10 % of their mean (one
    inverse per mode). They are the exact blocks' expectation when entries are missing
    at random, cost no pass over the data (the exact ones cost one all-mode MTTKRP with
    ``R (R + 1) / 2`` columns, more than a product), and take CG to the same steps on a
    60^3 CPD with half the entries missing. Without ``rows`` (the weights of a loss's
    curvature in place of the mask) the blocks are exact.
    """

    #: Rank-first Khatri-Rao suffixes ``kr(A_k, ..., A_{N-1})^T``, k = 1..N-1 (real only).
    _suffixes: list[np.ndarray] | None = None
    #: ``[dK | K]^T`` (2R, I_1 ... I_{N-1}): ``K`` written once, each product's ``dK`` on top.
    _stacked: np.ndarray | None = None
    _rows: _MaskRows | None = None
    #: The gradient's pieces formed with f (mode-0 MTTKRP, ``A_0^T E``), or None.
    _fused: tuple[np.ndarray, np.ndarray] | None = None
    _is_real: bool | None = None
    _rows_t: list[np.ndarray]
    products_read_data = True

    def __init__(self, filled: np.ndarray, mask: np.ndarray,
                 factors: Sequence[np.ndarray], rows: _MaskRows | None = None) -> None:
        self.factors = list(factors)
        self.shape = tuple(filled.shape)
        self._rows = rows
        #: What products multiply by: the mask (as floats where kept so), or weights.
        self.mask = mask if rows is None else rows.weights
        if rows is not None and self._real() and not np.iscomplexobj(filled):
            self._fuse(filled)
            return
        E = algebra.cpd_to_tensor(self.factors)
        np.multiply(E, mask, out=E)
        if np.iscomplexobj(filled) and not np.iscomplexobj(E):
            E = E - filled
        else:
            E -= filled
        self.residual = E
        flat = E.ravel()
        if np.iscomplexobj(flat):
            self.fval = 0.5 * float(np.vdot(flat, flat).real)
        else:
            self.fval = 0.5 * float(flat @ flat)

    def _fuse(self, filled: np.ndarray) -> None:
        """f and the gradient's two large pieces in one pass over the data: column chunks
        of the residual ``E = mask * (A_0 K - T)`` (mode-0 unfolding), each summed into f
        and read by both GEMMs of the all-mode MTTKRP while in cache; ``E`` is not kept."""
        A0 = self.factors[0]
        K = self._kr_suffixes()[0]
        I0, R = A0.shape
        data, mask = filled.reshape(I0, -1), self.mask.reshape(I0, -1)
        A0t = np.ascontiguousarray(A0.T)
        mode0 = np.zeros((I0, R))
        Y = np.empty((R, K.shape[1]))
        total = 0.0
        for lo, hi, E in _column_chunks(I0, K.shape[1]):
            np.matmul(A0, K[:, lo:hi], out=E)
            E -= data[:, lo:hi]
            E *= mask[:, lo:hi]
            e = E.reshape(-1)
            total += float(e @ e)
            mode0 += E @ K[:, lo:hi].T
            np.matmul(A0t, E, out=Y[:, lo:hi])
        self.fval = 0.5 * total
        self._fused = (mode0, Y)

    def _real(self) -> bool:
        if self._is_real is None:
            self._is_real = not (any(np.iscomplexobj(A) for A in self.factors)
                                 or np.iscomplexobj(self.mask))
        return self._is_real

    def _kr_suffixes(self) -> list[np.ndarray]:
        """``[kr(A_1..A_{N-1})^T, kr(A_2..)^T, ..., A_{N-1}^T]``, rank first, made once."""
        if self._suffixes is None:
            #: The factors rank first, ``A_n^T`` (n = 1..N-1; entry 0 unused).
            self._rows_t = [np.empty(0)] + [np.ascontiguousarray(A.T, dtype=float)
                                            for A in self.factors[1:]]
            rows = self._rows_t[1:]
            R = rows[0].shape[0]
            out = [rows[-1]]
            for M in rows[-2::-1]:
                out.append((M[:, :, None] * out[-1][:, None, :]).reshape(R, -1))
            self._suffixes = out[::-1]
        return self._suffixes

    def _kr_direction_rows(self, drows: list[np.ndarray], out: np.ndarray) -> None:
        """The derivative of ``kr(A_1..A_{N-1})^T`` in the direction ``drows`` (the
        directions of ``A_1..A_{N-1}``, rank first), by the product rule on the suffixes
        (``A_{k+1} ⊙ dK + dA_{k+1} ⊙ suffix_{k+2}``, from the last mode back), written
        into ``out`` (R, I_1 ... I_{N-1})."""
        suffixes = self._kr_suffixes()
        R = drows[0].shape[0]
        dK = drows[-1]
        scratch = np.empty(out.size)
        for k in range(len(drows) - 2, -1, -1):
            rows = self._rows_t[k + 1]
            shape = (R, rows.shape[1], dK.shape[1])
            last = out.reshape(shape) if k == 0 else np.empty(shape)
            np.multiply(rows[:, :, None], dK[:, None, :], out=last)
            term = scratch[: last.size].reshape(shape)
            np.multiply(drows[k][:, :, None], suffixes[k + 1][:, None, :], out=term)
            last += term
            dK = last.reshape(R, -1)
        if len(drows) == 1:
            out[...] = dK

    def _mttkrp_all_real(self, D: np.ndarray) -> list[np.ndarray]:
        """Every MTTKRP of ``D`` (mode-0 unfolding, (I_0, prod of the rest)) with the
        factors: mode 0 against the kept ``K``, the others by the dimension tree on
        ``A_0^T D``."""
        A = self.factors
        K = self._kr_suffixes()[0]
        return self._descend(D @ K.T, A[0].T @ D)

    def _real_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        A = self.factors
        R = A[0].shape[1]
        if self._stacked is None:
            K = self._kr_suffixes()[0]
            self._stacked = np.empty((2 * R, K.shape[1]))
            self._stacked[R:] = K
        S = self._stacked
        self._kr_direction_rows([np.ascontiguousarray(d.T) for d in dvalues[1:]], S[:R])
        L = np.concatenate([A[0], dvalues[0]], axis=1)
        I0, P = L.shape[0], S.shape[1]
        mask = self.mask.reshape(I0, P)
        A0t = np.ascontiguousarray(A[0].T)
        # Column chunks of D = mask * (L S): each stays in cache for its mask and both
        # GEMMs reading it, instead of four passes over a tensor-sized array.
        mode0 = np.zeros((I0, R))
        Y = np.empty((R, P))
        for lo, hi, D in _column_chunks(I0, P):
            np.matmul(L, S[:, lo:hi], out=D)
            D *= mask[:, lo:hi]
            mode0 += D @ S[R:, lo:hi].T
            np.matmul(A0t, D, out=Y[:, lo:hi])
        return self._descend(mode0, Y)

    def _descend(self, mode0: np.ndarray, Y: np.ndarray) -> list[np.ndarray]:
        """The all-mode MTTKRP from its mode-0 part and ``Y = A_0^T D`` (the dimension
        tree for the other modes)."""
        out: list = [mode0] + [None] * (len(self.factors) - 1)
        algebra._descend(Y, self.shape[1:], self.factors[1:], out, 1)
        return out

    def gradient(self) -> list[np.ndarray]:
        if self._fused is not None:
            return self._descend(*self._fused)
        if self._real() and not np.iscomplexobj(self.residual):
            return self._mttkrp_all_real(self.residual.reshape(self.factors[0].shape[0], -1))
        return algebra.mttkrp_all(self.residual, _conjugated(self.factors))

    def gn_product_flat(self, dflat: np.ndarray) -> np.ndarray | None:
        if not self._real():
            return None
        ends = np.cumsum([A.size for A in self.factors])
        dvalues = [d.reshape(A.shape) for d, A in zip(np.split(dflat, ends[:-1]),
                                                      self.factors)]
        return np.concatenate([p.ravel() for p in self._real_product(dvalues)])

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._real() and not any(np.iscomplexobj(d) for d in dvalues):
            return self._real_product([np.asarray(d, dtype=float) for d in dvalues])
        A = self.factors
        K, dK = _kr_direction(A[1:], [_numeric(d) for d in dvalues[1:]])
        D = np.concatenate([A[0], dvalues[0]], axis=1) @ np.concatenate([dK, K], axis=1).T
        D = D.reshape(self.shape)
        np.multiply(D, self.mask, out=D)
        return algebra.mttkrp_all(D, _conjugated(A))

    def blocks(self) -> list[np.ndarray]:
        if self._rows is not None:
            W = _leave_one_out(algebra.gramians(_conjugated(self.factors)))
            return [rho[:, None, None] * w if mean is None else mean * w
                    for rho, mean, w in zip(self._rows.fractions, self._rows.shared, W)]
        R = self.factors[0].shape[1]
        upper = np.triu_indices(R)
        pairs = [A[:, upper[0]] * np.conj(A[:, upper[1]]) if np.iscomplexobj(A)
                 else A[:, upper[0]] * A[:, upper[1]] for A in self.factors]
        sums = algebra.mttkrp_all(np.asarray(self.mask, dtype=float), pairs)
        return [_hermitian_blocks(S, R, upper) for S in sums]


class _LossCPDState(_MaskedCPDState):
    """A non-Gaussian loss on data held densely: the masked strategy with ``ell'(M)`` (zero
    at missing entries) as residual and the curvature ``c`` (zero at missing entries) as
    the mask, so that products are ``J^T diag(c) J v`` and the blocks exact. Fisher
    scoring keeps the full inner solve (``products_read_data`` False): truncated steps
    lead it to other, worse minima on hard losses (Bernoulli)."""

    products_read_data = False

    def __init__(self, loss: Loss, data: np.ndarray, mask: np.ndarray | None,
                 factors: Sequence[np.ndarray]) -> None:
        self.factors = list(factors)
        model = algebra.cpd_to_tensor(self.factors)
        self.shape = tuple(model.shape)
        if mask is None:  # the loss's totals: its sum without another pass where it can
            self.fval, self.residual, self.mask = loss.totals(model, data)
            return
        with np.errstate(all="ignore"):  # missing entries and points outside the domain
            value, slope, weight = (np.asarray(x, dtype=float)
                                    for x in loss.evaluate(model, data))
            self.fval = float(np.sum(value, where=mask))
        if mask is not None:
            slope = np.where(mask, slope, 0.0)
            weight = np.where(mask, weight, 0.0)
        self.residual = slope
        self.mask = weight


class _LossSampledCPDState(_SampledCPDState):
    """A non-Gaussian loss on the known entries as coordinates: ``ell'(M)`` as residual,
    the loss's curvature weighing the products and blocks (full inner solves, as
    :class:`_LossCPDState`)."""

    products_read_data = False

    def __init__(self, loss: Loss, data: KnownEntries, factors: Sequence[np.ndarray]) -> None:
        super().__init__(data.shape, data.index, None, factors)
        self.fval, self.residual, self.curvature = loss.totals(self.residual, data.vals)


def _loss_state(loss: Loss, data: LossData, factors: Sequence[np.ndarray]) -> TermState:
    if data.array is not None:
        return _LossCPDState(loss, data.array, data.mask, factors)
    assert data.known is not None
    return _LossSampledCPDState(loss, data.known, factors)


def _as_sampling(sampling: object, kind: str) -> ZeroSampling | None:
    if sampling is None or isinstance(sampling, ZeroSampling):
        return sampling
    if isinstance(sampling, dict):
        try:
            return ZeroSampling(**sampling)
        except (TypeError, ValueError) as err:
            raise ModelError(f"{kind} sampling: {err}") from None
    raise ModelError(f"{kind} sampling: expected an sdf.losses.ZeroSampling or a dict "
                     f"{{'zeros': n, 'seed': s}}, got {sampling!r}")


class _SparseEntries:
    """The entries of sparse data a non-Gaussian loss is fitted on: the stored ones, and
    with ``sampling`` a seeded uniform sample of the zeros weighted by (number of zeros)
    / (sample size); without it the zeros enter through the closed form of losses linear
    at zero (:attr:`sdf.losses.Loss.linear_at_zero`)."""

    def __init__(self, data: SparseTensor, sampling: ZeroSampling | None) -> None:
        self.shape = data.shape
        self.size = data.size
        self.nnz = data.nnz
        self.stored = data.vals
        index = [np.ascontiguousarray(c) for c in data.subs.T]
        vals, weights = data.vals, None
        if sampling is not None:
            zeros = _sample_zeros(data.linear_index, data.size, sampling)
            index = [np.concatenate([i, z]) for i, z in
                     zip(index, np.unravel_index(zeros, data.shape))]
            vals = np.concatenate([vals, np.zeros(zeros.size)])
            n_zero = data.size - data.nnz
            weights = np.concatenate([np.ones(data.nnz),
                                      np.full(zeros.size, n_zero / max(zeros.size, 1))])
        self.index, self.vals, self.weights = index, vals, weights
        self.sampled = sampling is not None

    def check(self, loss: Loss, place: str) -> None:
        values = self.stored if self.nnz == self.size else np.append(self.stored, 0.0)
        problem = loss.check_data(values)
        if problem is not None:
            raise ModelError(f"{place}: {problem}")

    def null_fval(self, loss: Loss) -> float:
        """The constant model's loss over every entry: the stored ones, and the zeros at
        once (the constant is the loss's null model of the data's mean)."""
        mean = float(np.sum(self.stored)) / self.size if self.size else 0.0
        null = loss.null_model(np.array([mean]))
        with np.errstate(all="ignore"):
            stored = float(np.sum(loss.value(np.full(self.nnz, null), self.stored)))
            zero = float(np.sum(loss.value(np.array([null]), np.zeros(1))))
        return stored + (self.size - self.nnz) * zero

    def state(self, loss: Loss, factors: Sequence[np.ndarray]) -> TermState:
        if self.sampled:
            return _WeightedLossState(loss, self, factors)
        return _ZeroLinearState(self, factors)


def _sample_zeros(stored: np.ndarray, size: int, sampling: ZeroSampling) -> np.ndarray:
    """``sampling.zeros`` distinct linear indices not in the sorted ``stored`` (all the
    zeros when there are fewer), drawn uniformly with ``sampling.seed``."""
    n_zero = size - stored.size
    want = min(int(sampling.zeros), n_zero)
    rng = np.random.default_rng(sampling.seed)
    if want == n_zero:
        return np.setdiff1d(np.arange(size, dtype=np.int64), stored, assume_unique=True)
    found = np.empty(0, dtype=np.int64)
    while found.size < want:
        draw = rng.integers(0, size, 2 * (want - found.size) + 16, dtype=np.int64)
        pos = np.minimum(np.searchsorted(stored, draw), max(stored.size - 1, 0))
        fresh = draw if stored.size == 0 else draw[stored[pos] != draw]
        found = np.union1d(found, fresh)
    return rng.choice(found, size=want, replace=False)


class _WeightedLossState(_SampledCPDState):
    """A loss on sampled entries of sparse data, each with its weight."""

    products_read_data = False  # a loss: full inner solves

    def __init__(self, loss: Loss, entries: _SparseEntries,
                 factors: Sequence[np.ndarray]) -> None:
        super().__init__(entries.shape, entries.index, None, factors)
        weights = entries.weights
        assert weights is not None
        with np.errstate(all="ignore"):
            value, slope, curvature = (np.asarray(x, dtype=float) for x in
                                       loss.evaluate(self.residual, entries.vals))
            self.fval = float(np.dot(weights, value))
        self.residual = weights * slope
        self.curvature = weights * curvature


class _ZeroLinearState(_SampledCPDState):
    """The Poisson deviance on the identity link (or Kullback-Leibler) of sparse data,
    exactly at O(nnz R): ``sum_stored (-x log mu + x log x - x)`` plus the model's sum
    over every entry, ``sum_r prod_n (sum_i A_n[i, r]) + size * eps``. The zeros add no
    curvature (they are linear in the model); the stored entries add the exact second
    derivative ``x / mu^2``. The model must be nonnegative everywhere: a point where a
    factor has a negative entry is outside the domain (``f = inf``).
    """

    products_read_data = False  # a loss: full inner solves

    def __init__(self, entries: _SparseEntries, factors: Sequence[np.ndarray]) -> None:
        super().__init__(entries.shape, entries.index, None, factors)
        x = entries.vals
        sums = [np.asarray(A).sum(axis=0) for A in self.factors]
        self._others = _leave_one_out([s[None, :] for s in sums])
        if any(np.any(np.asarray(A) < 0) for A in self.factors):
            self.fval = math.inf
            self.residual = np.zeros_like(x)
            self.curvature = np.zeros_like(x)
            return
        mu = self.residual + MEAN_EPS
        with np.errstate(divide="ignore", invalid="ignore"):
            xlogx = np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)
            stored = float(np.sum(xlogx - x - x * np.log(mu)))
        total = float(np.sum(math.prod(sums) if len(sums) > 1 else sums[0]))
        self.fval = stored + total + entries.size * MEAN_EPS
        self.residual = -x / mu
        self.curvature = x / (mu * mu)

    def gradient(self) -> list[np.ndarray]:
        return [g + o for g, o in zip(super().gradient(), self._others)]
