"""Layers as data: the :class:`Piece` a compressed layer is made of, and its numpy forward.

A piece is one ordinary layer: ``"linear"`` (weight of shape ``(out, in)``) or
``"conv2d"`` (weight of shape ``(out, in // groups, kh, kw)``) with its bias, stride,
padding, dilation and groups. A compressed layer is a list of pieces run one after the
other; :func:`run_pieces` is the reference forward pass, :func:`im2col` gives the
calibration patches that make a convolution a matrix product:
``conv2d(x, W) == im2col(x, ...) @ W.reshape(out, -1).T`` (before reshaping back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sdf.errors import DataError, ModelError

__all__ = [
    "Piece",
    "PieceKind",
    "conv2d",
    "count_macs",
    "count_params",
    "im2col",
    "run_pieces",
]

PieceKind = Literal["linear", "conv2d"]


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    pair = [int(v) for v in value]
    if len(pair) != 2:
        raise ModelError(f"Piece: {what} must be an int or a pair of ints, got {value!r}")
    return pair[0], pair[1]


@dataclass(frozen=True, repr=False)
class Piece:
    """One layer of a compressed network, ready to run.

    Parameters
    ----------
    kind : {"linear", "conv2d"}
        Layer type.
    weight : ndarray of shape (out, in) or (out, in // groups, kh, kw)
        The layer weight (PyTorch layout).
    bias : ndarray of shape (out,), optional
        Added to the output.
    stride, padding, dilation : int or pair of int
        Convolution geometry (ignored for ``"linear"``); padding is zero padding.
    groups : int, default 1
        Number of channel groups (``groups == in == out`` is a depthwise convolution).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece
    >>> p = Piece("linear", np.eye(3), bias=np.ones(3))
    >>> p.forward(np.zeros((2, 3)))
    array([[1., 1., 1.],
           [1., 1., 1.]])
    >>> p.n_params
    12
    """

    kind: PieceKind
    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        w = np.array(self.weight, dtype=float, copy=True)
        w.setflags(write=False)
        object.__setattr__(self, "weight", w)
        if self.bias is not None:
            b = np.array(self.bias, dtype=float, copy=True).reshape(-1)
            b.setflags(write=False)
            object.__setattr__(self, "bias", b)
        for what in ("stride", "padding", "dilation"):
            object.__setattr__(self, what, _pair(getattr(self, what), what))
        expected = {"linear": 2, "conv2d": 4}.get(self.kind)
        if expected is None:
            raise ModelError(f"Piece: kind must be 'linear' or 'conv2d', got {self.kind!r}")
        if w.ndim != expected:
            raise ModelError(
                f"Piece {self.name or self.kind!r}: a {self.kind} weight needs {expected} dims, "
                f"got shape {w.shape}"
            )
        if self.bias is not None and self.bias.shape[0] != w.shape[0]:
            raise ModelError(
                f"Piece {self.name or self.kind!r}: bias has {self.bias.shape[0]} entries "
                f"but the weight has {w.shape[0]} outputs"
            )
        if self.groups < 1 or w.shape[0] % self.groups:
            raise ModelError(
                f"Piece {self.name or self.kind!r}: groups={self.groups} must divide "
                f"the {w.shape[0]} output channels"
            )

    def __repr__(self) -> str:
        """One line: kind, weight and bias shapes, non-default geometry, name; no arrays."""
        parts = [repr(self.kind), f"weight {tuple(self.weight.shape)}"]
        if self.bias is not None:
            parts.append(f"bias ({self.bias.shape[0]},)")
        if self.kind == "conv2d":
            for what, default in (("stride", (1, 1)), ("padding", (0, 0)),
                                  ("dilation", (1, 1))):
                if getattr(self, what) != default:
                    parts.append(f"{what}={getattr(self, what)}")
            if self.groups != 1:
                parts.append(f"groups={self.groups}")
        if self.name:
            parts.append(f"name={self.name!r}")
        return f"Piece({', '.join(parts)})"

    @property
    def in_features(self) -> int:
        """Input channels (conv) or features (linear)."""
        return int(self.weight.shape[1] * self.groups)

    @property
    def out_features(self) -> int:
        """Output channels (conv) or features (linear)."""
        return int(self.weight.shape[0])

    @property
    def kernel_size(self) -> tuple[int, int]:
        """``(kh, kw)``; ``(1, 1)`` for a linear piece."""
        if self.kind == "linear":
            return (1, 1)
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def n_params(self) -> int:
        """Number of parameters: weight entries plus bias entries."""
        return int(self.weight.size + (0 if self.bias is None else self.bias.size))

    def output_hw(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """Spatial output size for an input of spatial size ``input_hw`` (conv only)."""
        if self.kind == "linear":
            return (1, 1)
        out = []
        for n, k, s, p, d in zip(input_hw, self.kernel_size, self.stride, self.padding,
                                 self.dilation):
            out.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
        return out[0], out[1]

    def macs(self, input_hw: tuple[int, int] | None = None) -> int:
        """Multiply-accumulates per sample (conv needs the input's spatial size)."""
        if self.kind == "linear":
            return int(self.weight.size)
        if input_hw is None:
            raise ModelError(f"Piece {self.name or 'conv2d'!r}: MACs need the input size (H, W)")
        ho, wo = self.output_hw(input_hw)
        return int(self.weight.size * ho * wo)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the layer to ``x`` of shape (N, in) or (N, in, H, W).

        A float32 ``x`` is run in float32 (the weights rounded to it), as an exported
        float32 network runs; anything else in float64.
        """
        if self.kind == "linear":
            x = _float_array(x)
            if x.shape[-1] != self.in_features:
                raise DataError(
                    f"Piece {self.name or 'linear'!r}: input has {x.shape[-1]} features, "
                    f"the weight expects {self.in_features}"
                )
            y = x @ self.weight.T.astype(x.dtype, copy=False)
        else:
            y = conv2d(x, self.weight, stride=self.stride, padding=self.padding,
                       dilation=self.dilation, groups=self.groups)
        if self.bias is not None:
            b = self.bias.astype(y.dtype, copy=False)
            y = y + (b if self.kind == "linear" else b[:, None, None])
        return y


def _windows(x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int], dilation: tuple[int, int]) -> np.ndarray:
    """View of shape (N, C, Ho, Wo, kh, kw) with the receptive fields of every output."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    if x.shape[2] < span[0] or x.shape[3] < span[1]:
        raise DataError(
            f"conv2d: padded input of spatial size {x.shape[2:]} is smaller than the kernel "
            f"span {span}"
        )
    view = sliding_window_view(x, span, axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def _float_array(x: object) -> np.ndarray:
    """``x`` in float32 when it is float32 (a network's usual precision), else float64."""
    x = np.asarray(x)
    return x if x.dtype == np.float32 else np.asarray(x, dtype=float)


def _as_images(x: np.ndarray, channels: int, where: str) -> np.ndarray:
    x = _float_array(x)
    if x.ndim != 4 or x.shape[1] != channels:
        raise DataError(
            f"{where}: input must have shape (N, {channels}, H, W), got {x.shape}"
        )
    return x


def im2col(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
) -> np.ndarray:
    """Receptive fields of a convolution as the rows of a matrix.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        Input feature maps.
    kernel_size, stride, padding, dilation : int or pair of int
        Convolution geometry.

    Returns
    -------
    ndarray of shape (N * Ho * Wo, C * kh * kw)
        Row ``(n, p, q)`` holds the patch read by output pixel ``(p, q)`` of sample ``n``,
        columns ordered ``(c, i, j)`` like ``W.reshape(out, -1)``, so that the convolution
        (groups=1) is ``im2col(x, ...) @ W.reshape(out, -1).T``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import im2col
    >>> im2col(np.arange(9.0).reshape(1, 1, 3, 3), 2).shape
    (4, 4)
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 4:
        raise DataError(f"im2col: x must have shape (N, C, H, W), got {x.shape}")
    win = _windows(x, _pair(kernel_size, "kernel_size"), _pair(stride, "stride"),
                   _pair(padding, "padding"), _pair(dilation, "dilation"))
    n, c, ho, wo, kh, kw = win.shape
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * ho * wo, c * kh * kw)


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """2-D cross-correlation with PyTorch's conventions (no bias).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    weight : ndarray of shape (out, C // groups, kh, kw)
    stride, padding, dilation : int or pair of int
    groups : int, default 1

    Returns
    -------
    ndarray of shape (N, out, Ho, Wo)

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import conv2d
    >>> conv2d(np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3)), padding=1).shape
    (1, 3, 4, 4)
    """
    w = np.asarray(weight, dtype=float)
    out, cg, kh, kw = w.shape
    x = _as_images(x, cg * groups, "conv2d")
    w = w.astype(x.dtype, copy=False)  # float32 inputs run in float32
    win = _windows(x, (kh, kw), _pair(stride, "stride"), _pair(padding, "padding"),
                   _pair(dilation, "dilation"))
    n, c, ho, wo = win.shape[:4]
    if groups == 1:
        y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, out)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    win = win.reshape(n, groups, cg, ho, wo, kh, kw)
    wg = w.reshape(groups, out // groups, cg, kh, kw)
    y = np.einsum("ngcpqij,gocij->ngopq", win, wg, optimize=True)
    return y.reshape(n, out, ho, wo)


def run_pieces(pieces: Sequence[Piece], x: np.ndarray) -> np.ndarray:
    """Run the pieces one after the other on ``x`` (no activation in between), in float32
    for a float32 ``x``, else in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece, run_pieces
    >>> run_pieces([Piece("linear", np.ones((2, 3))), Piece("linear", np.eye(2))],
    ...            np.ones((1, 3)))
    array([[3., 3.]])
    """
    y = _float_array(x)
    for piece in pieces:
        y = piece.forward(y)
    return y


def count_params(pieces: Sequence[Piece]) -> int:
    """Total number of parameters (weights and biases) of the pieces."""
    return int(sum(p.n_params for p in pieces))


def count_macs(pieces: Sequence[Piece], input_hw: tuple[int, int] | None = None) -> int:
    """Multiply-accumulates per sample of the pieces run in sequence.

    Parameters
    ----------
    pieces : sequence of Piece
    input_hw : pair of int, optional
        Spatial size of the input of the first piece (needed for convolutions).
    """
    total, hw = 0, input_hw
    for p in pieces:
        total += p.macs(hw)
        if p.kind == "conv2d" and hw is not None:
            hw = p.output_hw(hw)
    return int(total)
