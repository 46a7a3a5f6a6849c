"""Block term decomposition driver: compress, fit the core, refine.

It follows the pipeline of :func:`sdf.models.cpd` (see :mod:`sdf.models._pipeline`):
dense data are compressed by a truncated MLSVD to the sizes the model can use
(``min(I_n, sum of the blocks' sizes in mode n)``) when that halves the data at least,
the decomposition of the small core is fitted from a start, expanded with the MLSVD bases
and refined on the data with the engine's :class:`sdf.BTD` term.

The start (``init="auto"``) is algebraic where the sizes allow: third-order data whose
blocks have cores ``(L_r, L_r, N_r)`` with ``sum L_r <= I, J`` and ``K >= 2`` get the
GEVD of :func:`sdf.block_gevd.btd_gevd` (on the MLSVD core when compressed); otherwise it
is random (seeded, drawn at the data's size and projected). ``n_starts > 1`` adds random
starts and keeps the best fit; every start is listed in
:attr:`~sdf.models.Decomposition.starts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

import sdf
from sdf.block_gevd import btd_gevd, btd_gevd_applies
from sdf.decomp import MLSVDResult
from sdf.errors import ModelError
from sdf.solvers import MethodName
from sdf.tensors import Tensor

from sdf.models._common import (Timer, as_data, check_fit_options, check_int, labels_of,
                                make_rng, random_array, random_factors, user_factors)
from sdf.models._pipeline import compress_data, dense_standin, project, run_fits
from sdf.models._result import Decomposition, Stage
from sdf.models._starts import best_of_starts
from sdf._blas import with_one_blas_pool

__all__ = ["btd"]


def _block_shapes(core_shapes: object, N: int, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    if isinstance(core_shapes, np.ndarray) or not isinstance(core_shapes, Sequence) \
            or not core_shapes:
        raise ModelError("core_shapes: expected a non-empty list of block core shapes, e.g. "
                         f"[(2, 2, 2), (3, 3, 1)], got {core_shapes!r}")
    out = []
    for b, cs in enumerate(core_shapes):
        if not isinstance(cs, Sequence) or len(cs) != N:
            raise ModelError(f"core_shapes[{b}]: expected {N} sizes (one per mode), got {cs!r}")
        sizes = tuple(check_int(R, f"core_shapes[{b}][{n}]") for n, R in enumerate(cs))
        for n, (R, I) in enumerate(zip(sizes, shape)):
            if R > I:
                raise ModelError(f"core_shapes[{b}][{n}]: {R} exceeds the size {I} of mode {n}")
        out.append(sizes)
    return out


def _given_blocks(init: object, shape: tuple[int, ...], cores: list[tuple[int, ...]]
                  ) -> list[np.ndarray]:
    if not isinstance(init, Sequence) or len(init) != len(cores):
        raise ModelError(f"init: expected {len(cores)} blocks (U_0, ..., U_{{N-1}}, S) or "
                         f"'random', got {type(init).__name__}")
    flat = []
    for b, (blk, cs) in enumerate(zip(init, cores)):
        if not isinstance(blk, Sequence) or len(blk) != len(shape) + 1:
            raise ModelError(f"init[{b}]: expected {len(shape)} factors and a core")
        flat += user_factors(blk[:-1], shape, cs, name=f"init[{b}]")
        S = np.array(blk[-1])
        S = S.astype(np.complex128 if np.iscomplexobj(S) else np.float64)
        if S.shape != cs:
            raise ModelError(f"init[{b}]: core of shape {cs} expected, got {S.shape}")
        flat.append(S)
    return flat


@with_one_blas_pool
def btd(
    data: object,
    core_shapes: Sequence[Sequence[int]],
    *,
    init: Literal["auto", "gevd", "random"] | list[Any] = "auto",
    n_starts: int = 1,
    seed: int | np.random.Generator | None = None,
    method: MethodName = "nls",
    compress: Literal["auto"] | bool = "auto",
    display: int = 0,
    callback: Callable[[sdf.IterationInfo], Any] | None = None,
    options: sdf.NLSOptions | sdf.MinfOptions | None = None,
    **fit_options: Any,
) -> Decomposition:
    r"""Block term decomposition ``T ≈ sum_b S_b x_0 U_{b,0} ... x_{N-1} U_{b,N-1}``.

    Parameters
    ----------
    data : array_like, scipy.sparse, xarray.DataArray or Tensor
        Anything :func:`sdf.tensors.as_tensor` accepts, order >= 2; NaN = missing.
    core_shapes : sequence of sequence of int
        The core shape ``(R_{b,0}, ..., R_{b,N-1})`` of every block.
    init : {"auto", "gevd", "random"} or list of blocks, default "auto"
        ``"auto"``: the GEVD start where it applies (see the module docstring), else
        random standard-normal factors and cores; ``"gevd"`` insists (an error where it
        does not apply); or given blocks ``[(U_0, ..., U_{N-1}, S), ...]``.
    n_starts : int, default 1
        Number of starts: ``init``, then random ones (seeded); the fit with the lowest
        error is returned, every start is listed in its ``starts``.
    seed : int or numpy.random.Generator, optional
    method : str, default "nls"
    compress : {"auto", True, False}, default "auto"
        MLSVD compression of dense data (see the module docstring).
    display : int, default 0
    callback : callable, optional
        Called after every iteration of the fit on the data.
    options : sdf.NLSOptions or sdf.MinfOptions, optional
        Settings of both fits; ``**fit_options`` override single fields.

    Returns
    -------
    Decomposition
        ``factors``: one list ``[U_0, ..., U_{N-1}, S]`` per block (the layout of
        :class:`sdf.BTD`); ``core``: the list of block cores ``S_b``. Blocks are unique
        only up to a change of basis inside each block: compare subspaces.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import tucker_to_tensor
    >>> from sdf.models import btd
    >>> rng = np.random.default_rng(0)
    >>> blocks = [([rng.standard_normal((n, 2)) for n in (7, 6, 5)],
    ...            rng.standard_normal((2, 2, 2))) for _ in range(2)]
    >>> T = sum(tucker_to_tensor(U, S) for U, S in blocks)
    >>> dec = btd(T, [(2, 2, 2), (2, 2, 2)], seed=1)
    >>> len(dec.factors), bool(dec.relerr < 1e-4)
    (2, True)
    """
    check_fit_options(btd, fit_options, method=method, options=options, display=display)
    X = as_data(data)
    N = X.ndim
    cores = _block_shapes(core_shapes, N, X.shape)
    n_starts = check_int(n_starts, "n_starts")
    if isinstance(init, str) and init not in ("auto", "gevd", "random"):
        raise ModelError(f"init: expected 'auto', 'gevd', 'random' or a list of blocks, "
                         f"got {init!r}")
    if n_starts > 1:
        def one(k: int, rng: np.random.Generator) -> Decomposition:
            return btd(X, cores, init=init if k == 0 else "random", seed=rng, method=method,
                       compress=compress, display=display, callback=callback,
                       options=options, **fit_options)
        return best_of_starts(one, n_starts, make_rng(seed))
    rng = make_rng(seed)
    timer = Timer()
    stages: list[Stage] = []
    modes: list[int | None] = [*range(N), None] * len(cores)
    totals = [sum(cs[n] for cs in cores) for n in range(N)]
    ml = compress_data(X, totals, compress, timer, stages)
    if not isinstance(init, str):
        start, how = _given_blocks(init, X.shape, cores), "given"
        if ml is not None:
            start, how = project(start, modes, ml), "given, projected on the MLSVD bases"
    else:
        start, how = _start(X, cores, init, ml, modes, rng)
    stages.append(Stage("init", how, 0, timer.lap()))
    labels = labels_of(X)
    names = [f"{lab}_{b}" for b in range(len(cores)) for lab in (*labels, "core")]

    def build(d: Tensor | np.ndarray, v: list[sdf.Variable]) -> sdf.Term:
        return sdf.BTD(d, [v[k:k + N + 1] for k in range(0, len(v), N + 1)])

    settings = dict(method=method, options=options, fit_options=fit_options,
                    display=display, callback=callback)
    fit = run_fits(X, start, modes, names, build, ml, settings, timer, stages, "BTD")
    blocks = [fit.values[k:k + N + 1] for k in range(0, len(fit.values), N + 1)]
    relerr = float(fit.result.relerr["data"])
    return Decomposition(kind="BTD", factors=blocks, core=[blk[-1] for blk in blocks],
                         relerr=relerr, history=fit.result.history, result=fit.result,
                         stages=stages, relerrs={"data": relerr}, labels=labels)


def _start(X: Tensor, cores: list[tuple[int, ...]], init: str, ml: MLSVDResult | None,
           modes: list[int | None], rng: np.random.Generator
           ) -> tuple[list[np.ndarray], str]:
    """The start asked for by name, at the core's size when compressed."""
    if init != "random":
        if ml is not None and btd_gevd_applies(ml.core.shape, cores):
            blocks = btd_gevd(ml.core, cores, seed=rng)
            return [A for block in blocks for A in block], "gevd of the MLSVD core"
        dense = dense_standin(X)[0]
        if dense is not None and btd_gevd_applies(dense.shape, cores):
            start = [A for block in btd_gevd(dense, cores, seed=rng) for A in block]
            return (start, "gevd of the data") if ml is None else (
                project(start, modes, ml), "gevd of the data, projected on the MLSVD bases")
        if init == "gevd":
            raise ModelError(
                f"init: the GEVD start needs third-order data and block cores (L, L, N) with "
                f"sum L <= the first two sizes and 2 <= K; got cores {cores} for shape "
                f"{X.shape}. Use init='auto' or 'random'")
    start = []
    for cs in cores:
        start += random_factors(X.shape, cs, rng, complex=X.is_complex)
        start.append(random_array(cs, rng, complex=X.is_complex))
    if ml is not None:
        return project(start, modes, ml), "random, projected on the MLSVD bases"
    return start, "random"
