"""Products of a calibration root with kron-structured factors (private).

The data-aware kron fits (:mod:`sdf.models.compress._kron`) multiply the metric ``M = w I
+ R^T R`` (``R`` (k, d) the calibration rows, ``d = a m``) by ``K = kron(F, I_m)``. With
few rows the product is cheaper kept as its image ``Y = R K`` (k, m, r) than formed as
``M K`` (a m, r m): the fits need ``M K`` only contracted with small matrices, which
``R^T`` maps back at the cost of one product (:meth:`RowsRoot.back`).

For a convolution the rows are im2col patches of feature maps, and ``R K`` is a
convolution of the maps with ``F``: one product of the maps (``n H W`` pixels by ``C``
channels) with ``F`` and shifted slices of the result, ``m`` times fewer multiply-adds
than through the patches (:class:`PatchRoot`). A 64x1024x3x3 layer with 4096 patches of
9216 values: 1.0e9 multiply-adds per product instead of 6.9e9 through the rows and
1.6e10 through the dense ``M``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import DTypeLike

__all__: list[str] = []

# channels whose kernel windows :meth:`PatchRoot.traces` copies at a time (bounds the copy)
_CHANNEL_CHUNK = 64


class KronRoot(Protocol):
    """Products of a root ``R`` (k, a m) of the calibration Gram with ``kron(F, I_m)``."""

    rows: int

    def image(self, F: np.ndarray) -> np.ndarray:
        """``Y[j, nu, s] = sum_b R[j, (b, nu)] F[b, s]``: ``R kron(F, I_m)`` (k, m, r)."""
        ...

    def back(self, Z: np.ndarray) -> np.ndarray:
        """``H[b, s] = sum_{j, nu} R[j, (b, nu)] Z[j, nu, s]`` (a, r) for ``Z`` (k, m, r):
        the part of ``R^T Z`` that reaches ``F``."""
        ...

    def astype(self, dtype: DTypeLike) -> KronRoot:
        """The same root with its arrays in ``dtype``."""
        ...

    def cost(self, r: int) -> float:
        """Multiply-adds of one :meth:`image` (or :meth:`back`) with ``r`` columns."""
        ...

    def traces(self) -> tuple[np.ndarray, np.ndarray]:
        """The partial traces of ``R^T R``: over ``m`` (a, a) and over ``a`` (m, m)
        (the first may be approximate: it preconditions and starts)."""
        ...


class RowSource(Protocol):
    """Calibration rows ``P`` (rows, dim) kept as they came (a linear layer's inputs) or
    as feature maps (a convolution's patches): their statistics and products without a
    centered copy of ``P`` or its Gram matrix."""

    @property
    def rows(self) -> int:
        """Number of rows ``n``."""
        ...

    @property
    def dim(self) -> int:
        """Values per row ``d``."""
        ...

    def column_sums(self, squares: bool = False) -> np.ndarray:
        """``1^T P`` (d,), or the column sums of ``P``'s squares."""
        ...

    def centered_squares(self, mean: np.ndarray) -> np.ndarray:
        """The column sums of ``(P - 1 mean^T)``'s squares (d,), subtracting first."""
        ...

    def products(self, M: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
        """``(P - 1 mean^T) M^T`` (n, k) for ``M`` (k, d)."""
        ...

    def gram(self, mean: np.ndarray | None = None) -> np.ndarray:
        """``(P - 1 mean^T)^T (P - 1 mean^T)`` (d, d)."""
        ...


@dataclass(frozen=True)
class DenseRows:
    """:class:`RowSource` of the rows ``P`` themselves, read a block of rows at a time
    (``block_bytes`` of them): the centered blocks are exact where the mean dwarfs the
    spread, and there is no centered copy of ``P``.

    Examples
    --------
    >>> import numpy as np
    >>> P, M = np.arange(12.0).reshape(4, 3), np.ones((1, 3))
    >>> mean = P.mean(axis=0)
    >>> bool(np.allclose(DenseRows(P, 24).products(M, mean), (P - mean) @ M.T))
    True
    """

    P: np.ndarray
    block_bytes: int = 1 << 25

    @property
    def rows(self) -> int:
        return self.P.shape[0]

    @property
    def dim(self) -> int:
        return self.P.shape[1]

    def _blocks(self, mean: np.ndarray | None) -> Iterator[tuple[slice, np.ndarray]]:
        step = max(1, self.block_bytes // (8 * self.dim))
        for n0 in range(0, self.rows, step):
            part = self.P[n0:n0 + step]
            yield slice(n0, n0 + len(part)), part if mean is None else part - mean

    def column_sums(self, squares: bool = False) -> np.ndarray:
        if not squares:
            return self.P.sum(axis=0)
        return sum((np.einsum("nd,nd->d", B, B) for _, B in self._blocks(None)),
                   np.zeros(self.dim))

    def centered_squares(self, mean: np.ndarray) -> np.ndarray:
        return sum((np.einsum("nd,nd->d", B, B) for _, B in self._blocks(mean)),
                   np.zeros(self.dim))

    def products(self, M: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
        if mean is None:
            return self.P @ M.T
        out = np.empty((self.rows, M.shape[0]))
        for where, B in self._blocks(mean):
            np.matmul(B, M.T, out=out[where])
        return out

    def gram(self, mean: np.ndarray | None = None) -> np.ndarray:
        if mean is None:
            return self.P.T @ self.P
        G = np.zeros((self.dim, self.dim))
        for _, B in self._blocks(mean):
            G += B.T @ B
        return G


class RowsRoot:
    """:class:`KronRoot` of the rows ``R`` (k, a m) themselves, times ``scale``.

    Examples
    --------
    >>> import numpy as np
    >>> R, F = np.arange(12.0).reshape(2, 6), np.ones((3, 1))
    >>> root = RowsRoot(R, 3, 2)
    >>> bool(np.allclose(root.image(F).reshape(2, 2), R @ np.kron(F, np.eye(2))))
    True
    """

    def __init__(self, R: np.ndarray, a: int, m: int, scale: float = 1.0) -> None:
        k = R.shape[0]
        self.rows, self.a, self.m = k, a, m
        # scale R, laid out ((j, nu), b): the image is one product with F
        Rt = R.reshape(k, a, m).transpose(0, 2, 1)
        self.Rt = np.multiply(Rt, scale, order="C").reshape(k * m, a)

    def image(self, F: np.ndarray) -> np.ndarray:
        return (self.Rt @ F).reshape(self.rows, self.m, F.shape[1])

    def back(self, Z: np.ndarray) -> np.ndarray:
        return self.Rt.T @ Z.reshape(-1, Z.shape[2])

    def astype(self, dtype: DTypeLike) -> RowsRoot:
        low = object.__new__(RowsRoot)
        low.rows, low.a, low.m, low.Rt = self.rows, self.a, self.m, self.Rt.astype(dtype)
        return low

    def cost(self, r: int) -> float:
        return float(self.rows * self.a * self.m * r)

    def traces(self) -> tuple[np.ndarray, np.ndarray]:
        R3 = self.Rt.reshape(self.rows, self.m, self.a)
        over_a = np.einsum("jnb,jlb->nl", R3, R3, optimize=True)
        return self.Rt.T @ self.Rt, over_a


@dataclass(frozen=True)
class PatchMaps:
    """The im2col patches of a convolution (groups 1) kept as its input maps: ``x``
    zero-padded and laid out (n, H + 2 ph, W + 2 pw, C) with the kernel geometry; the
    patches (rows ``(n, p, q)``, columns ``(c, i, j)``) are
    :func:`sdf.models.compress.layers.im2col`'s."""

    x: np.ndarray
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]

    @classmethod
    def from_maps(cls, x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int], dilation: tuple[int, int]) -> PatchMaps:
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
        padded = np.zeros((n, h + 2 * ph, w + 2 * pw, c))
        padded[:, ph:ph + h, pw:pw + w] = x.transpose(0, 2, 3, 1)
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        return cls(padded, (kh, kw), (sh, sw), (dh, dw), (ho, wo))

    @property
    def rows(self) -> int:
        """Number of patches."""
        return self.x.shape[0] * self.out_hw[0] * self.out_hw[1]

    def window(self, i: int, j: int) -> tuple[slice, slice]:
        """The padded pixels kernel offset ``(i, j)`` reads, output pixel by output pixel."""
        (sh, sw), (dh, dw), (ho, wo) = self.stride, self.dilation, self.out_hw
        return (slice(i * dh, i * dh + (ho - 1) * sh + 1, sh),
                slice(j * dw, j * dw + (wo - 1) * sw + 1, sw))

    @property
    def dim(self) -> int:
        """Values per patch ``C kh kw``."""
        return self.x.shape[3] * self.kernel_size[0] * self.kernel_size[1]

    def _offsets(self) -> list[tuple[int, int]]:
        kh, kw = self.kernel_size
        return [(i, j) for i in range(kh) for j in range(kw)]

    def column_sums(self, squares: bool = False) -> np.ndarray:
        """The patches' column sums ``1^T P`` (or of their squares: the diagonal of ``P^T
        P``), (C kh kw,) in ``(c, i, j)`` order: the maps summed over the images once, then
        each offset's window of that sum."""
        c = self.x.shape[3]
        pixels = (np.square(self.x) if squares else self.x).sum(axis=0)
        sums = np.empty((c, len(self._offsets())))
        for k, (i, j) in enumerate(self._offsets()):
            sums[:, k] = pixels[self.window(i, j)].sum(axis=(0, 1))
        return sums.reshape(-1)

    def _window_rows(self, i: int, j: int, mean: np.ndarray | None,
                     out: np.ndarray) -> np.ndarray:
        """The values of offset ``(i, j)`` in every patch, (rows, C) in ``out``, less the
        mean's ``(c, i, j)`` entries."""
        c = self.x.shape[3]
        rs, cs = self.window(i, j)
        np.copyto(out.reshape(self.x.shape[0], *self.out_hw, c), self.x[:, rs, cs])
        if mean is not None:
            out -= mean.reshape(c, *self.kernel_size)[:, i, j]
        return out

    def take(self, index: np.ndarray) -> np.ndarray:
        """The patches numbered ``index`` (rows of im2col, numbered ``(n, p, q)``), (len,
        C kh kw): a sample of the patches without the others."""
        ho, wo = self.out_hw
        (sh, sw), (dh, dw) = self.stride, self.dilation
        image, pixel = np.divmod(np.asarray(index), ho * wo)
        p, q = np.divmod(pixel, wo)
        out = np.empty((len(image), self.x.shape[3], len(self._offsets())))
        for k, (i, j) in enumerate(self._offsets()):
            out[:, :, k] = self.x[image, p * sh + i * dh, q * sw + j * dw]
        return out.reshape(len(image), -1)

    def centered_squares(self, mean: np.ndarray) -> np.ndarray:
        """The diagonal of ``(P - 1 mean^T)^T (P - 1 mean^T)`` summed after subtracting,
        offset by offset (exact where the mean dwarfs the spread, unlike ``diag(P^T P) -
        rows mean^2``)."""
        c = self.x.shape[3]
        buf = np.empty((self.rows, c))
        squares = np.empty((c, len(self._offsets())))
        for k, (i, j) in enumerate(self._offsets()):
            V = self._window_rows(i, j, mean, buf)
            squares[:, k] = np.einsum("nc,nc->c", V, V)
        return squares.reshape(-1)

    def products(self, M: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
        """``(P - 1 mean^T) M^T`` (rows, k) for ``M`` (k, C kh kw): the convolution of the
        maps with ``M`` as k output channels, one product per kernel offset (``rows C k``
        multiply-adds each, the im2col product's, with no copy of ``P``)."""
        c, k = self.x.shape[3], M.shape[0]
        M4 = M.reshape(k, c, *self.kernel_size)
        buf, part = np.empty((self.rows, c)), np.empty((self.rows, k))
        out = np.zeros((self.rows, k))
        for i, j in self._offsets():
            np.matmul(self._window_rows(i, j, mean, buf), M4[:, :, i, j].T, out=part)
            out += part
        return out

    def gram(self, mean: np.ndarray | None = None, chunk_bytes: int = 1 << 25) -> np.ndarray:
        """``(P - 1 mean^T)^T (P - 1 mean^T)`` (C kh kw, C kh kw), summed over a few images'
        patches at a time (``chunk_bytes`` of patches)."""
        n, c = self.x.shape[0], self.x.shape[3]
        ho, wo = self.out_hw
        d = self.dim
        step = max(1, chunk_bytes // (8 * ho * wo * d))
        G = np.zeros((d, d))
        for n0 in range(0, n, step):
            part = self.x[n0:n0 + step]
            P = np.empty((len(part), ho, wo, c, len(self._offsets())))
            for k, (i, j) in enumerate(self._offsets()):
                rs, cs = self.window(i, j)
                P[..., k] = part[:, rs, cs]
            P2 = P.reshape(-1, d)
            if mean is not None:
                P2 -= mean
            G += P2.T @ P2
        return G


class PatchRoot:
    """:class:`KronRoot` of ``scale (P - 1 mean^T)`` for the patches ``P`` of
    :class:`PatchMaps`, split ``a = (c, a-side kernel offsets)``, ``m`` = the rest: the
    weight SVD's ``(c, (i j))`` or the spatial SVD's ``((c, i), j)``.

    :meth:`image` is one product of the maps with ``F`` (``n H W`` by ``C`` by ``A r``,
    ``A`` the a-side offsets) and ``m A`` shifted slices; :meth:`back` the transpose.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import im2col
    >>> rng = np.random.default_rng(0)
    >>> x, F = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((3, 2))
    >>> maps = PatchMaps.from_maps(x, (3, 3), (1, 1), (1, 1), (1, 1))
    >>> P = im2col(x, 3, padding=1)
    >>> Y = PatchRoot(maps, 3, 9, None, 1.0).image(F)
    >>> bool(np.allclose(Y.transpose(0, 2, 1).reshape(-1, 18), P @ np.kron(F, np.eye(9))))
    True
    """

    def __init__(self, maps: PatchMaps, a: int, m: int, mean: np.ndarray | None,
                 scale: float) -> None:
        kh, kw = maps.kernel_size
        c = maps.x.shape[3]
        if m == kh * kw and a == c:
            self.offsets = [[(0, (i, j))] for i in range(kh) for j in range(kw)]
            a_side = 1
        elif m == kw and a == c * kh:
            self.offsets = [[(i, (i, j)) for i in range(kh)] for j in range(kw)]
            a_side = kh
        else:
            raise ValueError(f"no kernel split of {kh}x{kw} gives a={a}, m={m}")
        # a Python float: a NumPy float64 would promote float32 products to float64
        self.maps, self.a, self.m, self.a_side, self.scale = maps, a, m, a_side, float(scale)
        self.rows = maps.rows
        self.mean = None if mean is None else mean.reshape(a, m)

    def image(self, F: np.ndarray) -> np.ndarray:
        x, (ho, wo) = self.maps.x, self.maps.out_hw
        n, hp, wp, c = x.shape
        r = F.shape[1]
        # XF[..., alpha, s] = sum_c x[..., c] F[(c, alpha), s]
        XF = (x.reshape(-1, c) @ F.reshape(c, self.a_side * r)).reshape(
            n, hp, wp, self.a_side, r)
        Y = np.empty((n, ho, wo, self.m, r), dtype=XF.dtype)
        for nu, reads in enumerate(self.offsets):
            for k, (alpha, (i, j)) in enumerate(reads):
                rs, cs = self.maps.window(i, j)
                if k == 0:
                    Y[:, :, :, nu] = XF[:, rs, cs, alpha]
                else:
                    Y[:, :, :, nu] += XF[:, rs, cs, alpha]
        Y = Y.reshape(-1, self.m, r)
        if self.mean is not None:
            Y -= (self.mean.T @ F).astype(Y.dtype)
        if self.scale != 1.0:
            Y *= self.scale
        return Y

    def back(self, Z: np.ndarray) -> np.ndarray:
        x, (ho, wo) = self.maps.x, self.maps.out_hw
        n, hp, wp, c = x.shape
        r = Z.shape[2]
        Z5 = Z.reshape(n, ho, wo, self.m, r)
        spread = np.zeros((n, hp, wp, self.a_side, r), dtype=Z.dtype)
        for nu, reads in enumerate(self.offsets):
            for alpha, (i, j) in reads:
                rs, cs = self.maps.window(i, j)
                spread[:, rs, cs, alpha] += Z5[:, :, :, nu]
        H = (x.reshape(-1, c).T @ spread.reshape(-1, self.a_side * r)).reshape(self.a, r)
        if self.mean is not None:
            H -= (self.mean @ Z.sum(axis=0)).astype(H.dtype)
        return H * self.scale if self.scale != 1.0 else H

    def astype(self, dtype: DTypeLike) -> PatchRoot:
        low = object.__new__(PatchRoot)
        low.__dict__.update(self.__dict__)
        low.maps = PatchMaps(self.maps.x.astype(dtype), self.maps.kernel_size,
                             self.maps.stride, self.maps.dilation, self.maps.out_hw)
        return low

    def cost(self, r: int) -> float:
        n, hp, wp, c = self.maps.x.shape
        return float(n * hp * wp * c * self.a_side * r)

    def traces(self) -> tuple[np.ndarray, np.ndarray]:
        """Over ``a``: exact, from the windows' inner products. Over ``m``: the maps' Gram
        over every pixel (for the spatial split, of the vertical patches of the a-side
        offsets at every column), scaled to the exact trace: each window's Gram is about
        that (less its edges), and a preconditioner and a start need no more."""
        x = self.maps.x
        c = x.shape[3]
        kh, kw = self.maps.kernel_size
        dh = self.maps.dilation[0]
        reads = [self.maps.window(i, j) for i in range(kh) for j in range(kw)]
        dots = np.zeros((kh * kw, kh * kw))
        for c0 in range(0, c, _CHANNEL_CHUNK):  # the windows of a few channels at a time
            part = np.stack([x[:, rs, cs, c0:c0 + _CHANNEL_CHUNK].reshape(-1)
                             for rs, cs in reads])
            dots += part @ part.T
        # m = kh kw (a-side offsets none) or kw (sum over the vertical offsets)
        over_a = dots if self.a_side == 1 else np.einsum(
            "inim->nm", dots.reshape(kh, kw, kh, kw))
        if self.a_side == 1:
            V2 = x.reshape(-1, c)
        else:
            hv = x.shape[1] - dh * (kh - 1)
            V2 = np.stack([x[:, i * dh:i * dh + hv] for i in range(kh)], axis=-1
                          ).reshape(-1, c * kh)  # columns (c, i)
        over_m = V2.T @ V2
        over_m *= np.trace(over_a) / (np.trace(over_m) or 1.0)
        if self.mean is not None:  # the centered rows' Gram is G - rows mean mean^T
            over_m = over_m - self.rows * (self.mean @ self.mean.T)
            over_a = over_a - self.rows * (self.mean.T @ self.mean)
        return over_m * self.scale**2, over_a * self.scale**2
