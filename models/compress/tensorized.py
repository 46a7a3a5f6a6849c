"""Tensorized linear layers: a weight reshaped to an order-2d tensor and factored.

A weight ``W`` (out x in) with ``out = o_1 ... o_d`` and ``in = i_1 ... i_d`` is the
order-2d tensor ``W[y_1, ..., y_d, x_1, ..., x_d]`` (mixed-radix indices, first digit most
significant). Three factored forms (``format``):

``"tt"``      TT-matrix: cores ``G_k`` of shape ``(r_{k-1}, o_k, i_k, r_k)``,
              ``W[y, x] = G_1[:, y_1, x_1, :] ... G_d[:, y_d, x_d, :]``. Fitted by TT-SVD
              (:func:`sdf.decomp.tt_svd` of the tensor with modes ``(o_k i_k)``), then
              refined by alternating least squares (one core at a time, over-relaxed
              after the first sweep; large cores under a data-aware metric solved by
              conjugate gradients to 1 % of the residual, then an exact line search;
              the objective never rises).
``"cp"``      CP-matrix, a sum of ``R`` Kronecker products: factors ``A_k`` of shape
              ``(o_k, i_k, R)``, ``W = sum_r A_1[:, :, r] ⊗ ... ⊗ A_d[:, :, r]``. Fitted as a
              CPD of the same order-d tensor on the engine (for d = 2 a truncated SVD,
              exact), then refined by alternating least squares.
``"tucker"``  Tucker of the order-2d tensor: ``U_k`` (o_k x R_k), ``V_k`` (i_k x S_k) and a
              core ``(R_1, ..., R_d, S_1, ..., S_d)``. Fitted by HOOI
              (:func:`sdf.decomp.lmlra_hooi`), data-aware then refined by alternating
              exact block minimisation in the metric (the core in closed form, each
              output factor by a HOOI step with the core eliminated, each input factor
              by least squares; the objective never rises).

Data-aware (calibration inputs ``X``), every format minimises the objective of
:mod:`sdf.models.compress._fit`, ``w_w ||W_hat - W||^2 + w_r ||X (W_hat - W)^T||^2``
(terms normalised, ``balance`` the response share); for TT and CP the alternating least
squares solve it exactly one core at a time under the metric ``M = w_w I + w_r X^T X``,
for Tucker one block (core, output factor, input factor) at a time.

The layer (:class:`TensorizedLinear`) never forms ``W`` in its forward pass: the input
batch is contracted with one core (factor) at a time.

Sizes: :func:`factor_sizes` splits ``n`` into ``d`` balanced factors. A size whose
balanced factorisation is poor (a prime p gives ``(p, 1, ..., 1)``, which leaves that side
unfactored) is padded with zeros to the nearest size that factors well: padded inputs are
fed zeros, padded outputs are dropped, and the fits treat both as free (the metric is zero
on padded inputs; TT and CP refits leave padded output rows unconstrained, Tucker fits
them to zero).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np

import sdf.models.compress._fit as _fit
import sdf.models.compress._formats as fmt
import sdf.models.compress._tucker_als as tals
from sdf.decomp import lmlra_hooi, tt_svd
from sdf.errors import DataError, ModelError
from sdf.models._common import quiet
from sdf.models.compress.linear import _check_balance, _check_inputs, _check_matrix, calib_error
from sdf.models.compress.result import CompressOptions, FitInfo, check_rank_args
from sdf._blas import with_one_blas_pool

__all__ = ["TensorFormat", "TensorizedLinear", "factor_sizes", "tensorize_linear"]

TensorFormat = Literal["tt", "cp", "tucker"]
_FORMATS = ("tt", "cp", "tucker")


@lru_cache(maxsize=4096)
def _balanced(n: int, d: int) -> tuple[int, ...]:
    """Factors of n (d of them, descending, ones allowed) with the least largest factor."""
    if d == 1:
        return (n,)
    low = max(1, math.ceil(round(n ** (1.0 / d), 9)))
    for f in range(low, n + 1):
        if n % f == 0:
            rest = _balanced(n // f, d - 1)
            if rest[0] <= f:
                return (f, *rest)
    return (n,) + (1,) * (d - 1)


def _int_root_ceil(n: int, d: int) -> int:
    """``ceil(n ** (1/d))`` in integers."""
    r = max(1, int(round(n ** (1.0 / d))))
    while r ** d < n:
        r += 1
    while r > 1 and (r - 1) ** d >= n:
        r -= 1
    return r


def factor_sizes(n: int, d: int, pad: bool = True) -> tuple[int, ...]:
    """Split a size into ``d`` balanced factors (largest first), padding when it factors badly.

    Parameters
    ----------
    n : int
        The size (>= 1).
    d : int
        Number of factors (>= 1).
    pad : bool, default True
        The exact factorisation of ``n`` with the least largest factor is kept when that
        factor is at most ``2 ceil(n ** (1/d))``; otherwise (primes, twice a prime, ...)
        ``n`` is padded to the smallest size whose largest factor is at most
        ``ceil(n ** (1/d)) + 1``, and the product of the result exceeds ``n``. ``pad=False`` always factors ``n`` exactly:
        a prime ``p`` gives ``(p, 1, ..., 1)``, i.e. that side is not tensorized at all.

    Returns
    -------
    tuple of int
        ``d`` factors, descending, product ``>= n`` (``== n`` without padding).

    Examples
    --------
    >>> from sdf.models.compress import factor_sizes
    >>> factor_sizes(64, 3), factor_sizes(784, 2), factor_sizes(128, 2)
    ((4, 4, 4), (28, 28), (16, 8))
    >>> factor_sizes(13, 2), factor_sizes(13, 2, pad=False)
    ((5, 3), (13, 1))
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ModelError(f"factor_sizes: n must be an int >= 1, got {n!r}")
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ModelError(f"factor_sizes: d must be an int >= 1, got {d!r}")
    n, d = int(n), int(d)
    exact = _balanced(n, d)
    if not pad:
        return exact
    root = _int_root_ceil(n, d)
    if exact[0] <= 2 * root:
        return exact
    m = n
    while _balanced(m, d)[0] > root + 1:
        m += 1
    return _balanced(m, d)


