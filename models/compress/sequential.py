"""A feed-forward network as a chain of steps: layers (:class:`Piece`) and fixed operations.

:class:`SequentialNet` is the network form that whole-network refitting
(:func:`~sdf.models.compress.refit_network`) and ONNX reading and writing
(:mod:`sdf.models.compress.onnx_io`) work on: named layers (linear or convolution, PyTorch
layout) with parameter-free operations between them (:class:`Op`: ReLU, flatten,
reshape, max and average pooling). ``replace`` maps a layer's name to the pieces of its
compressed version, so the original and the compressed network are the same object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Mapping, Sequence

import numpy as np

from sdf.errors import DataError, ModelError
from sdf.models.compress.layers import Piece, _pair, _windows, count_macs

if TYPE_CHECKING:
    from sdf.models.compress.nets import SmallNet
    from sdf.models.compress.network import LayerSpec

__all__ = ["Op", "OpKind", "Replacement", "SequentialNet", "as_sequential"]

OpKind = Literal["relu", "flatten", "reshape", "maxpool", "avgpool"]
#: Layer name -> the pieces that run instead of it.
Replacement = Mapping[str, Sequence[Piece]]

_OP_KINDS = ("relu", "flatten", "reshape", "maxpool", "avgpool")


@dataclass(frozen=True)
class Op:
    """A parameter-free step of a :class:`SequentialNet`.

    Parameters
    ----------
    kind : {"relu", "flatten", "reshape", "maxpool", "avgpool"}
        ``"flatten"`` keeps the batch axis and flattens the rest; ``"reshape"`` gives each
        sample the shape ``shape``; the pools read ``kernel_size`` windows every ``stride``
        pixels (no padding).
    kernel_size, stride : int or pair of int, default 1
        Pooling geometry (ignored by the other kinds).
    shape : tuple of int, default ()
        Per-sample shape after a ``"reshape"``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Op
    >>> Op("maxpool", kernel_size=2, stride=2).forward(np.arange(16.0).reshape(1, 1, 4, 4))
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    """

    kind: OpKind
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _OP_KINDS:
            raise ModelError(f"Op: kind must be one of {', '.join(_OP_KINDS)}, got {self.kind!r}")
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size"))
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if min(*self.kernel_size, *self.stride) < 1:
            raise ModelError(f"Op {self.kind!r}: kernel_size and stride must be >= 1, got "
                             f"{self.kernel_size} and {self.stride}")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape for the per-sample input ``shape``."""
        if self.kind == "relu":
            return shape
        if self.kind == "flatten":
            return (math.prod(shape),)
        if self.kind == "reshape":
            if math.prod(self.shape) != math.prod(shape):
                raise ModelError(f"Op 'reshape': cannot reshape {shape} to {self.shape}")
            return self.shape
        if len(shape) != 3:
            raise ModelError(f"Op {self.kind!r}: needs (C, H, W) inputs, got {shape}")
        c, h, w = shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if h < kh or w < kw:
            raise ModelError(f"Op {self.kind!r}: input {shape} is smaller than the window "
                             f"{self.kernel_size}")
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the operation to a batch ``x`` (first axis: samples)."""
        if self.kind == "relu":
            return np.maximum(x, 0.0)
        if self.kind == "flatten":
            return x.reshape(x.shape[0], -1)
        if self.kind == "reshape":
            return x.reshape(x.shape[0], *self.shape)
        win = _windows(x, self.kernel_size, self.stride, (0, 0), (1, 1))
        return win.max(axis=(4, 5)) if self.kind == "maxpool" else win.mean(axis=(4, 5))


Step = Piece | Op


@dataclass(frozen=True, repr=False)
class SequentialNet:
    """A network run step by step: named layers and parameter-free operations.

    Parameters
    ----------
    steps : sequence of Piece or Op
        In order. Every layer (:class:`Piece`) needs a name, unique in the network.
    input_shape : tuple of int
        Shape of one input sample, e.g. ``(64,)`` or ``(1, 8, 8)``. Inputs of shape
        ``(n, prod(input_shape))`` are reshaped to it.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Op, Piece, SequentialNet
    >>> rng = np.random.default_rng(0)
    >>> net = SequentialNet([Piece("linear", rng.standard_normal((8, 4)), name="fc1"),
    ...                      Op("relu"),
    ...                      Piece("linear", rng.standard_normal((3, 8)), name="fc2")], (4,))
    >>> net.forward(np.ones((5, 4))).shape, net.n_params
    ((5, 3), 56)
    >>> net
    SequentialNet(input (4,): fc1 linear (8, 4) -> relu -> fc2 linear (3, 8); 56 parameters)
    """

    steps: tuple[Step, ...]
    input_shape: tuple[int, ...]
    _shapes: list[tuple[int, ...]] = field(init=False, compare=False)

    def __init__(self, steps: Sequence[Step], input_shape: Sequence[int]) -> None:
        object.__setattr__(self, "steps", tuple(steps))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in input_shape))
        names: set[str] = set()
        for k, step in enumerate(self.steps):
            if isinstance(step, Piece):
                if not step.name or step.name in names:
                    raise ModelError(f"SequentialNet: step {k} ({step!r}) needs a name that no "
                                     "other layer has")
                names.add(step.name)
            elif not isinstance(step, Op):
                raise ModelError(f"SequentialNet: step {k} must be a Piece or an Op, got "
                                 f"{type(step).__name__}")
        if not names:
            raise ModelError("SequentialNet: needs at least one layer")
        object.__setattr__(self, "_shapes", self._propagate(self.steps))

    def _propagate(self, steps: Sequence[Step]) -> list[tuple[int, ...]]:
        """Per-sample input shape of every step, then the output shape; checked."""
        shapes = [self.input_shape]
        for k, step in enumerate(steps):
            shape = shapes[-1]
            if isinstance(step, Op):
                shapes.append(step.output_shape(shape))
                continue
            want = (step.in_features,) if step.kind == "linear" else None
            ok = (shape == want) if want is not None else (len(shape) == 3
                                                            and shape[0] == step.in_features)
            if not ok:
                need = want if want is not None else f"({step.in_features}, H, W)"
                raise ModelError(f"SequentialNet: layer {step.name!r} (step {k}) reads inputs "
                                 f"of shape {need}, but the step before gives {shape}")
            if step.kind == "linear":
                shapes.append((step.out_features,))
            else:
                shapes.append((step.out_features, *step.output_hw((shape[1], shape[2]))))
        return shapes

    def __repr__(self) -> str:
        """The chain on one line (no arrays)."""
        parts: list[str] = []
        for step in self.steps:
            if isinstance(step, Op):
                parts.append(step.kind)
            else:
                parts.append(f"{step.name} {step.kind} {tuple(step.weight.shape)}")
        return (f"SequentialNet(input {self.input_shape}: {' -> '.join(parts)}; "
                f"{self.n_params} parameters)")

    # ------------------------------------------------------------------ structure
    @property
    def layers(self) -> dict[str, Piece]:
        """The layers by name, in order."""
        return {s.name: s for s in self.steps if isinstance(s, Piece)}

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one output sample."""
        return self._shapes[-1]

    def layer_input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample input shape of every layer."""
        return {s.name: self._shapes[k] for k, s in enumerate(self.steps) if isinstance(s, Piece)}

    def input_hw(self, name: str) -> tuple[int, int] | None:
        """Spatial input size of convolution ``name`` (None for a linear layer)."""
        shape = self.layer_input_shapes()[name]
        return (shape[1], shape[2]) if len(shape) == 3 else None

    @property
    def n_params(self) -> int:
        """Parameters of the layers."""
        return self.count_params()

    def count_params(self, replace: Replacement | None = None) -> int:
        """Parameters with the layers in ``replace`` swapped for their pieces."""
        replace = self._checked(replace)
        return int(sum(sum(p.n_params for p in replace.get(n, (layer,)))
                       for n, layer in self.layers.items()))

    def count_macs(self, replace: Replacement | None = None) -> int:
        """Multiply-accumulates per sample of the layers (``replace`` as in :meth:`forward`)."""
        replace = self._checked(replace)
        total = 0
        for name, layer in self.layers.items():
            total += count_macs(list(replace.get(name, (layer,))), self.input_hw(name))
        return int(total)

    def _checked(self, replace: Replacement | None) -> dict[str, Sequence[Piece]]:
        replace = dict(replace or {})
        unknown = sorted(set(replace) - set(self.layers))
        if unknown:
            raise ModelError(f"SequentialNet: replace names layers the network does not have: "
                             f"{unknown} (layers: {list(self.layers)})")
        return replace

    # ------------------------------------------------------------------ running
    def as_batch(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a float batch of shape ``(n, *input_shape)``."""
        x = np.asarray(x, dtype=float)
        size = math.prod(self.input_shape)
        if x.shape[1:] == self.input_shape:
            return x
        if x.ndim == 2 and x.shape[1] == size:
            return x.reshape(x.shape[0], *self.input_shape)
        raise DataError(f"SequentialNet: inputs must have shape (n, {size}) or "
                        f"(n, {', '.join(map(str, self.input_shape))}), got {x.shape}")

    def _run(self, x: np.ndarray, replace: Replacement | None,
             record: dict[str, tuple[np.ndarray, np.ndarray]] | None) -> np.ndarray:
        pieces = self._checked(replace)
        h = self.as_batch(x)
        for step in self.steps:
            if isinstance(step, Op):
                h = step.forward(h)
                continue
            h_in = h
            for p in pieces.get(step.name, (step,)):
                h = p.forward(h)
            if record is not None:
                record[step.name] = (h_in, h)
        return h

    def forward(self, x: np.ndarray, replace: Replacement | None = None) -> np.ndarray:
        """Outputs on ``x``; ``replace`` maps layer names to the pieces run instead."""
        return self._run(x, replace, None)

    def layer_io(self, x: np.ndarray, replace: Replacement | None = None
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Input and output (before the following operations) of every layer on ``x``."""
        record: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._run(x, replace, record)
        return record

    def layer_inputs(self, x: np.ndarray, replace: Replacement | None = None
                     ) -> dict[str, np.ndarray]:
        """Input of every layer on ``x``: the calibration data of each layer."""
        return {k: v[0] for k, v in self.layer_io(x, replace).items()}

    def accuracy(self, x: np.ndarray, y: np.ndarray, replace: Replacement | None = None
                 ) -> float:
        """Share of samples whose largest output is at the label ``y``."""
        return float(np.mean(np.argmax(self.forward(x, replace), axis=1) == np.asarray(y)))

    def layer_specs(self, X: np.ndarray | None = None, X_test: np.ndarray | None = None
                    ) -> dict[str, LayerSpec]:
        """One :class:`LayerSpec` per layer for :func:`compress_network`.

        ``X`` (network inputs) gives each layer its calibration inputs (data-aware);
        ``X_test`` its held-out inputs. Convolutions get their input size either way.

        Examples
        --------
        >>> import numpy as np
        >>> from sdf.models.compress import Op, Piece, SequentialNet, compress_network
        >>> rng = np.random.default_rng(0)
        >>> net = SequentialNet([Piece("linear", rng.standard_normal((32, 16)), name="fc1"),
        ...                      Op("relu"),
        ...                      Piece("linear", rng.standard_normal((4, 32)), name="fc2")],
        ...                     (16,))
        >>> res = compress_network(net.layer_specs(rng.standard_normal((100, 16))), 0.5)
        >>> net.forward(np.ones((2, 16)), {n: c.pieces for n, c in res.layers.items()}).shape
        (2, 4)
        """
        from sdf.models.compress.network import LayerSpec

        calib = None if X is None else self.layer_inputs(X)
        test = None if X_test is None else self.layer_inputs(X_test)
        return {name: LayerSpec(layer, X=None if calib is None else calib[name],
                                X_test=None if test is None else test[name],
                                input_hw=self.input_hw(name))
                for name, layer in self.layers.items()}


def as_sequential(net: SequentialNet | SmallNet) -> SequentialNet:
    """A :class:`SequentialNet` running the same function as ``net``.

    A :class:`~sdf.models.compress.nets.SmallNet` (ReLU between its layers, 8x8 images
    for a convolutional first layer, flattened before the first linear layer after a
    convolution) becomes the explicit chain of steps.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece, as_sequential
    >>> from sdf.models.compress.nets import SmallNet
    >>> small = SmallNet({"fc1": Piece("linear", np.eye(3), name="fc1"),
    ...                   "fc2": Piece("linear", np.ones((2, 3)), name="fc2")})
    >>> as_sequential(small)
    SequentialNet(input (3,): fc1 linear (3, 3) -> relu -> fc2 linear (2, 3); 15 parameters)
    """
    if isinstance(net, SequentialNet):
        return net
    layers = getattr(net, "layers", None)
    if not isinstance(layers, dict) or not layers:
        raise ModelError(f"as_sequential: expected a SequentialNet or a SmallNet, got "
                         f"{type(net).__name__}")
    names = list(layers)
    first = layers[names[0]]
    input_shape: tuple[int, ...] = ((first.in_features, 8, 8) if first.kind == "conv2d"
                                    else (first.in_features,))
    steps: list[Step] = []
    spatial = first.kind == "conv2d"
    for k, name in enumerate(names):
        layer = layers[name]
        if layer.kind == "linear" and spatial:
            steps.append(Op("flatten"))
            spatial = False
        steps.append(layer if layer.name == name else Piece(
            layer.kind, layer.weight, bias=layer.bias, stride=layer.stride,
            padding=layer.padding, dilation=layer.dilation, groups=layer.groups, name=name))
        if k < len(names) - 1:
            steps.append(Op("relu"))
    return SequentialNet(steps, input_shape)
