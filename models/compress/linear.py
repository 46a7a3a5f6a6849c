"""Compression of linear layers: truncated SVD, and data-aware as a two-term fusion model.

The weight ``W`` (out x in) is approximated by ``A B^T`` (A: out x r, B: in x r), run as two
linear layers ``x -> B^T x -> A (B^T x) + b``. Given calibration inputs ``X`` (n x in) the
model has two terms on the same factors::

    weight   = CPD(W,       [A, B])               W     ~ A B^T
    response = CPD(X W^T,   [matvec(X, B), A])    X W^T ~ (X B) A^T

weighted ``(1 - balance) / ||W||^2`` and ``balance / ||X W^T||^2``. With a bias, ``X`` is
centered and the bias refitted to absorb the mean input (``b + (W - A B^T) mean(X)``,
the exact optimum over the bias). The optimum is a
whitened truncated SVD (see :mod:`sdf.models.compress._fit`); ``solver="engine"`` fits the
same model with ``sdf.Model.fit`` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdf.errors import DataError, ModelError
import sdf.models.compress._fit as _fit
from sdf.models.compress.budget import Rank, RatioOf, layer_cost, rank_for_ratio, rank_for_tol
from sdf.models.compress.layers import Piece
from sdf.models.compress.result import (CompressedLayer, CompressOptions, FitInfo, RankCurve,
                                        check_rank_args)
from sdf._blas import with_one_blas_pool

__all__ = ["closed_form_data_aware", "compress_linear", "truncated_svd"]


def truncated_svd(W: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Best rank-``rank`` ``W ~ A B^T`` in Frobenius norm, singular values split evenly.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import truncated_svd
    >>> A, B = truncated_svd(np.diag([3.0, 2.0, 1.0]), 2)
    >>> np.round(A @ B.T, 12)
    array([[3., 0., 0.],
           [0., 2., 0.],
           [0., 0., 0.]])
    """
    A, B, _ = _fit.lowrank_fit(np.asarray(W, dtype=float), int(rank), None)
    return A, B


def closed_form_data_aware(W: np.ndarray, X: np.ndarray, rank: int) -> np.ndarray:
    """Rank-``rank`` ``W_hat`` minimising ``||X (W_hat - W)^T||``: the data-aware optimum.

    With ``X^T X = L L^T`` (Cholesky), ``W_hat = [W L]_r L^{-1}`` where ``[.]_r`` is the
    truncated SVD. ``X`` must have full column rank for the optimum to be unique.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import closed_form_data_aware
    >>> rng = np.random.default_rng(0)
    >>> W, X = rng.standard_normal((6, 5)), rng.standard_normal((40, 5))
    >>> closed_form_data_aware(W, X, 5).round(10).tolist() == W.round(10).tolist()
    True
    """
    X = np.asarray(X, dtype=float)
    L = np.linalg.cholesky(X.T @ X)
    A, B, _ = _fit.lowrank_fit(np.asarray(W, dtype=float), int(rank), L)
    return A @ B.T


def _check_matrix(where: str, W: Any) -> np.ndarray:
    W = np.asarray(W, dtype=float)
    if W.ndim != 2:
        raise ModelError(f"{where}: W has shape {W.shape} but a linear weight needs 2 dims "
                         "(out, in)")
    if not np.all(np.isfinite(W)):
        raise DataError(f"{where}: W has non-finite entries")
    return W


def _check_inputs(where: str, X: Any, n_in: int) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != n_in:
        raise DataError(f"{where}: X has shape {X.shape} but the layer reads (n, {n_in}) inputs")
    _check_finite_inputs(where, X)
    return X


def _check_finite_inputs(where: str, X: np.ndarray) -> None:
    """Calibration inputs have no missing entries: a NaN or Inf is a broken activation,
    an error naming the first one."""
    finite = np.isfinite(X)
    if not finite.all():
        first = tuple(int(v) for v in np.argwhere(~finite)[0])
        raise DataError(f"{where}: X has {int(X.size - finite.sum())} non-finite entries "
                        f"(the first at {first}: {X[first]})")


