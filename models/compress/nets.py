"""Small real networks on scikit-learn's digits, for tests and examples.

:func:`train_mlp_digits` trains scikit-learn's ``MLPClassifier``; :func:`train_cnn_digits`
trains a small convolutional network with autograd and Adam. Both return a
:class:`SmallNet`: named layers (:class:`Piece`) with ReLU in between, whose layers can be
replaced by compressed pieces to measure accuracy. Needs scikit-learn (the ``test`` extra).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import autograd.numpy as anp
import numpy as np
from autograd import grad

from sdf.models.compress.layers import Piece, PieceKind

__all__ = ["DigitsSplit", "SmallNet", "cached_net", "load_digits_split", "train_cnn_digits",
           "train_mlp_digits"]


@dataclass(frozen=True)
class DigitsSplit:
    """The digits data (pixels scaled to [0, 1]) split into train, calibration and test.

    ``calib`` is a subset of ``train``; ``test`` is never seen in training or calibration.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_calib: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(n_train: int = 1200, n_calib: int = 500, seed: int = 0) -> DigitsSplit:
    """Seeded split of scikit-learn's bundled 8x8 digits (1797 images)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    X, y = data.data / 16.0, data.target
    idx = np.random.default_rng(seed).permutation(len(y))
    tr, te = idx[:n_train], idx[n_train:]
    return DigitsSplit(X[tr], y[tr], X[tr[:n_calib]], X[te], y[te])


@dataclass(frozen=True)
class SmallNet:
    """A feed-forward network: layers in order, ReLU between them, none after the last.

    Inputs of shape (n, 64) are reshaped to (n, 1, 8, 8) when the first layer is a
    convolution; feature maps are flattened before the first linear layer.
    """

    layers: dict[str, Piece]

    def _run(self, x: np.ndarray, replace: Mapping[str, Sequence[Piece]] | None,
             record: dict[str, np.ndarray] | None) -> np.ndarray:
        replace = replace or {}
        names = list(self.layers)
        h = np.asarray(x, dtype=float)
        if self.layers[names[0]].kind == "conv2d" and h.ndim == 2:
            h = h.reshape(-1, 1, 8, 8)
        for k, name in enumerate(names):
            layer = self.layers[name]
            if layer.kind == "linear" and h.ndim == 4:
                h = h.reshape(h.shape[0], -1)
            if record is not None:
                record[name] = h
            for p in replace.get(name, (layer,)):
                h = p.forward(h)
            if k < len(names) - 1:
                h = np.maximum(h, 0.0)
        return h

    def forward(self, x: np.ndarray, replace: Mapping[str, Sequence[Piece]] | None = None
                ) -> np.ndarray:
        """Logits; ``replace`` maps layer names to the pieces to run instead."""
        return self._run(x, replace, None)

    def layer_inputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The input of every layer on ``x`` (the calibration data of each layer)."""
        record: dict[str, np.ndarray] = {}
        self._run(x, None, record)
        return record

    def accuracy(self, x: np.ndarray, y: np.ndarray,
                 replace: Mapping[str, Sequence[Piece]] | None = None) -> float:
        return float(np.mean(np.argmax(self.forward(x, replace), axis=1) == y))

    @property
    def n_params(self) -> int:
        return int(sum(p.n_params for p in self.layers.values()))


