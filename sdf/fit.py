"""The fit pipeline: compile -> scale -> solve -> assemble -> diagnose.

:meth:`sdf.Model.fit` delegates here. The model is compiled into a
:class:`~sdf.problem.Problem` (its unknowns packed into one vector), seen in units where
the start is of order one (:class:`~sdf.solvers.ScaledProblem`), solved by the registered
solver of the method asked for, assembled into errors in the model's units, checked for
what is suspicious (degenerate components, data fitted worse than by zero, singular
Gramians...), and returned as one complete :class:`sdf.Result`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from sdf import io
from sdf._incomplete import incomplete_findings
from sdf._warn import warn_user
from sdf.errors import ModelError, OptionError, SdfWarning
from sdf.problem import ModelLike, Problem
from sdf.result import (STILL_DECREASING, History, IterationInfo, Result, StopReason,
                        attach_model, load_result)
from sdf.solvers import (Assembly, MethodName, Run, RunContext, ScaledProblem, check_display,
                         get_solver, make_options)
from sdf.expr import Variable
from sdf.terms._base import DataTerm, Findings
from sdf._blas import with_one_blas_pool

__all__ = ["RESCALE_RATIO", "STILL_DECREASING_FACTOR", "check_memory", "diagnose",
           "fit_model", "rescaled_start"]

#: A start whose model norm differs from its data's norm by more than this factor (either
#: way) is rescaled before the run: Gauss-Newton's trust region would need many
#: iterations only to grow or shrink the model to the data's scale.
RESCALE_RATIO = 1e3

#: A run stopped by its iteration or time budget counts as still decreasing when its last
#: relative change of the objective, ``(f_{k-1} - f_k) / f_0``, exceeds this many times
#: its ``tol_fun``.
STILL_DECREASING_FACTOR = 10.0

#: Model.fit's own parameters, named beside the solver options when an option is unknown.
_FIT_PARAMETERS = ("method", "options", "display", "callback", "resume")


@with_one_blas_pool
def fit_model(model: ModelLike, method: MethodName = "nls", *, options: Any = None,
              display: int = 0, callback: Callable[[IterationInfo], Any] | None = None,
              resume: str | os.PathLike[str] | Result | None = None,
              **option_values: Any) -> Result:
    """Fit ``model`` with the registered solver ``method``; see :meth:`sdf.Model.fit`.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 1)), name="a")
    >>> model = sdf.Model(m=sdf.CPD(np.outer([1.0, 2, 3], [1.0, 1]), [a, np.ones((2, 1))]))
    >>> fit_model(model, "minf").stop.converged
    True
    """
    entry = get_solver(method)
    opts = make_options(method, options, "Model.fit", _FIT_PARAMETERS, **option_values)
    model.check()
    if callback is not None and not callable(callback):
        raise ModelError(f"fit: callback must be callable, got {type(callback).__name__}")
    display = check_display(display, "Model.fit")
    if opts.checkpoint is not None:
        try:
            io.check_writable(opts.checkpoint, f"{type(opts).__name__}.checkpoint")
        except OSError as exc:
            raise OptionError(str(exc)) from None
    prior = _resume_from(model, resume) if resume is not None else None
    check_memory(model, gauss_newton=method == "nls")

    problem = Problem.from_model(model)                                   # compile
    exponents = None                                                      # scale
    z0 = problem.z0
    if prior is not None:
        z0 = problem.pack([prior.variables[n] for n in model.variable_names])
        if prior.method == method and "exponent_z" in prior.state:
            exponents = _saved_exponents(prior.state)
    try:
        if prior is None:
            z0 = rescaled_start(problem)
        scaled = _scaled(problem, z0, exponents)
        interrupted = False
    except KeyboardInterrupt:  # during the first evaluation: the start is the result
        scaled = _scaled(problem, z0, exponents)
        interrupted = True
    run = Run(scaled, RunContext(
        model=model, method=method, max_time=opts.max_time, display=int(display),
        callback=callback, checkpoint=opts.checkpoint, checkpoint_every=opts.checkpoint_every,
        resume=prior, radius_is_damping=opts.radius_is_damping))
    remaining = opts.max_iter - (prior.iterations if prior is not None else 0)
    try:                                                                  # solve
        if interrupted:
            point, stop = scaled.point(scaled.z0.copy()), StopReason.INTERRUPTED
            run.record(point, 0, np.nan, np.nan, np.nan, 0, notify=False)
        elif remaining >= 1:
            budget = (opts if remaining == opts.max_iter
                      else dataclasses.replace(opts, max_iter=remaining))
            point, stop = entry.solve(scaled, budget, run)
        else:  # the saved run used up max_iter already
            point, stop = scaled.point(scaled.z0.copy()), StopReason.MAX_ITER
            run.record(point, 0, np.nan, np.nan, np.nan, 0)
    except KeyboardInterrupt:
        # Before the solver's own handler was reached (e.g. during the first evaluation).
        point = run.best if run.best is not None else scaled.point(scaled.z0.copy())
        stop = StopReason.INTERRUPTED
    assembly = run.assemble(point)                                        # assemble
    stop = _final_stop(stop, assembly, scaled)
    start = dict(zip(model.variable_names, problem.unpack(z0)))
    findings = diagnose(model, assembly, stop, scaled.singular_products, start,  # diagnose
                        run.history, getattr(opts, "tol_fun", None))
    result = run.result(assembly, stop, [message for _, message in findings])
    for category, message in findings:
        warn_user(message, category)
    if opts.checkpoint is not None:
        result.save(opts.checkpoint)
    return result


def _scaled(problem: Problem, z0: np.ndarray | None,
            exponents: tuple[int, int] | None) -> ScaledProblem:
    """The problem in solver units; a ModelError when float64 cannot hold the units."""
    try:
        return ScaledProblem(problem, z0, exponents)
    except OverflowError:
        start = problem.z0 if z0 is None else z0
        biggest = float(np.max(np.abs(start), initial=0.0))
        objective = problem.point(np.array(start, dtype=float)).f
        raise ModelError(
            f"fit: the start's scale (largest initial entry {biggest:.3g}) and the objective "
            f"at the start ({objective:.3g}) are too far apart for float64: rescale the "
            "initial values to the data's scale, or the terms' weights") from None


def _saved_exponents(state: dict[str, float]) -> tuple[int, int]:
    """The units ``(e_z, e_f)`` a resumed run saved, its state checked first (a damaged
    file may hold any number there)."""
    def damaged(key: str, expected: str) -> ModelError:
        return ModelError(f"fit(resume=...): damaged solver state: {key} = "
                          f"{state.get(key)!r} (expected {expected})")

    f0, radius = state.get("f0", 0.0), state.get("radius", math.nan)
    if not (math.isfinite(f0) and f0 >= 0):
        raise damaged("f0", "a finite number >= 0")
    if not (math.isnan(radius) or (math.isfinite(radius) and radius >= 0)):
        raise damaged("radius", "a finite number >= 0, or NaN")
    exponents = []
    for key in ("exponent_z", "exponent_f"):
        value = state.get(key)
        if not (isinstance(value, (int, float)) and math.isfinite(value)
                and float(value).is_integer() and abs(value) <= _MAX_EXPONENT):
            raise damaged(key, f"an integer between -{_MAX_EXPONENT} and {_MAX_EXPONENT}")
        exponents.append(int(value))
    return exponents[0], exponents[1]


#: Units beyond 2**+-1100 cannot be those of any float64 start.
_MAX_EXPONENT = 1100


def check_memory(model: ModelLike, gauss_newton: bool = True,
                 available: int | None = None) -> None:
    """Raise :class:`sdf.ModelError` when a term's solver matrices cannot fit in memory.

    A simple estimate, made before anything is allocated. A data term with ``K`` inputs,
    the widest having ``R`` columns, keeps ``2 K`` matrices of size ``R x R`` to evaluate
    the objective and its gradient (Gramians and their leave-one-out Hadamard products);
    Gauss-Newton adds ``K**2 + K`` more (pairwise products and preconditioner blocks). A
    regularizer on an ``(I, R)`` factor adds a Gauss-Newton block of ``I R**2`` floats.
    Data storage and vectors of the unknowns' size are not counted (the model holds them
    already). ``available`` is the free memory in bytes (default: measured, see
    :func:`_available_memory`; no check when it cannot be measured).

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 20_000)), name="a")
    >>> model = sdf.Model(m=sdf.CPD(np.ones((3, 2)), [a, np.ones((2, 20_000))]))
    >>> check_memory(model, available=10**9)
    Traceback (most recent call last):
    ...
    sdf.errors.ModelError: term 'm': rank 20000 needs about 32 GB for 10 matrices of size 20000 x 20000, ...
    """
    free = available
    for name, term in model.terms.items():
        widths = [e.shape[-1] for e in term.inputs if len(e.shape) >= 2]
        if not widths:
            continue
        K, R = len(term.inputs), max(widths)
        if term.is_data_term:
            floats = (2 * K + (K * K + K if gauss_newton else 0)) * R * R
        else:
            floats = sum(e.shape[0] * e.shape[-1] ** 2 for e in term.inputs
                         if len(e.shape) == 2) if gauss_newton else 0
        if 8 * floats < _ALWAYS_AVAILABLE:
            continue  # no machine is that small: no need to ask the system
        if free is None:
            free = _available_memory()
            if free is None:
                return
        if 8 * floats > free:
            what = (f"{floats // (R * R)} matrices of size {R} x {R}" if term.is_data_term
                    else f"Gauss-Newton blocks of size {R} x {R}")
            hint = ("lower the rank or use method='minf'" if gauss_newton
                    and 16 * K * R * R <= free else "lower the rank")
            raise ModelError(
                f"term {name!r}: rank {R} needs about {8 * floats / 1e9:.3g} GB for "
                f"{what}, more than the {free / 1e9:.3g} GB of memory available; {hint}")


#: Estimates below this many bytes pass without asking the system what is free.
_ALWAYS_AVAILABLE = 64 << 20


def _available_memory() -> int | None:
    """Memory available to a new allocation, in bytes: ``MemAvailable`` of
    ``/proc/meminfo`` where there is one, else free physical pages
    (``os.sysconf``), else None (unknown)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def rescaled_start(problem: Problem) -> np.ndarray:
    """The start ``problem.z0`` with every data term's model brought to its data's scale.

    For a data term whose model norm at the start differs from its data's norm by more
    than :data:`RESCALE_RATIO`, the variables that enter it directly and nowhere else are
    multiplied by a common factor so that the model's norm matches the data's (a
    multilinear model scales by the product of its inputs' factors). Terms without such
    variables, or whose model norm is not available, keep their start (the check after
    the fit then says the start was far from the data).

    Examples
    --------
    >>> import numpy as np, sdf
    >>> from sdf.problem import Problem
    >>> a, b = sdf.Variable(np.ones((3, 1))), sdf.Variable(np.ones((2, 1)))
    >>> problem = Problem.from_model(sdf.Model(m=sdf.CPD(np.full((3, 2), 1e8), [a, b])))
    >>> np.round(rescaled_start(problem), 6).tolist()
    [10000.0, 10000.0, 10000.0, 10000.0, 10000.0]
    """
    z0 = problem.z0.copy()
    uses: dict[int, int] = {}  # variable -> number of term inputs it enters
    for term in problem.terms:
        for e in term.inputs:
            for node in e.walk():
                if isinstance(node, Variable):
                    uses[id(node)] = uses.get(id(node), 0) + 1
    inputs = problem.input_values(z0)
    for term, values in zip(problem.terms, inputs):
        if not term.is_data_term:
            continue
        # In log2 units: the norms of tiny or huge models leave the float range.
        model = term.model_log2_norm(values)
        data = term.data_log2_norm()
        if model is None or not (math.isfinite(model) and math.isfinite(data)):
            continue
        log2_ratio = data - model
        if abs(log2_ratio) <= math.log2(RESCALE_RATIO):
            continue
        own = [k for k, e in enumerate(term.inputs)
               if isinstance(e, Variable) and uses.get(id(e)) == 1]
        shares = _group_shares(term.scale_groups(), own, log2_ratio)
        if shares is None:
            continue
        for k, share in shares.items():
            var = problem.var_index[id(term.inputs[k])]
            sl = slice(problem.offsets[var], problem.offsets[var + 1])
            whole = math.floor(share)
            z0[sl] = np.ldexp(z0[sl] * 2.0 ** (share - whole), whole)
    return z0