@dataclass(frozen=True, repr=False)
class TensorizedLinear:
    """A linear layer ``y = x W^T + b`` whose weight is a factored order-2d tensor.

    Attributes
    ----------
    format : {"tt", "cp", "tucker"}
        The factored form (see :mod:`sdf.models.compress.tensorized`).
    out_features, in_features : int
        Layer sizes (the factored sizes may be larger: padding).
    factors : tuple of ndarray
        TT: cores ``(r_{k-1}, o_k, i_k, r_k)``; CP: ``A_k`` of shape ``(o_k, i_k, R)``;
        Tucker: ``U_1..U_d`` (o_k, R_k), ``V_1..V_d`` (i_k, S_k), then the core.
    bias : ndarray of shape (out_features,) or None
    rank : int or tuple of int
        TT: the ranks ``(1, r_1, ..., r_{d-1}, 1)``; CP: R; Tucker: the core shape.
    weight_error : float
        ``||W_hat - W|| / ||W||``.
    calib_output_error : float or None
        Relative output error on the calibration inputs (data-aware fits).
    info : FitInfo
    name : str

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import tensorize_linear
    >>> W = np.random.default_rng(0).standard_normal((16, 12))
    >>> layer = tensorize_linear(W, "tt", rank=100)          # full rank: exact
    >>> layer.out_sizes, layer.in_sizes, layer.rank
    ((4, 4), (4, 3), (1, 12, 1))
    >>> x = np.ones((2, 12))
    >>> bool(np.allclose(layer.forward(x), x @ W.T))
    True
    """

    format: TensorFormat
    out_features: int
    in_features: int
    factors: tuple[np.ndarray, ...]
    bias: np.ndarray | None
    rank: int | tuple[int, ...]
    weight_error: float
    calib_output_error: float | None
    info: FitInfo
    name: str = "linear"

    def __repr__(self) -> str:
        """One line: format, sizes, rank, counts and errors (no arrays)."""
        return (f"TensorizedLinear({self.name!r}, {self.format}, {self.out_sizes} x "
                f"{self.in_sizes}, rank={self.rank}, params {self.params_before} -> "
                f"{self.n_params} ({self.param_ratio:.3f}), MACs {self.macs_before} -> "
                f"{self.macs}, weight_error={self.weight_error:.4g})")

    @property
    def order(self) -> int:
        """d: number of factor pairs."""
        return len(self.in_sizes)

    @property
    def out_sizes(self) -> tuple[int, ...]:
        """``(o_1, ..., o_d)`` (product >= out_features)."""
        if self.format == "tucker":
            d = (len(self.factors) - 1) // 2
            return tuple(int(U.shape[0]) for U in self.factors[:d])
        return tuple(int(G.shape[-3 if self.format == "tt" else 0]) for G in self.factors)

    @property
    def in_sizes(self) -> tuple[int, ...]:
        """``(i_1, ..., i_d)`` (product >= in_features)."""
        if self.format == "tucker":
            d = (len(self.factors) - 1) // 2
            return tuple(int(V.shape[0]) for V in self.factors[d:2 * d])
        return tuple(int(G.shape[-2 if self.format == "tt" else 1]) for G in self.factors)

    def _tucker_parts(self) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        d = (len(self.factors) - 1) // 2
        return list(self.factors[:d]), list(self.factors[d:2 * d]), self.factors[-1]

    def _apply(self, x: np.ndarray) -> np.ndarray:
        if self.format == "tt":
            return fmt.tt_apply(self.factors, x)
        if self.format == "cp":
            return fmt.cp_apply(self.factors, x)
        return fmt.tucker_apply(*self._tucker_parts(), x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x W_hat^T + b`` for x of shape (n, in_features), one factor at a time."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise DataError(f"TensorizedLinear {self.name!r}: input has shape {x.shape}, the "
                            f"layer reads (n, {self.in_features})")
        n_in = int(np.prod(self.in_sizes))
        if n_in > self.in_features:
            x = np.pad(x, ((0, 0), (0, n_in - self.in_features)))
        y = self._apply(x)[:, :self.out_features]
        return y if self.bias is None else y + self.bias

    def dense(self) -> np.ndarray:
        """The weight the layer implements, (out_features, in_features) (for checks only)."""
        if self.format == "tt":
            W = fmt.tt_dense(self.factors)
        elif self.format == "cp":
            W = fmt.cp_dense(self.factors)
        else:
            W = fmt.tucker_dense(*self._tucker_parts())
        return np.array(W[:self.out_features, :self.in_features])

    @property
    def n_params(self) -> int:
        """Parameters: factor entries plus bias entries."""
        return int(sum(F.size for F in self.factors)
                   + (0 if self.bias is None else self.bias.size))

    @property
    def params_before(self) -> int:
        """Parameters of the dense layer (weight and bias)."""
        return int(self.out_features * self.in_features
                   + (0 if self.bias is None else self.bias.size))

    @property
    def param_ratio(self) -> float:
        """``n_params / params_before``."""
        return self.n_params / self.params_before

    @property
    def macs(self) -> int:
        """Multiplications per sample of :meth:`forward` (padded sizes included, bias and
        the CP's final sum over terms not counted)."""
        if self.format == "tt":
            return fmt.tt_macs(self.factors)
        if self.format == "cp":
            return fmt.cp_macs(self.factors)
        return fmt.tucker_macs(*self._tucker_parts())

    @property
    def macs_before(self) -> int:
        """``out_features * in_features``."""
        return int(self.out_features * self.in_features)

    def output_error(self, x: np.ndarray, W: np.ndarray, bias: np.ndarray | None = None
                     ) -> float:
        """``||f_hat(x) - f(x)|| / ||x W^T||`` against the dense layer ``(W, bias)``."""
        x = np.asarray(x, dtype=float)
        y = x @ np.asarray(W, dtype=float).T
        ref = y if bias is None else y + bias
        return float(np.linalg.norm(self.forward(x) - ref) / (np.linalg.norm(y) or 1.0))


