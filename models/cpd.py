"""Canonical polyadic decomposition driver: compress, initialise, fit the core, refine.

The classic pipeline around the engine's CPD term (Tensorlab's ``cpd``), with no second
solver: every fit below is an :class:`sdf.Model` fit.

1. **Compression** (dense data): a truncated MLSVD ``T ≈ S x_n U_n`` with core size
   ``min(I_n, R)`` per mode (:func:`sdf.decomp.mlsvd`), when the core is at most half the
   data's size; data read from chunks (dask, zarr) get the randomized MLSVD
   (:func:`sdf.decomp.mlsvd_rsi`, four passes over the data, seeded by ``seed``).
2. **Initialisation**: GEVD (:func:`sdf.decomp.gevd_init`) where it applies
   (:func:`sdf.decomp.gevd_applies`: order >= 3, modes grouped into two of size >= R and a
   third of size >= 2), else random standard-normal factors drawn at the data's
   size (so a seed gives the same start with and without compression), or given factors
   (projected on the MLSVD bases, ``U_n^T A_n``, when compressing).
3. **Fit on the core**: the CPD of the small dense core ``S``.
4. **Decompression**: ``A_n = U_n B_n``.
5. **Refinement on the data**: the CPD of the data from the decompressed factors (cheap:
   a few iterations, each one all-modes MTTKRP).

Incomplete and sparse data skip compression (the engine works on the known / nonzero
entries); GEVD then runs on the densified data (sparse) or on the zero-filled data
divided by the fraction known (incomplete) when that fits in memory, else random.
Mostly-known data held with a mask (:class:`sdf.tensors.MaskedTensor`, at most 2 % of
the entries missing) are the exception: steps 1-4 run on their zero-filled array (the
zeros move the MLSVD bases little) and step 5 refines on the known entries only, so the
result is the exact fit of the known entries, reached from the core's solution in a few
iterations instead of a whole fit on the data.

Incomplete data on a grid that fits in memory (at most 2e7 entries, at least a quarter
known, at least 2 % missing) get an **alternating least-squares warm start** on the known
entries before the engine's fit (unless ``compress=False``): sweeps of exact row-wise
least squares, each row ``a_i`` of ``A_n`` solved with its own Gramian over its known
entries, ``G_i a_i = b_i`` with ``G_i = sum_{e known, i_n(e) = i} q_e q_e^T`` (``q_e`` the
Hadamard product of the other factors' rows) and ``b`` the MTTKRP of the zero-filled
data, all rows of a mode at once (two dense MTTKRPs and a batched solve per mode). Each
update is the exact minimiser over its factor, so the error on the known entries never
increases; unlike the expectation-maximisation of masked ALS (fill the missing entries
with the model, one ALS sweep on the filled tensor), whose steps shrink with the fraction
missing, it needs about a third of the sweeps at 50 % missing. The sweeps stop when the
error on the known entries changes by less than 1e-4 (relative; ALS's linear tail is
where Gauss-Newton is faster) or after 200 sweeps; the engine's Gauss-Newton fit
finishes from there (the solver settings given to
:func:`cpd` apply to that fit) and reports the exact error. With fewer than 2 % missing
the engine's own fit costs about a dense fit (see :class:`sdf.tensors.MaskedTensor`)
and such data are compressed instead (above).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import numpy as np

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.decomp import MLSVDResult, gevd_applies, gevd_init
from sdf._warn import warn_user
from sdf.errors import DataError, ModelError, SdfWarning
from sdf.losses import Loss, LossLike, as_loss
from sdf.solvers import MethodName
from sdf.tensors import Tensor, as_tensor

from sdf.models._common import (Timer, as_data, check_fit_options, check_int, engine_fit,
                                factors_are_complex, labels_of, make_rng, quiet,
                                random_factors, stage_from, user_factors)
from sdf.models._loss_start import least_squares_start
from sdf.models._pipeline import (MAX_DENSIFY, compress_data, dense_standin, expand, project,
                                  run_fits)
from sdf.models._result import Decomposition, Stage
from sdf.models._starts import best_of_starts
from sdf._blas import with_one_blas_pool

__all__ = ["cpd"]

InitMethod = Literal["auto", "gevd", "random"]


#: Least fraction of missing entries for which the row-wise ALS warm start pays.
_ALS_MIN_MISSING = 0.02


def _als_applies(X: Tensor, start: Sequence[np.ndarray]) -> bool:
    # The cheap tests first: known_entries() builds coordinates for masked data. The
    # row-wise ALS is real: complex data or a complex start (complex=True) go straight
    # to the fit.
    return (X.size <= MAX_DENSIFY and not X.is_complex
            and not any(np.iscomplexobj(A) for A in start)
            and 0.25 * X.size <= X.n_known <= (1.0 - _ALS_MIN_MISSING) * X.size
            and (X.masked_view() is not None or X.known_entries() is not None))


#: Largest fraction of missing entries for which masked data are compressed with their
#: zero-filled array (the zeros perturb the MLSVD bases little; the refinement on the
#: known entries removes what they leave).
_COMPRESS_MAX_MISSING = 0.02


def _compresses_filled(X: Tensor) -> bool:
    return (X.size - X.n_known <= _COMPRESS_MAX_MISSING * X.size
            and X.masked_view() is not None)


def _compress_filled(X: Tensor, rank: int, compress: Literal["auto"] | bool, timer: Timer,
                     stages: list[Stage]) -> MLSVDResult | None:
    """The MLSVD of mostly-known masked data's zero-filled array (see the module
    docstring); None where compression does not pay."""
    masked = X.masked_view()
    assert masked is not None
    ml = compress_data(as_tensor(masked[0]), [rank] * X.ndim, compress, timer, stages)
    if ml is not None:
        last = stages[-1]
        stages[-1] = Stage(last.name, last.detail + " of the zero-filled data",
                           last.iterations, last.time, last.relerr)
    return ml


def _kr_rows(mats: Sequence[np.ndarray]) -> np.ndarray:
    """The Khatri-Rao product of ``mats`` (each (R, I_m), rank first), rank first:
    shape (R, prod of the I_m), the last matrix varying fastest."""
    out = mats[-1]
    R = out.shape[0]
    for M in mats[-2::-1]:
        out = (M[:, :, None] * out[:, None, :]).reshape(R, -1)
    return out


def _contract_others(Y: np.ndarray, rows: list[np.ndarray], n: int) -> np.ndarray:
    """``Y`` of shape (K, I_0, ..., I_{h-1}) contracted over every mode ``m != n`` with
    row ``k`` of ``rows[m]`` (shape (K, I_m)), for each ``k``: shape (I_n, K)."""
    if len(rows) == 1:
        return Y.T
    letters = "abcdefghijklmnopqrstuvwxy"[:len(rows)]
    others = ",".join(f"z{c}" for m, c in enumerate(letters) if m != n)
    return np.einsum(f"z{letters},{others}->{letters[n]}z", Y,
                     *[M for m, M in enumerate(rows) if m != n])


class _RowALS:
    """One sweep of row-wise ALS on masked data, modes split in two halves.

    The zero-filled data ``T`` and the mask ``W`` (as floats), unfolded to (left, right)
    modes, are contracted once with the Khatri-Rao product of the right half's factors
    (``T``) and of their pairwise column products ``a_r a_s``, ``r <= s`` (``W``); every
    left mode's right-hand sides ``b_i`` and row Gramians ``G_i`` are then small
    contractions of those, and likewise for the right half after the left is updated:
    two passes over the data per sweep for any order, instead of one per mode. The
    Khatri-Rao products are kept rank first, ``(R, I ...)``, so that each pass is a GEMM
    with a short, wide result (about half the time of the tall, thin one in BLAS).
    """

    def __init__(self, filled: np.ndarray, mask: np.ndarray, rank: int) -> None:
        self.shape = filled.shape
        self.half = max(1, filled.ndim // 2)
        left = math.prod(self.shape[:self.half])
        self.data = filled.reshape(left, -1)
        self.weights = mask.astype(float).reshape(left, -1)
        self.upper = np.triu_indices(rank)
        #: Where the pairs ``(r, r)`` sit among the ``r <= s``.
        self.diagonal = np.flatnonzero(self.upper[0] == self.upper[1])
        #: ``a^T G a`` from the upper triangle of ``G``: off-diagonal pairs count twice.
        self.twice = np.where(self.upper[0] == self.upper[1], 1.0, 2.0)
        self.norm_sq = float(np.vdot(filled, filled)) or 1.0

    def _pairs(self, rows: np.ndarray) -> np.ndarray:
        """Rank-first pairwise products ``a_r * a_s``, ``r <= s``: (R (R + 1) / 2, I)."""
        return rows[self.upper[0]] * rows[self.upper[1]]

    def _solve_rows(self, S: np.ndarray, rhs: np.ndarray, old: np.ndarray) -> np.ndarray:
        """Rows ``a_i = G_i^{-1} b_i``, ``G_i`` given by its upper triangle ``S[i]``; a row
        with no known entry keeps its old value."""
        I, R = rhs.shape
        u, d = self.upper, self.diagonal
        scale = S[:, d].sum(axis=1) / R
        G = np.empty((I, R, R))
        G[:, u[0], u[1]] = S
        G[:, u[1], u[0]] = S
        # A relative ridge of 1e-12 keeps a rank-deficient row Gramian solvable.
        diag = np.arange(R)
        G[:, diag, diag] += (1e-12 * scale)[:, None]
        empty = scale <= 0
        if empty.any():
            G[empty] = np.eye(R)
            rhs = np.where(empty[:, None], old, rhs)
        return np.linalg.solve(G, rhs[..., None])[..., 0]

    def _update(self, factors: list[np.ndarray], modes: range, Y: np.ndarray,
                Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Update ``factors[n]``, ``n`` in ``modes`` (one half), in turn from ``Y`` and
        ``Z`` (the data and the mask contracted with the other half); the last mode's
        right-hand sides and row Gramians (upper triangles)."""
        sizes = [self.shape[n] for n in modes]
        Y, Z = Y.reshape(-1, *sizes), Z.reshape(-1, *sizes)
        rows = [factors[n].T for n in modes]
        pairs = [self._pairs(M) for M in rows]
        rhs = S = Y
        for k, n in enumerate(modes):
            rhs = _contract_others(Y, rows, k)
            S = _contract_others(Z, pairs, k)
            factors[n] = self._solve_rows(S, rhs, factors[n])
            rows[k] = factors[n].T
            pairs[k] = self._pairs(rows[k])
        return rhs, S

    def sweep(self, factors: list[np.ndarray]) -> float:
        """Update ``factors`` in place; the relative error on the known entries after."""
        h, N = self.half, len(factors)
        rows = [A.T for A in factors[h:]]
        K = _kr_rows(rows)
        P = _kr_rows([self._pairs(M) for M in rows])
        self._update(factors, range(h), K @ self.data.T, P @ self.weights.T)
        rows = [A.T for A in factors[:h]]
        K = _kr_rows(rows)
        P = _kr_rows([self._pairs(M) for M in rows])
        rhs, S = self._update(factors, range(h, N), K @ self.data, P @ self.weights)
        A = factors[-1]
        # ||mask * (M - T)||^2 = ||T||^2 - 2 <A, b> + sum_i a_i^T G_i a_i (last mode)
        model_sq = float(np.einsum("ik,ik,k->", S, self._pairs(A.T).T, self.twice))
        return math.sqrt(max(self.norm_sq - 2.0 * float(np.vdot(A, rhs)) + model_sq, 0.0)
                         / self.norm_sq)


