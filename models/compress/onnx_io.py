"""ONNX in and out: read a model's layers into a :class:`SequentialNet`, write one back.

:func:`read_onnx` reads a chain of standard operators (``Gemm``; ``MatMul`` with an
optional ``Add``; ``Conv``; ``Relu``; ``Flatten``; ``Reshape``; ``MaxPool`` and
``AveragePool`` without padding; ``Identity`` and ``Dropout`` are skipped), with weights
in initializers or ``Constant`` nodes. :func:`write_onnx` writes a network, optionally
with layers replaced by their compressed pieces, using standard operators only (``Gemm``
for every linear piece, ``Conv`` for every convolution piece, grouped for depthwise
ones), so any ONNX runtime runs it. :func:`run_onnx` and :func:`onnx_latency` run a
model with ``onnxruntime``.

Needs the ``onnx`` and ``onnxruntime`` packages (``pip install "sdfusion[onnx]"``); they are
imported only when these functions are called.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from sdf.errors import DataError, FileFormatError
from sdf.models.compress.layers import Piece
from sdf.models.compress.sequential import Op, Replacement, SequentialNet, Step

if TYPE_CHECKING:
    import onnx

__all__ = ["onnx_latency", "read_onnx", "run_onnx", "write_onnx"]

#: Operators :func:`read_onnx` understands.
READ_OPS = ("Add", "AveragePool", "Constant", "Conv", "Dropout", "Flatten", "Gemm",
            "Identity", "MatMul", "MaxPool", "Relu", "Reshape")
#: Opset of the models :func:`write_onnx` writes (and the IR version that goes with it).
OPSET, IR_VERSION = 17, 8


def _load(model: Any) -> onnx.ModelProto:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    raise FileFormatError(f"ONNX: expected a ModelProto, bytes or a path, got "
                          f"{type(model).__name__}")


def _constant(node: Any) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if attr.name == "value":
            return np.asarray(numpy_helper.to_array(value))
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(value)
    raise FileFormatError(f"ONNX Constant node {node.name!r}: no value attribute this reader "
                          "knows (value, value_float(s), value_int(s))")


def _input_shape(graph: Any, consts: dict[str, np.ndarray]) -> tuple[str, tuple[int, ...]]:
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise FileFormatError(f"ONNX: expected one graph input besides the weights, got "
                              f"{[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) for d in dims[1:])
    if len(dims) < 2 or min(shape) < 1:
        raise FileFormatError(f"ONNX: input {inputs[0].name!r} needs a fixed per-sample shape "
                              f"(batch, ...), got dims {[d.dim_param or d.dim_value for d in dims]}")
    return inputs[0].name, shape


class _Reader:
    """Walks the nodes of a chain, collecting the steps of the network."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.consts = {t.name: np.asarray(numpy_helper.to_array(t)) for t in graph.initializer}
        self.current, self.input_shape = _input_shape(graph, self.consts)
        self.steps: list[Step] = []
        self.names: set[str] = set()

    def shape(self) -> tuple[int, ...]:
        """Per-sample shape of the current tensor."""
        if not any(isinstance(s, Piece) for s in self.steps):
            shape = self.input_shape
            for s in self.steps:
                assert isinstance(s, Op)
                shape = s.output_shape(shape)
            return shape
        return SequentialNet(self.steps, self.input_shape).output_shape

    def name(self, node: Any, k: int) -> str:
        name = node.name if node.name and node.name not in self.names else f"layer{k}"
        self.names.add(name)
        return name

    def const(self, where: str, name: str) -> np.ndarray:
        if name not in self.consts:
            raise FileFormatError(f"{where}: input {name!r} must be a constant (initializer or "
                                  "Constant node)")
        return self.consts[name]


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _gemm(r: _Reader, node: Any, where: str, k: int) -> Step:
    a = _attrs(node)
    if a.get("transA", 0) or node.input[0] != r.current:
        raise FileFormatError(f"{where}: only x @ B (transA=0, data first) is a layer")
    B = r.const(where, node.input[1])
    W = float(a.get("alpha", 1.0)) * (B if a.get("transB", 0) else B.T)
    bias = None
    if len(node.input) > 2 and node.input[2]:
        C = float(a.get("beta", 1.0)) * r.const(where, node.input[2]).astype(float)
        if C.size not in (1, W.shape[0]):
            raise FileFormatError(f"{where}: C of shape {C.shape} is not a per-output bias of "
                                  f"the {W.shape[0]} outputs")
        bias = np.broadcast_to(C.reshape(-1), (W.shape[0],))
    return Piece("linear", W, bias=bias, name=r.name(node, k))


