"""Closed-form fitting pieces shared by the layer compressors (private).

Every compression here fits a weight matrix ``Wm`` of shape (out, d) (a linear weight, or
a convolution weight with its input side ``(in, kh, kw)`` flattened) under the objective

    w_w * ||Wm_hat - Wm||^2  +  w_r * ||P (Wm_hat - Wm)^T||^2,

where ``P`` (n x d) holds the calibration inputs (im2col patches for a convolution). The
response term depends on ``P`` only through its Gram matrix ``G = P^T P``, so with
``M = w_w I + w_r G = L L^T`` the objective is ``||(Wm_hat - Wm) L||^2``: a whitened
weight fit. This gives the closed-form optimum of the two-factor model
``Wm_hat = A B^T`` (truncated SVD of ``Wm L``, mapped back by ``L^{-1}``) and the
objective values of the rank curves. The structured models (CP, Tucker-2, kron-structured
SVDs with a response term) have no closed form: they are fitted by the engine (see
:mod:`sdf.models.compress._engine`).

When the layer has a bias, the bias is refitted too: the objective over ``(Wm_hat, b_hat)``
is ``w_w ||Wm_hat - Wm||^2 + w_r ||(Wm_hat - Wm) p_k + (b_hat - b)||^2`` summed over the
rows ``p_k``. Its minimiser over ``b_hat`` is ``b + (Wm - Wm_hat) mu`` (``mu`` the row
mean), which leaves the objective above with ``P`` replaced by the centered rows
``P - 1 mu^T``: the rank is spent on the input covariance, the bias absorbs the mean.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from sdf.algebra import nearest_kron
from sdf.errors import SdfWarning
from sdf.models.compress._roots import (DenseRows, KronRoot, PatchMaps, PatchRoot, RowSource,
                                         RowsRoot)

__all__: list[str] = []

#: the share of the uncentered calibration rows' energy that centering constant inputs
#: leaves as rounding (about eps^2 per entry; (64 eps)^2 is far above it and far below any
#: variation the inputs carry)
_ROUNDING_SHARE = (64 * np.finfo(float).eps) ** 2

# largest ratio of ``n mu^T mu`` to the centered Gram matrix's trace that
# :meth:`Calibration.from_maps` accepts (centering by subtraction then loses at most
# about three of float64's digits; beyond it the patches are centered before the product)
_CENTER_CANCEL = 1e3


@dataclass(frozen=True)
class Calibration:
    """Sufficient statistics of the calibration inputs for one weight matrix.

    Attributes
    ----------
    gram : ndarray of shape (d, d)
        ``P^T P`` of the calibration inputs / patches ``P``; when the rows are kept
        (``rows``) it is formed on first use only (``n d^2`` multiply-adds: the closed forms
        with fewer outputs than inputs never need it, see :class:`WhitenedSVD`).
    n_rows : int
        Number of rows of ``P`` that went into the Gram matrix.
    mean : ndarray of shape (d,) or None
        Row mean ``mu`` when the rows were centered (``gram`` is then ``(P - 1 mu^T)^T
        (P - 1 mu^T)``, for a layer whose bias is refitted); None otherwise.
    rows : ndarray of shape (n_rows, d) or None
        The (centered) rows themselves when there are fewer of them than values per row
        (then they are the cheapest root of ``gram``, see :meth:`root`); None otherwise.
        Read only.
    sampled : bool
        True when ``gram`` sums a random subset of the rows (``max_rows``): it then
        describes the objective, not the error on every row (:meth:`output_error`).
    source : RowSource or None
        The rows kept as they came or as feature maps (see :mod:`_roots`). With ``rows``:
        the feature maps whose patches they are (a convolution's, every patch kept), whose
        products with the rows are convolutions. Alone (:meth:`from_source`): the only copy
        of the rows, for more rows than values per row; products with few outputs
        (:meth:`responses`) then go through them, and the Gram matrix is formed on first
        use only.
    """

    n_rows: int
    mean: np.ndarray | None = None
    rows: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    sampled: bool = False
    #: ``P^T P`` when computed up front (None: formed from ``rows`` or ``source`` on first use)
    stored_gram: np.ndarray | None = dataclasses.field(default=None, repr=False)
    source: RowSource | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.stored_gram is None and self.rows is None and self.source is None:
            raise ValueError("Calibration needs its Gram matrix, its rows or their source")

    @functools.cached_property
    def gram(self) -> np.ndarray:
        """``P^T P`` (d, d) of the (centered) calibration rows."""
        if self.stored_gram is not None:
            return self.stored_gram
        if self.rows is not None:
            return self.rows.T @ self.rows
        assert self.source is not None  # __post_init__ checks it
        source = self.source
        if isinstance(source, PatchMaps) and source.stride == (1, 1):
            # patch_gram on the zero-padded maps (no padding left to add): 40 % of the
            # multiply-adds; centered by subtraction where that keeps the digits
            G, col = patch_gram(source.x.transpose(0, 3, 1, 2), source.kernel_size, (0, 0),
                                source.dilation)
            if self.mean is None:
                return G
            shift = self.n_rows * np.outer(self.mean, self.mean)
            if np.trace(shift) <= _CENTER_CANCEL * (np.trace(G) - np.trace(shift)):
                return G - shift
        return source.gram(self.mean)

    def has_gram(self) -> bool:
        """True when :attr:`gram` is formed (or stored)."""
        return self.stored_gram is not None or "gram" in self.__dict__

    @property
    def dim(self) -> int:
        """Values per calibration row ``d``."""
        if self.rows is not None:
            return self.rows.shape[1]
        if self.stored_gram is not None:
            return self.stored_gram.shape[1]
        assert self.source is not None  # __post_init__ checks it
        return self.source.dim

    @classmethod
    def from_rows(cls, P: np.ndarray, max_rows: int | None = None, seed: int = 0,
                  center: bool = False, outputs: int | None = None) -> Calibration:
        """The calibration of the rows ``P`` (n, d): a random ``max_rows`` of them when
        there are more, centered when ``center``.

        Kept as the rows (their own root) when there are fewer of them than values per
        row. ``outputs``, the rows of the weight a closed form fits, when fewer than
        ``d`` with more rows than ``d`` (and none sampled): kept as they came
        (:meth:`from_source`), since that fit needs only the responses. Otherwise the
        Gram matrix is formed up front.
        """
        P = np.asarray(P, dtype=float)
        n, d = P.shape
        if outputs is not None and outputs < d <= n and (max_rows is None or n <= max_rows):
            return cls.from_source(DenseRows(P), center=center)
        sampled = max_rows is not None and P.shape[0] > max_rows
        if sampled:
            idx = np.random.default_rng(seed).choice(P.shape[0], max_rows, replace=False)
            P = P[np.sort(idx)]
        mean = P.mean(axis=0) if center else None
        if mean is not None:
            P = P - mean
        if P.shape[0] < P.shape[1]:  # the rows are the cheaper statistic (and a root)
            return cls(n_rows=int(P.shape[0]), mean=mean, rows=P, sampled=sampled)
        return cls(n_rows=int(P.shape[0]), mean=mean, sampled=sampled, stored_gram=P.T @ P)

    @classmethod
    def from_maps(cls, x: np.ndarray, kernel_size: tuple[int, int], padding: tuple[int, int],
                  dilation: tuple[int, int], center: bool = False) -> Calibration | None:
        """The calibration of the im2col patches of a stride-1 convolution on the maps
        ``x`` (n, C, H, W), from :func:`patch_gram` (the patches are never formed); equal
        to :meth:`from_rows` of :func:`sdf.models.compress.layers.im2col` up to rounding.

        None when that is not the cheaper or not the accurate way: fewer patches than
        values per patch (the rows are then the root, see :meth:`root`), or centering
        that would cancel more than ``_CENTER_CANCEL`` of the Gram matrix's trace (the
        centered Gram matrix is ``P^T P - n mu mu^T`` here)."""
        n, c, h, w = x.shape
        (kh, kw), (ph, pw), (dh, dw) = kernel_size, padding, dilation
        ho, wo = h + 2 * ph - dh * (kh - 1), w + 2 * pw - dw * (kw - 1)
        n_rows = n * ho * wo
        if ho < 1 or wo < 1 or n_rows < c * kh * kw:
            return None
        G, col = patch_gram(np.asarray(x, dtype=float), kernel_size, padding, dilation)
        if not center:
            return cls(n_rows=n_rows, stored_gram=G)
        mean = col / n_rows
        shift = n_rows * np.outer(mean, mean)
        if np.trace(shift) > _CENTER_CANCEL * (np.trace(G) - np.trace(shift)):
            return None
        return cls(n_rows=n_rows, mean=mean, stored_gram=G - shift)

    @classmethod
    def from_source(cls, source: RowSource, center: bool = False) -> Calibration:
        """The calibration of the rows of ``source`` kept there (see ``source`` above): for
        a layer with fewer outputs than values per row and more rows than values, whose
        closed forms need only the responses ``P Wm^T`` (``n d o`` multiply-adds instead
        of the Gram matrix's ``n d^2``, and no centered copy of ``P``).

        Examples
        --------
        >>> import numpy as np
        >>> from sdf.models.compress import im2col
        >>> from sdf.models.compress._roots import PatchMaps
        >>> x, Wm = np.arange(150.0).reshape(1, 6, 5, 5), np.ones((2, 54))
        >>> calib = Calibration.from_source(
        ...     PatchMaps.from_maps(x, (3, 3), (1, 1), (1, 1), (1, 1)), center=True)
        >>> P = im2col(x, 3, padding=1)
        >>> bool(np.allclose(calib.responses(Wm), (P - P.mean(axis=0)) @ Wm.T))
        True
        """
        mean = source.column_sums() / source.rows if center else None
        return cls(n_rows=source.rows, mean=mean, source=source)

    @functools.cached_property
    def diagonal(self) -> np.ndarray:
        """The diagonal of :attr:`gram` (d,), without forming it when it is not formed."""
        if self.rows is not None:
            return np.einsum("nd,nd->d", self.rows, self.rows)
        if self.has_gram() or self.source is None:
            return np.diag(self.gram).copy()
        raw = self.source.column_sums(squares=True)
        if self.mean is None:
            return raw
        offset = self.n_rows * self.mean ** 2
        centered = raw - offset
        if np.any(offset > _CENTER_CANCEL * centered):  # the subtraction loses digits
            return self.source.centered_squares(self.mean)
        return centered

    def responses(self, M: np.ndarray) -> np.ndarray:
        """``P M^T`` (n_rows, k) for ``M`` (k, d), ``P`` the (centered) rows; from the
        rows or through their source (the last product is kept: the closed forms
        and the reported error ask for the same one). Read only."""
        last = self.__dict__.get("_responses")
        if last is not None and last[0].shape == M.shape and np.array_equal(last[0], M):
            return last[1]
        if self.rows is not None:
            R = self.rows @ M.T
        elif self.source is not None:
            R = self.source.products(M, self.mean)
        else:
            raise ValueError("responses need the calibration rows or their source")
        R.flags.writeable = False
        self.__dict__["_responses"] = (M.copy(), R)
        return R

    def responses_cheaper(self, k: int) -> bool:
        """True when ``P M^T`` for ``M`` with ``k`` rows is cheaper than through the Gram
        matrix: the rows are kept (fewer than values per row), or the Gram matrix is not
        formed yet and ``k < d`` (``n d k`` multiply-adds against ``n d^2``)."""
        if self.rows is not None:
            return True
        return self.source is not None and not self.has_gram() and k < self.dim

    def is_zero(self) -> bool:
        """True when every (centered) calibration row is zero: all-zero (or, centered,
        constant) inputs, whose response to any weight is nothing (or, the bias refitted,
        a constant). Centered, the rows of constant inputs keep the mean's rounding, so
        "zero" is at most ``_ROUNDING_SHARE`` of the uncentered rows' energy."""
        energy = float(np.sum(self.diagonal))
        raw = energy + (0.0 if self.mean is None else
                        self.n_rows * float(np.vdot(self.mean, self.mean)))
        return bool(energy <= _ROUNDING_SHARE * raw)

    def leaves_inputs_unseen(self) -> bool:
        """True when the Gram matrix is singular for a reason read off cheaply: fewer
        (centered) rows than values per row, or an input that is zero in every row (a
        dead channel)."""
        if self.n_rows - (self.mean is not None) < self.dim:
            return True
        diag = self.diagonal
        return bool(np.any(diag <= 1e-12 * max(float(diag.max()), 0.0)))

    def bias_shift(self, Wm: np.ndarray, Wm_hat: np.ndarray) -> np.ndarray | None:
        """``(Wm - Wm_hat) mu``: the bias change that absorbs the mean (None: not centered)."""
        return None if self.mean is None else (Wm - Wm_hat) @ self.mean

    def response_norm2(self, Wm: np.ndarray) -> float:
        """``||P Wm^T||^2``, from the responses where they are cheaper than through the
        Gram matrix (see :meth:`responses_cheaper`), else from the Gram matrix."""
        if self.responses_cheaper(Wm.shape[0]):
            return float(np.sum(self.responses(Wm) ** 2))
        return float(np.einsum("od,de,oe->", Wm, self.gram, Wm, optimize=True))

    def output_error(self, Wm: np.ndarray, Wm_hat: np.ndarray,
                     bias_change: np.ndarray | None = None,
                     factors: tuple[np.ndarray, np.ndarray] | None = None) -> float | None:
        """The calibration output error of ``Wm_hat`` with the bias changed by
        ``bias_change`` (``b_hat - b``; None: unchanged),
        ``||P (Wm_hat - Wm)^T + 1 (b_hat - b)^T|| / ||P Wm^T||`` over the uncentered rows
        ``P``, from the Gram matrix (``(d, d)`` products instead of ``(n, d)`` ones); None
        when the Gram matrix sums a subset of the rows.

        With ``P = P_c + 1 mu^T`` (``P_c`` centered) the squared numerator is ``||P_c
        (Wm_hat - Wm)^T||^2 + n ||(Wm_hat - Wm) mu + b_hat - b||^2``: the second term is
        zero for the bias of :meth:`bias_shift` up to its rounding, which stays counted
        (a bias far larger than the responses cannot carry the shift). Likewise ``||P
        Wm^T||^2 = ||P_c Wm^T||^2 + n ||Wm mu||^2``.

        ``factors`` ``(A, B)`` with ``Wm_hat = A B^T`` (rank r) let the responses of
        ``Wm_hat`` be ``(P B) A^T`` where responses are the cheaper route: ``r / out`` of
        a product with ``Wm_hat``."""
        if self.sampled:
            return None
        change = Wm_hat - Wm
        den = self.response_norm2(Wm)  # first: the responses of Wm are likely kept
        if factors is not None and self.responses_cheaper(Wm.shape[0]):
            R = self.responses(Wm)
            A, B = factors
            num = float(np.sum((self.responses(B.T) @ A.T - R) ** 2))
        else:
            num = self.response_norm2(change)
        if self.mean is not None:
            offset = change @ self.mean
            if bias_change is not None:
                offset = offset + bias_change
            num += self.n_rows * float(np.sum(offset ** 2))
            den += self.n_rows * float(np.sum((Wm @ self.mean) ** 2))
        return float(np.sqrt(max(num, 0.0) / (den or 1.0)))

    def root(self) -> np.ndarray:
        """A matrix ``R`` (k x d) with ``R^T R = G``: the reduced calibration rows.

        ``k = d`` (the Cholesky factor) when ``G`` is positive definite, else ``k`` is the
        numerical rank of ``G`` (an eigen root on its range): with fewer patches than
        values per patch, the response terms that multiply by ``R`` then cost ``k / d``
        of the square root's. When fewer rows than values went in, the (centered) rows
        themselves are the root (``k`` = rows), with no factorisation of ``G``.
        """
        if self.rows is not None:
            return self.rows
        try:
            return np.linalg.cholesky(self.gram).T
        except np.linalg.LinAlgError:
            lam, V = np.linalg.eigh((self.gram + self.gram.T) / 2)
            keep = lam > max(float(lam[-1]), 0.0) * 1e-13
            return (V[:, keep] * np.sqrt(lam[keep])).T


def patch_gram(x: np.ndarray, kernel_size: tuple[int, int], padding: tuple[int, int],
               dilation: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``P^T P`` and the column sums ``1^T P`` of the im2col patches ``P`` of a stride-1
    convolution (:func:`sdf.models.compress.layers.im2col`), without forming ``P``.

    The block of kernel offsets ``((i, j), (i', j'))`` sums ``x[:, u, v] x[:, u + s, v +
    t]^T`` (channels by channels; ``(s, t)`` the offsets' difference times the dilation)
    over the input pixels ``(u, v)`` the first offset reads while the second reads inside
    the input (zero padding adds nothing). That is the sum over every pixel, the same
    for every block of one difference, less a few rows and columns along the edges. The
    maps are laid out as one sequence of pixels with zero margins wide enough that a
    shift by ``(s, t)`` is a shift of the sequence and every pair leaving the input meets
    a zero: the sum over every pixel is one product of two contiguous slices. With a 3x3
    kernel: 13 such products and a few over single rows or columns, about 40 % of the
    multiply-adds of ``P^T P``, and no copy of ``P``.

    ``x`` has shape (n, C, H, W); returns the Gram matrix (C kh kw, C kh kw) in
    ``im2col``'s column order ``(c, i, j)`` and the column sums (C kh kw,).
    """
    n, c, h, w = x.shape
    (kh, kw), (dh, dw) = kernel_size, dilation
    top, left = dh * (kh - 1), dw * (kw - 1)  # margins: the largest shifts
    hq, wq = h + top, w + left
    # zero margins above and left of each map (the next map's margins lie below and to
    # the right of this one), and below the last one
    flat = np.zeros((n * hq * wq + top * wq + left, c))
    maps = flat[:n * hq * wq].reshape(n, hq, wq, c)
    maps[:, top:, left:] = x.transpose(0, 2, 3, 1)
    sums: dict[tuple[int, ...], np.ndarray] = {}

    def every_pixel(s: int, t: int) -> np.ndarray:
        """``sum x[:, u, v] x[:, u + s, v + t]^T`` over every pixel (``s wq + t >= 0``)."""
        o = s * wq + t
        A = flat[:len(flat) - o]
        return A.T @ A if o == 0 else A.T @ flat[o:]

    def strip(r0: int, r1: int, c0: int, c1: int, s: int, t: int) -> np.ndarray | None:
        """The same sum over ``r0 <= u < r1``, ``c0 <= v < c1`` (None: no pixel)."""
        r0, r1, c0, c1 = max(r0, -s), min(r1, h - s), max(c0, -t), min(c1, w - t)
        if r1 <= r0 or c1 <= c0:
            return None
        key = (r0, r1, c0, c1, s, t)
        if key not in sums:
            A = maps[:, top + r0:top + r1, left + c0:left + c1].reshape(-1, c)
            B = maps[:, top + r0 + s:top + r1 + s, left + c0 + t:left + c1 + t]
            sums[key] = A.T @ B.reshape(-1, c)
        return sums[key]

    k = kh * kw
    rows, cols = _offset_ranges(h, kh, padding[0], dh), _offset_ranges(w, kw, padding[1], dw)
    G = np.zeros((k, k, c, c))  # blocks by offsets, laid out (c, i, j) at the end
    for p in range(k):
        for q in range(p, k):
            (i, j), (i2, j2) = divmod(p, kw), divmod(q, kw)
            s, t = dh * (i2 - i), dw * (j2 - j)
            r0, r1 = max(rows[i][0], rows[i2][0] - s), min(rows[i][1], rows[i2][1] - s)
            c0, c1 = max(cols[j][0], cols[j2][0] - t), min(cols[j][1], cols[j2][1] - t)
            if r1 <= r0 or c1 <= c0:  # the two offsets never both read the input
                continue
            if (s, t) not in sums:
                sums[s, t] = every_pixel(s, t)
            G[p, q] = sums[s, t]
            # less the pixels outside rows [r0, r1), then outside columns [c0, c1)
            for u0, u1, v0, v1 in ((0, r0, 0, w), (r1, h, 0, w), (r0, r1, 0, c0),
                                   (r0, r1, c1, w)):
                part = strip(u0, u1, v0, v1, s, t)
                if part is not None:
                    G[p, q] -= part
            G[q, p] = G[p, q].T
    xs = x.sum(axis=0)
    col = np.array([xs[:, slice(*rows[i]), slice(*cols[j])].sum(axis=(1, 2))
                    for i in range(kh) for j in range(kw)])  # (k, C)
    return G.transpose(2, 0, 3, 1).reshape(c * k, c * k), col.T.reshape(-1)


def _offset_ranges(size: int, kernel: int, pad: int, dil: int) -> list[tuple[int, int]]:
    """For each kernel offset along one axis, the input pixels ``[lo, hi)`` it reads over
    the outputs of a stride-1 convolution (the rest of its reads are padding)."""
    out = size + 2 * pad - dil * (kernel - 1)
    return [(max(0, dil * i - pad), min(size, dil * i - pad + out)) for i in range(kernel)]


#: The weight term's least share when the calibration inputs leave some input directions
#: unseen (:meth:`Calibration.leaves_inputs_unseen`): the response term alone does not
#: determine the weights along them, and the fits returned whatever their iterations
#: drifted to (a data-aware spatial SVD of a 64x48x3x3 conv with 64 calibration patches
#: and ``balance=1``: weight error 1.6e7; with this share 0.48, at a calibration error
#: of 4.8e-7 instead of 4.6e-8).
MIN_WEIGHT_SHARE = 1e-6


#: Products through a thin calibration root (k x d, k << d) ran at about half the
#: multiply-adds per second of square ones (one BLAS thread): work budgets
#: (:meth:`Metric.cost`) count them this many times, so that they keep meaning about the
#: same CPU time
THIN = 2.0


@dataclass(frozen=True)
class Metric:
    """The metric ``M = w_w I + w_r G`` (d x d) of the data-aware objective ``tr(E M
    E^T)``: the matrix (given, or formed from ``source`` on first use: see
    :attr:`dense`), its identity part ``scale`` (``M - scale I`` positive semidefinite; 0:
    none known) and, when the calibration keeps its rows, the factored form ``M = scale I
    + root_weight root^T root`` (``root`` k x d, the calibration's rows as they are: a
    scaled copy of thousands of patches costs more than the products that use it): products
    with ``M`` go through the root where that takes fewer multiply-adds (``2 k < d``).
    ``patches``: the root's rows as convolution patches (``sqrt(root_weight) root = scale
    (P - 1 mean^T)``: maps, mean, scale), for :meth:`kron_root`.

    Examples
    --------
    >>> import numpy as np
    >>> R = np.arange(6.0).reshape(1, 6)
    >>> metric = Metric(0.5 * np.eye(6) + R.T @ R, 0.5, R)
    >>> E = np.ones((2, 6))
    >>> bool(np.allclose(metric.times(E), E @ metric.dense))
    True
    """

    matrix: np.ndarray | None = None
    scale: float = 0.0
    root: np.ndarray | None = None
    patches: tuple[PatchMaps, np.ndarray | None, float] | None = dataclasses.field(
        default=None, repr=False)
    #: the calibration and ``w_r`` that form the matrix when none is given
    source: tuple[Calibration, float] | None = dataclasses.field(default=None, repr=False)
    root_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.matrix is None and self.source is None:
            raise ValueError("Metric needs its matrix or the calibration that forms it")

    @functools.cached_property
    def dense(self) -> np.ndarray:
        """``M`` (d, d)."""
        if self.matrix is not None:
            return self.matrix
        assert self.source is not None
        calib, w_r = self.source
        return metric_matrix(calib, self.scale, w_r)

    @property
    def dim(self) -> int:
        """``d``."""
        if self.root is not None:
            return self.root.shape[1]
        if self.matrix is None and "dense" not in self.__dict__:
            assert self.source is not None  # __post_init__ checks it
            return self.source[0].dim  # without forming the matrix
        return self.dense.shape[0]

    @property
    def thin(self) -> bool:
        """True when products go through the root (it has fewer than half of ``d`` rows)."""
        return self.root is not None and 2 * self.root.shape[0] < self.root.shape[1]

    def times(self, E: np.ndarray) -> np.ndarray:
        """``E M`` for ``E`` (n x d)."""
        if not self.thin:
            return E @ self.dense
        assert self.root is not None
        return self.scale * E + self.root_weight * ((E @ self.root.T) @ self.root)

    def outer(self, E: np.ndarray) -> np.ndarray:
        """``E M E^T`` (n, n) for ``E`` (n, d): through the calibration's responses ``R =
        P E^T`` (``scale E E^T + w_r R^T R``) while the matrix is not formed and they are
        the cheaper route (:meth:`Calibration.responses_cheaper`), else ``(E M) E^T``."""
        if self.matrix is None and "dense" not in self.__dict__ and self.root is None:
            assert self.source is not None  # __post_init__ checks it
            calib, w_r = self.source
            if calib.responses_cheaper(E.shape[0]):
                R = calib.responses(E)
                return self.scale * (E @ E.T) + w_r * (R.T @ R)
        return self.times(E) @ E.T

    def weighted_root(self) -> np.ndarray | None:
        """``sqrt(root_weight) root`` (``M = scale I + R^T R``; a new array unless the
        weight is 1), None without a root."""
        if self.root is None or self.root_weight == 1.0:
            return self.root
        return np.sqrt(self.root_weight) * self.root

    def cost(self, rows: int) -> float:
        """Multiply-adds of :meth:`times` on ``rows`` rows, those through the root counted
        :data:`THIN` times."""
        d = self.dim
        if not self.thin:
            return float(rows * d * d)
        assert self.root is not None
        return float(rows * d * 2 * THIN * self.root.shape[0])

    def kron_pair(self, a: int, m: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``A`` (a, a) and ``B`` (m, m) with ``kron(A, B)`` near ``M - shift I``: the
        nearest Kronecker product of the matrix (:func:`sdf.algebra.nearest_kron`) or,
        when the matrix is not formed and the root has a product with ``kron(F, I_m)``
        (:meth:`kron_root`), the partial traces of ``M - shift I``, ``B`` scaled to trace 1
        (exact for a Kronecker product; a Gram matrix is never formed)."""
        traces = None if self.matrix is not None or "dense" in self.__dict__ else (
            self.kron_traces(a, m, shift))
        if traces is None:
            return nearest_kron(self.dense, (a, a), (m, m), shift=shift)
        over_m, over_a = traces
        return over_m, over_a / (np.trace(over_a) or 1.0)

    def kron_traces(self, a: int, m: int, shift: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The partial traces of ``M - shift I`` over ``m`` (a, a) and over ``a`` (m, m)
        through the root (:meth:`partial_traces`, the identity part added); None without
        a root."""
        traces = self.partial_traces(a, m)
        if traces is None:
            return None
        extra = self.scale - shift
        return traces[0] + m * extra * np.eye(a), traces[1] + a * extra * np.eye(m)

    def partial_traces(self, a: int, m: int) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`KronRoot.traces` of :meth:`kron_root` (``root^T root`` traced over ``m``
        and over ``a``), computed once per split; None without a root."""
        cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = self.__dict__.setdefault(
            "_traces", {})
        if (a, m) not in cache:
            root = self.kron_root(a, m)
            if root is None:
                return None
            cache[a, m] = root.traces()
        return cache[a, m]

    def kron_root(self, a: int, m: int) -> KronRoot | None:
        """The root's products with ``kron(F, I_m)`` for the split ``d = a m`` (see
        :mod:`_roots`): as convolutions of the maps when the rows are patches split along
        the kernel, else through the rows; None without a root."""
        if self.patches is not None:
            maps, mean, scale = self.patches
            try:
                return PatchRoot(maps, a, m, mean, scale)
            except ValueError:  # not a split along the kernel: through the rows
                pass
        return None if self.root is None else RowsRoot(self.root, a, m,
                                                       float(np.sqrt(self.root_weight)))


def metric_matrix(calib: Calibration, w_w: float, w_r: float) -> np.ndarray:
    """``M = w_w I + w_r G`` (d x d, a new array): the data-aware objective is ``tr(E M
    E^T)``."""
    M = w_r * calib.gram
    M[np.diag_indices_from(M)] += w_w
    return M


def response_metric(calib: Calibration, w_w: float, w_r: float) -> Metric:
    """:class:`Metric` of ``w_w I + w_r G``, with the root ``sqrt(w_r) R`` when the
    calibration keeps its rows ``R`` (fewer rows than values per row)."""
    if calib.rows is None and calib.source is not None and not calib.has_gram():
        return Metric(None, w_w, source=(calib, w_r))  # the matrix formed on first use
    if calib.rows is None:
        return Metric(metric_matrix(calib, w_w, w_r), w_w)
    patches = (None if not isinstance(calib.source, PatchMaps)
               else (calib.source, calib.mean, float(np.sqrt(w_r))))
    return Metric(None, w_w, calib.root(), patches, (calib, w_r), w_r)


def term_weights(Wm: np.ndarray, calib: Calibration | None, balance: float) -> tuple[float, float]:
    """Absolute weights ``(w_w, w_r)`` of the weight and response terms.

    Each term is normalised by its data's squared norm, then ``balance`` (in [0, 1]) is the
    share of the response term: ``w_w = (1 - balance) / ||Wm||^2``,
    ``w_r = balance / ||P Wm^T||^2``; so the objective is 1 at ``Wm_hat = 0``. When the
    calibration leaves input directions unseen, the share is at most ``1 -
    MIN_WEIGHT_SHARE``: the weight term then settles the weights along those directions
    (near the original ones) instead of leaving them arbitrary.
    """
    nw = float(np.vdot(Wm, Wm)) or 1.0
    if calib is None:
        return 1.0 / nw, 0.0
    if calib.is_zero():
        warnings.warn("the calibration inputs are all zero (or, centered for the bias, "
                      "constant): they tell nothing about the layer's response, so the fit "
                      "is data-free", SdfWarning, stacklevel=2)
        return 1.0 / nw, 0.0
    nr = calib.response_norm2(Wm) or 1.0
    if balance > 1.0 - MIN_WEIGHT_SHARE and calib.leaves_inputs_unseen():
        balance = 1.0 - MIN_WEIGHT_SHARE
    return (1.0 - balance) / nw, balance / nr


def _sqrt_factor(M: np.ndarray) -> np.ndarray:
    """``L`` with ``L L^T = M``: Cholesky when positive definite, else a clipped eigen root."""
    try:
        return np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        lam, V = np.linalg.eigh((M + M.T) / 2)
        lam = np.where(lam > lam.max() * 1e-13, lam, 0.0)
        return V * np.sqrt(lam)


def whitener(d: int, calib: Calibration | None, w_w: float, w_r: float) -> np.ndarray | None:
    """``L`` (d x d) with ``L L^T = w_w I + w_r G``, or None for the plain weight fit."""
    if calib is None or w_r == 0.0:
        return None
    return _sqrt_factor(metric_matrix(calib, w_w, w_r))


class WhitenedSVD:
    """The singular values of ``Wm L`` (``L L^T = M = w_w I + w_r G``) and the best
    ``Wm_hat = A B^T`` of any rank in the norm ``||(.) L||`` (the closed form of the
    two-factor layers).

    With fewer outputs than inputs (``o < d``) both come from the eigendecomposition of
    the small ``Wm M Wm^T = U diag(s^2) U^T`` (o x o; through the calibration rows when
    they are kept, so the d x d Gram matrix is never formed): the best rank-``r`` fit is
    ``U_r U_r^T Wm`` (the left singular vectors of ``Wm L`` are ``U``), with no root of
    ``M``. A 64x1024x3x3 conv with 4096 calibration patches (``d = 9216``) took 16 s
    through the Gram matrix and its Cholesky factor. Otherwise: the truncated SVD of ``Wm
    L``, mapped back by ``L^{-1}`` (:func:`lowrank_fit`). Without a response term: the
    plain truncated SVD of ``Wm``.

    Attributes
    ----------
    s : ndarray
        The ``min(o, d)`` singular values of ``Wm L`` (of ``Wm`` without a response
        term), largest first: their squared tail sums are the objective at every rank.
    aware : bool
        True when the response term is in the norm.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress._fit import Calibration, WhitenedSVD
    >>> rng = np.random.default_rng(0)
    >>> Wm, P = rng.standard_normal((3, 8)), rng.standard_normal((5, 8))
    >>> fit = WhitenedSVD(Wm, Calibration.from_rows(P), 0.5, 0.5)
    >>> A, B = fit.factors(2)
    >>> E = A @ B.T - Wm
    >>> bool(np.isclose(0.5 * np.sum(E**2) + 0.5 * np.sum((P @ E.T)**2), fit.s[2]**2))
    True
    """

    def __init__(self, Wm: np.ndarray, calib: Calibration | None, w_w: float, w_r: float
                 ) -> None:
        o, d = Wm.shape
        self.Wm = Wm
        self.aware = calib is not None and w_r != 0.0
        self._L: np.ndarray | None = None
        self._U: np.ndarray | None = None
        if self.aware and o < d:
            assert calib is not None
            if calib.responses_cheaper(o):  # cheaper than Wm G Wm^T
                R = calib.responses(Wm)
                N = w_w * (Wm @ Wm.T) + w_r * (R.T @ R)
            else:
                N = w_w * (Wm @ Wm.T) + w_r * ((Wm @ calib.gram) @ Wm.T)
            lam, U = np.linalg.eigh((N + N.T) / 2)
            self._U = U[:, ::-1]
            self.s = np.sqrt(np.clip(lam[::-1], 0.0, None))
            return
        self._L = whitener(d, calib, w_w, w_r) if self.aware else None
        self._svd = np.linalg.svd(Wm if self._L is None else Wm @ self._L,
                                  full_matrices=False)
        self.s = self._svd[1]

    def factors(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """``A`` (o x rank) and ``B`` (d x rank), singular values split evenly."""
        if self._U is None:
            A, B, _ = lowrank_fit(self.Wm, rank, self._L, self._svd)
            return A, B
        U = self._U[:, :rank]
        root = np.sqrt(self.s[:rank])
        # B^T = s^{-1/2} U^T Wm: the split lowrank_fit makes (s^{1/2} V^T L^{-1}, V^T =
        # s^{-1} U^T Wm L); a zero singular value leaves a zero component
        inv = np.divide(1.0, root, out=np.zeros_like(root), where=root > 0)
        return U * root, ((U.T @ self.Wm) * inv[:, None]).T


def _right_solve(Z: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``Z L^+`` for a lower-triangular (a Cholesky factor: exact zeros above the diagonal)
    or general square ``L``."""
    if not np.triu(L, 1).any() and np.all(np.abs(np.diag(L)) > 0):
        return sla.solve_triangular(L, Z.T, trans="T", lower=True).T
    return Z @ np.linalg.pinv(L)


def lowrank_fit(Wm: np.ndarray, rank: int, L: np.ndarray | None,
                svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best ``Wm_hat = A B^T`` of rank ``rank`` in the (whitened) norm ``||(.) L||``.

    Returns ``A`` (out x r), ``B`` (d x r) and the singular values of ``Wm L`` (all of
    them), whose squared tail sums are the objective values at every rank. ``svd`` may
    pass a precomputed ``(U, s, Vt)`` of ``Wm L``.
    """
    if svd is None:
        svd = np.linalg.svd(Wm if L is None else Wm @ L, full_matrices=False)
    U, s, Vt = svd
    root = np.sqrt(s[:rank])
    A = U[:, :rank] * root
    Bt = root[:, None] * Vt[:rank]
    if L is not None:
        Bt = _right_solve(Bt, L)
    return A, Bt.T, s


def tail_errors(s: np.ndarray, total2: float | None = None) -> np.ndarray:
    """Relative errors ``sqrt(sum_{k>r} s_k^2 / total2)`` for ranks r = 0..len(s)."""
    s2 = s * s
    tail = np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]])
    total2 = float(s2.sum()) if total2 is None else total2
    return np.sqrt(np.maximum(tail, 0.0) / (total2 or 1.0))
