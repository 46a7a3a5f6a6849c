"""Closed-form fitting pieces shared by the layer compressors (private).

Every compression here fits a weight matrix ``Wm`` of shape (out, d) (a linear weight, or
a convolution weight with its input side ``(in, kh, kw)`` flattened) under the objective

    w_w * ||Wm_hat - Wm||^2  +  w_r * ||P (Wm_hat - Wm)^T||^2,

where ``P`` (n x d) holds the calibration inputs (im2col patches for a convolution). The
response term depends on ``P`` only through its Gram matrix ``G = P^T P``, so with
``M = w_w I + w_r G = L L^T`` the objective is ``||(Wm_hat - Wm) L||^2``: a whitened
weight fit. This gives the closed-form optimum of the two-factor model
``Wm_hat = A B^T`` (truncated SVD of ``Wm L``, mapped back by ``L^{-1}``) and the
objective values of the rank curves. The structured models (CP, Tucker-2, kron-structured
SVDs with a response term) have no closed form: they are fitted by the engine (see
:mod:`sdf.models.compress._engine`).

When the layer has a bias, the bias is refitted too: the objective over ``(Wm_hat, b_hat)``
is ``w_w ||Wm_hat - Wm||^2 + w_r ||(Wm_hat - Wm) p_k + (b_hat - b)||^2`` summed over the
rows ``p_k``. Its minimiser over ``b_hat`` is ``b + (Wm - Wm_hat) mu`` (``mu`` the row
mean), which leaves the objective above with ``P`` replaced by the centered rows
``P - 1 mu^T``: the rank is spent on the input covariance, the bias absorbs the mean.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

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
    rows : ndarray of shape (n_rows, d) or None
        The (centered) rows themselves when there are fewer of them than values per row
        (then they are the cheapest root of ``gram``, see :meth:`root`); None otherwise.
        Read only.
    """

    gram: np.ndarray
    n_rows: int
    mean: np.ndarray | None = None
    rows: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

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
        return cls(gram=P.T @ P, n_rows=int(P.shape[0]), mean=mean,
                   rows=P if P.shape[0] < P.shape[1] else None)

    def bias_shift(self, Wm: np.ndarray, Wm_hat: np.ndarray) -> np.ndarray | None:
        """``(Wm - Wm_hat) mu``: the bias change that absorbs the mean (None: not centered)."""
        return None if self.mean is None else (Wm - Wm_hat) @ self.mean

    def response_norm2(self, Wm: np.ndarray) -> float:
        """``||P Wm^T||^2`` from the Gram matrix."""
        return float(np.einsum("od,de,oe->", Wm, self.gram, Wm, optimize=True))

    def root(self) -> np.ndarray:
        """A matrix ``R`` (k x d) with ``R^T R = G``: the reduced calibration rows.

        ``k = d`` (the Cholesky factor) when ``G`` is positive definite, else ``k`` is the
        numerical rank of ``G`` (an eigen root on its range): with fewer patches than
        values per patch, the response terms that multiply by ``R`` then cost ``k / d``
        of the square root's. When fewer rows than values went in, the (centered) rows
        themselves are the root (``k`` = rows), with no factorisation of ``G``.
        """
        if self.rows is not None:
            return self.rows
        try:
            return np.linalg.cholesky(self.gram).T
        except np.linalg.LinAlgError:
            lam, V = np.linalg.eigh((self.gram + self.gram.T) / 2)
            keep = lam > max(float(lam[-1]), 0.0) * 1e-13
            return (V[:, keep] * np.sqrt(lam[keep])).T


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


def lowrank_fit(Wm: np.ndarray, rank: int, L: np.ndarray | None,
                svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
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
