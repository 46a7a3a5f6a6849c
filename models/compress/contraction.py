"""Tensor regression heads: a flatten + dense layer on a feature map, with a low-rank weight.

A classifier head on a feature map ``F`` (n x C x H x W) computes
``y[n, k] = sum_{c,h,w} Wt[k, c, h, w] F[n, c, h, w] + b[k]``. With the weight tensor ``Wt``
(K x C x H x W) of low rank, the head becomes a tensor contraction (regression) layer:

``"tucker"``  ``Wt = S ×_1 U_K ×_2 U_C ×_3 U_H ×_4 U_W`` (core ``S`` of shape
              ``(r_K, r_C, r_H, r_W)``); forward: mode products of ``F`` with ``U_C^T``,
              ``U_H^T``, ``U_W^T``, the core, then ``U_K``.
``"cp"``      ``Wt = sum_r a_K[:, r] ∘ a_C[:, r] ∘ a_H[:, r] ∘ a_W[:, r]``; forward: one
              mode product and two weighted sums, giving R features, then ``a_K``.

The weight is fitted from a trained dense head as one fusion model: an LMLRA / CPD term on
``Wt`` and, given calibration feature maps ``X``, the head's response on them as a
coupled term (``balance`` its share, the objective of :mod:`sdf.models.compress._fit`
with the flattened maps as inputs), started from the data-free HOOI / CPD.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

import sdf.models.compress._fit as _fit
import sdf.models.compress._response_fits as _rf
from sdf.decomp import lmlra_hooi
from sdf.errors import DataError, ModelError
from sdf.models._common import quiet
from sdf.models.compress.linear import _check_balance, calib_error
from sdf.models.compress.result import CompressOptions, FitInfo, check_rank_args
from sdf.numerics import balance_columns
from sdf._blas import with_one_blas_pool

__all__ = ["HeadFormat", "LowRankHead", "compress_head"]

HeadFormat = Literal["tucker", "cp"]


@dataclass(frozen=True, repr=False)
class LowRankHead:
    """A classifier head on a (C, H, W) feature map whose weight is a Tucker or CP tensor.

    Attributes
    ----------
    format : {"tucker", "cp"}
    factors : tuple of ndarray
        ``(U_K, U_C, U_H, U_W, core)`` (Tucker) or ``(a_K, a_C, a_H, a_W)`` (CP).
    bias : ndarray of shape (K,) or None
    rank : int or tuple of int
        Core shape (Tucker) or number of terms (CP).
    weight_error : float
        ``||Wt_hat - Wt|| / ||Wt||``.
    calib_output_error : float or None
        Relative output error on the calibration feature maps.
    info : FitInfo
    name : str

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import compress_head
    >>> Wt = np.random.default_rng(0).standard_normal((10, 4, 6, 6))
    >>> head = compress_head(Wt, rank=(10, 4, 6, 6))          # full rank: exact
    >>> F = np.ones((2, 4, 6, 6))
    >>> bool(np.allclose(head.forward(F), F.reshape(2, -1) @ Wt.reshape(10, -1).T))
    True
    """

    format: HeadFormat
    factors: tuple[np.ndarray, ...]
    bias: np.ndarray | None
    rank: int | tuple[int, ...]
    weight_error: float
    calib_output_error: float | None
    info: FitInfo
    name: str = "head"

    def __repr__(self) -> str:
        """One line: format, shapes, rank, counts and errors (no arrays)."""
        return (f"LowRankHead({self.name!r}, {self.format}, {self.n_classes} x "
                f"{self.feature_shape}, rank={self.rank}, params {self.params_before} -> "
                f"{self.n_params} ({self.n_params / self.params_before:.3f}), MACs "
                f"{self.macs_before} -> {self.macs}, weight_error={self.weight_error:.4g})")

    @property
    def n_classes(self) -> int:
        """K."""
        return int(self.factors[0].shape[0])

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return (int(self.factors[1].shape[0]), int(self.factors[2].shape[0]),
                int(self.factors[3].shape[0]))

    def forward(self, features: np.ndarray) -> np.ndarray:
        """Class scores (n, K) of feature maps (n, C, H, W) (or flattened (n, C*H*W)),
        by mode products: the weight tensor is never formed."""
        C, H, W = self.feature_shape
        F = np.asarray(features, dtype=float)
        if F.ndim == 2 and F.shape[1] == C * H * W:
            F = F.reshape(-1, C, H, W)
        if F.ndim != 4 or F.shape[1:] != (C, H, W):
            raise DataError(f"LowRankHead {self.name!r}: features have shape {F.shape}, the "
                            f"head reads (n, {C}, {H}, {W}) or (n, {C * H * W})")
        n = F.shape[0]
        if self.format == "tucker":
            UK, UC, UH, UW, S = self.factors
            Z = np.tensordot(F, UC, axes=(1, 0))                  # (n, H, W, rC)
            Z = np.tensordot(Z, UH, axes=(1, 0))                  # (n, W, rC, rH)
            Z = np.tensordot(Z, UW, axes=(1, 0))                  # (n, rC, rH, rW)
            y = (Z.reshape(n, -1) @ S.reshape(S.shape[0], -1).T) @ UK.T
        else:
            aK, aC, aH, aW = self.factors
            Z = np.moveaxis(F, 1, 3) @ aC                         # (n, H, W, R)
            Z = np.einsum("nhwr,hr->nwr", Z, aH)
            y = np.einsum("nwr,wr->nr", Z, aW) @ aK.T
        return y if self.bias is None else y + self.bias

    def dense(self) -> np.ndarray:
        """The weight tensor (K, C, H, W) the head implements (for checks only)."""
        if self.format == "tucker":
            UK, UC, UH, UW, S = self.factors
            return np.einsum("abcd,ka,pb,hc,wd->kphw", S, UK, UC, UH, UW, optimize=True)
        aK, aC, aH, aW = self.factors
        return np.einsum("kr,pr,hr,wr->kphw", aK, aC, aH, aW, optimize=True)

    @property
    def n_params(self) -> int:
        """Factor (and core) entries plus bias entries."""
        return int(sum(F.size for F in self.factors)
                   + (0 if self.bias is None else self.bias.size))

    @property
    def params_before(self) -> int:
        """Parameters of the dense head, ``K C H W`` plus the bias."""
        C, H, W = self.feature_shape
        return int(self.n_classes * C * H * W + (0 if self.bias is None else self.n_classes))

    @property
    def macs(self) -> int:
        """Multiplications per sample of :meth:`forward` (bias not counted)."""
        C, H, W = self.feature_shape
        K = self.n_classes
        if self.format == "tucker":
            rK, rC, rH, rW = self.factors[4].shape
            return int(C * H * W * rC + H * W * rC * rH + W * rC * rH * rW
                       + rK * rC * rH * rW + rK * K)
        R = self.factors[0].shape[1]
        return int(C * H * W * R + H * W * R + W * R + R * K)

    @property
    def macs_before(self) -> int:
        """``K C H W``."""
        C, H, W = self.feature_shape
        return int(self.n_classes * C * H * W)


def _core_for_ratio(where: str, shape: Sequence[int], budget: float) -> tuple[int, ...]:
    """Tucker core ``(K, t, t, t)`` (ranks capped by the sizes) with the largest t in budget."""
    K, C, H, W = shape
    best = None
    for t in range(1, max(C, H, W) + 1):
        core = (K, min(t, C), min(t, H), min(t, W))
        cost = sum(n * r for n, r in zip(shape, core)) + int(np.prod(core))
        if cost <= budget:
            best = core
    if best is None:
        raise ModelError(f"{where}: even a Tucker core (K, 1, 1, 1) costs more than the budget "
                         f"of {budget:.0f} parameters")
    return best


def _check_core(where: str, rank: object, shape: Sequence[int]) -> tuple[int, ...]:
    if isinstance(rank, (int, np.integer)) and not isinstance(rank, bool):
        rank = (shape[0], *(min(int(rank), n) for n in shape[1:]))
    try:
        core = tuple(int(r) for r in rank)  # type: ignore[attr-defined]
    except TypeError:
        raise ModelError(f"{where}: a Tucker rank is an int or 4 ints (r_K, r_C, r_H, r_W), "
                         f"got {rank!r}") from None
    if len(core) != 4 or not all(1 <= r <= n for r, n in zip(core, shape)):
        raise ModelError(f"{where}: Tucker rank {core} must have 4 entries with 1 <= r <= "
                         f"{tuple(shape)}")
    return core


def _fit_cp_head(Wt: np.ndarray, R: int, root: np.ndarray | None, w_w: float, w_r: float,
                 opts: CompressOptions) -> tuple[list[np.ndarray], FitInfo]:
    """Engine CPD from a seeded random start; data-aware: from the data-free CPD."""
    rng = np.random.default_rng(opts.seed)
    start = [rng.standard_normal((n, R)) for n in Wt.shape]
    nw = 1.0 / (float(np.vdot(Wt, Wt)) or 1.0)
    aware = root is not None and w_r > 0
    with quiet() if aware else contextlib.nullcontext():
        factors, free = _rf.fit_cp(Wt, 1, None, nw, 0.0, start, opts)
    if not aware:
        return balance_columns(factors), dataclasses.replace(
            free, message=f"random start, then engine: {free.message}")
    factors, info = _rf.fit_cp(Wt, 1, root, w_w, w_r, factors, opts)
    return balance_columns(factors), dataclasses.replace(
        info, message=f"engine CPD of the weight ({free.iterations} iterations), then with "
                      f"the response: {info.message}")


@with_one_blas_pool
def compress_head(
    W: np.ndarray,
    rank: int | Sequence[int] | None = None,
    ratio: float | None = None,
    X: np.ndarray | None = None,
    *,
    format: HeadFormat = "tucker",
    feature_shape: Sequence[int] | None = None,
    bias: np.ndarray | None = None,
    balance: float = 0.9,
    name: str = "head",
    options: CompressOptions | None = None,
) -> LowRankHead:
    """Replace a flatten + dense head on a feature map by a low-rank tensor regression head.

    Parameters
    ----------
    W : ndarray of shape (K, C, H, W) or (K, C*H*W)
        The dense head's weight (a flattened one needs ``feature_shape``).
    rank : int or sequence of 4 int, optional
        Tucker: the core shape ``(r_K, r_C, r_H, r_W)``, or an int t for ``(K, t, t, t)``
        (capped by the sizes); CP: the number of terms. Give exactly one of ``rank`` and
        ``ratio``.
    ratio : float, optional
        Target share of the dense head's parameters (weight and bias).
    X : ndarray of shape (n, C, H, W) or (n, C*H*W), optional
        Calibration feature maps: the fit becomes data-aware (with a bias they are
        centered and the bias refitted).
    format : {"tucker", "cp"}, default "tucker"
    feature_shape : sequence of 3 int, optional
        ``(C, H, W)`` when ``W`` is flattened.
    bias : ndarray of shape (K,), optional
    balance : float in [0, 1], default 0.9
        Share of the response term (ignored without ``X``).
        At 1, a share of 1e-6 stays with the weight term when the calibration leaves input
        directions unseen (fewer rows than inputs, a dead input): it settles the weights
        along them, which the response alone leaves arbitrary.
    name : str, default "head"
    options : CompressOptions, optional
        Engine settings (``max_iter``, ``tol_fun``, ``tucker_tol_fun``, ``seed``, ...).

    Returns
    -------
    LowRankHead

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import compress_head
    >>> rng = np.random.default_rng(0)
    >>> Wt = rng.standard_normal((10, 8, 8, 8))
    >>> head = compress_head(Wt, ratio=0.1)
    >>> head.rank, head.n_params <= 0.1 * Wt.size
    ((10, 3, 3, 3), True)
    """
    where = f"compress_head({name!r})"
    opts = options or CompressOptions()
    Wt = np.asarray(W, dtype=float)
    if Wt.ndim == 2:
        if feature_shape is None or len(feature_shape) != 3 or \
                int(np.prod(feature_shape)) != Wt.shape[1]:
            raise ModelError(f"{where}: a flattened weight {Wt.shape} needs feature_shape "
                             f"(C, H, W) with C*H*W = {Wt.shape[1]}, got {feature_shape!r}")
        Wt = Wt.reshape(Wt.shape[0], *(int(s) for s in feature_shape))
    if Wt.ndim != 4:
        raise ModelError(f"{where}: W must have shape (K, C, H, W) or (K, C*H*W), got {Wt.shape}")
    if not np.all(np.isfinite(Wt)):
        raise DataError(f"{where}: W has non-finite entries")
    if format not in ("tucker", "cp"):
        raise ModelError(f"{where}: format must be 'tucker' or 'cp', got {format!r}")
    check_rank_args(where, rank, ratio, None)
    balance = _check_balance(where, balance)
    K, d = Wt.shape[0], int(np.prod(Wt.shape[1:]))
    Wm = Wt.reshape(K, d)
    b = None if bias is None else np.asarray(bias, dtype=float).reshape(-1)
    if b is not None and b.size != K:
        raise ModelError(f"{where}: bias has {b.size} entries, the head {K} classes")
    rows = None
    if X is not None:
        rows = np.asarray(X, dtype=float).reshape(len(X), -1)
        if rows.shape[1] != d or not np.all(np.isfinite(rows)):
            raise DataError(f"{where}: X must hold finite feature maps of shape (n, "
                            f"{', '.join(map(str, Wt.shape[1:]))}), got {np.shape(X)}")
    calib = None if rows is None else _fit.Calibration.from_rows(
        rows, opts.max_calib_rows, opts.seed, center=b is not None)
    w_w, w_r = _fit.term_weights(Wm, calib, balance if calib is not None else 0.0)
    root = None if calib is None or w_r == 0.0 else calib.root()
    budget = None if ratio is None else ratio * (Wt.size + (0 if b is None else K)) - (
        0 if b is None else K)
    if format == "tucker":
        core = (_core_for_ratio(where, Wt.shape, budget) if budget is not None
                else _check_core(where, rank, Wt.shape))
        res = lmlra_hooi(Wt, core, max_iter=opts.max_iter)
        factors, S, info = list(res.factors), res.core, FitInfo("numpy", res.iterations, "HOOI")
        if root is not None:
            factors, S, info = _rf.fit_tucker(Wt, 1, root, w_w, w_r, factors, S, opts)
            info = dataclasses.replace(info, message=f"HOOI, then engine: {info.message}")
        parts = (*factors, S)
        rank_out: int | tuple[int, ...] = tuple(int(r) for r in S.shape)
    else:
        if budget is not None:
            R = int(budget // sum(Wt.shape))
            if R < 1:
                raise ModelError(f"{where}: even one CP term costs more than the budget of "
                                 f"{budget:.0f} parameters")
        elif isinstance(rank, (int, np.integer)) and not isinstance(rank, bool) and rank >= 1:
            R = int(rank)
        else:
            raise ModelError(f"{where}: a CP rank is an int >= 1, got {rank!r}")
        cp_factors, info = _fit_cp_head(Wt, R, root, w_w, w_r, opts)
        parts, rank_out = tuple(cp_factors), R
    head = LowRankHead(format, tuple(np.asarray(p) for p in parts), b, rank_out, 0.0, None,
                       info, name)
    W_hat = head.dense().reshape(K, d)
    shift = None if calib is None or b is None else calib.bias_shift(Wm, W_hat)
    new_bias = b if shift is None or b is None else b + shift
    return dataclasses.replace(
        head, bias=new_bias,
        weight_error=float(np.linalg.norm(W_hat - Wm) / (np.linalg.norm(Wm) or 1.0)),
        calib_output_error=None if rows is None else calib_error(rows, Wm, W_hat, b, new_bias))
