"""Low multilinear rank approximation term: data ≈ S ×_0 U_0 ×_1 U_1 ... ×_{N-1} U_{N-1}.

The module also holds the engine shared with :class:`sdf.terms.BTD`: a sum of Tucker
blocks ``M = sum_b S_b ×_n U_{b,n}``. Two evaluation strategies, chosen by the data type:

* full data (dense, sparse with true zeros, factored CPD/Tucker): the residual is never
  formed. ``f = (||T||^2 - 2 sum_b <P_b, S_b> + sum_{b,c} <S_c ×_n G_{bc,n}, S_b>) / 2``
  with the projections ``P_b = T ×_n U_{b,n}^T`` and the cross-Gramians
  ``G_{bc,n} = U_{b,n}^T U_{c,n}``. The data are read once per point (for ``P_b`` and
  ``K_{b,n} = unfold(T ×_{m≠n} U_{b,m}^T, n) unfold(S_b, n)^T``); the Gauss-Newton
  product uses the Gramians and the cross terms ``U_{b,m}^T dU_{c,m}`` only, so its cost
  does not depend on the data size beyond the ``I_n`` rows of the factors. The
  preconditioner gets the exact diagonal blocks: ``W_{b,n}`` per factor and
  ``kron(G_{bb,0}, ..., G_{bb,N-1})`` per core, the latter as the tuple of its Kronecker
  factors (inverted mode by mode). A scalar core block made Gauss-Newton crawl whenever
  the factors' Gramians were far from multiples of the identity, which they are as soon
  as the factors leave a balanced orthonormal start.
* incomplete data: everything from the known entries (cost O(nnz · prod R_n) per block).

Complex data, factors or cores: the model is holomorphic in them, so the gradient is
``J^H r`` and the Gauss-Newton product ``J^H J v``, both in complex arithmetic: the
formulas above with the "b" side of every product conjugated (``G_{bc,n} = U_{b,n}^H
U_{c,n}``, projections with ``conj(U_b)`` and ``conj(S_b)``); the blocks are Hermitian.

A non-Gaussian loss (:mod:`sdf.losses`) uses the known-entries strategy on every data
kind (dense data as coordinates of all their entries): the loss's derivative ``ell'(M)``
as residual, its curvature weighing the products and blocks (``J^T diag(c) J``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sdf import _multilinear as ml
from sdf import algebra
from sdf.errors import ModelError
from sdf.expr import Expr
from sdf.losses import Loss, LossLike
from sdf.numerics import ldexp
from sdf.tensors import KnownEntries, Tensor
from sdf.terms._base import (Block, DataTerm, RefBuilder, Structure, TermState, _cancels,
                             _exponent_of)

__all__ = ["LMLRA"]


Tucker = tuple[list[np.ndarray], np.ndarray]  # (factors U_0..U_{N-1}, core S)


# --------------------------------------------------------------------- multilinear helpers
def _dual_leave_one_out(
    X: np.ndarray, dX: np.ndarray, mats: Sequence[np.ndarray], dmats: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], np.ndarray]:
    """First-order parts of ``(X + e dX) ×_m (mats[m] + e dmats[m])``.

    Returns the parts over every mode but ``n`` (for each n) and over all modes.
    """
    out: list[np.ndarray] = [dX] * X.ndim

    def step(Y: np.ndarray, dY: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        return (ml.mode_product(Y, mats[m], m),
                ml.mode_product(dY, mats[m], m) + ml.mode_product(Y, dmats[m], m))

    def descend(Y: np.ndarray, dY: np.ndarray, modes: list[int]) -> None:
        if len(modes) == 1:
            out[modes[0]] = dY
            return
        half = len(modes) // 2
        for keep, drop in ((modes[:half], modes[half:]), (modes[half:], modes[:half])):
            Z, dZ = Y, dY
            for m in drop:
                Z, dZ = step(Z, dZ, m)
            descend(Z, dZ, keep)

    descend(X, dX, list(range(X.ndim)))
    _, full = step(X if X.ndim == 1 else ml.products(X, mats, range(1, X.ndim)), out[0], 0)
    return out, full


def _split(values: Sequence[Any], sizes: Sequence[int]) -> list[tuple[list[Any], Any]]:
    """Cut a flat list (factors then core, per block) into blocks of the given lengths."""
    blocks, k = [], 0
    for s in sizes:
        blocks.append((list(values[k : k + s - 1]), values[k + s - 1]))
        k += s
    return blocks


def _flatten(blocks: Sequence[Tucker]) -> list[Any]:
    return [x for U, S in blocks for x in (*U, S)]


class _FullTuckerSumState(TermState):
    """A sum of Tucker blocks on full data (see the module docstring)."""

    def __init__(self, data: Tensor, blocks: Sequence[Tucker]) -> None:
        self.blocks_ = [(list(U), S) for U, S in blocks]
        nb = len(blocks)
        N = blocks[0][1].ndim
        # Complex values: J^H in complex arithmetic, the "b" side of every product
        # conjugated (G = U_b^H U_c, projections with conj(U_b), conj(S_b)).
        self._conj = _conjugated_blocks(self.blocks_)
        # G[b][c][n] = U_{b,n}^T U_{c,n}
        self.G = [[[Ub.T @ Uc for Ub, Uc in zip(self._conj[b][0], blocks[c][0])]
                   for c in range(nb)] for b in range(nb)]
        self.W: list[list[list[np.ndarray]]] = [[[] for _ in range(nb)] for _ in range(nb)]
        model_sq, inner = 0.0, 0.0
        self.core_grads: list[np.ndarray] = []
        self.factor_grads: list[list[np.ndarray]] = []
        for b, (Ub, Sb) in enumerate(self._conj):
            P, K = data.project_tucker(Ub, Sb)  # the one pass over the data for block b
            gS = -P
            gU = [-Kn for Kn in K]
            inner += _real_vdot(P, Sb)
            for c, (Uc, Sc) in enumerate(blocks):
                Y = ml.leave_one_out(Sc, self.G[b][c])
                # (R_{c,n}, R_{b,n})
                self.W[b][c] = [ml.contract_others(Y[n], Sb, n) for n in range(N)]
                H = ml.mode_product(Y[0], self.G[b][c][0], 0)
                gS = gS + H
                model_sq += _real_vdot(H, Sb)
                for n in range(N):
                    gU[n] = gU[n] + Uc[n] @ self.W[b][c][n]
            self.core_grads.append(gS)
            self.factor_grads.append(gU)
        self.fval = 0.5 * max(data.norm_squared() - 2.0 * inner + model_sq, 0.0)

    def gradient(self) -> list[np.ndarray]:
        return _flatten(list(zip(self.factor_grads, self.core_grads)))

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        blocks = self.blocks_
        dblocks = _split(dvalues, [len(U) + 1 for U, _ in blocks])
        out: list[Tucker] = []
        dtype = _value_type([*_flatten(blocks), *dvalues])
        for b, (Ub, Sb) in enumerate(self._conj):
            oU = [np.zeros(U.shape, dtype=dtype) for U in Ub]
            oS = np.zeros(Sb.shape, dtype=dtype)
            for c, ((Uc, Sc), (dUc, dSc)) in enumerate(zip(blocks, dblocks)):
                D = [U.T @ dU for U, dU in zip(Ub, dUc)]
                E, full = _dual_leave_one_out(Sc, dSc, self.G[b][c], D)
                oS += full
                for n in range(len(Ub)):
                    oU[n] += dUc[n] @ self.W[b][c][n] + Uc[n] @ ml.contract_others(E[n], Sb, n)
            out.append((oU, oS))
        return _flatten(out)

    def blocks(self) -> list[Block]:
        out: list[Block] = []
        for b, (Ub, _) in enumerate(self.blocks_):
            out.extend(self.W[b][b])
            out.append(tuple(self.G[b][b]))  # the core's exact block kron(G_0, ..., G_{N-1})
        return out


def _conjugated_blocks(blocks: list[Tucker]) -> list[Tucker]:
    """The blocks with conjugated factors and cores (the same list when all are real)."""
    if not any(np.iscomplexobj(x) for x in _flatten(blocks)):
        return blocks
    return [([np.conj(U) for U in Ub], np.conj(Sb)) for Ub, Sb in blocks]


def _real_vdot(X: np.ndarray, Y: np.ndarray) -> float:
    """``sum(X * Y)``, real part (``X`` holds the conjugated side for complex values)."""
    if np.iscomplexobj(X) or np.iscomplexobj(Y):
        return float(np.real(np.sum(X * Y)))
    return float(np.vdot(X, Y))


def _value_type(arrays: Sequence[Any]) -> np.dtype[Any]:
    """complex128 when any of the arrays is complex, else float64."""
    return np.dtype(np.complex128 if any(np.iscomplexobj(a) for a in arrays) else np.float64)


class _SampledTuckerSumState(TermState):
    """A sum of Tucker blocks on incomplete data: known entries only. ``curvature``, when
    set (one weight per entry), weighs the products and blocks: ``J^T diag(c) J``."""

    curvature: np.ndarray | None = None

    def __init__(self, data: KnownEntries, blocks: Sequence[Tucker]) -> None:
        self.data = data
        self.blocks_ = [(list(U), S) for U, S in blocks]
        subs = data.subs
        self._complex = any(np.iscomplexobj(x) for x in _flatten(self.blocks_))
        self.rows = [[U[subs[:, n]] for n, U in enumerate(Ub)] for Ub, _ in blocks]
        self.z = [ml.rows_leave_one_out(S, rows) for (_, S), rows in zip(blocks, self.rows)]
        model = sum(np.einsum("er,er->e", rows[0], z[0]) for rows, z in zip(self.rows, self.z))
        self.residual = model - data.vals
        if np.iscomplexobj(self.residual):
            self.fval = 0.5 * float(np.vdot(self.residual, self.residual).real)
        else:
            self.fval = 0.5 * float(self.residual @ self.residual)

    def _scatter(self, weights: np.ndarray) -> list[np.ndarray]:
        """``J^H weights``: the rows and core products conjugated for complex values."""
        out: list[np.ndarray] = []
        conj = np.conj if self._complex else (lambda x: x)
        for (_, S), rows, z in zip(self.blocks_, self.rows, self.z):
            for n, zn in enumerate(z):
                out.append(np.asarray(self.data.mode_indicator(n)
                                      @ (weights[:, None] * conj(zn))))
            out.append(ml.rows_outer_sum(weights, [conj(r) for r in rows], S.shape))
        return out

    def gradient(self) -> list[np.ndarray]:
        return self._scatter(self.residual)

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        subs = self.data.subs
        jv = np.zeros(len(self.residual), dtype=_value_type([*_flatten(self.blocks_),
                                                             *dvalues]))
        dblocks = _split(dvalues, [len(U) + 1 for U, _ in self.blocks_])
        for (dU, dS), rows, z in zip(dblocks, self.rows, self.z):
            for n, zn in enumerate(z):
                jv += np.einsum("er,er->e", dU[n][subs[:, n]], zn)
            jv += ml.rows_values(dS, rows)
        if self.curvature is not None:
            jv *= self.curvature
        return self._scatter(jv)

    def blocks(self) -> list[Block]:
        out: list[Block] = []
        for (_, S), rows, z in zip(self.blocks_, self.rows, self.z):
            for n, zn in enumerate(z):
                R = zn.shape[1]
                acc = np.zeros((self.data.shape[n], R * R), dtype=zn.dtype)
                ind = self.data.mode_indicator(n)
                for sl in ml.chunks(zn.shape[0], R * R):
                    q = zn[sl]
                    # Hermitian blocks sum_e q_r conj(q_s) for complex values.
                    outer = q[:, :, None] * (np.conj(q) if self._complex else q)[:, None, :]
                    if self.curvature is not None:
                        outer *= self.curvature[sl, None, None]
                    acc += np.asarray(ind[:, sl] @ outer.reshape(-1, R * R))
                out.append(acc.reshape(-1, R, R))
            sq = np.prod([np.einsum("er,er->e", r, r) if not self._complex
                          else np.einsum("er,er->e", r, np.conj(r)).real for r in rows], axis=0)
            if self.curvature is not None:
                sq = sq * self.curvature
            out.append(float(sq.sum()) / S.size)
        return out


class _LossTuckerSumState(_SampledTuckerSumState):
    """A sum of Tucker blocks under a non-Gaussian loss, on the known entries: ``ell'(M)``
    as residual, the loss's curvature weighing products and blocks."""

    def __init__(self, loss: Loss, data: KnownEntries, blocks: Sequence[Tucker]) -> None:
        super().__init__(data, blocks)
        self.fval, self.residual, self.curvature = loss.totals(self.residual + data.vals,
                                                               data.vals)


