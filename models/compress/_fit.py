"""Numpy fitting kernels shared by the layer compressors (private).

Every compression here fits a weight matrix ``Wm`` of shape (out, d) (a linear weight, or
a convolution weight with its input side ``(in, kh, kw)`` flattened) under the objective

    w_w * ||Wm_hat - Wm||^2  +  w_r * ||P (Wm_hat - Wm)^T||^2,

where ``P`` (n x d) holds the calibration inputs (im2col patches for a convolution). The
response term depends on ``P`` only through its Gram matrix ``G = P^T P``, so with
``M = w_w I + w_r G = L L^T`` the objective is ``||(Wm_hat - Wm) L||^2``: a whitened
weight fit. This gives the closed-form optimum of the two-factor model
``Wm_hat = A B^T`` (truncated SVD of ``Wm L``, mapped back by ``L^{-1}``), and the
objective for the gradient fallback of the structured models.

When the layer has a bias, the bias is refitted too: the objective over ``(Wm_hat, b_hat)``
is ``w_w ||Wm_hat - Wm||^2 + w_r ||(Wm_hat - Wm) p_k + (b_hat - b)||^2`` summed over the
rows ``p_k``. Its minimiser over ``b_hat`` is ``b + (Wm - Wm_hat) mu`` (``mu`` the row
mean), which leaves the objective above with ``P`` replaced by the centered rows
``P - 1 mu^T``: the rank is spent on the input covariance, the bias absorbs the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import autograd.numpy as anp
import numpy as np
import scipy.linalg as sla
from autograd import value_and_grad
from scipy.optimize import minimize

__all__: list[str] = []


@dataclass(frozen=True)
class Calibration:
    """Sufficient statistics of the calibration inputs for one weight matrix.

    Attributes
    ----------
    gram : ndarray of shape (d, d)
        ``P^T P`` of the calibration inputs / patches ``P``.
    n_rows : int
        Number of rows of ``P`` that went into the Gram matrix.
    mean : ndarray of shape (d,) or None
        Row mean ``mu`` when the rows were centered (``gram`` is then ``(P - 1 mu^T)^T
        (P - 1 mu^T)``, for a layer whose bias is refitted); None otherwise.
    """

    gram: np.ndarray
    n_rows: int
    mean: np.ndarray | None = None

    @classmethod
    def from_rows(cls, P: np.ndarray, max_rows: int | None = None, seed: int = 0,
                  center: bool = False) -> Calibration:
        P = np.asarray(P, dtype=float)
        if max_rows is not None and P.shape[0] > max_rows:
            idx = np.random.default_rng(seed).choice(P.shape[0], max_rows, replace=False)
            P = P[np.sort(idx)]
        mean = P.mean(axis=0) if center else None
        if mean is not None:
            P = P - mean
        return cls(gram=P.T @ P, n_rows=int(P.shape[0]), mean=mean)

    def bias_shift(self, Wm: np.ndarray, Wm_hat: np.ndarray) -> np.ndarray | None:
        """``(Wm - Wm_hat) mu``: the bias change that absorbs the mean (None: not centered)."""
        return None if self.mean is None else (Wm - Wm_hat) @ self.mean

    def response_norm2(self, Wm: np.ndarray) -> float:
        """``||P Wm^T||^2`` from the Gram matrix."""
        return float(np.einsum("od,de,oe->", Wm, self.gram, Wm, optimize=True))

    def root(self) -> np.ndarray:
        """A matrix ``R`` (d x d) with ``R^T R = G``: the reduced calibration rows."""
        return _sqrt_factor(self.gram).T


def term_weights(Wm: np.ndarray, calib: Calibration | None, balance: float) -> tuple[float, float]:
    """Absolute weights ``(w_w, w_r)`` of the weight and response terms.

    Each term is normalised by its data's squared norm, then ``balance`` (in [0, 1]) is the
    share of the response term: ``w_w = (1 - balance) / ||Wm||^2``,
    ``w_r = balance / ||P Wm^T||^2``; so the objective is 1 at ``Wm_hat = 0``.
    """
    nw = float(np.vdot(Wm, Wm)) or 1.0
    if calib is None:
        return 1.0 / nw, 0.0
    nr = calib.response_norm2(Wm) or 1.0
    return (1.0 - balance) / nw, balance / nr


def _sqrt_factor(M: np.ndarray) -> np.ndarray:
    """``L`` with ``L L^T = M``: Cholesky when positive definite, else a clipped eigen root."""
    try:
        return np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        lam, V = np.linalg.eigh((M + M.T) / 2)
        lam = np.where(lam > lam.max() * 1e-13, lam, 0.0)
        return V * np.sqrt(lam)


def whitener(d: int, calib: Calibration | None, w_w: float, w_r: float) -> np.ndarray | None:
    """``L`` (d x d) with ``L L^T = w_w I + w_r G``, or None for the plain weight fit."""
    if calib is None or w_r == 0.0:
        return None
    M = w_r * calib.gram
    M[np.diag_indices(d)] += w_w
    return _sqrt_factor(M)


def _right_solve(Z: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``Z L^+`` for a lower-triangular or general square ``L``."""
    if np.allclose(L, np.tril(L)) and np.all(np.abs(np.diag(L)) > 0):
        return sla.solve_triangular(L, Z.T, trans="T", lower=True).T
    return Z @ np.linalg.pinv(L)


