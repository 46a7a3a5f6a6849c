"""Levenberg-Marquardt for the CP of small conv weights, output factor eliminated (private).

The objective is that of :mod:`sdf.models.compress._cp`: ``f = tr(E M E^T)``, ``E = U_out
K^T - Wm``, ``K = kr(U_in, U_h, U_w)`` (d x R, ``d = in kh kw``) and ``M`` (d x d) the
metric (``w_w I`` data-free). On small layers with a compressed rank near the weight's
size, ALS and the response rounds creep through swamps (components growing while they
cancel each other) and stop in them; Gauss-Newton steps cross them. On the data-aware
8x4x3x3 and 16x8x3x3 layers of ``benchmarks/bench_cp_small.py``, the best of 1-4 runs of
200 steps from random starts ended 2-17 % below the default alternating fit, and 2-6 %
below the best of 3-5 alternating starts on five of the six layers (7 % above on one).

The Gauss-Newton matrix is formed and factorized exactly. With ``D_s`` (d x q, ``q = in +
kh + kw``) the derivative of column ``s`` of ``K`` with respect to column ``s`` of the
input-side factors, ``G = K^T M K`` and ``G_o = U_out^T U_out``, its blocks are::

    (U_out, U_out)  I_out kron G                      (block diagonal)
    (U_out, V_s)    entry ((a, r), v): U_out[a, s] C_s[r, v],  C_s = K^T M D_s (R x q)
    (V_r, V_s)      G_o[r, s] D_r^T M D_s

so the output factor is eliminated in closed form (Schur complement ``B - G_o * (C^T G^-1
C)`` blockwise, of size ``R q``), one Cholesky factorization per step. A step costs about
``(R q)^3 / 3 + (R q)^2 d`` multiply-adds: only small layers (``R q`` up to a few hundred)
take this path.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from sdf.models.compress._cp import CPFit, _kr, response_objective

__all__: list[str] = []

#: Damping above this times the Gauss-Newton matrix's largest diagonal entry: no step
#: lowers the objective any more ("stalled")
_MAX_DAMPING = 1e12


def step_cost(shape: tuple[int, ...], rank: int) -> float:
    """Multiply-adds of one step of :func:`levenberg_marquardt` on a weight of ``shape``
    (out, in, kh, kw): the Schur complement's factorization and its products."""
    _, i, kh, kw = shape
    n, d = rank * (i + kh + kw), i * kh * kw
    return n ** 3 / 3 + n * n * (d + rank)


def _column_jacobians(Ui: np.ndarray, Uh: np.ndarray, Uw: np.ndarray) -> np.ndarray:
    """``D`` (R, d, q): ``D[s]`` the derivative of ``K[:, s] = Ui[:, s] x Uh[:, s] x
    Uw[:, s]`` (input index slowest) with respect to ``(Ui[:, s], Uh[:, s], Uw[:, s])``."""
    i, R = Ui.shape
    kh, kw = Uh.shape[0], Uw.shape[0]
    d_in = np.einsum("ab,rhw->rahwb", np.eye(i), Uh.T[:, :, None] * Uw.T[:, None, :])
    d_h = np.einsum("bc,raw->rabwc", np.eye(kh), Ui.T[:, :, None] * Uw.T[:, None, :])
    d_w = np.einsum("wc,rah->rahwc", np.eye(kw), Ui.T[:, :, None] * Uh.T[:, None, :])
    return np.concatenate([d_in, d_h, d_w], axis=4).reshape(R, i * kh * kw, -1)


