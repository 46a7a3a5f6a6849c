"""The solver registry: one place mapping a method name to its solver and options class.

A solver is a function ``solve(problem, options, run) -> (point, stop)``: it minimises
``problem`` (a :class:`~sdf.solvers._run.ScaledProblem`) from ``problem.z0``, records its
accepted iterates with ``run.record`` (which calls callbacks, keeps the best iterate and
writes checkpoints) and returns its final point and a :class:`sdf.StopReason`. Its
options class extends :class:`~sdf.solvers.options.SolverOptions`. Registering both under
a name makes the method usable by ``Model.fit``, every driver and the compression tools.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from sdf._keywords import unknown_keywords
from sdf.errors import OptionError
from sdf.solvers.options import SolverOptions

__all__ = ["MethodName", "Solver", "SolverEntry", "check_display", "get_solver", "make_options",
           "register_solver", "solver_names", "unregister_solver"]

#: Name of a registered solver (``"nls"``, ``"minf"``, or one added by register_solver).
MethodName: TypeAlias = str
#: ``solve(problem, options, run) -> (point, stop reason)``.
Solver: TypeAlias = Callable[[Any, Any, Any], tuple[Any, Any]]


@dataclass(frozen=True)
class SolverEntry:
    """A registered solver: its function, options class and a one-line description."""

    name: str
    solve: Solver
    options_class: type[SolverOptions]
    description: str = ""


_SOLVERS: dict[str, SolverEntry] = {}


def register_solver(name: str, solve: Solver, options_class: type[SolverOptions], *,
                    description: str = "") -> SolverEntry:
    """Make ``solve`` available as ``method=name`` everywhere a method is taken.

    Parameters
    ----------
    name : str
        The method's name; registering a taken name replaces that solver.
    solve : callable
        ``solve(problem, options, run) -> (point, stop)``; see the module docstring.
    options_class : type
        A frozen dataclass extending :class:`~sdf.solvers.options.SolverOptions`.
    description : str, optional
        One line for listings.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> from sdf.solvers import SolverOptions, StopReason, register_solver, unregister_solver
    >>> def stay(problem, options, run):  # a solver that keeps the start
    ...     point = problem.point(problem.z0.copy())
    ...     run.record(point, 0, np.nan, np.nan, np.nan, 0)
    ...     return point, StopReason.MAX_ITER
    >>> _ = register_solver("stay", stay, SolverOptions)
    >>> a = sdf.Variable(np.ones((2, 1)), name="a")
    >>> sdf.Model(m=sdf.CPD(np.ones((2, 2)), [a, np.ones((2, 1))])).fit(method="stay").method
    'stay'
    >>> unregister_solver("stay")
    """
    if not isinstance(name, str) or not name:
        raise OptionError(f"register_solver: name must be a non-empty string, got {name!r}")
    if not callable(solve):
        raise OptionError(f"register_solver({name!r}): solve must be callable")
    if not (isinstance(options_class, type) and issubclass(options_class, SolverOptions)
            and dataclasses.is_dataclass(options_class)):
        raise OptionError(f"register_solver({name!r}): options_class must be a dataclass "
                          f"extending SolverOptions, got {options_class!r}")
    entry = SolverEntry(name, solve, options_class, description)
    _SOLVERS[name] = entry
    return entry


def unregister_solver(name: str) -> None:
    """Remove a registered solver (no error if there is none of that name)."""
    _SOLVERS.pop(name, None)


def solver_names() -> list[str]:
    """The registered method names, sorted."""
    return sorted(_SOLVERS)


def get_solver(method: MethodName, where: str = "fit") -> SolverEntry:
    """The registered solver ``method``; an :class:`~sdf.errors.OptionError` naming
    ``where`` and the known methods otherwise."""
    if not isinstance(method, str) or method not in _SOLVERS:
        raise OptionError(f"{where}: method must be one of {solver_names()}, got {method!r}")
    return _SOLVERS[method]


def make_options(method: MethodName, options: Any = None, where: str = "fit",
                 parameters: Sequence[str] = (), **kwargs: Any) -> SolverOptions:
    """The options of ``method`` from an options object and/or keyword overrides.

    An unknown keyword raises :class:`~sdf.errors.OptionError` naming ``where`` (the
    function the user called), the closest known name and the names known: the
    function's own ``parameters`` and the fields of the method's options.

    Examples
    --------
    >>> make_options("nls", max_iter=5).max_iter
    5
    """
    cls = get_solver(method, where).options_class
    if options is not None and not isinstance(options, cls):
        raise OptionError(
            f"{where}: options for method={method!r} must be {cls.__name__}, "
            f"got {type(options).__name__}"
        )
    base = options if options is not None else cls()
    if not kwargs:
        return base  # frozen: shared as it is, not copied (and validated) again
    known = sorted(f.name for f in dataclasses.fields(cls))
    unknown = set(kwargs) - set(known)
    if unknown:
        groups = {f"{where}'s parameters": list(parameters),
                  f"options of method={method!r}": known}
        raise OptionError(unknown_keywords(where, unknown, groups))
    return dataclasses.replace(base, **kwargs)


def check_display(display: object, where: str = "fit") -> int:
    """``display`` as an int >= 0, or :class:`~sdf.errors.OptionError` naming ``where``.

    Examples
    --------
    >>> check_display(10)
    10
    """
    if isinstance(display, bool) or not isinstance(display, (int, np.integer)) or display < 0:
        raise OptionError(
            f"{where}: display must be an integer >= 0 (0: silent; k: print a row of the "
            f"iteration table every k iterations), got {display!r}")
    return int(display)
