"""Data-aware Tucker-matrix fit by alternating exact block minimisation (private).

The objective ``w_w ||W_hat - W||^2 + w_r ||R (W_hat - W)^T||^2`` (``R`` the calibration
root, ``M = w_w I + w_r R^T R`` the metric) over a Tucker-matrix ``(U, V, core)`` of
:mod:`sdf.models.compress._formats`: the core in closed form, the output factors by a HOOI
step in the metric, the input factors by least squares.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.linalg import solve_triangular

from sdf.models.compress._formats import ALSResult, _prod, _RELAX, _solve_spd, tucker_dense

__all__: list[str] = []


def _kron_all(mats: Sequence[np.ndarray]) -> np.ndarray:
    out = np.ones((1, 1))
    for A in mats:
        out = np.kron(out, A)
    return out


def _metric_times(V: np.ndarray, root: np.ndarray, w_w: float, w_r: float) -> np.ndarray:
    """``M V`` for ``M = w_w I + w_r R^T R``, through R (never forming M)."""
    return w_w * V + w_r * (root.T @ (root @ V))


def _dense_metric(root: np.ndarray, w_w: float, w_r: float) -> np.ndarray:
    """``M = w_w I + w_r R^T R`` (in x in)."""
    M = w_r * (root.T @ root)
    M[np.diag_indices_from(M)] += w_w
    return M


def _rows_projected(W: np.ndarray, U: Sequence[np.ndarray]) -> np.ndarray:
    """``(U_1 ⊗ ... ⊗ U_d)^T W`` (R_1 ... R_d, in), one output mode at a time (the
    Kronecker product of the U_k is never formed)."""
    T = W.reshape(*[u.shape[0] for u in U], W.shape[1])
    for k, Uk in enumerate(U):
        T = np.moveaxis(np.tensordot(Uk.T, T, axes=(1, k)), 0, k)
    return T.reshape(-1, W.shape[1])


def tucker_objective(W: np.ndarray, U: Sequence[np.ndarray], V: Sequence[np.ndarray],
                     core: np.ndarray, root: np.ndarray, w_w: float, w_r: float) -> float:
    """``w_w ||E||^2 + w_r ||R E^T||^2`` with ``E = W_hat - W`` (W_hat cut to W's shape:
    padding dropped; R has W's columns)."""
    E = tucker_dense(U, V, core)[:W.shape[0], :W.shape[1]] - W
    return float(w_w * np.vdot(E, E) + w_r * np.vdot(E @ root.T, E @ root.T))


def _core_solve(Y: np.ndarray, V: Sequence[np.ndarray], root: np.ndarray, w_w: float,
                w_r: float, core_shape: Sequence[int]) -> np.ndarray:
    """``C = Y M V (V^T M V)^{-1}`` with ``Y = U^T W`` (U orthonormal)."""
    Vk = _kron_all(V)
    MV = _metric_times(Vk, root, w_w, w_r)
    C = _solve_spd(Vk.T @ MV, (Y @ MV).T).T
    return C.reshape(core_shape)


def tucker_core_update(W: np.ndarray, U: Sequence[np.ndarray], V: Sequence[np.ndarray],
                       root: np.ndarray, w_w: float, w_r: float) -> np.ndarray:
    """The core minimising the objective for fixed factors, the ``U_k`` orthonormal:
    ``C = U^T W M V (V^T M V)^{-1}`` (``U``, ``V`` the Kronecker products of the factors),
    from one Cholesky factorisation of the small ``V^T M V``; ``U^T W`` one output mode
    at a time."""
    return _core_solve(_rows_projected(W, U), V, root, w_w, w_r,
                       [u.shape[1] for u in U] + [v.shape[1] for v in V])


def _tucker_u_update(W: np.ndarray, U: list[np.ndarray], V: Sequence[np.ndarray],
                     root: np.ndarray, w_w: float, w_r: float) -> None:
    """Every ``U_k`` in turn, the core eliminated: with ``Z = W M V (V^T M V)^{-1/2}`` the
    objective is ``const - ||U^T Z||^2``, so ``U_k`` is the leading left singular subspace
    of the mode-k unfolding of Z with the other output modes projected (a HOOI step)."""
    Vk = _kron_all(V)
    MV = _metric_times(Vk, root, w_w, w_r)
    N = Vk.T @ MV
    try:
        Lc = np.linalg.cholesky(N)
        Z = solve_triangular(Lc, (W @ MV).T, lower=True, check_finite=False).T
    except np.linalg.LinAlgError:
        lam, Q = np.linalg.eigh(N)
        inv_root = np.where(lam > lam.max() * 1e-13, 1.0 / np.sqrt(np.maximum(lam, 1e-300)), 0)
        Z = (W @ MV) @ (Q * inv_root)
    d = len(U)
    Zt = Z.reshape([u.shape[0] for u in U] + [-1])
    for k in range(d):
        P = Zt
        for j in range(d):
            if j != k:
                P = np.moveaxis(np.tensordot(U[j].T, P, axes=(1, j)), 0, j)
        Pk = np.moveaxis(P, k, 0).reshape(U[k].shape[0], -1)
        # leading left singular subspace from the small Gram matrix (Pk is short and wide)
        Q = np.linalg.eigh(Pk @ Pk.T)[1]
        U[k] = Q[:, ::-1][:, :U[k].shape[1]]


def _gram_route(r: int, q: int, n: int, i: int, s: int) -> bool:
    """Whether the normal matrix of an input factor (size ``i s``) is cheaper from the
    dense metric (the core's Gram matrix, ``r (s n / i)^2 + (n s)^2 + r n^2``) than from
    the design matrix of the ``q`` calibration rows (``r q (i s)^2 + r q s n``), with
    ``r`` output core rows and ``n`` inputs."""
    return r * (s * n // i) ** 2 + (n * s) ** 2 + r * n * n < r * q * ((i * s) ** 2 + s * n)


def _input_factor_solve(Y: np.ndarray, V: Sequence[np.ndarray], core: np.ndarray, k: int,
                        root: np.ndarray, w_w: float, w_r: float, M: np.ndarray | None
                        ) -> np.ndarray:
    """``V_k`` minimising ``||(K_k(V_k) - Y) L||^2`` (``L L^T = M = w_w I + w_r R^T R``) for
    ``Y = U^T W``, K the core contracted with the other input factors (modes before / after
    k: p, q). With the dense metric ``M`` given, the normal matrix is
    ``N[(x,a),(x',a')] = sum K[r,p,a,q] K[r,p',a',q'] M[(p,x,q),(p',x',q')]`` (the Gram
    matrix of K against M); without it, ``w_w (I ⊗ K^T K) + w_r J^T J`` with J the design
    matrix of the calibration rows (see :func:`_gram_route` for the cheaper one)."""
    isz = [v.shape[0] for v in V]
    i, s = V[k].shape
    Ipre, Ipost = _prod(isz[:k]), _prod(isz[k + 1:])
    Kt = core.reshape(-1, *[v.shape[1] for v in V])
    for j, Vj in enumerate(V):
        if j != k:
            Kt = np.moveaxis(np.tensordot(Vj, Kt, axes=(1, j + 1)), 0, j + 1)
    r = Kt.shape[0]
    Km = Kt.reshape(r, Ipre * s * Ipost)
    K = Km.reshape(r, Ipre, s, Ipost)
    if M is not None:
        KK = (Km.T @ Km).reshape(Ipre, s, Ipost, Ipre, s, Ipost)
        KK = KK.transpose(1, 4, 0, 2, 3, 5).reshape(s * s, -1)  # (a a', p q p' q')
        M6 = M.reshape(Ipre, i, Ipost, Ipre, i, Ipost).transpose(0, 2, 3, 5, 1, 4)
        N = (KK @ M6.reshape(-1, i * i)).reshape(s, s, i, i).transpose(2, 0, 3, 1)
        YM = (Y @ M).reshape(r, Ipre, i, Ipost)
        rhs = np.einsum("rpaq,rpxq->xa", K, YM, optimize=True)
        return _solve_spd(N.reshape(i * s, i * s), rhs.reshape(-1)).reshape(i, s)
    Kc = K.transpose(0, 1, 3, 2).reshape(-1, s)
    Nr = w_w * np.kron(np.eye(i), Kc.T @ Kc)
    rhs_r = w_w * np.einsum("rpaq,rpxq->xa", K, Y.reshape(r, Ipre, i, Ipost),
                            optimize=True).reshape(-1)
    q = root.shape[0]
    R4 = root.reshape(q, Ipre, i, Ipost)
    target = Y @ root.T  # (r, q)
    step = max(1, int(4e6 // max(q * i * s, 1)))
    for lo in range(0, r, step):
        J = np.einsum("rpaq,kpxq->rkxa", K[lo:lo + step], R4, optimize=True).reshape(-1, i * s)
        Nr += w_r * (J.T @ J)
        rhs_r += w_r * (J.T @ target[lo:lo + step].reshape(-1))
    return _solve_spd(Nr, rhs_r).reshape(i, s)


def _metric_if_needed(W: np.ndarray, U: Sequence[np.ndarray], V: Sequence[np.ndarray],
                      root: np.ndarray, w_w: float, w_r: float, ks: Sequence[int]
                      ) -> np.ndarray | None:
    """The dense metric when the Gram route is the cheaper one for any input factor in
    ``ks``, else None."""
    r, n = _prod([u.shape[1] for u in U]), W.shape[1]
    if any(_gram_route(r, root.shape[0], n, *V[k].shape) for k in ks):
        return _dense_metric(root, w_w, w_r)
    return None


def tucker_factor_update(W: np.ndarray, U: Sequence[np.ndarray], V: Sequence[np.ndarray],
                         core: np.ndarray, k: int, root: np.ndarray, w_w: float, w_r: float
                         ) -> np.ndarray:
    """The input factor ``V_k`` minimising the objective for the core and the other factors
    fixed (the ``U_j`` orthonormal): a linear least squares in ``V_k`` (size ``i_k S_k``)
    whose normal matrix is formed from the core contracted with the other input factors
    and the metric ``M = w_w I + w_r R^T R`` (dense, or through R: the cheaper)."""
    M = _metric_if_needed(W, U, V, root, w_w, w_r, [k])
    return _input_factor_solve(_rows_projected(W, U), V, core, k, root, w_w, w_r, M)


def tucker_als(W: np.ndarray, U: Sequence[np.ndarray], V: Sequence[np.ndarray],
               core: np.ndarray, root: np.ndarray, w_w: float, w_r: float, sweeps: int,
               tol: float) -> ALSResult:
    """Alternating exact block minimisation of ``w_w ||E||^2 + w_r ||R E^T||^2`` for the
    Tucker-matrix ``(U, V, core)`` of ``W`` (padded sizes): per sweep the core (closed
    form), every ``U_k`` (HOOI step in the metric, core eliminated), the core, then every
    ``V_k`` (least squares, orthonormalised after: same span) followed by the core. Each
    step is an exact minimiser over its block, so the objective never rises; stops when a
    sweep lowers it by at most ``tol`` of its value. ``factors`` is ``[*U, *V, core]``."""
    U = [np.array(u, dtype=float) for u in U]
    V = [np.array(v, dtype=float) for v in V]
    core = np.array(core, dtype=float)
    f_old = tucker_objective(W, U, V, core, root, w_w, w_r)
    history = [f_old]
    best = ([*U, *V, core], f_old)
    done = 0
    M = _metric_if_needed(W, U, V, root, w_w, w_r, range(len(V)))
    gram = [M is not None and _gram_route(_prod([u.shape[1] for u in U]), root.shape[0],
                                          W.shape[1], *v.shape) for v in V]
    core_shape = core.shape
    for done in range(1, sweeps + 1):
        _tucker_u_update(W, U, V, root, w_w, w_r)
        Y = _rows_projected(W, U)
        core = _core_solve(Y, V, root, w_w, w_r, core_shape)
        for k in range(len(V)):
            Vk = _input_factor_solve(Y, V, core, k, root, w_w, w_r, M if gram[k] else None)
            if done > 1:
                Vk = V[k] + _RELAX * (Vk - V[k])
            V[k] = np.linalg.qr(Vk)[0]
            core = _core_solve(Y, V, root, w_w, w_r, core_shape)
        f = tucker_objective(W, U, V, core, root, w_w, w_r)
        history.append(f)
        if f < best[1]:
            best = ([*U, *V, core], f)
        if f_old - f <= tol * max(f_old, 1e-300):
            break
        f_old = f
    return ALSResult(best[0], done, best[1], tuple(history))
