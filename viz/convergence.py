"""Convergence plots: objective, per-term errors, CG iterations and trust radius."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sdf.errors import ModelError
from sdf.viz._common import component_color, label_runs, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from sdf.result import History

__all__ = ["ConvergencePlot", "plot_convergence"]

_STYLES = ("-", "--", ":", "-.")
_PANELS = ("objective", "relerr", "cg_iterations", "radius")


@dataclass
class ConvergencePlot:
    """What :func:`plot_convergence` drew.

    Attributes
    ----------
    figure : Figure
    axes : dict of str to Axes
        Keys ``"objective"``, ``"relerr"``, ``"cg_iterations"``, ``"radius"``.
    lines : dict of (str, str) to Line2D
        ``lines[run, quantity]``: quantity is ``"objective"``, ``"relerr:<term>"``,
        ``"cg_iterations"`` or ``"radius"``; ``run`` is the run's label (``""`` for a
        single run).
    """

    figure: Figure
    axes: dict[str, Axes]
    lines: dict[tuple[str, str], Line2D]


def _history(run: object, label: str) -> History:
    from sdf.result import History

    if isinstance(run, History):
        return run
    hist = getattr(run, "history", None)
    if isinstance(hist, History) or (hist is not None and hasattr(hist, "objective")):
        return hist
    raise ModelError(f"plot_convergence: run {label!r} is a {type(run).__name__}; expected "
                     "an sdf.Result, an sdf.History or an object with .history")


def _x(hist: History, x: str) -> np.ndarray:
    return np.asarray(hist.time, dtype=float) if x == "time" else np.arange(len(hist.objective))


def _positive(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return np.where(v > 0, v, np.nan)  # log axes: zeros and negatives are left out


def plot_convergence(
    runs: object,
    *,
    labels: Sequence[str] | None = None,
    x: Literal["iteration", "time"] | None = None,
    fig: Figure | None = None,
) -> ConvergencePlot:
    """Plot how one or several fits converged.

    Four panels against iteration (or time in seconds): the objective and every data
    term's relative error (log scales), the CG iterations of each Gauss-Newton step and
    the trust-region radius (empty for L-BFGS runs). Each run has its colour; the terms
    in the relative-error panel are told apart by line style. Entry 0 is the start.

    A driver's result (:class:`sdf.models.Decomposition`) is drawn stage by stage: every
    engine fit of its pipeline (e.g. ``core`` then ``refine``) in its own colour, laid
    end to end on one axis, each starting where the stages before it ended (on the time
    axis, algebraic stages such as ``compress`` or ``init`` are shaded spans). The
    ``core`` stage's objective and errors are those of the compressed core.

    Parameters
    ----------
    runs : Result, History, Decomposition, object with ``.history``, or a sequence or
        mapping of them
        A mapping ``{label: run}`` names the runs; a sequence labels them ``"run k"``.
    labels : sequence of str, optional
        Labels overriding the ones from ``runs``.
    x : {"iteration", "time"}, optional
        Default: ``"time"`` when a run has several stages, else ``"iteration"``.
    fig : Figure, optional

    Returns
    -------
    ConvergencePlot

    Examples
    --------
    >>> import io, matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, sdf
    >>> from sdf.viz import plot_convergence
    >>> a = sdf.Variable.random((5, 2), seed=0, name="a")
    >>> b = sdf.Variable.random((6, 2), seed=1, name="b")
    >>> rng = np.random.default_rng(0)
    >>> res = sdf.Model(M=sdf.CPD(rng.standard_normal((5, 6)), [a, b])).fit(max_iter=20)
    >>> cp = plot_convergence(res)
    >>> sorted(cp.axes)
    ['cg_iterations', 'objective', 'radius', 'relerr']
    >>> cp.figure.savefig(io.BytesIO(), format="png")
    >>> from sdf.models import cpd
    >>> dec = cpd(rng.standard_normal((20, 15, 10)), 2, seed=0, max_iter=20)
    >>> sorted({run for run, _ in plot_convergence(dec).lines})
    ['core', 'refine']
    """
    if x not in ("iteration", "time", None):
        raise ModelError(f"plot_convergence: x must be 'iteration' or 'time', got {x!r}")
    pairs = label_runs(runs, labels, "run")
    if not pairs:
        raise ModelError("plot_convergence: no runs given")
    segments = [seg for label, run in pairs for seg in _segments(run, label)]
    staged = any(seg.stage for seg in segments)
    axis = x if x is not None else "time" if staged else "iteration"
    fig, grid = new_figure(fig, 2, 2, size=(10.0, 6.5), sharex=True)
    axes = dict(zip(_PANELS, grid.ravel()))
    lines: dict[tuple[str, str], Line2D] = {}
    for k, seg in enumerate(segments):
        offset = seg.start_time if axis == "time" else seg.start_iteration
        lines.update(_draw_run(axes, seg.history, seg.label, component_color(k), axis,
                               offset))
        if axis == "time":
            for name, t0, t1 in seg.spans:
                for ax in axes.values():
                    ax.axvspan(t0, t1, color="0.9", zorder=0)
                axes["objective"].text(0.5 * (t0 + t1), 1.0, name, rotation=90, va="top",
                                       ha="center", fontsize="x-small", color="0.4",
                                       transform=axes["objective"].get_xaxis_transform())
    _decorate(axes, axis, multiple=len(segments) > 1)
    return ConvergencePlot(fig, axes, lines)


class _Segment:
    """One history to draw: a run, or one engine stage of a driver's run."""

    def __init__(self, label: str, history: History, stage: str = "",
                 start_time: float = 0.0, start_iteration: int = 0,
                 spans: list[tuple[str, float, float]] | None = None) -> None:
        self.label, self.history, self.stage = label, history, stage
        self.start_time, self.start_iteration = start_time, start_iteration
        self.spans = spans or []


