"""Model-choice diagnostics: rank estimation, core consistency, compression trade-offs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from sdf.errors import DataError, ModelError
from sdf.viz._common import component_color, get_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = ["CompressionPlot", "CurvePlot", "plot_compression", "plot_core_consistency",
           "plot_rankest", "plot_starts"]

_CHOSEN = "C3"


@dataclass
class CurvePlot:
    """What :func:`plot_rankest` and :func:`plot_core_consistency` drew.

    Attributes
    ----------
    figure : Figure
    ax : Axes
    line : Line2D
        The curve (x: ranks; y: best error per rank, or core consistency in percent).
    trials : Line2D or None
        Every trial's error when several were given per rank (every start of a
        rank estimate).
    chosen : Line2D or None
        Marker of the chosen rank.
    runner_up : Line2D or None
        Marker of the runner-up rank (rank estimates).
    heldout : Line2D or None
        Held-out error per rank (rank estimates with held-out checks).
    """

    figure: Figure
    ax: Axes
    line: Line2D
    trials: Line2D | None = None
    chosen: Line2D | None = None
    runner_up: Line2D | None = None
    heldout: Line2D | None = None


@dataclass
class CompressionPlot:
    """What :func:`plot_compression` drew.

    Attributes
    ----------
    figure : Figure
    ax : Axes
    lines : dict of str to Line2D
        One error-against-ratio curve per layer.
    chosen : dict of str to Line2D
        Marker of the chosen point of each layer that has one.
    """

    figure: Figure
    ax: Axes
    lines: dict[str, Line2D] = field(default_factory=dict)
    chosen: dict[str, Line2D] = field(default_factory=dict)


def _vector(x: ArrayLike, name: str, where: str) -> np.ndarray:
    v = np.asarray(x, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise DataError(f"{where}: {name} must be a non-empty 1-D array, got shape {v.shape}")
    return v


def plot_starts(decomposition: Any, *, ax: Axes | None = None) -> CurvePlot:
    """Final relative error of every start of a driver run with ``n_starts > 1``.

    The starts are drawn in the order run (x: start index, y: final error, log scale
    when positive), the returned fit (lowest error) marked: a spread of several orders of
    magnitude says the problem has local minima worth more starts or a better ``init``.

    Parameters
    ----------
    decomposition : sdf.models.Decomposition
        A driver's result with its ``starts`` (an object with a ``starts`` list of
        records carrying ``index`` and ``relerr``).
    ax : Axes, optional

    Returns
    -------
    CurvePlot
        ``line``: the starts' errors; ``chosen``: the kept start.

    Examples
    --------
    >>> import io, matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sdf.models import cpd
    >>> from sdf.viz import plot_starts
    >>> rng = np.random.default_rng(0)
    >>> T = np.einsum("ir,jr,kr->ijk", *(rng.standard_normal((n, 2)) for n in (6, 5, 4)))
    >>> cp = plot_starts(cpd(T, 2, n_starts=3, seed=0))
    >>> len(cp.line.get_xdata())
    3
    >>> cp.figure.savefig(io.BytesIO(), format="png")
    """
    starts = getattr(decomposition, "starts", None)
    if not starts:
        raise ModelError("plot_starts: no starts to draw; run the driver with n_starts > 1")
    index = np.array([rec.index for rec in starts], dtype=float)
    errors = np.array([rec.relerr for rec in starts], dtype=float)
    fig, ax = get_axes(ax)
    (line,) = ax.plot(index, errors, "o", color=component_color(0), label="start")
    best = int(np.nanargmin(errors))
    (chosen,) = ax.plot([index[best]], [errors[best]], "*", color=_CHOSEN, markersize=14,
                        label="kept")
    _log_if_positive(ax, errors)
    ax.set_xlabel("start")
    ax.set_ylabel("final relative error")
    ax.legend()
    return CurvePlot(figure=fig, ax=ax, line=line, chosen=chosen)


def _log_if_positive(ax: Axes, values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")


def plot_rankest(ranks: Any, errors: ArrayLike | None = None, chosen: int | None = None, *,
                 ax: Axes | None = None) -> CurvePlot:
    """Relative error against the number of rank-one terms (Tensorlab's rankest view).

    Parameters
    ----------
    ranks : array_like of int, shape (K,), or a rank estimate
        Candidate ranks, or an object with ``.ranks``, ``.errors`` and optionally
        ``.start_errors`` (every start, drawn as dots), ``.rank``, ``.runner_up`` (marked)
        and ``.heldout`` (drawn when finite): :class:`sdf.models.RankEstimate`.
    errors : array_like, shape (K,) or (K, n_trials)
        Relative error per rank; several trials per rank are drawn as dots, their
        minimum as the curve.
    chosen : int, optional
        Rank to mark (default: the object's ``.rank``, if any).
    ax : Axes, optional

    Returns
    -------
    CurvePlot

    Examples
    --------
    >>> import io, matplotlib
    >>> matplotlib.use("Agg")
    >>> from sdf.viz import plot_rankest
    >>> cp = plot_rankest([1, 2, 3, 4], [0.6, 0.2, 1e-3, 9e-4], chosen=3)
    >>> cp.line.get_ydata().tolist(), cp.chosen.get_xdata().tolist()
    ([0.6, 0.2, 0.001, 0.0009], [3.0])
    >>> cp.figure.savefig(io.BytesIO(), format="png")
    """
    runner_up, heldout = None, None
    if hasattr(ranks, "ranks"):
        obj = ranks
        if errors is None:
            errors = getattr(obj, "start_errors", None)
            errors = obj.errors if errors is None or np.size(errors) == 0 else errors
        ranks = obj.ranks
        chosen = getattr(obj, "rank", None) if chosen is None else chosen
        runner_up = getattr(obj, "runner_up", None)
        heldout = getattr(obj, "heldout", None)
    if errors is None:
        raise ModelError("plot_rankest: errors missing; pass plot_rankest(ranks, errors)")
    r = _vector(ranks, "ranks", "plot_rankest")
    E = np.asarray(errors, dtype=float)
    if E.shape[:1] != r.shape or E.ndim > 2:
        raise DataError(f"plot_rankest: errors must have shape ({r.size},) or ({r.size}, "
                        f"n_trials) to match ranks, got {E.shape}")
    fig, ax = get_axes(ax)
    trials = None
    if E.ndim == 2:
        (trials,) = ax.plot(np.repeat(r, E.shape[1]), E.ravel(), ".", color="0.6",
                            label="trials")
        E = np.nanmin(E, axis=1)
    (line,) = ax.plot(r, E, "-o", color="C0", label="relative error")
    plot = CurvePlot(fig, ax, line, trials)
    if chosen is not None:
        k = np.flatnonzero(r == chosen)
        if not k.size:
            raise ModelError(f"plot_rankest: chosen rank {chosen} is not among the ranks "
                             f"{r.astype(int).tolist()}")
        (plot.chosen,) = ax.plot([float(chosen)], [E[k[0]]], "o", markersize=12,
                                 markerfacecolor="none", color=_CHOSEN,
                                 label=f"chosen: R = {int(chosen)}")
        ax.axvline(float(chosen), color=_CHOSEN, linestyle=":", linewidth=1)
    if runner_up is not None and np.any(r == runner_up):
        at = int(np.flatnonzero(r == runner_up)[0])
        (plot.runner_up,) = ax.plot([float(runner_up)], [E[at]], "s", markersize=10,
                                    markerfacecolor="none", color="C1",
                                    label=f"runner-up: R = {int(runner_up)}")
    if heldout is not None and np.isfinite(np.asarray(heldout, dtype=float)).any():
        (plot.heldout,) = ax.plot(r, np.asarray(heldout, dtype=float), "s--", color="C2",
                                  markersize=4, label="held-out error")
    _log_if_positive(ax, E)
    ax.set_xlabel("rank R")
    ax.set_ylabel("relative error")
    ax.set_title("rank estimation")
    ax.set_xticks(r)
    ax.legend(fontsize="small")
    return plot


def plot_core_consistency(ranks: Any, corcondia: ArrayLike | None = None, *,
                          ax: Axes | None = None) -> CurvePlot:
    """Core consistency (CORCONDIA, in percent) against the rank.

    Values near 100 % say the CPD fits the data's trilinear structure; a drop signals
    too many components. Values below -100 % are drawn at the bottom edge as ``v``
    markers (the curve keeps the true values).

    Parameters
    ----------
    ranks : array_like of int, shape (K,), or object with ``.ranks`` and ``.corcondia``
    corcondia : array_like, shape (K,)
        Core consistency per rank, in percent.
    ax : Axes, optional

    Returns
    -------
    CurvePlot

    Examples
    --------
    >>> import io, matplotlib
    >>> matplotlib.use("Agg")
    >>> from sdf.viz import plot_core_consistency
    >>> cp = plot_core_consistency([1, 2, 3], [100.0, 97.5, 12.0])
    >>> cp.line.get_ydata().tolist()
    [100.0, 97.5, 12.0]
    >>> cp.figure.savefig(io.BytesIO(), format="png")
    """
    if hasattr(ranks, "ranks"):
        ranks, corcondia = ranks.ranks, ranks.corcondia if corcondia is None else corcondia
    if corcondia is None:
        raise ModelError("plot_core_consistency: corcondia missing; pass "
                         "plot_core_consistency(ranks, corcondia)")
    r = _vector(ranks, "ranks", "plot_core_consistency")
    c = _vector(corcondia, "corcondia", "plot_core_consistency")
    if c.shape != r.shape:
        raise DataError(f"plot_core_consistency: corcondia must have shape {r.shape} to "
                        f"match ranks, got {c.shape}")
    fig, ax = get_axes(ax)
    (line,) = ax.plot(r, c, "-o", color="C0")
    ax.axhline(100.0, color="0.5", linestyle="--", linewidth=1)
    ax.axhline(0.0, color="0.7", linewidth=0.8)
    low = c < -100
    bottom = -105.0 if low.any() else min(-5.0, float(np.nanmin(c)) - 5.0)
    ax.set_ylim(bottom, 105.0)
    if low.any():
        ax.plot(r[low], np.full(low.sum(), -102.0), "v", color=_CHOSEN, clip_on=False)
    ax.set_xlabel("rank R")
    ax.set_ylabel("core consistency (%)")
    ax.set_title("core consistency")
    ax.set_xticks(r)
    return CurvePlot(fig, ax, line)


def _layer_curve(obj: Any, name: str
                 ) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
    """(ratios, errors, chosen point or None) of one layer given in any accepted form."""
    if hasattr(obj, "curve") and hasattr(obj, "params_before"):  # a compressed layer
        if obj.curve is None:
            raise ModelError(f"plot_compression: layer {name!r} has no error curve "
                             "(compress it with a ratio or tolerance to get one)")
        ratios = np.asarray(obj.curve.params, dtype=float) / float(obj.params_before)
        errors = np.asarray(obj.curve.errors, dtype=float)
        at = np.flatnonzero(np.asarray(obj.curve.ranks) == np.max(np.atleast_1d(obj.rank)))
        point = (ratios[at[0]], errors[at[0]]) if at.size else None
        return ratios, errors, point
    if isinstance(obj, tuple) and len(obj) == 2:
        return (_vector(obj[0], "ratios", f"plot_compression, layer {name!r}"),
                _vector(obj[1], "errors", f"plot_compression, layer {name!r}"), None)
    raise DataError(f"plot_compression: layer {name!r} must be a (ratios, errors) pair or "
                    f"a compressed layer with a curve, got {type(obj).__name__}")


def _curves(ratios: object, errors: ArrayLike | None, labels: Sequence[str] | None
            ) -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, float] | None]]:
    if isinstance(ratios, Mapping):
        items = [(str(k), *_layer_curve(v, str(k))) for k, v in ratios.items()]
    elif errors is None and isinstance(ratios, Sequence) and ratios and hasattr(
            ratios[0], "curve"):
        items = [(str(getattr(v, "name", k)), *_layer_curve(v, str(k)))
                 for k, v in enumerate(ratios)]
    else:
        if errors is None:
            raise ModelError("plot_compression: errors missing; pass (ratios, errors) "
                             "arrays or a mapping layer -> (ratios, errors)")
        X, Y = np.atleast_2d(np.asarray(ratios, dtype=float)), np.atleast_2d(
            np.asarray(errors, dtype=float))
        if X.shape != Y.shape or X.ndim != 2:
            raise DataError(f"plot_compression: ratios and errors must have the same shape "
                            f"(points,) or (layers, points), got {X.shape} and {Y.shape}")
        items = [(f"layer {k}", x, y, None) for k, (x, y) in enumerate(zip(X, Y))]
    if labels is not None:
        if len(labels) != len(items):
            raise ModelError(f"labels: {len(labels)} labels given for {len(items)} layers")
        items = [(str(lab), x, y, point) for lab, (_, x, y, point) in zip(labels, items)]
    for name, x, y, _ in items:
        if x.shape != y.shape:
            raise DataError(f"plot_compression, layer {name!r}: {x.size} ratios but "
                            f"{y.size} errors")
    return items


def _chosen_point(value: ArrayLike, x: np.ndarray, y: np.ndarray, name: str) -> tuple[float, float]:
    if np.ndim(value) == 0:  # a ratio: read the error off the curve
        order = np.argsort(x)
        ratio = float(np.asarray(value, dtype=float))
        return ratio, float(np.interp(ratio, x[order], y[order]))
    pt = np.asarray(value, dtype=float)
    if pt.shape != (2,):
        raise DataError(f"plot_compression, layer {name!r}: a chosen point is a ratio or a "
                        f"(ratio, error) pair, got {value!r}")
    return float(pt[0]), float(pt[1])


def plot_compression(ratios: object, errors: ArrayLike | None = None,
                     labels: Sequence[str] | None = None, *,
                     chosen: Mapping[str, ArrayLike] | Sequence[ArrayLike] | None = None,
                     ax: Axes | None = None) -> CompressionPlot:
    """Error against compression ratio, one curve per layer, chosen points marked.

    Parameters
    ----------
    ratios : array_like, mapping, or sequence of compressed layers
        ``(points,)`` or ``(layers, points)`` ratios (compressed size / original size)
        with ``errors`` of the same shape; or a mapping ``layer -> (ratios, errors)``; or
        the compressed layers of :mod:`sdf.models.compress` (anything with ``.curve``
        (``.ranks``, ``.params``, ``.errors``), ``.params_before``, ``.rank``, ``.name``),
        whose chosen rank is marked.
    errors : array_like, optional
        Relative errors, when ``ratios`` is an array.
    labels : sequence of str, optional
        Layer names (default: the mapping's keys, the layers' names, or "layer k").
    chosen : mapping or sequence, optional
        Per layer, the chosen ratio (its error read off the curve) or a
        ``(ratio, error)`` pair; overrides the points found on compressed layers.
    ax : Axes, optional

    Returns
    -------
    CompressionPlot

    Examples
    --------
    >>> import io, matplotlib
    >>> matplotlib.use("Agg")
    >>> from sdf.viz import plot_compression
    >>> curves = {"fc1": ([0.1, 0.3, 0.6], [0.5, 0.2, 0.05]),
    ...           "fc2": ([0.1, 0.3, 0.6], [0.3, 0.1, 0.01])}
    >>> cp = plot_compression(curves, chosen={"fc1": 0.3})
    >>> sorted(cp.lines), cp.chosen["fc1"].get_ydata().tolist()
    (['fc1', 'fc2'], [0.2])
    >>> cp.figure.savefig(io.BytesIO(), format="png")
    """
    items = _curves(ratios, errors, labels)
    if chosen is not None and not isinstance(chosen, Mapping):
        if len(chosen) != len(items):
            raise ModelError(f"chosen: {len(chosen)} points given for {len(items)} layers")
        chosen = {name: c for (name, *_), c in zip(items, chosen)}
    unknown = set(chosen or {}) - {name for name, *_ in items}
    if unknown:
        raise ModelError(f"chosen: no layer named {sorted(unknown)} (layers: "
                         f"{', '.join(name for name, *_ in items)})")
    fig, ax = get_axes(ax, size=(5.5, 4.0))
    plot = CompressionPlot(fig, ax)
    for k, (name, x, y, point) in enumerate(items):
        color = component_color(k)
        order = np.argsort(x)
        (plot.lines[name],) = ax.plot(x[order], y[order], "-o", markersize=3, color=color,
                                      label=name)
        if chosen is not None and name in chosen:
            point = _chosen_point(chosen[name], x, y, name)
        if point is not None:
            (plot.chosen[name],) = ax.plot([point[0]], [point[1]], "*", markersize=13,
                                           color=color, markeredgecolor="k")
    _log_if_positive(ax, np.concatenate([y for _, _, y, _ in items]))
    ax.set_xlabel("compression ratio (compressed / original size)")
    ax.set_ylabel("relative error")
    ax.set_title("error against compression")
    ax.legend(fontsize="small")
    return plot