def _row_als(X: Tensor, start: list[np.ndarray], max_sweeps: int = 200,
             tol: float = 1e-4) -> tuple[list[np.ndarray], int, float]:
    """Exact row-wise ALS on the known entries (see the module docstring).

    Returns the factors, the number of sweeps and the relative error on the known
    entries after the last sweep.
    """
    masked = X.masked_view()
    if masked is None:
        entries = X.known_entries()
        assert entries is not None
        filled, mask = np.zeros(X.shape), np.zeros(X.shape, dtype=bool)
        subs = tuple(entries.subs.T)
        filled[subs], mask[subs] = entries.vals, True
    else:
        filled, mask = masked
    als = _RowALS(filled, mask, start[0].shape[1])
    factors = [np.array(A, dtype=float) for A in start]
    prev, err, sweeps = np.inf, np.inf, 0
    for sweeps in range(1, max_sweeps + 1):
        err = als.sweep(factors)
        if abs(prev - err) <= tol * max(err, 1e-300):
            break
        prev = err
    return factors, sweeps, err


def _rank_upper_bound(shape: tuple[int, ...]) -> int:
    """``prod(shape) / max(shape)``: no tensor of this shape has a larger CP rank (each
    is a sum of that many rank-one terms: one per fibre along its largest mode)."""
    return int(np.prod(shape, dtype=float) / max(shape))


