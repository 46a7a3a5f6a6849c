"""scikit-learn multilayer perceptrons: their ``(in, out)`` weights as compressible layers.

scikit-learn's ``MLPClassifier`` / ``MLPRegressor`` store layer ``k`` as ``coefs_[k]`` of
shape ``(in, out)`` (``h_{k+1} = act(h_k @ coefs_[k] + intercepts_[k])``); the compression
functions take PyTorch's ``(out, in)``. These adapters transpose, compute each layer's
inputs from the network's own activations, and run compressed networks the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sdf.errors import DataError, ModelError
from sdf.models.compress.layers import Piece, run_pieces
from sdf.models.compress.network import LayerSpec, NetworkCompression, compress_network
from sdf.models.compress.result import CompressOptions
from sdf._blas import with_one_blas_pool

__all__ = ["compress_sklearn_mlp", "sklearn_mlp_forward", "sklearn_mlp_layers"]

def _identity(h: np.ndarray) -> np.ndarray:
    return h


def _relu(h: np.ndarray) -> np.ndarray:
    return np.maximum(h, 0.0)


def _tanh(h: np.ndarray) -> np.ndarray:
    return np.tanh(h)


def _logistic(h: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-h))


#: scikit-learn's hidden-layer activations by their ``activation`` name.
_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": _identity, "relu": _relu, "tanh": _tanh, "logistic": _logistic}


def _fitted(mlp: Any) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    coefs, intercepts = getattr(mlp, "coefs_", None), getattr(mlp, "intercepts_", None)
    if coefs is None or intercepts is None:
        raise ModelError(f"mlp: expected a fitted scikit-learn MLP (with coefs_ and "
                         f"intercepts_), got {type(mlp).__name__}")
    activation = getattr(mlp, "activation", "relu")
    if activation not in _ACTIVATIONS:
        raise ModelError(f"mlp: activation {activation!r} is not one of "
                         f"{sorted(_ACTIVATIONS)}")
    return [np.asarray(W) for W in coefs], [np.asarray(b) for b in intercepts], activation


def _name(k: int) -> str:
    return f"layer{k}"


def sklearn_mlp_layers(mlp: Any, X: np.ndarray | None = None,
                       X_test: np.ndarray | None = None) -> dict[str, LayerSpec]:
    """The layers of a fitted scikit-learn MLP as :class:`LayerSpec` s, ``(out, in)``.

    Layer ``k`` (named ``"layer{k}"``) gets ``coefs_[k].T`` as its weight and
    ``intercepts_[k]`` as its bias; with ``X`` (and ``X_test``) the inputs of every layer
    are computed by running the network (its hidden activation between layers), for
    data-aware compression (and the held-out output errors).

    Parameters
    ----------
    mlp : sklearn.neural_network.MLPClassifier or MLPRegressor, fitted
    X, X_test : ndarray of shape (n_samples, n_features), optional
        Calibration and held-out inputs of the network.

    Returns
    -------
    dict of str to LayerSpec

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neural_network import MLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 6))
    >>> mlp = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2000, random_state=0).fit(X, X[:, 0])
    >>> {k: s.layer.weight.shape for k, s in sklearn_mlp_layers(mlp, X).items()}
    {'layer0': (8, 6), 'layer1': (1, 8)}
    """
    coefs, intercepts, activation = _fitted(mlp)
    inputs = _layer_inputs(coefs, intercepts, activation, X)
    tests = _layer_inputs(coefs, intercepts, activation, X_test)
    return {_name(k): LayerSpec(Piece("linear", W.T, bias=b, name=_name(k)),
                                X=None if inputs is None else inputs[k],
                                X_test=None if tests is None else tests[k])
            for k, (W, b) in enumerate(zip(coefs, intercepts))}


def _layer_inputs(coefs: Sequence[np.ndarray], intercepts: Sequence[np.ndarray],
                  activation: str, X: np.ndarray | None) -> list[np.ndarray] | None:
    if X is None:
        return None
    h = np.asarray(X, dtype=float)
    if h.ndim != 2 or h.shape[1] != coefs[0].shape[0]:
        raise DataError(f"X: expected shape (n_samples, {coefs[0].shape[0]}), got {h.shape}")
    out = []
    for k, (W, b) in enumerate(zip(coefs, intercepts)):
        out.append(h)
        if k < len(coefs) - 1:
            h = _ACTIVATIONS[activation](h @ W + b)
    return out


def sklearn_mlp_forward(mlp: Any, X: np.ndarray,
                        replace: Mapping[str, Sequence[Piece]] | None = None) -> np.ndarray:
    """The network's output before its final activation (``mlp``'s decision values),
    with the layers named in ``replace`` run as the given pieces.

    Parameters
    ----------
    mlp : fitted scikit-learn MLP
    X : ndarray of shape (n_samples, n_features)
    replace : mapping of str to sequence of Piece, optional
        E.g. ``{name: c.pieces for name, c in compressed.layers.items()}``.

    Returns
    -------
    ndarray of shape (n_samples, n_outputs)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neural_network import MLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 6))
    >>> mlp = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2000, random_state=0).fit(X, X[:, 0])
    >>> bool(np.allclose(sklearn_mlp_forward(mlp, X)[:, 0], mlp.predict(X)))
    True
    """
    coefs, intercepts, activation = _fitted(mlp)
    replace = replace or {}
    unknown = set(replace) - {_name(k) for k in range(len(coefs))}
    if unknown:
        raise ModelError(f"replace: unknown layer(s) {sorted(unknown)}; the layers are "
                         f"{[_name(k) for k in range(len(coefs))]}")
    h = np.asarray(X, dtype=float)
    for k, (W, b) in enumerate(zip(coefs, intercepts)):
        pieces = replace.get(_name(k))
        h = h @ W + b if pieces is None else run_pieces(pieces, h)
        if k < len(coefs) - 1:
            h = _ACTIVATIONS[activation](h)
    return h


@with_one_blas_pool
def compress_sklearn_mlp(mlp: Any, ratio: float, *, X: np.ndarray | None = None,
                         X_test: np.ndarray | None = None, balance: float = 0.9,
                         options: CompressOptions | None = None,
                         progress: bool = False) -> NetworkCompression:
    """Compress a fitted scikit-learn MLP to ``ratio`` of its parameters.

    :func:`sklearn_mlp_layers` (``coefs_[k]`` of shape ``(in, out)`` transposed to
    ``(out, in)``, each layer's inputs computed from ``X``) then
    :func:`~sdf.models.compress.compress_network`. Run the result with
    :func:`sklearn_mlp_forward`.

    Parameters
    ----------
    mlp : sklearn.neural_network.MLPClassifier or MLPRegressor, fitted
    ratio : float
        Target share of the parameters, in (0, 1].
    X, X_test : ndarray of shape (n_samples, n_features), optional
        Calibration inputs (data-aware compression) and held-out inputs.
    balance, options, progress
        As in :func:`~sdf.models.compress.compress_network`.

    Returns
    -------
    NetworkCompression

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neural_network import MLPClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 20))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=2000, random_state=0).fit(X, y)
    >>> small = compress_sklearn_mlp(mlp, 0.5, X=X)
    >>> small.params_after <= 0.5 * small.params_before
    True
    """
    return compress_network(sklearn_mlp_layers(mlp, X, X_test), ratio, balance=balance,
                            options=options, progress=progress)
