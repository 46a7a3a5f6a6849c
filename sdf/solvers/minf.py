"""Quasi-Newton (L-BFGS) through scipy's L-BFGS-B, so bounds on variables come for free.

The objective is scaled by its starting value so that the tolerances are relative, as in
the Gauss-Newton solver. L-BFGS is not invariant to the variables' scales: a variable
whose start is far (beyond ``2**BALANCE_EXPONENT``) from the common scale, such as a
tensor train's last core carrying the data's norm beside orthonormal cores, is optimised
in its own unit (a power of two, so the change is exact). Without it the first
quasi-Newton steps move that variable alone and the line searches stall (a train of data
at 1e-10 stopped at relative error 0.97 after two iterations, and trains at unit scale
ran into the iteration cap).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdf.errors import OptionError
from sdf.result import StopReason
from sdf.solvers._box import make_box
from sdf.solvers._run import Run, ScaledPoint, ScaledProblem, variable_units
from sdf.solvers.options import MinfOptions

__all__ = ["minf"]


#: Exponent (base 2) of the spread between a variable's start and the common unit beyond
#: which the variable gets its own unit. From random starts on 30 problems (CPD, CPD with
#: 30 % missing, BTD and TT of rank-4 data with 1 % noise, data scales 0.01-100), 2 never
#: took more iterations than 8 or 64 and reached the same or lower errors; trains stalled at
#: 1000 iterations (relative errors 0.18-0.53) converged in 70-270, incomplete CPDs took
#: 40-120 iterations instead of 1000. 0 (every variable in its own unit) was mixed.
BALANCE_EXPONENT = 2


def _balance(problem: ScaledProblem, z0: np.ndarray) -> np.ndarray | None:
    """Per entry of ``z``, the unit (a power of two) of its variable where the variable's
    start is beyond ``2**BALANCE_EXPONENT`` from 1 (the common unit), else 1; None when
    every variable keeps the common unit."""
    exponents = variable_units(problem.raw, z0, 0, BALANCE_EXPONENT)
    return None if exponents is None else np.ldexp(1.0, exponents)


class _Stop(Exception):
    def __init__(self, reason: StopReason) -> None:
        self.reason = reason


def _bounds(problem: ScaledProblem, bounds: dict[str, Any] | None) -> list[tuple[Any, Any]] | None:
    if not bounds:
        return None
    unknown = sorted(set(bounds) - set(problem.names))
    if unknown:
        raise OptionError(
            f"MinfOptions.bounds: unknown variable(s) {', '.join(map(repr, unknown))} "
            f"(variables: {', '.join(problem.names)})"
        )
    lo = np.full(problem.n, -np.inf)
    hi = np.full(problem.n, np.inf)
    for k, (name, var) in enumerate(zip(problem.names, problem.variables)):
        if name not in bounds:
            continue
        if problem.raw.complex_variables[k]:
            raise OptionError(f"MinfOptions.bounds[{name!r}]: variable {name!r} is complex; "
                              "complex numbers have no order, so bounds apply to real "
                              "variables only")
        try:
            low, high = bounds[name]
        except (TypeError, ValueError) as exc:
            raise OptionError(
                f"MinfOptions.bounds[{name!r}]: expected a pair (lower, upper), got {bounds[name]!r}"
            ) from exc
        sl = slice(problem.offsets[k], problem.offsets[k + 1])
        for arr, val, label in ((lo, low, "lower"), (hi, high, "upper")):
            if val is None:
                continue
            try:
                arr[sl] = np.broadcast_to(np.asarray(val, dtype=float), var.shape).ravel()
            except (TypeError, ValueError) as exc:
                raise OptionError(
                    f"MinfOptions.bounds[{name!r}]: {label} bound of shape "
                    f"{np.shape(val)} does not fit the variable's shape {var.shape}"
                ) from exc
    if np.any(lo > hi):
        raise OptionError("MinfOptions.bounds: a lower bound exceeds its upper bound")
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise OptionError("MinfOptions.bounds: a bound is NaN (use None for no bound)")
    # Bounds are given in the model's units; a scaled problem works in z / sigma.
    lo, hi = problem.to_units(lo), problem.to_units(hi)
    return [(None if np.isinf(a) else a, None if np.isinf(b) else b) for a, b in zip(lo, hi)]


def minf(problem: ScaledProblem, options: MinfOptions, run: Run
         ) -> tuple[ScaledPoint, StopReason]:
    """Minimise the model's objective by L-BFGS-B; see the module docstring."""
    from scipy.optimize import minimize  # imported on use: it dominates `import sdf` otherwise

    bounds = _bounds(problem, options.bounds)
    box = make_box(problem, options.lower, options.upper, "MinfOptions")
    if box is not None:
        bounds = [(None if np.isinf(a) else a, None if np.isinf(b) else b)
                  for a, b in zip(box.lo, box.hi)]
    z0 = problem.z0.copy()
    if bounds is not None:  # start inside the box
        lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
        hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
        z0 = np.clip(z0, lo, hi)
    point = problem.point(z0)
    if not np.isfinite(point.f):
        run.best = point
        return point, StopReason.NONFINITE
    f0 = point.f
    if run.record(point, 0, np.nan, np.nan, np.nan, 0):
        return point, StopReason.CALLBACK
    if f0 == 0.0:
        return point, StopReason.TOL_ABS
    f_ref = problem.tolerance_reference(f0)
    if bounds is None:
        point = _shrunk_start(problem, point)
        z0 = point.z
    cache: dict[str, ScaledPoint] = {"last": point, "prev": point}
    # L-BFGS-B runs on y = z / units (exact: powers of two)
    units = _balance(problem, z0)
    y0 = z0 if units is None else z0 / units
    if units is not None and bounds is not None:
        bounds = [(None if a is None else a / u, None if b is None else b / u)
                  for (a, b), u in zip(bounds, units)]

    def to_z(y: np.ndarray) -> np.ndarray:
        return y.copy() if units is None else y * units

    def fun(y: np.ndarray) -> tuple[float, np.ndarray]:
        p = problem.point(to_z(y))
        cache["last"] = p
        if not np.isfinite(p.f):
            return np.inf, np.zeros_like(y)
        g = p.gradient()
        if not np.all(np.isfinite(g)):
            raise _Stop(StopReason.NONFINITE)
        return p.f / f_ref, (g if units is None else g * units) / f_ref

    def on_iteration(intermediate_result: Any) -> None:
        z = to_z(intermediate_result.x)
        p = cache["last"]
        if not np.array_equal(p.z, z):
            p = problem.point(z.copy())
        prev = cache["prev"]
        cache["prev"] = p
        step = float(np.linalg.norm(p.z - prev.z))
        if run.record(p, run.local_iterations + 1, (prev.f - p.f) / f_ref, step, np.nan, 0):
            raise _Stop(StopReason.CALLBACK)
        if run.out_of_time():
            raise _Stop(StopReason.MAX_TIME)

    try:
        res = minimize(fun, y0, jac=True, method="L-BFGS-B", bounds=bounds,
                       callback=on_iteration,
                       options={"maxiter": options.max_iter, "maxcor": options.memory,
                                "ftol": options.tol_fun, "gtol": options.tol_grad,
                                "maxfun": 20 * options.max_iter + 100})
    except _Stop as stop:
        return run.best, stop.reason  # type: ignore[return-value]
    except KeyboardInterrupt:
        return run.best, StopReason.INTERRUPTED  # type: ignore[return-value]
    except (OverflowError, FloatingPointError, np.linalg.LinAlgError):
        return run.best, StopReason.NONFINITE  # type: ignore[return-value]
    z = to_z(res.x)
    final = cache["prev"] if np.array_equal(cache["prev"].z, z) else problem.point(z)
    if run.best is None or final.f <= run.best.f:
        run.best = final
    reason = _reason(res, run.best.f, f0, problem.rounding_floor())
    if reason is StopReason.TOL_GRAD and _explains_nothing(run, run.best):
        # As in the Gauss-Newton solver: a gradient that vanishes where the model fits
        # no better than zero marks a saddle (e.g. an all-zero start), not a solution.
        reason = StopReason.STATIONARY
    return run.best, reason


