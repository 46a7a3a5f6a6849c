"""Bounds on the unknowns: ``lower <= z <= upper`` entrywise, given per variable.

A bound is a number (every entry of every variable), or a dict ``{variable name: bound}``
whose values are numbers or arrays broadcasting to the variable's shape; ``None`` (or a
missing name) means no bound. :func:`make_box` turns the ``lower``/``upper`` options of a
solver into a :class:`Box` in the solver's units, checked against the problem.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdf.errors import OptionError

__all__ = ["Box", "check_bound", "make_box"]


def check_bound(cls: str, field: str, bound: Any) -> None:
    """Refuse a ``lower``/``upper`` option that is neither None, a number, nor a dict."""
    if bound is None or isinstance(bound, dict):
        return
    if isinstance(bound, (int, float, np.integer, np.floating)) and not isinstance(
            bound, (bool, np.bool_)):
        if np.isnan(bound):
            raise OptionError(f"{cls}.{field} is NaN (use None for no bound)")
        return
    raise OptionError(
        f"{cls}.{field} must be None, a number or a dict {{variable name: number or array}}, "
        f"got {type(bound).__name__}")


class Box:
    """The box ``lo <= z <= hi`` (``-inf``/``inf`` where unbounded), in solver units.

    Parameters
    ----------
    lo, hi : ndarray of shape (n,)
        Lower and upper bounds of every unknown.

    Examples
    --------
    >>> import numpy as np
    >>> box = Box(np.zeros(3), np.full(3, np.inf))
    >>> box.project(np.array([-1.0, 0.5, 2.0])).tolist()
    [0.0, 0.5, 2.0]
    >>> box.projected_gradient(np.array([0.0, 0.5, 2.0]), np.array([1.0, 1.0, -1.0])).tolist()
    [0.0, 0.5, -1.0]
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self.lo = lo
        self.hi = hi

    def project(self, z: np.ndarray) -> np.ndarray:
        """The nearest point of the box."""
        return np.minimum(np.maximum(z, self.lo), self.hi)

    def projected_gradient(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        """``z - P(z - g)``: zero exactly at a KKT point of the bounded problem."""
        return z - self.project(z - g)

    def active(self, z: np.ndarray, g: np.ndarray, margin: float) -> np.ndarray:
        """Entries held at a bound: within ``margin`` of it with the gradient pushing out
        (Bertsekas' epsilon-active set, so that the solver does not zig-zag on and off a
        bound it is about to reach)."""
        at_lo = (z <= self.lo + margin) & (g > 0)
        at_hi = (z >= self.hi - margin) & (g < 0)
        return at_lo | at_hi


def make_box(problem: Any, lower: Any, upper: Any, where: str) -> Box | None:
    """The box of the options ``lower``/``upper`` for ``problem`` (a
    :class:`~sdf.solvers.ScaledProblem`), in its units; None when nothing is bounded.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> from sdf.problem import Problem
    >>> from sdf.solvers import ScaledProblem
    >>> a = sdf.Variable(np.ones((2, 1)), name="a")
    >>> p = ScaledProblem(Problem.from_model(sdf.Model(m=sdf.CPD(np.ones((2, 2)), [a, a]))))
    >>> make_box(p, {"a": 0.0}, None, "NLSOptions").lo.tolist()
    [0.0, 0.0]
    """
    if lower is None and upper is None:
        return None
    lo = _side(problem, lower, -np.inf, f"{where}.lower")
    hi = _side(problem, upper, np.inf, f"{where}.upper")
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        name = _owner(problem, int(bad[0]))
        raise OptionError(f"{where}: variable {name!r}: a lower bound exceeds its upper bound")
    if not (np.isfinite(lo).any() or np.isfinite(hi).any()):
        return None
    for name, var, k in zip(problem.names, problem.variables, range(len(problem.names))):
        sl = slice(problem.offsets[k], problem.offsets[k + 1])
        bounded = np.isfinite(lo[sl]).any() or np.isfinite(hi[sl]).any()
        if bounded and np.iscomplexobj(var.value):
            raise OptionError(f"{where}: variable {name!r} is complex; bounds need real "
                              "variables")
    # Bounds are given in the model's units; a scaled problem works in z / sigma (exact).
    return Box(problem.to_units(lo), problem.to_units(hi))


def _owner(problem: Any, index: int) -> str:
    k = int(np.searchsorted(problem.offsets, index, side="right")) - 1
    return str(problem.names[k])


def _side(problem: Any, bound: Any, default: float, where: str) -> np.ndarray:
    out = np.full(problem.n, default)
    if bound is None:
        return out
    if not isinstance(bound, dict):
        check_bound(where.split(".")[0], where.split(".")[-1], bound)
        out[:] = float(bound)
        return out
    unknown = sorted(set(bound) - set(problem.names))
    if unknown:
        raise OptionError(f"{where}: unknown variable(s) {', '.join(map(repr, unknown))} "
                          f"(variables: {', '.join(problem.names)})")
    for k, (name, var) in enumerate(zip(problem.names, problem.variables)):
        value = bound.get(name)
        if value is None:
            continue
        sl = slice(problem.offsets[k], problem.offsets[k + 1])
        try:
            arr = np.asarray(value, dtype=float)
            out[sl] = np.broadcast_to(arr, var.shape).ravel()
        except (TypeError, ValueError):
            raise OptionError(
                f"{where}[{name!r}]: expected a number or an array broadcasting to the "
                f"variable's shape {var.shape}, got {_describe(value)}") from None
        if np.isnan(out[sl]).any():
            raise OptionError(f"{where}[{name!r}]: a bound is NaN (use None for no bound)")
    return out


def _describe(value: Any) -> str:
    shape = np.shape(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    return f"shape {shape}" if shape is not None else repr(value)
