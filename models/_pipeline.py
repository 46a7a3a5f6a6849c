"""The compress -> fit on the core -> decompress -> refine pipeline shared by the drivers.

A decomposition's inputs are a flat list of arrays; ``modes[k]`` says which data mode
input ``k``'s rows run over (``None`` for cores). Compression by a truncated MLSVD
``T ≈ S x_n U_n`` (orthonormal ``U_n``, unitary columns for complex data) maps an input
``A`` on mode ``n`` to ``U_n^H A`` and back by ``U_n A``; cores are left as they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import sdf
from sdf.decomp import MLSVDResult, mlsvd, mlsvd_rsi
from sdf.errors import DataError
from sdf.numerics import SCALE_THRESHOLD
from sdf.result import Result
from sdf.tensors import Tensor

from sdf.models._common import Timer, engine_fit, quiet, stage_from
from sdf.models._progress import fit_heading
from sdf.models._result import Stage

__all__ = ["Fit", "MAX_DENSIFY", "compress_data", "dense_standin", "expand", "project",
           "run_fits"]

#: Makes the data term of a driver from the data (or its MLSVD core) and the variables.
Builder = Callable[[Tensor | np.ndarray, list[sdf.Variable]], sdf.Term]
_COMPRESS_RATIO = 0.5
#: Entries up to which data not held as an array are expanded for algebraic starts.
MAX_DENSIFY = 20_000_000


def dense_standin(X: Tensor) -> tuple[np.ndarray | None, bool]:
    """A dense array standing in for the data in algebraic starts (MLSVD, GEVD), and
    whether it is exact.

    Dense data give their array; sparse and factored data are expanded; data with missing
    entries give the known entries with zeros elsewhere, scaled by ``size / known`` (an
    unbiased estimate of the projections). None when the data are larger than
    :data:`MAX_DENSIFY` entries or cannot be expanded.
    """
    array = X.dense_view()
    if array is not None:
        return array, True
    if X.size > MAX_DENSIFY:
        return None, False
    try:
        D = X.to_dense()
    except DataError:  # a data kind that cannot be expanded
        return None, False
    if X.known_entries() is not None:
        return np.nan_to_num(D, nan=0.0) * (X.size / max(X.n_known, 1)), False
    return D, True


def compress_data(X: Tensor, core_shape: Sequence[int], compress: object, timer: Timer,
                  stages: list[Stage], rng: np.random.Generator | None = None
                  ) -> MLSVDResult | None:
    """Truncated MLSVD of fully known data to ``core_shape`` when asked or when it pays.

    Dense arrays get the MLSVD; data read from chunks in passes (a Tensor with the
    ``out_of_core`` capability, e.g. dask or zarr data) the randomized MLSVD
    (:func:`sdf.decomp.mlsvd_rsi`, four passes, seeded by ``rng``).
    """
    from sdf.errors import ModelError

    if compress not in ("auto", True, False):
        raise ModelError(f"compress: expected 'auto', True or False, got {compress!r}")
    if compress is False:
        return None
    array = X.dense_view()
    in_passes = array is None and X.out_of_core and X.n_known == X.size
    if array is None and not in_passes:
        if compress is True:
            raise ModelError(f"compress: only fully known dense data can be compressed, got "
                             f"{X.kind} data; use compress='auto' or False")
        return None
    shape = tuple(int(min(I, R)) for I, R in zip(X.shape, core_shape))
    if compress == "auto" and math.prod(shape) > _COMPRESS_RATIO * X.size:
        return None
    if array is not None:
        ml, how = mlsvd(array, core_shape=shape), "MLSVD"
    else:
        ml, how = mlsvd_rsi(X, shape, seed=rng), "randomized MLSVD (4 passes)"
    # The truncation error, in units where the sums of squares stay in range.
    e = X.scale_exponent() if abs(X.scale_exponent()) > SCALE_THRESHOLD else 0
    total = X.scaled(-e).norm_squared() if e else X.norm_squared()
    kept = float(sum(np.sum(np.square(np.ldexp(part, -e)))  # complex: both parts
                     for part in (ml.core.real, np.imag(ml.core))))
    trunc = float(np.sqrt(max(total - kept, 0.0) / total)) if total > 0 else 0.0
    stages.append(Stage("compress", f"{how} to core {shape}", 0, timer.lap(), trunc))
    return ml


def project(values: Sequence[np.ndarray], modes: Sequence[int | None],
            ml: MLSVDResult) -> list[np.ndarray]:
    """Inputs at the data's size -> at the core's size (``U_n^H A``)."""
    return [np.array(A) if n is None else ml.factors[n].conj().T @ A
            for A, n in zip(values, modes)]


def expand(values: Sequence[np.ndarray], modes: Sequence[int | None],
           ml: MLSVDResult) -> list[np.ndarray]:
    """Inputs at the core's size -> at the data's size (``U_n A``)."""
    return [np.array(A) if n is None else ml.factors[n] @ A for A, n in zip(values, modes)]


class Fit:
    """Outcome of :func:`run_fits`: final values (data level), engine result, stages."""

    def __init__(self, values: list[np.ndarray], result: Result) -> None:
        self.values = values
        self.result = result


def _fit_level(data: Tensor | np.ndarray, start: Sequence[np.ndarray], names: Sequence[str],
               build: Builder, settings: dict[str, Any],
               callback: Callable[[sdf.IterationInfo], Any] | None, evaluate_only: bool = False
               ) -> tuple[list[np.ndarray], Result]:
    variables = [sdf.Variable(np.array(A), name=nm) for A, nm in zip(start, names)]
    res = engine_fit(sdf.Model(data=build(data, variables)), settings["method"],
                     settings["options"], settings["fit_options"], settings["display"],
                     callback, evaluate_only)
    return [res.variables[nm] for nm in names], res


def run_fits(X: Tensor, start: Sequence[np.ndarray], modes: Sequence[int | None],
             names: Sequence[str], build: Builder, ml: MLSVDResult | None,
             settings: dict[str, Any], timer: Timer, stages: list[Stage],
             what: str, evaluate_only: bool = False) -> Fit:
    """Fit on the core (when ``ml``; ``start`` is then at the core's size), expand, refine.

    ``settings`` holds ``method``, ``options``, ``fit_options``, ``display`` and
    ``callback`` (the latter used for the fit on the data only). With ``evaluate_only``
    the fit on the data only evaluates the start (see ``engine_fit``).
    """
    if ml is not None:
        fit_heading(settings["display"], f"{what} of the {ml.core.shape} core")
        with quiet():
            core_vals, core_res = _fit_level(ml.core, start, names, build, settings, None)
        stages.append(stage_from("core", f"{what} of the {ml.core.shape} core", core_res,
                                 timer.lap(), "data"))
        start = expand(core_vals, modes, ml)
    if ml is not None:
        fit_heading(settings["display"], f"{what} of the {X.kind} data (refinement)")
    values, res = _fit_level(X, start, names, build, settings, settings["callback"],
                             evaluate_only)
    stages.append(stage_from("evaluate" if evaluate_only else
                             "refine" if ml is not None else "fit",
                             f"{what} of the {X.kind} data", res, timer.lap(), "data"))
    return Fit(values, res)
