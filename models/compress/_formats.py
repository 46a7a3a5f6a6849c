"""Tensorized weight matrices: TT-matrix, CP-matrix and Tucker-matrix (private).

A weight ``W`` of shape (out, in) with ``out = o_1 ... o_d`` and ``in = i_1 ... i_d``
(row-major mixed radix: output index ``y = (y_1, ..., y_d)``, ``y_1`` most significant;
the same for the input index ``x``) is stored in one of three factored forms:

* TT-matrix: cores ``G_k`` of shape ``(r_{k-1}, o_k, i_k, r_k)``, ``r_0 = r_d = 1``::

      W[y, x] = G_1[:, y_1, x_1, :] @ G_2[:, y_2, x_2, :] @ ... @ G_d[:, y_d, x_d, :]

* CP-matrix (a sum of Kronecker products): factors ``A_k`` of shape ``(o_k, i_k, R)``::

      W[y, x] = sum_r prod_k A_k[y_k, x_k, r]

* Tucker-matrix: factors ``U_k`` (o_k, R_k), ``V_k`` (i_k, S_k), core
  ``(R_1, ..., R_d, S_1, ..., S_d)``: the Tucker decomposition of the order-2d tensor
  ``W.reshape(o_1, ..., o_d, i_1, ..., i_d)``.

Here: the dense forms (for tests and fits), the forward passes that contract the factors
with an input batch one at a time (never forming W), the column gathers used by embedding
look-ups, parameter and MAC counts, and the alternating least squares fits of TT and CP
under a metric on the input side, ``||(W_hat - W) L||^2`` with ``L L^T = M`` (Tucker's:
:mod:`sdf.models.compress._tucker_als`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np
from scipy.linalg import cho_factor, cho_solve

__all__: list[str] = []


def _prod(sizes: Sequence[int]) -> int:
    return int(np.prod(sizes, dtype=np.int64)) if len(sizes) else 1


def paired_tensor(W: np.ndarray, out_sizes: Sequence[int], in_sizes: Sequence[int]
                  ) -> np.ndarray:
    """W (out, in) as the order-d tensor of shape ``(o_1 i_1, ..., o_d i_d)``."""
    d = len(out_sizes)
    T = W.reshape(*out_sizes, *in_sizes)
    perm = [p for k in range(d) for p in (k, d + k)]
    return T.transpose(perm).reshape([o * i for o, i in zip(out_sizes, in_sizes)])


def unpaired_matrix(T: np.ndarray, out_sizes: Sequence[int], in_sizes: Sequence[int]
                    ) -> np.ndarray:
    """Inverse of :func:`paired_tensor`."""
    d = len(out_sizes)
    T = T.reshape([s for pair in zip(out_sizes, in_sizes) for s in pair])
    perm = [2 * k for k in range(d)] + [2 * k + 1 for k in range(d)]
    return T.transpose(perm).reshape(_prod(out_sizes), _prod(in_sizes))


def digits(ids: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Mixed-radix digits (n, d) of the indices ``ids`` (first digit most significant)."""
    out = np.empty((ids.size, len(sizes)), dtype=np.intp)
    rest = ids.astype(np.intp).reshape(-1)
    for k in range(len(sizes) - 1, -1, -1):
        rest, out[:, k] = np.divmod(rest, sizes[k])
    return out


# ----------------------------------------------------------------------------- TT-matrix
def tt_dense(cores: Sequence[np.ndarray]) -> np.ndarray:
    """The matrix (out, in) of a TT-matrix."""
    osz = [G.shape[1] for G in cores]
    isz = [G.shape[2] for G in cores]
    out = np.ones((1, 1))
    for G in cores:
        a, o, i, b = G.shape
        out = out.reshape(-1, a) @ G.reshape(a, o * i * b)
    return unpaired_matrix(out.reshape([o * i for o, i in zip(osz, isz)]), osz, isz)


