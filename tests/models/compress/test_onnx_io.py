"""ONNX in and out: read models built with onnx.helper, write compressed ones, run both."""

import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sdf.errors import FileFormatError  # noqa: E402
from sdf.models.compress import (Op, Piece, SequentialNet, compress_network,  # noqa: E402
                                 onnx_latency, read_onnx, run_onnx, write_onnx)

TOL = 1e-5  # float32 runtime against the float64 numpy forward, relative to the output scale


def _f32(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _model(nodes, inits, in_shape, out_shape, consts=()):
    graph = helper.make_graph(
        [*consts, *nodes], "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT,
                                       ["N", *out_shape])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _mlp_model(rng):
    """Gemm (transB=1), MatMul + Add, Gemm (transB=0, alpha, beta), a Constant weight."""
    inits = {"W1": _f32(rng, 32, 20, scale=0.3), "b1": _f32(rng, 32),
             "W2": _f32(rng, 32, 24, scale=0.3), "b2": _f32(rng, 24),
             "b3": _f32(rng, 1, 5)}
    w3 = helper.make_node("Constant", [], ["W3"], name="w3",
                          value=numpy_helper.from_array(_f32(rng, 24, 5, scale=0.3)))
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], name="fc1", transB=1),
             helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("MatMul", ["a1", "W2"], ["h2"], name="fc2"),
             helper.make_node("Add", ["h2", "b2"], ["h2b"]),
             helper.make_node("Relu", ["h2b"], ["a2"]),
             helper.make_node("Dropout", ["a2"], ["d2"]),
             helper.make_node("Gemm", ["d2", "W3", "b3"], ["y"], name="fc3", alpha=0.5,
                              beta=2.0)]
    return _model(nodes, inits, (20,), (5,), consts=[w3])


def _cnn_model(rng):
    """Conv (bias, padding), Relu, MaxPool, Conv (stride, Add bias), Reshape, Gemm."""
    inits = {"C1": _f32(rng, 8, 1, 3, 3, scale=0.5), "c1": _f32(rng, 8),
             "C2": _f32(rng, 16, 8, 3, 3, scale=0.2), "c2": _f32(rng, 1, 16, 1, 1),
             "shape": np.array([-1, 64], dtype=np.int64),
             "F": _f32(rng, 10, 64, scale=0.2), "f": _f32(rng, 10)}
    nodes = [helper.make_node("Conv", ["x", "C1", "c1"], ["h1"], name="conv1",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "C2"], ["h2"], name="conv2", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Add", ["h2", "c2"], ["h2b"]),
             helper.make_node("Relu", ["h2b"], ["a2"]),
             helper.make_node("Reshape", ["a2", "shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "F", "f"], ["y"], name="fc", transB=1)]
    return _model(nodes, inits, (1, 8, 8), (10,))


def _close(a, b):
    scale = max(float(np.max(np.abs(b))), 1.0)
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL * scale)


@pytest.mark.parametrize("build", [_mlp_model, _cnn_model], ids=["mlp", "cnn"])
def test_read_numpy_forward_equals_onnxruntime(build, rng):
    model = build(rng)
    net = read_onnx(model)
    x = rng.standard_normal((40, *net.input_shape)).astype(np.float32)
    _close(net.forward(x), run_onnx(model, x))
    # and back: the written dense model runs the same function
    _close(run_onnx(write_onnx(net), x), run_onnx(model, x))


def test_read_layers_and_geometry(rng):
    net = read_onnx(_cnn_model(rng))
    assert list(net.layers) == ["conv1", "conv2", "fc"]
    assert net.layers["conv2"].stride == (2, 2) and net.layers["conv2"].padding == (1, 1)
    assert net.layers["conv2"].bias is not None  # from the Add
    assert [type(s).__name__ for s in net.steps].count("Op") == 4
    mlp = read_onnx(_mlp_model(rng).SerializeToString())
    assert [p.weight.shape for p in mlp.layers.values()] == [(32, 20), (24, 32), (5, 24)]


@pytest.mark.parametrize("build", [_mlp_model, _cnn_model], ids=["mlp", "cnn"])
def test_written_compressed_model_equals_numpy_compressed_forward(build, rng, tmp_path):
    net = read_onnx(build(rng))
    x = rng.standard_normal((40, *net.input_shape))
    specs = net.layer_specs(x)
    if "conv2" in specs:  # a depthwise chain (CP) and a Tucker-2 in the written model
        import dataclasses

        specs["conv1"] = dataclasses.replace(specs["conv1"], method="tucker2")
        specs["conv2"] = dataclasses.replace(specs["conv2"], method="spatial_svd")
    res = compress_network(specs, 0.5)
    replace = {n: c.pieces for n, c in res.layers.items()}
    path = tmp_path / "compressed.onnx"
    model = write_onnx(net, replace, path=path)
    assert path.is_file()
    _close(run_onnx(str(path), x), net.forward(x, replace))
    n_weights = sum(int(np.prod(t.dims)) for t in model.graph.initializer
                    if t.data_type == TensorProto.FLOAT)
    assert n_weights == net.count_params(replace)


def test_depthwise_pieces_are_written_as_grouped_convs(rng):
    from sdf.algebra import cpd_to_tensor
    from sdf.models.compress import compress_conv

    cp_weight = cpd_to_tensor([rng.standard_normal((n, 3)) for n in (6, 4, 3, 3)])
    conv = Piece("conv2d", cp_weight, padding=1, name="c")
    net = SequentialNet([conv], (4, 6, 6))
    cp = compress_conv(conv.weight, "cp", rank=3, padding=1)
    model = write_onnx(net, {"c": cp.pieces})
    assert [n.op_type for n in model.graph.node] == ["Conv"] * 4
    x = rng.standard_normal((3, 4, 6, 6))
    _close(run_onnx(model, x), net.forward(x, {"c": cp.pieces}))


def test_unsupported_graphs_name_the_node(rng):
    inits = {"W": _f32(rng, 3, 3)}
    sig = _model([helper.make_node("Sigmoid", ["x"], ["y"], name="act")], {}, (3,), (3,))
    with pytest.raises(FileFormatError, match=r"ONNX node 0 \(Sigmoid 'act'\): operator not "
                                              r"supported"):
        read_onnx(sig)
    branch = _model([helper.make_node("MatMul", ["x", "W"], ["h"], name="fc"),
                     helper.make_node("Add", ["h", "x"], ["y"], name="skip")], inits, (3,), (3,))
    with pytest.raises(FileFormatError, match=r"node 1 \(Add 'skip'\): reads \['h', 'x'\]"):
        read_onnx(branch)
    with pytest.raises(FileFormatError, match="expected a ModelProto, bytes or a path"):
        read_onnx(3.0)


def test_latency_is_measured(rng):
    net = SequentialNet([Piece("linear", rng.standard_normal((64, 32)), name="fc"),
                         Op("relu")], (32,))
    assert 0 < onnx_latency(write_onnx(net), rng.standard_normal((16, 32)), repeat=3) < 1.0


def test_importing_compress_does_not_import_onnx():
    code = ("import sys, sdf.models.compress\n"
            "print([m for m in ('onnx', 'onnxruntime') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