def _prepare_tucker_sum(data: Tensor, blocks: Sequence[Tucker],
                        term: DataTerm | None = None) -> TermState:
    """The state of ``sum_b S_b ×_n U_{b,n}`` against ``data``: on the known entries when
    only some are known (or under the non-Gaussian loss of ``term``), else through the
    data's projections."""
    if term is not None and not term.loss.is_gaussian:
        return _LossTuckerSumState(term.loss, term.loss_data().entries(), blocks)
    entries = data.known_entries()
    if entries is not None:
        return _SampledTuckerSumState(entries, blocks)
    return _FullTuckerSumState(data, blocks)


def _tucker_sum_expansion_size(blocks: Sequence[Tucker]) -> float:
    """The size of the terms whose sum is ``||M||^2`` (see
    :func:`sdf.terms.cpd._cpd_expansion_size`): per block, the sum of their sizes within
    it (``<|S|, |S| x_n |U_n^H U_n|>``), and the blocks added as norms."""
    total = 0.0
    for U, S in blocks:
        S_abs = np.abs(S)
        H = ml.products(S_abs, [np.abs(algebra._ct(u) @ u) for u in U], range(S.ndim))
        total += math.sqrt(max(float(np.vdot(S_abs, H).real), 0.0))
    return total * total


def _iterate_tucker_sum_fval(term: DataTerm, blocks: Sequence[Tucker], fval: float) -> float:
    """``fval`` of a sum of Tucker blocks as the iterations read it (see
    ``DataTerm.iterate_fval``; shared with BTD)."""
    if fval <= 0.0 or _cancels(fval, term.data_norm_squared,
                               _tucker_sum_expansion_size(blocks)):
        return _exact_tucker_sum_fval(term, blocks, fval)
    return fval


