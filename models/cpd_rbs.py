"""CPD by randomized block sampling: every iteration reads one block of the data.

For data too large to pass over at every iteration (on disk, on a cluster, or just
large), the factors are updated from random sub-tensors (Vervliet and De Lathauwer, "A
randomized block sampling approach to canonical polyadic decomposition of large-scale
tensors", IEEE J. Sel. Top. Signal Process. 10 (2016) 284-295; Tensorlab's ``cpd_rbs``).

One **iteration** draws index sets ``S_0, ..., S_{N-1}`` (one per mode), reads the block
``X_B = X[S_0, ..., S_{N-1}]`` and, mode after mode, moves the sampled rows of the
factor towards the least-squares solution on the block::

    A_n[S_n] <- (1 - alpha) A_n[S_n] + alpha * X_B(n) K_n G_n^{-1}

with ``K_n`` the Khatri-Rao product and ``G_n`` the Hadamard product of the Gramians of
the sampled rows of the other factors (computed as an MTTKRP of the block, never formed).
The index sets come from a random partition of every mode, reshuffled each **epoch**, so
each index is visited once per epoch. Data held in chunks (dask, zarr) are sampled in
whole chunks: a block is a set of chunks per mode, and an iteration reads exactly those.

**Step.** ``alpha = 1`` until the epoch's mean block error (measured on each block before
its update, so on data not yet fitted to it) has not improved on its best by more than
``stall`` (relative) for ``patience`` epochs in a row (ALS can crawl through a swamp for
a while before it falls again); from then on ``alpha`` decays as ``1 / (1 + e)`` over the ``e`` epochs since, which
averages out the sampling noise. The fit stops when ``alpha`` falls below ``min_step``,
after ``max_epochs`` epochs, or after ``max_time`` seconds.

**Result.** The relative error is computed on the full data at the end (one pass over
the data, or a few Gauss-Newton iterations on the full data with ``refine=k``).
"""

from __future__ import annotations

import math
from dataclasses import replace
import time
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

import sdf
from sdf import algebra
from sdf.errors import DataError, ModelError, SdfWarning
from sdf.result import STILL_DECREASING, StopReason
from sdf.solvers import MethodName
from sdf.tensors import Tensor

from sdf.models._common import (Timer, as_data, check_int, check_number, labels_of,
                                make_rng, quiet, random_factors, user_factors)
from sdf.models._pipeline import run_fits
from sdf.models.cpd import cpd
from sdf.models._result import Decomposition, Stage
from sdf._blas import with_one_blas_pool

__all__ = ["cpd_rbs"]

#: Entries per block aimed at by the default block shape (about 8 MB as float64).
BLOCK_ENTRIES = 2**20


