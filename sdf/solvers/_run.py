"""Book-keeping shared by the solvers: scaling, history, callback, display, time budget,
best iterate and checkpoints.

Two pieces sit between :class:`sdf.Model.fit` and a solver:

* :class:`ScaledProblem` presents the problem in units where the start is of order one:
  ``z = sigma * u`` and ``f = phi * f_u`` with ``sigma`` and ``phi`` powers of two (so the
  change of units is exact in floating point). The solvers' tolerances and safeguards then
  see the same numbers whether the data are scaled by 1e-150 or by 1e150: results are
  scale-invariant, and no dot product overflows or underflows on the way.
* :class:`Run` records accepted iterates (in the model's own units), calls the callbacks,
  keeps the best finite iterate, continues the history of a resumed run, writes
  checkpoints and assembles the :class:`sdf.Result` (:class:`RunContext` carries what
  ``fit`` asks for besides the solver's options).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdf.errors import ModelError, SdfError
from sdf.expr import Variable
from sdf.numerics import SCALE_THRESHOLD
from sdf.problem import ModelLike, Point, Problem
from sdf.result import History, IterationInfo, Result, StopReason
from sdf.terms import Term

__all__ = ["Assembly", "Run", "RunContext", "ScaledPoint", "ScaledProblem", "table_printer",
           "variable_units"]


def table_printer(every: int, print_fn: Callable[[str], Any] = print) -> Callable[[IterationInfo], None]:
    """A callback printing an iteration table row every ``every`` iterations.

    The header is printed before the first row (iteration 0, or the first iteration of a
    resumed run).

    Examples
    --------
    >>> show = table_printer(1)
    >>> show(IterationInfo(0, 1.0, np.nan, np.nan, np.nan, 0, 0.0, np.ones(1), np.ones(1)))
     iter     objective rel. change       step     radius   CG  time [s]
        0  1.000000e+00         nan        nan        nan    0     0.000
    """
    header = (f"{'iter':>5} {'objective':>13} {'rel. change':>11} {'step':>10} "
              f"{'radius':>10} {'CG':>4} {'time [s]':>9}")
    first = [True]

    def show(info: IterationInfo) -> None:
        if first[0]:
            print_fn(header)
            first[0] = False
        if info.iteration % every == 0:
            print_fn(f"{info.iteration:5d} {info.objective:13.6e} {info.relchange:11.3e} "
                     f"{info.step:10.3e} {info.radius:10.3e} {info.cg_iterations:4d} "
                     f"{info.time:9.3f}")

    return show


def _ldexp(x: float, e: int) -> float:
    """``x * 2**e``, inf or 0 where that leaves the float range (no warning)."""
    try:
        return math.ldexp(x, e)
    except OverflowError:
        return math.copysign(math.inf, x)


def variable_units(problem: Problem, z0: np.ndarray, e_z: int,
                   threshold: int = SCALE_THRESHOLD) -> np.ndarray | None:
    """Per entry of z, the exponent of its variable's unit, or None when every variable's
    scale is within ``2**±threshold`` of the common unit ``2**e_z``."""
    exps = []
    for value in problem.unpack(z0):
        top = float(np.max(np.abs(value), initial=0.0))
        own = _exponent(top)
        exps.append(own if top > 0 and abs(own - e_z) > threshold else e_z)
    if all(e == e_z for e in exps):
        return None
    sizes = np.diff(problem.offsets)
    return np.repeat(np.array(exps, dtype=int), sizes)


def _objective_exponent(problem: Problem, start: Point) -> int:
    """The power of two nearest to ``f`` at the start, from the terms' values in their own
    units (``f`` itself may underflow or overflow in the model's units)."""
    shifts = problem.fval_exponents
    if not shifts.any():
        return _exponent(start.f)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        parts = problem.model_weights * start.fvals
        if not np.any(parts > 0):  # an exact start: the data's scale instead
            norms = np.array([(term if s is None else s.term).data_norm if term.is_data_term
                              else 0.0 for term, s in zip(problem.terms, problem.scales)])
            parts = problem.model_weights * norms**2
    if not np.all(np.isfinite(parts)):
        return 0
    mantissa, exponent = np.frexp(parts)
    exponent = exponent + shifts
    alive = mantissa > 0
    if not alive.any():
        return 0
    top = int(exponent[alive].max())
    total = float(np.sum(np.ldexp(mantissa[alive], exponent[alive] - top)))
    return int(round(math.log2(total))) + top


def _exponent(x: float) -> int:
    """``e`` with ``2**e`` nearest to ``x`` in ratio (0 for 0, inf or NaN)."""
    if not (np.isfinite(x) and x > 0):
        return 0
    return int(round(math.log2(x)))


class ScaledProblem:
    """A :class:`~sdf.problem.Problem` seen in units where the start is of order one.

    ``z = 2**e_z * u`` and ``f(z) = 2**e_f * f_u(u)``: ``2**e_z`` is the power of two
    nearest to the largest entry of the start ``z0``, ``2**e_f`` the one nearest to
    ``f(z0)``, unless given (a resumed run keeps the units of the first run). Powers of two
    make the change of units exact, so a run in scaled units takes the same steps as one in
    the model's units, while norms and inner products formed by the solvers stay far from
    overflow and underflow. Anything not redefined here is the underlying problem's.

    Parameters
    ----------
    problem : Problem
        The compiled model.
    z0 : ndarray of shape (n,), optional
        Start in the model's units (default ``problem.z0``).
    exponents : tuple of int, optional
        ``(e_z, e_f)`` to use instead of measuring them at the start.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> from sdf.problem import Problem
    >>> a = sdf.Variable(np.full((3, 1), 1e40), name="a")
    >>> raw = Problem.from_model(sdf.Model(m=sdf.CPD(np.ones((3, 2)), [a, np.ones((2, 1))])))
    >>> p = ScaledProblem(raw)
    >>> bool(0.5 < np.abs(p.z0).max() <= 2), bool(0.5 < p.point(p.z0).f <= 2)
    (True, True)
    """

    def __init__(self, problem: Problem, z0: np.ndarray | None = None,
                 exponents: tuple[int, int] | None = None) -> None:
        self.raw = problem
        self._data_norms: list[float] | None = None
        self._at_zero: float | None = None  # the objective at z = 0, once evaluated
        z0 = np.array(problem.z0 if z0 is None else z0, dtype=float)
        problem.choose_scales(z0)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            start = problem.point(z0.copy())
        if exponents is None:
            exponents = (_exponent(float(np.max(np.abs(z0), initial=0.0))),
                         _objective_exponent(problem, start))
        self.exponents = (int(exponents[0]), int(exponents[1]))
        e_z, e_f = self.exponents
        # f is computed in units of phi by the problem itself (its weights carry 1/phi),
        # so that no term's contribution underflows or overflows on the way.
        problem.set_units(e_f)
        start.f = float(problem.weights @ start.fvals)
        self.sigma = math.ldexp(1.0, e_z)
        self._grad_scale = self.sigma                       # d f_u / d u = sigma * g
        #: Per entry of z, its unit's exponent where a variable's scale is far (beyond
        #: 2**±SCALE_THRESHOLD) from the common one, e.g. a Tucker core carrying tiny data's scale
        #: beside orthonormal factors; None when one unit serves all.
        self.units = variable_units(problem, z0, e_z)
        #: Per variable, the exponent of its unit (the preconditioner is built in them).
        self.var_units = ([e_z] * len(problem.variables) if self.units is None else
                          [int(self.units[o]) for o in problem.offsets[:-1]])
        self.z0 = np.ldexp(z0, -e_z if self.units is None else -self.units)
        self._start: ScaledPoint | None = ScaledPoint(self, self.z0.copy(), start)
        self.singular_products = 0

    # The compiled problem's layout, seen through the scaling.
    @property
    def n(self) -> int:
        """Number of unknowns."""
        return self.raw.n

    @property
    def names(self) -> list[str]:
        return self.raw.names

    @property
    def variables(self) -> list[Variable]:
        return self.raw.variables

    @property
    def offsets(self) -> np.ndarray:
        return self.raw.offsets

    @property
    def terms(self) -> list[Term]:
        return self.raw.terms

    @property
    def term_names(self) -> list[str]:
        return self.raw.term_names

    @property
    def weights(self) -> np.ndarray:
        return self.raw.weights

    def data_norms(self) -> list[float]:
        """Per term, the norm of its data in the units its ``fvals`` are in (NaN for
        terms without data); computed once."""
        if self._data_norms is None:
            self._data_norms = [(term if scale is None else scale.term).data_norm
                                for term, scale in zip(self.terms, self.raw.scales)]
        return self._data_norms

    def rounding_floor(self) -> float:
        """Decreases of ``f`` (scaled units) below this are rounding noise: ``f`` is formed
        from the data's norms, so it carries their rounding error."""
        scale = sum(w * norm**2 for w, norm, term in zip(self.weights, self.data_norms(),
                                                         self.terms)
                    if term.is_data_term and np.isfinite(norm))
        return 16.0 * float(np.finfo(float).eps) * scale

    def zero_model_objective(self) -> float:
        """The objective of the zero model, ``sum_t w_t ||data_t||^2 / 2`` (scaled units),
        when every term is a data term with the Gaussian loss; otherwise (regularizers,
        other losses) the objective at ``z = 0``, evaluated once (data held in chunks: one
        more pass over them); inf when neither is finite and positive. Either way an
        objective the model reaches, so the optimum's is at most this."""
        total = 0.0
        for w, norm, term in zip(self.weights, self.data_norms(), self.terms):
            if (not term.is_data_term or getattr(term, "null_fval", None) is not None
                    or not np.isfinite(norm)):
                return self._objective_at_zero()
            total += 0.5 * w * norm**2
        return total if total > 0 else math.inf

    def _objective_at_zero(self) -> float:
        """The objective at ``z = 0`` (inf where it is not finite and positive, or a
        transform refuses zero)."""
        if self._at_zero is None:
            with np.errstate(over="ignore", under="ignore", invalid="ignore",
                             divide="ignore"):
                try:
                    f = float(self.raw.point(np.zeros(self.raw.n)).f)
                except (ArithmeticError, ValueError, np.linalg.LinAlgError, SdfError):
                    f = math.inf
            self._at_zero = f if 0.0 < f < math.inf else math.inf
        return self._at_zero

    def tolerance_reference(self, f0: float) -> float:
        """The objective the solvers' tolerances are relative to: the start's ``f0``, or
        the zero model's (:meth:`zero_model_objective`) where the start is worse, but
        never below ``2**-100 f0`` (objectives and gradients divided by it stay in range).

        Relative to a start far off the data's scale, the first steps' decreases make
        every later one look negligible (a tensor train of data at 1e-8 from unit cores
        stopped at relative error 49, "converged"; with L2 regularizers on its factors, a
        CPD stopped at relative error 10 to 24).
        """
        return max(min(f0, self.zero_model_objective()), math.ldexp(f0, -100))

    def to_raw(self, u: np.ndarray) -> np.ndarray:
        """``z = sigma * u`` (exact)."""
        return np.ldexp(u, self.exponents[0] if self.units is None else self.units)

    def to_units(self, z: np.ndarray) -> np.ndarray:
        """``u = z / sigma`` (exact)."""
        return np.ldexp(z, -self.exponents[0] if self.units is None else -self.units)

    def point(self, u: np.ndarray) -> ScaledPoint:
        """Evaluate at ``u`` (scaled units); the start is evaluated only once."""
        start = self._start
        if start is not None:
            self._start = None
            if np.array_equal(u, start.z):
                start.z = u
                return start
        # A trial point far out may overflow; the solvers reject non-finite values.
        with np.errstate(over="ignore", invalid="ignore"):
            return ScaledPoint(self, u, self.raw.point(self.to_raw(u)))


class ScaledPoint:
    """A :class:`~sdf.problem.Point` in the units of a :class:`ScaledProblem`.

    ``f`` (computed in the problem's units) and the Gauss-Newton pieces are scaled;
    ``fvals`` (per-term residual norms, in their terms' units) and ``raw`` (the point of
    the compiled problem) are not.
    """

    def __init__(self, problem: ScaledProblem, u: np.ndarray, raw: Point) -> None:
        self.problem = problem
        self.z = u
        self.raw = raw
        self.fvals = raw.fvals
        self.f = raw.f
        self._gradient: np.ndarray | None = None

    def gradient(self) -> np.ndarray:
        if self._gradient is None:
            units = self.problem.units
            g = self.raw.gradient()
            self._gradient = (g * self.problem._grad_scale if units is None
                              else np.ldexp(g, units))
        return self._gradient

    def gn_product(self, v: np.ndarray) -> np.ndarray:
        problem = self.problem
        sigma = problem.sigma
        if problem.units is None and 0.0 < sigma < math.inf:
            # Products with the power of two sigma are exact, as ldexp (fewer calls).
            Hv = self.raw.gn_product(v * sigma)
            Hv *= sigma
        else:
            Hv = self.raw.gn_product(problem.to_raw(v))
            Hv = Hv * sigma if problem.units is None else np.ldexp(Hv, problem.units)
        curvature = float(v @ Hv)
        if not (curvature > 1e-300) and np.any(v):
            # The Gramian is singular (or worse) along v: CG breaks down there.
            self.problem.singular_products += 1
        return Hv

    def preconditioner(self) -> Callable[[np.ndarray], np.ndarray]:
        # Built in the variables' units, so no block leaves the float range on the way.
        return self.raw.preconditioner(self.problem.var_units)


@dataclass
class RunContext:
    """What a fit asks of a run besides the solver's options.

    Attributes
    ----------
    model : ModelLike
        The model being fitted (attached to the Result).
    method : str
        The solver's registered name, written into results and checkpoints.
    max_time : float
        Wall-clock budget in seconds.
    display : int
        Print an iteration table row every ``display`` iterations (0: silent).
    callback : callable or None
        The user's callback.
    checkpoint : str or os.PathLike or None
        Checkpoint file, written every ``checkpoint_every`` iterations.
    checkpoint_every : int
        Iterations between checkpoints.
    resume : Result or None
        The saved run this one continues: its history is extended and its iteration
        numbers go on.
    radius_is_damping : bool
        True for Levenberg-Marquardt runs (the "radius" reported is a damping).
    """

    model: ModelLike
    method: str = "nls"
    max_time: float = math.inf
    display: int = 0
    callback: Callable[[IterationInfo], Any] | None = None
    checkpoint: str | os.PathLike[str] | None = None
    checkpoint_every: int = 10
    resume: Result | None = None
    radius_is_damping: bool = False


class Run:
    """One solver run: records iterations, calls callbacks, keeps the best finite iterate.

    Iteration numbers, objective values, steps and radii are recorded in the model's own
    units; a resumed run (``RunSetup.resume``) continues the saved history and numbering.
    """

    def __init__(self, problem: ScaledProblem, context: RunContext) -> None:
        setup = context
        self.setup = setup
        self.problem = problem
        self.max_time = setup.max_time
        self.callbacks: list[Callable[[IterationInfo], Any]] = []
        if setup.display:
            self.callbacks.append(table_printer(int(setup.display)))
        if setup.callback is not None:
            self.callbacks.append(setup.callback)
        prior = setup.resume
        self.history = _copy_history(prior.history) if prior is not None else History()
        self.offset = prior.iterations if prior is not None else 0
        self.time_offset = self.history.time[-1] if self.history.time else 0.0
        self.state: dict[str, float] = dict(prior.state) if prior is not None else {}
        self.start = time.perf_counter()
        self.best: ScaledPoint | None = None
        self.iterations = self.offset
        self.local_iterations = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def relerr(self, fvals: np.ndarray) -> dict[str, float]:
        """Per data term, ``||r_t|| / ||data_t||`` from ``fvals`` (``||r_t||^2 / 2`` in the
        term's units); for a non-Gaussian loss ``sqrt(D_t / D_null)``, its deviance over
        the deviance of the loss's reference constant model (see :mod:`sdf.losses`)."""
        out = {}
        with np.errstate(over="ignore", invalid="ignore"):
            for name, term, fval, norm in zip(self.problem.term_names, self.problem.terms,
                                              fvals, self.problem.data_norms()):
                null = getattr(term, "null_fval", None)
                if null is not None:
                    out[name] = float(np.sqrt(fval / null)) if null > 0 else float(
                        np.sqrt(2.0 * fval))
                elif term.is_data_term:
                    err = np.sqrt(2.0 * fval)
                    out[name] = float(err / norm) if norm > 0 else float(err)
        return out

    def resume_state(self) -> dict[str, float]:
        """Solver state saved with the run this one resumes (empty for a fresh run).

        Keys: ``"f0"`` (first objective, model units), ``"radius"`` (trust radius or LM
        damping, solver units), ``"exponent_z"``, ``"exponent_f"`` (the units).
        """
        return dict(self.setup.resume.state) if self.setup.resume is not None else {}

    def resumed(self, f0: float) -> tuple[float, float]:
        """``(f0, radius)`` in solver units to start from: the saved run's for a resumed
        run with the same units (exact continuation), else ``(f0, nan)``."""
        state = self.resume_state()
        exponents = self.problem.exponents
        if "f0" not in state or (state.get("exponent_z"), state.get("exponent_f")) != exponents:
            return f0, math.nan
        saved = float(np.ldexp(state["f0"], -exponents[1]))
        if not (0 < saved < math.inf):
            return f0, math.nan
        return saved, float(state.get("radius", math.nan))

    def record(self, point: ScaledPoint, iteration: int, relchange: float, step: float,
               radius: float, cg_iterations: int, notify: bool = True) -> bool:
        """Record an accepted iterate; True when a callback asks to stop.

        ``iteration`` counts from 0 in this run; a resumed run's iteration 0 is the saved
        last iterate, passed to the callbacks but not recorded twice. ``notify=False``
        records without calling the callbacks (the start of an interrupted run). A
        callback's answer must be None or a truth value (a ModelError otherwise).
        """
        self.local_iterations = iteration
        self.iterations = self.offset + iteration
        if self.best is None or point.f <= self.best.f:
            self.best = point
        raw = point.raw
        sigma = self.problem.sigma
        e_z, e_f = self.problem.exponents
        exponents = self.problem.raw.fval_exponents
        # In the model's units, objective and damping may leave the float range for data
        # near its ends (they are then reported as 0 or inf; the errors never are).
        shown = (_ldexp(radius, e_f - 2 * e_z) if self.setup.radius_is_damping
                 else radius * sigma)
        objective = _ldexp(raw.f, e_f)
        if exponents.any():
            with np.errstate(over="ignore", under="ignore"):
                fvals = np.ldexp(raw.fvals, exponents)
        else:
            fvals = raw.fvals.copy()
        info = IterationInfo(iteration=self.iterations, objective=objective,
                             relchange=relchange, step=step * sigma, radius=shown,
                             cg_iterations=cg_iterations,
                             time=self.time_offset + self.elapsed(),
                             fvals=fvals, z=raw.z)
        if iteration == 0 and not self.state:
            self.state["f0"] = float(objective)
        self.state["exponent_z"], self.state["exponent_f"] = self.problem.exponents
        self.state["radius"] = float(radius)
        if not (iteration == 0 and self.offset):
            self.history.record(info, self.relerr(raw.fvals))
        every = self.setup.checkpoint_every
        if self.setup.checkpoint is not None and iteration > 0 and self.iterations % every == 0:
            self.save_checkpoint(point)  # before the callbacks, which may raise
        stop = False
        for cb in self.callbacks if notify else []:
            stop = _wants_stop(cb(info), cb) or stop
        return stop

    def save_checkpoint(self, point: ScaledPoint) -> None:
        """Write the run so far (at ``point``) to the checkpoint file."""
        assert self.setup.checkpoint is not None
        self.result(self.assemble(point), StopReason.CHECKPOINT).save(self.setup.checkpoint)

    def out_of_time(self) -> bool:
        return self.elapsed() >= self.max_time

    def assemble(self, point: ScaledPoint) -> Assembly:
        """The run's outcome at ``point`` in the model's units: variables, objective and
        per-term errors, recomputed without cancellation where the terms can."""
        raw = point.raw
        problem = self.problem.raw
        variables = {name: np.array(arr, copy=True)
                     for name, arr in zip(problem.names, problem.unpack(raw.z))}
        fvals = np.array(raw.fvals, dtype=float)
        if np.all(np.isfinite(fvals)):
            fvals = np.array([
                (term if scale is None else scale).exact_fval(
                    [raw.value(e) for e in term.inputs], fv)
                for term, scale, fv in zip(problem.terms, problem.scales, fvals)])
        shifts = problem.fval_exponents // 2
        with np.errstate(over="ignore", under="ignore"):
            abserr = {n: float(np.ldexp(np.sqrt(2.0 * fv), k))
                      for n, fv, k in zip(problem.term_names, fvals, shifts)}
            finite = bool(np.all(np.isfinite(fvals)))
            f = float(problem.weights @ fvals) if finite else float(raw.f)
            objective = float(np.ldexp(f, problem.f_exponent))
        values = {id(e): raw.value(e) for term in problem.terms for e in term.inputs}
        return Assembly(variables, objective, abserr, self.relerr(fvals), values)

    def result(self, assembly: Assembly, stop: StopReason,
               warnings: list[str] | None = None) -> Result:
        """The :class:`sdf.Result` of the run, complete."""
        return Result(
            model=self.setup.model, variables=assembly.variables,
            objective=assembly.objective, abserr=assembly.abserr, relerr=assembly.relerr,
            history=self.history, iterations=int(self.iterations), stop=stop,
            method=self.setup.method, warnings=list(warnings or []), state=dict(self.state))


def _wants_stop(answer: Any, callback: Callable[..., Any]) -> bool:
    """A callback's answer as "stop?": None or a truth value; anything else is refused."""
    if answer is None or isinstance(answer, (bool, np.bool_, int, float, np.integer,
                                             np.floating)):
        return bool(answer)
    name = getattr(callback, "__name__", type(callback).__name__)
    shape = getattr(answer, "shape", None)
    got = f"of shape {shape}" if shape is not None else f"{answer!r:.40}"
    raise ModelError(
        f"fit: callback {name!r} returned {type(answer).__name__} {got}; a callback returns "
        "True to stop the run, False or None to go on")


@dataclass
class Assembly:
    """A run's outcome at one point, in the model's units (see :meth:`Run.assemble`).

    ``values`` holds the value of every term input by ``id`` of its expression.
    """

    variables: dict[str, np.ndarray]
    objective: float
    abserr: dict[str, float]
    relerr: dict[str, float]
    values: dict[int, np.ndarray]


def _copy_history(h: History) -> History:
    return History(objective=list(h.objective), relchange=list(h.relchange),
                   step=list(h.step), radius=list(h.radius),
                   cg_iterations=list(h.cg_iterations), time=list(h.time),
                   relerr={k: list(v) for k, v in h.relerr.items()})
