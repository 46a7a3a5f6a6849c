"""PARAFAC2 driver: compress the slices, SVD-based start, fit the engine's PARAFAC2 term.

1. **Compression** (slices without missing entries and wider than the shared mode):
   ``X_k = (X_k V_k) V_k^T`` with ``V_k`` (J_k x r_k) an orthonormal basis of the row
   space of ``X_k``. The optimal ``P_k`` lies in that row space, so the PARAFAC2 of the
   ``X_k V_k`` (I x r_k) is the one of the ``X_k`` exactly (same error), with
   ``P_k = V_k P~_k``.
2. **Start** (``init="svd"``, Kiers, ten Berge and Bro's): ``A`` from the ``R`` leading
   left singular vectors of ``[X_1 ... X_K]`` (missing entries as zeros), ``B = I``,
   ``C`` all ones (a CPD of the projected data ``X_k P_k`` as start was measured slower
   to the same error and no more reliable). Further starts
   (``n_starts > 1``) are random (seeded); the best fit is kept, every one is listed in
   :attr:`Parafac2Decomposition.stages`.
3. **Imputation** (from the SVD-based start, on slices with missing entries, between
   2 % and 75 % of them, no ``nonneg``): expectation-maximisation rounds: the missing
   entries are filled with the current model, then one Gauss-Newton step of the
   complete-data :class:`sdf.PARAFAC2` term on the filled slices (its ``P_k`` in closed
   form), until the error on the known entries changes by less than 1e-7 (relative) or
   after 100 rounds. A round costs far less than a step of the exact missing-data fit,
   whose every point solves an inner majorization for the ``P_k`` (alternating least
   squares as the round's step was measured to need hundreds of rounds and to stall in
   swamps). The exact fit on the known entries then finishes from there, its projections
   warm-started, so the reported error is that of the returned factors. From random
   starts the rounds were measured to end in swamps that the exact fit then needs its
   whole iteration budget to leave: random starts go to the exact fit directly.
4. **Fit** of the :class:`sdf.PARAFAC2` term by the engine, ``A`` and/or ``C`` through
   :func:`sdf.transforms.nonneg` when asked.

Complex slices (or ``complex=True``) give complex factors and unitary ``P_k`` (``P_k^H
P_k = I``): every start is complex (the SVD-based one from the complex SVD, random ones
circular complex Gaussian), the compression keeps ``X_k V_k`` (``X_k = (X_k V_k) V_k^H``)
and maps back ``P_k = conj(V_k) P~_k``, and the imputation's Procrustes steps are the
unitary ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

import sdf
from sdf import transforms as tf
from sdf.errors import ModelError, SdfWarning
from sdf.result import History, Result
from sdf.solvers import MethodName
from sdf.terms.parafac2 import _polar, _Slices, _procrustes_target

from sdf.models._common import (Timer, check_fit_options, check_int, factors_are_complex,
                                engine_fit, make_rng, quiet, random_array, user_factors)
from sdf.models._progress import FitTracker, progress_bar
from sdf.models._result import Stage, StartRecord
from sdf._blas import with_one_blas_pool

__all__ = ["Parafac2Decomposition", "parafac2"]

NonnegMode = Literal["A", "C"]


@dataclass
class Parafac2Decomposition:
    """A fitted PARAFAC2 ``X_k ≈ A diag(c_k) B_k^T``, ``B_k = P_k B``.

    Attributes
    ----------
    factors : list of ndarray
        ``[A, B, C]`` of shapes (I, R), (R, R), (K, R).
    projections : list of ndarray
        ``P_k`` of shape (J_k, R), orthonormal columns.
    relerr : float
        ``||model - data|| / ||data||`` over the known entries.
    history : sdf.History
        Iteration history of the kept fit.
    result : sdf.Result
        The engine's result of the kept fit (on the compressed slices when compressed:
        same error; its variables are those of the compressed problem).
    stages : list of Stage
        Compression, starts and fits, in order.
    starts : list of StartRecord
        Every start and its final error (one record per start, in the order run).
    """

    factors: list[np.ndarray]
    projections: list[np.ndarray]
    relerr: float
    history: History
    result: Result
    stages: list[Stage] = field(default_factory=list)
    starts: list[StartRecord] = field(default_factory=list)

    @property
    def slice_factors(self) -> list[np.ndarray]:
        """The evolving factors ``B_k = P_k B`` (J_k, R)."""
        return [P @ self.factors[1] for P in self.projections]

    @property
    def time(self) -> float:
        """Total wall-clock seconds over all stages."""
        return float(sum(s.time for s in self.stages))


def _compress(data: _Slices, rank: int) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """The slices ``X_k V_k`` and the bases ``V_k`` (None: not compressed)."""
    I = data.shape[0]
    if data.W is not None or np.all(data.widths <= I) or I < rank:
        return data.slices, None
    out, bases = [], []
    for X in data.slices:
        if X.shape[1] <= I:
            out.append(X)
            bases.append(np.eye(X.shape[1]))
            continue
        _, _, Vt = np.linalg.svd(X, full_matrices=False)
        out.append(X @ Vt.conj().T)  # X = (X Vt^H) Vt: the row space keeps X whole
        bases.append(Vt.T)
    return out, bases


def _svd_start(slices: Sequence[np.ndarray], rank: int) -> list[np.ndarray]:
    """Kiers' start: ``A`` the leading left singular vectors of ``[X_1 ... X_K]`` (times
    their singular values over sqrt(K)), ``B = I``, ``C`` all ones."""
    filled = np.hstack([np.nan_to_num(X, nan=0.0) for X in slices])
    U, s, _ = np.linalg.svd(filled, full_matrices=False)
    A = U[:, :rank] * s[:rank] / np.sqrt(len(slices))
    return [A, np.eye(rank), np.ones((len(slices), rank))]


#: Fractions of missing entries for which the imputation warm start runs (below: the
#: exact fit's inner majorization converges in a few steps; above: the filled values
#: dominate the rounds).
_IMPUTE_MISSING = (0.02, 0.75)
_IMPUTE_MAX_ROUNDS = 100
_IMPUTE_TOL = 1e-7
#: One Gauss-Newton step per round, its inner PCG cut short: the filled values change at
#: every round, so a precise step on them is wasted (measured: fewer seconds in all than
#: two steps or 15 PCG iterations, though a few more rounds).
_IMPUTE_STEP = sdf.NLSOptions(max_iter=1, cg_max_iter=5)


def _imputable(data: _Slices, nonneg: Sequence[NonnegMode]) -> bool:
    if data.W is None or nonneg:
        return False
    missing = 1.0 - data.n_known / float(sum(X.size for X in data.slices))
    return _IMPUTE_MISSING[0] <= missing <= _IMPUTE_MISSING[1]


def _impute(data: _Slices, start: list[np.ndarray]
            ) -> tuple[list[np.ndarray], np.ndarray, int, float]:
    """EM warm start: fill the missing entries with the model, one complete-data
    Gauss-Newton step on the filled slices, repeat. Returns ``[A, B, C]``, the padded
    projections (K, J, R), the rounds run and the relative error on the known entries."""
    assert data.W is not None
    X, known = data.X, data.W > 0
    norm = np.sqrt(data.norm_squared) or 1.0
    factors = [np.array(F) for F in start]
    names = ["A", "B", "C"]
    valid = data.valid
    A, B, C = factors
    M = (A[None] * C[:, None, :]) @ B.T  # M_k = A D_k B^T, (K, I, R)
    P, _ = _polar(_procrustes_target(X, M), valid)  # the missing entries as zeros
    prev, err, rounds = np.inf, np.inf, 0
    for rounds in range(1, _IMPUTE_MAX_ROUNDS + 1):
        filled = M @ np.swapaxes(P, 1, 2)
        err = float(np.linalg.norm((filled - X)[known])) / norm
        if abs(prev - err) <= _IMPUTE_TOL * max(err, 1e-300):
            break
        prev = err
        np.copyto(filled, X, where=known)
        variables = [sdf.Variable(F, name=nm) for F, nm in zip(factors, names)]
        term = sdf.PARAFAC2(data.filled(filled), variables)
        with quiet():
            res = sdf.Model(data=term).fit(method="nls", options=_IMPUTE_STEP)
        factors = [np.array(res.variables[nm]) for nm in names]
        A, B, C = factors
        M = (A[None] * C[:, None, :]) @ B.T
        P, _ = _polar(_procrustes_target(filled, M), valid)
    return factors, P, rounds, err


def _signed(start: list[np.ndarray], nonneg: Sequence[NonnegMode]) -> list[np.ndarray]:
    """Flip component signs (in pairs, the model unchanged) so that the nonnegative
    factors' columns sum to >= 0."""
    A, B, C = (F.copy() for F in start)
    for r in range(A.shape[1]):
        sa = -1.0 if "A" in nonneg and A[:, r].sum() < 0 else 1.0
        sc = -1.0 if "C" in nonneg and C[:, r].sum() < 0 else 1.0
        A[:, r] *= sa
        C[:, r] *= sc
        B[:, r] *= sa * sc
    return [A, B, C]