def train_mlp_digits(split: DigitsSplit, hidden: tuple[int, ...] = (128, 64), seed: int = 0
                     ) -> SmallNet:
    """Train scikit-learn's ``MLPClassifier`` (ReLU) and return its layers."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=400, random_state=seed, alpha=1e-4)
    with _one_thread():
        clf.fit(split.X_train, split.y_train)
    layers = {f"fc{k + 1}": Piece("linear", W.T, bias=b, name=f"fc{k + 1}")
              for k, (W, b) in enumerate(zip(clf.coefs_, clf.intercepts_))}
    return SmallNet(layers)


def _gather_index(c: int, h: int, w: int, k: int, stride: int, pad: int) -> np.ndarray:
    """Indices into a flattened (c*h*w + 1) image giving im2col patches (last = zero)."""
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    p = np.arange(ho)[:, None, None, None, None] * stride + np.arange(k)[None, None, None, :, None] - pad
    q = np.arange(wo)[None, :, None, None, None] * stride + np.arange(k)[None, None, None, None, :] - pad
    ch = np.arange(c)[None, None, :, None, None]
    ok = (p >= 0) & (p < h) & (q >= 0) & (q < w)
    flat = ch * h * w + np.clip(p, 0, h - 1) * w + np.clip(q, 0, w - 1)
    idx = np.where(ok, flat, c * h * w)
    return idx.reshape(ho * wo, c * k * k)


def _cnn_spec():
    # name, out, in, k, stride, pad, input (c, h, w)
    return [("conv1", 16, 1, 3, 1, 1, (1, 8, 8)), ("conv2", 32, 16, 3, 2, 1, (16, 8, 8))]


def _one_thread():
    """Small nets train fastest on one BLAS thread (and do not fight other processes)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def train_cnn_digits(split: DigitsSplit, epochs: int = 12, batch: int = 64, lr: float = 3e-3,
                     seed: int = 0) -> SmallNet:
    """Train conv(1->16, 3x3) - conv(16->32, 3x3, stride 2) - fc(512->64) - fc(64->10).

    Plain autograd with an Adam loop on the cross-entropy; seeded, a few seconds.
    """
    rng = np.random.default_rng(seed)
    spec = _cnn_spec()
    gathers = [_gather_index(c, h, w, k, s, p) for _, _, _, k, s, p, (c, h, w) in spec]
    shapes = [(16, 9), (16,), (32, 144), (32,), (64, 512), (64,), (10, 64), (10,)]
    params = [rng.standard_normal(s) * (np.sqrt(2.0 / s[1]) if len(s) == 2 else 0.0)
              for s in shapes]

    def logits(ps, x):
        h = x
        for (_, out, _, _, _, _, (c, hh, ww)), idx, W, b in zip(spec, gathers, ps[0:4:2],
                                                               ps[1:4:2]):
            flat = anp.concatenate([anp.reshape(h, (h.shape[0], -1)),
                                    anp.zeros((h.shape[0], 1))], axis=1)
            cols = flat[:, idx]                                # (n, positions, c*k*k)
            y = anp.einsum("npd,od->nop", cols, W) + b[None, :, None]
            h = anp.maximum(y, 0.0)                            # (n, out, positions)
        h = anp.reshape(h, (h.shape[0], -1))
        h = anp.maximum(anp.dot(h, ps[4].T) + ps[5], 0.0)
        return anp.dot(h, ps[6].T) + ps[7]

    def loss(ps, x, y):
        z = logits(ps, x)
        z = z - anp.max(z, axis=1, keepdims=True)
        logp = z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))
        return -anp.mean(logp[np.arange(len(y)), y])

    g = grad(loss)
    X, y = split.X_train, split.y_train
    with _one_thread():
        _adam(g, params, X, y, epochs, batch, lr, rng)
    layers = {}
    for (name, out, cin, k, s, p, _), W, b in zip(spec, params[0:4:2], params[1:4:2]):
        layers[name] = Piece("conv2d", W.reshape(out, cin, k, k), bias=b, stride=s, padding=p,
                             name=name)
    layers["fc1"] = Piece("linear", params[4], bias=params[5], name="fc1")
    layers["fc2"] = Piece("linear", params[6], bias=params[7], name="fc2")
    return SmallNet(layers)


def _adam(g: Callable[[list[np.ndarray], np.ndarray, np.ndarray], Sequence[np.ndarray]],
          params: list[np.ndarray], X: np.ndarray, y: np.ndarray, epochs: int, batch: int,
          lr: float, rng: np.random.Generator) -> None:
    """Adam on mini-batches, updating ``params`` in place (the list, not the arrays)."""
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            sel = order[start:start + batch]
            grads = g(params, X[sel], y[sel])
            t += 1
            for k, gk in enumerate(grads):
                m[k] = 0.9 * m[k] + 0.1 * gk
                v[k] = 0.999 * v[k] + 0.001 * gk * gk
                step = lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
                params[k] = params[k] - step


def cached_net(key: str, train: Callable[[], SmallNet], cache_dir: str | os.PathLike[str]
               ) -> SmallNet:
    """Load a trained net from ``cache_dir/key.npz``, or train it and save it there."""
    path = Path(cache_dir) / f"{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            names = [str(n) for n in f["names"]]
            layers = {}
            for n in names:
                geo = f[f"{n}.geo"]
                kind: PieceKind = "linear" if f[f"{n}.w"].ndim == 2 else "conv2d"
                layers[n] = Piece(kind, f[f"{n}.w"], bias=f[f"{n}.b"],
                                  stride=(int(geo[0]), int(geo[1])),
                                  padding=(int(geo[2]), int(geo[3])),
                                  dilation=(int(geo[4]), int(geo[5])),
                                  groups=int(geo[6]), name=n)
            return SmallNet(layers)
    net = train()
    arrays: dict[str, np.ndarray] = {"names": np.array(list(net.layers))}
    for n, p in net.layers.items():
        arrays[f"{n}.w"] = p.weight
        arrays[f"{n}.b"] = p.bias if p.bias is not None else np.zeros(p.out_features)
        arrays[f"{n}.geo"] = np.array([*p.stride, *p.padding, *p.dilation, p.groups])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, allow_pickle=False, **arrays)
    os.replace(tmp, path)
    return net
