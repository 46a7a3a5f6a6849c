"""Low multilinear rank approximation driver: MLSVD -> HOOI -> Gauss-Newton.

``T ≈ S x_0 U_0 x_1 U_1 ... x_{N-1} U_{N-1}`` with a core ``S`` of shape
``(R_0, ..., R_{N-1})``.

1. **Start**: the truncated MLSVD (:func:`sdf.decomp.mlsvd`) of the data (of the
   zero-filled data divided by the fraction known, for incomplete data; the randomized
   :func:`sdf.decomp.mlsvd_rsi`, four passes, for fully known data read in chunks such as
   dask or zarr arrays, which are never expanded), random orthonormal bases, or given
   factors.
2. **HOOI** (:func:`sdf.decomp.lmlra_hooi`, fully known data only): alternating
   subspace updates, the standard algorithm for dense data, until the fit
   ``1 - relerr^2`` changes by at most 1e-10 in a sweep (the first sweep is compared
   with the start's fit, so a start already at the optimum costs one sweep). From the
   MLSVD start, HOOI computes the MLSVD itself and its first sweep reuses the MLSVD's
   partial products (``compare_start``); the two are timed as one stage.
3. **Gauss-Newton** with the engine's :class:`sdf.LMLRA` term, on the data: the actual
   fit for incomplete data (where HOOI does not apply) and after a HOOI that did not
   converge within ``hooi_max_iter`` sweeps. After a converged HOOI on fully known data
   (a stationary point of the same objective) the engine only evaluates the solution:
   stage ``"evaluate"``, 0 iterations, stop reason ``TOL_FUN``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

import sdf
from sdf import algebra
from sdf.decomp import lmlra_hooi, mlsvd, mlsvd_rsi
from sdf.errors import ModelError
from sdf.solvers import MethodName
from sdf.tensors import Tensor

from sdf.models._common import (Timer, as_data, check_fit_options, check_int, labels_of,
                                make_rng, random_array, user_factors)
from sdf.models._pipeline import dense_standin, run_fits
from sdf.models._result import Decomposition, Stage
from sdf.models._starts import best_of_starts
from sdf._blas import with_one_blas_pool

__all__ = ["lmlra"]



def _core_shape(X: Tensor, core_shape: object) -> list[int]:
    if isinstance(core_shape, (int, np.integer)) and not isinstance(core_shape, bool):
        core_shape = [int(core_shape)] * X.ndim
    if isinstance(core_shape, np.ndarray):
        core_shape = core_shape.tolist()
    if not isinstance(core_shape, Sequence) or len(core_shape) != X.ndim:
        raise ModelError(f"core_shape: expected {X.ndim} sizes (one per mode), "
                         f"got {core_shape!r}")
    out = [check_int(R, f"core_shape[{n}]") for n, R in enumerate(core_shape)]
    for n, (R, I) in enumerate(zip(out, X.shape)):
        if R > I:
            raise ModelError(f"core_shape[{n}]: {R} exceeds the size {I} of mode {n}")
    return out


def _start(X: Tensor, D: np.ndarray | None, ranks: list[int], init: object,
           rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, str]:
    """Starting factors and core, and how they were made."""
    if isinstance(init, str):
        if init not in ("auto", "random"):
            raise ModelError(f"init: expected 'auto', 'random' or a list of factors, got "
                             f"{init!r}")
        if init == "auto" and D is not None:
            ml = mlsvd(D, core_shape=ranks)
            return list(ml.factors), ml.core, "MLSVD"
        if init == "auto" and X.out_of_core and X.known_entries() is None:
            ml = mlsvd_rsi(X, ranks, seed=rng)
            return list(ml.factors), ml.core, "randomized MLSVD (4 passes)"
        U = [np.linalg.qr(random_array((I, R), rng, complex=X.is_complex))[0]
             for I, R in zip(X.shape, ranks)]
        how = "random orthonormal"
    else:
        U = user_factors(init, X.shape, ranks)
        how = "given"
    if D is not None:
        core = algebra.tmprod(D, [np.linalg.pinv(A) for A in U])
    elif X.known_entries() is None and all(np.allclose(A.conj().T @ A, np.eye(A.shape[1]))
                                           for A in U):
        # The least-squares core for orthonormal bases, S = T x_n U_n^H: one pass.
        core = X.project([A.conj() for A in U])
    else:
        core = random_array(ranks, rng, complex=X.is_complex)
    return U, core, how


@with_one_blas_pool
def lmlra(
    data: object,
    core_shape: int | Sequence[int],
    *,
    init: Literal["auto", "random"] | list[np.ndarray] = "auto",
    n_starts: int = 1,
    seed: int | np.random.Generator | None = None,
    hooi_max_iter: int = 50,
    method: MethodName = "nls",
    display: int = 0,
    callback: Callable[[sdf.IterationInfo], Any] | None = None,
    options: sdf.NLSOptions | sdf.MinfOptions | None = None,
    **fit_options: Any,
) -> Decomposition:
    r"""Low multilinear rank (Tucker) approximation ``T ≈ S x_0 U_0 ... x_{N-1} U_{N-1}``.

    Minimises ``||T - S x_n U_n||^2`` over the known entries by MLSVD -> HOOI ->
    Gauss-Newton (see the module docstring).

    Parameters
    ----------
    data : array_like, scipy.sparse, xarray.DataArray or Tensor
        Anything :func:`sdf.tensors.as_tensor` accepts, order >= 2; NaN = missing.
    core_shape : int or sequence of int
        Multilinear rank ``(R_0, ..., R_{N-1})`` (an int: the same for every mode).
    init : {"auto", "random"} or list of ndarray, default "auto"
        ``"auto"``: truncated MLSVD; ``"random"``: random orthonormal bases; a list:
        factors ``(I_n, R_n)`` (the starting core is then the least-squares one).
    n_starts : int, default 1
        Number of starts: ``init``, then random ones (seeded by ``seed``); the fit with
        the lowest error is returned, every start is listed in its ``starts``
        (:meth:`Decomposition.starts_table`).
    seed : int or numpy.random.Generator, optional
    hooi_max_iter : int, default 50
        HOOI sweeps on fully known data (0 skips HOOI).
    method : str, default "nls"
        Engine solver of the final fit (see the module docstring for when it runs).
    display : int, default 0
        Print the engine's iteration table every ``display`` iterations.
    callback : callable, optional
        Called with an :class:`sdf.IterationInfo` after every engine iteration.
    options : sdf.NLSOptions or sdf.MinfOptions, optional
        Settings of the engine fit; ``**fit_options`` override single fields.

    Returns
    -------
    Decomposition
        ``factors`` ``[U_0, ..., U_{N-1}]`` (orthonormal after HOOI; the Gauss-Newton
        polish keeps the product, not the orthonormality), ``core``, ``relerr``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import tucker_to_tensor
    >>> from sdf.models import lmlra
    >>> rng = np.random.default_rng(0)
    >>> U = [rng.standard_normal((n, 2)) for n in (8, 7, 6)]
    >>> T = tucker_to_tensor(U, rng.standard_normal((2, 2, 2)))
    >>> dec = lmlra(T, (2, 2, 2))
    >>> dec.core.shape, bool(dec.relerr < 1e-8)
    ((2, 2, 2), True)
    """
    check_fit_options(lmlra, fit_options, method=method, options=options, display=display)
    X = as_data(data)
    ranks = _core_shape(X, core_shape)
    hooi_max_iter = check_int(hooi_max_iter, "hooi_max_iter", low=0)
    if check_int(n_starts, "n_starts") > 1:
        def one(k: int, rng: np.random.Generator) -> Decomposition:
            return lmlra(X, ranks, init=init if k == 0 else "random", seed=rng,
                         hooi_max_iter=hooi_max_iter, method=method, display=display,
                         callback=callback, options=options, **fit_options)
        return best_of_starts(one, n_starts, make_rng(seed))
    rng = make_rng(seed)
    timer = Timer()
    stages: list[Stage] = []
    # Data read in passes (dask, zarr) are never expanded: randomized MLSVD, then
    # Gauss-Newton, each iteration a pass or two.
    D, exact = (None, False) if X.out_of_core else dense_standin(X)
    converged = False
    if exact and D is not None and hooi_max_iter > 0:
        if isinstance(init, str) and init == "auto":
            # HOOI makes the MLSVD itself and its first sweep reuses the MLSVD's partial
            # products: one stage's time for both.
            stages.append(Stage("init", "MLSVD (timed in the hooi stage)", 0, timer.lap()))
            hooi = lmlra_hooi(D, ranks, max_iter=hooi_max_iter, compare_start=True)
        else:
            U, core, how = _start(X, D, ranks, init, rng)
            stages.append(Stage("init", how, 0, timer.lap()))
            hooi = lmlra_hooi(D, ranks, init=U, max_iter=hooi_max_iter, compare_start=True)
        U, core, converged = list(hooi.factors), hooi.core, hooi.converged
        stages.append(Stage("hooi", "higher-order orthogonal iteration", hooi.iterations,
                            timer.lap(), hooi.relerr))
    else:
        U, core, how = _start(X, D, ranks, init, rng)
        stages.append(Stage("init", how, 0, timer.lap()))
    labels = labels_of(X)
    names = [*labels, "core"]
    settings = dict(method=method, options=options, fit_options=fit_options,
                    display=display, callback=callback)
    fit = run_fits(X, [*U, core], [*range(X.ndim), None], names,
                   lambda data, v: sdf.LMLRA(data, v[:-1], v[-1]), None, settings, timer,
                   stages, "LMLRA", evaluate_only=converged and X.dense_view() is not None)
    relerr = float(fit.result.relerr["data"])
    return Decomposition(kind="LMLRA", factors=fit.values[:-1], core=fit.values[-1],
                         relerr=relerr, history=fit.result.history, result=fit.result,
                         stages=stages, relerrs={"data": relerr}, labels=labels)
