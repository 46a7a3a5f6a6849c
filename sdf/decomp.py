"""Algebraic decompositions the engine builds on: MLSVD (also randomized, for data read
in passes), HOOI and GEVD initialisation.

Conventions (index order, unfoldings) are those of :mod:`sdf.algebra`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

from sdf._blas import with_one_blas_pool
from sdf.algebra import (_as_dense, _ct, _mode_product, frob, mttkrp, tmprod, tucker_to_tensor,
                         unfold)
from sdf.errors import DataError
from sdf.numerics import SCALE_THRESHOLD, balance_columns, ldexp
from sdf.tensors._base import Tensor
from sdf.tensors._tt import TTTensor

__all__ = ["LMLRAResult", "MLSVDResult", "gevd_applies", "gevd_init", "lmlra_hooi", "mlsvd",
           "mlsvd_rsi", "tt_svd"]

# Use the Gram matrix (eigh of M M^H) instead of an SVD of the unfolding M (I_n x J) when
# J >= _GRAM_RATIO * I_n: several times faster, but it squares the condition number, so
# singular values below ~1e-8 * s_max lose their accuracy (not their subspaces' order).
_GRAM_RATIO = 1


@dataclass(frozen=True)
class MLSVDResult:
    """Result of :func:`mlsvd`.

    Attributes
    ----------
    factors : list of ndarray, each of shape (I_n, R_n)
        Orthonormal columns, each column's largest-magnitude entry real positive.
    core : ndarray, shape (R_0, ..., R_{N-1})
    singular_values : list of ndarray, each of shape (I_n,)
        Mode-n singular values, in decreasing order, of the tensor the algorithm
        decomposed at mode n (see :func:`mlsvd`), padded with zeros to length I_n.
    """

    factors: list[np.ndarray]
    core: np.ndarray
    singular_values: list[np.ndarray]

    def to_tensor(self) -> np.ndarray:
        """Full tensor ``core ×_0 U_0 ... ×_{N-1} U_{N-1}``."""
        return tucker_to_tensor(self.factors, self.core)


@dataclass(frozen=True)
class LMLRAResult:
    """Result of :func:`lmlra_hooi`.

    Attributes
    ----------
    factors : list of ndarray, each of shape (I_n, R_n), orthonormal columns
    core : ndarray, shape (R_0, ..., R_{N-1})
    relerr : float
        ``||T - core ×_n U_n|| / ||T||`` (0 for an all-zero tensor): from
        ``1 - ||core||^2 / ||T||^2`` (orthonormal factors) when that exceeds 1e-6, to a
        relative accuracy of about 1e-9, else from the residual tensor.
    iterations : int
        Number of HOOI sweeps done.
    converged : bool
        Whether the fit's change reached ``tol`` within ``max_iter`` sweeps.
    """

    factors: list[np.ndarray]
    core: np.ndarray
    relerr: float
    iterations: int
    converged: bool

    def to_tensor(self) -> np.ndarray:
        """Full tensor ``core ×_0 U_0 ... ×_{N-1} U_{N-1}``."""
        return tucker_to_tensor(self.factors, self.core)


# --------------------------------------------------------------------------- helpers
def _as_data(T: ArrayLike, min_order: int, what: str) -> np.ndarray:
    """Finite floating-point (or complex) array of order >= ``min_order``; scipy.sparse
    matrices and sdf data tensors densified."""
    T = _as_dense(T)
    if T.ndim < min_order:
        raise DataError(f"T: expected a tensor of order >= {min_order} for {what}, "
                        f"got shape {T.shape}")
    if T.size == 0:
        raise DataError(f"T: expected a nonempty tensor, got shape {T.shape}")
    if not np.issubdtype(T.dtype, np.inexact):
        T = T.astype(np.float64)
    if not np.isfinite(T).all():
        raise DataError("T: expected finite entries, got NaN or Inf")
    return T


def _check_core_shape(core_shape: object, shape: tuple[int, ...]) -> list[int]:
    try:
        sizes = list(core_shape)  # type: ignore[call-overload]
    except TypeError:
        raise DataError(f"core_shape: expected a sequence of {len(shape)} integers, got "
                        f"{type(core_shape).__name__}") from None
    if len(sizes) != len(shape):
        raise DataError(
            f"core_shape: expected {len(shape)} entries (one per mode of T, shape {shape}), "
            f"got {len(sizes)}"
        )
    for n, (r, size) in enumerate(zip(sizes, shape)):
        ok = isinstance(r, (int, np.integer)) and not isinstance(r, bool)
        if not ok or not 1 <= r <= size:
            raise DataError(f"core_shape[{n}]: expected an integer in [1, {size}], got {r!r}")
    return [int(r) for r in sizes]


def _unit_scale(T: np.ndarray) -> tuple[np.ndarray, int]:
    """``(T 2**-e, e)`` for data whose largest entry is beyond ``2**±SCALE_THRESHOLD``
    (else ``(T, 0)``):
    the decompositions run on the scaled copy (exact, a power of two), so that their sums
    of squares neither underflow nor overflow; their results are scaled back."""
    if T.size and not np.iscomplexobj(T):
        top = max(float(T.max()), -float(T.min()))  # no |T| temporary: two reads of T
    else:
        top = float(np.max(np.abs(T), initial=0.0))
    e = int(np.frexp(top)[1]) if top > 0 and np.isfinite(top) else 0
    return (ldexp(T, -e), e) if abs(e) > SCALE_THRESHOLD else (T, 0)


def _peak_phases(U: np.ndarray) -> np.ndarray:
    """Sign (phase, for complex U) of each column's largest-magnitude entry; 1 for a zero
    column."""
    if U.size == 0:
        return np.ones(U.shape[1], dtype=U.dtype)
    idx = np.argmax(np.abs(U), axis=0)
    piv = U[idx, np.arange(U.shape[1])]
    return np.where(piv == 0, 1, piv / np.where(piv == 0, 1, np.abs(piv)))


def _normalize_signs(U: np.ndarray) -> np.ndarray:
    """Make each column's largest-magnitude entry real positive."""
    return U * _peak_phases(U).conj()