def tt_apply(cores: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """``x @ W.T`` for x (n, in), core by core: state (n, o_<k, r_k, i_>k)."""
    n = x.shape[0]
    Z = x.reshape(n, 1, 1, -1)  # (n, O_<, a, rest of the input)
    for G in cores:
        a, o, i, b = G.shape
        P, rest = Z.shape[1], Z.shape[3] // i
        Z = Z.reshape(n, P, a, i, rest).transpose(0, 1, 4, 2, 3).reshape(-1, a * i)
        Gm = G.transpose(0, 2, 1, 3).reshape(a * i, o * b)
        Z = (Z @ Gm).reshape(n, P, rest, o, b).transpose(0, 1, 3, 4, 2)
        Z = Z.reshape(n, P * o, b, rest)
    return Z.reshape(n, -1)


def tt_macs(cores: Sequence[np.ndarray]) -> int:
    """Multiplications per sample of :func:`tt_apply`: sum_k O_<k r_{k-1} i_k o_k r_k I_>k."""
    isz = [G.shape[2] for G in cores]
    total, P = 0, 1
    for k, G in enumerate(cores):
        a, o, i, b = G.shape
        total += P * a * i * o * b * _prod(isz[k + 1:])
        P *= o
    return int(total)


def _groups(values: np.ndarray, size: int) -> list[np.ndarray]:
    """Positions of each value 0..size-1 in ``values`` (one stable sort)."""
    order = np.argsort(values, kind="stable")
    bounds = np.searchsorted(values[order], np.arange(size + 1))
    return [order[bounds[v]:bounds[v + 1]] for v in range(size)]


def tt_columns(cores: Sequence[np.ndarray], x_digits: np.ndarray) -> np.ndarray:
    """Columns ``W[:, x]`` (as rows, shape (n, out)) from per-core slices ``G_k[:, :, x_k, :]``.

    The ids are grouped by their k-th digit, so each core costs one matrix product per
    digit value (the slices are never copied per id)."""
    n = x_digits.shape[0]
    Z = np.ones((n, 1, 1))  # (n, O_<, a)
    for k, G in enumerate(cores):
        a, o, i, b = G.shape
        P = Z.shape[1]
        out = np.empty((n, P * o, b))
        for v, sel in enumerate(_groups(x_digits[:, k], i)):
            if sel.size:
                out[sel] = (Z[sel].reshape(-1, a) @ G[:, :, v, :].reshape(a, o * b)
                            ).reshape(sel.size, P * o, b)
        Z = out
    return Z.reshape(n, -1)


def tt_rank_caps(out_sizes: Sequence[int], in_sizes: Sequence[int]) -> list[int]:
    """Largest useful TT ranks r_1..r_{d-1}: min of the left and right unfolding sizes."""
    m = [o * i for o, i in zip(out_sizes, in_sizes)]
    return [min(_prod(m[:k + 1]), _prod(m[k + 1:])) for k in range(len(m) - 1)]


def tt_params_at(out_sizes: Sequence[int], in_sizes: Sequence[int], rank: int) -> int:
    """Parameters of a TT-matrix with every rank capped at ``rank``."""
    r = [1] + [min(rank, c) for c in tt_rank_caps(out_sizes, in_sizes)] + [1]
    return int(sum(r[k] * o * i * r[k + 1] for k, (o, i) in enumerate(zip(out_sizes, in_sizes))))


# ----------------------------------------------------------------------------- CP-matrix
def cp_dense(factors: Sequence[np.ndarray]) -> np.ndarray:
    """The matrix (out, in) of a CP-matrix (factors (o_k, i_k, R))."""
    osz = [A.shape[0] for A in factors]
    isz = [A.shape[1] for A in factors]
    R = factors[0].shape[2]
    out = np.ones((1, R))
    for A in factors:
        out = (out[:, None, :] * A.reshape(1, -1, R)).reshape(-1, R)
    return unpaired_matrix(out.sum(axis=1), osz, isz)


def cp_apply(factors: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """``x @ W.T`` for x (n, in): one batched product per factor, state (R, n, O_<, I_>=k)."""
    n = x.shape[0]
    R = factors[0].shape[2]
    Z = x.reshape(1, n, 1, -1)
    for A in factors:
        o, i, _ = A.shape
        r0, P, rest = Z.shape[0], Z.shape[2], Z.shape[3] // i
        Z = Z.reshape(r0, n, P, i, rest).transpose(0, 1, 2, 4, 3).reshape(r0, -1, i)
        Z = Z @ A.transpose(2, 1, 0)  # (R, n P rest, o), broadcast over R at the start
        Z = Z.reshape(R, n, P, rest, o).transpose(0, 1, 2, 4, 3).reshape(R, n, P * o, rest)
    return Z.sum(axis=0).reshape(n, -1)


def cp_macs(factors: Sequence[np.ndarray]) -> int:
    """Multiplications per sample of :func:`cp_apply`: sum_k R O_<k i_k o_k I_>k (the final
    sum over the R terms adds R * out additions, not counted)."""
    isz = [A.shape[1] for A in factors]
    total, P = 0, 1
    for k, A in enumerate(factors):
        o, i, R = A.shape
        total += R * P * i * o * _prod(isz[k + 1:])
        P *= o
    return int(total)


def cp_columns(factors: Sequence[np.ndarray], x_digits: np.ndarray) -> np.ndarray:
    """Columns ``W[:, x]`` as rows (n, out): ``sum_r kron_k A_k[:, x_k, r]``."""
    n = x_digits.shape[0]
    Z = np.ones((n, 1, factors[0].shape[2]))
    for k, A in enumerate(factors):
        S = A.transpose(1, 0, 2)[x_digits[:, k]]  # (n, o_k, R)
        Z = (Z[:, :, None, :] * S[:, None, :, :]).reshape(n, -1, S.shape[2])
    return Z.sum(axis=2)


# ----------------------------------------------------------------------------- Tucker-matrix
def tucker_dense(U: Sequence[np.ndarray], V: Sequence[np.ndarray], core: np.ndarray
                 ) -> np.ndarray:
    """The matrix (out, in) of a Tucker-matrix."""
    T = core
    for k, F in enumerate([*U, *V]):
        T = np.moveaxis(np.tensordot(F, T, axes=(1, k)), 0, k)
    return T.reshape(_prod([u.shape[0] for u in U]), _prod([v.shape[0] for v in V]))


def tucker_apply(U: Sequence[np.ndarray], V: Sequence[np.ndarray], core: np.ndarray,
                 x: np.ndarray) -> np.ndarray:
    """``x @ W.T``: x ×_k V_k^T (input modes), the core, then ×_k U_k (output modes)."""
    n = x.shape[0]
    Z = x.reshape(n, 1, -1)  # (n, S_<k, I_>=k)
    for Vk in V:
        i, s = Vk.shape
        P, rest = Z.shape[1], Z.shape[2] // i
        Z = np.moveaxis(Z.reshape(n, P, i, rest), 2, 3) @ Vk  # (n, P, rest, s)
        Z = np.moveaxis(Z, 3, 2).reshape(n, P * s, rest)
    Rs = _prod([u.shape[1] for u in U])
    Z = Z.reshape(n, -1) @ core.reshape(Rs, -1).T  # (n, R_1 ... R_d)
    Z = Z.reshape(n, 1, -1)  # (n, O_<k, R_>=k)
    for Uk in U:
        o, r = Uk.shape
        P, rest = Z.shape[1], Z.shape[2] // r
        Z = np.moveaxis(Z.reshape(n, P, r, rest), 2, 3) @ Uk.T  # (n, P, rest, o)
        Z = np.moveaxis(Z, 3, 2).reshape(n, P * o, rest)
    return Z.reshape(n, -1)


def tucker_macs(U: Sequence[np.ndarray], V: Sequence[np.ndarray], core: np.ndarray) -> int:
    """Multiplications per sample of :func:`tucker_apply`."""
    isz = [v.shape[0] for v in V]
    rsz = [u.shape[1] for u in U]
    total, P = 0, 1
    for k, Vk in enumerate(V):
        i, s = Vk.shape
        total += P * i * s * _prod(isz[k + 1:])
        P *= s
    total += int(core.size)
    P = 1
    for k, Uk in enumerate(U):
        o, r = Uk.shape
        total += P * r * o * _prod(rsz[k + 1:])
        P *= o
    return int(total)


# ----------------------------------------------------------------------------- ALS fits
@dataclass(frozen=True)
class Metric:
    """The input-side metric ``M`` (in x in) of ``||(W_hat - W) L||^2``, ``L L^T = M``:
    ``full`` (a matrix) or ``diag`` (its diagonal), exactly one given. ``factored``
    ``(s, R)`` may say ``full = diag(s) + R^T R`` (R of k rows, e.g. fewer calibration
    rows than inputs): products with M then go through R when that is cheaper."""

    full: np.ndarray | None = None
    diag: np.ndarray | None = None
    factored: tuple[np.ndarray, np.ndarray] | None = None

    def apply(self, E: np.ndarray) -> np.ndarray:
        """``E M``."""
        if self.full is None:
            assert self.diag is not None
            return E * self.diag
        if self.factored is not None and 2 * self.factored[1].shape[0] < E.shape[1]:
            scale, root = self.factored
            return E * scale + (E @ root.T) @ root
        return E @ self.full

    def value(self, E: np.ndarray) -> float:
        """``trace(E M E^T)`` (through the root when factored: one product with it)."""
        return float(self.row_values(E).sum())

    def row_values(self, E: np.ndarray) -> np.ndarray:
        """``e M e^T`` for every row e of E (through the root when factored)."""
        if self.factored is not None and self.factored[1].shape[0] < E.shape[1]:
            scale, root = self.factored
            ER = E @ root.T
            return np.einsum("yx,yx,x->y", E, E, scale) + np.einsum("yj,yj->y", ER, ER)
        return np.einsum("yx,yx->y", E, self.apply(E))

    @cached_property
    def _root_spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.factored is not None
        _, sv, Vt = np.linalg.svd(self.factored[1], full_matrices=False)
        return sv, Vt

    def strong_directions(self, most: int) -> tuple[np.ndarray, float]:
        """The factored metric's strong directions (at most ``most``): rows ``s_j v_j`` of
        the root's SVD with ``s_j^2`` above four times the median, and the energy of the
        others per input, ``sum_rest s_j^2 / in``."""
        sv, Vt = self._root_spectrum
        strong = min(most, int(np.sum(sv ** 2 > 4 * np.median(sv ** 2))))
        return sv[:strong, None] * Vt[:strong], float(np.sum(sv[strong:] ** 2)) / Vt.shape[1]

    @cached_property
    def single(self) -> Metric:
        """The metric in single precision."""
        def cast(A: np.ndarray | None) -> np.ndarray | None:
            return None if A is None else A.astype(np.float32)
        return Metric(cast(self.full), cast(self.diag), None if self.factored is None else
                      (self.factored[0].astype(np.float32), self.factored[1].astype(np.float32)))


def _solve_spd(N: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``N^{-1} B`` for a (stack of) symmetric positive semidefinite N: one Cholesky
    factorisation and two triangular solves per matrix, else (semidefinite) the
    minimum-norm least-squares solution."""
    if N.ndim == 2:
        try:
            return cho_solve(cho_factor(N, lower=True, check_finite=False), B,
                             check_finite=False)
        except np.linalg.LinAlgError:
            return np.linalg.pinv(N, hermitian=True) @ B
    return np.stack([_solve_spd(Nj, Bj) for Nj, Bj in zip(N, B)])


def _tt_left(cores: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Cores before k contracted: (O_<k, I_<k, r_{k-1})."""
    L = np.ones((1, 1, 1))
    for G in cores[:k]:
        a, o, i, b = G.shape
        L = np.einsum("yxa,aoib->yoxib", L, G).reshape(L.shape[0] * o, L.shape[1] * i, b)
    return L


def _tt_right(cores: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Cores after k contracted: (r_k, O_>k, I_>k)."""
    R = np.ones((1, 1, 1))
    for G in reversed(cores[k + 1:]):
        a, o, i, b = G.shape
        R = np.einsum("aoib,byx->aoyix", G, R).reshape(a, o * R.shape[1], i * R.shape[2])
    return R


def _tt_normal_full(PL: np.ndarray, PR: np.ndarray, M: np.ndarray, i: int) -> np.ndarray:
    """``N[(a,k,b),(c,l,d)] = sum PL[x,a,z,c] PR[b,p,d,q] M[(x,k,p),(z,l,q)]`` as two plain
    matrix products (the cheaper side first), for ``PL`` (Il, a, Il, a), ``PR`` (b, Ir, b,
    Ir) and the metric ``M`` (Il i Ir, Il i Ir)."""
    Il, a = PL.shape[:2]
    b, Ir = PR.shape[:2]
    M6 = M.reshape(Il, i, Ir, Il, i, Ir)
    PLm = PL.transpose(1, 3, 0, 2).reshape(a * a, Il * Il)
    PRm = PR.transpose(1, 3, 0, 2).reshape(Ir * Ir, b * b)
    left = Il * Il * (a * a * i * i * Ir * Ir) + Ir * Ir * (a * a * i * i * b * b)
    right = Ir * Ir * (i * i * Il * Il * b * b) + Il * Il * (a * a * i * i * b * b)
    if left <= right:
        T = PLm @ M6.transpose(0, 3, 1, 4, 2, 5).reshape(Il * Il, -1)  # (ac, kl, pq)
        N = T.reshape(-1, Ir * Ir) @ PRm
    else:
        T = M6.transpose(1, 4, 0, 3, 2, 5).reshape(-1, Ir * Ir) @ PRm  # (kl, xz, bd)
        T = T.reshape(i * i, Il * Il, b * b).transpose(1, 0, 2).reshape(Il * Il, -1)
        N = PLm @ T
    n = a * i * b
    return N.reshape(a, a, i, i, b, b).transpose(0, 2, 4, 1, 3, 5).reshape(n, n)


def _tt_assemble(L: np.ndarray, D: np.ndarray, R: np.ndarray) -> np.ndarray:
    """The matrix (out, in) of the TT-matrix with core k = D (a, o, i, b) between the
    contracted cores ``L`` (O_<k, I_<k, a) and ``R`` (b, O_>k, I_>k), the cheaper side
    multiplied first."""
    Ol, Il, a = L.shape
    _, o, i, b = D.shape
    Or, Ir = R.shape[1:]
    if a * b * o * i * Or * Ir + Ol * Il * a * o * i * Or * Ir <= (
            Ol * Il * a * o * i * b + Ol * Il * o * i * b * Or * Ir):
        T = D.reshape(a * o * i, b) @ R.reshape(b, Or * Ir)
        T = L.reshape(Ol * Il, a) @ T.reshape(a, -1)
    else:
        T = L.reshape(Ol * Il, a) @ D.reshape(a, o * i * b)
        T = T.reshape(-1, b) @ R.reshape(b, Or * Ir)
    T = T.reshape(Ol, Il, o, i, Or, Ir).transpose(0, 2, 4, 1, 3, 5)
    return T.reshape(Ol * o * Or, Il * i * Ir)


def _tt_project(F: np.ndarray, L: np.ndarray, R: np.ndarray, o: int, i: int) -> np.ndarray:
    """The adjoint of :func:`_tt_assemble`: ``sum L[y<, x<, a] F[y, x] R[b, y>, x>]`` as
    a core (a, o, i, b), for F (out, in)."""
    Ol, Il, a = L.shape
    b, Or, Ir = R.shape
    F6 = F.reshape(Ol, o, Or, Il, i, Ir).transpose(0, 3, 1, 4, 2, 5).reshape(Ol * Il, -1)
    if a * Ol * Il * o * i * Or * Ir + a * o * i * Or * Ir * b <= (
            Ol * Il * o * i * Or * Ir * b + a * Ol * Il * o * i * b):
        T = L.reshape(Ol * Il, a).T @ F6
        return (T.reshape(-1, Or * Ir) @ R.reshape(b, Or * Ir).T).reshape(a, o, i, b)
    T = F6.reshape(-1, Or * Ir) @ R.reshape(b, Or * Ir).T
    return (L.reshape(Ol * Il, a).T @ T.reshape(Ol * Il, -1)).reshape(a, o, i, b)


def _identity_weight(L: np.ndarray, R: np.ndarray, metric: Metric) -> float | None:
    """``w`` when the weight term of the normal matrix is ``w I``: a factored metric with a
    uniform diagonal and orthonormal fixed cores (as the sweeps keep them); else None."""
    if metric.factored is None:
        return None
    scale = metric.factored[0]
    Lm = L.reshape(-1, L.shape[2])
    Rm = R.reshape(R.shape[0], -1)
    if (np.ptp(scale) > 0 or not np.allclose(Lm.T @ Lm, np.eye(Lm.shape[1]), rtol=0, atol=1e-10)
            or not np.allclose(Rm @ Rm.T, np.eye(Rm.shape[0]), rtol=0, atol=1e-10)):
        return None
    return float(scale[0])


def _first_core_root_term(P: np.ndarray, R_in_first: np.ndarray, root: np.ndarray
                          ) -> np.ndarray:
    """``project(assemble(P) root^T root)`` for the first core P (1, o, i, b) and the
    cores after it as ``R_in_first`` (b, I_>k, O_>k): with the inputs ahead of the outputs
    the products with the root (j, i I_>k) are batched over o, no array is permuted."""
    _, o, i, b = P.shape
    Ir, Or = R_in_first.shape[1:]
    Rm = R_in_first.reshape(b, Ir * Or)
    T = (P.reshape(o * i, b) @ Rm).reshape(o, i * Ir, Or)
    F = root.T @ (root @ T)
    return (F.reshape(o * i, Ir * Or) @ Rm.T).reshape(1, o, i, b)


def _tt_core_pcg(core: np.ndarray, L: np.ndarray, R: np.ndarray, WM: np.ndarray,
                 metric: Metric, precondition: Callable[[np.ndarray], np.ndarray],
                 tol: float, max_iter: int) -> tuple[np.ndarray, bool]:
    """The core's least squares by preconditioned conjugate gradients from the current
    core, one run per output slice ``o`` (the slices share the normal matrix; columns of
    ``precondition``'s (a i b, o) argument), products with the normal matrix through the
    contracted cores and the metric (never formed; the weight term as ``w I`` when
    :func:`_identity_weight` finds it so).

    For ``tol >= _SINGLE_TOL`` the products inside the iteration are in single precision
    (half the time; the residual they leave is far below ``tol``) and the step is then
    scaled per slice by an exact line search in double precision: the result is the
    exact minimiser along the step, so the objective does not rise, nor with any step in
    (0, 2) times it. The iteration's vectors stay in the working precision (the step is
    added to the double-precision core once, at the end). Returns
    the core and whether the preconditioned residual fell to ``tol`` times the start's
    within ``max_iter`` iterations."""
    a, o, i, b = core.shape
    single = tol >= _SINGLE_TOL
    Lp, Rp, mp = ((L.astype(np.float32), R.astype(np.float32), metric.single) if single
                  else (L, R, metric))
    work = Lp.dtype

    def apply_inverse(Rc: np.ndarray) -> np.ndarray:
        Z = precondition(Rc.transpose(0, 2, 3, 1).reshape(a * i * b, o))
        return Z.reshape(a, i, b, o).transpose(0, 3, 1, 2).astype(work, copy=False)

    weight = _identity_weight(L, R, metric)

    def normal_times(P: np.ndarray) -> np.ndarray:
        if weight is None or mp.factored is None:
            return _tt_project(mp.apply(_tt_assemble(Lp, P, Rp)), Lp, Rp, o, i)
        root = mp.factored[1]
        if a == 1 and Lp.shape[:2] == (1, 1):
            return weight * P + _first_core_root_term(P, Rp_in_first, root)
        E = _tt_assemble(Lp, P, Rp)
        return weight * P + _tt_project((E @ root.T) @ root, Lp, Rp, o, i)

    Rp_in_first = np.ascontiguousarray(Rp.transpose(0, 2, 1))

    def dots(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return np.einsum("aoib,aoib->o", A, B).astype(float)

    # the residual's difference in double precision, its projection in the working one;
    # the iteration's vectors (residual, directions, the step taken) in the working one
    res0 = _tt_project((WM - metric.apply(_tt_assemble(L, core, R))).astype(work), Lp, Rp,
                       o, i).astype(float)
    res = res0.astype(work)
    step = np.zeros_like(res)
    Z = apply_inverse(res)
    P = Z
    rz = dots(res, Z)
    goal = tol * tol * float(rz.sum())
    for _ in range(max_iter):
        if float(rz.sum()) <= goal:
            break
        Q = normal_times(P)
        pq = dots(P, Q)
        alpha = np.divide(rz, pq, out=np.zeros_like(rz), where=pq > 0)
        alpha_w = alpha.astype(work)[:, None, None]
        step += alpha_w * P
        res -= alpha_w * Q
        Z = apply_inverse(res)
        rz_new = dots(res, Z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        P = Z + beta.astype(work)[:, None, None] * P
        rz = rz_new
    if not single:
        return core + step, float(rz.sum()) <= goal
    step = step.astype(float)
    curv = metric.row_values(_tt_assemble(L, step, R))
    curv = curv.reshape(L.shape[0], o, R.shape[1]).sum(axis=(0, 2))
    slope = dots(step, res0)
    t = np.divide(slope, curv, out=np.zeros_like(slope), where=curv > 0)
    return core + np.maximum(t, 0.0)[:, None, None] * step, float(rz.sum()) <= goal


# From this tolerance on the core's conjugate gradients run in single precision; at most
# this many iterations with the low-rank preconditioner.
_SINGLE_TOL = 1e-4
_MAX_PCG = 100


def _single_cholesky(PL: np.ndarray, PR: np.ndarray, metric: Metric, i: int
                     ) -> Callable[[np.ndarray], np.ndarray] | None:
    """``N_k^{-1}`` from a single-precision Cholesky factorisation of N_k (a third of the
    double-precision one's time); None when it fails."""
    M32 = metric.single.full
    assert M32 is not None
    N32 = _tt_normal_full(PL.astype(np.float32), PR.astype(np.float32), M32, i)
    try:
        factor = cho_factor(N32, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    return lambda B: cho_solve(factor, B.astype(np.float32), check_finite=False).astype(float)


def _low_rank_inverse(L: np.ndarray, R: np.ndarray, metric: Metric, i: int
                      ) -> Callable[[np.ndarray], np.ndarray]:
    """``P^{-1}`` for ``P = c I + Z^T Z``, Z the design (rows: direction, O_<k, O_>k) of
    the metric's strong directions (``Metric.strong_directions``) through the fixed
    cores, c the weight term's mean plus the rest of the calibration energy spread over
    the inputs: with orthonormal fixed cores, N_k with the weak directions averaged.
    Applied by the Woodbury identity (one Cholesky factorisation of ``c I + Z Z^T``)."""
    top, rest = metric.strong_directions(max(1, (L.shape[2] * i * R.shape[0])
                                             // (4 * L.shape[0] * R.shape[1])))
    assert metric.factored is not None
    c = float(np.mean(metric.factored[0])) + rest
    if top.shape[0] == 0:
        return lambda B: B / c
    Ol, Il, a = L.shape
    b, Or, Ir = R.shape
    T = np.einsum("jxkp,yxa->jyakp", top.reshape(-1, Il, i, Ir), L, optimize=True)
    Z = np.einsum("jyakp,bvp->jyvakb", T, R, optimize=True).reshape(-1, a * i * b)
    C = Z @ Z.T
    C[np.diag_indices_from(C)] += c
    factor = cho_factor(C, lower=True, check_finite=False)
    Z32 = Z.astype(np.float32)

    def apply(B: np.ndarray) -> np.ndarray:
        # single-precision right-hand sides (the single-precision iteration's) stay so
        Zw = Z32 if B.dtype == np.float32 else Z
        return (B - Zw.T @ cho_solve(factor, Zw @ B, check_finite=False).astype(B.dtype)) / c
    return apply


# The PCG core solve pays off from this many unknowns per output slice on (below it one
# double-precision Cholesky factorisation is cheaper than the Python around the PCG).
_PCG_MIN_SIZE = 512


def _tt_core_update(cores: list[np.ndarray], k: int, WM: np.ndarray, metric: Metric,
                    tol: float = 1e-12) -> np.ndarray:
    """Core k minimising ``||(W_hat - W) L||`` with the others fixed (a linear least squares
    whose normal matrix is ``I_{o_k} ⊗ N_k``, N_k of size r_{k-1} i_k r_k: one Cholesky
    factorisation serves the o_k right-hand sides).

    From ``_PCG_MIN_SIZE`` unknowns per slice on (full metric), by conjugate gradients
    (:func:`_tt_core_pcg`) to ``tol``: with a factored metric (fewer calibration rows than
    inputs) preconditioned by N_k with the weak calibration directions averaged
    (:func:`_low_rank_inverse`; N_k is never formed; short of ``tol`` after ``_MAX_PCG``
    iterations the last iterate is kept, a descent step), else by a single-precision
    Cholesky factor of N_k (short of ``tol``: the double-precision solve)."""
    a, o, i, b = cores[k].shape
    L, R = _tt_left(cores, k), _tt_right(cores, k)
    Il, Ir = L.shape[1], R.shape[2]
    if metric.full is not None:
        if a * i * b >= _PCG_MIN_SIZE and metric.factored is not None:
            return _tt_core_pcg(cores[k], L, R, WM, metric, _low_rank_inverse(L, R, metric, i),
                                tol, _MAX_PCG)[0]
        Lm = L.reshape(L.shape[0], Il * a)
        Rm = R.transpose(1, 0, 2).reshape(R.shape[1], b * Ir)
        PL = (Lm.T @ Lm).reshape(Il, a, Il, a)
        PR = (Rm.T @ Rm).reshape(b, Ir, b, Ir)
        inverse = _single_cholesky(PL, PR, metric, i) if a * i * b >= _PCG_MIN_SIZE else None
        if inverse is not None:
            sol, done = _tt_core_pcg(cores[k], L, R, WM, metric, inverse, tol, 30)
            if done:
                return sol
        WM6 = WM.reshape(L.shape[0], o, R.shape[1], Il, i, Ir)
        rhs = np.einsum("yxa,bvz,yovxkz->akbo", L, R, WM6, optimize=True)
        N = _tt_normal_full(PL, PR, metric.full, i)
        sol = _solve_spd(N, rhs.reshape(a * i * b, o))
        return sol.reshape(a, i, b, o).transpose(0, 3, 1, 2)
    assert metric.diag is not None
    WM6 = WM.reshape(L.shape[0], o, R.shape[1], Il, i, Ir)
    rhs = np.einsum("yxa,bvz,yovxkz->akbo", L, R, WM6, optimize=True)
    PL = np.einsum("yxa,yxc->xac", L, L, optimize=True)
    PR = np.einsum("byx,dyx->xbd", R, R, optimize=True)
    m3 = metric.diag.reshape(Il, i, Ir)
    N = np.einsum("xkp,xac,pbd->kabcd", m3, PL, PR, optimize=True).reshape(i, a * b, a * b)
    sol = _solve_spd(N, rhs.transpose(1, 0, 2, 3).reshape(i, a * b, o))
    return sol.reshape(i, a, b, o).transpose(1, 3, 0, 2)


def _move_gauge(cores: list[np.ndarray], k: int, step: int) -> None:
    """Orthonormalise core k (QR) and push the remainder into core k + step."""
    a, o, i, b = cores[k].shape
    if step > 0:
        Q, Rm = np.linalg.qr(cores[k].reshape(a * o * i, b))
        cores[k] = Q.reshape(a, o, i, -1)
        cores[k + 1] = np.tensordot(Rm, cores[k + 1], axes=(1, 0))
    else:
        Q, Rm = np.linalg.qr(cores[k].reshape(a, o * i * b).T)
        cores[k] = Q.T.reshape(-1, o, i, b)
        cores[k - 1] = np.tensordot(cores[k - 1], Rm.T, axes=(3, 0))


@dataclass(frozen=True)
class ALSResult:
    """Fitted factors, sweeps run, the final objective and the objective after each sweep
    (``history[0]``: the start)."""

    factors: list[np.ndarray]
    sweeps: int
    objective: float
    history: tuple[float, ...] = ()


# Over-relaxed block updates (as in SOR): each block's objective is a convex quadratic, so
# the current block plus any step in (0, 2) times its change to the exact minimiser lowers
# it. Plain ALS crawls on data-aware fits (the metric couples the cores); 1.6 about halves
# the sweeps to a given objective there. The first sweep takes exact steps.
_RELAX = 1.6


# Core solves inside the sweeps stop at this preconditioned residual (relative to the
# start's): the next sweeps correct what a step leaves; on the benchmark layers
# (bench_tensorized_aware) the objective after 10 sweeps is within 1e-5 (relative) of
# that of exact solves.
_ALS_CORE_TOL = 1e-2


def _free_rows(target: np.ndarray, W_hat: np.ndarray, n_out: int) -> None:
    """Padded output rows are never read: their target follows the fit (no residual)."""
    if n_out < target.shape[0]:
        target[n_out:] = W_hat[n_out:]


def tt_als(W: np.ndarray, cores: Sequence[np.ndarray], metric: Metric, n_out: int,
           sweeps: int, tol: float) -> ALSResult:
    """Alternating least squares on the TT-matrix cores (sweeps right-left-right, gauge moved
    by QR so that the fixed cores stay orthonormal). Rows ``n_out:`` are padding (free).

    A sweep ends on the last core and the next one would start there with the same fixed
    cores, so from the second sweep on that repeated update is skipped (only the gauge
    moves): ``2 d - 2`` core solves per sweep instead of ``2 d - 1``. From the second sweep
    on the updates are over-relaxed (``_RELAX``): the objective still never rises. The core
    solves stop at ``_ALS_CORE_TOL`` (see :func:`_tt_core_update`); ``history`` and
    ``objective`` are recomputed from the cores after every sweep."""
    cores = [np.array(G, dtype=float) for G in cores]
    d = len(cores)
    target = np.array(W, dtype=float)
    f_old = metric.value((tt_dense(cores) - target)[:n_out])
    history = [f_old]
    order = list(range(d - 1, -1, -1)) + list(range(1, d))
    done = 0
    WM = metric.apply(target)
    for done in range(1, sweeps + 1):
        if n_out < target.shape[0]:
            _free_rows(target, tt_dense(cores), n_out)
            WM = metric.apply(target)
        for pos, k in enumerate(order):
            if pos > 0 or done == 1 or d == 1:
                new = _tt_core_update(cores, k, WM, metric, _ALS_CORE_TOL)
                cores[k] = new if done == 1 else cores[k] + _RELAX * (new - cores[k])
            step = -1 if pos < d - 1 else 1
            if 0 <= k + step < d and pos < len(order) - 1:
                _move_gauge(cores, k, step)
        f = metric.value((tt_dense(cores) - target)[:n_out])
        history.append(f)
        if f_old - f <= tol * max(f_old, 1e-300):
            f_old = min(f, f_old)
            break
        f_old = f
    return ALSResult(cores, done, f_old, tuple(history))


def _cp_left(factors: Sequence[np.ndarray], k: int) -> np.ndarray:
    """(O_<k, I_<k, R): the products of the factors before k."""
    R = factors[0].shape[2]
    L = np.ones((1, 1, R))
    for A in factors[:k]:
        o, i, _ = A.shape
        L = np.einsum("yxr,oir->yoxir", L, A).reshape(L.shape[0] * o, L.shape[1] * i, R)
    return L


def _cp_right(factors: Sequence[np.ndarray], k: int) -> np.ndarray:
    """(R, O_>k, I_>k): the products of the factors after k."""
    R = factors[0].shape[2]
    Rt = np.ones((R, 1, 1))
    for A in reversed(factors[k + 1:]):
        o, i, _ = A.shape
        Rt = np.einsum("oir,ryx->royix", A, Rt).reshape(R, o * Rt.shape[1], i * Rt.shape[2])
    return Rt


def _cp_factor_update(factors: list[np.ndarray], k: int, WM: np.ndarray, metric: Metric
                      ) -> np.ndarray:
    o, i, R = factors[k].shape
    L, Rt = _cp_left(factors, k), _cp_right(factors, k)
    Il, Ir = L.shape[1], Rt.shape[2]
    WM6 = WM.reshape(L.shape[0], o, Rt.shape[1], Il, i, Ir)
    rhs = np.einsum("yxr,rvz,yovxkz->kro", L, Rt, WM6, optimize=True)
    if metric.full is not None:
        PL = np.einsum("yxr,yzs->xrzs", L, L, optimize=True)
        PR = np.einsum("ryx,syz->rxsz", Rt, Rt, optimize=True)
        M6 = metric.full.reshape(Il, i, Ir, Il, i, Ir)
        N = np.einsum("xrzs,rpsq,xkpzlq->krls", PL, PR, M6, optimize=True)
        sol = _solve_spd(N.reshape(i * R, -1), rhs.reshape(i * R, o))
        return sol.reshape(i, R, o).transpose(2, 0, 1)
    assert metric.diag is not None
    PL = np.einsum("yxr,yxs->xrs", L, L, optimize=True)
    PR = np.einsum("ryx,syx->xrs", Rt, Rt, optimize=True)
    m3 = metric.diag.reshape(Il, i, Ir)
    N = np.einsum("xkp,xrs,prs->krs", m3, PL, PR, optimize=True)
    return _solve_spd(N, rhs).transpose(2, 0, 1)


def _balance_cp(factors: list[np.ndarray]) -> list[np.ndarray]:
    """Equal norms of the R terms' slices across factors (same matrix)."""
    norms = np.array([np.linalg.norm(A.reshape(-1, A.shape[2]), axis=0) for A in factors])
    norms = np.where(norms > 0, norms, 1.0)
    geo = np.exp(np.mean(np.log(norms), axis=0))
    return [A * (geo / nk) for A, nk in zip(factors, norms)]


def cp_als(W: np.ndarray, factors: Sequence[np.ndarray], metric: Metric, n_out: int,
           sweeps: int, tol: float) -> ALSResult:
    """Alternating least squares on the CP-matrix factors under the metric."""
    factors = _balance_cp([np.array(A, dtype=float) for A in factors])
    target = np.array(W, dtype=float)
    f_old = metric.value((cp_dense(factors) - target)[:n_out])
    history = [f_old]
    done = 0
    for done in range(1, sweeps + 1):
        if n_out < target.shape[0]:
            _free_rows(target, cp_dense(factors), n_out)
        WM = metric.apply(target)
        for k in range(len(factors)):
            factors[k] = _cp_factor_update(factors, k, WM, metric)
        factors = _balance_cp(factors)
        f = metric.value((cp_dense(factors) - target)[:n_out])
        history.append(f)
        if f_old - f <= tol * max(f_old, 1e-300):
            f_old = min(f, f_old)
            break
        f_old = f
    return ALSResult(factors, done, f_old, tuple(history))
