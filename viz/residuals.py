"""Residual diagnostics: distribution, per-slab (relative) errors and leverage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from sdf.errors import ModelError
from sdf.viz._common import (as_decomposition, check_mode, data_and_model, is_categorical,
                             leverage)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure

__all__ = ["ResidualKind", "ResidualPlot", "SlabError", "loss_residuals", "plot_residuals",
           "slab_errors", "slab_sse"]

#: How slabs are compared: ``||r_i|| / ||x_i||`` (relative) or ``||r_i||^2`` (absolute).
SlabError = Literal["relative", "absolute"]
#: Which residuals are drawn (see :func:`plot_residuals`).
ResidualKind = Literal["auto", "raw", "deviance", "pearson"]

_OK, _OUTLIER = "C0", "C3"


@dataclass
class ResidualPlot:
    """What :func:`plot_residuals` drew.

    Attributes
    ----------
    figure : Figure
    hist_ax, qq_ax, leverage_ax : Axes
        Histogram of the residuals, their normal QQ plot, leverage against slab error
        (for ``mode``).
    sse_axes : list of Axes
        Per mode, the error of every slab (``slab_error``).
    hist : BarContainer
        The histogram bars.
    residuals : ndarray, shape (n_known,)
        The residuals drawn at the known entries (C order): ``data - model``, or the
        deviance or Pearson residuals (``residual``).
    sse : list of ndarray, each of shape (I_n,)
        Per mode, the sum of squared residuals of every slab (over its known entries).
    leverage : ndarray, shape (I_mode,)
        ``diag(A (AᵀA)⁺ Aᵀ)`` of the factor of ``mode``.
    outliers : list of int ndarray
        Per mode, the slabs whose error (``errors``) exceeds
        ``median + 3 * 1.4826 * MAD`` (drawn red).
    errors : list of ndarray, each of shape (I_n,)
        Per mode, the slab errors drawn and screened: relative ``||r_i|| / ||x_i||``
        (NaN for an all-zero slab) or absolute ``||r_i||^2`` (the ``sse``).
    slab_error : {"relative", "absolute"}
    residual : {"raw", "deviance", "pearson"}
        Which residuals were drawn.
    """

    figure: Figure
    hist_ax: Axes
    qq_ax: Axes
    leverage_ax: Axes
    sse_axes: list[Axes]
    hist: BarContainer
    residuals: np.ndarray
    sse: list[np.ndarray]
    leverage: np.ndarray
    outliers: list[np.ndarray]
    errors: list[np.ndarray]
    slab_error: SlabError
    residual: str = "raw"


def loss_residuals(model: np.ndarray, data: np.ndarray, loss: Any,
                   kind: Literal["raw", "deviance", "pearson"]) -> np.ndarray:
    """Residuals of ``data`` under a loss at the model values ``model`` (same shape;
    NaN stays NaN).

    ``"raw"``: ``x - mu`` (``mu`` the mean the model stands for,
    :meth:`sdf.losses.Loss.mean`); ``"deviance"``: ``sign(x - mu) sqrt(2 ell(m, x))``
    (their squares add up to the deviance); ``"pearson"``: ``-ell'(m) / sqrt(c)`` with
    ``c`` the loss's curvature (``(x - mu) / sqrt(V(mu))`` for the built-in
    distributions, ``V`` their variance function).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.losses import Poisson
    >>> m, x = np.log(np.array([2.0, 2.0])), np.array([0.0, 4.0])
    >>> loss_residuals(m, x, Poisson(), "pearson").round(4).tolist()
    [-1.4142, 1.4142]
    >>> loss_residuals(m, x, Poisson(), "deviance").round(4).tolist()
    [-2.0, 1.2431]
    """
    from sdf.losses import as_loss

    the_loss = as_loss(loss, "loss")
    known = ~(np.isnan(model) | np.isnan(data))
    out = np.full(np.shape(model), np.nan)
    m, x = model[known], data[known]
    with np.errstate(all="ignore"):
        mu = np.asarray(the_loss.mean(m), dtype=float)
        if kind == "raw":
            out[known] = x - mu
        elif kind == "deviance":
            value = np.maximum(np.asarray(the_loss.value(m, x), dtype=float), 0.0)
            out[known] = np.sign(x - mu) * np.sqrt(2.0 * value)
        elif kind == "pearson":
            slope = np.asarray(the_loss.derivative(m, x), dtype=float)
            weight = np.asarray(the_loss.curvature(m, x), dtype=float)
            out[known] = np.where(weight > 0, -slope / np.sqrt(np.where(weight > 0, weight, 1.0)),
                                  0.0)
        else:
            raise ModelError(f"residual: expected 'raw', 'deviance' or 'pearson', got {kind!r}")
    return out


def _source_loss(source: object, term: str | None) -> Any:
    """The loss of the term drawn when ``source`` is a Result or a Decomposition."""
    result = source if hasattr(source, "model") and hasattr(source, "abserr") else \
        getattr(source, "result", None)
    model = getattr(result, "model", None)
    if model is None:
        return None
    terms = model.terms
    name = term if term is not None else next(
        (n for n, t in terms.items() if getattr(t, "is_data_term", False)), None)
    return getattr(terms.get(name), "loss", None) if name is not None else None


def slab_sse(residual: np.ndarray, mode: int) -> np.ndarray:
    """Sum of squared entries ``|r|^2`` of every mode-``mode`` slab, NaN entries skipped.

    Examples
    --------
    >>> import numpy as np
    >>> slab_sse(np.array([[1.0, np.nan], [2.0, 2.0]]), 0)
    array([1., 8.])
    """
    axes = tuple(k for k in range(residual.ndim) if k != mode)
    squares = np.abs(residual) ** 2  # |r|^2: complex residuals count by their modulus
    return np.nansum(squares, axis=axes) if axes else np.nan_to_num(squares)


def slab_errors(data: np.ndarray, residual: np.ndarray, mode: int,
                kind: SlabError = "relative") -> np.ndarray:
    """Error of every mode-``mode`` slab over its known (non-NaN) entries.

    ``"relative"``: ``||r_i|| / ||x_i||``, so a slab that is bright but fitted as well as
    the others does not stand out (NaN for an all-zero slab); ``"absolute"``: ``||r_i||^2``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[10.0, 10.0], [1.0, 1.0]])
    >>> R = np.array([[1.0, 1.0], [0.5, 0.5]])
    >>> slab_errors(X, R, 0).round(3).tolist(), slab_errors(X, R, 0, "absolute").tolist()
    ([0.1, 0.5], [2.0, 0.5])
    """
    if kind not in ("relative", "absolute"):
        raise ModelError(f"slab_error: expected 'relative' or 'absolute', got {kind!r}")
    sse = slab_sse(residual, mode)
    if kind == "absolute":
        return sse
    ss = slab_sse(np.where(np.isnan(residual), np.nan, data), mode)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss > 0, np.sqrt(sse / np.where(ss > 0, ss, 1.0)), np.nan)


def _outliers(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return np.zeros(0, dtype=int)
    med = np.median(finite)
    mad = 1.4826 * np.median(np.abs(finite - med))
    if mad <= 1e-12 * float(finite.max(initial=0.0)):  # most slabs fit exactly
        mad = 1e-6 * float(finite.max(initial=0.0))
    return (np.flatnonzero(np.nan_to_num(values, nan=-np.inf) > med + 3.0 * mad) if mad > 0
            else np.zeros(0, dtype=int))


def _normal_quantiles(n: int) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri((np.arange(1, n + 1) - 0.5) / n)


def _draw_qq(ax: Axes, res: np.ndarray) -> None:
    q = _normal_quantiles(res.size)
    ax.plot(q, np.sort(res), ".", markersize=3, color=_OK)
    sd = float(np.std(res)) or 1.0
    ax.plot(q[[0, -1]], float(np.mean(res)) + sd * q[[0, -1]], "--", color="0.4",
            linewidth=1)
    ax.set_xlabel("normal quantile")
    ax.set_ylabel("ordered residual")
    ax.set_title("normal QQ plot")


def _draw_rayleigh_qq(ax: Axes, modulus: np.ndarray) -> None:
    """Moduli of complex residuals against Rayleigh quantiles ``sqrt(-2 ln(1 - p))``: the
    modulus of circular complex Gaussian noise is Rayleigh distributed, so a straight line
    of slope ``sigma = sqrt(mean(|r|^2) / 2)`` means such noise."""
    n = modulus.size
    q = np.sqrt(-2.0 * np.log1p(-(np.arange(1, n + 1) - 0.5) / n))
    ax.plot(q, np.sort(modulus), ".", markersize=3, color=_OK)
    sigma = float(np.sqrt(np.mean(modulus**2) / 2.0)) if n else 1.0
    ax.plot(q[[0, -1]], sigma * q[[0, -1]], "--", color="0.4", linewidth=1)
    ax.set_xlabel("Rayleigh quantile")
    ax.set_ylabel("ordered |residual|")
    ax.set_title("Rayleigh QQ plot (complex)")


def _draw_sse(ax: Axes, sse: np.ndarray, out: np.ndarray, coord: np.ndarray,
              name: str, xlabel: str, ylabel: str) -> None:
    colors = np.full(sse.size, _OK, dtype=object)
    colors[out] = _OUTLIER
    if is_categorical(coord):
        pos = np.arange(sse.size)
        ax.bar(pos, sse, color=list(colors), width=0.85)
        step = max(1, sse.size // 12)
        ax.set_xticks(pos[::step], [str(c) for c in coord[::step]], rotation=45)
    else:  # bars at the coordinates, as wide as the closest spacing allows
        x = np.asarray(coord)
        gaps = np.diff(np.sort(x.astype(float))) if x.dtype.kind in "biuf" else np.empty(0)
        width = 0.85 * (float(np.min(gaps)) if len(gaps) and np.min(gaps) > 0 else 1.0)
        ax.bar(x, sse, color=list(colors), width=width if x.dtype.kind in "biuf" else 0.85)
    ax.set_title(f"slab error: {name}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def plot_residuals(
    source: object,
    *,
    data: object = None,
    term: str | None = None,
    mode: int = 0,
    slab_error: SlabError = "relative",
    bins: int | str = "auto",
    fig: Figure | None = None,
    residual: ResidualKind = "auto",
    loss: Any = None,
) -> ResidualPlot:
    """Residual diagnostics of a fitted decomposition.

    Top row: histogram and normal QQ plot of the residuals ``data - model`` over the
    known entries (complex residuals: histogram of their moduli ``|r|`` and a QQ plot
    against the Rayleigh distribution, which the modulus of circular complex Gaussian
    noise follows; slab errors use ``|r|^2``), and for ``mode`` the leverage ``diag(A (AᵀA)⁺ Aᵀ)`` of each slab
    against its error (influential slabs sit right, badly fitted ones high). Bottom row:
    the error of every slab of every mode, outliers (above
    ``median + 3 * 1.4826 * MAD``) in red. Slabs are compared by relative error
    ``||r_i|| / ||x_i||`` by default, so the flagged slabs are those the model explains
    badly, not the bright ones whose absolute residual is large only because they are
    large (``slab_error="absolute"`` ranks by the sum of squared residuals). Missing
    entries are left out everywhere. For the chemometric leverage / Q-residual view of
    every mode see :func:`sdf.viz.plot_influence`.

    Terms fitted with a non-Gaussian loss (:mod:`sdf.losses`) are drawn by default with
    their deviance residuals (``residual="deviance"``; ``"pearson"`` for Pearson
    residuals, ``"raw"`` for ``data - mean``; see :func:`loss_residuals`): the model's
    values are then on the link's scale (a log mean, a log-odds) and ``data - model``
    would mean nothing. Slabs are then compared by their sum of squared residuals (a
    slab's deviance, or its Pearson chi-square), whatever ``slab_error``.

    Parameters
    ----------
    source : Result or decomposition
        See :func:`sdf.viz.plot_factors`.
    data : array_like, xarray.DataArray or Tensor, optional
        The data (required unless ``source`` is an ``sdf.Result``); NaN marks missing.
    term : str, optional
        For Results: which term (default: the first data term).
    mode : int, default 0
        Mode of the leverage panel.
    slab_error : {"relative", "absolute"}, default "relative"
        How slabs are compared (see :func:`slab_errors`).
    bins : int or str, default "auto"
        Histogram bins (as ``numpy.histogram``).
    fig : Figure, optional
    residual : {"auto", "raw", "deviance", "pearson"}, default "auto"
        Which residuals: ``"auto"`` is ``"deviance"`` for a non-Gaussian loss, else
        ``data - model``.
    loss : str, dict or sdf.losses.Loss, optional
        The loss, when ``source`` is not a Result or a decomposition that carries it
        (default: the term's loss, else least squares).

    Returns
    -------
    ResidualPlot

    Examples
    --------
    >>> import io, matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sdf.viz import plot_residuals
    >>> rng = np.random.default_rng(0)
    >>> U = [rng.standard_normal((n, 2)) for n in (6, 7, 8)]
    >>> T = np.einsum("ir,jr,kr->ijk", *U) + 0.01 * rng.standard_normal((6, 7, 8))
    >>> rp = plot_residuals(U, data=T)
    >>> int(sum(p.get_height() for p in rp.hist)), len(rp.sse_axes)
    (336, 3)
    >>> rp.figure.savefig(io.BytesIO(), format="png")

    Counts fitted with the Poisson loss show deviance residuals:

    >>> from sdf.models import cpd
    >>> counts = rng.poisson(np.exp(0.5 * np.einsum("ir,jr,kr->ijk", *U))).astype(float)
    >>> rp = plot_residuals(cpd(counts, 2, loss="poisson", seed=0))
    >>> rp.residual, rp.hist_ax.get_xlabel()
    ('deviance', 'deviance residual')
    """
    from sdf.viz._common import pyplot

    if slab_error not in ("relative", "absolute"):
        raise ModelError(f"slab_error: expected 'relative' or 'absolute', got {slab_error!r}")
    if residual not in ("auto", "raw", "deviance", "pearson"):
        raise ModelError(f"plot_residuals: residual must be 'auto', 'raw', 'deviance' or "
                         f"'pearson', got {residual!r}")
    dec = as_decomposition(source, term, data=data)
    mode = check_mode(mode, dec.ndim, "plot_residuals")
    D, M = data_and_model(dec, "plot_residuals")
    the_loss = loss if loss is not None else _source_loss(source, term)
    gaussian = the_loss is None or _is_gaussian(the_loss)
    kind = ("raw" if gaussian else "deviance") if residual == "auto" else residual
    if gaussian and kind == "raw":
        R = D - M
    else:
        R = loss_residuals(M, D, "gaussian" if the_loss is None else the_loss, kind)
        if kind != "raw":
            slab_error = "absolute"
    known = ~np.isnan(R)
    res = R[known]
    shown = np.abs(res) if np.iscomplexobj(res) else res
    if fig is None:
        fig = pyplot().figure(figsize=(3.3 * max(3, dec.ndim), 6.0), layout="constrained")
    gs = fig.add_gridspec(2, 1)
    top_grid, bottom_grid = gs[0].subgridspec(1, 3), gs[1].subgridspec(1, dec.ndim)
    top = [fig.add_subplot(top_grid[0, k]) for k in range(3)]
    bottom = [fig.add_subplot(bottom_grid[0, k]) for k in range(dec.ndim)]
    _, _, bars = top[0].hist(shown, bins=bins, color=_OK)
    hist = cast("BarContainer", bars)  # one data set, histtype "bar": one BarContainer
    top[0].set_xlabel("|residual| (|data - model|)" if np.iscomplexobj(res) else
                      "residual (data - model)" if kind == "raw" else f"{kind} residual")
    top[0].set_ylabel("count")
    top[0].set_title(f"residuals ({res.size} known entries)")
    if np.iscomplexobj(res):
        _draw_rayleigh_qq(top[1], shown)
    else:
        _draw_qq(top[1], res)
    sse = [slab_sse(R, n) for n in range(dec.ndim)]
    errors = [slab_errors(D, R, n, slab_error) for n in range(dec.ndim)]
    outliers = [_outliers(e) for e in errors]
    ylabel = ("relative slab error" if slab_error == "relative"
              else "sum of squared residuals" if kind == "raw"
              else f"sum of squared {kind} residuals")
    for n, ax in enumerate(bottom):
        xlabel = dec.dims[n] if dec.dims is not None else "index"
        _draw_sse(ax, errors[n], outliers[n], dec.coord(n), dec.mode_name(n), xlabel, ylabel)
    lev = leverage(dec.factors[mode])
    colors = np.full(lev.size, _OK, dtype=object)
    colors[outliers[mode]] = _OUTLIER
    top[2].scatter(lev, errors[mode], c=list(colors), s=14)
    for i in outliers[mode]:
        top[2].annotate(str(dec.coord(mode)[i]), (lev[i], errors[mode][i]), fontsize="small")
    top[2].set_xlabel(f"leverage ({dec.mode_name(mode)})")
    top[2].set_ylabel(ylabel)
    top[2].set_title(f"influence: {dec.mode_name(mode)}")
    return ResidualPlot(fig, top[0], top[1], top[2], bottom, hist, res, sse, lev, outliers,
                        errors, slab_error, kind)


def _is_gaussian(loss: Any) -> bool:
    from sdf.losses import as_loss

    try:
        return bool(as_loss(loss, "plot_residuals: loss").is_gaussian)
    except ValueError as err:
        raise ModelError(str(err)) from None
