"""Block term decomposition driver: compress, fit the core, refine.

It follows the pipeline of :func:`sdf.models.cpd` (see :mod:`sdf.models._pipeline`):
dense data are compressed by a truncated MLSVD to the sizes the model can use
(``min(I_n, sum of the blocks' sizes in mode n)``) when that halves the data at least,
the decomposition of the small core is fitted from a random (seeded, drawn at the data's
size and projected) or given start, expanded with the MLSVD bases and refined on the data
with the engine's :class:`sdf.BTD` or :class:`sdf.LL1` term.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

import sdf
from sdf.errors import ModelError
from sdf.solvers import MethodName
from sdf.tensors import Tensor

from sdf.models._common import (Timer, as_data, check_fit_options, check_int, labels_of,
                                make_rng, random_array, random_factors, user_factors)
from sdf.models._pipeline import compress_data, project, run_fits
from sdf.models._result import Decomposition, Stage

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


def btd(
    data: object,
    core_shapes: Sequence[Sequence[int]],
    *,
    init: Literal["random"] | list[Any] = "random",
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
    init : "random" or list of blocks, default "random"
        Random standard-normal factors and cores, or ``[(U_0, ..., U_{N-1}, S), ...]``.
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
    rng = make_rng(seed)
    timer = Timer()
    stages: list[Stage] = []
    if isinstance(init, str):
        if init != "random":
            raise ModelError(f"init: expected 'random' or a list of blocks, got {init!r}")
        start = []
        for cs in cores:
            start += random_factors(X.shape, cs, rng, complex=X.is_complex)
            start.append(random_array(cs, rng, complex=X.is_complex))
        how = "random"
    else:
        start, how = _given_blocks(init, X.shape, cores), "given"
    modes: list[int | None] = [*range(N), None] * len(cores)
    totals = [sum(cs[n] for cs in cores) for n in range(N)]
    ml = compress_data(X, totals, compress, timer, stages)
    if ml is not None:
        start = project(start, modes, ml)
        how += ", projected on the MLSVD bases"
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