def _group_shares(groups: list[list[int]], own: list[int], log2_ratio: float
                  ) -> dict[int, float] | None:
    """Per input position, the log2 of the factor scaling every group's product by
    ``2**log2_ratio`` (shared evenly by the group's own inputs)."""
    out: dict[int, float] = {}
    for group in groups:
        members = [k for k in group if k in own]
        if not members:
            return None
        for k in members:
            out[k] = log2_ratio / len(members)
    return out


def _final_stop(stop: StopReason, assembly: Assembly, problem: ScaledProblem) -> StopReason:
    """The stop reason, corrected where the solver could not tell.

    * A failed step after a singular Gramian product is a CG breakdown.
    * Non-finite variables are never reported as a success.
    """
    if stop is StopReason.STEP_FAILED and problem.singular_products:
        stop = StopReason.CG_BREAKDOWN
    finite = all(np.all(np.isfinite(v)) for v in assembly.variables.values())
    if not finite and stop not in (StopReason.NONFINITE, StopReason.STEP_FAILED,
                                   StopReason.CG_BREAKDOWN, StopReason.STATIONARY):
        stop = StopReason.NONFINITE
    return stop


def diagnose(model: ModelLike, assembly: Assembly, stop: StopReason,
             singular_products: int = 0,
             start: dict[str, np.ndarray] | None = None,
             history: History | None = None, tol_fun: float | None = None) -> Findings:
    """Checks of a fitted model: ``(warning class, message)`` for every finding.

    Looks for all-zero data, data terms fitted worse than by the zero model (for a
    non-Gaussian loss: with a deviance above the constant model's), what each
    term finds suspicious in its own values (:meth:`sdf.Term.check_result`: degenerate or
    vanished CPD components, a start far from the data's scale...), and, when the run
    ended in a CG breakdown, how often the Gauss-Newton Gramian was found singular along a
    search direction. ``start`` holds the variables the run started from (default: the
    model's initial values). On incomplete data it also reports a fit far above what an
    imputed MLSVD reaches and factors blown up where no data constrain them (see
    :mod:`sdf._incomplete`).

    A run stopped by ``MAX_ITER`` or ``MAX_TIME`` whose last relative change of the
    objective in ``history`` exceeds :data:`STILL_DECREASING_FACTOR` (10) times
    ``tol_fun`` was still decreasing: the finding names that change and the data term
    whose relative error changed most in the last iteration, and
    :attr:`sdf.Result.converged` is then False.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 1)), name="a")
    >>> import warnings
    >>> with warnings.catch_warnings(record=True):
    ...     res = sdf.Model(m=sdf.CPD(np.zeros((3, 2)), [a, np.ones((2, 1))])).fit()
    >>> [w.split(";")[0] for w in res.warnings]
    ["term 'm': the data are all zero"]
    """
    found: Findings = []
    for name, term in model.terms.items():
        relerr = assembly.relerr.get(name, 0.0)
        if term.is_data_term:
            norm = term.data_norm
            if norm == 0:
                found.append((SdfWarning, f"term {name!r}: the data are all zero; its "
                              "relative error is reported as the absolute error ||model||"))
            elif relerr > 1.0 and getattr(term, "null_fval", None) is not None:
                found.append((SdfWarning,
                              f"term {name!r}: deviance {relerr ** 2:.3g} times that of the "
                              f"constant model ({getattr(term, 'loss').name} loss): the "
                              "model explains "
                              "the data worse than their mean; the start may be far off, "
                              "or the run too short"))
            elif relerr > 1.0:
                found.append((SdfWarning,
                              f"term {name!r}: relative error {relerr:.3g} > 1, worse than "
                              "the zero model: the start may be badly scaled for the data, "
                              "or the run too short"))
        values = [assembly.values[id(e)] for e in term.inputs]
        # The start's values matter only to explain a poor fit; evaluated then only.
        begin = [model.evaluate(e, start) for e in term.inputs] if relerr > 0.5 else values
        found += term.check_result(name, values, begin, relerr)
        if isinstance(term, DataTerm):
            found += incomplete_findings(name, term, values, relerr)
    if history is not None and tol_fun is not None:
        found += _still_decreasing(stop, history, tol_fun, dict(model.terms))
    if singular_products and stop is StopReason.CG_BREAKDOWN:
        found.append((SdfWarning,
                      f"the Gauss-Newton Gramian was singular along {singular_products} "
                      "search direction(s): rank-deficient or collinear factors, or a "
                      "transform whose derivative vanishes"))
    return found


