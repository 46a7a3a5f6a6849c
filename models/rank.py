"""Choosing ranks: the CPD error curve and its L-corner, multilinear ranks, stability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from sdf.decomp import mlsvd
from sdf.errors import ModelError
from sdf.models._common import as_data, check_int, check_number, make_rng, quiet
from sdf.models._result import Decomposition
from sdf.models.cpd import cpd
from sdf.models.diagnostics import corcondia, fms
from sdf.tensors import as_tensor

__all__ = ["MLRankEstimate", "RankEstimate", "Stability", "lcorner", "mlrankest",
           "rankest", "stability"]

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
    e = np.asarray(errors, dtype=float)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)):
        raise ModelError(f"errors: expected at least two finite errors, got {errors!r}")
    exact = np.flatnonzero(e <= _LOG_FLOOR)
    if exact.size:
        return int(exact[0])
    L = np.log10(np.concatenate([[1.0], np.maximum(e, _LOG_FLOOR)]))
    into = L[:-2] - L[1:-1]
    out = np.maximum(L[1:-1] - L[2:], 1e-3)
    return int(np.argmax(into / out))


@dataclass
class RankEstimate:
    """Result of :func:`rankest`.

    Attributes
    ----------
    rank : int
        The L-corner of the error curve (see :func:`lcorner`).
    ranks : ndarray of int
        Ranks tried, ``1, 2, ...``.
    errors : ndarray
        Smallest relative error found at each rank.
    corcondia : ndarray
        Core consistency of the best fit at each rank (NaN for incomplete data).
    fits : list of Decomposition
        The best fit at each rank.
    """

    rank: int
    ranks: np.ndarray
    errors: np.ndarray
    corcondia: np.ndarray
    fits: list[Decomposition]


def rankest(data: object, max_rank: int, *, n_starts: int = 2,
            seed: int | np.random.Generator | None = None, tol: float = 1e-12,
            **fit_options: Any) -> RankEstimate:
    """Estimate a CPD rank from the error-versus-rank curve (its L-corner).

    For ``R = 1, 2, ..., max_rank`` a CPD is fitted (:func:`sdf.models.cpd`) from the
    default start and ``n_starts - 1`` random ones; the smallest relative error is kept.
    The rank returned is the corner of the curve (:func:`lcorner`), so ``max_rank``
    should exceed the expected rank by at least one. The scan stops early once the error
    is at most ``tol`` (an exact fit).

    Parameters
    ----------
    data : array_like or Tensor
        Anything :func:`sdf.models.cpd` accepts.
    max_rank : int
        Largest rank tried (>= 2).
    n_starts : int, default 2
        Starts per rank.
    seed : int or numpy.random.Generator, optional
    tol : float, default 1e-12
        Relative error at which the scan stops.
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
    >>> est.rank, est.errors.shape
    (2, (4,))
    """
    X = as_data(data, min_order=2)
    max_rank = check_int(max_rank, "max_rank", low=2)
    n_starts = check_int(n_starts, "n_starts")
    tol = check_number(tol, "tol")
    rng = make_rng(seed)
    errors, cc, fits = [], [], []
    for R in range(1, max_rank + 1):
        best = None
        for k in range(n_starts):
            with quiet():  # over-factored ranks are expected to be degenerate
                dec = cpd(X, R, init="auto" if k == 0 else "random", seed=rng, **fit_options)
            if best is None or dec.relerr < best.relerr:
                best = dec
        assert best is not None
        fits.append(best)
        errors.append(best.relerr)
        cc.append(np.nan if X.known_entries() is not None else corcondia(X, best.factors))
        if best.relerr <= tol:
            break
    errs = np.array(errors)
    rank = lcorner(errs) + 1 if errs.size >= 2 else 1
    return RankEstimate(rank=rank, ranks=np.arange(1, errs.size + 1), errors=errs,
                        corcondia=np.array(cc), fits=fits)


@dataclass
class MLRankEstimate:
    """Result of :func:`mlrankest`.

    Attributes
    ----------
    core_shape : tuple of int
        Estimated multilinear rank, one L-corner per mode.
    errors : list of ndarray
        Per mode ``n``, entry ``k``: relative error ``sqrt(sum_{i > k} s_i^2) / ||T||``
        of truncating that mode alone to ``k + 1`` singular vectors.
    singular_values : list of ndarray
        The mode-``n`` singular values of the data.
    """

    core_shape: tuple[int, ...]
    errors: list[np.ndarray]
    singular_values: list[np.ndarray]


def mlrankest(data: object, max_ranks: int | Sequence[int] | None = None) -> MLRankEstimate:
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
    >>> mlrankest(T + 1e-4 * rng.standard_normal(T.shape)).core_shape
    (2, 3, 4)
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
    svals = mlsvd(D).singular_values
    total = float(np.sum(D * D))
    errors, shape = [], []
    for n, s in enumerate(svals):
        tail = np.sqrt(np.maximum(total - np.cumsum(s**2), 0.0) / max(total, 1e-300))
        # The last entry (all singular vectors kept) is exactly 0 by construction.
        e = tail[: max(min(caps[n], s.size - 1), 2)]
        errors.append(e)
        shape.append(lcorner(e) + 1)
    return MLRankEstimate(core_shape=tuple(shape), errors=errors, singular_values=svals)


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


def stability(data: object, rank: int, *, scheme: Literal["split-half", "bootstrap"] = "split-half",
              mode: int = 0, n_repeats: int = 5, threshold: float = 0.9,
              seed: int | np.random.Generator | None = None,
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
    **fit_options
        Passed to :func:`sdf.models.cpd`.

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
    rng = make_rng(seed)
    D = X.to_dense()  # NaN where missing: cpd treats them as unknown
    others = [n for n in range(X.ndim) if n != mode]

    def fit(idx: np.ndarray) -> list[np.ndarray]:
        with quiet():
            dec = cpd(np.take(D, idx, axis=mode), rank, seed=rng, **fit_options)
        return [dec.factors[n] for n in others]

    scores = []
    reference = fit(np.arange(I)) if scheme == "bootstrap" else None
    for _ in range(n_repeats):
        if reference is None:  # split-half
            perm = rng.permutation(I)
            first, second = np.sort(perm[: I // 2]), np.sort(perm[I // 2:])
            scores.append(fms(fit(first), fit(second)))
        else:
            scores.append(fms(fit(rng.integers(0, I, size=I)), reference))
    s = np.array(scores)
    return Stability(scores=s, mean=float(s.mean()), min=float(s.min()),
                     stable=bool(s.min() >= threshold))