def lowrank_fit(Wm: np.ndarray, rank: int, L: np.ndarray | None, svd=None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best ``Wm_hat = A B^T`` of rank ``rank`` in the (whitened) norm ``||(.) L||``.

    Returns ``A`` (out x r), ``B`` (d x r) and the singular values of ``Wm L`` (all of
    them), whose squared tail sums are the objective values at every rank. ``svd`` may
    pass a precomputed ``(U, s, Vt)`` of ``Wm L``.
    """
    if svd is None:
        svd = np.linalg.svd(Wm if L is None else Wm @ L, full_matrices=False)
    U, s, Vt = svd
    root = np.sqrt(s[:rank])
    A = U[:, :rank] * root
    Bt = root[:, None] * Vt[:rank]
    if L is not None:
        Bt = _right_solve(Bt, L)
    return A, Bt.T, s


def tail_errors(s: np.ndarray, total2: float | None = None) -> np.ndarray:
    """Relative errors ``sqrt(sum_{k>r} s_k^2 / total2)`` for ranks r = 0..len(s)."""
    s2 = s * s
    tail = np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]])
    total2 = float(s2.sum()) if total2 is None else total2
    return np.sqrt(np.maximum(tail, 0.0) / (total2 or 1.0))


def hooi2(W4: np.ndarray, ranks: tuple[int, int], max_iter: int = 50, tol: float = 1e-10
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tucker-2 of a (out, in, kh, kw) tensor on its first two modes, by HOOI.

    Returns ``U_out`` (out x r_o), ``U_in`` (in x r_i), ``core`` (r_o, r_i, kh, kw)
    with orthonormal factors; ``W4 ~ core x_0 U_out x_1 U_in``.
    """
    ro, ri = ranks
    o, i = W4.shape[:2]
    W0 = W4.reshape(o, -1)
    W1 = W4.transpose(1, 0, 2, 3).reshape(i, -1)
    Uo = np.linalg.svd(W0, full_matrices=False)[0][:, :ro]
    Ui = np.linalg.svd(W1, full_matrices=False)[0][:, :ri]
    prev = -1.0
    for _ in range(max_iter):
        T = np.einsum("oihw,ib->obhw", W4, Ui, optimize=True).reshape(o, -1)
        Uo = np.linalg.svd(T, full_matrices=False)[0][:, :ro]
        T = np.einsum("oihw,oa->iahw", W4, Uo, optimize=True).reshape(i, -1)
        Ui = np.linalg.svd(T, full_matrices=False)[0][:, :ri]
        core = np.einsum("oihw,oa,ib->abhw", W4, Uo, Ui, optimize=True)
        fit = float(np.vdot(core, core))
        if abs(fit - prev) <= tol * max(fit, 1e-300):
            break
        prev = fit
    core = np.einsum("oihw,oa,ib->abhw", W4, Uo, Ui, optimize=True)
    return Uo, Ui, core


def cp_als(T: np.ndarray, rank: int, max_iter: int = 200, tol: float = 1e-9, seed: int = 0
           ) -> list[np.ndarray]:
    """Rank-``rank`` CP of a tensor by alternating least squares (init for Gauss-Newton)."""
    rng = np.random.default_rng(seed)
    N = T.ndim
    factors = [rng.standard_normal((n, rank)) for n in T.shape]
    letters = "abcdefgh"[:N]
    normT2 = float(np.vdot(T, T))
    prev = np.inf
    for _ in range(max_iter):
        for n in range(N):
            others = [f for m, f in enumerate(factors) if m != n]
            spec = f"{letters}," + ",".join(f"{letters[m]}r" for m in range(N) if m != n)
            mttkrp = np.einsum(f"{spec}->{letters[n]}r", T, *others, optimize=True)
            gram = np.ones((rank, rank))
            for f in others:
                gram *= f.T @ f
            factors[n] = np.linalg.lstsq(gram, mttkrp.T, rcond=None)[0].T
        gram = np.ones((rank, rank))
        for f in factors:
            gram *= f.T @ f
        err2 = normT2 - 2 * float(np.sum(mttkrp * factors[-1])) + float(gram.sum())
        if abs(prev - err2) <= tol * normT2:
            break
        prev = err2
    return _balance_columns(factors)


def _balance_columns(factors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Rescale CP columns so every factor's column has the same norm (same tensor)."""
    norms = np.stack([np.linalg.norm(f, axis=0) for f in factors])
    norms = np.where(norms > 0, norms, 1.0)
    geo = np.exp(np.mean(np.log(norms), axis=0))
    return [f * (geo / nrm) for f, nrm in zip(factors, norms)]


def lbfgs_fit(recon: Callable[..., np.ndarray], params: Sequence[np.ndarray], Wm: np.ndarray,
              L: np.ndarray | None, w_w: float, max_iter: int = 500, tol: float = 1e-12
              ) -> tuple[list[np.ndarray], int, str]:
    """Minimise ``||(recon(*params) - Wm) L||^2`` (or ``w_w ||.||^2``) with L-BFGS.

    ``recon`` must be autograd-traceable and return the (out, d) matrix. Returns the fitted
    parameters, the number of iterations and scipy's message.
    """
    shapes = [p.shape for p in params]
    sizes = [int(np.prod(s)) for s in shapes]
    split = np.cumsum(sizes)[:-1]
    WL = Wm * np.sqrt(w_w) if L is None else Wm @ L
    Lw = np.sqrt(w_w) * np.eye(Wm.shape[1]) if L is None else L

    def unpack(z):
        return [anp.reshape(p, s) for p, s in zip(anp.split(z, split), shapes)]

    def loss(z):
        E = anp.dot(recon(*unpack(z)), Lw) - WL
        return anp.sum(E * E)

    vg = value_and_grad(loss)
    z0 = np.concatenate([np.ravel(p) for p in params])
    res = minimize(vg, z0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-12})
    return [np.array(p) for p in unpack(res.x)], int(res.nit), str(res.message)
