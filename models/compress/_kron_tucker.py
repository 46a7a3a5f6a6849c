"""Newton steps for the data-aware Tucker-2 fit: the kron fit with an output rank.

Tucker-2 is the kron fit of :mod:`sdf.models.compress._kron` with ``C`` of rank ``k =
r_out``. With ``G = K^T M K``, ``P = Wm M K`` (out x r m) and ``C* = P G^{-1}`` the best
unconstrained ``C``, the best ``C`` of rank ``k`` is ``U U^T C*``, ``U`` the ``k`` leading
eigenvectors of ``A(F) = C* P^T = P G^{-1} P^T``, and the objective with ``C`` eliminated
is

    f(F) = c0 - (sum of the k largest eigenvalues of A(F)),

a function of ``span(F)`` only. Its gradient is the partial gradient in ``F`` at that
``C`` (``C`` is optimal). Its Hessian is that of the pair ``(U, F)`` with ``U``
eliminated (a Schur complement): along a horizontal ``X`` (``F^T X = 0``) the leading
eigenspace moves by ``dU = V_p Z``, ``Z[j, i] = (V_p^T dA U)[j, i] / (lam_i - lam_j)``
(``V_p`` the other eigenvectors, ``lam`` the eigenvalues), ``dA = dP C*^T + C* dP^T - C*
dG C*^T``, and ``C = U U^T C*`` by ``dC = dU U^T C* + U dU^T C* + U U^T dC*``; the
Hessian product is the derivative of the partial gradient along ``(X, dC)``, as for the
unconstrained fit (:meth:`sdf.models.compress._kron._Problem.hessvec`). The Newton
equation is solved by truncated preconditioned CG, the step halved until the objective
decreases. ``M`` enters a Hessian product only as ``M dK S^T`` (``S = U^T C*``, k rows):
one product of ``M`` with ``k`` columns, not the ``r m`` of ``M dK`` (through the
calibration rows when they are few: ``_Problem.metric_times``); one full product ``M X``
per step gives the new ``M K``. Where ``M K`` is kept as its image ``R K`` (few
calibration patches, see :class:`sdf.models.compress._kron._Problem`), a Hessian product
takes the image ``R dK`` and contracts the images with ``S`` and ``T = U^T dC`` (k
columns); one back-projection maps the result to ``F``'s space.

With a metric of low rank (a calibration Gram with fewer patches than values per patch)
the Newton equation is ill-conditioned: in the Gram's complement only the weight term's
small share curves the objective, and ``C`` absorbs much of a move of ``F`` in its range
(on a 16x200x3x3 layer with 256 patches the preconditioned Hessian has a condition number
of about 3000, about 1700 even against the exact Hessian with ``C`` fixed). A truncated CG
then gives a linear rate; the CG cap grows while the steps keep that rate.

The alternations crawl at the rate of a subspace iteration on the eigenvalues of ``A``
around ``k`` and of the spectrum of the whitened weight around ``r``: the Newton steps
take both couplings in at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import sdf.models.compress._kron as _kron

__all__: list[str] = []

# smallest eigenvalue gap (relative to the largest eigenvalue) a Newton product divides
# by: below it the two eigenvectors are numerically one pair (float32: about 1e-7)
_GAP_FLOOR = 1e-6
# calls that return None (alternations) after a Newton step that found no decrease
_REST = 2
# CG steps per Newton step at most (each costs about a third of an alternation): on the
# 256x256x3x3 benchmark layer 6 reached the objective of 10 in less time (fewer CG steps
# per Newton step outweigh the extra Newton steps)
_CG_ITER = 6
# the cap grows (doubles, up to this) after each accepted full step that lowered the objective
# by more than _SLOW times the step before: a linear rate that slow is that of a truncated
# CG on an ill-conditioned Newton equation (a metric of low rank: a calibration Gram with
# fewer patches than values, whose complement only the weight term's small share curves)
_CG_ITER_MAX = 16
_SLOW = 0.5


@dataclass(frozen=True)
class RankPoint:
    """An iterate of the rank-limited Newton phase.

    ``F`` (orthonormal) and ``MF = apply_metric(F)``; ``gram``: ``G = K^T M K`` ready for
    solves (:class:`sdf.models.compress._kron.GramSolve`); ``U`` (out, k) and ``Vp`` (out, out - k) the leading and the other
    eigenvectors of ``A(F)``, ``gaps[j, i] = lam_i - lam_j`` (floored); ``S = U^T C*``,
    ``Sp = Vp^T C*``; ``C = U S`` (out, r m) the best rank-``k`` ``C`` and ``f`` the
    objective; ``unmet`` as :class:`sdf.models.compress._kron._Point`'s.
    """

    F: np.ndarray
    MF: np.ndarray
    gram: _kron.GramSolve
    U: np.ndarray
    Vp: np.ndarray
    gaps: np.ndarray
    S: np.ndarray
    Sp: np.ndarray
    C: np.ndarray
    f: float
    unmet: float = 0.0


def rank_point(prob: _kron._Problem, F: np.ndarray, MF: np.ndarray) -> RankPoint | None:
    """The Newton phase's view of ``F`` (``prob.out_rank`` below ``min(out, r m)``); None
    when ``K^T M K`` is not positive definite (the alternations handle that case)."""
    o, a, m = prob.shape
    r, k = F.shape[1], prob.out_rank
    assert k is not None
    gram = prob.gram_solve(F, MF)
    if gram is None:
        return None
    P = np.einsum("oan,ar->orn", prob.WM3, F, optimize=True).reshape(o, r * m)
    C_free = gram.solve(P)
    A = C_free @ P.T
    lam, V = np.linalg.eigh((A + A.T) / 2)
    U, Vp = V[:, o - k:], V[:, :o - k]
    S, Sp = U.T @ C_free, Vp.T @ C_free
    floor = _GAP_FLOOR * max(float(lam[-1]), np.finfo(lam.dtype).tiny)
    gaps = np.maximum(lam[o - k:][None, :] - lam[:o - k][:, None], floor)
    f = prob.c0 - _kron._inner(S, U.T @ P)
    return RankPoint(F, MF, gram, U, Vp, gaps, S, Sp, U @ S, f)


@dataclass(frozen=True)
class RankProducts:
    """Products of a point's ``S = U^T C*`` (k, r m) that its Hessian products reuse.

    ``S_mp`` is ``S[p, r, mu]`` laid out: ((mu, p), r), or on the image route (``M K``
    kept as ``R K``) (p, (mu, r)) like the images' columns; ``MFS`` is ``M K S^T`` laid out
    (a, (mu, p)) (:meth:`sdf.models.compress._kron._Problem.mk_times`), or on the image
    route its root part ``R K S^T`` (rows of ``R``, p); ``Qb_inv`` the inverse of the
    m-averaged diagonal blocks of ``C^T C = S^T S`` (the preconditioner's factor);
    ``times_g_inv`` the products with the inverse of ``G = K^T M K``
    (:meth:`sdf.models.compress._kron.GramSolve.times_inverse`: a product with an
    explicit inverse runs on numpy's BLAS threads, a solve with the Cholesky factor on
    scipy's single one, see :func:`sdf.models.compress._kron._spd_inverse`). For a
    float64 step's float32 products they come from the float64 factors rounded to
    float32, in float32: on the benchmark layers the same Newton steps as the float64
    inverse (whose ``potri`` took 2.3x as long), which CG only needs to a few digits.
    """

    S_mp: np.ndarray
    MFS: np.ndarray
    Qb_inv: np.ndarray
    times_g_inv: Callable[[np.ndarray], np.ndarray]


def _mp_layout(Y: np.ndarray, r: int, m: int) -> np.ndarray:
    """``Y`` (k, r m) laid out ((mu, p), r)."""
    return Y.reshape(-1, r, m).transpose(2, 0, 1).reshape(-1, r)


def _gradient(prob: _kron._Problem, p: RankPoint
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``-1/2`` the gradient of ``f`` (horizontal), ``S_mp`` and ``MFS`` (see
    :class:`RankProducts`).

    The gradient's part ``M K C^T C`` is ``MFS`` contracted with ``S`` again (``C^T C = S^T
    S``)."""
    o, a, m = prob.shape
    r = p.F.shape[1]
    if prob.kroot is None:
        S_mp = _mp_layout(p.S, r, m)
        MFS = prob.mk_times(p.MF, p.S)
        MKQ = MFS @ S_mp
    else:  # M K C^T C = M K S^T S through the images
        S3 = p.S.reshape(-1, r, m)
        S_mp = _kron._ml_layout(S3)
        MFS = p.MF.reshape(p.MF.shape[0], -1) @ S_mp.T
        MKQ = prob.image_contract(p.F, MFS @ S_mp, [(p.F, S3, S3)])
    R = np.einsum("oan,orn->ar", prob.WM3, p.C.reshape(o, r, m), optimize=True) - MKQ
    return R - p.F @ (p.F.T @ R), S_mp, MFS


def rank_gradient(prob: _kron._Problem, p: RankPoint) -> np.ndarray:
    """``-1/2`` the gradient of ``f`` at ``p``, horizontal."""
    return _gradient(prob, p)[0]


def rank_residual(prob: _kron._Problem, p: RankPoint) -> tuple[np.ndarray, RankProducts]:
    """``-1/2`` the gradient of ``f`` (horizontal) and the point's :class:`RankProducts`."""
    r, m = p.F.shape[1], prob.shape[2]
    R, S_mp, MFS = _gradient(prob, p)
    S3 = p.S.reshape(-1, r, m)
    Qb_inv = _kron._preconditioner_inverse(_kron._diagonal_blocks(S3))
    return R, RankProducts(S_mp, MFS, Qb_inv, p.gram.times_inverse(p.F.dtype))


def rank_hessvec(prob: _kron._Problem, p: RankPoint, pr: RankProducts, X: np.ndarray
                 ) -> np.ndarray:
    """``1/2`` the Hessian of ``f`` applied to a horizontal ``X``, projected horizontally
    (see the module docstring).

    The products with ``M``, ``dG = dK^T M K + K^T M dK`` and ``C^T C``, ``dC^T C`` enter
    only through their contractions with ``S`` (rank ``k``): ``M dK S^T`` is one product
    of ``M`` with an (a m, k) matrix (``M dK`` itself, (a m, r m), is never formed: ``k``
    columns instead of ``r m``), ``dK^T M K S^T`` a product of ``X`` with ``M K S^T``
    (kept in ``pr``), and the rest products of the size of ``M K`` with (r m, k)
    matrices.
    """
    if prob.kroot is not None:
        return _image_rank_hessvec(prob, p, pr, X)
    o, a, m = prob.shape
    r = X.shape[1]
    F, S = p.F, p.S
    k = S.shape[0]
    # M dK S^T laid out (a, (mu, p)): dK S^T laid out (b, nu, p)
    MXS = prob.metric_times((X @ pr.S_mp.T).reshape(a, m, k)).reshape(a, m * k)
    # dG S^T, laid out ((r, mu), p): K^T M dK S^T from MXS, dK^T M K S^T from MFS
    dG_St = (F.T @ MXS + X.T @ pr.MFS).reshape(r * m, k)
    dC, T = _rank_move(prob, p, pr, X, dG_St)
    T_mp = _mp_layout(T, r, m)
    # M dK C^T C + M K (dC^T C + C^T dC) with C = U S, U^T dC = T
    H = ((MXS + prob.mk_times(p.MF, T)) @ pr.S_mp + pr.MFS @ T_mp
         - prob.weight_contract(dC))
    return H - F @ (F.T @ H)


def _image_rank_hessvec(prob: _kron._Problem, p: RankPoint, pr: RankProducts,
                        X: np.ndarray) -> np.ndarray:
    """:func:`rank_hessvec` on the image route: ``p.MF = R K`` and ``R dK`` (rows of ``R``,
    m, r), ``pr.MFS = R K S^T``. Every product with ``M`` enters contracted with ``S`` or
    ``T`` (k rows): products of the images with k columns, and one :meth:`back` maps the
    root parts to ``F``'s space (no product with the rows themselves, ``k d`` each)."""
    m = prob.shape[2]
    r = X.shape[1]
    F, S = p.F, p.S
    k = S.shape[0]
    S3 = S.reshape(k, r, m)
    n = p.MF.shape[0]
    Y = p.MF.reshape(n, m * r)
    YX = prob.apply_metric(X).reshape(n, m * r)
    RXS = YX @ pr.S_mp.T  # R dK S^T (n, k)
    # dG S^T, rows (s, mu): K^T M dK S^T + dK^T M K S^T, their root parts in (mu, s) order
    root = (Y.T @ RXS + YX.T @ pr.MFS).reshape(m, r, k).transpose(1, 0, 2).reshape(r * m, k)
    FtX = F.T @ X
    dG_St = root + prob.root_weight * np.einsum("st,ptm->smp", FtX + FtX.T, S3,
                                                optimize=True).reshape(r * m, k)
    dC, T = _rank_move(prob, p, pr, X, dG_St)
    T3 = T.reshape(k, r, m)
    T_ml = _kron._ml_layout(T3)
    # M dK C^T C + M K (dC^T C + C^T dC) with C = U S, U^T dC = T: the root parts of
    # M dK S^T S, M K T^T S and M K S^T T
    Z = (RXS + Y @ T_ml.T) @ pr.S_mp + pr.MFS @ T_ml
    H = (prob.image_contract(X, Z, [(X, S3, S3), (F, T3, S3), (F, S3, T3)])
         - prob.weight_contract(dC))
    return H - F @ (F.T @ H)


def _rank_move(prob: _kron._Problem, p: RankPoint, pr: RankProducts, X: np.ndarray,
               dG_St: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``dC`` (out, r m) along ``X`` and ``T = U^T dC`` (k, r m), from ``dG S^T`` (rows
    ``(s, mu)``): the move of the leading eigenspace and of ``C*`` (see the module
    docstring)."""
    U, S, Sp = p.U, p.S, p.Sp
    dP = prob.weight_times(X)
    Ut_dP = U.T @ dP
    # V_p^T dA U with dA = dP C*^T + C* dP^T - C* dG C*^T, and the eigenspace's move
    Z = ((p.Vp.T @ dP) @ S.T + Sp @ (Ut_dP.T - dG_St)) / p.gaps
    # T = U^T dC (dU^T C* + U^T dC*); V_p^T dC = Z S
    T = Z.T @ Sp + pr.times_g_inv(Ut_dP - dG_St.T)
    return p.Vp @ (Z @ S) + U @ T, T


def _single_point(p: RankPoint) -> RankPoint:
    """``p`` with its arrays in float32 (the Hessian products of a float64 step); its
    ``gram`` kept (``times_inverse`` gives the float32 products with ``G^{-1}``)."""
    def low(A: np.ndarray) -> np.ndarray:
        return A.astype(np.float32)

    return RankPoint(low(p.F), low(p.MF), p.gram, low(p.U), low(p.Vp),
                     low(p.gaps), low(p.S), low(p.Sp), low(p.C), p.f)


class RankNewton:
    """A Newton step on ``span(F)`` with ``C`` (of rank ``prob.out_rank``) eliminated,
    halved until it lowers the objective (CG: at most ``min(cg_iter, _CG_ITER)`` steps,
    doubled up to :data:`_CG_ITER_MAX` after each full step that lowered the objective by
    more than :data:`_SLOW` times the full step before); the same call signature and
    result as
    :func:`sdf.models.compress._kron._newton_update` (which it calls, through a
    :class:`sdf.models.compress._kron._VarProNewton` that keeps its points, when the rank
    does not bind).

    In float64 the point and the residual are float64 and the CG's Hessian products
    float32 (an inexact Newton step whose error is that of the truncated CG; half the
    time). Where no step lowers the objective (far from a minimum, where CG meets
    negative curvature), the next :data:`_REST` calls return None: alternations, cheaper
    there. The point of an accepted step is kept for the next call. One instance per
    fit.
    """

    def __init__(self) -> None:
        self._last: RankPoint | None = None
        self._low: tuple[_kron._Problem, _kron._Problem] | None = None
        self._rest = 0
        self._cap: int | None = None
        self._decrease = np.inf
        # the step where the rank does not bind: the unconstrained one
        self._plain = _kron._VarProNewton(None)

    def _binds(self, prob: _kron._Problem, r: int) -> bool:
        o, _, m = prob.shape
        return prob.out_rank is not None and prob.out_rank < min(o, r * m)

    def point_at(self, prob: _kron._Problem, F: np.ndarray, MF: np.ndarray
                 ) -> RankPoint | _kron._Point | None:
        if not self._binds(prob, F.shape[1]):
            return self._plain.point_at(prob, F, MF)
        self._last = rank_point(prob, F, MF)
        self._rest = 0  # a new phase: rests after a failure in float32 do not carry over
        return self._last

    def _single(self, prob: _kron._Problem) -> _kron._Problem:
        if prob.W3.dtype == np.float32:
            return prob
        if self._low is None or self._low[0] is not prob:
            self._low = (prob, prob.single())
        return self._low[1]

    def __call__(self, prob: _kron._Problem, F: np.ndarray, MF: np.ndarray, cg_iter: int,
                 cg_tol: float, enough: float, resolved: float
                 ) -> RankPoint | _kron._Point | None:
        if not self._binds(prob, F.shape[1]):
            return self._plain(prob, F, MF, cg_iter, cg_tol, enough, resolved)
        if self._rest > 0:
            self._rest -= 1
            return None
        last = self._last
        p = last if last is not None and last.F is F else rank_point(prob, F, MF)
        if p is None:
            return None
        low = self._single(prob)
        if low is not prob:  # the products from the float32 point: one conversion
            p_low = _single_point(p)
            R = rank_gradient(prob, p).astype(np.float32)
            products = rank_residual(low, p_low)[1]
        else:
            p_low = p
            R, products = rank_residual(prob, p)
        if self._cap is None:
            self._cap = min(cg_iter, _CG_ITER)
        direction = _direction(low, p_low, R, products, self._cap, cg_tol)
        if direction is None:
            return None
        X, negative = direction[0].astype(F.dtype), direction[1]
        promised = max(_kron._inner(R, X), 0.0)
        if not negative and promised <= enough:  # converged: the point of F, not moved
            self._last = dataclasses.replace(p, unmet=0.0)
            return self._last
        MX = prob.apply_metric(X)
        t = 1.0
        for _ in range(5):
            basis = _kron._orthonormal_with_metric(F + t * X, MF + t * MX)
            q = None if basis is None else rank_point(prob, basis[0], basis[1])
            if q is not None and q.f < p.f:
                if t == 1.0 and p.f - q.f > _SLOW * self._decrease:
                    self._cap = min(2 * self._cap, _CG_ITER_MAX)
                self._last, self._decrease = q, p.f - q.f if t == 1.0 else np.inf
                missed = _kron.missed_model(t, negative, p.f - q.f, promised)
                return dataclasses.replace(q, unmet=promised) if missed else q
            if not negative and promised <= resolved:  # rounding hides the decrease
                self._last = dataclasses.replace(p, unmet=0.0)
                return self._last
            t /= 2
        self._rest, self._cap, self._decrease = _REST, min(cg_iter, _CG_ITER), np.inf
        return None


def _direction(prob: _kron._Problem, p: RankPoint, R: np.ndarray, products: RankProducts,
               cg_iter: int, cg_tol: float) -> tuple[np.ndarray, bool] | None:
    """Truncated preconditioned CG on ``H X = R`` from ``X = 0`` (preconditioner: the
    Kronecker-factored Hessian of the ``F`` step, as
    :func:`sdf.models.compress._kron._newton_direction`); None when the residual vanishes.

    Stops after ``cg_iter`` steps, when the preconditioned residual fell by ``cg_tol``, or
    at a direction of non-positive curvature (keeping the steps so far, or the first
    direction itself when it is the first). Returns the direction and whether CG met
    negative curvature."""
    F = p.F
    Qb_inv = products.Qb_inv

    def precond(Y: np.ndarray) -> np.ndarray:
        Z = (prob.Ma_inv @ Y) @ Qb_inv
        return Z - F @ (F.T @ Z)

    # the Hessian products here need no product with the metric to be tracked
    steps = _kron.untracked_pcg(lambda P: rank_hessvec(prob, p, products, P), precond, R,
                                cg_iter, cg_tol)
    return None if steps is None else (steps.X, steps.negative)
