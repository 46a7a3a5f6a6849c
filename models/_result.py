"""What the model drivers return: a decomposition, its error, and the engine's final fit.

Every driver (:func:`sdf.models.cpd`, :func:`~sdf.models.lmlra`, :func:`~sdf.models.btd`,
:func:`~sdf.models.ll1`, :func:`~sdf.models.cmtf`) returns a :class:`Decomposition`: the
factors in the driver's own layout, the relative error as one float, the iteration
history of the final engine fit and that fit's :class:`sdf.Result` itself. The stages the
driver went through (compression, initialisation, fit on the core, refinement) are listed
in :attr:`Decomposition.stages`.

A Decomposition stands in for its :class:`sdf.Result` wherever one is read: indexing
(``dec["a"]``) and the Result's attributes that a Decomposition does not define itself
(``model``, ``variables``, ``objective``, ``abserr``, ``iterations``, ``stop``,
``message``, ``success``, ``converged``, ``method``, ``warnings``, ``losses``,
``loss_values``, ``deviance``) are forwarded to
:attr:`Decomposition.result`, and ``sdf.viz`` functions unwrap ``.result`` when given a
Decomposition.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from sdf.expr import Expr
from sdf.result import History, Result, StopReason

__all__ = ["Decomposition", "DecompositionKind", "Stage", "StartRecord"]

#: What a Decomposition holds: the engine's term kinds (:attr:`sdf.Term.kind`), and
#: ``"CMTF"`` for coupled CPDs (one factor per mode label, several data sets).
DecompositionKind = Literal["CPD", "LMLRA", "BTD", "LL1", "CMTF", "TT", "TR"]

_FORWARDED = frozenset({
    "model", "variables", "objective", "abserr", "iterations", "stop", "message",
    "success", "converged", "method", "warnings", "losses", "loss_values", "deviance",
})

#: Names of the stages that fit the data with the engine (the Decomposition's ``result``).
_FINAL_FITS = ("fit", "refine", "evaluate")


@dataclass(frozen=True)
class Stage:
    """One step of a driver's pipeline.

    Attributes
    ----------
    name : str
        ``"compress"``, ``"init"``, ``"core"``, ``"refine"``, ``"hooi"``, ...
    detail : str
        What was done, in words (e.g. ``"MLSVD to core (10, 10, 10)"``, ``"gevd"``).
    iterations : int
        Solver iterations spent in this stage (0 for algebraic steps).
    time : float
        Wall-clock seconds.
    relerr : float
        Relative error reached at the end of the stage, measured on what the stage fits
        (the compressed core for ``"core"``, the data otherwise); NaN if not measured.
    stop : sdf.StopReason or None
        Why the stage's engine fit stopped (None for algebraic steps).
    history : sdf.History or None
        Iteration history of the stage's engine fit (None for algebraic steps); its times
        count from the stage's start.

    Examples
    --------
    >>> import sdf
    >>> Stage("fit", "CPD", 12, 0.05, 1e-3, sdf.StopReason.TOL_FUN)
    Stage(name='fit', detail='CPD', iterations=12, time=0.05, relerr=0.001, stop=TOL_FUN)
    """

    name: str
    detail: str
    iterations: int
    time: float
    relerr: float = float("nan")
    stop: StopReason | None = None
    history: History | None = None

    def __repr__(self) -> str:
        stop = "None" if self.stop is None else self.stop.name
        return (f"Stage(name={self.name!r}, detail={self.detail!r}, iterations={self.iterations}, "
                f"time={self.time:.3g}, relerr={self.relerr:.4g}, stop={stop})")


@dataclass(frozen=True)
class StartRecord:
    """One start of a driver run with ``n_starts > 1``.

    Attributes
    ----------
    index : int
        0 for the start asked for by ``init``, then 1, 2, ... (random starts).
    init : str
        How the start was made (the ``"init"`` stage's detail, e.g. ``"gevd of the data"``).
    relerr : float
        Final relative error of the fit from this start.
    iterations : int
        Solver iterations over all the stages of this start.
    time : float
        Wall-clock seconds of this start.
    stop : sdf.StopReason
        Why the final fit of this start stopped.

    Examples
    --------
    >>> import sdf
    >>> StartRecord(0, "gevd", 1e-3, 12, 0.05, sdf.StopReason.TOL_FUN).relerr
    0.001
    """

    index: int
    init: str
    relerr: float
    iterations: int
    time: float
    stop: StopReason


@dataclass
class Decomposition:
    """A fitted decomposition.

    Attributes
    ----------
    kind : {"CPD", "LMLRA", "BTD", "LL1", "CMTF", "TT", "TR"}
        The engine's name of the term fitted (``sdf.CPD``, ``sdf.LMLRA``...); ``"CMTF"``
        for coupled CPDs of several data sets.
    factors : list
        The factors. CPD: ``[A_0, ..., A_{N-1}]``, each of shape (I_n, R). LMLRA: the
        ``N`` factor matrices (I_n, R_n). BTD: one list ``[U_0, ..., U_{N-1}, S]`` per block,
        its core last (as Tensorlab's cells; :attr:`core` lists the cores alone).
        LL1: ``[A, B, C]`` with ``A`` (I, sum L), ``B`` (J, sum L), ``C`` (K, R). CMTF:
        one matrix per mode label, in the order of :attr:`labels`. TT and TR: the cores
        ``[G_0, ..., G_{N-1}]``, each of shape (r_k, I_k, r_{k+1}).
    relerr : float
        ``||model - data|| / ||data||`` over the known entries (CMTF: over all data sets
        together, each entering with its own norm; see :attr:`relerrs`); with a
        non-Gaussian loss ``sqrt(D / D_null)``, the deviance over the constant model's
        (:attr:`sdf.Result.deviance`).
    history : sdf.History
        Iteration history of the final engine fit (the refinement on the data when there
        is one). The earlier stages are summarised in :attr:`stages`.
    result : sdf.Result
        The engine's result of the final fit.
    core : ndarray or list of ndarray or None
        The core tensor (LMLRA), one core per block (BTD), or None.
    stages : list of Stage
        The pipeline steps, in order; each engine fit says why it stopped
        (:attr:`Stage.stop`) and keeps its history.
    relerrs : dict of str to float
        Relative error per data set (the single entry of a one-term model is its
        ``relerr``).
    labels : list of str
        Name of each entry of ``factors`` (CPD/LMLRA: the data's dims, or ``"mode0"``...;
        TT/TR: ``"core0"``...).
    L : list of int or None
        LL1 only: the sizes ``L_r`` of the terms.
    starts : list of StartRecord
        With ``n_starts > 1``: every start and its final error, in the order run (the
        decomposition returned is the one with the lowest error); empty for one start.
        :meth:`starts_table` prints them.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models import cpd
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = (rng.standard_normal((n, 2)) for n in (6, 5, 4))
    >>> dec = cpd(np.einsum("ir,jr,kr->ijk", A, B, C), 2, seed=0)
    >>> len(dec.factors), dec.factors[0].shape, bool(dec.relerr < 1e-6)
    (3, (6, 2), True)
    >>> dec.stop is dec.result.stop
    True
    """

    kind: DecompositionKind
    factors: list[Any]
    relerr: float
    history: History
    result: Result
    core: Any = None
    stages: list[Stage] = field(default_factory=list)
    relerrs: dict[str, float] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    L: list[int] | None = None
    starts: list[StartRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The stage that produced ``result`` reports its stop, whichever driver built it.
        for k in range(len(self.stages) - 1, -1, -1):
            stage = self.stages[k]
            if stage.name in _FINAL_FITS:
                if stage.stop is None:
                    self.stages[k] = replace(stage, stop=self.result.stop,
                                             history=self.result.history)
                break

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: forward the Result's read-only view.
        result = self.__dict__.get("result")
        if name in _FORWARDED and result is not None:
            return getattr(result, name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __getitem__(self, key: Expr | str) -> np.ndarray:
        return self.result[key]

    @property
    def time(self) -> float:
        """Total wall-clock seconds over all stages."""
        return float(sum(s.time for s in self.stages))

    def starts_table(self) -> str:
        """The starts of an ``n_starts > 1`` run as a text table, best marked ``*``.

        Examples
        --------
        >>> import numpy as np
        >>> from sdf.models import cpd
        >>> rng = np.random.default_rng(0)
        >>> A, B, C = (rng.standard_normal((n, 2)) for n in (6, 5, 4))
        >>> dec = cpd(np.einsum("ir,jr,kr->ijk", A, B, C), 2, seed=0, n_starts=2)
        >>> print(dec.starts_table().splitlines()[0])
        start  init                                rel. error  iters  time [s]  stop
        """
        best = min(range(len(self.starts)), key=lambda k: self.starts[k].relerr,
                   default=-1)
        lines = [f"{'start':>5}  {'init':<34} {'rel. error':>10} {'iters':>6} "
                 f"{'time [s]':>9}  stop"]
        for k, rec in enumerate(self.starts):
            mark = "*" if k == best else " "
            lines.append(f"{rec.index:>4}{mark}  {rec.init[:34]:<34} {rec.relerr:10.3e} "
                         f"{rec.iterations:6d} {rec.time:9.3f}  {rec.stop.name}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        shapes = _shapes(self.factors)
        steps = " -> ".join(s.name if s.stop is None else f"{s.name} ({s.stop.name})"
                            for s in self.stages)
        other = {k: v for k, v in self.result.losses.items() if v != "gaussian"}
        deviance = self.result.deviance
        losses = "".join(f", {k}: {v} deviance {deviance[k]:.6g}" for k, v in other.items()
                         if k in deviance)
        return (f"Decomposition(kind={self.kind!r}, factors={shapes}, relerr={self.relerr:.4g}"
                f"{losses}, stages={steps!r}, stop={self.result.stop.name})")


def _shapes(obj: object) -> object:
    if isinstance(obj, np.ndarray):
        return obj.shape
    if isinstance(obj, (list, tuple)):
        return [_shapes(o) for o in obj]
    return obj