def _check_balance(where: str, balance: float) -> float:
    if not 0.0 <= balance <= 1.0:
        raise ModelError(f"{where}: balance must be in [0, 1], got {balance}")
    return float(balance)


def fit_lowrank_layer(where: str, orig: Piece, Wm: np.ndarray, rows: np.ndarray | None,
                      method: str, rank: Rank | None, ratio: float | None, tol: float | None,
                      balance: float, ratio_of: RatioOf, input_hw: tuple[int, int] | None,
                      opts: CompressOptions, calib: _fit.Calibration | None = None
                      ) -> tuple[int, np.ndarray, np.ndarray, RankCurve, FitInfo,
                                 _fit.Calibration | None]:
    """Shared driver of the two-factor layers (linear SVD, conv channel SVD).

    Returns ``(rank, A, B, curve, info, calib)`` with ``Wm ~ A B^T``. The calibration is
    ``calib`` when given, else that of ``rows`` (None: data-free). With rows and a bias
    the rows are centered and the bias is refitted (see :func:`refit_bias`).
    """
    if rows is not None:
        calib = _fit.Calibration.from_rows(rows, opts.max_calib_rows, opts.seed,
                                           center=orig.bias is not None,
                                           outputs=None if opts.solver == "engine" else len(Wm))
    bal = balance if calib is not None else 0.0
    w_w, w_r = _fit.term_weights(Wm, calib, bal)
    spectrum = _fit.WhitenedSVD(Wm, calib, w_w, w_r)
    top = min(Wm.shape)
    total2 = 1.0 if spectrum.aware else float(np.sum(spectrum.s ** 2))
    errors = _fit.tail_errors(spectrum.s, total2)[1:top + 1]
    ranks = np.arange(1, top + 1)
    costs = np.array([layer_cost(method, orig, int(r), input_hw) for r in ranks], dtype=object)
    macs = np.array([-1 if c is None else c for c in costs[:, 1]], dtype=int)
    curve = RankCurve(ranks, costs[:, 0].astype(int), macs, errors)
    if ratio is not None:
        rank = rank_for_ratio(method, orig, ratio, ratio_of, input_hw, where=where)
    elif tol is not None:
        rank = rank_for_tol(ranks, errors, tol)
    if rank is None or isinstance(rank, tuple) or not 1 <= int(rank) <= top:
        raise ModelError(f"{where}: rank must be in [1, {top}], got {rank}")
    rank = int(rank)
    use_engine = opts.solver == "engine"
    if use_engine:
        import sdf.models.compress._engine as _engine

        A0, B0 = (_fit.WhitenedSVD(Wm, None, w_w, 0.0) if spectrum.aware
                  else spectrum).factors(rank)
        A, B, info = _engine.fit_two_factor(Wm, calib, w_w, w_r, A0, B0, None, opts)
    else:
        A, B = spectrum.factors(rank)
        info = FitInfo("numpy", 0, "closed form (whitened truncated SVD)" if spectrum.aware
                       else "closed form (truncated SVD)")
    return rank, A, B, curve, info, calib


def refit_bias(bias: np.ndarray | None, calib: _fit.Calibration | None, Wm: np.ndarray,
               Wm_hat: np.ndarray) -> np.ndarray | None:
    """``b + (Wm - Wm_hat) mu``: the bias that absorbs the mean calibration input.

    Unchanged without a bias or without (centered) calibration rows.
    """
    shift = None if calib is None or bias is None else calib.bias_shift(Wm, Wm_hat)
    return bias if shift is None else np.asarray(bias, dtype=float) + shift


def _bias_change(bias: np.ndarray | None, new_bias: np.ndarray | None) -> np.ndarray | None:
    """``new_bias - bias`` (None without a bias)."""
    return None if bias is None or new_bias is None else new_bias - bias


