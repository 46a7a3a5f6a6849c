"""Typed, validated settings of the solvers."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Literal

from sdf.errors import OptionError

__all__ = ["MinfOptions", "NLSOptions", "make_options"]


def _positive(cls: str, name: str, value: float, allow_zero: bool = True) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise OptionError(f"{cls}.{name} must be a number {bound}, got {value!r}")


def _check_checkpoint(cls: str, path: Any, every: Any) -> None:
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise OptionError(f"{cls}.checkpoint must be a file path or None, got {path!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise OptionError(f"{cls}.checkpoint_every must be an integer >= 1, got {every!r}")


def _check_common(options: Any, integers: tuple[str, ...], tolerances: tuple[str, ...]) -> str:
    """Validate the fields both solvers' options share; returns the class name."""
    name = type(options).__name__
    _check_checkpoint(name, options.checkpoint, options.checkpoint_every)
    for f in integers:
        v = getattr(options, f)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise OptionError(f"{name}.{f} must be an integer >= 1, got {v!r}")
    for f in tolerances:
        _positive(name, f, getattr(options, f))
    _positive(name, "max_time", options.max_time, allow_zero=False)
    return name


@dataclass(frozen=True, kw_only=True)
class NLSOptions:
    """Settings for the Gauss-Newton solver (``method="nls"``).

    Attributes
    ----------
    max_iter : int
        Maximum number of (outer) iterations.
    tol_fun : float
        Stop when ``|f_k - f_{k+1}| / f_0 <= tol_fun``.
    tol_x : float
        Stop when ``||z_{k+1} - z_k|| / ||z_k|| <= tol_x``.
    tol_abs : float
        Stop when ``f / f_0 <= tol_abs`` (an exact fit).
    cg_max_iter : int
        Maximum conjugate-gradient iterations per Gauss-Newton step.
    cg_tol : float
        Relative residual at which CG stops.
    trust : {"dogleg", "lm"}
        Globalisation: dogleg trust region, or Levenberg-Marquardt damping.
    max_time : float
        Wall-clock budget in seconds.
    checkpoint : str or os.PathLike or None
        File to which the run saves its state (a :class:`sdf.Result`, see
        :meth:`sdf.Result.save`) every ``checkpoint_every`` iterations and at the end;
        ``model.fit(resume=path)`` continues from it. The file is replaced atomically, so
        a crash during a write leaves the previous checkpoint intact.
    checkpoint_every : int
        Iterations between two checkpoints.
    """

    max_iter: int = 200
    tol_fun: float = 1e-12
    tol_x: float = 1e-8
    tol_abs: float = 1e-30
    cg_max_iter: int = 15
    cg_tol: float = 1e-3
    trust: Literal["dogleg", "lm"] = "dogleg"
    max_time: float = math.inf
    checkpoint: str | os.PathLike[str] | None = None
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        name = _check_common(self, ("max_iter", "cg_max_iter"),
                             ("tol_fun", "tol_x", "tol_abs", "cg_tol"))
        if self.trust not in ("dogleg", "lm"):
            raise OptionError(f"{name}.trust must be 'dogleg' or 'lm', got {self.trust!r}")


@dataclass(frozen=True, kw_only=True)
class MinfOptions:
    """Settings for the quasi-Newton solver (``method="minf"``, L-BFGS-B).

    Attributes
    ----------
    max_iter : int
        Maximum number of iterations.
    tol_fun : float
        Stop when the relative decrease of ``f / f_0`` is below this.
    tol_grad : float
        Stop when the largest entry of the projected gradient of ``f / f_0`` is below this.
    memory : int
        Number of correction pairs kept by L-BFGS.
    bounds : dict or None
        ``{variable name: (lower, upper)}``; bounds are scalars or arrays of the variable's
        shape, ``None`` for no bound.
    max_time : float
        Wall-clock budget in seconds.
    checkpoint : str or os.PathLike or None
        File to which the run saves its state (a :class:`sdf.Result`, see
        :meth:`sdf.Result.save`) every ``checkpoint_every`` iterations and at the end;
        ``model.fit(resume=path)`` continues from it. The file is replaced atomically, so
        a crash during a write leaves the previous checkpoint intact.
    checkpoint_every : int
        Iterations between two checkpoints.
    """

    max_iter: int = 1000
    tol_fun: float = 1e-14
    tol_grad: float = 1e-10
    memory: int = 30
    bounds: dict[str, Any] | None = None
    max_time: float = math.inf
    checkpoint: str | os.PathLike[str] | None = None
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        name = _check_common(self, ("max_iter", "memory"), ("tol_fun", "tol_grad"))
        if self.bounds is not None and not isinstance(self.bounds, dict):
            raise OptionError(
                f"{name}.bounds must be a dict {{variable name: (lower, upper)}}, "
                f"got {type(self.bounds).__name__}"
            )


_CLASSES = {"nls": NLSOptions, "minf": MinfOptions}


def make_options(method: str, options: Any = None, **kwargs: Any) -> NLSOptions | MinfOptions:
    """Build the options of ``method`` from an options object and/or keyword overrides."""
    if method not in _CLASSES:
        raise OptionError(f"fit: method must be one of {sorted(_CLASSES)}, got {method!r}")
    cls = _CLASSES[method]
    if options is not None and not isinstance(options, cls):
        raise OptionError(
            f"fit: options for method={method!r} must be {cls.__name__}, "
            f"got {type(options).__name__}"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise OptionError(
            f"fit: unknown option(s) {', '.join(map(repr, unknown))} for method={method!r} "
            f"(known: {', '.join(sorted(known))})"
        )
    base = options if options is not None else cls()
    return dataclasses.replace(base, **kwargs)