def _mode_basis(M: np.ndarray, need: int, accurate: bool) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors (at least ``need`` of them) and all I singular values of M.

    Returns ``(U, s)`` with ``U`` of shape (I, >= need) and ``s`` of shape (I,), decreasing.
    """
    I, J = M.shape
    if not accurate and J >= _GRAM_RATIO * I:
        w, V = np.linalg.eigh(M @ _ct(M))
        return V[:, ::-1], np.sqrt(np.clip(w[::-1], 0, None))
    U, s, _ = np.linalg.svd(M, full_matrices=need > min(I, J))
    return U, np.concatenate([s, np.zeros(I - s.size)])


def _leading_basis(M: np.ndarray, need: int) -> np.ndarray:
    """The ``need`` leading left singular vectors of M (I x J), without singular values:
    the Gram matrix's leading eigenvectors only when ``J >= I``, else a thin SVD."""
    I, J = M.shape
    if J >= _GRAM_RATIO * I and need < I:
        _, V = scipy.linalg.eigh(M @ _ct(M), subset_by_index=[I - need, I - 1],
                                 check_finite=False)
        return V[:, ::-1]
    return _mode_basis(M, need, accurate=False)[0][:, :need]


def _rank_for_tol(s: np.ndarray, budget: float) -> int:
    """Smallest r >= 1 with sum(s[r:]**2) <= budget."""
    tail = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]])
    return max(1, int(np.argmax(tail <= budget)))


# --------------------------------------------------------------------------- MLSVD
def mlsvd(
    T: ArrayLike,
    core_shape: Sequence[int] | None = None,
    tol: float | None = None,
) -> MLSVDResult:
    """Sequentially truncated multilinear SVD: ``T ≈ S ×_0 U_0 ×_1 U_1 ... ×_{N-1} U_{N-1}``.

    The modes are processed one after the other. At mode n, ``U_n`` holds the leading
    left singular vectors of ``unfold(S, n)``, where ``S`` is the tensor already projected
    on the factors of the modes processed before (``S ← S ×_n U_n^H`` after each step);
    ``singular_values[n]`` are the singular values of that same unfolding. So the first
    mode processed gets the singular values of the data itself, later ones those of the
    partially truncated tensor (identical to the data's when nothing is truncated).
    When ``J >= I_n`` (J the unfolding's column count) they come from the eigenvalues of
    the Gram matrix ``M M^H`` (faster; singular values below ~1e-8 of the largest are then
    inaccurate), else from an SVD of the unfolding; ``tol < 1e-6`` always uses the SVD.

    Processing order: with ``core_shape``, modes in order of decreasing compression
    ``I_n / R_n`` (ties in mode order), so that the costly first steps shrink the tensor
    most; otherwise mode order ``0, 1, ..., N-1``.

    Parameters
    ----------
    T : array_like, scipy.sparse matrix or sdf.tensors.Tensor, N >= 2 modes
        Shape ``(I_0, ..., I_{N-1})``; sparse and other data kinds are densified.
    core_shape : sequence of int, optional
        Multilinear rank ``(R_0, ..., R_{N-1})``, ``1 <= R_n <= I_n``. Default (with
        ``tol`` None): full size, an exact orthogonal transform of ``T``.
    tol : float, optional
        Rank selection instead of ``core_shape``: at each mode keep the smallest ``R_n``
        whose discarded energy ``sum_{i >= R_n} s_i^2`` is at most ``tol**2 * ||T||^2``.
        The total relative error is then at most ``sqrt(N) * tol``.

    Returns
    -------
    MLSVDResult
        ``factors`` (orthonormal columns, sign-normalised), ``core``, ``singular_values``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import tucker_to_tensor
    >>> rng = np.random.default_rng(0)
    >>> U = [np.linalg.qr(rng.standard_normal((s, 2)))[0] for s in (6, 7, 8)]
    >>> T = tucker_to_tensor(U, rng.standard_normal((2, 2, 2)))
    >>> res = mlsvd(T, tol=1e-8)
    >>> res.core.shape
    (2, 2, 2)
    >>> bool(np.allclose(res.to_tensor(), T))
    True
    """
    if core_shape is not None and tol is not None:
        raise DataError("tol: expected None when core_shape is given (give one of them), got "
                        f"{tol!r}")
    if tol is not None and not (isinstance(tol, numbers.Real) and 0 <= tol < 1):
        raise DataError(f"tol: expected a number in [0, 1), got {tol!r}")
    form = T.tucker_form() if isinstance(T, Tensor) else None
    if form is not None and (core_shape is not None or tol is not None):
        shape = tuple(int(U.shape[0]) for U in form[0])
        ranks = _check_core_shape(core_shape, shape) if core_shape is not None else None
        if ranks is None or all(R <= min(U.shape) for R, U in zip(ranks, form[0])):
            return _mlsvd_factored(form[0], form[1], ranks, tol)
    T, e = _unit_scale(_as_data(T, 2, "an MLSVD"))
    ranks = _check_core_shape(core_shape, T.shape) if core_shape is not None else None
    S, factors, svals = _sequential_mlsvd(T, ranks, tol, _mode_order(ranks, T.shape))
    if e:
        S, svals = ldexp(S, e), [ldexp(s, e) for s in svals]
    return MLSVDResult(factors=factors, core=S, singular_values=svals)


