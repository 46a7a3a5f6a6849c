"""Figures that explain a fit: factors, residuals, slices, convergence and model choice.

Every function takes ``ax=None`` or ``fig=None`` (a new pyplot figure by default), returns
a small dataclass holding the figure, the axes and the artists it drew, and never calls
``plt.show()``. matplotlib is imported only when a function runs, so ``import sdf.viz``
stays light. Inputs: an ``sdf.Result`` (``term=`` picks the term), a list of factor
matrices, an ``sdf.tensors.CPDTensor``/``TuckerTensor``, an ``xarray.Dataset`` of factors
(``result.to_xarray()``), or a :class:`sdf.models.Decomposition` of any driver; data as numpy
(NaN = missing), ``xarray.DataArray`` or ``sdf.tensors.Tensor``.

==============================  ============================================================
:func:`plot_factors`            one panel per mode; Tucker core heatmap; models compared
:func:`plot_residuals`          histogram, QQ plot, per-slab relative errors, leverage
                                (deviance or Pearson residuals for non-Gaussian losses)
:func:`plot_influence`          leverage against Q residual per mode, outliers labelled
:func:`plot_slices`             data / model / residual of a slice, with a slider
:func:`plot_convergence`        objective, per-term errors, CG iterations, trust radius
                                (a driver's stages on one time axis)
:func:`plot_rankest`            error against rank, every start, choice and runner-up
:func:`plot_starts`             final error of every start of a driver (``n_starts``)
:func:`plot_core_consistency`   CORCONDIA against rank
:func:`plot_compression`        error against compression ratio per layer
==============================  ============================================================
"""

from sdf.viz._common import FactorView
from sdf.viz.convergence import ConvergencePlot, plot_convergence
from sdf.viz.diagnostics import (
    CompressionPlot,
    CurvePlot,
    plot_compression,
    plot_core_consistency,
    plot_rankest,
    plot_starts,
)
from sdf.viz.factors import FactorPlot, align_signs, normalize_columns, plot_factors
from sdf.viz.influence import InfluencePlot, plot_influence
from sdf.viz.residuals import ResidualKind, ResidualPlot, loss_residuals, plot_residuals
from sdf.viz.slices import SlicePlot, plot_slices

__all__ = [
    "CompressionPlot",
    "ConvergencePlot",
    "CurvePlot",
    "FactorPlot",
    "FactorView",
    "InfluencePlot",
    "ResidualKind",
    "ResidualPlot",
    "SlicePlot",
    "align_signs",
    "loss_residuals",
    "normalize_columns",
    "plot_compression",
    "plot_convergence",
    "plot_core_consistency",
    "plot_factors",
    "plot_influence",
    "plot_rankest",
    "plot_residuals",
    "plot_slices",
    "plot_starts",
]