class _Model:
    """The Gauss-Newton pieces at one point: gradient halves and the matrix blocks."""

    def __init__(self, Wm: np.ndarray, M: np.ndarray, factors: list[np.ndarray]) -> None:
        Uo, Ui, Uh, Uw = factors
        R = Uo.shape[1]
        K = _kr(Ui, _kr(Uh, Uw))
        MK = M @ K
        E = Uo @ K.T - Wm
        D = _column_jacobians(Ui, Uh, Uw)
        q = D.shape[2]
        MD = np.matmul(M, D)                                     # (R, d, q)
        self.G = K.T @ MK
        self.Go = Uo.T @ Uo
        self.C = np.matmul(K.T, MD).transpose(1, 0, 2).reshape(R, R * q)   # [r, (s, v)]
        self.weights = np.repeat(np.repeat(self.Go, q, axis=0), q, axis=1)  # G_o[r, s] blocks
        self.B = (D.transpose(0, 2, 1).reshape(R * q, -1)
                  @ MD.transpose(1, 0, 2).reshape(-1, R * q)) * self.weights
        self.g_out = E @ MK                                      # (out, R)
        self.g_in = np.matmul(MD.transpose(0, 2, 1), (E.T @ Uo).T[:, :, None]).reshape(-1)
        self.scale = max(float(np.max(np.diag(self.G))), float(np.max(np.diag(self.B))))

    def step(self, Uo: np.ndarray, damping: float
             ) -> tuple[np.ndarray, np.ndarray, float] | None:
        """The damped Gauss-Newton step (output factor, input-side factors stacked (R q))
        and the decrease the linear model predicts; None when the damped matrix is not
        numerically positive definite."""
        R = self.G.shape[0]
        try:
            chol_g = sla.cho_factor(self.G + damping * np.eye(R), check_finite=False)
            CG = sla.cho_solve(chol_g, self.C, check_finite=False)
            y = sla.cho_solve(chol_g, self.g_out.T, check_finite=False).T      # (out, R)
            S = self.B - (self.C.T @ CG) * self.weights
            S[np.diag_indices_from(S)] += damping
            q = self.C.shape[1] // R
            C3 = self.C.reshape(R, R, q)
            rhs = self.g_in - np.einsum("rsv,sr->sv", C3, Uo.T @ y).reshape(-1)
            dV = sla.cho_solve(sla.cho_factor(S, check_finite=False), rhs, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            return None
        Z = np.einsum("rsv,sv->sr", C3, dV.reshape(R, q))
        dU = sla.cho_solve(chol_g, (self.g_out - Uo @ Z).T, check_finite=False).T
        predicted = (float(np.vdot(dU, self.g_out)) + float(np.vdot(dV, self.g_in))
                     + damping * (float(np.vdot(dU, dU)) + float(np.vdot(dV, dV))))
        return dU, dV, predicted


def levenberg_marquardt(W: np.ndarray, factors: list[np.ndarray], M: np.ndarray,
                        max_iter: int, tol: float) -> CPFit:
    """Levenberg-Marquardt on ``tr(E M E^T)`` from ``factors`` ``[U_out, U_in, U_h, U_w]``
    (see the module docstring).

    The damping starts at ``1e-3`` times the largest diagonal entry of the Gauss-Newton
    matrix and follows the gain ratio (Nielsen's rule). Stops after ``max_iter`` steps
    (tried ones included; "iteration cap"), when an accepted step lowers the objective by
    at most ``tol`` times its value ("converged") or when the damping grows past
    ``_MAX_DAMPING`` times that diagonal ("stalled"). Returns the last accepted iterate
    (never above the start), its objective recomputed from the factors. Its products are
    small: callers run it on one BLAS thread (:func:`sdf._blas.one_blas_thread`).
    """
    o, i, kh, kw = W.shape
    Wm = W.reshape(o, -1)
    current = [np.array(f, dtype=float) for f in factors]
    value = response_objective(Wm, current, M)
    model = _Model(Wm, M, current)
    damping, nu = 1e-3 * model.scale, 2.0
    stop, steps = "iteration cap", 0
    while steps < max_iter:
        steps += 1
        step = model.step(current[0], damping)
        if step is not None:
            dU, dV, predicted = step
            dV3 = dV.reshape(-1, i + kh + kw).T
            trial = [current[0] - dU, current[1] - dV3[:i], current[2] - dV3[i:i + kh],
                     current[3] - dV3[i + kh:]]
            trial_value = response_objective(Wm, trial, M)
            if predicted > 0 and trial_value < value:
                rho = (value - trial_value) / predicted
                gain, current, value = value - trial_value, trial, trial_value
                if gain <= tol * value:
                    stop = "converged"
                    break
                model = _Model(Wm, M, current)
                damping *= max(1 / 3, 1 - (2 * rho - 1) ** 3)
                nu = 2.0
                continue
        damping, nu = damping * nu, nu * 2
        if damping > _MAX_DAMPING * model.scale:
            stop = "stalled"
            break
    return CPFit(current, response_objective(Wm, current, M), steps, stop)