def _warn_rank_above_bound(shape: tuple[int, ...], rank: int) -> None:
    bound = _rank_upper_bound(shape)
    if rank > bound:
        dims = "x".join(map(str, shape))
        warn_user(f"cpd: rank {rank} exceeds {bound}, an upper bound on the rank of any "
                  f"{dims} tensor (the product of the dimensions over the largest); "
                  f"{bound} terms fit such data exactly and the extra terms are not "
                  "identifiable: choose a smaller rank (see sdf.models.rankest)", SdfWarning)


def _nonneg_cpd(data: object, variables: list[sdf.Variable]) -> sdf.CPD:
    return sdf.CPD(data, [tf.nonneg(v) for v in variables])


def _initial(X: Tensor, dense: np.ndarray | None, rank: int, init: object,
             rng: np.random.Generator, complex_factors: bool
             ) -> tuple[list[np.ndarray], str]:
    """Starting factors at the size of ``dense`` (core or data) and the method's name."""
    shape = X.shape if dense is None else dense.shape
    if isinstance(init, str):
        if init not in ("auto", "gevd", "random"):
            raise ModelError(f"init: expected 'auto', 'gevd', 'random' or a list of factors, "
                             f"got {init!r}")
        use_gevd = init == "gevd" or (init == "auto" and gevd_applies(shape, rank))
        if use_gevd:
            if dense is None:
                if init == "gevd":
                    raise ModelError(f"init: 'gevd' needs data that fit in memory densely "
                                     f"(at most {MAX_DENSIFY} entries), got {X.size}")
            else:
                try:
                    return (gevd_init(dense, rank, seed=rng, complex=complex_factors),
                            "gevd")
                except DataError as err:
                    if init == "gevd":
                        raise ModelError(f"init: GEVD does not apply ({err})") from err
        return random_factors(shape, rank, rng, complex=complex_factors), "random"
    return _given(init, shape, rank, complex_factors), "given"