def _conv(r: _Reader, node: Any, where: str, k: int) -> Step:
    a = _attrs(node)
    W = r.const(where, node.input[1])
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if W.ndim != 4 or auto_pad not in ("NOTSET", "VALID"):
        raise FileFormatError(f"{where}: only 2-D convolutions with explicit pads are read "
                              f"(weight dims {W.ndim}, auto_pad {auto_pad})")
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise FileFormatError(f"{where}: pads {pads} are not symmetric")
    bias = r.const(where, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return Piece("conv2d", W, bias=bias, stride=tuple(a.get("strides", [1, 1])),
                 padding=(pads[0], pads[1]), dilation=tuple(a.get("dilations", [1, 1])),
                 groups=int(a.get("group", 1)), name=r.name(node, k))


def _add(r: _Reader, node: Any, where: str) -> None:
    """A constant added to a layer's output: its bias."""
    other = [i for i in node.input if i != r.current]
    last = r.steps[-1] if r.steps else None
    if len(other) != 1 or not isinstance(last, Piece):
        raise FileFormatError(f"{where}: an Add must add a constant to a layer's output")
    c = r.const(where, other[0]).astype(float)
    out = last.out_features
    shapes = [(out,), (1, out)] if last.kind == "linear" else [(out, 1, 1), (1, out, 1, 1)]
    if not (c.size == 1 or c.shape in shapes):
        raise FileFormatError(f"{where}: constant of shape {c.shape} is not a per-output bias "
                              f"of layer {last.name!r} ({out} outputs)")
    bias = np.broadcast_to(c.reshape(-1), (out,)) + (0.0 if last.bias is None else last.bias)
    r.steps[-1] = Piece(last.kind, last.weight, bias=bias, stride=last.stride,
                        padding=last.padding, dilation=last.dilation, groups=last.groups,
                        name=last.name)


def _pool(node: Any, where: str, kind: str) -> Step:
    a = _attrs(node)
    if any(a.get("pads", [0])) or a.get("ceil_mode", 0) or any(
            d != 1 for d in a.get("dilations", [1])):
        raise FileFormatError(f"{where}: only pools without padding, ceil_mode or dilation "
                              "are read")
    kernel = tuple(a["kernel_shape"])
    return Op("maxpool" if kind == "MaxPool" else "avgpool", kernel_size=kernel,
              stride=tuple(a.get("strides", [1] * len(kernel))))


def _reshape(r: _Reader, node: Any, where: str) -> Step | None:
    target = [int(v) for v in r.const(where, node.input[1]).reshape(-1)]
    shape = r.shape()
    # 0 copies the input's size on that axis (axis i >= 1 is per-sample axis i - 1)
    per_sample = [shape[i - 1] if v == 0 and i - 1 < len(shape) else v
                  for i, v in enumerate(target) if i > 0]
    if -1 in per_sample and target[0] != -1:
        known = math.prod(v for v in per_sample if v != -1)
        per_sample[per_sample.index(-1)] = math.prod(shape) // (known or 1)
    if not per_sample or math.prod(per_sample) != math.prod(shape) or min(per_sample) < 1:
        raise FileFormatError(f"{where}: cannot read reshape to {target} of (batch, "
                              f"{', '.join(map(str, shape))}) as a per-sample reshape")
    if tuple(per_sample) == shape:
        return None
    if len(per_sample) == 1:
        return Op("flatten")
    return Op("reshape", shape=tuple(per_sample))


def _step(r: _Reader, node: Any, where: str, k: int) -> Step | None:
    op = node.op_type
    if op == "Gemm":
        return _gemm(r, node, where, k)
    if op == "MatMul":
        if node.input[0] != r.current:
            raise FileFormatError(f"{where}: only x @ W (data first) is a layer")
        return Piece("linear", r.const(where, node.input[1]).T, name=r.name(node, k))
    if op == "Conv":
        return _conv(r, node, where, k)
    if op == "Relu":
        return Op("relu")
    if op == "Flatten":
        if _attrs(node).get("axis", 1) != 1:
            raise FileFormatError(f"{where}: only Flatten with axis=1 is read")
        return Op("flatten")
    if op == "Reshape":
        return _reshape(r, node, where)
    if op in ("MaxPool", "AveragePool"):
        return _pool(node, where, op)
    return None  # Identity, Dropout (inference)


def read_onnx(model: Any) -> SequentialNet:
    """Read an ONNX model made of a chain of layers into a :class:`SequentialNet`.

    Parameters
    ----------
    model : onnx.ModelProto, bytes, str or path
        The model (serialized, or a file). Its graph must be a chain: one input with a
        fixed per-sample shape, each node reading the previous node's output and constants
        (operators in ``READ_OPS``).

    Returns
    -------
    SequentialNet
        Layers named after their nodes (``layer<k>`` for unnamed ones); weights as float64.

    Raises
    ------
    FileFormatError
        Naming the node that could not be read and why.

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> from sdf.models.compress import read_onnx
    >>> W = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> graph = helper.make_graph(
    ...     [helper.make_node("MatMul", ["x", "W"], ["h"], name="fc"),
    ...      helper.make_node("Relu", ["h"], ["y"])], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    ...     [numpy_helper.from_array(W, "W")])
    >>> net = read_onnx(helper.make_model(graph))
    >>> net
    SequentialNet(input (3,): fc linear (2, 3) -> relu; 6 parameters)
    >>> net.forward(np.ones((1, 3)))
    array([[6., 9.]])
    """
    graph = _load(model).graph
    r = _Reader(graph)
    for k, node in enumerate(graph.node):
        where = f"ONNX node {k} ({node.op_type}{' ' + repr(node.name) if node.name else ''})"
        if node.op_type == "Constant":
            r.consts[node.output[0]] = _constant(node)
            continue
        if node.op_type not in READ_OPS:
            raise FileFormatError(f"{where}: operator not supported; the reader knows "
                                  f"{', '.join(READ_OPS)}")
        data = [i for i in node.input if i and i not in r.consts]
        if data != [r.current]:
            raise FileFormatError(f"{where}: reads {data}, but the graph is read as a chain and "
                                  f"the current tensor is {r.current!r}")
        if node.op_type == "Add":
            _add(r, node, where)
        else:
            step = _step(r, node, where, k)
            if step is not None:
                r.steps.append(step)
                r.shape()  # checks the chain so far
        r.current = node.output[0]
    if r.current != graph.output[0].name:
        raise FileFormatError(f"ONNX: the chain ends at {r.current!r}, the graph output is "
                              f"{graph.output[0].name!r}")
    return SequentialNet(r.steps, r.input_shape)


# ---------------------------------------------------------------- writing
class _Writer:
    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.current = "input"
        self.count = 0

    def tensor(self, name: str, value: np.ndarray, dtype: Any) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name))
        return name

    def add(self, op: str, inputs: list[str], name: str, **attrs: Any) -> None:
        from onnx import helper

        self.count += 1
        out = f"{name}.out" if name else f"t{self.count}"
        self.nodes.append(helper.make_node(op, [self.current, *inputs], [out],
                                           name=name or f"{op.lower()}{self.count}", **attrs))
        self.current = out


