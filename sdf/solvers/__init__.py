"""Solvers and their registry: Gauss-Newton with trust region (``nls``) and L-BFGS
(``minf``) are registered here; :func:`register_solver` adds more.

Every method name taken by ``Model.fit``, the drivers of :mod:`sdf.models` and the
compression tools is looked up in the registry, so a registered solver is usable
everywhere at once.
"""

from sdf.result import StopReason
from sdf.solvers._registry import (MethodName, SolverEntry, check_display, get_solver,
                                   make_options, register_solver, solver_names,
                                   unregister_solver)
from sdf.solvers._run import Assembly, Run, RunContext, ScaledPoint, ScaledProblem
from sdf.solvers.minf import minf
from sdf.solvers.nls import nls, pcg
from sdf.solvers.options import MinfOptions, NLSOptions, SolverOptions

__all__ = [
    "Assembly",
    "MethodName",
    "MinfOptions",
    "NLSOptions",
    "Run",
    "RunContext",
    "ScaledPoint",
    "ScaledProblem",
    "SolverEntry",
    "SolverOptions",
    "StopReason",
    "check_display",
    "get_solver",
    "make_options",
    "minf",
    "nls",
    "pcg",
    "register_solver",
    "solver_names",
    "unregister_solver",
]

register_solver("nls", nls, NLSOptions,
                description="Gauss-Newton, dogleg trust region or Levenberg-Marquardt, "
                            "inner preconditioned CG on structured Gramians")
register_solver("minf", minf, MinfOptions,
                description="L-BFGS-B (quasi-Newton with optional bounds)")