def _exact_tucker_sum_fval(term: DataTerm, blocks: Sequence[Tucker], fval: float) -> float:
    """``fval`` of a sum of Tucker blocks recomputed from the residual where the norms'
    expansion has lost its digits (shared with BTD; see ``DataTerm.exact_fval``)."""
    # Below ~1e-6 of ||T||^2, f = (||T||^2 - 2<T,M> + ||M||^2)/2 has lost digits, and so
    # it has below ~1e-6 of the sizes of the terms of ||M||^2 (far above ||M||^2 where
    # blocks or core entries cancel); data with missing entries are already evaluated
    # entry by entry.
    if (fval > 1e-6 * max(term.data_norm_squared, _tucker_sum_expansion_size(blocks))
            or not term.loss.is_gaussian):
        return fval
    array = term.data.dense_view()
    if array is None:
        return fval
    residual = -array
    for U, S in blocks:
        residual = residual + algebra.tucker_to_tensor(list(U), S)
    return 0.5 * float(np.vdot(residual, residual).real)


def _check_tucker_block(where: str, shape: tuple[int, ...], factors: Sequence[Expr],
                       core: Expr, what: str = "an LMLRA") -> None:
    """Raise ModelError if factors/core don't fit data of this shape (shared with BTD)."""
    N = len(shape)
    if len(factors) != N:
        raise ModelError(
            f"{where}: {len(factors)} factors given but the data has {N} modes "
            f"(shape {shape}); {what} needs one factor per mode, then the core"
        )
    for n, expr in enumerate(factors):
        place = f"{where}, factor {n} ({expr.label()!r})"
        if len(expr.shape) != 2:
            raise ModelError(f"{place}: expected a matrix (I_n, R_n), got shape {expr.shape}")
        if expr.shape[0] != shape[n]:
            raise ModelError(
                f"{place}: expected {shape[n]} rows to match mode {n} of the data, "
                f"got {expr.shape[0]}"
            )
    want = tuple(int(e.shape[1]) for e in factors)
    place = f"{where}, core ({core.label()!r})"
    if len(core.shape) != N:
        raise ModelError(
            f"{place}: expected a core with {N} modes (one per factor), got shape {core.shape}"
        )
    if tuple(core.shape) != want:
        raise ModelError(
            f"{place}: expected shape {want} to match the factors' columns, got {core.shape}"
        )


