"""Typed, validated settings of the solvers."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from sdf.errors import OptionError
from sdf.solvers._box import check_bound

__all__ = ["MinfOptions", "NLSOptions", "SolverOptions"]


def _positive(cls: str, name: str, value: float, allow_zero: bool = True) -> None:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))
    ok = number and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise OptionError(f"{cls}.{name} must be a number {bound}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True, kw_only=True)
class SolverOptions:
    """Settings every solver takes; each solver's options class extends it.

    Numpy scalars are accepted and stored as Python numbers.

    Attributes
    ----------
    max_iter : int
        Maximum number of iterations.
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
    max_time: float = math.inf
    checkpoint: str | os.PathLike[str] | None = None
    checkpoint_every: int = 10

    #: Integer fields (>= 1) and tolerances (>= 0) that __post_init__ checks.
    _integers: ClassVar[tuple[str, ...]] = ("max_iter", "checkpoint_every")
    _tolerances: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise OptionError(f"{name}.checkpoint must be a file path or None, "
                              f"got {self.checkpoint!r}")
        for f in self._integers:
            v = getattr(self, f)
            if not _is_int(v) or v < 1:
                raise OptionError(f"{name}.{f} must be an integer >= 1, got {v!r}")
            object.__setattr__(self, f, int(v))
        for f in self._tolerances:
            _positive(name, f, getattr(self, f))
            object.__setattr__(self, f, float(getattr(self, f)))
        _positive(name, "max_time", self.max_time, allow_zero=False)
        object.__setattr__(self, "max_time", float(self.max_time))

    @property
    def radius_is_damping(self) -> bool:
        """True when the solver's reported "radius" is a damping (Levenberg-Marquardt)."""
        return False


@dataclass(frozen=True, kw_only=True)
class NLSOptions(SolverOptions):
    """Settings for the Gauss-Newton solver (``method="nls"``).

    Attributes
    ----------
    max_iter : int
        Maximum number of (outer) iterations.
    tol_fun : float
        Stop when ``|f_k - f_{k+1}| / f_0 <= tol_fun``; ``f_0`` is the start's objective,
        or, where the start is worse and every term is a least-squares data term, the
        zero model's (``sum_t w_t ||data_t||^2 / 2``; at least ``2**-100`` of the
        start's).
    tol_x : float
        Stop when ``||z_{k+1} - z_k|| / ||z_k|| <= tol_x``.
    tol_abs : float
        Stop when ``f / f_0 <= tol_abs`` (an exact fit).
    cg_max_iter : int
        Maximum conjugate-gradient iterations per Gauss-Newton step.
    cg_max_iter_reading_data : int
        Maximum conjugate-gradient iterations per step while every Gauss-Newton product
        reads the data (least-squares terms on masked or sampled entries: a product then
        costs about a gradient) and the objective's relative decrease per iteration is
        above 1e-6; ``cg_max_iter`` applies from then on. Set it to ``cg_max_iter`` for
        the same inner solve throughout.
    cg_tol : float
        Relative residual at which CG stops.
    trust : {"dogleg", "lm"}
        Globalisation: dogleg trust region, or Levenberg-Marquardt damping.
    lower, upper : float, dict or None
        Bounds ``lower <= z <= upper`` on the unknowns: a number bounds every entry of
        every variable; a dict ``{variable name: number or array}`` (arrays broadcasting to
        the variable's shape, missing names or None unbounded) bounds variables one by
        one. With bounds, the iteration is a projected trust-region Gauss-Newton (see
        :mod:`sdf.solvers.nls`) and ``trust`` must be ``"dogleg"``.
    tol_grad : float
        With bounds: stop when the largest entry of the projected gradient of
        ``f / f_0`` (``z - P(z - grad)``, zero exactly at a KKT point) is below this.
    max_time, checkpoint, checkpoint_every
        See :class:`SolverOptions`.
    """

    max_iter: int = 200
    tol_fun: float = 1e-12
    tol_x: float = 1e-8
    tol_abs: float = 1e-30
    cg_max_iter: int = 15
    cg_max_iter_reading_data: int = 3
    cg_tol: float = 1e-3
    trust: Literal["dogleg", "lm"] = "dogleg"
    lower: float | dict[str, Any] | None = None
    upper: float | dict[str, Any] | None = None
    tol_grad: float = 1e-10

    _integers: ClassVar[tuple[str, ...]] = ("max_iter", "checkpoint_every", "cg_max_iter",
                                              "cg_max_iter_reading_data")
    _tolerances: ClassVar[tuple[str, ...]] = ("tol_fun", "tol_x", "tol_abs", "cg_tol",
                                              "tol_grad")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trust not in ("dogleg", "lm"):
            raise OptionError(f"NLSOptions.trust must be 'dogleg' or 'lm', got {self.trust!r}")
        check_bound("NLSOptions", "lower", self.lower)
        check_bound("NLSOptions", "upper", self.upper)
        if self.trust == "lm" and (self.lower is not None or self.upper is not None):
            raise OptionError("NLSOptions: bounds (lower/upper) need trust='dogleg' "
                              "(the projected trust region), got trust='lm'")

    @property
    def radius_is_damping(self) -> bool:
        return self.trust == "lm"


@dataclass(frozen=True, kw_only=True)
class MinfOptions(SolverOptions):
    """Settings for the quasi-Newton solver (``method="minf"``, L-BFGS-B).

    Attributes
    ----------
    max_iter : int
        Maximum number of iterations.
    tol_fun : float
        Stop when the relative decrease of ``f / f_0`` is below this (``f_0`` as for
        :class:`NLSOptions`: the start's objective, or the zero model's when lower).
    tol_grad : float
        Stop when the largest entry of the projected gradient of ``f / f_0`` is below this.
    memory : int
        Number of correction pairs kept by L-BFGS.
    bounds : dict or None
        ``{variable name: (lower, upper)}``; bounds are scalars or arrays of the variable's
        shape, ``None`` for no bound.
    lower, upper : float, dict or None
        The same bounds in the form :class:`NLSOptions` takes them (a number for every
        entry, or ``{variable name: number or array}``); not together with ``bounds``.
    max_time, checkpoint, checkpoint_every
        See :class:`SolverOptions`.
    """

    max_iter: int = 1000
    tol_fun: float = 1e-14
    tol_grad: float = 1e-10
    memory: int = 30
    bounds: dict[str, Any] | None = None
    lower: float | dict[str, Any] | None = None
    upper: float | dict[str, Any] | None = None

    _integers: ClassVar[tuple[str, ...]] = ("max_iter", "checkpoint_every", "memory")
    _tolerances: ClassVar[tuple[str, ...]] = ("tol_fun", "tol_grad")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bounds is not None and not isinstance(self.bounds, dict):
            raise OptionError(
                "MinfOptions.bounds must be a dict {variable name: (lower, upper)}, "
                f"got {type(self.bounds).__name__}"
            )
        check_bound("MinfOptions", "lower", self.lower)
        check_bound("MinfOptions", "upper", self.upper)
        if self.bounds is not None and (self.lower is not None or self.upper is not None):
            raise OptionError("MinfOptions: give bounds either as bounds={name: (lower, "
                              "upper)} or as lower=/upper=, not both")
