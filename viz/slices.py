"""Data, model and residual side by side for one slice (Tensorlab's slice3/visualize)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sdf.errors import DataError, ModelError
from sdf.viz._common import (
    FactorView,
    as_decomposition,
    check_mode,
    data_and_model,
    interactive_backend,
    is_categorical,
    new_figure,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.widgets import Slider

__all__ = ["SlicePlot", "plot_slices"]

_MISSING = "0.8"  # colour of missing entries
_PANELS = ("data", "model", "residual")


@dataclass
class SlicePlot:
    """What :func:`plot_slices` drew; :meth:`set_index` shows another slice.

    Attributes
    ----------
    figure : Figure
    axes : list of Axes
        The data, model and residual panels.
    artists : list
        Per panel, the ``AxesImage`` (slices of 2 or more modes, unfolded to a matrix
        when more) or the ``Line2D`` (slices of a matrix).
    slider : Slider or None
        The index slider (interactive backends, or ``slider=True``).
    mode, index : int
        The mode sliced and the slice shown.
    """

    figure: Figure
    axes: list[Axes]
    artists: list[Any]
    slider: Slider | None
    mode: int
    index: int
    _cubes: tuple[np.ndarray, ...] = field(repr=False, default=())
    _dec: FactorView | None = field(repr=False, default=None)

    def slices(self, index: int) -> tuple[np.ndarray, ...]:
        """Data, model and residual of slice ``index`` (NaN at missing entries).

        A slice of more than two modes is unfolded to a matrix (C order).
        """
        out = (np.take(c, index, axis=self.mode) for c in self._cubes)
        return tuple(v.reshape(v.shape[0], -1) if v.ndim > 2 else v for v in out)

    def set_index(self, index: int) -> None:
        """Show slice ``index`` of ``mode`` (what the slider calls)."""
        n = self._cubes[0].shape[self.mode]
        if not (0 <= int(index) < n):
            raise ModelError(f"plot_slices: index must be in [0, {n}), got {index}")
        self.index = int(index)
        for art, ax, name, values in zip(self.artists, self.axes, _PANELS,
                                         self.slices(self.index)):
            if values.ndim == 1:
                art.set_ydata(values)
            else:
                art.set_data(np.ma.masked_invalid(values))
            ax.set_title(f"{name}: {_where(self._dec, self.mode, self.index)}")
        self.figure.canvas.draw_idle()


def _where(dec: FactorView | None, mode: int, index: int) -> str:
    assert dec is not None
    c = dec.coord(mode)[index]
    value = f"{c:.4g}" if isinstance(c, (float, np.floating)) else str(c)
    return f"{dec.mode_name(mode)} = {value}"


def _cmap(name: str) -> Colormap:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=_MISSING)


def _ticks(ax: Axes, dec: FactorView, n: int, axis: str) -> None:
    coord = dec.coord(n)
    step = max(1, len(coord) // 6)
    pos = np.arange(0, len(coord), step)
    labels = [f"{c:.3g}" if isinstance(c, (float, np.floating)) else str(c)
              for c in coord[pos]]
    label = dec.axis_label(n) if dec.dims is not None else f"mode {n}"
    if axis == "x":
        ax.set_xticks(pos, labels, rotation=45 if is_categorical(coord) else 0)
        ax.set_xlabel(label)
    else:
        ax.set_yticks(pos, labels)
        ax.set_ylabel(label)


def _value_label(dec: FactorView, what: str) -> str:
    """``what`` with the data's units (its ``units`` attribute), e.g. ``"value (counts)"``."""
    attrs = dec.data.attrs if dec.data is not None else {}
    unit = attrs.get("units", attrs.get("unit"))
    name = attrs.get("long_name") if what == "value" else None
    text = str(name) if name else what
    return f"{text} ({unit})" if unit else text


def _colorbar(ax: Axes, image: AxesImage, label: str, symmetric: bool) -> None:
    """A labelled colour bar with about five evenly spaced round ticks."""
    from matplotlib.ticker import MaxNLocator

    bar = ax.figure.colorbar(image, ax=ax, shrink=0.85)
    bar.locator = MaxNLocator(nbins=5, symmetric=symmetric, steps=[1, 2, 2.5, 5, 10])
    bar.update_ticks()
    bar.set_label(label)


def _draw_images(axes: Sequence[Axes], dec: FactorView, mode: int, views: Sequence[np.ndarray],
                 limits: tuple[float, float, float]) -> list[AxesImage]:
    lo, hi, rmax = limits
    rest = [n for n in range(dec.ndim) if n != mode]
    images = []
    for k, (ax, values) in enumerate(zip(axes, views)):
        resid = k == 2
        im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", interpolation="nearest",
                       cmap=_cmap("RdBu_r" if resid else "viridis"),
                       vmin=-rmax if resid else lo, vmax=rmax if resid else hi)
        _colorbar(ax, im, _value_label(dec, "data - model" if resid else "value"), resid)
        _ticks(ax, dec, rest[0], "y")
        if len(rest) == 2:
            _ticks(ax, dec, rest[1], "x")
        else:
            ax.set_xlabel(" × ".join(dec.mode_name(n) for n in rest[1:]) + " (C order)")
        images.append(im)
    return images