#: A start whose objective is above this multiple of the zero model's is shrunk first
#: (:func:`_shrunk_start`).
_FAR_START = 4.0


def _shrunk_start(problem: ScaledProblem, start: ScaledPoint) -> ScaledPoint:
    """The start, or where its objective exceeds ``_FAR_START`` times the zero model's
    (:meth:`~sdf.solvers._run.ScaledProblem.zero_model_objective`: a model far larger
    than the data), ``2**-k start`` for the least ``k >= 1`` (exact) whose objective does
    not: every variable shrunk alike, the model about the data's size.

    The fit rescales far starts of its data terms' own variables before the solvers run
    (:func:`sdf.fit.rescaled_start`); variables shared with other terms (a regularizer)
    keep theirs, and from there L-BFGS shrank one factor alone, to where the others'
    gradients vanish with it, and stopped on ``tol_fun`` (a CPD with L2 regularizers on
    data at 1e-8, from unit factors: relative error 0.7 to 1.3). The minimum along the
    ray would be no better: near the zero model for a start unrelated to the data.
    Doubling ``k``, then bisecting, takes about ``2 log2(k)`` objective evaluations; the
    Gauss-Newton solvers do not need this.
    """
    limit = _FAR_START * problem.zero_model_objective()
    if not start.f > limit:
        return start

    def at(k: int) -> ScaledPoint:
        with np.errstate(under="ignore", over="ignore", invalid="ignore"):
            return problem.point(np.ldexp(start.z, -k))

    k, point = 1, at(1)
    while not point.f <= limit:  # (NaN: not yet)
        if k >= 1024:
            return start
        k, point = 2 * k, at(2 * k)
    lo, hi, best = k // 2, k, point  # f(lo) > limit >= f(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = at(mid)
        if trial.f <= limit:
            hi, best = mid, trial
        else:
            lo = mid
    return best


def _explains_nothing(run: Run, point: ScaledPoint) -> bool:
    """True when every data term's relative error at ``point`` is 1 or more (to rounding):
    the model explains none of the data."""
    relerr = run.relerr(point.raw.fvals)
    return bool(relerr) and all(e >= 1.0 - 1e-8 for e in relerr.values())


def _reason(res: Any, f: float, f0: float, floor: float) -> StopReason:
    message = str(res.message).upper()
    if "GRADIENT" in message or "PROJG" in message:
        return StopReason.TOL_GRAD
    if "REL_REDUCTION_OF_F" in message or "FACTR" in message:
        return StopReason.TOL_FUN
    if "ITERATION" in message or "EVALUATIONS" in message:
        return StopReason.MAX_ITER
    # Line-search failures after progress mean the objective cannot decrease further
    # at machine precision: the iterate is as good as the tolerances allow; without
    # progress, so is an objective within the rounding noise of the data's norms (an
    # exact start).
    if f <= floor:
        return StopReason.TOL_ABS
    return StopReason.TOL_FUN if f < f0 else StopReason.STEP_FAILED
