"""Gauss-Newton with a dogleg trust region (or Levenberg-Marquardt) and inner PCG.

Each iteration solves ``(J^T J) p = -g`` approximately by preconditioned conjugate
gradients (``cg_max_iter`` steps at most, block-Jacobi preconditioner), never forming
``J``: only Gramian-vector products. Where a product reads the data (least-squares
terms on masked or sampled entries: it then costs about as much as a gradient), at most
``cg_max_iter_reading_data`` steps (default 3) until the objective's relative decrease
per iteration falls below 1e-6: a few more iterations, each much cheaper, and the full
``cg_max_iter`` for the fast final convergence. The step is a dogleg between the Cauchy point and the Gauss-Newton step
inside a trust region whose radius follows the ratio of actual to predicted decrease;
with ``trust="lm"`` the system is damped instead,
``(J^T J + lambda I) p = -g``.

With bounds (``lower``/``upper`` options, as Tensorlab's ``nlsb_gndl``) the iteration is a
projected, active-set trust region: the iterate stays in the box; entries at (or within
a small margin of) a bound with the gradient pushing outwards are held fixed; CG solves
the Gauss-Newton system on the free entries only (the structured Gramian masked, never
formed); the dogleg step is projected onto the box, and a projected Cauchy step
``P(z - t g) - z`` replaces it when it promises more decrease (which guarantees progress
and lets entries reach their bounds). The run stops at a KKT point when the projected
gradient ``z - P(z - g)`` falls below ``tol_grad`` (stop reason ``TOL_GRAD``), or by the
usual tolerances.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from sdf.result import StopReason
from sdf.solvers._box import Box, make_box
from sdf.solvers._run import Run, ScaledPoint, ScaledProblem
from sdf.solvers.minf import _explains_nothing
from sdf.solvers.options import NLSOptions

__all__ = ["nls", "pcg"]

_MAX_REJECTIONS = 30
#: Relative decrease of the objective per iteration below which CG gets its full
#: ``cg_max_iter`` again.
_FULL_CG_BELOW = 1e-6


def _norm(x: np.ndarray) -> float:
    """Euclidean norm of a real vector: ``sqrt(x.dot(x))``, what ``np.linalg.norm`` computes
    for one, without its dispatch (called several times per iteration)."""
    return math.sqrt(float(x.dot(x)))


def pcg(
    operator: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    precond: Callable[[np.ndarray], np.ndarray],
    tol: float,
    max_iter: int,
    deadline: float | None = None,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Preconditioned conjugate gradients for ``A x = b`` with ``A`` symmetric PSD.

    Parameters
    ----------
    operator : callable
        ``v -> A v``.
    b : ndarray of shape (n,)
        Right-hand side.
    precond : callable
        ``r -> M^{-1} r``, ``M`` approximating ``A``.
    tol : float
        Stop when ``||b - A x|| <= tol * ||b||``.
    max_iter : int
        Maximum number of products with ``A``.
    deadline : float, optional
        A :func:`time.perf_counter` time after which no further product is started (the
        iterate so far is returned), so that a solver's time budget holds inside a long
        CG run too.

    Returns
    -------
    x : ndarray
        Approximate solution.
    Ax : ndarray
        ``A x``, tracked along the way (no extra product).
    iterations : int
        Number of products with ``A``.
    breakdown : bool
        True when a direction of non-positive curvature stopped the iteration.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
    >>> x, Ax, its, bad = pcg(lambda v: A @ v, np.array([1.0, 2.0]), lambda r: r, 1e-12, 10)
    >>> np.allclose(A @ x, [1.0, 2.0])
    True
    """
    x = np.zeros_like(b)
    Ax = np.zeros_like(b)
    r = b.copy()
    bnorm = math.sqrt(float(b @ b))
    if bnorm == 0:
        return x, Ax, 0, False
    # The model q(x) = x.Ax/2 - b.x decreases at every exact CG step; on a singular
    # Gramian rounding can make it grow again along the null space, so the iterate with
    # the lowest q is returned. Iterates are never updated in place, so keeping the best
    # one costs no copy.
    best_q, best_x, best_Ax = 0.0, x, Ax
    z = precond(r)
    p = z.copy()
    rz = float(r @ z)
    it = 0
    breakdown = False
    for it in range(1, max_iter + 1):
        Ap = operator(p)
        pAp = float(p @ Ap)
        if not math.isfinite(pAp) or pAp <= 1e-300:
            breakdown = True
            break
        alpha = rz / pAp
        x = x + alpha * p
        step_Ap = alpha * Ap
        Ax = Ax + step_Ap
        r -= step_Ap
        q = 0.5 * float(x @ Ax) - float(b @ x)
        if q < best_q:
            best_q, best_x, best_Ax = q, x, Ax
        if math.sqrt(float(r @ r)) <= tol * bnorm:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            break
        z = precond(r)
        rz_new = float(r @ z)
        if rz_new <= 0:
            break
        p = z + (rz_new / rz) * p
        rz = rz_new
    return best_x, best_Ax, it, breakdown