class _Sampler:
    """Index sets per mode (units of whole chunks for chunked data) and block reads."""

    def __init__(self, X: Tensor, block_shape: Sequence[int] | None, rank: int) -> None:
        self.X = X
        self.dense = X.dense_view()
        chunks = getattr(X, "chunks", None)
        # A unit is a run of indices read together: one index, or one chunk of the data.
        if chunks is not None and self.dense is None:
            bounds = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
            self.units = [[np.arange(lo, hi) for lo, hi in zip(b[:-1], b[1:])]
                          for b in bounds]
        else:
            self.units = [[np.array([i]) for i in range(I)] for I in X.shape]
        if block_shape is None:
            side = max(5 * rank, math.ceil(BLOCK_ENTRIES ** (1.0 / X.ndim)))
            block_shape = [min(I, side) for I in X.shape]
        self.per_block = []
        for n, (B, units) in enumerate(zip(block_shape, self.units)):
            size = float(np.mean([len(u) for u in units]))
            self.per_block.append(max(1, min(len(units), round(B / size))))
        self.block_shape = [int(sum(sorted(len(u) for u in units)[-k:]))
                            for k, units in zip(self.per_block, self.units)]

    def epoch(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        """Per mode, the index sets of one epoch: a random partition of the mode's units
        into groups of ``per_block`` (the last group topped up from the start)."""
        out = []
        for units, k in zip(self.units, self.per_block):
            order = rng.permutation(len(units))
            groups = math.ceil(len(units) / k)
            padded = np.concatenate([order, order[:groups * k - len(units)]])
            out.append([np.sort(np.concatenate([units[u] for u in padded[g * k:(g + 1) * k]]))
                        for g in range(groups)])
        return out

    def read(self, idx: list[np.ndarray]) -> np.ndarray:
        """The block ``X[idx_0, ..., idx_{N-1}]`` as a dense float64 array."""
        if self.dense is not None:
            return self.dense[np.ix_(*idx)]
        array = getattr(self.X, "array", None)
        if array is not None:  # chunked data: the selected chunks only
            block = array
            for n, ix in enumerate(idx):
                block = block[(slice(None),) * n + (ix,)]
            return np.asarray(block.compute(), dtype=np.float64)
        grid = np.stack([g.ravel() for g in np.meshgrid(*idx, indexing="ij")], axis=1)
        return self.X.values_at(grid).reshape([len(ix) for ix in idx])


def _block_update(D: np.ndarray, rows: list[np.ndarray], alpha: float
                  ) -> tuple[list[np.ndarray], float]:
    """One ALS sweep over the modes on the block; the block's squared error before it."""
    N = len(rows)
    rows = list(rows)
    # complex factors: Gramians A^H A, MTTKRPs with the conjugated factors (the normal
    # equations A_n conj(G) = X_(n) conj(K), G Hermitian)
    grams = [A.conj().T @ A for A in rows]
    before = float("nan")
    for n in range(N):
        G = np.ones_like(grams[0])
        for m in range(N):
            if m != n:
                G *= grams[m]
        M = algebra.mttkrp(D, [A.conj() for A in rows], n)
        if n == 0:
            before = float(np.vdot(D, D).real - 2 * np.vdot(rows[0], M).real
                           + np.sum(G * grams[0]).real)
        try:
            new = np.linalg.solve(G, M.T).T
        except np.linalg.LinAlgError:
            new = np.linalg.lstsq(G, M.T, rcond=None)[0].T
        rows[n] = rows[n] + alpha * (new - rows[n])
        grams[n] = rows[n].conj().T @ rows[n]
    return rows, max(before, 0.0)


def _block_start(sampler: _Sampler, D: np.ndarray, idx: list[np.ndarray], rank: int,
                 rng: np.random.Generator) -> list[np.ndarray]:
    """CPD of one block, extended to every row by least squares on the fibres through it."""
    with quiet():
        rows = cpd(D, rank, seed=rng).factors
    factors = []
    for n, I in enumerate(sampler.X.shape):
        fibres = sampler.read([np.arange(I) if m == n else ix for m, ix in enumerate(idx)])
        others = [R.conj() if m != n else np.zeros((I, rank)) for m, R in enumerate(rows)]
        G = np.ones((rank, rank), dtype=rows[0].dtype)
        for m, R in enumerate(rows):
            if m != n:
                G *= R.conj().T @ R
        M = algebra.mttkrp(fibres, others, n)
        factors.append(np.linalg.lstsq(G, M.T, rcond=None)[0].T)
    return factors


@with_one_blas_pool
def cpd_rbs(
    data: object,
    rank: int,
    *,
    block_shape: Sequence[int] | None = None,
    init: Literal["block", "random"] | list[np.ndarray] = "block",
    seed: int | np.random.Generator | None = None,
    max_epochs: int = 50,
    max_time: float | None = None,
    stall: float = 0.01,
    patience: int = 3,
    min_step: float = 0.1,
    refine: int = 0,
    method: MethodName = "nls",
    display: int = 0,
) -> Decomposition:
    r"""CPD by randomized block sampling: every iteration reads one random block.

    The algorithm (Tensorlab's ``cpd_rbs``) is described in the module docstring
    (:mod:`sdf.models.cpd_rbs`). Use it for data too large for many full passes: dense
    arrays, dask or zarr arrays (read chunk-aligned: an iteration reads the chunks of
    its block only) and structured data kinds that give entries (``values_at``).

    Parameters
    ----------
    data : array_like, dask or zarr array, xarray.DataArray or Tensor
        Fully known data of order >= 2 (NaN is refused: use :func:`sdf.models.cpd`).
    rank : int
        Number of rank-one terms ``R``.
    block_shape : sequence of int, optional
        Block size per mode (rounded to whole chunks for chunked data). Default: about
        ``2**20`` entries in all, at least ``5 R`` per mode, at most the mode's size.
    init : {"block", "random"} or list of ndarray, default "block"
        ``"block"``: a CPD of one sampled block by :func:`sdf.models.cpd` (GEVD start
        where it applies), extended to every row of every factor by least squares on the
        fibres through the block (reads ``sum_n I_n prod_{m != n} B_m`` entries);
        ``"random"``: standard normal factors scaled to the data's size; or given
        factors (copied).
    seed : int or numpy.random.Generator, optional
        Seeds the start and the sampling.
    max_epochs : int, default 50
        Most epochs (one epoch visits every index of every mode once).
    max_time : float, optional
        Stop after this many seconds of sampling.
    stall : float, default 0.01
        An epoch improves when its mean block error is below ``(1 - stall)`` times the
        best so far.
    patience : int, default 3
        The step starts to decay after this many epochs in a row without improvement.
    min_step : float, default 0.1
        Stop once the decaying step is below this.
    refine : int, default 0
        Gauss-Newton iterations on the full data after sampling (each a pass or two over
        the data); 0 only evaluates the error (one pass).
    method : str, default "nls"
        Engine solver of the refinement.
    display : int, default 0
        Print the epoch, step and mean block error every ``display`` epochs.

    Returns
    -------
    Decomposition
        ``factors`` ``[A_0, ..., A_{N-1}]``; ``relerr`` on the full data; stages
        ``init``, ``sample`` (iterations = blocks read, ``relerr`` the last epoch's
        mean block error) and ``evaluate`` or ``refine``.

    Raises
    ------
    DataError
        Data with missing entries, or of order < 2.
    ModelError
        A bad rank, block shape, init or setting.

    See Also
    --------
    sdf.models.cpd : the full-data driver (compression, GEVD start, Gauss-Newton).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import cpd_to_tensor
    >>> from sdf.models import cpd_rbs, fms
    >>> rng = np.random.default_rng(0)
    >>> A = [rng.standard_normal((n, 3)) for n in (60, 50, 40)]
    >>> dec = cpd_rbs(cpd_to_tensor(A), 3, block_shape=(20, 20, 20), seed=1)
    >>> bool(dec.relerr < 1e-6), round(fms(dec.factors, A), 4)
    (True, 1.0)
    """
    X = as_data(data)
    rank = check_int(rank, "rank")
    rng = make_rng(seed)
    max_epochs = check_int(max_epochs, "max_epochs")
    refine = check_int(refine, "refine", low=0)
    stall = check_number(stall, "stall", 0.0, 1.0)
    patience = check_int(patience, "patience")
    min_step = check_number(min_step, "min_step", 0.0, 1.0)
    if max_time is not None:
        check_number(max_time, "max_time")
    if block_shape is not None:
        if len(block_shape) != X.ndim:
            raise ModelError(f"block_shape: expected {X.ndim} sizes (one per mode), got "
                             f"{len(block_shape)}")
        block_shape = [check_int(b, f"block_shape[{n}]") for n, b in enumerate(block_shape)]
    if X.known_entries() is not None:
        raise DataError(f"data: cpd_rbs needs fully known data, got {X.size - X.n_known} "
                        "missing entries; use sdf.models.cpd (it works on the known "
                        "entries)")
    timer = Timer()
    sampler = _Sampler(X, block_shape, rank)
    if isinstance(init, str):
        if init not in ("block", "random"):
            raise ModelError(f"init: expected 'block', 'random' or a list of factors, got "
                             f"{init!r}")
        idx = [ix[0] for ix in sampler.epoch(rng)]
        D = sampler.read(idx)
        if init == "block":
            factors, how = _block_start(sampler, D, idx, rank, rng), "block"
        else:
            factors = random_factors(X.shape, rank, rng, complex=X.is_complex)
            # Scale the start to the data's size, estimated on one block.
            model = algebra.cpd_to_tensor([A[ix] for A, ix in zip(factors, idx)])
            scale = (np.linalg.norm(D) / max(np.linalg.norm(model), 1e-300)) ** (
                1.0 / X.ndim)
            factors, how = [A * scale for A in factors], "random"
    else:
        factors = user_factors(init, X.shape, [rank] * X.ndim)
        how = "given"
    stages = [Stage("init", how, 0, timer.lap())]

    alpha, decay_epochs, blocks = 1.0, -1, 0
    best, flat = np.inf, 0
    err = float("nan")
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        parts = sampler.epoch(rng)
        sq_err = sq_norm = 0.0
        for g in range(max(len(p) for p in parts)):
            idx = [p[g % len(p)] for p in parts]
            D = sampler.read(idx)
            rows, before = _block_update(D, [A[ix] for A, ix in zip(factors, idx)], alpha)
            for A, ix, R in zip(factors, idx, rows):
                A[ix] = R
            sq_err += before
            sq_norm += float(np.vdot(D, D).real)
            blocks += 1
        err = math.sqrt(sq_err / max(sq_norm, 1e-300))
        if display and epoch % display == 0:
            print(f"cpd_rbs: epoch {epoch:4d}  step {alpha:.3f}  block error {err:.4e}")
        if err < (1.0 - stall) * best:
            best, flat = err, 0
        else:
            flat += 1
        if decay_epochs < 0 and flat >= patience:
            decay_epochs = 0
        if decay_epochs >= 0:
            decay_epochs += 1
            alpha = 1.0 / (1.0 + decay_epochs)
        if alpha < min_step:
            stop = StopReason.TOL_FUN
            break
        if max_time is not None and time.perf_counter() - start >= max_time:
            stop = StopReason.MAX_TIME
            break
    else:
        stop = StopReason.MAX_ITER
    stages.append(Stage("sample", f"{blocks} blocks of {tuple(sampler.block_shape)} in "
                        f"{epoch} epochs", blocks, timer.lap(), err, stop))

    labels = labels_of(X)
    settings: dict[str, Any] = dict(method=method, options=None,
                                    fit_options={"max_iter": max(refine, 1)},
                                    display=0, callback=None)
    fit = run_fits(X, factors, list(range(X.ndim)), labels, sdf.CPD, None, settings, timer,
                   stages, "CPD", evaluate_only=refine == 0)
    if refine == 0 and stop is not StopReason.TOL_FUN:
        # The sampling, not the evaluation, decided where the factors are.
        fit.result.stop = stop
        if decay_epochs < 0:
            note = (f"{STILL_DECREASING} (cpd_rbs: the mean block error still fell by "
                    f"more than {stall:g} within {patience} epochs; raise max_epochs or max_time)")
            fit.result.warnings.append(note)
            warnings.warn(note, SdfWarning, stacklevel=2)
    if refine:
        stages[-1] = replace(stages[-1], name="refine")
    relerr = float(fit.result.relerr["data"])
    return Decomposition(kind="CPD", factors=fit.values, relerr=relerr,
                         history=fit.result.history, result=fit.result, stages=stages,
                         relerrs={"data": relerr}, labels=labels)