def _draw_lines(axes: Sequence[Axes], dec: FactorView, mode: int, views: Sequence[np.ndarray],
                limits: tuple[float, float, float]) -> list[Line2D]:
    lo, hi, rmax = limits
    other = 1 - mode
    coord = dec.coord(other)
    x = np.arange(len(coord)) if is_categorical(coord) else coord
    lines = []
    for k, (ax, values) in enumerate(zip(axes, views)):
        style: dict[str, Any] = {0: dict(marker="o", linestyle="none", color="C0"),
                 1: dict(color="C1"), 2: dict(marker=".", color="C3")}[k]
        (line,) = ax.plot(x, values, **style)  # NaN entries leave gaps
        ax.set_ylim(*((-1.05 * rmax, 1.05 * rmax) if k == 2 else
                      (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))))
        if is_categorical(coord):
            _ticks(ax, dec, other, "x")
        else:
            ax.set_xlabel(dec.dims[other] if dec.dims is not None else "index")
        lines.append(line)
    return lines


def _limits(D: np.ndarray, M: np.ndarray, R: np.ndarray) -> tuple[float, float, float]:
    both = np.concatenate([D[~np.isnan(D)], M[~np.isnan(M)]])
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    rmax = float(np.nanmax(np.abs(R))) if np.isfinite(R).any() else 1.0
    return lo, hi if hi > lo else lo + 1.0, rmax or 1.0


def plot_slices(
    source: object,
    *,
    data: object = None,
    term: str | None = None,
    mode: int = 0,
    index: int = 0,
    slider: bool | None = None,
    fig: Figure | None = None,
) -> SlicePlot:
    """Data, model and residual of one slice, side by side.

    The slice ``index`` of ``mode`` is drawn as an image (a slice of more than two modes is
    unfolded: first remaining mode down, the others across in C order), or as a curve for
    matrix data. Data and model share one colour scale and the residual
    ``data - model`` a symmetric one, both fixed over all slices so that slices compare.
    Missing entries are drawn in grey (gaps in curves). Axes are labelled with the dim
    names and coordinates.

    Parameters
    ----------
    source : Result or decomposition
        See :func:`sdf.viz.plot_factors`.
    data : array_like, xarray.DataArray or Tensor, optional
        The data (required unless ``source`` is an ``sdf.Result``); NaN marks missing.
    term : str, optional
        For Results: which term (default: the first data term).
    mode : int, default 0
        The mode whose slices are shown.
    index : int, default 0
        The slice shown first.
    slider : bool, optional
        Add an index slider; default: only when the backend is interactive.
    fig : Figure, optional

    Returns
    -------
    SlicePlot
        Call ``.set_index(i)`` to show another slice.

    Examples
    --------
    >>> import io, matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sdf.viz import plot_slices
    >>> rng = np.random.default_rng(0)
    >>> U = [rng.standard_normal((n, 2)) for n in (4, 5, 6)]
    >>> T = np.einsum("ir,jr,kr->ijk", *U)
    >>> T[0, 0, 0] = np.nan
    >>> sp = plot_slices(U, data=T, mode=0, index=0)
    >>> bool(sp.artists[0].get_array().mask[0, 0]), sp.slider is None
    (True, True)
    >>> sp.figure.savefig(io.BytesIO(), format="png")
    """
    dec = as_decomposition(source, term, data=data)
    mode = check_mode(mode, dec.ndim, "plot_slices")
    if dec.ndim < 2:
        raise ModelError("plot_slices: the data must have at least two modes")
    n = dec.shape[mode]
    if not (isinstance(index, (int, np.integer)) and 0 <= index < n):
        raise ModelError(f"plot_slices: index must be an int in [0, {n}) for mode {mode} "
                         f"({dec.mode_name(mode)}), got {index!r}")
    D, M = data_and_model(dec, "plot_slices")
    if np.iscomplexobj(D) or np.iscomplexobj(M):
        which = "data" if np.iscomplexobj(D) else "model"
        raise DataError(
            f"plot_slices: the {which} is complex, and a slice image shows one real value "
            "per entry; complex fits are drawn by plot_factors (magnitude and phase) and "
            "plot_residuals (moduli of the residuals)")
    cubes = (D, M, D - M)
    use_slider = interactive_backend() if slider is None else bool(slider)
    fig, grid = new_figure(fig, 1, 3, size=(12.0, 3.8 + 0.4 * use_slider))
    axes = list(grid[0])
    plot = SlicePlot(fig, axes, [], None, mode, int(index), cubes, dec)
    views = plot.slices(int(index))
    draw = _draw_lines if dec.ndim == 2 else _draw_images
    plot.artists = draw(axes, dec, mode, views, _limits(*cubes))
    for ax, name in zip(axes, _PANELS):
        ax.set_title(f"{name}: {_where(dec, mode, int(index))}")
    if use_slider:
        plot.slider = _add_slider(plot, n)
    return plot


def _add_slider(plot: SlicePlot, n: int) -> Slider:
    from matplotlib.layout_engine import ConstrainedLayoutEngine, TightLayoutEngine
    from matplotlib.widgets import Slider

    fig = plot.figure
    engine = fig.get_layout_engine()
    if isinstance(engine, (ConstrainedLayoutEngine, TightLayoutEngine)):
        engine.set(rect=(0, 0.08, 1, 0.92))  # room for the slider under the panels
    else:
        fig.subplots_adjust(bottom=0.2)
    sax = fig.add_axes((0.2, 0.015, 0.6, 0.035))
    s = Slider(sax, plot._dec.mode_name(plot.mode) if plot._dec else "index", 0, n - 1,
               valinit=plot.index, valstep=1)
    s.on_changed(lambda v: plot.set_index(int(v)))
    return s