def _still_decreasing(stop: StopReason, history: History, tol_fun: float,
                      model_terms: dict[str, Any] | None = None) -> Findings:
    """The finding of a budget stop while the objective was still decreasing, if any
    (``model_terms`` by name say which errors are deviance-based)."""
    model_terms = model_terms or {}
    if stop not in (StopReason.MAX_ITER, StopReason.MAX_TIME) or len(history.relchange) < 2:
        return []
    last = float(history.relchange[-1])
    if not last > STILL_DECREASING_FACTOR * tol_fun:  # NaN (no step recorded) included
        return []
    changes = {name: (errs[-2] - errs[-1]) / errs[-2] for name, errs in history.relerr.items()
               if len(errs) >= 2 and errs[-2] > 0}
    where = ""
    if changes:
        term = max(changes, key=lambda name: changes[name])
        what = ("relative error" if getattr(model_terms.get(term), "null_fval", None) is None
                else "sqrt(deviance / constant model's)")
        where = f"term {term!r} ({what} {history.relerr[term][-1]:.4g}, " \
                f"last relative change {changes[term]:.2e}): "
    budget = "max_iter" if stop is StopReason.MAX_ITER else "max_time"
    return [(SdfWarning,
             f"{where}{STILL_DECREASING} at {budget}: last relative change of the objective "
             f"{last:.2e} > {STILL_DECREASING_FACTOR:g} x tol_fun ({tol_fun:.0e}); raise "
             f"{budget} or resume the fit (model.fit(resume=result))")]


def _resume_from(model: ModelLike, resume: Any) -> Result:
    """The saved result ``resume`` (a path or a Result), checked against ``model``."""
    if isinstance(resume, (str, os.PathLike)):
        return load_result(resume, model=model)
    if not isinstance(resume, Result):
        raise ModelError(
            f"fit: resume must be a checkpoint path or an sdf.Result, got {type(resume).__name__}")
    copy = Result(**{**resume.__dict__, "_values": {}})
    attach_model(copy, model, where="fit(resume=...)")
    bad = [n for n in model.variable_names if not np.all(np.isfinite(copy.variables[n]))]
    if bad:
        raise ModelError(f"fit(resume=...): variable {bad[0]!r} has non-finite values")
    return copy