def _mode_order(ranks: list[int] | None, shape: Sequence[int]) -> list[int]:
    """Modes in order of decreasing compression ``I_n / R_n`` (mode order without ranks)."""
    order = list(range(len(shape)))
    if ranks is not None:
        order.sort(key=lambda n: ranks[n] / shape[n])
    return order


def _mlsvd_factored(mats: list[np.ndarray], core: np.ndarray, ranks: list[int] | None,
                    tol: float | None) -> MLSVDResult:
    """The MLSVD of ``core x_n mats[n]`` from the core alone: with ``mats[n] = Q_n R_n``
    (orthonormal ``Q_n``), the data's mode-n unfoldings and those of the small core
    ``core x_n R_n`` have the same singular values, and their left singular vectors are
    related by ``Q_n``. Exact, never forms the data."""
    shape = [int(U.shape[0]) for U in mats]
    pairs = [np.linalg.qr(U) for U in mats]
    small = tmprod(core, [R for _, R in pairs])
    small, e = _unit_scale(small)
    if not np.isfinite(small).all():
        raise DataError("T: expected finite entries, got NaN or Inf")
    S, inner, svals = _sequential_mlsvd(small, ranks, tol, _mode_order(ranks, shape))
    factors = []
    for n, ((Q, _), V) in enumerate(zip(pairs, inner)):
        U = Q @ V
        phase = _peak_phases(U)
        factors.append(U * phase.conj())
        S = _mode_product(S, np.diag(phase), n)  # keeps core x_n U_n unchanged
    svals = [np.concatenate([s, np.zeros(max(0, I - s.size))])[:I]
             for s, I in zip(svals, shape)]
    if e:
        S, svals = ldexp(S, e), [ldexp(s, e) for s in svals]
    return MLSVDResult(factors=factors, core=S, singular_values=svals)


