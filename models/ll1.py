"""Rank-(L, L, 1) decomposition driver: compress, fit the core, refine.

The pipeline of :func:`sdf.models.cpd` with the engine's :class:`sdf.LL1` term: dense data
are compressed by a truncated MLSVD to ``(min(I, sum L), min(J, sum L), min(K, R))`` when
that halves the data at least, the LL1 decomposition of the core is fitted from a random
(seeded, drawn at the data's size and projected) or given start, expanded and refined on
the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

import sdf
from sdf.errors import ModelError
from sdf.solvers import MethodName

from sdf.models._common import (Timer, as_data, check_fit_options, check_int, labels_of,
                                make_rng, random_factors, user_factors)
from sdf.models._pipeline import compress_data, project, run_fits
from sdf.models._result import Decomposition, Stage

__all__ = ["ll1"]


def ll1(
    data: object,
    L: int | Sequence[int],
    *,
    rank: int | None = None,
    init: Literal["random"] | list[np.ndarray] = "random",
    seed: int | np.random.Generator | None = None,
    method: MethodName = "nls",
    compress: Literal["auto"] | bool = "auto",
    display: int = 0,
    callback: Callable[[sdf.IterationInfo], Any] | None = None,
    options: sdf.NLSOptions | sdf.MinfOptions | None = None,
    **fit_options: Any,
) -> Decomposition:
    r"""Decomposition in rank-(L_r, L_r, 1) terms ``T ≈ sum_r (A_r B_r^T) o c_r``.

    Parameters
    ----------
    data : array_like, scipy.sparse, xarray.DataArray or Tensor, third-order
        NaN entries are missing.
    L : int or sequence of int
        ``L_r`` per term; an int with ``rank`` gives ``rank`` terms of that size.
    rank : int, optional
        Number of terms when ``L`` is an int (default 1).
    init : "random" or list [A, B, C], default "random"
        ``A`` (I, sum L), ``B`` (J, sum L), ``C`` (K, R).
    seed : int or numpy.random.Generator, optional
    method : str, default "nls"
    compress : {"auto", True, False}, default "auto"
    display : int, default 0
    callback : callable, optional
        Called after every iteration of the fit on the data.
    options : sdf.NLSOptions or sdf.MinfOptions, optional
        Settings of both fits; ``**fit_options`` override single fields.

    Returns
    -------
    Decomposition
        ``factors`` ``[A, B, C]``; ``L`` the term sizes ``L_r``. Each ``A_r B_r^T`` is
        unique only as a matrix: compare column spaces.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models import ll1
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = rng.standard_normal((8, 3)), rng.standard_normal((7, 3)), rng.standard_normal((6, 2))
    >>> T = np.einsum("ir,jr,kr->ijk", A, B, C[:, [0, 0, 1]])
    >>> dec = ll1(T, [2, 1], seed=0)
    >>> [F.shape for F in dec.factors], bool(dec.relerr < 1e-6)
    ([(8, 3), (7, 3), (6, 2)], True)
    """
    check_fit_options(ll1, fit_options, method=method, options=options, display=display)
    X = as_data(data, min_order=3)
    if X.ndim != 3:
        raise ModelError(f"data: an LL1 decomposition needs third-order data, got {X.ndim} modes")
    if isinstance(L, (int, np.integer)) and not isinstance(L, bool):
        Ls = [check_int(L, "L")] * (1 if rank is None else check_int(rank, "rank"))
    elif isinstance(L, Sequence) and L:
        if rank is not None and rank != len(L):
            raise ModelError(f"rank: {rank} does not match the {len(L)} sizes in L")
        Ls = [check_int(x, f"L[{r}]") for r, x in enumerate(L)]
    else:
        raise ModelError(f"L: expected an int or a non-empty list of ints, got {L!r}")
    total, R = sum(Ls), len(Ls)
    cols = [total, total, R]
    rng = make_rng(seed)
    timer = Timer()
    stages: list[Stage] = []
    if isinstance(init, str):
        if init != "random":
            raise ModelError(f"init: expected 'random' or a list [A, B, C], got {init!r}")
        start, how = random_factors(X.shape, cols, rng, complex=X.is_complex), "random"
    else:
        start, how = user_factors(init, X.shape, cols), "given"
    ml = compress_data(X, cols, compress, timer, stages)
    if ml is not None:
        start = project(start, range(3), ml)
        how += ", projected on the MLSVD bases"
    stages.append(Stage("init", how, 0, timer.lap()))
    labels = labels_of(X)
    settings = dict(method=method, options=options, fit_options=fit_options,
                    display=display, callback=callback)
    fit = run_fits(X, start, range(3), labels, lambda d, v: sdf.LL1(d, v, Ls), ml, settings,
                   timer, stages, "LL1")
    relerr = float(fit.result.relerr["data"])
    return Decomposition(kind="LL1", factors=fit.values, relerr=relerr,
                         history=fit.result.history, result=fit.result, stages=stages,
                         relerrs={"data": relerr}, labels=labels, L=Ls)
