"""A :class:`SequentialNet`'s forward pass as an autograd-traceable function (private).

The joint refit differentiates the network's outputs with respect to the weights and
biases of chosen pieces. Convolutions and pools gather their receptive fields with index
arrays computed once for the fixed input (autograd differentiates fancy indexing, not
numpy's stride tricks), so the traced function is a few gathers, ``einsum`` calls and
elementwise maxima.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import autograd.numpy as anp
import numpy as np
import scipy.sparse as sp
from autograd.extend import defjvp, defvjp, primitive

from sdf.models.compress.layers import Piece
from sdf.models.compress.sequential import Op, Replacement, SequentialNet

__all__: list[str] = []

#: Where a free parameter lives: (layer name, piece index, "weight" or "bias").
Slot = tuple[str, int, str]


class _Gather:
    """``x[:, idx]`` for a fixed integer array ``idx`` into the columns of ``x`` (n, size).

    autograd's own adjoint of fancy indexing is ``np.add.at``, slow for the many repeated
    indices of overlapping windows; here the adjoint is one sparse product.
    """

    def __init__(self, idx: np.ndarray, size: int) -> None:
        self.idx = idx
        flat = idx.reshape(-1)
        self.adjoint = sp.csr_matrix((np.ones(flat.size), (flat, np.arange(flat.size))),
                                     shape=(size, flat.size))


@primitive
def _gather(x: Any, g: _Gather) -> Any:
    return x[:, g.idx]


def _gather_vjp(ans: Any, x: Any, g: _Gather) -> Callable[[Any], Any]:
    return lambda v: np.asarray(g.adjoint @ v.reshape(v.shape[0], -1).T).T


defvjp(_gather, _gather_vjp)
defjvp(_gather, lambda v, ans, x, g: _gather(v, g))


def _window_index(c: int, h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
                  pad: tuple[int, int], dil: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """Indices into a flattened (c*h*w + 1) sample giving its windows (last entry = 0).

    Returns the index array of shape (c, ho*wo, kh*kw) and ``(ho, wo)``.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pad, dil
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    p = (np.arange(ho)[:, None, None, None] * sh + np.arange(kh)[None, None, :, None] * dh - ph)
    q = (np.arange(wo)[None, :, None, None] * sw + np.arange(kw)[None, None, None, :] * dw - pw)
    ok = (p >= 0) & (p < h) & (q >= 0) & (q < w)                  # (ho, wo, kh, kw)
    pix = np.clip(p, 0, h - 1) * w + np.clip(q, 0, w - 1)
    flat = np.arange(c)[:, None, None, None, None] * h * w + pix[None]
    idx = np.where(ok[None], flat, c * h * w)
    return idx.reshape(c, ho * wo, kh * kw), ho, wo


