r"""Higher-order statistics and covariance tensors for source separation.

Blind source separation by tensors starts from statistics of the observed mixtures
``x(t) = A s(t)`` whose tensors have the mixing matrix A as factor: the fourth-order
cumulant of independent sources is a symmetric CPD ``sum_r kappa_r a_r ∘ a_r ∘ a_r ∘
a_r`` (kappa_r the sources' kurtoses), and lagged covariances of uncorrelated sources
are ``A D_k Aᵀ`` (a CPD with A in two modes: SOBI). Every function takes observations as
rows (shape (n, I): n samples of I channels; a vector is one channel) and estimates the
expectations by sample means, as Tensorlab does. Formulas are written for complex data
(the conjugates); the code follows them for real data and keeps the conjugates.

Examples
--------
>>> import numpy as np
>>> from sdf.statistics import cum4
>>> x = np.random.default_rng(0).uniform(-1, 1, size=(100000, 1))
>>> round(float(cum4(x)[0, 0, 0, 0] / np.var(x) ** 2), 1)  # kurtosis of a uniform
-1.2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sdf.errors import DataError
from sdf.tensors._cumulant import Cumulant4Tensor

__all__ = ["cum3", "cum4", "cum4_tensor", "dcov", "scov", "stcum4", "xcum4"]


# ----------------------------------------------------------------------------- helpers
def _observations(X: Any, name: str) -> np.ndarray:
    """A finite (n, I) array of real or complex observations (a vector is one channel)."""
    try:
        a = np.asarray(X)
    except ValueError as err:
        raise DataError(f"{name}: observations are not a regular array ({err})") from None
    if a.dtype.kind not in "biufc":
        raise DataError(f"{name}: observations have dtype {a.dtype}; expected numbers")
    a = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
        raise DataError(f"{name}: observations must be an (n, I) array with one observation "
                        f"per row and n >= 2, got shape {np.shape(X)}")
    if not np.isfinite(a).all():
        raise DataError(f"{name}: observations must be finite (no NaN or Inf)")
    return a


def _centered(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0)


def _whitened(Xc: np.ndarray) -> np.ndarray:
    """Centered observations mapped to identity covariance, ``(1/n) YᴴY = I``.

    ``Y = U sqrt(n)`` from the thin SVD ``Xc = U S Vᴴ``; channels with a negligible
    singular value (rank deficiency) are dropped, so Y may have fewer columns.
    """
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)
    keep = s > s[0] * max(Xc.shape) * np.finfo(float).eps if s[0] > 0 else s > 0
    return U[:, keep] * np.sqrt(Xc.shape[0])


def _prepared(X: Any, prewhiten: bool, name: str) -> np.ndarray:
    Xc = _centered(_observations(X, name))
    return _whitened(Xc) if prewhiten else Xc


def _pairs(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """(Rows-wise) Khatri-Rao of two observation matrices: row t is u_t ⊗ v_t."""
    return (U[:, :, None] * V[:, None, :]).reshape(U.shape[0], -1)


# ----------------------------------------------------------------------------- cumulants
def cum3(X: Any, *, prewhiten: bool = False) -> np.ndarray:
    r"""Third-order cumulant of a multichannel signal.

    .. math:: \mathcal{C}_{ijk} = \mathrm{E}\left[x_i\, x_j^*\, x_k^*\right]

    with x the centered channels (for centered data the third cumulant is the third
    moment), E the sample mean over the n observations.

    Parameters
    ----------
    X : array_like of shape (n, I)
        Observations as rows, channels as columns (a vector is one channel).
    prewhiten : bool, default False
        Map the centered channels to identity covariance first (see :func:`cum4`).

    Returns
    -------
    ndarray of shape (I, I, I)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).exponential(size=(200000, 1))
    >>> round(float(cum3(x)[0, 0, 0]), 1)  # exponential(1): third cumulant 2
    2.0
    """
    Y = _prepared(X, prewhiten, "cum3")
    n, I = Y.shape
    return (Y.T @ _pairs(Y.conj(), Y.conj()) / n).reshape(I, I, I)


def xcum4(X1: Any, X2: Any, X3: Any, X4: Any, *, center: bool = True) -> np.ndarray:
    r"""Fourth-order cross-cumulant of four multichannel signals.

    .. math::

       \mathcal{C}_{ijkl} = \mathrm{E}[a_i b_j^* c_k^* d_l]
           - \mathrm{E}[a_i b_j^*]\,\mathrm{E}[c_k^* d_l]
           - \mathrm{E}[a_i c_k^*]\,\mathrm{E}[b_j^* d_l]
           - \mathrm{E}[a_i d_l]\,\mathrm{E}[b_j^* c_k^*]

    with a, b, c, d the (centered) channels of X1, ..., X4 observed at the same instants.

    Parameters
    ----------
    X1, X2, X3, X4 : array_like, each of shape (n, I_m)
        The same number n of observations (rows); channel counts may differ.
    center : bool, default True
        Subtract each channel's mean first.

    Returns
    -------
    ndarray of shape (I_1, I_2, I_3, I_4)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).laplace(size=(100000, 2))
    >>> np.allclose(xcum4(x, x, x, x), cum4(x))
    True
    """
    mats = [_observations(Xm, f"xcum4: X{m + 1}") for m, Xm in enumerate((X1, X2, X3, X4))]
    n = mats[0].shape[0]
    if any(M.shape[0] != n for M in mats):
        raise DataError("xcum4: X1..X4 must have the same number of observations (rows), "
                        f"got {[M.shape[0] for M in mats]}")
    a, b, c, d = (_centered(M) if center else M for M in mats)
    b, c = b.conj(), c.conj()
    shape = tuple(M.shape[1] for M in (a, b, c, d))
    moment = (_pairs(a, b).T @ _pairs(c, d) / n).reshape(shape)
    ab, cd, ac, bd, ad, bc = (u.T @ v / n for u, v in ((a, b), (c, d), (a, c), (b, d),
                                                       (a, d), (b, c)))
    return (moment - np.einsum("ij,kl->ijkl", ab, cd) - np.einsum("ik,jl->ijkl", ac, bd)
            - np.einsum("il,jk->ijkl", ad, bc))


def cum4(X: Any, *, prewhiten: bool = False) -> np.ndarray:
    r"""Fourth-order cumulant (quadricovariance) of a multichannel signal, as a dense tensor.

    .. math::

       \mathcal{C}_{ijkl} = \mathrm{E}[x_i x_j^* x_k^* x_l]
           - \mathrm{E}[x_i x_j^*]\,\mathrm{E}[x_k^* x_l]
           - \mathrm{E}[x_i x_k^*]\,\mathrm{E}[x_j^* x_l]
           - \mathrm{E}[x_i x_l]\,\mathrm{E}[x_j^* x_k^*]

    with x the centered channels, E the sample mean (Tensorlab's convention). For real
    data the tensor is symmetric; for independent sources mixed by A, ``x = A s``, it is
    the symmetric CPD ``sum_r kappa_r a_r ∘ a_r ∘ a_r ∘ a_r`` with kappa_r the fourth
    cumulant of source r (0 for Gaussian sources), which ``sdf.CPD(C, [a, a, a, b])``
    fits with one variable shared by three modes. For many channels use
    :func:`cum4_tensor`, which never forms the I⁴ entries.

    Parameters
    ----------
    X : array_like of shape (n, I)
        Observations as rows, channels as columns (a vector is one channel).
    prewhiten : bool, default False
        Map the centered channels ``X_c = U S Vᴴ`` (thin SVD) to ``Y = sqrt(n) U`` first,
        whose covariance is the identity; the mixing matrix of whitened data is then
        unitary. Channels with a negligible singular value are dropped.

    Returns
    -------
    ndarray of shape (I, I, I, I)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> abs(float(cum4(rng.standard_normal((100000, 1)))[0, 0, 0, 0])) < 0.05  # Gaussian
    True
    >>> k = cum4(rng.laplace(size=(200000, 1)), prewhiten=True)[0, 0, 0, 0]
    >>> bool(abs(k - 3) < 0.5)  # a Laplacian's excess kurtosis is 3
    True
    """
    Y = _prepared(X, prewhiten, "cum4")
    return xcum4(Y, Y, Y, Y, center=False)


def cum4_tensor(X: Any, *, prewhiten: bool = False) -> Cumulant4Tensor:
    """Fourth-order cumulant of real observations as a structured, never-expanded tensor.

    The same tensor as :func:`cum4` held as the n centered observations
    (:class:`~sdf.tensors.Cumulant4Tensor`): every term and driver fits it with MTTKRPs
    of cost O(n I R) and O(n I) memory, instead of the I⁴ entries.

    Parameters
    ----------
    X : array_like of shape (n, I)
        Real observations as rows.
    prewhiten : bool, default False
        As in :func:`cum4`.

    Returns
    -------
    Cumulant4Tensor

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).laplace(size=(1000, 3))
    >>> np.allclose(cum4_tensor(X).to_dense(), cum4(X))
    True
    """
    Y = _prepared(X, prewhiten, "cum4_tensor")
    if np.iscomplexobj(Y):
        raise DataError("cum4_tensor: complex observations are not supported by the "
                        "structured cumulant yet; use cum4 for the dense tensor")
    return Cumulant4Tensor(Y, center=False, name="cum4_tensor")


def stcum4(X: Any, max_lag: int = 0) -> np.ndarray:
    r"""Fourth-order spatio-temporal cumulant: the cumulant between lagged channels.

    .. math::

       \mathcal{C}_{ijkl\tau_1\tau_2\tau_3} = \mathrm{cum}\left(x_i(t),\, x_j^*(t+\tau_1),
           \, x_k^*(t+\tau_2),\, x_l(t+\tau_3)\right)

    i.e. :func:`xcum4` of the channels and their lagged copies, for lags
    ``-max_lag..max_lag`` (index ``tau + max_lag``). The channels are centered over the
    whole signal and every lag combination averages over the same n - 2 max_lag instants
    ``t = max_lag, ..., n - 1 - max_lag`` (where all lags are observed).

    Parameters
    ----------
    X : array_like of shape (n, I)
        Observations in time order as rows, channels as columns.
    max_lag : int, default 0
        Largest lag L; ``n > 2 L + 1`` is needed.

    Returns
    -------
    ndarray of shape (I, I, I, I, 2L + 1, 2L + 1, 2L + 1)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).laplace(size=(1000, 2))
    >>> stcum4(x, 1).shape
    (2, 2, 2, 2, 3, 3, 3)
    >>> np.allclose(stcum4(x)[..., 0, 0, 0], cum4(x))
    True
    """
    Y = _centered(_observations(X, "stcum4"))
    n, I = Y.shape
    if not isinstance(max_lag, (int, np.integer)) or isinstance(max_lag, bool) \
            or not 0 <= max_lag or n <= 2 * max_lag + 1:
        raise DataError(f"stcum4: max_lag must be an int in [0, {(n - 2) // 2}] for {n} "
                        f"observations, got {max_lag!r}")
    L = int(max_lag)
    m = n - 2 * L
    lagged = np.stack([Y[L + tau:L + tau + m] for tau in range(-L, L + 1)], axis=2)
    Z = lagged.reshape(m, I * (2 * L + 1))  # column (j, tau): x_j(t + tau)
    P = 2 * L + 1
    C = xcum4(Y[L:L + m], Z, Z, Z, center=False).reshape(I, I, P, I, P, I, P)
    return C.transpose(0, 1, 3, 5, 2, 4, 6)


# ----------------------------------------------------------------------------- covariances
def scov(X: Any, shifts: Sequence[int] | None = None, *, prewhiten: bool = False
         ) -> np.ndarray:
    r"""Shifted (lagged) covariance matrices stacked along a third mode.

    .. math:: \mathcal{C}_{ijk} = \frac{1}{n - 1 - s_k} \sum_{t=0}^{n-1-s_k}
       x_i(t)\, x_j^*(t + s_k)

    with x the centered channels (Tensorlab's normalization). For uncorrelated sources
    mixed by A each slice is ``A D_k Aᴴ``: the tensor is a CPD with A (and its conjugate)
    in the first two modes, the basis of SOBI-like separation (``sdf.CPD(S, [a, a, d])``
    for real data, after prewhitening).

    Parameters
    ----------
    X : array_like of shape (n, I)
        Observations in time order as rows, channels as columns.
    shifts : sequence of int, optional
        Lags s_k in ``[0, n - 2]``; default ``0, 1, ..., K - 1`` with K = I, or n - 1
        when fewer observations are given.
    prewhiten : bool, default False
        Map the centered channels to identity covariance first (as in :func:`cum4`).

    Returns
    -------
    ndarray of shape (I, I, K)

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(1000)
    >>> S = scov(np.cos(0.1 * t), [0, 1, 31])  # a cosine: cov(t, t+s) = cos(0.1 s) / 2
    >>> np.round(S.ravel(), 2).tolist()
    [0.5, 0.5, -0.5]
    """
    Y = _prepared(X, prewhiten, "scov")
    n = Y.shape[0]
    if shifts is None:
        lags = np.arange(min(Y.shape[1], n - 1))
    else:
        lags = np.atleast_1d(np.asarray(shifts))
        if lags.dtype.kind not in "iu" or lags.ndim != 1 or lags.size == 0 \
                or lags.min() < 0 or lags.max() > n - 2:
            raise DataError(f"scov: shifts must be ints in [0, {n - 2}] for {n} "
                            f"observations, got {shifts!r}")
    return np.stack([Y[:n - s].T @ Y[s:].conj() / (n - 1 - s) for s in lags.tolist()],
                    axis=2)


def dcov(X: Any, *, axes: tuple[int, int] = (0, 1), unbiased: bool = True) -> np.ndarray:
    r"""Covariance matrices of every slice of a tensor, stacked along its other modes.

    For observations along ``axes[0]`` and variables along ``axes[1]``, each slice
    (fixed indices ``k`` of the other modes) gives

    .. math:: \mathcal{C}_{ij\mathbf{k}} = \frac{1}{n - 1}
       \sum_t (x_{ti\mathbf{k}} - \bar x_{i\mathbf{k}})\,(x_{tj\mathbf{k}}
       - \bar x_{j\mathbf{k}})^*

    (1/n when ``unbiased=False``), as Tensorlab's ``dcov``. With a segmented or
    decimated signal (:func:`sdf.tensorize.segmentize`) as X, the slices are the
    covariances of successive time windows; for nonstationary uncorrelated sources
    mixed by A each is ``A D_k Aᴴ``, so the stack is a CPD with A in two modes. Lagged
    covariances of one window are :func:`scov`.

    Parameters
    ----------
    X : array_like
        At least 2-D: observations along ``axes[0]``, variables along ``axes[1]``.
    axes : (int, int), default (0, 1)
    unbiased : bool, default True
        Normalize by n - 1 (else n).

    Returns
    -------
    ndarray of shape (I, I, ...)
        The covariance matrices, then the other modes of X in their order.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((50, 3, 4))
    >>> C = dcov(X)
    >>> C.shape, np.allclose(C[:, :, 2], np.cov(X[:, :, 2].T))
    ((3, 3, 4), True)
    """
    try:
        a = np.asarray(X)
    except ValueError as err:
        raise DataError(f"dcov: X is not a regular array ({err})") from None
    if a.dtype.kind not in "biufc" or a.ndim < 2:
        raise DataError(f"dcov: X must be a numeric array with at least 2 modes, got "
                        f"shape {a.shape} and dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise DataError("dcov: X must be finite (no NaN or Inf)")
    try:
        obs, var = (int(ax) % a.ndim for ax in axes)
        ok = len(axes) == 2 and obs != var and all(-a.ndim <= int(ax) < a.ndim for ax in axes)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"dcov: axes must be two different modes of a {a.ndim}-D array, "
                        f"got {axes!r}")
    n = a.shape[obs]
    if n < 2:
        raise DataError(f"dcov: needs at least 2 observations along axis {obs}, got {n}")
    Y = np.moveaxis(a, (obs, var), (0, 1)).astype(
        np.complex128 if a.dtype.kind == "c" else np.float64)
    Y = Y - Y.mean(axis=0)
    return np.einsum("ti...,tj...->ij...", Y, Y.conj()) / (n - 1 if unbiased else n)