# ----------------------------------------------------------------------------- sizes, ranks
def _sizes(where: str, shape: tuple[Sequence[int], Sequence[int]] | None, out: int,
           n_in: int, order: int, pad: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if shape is None:
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 2:
            raise ModelError(f"{where}: order must be an int >= 2, got {order!r}")
        return factor_sizes(out, order, pad), factor_sizes(n_in, order, pad)
    try:
        osz, isz = (tuple(int(s) for s in side) for side in shape)
    except (TypeError, ValueError):
        raise ModelError(f"{where}: shape must be a pair of size sequences "
                         f"((o_1, ..., o_d), (i_1, ..., i_d)), got {shape!r}") from None
    if len(osz) != len(isz) or len(osz) < 2 or min(osz + isz) < 1:
        raise ModelError(f"{where}: shape needs two sequences of the same length >= 2 of "
                         f"positive sizes, got {shape!r}")
    if np.prod(osz) < out or np.prod(isz) < n_in:
        raise ModelError(f"{where}: shape {shape!r} holds {int(np.prod(osz))} x "
                         f"{int(np.prod(isz))} entries, fewer than the weight's {out} x {n_in}")
    return osz, isz


def _tucker_params(osz: Sequence[int], isz: Sequence[int], core: Sequence[int]) -> int:
    sizes = [*osz, *isz]
    return int(sum(n * r for n, r in zip(sizes, core)) + np.prod(core))


def _tucker_core(osz: Sequence[int], isz: Sequence[int], t: int) -> tuple[int, ...]:
    """Core shape with every rank capped at t (and at what the other modes can span)."""
    sizes = [*osz, *isz]
    total = int(np.prod(sizes))
    return tuple(min(t, n, total // n) for n in sizes)


def params_at(format: str, osz: Sequence[int], isz: Sequence[int], rank: int) -> int:
    """Factor parameters of a format at a scalar rank (TT cap, CP R, Tucker cap)."""
    if format == "tt":
        return fmt.tt_params_at(osz, isz, rank)
    if format == "cp":
        return int(rank * sum(o * i for o, i in zip(osz, isz)))
    return _tucker_params(osz, isz, _tucker_core(osz, isz, rank))


def rank_for_budget(where: str, format: str, osz: Sequence[int], isz: Sequence[int],
                    budget: float) -> int:
    """Largest scalar rank whose factor parameters are at most ``budget``."""
    if format == "cp":
        rank = int(budget // sum(o * i for o, i in zip(osz, isz)))
    else:
        top = max(fmt.tt_rank_caps(osz, isz)) if format == "tt" else max([*osz, *isz])
        ok = [r for r in range(1, top + 1) if params_at(format, osz, isz, r) <= budget]
        rank = max(ok) if ok else 0
    if rank < 1:
        raise ModelError(f"{where}: even rank 1 of the {format!r} format costs more than the "
                         f"budget of {budget:.0f} parameters")
    return rank


# ----------------------------------------------------------------------------- fits
def _metric(W: np.ndarray, calib: _fit.Calibration | None, w_w: float, w_r: float,
            n_in_pad: int) -> fmt.Metric:
    """``w_w I + w_r G`` on the real inputs, zero on the padded ones; with fewer
    calibration rows than inputs also factored through the rows (``G = P^T P``)."""
    n_in = W.shape[1]
    scale = np.zeros(n_in_pad)
    scale[:n_in] = 1.0
    if calib is None or w_r == 0.0:
        return fmt.Metric(diag=scale)
    scale *= w_w
    M = np.zeros((n_in_pad, n_in_pad))
    M[:n_in, :n_in] = w_r * calib.gram
    M[np.arange(n_in_pad), np.arange(n_in_pad)] += scale
    if calib.rows is None:
        return fmt.Metric(full=M)
    root = np.zeros((len(calib.rows), n_in_pad))
    root[:, :n_in] = np.sqrt(w_r) * calib.rows
    return fmt.Metric(full=M, factored=(scale, root))


def _fit_tt(Wp: np.ndarray, osz: Sequence[int], isz: Sequence[int], rank: int,
            metric: fmt.Metric, n_out: int, sweeps: int, opts: CompressOptions
            ) -> tuple[list[np.ndarray], FitInfo]:
    tt = tt_svd(fmt.paired_tensor(Wp, osz, isz), tol=0.0, max_rank=int(rank))
    cores = [G.reshape(G.shape[0], o, i, G.shape[2]) for G, o, i in zip(tt.cores, osz, isz)]
    if sweeps == 0:
        return cores, FitInfo("numpy", 0, "TT-SVD")
    res = fmt.tt_als(Wp, cores, metric, n_out, sweeps, opts.sweep_tol)
    return res.factors, FitInfo("numpy", res.sweeps,
                                f"TT-SVD, then {res.sweeps} ALS sweeps"
                                + (" (over-relaxed after the first)" if res.sweeps > 1 else ""))


def cp_start(T: np.ndarray, rank: int, opts: CompressOptions, refined: bool
             ) -> tuple[list[np.ndarray], str]:
    """CPD of T: truncated SVD for a matrix, else the engine from a seeded random start
    (its warnings silenced when ALS sweeps refine it: an intermediate fit)."""
    if T.ndim == 2:
        U, s, Vt = np.linalg.svd(T, full_matrices=False)
        root = np.sqrt(s[:rank])
        pad = rank - root.size
        A, B = U[:, :rank] * root, Vt[:rank].T * root
        if pad > 0:
            A, B = np.pad(A, ((0, 0), (0, pad))), np.pad(B, ((0, 0), (0, pad)))
        return [A, B], "truncated SVD"
    import sdf.models.compress._response_fits as _rf

    rng = np.random.default_rng(opts.seed)
    start = [rng.standard_normal((n, rank)) for n in T.shape]
    with quiet() if refined else contextlib.nullcontext():
        values, info = _rf.fit_cp(T, T.ndim, None, 1.0 / (float(np.vdot(T, T)) or 1.0), 0.0,
                                  start, opts)
    return values, f"engine CPD ({info.iterations} iterations)"


def _fit_cp(Wp: np.ndarray, osz: Sequence[int], isz: Sequence[int], rank: int,
            metric: fmt.Metric, n_out: int, sweeps: int, opts: CompressOptions
            ) -> tuple[list[np.ndarray], FitInfo]:
    F, start = cp_start(fmt.paired_tensor(Wp, osz, isz), rank, opts, sweeps > 0)
    factors = [A.reshape(o, i, rank) for A, o, i in zip(F, osz, isz)]
    if sweeps == 0:
        return factors, FitInfo("numpy", 0, start)
    res = fmt.cp_als(Wp, factors, metric, n_out, sweeps, opts.sweep_tol)
    return res.factors, FitInfo("numpy", res.sweeps, f"{start}, then {res.sweeps} ALS sweeps")


def _fit_tucker(W: np.ndarray, Wp: np.ndarray, osz: Sequence[int], isz: Sequence[int],
                rank: int, calib: _fit.Calibration | None, w_w: float, w_r: float,
                sweeps: int, opts: CompressOptions) -> tuple[list[np.ndarray], FitInfo]:
    core_shape = _tucker_core(osz, isz, rank)
    T = Wp.reshape(*osz, *isz)
    res = lmlra_hooi(T, core_shape, max_iter=opts.max_iter)
    if calib is None or w_r == 0.0:
        return [*res.factors, res.core], FitInfo("numpy", res.iterations, "HOOI")
    n_in, n_pad = calib.gram.shape[0], int(np.prod(isz))
    calib_root = calib.root()
    root = np.zeros((len(calib_root), n_pad))
    root[:, :n_in] = calib_root
    d = len(osz)
    U0, V0 = res.factors[:d], res.factors[d:]
    if sweeps == 0:
        return [*res.factors, res.core], FitInfo("numpy", res.iterations, "HOOI")
    fit = tals.tucker_als(Wp, U0, V0, res.core, root, w_w, w_r, sweeps, opts.sweep_tol)
    n_real = W.shape[1]
    start = tals.tucker_objective(W, U0, V0, res.core, root[:, :n_real], w_w, w_r)
    end = tals.tucker_objective(W, fit.factors[:d], fit.factors[d:2 * d], fit.factors[-1],
                               root[:, :n_real], w_w, w_r)
    if end > start:  # padding is fitted to zero by the sweeps, the layer drops it
        return [*res.factors, res.core], FitInfo(
            "numpy", fit.sweeps, f"HOOI ({fit.sweeps} ALS sweeps in the metric did not "
                                 "lower the objective on the real entries: kept HOOI)")
    return fit.factors, FitInfo("numpy", fit.sweeps,
                                f"HOOI, then {fit.sweeps} ALS sweeps in the metric")


@with_one_blas_pool
def tensorize_linear(
    W: np.ndarray,
    format: TensorFormat = "tt",
    rank: int | None = None,
    ratio: float | None = None,
    X: np.ndarray | None = None,
    *,
    bias: np.ndarray | None = None,
    shape: tuple[Sequence[int], Sequence[int]] | None = None,
    order: int = 2,
    pad: bool = True,
    balance: float = 0.9,
    sweeps: int = 10,
    name: str = "linear",
    options: CompressOptions | None = None,
) -> TensorizedLinear:
    """Compress a linear layer into a tensorized one (TT-matrix, CP-matrix or Tucker).

    Parameters
    ----------
    W : ndarray of shape (out, in)
        The weight (PyTorch layout: ``y = x @ W.T + b``).
    format : {"tt", "cp", "tucker"}, default "tt"
        Factored form (see :mod:`sdf.models.compress.tensorized`).
    rank : int, optional
        TT: the cap on every TT rank; CP: the number of terms R; Tucker: the cap on every
        multilinear rank. Give exactly one of ``rank`` and ``ratio``.
    ratio : float, optional
        Target share of the dense layer's parameters (weight and bias): the largest rank
        whose parameters fit.
    X : ndarray of shape (n, in), optional
        Calibration inputs: the fit becomes data-aware (response term on, share
        ``balance``; with a bias the inputs are centered and the bias refitted).
    bias : ndarray of shape (out,), optional
    shape : pair of int sequences, optional
        ``((o_1, ..., o_d), (i_1, ..., i_d))``; products may exceed the sizes (zero
        padding). Default: :func:`factor_sizes` of both sizes with ``order`` factors.
    order : int, default 2
        d, when ``shape`` is not given.
    pad : bool, default True
        Passed to :func:`factor_sizes`.
    balance : float in [0, 1], default 0.9
        Share of the response term (ignored without ``X``).
        At 1, a share of 1e-6 stays with the weight term when the calibration leaves input
        directions unseen (fewer rows than inputs, a dead input): it settles the weights
        along them, which the response alone leaves arbitrary.
    sweeps : int, default 10
        Alternating least squares sweeps after the TT-SVD / CP / HOOI start (0: none;
        stops earlier when a sweep lowers the objective by at most ``options.sweep_tol`` of
        it). Tucker runs them only when data-aware (without ``X`` the HOOI fit is returned).
    name : str, default "linear"
    options : CompressOptions, optional
        ``max_iter`` (HOOI sweeps, engine iterations), ``alt_tol``, ``seed``,
        ``max_calib_rows``, engine settings. ``solver`` is not read: TT, CP and the
        data-aware Tucker are always refined by the exact block least squares.

    Returns
    -------
    TensorizedLinear

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import tensorize_linear
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((64, 64))
    >>> layer = tensorize_linear(W, "tt", ratio=0.1, order=3)
    >>> layer.in_sizes, layer.rank, layer.n_params <= 0.1 * 64 * 64
    ((4, 4, 4), (1, 4, 4, 1), True)
    >>> x = rng.standard_normal((5, 64))
    >>> bool(np.allclose(layer.forward(x), x @ layer.dense().T))
    True
    """
    where = f"tensorize_linear({name!r})"
    opts = options or CompressOptions()
    W = _check_matrix(where, W)
    if format not in _FORMATS:
        raise ModelError(f"{where}: format must be one of {_FORMATS}, got {format!r}")
    check_rank_args(where, rank, ratio, None)
    balance = _check_balance(where, balance)
    if isinstance(sweeps, bool) or not isinstance(sweeps, (int, np.integer)) or sweeps < 0:
        raise ModelError(f"{where}: sweeps must be an int >= 0, got {sweeps!r}")
    out, n_in = W.shape
    b = None if bias is None else np.asarray(bias, dtype=float).reshape(-1)
    if b is not None and b.size != out:
        raise ModelError(f"{where}: bias has {b.size} entries, the weight {out} outputs")
    rows = None if X is None else _check_inputs(where, X, n_in)
    osz, isz = _sizes(where, shape, out, n_in, order, pad)
    n_bias = 0 if b is None else out
    if rank is None:
        assert ratio is not None
        rank = rank_for_budget(where, format, osz, isz, ratio * (out * n_in + n_bias) - n_bias)
    elif isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ModelError(f"{where}: rank must be an int >= 1, got {rank!r}")
    calib = None if rows is None else _fit.Calibration.from_rows(
        rows, opts.max_calib_rows, opts.seed, center=b is not None)
    w_w, w_r = _fit.term_weights(W, calib, balance if calib is not None else 0.0)
    Wp = np.zeros((int(np.prod(osz)), int(np.prod(isz))))
    Wp[:out, :n_in] = W
    metric = _metric(W, calib, w_w, w_r, Wp.shape[1])
    if format == "tt":
        factors, info = _fit_tt(Wp, osz, isz, int(rank), metric, out, sweeps, opts)
        rank_out: int | tuple[int, ...] = (1, *(int(G.shape[3]) for G in factors))
    elif format == "cp":
        factors, info = _fit_cp(Wp, osz, isz, int(rank), metric, out, sweeps, opts)
        rank_out = int(rank)
    else:
        factors, info = _fit_tucker(W, Wp, osz, isz, int(rank), calib, w_w, w_r, sweeps,
                                     opts)
        rank_out = tuple(int(s) for s in factors[-1].shape)
    layer = TensorizedLinear(format, out, n_in, tuple(factors), b, rank_out, 0.0, None, info,
                             name)
    W_hat = layer.dense()
    shift = None if calib is None or b is None else calib.bias_shift(W, W_hat)
    new_bias = b if shift is None or b is None else b + shift
    out_err = None if rows is None else calib_error(rows, W, W_hat, b, new_bias)
    return dataclasses.replace(
        layer, bias=new_bias,
        weight_error=float(np.linalg.norm(W_hat - W) / (np.linalg.norm(W) or 1.0)),
        calib_output_error=out_err)