def calib_error(rows: np.ndarray, Wm: np.ndarray, Wm_hat: np.ndarray, bias: np.ndarray | None,
                new_bias: np.ndarray | None) -> float:
    """``||P (Wm_hat - Wm)^T + 1 (b_hat - b)^T|| / ||P Wm^T||`` on the calibration rows."""
    E = rows @ (Wm_hat - Wm).T
    if bias is not None and new_bias is not None:
        E = E + (new_bias - bias)
    return float(np.linalg.norm(E) / (np.linalg.norm(rows @ Wm.T) or 1.0))


@with_one_blas_pool
def compress_linear(
    W: np.ndarray,
    rank: int | None = None,
    ratio: float | None = None,
    X: np.ndarray | None = None,
    *,
    tol: float | None = None,
    bias: np.ndarray | None = None,
    balance: float = 0.9,
    ratio_of: RatioOf = "params",
    name: str = "linear",
    options: CompressOptions | None = None,
) -> CompressedLayer:
    """Compress a linear layer ``y = W x + b`` into two thinner linear layers.

    Parameters
    ----------
    W : ndarray of shape (out, in)
        The weight (PyTorch layout: ``y = x @ W.T + b``).
    rank : int, optional
        Inner dimension r. Give exactly one of ``rank``, ``ratio`` or ``tol``.
    ratio : float, optional
        Target share of the original parameters (or MACs, see ``ratio_of``); the largest
        rank that fits is taken.
    X : ndarray of shape (n, in), optional
        Calibration inputs. Given, the fit is data-aware (response term on).
    tol : float, optional
        Smallest rank whose relative objective error is at most ``tol``.
    bias : ndarray of shape (out,), optional
        On the second piece. With ``X`` it is refitted to ``b + (W - W_hat) mean(X)`` and
        the response term reads the centered inputs (the rank goes to the input covariance,
        the bias absorbs the mean; see :mod:`sdf.models.compress._fit`).
    balance : float in [0, 1], default 0.9
        Share of the response term (ignored without ``X``); 1 switches the weight term off.
        At 1, a share of 1e-6 stays with the weight term when the calibration leaves input
        directions unseen (fewer rows than inputs, a dead input): it settles the weights
        along them, which the response alone leaves arbitrary.
    ratio_of : {"params", "macs"}, default "params"
    name : str, default "linear"
    options : CompressOptions, optional
        Solver choice and settings.

    Returns
    -------
    CompressedLayer
        Pieces ``[Linear(in -> r), Linear(r -> out, bias)]``, errors and counts.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import compress_linear
    >>> W = np.random.default_rng(0).standard_normal((64, 32))
    >>> res = compress_linear(W, ratio=0.5)
    >>> res.rank, res.params_after <= 0.5 * res.params_before
    (10, True)
    >>> res.dense().shape
    (64, 32)
    """
    where = f"compress_linear({name!r})"
    opts = options or CompressOptions()
    W = _check_matrix(where, W)
    check_rank_args(where, rank, ratio, tol)
    balance = _check_balance(where, balance)
    rows = None if X is None else _check_inputs(where, X, W.shape[1])
    orig = Piece("linear", W, bias=bias, name=name)
    rank, A, B, curve, info, calib = fit_lowrank_layer(where, orig, W, rows, "svd", rank, ratio,
                                                       tol, balance, ratio_of, None, opts)
    W_hat = A @ B.T
    new_bias = refit_bias(orig.bias, calib, W, W_hat)
    pieces = (Piece("linear", B.T, name=f"{name}.in"),
              Piece("linear", A, bias=new_bias, name=f"{name}.out"))
    out_err = None
    if calib is not None and not calib.sampled and calib.rows is None:
        # through the Gram matrix or the responses, not a product with every row
        out_err = calib.output_error(W, W_hat, _bias_change(orig.bias, new_bias),
                                     factors=(A, B))
    elif rows is not None:
        out_err = calib_error(rows, W, W_hat, orig.bias, new_bias)
    return CompressedLayer(
        name=name, method="svd", rank=rank, original=orig, pieces=pieces,
        weight_approx=W_hat, balance=balance if rows is not None else 0.0, input_hw=None,
        weight_error=float(np.linalg.norm(W_hat - W) / (np.linalg.norm(W) or 1.0)),
        calib_output_error=out_err, curve=curve, info=info)
