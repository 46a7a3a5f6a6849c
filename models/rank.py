"""Choosing ranks: CPD rank by weighed evidence (error curve, core consistency, degeneracy,
split-half stability, held-out error), multilinear ranks, stability."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from sdf.algebra import unfold
from sdf.errors import ModelError
from sdf.losses import Loss, as_loss
from sdf.solvers import check_display
from sdf.models._common import (Timer, as_data, check_fit_options, check_int, check_number,
                                make_rng, quiet)
from sdf.models._loss_start import working_array
from sdf.models._progress import FitTracker, progress_bar
from sdf.models._result import Decomposition
from sdf.models.cpd import cpd
from sdf.models.diagnostics import MAX_IMPUTE, corcondia, degeneracy, fms, impute
from sdf.tensors import Tensor, as_tensor
from sdf._blas import with_one_blas_pool

__all__ = ["MLRankEstimate", "RankCheck", "RankCriteria", "RankEstimate", "RankProgress",
           "Stability", "lcorner", "mlrankest", "progress_printer", "rankest", "stability"]

_LOG_FLOOR = 1e-14


def lcorner(errors: ArrayLike) -> int:
    r"""Index of the L-curve corner of a decreasing error curve.

    ``errors[k]`` is the relative error with ``k + 1`` terms; the error with 0 terms is
    taken as 1 (the zero model). On ``L_k = log10(max(e_k, 1e-14))`` the corner is the
    ``k`` with the largest ratio of the drop into it to the drop out of it,

    .. math:: k^\star = \arg\max_k \frac{L_{k-1} - L_k}{\max(L_k - L_{k+1},\ 10^{-3})},

    over every ``k`` that has a successor. When an error reaches the floor ``1e-14``
    (exact fit), the first such ``k`` is returned.

    Parameters
    ----------
    errors : array_like of shape (K,), K >= 2

    Returns
    -------
    int
        Zero-based index into ``errors`` (the rank is that index + 1).

    Examples
    --------
    >>> lcorner([0.6, 0.36, 0.025, 0.021, 0.017])
    2
    """
    return int(np.argmax(_corner_ratios(errors)))


def _corner_ratios(errors: ArrayLike) -> np.ndarray:
    """The ratio :func:`lcorner` maximises, for every ``k`` with a successor (an exact
    fit: infinite at the first exact ``k``, 0 elsewhere)."""
    e = np.asarray(errors, dtype=float)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)):
        raise ModelError(f"errors: expected at least two finite errors, got {errors!r}")
    exact = np.flatnonzero(e <= _LOG_FLOOR)
    if exact.size:
        ratios = np.zeros(max(e.size - 1, int(exact[0]) + 1))
        ratios[exact[0]] = np.inf
        return ratios
    L = np.log10(np.concatenate([[1.0], np.maximum(e, _LOG_FLOOR)]))
    into = L[:-2] - L[1:-1]
    out = np.maximum(L[1:-1] - L[2:], 1e-3)
    return np.asarray(into / out)


#: The checks a rank must pass in :func:`rankest`, in the order they are reported.
RankCheck = Literal["gain", "corcondia", "degeneracy", "heldout", "stability"]


@dataclass(frozen=True, kw_only=True)
class RankCriteria:
    """What makes a rank acceptable to :func:`rankest`.

    Attributes
    ----------
    min_gain : float, default 2.0
        ``"gain"``: the rank-``R`` fit must remove at least this many times the noise
        share of the rank-``(R-1)`` residual (see :func:`rankest`).
    min_corcondia : float, default 50.0
        ``"corcondia"``: core consistency (percent) at least this (Bro and Kiers: about
        50 and below is a model in trouble). Not checked for order-2 data.
    stability_repeats : int, default 2
        ``"stability"``: split-half repeats (:func:`stability`) per rank checked; 0 turns
        the check off. Needs order >= 3 and a largest mode of at least 4 slices.
    min_stability : float, default 0.7
        Smallest split-half factor match score accepted (the minimum over the repeats).
        Halves of small data with correlated factors match at about 0.8 even at the
        true rank (benchmarks/bench_rankest.py), so the default rejects only clearly
        unstable ranks; the gain check is what rejects fitted noise.
    holdout : float, default 0.0
        ``"heldout"``: fraction of the known entries held out (0 turns the check off,
        else in (0, 0.5]); a rank passes when its fit to the other entries predicts them
        better than the previous rank's fit does.

    Examples
    --------
    >>> RankCriteria(holdout=0.1, stability_repeats=0).holdout
    0.1
    """

    min_gain: float = 2.0
    min_corcondia: float = 50.0
    stability_repeats: int = 2
    min_stability: float = 0.7
    holdout: float = 0.0

    def __post_init__(self) -> None:
        check_number(self.min_gain, "RankCriteria.min_gain")
        check_number(self.min_corcondia, "RankCriteria.min_corcondia", low=-np.inf,
                     high=100.0)
        check_int(self.stability_repeats, "RankCriteria.stability_repeats", low=0)
        check_number(self.min_stability, "RankCriteria.min_stability", high=1.0)
        check_number(self.holdout, "RankCriteria.holdout", high=0.5)


@dataclass
class RankProgress:
    """What :func:`rankest` reports after every fit (to its ``progress`` callback).

    Attributes
    ----------
    stage : {"fit", "heldout", "stability"}
        A start of the scan, the fit to the training entries, or a split-half check.
    rank : int
    index : int
        Start number (``"fit"``), else 0.
    value : float
        Relative error of the fit (``"fit"``), held-out relative error (``"heldout"``),
        or the smallest split-half factor match score (``"stability"``).
    elapsed : float
        Seconds since :func:`rankest` began.
    """

    stage: Literal["fit", "heldout", "stability"]
    rank: int
    index: int
    value: float
    elapsed: float


def progress_printer(print_fn: Callable[[str], Any] = print) -> Callable[[RankProgress], None]:
    """A :func:`rankest` ``progress`` callback printing one line per fit.

    Examples
    --------
    >>> show = progress_printer()
    >>> show(RankProgress("fit", 3, 1, 0.0123, 1.5))
    rankest  R=3  fit 1          0.0123    1.5 s
    """
    def show(info: RankProgress) -> None:
        what = f"{info.stage} {info.index}" if info.stage == "fit" else info.stage
        print_fn(f"rankest  R={info.rank:<2d} {what:<10} {info.value:10.4g} "
                 f"{info.elapsed:6.1f} s")
    return show


@dataclass(repr=False)
class RankEstimate:
    """Result of :func:`rankest`: the rank chosen, why, the runner-up and the evidence.

    Attributes
    ----------
    rank : int
        The largest rank that passes every check (see :func:`rankest`).
    runner_up : int or None
        The next candidate: fewest failed checks, then the largest rank.
    reason : str
        Why ``rank`` was chosen and ``runner_up`` was not, in words.
    ranks : ndarray of int
        Ranks tried, ``1, 2, ...``.
    errors : ndarray
        Smallest relative error found at each rank (with a non-Gaussian ``loss``:
        ``sqrt(D / D_null)``, the deviance over the constant model's).
    start_errors : ndarray of shape (K, n_starts)
        Relative error of every start.
    corcondia : ndarray
        Core consistency of the best fit at each rank (incomplete data: on the data with
        the missing entries filled from that fit, :func:`sdf.models.impute`).
    gain : ndarray
        ``1 - errors[k]**2 / errors[k - 1]**2`` (1 for rank 1): share of the previous
        rank's residual the rank removes.
    noise_share : float
        ``(sum_n sqrt(I_n))**2 / n_known``: about the share of pure noise one rank-one
        term fits.
    degenerate : ndarray of bool
        Whether the best fit has cancelling components (:func:`sdf.models.degeneracy`).
    heldout : ndarray
        Relative error on the held-out entries (NaN when not asked for).
    stability : ndarray
        Smallest split-half factor match score (NaN where not checked).
    failed : list of tuple of str
        Per rank, the checks it failed.
    corner : int
        The rank at the L-corner of the error curve alone (:func:`lcorner`).
    fits : list of Decomposition
        The best fit at each rank.
    warnings : list of str
        What the engine found in the best fits (degenerate components, fits stopped while
        still improving), each prefixed by its rank.
    time : float
        Wall-clock seconds.
    loss : str
        Name of the loss fitted (``"gaussian"``: least squares).
    deviance : ndarray
        Deviance of the best fit at each rank (the squared error for least squares).
    """

    rank: int
    runner_up: int | None
    reason: str
    ranks: np.ndarray
    errors: np.ndarray
    start_errors: np.ndarray
    corcondia: np.ndarray
    gain: np.ndarray
    noise_share: float
    degenerate: np.ndarray
    heldout: np.ndarray
    stability: np.ndarray
    failed: list[tuple[str, ...]]
    corner: int
    fits: list[Decomposition]
    warnings: list[str] = field(default_factory=list)
    time: float = 0.0
    loss: str = "gaussian"
    deviance: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __repr__(self) -> str:
        return (f"RankEstimate(rank={self.rank}, runner_up={self.runner_up}, "
                f"ranks={int(self.ranks[0])}..{int(self.ranks[-1])}, corner={self.corner}, "
                f"time={self.time:.3g} s, reason={self.reason!r})")

    def summary(self) -> str:
        """The evidence as a table, one row per rank.

        Examples
        --------
        >>> import numpy as np
        >>> from sdf.algebra import cpd_to_tensor
        >>> rng = np.random.default_rng(0)
        >>> T = cpd_to_tensor([rng.standard_normal((n, 2)) for n in (8, 7, 6)])
        >>> T += 1e-3 * rng.standard_normal(T.shape)
        >>> print(rankest(T, 3, seed=0).summary().splitlines()[0])
        rank   relerr   gain/noise   corcondia  degenerate  heldout  stability  failed
        """
        gaussian = self.loss == "gaussian"
        rows = [("rank   relerr" if gaussian else "rank deviance")
                + "   gain/noise   corcondia  degenerate  heldout  stability  failed"]
        for k, R in enumerate(self.ranks):
            mark = " <" if R == self.rank else " ?" if R == self.runner_up else ""
            first = self.errors[k] if gaussian else self.deviance[k]
            rows.append(
                f"{int(R):4d} {first:9.4g} {self.gain[k] / self.noise_share:10.3g} "
                f"{self.corcondia[k]:11.4g} {str(bool(self.degenerate[k])):>11} "
                f"{self.heldout[k]:8.4g} {self.stability[k]:10.3g}  "
                f"{', '.join(self.failed[k]) or '-'}{mark}")
        return "\n".join(rows)


@with_one_blas_pool
def rankest(data: object, max_rank: int, *, n_starts: int = 2, nonneg: bool = False,
            seed: int | np.random.Generator | None = None, tol: float = 1e-12,
            criteria: RankCriteria | None = None,
            progress: bool | Callable[[RankProgress], Any] | None = None,
            display: bool | int = False, **fit_options: Any) -> RankEstimate:
    r"""Estimate a CPD rank by weighing the error curve, core consistency, degeneracy,
    split-half stability and, optionally, held-out error.

    For ``R = 1, 2, ..., max_rank`` a CPD is fitted (:func:`sdf.models.cpd`) from the
    default start and ``n_starts - 1`` random ones, and the best fit is kept; the scan
    stops early once the error is at most ``tol`` (an exact fit). A rank passes when

    With ``loss=`` (passed on to :func:`sdf.models.cpd`, see :mod:`sdf.losses`) the
    errors are deviance-based (``e_R = sqrt(D_R / D_null)``, so ``g_R`` below is the share
    of the previous rank's deviance the rank explains), the summary lists the deviance,
    core consistency is computed on the loss's working data
    (:meth:`sdf.losses.Loss.working_data`) and the held-out check compares held-out
    deviances.

    * ``"gain"``: its fit removes a share
      ``g_R = 1 - e_R^2 / e_{R-1}^2`` (``e_0 = 1``) of the previous residual of at least
      ``criteria.min_gain`` times the noise share ``q = (sum_n sqrt(I_n))^2 / n_known``
      (roughly what one rank-one term fits of pure Gaussian noise: the square of the
      expected spectral norm of a random tensor over its squared Frobenius norm);
    * ``"corcondia"``: its core consistency (:func:`sdf.models.corcondia`; on incomplete
      data, computed on the data with the missing entries filled from the fit,
      :func:`sdf.models.impute`) is at least ``criteria.min_corcondia``;
    * ``"degeneracy"``: its best fit has no cancelling components
      (:func:`sdf.models.degeneracy`);
    * ``"heldout"`` (with ``criteria.holdout > 0``): fitted with one start to the known
      entries less a seeded random ``holdout`` fraction, it predicts those held-out
      entries better than rank ``R - 1`` does;
    * ``"stability"`` (with ``criteria.stability_repeats > 0``): its split-half factor
      match scores (:func:`stability`, the largest mode split) are all at least
      ``criteria.min_stability``. Checked from the largest rank down, only on ranks that
      pass the other checks, until one passes.

    The rank chosen is the largest that passes every check; when none does, the
    L-corner of the error curve (:func:`lcorner`). The runner-up is the next rank by
    fewest failed checks, then largest rank. Fit warnings are collected, not issued.

    Parameters
    ----------
    data : array_like or Tensor
        Anything :func:`sdf.models.cpd` accepts; NaN marks missing entries.
    max_rank : int
        Largest rank tried (>= 2); at least one above the expected rank.
    n_starts : int, default 2
        Starts per rank.
    nonneg : bool, default False
        Fit nonnegative CPDs (``cpd(..., nonneg=True)``) for every rank, held-out and
        stability check.
    seed : int or numpy.random.Generator, optional
        Seeds the starts, the held-out entries and the split halves.
    tol : float, default 1e-12
        Relative error at which the scan stops.
    criteria : RankCriteria, optional
        Thresholds of the checks, stability repeats, held-out fraction.
    progress : bool or callable, optional
        ``True``: a progress bar on stderr labelled per fit (tqdm's when tqdm is
        installed, else a one-line text bar); a callable is called with a
        :class:`RankProgress` after every fit.
    display : bool or int, default False
        ``True``: print one line per fit (:func:`progress_printer`); an integer ``k > 0``:
        also print every internal fit's iteration table every ``k`` iterations, each
        under a heading naming the fit (rank and start, held-out or stability fit).
    **fit_options
        Passed to :func:`sdf.models.cpd` (``max_iter``, ``tol_fun``, ``method`` ...).

    Returns
    -------
    RankEstimate

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import cpd_to_tensor
    >>> rng = np.random.default_rng(0)
    >>> T = cpd_to_tensor([rng.standard_normal((n, 2)) for n in (8, 7, 6)])
    >>> T += 1e-3 * rng.standard_normal(T.shape)
    >>> est = rankest(T, 4, seed=0)
    >>> est.rank, est.runner_up, est.errors.shape
    (2, 1, (4,))
    >>> est.failed[2]
    ('gain',)
    """
    check_fit_options(rankest, fit_options, method=fit_options.get("method", "nls"),
                      options=fit_options.get("options"),
                      display=fit_options.get("display", 0), passed_to=[cpd],
                      set_by_driver=("data", "rank", "init"))
    X = as_data(data, min_order=2)
    max_rank = check_int(max_rank, "max_rank", low=2)
    n_starts = check_int(n_starts, "n_starts")
    tol = check_number(tol, "tol")
    crit = RankCriteria() if criteria is None else criteria
    if not isinstance(crit, RankCriteria):
        raise ModelError(f"criteria: expected a RankCriteria, got {type(criteria).__name__}")
    show_bar = _check_progress(progress)
    table = check_display(display, "rankest") if not isinstance(display, bool) else 0
    fit_options = {**fit_options, "nonneg": nonneg, "display": table}
    rng = make_rng(seed)
    clock = Timer()
    reporters = [f for f in (progress if callable(progress) else None,
                             progress_printer() if display is True or table else None) if f]

    def report(stage: Literal["fit", "heldout", "stability"], R: int, k: int,
               value: float) -> None:
        info = RankProgress(stage, R, k, float(value), time.perf_counter() - clock.start)
        for f in reporters:
            f(info)

    try:
        loss = as_loss(fit_options.get("loss", "gaussian"), "loss")
    except ValueError as err:
        raise ModelError(str(err)) from None
    expected = max_rank * n_starts + (max_rank if crit.holdout > 0 else 0)
    with progress_bar(show_bar, expected, "rankest") as bar:
        track = FitTracker("rankest", bar, table)
        scan = _scan(X, max_rank, n_starts, tol, rng, report, fit_options, track)
        K = len(scan.fits)
        if bar is not None:
            unused = max_rank - K  # ranks the scan skipped after an exact fit
            bar.grow(-unused * n_starts - (unused if crit.holdout > 0 else 0))
        heldout = (_heldout_errors(X, K, crit.holdout, rng, report, fit_options, track,
                                   loss)
                   if crit.holdout > 0 else np.full(K, np.nan))
        failed, gain, noise, cc, degenerate, errs = _checks(X, scan, heldout, crit, loss)
        stab = _stability_checks(X, failed, crit, rng, report, fit_options, track)
    return _estimate(scan, failed, gain, noise, cc, degenerate, errs, heldout, stab, crit,
                     clock, loss)


def _check_progress(progress: object) -> bool:
    """Whether ``progress`` asks for a bar; ModelError unless a bool, None or callable."""
    if progress is None or isinstance(progress, (bool, np.bool_)):
        return bool(progress)
    if not callable(progress):
        raise ModelError(f"progress: expected True, False or a callable, got "
                         f"{type(progress).__name__}")
    return False


def _checks(X: Tensor, scan: _Scan, heldout: np.ndarray, crit: RankCriteria, loss: Loss
            ) -> tuple[list[list[str]], np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """Per rank, the checks failed (before stability), and the evidence they read."""
    K = len(scan.fits)
    errs = np.array([d.relerr for d in scan.fits])
    prev = np.concatenate([[1.0], errs[:-1] ** 2])
    gain = 1.0 - errs**2 / np.where(prev > 0, prev, 1.0)
    n_known = X.n_known if X.known_entries() is not None else X.size
    noise = min(1.0, float(sum(np.sqrt(X.shape)) ** 2 / max(n_known, 1)))
    on = X if loss.is_gaussian else _working_tensor(X, loss)
    cc = np.array([_corcondia(on, d) if on is not None else np.nan for d in scan.fits])
    degenerate = np.array([degeneracy(d.factors, warn=False).degenerate for d in scan.fits])
    failed: list[list[str]] = []
    for k in range(K):
        fails = []
        if gain[k] < crit.min_gain * noise:
            fails.append("gain")
        if np.isfinite(cc[k]) and cc[k] < crit.min_corcondia:
            fails.append("corcondia")
        if degenerate[k]:
            fails.append("degeneracy")
        if crit.holdout > 0 and not heldout[k] < (heldout[k - 1] if k else 1.0):
            fails.append("heldout")
        failed.append(fails)
    return failed, gain, noise, cc, degenerate, errs


def _estimate(scan: _Scan, failed: list[list[str]], gain: np.ndarray, noise: float,
              cc: np.ndarray, degenerate: np.ndarray, errs: np.ndarray, heldout: np.ndarray,
              stab: np.ndarray, crit: RankCriteria, clock: Timer, loss: Loss) -> RankEstimate:
    K = len(scan.fits)
    corner = lcorner(errs) + 1 if K >= 2 else 1
    passing = [k for k in range(K) if not failed[k]]
    chosen = passing[-1] if passing else corner - 1
    order = sorted((k for k in range(K) if k != chosen), key=lambda k: (len(failed[k]), -k))
    runner = order[0] if order else None
    est = RankEstimate(
        rank=chosen + 1, runner_up=None if runner is None else runner + 1, reason="",
        ranks=np.arange(1, K + 1), errors=errs, start_errors=scan.start_errors,
        corcondia=cc, gain=gain, noise_share=noise, degenerate=degenerate, heldout=heldout,
        stability=stab, failed=[tuple(f) for f in failed], corner=corner, fits=scan.fits,
        warnings=scan.warnings, time=clock.lap(), loss=loss.name,
        deviance=np.array([d.result.deviance["data"] for d in scan.fits]))
    est.reason = _reason(est, crit, bool(passing))
    return est


class _Scan:
    """The best fit, every start's error and the fits' warnings, per rank."""

    def __init__(self) -> None:
        self.fits: list[Decomposition] = []
        self.start_errors = np.empty((0, 0))
        self.warnings: list[str] = []


def _scan(X: Tensor, max_rank: int, n_starts: int, tol: float, rng: np.random.Generator,
          report: Callable[..., None], fit_options: dict[str, Any], track: FitTracker
          ) -> _Scan:
    scan = _Scan()
    rows = []
    for R in range(1, max_rank + 1):
        starts = []
        for k in range(n_starts):
            label = f"rank {R}, start {k + 1} of {n_starts}"
            track.before(label)
            with quiet():  # over-factored ranks are expected to be degenerate
                dec = cpd(X, R, init="auto" if k == 0 else "random", seed=rng, **fit_options)
            starts.append(dec)
            track.after(f"{label}: relerr {dec.relerr:.3g}")
            report("fit", R, k + 1, dec.relerr)
        best = min(starts, key=lambda d: d.relerr)
        scan.fits.append(best)
        scan.warnings += [f"rank {R}: {w}" for w in best.warnings]
        rows.append([d.relerr for d in starts])
        if best.relerr <= tol:
            break
    scan.start_errors = np.array(rows)
    return scan


def _working_tensor(X: Tensor, loss: Loss) -> Tensor | None:
    """The loss's working data of ``X`` (None when they cannot be formed)."""
    W = working_array(X, loss)
    return None if W is None else as_data(W)


def _corcondia(X: Tensor, dec: Decomposition) -> float:
    if X.ndim < 3 or not all(np.linalg.norm(A, axis=0).all() for A in dec.factors):
        return np.nan
    data = impute(X, dec.factors) if X.known_entries() is not None else X
    return corcondia(data, dec.factors)


def _heldout_errors(X: Tensor, K: int, fraction: float, rng: np.random.Generator,
                    report: Callable[..., None], fit_options: dict[str, Any],
                    track: FitTracker, loss: Loss) -> np.ndarray:
    """Relative error on a random ``fraction`` of the known entries of fits to the rest
    (deviance-based for a non-Gaussian ``loss``)."""
    if X.size > MAX_IMPUTE:
        raise ModelError(f"criteria.holdout: held-out checks need data of at most "
                         f"{MAX_IMPUTE} entries, got {X.size}")
    D = np.array(X.to_dense())
    known = np.flatnonzero(~np.isnan(D))
    held = rng.choice(known, size=max(1, int(round(fraction * known.size))), replace=False)
    values = D.flat[held].copy()
    D.flat[held] = np.nan
    subs = np.unravel_index(held, D.shape)
    norm = float(np.linalg.norm(values)) or 1.0
    out = np.empty(K)
    for k in range(K):
        label = f"held-out check, rank {k + 1}"
        track.before(label)
        with quiet():
            dec = cpd(D, k + 1, seed=rng, **fit_options)
        track.after(label)
        model = np.ones((held.size, k + 1))
        for A, idx in zip(dec.factors, subs):
            model *= A[idx]
        if loss.is_gaussian:
            out[k] = float(np.linalg.norm(model.sum(axis=1) - values)) / norm
        else:
            with np.errstate(all="ignore"):
                null = np.full(values.shape, loss.null_model(values))
                out[k] = float(np.sqrt(np.sum(loss.value(model.sum(axis=1), values))
                                       / np.sum(loss.value(null, values))))
        report("heldout", k + 1, 0, out[k])
    return out


def _stability_checks(X: Tensor, failed: list[list[str]], crit: RankCriteria,
                      rng: np.random.Generator, report: Callable[..., None],
                      fit_options: dict[str, Any], track: FitTracker) -> np.ndarray:
    """Split-half scores from the largest rank passing the other checks down, until one
    passes; ``failed`` gains ``"stability"`` where a rank fails."""
    out = np.full(len(failed), np.nan)
    mode = int(np.argmax(X.shape))
    if crit.stability_repeats == 0 or X.ndim < 3 or X.shape[mode] < 4:
        return out
    for k in reversed(range(len(failed))):
        if failed[k]:
            continue
        if track.bar is not None:
            track.bar.grow(2 * crit.stability_repeats)
        st = _stability(X, k + 1, "split-half", mode, crit.stability_repeats,
                        crit.min_stability, rng, fit_options, track)
        out[k] = st.min
        report("stability", k + 1, 0, st.min)
        if st.stable:
            break
        failed[k].append("stability")
    return out


def _evidence(est: RankEstimate, k: int, crit: RankCriteria) -> list[str]:
    """Each check of rank ``k + 1`` in words, with its threshold."""
    ratio = est.gain[k] / est.noise_share
    out = [f"gain {ratio:.3g} x noise share {'<' if 'gain' in est.failed[k] else '>='} "
           f"{crit.min_gain:g}"]
    if np.isfinite(est.corcondia[k]):
        sign = "<" if "corcondia" in est.failed[k] else ">="
        out.append(f"corcondia {est.corcondia[k]:.3g} {sign} {crit.min_corcondia:g}")
    out.append("degenerate" if est.degenerate[k] else "not degenerate")
    if np.isfinite(est.heldout[k]):
        word = "worse than" if "heldout" in est.failed[k] else "better than"
        out.append(f"held-out error {est.heldout[k]:.4g} {word} rank {k}'s")
    if np.isfinite(est.stability[k]):
        sign = "<" if "stability" in est.failed[k] else ">="
        out.append(f"split-half FMS {est.stability[k]:.3g} {sign} {crit.min_stability:g}")
    return out


def _reason(est: RankEstimate, crit: RankCriteria, any_passing: bool) -> str:
    k = est.rank - 1
    if any_passing:
        head = f"rank {est.rank}: the largest rank passing every check"
    else:
        head = (f"rank {est.rank}: no rank passes every check; the L-corner of the error "
                "curve")
    text = f"{head} ({', '.join(_evidence(est, k, crit))})"
    if est.runner_up is not None:
        j = est.runner_up - 1
        why = (f"fails {', '.join(est.failed[j])}" if est.failed[j]
               else "passes the checks run on it but is smaller")
        text += f"; runner-up rank {est.runner_up} {why} ({', '.join(_evidence(est, j, crit))})"
    above = k + 1
    if above < len(est.failed) and above + 1 != est.runner_up and est.failed[above]:
        text += f"; rank {above + 1} fails {', '.join(est.failed[above])}"
    return text


@dataclass(repr=False)
class MLRankEstimate:
    """Result of :func:`mlrankest`.

    Attributes
    ----------
    core_shape : tuple of int
        Estimated multilinear rank, one L-corner per mode.
    runner_up : tuple of int
        Per mode, the rank with the second sharpest corner.
    reasons : list of str
        Per mode, why its rank was chosen over the runner-up, in words.
    errors : list of ndarray
        Per mode ``n``, entry ``k``: relative error ``sqrt(sum_{i > k} s_i^2) / ||T||``
        of truncating that mode alone to ``k + 1`` singular vectors.
    singular_values : list of ndarray
        The mode-``n`` singular values of the data.
    """

    core_shape: tuple[int, ...]
    runner_up: tuple[int, ...]
    reasons: list[str]
    errors: list[np.ndarray]
    singular_values: list[np.ndarray]

    def __repr__(self) -> str:
        return (f"MLRankEstimate(core_shape={self.core_shape}, runner_up={self.runner_up}, "
                f"reasons={self.reasons!r})")


@with_one_blas_pool
def mlrankest(data: object, max_ranks: int | Sequence[int] | None = None, *,
              progress: bool = False) -> MLRankEstimate:
    """Estimate a multilinear rank from each mode's singular value decay (L-corners).

    Per mode, the relative truncation error of the mode-``n`` unfolding's singular
    values (see :class:`MLRankEstimate`) is treated as an error curve and its
    :func:`lcorner` taken.

    Parameters
    ----------
    data : array_like or Tensor
        Fully known data (densified if sparse or factored).
    max_ranks : int or sequence of int, optional
        Largest rank considered per mode (default: the mode size).
    progress : bool, default False
        Show a progress bar on stderr, one step per mode (tqdm's when installed, else a
        one-line text bar).

    Returns
    -------
    MLRankEstimate

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import tucker_to_tensor
    >>> rng = np.random.default_rng(0)
    >>> U = [rng.standard_normal((n, r)) for n, r in ((10, 2), (9, 3), (8, 4))]
    >>> T = tucker_to_tensor(U, rng.standard_normal((2, 3, 4)))
    >>> est = mlrankest(T + 1e-4 * rng.standard_normal(T.shape))
    >>> est.core_shape, len(est.runner_up)
    ((2, 3, 4), 3)
    """
    X = as_tensor(data, name="data")
    if X.known_entries() is not None:
        raise ModelError("data: mlrankest needs fully known data, got incomplete data")
    D = X.to_dense()
    N = D.ndim
    if max_ranks is None:
        caps = list(D.shape)
    elif isinstance(max_ranks, (int, np.integer)):
        caps = [check_int(max_ranks, "max_ranks")] * N
    else:
        caps = [check_int(m, f"max_ranks[{n}]") for n, m in enumerate(max_ranks)]
        if len(caps) != N:
            raise ModelError(f"max_ranks: expected {N} values, got {len(caps)}")
    if not isinstance(progress, (bool, np.bool_)):
        raise ModelError(f"progress: expected True or False, got {progress!r}")
    svals = []
    with progress_bar(bool(progress), N, "mlrankest") as bar:
        for n in range(N):
            # The mode-n singular values of the data (those of mlsvd's untruncated run).
            svals.append(np.linalg.svd(unfold(D, n), compute_uv=False))
            if bar is not None:
                bar.step(f"mode {n} ({D.shape[n]} singular values)")
    total = float(np.sum(np.abs(D) ** 2))
    errors, shape, second, reasons = [], [], [], []
    for n, s in enumerate(svals):
        tail = np.sqrt(np.maximum(total - np.cumsum(s**2), 0.0) / max(total, 1e-300))
        # The last entry (all singular vectors kept) is exactly 0 by construction.
        e = tail[: max(min(caps[n], s.size - 1), 2)]
        errors.append(e)
        ratios = _corner_ratios(e)
        best, next_best = np.argsort(-ratios, kind="stable")[:2] if ratios.size > 1 else (0, 0)
        shape.append(int(best) + 1)
        second.append(int(next_best) + 1)
        reasons.append(f"mode {n}: rank {best + 1}, truncation error {e[best]:.3g}, "
                       f"corner ratio {ratios[best]:.3g} against {ratios[next_best]:.3g} at "
                       f"rank {next_best + 1}")
    return MLRankEstimate(core_shape=tuple(shape), runner_up=tuple(second), reasons=reasons,
                          errors=errors, singular_values=svals)


@dataclass
class Stability:
    """Result of :func:`stability`.

    Attributes
    ----------
    scores : ndarray
        One factor match score per split (or resample), computed on the modes other
        than the resampled one.
    mean, min : float
        Summary of ``scores``.
    stable : bool
        ``min >= threshold``.
    """

    scores: np.ndarray
    mean: float
    min: float
    stable: bool


@with_one_blas_pool
def stability(data: object, rank: int, *, scheme: Literal["split-half", "bootstrap"] = "split-half",
              mode: int = 0, n_repeats: int = 5, threshold: float = 0.9,
              seed: int | np.random.Generator | None = None, progress: bool = False,
              **fit_options: Any) -> Stability:
    """Split-half or bootstrap stability of a CPD of a chosen rank.

    The samples are the slices along ``mode``. ``"split-half"``: the slices are split
    at random into two halves, a CPD is fitted to each, and the factors of the other
    modes are compared by :func:`sdf.models.fms`. ``"bootstrap"``: the slices are drawn
    with replacement, and each resample's CPD is compared to the CPD of all the data. A
    rank is stable when every score reaches ``threshold``.

    Parameters
    ----------
    data : array_like or Tensor
        Order >= 3 (two modes remain to compare), with ``mode`` of size >= 4.
    rank : int
    scheme : {"split-half", "bootstrap"}, default "split-half"
    mode : int, default 0
        The sample mode.
    n_repeats : int, default 5
        Number of splits or resamples.
    threshold : float, default 0.9
    seed : int or numpy.random.Generator, optional
    progress : bool, default False
        Show a progress bar on stderr labelled per fit (tqdm's when installed, else a
        one-line text bar).
    **fit_options
        Passed to :func:`sdf.models.cpd`; with ``display=k`` each fit's iteration table
        is printed under a heading naming the fit.

    Returns
    -------
    Stability

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import cpd_to_tensor
    >>> rng = np.random.default_rng(0)
    >>> T = cpd_to_tensor([rng.standard_normal((n, 2)) for n in (20, 7, 6)])
    >>> stability(T + 0.01 * rng.standard_normal(T.shape), 2, seed=0).stable
    True
    """
    check_fit_options(stability, fit_options, method=fit_options.get("method", "nls"),
                      options=fit_options.get("options"),
                      display=fit_options.get("display", 0), passed_to=[cpd],
                      set_by_driver=("data", "rank", "init"))
    X = as_data(data, min_order=3)
    rank = check_int(rank, "rank")
    n_repeats = check_int(n_repeats, "n_repeats")
    threshold = check_number(threshold, "threshold", high=1.0)
    if scheme not in ("split-half", "bootstrap"):
        raise ModelError(f"scheme: expected 'split-half' or 'bootstrap', got {scheme!r}")
    if not (isinstance(mode, (int, np.integer)) and -X.ndim <= mode < X.ndim):
        raise ModelError(f"mode: expected an int in [0, {X.ndim}), got {mode!r}")
    mode = int(mode) % X.ndim
    I = X.shape[mode]
    if I < 4:
        raise ModelError(f"mode: mode {mode} has {I} slices; stability needs at least 4")
    show_bar = _check_progress(progress)
    rng = make_rng(seed)
    fits = 2 * n_repeats if scheme == "split-half" else n_repeats + 1
    with progress_bar(show_bar, fits, "stability") as bar:
        track = FitTracker("stability", bar, fit_options.get("display", 0))
        return _stability(X, rank, scheme, mode, n_repeats, threshold, rng, fit_options,
                          track)


def _stability(X: Tensor, rank: int, scheme: str, mode: int, n_repeats: int,
               threshold: float, rng: np.random.Generator, fit_options: dict[str, Any],
               track: FitTracker) -> Stability:
    I = X.shape[mode]
    D = X.to_dense()  # NaN where missing: cpd treats them as unknown
    others = [n for n in range(X.ndim) if n != mode]

    def fit(idx: np.ndarray, label: str) -> list[np.ndarray]:
        label = f"{label}, rank {rank}"
        track.before(label)
        with quiet():
            dec = cpd(np.take(D, idx, axis=mode), rank, seed=rng, **fit_options)
        track.after(label)
        return [dec.factors[n] for n in others]

    scores = []
    reference = fit(np.arange(I), "all slices") if scheme == "bootstrap" else None
    for i in range(n_repeats):
        if reference is None:  # split-half
            perm = rng.permutation(I)
            first, second = np.sort(perm[: I // 2]), np.sort(perm[I // 2:])
            scores.append(fms(fit(first, f"split {i + 1} of {n_repeats}, first half"),
                              fit(second, f"split {i + 1} of {n_repeats}, second half")))
        else:
            scores.append(fms(fit(rng.integers(0, I, size=I),
                                  f"resample {i + 1} of {n_repeats}"), reference))
    s = np.array(scores)
    return Stability(scores=s, mean=float(s.mean()), min=float(s.min()),
                     stable=bool(s.min() >= threshold))