def _write_piece(w: _Writer, p: Piece, name: str) -> None:
    inputs = [w.tensor(f"{name}.weight", p.weight, np.float32)]
    if p.bias is not None:
        inputs.append(w.tensor(f"{name}.bias", p.bias, np.float32))
    if p.kind == "linear":
        w.add("Gemm", inputs, name, transB=1)
    else:
        (ph, pw) = p.padding
        w.add("Conv", inputs, name, kernel_shape=list(p.kernel_size), strides=list(p.stride),
              pads=[ph, pw, ph, pw], dilations=list(p.dilation), group=p.groups)


def _write_op(w: _Writer, op: Op) -> None:
    if op.kind == "relu":
        w.add("Relu", [], "")
    elif op.kind == "flatten":
        w.add("Flatten", [], "", axis=1)
    elif op.kind == "reshape":
        w.count += 1
        shape = w.tensor(f"shape{w.count}", np.array([0, *op.shape]), np.int64)
        w.add("Reshape", [shape], "")
    else:
        w.add("MaxPool" if op.kind == "maxpool" else "AveragePool", [], "",
              kernel_shape=list(op.kernel_size), strides=list(op.stride))


def write_onnx(net: SequentialNet, replace: Replacement | None = None,
               path: str | os.PathLike[str] | None = None) -> onnx.ModelProto:
    """Write a network, with layers replaced by compressed pieces, as an ONNX model.

    Every linear piece becomes a ``Gemm`` (``transB=1``, PyTorch layout), every
    convolution piece a ``Conv`` (``group`` for depthwise pieces), the operations
    ``Relu``, ``Flatten``, ``Reshape``, ``MaxPool`` and ``AveragePool``; weights are float32
    initializers. Input ``"input"`` and output of shape ``(N, ...)`` with a free batch size
    ``N``; opset 17.

    Parameters
    ----------
    net : SequentialNet
    replace : mapping of str to sequence of Piece, optional
        Layer name -> the pieces written instead (e.g. ``{n: c.pieces for n, c in
        compress_network(...).layers.items()}``).
    path : str or path, optional
        Where to save the model as well.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker``.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Op, Piece, SequentialNet, read_onnx, write_onnx
    >>> net = SequentialNet([Piece("linear", np.ones((2, 3)), name="fc"), Op("relu")], (3,))
    >>> model = write_onnx(net)
    >>> [node.op_type for node in model.graph.node]
    ['Gemm', 'Relu']
    >>> read_onnx(model).forward(np.ones((1, 3)))
    array([[3., 3.]])
    """
    import onnx
    from onnx import TensorProto, helper

    pieces = net._checked(replace)
    w = _Writer()
    for step in net.steps:
        if isinstance(step, Op):
            _write_op(w, step)
            continue
        run = pieces.get(step.name, (step,))
        for j, p in enumerate(run):
            _write_piece(w, p, step.name if len(run) == 1 else f"{step.name}.{j}")
    graph = helper.make_graph(
        w.nodes, "sdfusion", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                            ["N", *net.input_shape])],
        [helper.make_tensor_value_info(w.current, TensorProto.FLOAT, ["N", *net.output_shape])],
        w.inits)
    model = helper.make_model(graph, producer_name="sdfusion",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


# ---------------------------------------------------------------- running
def _session(model: Any, threads: int) -> tuple[Any, str, list[Any]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(_load(model).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    return sess, inp.name, list(inp.shape)


def _batch(x: np.ndarray, shape: list[Any]) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    per_sample = list(shape[1:])
    if all(isinstance(d, int) for d in per_sample) and list(x.shape[1:]) != per_sample:
        if x.size != x.shape[0] * math.prod(per_sample):
            raise DataError(f"run_onnx: inputs of shape {x.shape} do not fit the model's input "
                            f"{shape}")
        x = x.reshape(x.shape[0], *per_sample)
    return x


def run_onnx(model: Any, x: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Run an ONNX model with ``onnxruntime`` on the CPU (float32).

    Parameters
    ----------
    model : onnx.ModelProto, bytes, str or path
    x : ndarray
        A batch of inputs; reshaped to the model's per-sample input shape when its size
        fits (e.g. flat ``(n, 64)`` rows for ``(n, 1, 8, 8)`` images).
    threads : int, default 1
        Intra-op threads.

    Returns
    -------
    ndarray
        The first output.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece, SequentialNet, run_onnx, write_onnx
    >>> net = SequentialNet([Piece("linear", np.eye(2), bias=np.ones(2), name="fc")], (2,))
    >>> run_onnx(write_onnx(net), np.zeros((1, 2)))
    array([[1., 1.]], dtype=float32)
    """
    sess, name, shape = _session(model, threads)
    return np.asarray(sess.run(None, {name: _batch(x, shape)})[0])


def onnx_latency(model: Any, x: np.ndarray, *, threads: int = 1, repeat: int = 30,
                 warmup: int = 3, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median wall time (seconds) of one ``onnxruntime`` run on the batch ``x``.

    Parameters
    ----------
    model : onnx.ModelProto, bytes, str or path
    x : ndarray
        The batch (its size is the batch size measured).
    threads : int, default 1
        Intra-op threads (1: the cost of the arithmetic, not of the thread pool).
    repeat, warmup : int
        Timed runs (the median is returned) and untimed runs before them.
    clock : callable, default time.perf_counter

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece, SequentialNet, onnx_latency, write_onnx
    >>> net = SequentialNet([Piece("linear", np.eye(4), name="fc")], (4,))
    >>> onnx_latency(write_onnx(net), np.zeros((8, 4)), repeat=3) > 0
    True
    """
    sess, name, shape = _session(model, threads)
    feed = {name: _batch(x, shape)}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(repeat):
        start = clock()
        sess.run(None, feed)
        times.append(clock() - start)
    return float(statistics.median(times))