def _fit_once(slices: Sequence[np.ndarray] | _Slices, start: list[np.ndarray],
              nonneg: Sequence[NonnegMode], settings: dict[str, Any],
              projections: np.ndarray | None = None
              ) -> tuple[Result, list[np.ndarray], sdf.PARAFAC2]:
    names = ["A", "B", "C"]
    factors: list[sdf.Expr] = []
    for name, F in zip(names, _signed(start, nonneg)):
        if name in nonneg:
            factors.append(tf.nonneg(sdf.Variable(np.sqrt(np.abs(F)), name=name)))
        else:
            factors.append(sdf.Variable(F, name=name))
    term = sdf.PARAFAC2(slices, factors)
    # The imputation's projections start the term's inner majorization at its first point.
    term._warm = projections
    res = engine_fit(sdf.Model(data=term), settings["method"], settings["options"],
                     settings["fit_options"], settings["display"], settings["callback"])
    return res, [np.array(res[f]) for f in factors], term


@with_one_blas_pool
def parafac2(
    slices: Any,
    rank: int,
    *,
    init: Literal["svd", "random"] | list[np.ndarray] = "svd",
    nonneg: Sequence[NonnegMode] = (),
    complex: bool = False,
    n_starts: int = 1,
    seed: int | np.random.Generator | None = None,
    method: MethodName = "nls",
    progress: bool = False,
    display: int = 0,
    callback: Callable[[sdf.IterationInfo], Any] | None = None,
    options: sdf.NLSOptions | sdf.MinfOptions | None = None,
    **fit_options: Any,
) -> Parafac2Decomposition:
    r"""PARAFAC2 ``X_k ≈ A diag(c_k) B_k^T`` with ``B_k = P_k B``, ``P_k^H P_k = I``.

    Minimises ``sum_k ||X_k - A diag(c_k) B^T P_k^T||^2`` over the known entries by the
    pipeline of the module docstring (compression, SVD-based start, Gauss-Newton on the
    :class:`sdf.PARAFAC2` term, whose ``P_k`` are eliminated at every point).

    Parameters
    ----------
    slices : sequence of array_like, each of shape (I, J_k), or array of shape (K, I, J)
        NaN entries are missing; never modified.
    rank : int
        Number of components ``R`` (each ``J_k >= R``).
    init : {"svd", "random"} or list [A, B, C], default "svd"
        First start; given factors have shapes (I, R), (R, R), (K, R).
    nonneg : sequence of {"A", "C"}, default ()
        Factors kept nonnegative (through :func:`sdf.transforms.nonneg`).
    complex : bool, default False
        Complex factors for real slices (complex slices always get complex factors and
        unitary ``P_k``, from complex starts; a real ``init`` is made complex).
    n_starts : int, default 1
        Number of starts: ``init`` then random ones; the fit with the lowest error is kept.
    seed : int or numpy.random.Generator, optional
        Seeds the random starts.
    method : str, default "nls"
    progress : bool, default False
        Show a progress bar on stderr over the starts, labelled per start (tqdm's when
        installed, else a one-line text bar).
    display : int, default 0
    callback : callable, optional
        Called with an :class:`sdf.IterationInfo` after every iteration of every fit.
    options : sdf.NLSOptions or sdf.MinfOptions, optional
        Solver settings; ``**fit_options`` override single fields.

    Returns
    -------
    Parafac2Decomposition

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models import parafac2
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = rng.random((10, 2)), rng.standard_normal((2, 2)), rng.random((6, 2))
    >>> P = [np.linalg.qr(rng.standard_normal((J, 2)))[0] for J in (5, 6, 7, 8, 6, 5)]
    >>> X = [A @ np.diag(c) @ (Pk @ B).T for c, Pk in zip(C, P)]
    >>> dec = parafac2(X, 2, nonneg=["A", "C"], seed=0)
    >>> bool(dec.relerr < 1e-6), [F.shape for F in dec.factors]
    (True, [(10, 2), (2, 2), (6, 2)])

    Complex slices give complex factors and unitary projections:

    >>> Z = [np.exp(1j * k) * Xk for k, Xk in enumerate(X)]
    >>> dec = parafac2(Z, 2, seed=0)
    >>> dec.factors[0].dtype, bool(dec.relerr < 1e-6)
    (dtype('complex128'), True)
    """
    check_fit_options(parafac2, fit_options, method=method, options=options, display=display)
    data = _Slices(slices)
    rank = check_int(rank, "rank")
    n_starts = check_int(n_starts, "n_starts")
    if isinstance(nonneg, str) or not all(m in ("A", "C") for m in nonneg):
        raise ModelError(f"nonneg: expected a list of factor names among 'A', 'C', got "
                         f"{nonneg!r}")
    is_complex = factors_are_complex(complex, data.is_complex, nonneg, "slices")
    narrow = np.flatnonzero(data.widths < rank)
    if narrow.size:
        k = int(narrow[0])
        raise ModelError(f"rank: slice {k} has {data.widths[k]} columns, fewer than the "
                         f"rank {rank}")
    rng = make_rng(seed)
    I, K = data.shape
    timer = Timer()
    stages: list[Stage] = []
    work, bases = _compress(data, rank)
    if bases is not None:
        stages.append(Stage("compress", "row spaces of the wide slices", 0, timer.lap()))
    settings = dict(method=method, options=options, fit_options=fit_options,
                    display=display, callback=callback)
    best: tuple[Result, list[np.ndarray], sdf.PARAFAC2] | None = None
    # Missing entries: no compression, the term takes the parsed slices as they are.
    em = data if bases is None and _imputable(data, nonneg) else None
    starts: list[StartRecord] = []
    if not isinstance(progress, (bool, np.bool_)):
        raise ModelError(f"progress: expected True or False, got {progress!r}")
    with progress_bar(bool(progress), n_starts, "parafac2") as bar:
        track = FitTracker("parafac2", bar, display if n_starts > 1 else 0)
        for start_no in range(n_starts):
            best = _next_start(start_no, n_starts, init, work, em, rank, (I, K), rng,
                               is_complex, nonneg, settings, stages, timer, track, best, starts)
    assert best is not None
    res, factors, term = best
    projections = term.projections(factors)
    if bases is not None:
        projections = [V @ P for V, P in zip(bases, projections)]
    return Parafac2Decomposition(factors=factors, projections=projections,
                                 relerr=float(res.relerr["data"]), history=res.history,
                                 result=res, stages=stages, starts=starts)