class LMLRA(DataTerm):
    r"""Low multilinear rank approximation (Tucker model) of a data set.

    .. math:: T \approx S \times_0 U_0 \times_1 U_1 \cdots \times_{N-1} U_{N-1},
       \qquad M_{i_0 \dots i_{N-1}} = \sum_{r} S_{r_0 \dots r_{N-1}}
       \prod_n (U_n)_{i_n r_n}.

    Full data (dense, sparse, CPD/Tucker-structured) are read through the projections
    ``T ×_n U_n^T`` once per point; the Gauss-Newton product uses the Gramians
    ``U_n^T U_n`` only. Incomplete data use the known entries only. The model is invariant
    under ``U_n -> U_n A_n``, ``S -> S ×_n A_n^{-1}``: compare subspaces, not factors.
    Start from well-conditioned factors (orthonormal ones with the projected core
    ``T ×_n U_n^T``, or an MLSVD): from unbalanced random starts Gauss-Newton can stall in
    a swamp where factors become nearly rank-deficient while the core grows.

    Parameters
    ----------
    data : array_like, sdf.tensors.Tensor or xarray.DataArray
        Any data ``sdf.tensors.as_tensor`` accepts; NaN entries are missing.
    factors : sequence of Expr or array_like, each of shape (I_n, R_n)
        One factor per mode.
    core : Expr or array_like of shape (R_0, ..., R_{N-1})
    weight, relweight : float, optional
        See :class:`sdf.terms.Term` (default: Tensorlab's relative weight convention).
    loss : str, dict or sdf.losses.Loss, default "gaussian"
        See :mod:`sdf.losses`; a non-Gaussian loss works on the known entries (cost
        O(entries · prod R_n)).

    Examples
    --------
    >>> import numpy as np, sdf
    >>> rng = np.random.default_rng(0)
    >>> U = [np.linalg.qr(rng.standard_normal((n, 2)))[0] for n in (6, 5, 4)]
    >>> S = rng.standard_normal((2, 2, 2))
    >>> T = np.einsum("abc,ia,jb,kc->ijk", S, *U)
    >>> Q = [np.linalg.qr(rng.standard_normal((n, 2)))[0] for n in (6, 5, 4)]  # a start
    >>> u = [sdf.Variable(q) for q in Q]
    >>> s = sdf.Variable(np.einsum("ijk,ia,jb,kc->abc", T, *Q))
    >>> result = sdf.Model(T=sdf.LMLRA(T, u, s)).fit(max_iter=100)
    >>> bool(result.relerr["T"] < 1e-6)
    True
    """

    kind = "LMLRA"
    spec_key = "lmlra"
    complex_values = True

    def __init__(
        self,
        data: Any,
        factors: Sequence[Any],
        core: Any,
        weight: float | None = None,
        relweight: float | None = None,
        loss: LossLike = "gaussian",
    ) -> None:
        if isinstance(factors, np.ndarray) or not isinstance(factors, Sequence):
            raise ModelError(f"{self.kind}: factors must be a list of expressions, one per mode")
        super().__init__(data, [*factors, core], weight=weight, relweight=relweight,
                         loss=loss)

    @property
    def core_shape(self) -> tuple[int, ...]:
        """The multilinear rank ``(R_0, ..., R_{N-1})``."""
        return tuple(self.inputs[-1].shape)

    def check(self, where: str) -> None:
        _check_tucker_block(where, self.data.shape, self.inputs[:-1], self.inputs[-1])
        super().check(where)

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        return _prepare_tucker_sum(self.data, _split(values, [len(values)]), self)

    def iterate_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        return _iterate_tucker_sum_fval(self, _split(values, [len(values)]), fval)

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        return _exact_tucker_sum_fval(self, _split(values, [len(values)]), fval)

    def describe_shape(self) -> str:
        return f"core {self.core_shape}"

    def mode_factors(self) -> list[Expr]:
        return list(self.inputs[:-1])

    def structure(self, values: Sequence[np.ndarray]) -> Structure:
        return Structure("LMLRA", list(values[:-1]), core=values[-1])

    def model_log2_norm(self, values: Sequence[np.ndarray]) -> float | None:
        if self.loss.link != "identity":
            return None  # the model is not on the data's scale
        shifts = [_exponent_of(A) for A in values]
        U = [ldexp(A, -k) for A, k in zip(values[:-1], shifts)]
        S = ldexp(values[-1], -shifts[-1])
        H = ml.products(S, [u.conj().T @ u for u in U], range(S.ndim))
        norm = math.sqrt(max(float(np.vdot(S, H).real), 0.0))
        return math.log2(norm) + sum(shifts) if norm > 0 else -math.inf

    @classmethod
    def _spec_inputs(cls, value: Any, refs: RefBuilder, path: str) -> tuple[Any, ...]:
        inputs = refs(value, path)
        return inputs[:-1], inputs[-1]
