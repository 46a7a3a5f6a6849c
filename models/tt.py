"""Tensor train and tensor ring drivers: TT-SVD (or random) start -> Gauss-Newton.

``T[i_0, ..., i_{N-1}] ≈ tr(G_0[:, i_0, :] ... G_{N-1}[:, i_{N-1}, :])`` with cores
``G_k`` of shape ``(r_k, I_k, r_{k+1})``: a train (:func:`tt`, ``r_0 = r_N = 1``) or a
ring (:func:`tr`, ``r_N = r_0``).

1. **Start** (``init="auto"``): the TT-SVD of the data truncated to the given ranks
   (successive truncated SVDs, left-orthonormal cores; for data with missing entries, of
   the known entries with zeros elsewhere, scaled by ``size / known``). A ring starts
   from the TR-SVD (Zhao et al., 2016: the first unfolding's ``r_0 r_1`` leading singular
   vectors give core 0, a TT-SVD of the rest the others) when ``r_0 r_1 <= I_0``, else
   from the TT-SVD of ranks ``(1, r_1, ..., r_{N-1}, 1)`` placed on the closing index 0,
   the other closing indices seeded small and random (a ring with them exactly zero is a
   saddle point). ``init="random"``: left-orthonormal random cores (seeded), the last one
   scaled to the data's norm (a ring: such a train placed as above); data that cannot be
   expanded start so too. A list: the cores themselves.
2. **Fit** of the engine's :class:`sdf.TT` / :class:`sdf.TR` term on the data (on the
   known entries only when some are missing: TT completion).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

import sdf
from sdf.errors import ModelError
from sdf.solvers import MethodName
from sdf.tensors import Tensor

from sdf.models._common import (Timer, as_data, check_fit_options, check_int, make_rng,
                                random_array)
from sdf.models._pipeline import dense_standin, run_fits
from sdf.models._result import Decomposition, Stage
from sdf.models._starts import best_of_starts
from sdf._blas import with_one_blas_pool

__all__ = ["tr", "tt"]

#: Relative size of the random closing-index entries of a ring's TT-SVD start.
_RING_SEED_SCALE = 0.1


def _train_ranks(X: Tensor, ranks: object) -> list[int]:
    """``(1, r_1, ..., r_{N-1}, 1)`` from an int, the ``N - 1`` inner ranks or all
    ``N + 1`` sizes; each no larger than a train of that shape can use."""
    N, shape = X.ndim, X.shape
    if isinstance(ranks, np.ndarray):
        ranks = ranks.tolist()
    if isinstance(ranks, (int, np.integer)) and not isinstance(ranks, bool):
        inner: Sequence[Any] = [ranks] * (N - 1)
    elif isinstance(ranks, Sequence) and len(ranks) == N + 1:
        if ranks[0] != 1 or ranks[-1] != 1:
            raise ModelError(f"ranks: a train starts and ends with size 1, got {list(ranks)}")
        inner = ranks[1:-1]
    elif isinstance(ranks, Sequence) and len(ranks) == N - 1:
        inner = ranks
    else:
        raise ModelError(f"ranks: expected an int, {N - 1} inner ranks or {N + 1} sizes "
                         f"(1, r_1, ..., r_{N - 1}, 1) for {N} modes, got {ranks!r}")
    out = [1, *(check_int(r, f"ranks[{k + 1}]") for k, r in enumerate(inner)), 1]
    for k in range(1, N):
        if out[k] > out[k - 1] * shape[k - 1]:
            raise ModelError(f"ranks[{k}]: {out[k]} exceeds ranks[{k - 1}] * I_{k - 1} = "
                             f"{out[k - 1] * shape[k - 1]} (a larger rank adds nothing)")
    for k in range(N - 1, 0, -1):
        if out[k] > shape[k] * out[k + 1]:
            raise ModelError(f"ranks[{k}]: {out[k]} exceeds I_{k} * ranks[{k + 1}] = "
                             f"{shape[k] * out[k + 1]} (a larger rank adds nothing)")
    return out


def _ring_ranks(X: Tensor, ranks: object) -> list[int]:
    """``(r_0, ..., r_{N-1}, r_0)`` from an int or the ``N`` sizes ``r_0..r_{N-1}``."""
    N = X.ndim
    if isinstance(ranks, np.ndarray):
        ranks = ranks.tolist()
    if isinstance(ranks, (int, np.integer)) and not isinstance(ranks, bool):
        ranks = [ranks] * N
    if not isinstance(ranks, Sequence) or len(ranks) != N:
        raise ModelError(f"ranks: expected an int or {N} sizes (r_0, ..., r_{N - 1}) for "
                         f"{N} modes, got {ranks!r}")
    out = [check_int(r, f"ranks[{k}]") for k, r in enumerate(ranks)]
    return [*out, out[0]]


def _tt_svd(D: np.ndarray, ranks: Sequence[int]) -> list[np.ndarray]:
    """TT-SVD of ``D`` truncated to the train sizes ``ranks`` (left-orthonormal cores)."""
    shape, N = D.shape, D.ndim
    cores, rest = [], D.reshape(shape[0], -1)
    for k in range(N - 1):
        rest = rest.reshape(ranks[k] * shape[k], -1)
        U, s, Vt = np.linalg.svd(rest, full_matrices=False)
        r = ranks[k + 1]
        cores.append(U[:, :r].reshape(ranks[k], shape[k], r))
        rest = s[:r, None] * Vt[:r]
    cores.append(rest.reshape(ranks[N - 1], shape[N - 1], 1))
    return cores


def _random_train(shape: Sequence[int], ranks: Sequence[int], norm: float,
                  rng: np.random.Generator, complex_: bool = False) -> list[np.ndarray]:
    """Left-orthonormal random cores (complex where ``complex_``), the last one of norm
    ``norm`` (the train's norm)."""
    N = len(shape)
    cores = []
    for k in range(N - 1):
        Q, _ = np.linalg.qr(random_array((ranks[k] * shape[k], ranks[k + 1]), rng, complex_))
        cores.append(Q.reshape(ranks[k], shape[k], ranks[k + 1]))
    last = random_array((ranks[N - 1], shape[N - 1], ranks[N]), rng, complex_)
    cores.append(last * (norm / max(float(np.linalg.norm(last)), 1e-300)))
    return cores


def _user_cores(init: Sequence[Any], shape: Sequence[int], ranks: Sequence[int]
                ) -> list[np.ndarray]:
    N = len(shape)
    if len(init) != N:
        raise ModelError(f"init: expected {N} cores (one per mode), got {len(init)}")
    out = []
    for k, G in enumerate(init):
        try:
            arr = np.array(G, dtype=complex if np.iscomplexobj(G) else float)
        except (TypeError, ValueError):
            raise ModelError(f"init[{k}]: expected a numeric core, got "
                             f"{type(G).__name__}") from None
        want = (ranks[k], shape[k], ranks[k + 1])
        if arr.shape != want:
            raise ModelError(f"init[{k}]: expected a core of shape {want}, got shape "
                             f"{arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ModelError(f"init[{k}]: expected finite values")
        out.append(arr)
    return out


def _data_scale(X: Tensor) -> float:
    """The norm the full data would have (known entries scaled up when some are missing)."""
    return X.norm() * math.sqrt(X.size / max(X.n_known, 1))


def _start(X: Tensor, ranks: list[int], init: object, rng: np.random.Generator,
           ring: bool) -> tuple[list[np.ndarray], str]:
    """Starting cores and how they were made."""
    if not isinstance(init, str):
        if isinstance(init, np.ndarray) or not isinstance(init, Sequence):
            raise ModelError("init: expected 'auto', 'random' or a list of cores, got "
                             f"{type(init).__name__}")
        return _user_cores(init, X.shape, ranks), "given"
    if init not in ("auto", "random"):
        raise ModelError(f"init: expected 'auto', 'random' or a list of cores, got {init!r}")
    N, shape = X.ndim, X.shape
    # The train a ring starts from: its inner ranks, clipped to what a train can use.
    train = [1, *ranks[1:N], 1]
    for k in range(1, N):
        train[k] = min(train[k], train[k - 1] * shape[k - 1])
    for k in range(N - 1, 0, -1):
        train[k] = min(train[k], shape[k] * train[k + 1])
    D = dense_standin(X)[0] if init == "auto" and not X.out_of_core else None
    if ring and D is not None and ranks[0] * ranks[1] <= min(shape[0], D.size // shape[0]):
        return _tr_svd(D, ranks), "TR-SVD"
    if D is not None:
        cores, how = _tt_svd(D, train), "TT-SVD"
    else:
        cores = _random_train(shape, train, _data_scale(X), rng, X.is_complex)
        how = "random orthonormal"
    if not ring:
        return cores, how
    return _as_ring(cores, ranks, rng), f"{how} of the train on closing index 0"


def _tr_svd(D: np.ndarray, ranks: Sequence[int]) -> list[np.ndarray]:
    """TR-SVD (Zhao et al., 2016): the first unfolding's ``r_0 r_1`` leading singular
    vectors make core 0, the closing index is moved to the end of the rest, which a
    TT-SVD truncated to ``r_1, ..., r_{N-1}`` cuts into the other cores."""
    shape, N = D.shape, D.ndim
    r0, r1 = ranks[0], ranks[1]
    U, s, Vt = np.linalg.svd(D.reshape(shape[0], -1), full_matrices=False)
    first = np.transpose(U[:, : r0 * r1].reshape(shape[0], r0, r1), (1, 0, 2))
    rest = (s[: r0 * r1, None] * Vt[: r0 * r1]).reshape(r0, r1, -1)
    rest = np.moveaxis(rest, 0, -1).reshape(r1, *shape[1:], r0)
    # The rest as a train over (I_1, ..., I_{N-1} r_0), cut by truncated SVDs.
    merged = rest.reshape(r1 * shape[1], -1)
    out = [first]
    block = merged
    prev = r1
    for k in range(1, N - 1):
        block = block.reshape(prev * shape[k], -1)
        Uk, sk, Vtk = np.linalg.svd(block, full_matrices=False)
        r = min(ranks[k + 1], Uk.shape[1])
        core = np.zeros((prev, shape[k], ranks[k + 1]), dtype=Uk.dtype)
        core[:, :, :r] = Uk[:, :r].reshape(prev, shape[k], r)
        out.append(core)
        nxt = np.zeros((ranks[k + 1], block.shape[1]), dtype=Vtk.dtype)
        nxt[:r] = sk[:r, None] * Vtk[:r]
        block, prev = nxt, ranks[k + 1]
    out.append(block.reshape(prev, shape[-1], r0))
    return out


def _as_ring(cores: list[np.ndarray], ranks: list[int], rng: np.random.Generator
             ) -> list[np.ndarray]:
    """A train's cores placed in ring cores of sizes ``ranks`` (closing index 0, the rest
    small and random)."""
    out = []
    for k, G in enumerate(cores):
        shape = (ranks[k], G.shape[1], ranks[k + 1])
        scale = _RING_SEED_SCALE * float(np.sqrt(np.mean(np.abs(G) ** 2)))
        H = scale * random_array(shape, rng, np.iscomplexobj(G))
        H[: G.shape[0], :, : G.shape[2]] = G
        out.append(H)
    return out


def _drive(data: object, ranks: object, ring: bool, init: object, seed: object,
           settings: dict[str, Any]) -> Decomposition:
    X = as_data(data)
    sizes = _ring_ranks(X, ranks) if ring else _train_ranks(X, ranks)
    rng = make_rng(seed)
    timer = Timer()
    stages: list[Stage] = []
    cores, how = _start(X, sizes, init, rng, ring)
    stages.append(Stage("init", how, 0, timer.lap()))
    kind: Literal["TT", "TR"] = "TR" if ring else "TT"
    term = sdf.TR if ring else sdf.TT
    names = [f"core{k}" for k in range(X.ndim)]
    fit = run_fits(X, cores, [None] * X.ndim, names, lambda d, v: term(d, v), None,
                   settings, timer, stages, kind)
    relerr = float(fit.result.relerr["data"])
    return Decomposition(kind=kind, factors=fit.values, relerr=relerr,
                         history=fit.result.history, result=fit.result, stages=stages,
                         relerrs={"data": relerr}, labels=names)


@with_one_blas_pool
def tt(
    data: object,
    ranks: int | Sequence[int],
    *,
    init: Literal["auto", "random"] | list[np.ndarray] = "auto",
    n_starts: int = 1,
    seed: int | np.random.Generator | None = None,
    method: MethodName = "nls",
    display: int = 0,
    callback: Callable[[sdf.IterationInfo], Any] | None = None,
    options: sdf.NLSOptions | sdf.MinfOptions | None = None,
    **fit_options: Any,
) -> Decomposition:
    r"""Tensor train ``T ≈ G_0[:, i_0, :] G_1[:, i_1, :] ... G_{N-1}[:, i_{N-1}, :]``.

    Minimises ``||T - TT(G)||^2`` over the known entries from a TT-SVD start by the
    engine's Gauss-Newton (see the module docstring); NaN entries are missing (TT
    completion).

    Parameters
    ----------
    data : array_like, scipy.sparse, xarray.DataArray or Tensor
        Anything :func:`sdf.tensors.as_tensor` accepts, order >= 2; NaN = missing.
        Complex data give complex cores (random starts too: circular complex Gaussian).
    ranks : int or sequence of int
        The TT ranks: one int for every bond, the ``N - 1`` inner ranks
        ``(r_1, ..., r_{N-1})`` or all sizes ``(1, r_1, ..., r_{N-1}, 1)``; ``r_k`` at
        most ``r_{k-1} I_{k-1}`` and ``I_k r_{k+1}``.
    init : {"auto", "random"} or list of ndarray, default "auto"
        ``"auto"``: TT-SVD; ``"random"``: random left-orthonormal cores; a list: the cores
        ``(r_k, I_k, r_{k+1})``.
    n_starts : int, default 1
        Number of starts: ``init``, then random ones (seeded); the fit with the lowest
        error is returned, every start listed in ``starts``.
    seed : int or numpy.random.Generator, optional
    method : str, default "nls"
        Engine solver.
    display : int, default 0
        Print the engine's iteration table every ``display`` iterations.
    callback : callable, optional
        Called with an :class:`sdf.IterationInfo` after every engine iteration.
    options : sdf.NLSOptions or sdf.MinfOptions, optional
        Settings of the engine fit; ``**fit_options`` override single fields.

    Returns
    -------
    Decomposition
        ``kind="TT"``, ``factors`` the cores ``[G_0, ..., G_{N-1}]``, ``relerr``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models import tt
    >>> rng = np.random.default_rng(0)
    >>> r = (1, 2, 3, 1)
    >>> G = [rng.standard_normal((r[k], n, r[k + 1])) for k, n in enumerate((6, 7, 5))]
    >>> T = np.einsum("aib,bjc,ckd->ijk", *G)
    >>> dec = tt(T, (2, 3))
    >>> [g.shape for g in dec.factors], bool(dec.relerr < 1e-10)
    ([(1, 6, 2), (2, 7, 3), (3, 5, 1)], True)
    """
    check_fit_options(tt, fit_options, method=method, options=options, display=display)
    if check_int(n_starts, "n_starts") > 1:
        def one(k: int, rng: np.random.Generator) -> Decomposition:
            return tt(data, ranks, init=init if k == 0 else "random", seed=rng, method=method,
                      display=display, callback=callback, options=options, **fit_options)
        return best_of_starts(one, n_starts, make_rng(seed))
    settings = dict(method=method, options=options, fit_options=fit_options,
                    display=display, callback=callback)
    return _drive(data, ranks, False, init, seed, settings)


@with_one_blas_pool
def tr(
    data: object,
    ranks: int | Sequence[int],
    *,
    init: Literal["auto", "random"] | list[np.ndarray] = "auto",
    n_starts: int = 1,
    seed: int | np.random.Generator | None = None,
    method: MethodName = "nls",
    display: int = 0,
    callback: Callable[[sdf.IterationInfo], Any] | None = None,
    options: sdf.NLSOptions | sdf.MinfOptions | None = None,
    **fit_options: Any,
) -> Decomposition:
    r"""Tensor ring ``T ≈ tr(G_0[:, i_0, :] ... G_{N-1}[:, i_{N-1}, :])``.

    Minimises ``||T - TR(G)||^2`` over the known entries by the engine's Gauss-Newton
    from a TR-SVD (or random) start (see the module docstring). Rings are harder to fit
    than trains (no SVD gives the best ring, and the fit has local minima): when the
    error stays high, try ``init="random"`` with a few seeds.

    Parameters
    ----------
    data : array_like, scipy.sparse, xarray.DataArray or Tensor
        Anything :func:`sdf.tensors.as_tensor` accepts, order >= 2; NaN = missing.
        Complex data give complex cores (random starts too: circular complex Gaussian).
    ranks : int or sequence of int
        The ring's sizes ``(r_0, ..., r_{N-1})`` (core ``k`` is ``(r_k, I_k, r_{k+1})``,
        ``r_N = r_0``), or one int for all.
    init : {"auto", "random"} or list of ndarray, default "auto"
        ``"auto"``: TR-SVD (see the module docstring); ``"random"``: a random train on
        the closing index 0, the rest seeded small and random; a list: the cores.
    n_starts : int, default 1
        Number of starts: ``init``, then random ones (seeded); the fit with the lowest
        error is returned, every start listed in ``starts`` (worth it for rings).
    seed : int or numpy.random.Generator, optional
    method : str, default "nls"
    display : int, default 0
    callback : callable, optional
    options : sdf.NLSOptions or sdf.MinfOptions, optional
        Settings of the engine fit; ``**fit_options`` override single fields.

    Returns
    -------
    Decomposition
        ``kind="TR"``, ``factors`` the cores ``[G_0, ..., G_{N-1}]``, ``relerr``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models import tr
    >>> rng = np.random.default_rng(0)
    >>> G = [rng.standard_normal((2, n, 2)) for n in (6, 7, 5)]
    >>> T = np.einsum("aib,bjc,cka->ijk", *G)
    >>> dec = tr(T, 2, seed=0, max_iter=300)
    >>> [g.shape for g in dec.factors], bool(dec.relerr < 1e-6)
    ([(2, 6, 2), (2, 7, 2), (2, 5, 2)], True)
    """
    check_fit_options(tr, fit_options, method=method, options=options, display=display)
    if check_int(n_starts, "n_starts") > 1:
        def one(k: int, rng: np.random.Generator) -> Decomposition:
            return tr(data, ranks, init=init if k == 0 else "random", seed=rng, method=method,
                      display=display, callback=callback, options=options, **fit_options)
        return best_of_starts(one, n_starts, make_rng(seed))
    settings = dict(method=method, options=options, fit_options=fit_options,
                    display=display, callback=callback)
    return _drive(data, ranks, True, init, seed, settings)