def _given(init: object, shape: Sequence[int], rank: int, complex_factors: bool
           ) -> list[np.ndarray]:
    mats = user_factors(init, shape, [rank] * len(shape))
    return [A.astype(np.complex128) for A in mats] if complex_factors else mats


@with_one_blas_pool
def cpd(
    data: object,
    rank: int,
    *,
    init: InitMethod | list[np.ndarray] = "auto",
    n_starts: int = 1,
    seed: int | np.random.Generator | None = None,
    method: MethodName = "nls",
    compress: Literal["auto"] | bool = "auto",
    complex: bool = False,
    nonneg: bool = False,
    display: int = 0,
    callback: Callable[[sdf.IterationInfo], Any] | None = None,
    options: sdf.NLSOptions | sdf.MinfOptions | None = None,
    loss: LossLike = "gaussian",
    **fit_options: Any,
) -> Decomposition:
    r"""Canonical polyadic decomposition ``T ≈ sum_r a_r^{(0)} o ... o a_r^{(N-1)}``.

    Minimises ``||T - [[A_0, ..., A_{N-1}]]||^2`` over the known entries by the pipeline
    of the module docstring: MLSVD compression when it pays, GEVD or random start, fit on
    the compressed core, decompression and refinement on the data.

    With a non-Gaussian ``loss`` the sum of the loss over the known entries is minimised
    instead (generalized Gauss-Newton, see :mod:`sdf.losses`). Unless ``init`` gives the
    factors, the start is the least-squares CPD (the pipeline above without the
    imputation rounds, at most 50 iterations) of the loss's working data (:meth:`sdf.losses.Loss.working_data`:
    ``log(x + 1/2)`` for Poisson counts with the log link, ``4 (x - 1/2)`` for binary
    data, the data for identity links; absolute values of its factors where the model
    must stay nonnegative); the loss is then fitted on the data (stages ``init``,
    ``fit``), with nonnegative factors ``A_n = z_n^2`` (:func:`sdf.transforms.nonneg`)
    where the model must stay nonnegative (identity links of counts and positive data). ``relerr`` is then ``sqrt(D / D_null)``, the deviance over the constant
    model's (:attr:`sdf.Result.deviance`).

    Parameters
    ----------
    data : array_like, scipy.sparse, tuple (subs, vals, shape), xarray.DataArray or Tensor
        Anything :func:`sdf.tensors.as_tensor` accepts, order >= 2; NaN entries are
        missing. A DataArray's dims name the factors (:attr:`Decomposition.labels`).
    rank : int
        Number of rank-one terms ``R``.
    init : {"auto", "gevd", "random"} or list of ndarray, default "auto"
        Start: ``"auto"`` is GEVD where it applies (:func:`sdf.decomp.gevd_applies`
        at the level fitted, data densifiable), else random; a list gives the factors
        ``(I_n, R)`` (copied, never modified).
    n_starts : int, default 1
        Number of starts: ``init``, then random ones (seeded by ``seed``); the fit with
        the lowest error is returned, every start is listed in its ``starts``
        (:meth:`Decomposition.starts_table`).
    seed : int or numpy.random.Generator, optional
        Seeds the random start and GEVD's random slice combinations.
    method : str, default "nls"
        Engine solver for both fits (Gauss-Newton trust region, or L-BFGS).
    compress : {"auto", True, False}, default "auto"
        MLSVD compression of dense data (and, with ``"auto"``, of mostly-known masked
        data's zero-filled array); ``"auto"`` compresses when the core
        ``(min(I_n, R))_n`` has at most half the data's entries.
    complex : bool, default False
        Complex factors for real data (complex data always get complex factors, from a
        complex MLSVD, GEVD or random start). A real tensor can have a lower rank over
        the complex numbers than over the reals; the start is then complex (GEVD keeping
        complex eigenvectors, ``complex=True`` of :func:`sdf.decomp.gevd_init`, or
        circular complex random factors), since the imaginary parts of a real start stay
        zero in a fit to real data.
    nonneg : bool, default False
        Keep every factor nonnegative: each is fitted as ``A_n = Z_n * Z_n`` (entrywise,
        :func:`sdf.transforms.nonneg`) from the absolute values of the start. The start
        is computed as without ``nonneg`` (compression serves the start only), the fit
        runs on the data. ``result.variables`` then hold the ``Z_n``; ``factors`` hold
        the nonnegative ``A_n``.
    display : int, default 0
        Print the engine's iteration table every ``display`` iterations (both fits).
    callback : callable, optional
        Called with an :class:`sdf.IterationInfo` after every iteration of the fit on the
        data (the refinement); returning True stops it.
    options : sdf.NLSOptions or sdf.MinfOptions, optional
        Solver settings of both fits; ``**fit_options`` override single fields
        (``max_iter=100, tol_fun=1e-10`` ...).
    loss : str, dict or sdf.losses.Loss, default "gaussian"
        The loss of the data (see :class:`sdf.CPD` and :mod:`sdf.losses`).

    Returns
    -------
    Decomposition
        ``factors`` ``[A_0, ..., A_{N-1}]``; ``relerr`` on the data; ``history`` and
        ``result`` of the fit on the data; ``stages`` compress/init/core/refine.

    Raises
    ------
    DataError
        Data that :func:`sdf.tensors.as_tensor` rejects, or of order < 2.
    ModelError
        A bad rank, init, seed or compress value.

    See Also
    --------
    sdf.models.rankest, sdf.models.corcondia, sdf.models.fms

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import cpd_to_tensor
    >>> from sdf.models import cpd, fms
    >>> rng = np.random.default_rng(0)
    >>> A = [rng.standard_normal((n, 3)) for n in (20, 15, 10)]
    >>> dec = cpd(cpd_to_tensor(A), 3, seed=1)
    >>> [s.name for s in dec.stages]
    ['compress', 'init', 'core', 'refine']
    >>> bool(dec.relerr < 1e-8), round(fms(dec.factors, A), 6)
    (True, 1.0)

    Complex data give complex factors:

    >>> Z = [M + 1j * rng.standard_normal(M.shape) for M in A]
    >>> dec = cpd(cpd_to_tensor(Z), 3, seed=1)
    >>> dec.factors[0].dtype, bool(dec.relerr < 1e-8), round(fms(dec, Z), 6)
    (dtype('complex128'), True, 1.0)

    Nonnegative factors:

    >>> P = [rng.random((n, 2)) for n in (8, 7, 6)]
    >>> dec = cpd(cpd_to_tensor(P), 2, nonneg=True, seed=0)
    >>> bool(min(F.min() for F in dec.factors) >= 0), bool(dec.relerr < 1e-6)
    (True, True)

    Counts with the Poisson loss (log link: the CPD is the log of the mean count):

    >>> B = [0.8 * F for F in A]
    >>> counts = rng.poisson(np.exp(cpd_to_tensor(B))).astype(float)
    >>> dec = cpd(counts, 3, loss="poisson", seed=1)
    >>> [s.name for s in dec.stages], bool(fms(dec.factors, B) > 0.9)
    (['init', 'fit'], True)
    """
    check_fit_options(cpd, fit_options, method=method, options=options, display=display)
    X = as_data(data)
    rank = check_int(rank, "rank")
    _warn_rank_above_bound(X.shape, rank)
    if not isinstance(nonneg, (bool, np.bool_)):
        raise ModelError(f"nonneg: expected True or False, got {nonneg!r}")
    if check_int(n_starts, "n_starts") > 1:
        def one(k: int, rng: np.random.Generator) -> Decomposition:
            return cpd(X, rank, init=init if k == 0 else "random", seed=rng, method=method,
                       compress=compress, loss=loss, complex=complex, nonneg=nonneg,
                       display=display, callback=callback, options=options, **fit_options)
        return best_of_starts(one, n_starts, make_rng(seed))
    rng = make_rng(seed)
    complex_factors = factors_are_complex(complex, X.is_complex, nonneg)
    timer = Timer()
    stages: list[Stage] = []
    given = not isinstance(init, str)
    try:
        the_loss = as_loss(loss, "loss")
    except ValueError as bad:
        raise ModelError(str(bad)) from None
    if not the_loss.is_gaussian:
        return _cpd_with_loss(X, rank, the_loss, init, rng, method, compress, timer,
                              dict(method=method, options=options, fit_options=fit_options,
                                   display=display, callback=callback), bool(nonneg))
    ml = compress_data(X, [rank] * X.ndim, compress, timer, stages, rng)
    if ml is None and compress is not False and _compresses_filled(X):
        ml = _compress_filled(X, rank, compress, timer, stages)
    if ml is None:
        dense = None if given or init == "random" else dense_standin(X)[0]
        start, how = _initial(X, dense, rank, init, rng, complex_factors)
    elif given or init == "random":
        full = (_given(init, X.shape, rank, complex_factors) if given
                else random_factors(X.shape, rank, rng, complex=complex_factors))
        start = project(full, range(X.ndim), ml)
        how = ("given" if given else "random") + ", projected on the MLSVD bases"
    else:
        start, how = _initial(X, ml.core, rank, init, rng, complex_factors)
    stages.append(Stage("init", how, 0, timer.lap()))
    if ml is None and compress is not False and _als_applies(X, start):
        start, sweeps, err = _row_als(X, start)
        stages.append(Stage("als", "row-wise alternating least squares on the known entries",
                            sweeps, timer.lap(), err))
    labels = labels_of(X)
    settings = dict(method=method, options=options, fit_options=fit_options,
                    display=display, callback=callback)
    build: Callable[..., sdf.Term] = sdf.CPD
    if nonneg:
        if ml is not None:  # the start came from the core; the constrained fit runs on the data
            start, ml = expand(start, range(X.ndim), ml), None
        start = [np.sqrt(np.abs(A)) for A in start]
        build = _nonneg_cpd
    fit = run_fits(X, start, list(range(X.ndim)), labels, build, ml, settings, timer,
                   stages, "nonnegative CPD" if nonneg else "CPD")
    factors = [Z * Z for Z in fit.values] if nonneg else fit.values
    relerr = float(fit.result.relerr["data"])
    return Decomposition(kind="CPD", factors=factors, relerr=relerr,
                         history=fit.result.history, result=fit.result, stages=stages,
                         relerrs={"data": relerr}, labels=labels)


