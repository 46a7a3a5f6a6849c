"""Data-aware fits of the kron-structured conv factorizations by alternating closed forms.

Weight SVD, spatial SVD and Tucker-2 all approximate the conv weight ``Wm`` (out x d,
``d = a * m``, input side split into a group ``a`` and a group ``m``) as

    Wm_hat = C K^T,    K = kron(F, I_m)   (d x r m),   C (out x r m),

with ``F`` (a x r) the input-side factor (weight SVD: ``a = in``, ``m = kh kw``; spatial
SVD: ``a = in kh``, ``m = kw``; Tucker-2: ``F = U_in``, ``m = kh kw`` and ``C = U_out
S_(0)`` of rank ``r_out``). The data-aware objective is ``tr(E M E^T)`` with ``E =
Wm_hat - Wm`` and ``M = w_w I + w_r G`` (``G`` the Gram matrix of the calibration
patches; see :mod:`sdf.models.compress._fit`).

For a fixed ``F`` the best ``C`` is a closed form: ``C = Wm M K (K^T M K)^{-1}``, and with
an output rank ``r_out`` the reduced-rank regression ``C = U U^T C*`` (``U`` the leading
left singular vectors of ``C* chol(K^T M K)``). For a fixed ``C`` the objective is a
quadratic in ``F``, minimised by preconditioned conjugate gradients (preconditioner: the
Kronecker-factored part of its Hessian, exact when ``M = M_a (x) I_m``). When ``M`` is a
Kronecker product ``M_a (x) M_m`` the whole problem is a generalised SVD: the truncated
SVD of the whitened weight. The fit starts from the better of the data-free factor and
that generalised SVD for the nearest Kronecker product of ``M`` (Van Loan-Pitsianis),
then alternates the two steps; each step lowers the objective, so the result is never
worse than either start. The alternations crawl where the singular values around the
rank are close (their rate is that of subspace iteration); without an output rank, after
a few of them the fit takes Newton steps on ``span(F)`` with ``C`` eliminated (variable
projection: exact gradient and Hessian products, truncated preconditioned CG in a trust
region, a step halved until it lowers the objective). The products with ``M`` are linear
in ``F``: the ones CG computes also give those of the new ``F``, so each iteration
multiplies by ``M`` only along its search directions. The iterations run in float32
until the objective is close to its limit, then in float64; the float64 Newton steps
still take their CG Hessian products in float32 (mixed precision: the float64 gradient
sets the limit).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import scipy.linalg as sla
from numpy.typing import DTypeLike

from sdf.algebra import nearest_kron
from sdf.models.compress._fit import Metric
from sdf.models.compress._roots import KronRoot

__all__: list[str] = []


@dataclass(frozen=True)
class KronFit:
    """Result of :func:`fit_kron`.

    ``C`` has shape (out, r, m), ``F`` (a, r) with orthonormal columns; ``objective`` is
    ``tr(E M E^T)``; ``start`` names the start that was refined and ``start_objective``
    is its objective (with its closed-form ``C``); ``converged`` is False when the
    alternations stopped at ``max_iter``; ``newton_steps`` of the ``iterations`` were
    Newton steps; ``MF`` is ``apply_metric(F)`` on the fit's problem (refining the
    result further from a :class:`Start` of it takes no product with ``M``), None for
    :func:`every_input_fit`'s closed form.
    """

    C: np.ndarray
    F: np.ndarray
    objective: float
    iterations: int
    start: str
    converged: bool
    start_objective: float
    newton_steps: int
    MF: np.ndarray | None


# a Newton step whose model promises less than this share of the tolerance (times the
# objective) on positive curvature is not taken: the fit has converged. The promise of a
# truncated CG underestimates the decrease still to come where the steps converge
# linearly (on a 64x1024x3x3 weight SVD, about 2x), hence a share well below 1
_UNTAKEN_SHARE = 0.25
# bounds of the extrapolation step (a multiple of the last alternation's change of F)
_MIN_STEP, _MAX_STEP = 0.25, 8.0
# CG steps and relative preconditioned-residual tolerance of a Newton step
_NEWTON_CG_ITER, _NEWTON_CG_TOL = 10, 1e-3
# the first trust region of a fit's Newton steps: the Frobenius norm of the step ``X``
# (horizontal to an orthonormal ``F``: the root sum of squares of the tangents of the
# angles by which it turns ``span(F)``). On the 157 weight and spatial SVD fits of the
# random layers of seeds 0 to 109, a first region of 2 took 0.82x the time of none (1:
# 0.85x, 4: 0.87x), and 5 fits instead of 7 ended over 1e-4 above the tightest objective
_FIRST_RADIUS = 2.0
# predicted remaining decrease (relative) at which the float32 iterations hand over to
# float64 ones: float32 objectives carry errors of about 1e-7 c0 (a few 1e-6 of the
# objective at a tenth of c0), below which their steps chase rounding
_SINGLE_TOL = 1e-5
# the least decrease (relative to c0) that float32 objectives resolve: ten times their
# errors. A fit whose tolerance times its objective is above it ends in float32 (a
# 256x384x3x3 Tucker-2 at 7e-4 c0 did not: its float32 alternations stopped on rounding
# 2e-4 of the objective above the limit at a tolerance of 1e-4)
_SINGLE_RESOLVES = 1e-6


def _whitened(G: np.ndarray, B: np.ndarray
              ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """``Y = B L^{-T}`` for a root ``L L^T = G`` of a symmetric positive semi-definite
    ``G``, and the map ``Z -> Z L^{-1}`` (so ``B G^{-1}`` is ``Y L^{-1}`` and ``||Y||^2``
    is ``tr(B G^{-1} B^T)``). ``L``: the Cholesky factor, or for a singular ``G`` the eigen
    root on its range (pseudo-inverse)."""
    try:  # scipy's LAPACK call: about 2x (float64) and 3x (float32) numpy's time
        L = sla.cholesky(G, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        lam, V = np.linalg.eigh(G)
        keep = lam > 1e-15 * max(float(lam[-1]), 0.0)
        V, root = V[:, keep], np.sqrt(lam[keep])
        return (B @ V) / root, lambda Z: (Z / root) @ V.T
    Y = sla.solve_triangular(L, B.T, lower=True, check_finite=False).T
    return Y, lambda Z: sla.solve_triangular(L, Z.T, trans="T", lower=True,
                                             check_finite=False).T


class GramSolve(Protocol):
    """``G = K^T M K`` (r m, r m; rows and columns in ``(s, lam)`` order) ready for
    products ``B G^{-1}`` with a few rows ``B``."""

    def solve(self, B: np.ndarray) -> np.ndarray:
        """``B G^{-1}`` for ``B`` (p, r m), to the accuracy of ``B``'s dtype."""
        ...

    def times_inverse(self, dtype: DTypeLike) -> Callable[[np.ndarray], np.ndarray]:
        """``B -> B G^{-1}`` in ``dtype`` by products only (the Hessian products apply it
        many times; they need a few digits, see :func:`_curvature`)."""
        ...


@dataclass(frozen=True)
class _CholeskyGram:
    """:class:`GramSolve` of the formed ``G`` by its Cholesky factor (scipy's
    ``cho_factor`` pair) in ``(lam, s)`` order (:meth:`_Problem.gram_k`); the few rows
    ``B`` are permuted to it and back."""

    factor: tuple[np.ndarray, bool]
    m: int

    def solve(self, B: np.ndarray) -> np.ndarray:
        m = self.m
        return _s_major(sla.cho_solve(self.factor, _lam_major(B, m).T,
                                      check_finite=False).T, m)

    def times_inverse(self, dtype: DTypeLike) -> Callable[[np.ndarray], np.ndarray]:
        G_inv = _spd_inverse((self.factor[0].astype(dtype, copy=False), self.factor[1]))
        m = self.m
        return lambda B: _s_major(_lam_major(B, m) @ G_inv, m)


def _lam_major(B: np.ndarray, m: int) -> np.ndarray:
    """``B`` (p, r m) with its columns from ``(s, lam)`` to ``(lam, s)`` order (a copy)."""
    p = B.shape[0]
    return np.ascontiguousarray(B.reshape(p, -1, m).transpose(0, 2, 1)).reshape(p, -1)


def _s_major(B: np.ndarray, m: int) -> np.ndarray:
    """``B`` (p, m r) with its columns from ``(lam, s)`` to ``(s, lam)`` order (a copy)."""
    p = B.shape[0]
    return np.ascontiguousarray(B.reshape(p, m, -1).transpose(0, 2, 1)).reshape(p, -1)


