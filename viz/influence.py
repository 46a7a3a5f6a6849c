"""Influence plots: leverage against Q residual for every mode (the chemometric outlier view)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sdf.errors import ModelError
from sdf.viz._common import (as_decomposition, check_mode, data_and_model, leverage,
                             new_figure)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import PathCollection
    from matplotlib.figure import Figure

__all__ = ["InfluencePlot", "plot_influence", "q_residuals"]

_OK, _FLAGGED = "C0", "C3"


@dataclass
class InfluencePlot:
    """What :func:`plot_influence` drew.

    Attributes
    ----------
    figure : Figure
    axes : list of Axes
        One panel per mode drawn.
    modes : list of int
        The modes drawn, in the order of ``axes``.
    points : list of PathCollection
        The scatter of each panel.
    leverage : list of ndarray
        Per mode, ``diag(A (AᵀA)⁺ Aᵀ)`` of its factor.
    q : list of ndarray
        Per mode, the scaled Q residual of every slab (:func:`q_residuals`).
    leverage_limit, q_limit : list of float
        Per mode, the limits drawn (see :func:`plot_influence`).
    flagged : list of int ndarray
        Per mode, the slabs beyond either limit (labelled with their coordinates).
    """

    figure: Figure
    axes: list[Axes]
    modes: list[int]
    points: list[PathCollection] = field(default_factory=list)
    leverage: list[np.ndarray] = field(default_factory=list)
    q: list[np.ndarray] = field(default_factory=list)
    leverage_limit: list[float] = field(default_factory=list)
    q_limit: list[float] = field(default_factory=list)
    flagged: list[np.ndarray] = field(default_factory=list)


def q_residuals(residual: np.ndarray, mode: int) -> np.ndarray:
    """Scaled Q residual of every mode-``mode`` slab.

    ``Q_i`` is the sum of squared residuals ``|r|^2`` over the slab's known (non-NaN) entries,
    brought to the full slab (times entries / known entries), divided by the mean over
    the slabs: 1 is an average slab. NaN for a slab with no known entry.

    Examples
    --------
    >>> import numpy as np
    >>> q_residuals(np.array([[1.0, 1.0], [3.0, np.nan]]), 0).tolist()
    [0.2, 1.8]
    """
    axes = tuple(k for k in range(residual.ndim) if k != mode)
    known = np.sum(~np.isnan(residual), axis=axes)
    sse = np.nansum(np.abs(residual) ** 2, axis=axes)
    size = residual.size // residual.shape[mode]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(known > 0, sse * size / np.maximum(known, 1), np.nan)
    mean = float(np.nanmean(q)) if np.isfinite(q).any() else 0.0
    return q / mean if mean > 0 else q


def _q_limit(q: np.ndarray, level: float) -> float:
    """Box's approximation ``g chi2_h`` of the ``level`` quantile of ``q``."""
    from scipy.stats import chi2

    finite = q[np.isfinite(q)]
    mean, var = float(np.mean(finite)), float(np.var(finite))
    if var <= 0 or mean <= 0:
        return mean
    g, h = var / (2.0 * mean), 2.0 * mean**2 / var
    return float(g * chi2.ppf(level, h))


def plot_influence(
    source: object,
    *,
    data: object = None,
    term: str | None = None,
    modes: Sequence[int] | None = None,
    level: float = 0.95,
    fig: Figure | None = None,
) -> InfluencePlot:
    """Leverage against Q residual, one panel per mode: the chemometric outlier view.

    For mode ``n`` with factor ``A`` (``I_n`` rows, ``R`` columns), each slab ``i`` is a
    point at its leverage ``h_i = diag(A (AᵀA)⁺ Aᵀ)_i`` (how much it shapes the model;
    mean ``R / I_n``) and its scaled Q residual (:func:`q_residuals`: how badly the model
    fits it; mean 1). Dashed lines mark the leverage limit ``3 R / I_n`` and the Q limit,
    the ``level`` quantile of Box's scaled chi-squared approximation
    ``g chi2_h`` (``g = var/(2 mean)``, ``h = 2 mean²/var`` of the Q values). Slabs beyond
    either limit are flagged red and labelled with their coordinates: top right is an
    influential outlier, top left a badly fitted but harmless slab, bottom right a slab
    that drives the model.

    Parameters
    ----------
    source : Result or decomposition
        See :func:`sdf.viz.plot_factors`.
    data : array_like, xarray.DataArray or Tensor, optional
        The data (required unless ``source`` carries it); NaN marks missing entries.
    term : str, optional
        For Results: which term (default: the first data term).
    modes : sequence of int, optional
        Modes to draw (default: all).
    level : float, default 0.95
        Quantile of the Q limit, in (0, 1).
    fig : Figure, optional

    Returns
    -------
    InfluencePlot

    Examples
    --------
    >>> import io, matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sdf.viz import plot_influence
    >>> rng = np.random.default_rng(0)
    >>> U = [rng.standard_normal((n, 2)) for n in (12, 7, 8)]
    >>> T = np.einsum("ir,jr,kr->ijk", *U) + 0.01 * rng.standard_normal((12, 7, 8))
    >>> T[4] += 0.5 * rng.standard_normal((7, 8))
    >>> ip = plot_influence(U, data=T)
    >>> len(ip.axes), 4 in ip.flagged[0]
    (3, True)
    >>> ip.figure.savefig(io.BytesIO(), format="png")
    """
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise ModelError(f"plot_influence: level must be a float in (0, 1), got {level!r}")
    dec = as_decomposition(source, term, data=data)
    chosen = (list(range(dec.ndim)) if modes is None
              else [check_mode(m, dec.ndim, "plot_influence") for m in modes])
    if not chosen:
        raise ModelError("plot_influence: modes is empty; give at least one mode")
    D, M = data_and_model(dec, "plot_influence")
    R = D - M
    fig, grid = new_figure(fig, 1, len(chosen), size=(3.6 * len(chosen), 3.4))
    plot = InfluencePlot(fig, list(grid.ravel()), chosen)
    for ax, n in zip(plot.axes, chosen):
        A = dec.factors[n]
        lev = leverage(A)
        q = q_residuals(R, n)
        lev_limit = 3.0 * float(np.sum(lev)) / lev.size
        q_limit = _q_limit(q, level)
        flagged = np.flatnonzero((lev > lev_limit) | (np.nan_to_num(q) > q_limit))
        colors = np.full(lev.size, _OK, dtype=object)
        colors[flagged] = _FLAGGED
        plot.points.append(ax.scatter(lev, q, c=list(colors), s=16))
        ax.axvline(lev_limit, color="0.5", linestyle="--", linewidth=1)
        ax.axhline(q_limit, color="0.5", linestyle="--", linewidth=1)
        coord = dec.coord(n)
        for i in flagged:
            ax.annotate(str(coord[i]), (lev[i], q[i]), fontsize="small",
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("leverage")
        ax.set_ylabel("Q residual (scaled, mean 1)")
        ax.set_title(f"influence: {dec.mode_name(n)}")
        plot.leverage.append(lev)
        plot.q.append(q)
        plot.leverage_limit.append(lev_limit)
        plot.q_limit.append(q_limit)
        plot.flagged.append(flagged)
    return plot