_Fitted = tuple[Result, list[np.ndarray], sdf.PARAFAC2]


def _next_start(start_no: int, n_starts: int, init: object, work: Sequence[np.ndarray],
                em: _Slices | None, rank: int, sizes: tuple[int, int], rng: np.random.Generator,
                complex_factors: bool, nonneg: Sequence[NonnegMode], settings: dict[str, Any],
                stages: list[Stage], timer: Timer, track: FitTracker, best: _Fitted | None,
                starts: list[StartRecord]) -> _Fitted:
    """Fit from start number ``start_no`` (recorded in ``starts``), through the imputation
    warm start when ``em`` is given; the better of that fit and ``best``. With
    ``complex_factors`` every start is complex."""
    I, K = sizes
    first = start_no == 0
    if first and not isinstance(init, str):
        start, how = user_factors(init, (I, rank, K), [rank] * 3), "given"
    elif first and init == "svd":
        start, how = _svd_start(work, rank), "svd"
    elif first and init != "random":
        raise ModelError(f"init: expected 'svd', 'random' or a list [A, B, C], got {init!r}")
    else:
        start = [random_array((n, rank), rng, complex_factors) for n in (I, rank, K)]
        how = "random"
    if complex_factors:
        start = [F.astype(np.complex128) for F in start]
    stages.append(Stage("init", how, 0, timer.lap()))
    first_stage = len(stages) - 1
    track.before(f"start {start_no + 1} of {n_starts} ({how})")
    projections = None
    if em is not None and how == "svd":
        start, projections, rounds, err = _impute(em, start)
        stages.append(Stage("impute", "EM rounds of complete-data Gauss-Newton on the "
                            "filled slices",
                            rounds, timer.lap(), err))
    with warnings.catch_warnings():
        if n_starts > 1:
            warnings.simplefilter("ignore", SdfWarning)
        fitted = _fit_once(work if em is None else em, start, nonneg, settings, projections)
    stages.append(Stage("fit", f"PARAFAC2 from the {how} start", fitted[0].iterations,
                        timer.lap(), float(fitted[0].relerr["data"])))
    track.after(f"start {start_no + 1} of {n_starts} ({how}): relerr "
                f"{float(fitted[0].relerr['data']):.3g}")
    starts.append(StartRecord(start_no, how, float(fitted[0].relerr["data"]),
                              fitted[0].iterations,
                              sum(st.time for st in stages[first_stage:]),
                              fitted[0].stop))
    if best is None or fitted[0].relerr["data"] < best[0].relerr["data"]:
        return fitted
    return best