@dataclass(frozen=True)
class _WoodburyGram:
    """:class:`GramSolve` of ``G = A + Y^T Y`` with ``A = w (F^T F) (x) I_m`` and ``Y = R
    K`` (k, r m), ``k < r m`` rows of the calibration root, by the Woodbury identity
    ``B G^{-1} = B A^{-1} - B A^{-1} Y^T (I_k + Y A^{-1} Y^T)^{-1} Y A^{-1}``: a (k, k)
    factor where the formed ``G`` costs ``k (r m)^2`` and its Cholesky factor ``(r
    m)^3 / 3`` (a 16x512x7x7 conv's weight SVD with 784 patches: r m = 7546, tens of
    seconds per point instead of a tenth).

    Always in float64: the two terms cancel where ``B`` lies in the span of ``Y``'s rows,
    so their rounding grows with the condition of ``I_k + Y A^{-1} Y^T`` (1.4e10 on a
    128x512x3x3 conv's weight SVD with 392 patches, whose float32 products with ``G^{-1}``
    were then wrong by 0.6 %, and its fit took 139 Newton steps instead of 11); the
    products involve ``k`` columns and a few rows only.

    ``Y`` is the image ``R K`` (k, m r), columns in ``(lam, s)`` order as it comes (the few
    rows ``B`` are permuted instead); ``ftf_inv`` is ``(F^T F)^{-1}`` (None: ``F``
    orthonormal), ``cap`` the Cholesky pair of ``I_k + Y A^{-1} Y^T``.
    """

    w: float
    m: int
    ftf_inv: np.ndarray | None
    Y: np.ndarray
    cap: tuple[np.ndarray, bool]

    @classmethod
    def build(cls, image: np.ndarray, F: np.ndarray, w: float) -> _WoodburyGram | None:
        """From the image ``R K`` (k, m, r) of ``F``; None when a factorization fails
        (``F`` not of full rank)."""
        k, m, r = image.shape
        image = image.astype(np.float64, copy=False)
        F = F.astype(np.float64, copy=False)
        Y = image.reshape(k, m * r)
        FtF = F.T @ F
        ftf_inv = None
        # Y A^{-1} Y^T = Z Z^T with Z = Y (L^{-T} (x) I_m), L L^T = F^T F: a symmetric
        # product (BLAS syrk), half the multiply-adds of Y A^{-1} times Y^T (k^2 r m / 2:
        # on a 16x384x7x7 conv's weight SVD with 3136 patches, 1.5 s instead of 2.7 s per
        # point; the iterates' F are orthonormal only to float32's rounding)
        Z = Y
        if not np.allclose(FtF, np.eye(r), rtol=0.0, atol=1e-12 * r):
            try:
                factor = sla.cho_factor(FtF, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                return None
            ftf_inv = _spd_inverse(factor)
            # (by the product with L^{-T}: a triangular solve with k m right-hand sides
            # took 4 times as long)
            L_inv = sla.solve_triangular(factor[0], np.eye(r), lower=True,
                                         check_finite=False)
            Z = (image.reshape(k * m, r) @ L_inv.T).reshape(k, m * r)
        capacitance = Z @ Z.T
        capacitance /= w
        capacitance[np.diag_indices_from(capacitance)] += 1.0
        try:
            cap = sla.cho_factor(capacitance, lower=True, overwrite_a=True,
                                 check_finite=False)
        except np.linalg.LinAlgError:
            return None
        return cls(w, m, ftf_inv, Y, cap)

    def solve(self, B: np.ndarray) -> np.ndarray:
        """``B G^{-1}`` computed in float64, in ``B``'s dtype."""
        p, m = B.shape[0], self.m
        r = B.shape[1] // m
        BA = _a_inverse_rows(B.astype(np.float64, copy=False), self.w, self.ftf_inv, m)
        V = sla.cho_solve(self.cap, self.Y @ BA.reshape(p, r, m).transpose(2, 1, 0).reshape(
            m * r, p), check_finite=False).T
        back = (V @ self.Y).reshape(p, m, r).transpose(0, 2, 1).reshape(p, r * m)
        return (BA - _a_inverse_rows(back, self.w, self.ftf_inv, m)).astype(B.dtype,
                                                                             copy=False)

    def times_inverse(self, dtype: DTypeLike) -> Callable[[np.ndarray], np.ndarray]:
        return lambda B: self.solve(B).astype(dtype, copy=False)


def _a_inverse_rows(B: np.ndarray, w: float, ftf_inv: np.ndarray | None, m: int
                    ) -> np.ndarray:
    """``B A^{-1}`` for ``A = w (F^T F) (x) I_m`` (``ftf_inv``: ``(F^T F)^{-1}``, None for
    the identity) and ``B`` (p, r m), columns in ``(s, lam)`` order."""
    if ftf_inv is None:
        return B / w
    p = B.shape[0]
    r = ftf_inv.shape[0]
    return np.einsum("ptl,ts->psl", B.reshape(p, r, m), ftf_inv,
                     optimize=True).reshape(p, r * m) / w


class _Problem:
    """The objective ``tr((C K^T - Wm) M (C K^T - Wm)^T)`` and its two closed-form steps.

    ``M`` is a matrix or a :class:`~sdf.models.compress._fit.Metric`; with its root (``M =
    w I + R^T R``, ``R`` (k, d)) the products with ``M`` go through ``R`` where that takes
    fewer flops: ``M K`` (``apply_metric``, ``(a m, r m)``) costs
    ``a^2 m^2 r`` dense and ``k a m r (m + 1)`` through ``R``; a product with ``p`` plain
    columns (``metric_times``) ``d^2 p`` dense and ``2 k d p`` through ``R`` (and ``R``,
    ``k / d`` of ``M``'s size, stays in cache where ``M`` is read from memory each time).

    Given the rank ``r`` of ``F``, the products may instead keep ``M K`` as its image ``R
    K`` (k, m, r) (``kroot``, see :mod:`sdf.models.compress._roots`: for a convolution's
    patches, convolutions of its maps) where that takes fewer multiply-adds
    (:func:`_image_root`): ``apply_metric`` then returns the image, the methods taking its
    result accept either (``mk_times`` and ``metric_times`` excepted: the rank-limited
    products contract the images instead), and neither the dense ``M`` nor the rows are
    kept.
    """

    def __init__(self, W3: np.ndarray, M: np.ndarray | Metric, out_rank: int | None,
                 rank: int | None = None) -> None:
        o, a, m = W3.shape
        self.shape = (o, a, m)
        self.W3 = W3
        metric = M if isinstance(M, Metric) else Metric(M)
        root = metric.root
        k = a * m if root is None else root.shape[0]
        self.root_weight = float(metric.scale)
        self.out_rank = out_rank
        Wm = W3.reshape(o, -1)
        # with rows: M K kept as its image R K where that takes fewer multiply-adds (see
        # _roots)
        self.kroot = None if rank is None else _image_root(metric, o, a, m, rank, out_rank)
        self.M: np.ndarray | None = None
        self.R: np.ndarray | None = None
        self.Rt: np.ndarray | None = None
        self.Mt: np.ndarray | None = None
        self.wide_by_root = self.thin_by_root = False
        if self.kroot is not None:
            self.metric = metric
            self.Ma_inv = _preconditioner_inverse(self.kron_pair()[0] / m)
            assert root is not None
            WM = self.root_weight * Wm + metric.root_weight * ((Wm @ root.T) @ root)
        else:
            M = self.M = metric.dense
            if root is None:
                self.root_weight = 0.0
            # the routes: M K and the thin products through R when that takes fewer flops
            self.wide_by_root = k * (m + 1) < a * m
            self.thin_by_root = 2 * k < a * m
            if root is not None and self.thin_by_root:
                self.R = np.ascontiguousarray(metric.weighted_root())
                # R laid out ((k, nu), b): its product with F is the product R K
                self.Rt = np.ascontiguousarray(
                    self.R.reshape(k, a, m).transpose(0, 2, 1)).reshape(k * m, a)
            # M laid out (a, mu, nu, b) once, so that the product ``M K`` is one matmul
            if not (self.wide_by_root and self.thin_by_root):
                self.Mt = np.ascontiguousarray(
                    M.reshape(a, m, a, m).transpose(0, 1, 3, 2)).reshape(a * m * m, a)
            # the preconditioner's input-side factor (the m-averaged block diagonal of M),
            # inverted (see _preconditioner_inverse)
            self.Ma_inv = _preconditioner_inverse(
                np.einsum("anbn->ab", M.reshape(a, m, a, m)) / m)
            WM = (self.root_weight * Wm + (Wm @ self.R.T) @ self.R if self.R is not None
                  else Wm @ M)
        self.WM3 = WM.reshape(o, a, m)
        # the same laid out (o m, a): its products with F and C are plain matmuls
        self.WMt = np.ascontiguousarray(self.WM3.transpose(0, 2, 1)).reshape(o * m, a)
        self.c0 = float(np.vdot(self.WM3, W3))

    def kron_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """Kronecker factors ``(M_a, M_m)`` with ``M_a (x) M_m`` near ``M`` (up to scale):
        the nearest Kronecker product of the dense ``M`` (Van Loan-Pitsianis), or through
        the rows its partial traces (exact for a Kronecker product)."""
        o, a, m = self.shape
        if self.kroot is None:
            assert self.M is not None
            return nearest_kron(self.M, (a, a), (m, m))
        pair = self.metric.kron_traces(a, m)
        assert pair is not None  # the image route has a root
        return pair

    def single(self) -> _Problem:
        """The same problem with its arrays in float32 (BLAS products twice as fast;
        objectives accurate to about ``1e-7 c0``)."""
        low = copy.copy(self)
        low.W3, low.WM3, low.WMt = (A.astype(np.float32) for A in (
            self.W3, self.WM3, self.WMt))
        low.Mt, low.R, low.Rt = (None if A is None else A.astype(np.float32)
                                 for A in (self.Mt, self.R, self.Rt))
        low.kroot = None if self.kroot is None else self.kroot.astype(np.float32)
        low.Ma_inv = self.Ma_inv.astype(np.float32)
        return low

    def weight_times(self, X: np.ndarray) -> np.ndarray:
        """``Wm M kron(X, I_m)`` (out, r m) for ``X`` (a, r): ``einsum("oan,ar->orn")``."""
        o, _, m = self.shape
        r = X.shape[1]
        return (self.WMt @ X).reshape(o, m, r).transpose(0, 2, 1).reshape(o, r * m)

    def weight_contract(self, C: np.ndarray) -> np.ndarray:
        """``sum_{o, n} WM3[o, a, n] C[o, r, n]`` (a, r) for ``C`` (out, r m) or (out, r,
        m): the part of ``M Wm^T C`` that reaches ``F``."""
        o, _, m = self.shape
        C3 = C.reshape(o, -1, m)
        return self.WMt.T @ C3.transpose(0, 2, 1).reshape(o * m, C3.shape[1])

    def apply_metric(self, F: np.ndarray) -> np.ndarray:
        """``T[a, mu, nu, r] = sum_b M[(a, mu), (b, nu)] F[b, r]``: the product ``M K``;
        on the image route (``kroot``) the image ``R K`` (k, m, r) that stands for it (the
        methods here take either; both are linear in ``F``)."""
        a, m = self.shape[1:]
        r = F.shape[1]
        if self.kroot is not None:  # the image Y = R K (k, m, r) instead
            return self.kroot.image(F)
        if self.Rt is None or self.R is None or not self.wide_by_root:
            assert self.Mt is not None
            return (self.Mt @ F).reshape(a, m, m, r)
        k = self.R.shape[0]
        RK = (self.Rt @ F).reshape(k, m * r)  # R K laid out (k, (nu, r))
        T = (self.R.T @ RK).reshape(a, m, m, r)
        diag = np.arange(m)
        T[:, diag, diag, :] += self.root_weight * F[:, None, :]
        return T

    def metric_times(self, Y3: np.ndarray) -> np.ndarray:
        """``M Y`` (a m, p) for ``Y3`` (a, m, p): ``Y`` with its rows in ``(b, nu)``
        order, a few columns."""
        a, m = self.shape[1:]
        p = Y3.shape[2]
        if self.R is None:
            assert self.Mt is not None
            # Mt's columns are in (nu, b) order
            Yt = Y3.transpose(1, 0, 2).reshape(m * a, p)
            return self.Mt.reshape(a * m, m * a) @ Yt
        Y = Y3.reshape(a * m, p)
        return self.root_weight * Y + self.R.T @ (self.R @ Y)

    def gram_k(self, F: np.ndarray, MF: np.ndarray) -> np.ndarray:
        """``K^T M K`` (m r, m r), rows and columns in ``(lam, s)`` order (permute ``(s,
        lam)``-ordered rows with :func:`_lam_major`), from ``MF = apply_metric(F)``.

        The order in which the products come: ``M K`` (a, mu, nu, r) times ``F^T`` over
        ``a``, one product per ``mu``, or the images' columns ``(lam, s)``. In ``(s,
        lam)`` order the matrix was a transposing copy of its whole size (a 192x384x3x3
        conv's Tucker-2, ``r m = 1998``: 1.0 s of 3.0 s in forming it)."""
        a, m = self.shape[1:]
        r = F.shape[1]
        if self.kroot is None:
            by_lam = MF.reshape(a, m, m, r).transpose(1, 0, 2, 3).reshape(m, a, m * r)
            return np.matmul(F.T, by_lam).reshape(m * r, m * r)
        Y2 = MF.reshape(-1, m * r)  # columns (lam, s)
        GK = Y2.T @ Y2
        blocks = np.arange(m)  # the identity part on the diagonal blocks, in place
        GK.reshape(m, r, m, r)[blocks, :, blocks, :] += self.root_weight * (F.T @ F)
        return GK

    def gram_solve(self, F: np.ndarray, MF: np.ndarray) -> GramSolve | None:
        """``K^T M K`` ready for solves (:class:`GramSolve`), from ``MF =
        apply_metric(F)``; None when it is not positive definite. On the image route
        with fewer calibration rows than ``r m`` (and an identity part), by the Woodbury
        identity (:class:`_WoodburyGram`, never formed); else formed
        (:meth:`gram_k`) and factored."""
        if self.low_rank_gram(F.shape[1]):
            return _WoodburyGram.build(MF, F, self.root_weight)
        GK = self.gram_k(F, MF)
        try:  # (the factorization reads the lower triangle only)
            return _CholeskyGram(sla.cho_factor(GK, lower=True, overwrite_a=True,
                                                check_finite=False), self.shape[2])
        except np.linalg.LinAlgError:
            return None

    def low_rank_gram(self, r: int) -> bool:
        """Whether ``K^T M K`` of rank ``r`` is an identity part plus a product of fewer
        calibration rows than its order ``r m`` (see :meth:`gram_solve`)."""
        return (self.kroot is not None and self.root_weight > 0.0
                and self.kroot.rows < r * self.shape[2])

    def mk_times(self, MF: np.ndarray, S: np.ndarray) -> np.ndarray:
        """``M K S^T`` for ``S`` (p, r m) (rows in ``(s, lam)`` order), laid out (a, (mu,
        p)), from ``MF = apply_metric(F)`` (the dense route's ``M K``; the image route
        contracts its images with ``S`` instead)."""
        a, m = self.shape[1:]
        p = S.shape[0]
        S_ls = S.reshape(p, -1, m).transpose(2, 1, 0).reshape(-1, p)
        return (MF.reshape(a * m, -1) @ S_ls).reshape(a, -1)

    def image_contract(self, X: np.ndarray, Z: np.ndarray, pairs: Sequence[
            tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """Image route: ``sum_mu [M dK_i A_i^T B_i][(a, mu), (r, mu)]`` summed over the
        ``(X_i, A_i, B_i)`` of ``pairs`` (``A``, ``B`` (out, r, m)), whose root parts
        ``Z`` (k, m r; ``R dK_i A_i^T B_i`` summed, columns ``(mu, r)``) the caller formed
        in factored form (rank ``out``)."""
        m = self.shape[2]
        H = self.kroot.back(Z.reshape(Z.shape[0], m, -1))  # type: ignore[union-attr]
        for Xi, A, B in pairs:
            H += self.root_weight * (Xi @ np.einsum("osm,orm->sr", A, B, optimize=True))
        return H

    def c_step(self, F: np.ndarray, MF: np.ndarray) -> tuple[np.ndarray, float]:
        """Best ``C`` (out, r, m) for ``F`` (``MF = apply_metric(F)``) and the objective."""
        o, a, m = self.shape
        r = F.shape[1]
        rhs = self.weight_times(F)
        gram = self.gram_solve(F, MF) if self.low_rank_gram(r) else None
        if gram is not None:  # with P = rhs G^{-1}: the same closed forms as below
            P = gram.solve(rhs)
            if self.out_rank is None or self.out_rank >= min(o, r * m):
                return P.reshape(o, r, m), self.c0 - _inner(P, rhs)
            A = P @ rhs.T
            U = np.linalg.eigh((A + A.T) / 2)[1][:, -self.out_rank:]
            UtP = U.T @ P
            return (U @ UtP).reshape(o, r, m), self.c0 - _inner(UtP, U.T @ rhs)
        GK = self.gram_k(F, MF)  # its lower triangle is all the factorization reads
        # C = rhs GK^{-1} = Y L^{-1}; with an output rank, the reduced-rank regression
        # keeps the leading left singular subspace of Y = C L (in GK's (lam, s) order)
        Y, times_root_inv = _whitened(GK, _lam_major(rhs, m))
        if self.out_rank is None or self.out_rank >= min(o, r * m):
            return _s_major(times_root_inv(Y), m).reshape(o, r, m), self.c0 - _norm2(Y)
        U = np.linalg.eigh(Y @ Y.T)[1][:, -self.out_rank:]
        UtY = U.T @ Y
        return (_s_major(times_root_inv(U @ UtY), m).reshape(o, r, m),
                self.c0 - _norm2(UtY))

    def f_step(self, F: np.ndarray, MF: np.ndarray, C: np.ndarray, cg_iter: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Lower the objective over ``F`` for fixed ``C`` by preconditioned CG from ``F``.

        Returns the new factor ``X`` and ``apply_metric(X)``: the metric is linear, so the
        products of the search directions (computed for the Hessian anyway) give it.
        """
        if self.kroot is None:
            Qt = _q_layout(np.tensordot(C, C, axes=([0], [0])))  # C^T C (r, nu, s, lam)

            def hess(P: np.ndarray, T: np.ndarray) -> np.ndarray:  # (H P)[a, r], T = M dK
                return _contract(T, Qt)
        else:
            C_ml = _ml_layout(C)

            def hess(P: np.ndarray, T: np.ndarray) -> np.ndarray:  # T = R dK
                Z = (T.reshape(T.shape[0], -1) @ C_ml.T) @ C_ml
                return self.image_contract(P, Z, [(P, C, C)])

        N = self.weight_contract(C)
        Ma_inv, Qb_inv = self.Ma_inv, _preconditioner_inverse(_diagonal_blocks(C))

        def precond(R: np.ndarray) -> np.ndarray:
            return (Ma_inv @ R) @ Qb_inv

        X, MX = F.copy(), MF.copy()
        steps = _metric_pcg(self.apply_metric, hess, precond, N - hess(F, MF),
                            X, MX, cg_iter, 0.0, keep_first_on_negative=False)
        return (X, MX) if steps is None else (steps.X, steps.MX)


    def point(self, F: np.ndarray, MF: np.ndarray) -> _Point | None:
        """The Newton phase's view of ``F`` (no output rank): ``K^T M K`` ready for solves,
        the best ``C`` and the objective; None when ``K^T M K`` is not positive definite
        (the alternations handle that case)."""
        gram = self.gram_solve(F, MF)
        if gram is None:
            return None
        rhs = self.weight_times(F)
        C = gram.solve(rhs)
        return _Point(F, MF, gram, C, self.c0 - _inner(C, rhs))

    def residual(self, p: _Point) -> tuple[np.ndarray, np.ndarray | None]:
        """``-1/2`` the gradient of the objective with ``C`` eliminated (``C`` optimal, so
        it is the partial gradient in ``F``), projected on the horizontal space ``F^T X =
        0``, and on the dense route ``Q4 = C^T C`` laid out (r, nu, s, lam) (None on the
        image route and where :meth:`factored_hessian`, whose products contract ``C``
        itself: ``C^T C`` has ``(r m)^2`` entries, 455 MB on a 16x512x7x7 conv's weight
        SVD)."""
        o, a, m = self.shape
        C = p.C.reshape(o, -1, m)
        Q4 = None
        if self.kroot is not None:
            C_ml = _ml_layout(C)
            Z = (p.MF.reshape(p.MF.shape[0], -1) @ C_ml.T) @ C_ml
            MKQ = self.image_contract(p.F, Z, [(p.F, C, C)])
        elif self.factored_hessian(C.shape[1]):
            MKQ = _back(p.MF.reshape(a * m, -1) @ _ml_layout(C).T, C)
        else:
            Q4 = np.tensordot(C, C, axes=([0], [0]))
            MKQ = _contract(p.MF, _q_layout(Q4))
        R = self.weight_contract(C) - MKQ
        return R - p.F @ (p.F.T @ R), Q4

    def hessvec(self, p: _Point, curv: _Curvature, X: np.ndarray, MX: np.ndarray | None
                ) -> np.ndarray:
        """``1/2`` the Hessian of the objective with ``C`` eliminated (variable projection)
        applied to a horizontal ``X`` (``MX = apply_metric(X)``; not read, and may be
        None, where :meth:`factored_hessian`), projected horizontally; ``curv``: what the
        products at ``p`` share (:func:`_curvature`).

        With ``G = K^T M K``, ``B = Wm M`` and ``dK = kron(X, I)``: ``dC = (B dK - C dG)
        G^{-1}``, ``dG = dK^T M K + K^T M dK``, and the derivative of the gradient
        ``M (K C^T - Wm^T) C`` is ``M dK C^T C + M K (dC^T C + C^T dC) - B^T dC``,
        summed over the ``m`` blocks of ``dK``.
        """
        if curv.factored:
            return self._factored_hessvec(p, curv, X)
        assert MX is not None
        if self.kroot is not None:
            return self._image_hessvec(p, curv, X, MX)
        m = self.shape[2]
        r = X.shape[1]
        F, C = p.F, p.C
        KtMdK = np.tensordot(F, MX, axes=([0], [0])).transpose(0, 1, 3, 2).reshape(r * m,
                                                                                   r * m)
        BdK = self.weight_times(X)
        dC = curv.times_g_inv(BdK - C @ (KtMdK + KtMdK.T))
        D = dC.T @ C
        DD = _q_layout((D + D.T).reshape(r, m, r, m))
        H = _contract(MX, curv.Qt) + _contract(p.MF, DD) - self.weight_contract(dC)
        return H - F @ (F.T @ H)

    def factored_hessian(self, r: int) -> bool:
        """Whether the dense route's Hessian products of rank ``r`` contract ``M K`` and
        ``M dK`` with ``C`` and ``dC`` (``out`` rows; :meth:`_factored_hessvec`) rather
        than with ``C^T C`` and ``K^T M dK`` ((r m)^2 entries): that takes fewer
        multiply-adds, ``4 out d m r`` against ``m^2 r^2 (3 a + 2 out)``, where ``out`` is
        small against ``r`` (a 64x192x7x7 conv's weight SVD, ``r m`` = 4410: products
        of 78 MB fresh arrays besides). Those products need no ``M dK``: they take ``M dK
        C^T`` as one product of ``M`` with ``out`` columns, which is cheaper than ``M dK``
        (``r m`` columns of ``a`` nonzeros each) wherever this holds."""
        o, a, _ = self.shape
        return self.kroot is None and 4 * a * o < r * (3 * a + 2 * o)

    def _factored_hessvec(self, p: _Point, curv: _Curvature, X: np.ndarray) -> np.ndarray:
        """:meth:`hessvec` on the dense route where :meth:`factored_hessian`: ``C dG = C
        K^T M dK + C dK^T M K`` and ``M dK C^T C + M K (dC^T C + C^T dC)`` from ``M K C^T``
        (shared by the point's products), ``M dK C^T`` and ``M K dC^T`` (d, out). ``M dK``
        itself is not needed: ``M dK C^T`` is ``M (C dK^T)^T``, one product of ``M`` with
        ``out`` columns, and ``C dG`` is ``(M K C^T)^T dK + (M dK C^T)^T K`` (a 64x192x7x7
        conv's weight SVD: 8.3e9 multiply-adds a product, where ``M dK`` took 8.0e9 and
        four products of ``M K`` and ``M dK`` with ``C`` and ``dC`` 1.1e10)."""
        o, a, m = self.shape
        r = X.shape[1]
        assert curv.C_ml is not None and curv.YC is not None
        C3 = p.C.reshape(o, r, m)
        CdK = np.einsum("osn,bs->obn", C3, X, optimize=True)  # C dK^T (out, a, m)
        MdKC = self.metric_times(CdK.transpose(1, 2, 0))  # M dK C^T (a m, out)
        CG = (np.einsum("bno,bs->osn", curv.YC.reshape(a, m, o), X, optimize=True)
              + np.einsum("bno,bs->osn", MdKC.reshape(a, m, o), p.F, optimize=True))
        dC = curv.times_g_inv(self.weight_times(X) - CG.reshape(o, r * m))
        dC3 = dC.reshape(o, r, m)
        MF2 = p.MF.reshape(a * m, m * r)
        H = (_back(MdKC + MF2 @ _ml_layout(dC3).T, C3)
             + _back(curv.YC, dC3) - self.weight_contract(dC))
        return H - p.F @ (p.F.T @ H)

    def _image_hessvec(self, p: _Point, curv: _Curvature, X: np.ndarray, MX: np.ndarray
                       ) -> np.ndarray:
        """:meth:`hessvec` on the image route: ``MX = R dK`` and ``p.MF = R K`` (k, m, r);
        ``K^T M dK`` and ``M dK C^T C`` enter only multiplied by ``C`` (out rows), so
        every product with the images has ``out`` columns, and one :meth:`back` maps the
        root parts to ``F``'s space."""
        o, _, m = self.shape
        r = X.shape[1]
        F, C = p.F, p.C
        C3 = C.reshape(o, r, m)
        assert curv.C_ml is not None and curv.YC is not None
        C_ml, YC = curv.C_ml, curv.YC
        YX = MX.reshape(MX.shape[0], m * r)
        YXC = YX @ C_ml.T  # (k, out)
        w = self.root_weight
        # C K^T M dK + C dK^T M K (out, (s, lam)); their root parts in (lam, s) order
        FtX = F.T @ X
        root = (YC.T @ YX + YXC.T @ p.MF.reshape(-1, m * r)).reshape(o, m, r)
        CG = root.transpose(0, 2, 1) + w * (np.einsum("osm,sr->orm", C3, FtX, optimize=True)
                                            + np.einsum("osm,rs->orm", C3, FtX, optimize=True))
        dC = curv.times_g_inv(self.weight_times(X) - CG.reshape(o, r * m))
        dC3 = dC.reshape(o, r, m)
        dC_ml = _ml_layout(dC3)
        # root parts of M dK C^T C + M K (dC^T C + C^T dC)
        Z = (YXC + p.MF.reshape(-1, m * r) @ dC_ml.T) @ C_ml + YC @ dC_ml
        H = self.image_contract(X, Z, [(X, C3, C3), (F, dC3, C3), (F, C3, dC3)])
        H -= self.weight_contract(dC)
        return H - F @ (F.T @ H)


def _back(P: np.ndarray, C3: np.ndarray) -> np.ndarray:
    """``sum_{mu, o} P[(a, mu), o] C3[o, r, mu]`` (a, r) for ``P`` (a m, out): the part of
    a product ``P C`` (d, r m) that reaches ``F``."""
    o, r, m = C3.shape
    return P.reshape(-1, m * o) @ np.ascontiguousarray(C3.transpose(2, 0, 1)).reshape(m * o, r)


def _ml_layout(C3: np.ndarray) -> np.ndarray:
    """``C3`` (out, r, m) laid out (out, (m, r)): the column order of the images ``R K``
    flattened."""
    return np.ascontiguousarray(C3.transpose(0, 2, 1)).reshape(C3.shape[0], -1)


def _image_root(metric: Metric, o: int, a: int, m: int, r: int, out_rank: int | None
                ) -> KronRoot | None:
    """The root to keep ``M K`` as its image through (see :mod:`_roots`), or None where
    the dense route takes fewer multiply-adds. Counted: the dense ``M`` and its layouts
    (:data:`_DENSE_SETUP`; with its Gram matrix, ``k d^2 / 2``, when not formed yet), and
    per iteration one ``K^T M K`` and about ten Hessian products: without an output rank,
    dense ``M dK`` and three contractions against an image, a :meth:`back` and five
    products of the images with ``C`` (out rows); with an output rank ``p``, dense one
    product of ``M`` with ``p`` columns (``d^2 p``) and one contraction of ``M K`` with
    ``p`` columns (``a m^2 r p``), and one product ``M dK`` per step, against an image, a
    :meth:`back` and six products of the images with ``p`` columns, and one image per
    step."""
    if m == 1:  # M is then its own Kronecker product: the exact start needs the dense M
        return None
    root = metric.kron_root(a, m)
    if root is None:
        return None
    d, k = a * m, root.rows
    iterations, products = 20, 10
    if out_rank is None:
        dense_step = products * (d * d * r + 3 * a * m * m * r * r)
        image_step = products * (2 * root.cost(r) + 5 * k * m * r * o)
    else:
        dense_step = products * (d * d + a * m * m * r) * out_rank + d * d * r
        image_step = products * (2 * root.cost(r) + 6 * k * m * r * out_rank) + root.cost(r)
    setup = _DENSE_SETUP * d * d + (k * d * d / 2 if metric.matrix is None else 0.0)
    dense = setup + iterations * (dense_step + a * m * m * r * r)
    image = iterations * (image_step + k * (m * r) ** 2)
    return root if image < dense else None


#: What the dense route's (d, d) arrays (the metric, its product layout, their float32
#: copies) cost per entry beyond any arithmetic, in multiply-adds of the same time: new
#: arrays fault their pages in and the layout is a transposing copy. A 64x1024x3x3 conv
#: (d = 9216) spent about 7 s of a 36 s Tucker-2 fit on them, without the Gram matrix's
#: arithmetic, at about 3.4e10 multiply-adds per second.
_DENSE_SETUP = 2400


@dataclass(frozen=True)
class _Point:
    """An iterate of the Newton phase: ``F`` (orthonormal), ``MF = apply_metric(F)``,
    ``K^T M K`` ready for solves (:class:`GramSolve`), the best ``C`` (out, r m) and the
    objective ``f``;
    ``unmet``: the decrease the Newton model promised when the step that reached it
    missed its model (:func:`missed_model`), else 0 (see :func:`_refine`)."""

    F: np.ndarray
    MF: np.ndarray
    gram: GramSolve
    C: np.ndarray
    f: float
    unmet: float = 0.0

    def astype(self, dtype: DTypeLike) -> _Point:
        """The same point with its arrays in ``dtype`` (``f`` and ``gram`` kept:
        :meth:`GramSolve.times_inverse` gives the products with ``G^{-1}`` in a dtype)."""
        return _Point(self.F.astype(dtype), self.MF.astype(dtype), self.gram,
                      self.C.astype(dtype), self.f)


def _diagonal_blocks(C3: np.ndarray) -> np.ndarray:
    """``sum_nu (C^T C)[(r, nu), (s, nu)]`` (r, r) for ``C3`` (out, r, m): the output-side
    factor of the preconditioners, without forming ``C^T C``."""
    return np.einsum("orn,osn->rs", C3, C3, optimize=True)


def _q_layout(Q4: np.ndarray) -> np.ndarray:
    """``Q4`` (r, mu, s, lam) laid out ((mu, lam, s), r) for :func:`_contract`."""
    return np.ascontiguousarray(Q4.transpose(1, 3, 2, 0)).reshape(-1, Q4.shape[0])


def _contract(T: np.ndarray, Qt: np.ndarray) -> np.ndarray:
    """``sum_{mu, (s, lam)} T[(a, mu), (s, lam)] Q[(s, lam), (r, mu)]`` for ``T`` laid out
    (a, mu, lam, s) and ``Q`` laid out by :func:`_q_layout`: the part of a product ``M K
    Q`` that reaches ``F``."""
    return T.reshape(T.shape[0], -1) @ Qt


@dataclass(frozen=True)
class _Curvature:
    """What the Hessian products at a point share: ``Q = C^T C`` laid out by
    :func:`_q_layout` and the inverse of ``G = K^T M K``."""

    Qt: np.ndarray
    times_g_inv: Callable[[np.ndarray], np.ndarray]
    #: on the image route and the factored dense one: ``C`` laid out (out, (m, r)) and
    #: ``R K C^T`` (k, out) or ``M K C^T`` (d, out)
    C_ml: np.ndarray | None = None
    YC: np.ndarray | None = None
    #: the factored dense route (:meth:`_Problem.factored_hessian`)
    factored: bool = False


def _curvature(p: _Point, Q4: np.ndarray | None, dtype: DTypeLike, image: bool = False
               ) -> _Curvature:
    """:class:`_Curvature` at ``p`` (``Q4 = C^T C``, (r, nu, s, lam); None on the image
    route and the factored dense one, see :meth:`_Problem.factored_hessian`) in ``dtype``.

    Products with ``G^{-1}`` (:meth:`GramSolve.times_inverse`): a formed ``G``'s inverse
    explicitly (:func:`_spd_inverse`; with a 1035 x 1035 ``G`` and 256 right-hand sides,
    a 256x256x3x3 conv's weight SVD, that step of a Hessian product took 17 ms as a
    solve, 8 ms as a product), in ``dtype`` from the Cholesky factor rounded to it: CG
    needs its products to a few digits only, and a float32 ``potri`` takes less than half
    the time of a float64 one (2125 x 2125: 100 ms against 231 ms). The Woodbury form's
    products run in float64 whatever ``dtype`` (see :class:`_WoodburyGram`).
    """
    G_inv = p.gram.times_inverse(dtype)
    if image or Q4 is None:
        o, m = p.C.shape[0], p.MF.shape[1]
        C3 = p.C.astype(dtype, copy=False).reshape(o, -1, m)
        C_ml = _ml_layout(C3)
        YC = p.MF.astype(dtype, copy=False).reshape(-1, C_ml.shape[1]) @ C_ml.T
        return _Curvature(np.zeros((0, 0), dtype=dtype), G_inv, C_ml, YC, not image)
    return _Curvature(_q_layout(Q4).astype(dtype, copy=False), G_inv)


def _inner(A: np.ndarray, B: np.ndarray) -> float:
    """``<A, B>`` summed in float64 (the objectives ``c0 - <A, B>`` cancel: float32 sums
    would cost them their accuracy)."""
    return float(np.vdot(A.astype(np.float64, copy=False), B.astype(np.float64, copy=False)))


def _norm2(A: np.ndarray) -> float:
    """``||A||^2`` summed in float64 (see :func:`_inner`)."""
    return _inner(A, A)


def _factor(S: np.ndarray) -> tuple[np.ndarray, bool]:
    """Cholesky factor of ``S`` with a small ridge (a preconditioner: need not be exact).

    ``S`` may be singular (a rank-limited ``C``, a calibration Gram of low rank): the
    ridge starts at a rounding level of its dtype and grows until the factorization
    succeeds. The symmetrised, ridged copy is factored in place: a spatial SVD's (a, a)
    block has ``a = in kh`` in the thousands, and with four more full-size temporaries
    a 3072 x 3072 block took 1.1-1.4 s against 0.3-0.8 s."""
    n = len(S)
    scale = float(np.trace(S)) / n
    scale = scale if scale > 0 else 1.0
    ridge = max(1e-10, 100 * float(np.finfo(S.dtype).eps))
    while True:
        work = np.add(S, S.T)
        work *= 0.5
        work.flat[::n + 1] += ridge * scale
        try:
            return sla.cho_factor(work, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            if ridge >= 1.0:  # S + scale I is positive definite unless S has NaN
                raise
            ridge *= 100


def _spd_inverse(factor: tuple[np.ndarray, bool]) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix from its Cholesky factor
    (``scipy.linalg.cho_factor``'s pair), by LAPACK's ``potri``.

    For the matrices the CG iterations here apply many times: a product with the
    inverse runs on numpy's BLAS threads, where a solve with the factor runs two
    triangular solves on scipy's single thread (see :mod:`sdf._blas`), several times
    slower. The CG directions need a few digits, which the inverse keeps unless the
    matrix is ill-conditioned to the working precision, when the solve would not keep
    them either.
    """
    c, lower = factor
    potri, = sla.get_lapack_funcs(("potri",), (c,))
    inv, info = potri(c, lower=lower)
    if info != 0:  # the factor came from a successful Cholesky: only NaN gets here
        raise np.linalg.LinAlgError(f"potri failed (info {info})")
    inv = np.tril(inv) if lower else np.triu(inv)
    out = inv + inv.T
    out[np.diag_indices_from(out)] /= 2
    return out


def _preconditioner_inverse(S: np.ndarray) -> np.ndarray:
    """The inverse of ``S`` (symmetric positive semidefinite) with :func:`_factor`'s ridge:
    a preconditioner's block, applied by products (:func:`_spd_inverse`)."""
    return _spd_inverse(_factor(S))


def _qr(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The thin QR factorization of a tall ``X`` in its own dtype, by SciPy's LAPACK.

    numpy's ``qr`` took 1.8x the time on float32 (its ``geqrf`` ran as slow as float64's)
    and 1.6-2.3x again on two BLAS threads: a 1024 x 184 factor, 12 ms against 4 ms.
    """
    Q, R = sla.qr(X, mode="economic", check_finite=False)
    return Q, R


def _orthonormal(F: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the column span of ``F`` (only the span matters)."""
    return _qr(F)[0]


def _orthonormal_with_metric(X: np.ndarray, MX: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``Q = X R^{-1}`` (``X = Q R``), ``apply_metric(Q) = MX R^{-1}`` from ``MX =
    apply_metric(X)``, and ``R``: the metric is linear, so the orthonormal basis costs one
    product with the small ``R^{-1}`` instead of one with ``M``. None when ``R`` is
    ill-conditioned (the product would lose accuracy)."""
    Q, R = _qr(X)
    d = np.abs(np.diag(R))
    if d.min() <= 1e-8 * d.max():
        return None
    R_inv = sla.solve_triangular(R, np.eye(len(R), dtype=R.dtype), lower=False, check_finite=False)
    return Q, (MX.reshape(-1, X.shape[1]) @ R_inv).reshape(MX.shape), R


def _newton_direction(prob: _Problem, p: _Point, cg_iter: int, cg_tol: float,
                      low: _Problem | None = None, radius: float = np.inf
                      ) -> _CGSteps | None:
    """Truncated preconditioned CG on the Newton equation ``H X = R`` (horizontal space).

    Preconditioner: the Kronecker-factored Hessian of the ``F`` step (as in
    :meth:`_Problem.f_step`). Stops at ``cg_iter`` steps, when the preconditioned residual
    fell by ``cg_tol``, at a direction of non-positive curvature or at the trust region's
    ``radius`` (Steihaug, :func:`_metric_pcg`). Returns ``X``, ``apply_metric(X)`` (by
    linearity, from the products CG computes) in ``p``'s dtype, and the decrease of the
    objective the Newton model predicts along ``X`` (at least 0); None when the gradient
    vanishes.

    With ``low`` (``prob`` in float32, :meth:`_Problem.single`) CG runs in float32: the
    residual ``R`` (the gradient) comes from ``prob`` at ``p``, the Hessian products from
    ``low``. CG only needs the direction to a few digits (it is truncated at ``cg_tol``);
    the point the iterations converge to is set by the gradient, so mixed precision
    reaches the accuracy of ``prob`` (as iterative refinement does) at the cost of float32
    Hessian products.
    """
    R, Q4 = prob.residual(p)
    hp, work = p, prob
    if low is not None:
        hp, work, R = p.astype(np.float32), low, R.astype(np.float32)
        Q4 = None if Q4 is None else Q4.astype(np.float32)
    curv = _curvature(p, Q4, hp.F.dtype, image=work.kroot is not None)
    F = hp.F
    Qb_inv = _preconditioner_inverse(_diagonal_blocks(hp.C.reshape(hp.C.shape[0], -1,
                                                                   prob.shape[2])))

    def precond(Y: np.ndarray) -> np.ndarray:
        Z = (work.Ma_inv @ Y) @ Qb_inv
        return Z - F @ (F.T @ Z)

    if curv.factored:
        # its products need no apply_metric of the search directions: that of X is formed
        # once, after CG, instead of tracked along (one product per step)
        steps = untracked_pcg(lambda P: work.hessvec(hp, curv, P, None), precond, R, cg_iter,
                              cg_tol, radius)
        if steps is not None:
            steps = dataclasses.replace(steps, MX=work.apply_metric(steps.X))
    else:
        steps = _metric_pcg(work.apply_metric, lambda P, MP: work.hessvec(hp, curv, P, MP),
                            precond, R, np.zeros_like(F), np.zeros_like(hp.MF), cg_iter,
                            cg_tol, keep_first_on_negative=True, radius=radius)
    if steps is None:
        return None
    return dataclasses.replace(steps, X=steps.X.astype(p.F.dtype),
                               MX=steps.MX.astype(p.F.dtype),
                               decrease=max(steps.decrease, 0.0))


def _axpy(alpha: float, x: np.ndarray, y: np.ndarray) -> None:
    """``y += alpha x`` in place, without the temporary ``alpha x`` (BLAS ``axpy``): the
    products with ``M`` are large (a 64x192x7x7 conv's weight SVD: 166 MB), and a fresh
    temporary of that size faults its pages in on every CG step."""
    if y.size and y.flags.c_contiguous and x.flags.c_contiguous and x.dtype == y.dtype:
        axpy, = sla.get_blas_funcs(("axpy",), (y,))
        axpy(x.reshape(-1), y.reshape(-1), a=alpha)
    else:
        y += alpha * x


@dataclass(frozen=True)
class _CGSteps:
    """What :func:`_metric_pcg` returns: ``X`` and ``MX = apply_metric(X)``; whether CG
    met a direction of non-positive curvature (``negative``) or stopped at its trust
    region's boundary (``boundary``); ``decrease``: the decrease ``2 <R, X> - <X, H X>``
    the quadratic model promises from a zero start (CG's own iterates have ``<X, H X> =
    <R, X>``, and so does the first direction kept on negative curvature by convention)."""

    X: np.ndarray
    MX: np.ndarray
    negative: bool
    boundary: bool
    decrease: float


def _metric_pcg(apply_metric: Callable[[np.ndarray], np.ndarray],
                hess: Callable[[np.ndarray, np.ndarray], np.ndarray],
                precond: Callable[[np.ndarray], np.ndarray], R: np.ndarray, X: np.ndarray,
                MX: np.ndarray, cg_iter: int, cg_tol: float, keep_first_on_negative: bool,
                radius: float = np.inf) -> _CGSteps | None:
    """Preconditioned CG on ``H D = R`` from ``X`` (updated in place, with ``MX =
    apply_metric(X)`` kept alongside by linearity); ``hess(P, apply_metric(P))`` is ``H P``.

    Stops after ``cg_iter`` steps, when the preconditioned residual fell by ``cg_tol``, or
    at a direction of non-positive curvature (keeping the steps so far, or with
    ``keep_first_on_negative`` the first direction itself). With a finite ``radius``
    (from ``X = 0``: a trust region, Steihaug's truncated CG) a step that would leave
    ``||X|| <= radius``, or a direction of non-positive curvature, is followed to the
    boundary instead. None when the preconditioned residual vanishes at the start.
    """
    Z = precond(R)
    P, rz = Z, float(np.vdot(R, Z))
    if not rz > 0:
        return None
    rz0, R0 = rz, R
    for k in range(cg_iter):
        MP = apply_metric(P)
        HP = hess(P, MP)
        pHp = float(np.vdot(P, HP))
        if radius < np.inf and (pHp <= 0 or _norm2(X + (rz / pHp) * P) >= radius ** 2):
            tau = _to_boundary(X, P, radius)
            X += tau * P
            _axpy(tau, MP, MX)
            HX = R0 - R  # H X before the step (CG from zero), then after it
            _axpy(tau, HP, HX)
            return _CGSteps(X, MX, pHp <= 0, True, 2 * _inner(R0, X) - _inner(X, HX))
        if pHp <= 0:
            if k == 0 and keep_first_on_negative:
                X, MX = P, MP
            return _CGSteps(X, MX, True, False, _inner(R0, X))
        alpha = rz / pHp
        X += alpha * P
        _axpy(alpha, MP, MX)
        R = R - alpha * HP
        Z = precond(R)
        rz_new = float(np.vdot(R, Z))
        if rz_new <= cg_tol * rz0:
            break
        P = Z + (rz_new / rz) * P
        rz = rz_new
    return _CGSteps(X, MX, False, False, _inner(R0, X))


def untracked_pcg(hess: Callable[[np.ndarray], np.ndarray],
                  precond: Callable[[np.ndarray], np.ndarray], R: np.ndarray, cg_iter: int,
                  cg_tol: float, radius: float = np.inf) -> _CGSteps | None:
    """:func:`_metric_pcg` from ``X = 0`` (the first direction kept on negative curvature)
    for Hessian products ``hess(P)`` that need no ``apply_metric`` of the directions: none
    is computed or tracked, and the returned ``MX`` is empty (the caller forms the step's
    product where it needs it, once)."""
    untracked = np.zeros(0, dtype=R.dtype)
    return _metric_pcg(lambda P: untracked, lambda P, _: hess(P), precond, R,
                       np.zeros_like(R), untracked.copy(), cg_iter, cg_tol,
                       keep_first_on_negative=True, radius=radius)


def _to_boundary(X: np.ndarray, P: np.ndarray, radius: float) -> float:
    """The ``tau >= 0`` with ``||X + tau P|| = radius``, for ``||X|| < radius``."""
    a, b, c = _norm2(P), 2 * _inner(X, P), _norm2(X) - radius ** 2
    return (-b + float(np.sqrt(max(b * b - 4 * a * c, 0.0)))) / (2 * a)


class _TrustRegion:
    """The radius the CG of a fit's Newton steps stops at (:func:`_metric_pcg`), adapted
    as trust-region methods adapt theirs: halved where a full step lowered the objective
    by less than a quarter of its model's promise, doubled where a step at the boundary
    lowered it by more than three quarters; a step that had to be halved sets it to the
    length that held, and a step that found no decrease to the next length it would have
    tried.

    Without one, CG followed directions of negative curvature far beyond where the
    model held (steps of norm 10 to 30 on an orthonormal ``F``), and up to 4 halvings,
    each a new ``K^T M K`` and its factorization, brought them back; some found no
    decrease at all.
    """

    def __init__(self, radius: float = _FIRST_RADIUS) -> None:
        self.radius = radius

    def update(self, t: float, size: float, decrease: float, promised: float,
               boundary: bool) -> None:
        """After a step of length ``t`` (1: full) along a direction of norm ``size``
        (``boundary``: at the boundary) lowered the objective by ``decrease`` where the
        model promised ``promised``."""
        if t < 1.0:
            self.radius = t * size
        elif decrease < 0.25 * promised:
            self.radius = size / 2
        elif decrease > 0.75 * promised and boundary:
            self.radius *= 2


def _newton_update(prob: _Problem, F: np.ndarray, MF: np.ndarray, cg_iter: int,
                   cg_tol: float, low: _Problem | None = None, p: _Point | None = None,
                   enough: float = 0.0, resolved: float = 0.0,
                   region: _TrustRegion | None = None) -> _Point | None:
    """A Newton step on ``span(F)`` with ``C`` eliminated, halved until it lowers the
    objective (at most 4 times); None when no step does (or ``K^T M K`` is singular).
    When the step missed its model (:func:`missed_model`), the new point's ``unmet`` is
    the decrease the Newton model promised. ``low``: CG in mixed precision (see
    :func:`_newton_direction`); ``p``: the point of ``F`` when known (the previous step
    returned it); ``region``: the trust region the step stays in, updated by the step
    (None: none). Where the model's minimiser promises at most ``enough`` the step is
    not taken, and where it promised at most ``resolved`` and the full step does not
    lower the objective none is halved (the objective's rounding, not the step, is at
    fault): the point of ``F`` itself is returned (converged)."""
    p = prob.point(F, MF) if p is None else p
    if p is None:
        return None
    radius = np.inf if region is None else region.radius
    direction = _newton_direction(prob, p, cg_iter, cg_tol, low, radius)
    if direction is None:
        return None
    X, MX, promised = direction.X, direction.MX, direction.decrease
    # CG stopped short of the model's minimiser: its promise is no measure of convergence
    cut = direction.negative or direction.boundary
    if not cut and promised <= enough:
        return dataclasses.replace(p, unmet=0.0)
    size = float(np.sqrt(_norm2(X)))
    t = 1.0
    for _ in range(5):
        basis = _orthonormal_with_metric(F + t * X, MF + t * MX)
        q = None if basis is None else prob.point(basis[0], basis[1])
        if q is not None and q.f < p.f:
            if region is not None:
                region.update(t, size, p.f - q.f, promised, direction.boundary)
            missed = missed_model(t, cut, p.f - q.f, promised)
            return dataclasses.replace(q, unmet=promised) if missed else q
        if not cut and promised <= resolved:
            return dataclasses.replace(p, unmet=0.0)
        t /= 2
    if region is not None:
        region.radius = t * size
    return None


# a full Newton step on positive curvature that lowers the objective by less than this
# share of the decrease its model promised did not follow its model (trust-region
# methods shrink their region below a quarter)
_MODEL_SHARE = 0.5


def missed_model(t: float, cut: bool, decrease: float, promised: float) -> bool:
    """Whether a Newton step of length ``t`` (1: the full step; less: halved), whose CG
    stopped short of its model's minimiser (``cut``: at negative curvature or at the
    trust region's boundary) or not, that lowered the objective by ``decrease`` where
    its model promised ``promised``, missed its model (see :func:`_refine`)."""
    return t < 1.0 or cut or decrease < _MODEL_SHARE * promised


class _VarProNewton:
    """The default Newton step without an output rank: :func:`_newton_update`, its CG in
    mixed precision when ``low`` (the float32 problem) is given, in a trust region kept
    from step to step (:class:`_TrustRegion`), and the point a step ends at reused by
    the next step (its ``F`` is the next iterate)."""

    def __init__(self, low: _Problem | None) -> None:
        self.low = low
        self.last: _Point | None = None
        self.region = _TrustRegion()

    def __call__(self, prob: _Problem, F: np.ndarray, MF: np.ndarray, cg_iter: int,
                 cg_tol: float, enough: float, resolved: float) -> _Point | None:
        known = self.last if self.last is not None and self.last.F is F else None
        self.last = _newton_update(prob, F, MF, cg_iter, cg_tol, self.low, known, enough,
                                   resolved, self.region)
        return self.last

    def point_at(self, prob: _Problem, F: np.ndarray, MF: np.ndarray) -> _Point | None:
        self.last = prob.point(F, MF)
        return self.last


class _NewtonPoint(Protocol):
    """What a Newton step returns: the new ``F``, ``apply_metric(F)``, ``C``, objective,
    and the decrease its model promised when the step missed its model (0 otherwise; see
    :func:`missed_model` and :func:`_refine`)."""

    @property
    def F(self) -> np.ndarray: ...
    @property
    def MF(self) -> np.ndarray: ...
    @property
    def C(self) -> np.ndarray: ...
    @property
    def f(self) -> float: ...
    @property
    def unmet(self) -> float: ...


class NewtonUpdate(Protocol):
    """A Newton step of :func:`fit_kron` (``__call__``: the new point, or None where no
    step lowers the objective; the point of ``F`` itself, not moved, where its model
    promises at most ``enough`` on positive curvature, or at most ``resolved`` there and
    its full step does not lower the objective: see :func:`_newton_update`), and the
    point of a given ``F`` (``point_at``: its closed-form ``C`` and objective; None where
    ``K^T M K`` is singular), kept as the start of the next step from that ``F``."""

    def __call__(self, prob: _Problem, F: np.ndarray, MF: np.ndarray, cg_iter: int,
                 cg_tol: float, enough: float, resolved: float) -> _NewtonPoint | None: ...

    def point_at(self, prob: _Problem, F: np.ndarray, MF: np.ndarray
                 ) -> _NewtonPoint | None: ...


def remaining_decrease(decreases: Sequence[float], window: int = 3, slowest: bool = False
                       ) -> float:
    """Predicted decrease of the objective still to come after the last of ``decreases``.

    With a linear rate ``rho`` the iterations to come lower the objective by ``d (rho +
    rho^2 + ...) = d rho / (1 - rho)`` (``d`` the last decrease): a stop on it bounds the
    distance to the limit, where a stop on ``d`` alone only says that progress is slow
    (with ``rho`` near 1 the limit is far). ``rho`` is the mean rate over the last
    ``window`` iterations, ``(d / d_{-window})^(1 / window)`` (extrapolated alternations
    zig-zag: one ratio alone is noise). Infinite without a rate (a single decrease) or
    when the decreases do not shrink; zero when the last iteration did not lower the
    objective.

    ``slowest`` (the final stop): ``rho`` at least the largest ratio ``d_j / d_{j-1}``
    below 1 in the window, and the prediction at least ``d``; where the decreases in the
    window zig-zag (one is larger than the one before it), at least the one before the
    last as well. After a fast start the mean rate is that of the start, and a slower
    tail is longer than it predicts; Newton steps whose decreases zig-zag may take
    another as large as the last, or as the one before it. At a tolerance of ``1e-4``,
    the mean rate alone stopped a 32x384x3x3 spatial SVD 1.4e-3 of the objective above
    its limit (before ten steps that each lowered it by about ``1e-4`` of it) and a
    384x96x3x3 one 5.6e-4 above (after decreases of 3.6e-3, 1.1e-4, 4.7e-3 and 1.5e-4 of
    it); the last decrease alone stopped a 128x16x7x7 one 3.2e-4 above (after 9.0e-4,
    4.5e-5, 2.6e-3 and 1.4e-5 of it).

    Examples
    --------
    >>> remaining_decrease([8.0, 4.0, 2.0, 1.0])
    1.0
    >>> remaining_decrease([64.0, 8.0, 4.0, 1.0], slowest=True)  # rates 1/8, 1/2, 1/4
    1.0
    >>> remaining_decrease([8.0, 1.0, 4.0, 0.5], slowest=True)  # zig-zag: at least 4
    4.0
    """
    d = decreases[-1] if decreases else np.inf
    if d <= 0:
        return 0.0
    w = min(window, len(decreases) - 1)
    if w < 1 or not d < decreases[-1 - w]:
        return np.inf
    rho = (d / decreases[-1 - w]) ** (1 / w)
    if slowest:
        last = np.asarray(decreases[-1 - w:], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = last[1:] / last[:-1]
        shrinking = ratios[(last[:-1] > 0) & (last[1:] > 0) & (ratios < 1)]
        rho = max(rho, float(shrinking.max(initial=0.0)))
        zigzag = bool(np.any(last[1:] > last[:-1]))
        return max(d, d * rho / (1 - rho), float(decreases[-2]) if zigzag else 0.0)
    return d * rho / (1 - rho)


def nearest_kron_start(W3: np.ndarray, pair: tuple[np.ndarray, np.ndarray], rank: int
                       ) -> np.ndarray | None:
    """``F`` of the generalised SVD for a Kronecker product ``M_a (x) M_m`` near ``M``
    (``pair``, e.g. :meth:`_Problem.kron_pair`).

    With ``M_a = L_a L_a^T`` and ``M_m = L_m L_m^T``, ``tr(E (M_a (x) M_m) E^T)`` is the
    plain objective of the whitened weight ``W3[o] -> L_a^T W3[o] L_m``: its kron-structured
    truncated SVD is the exact optimum, mapped back by ``F = L_a^{-T} F'``. None when the
    Kronecker factors are not positive definite.
    """
    Ma, Mm = pair
    try:
        La = np.linalg.cholesky((Ma + Ma.T) / 2)
        Lm = np.linalg.cholesky((Mm + Mm.T) / 2)
    except np.linalg.LinAlgError:
        return None
    Ww = np.einsum("ab,oam,mn->obn", La, W3, Lm, optimize=True)
    Fw = leading_input_basis(Ww, rank)
    return sla.solve_triangular(La, Fw, trans="T", lower=True, check_finite=False)


def leading_input_basis(W3: np.ndarray, rank: int) -> np.ndarray:
    """The ``rank`` leading left singular vectors (a, rank) of the unfolding ``W3[o, a, m]
    -> (a, o m)``: the span of the kron-structured truncated SVD's ``F``.

    From the eigenvectors of the smaller Gram matrix, ``(a, a)`` or ``(o m, o m)`` (a start
    needs the span, not the last digits of the small singular values): a fraction of the
    SVD's time. A spatial SVD's ``a = in kh`` can be many times ``o m = out kw``, and
    the eigendecomposition of an (a, a) matrix costs ``a^3`` (2.7 s for a = 3072, 15 ms
    for the (192, 192) one). Beyond the rank of the unfolding the basis is completed
    with orthonormal directions the weight does not reach.
    """
    o, a, m = W3.shape
    T = W3.transpose(1, 0, 2).reshape(a, o * m)
    if a <= o * m:
        U = sla.eigh(T @ T.T, subset_by_index=[a - rank, a - 1], check_finite=False)[1]
        return U[:, ::-1]
    lam, V = np.linalg.eigh(T.T @ T)
    lam, V = lam[::-1], V[:, ::-1]
    # left singular vectors T v / s where s is well above rounding; the rest of the rank
    # (in the null space of T^T) from the coordinate directions farthest from their span
    kept = min(rank, int(np.count_nonzero(lam > max(float(lam[0]), 0.0) * a
                                          * np.finfo(T.dtype).eps)))
    U = (T @ V[:, :kept]) / np.sqrt(lam[:kept])
    if kept < rank:
        far = np.argsort(np.einsum("ar,ar->a", U, U), kind="stable")[:rank - kept]
        fill = np.zeros((a, rank - kept), dtype=T.dtype)
        fill[far, np.arange(rank - kept)] = 1.0
        U = np.hstack([U, fill - U @ (U.T @ fill)])
    return _qr(U)[0]


def _alternation(prob: _Problem, F: np.ndarray, MF: np.ndarray, C: np.ndarray, f: float,
                 step: float, cg_iter: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float] | None:
    """One alternation (CG on ``F``, closed-form ``C``) and its extrapolation: the new
    ``F`` (orthonormal), ``apply_metric(F)``, ``C``, objective and extrapolation step;
    None when it does not lower the objective ``f`` (rounding) or collapses the span."""
    # c_step needs only a full-rank F (the objective depends on its span): the step and
    # its extrapolation are evaluated as they are, the kept one is orthonormalised
    F_new, MF_new = prob.f_step(F, MF, C, cg_iter)
    C_new, f_new = prob.c_step(F_new, MF_new)
    if f_new > f:
        return None
    # Extrapolate along the alternation's step (alternations creep along a valley); kept
    # only when it lowers the objective, and the step length adapts.
    F_x, MF_x = (1 + step) * F_new - step * F, (1 + step) * MF_new - step * MF
    C_x, f_x = prob.c_step(F_x, MF_x)
    if f_x < f_new:
        F_new, MF_new, C_new, f_new = F_x, MF_x, C_x, f_x
        step = min(1.5 * step, _MAX_STEP)
    else:
        step = max(step / 2, _MIN_STEP)
    basis = _orthonormal_with_metric(F_new, MF_new)
    if basis is None:
        return None
    F_new, MF_new, R = basis
    C_new = np.einsum("sr,orm->osm", R, C_new, optimize=True)  # the same C K^T
    return F_new, MF_new, C_new, f_new, step


@dataclass(frozen=True)
class Start:
    """A start of :func:`fit_kron` evaluated on its problem (:func:`evaluate_start`): its
    name, ``F`` (orthonormal), ``MF = apply_metric(F)``, the closed-form ``C`` and the
    objective ``f`` (an upper bound on that of a fit from it)."""

    name: str
    F: np.ndarray
    MF: np.ndarray
    C: np.ndarray
    f: float


def evaluate_start(prob: _Problem, name: str, F0: np.ndarray, orthonormal: bool = False
                   ) -> Start:
    """``span(F0)`` with its closed-form ``C`` on ``prob`` (see :class:`Start`);
    ``orthonormal``: ``F0`` has orthonormal columns already (kept as it is)."""
    F = F0 if orthonormal else _orthonormal(F0)
    MF = prob.apply_metric(F)
    C, f = prob.c_step(F, MF)
    return Start(name, F, MF, C, f)


def fit_kron(W3: np.ndarray, M: np.ndarray | Metric,
             starts: Sequence[tuple[str, np.ndarray] | Start], out_rank: int | None = None,
             max_iter: int = 100, tol: float = 1e-6, cg_iter: int = 2, newton_after: int = 3,
             single: bool = True, newton: NewtonUpdate | None = None,
             problem: _Problem | None = None,
             give_up: Callable[[float, Sequence[float]], bool] | None = None) -> KronFit:
    """Minimise ``tr((C K^T - Wm) M (C K^T - Wm)^T)`` over ``C`` and ``F`` (see module doc).

    Parameters
    ----------
    W3 : ndarray of shape (out, a, m)
    M : ndarray of shape (a m, a m) or Metric
        Symmetric positive semi-definite metric on the input side (``(a, m)`` order); a
        :class:`~sdf.models.compress._fit.Metric` with a root ``R`` (``M = w I + R^T R``,
        few rows) has the products with ``M`` go through ``R`` where that is cheaper (see
        :class:`_Problem`; the same results to rounding).
    starts : sequence of (name, F0) or :class:`Start`
        Starting input factors, each (a, r); the one with the lowest objective after its
        closed-form ``C`` is refined (a :class:`Start` of ``problem`` is not evaluated
        again).
    out_rank : int, optional
        Rank of ``C`` (Tucker-2's ``r_out``); None: unconstrained.
    max_iter : int, default 100
        Iterations (alternations and Newton steps) at most.
    tol : float, default 1e-6
        Stop when the decrease still to come, predicted from the rate of the last two
        (:func:`remaining_decrease`), is at most ``tol`` times the objective.
    cg_iter : int, default 2
        Conjugate gradient steps per ``F`` update (more cost more per alternation than
        they save in alternations, with the extrapolation below).
    newton_after : int, default 3
        Without an output rank, the iterations after the first ``newton_after`` are Newton
        steps on ``span(F)`` with ``C`` eliminated (variable projection; truncated CG,
        halved until the objective decreases; an alternation where none does): the
        alternations crawl where the singular values around the rank are close, Newton
        does not.
    single : bool, default True
        Iterate in float32 first (half the time per product with ``M``) until the
        predicted remaining decrease is ``_SINGLE_TOL`` of the objective, then in float64
        to ``tol`` (the Newton directions still from float32 Hessian products: see
        :func:`_newton_direction`); with ``tol`` at least ``_SINGLE_TOL``, in float32
        only where ``tol`` times the objective is a decrease float32 resolves
        (``_SINGLE_RESOLVES`` of ``c0``). The returned ``C`` and objective are always
        float64 closed forms of the returned ``F``.
    newton : callable, optional
        The Newton step, ``newton(prob, F, MF, cg_iter, cg_tol, enough, resolved)``
        returning the new point (with ``F``, ``MF``, ``C``, ``f``) or None where no step
        lowers the objective (see :class:`NewtonUpdate`). Default: :class:`_VarProNewton`
        (:func:`_newton_update`) without an output rank, none (only alternations) with one
        (Tucker-2 passes :class:`sdf.models.compress._kron_tucker.RankNewton`).
    problem : _Problem, optional
        ``_Problem(W3, M, out_rank)`` when already built (its starts evaluated).
    give_up : callable, optional
        ``give_up(f, decreases)`` after each iteration (the objective and the decreases
        so far): True ends the fit there, unconverged (a rank screen drops a candidate
        that cannot catch up, see :func:`sdf.models.compress.conv._screened_tucker2`).
    """
    first = starts[0]
    rank = (first.F if isinstance(first, Start) else first[1]).shape[1]
    prob = _Problem(W3, M, out_rank, rank) if problem is None else problem

    def newton_step(low: _Problem | None) -> NewtonUpdate | None:
        if newton is not None or out_rank is not None:
            return newton
        return _VarProNewton(low)

    o, _, m = prob.shape

    best: Start | None = None
    for given in starts:
        point = given if isinstance(given, Start) else evaluate_start(prob, *given)
        if best is None or point.f < best.f:
            best = point
    assert best is not None, "fit_kron needs at least one start"
    start, F, MF, C, f = best.name, best.F, best.MF, best.C, best.f
    state = _State(F, MF, C, f)
    # the last point whose MF, C and objective are float64 ones from a fresh product with
    # M (those of the start, or of the float32 phase's result)
    fresh = best
    converged = max_iter == 0
    low_prob = prob.single() if single and max_iter > 0 else None
    newton64 = newton_step(low_prob)
    if low_prob is not None:
        # most of the way in float32; float64 alternations / Newton steps from there
        low = _State(F.astype(np.float32), MF.astype(np.float32), C.astype(np.float32), f)
        # at a tolerance the float32 objectives resolve, their iterations are the final
        # ones (the returned C and objective are float64 closed forms all the same)
        single_final = tol >= _SINGLE_TOL
        low_converged = _refine(low_prob, low, max_iter, max(tol, _SINGLE_TOL), cg_iter,
                                newton_after, newton_step(None), final=single_final,
                                give_up=give_up)
        if give_up is not None and give_up(low.f, low.decreases):
            max_iter = low.iterations  # (no float64 iterations)
        elif (single_final and low_converged
              and tol * max(low.f, 0.0) >= _SINGLE_RESOLVES * prob.c0):
            max_iter, converged = low.iterations, True
        F = _orthonormal(low.F.astype(np.float64))
        MF = prob.apply_metric(F)
        # when the float64 iterations begin with a Newton step, its point gives the closed
        # form (one factorization of K^T M K, not two)
        handover = (newton64.point_at(prob, F, MF) if newton64 is not None
                    and newton_after <= low.iterations < max_iter else None)
        C, f = ((handover.C.reshape(o, -1, m), handover.f) if handover is not None
                else prob.c_step(F, MF))
        # the float32 decreases give the rate: one float64 iteration may then stop
        if f < state.f:
            state = _State(F, MF, C, f, low.iterations, low.newton_steps, low.step,
                           low.decreases)
            fresh = Start(start, F, MF, C, f)
        else:
            state = dataclasses.replace(state, iterations=low.iterations,
                                        newton_steps=low.newton_steps)
    if state.iterations < max_iter:
        # Newton directions in mixed precision (float32 Hessian products, float64 gradient)
        converged = _refine(prob, state, max_iter, tol, cg_iter, newton_after, newton64,
                            give_up=give_up)
    # the products with M were updated by linearity (and maybe in float32): unless F is
    # still the fresh point's, recompute MF, C and the objective in float64 from a fresh
    # product, exactly those of the returned F
    end = fresh if state.F is fresh.F else evaluate_start(prob, start, state.F,
                                                           orthonormal=True)
    return KronFit(end.C, end.F, max(end.f, 0.0), state.iterations, start, converged,
                   max(best.f, 0.0), state.newton_steps, end.MF)


def every_input_fit(W3: np.ndarray, M: np.ndarray | Metric, out_rank: int | None,
                    name: str) -> KronFit:
    """The fit with ``F = I`` (every input group kept) in closed form.

    ``K`` is the identity, so ``K^T M K`` is ``M`` itself and is never factored: the best
    ``C`` of rank ``k`` is ``U U^T Wm``, ``U`` the ``k`` leading eigenvectors of ``Wm M
    Wm^T`` (a reduced-rank regression in the metric), and the objective is ``tr(Wm M
    Wm^T)`` less their eigenvalues. One product of ``M`` with ``out`` rows (or the
    calibration's responses to ``Wm``, see :meth:`Metric.outer`), where
    :func:`fit_kron` from ``F = I`` factors ``M`` (d x d; a 64x64x7x7 conv: d = 3136,
    about a second).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import _kron
    >>> W3 = np.random.default_rng(0).standard_normal((4, 3, 2))
    >>> fit = _kron.every_input_fit(W3, np.eye(6), 2, "every input channel kept")
    >>> bool(np.isclose(fit.objective, np.linalg.svd(W3.reshape(4, 6))[1][2:] @
    ...                 np.linalg.svd(W3.reshape(4, 6))[1][2:]))
    True
    """
    o, a, m = W3.shape
    metric = M if isinstance(M, Metric) else Metric(M)
    Wm = W3.reshape(o, -1)
    WMW = metric.outer(Wm)
    lam, V = np.linalg.eigh(WMW)  # (its lower triangle)
    k = o if out_rank is None else min(out_rank, o)
    U = V[:, o - k:]
    C = U @ (U.T @ Wm)
    f = max(float(np.trace(WMW)) - float(lam[o - k:].sum()), 0.0)
    return KronFit(C.reshape(o, a, m), np.eye(a, dtype=W3.dtype), f, 0, name, True, f, 0,
                   None)


@dataclass
class _State:
    """An iterate of :func:`fit_kron`: ``F``, ``apply_metric(F)``, ``C``, the objective,
    the iterations so far (Newton steps among them), the extrapolation step and the
    decreases of the objective."""

    F: np.ndarray
    MF: np.ndarray
    C: np.ndarray
    f: float
    iterations: int = 0
    newton_steps: int = 0
    step: float = 1.0
    decreases: list[float] = dataclasses.field(default_factory=list)


def _refine(prob: _Problem, st: _State, max_iter: int, tol: float, cg_iter: int,
            newton_after: int,
            newton: Callable[[_Problem, np.ndarray, np.ndarray, int, float, float, float],
                             _NewtonPoint | None] | None, final: bool = True,
            give_up: Callable[[float, Sequence[float]], bool] | None = None) -> bool:
    """Iterate on ``st`` (in place) until the predicted remaining decrease is at most
    ``tol`` times the objective (True; in the ``final`` iterations from the slowest of the
    recent rates, :func:`remaining_decrease`) or ``st.iterations`` reaches ``max_iter`` or
    ``give_up(st.f, st.decreases)`` holds (False);
    ``newton``: the Newton step after the first ``newton_after`` iterations (None:
    alternations only). In the ``final`` iterations a Newton step whose model promises
    less than ``_UNTAKEN_SHARE`` of the tolerance is not taken (converged); before the
    float64 ones (not ``final``) such a step is taken: it is cheaper in float32 than the
    float64 step that would replace it. A full Newton step that does not lower the
    objective while its model promised at most the tolerance (on positive curvature)
    ends the iterations too, unhalved: the objective's rounding hides such decreases (a
    64x1024x3x3 conv's Tucker-2 tried five float32 steps and an alternation there, then
    one in float64).

    A Newton step that missed its model (met negative curvature or its trust region's
    boundary, had to be halved, or lowered the objective by less than half of what its
    model promised: :func:`missed_model`), while its model promised a decrease above
    ``tol`` times the objective (``unmet``; in the ``final`` iterations above
    ``_UNTAKEN_SHARE`` of that, the promise below which no step is taken), never ends
    the iterations: the model did not hold, so its small decrease says nothing about
    those to come (a 128x128x5x5 conv's weight SVD met one 1.2 % above the objective
    that the next three steps reached; its Tucker-2 a full step that lowered the
    objective by 14 % of its promise, after which the float32 phase stopped, and the
    float64 one found six times that decrease at once; a 512x128x3x3 conv's spatial SVD
    one that promised 8e-5 of the objective and lowered it by half that, 3e-4 above its
    limit). In the ``final`` iterations neither does an alternation that replaces a
    Newton step that found no decrease, unless the iteration before was one too (a
    Newton step also gives up where ``K^T M K`` is singular or the gradient vanishes).
    Where the model promised no more (at the objective's rounding level), the rate
    decides as after any step.
    """
    failed_before = False
    while st.iterations < max_iter:
        st.iterations += 1
        point = None
        unmet = 0.0
        newton_failed = False
        if newton is not None and st.iterations > newton_after:
            tol_f = tol * max(st.f, 0.0)
            point = newton(prob, st.F, st.MF, _NEWTON_CG_ITER, _NEWTON_CG_TOL,
                           _UNTAKEN_SHARE * tol_f if final else 0.0, tol_f)
            if point is not None and point.F is st.F:  # the model promised too little
                st.iterations -= 1
                return True
            newton_failed = point is None
        if point is not None:
            st.newton_steps += 1
            unmet = point.unmet
            F_new, MF_new, f_new = point.F, point.MF, point.f
            C_new = point.C.reshape(st.C.shape[0], -1, st.C.shape[2])
        else:
            alternation = _alternation(prob, st.F, st.MF, st.C, st.f, st.step, cg_iter)
            if alternation is None:  # rounding only: each alternation lowers the objective
                return True
            F_new, MF_new, C_new, f_new, st.step = alternation
        st.decreases.append(st.f - f_new)
        st.F, st.MF, st.C, st.f = F_new, MF_new, C_new, f_new
        if final and newton_failed and not failed_before:
            to_come = np.inf
        else:
            to_come = max(unmet / _UNTAKEN_SHARE if final else unmet,
                          remaining_decrease(st.decreases, slowest=final))
        if to_come <= tol * max(st.f, 0.0) or st.f <= 1e-24 * prob.c0:
            return True
        if give_up is not None and give_up(st.f, st.decreases):
            return False
        failed_before = newton_failed
    return False
