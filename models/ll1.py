"""Rank-(L, L, 1) decomposition driver: compress, fit the core, refine.

The pipeline of :func:`sdf.models.cpd` with the engine's :class:`sdf.LL1` term: dense data
are compressed by a truncated MLSVD to ``(min(I, sum L), min(J, sum L), min(K, R))`` when
that halves the data at least, the LL1 decomposition of the core is fitted from a start,
expanded and refined on the data.

The start (``init="auto"``) is algebraic where the sizes allow: the GEVD of
:func:`sdf.block_gevd.ll1_gevd` (Tensorlab's ``ll1_gevd``: ``sum L <= I, J`` and
``K >= 2``), computed on the MLSVD core when compressed, else on the data (incomplete
data: the zero-filled data scaled by the fraction known). It is exact on noise-free data
with generic factors, where random starts often end in a local minimum. Otherwise the
start is random (seeded, drawn at the data's size and projected). ``n_starts > 1`` adds
random starts and keeps the best fit; every start is listed in
:attr:`~sdf.models.Decomposition.starts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

import sdf
from sdf.decomp import MLSVDResult
from sdf.errors import ModelError
from sdf.solvers import MethodName
from sdf.tensors import Tensor

from sdf.block_gevd import ll1_gevd, ll1_gevd_applies
from sdf.models._common import (Timer, as_data, check_fit_options, check_int, labels_of,
                                make_rng, random_factors, user_factors)
from sdf.models._pipeline import compress_data, dense_standin, project, run_fits
from sdf.models._result import Decomposition, Stage
from sdf.models._starts import best_of_starts
from sdf._blas import with_one_blas_pool

__all__ = ["ll1"]


@with_one_blas_pool
def ll1(
    data: object,
    L: int | Sequence[int],
    *,
    rank: int | None = None,
    init: Literal["auto", "gevd", "random"] | list[np.ndarray] = "auto",
    n_starts: int = 1,
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
    init : {"auto", "gevd", "random"} or list [A, B, C], default "auto"
        ``"auto"``: the GEVD start where it applies (see the module docstring), else
        random; ``"gevd"`` insists (an error where it does not apply). Given factors:
        ``A`` (I, sum L), ``B`` (J, sum L), ``C`` (K, R).
    n_starts : int, default 1
        Number of starts: ``init``, then random ones (seeded); the fit with the lowest
        error is returned, every start is listed in its ``starts``.
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
    n_starts = check_int(n_starts, "n_starts")
    if isinstance(init, str) and init not in ("auto", "gevd", "random"):
        raise ModelError(f"init: expected 'auto', 'gevd', 'random' or a list [A, B, C], "
                         f"got {init!r}")
    if n_starts > 1:
        def one(k: int, rng: np.random.Generator) -> Decomposition:
            return ll1(X, Ls, init=init if k == 0 else "random", seed=rng, method=method,
                       compress=compress, display=display, callback=callback,
                       options=options, **fit_options)
        return best_of_starts(one, n_starts, make_rng(seed))
    cols = [total, total, R]
    rng = make_rng(seed)
    timer = Timer()
    stages: list[Stage] = []
    ml = compress_data(X, cols, compress, timer, stages)
    if not isinstance(init, str):
        start, how = user_factors(init, X.shape, cols), "given"
        if ml is not None:
            start, how = project(start, range(3), ml), "given, projected on the MLSVD bases"
    else:
        start, how = _start(X, Ls, init, ml, rng)
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


def _start(X: Tensor, Ls: list[int], init: str, ml: MLSVDResult | None,
           rng: np.random.Generator) -> tuple[list[np.ndarray], str]:
    """The start asked for by name, at the core's size when compressed."""
    total, R = sum(Ls), len(Ls)
    if init != "random":
        if ml is not None and ll1_gevd_applies(ml.core.shape, Ls):
            return ll1_gevd(ml.core, Ls, seed=rng), "gevd of the MLSVD core"
        dense = dense_standin(X)[0]
        if dense is not None and ll1_gevd_applies(dense.shape, Ls):
            start = ll1_gevd(dense, Ls, seed=rng)
            return (start, "gevd of the data") if ml is None else (
                project(start, range(3), ml), "gevd of the data, projected on the MLSVD bases")
        if init == "gevd":
            raise ModelError(
                f"init: the GEVD start needs sum(L) = {total} <= the first two sizes and at "
                f"least 2 in the third, and data that fit in memory; got shape {X.shape}. "
                "Use init='auto' or 'random'")
    start = random_factors(X.shape, [total, total, R], rng, complex=X.is_complex)
    if ml is not None:
        return project(start, range(3), ml), "random, projected on the MLSVD bases"
    return start, "random"