def _conv_fun(piece: Piece, shape: tuple[int, ...]) -> Callable[[Any, Any, Any], Any]:
    c, h, w = shape
    idx, ho, wo = _window_index(c, h, w, piece.kernel_size, piece.stride, piece.padding,
                                piece.dilation)
    gather = _Gather(idx.transpose(1, 0, 2).reshape(ho * wo, -1), c * h * w + 1)
    g, o = piece.groups, piece.out_features

    def conv(x: Any, W: Any, b: Any) -> Any:
        n = x.shape[0]
        flat = anp.concatenate([anp.reshape(x, (n, -1)), anp.zeros((n, 1))], axis=1)
        cols = _gather(flat, gather)                # (n, P, c*kh*kw), columns ordered (c, i, j)
        # matrix products (BLAS), not einsum: the same sums, several times faster
        if g == 1:
            y = anp.dot(anp.reshape(cols, (n * ho * wo, -1)), anp.transpose(anp.reshape(W, (o, -1))))
        else:
            cols = anp.transpose(anp.reshape(cols, (n * ho * wo, g, -1)), (1, 0, 2))
            y = anp.matmul(cols, anp.transpose(anp.reshape(W, (g, o // g, -1)), (0, 2, 1)))
            y = anp.reshape(anp.transpose(y, (1, 0, 2)), (n * ho * wo, o))
        y = anp.transpose(anp.reshape(y, (n, ho * wo, o)), (0, 2, 1))
        y = anp.reshape(y, (n, o, ho, wo))
        return y if b is None else y + anp.reshape(b, (1, o, 1, 1))

    return conv


def _linear(x: Any, W: Any, b: Any) -> Any:
    y = anp.dot(x, anp.transpose(W))
    return y if b is None else y + b


def _op_fun(op: Op, shape: tuple[int, ...]) -> Callable[[Any], Any]:
    if op.kind == "relu":
        return lambda x: anp.maximum(x, 0.0)
    if op.kind in ("flatten", "reshape"):
        out = op.output_shape(shape)
        return lambda x: anp.reshape(x, (x.shape[0], *out))
    c, h, w = shape
    idx, ho, wo = _window_index(c, h, w, op.kernel_size, op.stride, (0, 0), (1, 1))
    gather = _Gather(idx, c * h * w)
    reduce = anp.max if op.kind == "maxpool" else anp.mean

    def pool(x: Any) -> Any:
        n = x.shape[0]
        win = _gather(anp.reshape(x, (n, -1)), gather)          # (n, c, P, k)
        return anp.reshape(reduce(win, axis=3), (n, c, ho, wo))

    return pool


Run = Callable[[Any, Sequence[Any]], Any]


def _op_run(op: Callable[[Any], Any]) -> Run:
    def run(h: Any, params: Sequence[Any]) -> Any:
        return op(h)

    return run


def _piece_run(fun: Callable[[Any, Any, Any], Any], piece: Piece, w_at: int, b_at: int) -> Run:
    """The piece with its weight (bias) read from ``params[w_at]`` (``[b_at]``) when >= 0."""
    def run(h: Any, params: Sequence[Any]) -> Any:
        return fun(h, piece.weight if w_at < 0 else params[w_at],
                   piece.bias if b_at < 0 else params[b_at])

    return run


def traced_forward(net: SequentialNet, replace: Replacement, free: Sequence[str], x: np.ndarray
                   ) -> tuple[Callable[..., Any], list[np.ndarray], list[Slot]]:
    """The outputs on ``x`` as a function of the free layers' piece weights and biases.

    Parameters
    ----------
    net : SequentialNet
    replace : mapping of layer name to pieces
        The pieces each layer runs (layers not in it run as they are).
    free : sequence of str
        Layers whose pieces' weights and biases are the function's arguments.
    x : ndarray
        Network inputs (fixed).

    Returns
    -------
    fun : callable
        ``fun(*params)`` -> outputs of shape ``(n, prod(output_shape))``.
    params : list of ndarray
        The current values of the arguments (copies).
    slots : list of Slot
        Where each argument lives.
    """
    x = net.as_batch(x)
    shapes = net._shapes
    runs: list[Run] = []
    params: list[np.ndarray] = []
    slots: list[Slot] = []
    for k, step in enumerate(net.steps):
        if isinstance(step, Op):
            runs.append(_op_run(_op_fun(step, shapes[k])))
            continue
        shape = shapes[k]
        for j, piece in enumerate(replace.get(step.name, (step,))):
            fun = _linear if piece.kind == "linear" else _conv_fun(piece, shape)
            w_at = b_at = -1
            if step.name in free:
                w_at = len(params)
                params.append(np.array(piece.weight))
                slots.append((step.name, j, "weight"))
                if piece.bias is not None:
                    b_at = len(params)
                    params.append(np.array(piece.bias))
                    slots.append((step.name, j, "bias"))
            runs.append(_piece_run(fun, piece, w_at, b_at))
            if piece.kind == "conv2d":
                shape = (piece.out_features, *piece.output_hw((shape[1], shape[2])))
            else:
                shape = (piece.out_features,)

    def forward(*ps: Any) -> Any:
        h: Any = x
        for run in runs:
            h = run(h, ps)
        return anp.reshape(h, (x.shape[0], -1))

    return forward, params, slots