def _inner_options(options: NLSOptions, point: ScaledPoint, relchange: float
                   ) -> NLSOptions:
    """The options of this iteration's inner solve: at most ``cg_max_iter_reading_data``
    CG steps while the products read the data and the objective still falls by more than
    :data:`_FULL_CG_BELOW` (relative to the start) per iteration; ``cg_max_iter`` near
    the solution, where Gauss-Newton's fast final convergence needs the accurate steps.

    A product that reads the data costs about a gradient, and past a few steps the
    iterations they save cost less than the steps (on a 60^3 CPD with half the entries
    missing, 3 steps reach the optimum in about half the time of 15).
    """
    short = options.cg_max_iter_reading_data
    if (not point.raw.products_read_data or relchange <= _FULL_CG_BELOW
            or options.cg_max_iter <= short):
        return options
    return dataclasses.replace(options, cg_max_iter=short)


def _dogleg(g: np.ndarray, p_gn: np.ndarray, Hp_gn: np.ndarray, p_sd: np.ndarray,
            Hp_sd: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    n_gn = _norm(p_gn)
    if n_gn <= radius:
        return p_gn, Hp_gn
    n_sd = _norm(p_sd)
    if n_sd >= radius or n_gn == 0:
        s = radius / n_sd if n_sd > 0 else 0.0
        return s * p_sd, s * Hp_sd
    d = p_gn - p_sd
    a, b, c = d @ d, 2 * (p_sd @ d), p_sd @ p_sd - radius**2
    tau = (-b + np.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)
    return p_sd + tau * d, Hp_sd + tau * (Hp_gn - Hp_sd)


def _cauchy(point: ScaledPoint, g: np.ndarray, radius: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """The steepest-descent step to the minimum of the quadratic model along ``-g``, and
    its Gramian product: ``(-alpha g, -alpha H g)``, ``alpha = g.g / g.Hg``."""
    Hg = point.gn_product(g)
    gHg = float(g @ Hg)
    gg = float(g @ g)
    alpha = gg / gHg if gHg > 0 else radius / np.sqrt(gg)
    return -alpha * g, -alpha * Hg


def _update_radius(radius: float, norm_p: float, rho: float) -> float:
    """Grow the trust region after a good step, shrink it after a poor one."""
    if rho > 0.5:
        return max(radius, 2.0 * norm_p)
    if rho < 0.25:
        return 0.5 * min(radius, norm_p) if norm_p > 0 else 0.5 * radius
    return radius


def nls(problem: ScaledProblem, options: NLSOptions, run: Run
        ) -> tuple[ScaledPoint, StopReason]:
    """Minimise the model's objective by Gauss-Newton; see the module docstring."""
    box = make_box(problem, options.lower, options.upper, "NLSOptions")
    if box is not None:
        return _nls_bounded(problem, options, run, box)
    point = problem.point(problem.z0.copy())
    f0, radius, stop = _begin(point, run)
    if stop is not None:
        return point, stop
    damping = np.nan
    if options.trust == "lm":
        radius, damping = np.nan, radius
    floor = problem.rounding_floor()
    deadline = run.start + run.max_time if math.isfinite(run.max_time) else None
    try:
        relchange = math.inf
        for k in range(1, options.max_iter + 1):
            g = point.gradient()
            if not np.all(np.isfinite(g)):
                return point, StopReason.NONFINITE
            if _norm(g) <= 1e-300:
                reason = StopReason.TOL_ABS if point.f <= floor else StopReason.STATIONARY
                return point, reason
            precond = point.preconditioner()
            inner = _inner_options(options, point, relchange)
            step = _iterate(point, g, precond, inner, radius, damping, floor, deadline)
            if isinstance(step, StopReason):
                return point, step
            new, p, radius, damping, cg_its, at_floor = step
            relchange = (point.f - new.f) / f0
            step_norm = _norm(p)
            z_norm = _norm(point.z)
            point = new
            shown_radius = radius if options.trust == "dogleg" else damping
            stop = _stop_after(run, point, k, relchange, step_norm, shown_radius, cg_its,
                               options, f0, at_floor, z_norm)
            if stop is not None:
                return point, stop
        return point, StopReason.MAX_ITER
    except KeyboardInterrupt:
        best = run.best if run.best is not None else point
        return best, StopReason.INTERRUPTED


#: An accepted step: (new point, step, radius, damping, CG iterations, at_floor).
Step = tuple[ScaledPoint, np.ndarray, float, float, int, bool]


def _begin(point: ScaledPoint, run: Run) -> tuple[float, float, StopReason | None]:
    """Evaluate and record the start: ``(f_ref, radius, stop)``, ``stop`` set when the run
    ends there (non-finite start, callback, exact fit); ``f_ref``: the objective the
    tolerances are relative to (``ScaledProblem.tolerance_reference``)."""
    if not np.isfinite(point.f):
        run.best = point
        return np.nan, np.nan, StopReason.NONFINITE
    f0, radius = run.resumed(point.f)
    if run.record(point, 0, np.nan, np.nan, np.nan, 0):
        return f0, radius, StopReason.CALLBACK
    if f0 == 0.0:
        return f0, radius, StopReason.TOL_ABS
    return run.problem.tolerance_reference(f0), radius, None


def _stop_after(run: Run, point: ScaledPoint, k: int, relchange: float, step_norm: float,
                shown_radius: float, cg_its: int, options: NLSOptions, f0: float,
                at_floor: bool, z_norm: float) -> StopReason | None:
    """Record iteration ``k`` and return the stop reason it meets, if any (callback, then
    the tolerances, then the time budget)."""
    if run.record(point, k, relchange, step_norm, shown_radius, cg_its):
        return StopReason.CALLBACK
    if point.f <= options.tol_abs * f0:
        return StopReason.TOL_ABS
    if not at_floor and relchange <= options.tol_fun:
        return StopReason.TOL_FUN
    if step_norm <= options.tol_x * max(z_norm, 1e-300):
        return StopReason.TOL_X
    if run.out_of_time():
        return StopReason.MAX_TIME
    return None


def _iterate(point: ScaledPoint, g: np.ndarray, precond: Callable[[np.ndarray], np.ndarray],
             options: NLSOptions, radius: float, damping: float, floor: float,
             deadline: float | None = None) -> Step | StopReason:
    """One accepted step, or why there is none.

    A step is ``(new point, step, radius, damping, CG iterations, at_floor)``, ``at_floor``
    telling that the step was judged by the gradient because the objective's decrease was
    below its rounding noise (the objective-change test is then meaningless).
    """
    problem = point.problem
    if options.trust == "lm":
        return _lm_step(point, g, precond, options, damping, floor, deadline)
    p_gn, Hp_gn, cg_its, broke = pcg(point.gn_product, -g, precond, options.cg_tol,
                                     options.cg_max_iter, deadline)
    if np.isnan(radius):
        radius = max(_norm(p_gn),
                     1e-12 * max(_norm(point.z), 1.0))
    # The Cauchy point costs one more Gramian product; a Gauss-Newton step inside the
    # trust region (most steps near convergence) never needs it.
    cauchy: tuple[np.ndarray, np.ndarray] | None = None
    n_gn, first_radius = _norm(p_gn), radius
    for _ in range(_MAX_REJECTIONS):
        if n_gn <= radius:
            p, Hp = p_gn, Hp_gn
        else:
            if cauchy is None:
                cauchy = _cauchy(point, g, first_radius)
            p, Hp = _dogleg(g, p_gn, Hp_gn, *cauchy, radius)
        predicted = -(float(g @ p) + 0.5 * float(p @ Hp))
        if not broke and 0 <= predicted <= floor and radius >= _norm(p_gn):
            # The full Gauss-Newton step promises less than the rounding noise of f, so f
            # cannot rank it; the gradient (formed without cancellation) still can.
            return _judge_by_gradient(point, g, p, radius, damping, cg_its, floor)
        new = problem.point(point.z + p)
        actual = point.f - new.f
        rho = actual / predicted if predicted > 0 else -1.0
        norm_p = _norm(p)
        if not np.isfinite(new.f):
            rho = -1.0
        radius = _update_radius(radius, norm_p, rho)
        if rho > 0 and np.isfinite(new.f) and actual >= 0:
            return new, p, radius, damping, cg_its, False
        if radius <= 1e-15 * max(_norm(point.z), 1e-300):
            break
    return StopReason.CG_BREAKDOWN if broke else StopReason.STEP_FAILED


def _judge_by_gradient(point: ScaledPoint, g: np.ndarray, p: np.ndarray, radius: float,
                       damping: float, cg_its: int, floor: float) -> Step | StopReason:
    """Accept a step below the objective's rounding floor if it reduces the gradient."""
    new = point.problem.point(point.z + p)
    if np.isfinite(new.f) and new.f <= point.f + floor:
        g_new = new.gradient()
        if np.all(np.isfinite(g_new)) and _norm(g_new) < _norm(g):
            return new, p, radius, damping, cg_its, True
    return StopReason.TOL_FUN


def _lm_step(point: ScaledPoint, g: np.ndarray, precond: Callable[[np.ndarray], np.ndarray],
             options: NLSOptions, damping: float, floor: float,
             deadline: float | None = None) -> Step | StopReason:
    problem = point.problem
    if np.isnan(damping):
        # Start at a small fraction of the Gramian's scale, measured along the gradient.
        Hg = point.gn_product(g)
        damping = 1e-3 * max(float(g @ Hg) / max(float(g @ g), 1e-300), 1e-300)
    total_cg = 0
    for _ in range(_MAX_REJECTIONS):
        lam = damping
        p, Hp, cg_its, _ = pcg(lambda v: point.gn_product(v) + lam * v, -g,
                               precond, options.cg_tol, options.cg_max_iter, deadline)
        total_cg += cg_its
        Hp_gn = Hp - lam * p
        predicted = -(float(g @ p) + 0.5 * float(p @ Hp_gn))
        if 0 <= predicted <= floor:
            return _judge_by_gradient(point, g, p, np.nan, damping, total_cg, floor)
        new = problem.point(point.z + p)
        actual = point.f - new.f
        rho = actual / predicted if predicted > 0 and np.isfinite(new.f) else -1.0
        if rho > 0 and actual >= 0:
            damping *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            return new, p, np.nan, damping, total_cg, False
        damping *= 4.0
        if not np.isfinite(damping) or damping > 1e300:
            break
    return StopReason.STEP_FAILED


#: Largest margin (solver units) within which an entry counts as at its bound.
_ACTIVE_MARGIN = 1e-3


def _nls_bounded(problem: ScaledProblem, options: NLSOptions, run: Run, box: Box
                 ) -> tuple[ScaledPoint, StopReason]:
    """Projected trust-region Gauss-Newton on the box; see the module docstring."""
    point = problem.point(box.project(problem.z0))
    f0, radius, stop = _begin(point, run)
    if stop is not None:
        return point, stop
    floor = problem.rounding_floor()
    deadline = run.start + run.max_time if math.isfinite(run.max_time) else None
    try:
        relchange = math.inf
        for k in range(1, options.max_iter + 1):
            g = point.gradient()
            if not np.all(np.isfinite(g)):
                return point, StopReason.NONFINITE
            pg = box.projected_gradient(point.z, g)
            if float(np.max(np.abs(pg), initial=0.0)) <= options.tol_grad * f0:
                stationary = point.f > floor and _explains_nothing(run, point)
                return point, StopReason.STATIONARY if stationary else StopReason.TOL_GRAD
            inner = _inner_options(options, point, relchange)
            step = _bounded_iterate(point, g, pg, box, inner, radius, floor, deadline)
            if isinstance(step, StopReason):
                return point, step
            new, s, radius, cg_its, at_floor = step
            relchange = (point.f - new.f) / f0
            step_norm = _norm(s)
            z_norm = _norm(point.z)
            point = new
            stop = _stop_after(run, point, k, relchange, step_norm, radius, cg_its, options,
                               f0, at_floor, z_norm)
            if stop is not None:
                return point, stop
        return point, StopReason.MAX_ITER
    except KeyboardInterrupt:
        best = run.best if run.best is not None else point
        return best, StopReason.INTERRUPTED


#: An accepted bounded step: (new point, step, radius, CG iterations, at_floor).
BoundedStep = tuple[ScaledPoint, np.ndarray, float, int, bool]


def _bounded_iterate(point: ScaledPoint, g: np.ndarray, pg: np.ndarray, box: Box,
                     options: NLSOptions, radius: float, floor: float,
                     deadline: float | None) -> BoundedStep | StopReason:
    """One accepted projected step, or why there is none."""
    problem = point.problem
    margin = min(_ACTIVE_MARGIN, _norm(pg))
    free = ~box.active(point.z, g, margin)
    base_precond = point.preconditioner()

    def product(v: np.ndarray) -> np.ndarray:  # the Gramian on the free entries
        return free * point.gn_product(free * v)

    def precond(r: np.ndarray) -> np.ndarray:
        return free * base_precond(free * r)

    g_free = free * g
    p_gn, Hp_gn, cg_its, broke = pcg(product, -g_free, precond, options.cg_tol,
                                     options.cg_max_iter, deadline)
    Hg = product(g_free)
    gHg, gg = float(g_free @ Hg), float(g_free @ g_free)
    alpha = gg / gHg if gHg > 0 else 0.0
    p_sd, Hp_sd = -alpha * g_free, -alpha * Hg
    if np.isnan(radius):
        radius = max(_norm(p_gn), _norm(pg),
                     1e-12 * max(_norm(point.z), 1.0))
    cauchy = _ProjectedCauchy(point, g, box)
    for _ in range(_MAX_REJECTIONS):
        p, Hp = (_dogleg(g_free, p_gn, Hp_gn, p_sd, Hp_sd, radius) if gg > 0
                 else (np.zeros_like(g), np.zeros_like(g)))
        # Trial points are formed by projection, so that bounds are met exactly.
        z_new = box.project(point.z + p)
        s = z_new - point.z
        if np.array_equal(s, p) and gg > 0:
            q = float(g @ s) + 0.5 * float(s @ Hp)
        else:  # projection changed the step: its model value, and the Cauchy step's
            q = float(g @ s) + 0.5 * float(s @ point.gn_product(s))
            z_c, q_c = cauchy.step(radius)
            if q_c < q:
                z_new, q = z_c, q_c
                s = z_new - point.z
        predicted = -q
        full_gn = radius >= _norm(p_gn)
        if not broke and 0 <= predicted <= floor and full_gn:
            return _judge_bounded(point, z_new, box, pg, radius, cg_its, floor)
        new = problem.point(z_new)
        actual = point.f - new.f
        rho = actual / predicted if predicted > 0 and np.isfinite(new.f) else -1.0
        norm_s = _norm(s)
        radius = _update_radius(radius, norm_s, rho)
        if rho > 0 and actual >= 0:
            return new, s, radius, cg_its, False
        if radius <= 1e-15 * max(_norm(point.z), 1e-300):
            break
    return StopReason.CG_BREAKDOWN if broke else StopReason.STEP_FAILED


class _ProjectedCauchy:
    """The projected steepest-descent point ``P(z - t g)`` with ``t`` the Cauchy step
    length ``g.g / g.Hg``, shortened to the trust radius, and its model decrease."""

    def __init__(self, point: ScaledPoint, g: np.ndarray, box: Box) -> None:
        self.point, self.g, self.box = point, g, box
        self._t: float | None = None

    def step(self, radius: float) -> tuple[np.ndarray, float]:
        point, g = self.point, self.g
        gg = float(g @ g)
        if gg == 0:
            return point.z.copy(), 0.0
        if self._t is None:
            gHg = float(g @ point.gn_product(g))
            self._t = gg / gHg if gHg > 0 else math.inf
        t = min(self._t, radius / math.sqrt(gg))
        z_new = self.box.project(point.z - t * g)
        s = z_new - point.z
        return z_new, float(g @ s) + 0.5 * float(s @ point.gn_product(s))


def _judge_bounded(point: ScaledPoint, z_new: np.ndarray, box: Box, pg: np.ndarray,
                   radius: float, cg_its: int, floor: float) -> BoundedStep | StopReason:
    """Accept a step below the objective's rounding floor if it reduces the projected
    gradient (the KKT measure)."""
    s = z_new - point.z
    new = point.problem.point(z_new)
    if np.isfinite(new.f) and new.f <= point.f + floor:
        g_new = new.gradient()
        if np.all(np.isfinite(g_new)) and (_norm(box.projected_gradient(new.z, g_new))
                                           < _norm(pg)):
            return new, s, radius, cg_its, True
    return StopReason.TOL_FUN