def _sequential_mlsvd(T: np.ndarray, ranks: list[int] | None, tol: float | None,
                      order: list[int], partials: list[np.ndarray] | None = None
                      ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Core, factors and singular values of the sequentially truncated MLSVD of T; the
    tensor after each step (T projected on the modes processed so far) is appended to
    ``partials`` when given."""
    N = T.ndim
    budget = (tol**2) * frob(T, squared=True) if tol is not None else 0.0
    accurate = tol is not None and tol < 1e-6
    S = np.ascontiguousarray(T)
    factors: list = [None] * N
    svals: list = [None] * N
    for n in order:
        need = ranks[n] if ranks is not None else T.shape[n]
        U, s = _mode_basis(unfold(S, n), need, accurate)
        if tol is not None:
            need = _rank_for_tol(s, budget)
        U = _normalize_signs(U[:, :need])
        S = _mode_product(S, _ct(U), n)
        factors[n], svals[n] = U, s
        if partials is not None:
            partials.append(S)
    return S, factors, svals


@with_one_blas_pool
def mlsvd_rsi(
    T: ArrayLike | Tensor,
    core_shape: Sequence[int],
    *,
    oversampling: int = 10,
    subspace_iterations: int = 2,
    seed: int | np.random.Generator | None = None,
) -> MLSVDResult:
    """Randomized MLSVD that reads the data in ``2 + subspace_iterations`` passes.

    For data too large to hold (chunked dask or zarr data, see
    :class:`sdf.tensors.DaskTensor`) or to unfold, everything goes through the data
    protocol of :class:`sdf.tensors.Tensor` (any kind ``as_tensor`` accepts), with
    ``K_n = min(R_n + oversampling, I_n)``:

    1. *Sketch* (one pass, every mode at once): ``Y_n = unfold(T, n) @ khatri_rao(Ω_m,
       m != n)`` with standard normal ``Ω_m`` of shape (I_m, max K_n), i.e. one
       all-modes MTTKRP; ``Q_n`` are the first ``K_n`` columns of an orthonormal basis of
       ``Y_n``.
    2. *Subspace iterations* (one pass each): ``Q_n ← orth(unfold(T ×_{m≠n} Q_mᵀ, n)
       @ unfold(S, n)ᵀ)`` for every mode from one Tucker projection
       (:meth:`Tensor.project_tucker`), which also gives ``T ×_n Q_nᵀ``. The first
       iteration takes a standard normal ``S``; later ones the previous projection in the
       current bases, which makes them power iterations ``Y_n Y_nᵀ Q_n`` (the second
       one brings the error to that of :func:`mlsvd` on low-rank-plus-noise data).
       For complex data every transpose ``ᵀ`` above is the conjugate transpose ``ᴴ``.
    3. *Core* (one pass): ``G = T ×_n Q_nᵀ``, of shape ``(K_0, ..., K_{N-1})``, whose
       truncated :func:`mlsvd` to ``core_shape`` gives ``S`` and ``V_n``; the factors are
       ``U_n = Q_n V_n``.

    Everything but the passes works on arrays the size of the factors and the core.

    Parameters
    ----------
    T : array_like or sdf.tensors.Tensor, shape (I_0, ..., I_{N-1}), N >= 2
        Fully known data (anything :func:`sdf.tensors.as_tensor` accepts without
        missing entries: numpy, dask, zarr, xarray, sparse or factored).
    core_shape : sequence of int
        Multilinear rank ``(R_0, ..., R_{N-1})``, ``1 <= R_n <= I_n``.
    oversampling : int, default 10
        Extra columns ``p`` sketched per mode beyond ``R_n``.
    subspace_iterations : int, default 2
        Passes of subspace iteration between the sketch and the core.
    seed : int or numpy.random.Generator, optional
        Seeds the random test matrices.

    Returns
    -------
    MLSVDResult
        ``factors`` (orthonormal columns, sign-normalised), ``core``, and
        ``singular_values`` of the small core ``G``'s unfoldings (estimates of the leading
        mode-n singular values of ``T``), padded with zeros to length ``I_n``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import tucker_to_tensor
    >>> rng = np.random.default_rng(0)
    >>> U = [np.linalg.qr(rng.standard_normal((s, 3)))[0] for s in (30, 40, 50)]
    >>> T = tucker_to_tensor(U, rng.standard_normal((3, 3, 3)))
    >>> res = mlsvd_rsi(T, (3, 3, 3), seed=1)
    >>> bool(np.allclose(res.to_tensor(), T))
    True
    """
    from sdf.tensors import as_tensor

    X = as_tensor(T, name="T")
    if X.ndim < 2:
        raise DataError(f"T: expected a tensor of order >= 2 for an MLSVD, got shape {X.shape}")
    if X.n_known < X.size:
        raise DataError(f"T: {X.size - X.n_known} entries are missing (NaN); the "
                        "randomized MLSVD needs fully known data")
    ranks = _check_core_shape(core_shape, X.shape)
    for label, value in (("oversampling", oversampling),
                         ("subspace_iterations", subspace_iterations)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise DataError(f"{label}: expected an integer >= 0, got {value!r}")
    rng = np.random.default_rng(seed)
    sizes = [min(R + int(oversampling), I) for R, I in zip(ranks, X.shape)]
    omega = [rng.standard_normal((I, max(sizes))) for I in X.shape]
    Q = [np.linalg.qr(Y)[0][:, :K] for Y, K in zip(X.mttkrp_all(omega), sizes)]
    core: np.ndarray | None = None  # T ×_n Q_nᵀ for the bases of the previous pass
    previous = Q
    # The data protocol's projections never conjugate (``T ×_n U_nᵀ``): conjugated bases
    # and core give the Hermitian ones (``T ×_n Q_nᴴ``) that complex data need.
    for _ in range(int(subspace_iterations)):
        if core is None:
            S = rng.standard_normal(sizes)
        else:  # the previous projection in the current bases: a power-iteration step
            S = tmprod(core, [_ct(Qn) @ Pn for Qn, Pn in zip(Q, previous)])
        core, Y = X.project_tucker([Qn.conj() for Qn in Q], S.conj())
        previous, Q = Q, [np.linalg.qr(Yn)[0] for Yn in Y]
    small = mlsvd(X.project([Qn.conj() for Qn in Q]), core_shape=ranks)
    factors, core = [], small.core
    for n, (Qn, V) in enumerate(zip(Q, small.factors)):
        U = Qn @ V
        phase = _peak_phases(U)  # unit modulus: the core takes it back
        factors.append(U * phase.conj())
        core = _mode_product(core, np.diag(phase), n)
    svals = [np.concatenate([s[:K], np.zeros(I - K)])
             for s, I, K in zip(small.singular_values, X.shape, sizes)]
    return MLSVDResult(factors=factors, core=core, singular_values=svals)


# --------------------------------------------------------------------------- HOOI
def _initial_bases(
    T: np.ndarray, ranks: list[int], init: MLSVDResult | LMLRAResult | Sequence[ArrayLike] | None
) -> list[np.ndarray]:
    if init is None:
        return mlsvd(T, core_shape=ranks).factors
    given = init.factors if isinstance(init, (MLSVDResult, LMLRAResult)) else init
    try:
        mats = [np.asarray(U) for U in given]
    except TypeError:
        raise DataError(
            f"init: expected None, an MLSVDResult/LMLRAResult or a sequence of matrices, "
            f"got {type(init).__name__}"
        ) from None
    if len(mats) != T.ndim:
        raise DataError(f"init: expected {T.ndim} factor matrices, got {len(mats)}")
    for n, U in enumerate(mats):
        if U.shape != (T.shape[n], ranks[n]):
            raise DataError(
                f"init[{n}]: expected shape {(T.shape[n], ranks[n])} from T and core_shape, "
                f"got {U.shape}"
            )
    return [np.linalg.qr(U)[0] for U in mats]


def _hooi_sweep(T: np.ndarray, U: list[np.ndarray], ranks: list[int], order: list[int],
                with_start: bool = False, suffix: list[np.ndarray] | None = None
                ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    """One HOOI sweep from orthonormal bases ``U``, updating the modes in ``order``.

    Returns the new bases, the new core ``T x_n U_n^H`` and, with ``with_start``, the
    core of the start (``T`` projected on the old bases, formed from the first
    projection at the cost of one small product). The projections share their partial
    products: ``suffix[k] = T x_{order[j], j > k} U^H`` (old bases: the modes not yet
    updated) is formed once for all ``k``, from the last mode of ``order`` down, so a
    sweep multiplies the full tensor twice, not ``N - 1`` times per mode.

    ``suffix`` given: those partial products of the sequentially truncated MLSVD that
    produced ``U``, processing the modes in the reverse of ``order``. The first update
    would then repeat the MLSVD's last step (the leading subspace of ``suffix[0]``, which
    ``U[order[0]]`` is): it is skipped, and no product with the full tensor is needed
    before the last mode of ``order``.
    """
    N = T.ndim
    reuse = suffix is not None
    if suffix is None:
        suffix = [T]
        for k in range(N - 1, 0, -1):
            suffix.append(_mode_product(suffix[-1], _ct(U[order[k]]), order[k]))
        suffix.reverse()
    new, start = list(U), None
    Y = T
    for k, n in enumerate(order):
        Y = suffix[k]
        for j in range(k):
            Y = _mode_product(Y, _ct(new[order[j]]), order[j])
        if k == 0 and with_start:
            start = _mode_product(Y, _ct(U[n]), n)
        if not (k == 0 and reuse):
            new[n] = _normalize_signs(_leading_basis(unfold(Y, n), ranks[n]))
    return new, _mode_product(Y, _ct(new[order[-1]]), order[-1]), start


def _mlsvd_start(T: np.ndarray, ranks: list[int]
                 ) -> tuple[list[np.ndarray], list[int], list[np.ndarray]]:
    """The truncated MLSVD as a HOOI start: its factors, the sweep order (the reverse of
    its processing order) and the partial products it formed (``suffix`` of
    :func:`_hooi_sweep`)."""
    order = _mode_order(ranks, T.shape)
    partials: list[np.ndarray] = []
    _, U, _ = _sequential_mlsvd(T, ranks, None, order, partials)
    N = T.ndim
    return U, order[::-1], [partials[N - 2 - k] for k in range(N - 1)] + [T]


#: Below this value of ``relerr^2`` the relative error of an orthonormal Tucker model is
#: recomputed from the residual tensor: ``1 - ||S||^2 / ||T||^2`` has lost too many digits
#: to cancellation (the threshold of the engine's terms, see ``DataTerm.exact_fval``).
_RESIDUAL_BELOW = 1e-6


def _tucker_relerr(T: np.ndarray, U: list[np.ndarray], core: np.ndarray, norm2: float
                   ) -> float:
    """``||T - core x_n U_n|| / ||T||`` for orthonormal ``U`` and ``core = T x_n U_n^H``:
    ``sqrt(1 - ||core||^2 / ||T||^2)`` while that is accurate to about 1e-9 (relative),
    else from the residual tensor."""
    if norm2 == 0:
        return 0.0
    gap = 1.0 - frob(core, squared=True) / norm2
    if gap > _RESIDUAL_BELOW:
        return math.sqrt(gap)
    return frob(T - tucker_to_tensor(U, core)) / math.sqrt(norm2)


@with_one_blas_pool
def lmlra_hooi(
    T: ArrayLike,
    core_shape: Sequence[int],
    init: MLSVDResult | LMLRAResult | Sequence[ArrayLike] | None = None,
    max_iter: int = 50,
    tol: float = 1e-10,
    *,
    compare_start: bool = False,
) -> LMLRAResult:
    """Low multilinear rank approximation by higher-order orthogonal iteration (HOOI).

    Alternating updates: for each mode n (in the order ``0, ..., N-1``, see
    ``compare_start``), ``U_n`` becomes the ``R_n`` leading left singular vectors of
    ``unfold(T ×_{m != n} U_m^H, n)``. A sweep over all modes is one iteration; the core is ``T ×_n U_n^H``. Iterations stop when the fit
    ``||core||^2 / ||T||^2`` (= 1 - relerr^2) changes by at most ``tol`` in a sweep, or
    after ``max_iter`` sweeps. The projections of a sweep share their partial products
    (two products with the full tensor per sweep).

    Parameters
    ----------
    T : array_like, shape (I_0, ..., I_{N-1}), N >= 2
    core_shape : sequence of int
        Multilinear rank ``(R_0, ..., R_{N-1})``, ``1 <= R_n <= I_n``.
    init : MLSVDResult, LMLRAResult or sequence of array_like, optional
        Starting factors, each of shape (I_n, R_n) (orthonormalised by a QR
        factorisation). Default: the truncated :func:`mlsvd`.
    max_iter : int, default 50
        Maximum number of sweeps (0 only projects on the initial factors).
    tol : float, default 1e-10
        Stopping tolerance on the change of the fit.
    compare_start : bool, default False
        Compare the first sweep's fit with the start's (the fit of ``T`` projected on the
        initial factors, formed during the sweep): a start that is already converged,
        such as an MLSVD at the optimum, then costs one sweep instead of two. With the
        default ``init`` the sweeps then visit the modes in the reverse of the MLSVD's
        processing order, so that the first one reuses the MLSVD's partial products and
        skips its first update (the MLSVD's last step, which it would repeat): one
        product with the full tensor instead of two.

    Returns
    -------
    LMLRAResult
        ``factors``, ``core``, ``relerr``, ``iterations``, ``converged``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> T = rng.standard_normal((6, 7, 8))
    >>> res = lmlra_hooi(T, (2, 3, 2))
    >>> res.core.shape, 0 < res.relerr < 1
    ((2, 3, 2), True)
    """
    T, e = _unit_scale(_as_data(T, 2, "an LMLRA"))
    ranks = _check_core_shape(core_shape, T.shape)
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise DataError(f"max_iter: expected an integer >= 0, got {max_iter!r}")
    if not (isinstance(tol, numbers.Real) and tol >= 0):
        raise DataError(f"tol: expected a number >= 0, got {tol!r}")
    T = np.ascontiguousarray(T)
    order, suffix = list(range(T.ndim)), None
    if init is None and compare_start and max_iter > 0:
        U, order, suffix = _mlsvd_start(T, ranks)
    else:
        U = _initial_bases(T, ranks, init)
    norm2 = frob(T, squared=True)
    core = None
    fit_old, it, converged = -np.inf, 0, False
    for it in range(1, max_iter + 1):
        U, core, start = _hooi_sweep(T, U, ranks, order, compare_start and it == 1,
                                     suffix if it == 1 else None)
        if start is not None and norm2 > 0:
            fit_old = frob(start, squared=True) / norm2
        fit = frob(core, squared=True) / norm2 if norm2 > 0 else 1.0
        if abs(fit - fit_old) <= tol:
            converged = True
            break
        fit_old = fit
    if core is None:
        core = tmprod(T, [_ct(V) for V in U])
    relerr = _tucker_relerr(T, U, core, norm2)
    return LMLRAResult(factors=U, core=ldexp(core, e) if e else core, relerr=relerr,
                       iterations=it, converged=converged)


# --------------------------------------------------------------------------- GEVD
def _gevd_groups(shape: tuple[int, ...], rank: int) -> list[list[int]] | None:
    """Three groups of modes: two whose sizes reach ``rank`` and a third of size >= 2.

    None when the modes cannot be grouped so (order < 3 or ``rank`` too large).
    """
    if len(shape) < 3:
        return None
    by_size = sorted(range(len(shape)), key=lambda m: -shape[m])
    groups = [[by_size[0]], [by_size[1]]]
    rest = by_size[2:]
    for g in groups:
        while math.prod(shape[m] for m in g) < rank and len(rest) > 1:
            g.append(rest.pop(0))
    groups.append(rest)
    sizes = [math.prod(shape[m] for m in g) for g in groups]
    if sizes[0] < rank or sizes[1] < rank or sizes[2] < 2:
        return None
    return [sorted(g) for g in groups]


def gevd_applies(shape: Sequence[int], rank: int) -> bool:
    """Whether :func:`gevd_init` can start a rank-``rank`` CPD of a tensor of ``shape``.

    True when the order is at least 3 and the modes group into two sets whose sizes reach
    ``rank`` and a third of size at least 2 (for order 3: ``rank`` at most the
    second-largest dimension, the smallest at least 2).

    Examples
    --------
    >>> gevd_applies((5, 6, 4), 5), gevd_applies((5, 6, 4), 6), gevd_applies((5, 6), 2)
    (True, False, False)
    """
    return _gevd_groups(tuple(int(s) for s in shape), int(rank)) is not None

def _real_pairs(X: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Replace each complex-conjugate eigenvector pair by its real and imaginary parts."""
    X = X.copy()
    cplx = np.flatnonzero(np.abs(lam.imag) > 0)  # LAPACK returns the pairs consecutively
    pair = cplx[::2][cplx[::2] + 1 < X.shape[1]]
    X[:, pair + 1] = X[:, pair].imag
    X[:, pair] = X[:, pair].real
    return X.real


def _gevd3(T3: np.ndarray, rank: int, rng: np.random.Generator,
           complex_factors: bool) -> list[np.ndarray]:
    """GEVD of a 3-way tensor with rank <= I, J and K >= 2."""
    K = T3.shape[2]
    comp = mlsvd(T3, core_shape=(rank, rank, min(K, max(rank, 2))))
    S = comp.core
    w = rng.standard_normal((2, S.shape[2]))
    S1, S2 = S @ w[0], S @ w[1]
    # S_k = A D_k B^T  ⇒  S1 X = S2 X Λ with X = B^{-T} (up to scaling), and S2 X = A D2.
    lam, X = scipy.linalg.eig(S1, S2)
    if not (complex_factors or np.iscomplexobj(T3)):
        X = _real_pairs(X, lam)
    A = comp.factors[0] @ (S2 @ X)
    B = comp.factors[1] @ np.linalg.pinv(X).T
    H = (_ct(A) @ A) * (_ct(B) @ B)
    G = mttkrp(T3, [A.conj(), B.conj(), np.zeros((K, rank))], 2)
    C = np.linalg.lstsq(H, G.T, rcond=None)[0].T
    return [A, B, C]


def _split_rank1(F: np.ndarray, dims: list[int]) -> list[np.ndarray]:
    """Split the columns of F (prod(dims), R) into rank-1 terms: one factor per dim."""
    if len(dims) == 1:
        return [F]
    R = F.shape[1]
    X = F.T.reshape(R, dims[0], -1)
    U, s, Vh = np.linalg.svd(X, full_matrices=False)  # batched over the columns
    head = U[:, :, 0].T
    tail = (s[:, :1] * Vh[:, 0, :]).T
    return [head] + _split_rank1(np.ascontiguousarray(tail), dims[1:])


def gevd_init(
    T: ArrayLike, rank: int, seed: int | np.random.Generator | None = None, *,
    complex: bool = False,
) -> list[np.ndarray]:
    """CPD initialisation by a generalized eigenvalue decomposition (GEVD).

    For a 3-way tensor the two largest modes (sizes >= ``rank``) form the pencil and the
    smallest (size >= 2) is combined: ``T`` is compressed by :func:`mlsvd` to
    ``(R, R, min(K, max(R, 2)))``, two random combinations ``S1, S2`` of the core's
    frontal slices give the pencil ``S1 x = λ S2 x`` whose eigenvectors ``X = B^{-T}``
    (scipy.linalg.eig) yield ``B`` and ``A ∝ S2 X`` on the compressed level; the
    remaining factor is then the least-squares solution from the MTTKRP of the full data.
    Complex data give complex factors from the complex eigenvectors as they are. Real data
    give real factors: complex-conjugate eigenvector pairs are replaced by their real and
    imaginary parts, unless ``complex=True``, which keeps the complex eigenvectors (a
    real tensor whose rank over the complex numbers is lower than over the reals, such as
    a generic 2 x 2 x 2 tensor of real rank 3, then gets its exact complex CPD). For order N > 3 the modes are grouped into three (two groups whose
    sizes reach ``rank``, greedily from the largest modes, the rest in the third), the
    grouped 3-way tensor is decomposed, and each grouped factor's columns are split into
    one column per mode by sequential best rank-1 approximations (batched SVDs).
    Exact for a noise-free tensor of rank ``rank`` with generic factors.

    Parameters
    ----------
    T : array_like, shape (I_0, ..., I_{N-1}), N >= 3
    rank : int
        Number of rank-1 terms R.
    seed : int or Generator, optional
        Seeds the random slice combinations.
    complex : bool, default False
        Complex factors for real data too (complex data always get complex factors).

    Returns
    -------
    list of ndarray, each of shape (I_n, R)
        Factors with the columns of each rank-1 term scaled to equal norms; complex for
        complex data or with ``complex=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import cpd_to_tensor
    >>> rng = np.random.default_rng(0)
    >>> A = [rng.standard_normal((s, 3)) for s in (5, 6, 4)]
    >>> F = gevd_init(cpd_to_tensor(A), 3, seed=1)
    >>> bool(np.allclose(cpd_to_tensor(F), cpd_to_tensor(A)))
    True
    >>> z = np.array([[1.0 + 1.0j], [0.5 - 2.0j]])  # a real tensor of complex rank 2
    >>> T = cpd_to_tensor([z, z, z]) + cpd_to_tensor([z.conj(), z.conj(), z.conj()])
    >>> T = T.real
    >>> F = gevd_init(T, 2, seed=1, complex=True)
    >>> F[0].dtype, bool(np.allclose(cpd_to_tensor(F), T))
    (dtype('complex128'), True)
    """
    T, e = _unit_scale(_as_data(T, 3, "a GEVD initialisation"))
    if not isinstance(complex, (bool, np.bool_)):
        raise DataError(f"complex: expected True or False, got {complex!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise DataError(f"rank: expected an integer >= 1, got {rank!r}")
    rank = int(rank)
    groups = _gevd_groups(T.shape, rank)
    if groups is None:
        if T.ndim == 3:
            need = (f"rank <= the second-largest dimension ({sorted(T.shape)[1]}) and the "
                    f"smallest dimension >= 2")
        else:
            need = ("two disjoint groups of modes whose sizes are >= rank and a third "
                    "group of size >= 2")
        raise DataError(f"rank: the GEVD initialisation needs {need}; got rank {rank} for "
                        f"shape {T.shape}. Use a random initialisation instead.")
    perm = [m for g in groups for m in g]
    dims = [[T.shape[m] for m in g] for g in groups]
    T3 = np.transpose(T, perm).reshape([math.prod(d) for d in dims])
    grouped = _gevd3(np.ascontiguousarray(T3), rank, np.random.default_rng(seed),
                     bool(complex))
    out: list = [None] * T.ndim
    for g, d, F in zip(groups, dims, grouped):
        for m, A in zip(g, _split_rank1(F, d)):
            out[m] = A
    out = balance_columns(out)
    # Scaled back: 2**e shared out over the modes, so the factors stay balanced.
    shares = [e // T.ndim + (1 if m < e % T.ndim else 0) for m in range(T.ndim)]
    return [ldexp(A, k) if k else A for A, k in zip(out, shares)]


# --------------------------------------------------------------------------- TT-SVD
def tt_svd(T: ArrayLike, tol: float = 1e-12, max_rank: int | None = None) -> TTTensor:
    """Tensor train of a dense tensor by successive truncated SVDs (TT-SVD).

    Each of the N - 1 unfoldings is truncated to the smallest rank whose discarded
    singular values have energy at most ``(tol ||T||)**2 / (N - 1)``, so that
    ``||T - TT|| <= tol ||T||`` (Oseledets, 2011); ``max_rank`` caps every TT rank (the
    bound then no longer holds).

    Parameters
    ----------
    T : array_like, shape (I_0, ..., I_{N-1})
        Finite, real or complex (complex cores then), N >= 2.
    tol : float, default 1e-12
        Relative error bound, >= 0.
    max_rank : int, optional
        Largest TT rank.

    Returns
    -------
    TTTensor
        Cores of shape ``(r_k, I_k, r_{k+1})``; the first N - 1 are orthonormal
        (left-orthogonal).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> from sdf.algebra import cpd_to_tensor
    >>> T = cpd_to_tensor([rng.standard_normal((n, 2)) for n in (3, 4, 5, 6)])  # rank 2
    >>> tt = tt_svd(T, tol=1e-10)
    >>> tt.ranks, bool(np.allclose(tt.to_dense(), T))
    ((1, 2, 2, 2, 1), True)
    """
    X = _as_data(T, 2, "a TT-SVD")
    if not (isinstance(tol, numbers.Real) and tol >= 0):
        raise DataError(f"tol: expected a real number >= 0, got {tol!r}")
    if max_rank is not None and not (isinstance(max_rank, (int, np.integer))
                                     and not isinstance(max_rank, bool) and max_rank >= 1):
        raise DataError(f"max_rank: expected an int >= 1 or None, got {max_rank!r}")
    shape, N = X.shape, X.ndim
    budget = (tol * frob(X)) ** 2 / (N - 1)
    cores, rest, r_prev = [], X.reshape(shape[0], -1), 1
    for k in range(N - 1):
        rest = rest.reshape(r_prev * shape[k], -1)
        U, s, Vt = np.linalg.svd(rest, full_matrices=False)
        r = _rank_for_tol(s, budget)
        if max_rank is not None:
            r = min(r, int(max_rank))
        cores.append(U[:, :r].reshape(r_prev, shape[k], r))
        rest, r_prev = s[:r, None] * Vt[:r], r
    cores.append(rest.reshape(r_prev, shape[-1], 1))
    return TTTensor(cores, name="tt_svd")
