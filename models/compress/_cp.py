"""Fast CP of a convolution weight: a closed-form start and alternating updates (private).

The layer's CP is 4-way, ``W[o,i,h,w] ~ sum_r U_out[o,r] U_in[i,r] U_h[h,r] U_w[w,r]``
(1x1, depthwise kh x 1, depthwise 1 x kw, 1x1 pieces). Conv weights have few spatial
positions (``kh * kw``, e.g. 9) and compressed ranks far above that, where random starts
and Gauss-Newton on the full model are slow.

The start (:func:`spatial_slices_start`): rotate both spatial modes to their principal
bases ``Q_h``, ``Q_w`` (left singular vectors of the mode unfoldings); the rotated weight
``W' = W x_3 Q_h^T x_4 Q_w^T`` has ``kh * kw`` slices ``W'[:, :, a, b]`` (out x in), and
slice ``(a, b)`` gets its own truncated SVD of rank ``r_ab``, each component having the
spatial factors ``Q_h[:, a]``, ``Q_w[:, b]``. That is an exact CP of rank ``sum r_ab``;
its squared error is the sum of the discarded squared singular values, least when the
ranks keep the ``R`` largest singular values of all slices together (water-filling).

The polish (:func:`als_weight`): alternating least squares on the weight, Nesterov-
extrapolated with restarts, after a seeded perturbation of the spatial factors (at the
start many components share one spatial factor, a point plain ALS leaves only slowly).
Every MTTKRP comes from two products with the weight (``Wt U_in`` and ``U_out^T Wm``);
the spatial modes and the input mode reuse the second.

Data-aware (:func:`als_response`), with the metric ``M = w_w I + w_r G`` on the flattened
input side ``(in, kh, kw)`` and the objective ``tr(E M E^T)``, ``E = U_out K^T - Wm``, ``K =
kr(U_in, U_h, U_w)``: the output factor has the closed form ``U_out = Wm M K (K^T M
K)^{-1}``. With the other factors fixed, ``E`` is linear in any one of ``U_in``, ``U_h``,
``U_w``, so the objective is an exact quadratic in it: each takes iterations of
preconditioned conjugate gradients towards its block minimiser (:func:`block_cg`; the
Hessian product along a direction costs one product with ``M``, and ``E M`` is kept by
linearity), ``U_in`` preconditioned with ``M ~ c I + A kron B``
(:class:`InputPreconditioner`), rounds extrapolated from the last two. Every update lowers
the objective or keeps it, so it never rises above the warm start's. When ``M = w_w I + R^T
R`` with ``R`` of few rows (fewer calibration patches than values per patch,
:class:`Metric`), the products with ``M`` go through ``R`` and the Kronecker factors of
the preconditioners are the partial traces of ``R^T R`` (:meth:`Metric.kron_pair`): the
Gram matrix is never formed. On a wide layer with such a Gram
(16x200x3x3, rank 64, 256 patches), 32 CG iterations on ``U_in`` from the same point lowered
the objective to 0.0380 with that preconditioner, 0.0483 with the nearest Kronecker product
of ``M`` alone (0.0379 is the block minimum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg as sla

from sdf.algebra import _kr_pair as _kr  # (C order, into a buffer when given)
from sdf.algebra import nearest_kron
from sdf.models.compress._fit import Metric

__all__: list[str] = []

#: Relative size of the seeded perturbation of the spatial factors before ALS
SHAKE = 0.5
#: The most conjugate-gradient iterations per round on the input factor, the iterations
#: on each spatial factor in balanced rounds and in rounds with ``CG_INPUT`` on the input
#: factor (see :func:`cg_schedule`), and the rounds the schedule leaves in the budget
CG_INPUT, CG_SPATIAL, CG_SPATIAL_LONG, ROUNDS = 32, 3, 1, 8


@dataclass(frozen=True)
class CPFit:
    """Factors ``[U_out, U_in, U_h, U_w]``, the objective, iterations and the stop reason."""

    factors: list[np.ndarray]
    objective: float
    iterations: int
    stop: str


def spatial_slices_start(W: np.ndarray, rank: int) -> tuple[list[np.ndarray], float]:
    """The water-filled slice-SVD CP of ``W`` (out, in, kh, kw) (see the module docstring).

    Returns the factors ``[U_out, U_in, U_h, U_w]`` (rank columns; fewer only when the
    slices have fewer singular values in all) and the squared error ``||W - W_hat||^2``,
    which is the sum of the discarded squared singular values.
    """
    o, i, kh, kw = W.shape
    Qh = np.linalg.svd(W.transpose(2, 0, 1, 3).reshape(kh, -1), full_matrices=False)[0]
    Qw = np.linalg.svd(W.transpose(3, 0, 1, 2).reshape(kw, -1), full_matrices=False)[0]
    # (a kernel side longer than the other modes' product has fewer basis vectors)
    nh, nw = Qh.shape[1], Qw.shape[1]
    Wr = np.einsum("oihw,ha,wb->aboi", W, Qh, Qw, optimize=True).reshape(nh * nw, o, i)
    # each slice's squared singular values and right singular vectors from the smaller
    # Gram matrix (an eigendecomposition: a few times cheaper than the SVD)
    side = Wr if i <= o else Wr.transpose(0, 2, 1)
    lam, V = np.linalg.eigh(np.matmul(side.transpose(0, 2, 1), side))
    lam, V = np.maximum(lam[:, ::-1], 0.0), V[:, :, ::-1]   # descending
    n = lam.shape[1]
    order = np.argsort(-lam.ravel(), kind="stable")[:rank]   # the R largest of all slices
    slc, comp = np.divmod(order, n)
    keep = np.lexsort((comp, slc))                            # slice by slice, in order
    slc, comp = slc[keep], comp[keep]
    vecs = V[slc, :, comp].T                                  # unit singular vectors
    other = np.empty((side.shape[1], len(slc)))
    for k in np.unique(slc):                                  # slice @ its vectors
        cols = np.flatnonzero(slc == k)
        other[:, cols] = side[k] @ vecs[:, cols]
    Uo, Ui = (other, vecs) if i <= o else (vecs, other)
    a, b = np.divmod(slc, nw)
    factors = [Uo, Ui, Qh[:, a], Qw[:, b]]
    discarded = lam.copy()
    discarded[slc, comp] = 0.0
    return factors, float(discarded.sum())


def _solve_gram(rhs: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``rhs V^{-1}`` for a symmetric positive semidefinite ``V`` (R x R)."""
    return _gram_solver(V)(rhs)