#: Iterations of the least-squares fit of the working data that starts a loss's fit.
_START_MAX_ITER = 50


def _cpd_with_loss(X: Tensor, rank: int, loss: Loss, init: object, rng: np.random.Generator,
                   method: MethodName, compress: Literal["auto"] | bool, timer: Timer,
                   settings: dict[str, Any], nonneg: bool = False) -> Decomposition:
    """The CPD of ``X`` under a non-Gaussian ``loss``: working-data start, loss fit (with
    nonnegative factors when the loss's model must be nonnegative or ``nonneg``)."""
    stages: list[Stage] = []
    if not isinstance(init, str):
        start, how = user_factors(init, X.shape, [rank] * X.ndim), "given"
    else:
        if init not in ("auto", "gevd", "random"):
            raise ModelError(f"init: expected 'auto', 'gevd', 'random' or a list of factors, "
                             f"got {init!r}")
        how_start = cast(InitMethod, init)
        # A start needs no imputation rounds on incomplete data (compress=False skips them).
        squeeze = compress if X.n_known == X.size else False
        found = least_squares_start(X, loss, lambda W: cpd(
            W, rank, init=how_start, seed=rng, method=method, compress=squeeze,
            max_iter=_START_MAX_ITER))
        if found is None:
            start, how = random_factors(X.shape, rank, rng), "random"
            if loss.nonnegative_model or nonneg:
                start, how = [np.abs(A) for A in start], "random, absolute values"
        else:
            start, how = found
    stages.append(Stage("init", how, 0, timer.lap()))
    labels = labels_of(X)
    if loss.nonnegative_model or nonneg:
        values, result = _fit_nonneg(X, start, labels, loss, settings)
        stages.append(stage_from("fit", f"CPD ({loss.name} loss, nonnegative factors) of "
                                 f"the {X.kind} data", result, timer.lap(), "data"))
    else:
        def build(data: Tensor | np.ndarray, variables: list[sdf.Variable]) -> sdf.Term:
            return sdf.CPD(data, variables, loss=loss)

        fit = run_fits(X, start, list(range(X.ndim)), labels, build, None, settings, timer,
                       stages, f"CPD ({loss.name} loss)")
        values, result = fit.values, fit.result
    relerr = float(result.relerr["data"])
    return Decomposition(kind="CPD", factors=values, relerr=relerr, history=result.history,
                         result=result, stages=stages, relerrs={"data": relerr},
                         labels=labels)


def _fit_nonneg(X: Tensor, start: list[np.ndarray], labels: list[str], loss: Loss,
                settings: dict[str, Any]) -> tuple[list[np.ndarray], sdf.Result]:
    """The loss fitted with nonnegative factors ``A_n = z_n^2`` (``tf.nonneg``): the
    model stays in the loss's domain, and no step is lost at its boundary."""
    variables = [sdf.Variable(np.sqrt(np.abs(A)), name=nm) for A, nm in zip(start, labels)]
    factors = [tf.nonneg(v) for v in variables]
    res = engine_fit(sdf.Model(data=sdf.CPD(X, factors, loss=loss)), settings["method"],
                     settings["options"], settings["fit_options"], settings["display"],
                     settings["callback"])
    return [res[f] for f in factors], res