def _segments(run: object, label: str) -> list[_Segment]:
    """A driver's engine stages laid end to end, or the run's own history."""
    stages = getattr(run, "stages", None)
    if not isinstance(stages, list) or not any(
            getattr(st, "history", None) is not None for st in stages):
        return [_Segment(label, _history(run, label or "0"))]
    out: list[_Segment] = []
    spans: list[tuple[str, float, float]] = []
    clock, count = 0.0, 0
    for st in stages:
        hist = getattr(st, "history", None)
        if hist is None or not len(hist.objective):
            if st.time > 0:
                spans.append((st.name, clock, clock + st.time))
        else:
            name = f"{label}: {st.name}" if label else st.name
            out.append(_Segment(name, hist, st.name, clock, count, spans))
            spans = []
            count += len(hist.objective)
        clock += st.time
    if spans and out:
        out[-1].spans += spans
    return out


def _draw_run(axes: dict[str, Axes], hist: History, label: str, color: str,
              x: str, offset: float = 0.0) -> dict[tuple[str, str], Line2D]:
    xs = _x(hist, x) + offset
    prefix = f"{label}: " if label else ""
    out = {}
    (out[label, "objective"],) = axes["objective"].semilogy(
        xs, _positive(hist.objective), color=color, label=label or None)
    for j, (term, errs) in enumerate(hist.relerr.items()):
        (out[label, f"relerr:{term}"],) = axes["relerr"].semilogy(
            xs[: len(errs)], _positive(errs), color=color,
            linestyle=_STYLES[j % len(_STYLES)], label=f"{prefix}{term}")
    (out[label, "cg_iterations"],) = axes["cg_iterations"].plot(
        xs, np.asarray(hist.cg_iterations, dtype=float), color=color, marker=".",
        label=label or None)
    (out[label, "radius"],) = axes["radius"].semilogy(
        xs, _positive(hist.radius), color=color, label=label or None)
    return out


def _decorate(axes: dict[str, Axes], x: str, multiple: bool) -> None:
    titles = {"objective": "objective", "relerr": "relative error per term",
              "cg_iterations": "CG iterations", "radius": "trust-region radius"}
    for key, ax in axes.items():
        ax.set_title(titles[key])
        ax.set_ylabel(titles[key])
    for key in ("cg_iterations", "radius"):
        axes[key].set_xlabel("time (s)" if x == "time" else "iteration")
    if not any(np.isfinite(line.get_ydata()).any() for line in axes["radius"].get_lines()):
        axes["radius"].text(0.5, 0.5, "no trust region (L-BFGS)", ha="center",
                            va="center", transform=axes["radius"].transAxes, color="0.4")
    if axes["relerr"].get_lines():
        axes["relerr"].legend(fontsize="small")
    if multiple:
        axes["objective"].legend(fontsize="small")