def _gram_solver(V: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``rhs -> rhs V^{-1}`` for a symmetric positive semidefinite ``V``, factorized once
    (Cholesky by LAPACK directly: at small R the checking wrappers cost more than the
    solve); a singular ``V`` gives the least-squares solution."""
    factor, info = sla.lapack.dpotrf(V, lower=True)
    if info != 0:  # singular Gramian: the least-squares solution
        pinv = np.linalg.pinv(V, hermitian=True)
        return lambda rhs: rhs @ pinv

    def solve(rhs: np.ndarray) -> np.ndarray:
        return np.asarray(sla.lapack.dpotrs(factor, rhs.T, lower=True)[0]).T

    return solve


def _workspace(work: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 array of ``shape`` kept in ``work`` under ``key`` and reused by later
    calls (its entries are stale). Arrays above glibc's mmap threshold (32 MB) come as
    fresh pages on every allocation, and faulting them in cost more than the product
    that fills them: on a 16x384x7x7 layer at rank 302, 34 ms of a 40 ms ALS sweep for
    one 45 MB product, 7 ms in a reused array."""
    size = int(np.prod(shape))
    buf = work.get(key)
    if buf is None or buf.size < size:
        buf = work[key] = np.empty(size)
    return buf[:size].reshape(shape)


def sweep_cost(shape: tuple[int, ...], rank: int) -> float:
    """Multiply-adds of one ALS sweep on a weight of ``shape``: the two products with the
    weight, four R x R factorizations and the two large solves."""
    o, i, kh, kw = shape
    return 2.0 * o * i * kh * kw * rank + 4.0 * rank ** 3 / 3 + 2.0 * (o + i) * rank ** 2


def _sweep(Wm: np.ndarray, Wt: np.ndarray, shape: tuple[int, ...], factors: list[np.ndarray],
           norm2: float, work: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
    """One ALS sweep (out, in, h, w); returns the factors and their objective.

    ``Wm`` is the weight as (out, in*kh*kw), ``Wt`` as (out*kh*kw, in): the MTTKRPs come
    from ``U_out^T Wm`` and, for the output factor, ``Wt U_in`` (out kh kw, R) or, with
    fewer inputs than outputs, ``Wm`` times the Khatri-Rao product of the other factors
    (in kh kw, R), whichever is the smaller array (the same multiply-adds; on a
    384x16x7x7 layer at rank 363 a sweep took 18 ms instead of 78 ms, two BLAS threads):
    never a Khatri-Rao product of the weight's size. The large products go into the
    arrays of ``work`` (:func:`_workspace`), reused from sweep to sweep.
    """
    o, i, kh, kw = shape
    m = kh * kw
    Uo, Ui, Uh, Uw = factors
    R = Uo.shape[1]
    Gi, Gh, Gw = Ui.T @ Ui, Uh.T @ Uh, Uw.T @ Uw
    S = _kr(Uh, Uw)
    if i < o:
        Mo = Wm @ _kr(Ui, S, out=_workspace(work, "kr", (i * m, R)))
    else:
        # (einsum's one pass over Y: 2 to 4 times faster than a sum of m slices)
        Mo = np.einsum("osr,sr->or", (Wt @ Ui).reshape(o, m, R), S)
    Uo = _solve_gram(Mo, Gi * Gh * Gw)
    Go = Uo.T @ Uo
    A = np.matmul(Uo.T, Wm, out=_workspace(work, "A", (R, i * m))).reshape(R, i, m)
    # (the other MTTKRPs contract A)
    # batched products over the components (no contraction-path search per sweep)
    Ui = _solve_gram(np.matmul(A, S.T[:, :, None])[:, :, 0].T, Go * Gh * Gw)
    Gi = Ui.T @ Ui
    B = np.matmul(Ui.T[:, None, :], A)[:, 0, :].reshape(R, kh, kw)
    Uh = _solve_gram(np.einsum("rhw,wr->hr", B, Uw), Go * Gi * Gw)
    Gh = Uh.T @ Uh
    Mw = np.einsum("rhw,hr->wr", B, Uh)
    Uw = _solve_gram(Mw, Go * Gi * Gh)
    model2 = float(np.sum(Go * Gi * Gh * (Uw.T @ Uw)))
    return [Uo, Ui, Uh, Uw], max(norm2 - 2 * float(np.vdot(Mw, Uw)) + model2, 0.0) / norm2


def als_weight(W: np.ndarray, factors: list[np.ndarray], max_sweeps: int, tol: float,
               seed: int, shake: float = SHAKE, start_error2: float | None = None) -> CPFit:
    """Accelerated ALS on ``||W - W_hat||^2`` from ``factors``.

    The spatial factors are first perturbed by seeded noise of relative size ``shake``
    (the slice start shares each spatial factor among many components, a point ALS
    leaves only slowly). Each sweep starts from the Nesterov extrapolation of the last
    two iterates; a sweep that raises the objective is redone from the last iterate
    without extrapolation. Stops when a sweep lowers the objective by at most ``tol``
    times its value ("converged") or after ``max_sweeps`` sweeps ("iteration
    cap"). Returns the best iterate, the start included, with its squared error
    ``||W - W_hat||^2`` recomputed from the factors. ``start_error2``: the start's
    squared error when known (the slice start's discarded tails), else computed.
    """
    o, i = W.shape[:2]
    Wm = W.reshape(o, -1)
    Wt = W.transpose(0, 2, 3, 1).reshape(-1, i)
    norm2 = float(np.vdot(Wm, Wm)) or 1.0
    current = [np.array(f, dtype=float) for f in factors]
    best, best_value = current, (_weight_objective(Wm, current, norm2)  # relative
                                 if start_error2 is None else start_error2 / norm2)
    rng = np.random.default_rng(seed)
    current = [*current[:2], *(U + shake * np.linalg.norm(U, axis=0)
                               * rng.standard_normal(U.shape) for U in current[2:])]
    previous: list[np.ndarray] | None = None
    value, momentum, stop, sweeps = np.inf, 0, "iteration cap", 0
    work: dict[str, np.ndarray] = {}
    while sweeps < max_sweeps:
        beta = momentum / (momentum + 3)
        point = current if previous is None or beta == 0 else [
            U + beta * (U - V) for U, V in zip(current, previous)]
        new, new_value = _sweep(Wm, Wt, W.shape, point, norm2, work)
        sweeps += 1
        if new_value > value and beta > 0:   # extrapolation failed: a plain sweep instead
            momentum = 0
            continue
        gain = value - new_value
        previous, current, value, momentum = current, new, new_value, momentum + 1
        if value < best_value:
            best, best_value = current, value
        if gain <= tol * value:
            stop = "converged"
            break
    return CPFit(best, _weight_objective(Wm, best, 1.0), sweeps, stop)


def _weight_objective(Wm: np.ndarray, factors: list[np.ndarray], norm2: float) -> float:
    E = _expand(factors)
    E -= Wm
    return float(np.vdot(E, E)) / norm2


def response_objective(Wm: np.ndarray, factors: list[np.ndarray], M: np.ndarray) -> float:
    """``tr(E M E^T)`` with ``E = W_hat - Wm`` (out x d), from the factors."""
    Uo, Ui, Uh, Uw = factors
    E = Uo @ _kr(Ui, _kr(Uh, Uw)).T - Wm
    return float(np.vdot(E @ M, E))


def _metric_objective(Wm: np.ndarray, factors: list[np.ndarray], metric: Metric) -> float:
    """:func:`response_objective` with the products through ``metric`` (its root when
    thin)."""
    E = _expand(factors) - Wm
    return float(np.vdot(metric.times(E), E))


def _expand(factors: list[np.ndarray]) -> np.ndarray:
    """``U_out kr(U_in, U_h, U_w)^T`` (out x d), a new array.

    Through the Khatri-Rao product of the spatial factors with the smaller of ``U_out``
    and ``U_in``: ``kr(U_in, U_h, U_w)`` has ``in kh kw`` rows, ``in / out`` times those
    of ``kr(U_out, U_h, U_w)`` (a 16x384x7x7 layer at rank 302: 45 MB against 2 MB; the
    same multiply-adds)."""
    Uo, Ui, Uh, Uw = factors
    o, i = Uo.shape[0], Ui.shape[0]
    S = _kr(Uh, Uw)
    if i <= o:
        return Uo @ _kr(Ui, S).T
    m = S.shape[0]
    by_out = (_kr(Uo, S) @ Ui.T).reshape(o, m, i)      # [(o, s), i]
    return np.ascontiguousarray(by_out.transpose(0, 2, 1)).reshape(o, i * m)


def _contract(FM: np.ndarray, factors: list[np.ndarray], n: int) -> np.ndarray:
    """``D -> <FM, U_out kr(.., D, ..)^T>`` (D in place of factor ``n``) as a matrix
    shaped like that factor: with ``FM = E M``, half the objective's gradient in it.

    Two-operand contractions only (no contraction-path search per call: these run at
    every conjugate-gradient iteration)."""
    Uo, Ui, Uh, Uw = factors
    R = Uo.shape[1]
    G = (FM.T @ Uo).reshape(Ui.shape[0], -1, R)          # (in, kh kw, R)
    if n == 1:
        return np.einsum("isr,sr->ir", G, _kr(Uh, Uw))
    T = np.einsum("isr,ir->sr", G, Ui).reshape(Uh.shape[0], Uw.shape[0], R)
    if n == 2:
        return np.einsum("hwr,wr->hr", T, Uw)
    return np.einsum("hwr,hr->wr", T, Uh)


class InputPreconditioner:
    """Approximate inverse of the input factor's block Hessian, from ``M ~ c I + A kron B``.

    ``c`` is the metric's identity part (the weight term's weight, :attr:`Metric.scale`) and
    ``A kron B`` (``A`` in x in, ``B`` kh kw x kh kw) the nearest Kronecker product of ``M -
    c I`` (:func:`sdf.algebra.nearest_kron` with a shift), or the given ``pair`` (e.g.
    :meth:`Metric.kron_pair`, partial traces through the root). With the other factors
    fixed, the Hessian in ``U_in`` is then ``A kron C1 + I kron C2``, ``C1 = U_out^T U_out *
    S^T B S``, ``C2 = c U_out^T U_out * S^T S`` (``S = kr(U_h, U_w)``): in the eigenvectors
    of ``A`` (fixed over the fit) and the generalised eigenvectors of ``(C1, C2)`` (one
    small eigenproblem per round) it is diagonal. Keeping the identity part exact matters
    when the calibration Gram is far from a Kronecker product, e.g. of rank below its size
    (fewer patches than values per patch): its nearest Kronecker product alone put most of
    the weight on directions the calibration data never visit. With ``c = 0`` it is the
    plain Kronecker preconditioner ``A^{-1} X C1^{-1}``.
    """

    def __init__(self, M: np.ndarray | None, scale: float, i: int, m: int,
                 pair: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.scale = scale
        if pair is None:
            assert M is not None, "InputPreconditioner needs M or its Kronecker pair"
            pair = nearest_kron(M, (i, i), (m, m), shift=scale)
        self.A, self.B = pair
        lam, self.V = np.linalg.eigh(self.A)
        self.lam = np.maximum(lam, 0.0)

    def solver(self, Go: np.ndarray, S: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """``X -> (A kron C1 + I kron C2)^{-1} X`` for the current factors (``X`` in x R)."""
        C1 = Go * (S.T @ self.B @ S)
        if self.scale > 0:
            try:
                L = np.linalg.cholesky(self.scale * Go * (S.T @ S))
            except np.linalg.LinAlgError:  # degenerate factors: no identity part
                L = None
            if L is not None:
                Linv = sla.solve_triangular(L, np.eye(L.shape[0]), lower=True,
                                            check_finite=False)
                mu, Q = np.linalg.eigh(Linv @ C1 @ Linv.T)
                T = Linv.T @ Q                           # T^T C2 T = I, T^T C1 T = diag(mu)
                denom = np.outer(self.lam, np.maximum(mu, 0.0)) + 1.0
                V = self.V
                return lambda X: V @ (((V.T @ X) @ T) / denom) @ T.T
        solve_a, solve_c = _gram_solver(self.A), _gram_solver(C1)
        return lambda X: solve_c(solve_a(X.T).T)


def block_cg(metric: Metric, factors: list[np.ndarray], n: int, E: np.ndarray,
             EM: np.ndarray, iterations: int,
             precondition: Callable[[np.ndarray], np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Preconditioned CG on the objective as a function of factor ``n`` alone (1: in,
    2: h, 3: w; the others fixed), from its value in ``factors``.

    With the others fixed, ``E`` is linear in the factor, so the objective is an exact
    quadratic in it: half gradient ``_contract(E M)``, half Hessian product
    ``D -> _contract(E_D M)`` (``E_D``: the model with ``D`` in place of the factor). ``E``
    and ``E M`` are kept by linearity (one product with ``M`` per iteration). CG lowers a
    convex quadratic at every iteration and reaches its minimiser (the exact block
    update) in at most as many iterations as the factor has entries. ``E``, ``EM`` are
    ``E``, ``E M`` at ``factors``; returns the factor and ``E``, ``E M`` at it.
    """
    U = factors[n]
    residual = -_contract(EM, factors, n)
    z = precondition(residual)
    rz = float(np.vdot(residual, z))
    p = z
    for _ in range(iterations):
        if not rz > 0:
            break
        Ep = _expand([p if k == n else F for k, F in enumerate(factors)])
        EpM = metric.times(Ep)
        Hp = _contract(EpM, factors, n)
        curv = float(np.vdot(p, Hp))
        if not curv > 0:
            break
        alpha = rz / curv
        U, E, EM = U + alpha * p, E + alpha * Ep, EM + alpha * EpM
        residual = residual - alpha * Hp
        z = precondition(residual)
        rz, rz_old = float(np.vdot(residual, z)), rz
        p = z + (rz / rz_old) * p
    return U, E, EM


def round_cost(shape: tuple[int, ...], rank: int, metric: Metric,
               cg_iterations: tuple[int, int], separate: bool = False) -> float:
    """Multiply-adds of one round of :func:`als_response` on a weight of ``shape``: the
    output factor's normal equations (``K^T M``, ``K^T M K``, ``Wm M K``), ``E`` and
    ``E M`` after it, a gradient per updated factor, with ``separate`` the input
    preconditioner's small eigenproblem (about ``8 R^3``: a Cholesky factor, its
    inverse, two products and a symmetric eigendecomposition;
    :class:`InputPreconditioner`) and the CG iterations (``cg_iterations``: on the input
    factor and on each spatial one; each an expansion, a product with ``M`` and a
    contraction)."""
    o, i, kh, kw = shape
    d = i * kh * kw
    step = 2.0 * o * d * rank + metric.cost(o)
    gradients = 1 + 2 * (cg_iterations[1] > 0)
    return (metric.cost(rank) + d * rank ** 2 + (3.0 + gradients) * o * d * rank
            + (1 / 3 + (8.0 if separate else 0.0)) * rank ** 3
            + (cg_iterations[0] + 2 * cg_iterations[1]) * step)


@dataclass(frozen=True)
class Schedule:
    """CG iterations per round (input factor, each spatial factor), the work to spend
    and whether the input preconditioner keeps the metric's identity part apart."""

    iterations: tuple[int, int]
    work: float
    separate: bool


def cg_schedule(shape: tuple[int, ...], rank: int, metric: Metric, work: float,
                max_rounds: int) -> Schedule:
    """The rounds' CG iterations, the work to spend and the preconditioner's form.

    On the input factor, as many iterations as cost about what the rest of the round
    does (a balanced round; at most ``CG_INPUT``). With the preconditioner of
    :class:`InputPreconditioner`, more rounds of such short runs gained more per
    multiply-add than fewer long ones (wide 16x200x3x3 layer, 1e10 multiply-adds: 4
    iterations per round ended at 0.0252, 32 at 0.0270).

    When ``max_rounds`` balanced rounds cost less than ``work`` (small layers), those are
    the schedule and their cost the work to spend, with ``CG_SPATIAL // balanced`` (at
    least one) iterations on each spatial factor (there, many output-factor updates
    gained more than long CG runs; on the wide layer, 4 input and 1 spatial iterations
    per round reached the objective of 4 and 3 at 30 % less work), and the
    preconditioner keeps the identity part apart whenever the metric has one. Else the
    work is ``work``, with ``CG_SPATIAL_LONG`` iterations on each spatial factor when
    ``ROUNDS`` rounds of them fit in it and none otherwise (large layers: there a few
    rounds of input-factor steps gained the most), and the identity part is kept apart
    only when the eigenproblem that takes costs at most half a CG iteration (on the
    large benchmark layers, rank 569-623, it costs more, and their few budgeted rounds
    lost more in rounds than they gained from it).
    """
    o, i, kh, kw = shape
    step = 2.0 * o * i * kh * kw * rank + metric.cost(o)
    rest = round_cost(shape, rank, metric, (0, 0))  # the eigenproblem serves the CG runs
    balanced = int(min(max(rest / step, 1), CG_INPUT))
    plan = (balanced, max(1, CG_SPATIAL // balanced))
    separate = metric.scale > 0
    capped = max_rounds * round_cost(shape, rank, metric, plan, separate)
    if capped <= work:
        return Schedule(plan, capped, separate)
    separate = separate and 8.0 * rank ** 3 <= step / 2
    rich = ROUNDS * round_cost(shape, rank, metric, (balanced, CG_SPATIAL_LONG),
                               separate) <= work
    return Schedule((balanced, CG_SPATIAL_LONG if rich else 0), work, separate)


def _fitting_round(shape: tuple[int, ...], rank: int, metric: Metric,
                   cg_iterations: tuple[int, int], work: float, separate: bool
                   ) -> tuple[int, int] | None:
    """``cg_iterations`` when such a round costs at most ``work``, else the round with
    the most input-factor iterations (none on the spatial ones) that does; None if
    not even one fits."""
    if round_cost(shape, rank, metric, cg_iterations, separate) <= work:
        return cg_iterations
    o, i, kh, kw = shape
    step = 2.0 * o * i * kh * kw * rank + metric.cost(o)
    fits = int((work - round_cost(shape, rank, metric, (0, 0), separate)) / step
               + 1e-9)  # rounding
    return (min(fits, cg_iterations[0]), 0) if fits >= 1 else None


def als_response(W: np.ndarray, factors: list[np.ndarray], metric: Metric, max_rounds: int,
                 tol: float, work: float = np.inf,
                 cg_iterations: tuple[int, int] | None = None, accelerate: bool = True
                 ) -> CPFit:
    """Rounds of block updates on ``tr(E M E^T)`` from ``factors`` (see the module
    docstring).

    A round: the output factor in closed form, then ``cg_iterations[0]`` iterations of
    :func:`block_cg` on the input factor, preconditioned by :class:`InputPreconditioner`,
    then ``cg_iterations[1]`` on each spatial factor (preconditioned by ``U_out^T U_out *
    U_in^T A U_in * V^T V``, ``A kron B`` the Kronecker pair of ``M``
    (:meth:`Metric.kron_pair`), ``V`` the
    other spatial factor); None: :func:`cg_schedule` (which may also lower ``work``, and
    decides the input preconditioner's form; given iterations, it keeps the metric's
    identity part apart whenever there is one). With ``accelerate``, each round starts from
    the extrapolation ``U + beta (U - U_previous)`` of the input and spatial factors (``beta
    = k / (k + 3)`` after ``k`` accepted rounds, as :func:`als_weight`); a round that ends
    above the objective before it is dropped and redone without extrapolation (on the digits
    CNN's conv2, 200 such rounds ended 2 % lower than 1000 plain ones). Every accepted round
    lowers the objective or keeps it, so it never rises above the warm start's. Stops when a
    round lowers the objective by at most ``tol`` times its value per CG iteration
    ("converged"), or when ``max_rounds`` rounds are done or the multiply-adds spent
    (:func:`round_cost`) leave no room in ``work`` for a round with one CG iteration (a last
    round shortened to fit; at least one round runs; "iteration cap"). Returns the better of
    the start and the last iterate, with its objective recomputed from the factors.
    """
    o, i, kh, kw = W.shape
    Wm = W.reshape(o, -1)
    Z = metric.times(Wm)                                     # M is symmetric
    start = [np.array(f, dtype=float) for f in factors]
    R = start[0].shape[1]
    separate = metric.scale > 0
    if cg_iterations is None:
        schedule = cg_schedule(W.shape, R, metric, work, max_rounds)
        cg_iterations, work, separate = schedule.iterations, schedule.work, schedule.separate
    # the Kronecker pairs of Metric.kron_pair: nearest Kronecker products of the dense M,
    # or partial traces through the calibration root (M never formed)
    shift = metric.scale if separate else 0.0
    precondition = InputPreconditioner(None, shift, i, kh * kw,
                                       metric.kron_pair(i, kh * kw, shift))
    # the spatial factors' preconditioner reads the Kronecker pair of M
    KA = (precondition.A if not precondition.scale
          else metric.kron_pair(i, kh * kw)[0]) if cg_iterations[1] else None
    start_value = value = np.inf
    current, previous = start, start
    stop, rounds, spent, momentum = "iteration cap", 0, 0.0, 0
    while rounds < max_rounds:
        plan = cg_iterations if rounds == 0 else _fitting_round(
            W.shape, R, metric, cg_iterations, work - spent, separate)
        if plan is None:
            break
        cg_in, cg_sp = plan
        spent += round_cost(W.shape, R, metric, plan, separate)
        rounds += 1
        beta = momentum / (momentum + 3) if accelerate else 0.0
        point = current[1:] if beta == 0 else [
            U + beta * (U - V) for U, V in zip(current[1:], previous[1:])]
        new, E, EM, at_start = _response_round(Wm, Z, metric, point, plan, KA, precondition,
                                               start[0] if rounds == 1 else None)
        if rounds == 1:
            start_value = value = at_start
        new_value = float(np.vdot(EM, E))
        if new_value > value and beta > 0:   # extrapolation failed: a plain round instead
            momentum = 0
            continue
        gain, value = value - new_value, new_value
        previous, current, momentum = current, new, momentum + 1
        if gain <= tol * new_value * (cg_in + 2 * cg_sp):  # per CG iteration, as one ALS update
            stop = "converged"
            break
    final_value = _metric_objective(Wm, current, metric)
    if rounds == 0 or final_value > start_value:
        return CPFit(start, _metric_objective(Wm, start, metric), rounds, stop)
    return CPFit(current, final_value, rounds, stop)


def _response_round(Wm: np.ndarray, Z: np.ndarray, metric: Metric, point: list[np.ndarray],
                    plan: tuple[int, int], KA: np.ndarray | None,
                    precondition: InputPreconditioner, Uo_start: np.ndarray | None
                    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, float]:
    """One round of :func:`als_response` from the input and spatial factors ``point``
    (``Z = Wm M``; ``plan``: CG iterations on the input and on each spatial factor; ``KA``
    the input side of the Kronecker pair of ``M``, needed with spatial
    iterations). Returns the factors, ``E`` and ``E M`` at them and, given
    ``Uo_start``, the objective of ``[Uo_start, *point]`` (from the products the round
    needs anyway; else nan)."""
    Ui, Uh, Uw = point
    K = _kr(Ui, _kr(Uh, Uw))
    KM = metric.times(K.T)                               # K^T M
    H, ZK = KM @ K, Wm @ KM.T
    at_start = np.nan
    if Uo_start is not None:
        at_start = max(float(np.vdot(Uo_start @ H, Uo_start))
                       - 2 * float(np.vdot(Uo_start, ZK)) + float(np.vdot(Z, Wm)), 0.0)
    Uo = _solve_gram(ZK, H)
    E, EM = Uo @ K.T - Wm, Uo @ KM - Z                   # at the new U_out
    Go = Uo.T @ Uo
    Ui, E, EM = block_cg(metric, [Uo, Ui, Uh, Uw], 1, E, EM, plan[0],
                         precondition.solver(Go, _kr(Uh, Uw)))
    if plan[1]:
        assert KA is not None, "spatial iterations need the Kronecker factor of M"
        GA = Go * (Ui.T @ KA @ Ui)
        Uh, E, EM = block_cg(metric, [Uo, Ui, Uh, Uw], 2, E, EM, plan[1],
                             _gram_solver(GA * (Uw.T @ Uw)))
        Uw, E, EM = block_cg(metric, [Uo, Ui, Uh, Uw], 3, E, EM, plan[1],
                             _gram_solver(GA * (Uh.T @ Uh)))
    return [Uo, Ui, Uh, Uw], E, EM, at_start
