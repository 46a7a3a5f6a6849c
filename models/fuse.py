"""Coupled CPDs of named-dim data: data sets sharing a dim name share its factor."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import sdf
from sdf.errors import ModelError, SdfWarning
from sdf.losses import LossLike, as_loss
from sdf.solvers import MethodName

from sdf.models._common import (check_fit_options, check_int, check_number, make_rng,
                                random_array)
from sdf.models._result import StartRecord
from sdf._blas import with_one_blas_pool

__all__ = ["fuse", "fuse_model"]


def _check_data(data: Mapping[str, Any]) -> dict[str, int]:
    if not isinstance(data, Mapping) or not data:
        raise ModelError("fuse: data must be a non-empty dict {name: xarray.DataArray}")
    sizes: dict[str, int] = {}
    owner: dict[str, str] = {}
    coords: dict[str, np.ndarray] = {}
    for name, da in data.items():
        if not (hasattr(da, "dims") and hasattr(da, "sizes") and hasattr(da, "coords")):
            raise ModelError(
                f"fuse: data[{name!r}] must be an xarray.DataArray (its dims name the modes), "
                f"got {type(da).__name__}"
            )
        if len(set(da.dims)) != len(da.dims):
            raise ModelError(f"fuse: data[{name!r}] repeats a dim name {da.dims}")
        for dim in da.dims:
            n = int(da.sizes[dim])
            if dim in sizes and sizes[dim] != n:
                raise ModelError(
                    f"fuse: dim {dim!r} has {sizes[dim]} entries in {owner[dim]!r} "
                    f"but {n} in {name!r}"
                )
            if dim in da.coords:
                values = np.asarray(da.coords[dim].values)
                if dim in coords and not np.array_equal(coords[dim], values):
                    raise ModelError(
                        f"fuse: dim {dim!r} has different coordinates in {owner[dim]!r} "
                        f"and {name!r}; align the data sets first (xarray.align)"
                    )
                coords.setdefault(dim, values)
            sizes.setdefault(dim, n)
            owner.setdefault(dim, name)
    return sizes


def fuse_model(
    data: Mapping[str, Any],
    rank: int,
    *,
    transforms: Mapping[str, Callable[[Any], Any]] | None = None,
    relweights: Mapping[str, float] | None = None,
    init: Mapping[str, np.ndarray] | None = None,
    seed: int | np.random.Generator | None = None,
    losses: Mapping[str, LossLike] | None = None,
) -> sdf.Model:
    """The model :func:`fuse` fits: one variable per dim name, one CPD per data set.

    Parameters are those of :func:`fuse`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from sdf.models import fuse_model
    >>> X = xr.DataArray(np.ones((4, 5, 6)), dims=("mouse", "gene", "time"))
    >>> Y = xr.DataArray(np.ones((4, 3)), dims=("mouse", "lipid"))
    >>> fuse_model({"x": X, "y": Y}, rank=2, seed=0).variable_names
    ['mouse', 'gene', 'time', 'lipid']
    """
    sizes = _check_data(data)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ModelError(f"fuse: rank must be an integer >= 1, got {rank!r}")
    transforms = dict(transforms or {})
    init = dict(init or {})
    relweights = dict(relweights or {})
    losses = dict(losses or {})
    for label, mapping, known in (("transforms", transforms, sizes), ("init", init, sizes),
                                  ("relweights", relweights, data), ("losses", losses, data)):
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise ModelError(
                f"fuse: {label} names unknown "
                f"{'data set' if label in ('relweights', 'losses') else 'dim'}(s) "
                f"{', '.join(map(repr, unknown))} (known: {', '.join(map(str, known))})"
            )
    for name, weight in relweights.items():
        check_number(weight, f"fuse: relweights[{name!r}]")
    for dim, transform in transforms.items():
        if not callable(transform):
            raise ModelError(f"fuse: transforms[{dim!r}] must be callable (e.g. "
                             f"sdf.transforms.nonneg), got {type(transform).__name__}")
    rng = make_rng(seed)
    # Complex data need complex starts: the imaginary parts of real ones would stay zero.
    complex_data = any(np.iscomplexobj(da) for da in data.values())
    factors = {}
    for dim, n in sizes.items():
        start = (init[dim] if dim in init
                 else random_array((n, int(rank)), rng, complex=complex_data))
        var = sdf.Variable(start, name=dim)
        if var.shape != (n, rank):
            raise ModelError(f"fuse: init[{dim!r}] has shape {var.shape}, expected {(n, rank)}")
        factors[dim] = transforms[dim](var) if dim in transforms else var
    terms = {}
    for name, da in data.items():
        try:
            loss = as_loss(losses.get(name, "gaussian"), f"fuse: losses[{name!r}]")
        except ValueError as err:
            raise ModelError(str(err)) from None
        terms[name] = sdf.CPD(da, [factors[d] for d in da.dims],
                              relweight=relweights.get(name, 1.0), loss=loss)
    return sdf.Model(terms)


@with_one_blas_pool
def fuse(
    data: Mapping[str, Any],
    rank: int,
    *,
    transforms: Mapping[str, Callable[[Any], Any]] | None = None,
    relweights: Mapping[str, float] | None = None,
    init: Mapping[str, np.ndarray] | None = None,
    n_starts: int = 1,
    seed: int | np.random.Generator | None = None,
    method: MethodName = "nls",
    losses: Mapping[str, LossLike] | None = None,
    **fit_options: Any,
) -> sdf.Result:
    """Fit coupled CPDs to named-dim data sets; a dim name shared by data sets shares a factor.

    Every data set ``X_t`` (an ``xarray.DataArray``) is modelled as a rank-``rank`` CPD
    whose mode ``n`` factor is the variable named ``X_t.dims[n]``; the objective is the
    relative-weight sum of the data sets' mean squared errors (see :class:`sdf.Model`).

    Parameters
    ----------
    data : dict of str to xarray.DataArray
        The data sets by name; NaN entries are missing. Shared dims must have equal
        lengths and, where given, equal coordinates.
    rank : int
        Number of components.
    transforms : dict of str to callable, optional
        A transform (or chain) per dim name, e.g. ``{"emission": tf.nonneg}``.
    relweights : dict of str to float, optional
        Relative weight per data set (default 1 each).
    init : dict of str to ndarray, optional
        Initial values per dim name, each of shape ``(len(dim), rank)``.
    n_starts : int, default 1
        Number of starts: the first with ``init``, the others fully random (seeded); the
        fit of lowest objective is returned, every start listed in ``result.starts``
        (:class:`sdf.models.StartRecord`, ``relerr`` the root mean square of the data
        sets' relative errors).
    seed : int or numpy.random.Generator, optional
        Source of the random initial values of the dims not in ``init``.
    method : str, default "nls"
        Solver.
    losses : dict of str to loss, optional
        The loss of each data set by name (default ``"gaussian"``; see
        :mod:`sdf.losses`), e.g. ``{"trips": "poisson"}``. Starts stay random (or
        ``init``); :func:`sdf.models.cmtf` starts from the working data.
    **fit_options
        Passed to :meth:`sdf.Model.fit` (``max_iter``, ``tol_fun``, ``display``...).

    Returns
    -------
    sdf.Result
        The engine result; ``result.to_xarray()`` gives the factors with dims
        ``(dim, "component")`` and the original coordinates.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from sdf.models import fuse
    >>> rng = np.random.default_rng(0)
    >>> M, G, L = rng.random((8, 2)), rng.random((6, 2)), rng.random((5, 2))
    >>> gene = xr.DataArray(M @ G.T, dims=("mouse", "gene"))
    >>> lipid = xr.DataArray(M @ L.T, dims=("mouse", "lipid"))
    >>> result = fuse({"gene": gene, "lipid": lipid}, rank=2, seed=1)
    >>> sorted(result.to_xarray().data_vars)
    ['gene_factor', 'lipid_factor', 'mouse_factor']
    """
    check_fit_options(fuse, fit_options, method=method, options=fit_options.get("options"),
                      display=fit_options.get("display", 0), passed_to=[sdf.Model.fit])
    if check_int(n_starts, "n_starts") == 1:
        model = fuse_model(data, rank, transforms=transforms, relweights=relweights,
                           init=init, seed=seed, losses=losses)
        return model.fit(method=method, **fit_options)
    rng = make_rng(seed)
    best: sdf.Result | None = None
    records: list[StartRecord] = []
    for k in range(n_starts):
        t0 = time.perf_counter()
        model = fuse_model(data, rank, transforms=transforms, relweights=relweights,
                           init=init if k == 0 else None, seed=rng, losses=losses)
        with warnings.catch_warnings():  # the returned fit's warnings are issued below
            warnings.simplefilter("ignore", SdfWarning)
            res = model.fit(method=method, **fit_options)
        rms = float(np.sqrt(np.mean([r**2 for r in res.relerr.values()])))
        how = "given and random" if k == 0 and init else "random"
        records.append(StartRecord(k, how, rms, res.iterations, time.perf_counter() - t0,
                                   res.stop))
        if best is None or res.objective < best.objective:
            best = res
    assert best is not None
    best.starts = records
    for message in best.warnings:
        warnings.warn(message, SdfWarning, stacklevel=2)
    return best
