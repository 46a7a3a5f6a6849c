"""Compact reprs of the compression results: shapes, ranks, counts and errors, no arrays."""

import numpy as np

from sdf.models.compress import (LayerSpec, Piece, compress_conv, compress_network,
                                 compress_shared)


def _no_arrays(text):
    return "array(" not in text and "[[" not in text


def test_compressed_layer_repr_is_one_line_of_counts(rng):
    W = rng.standard_normal((64, 32, 3, 3))
    res = compress_conv(W, "weight_svd", rank=8, padding=1, input_hw=(8, 8))
    text = repr(res)
    assert "\n" not in text and _no_arrays(text) and len(text) < 400
    assert "weight_svd, rank=8" in text and "(64, 32, 3, 3) -> [(8, 32, 1, 1), (64, 8, 3, 3)]" in text
    assert f"params {res.params_before} -> {res.params_after}" in text
    assert f"MACs {res.macs_before} -> {res.macs_after}" in text
    assert f"weight_error={res.weight_error:.4g}" in text
    assert repr(res.pieces[1]) == "Piece('conv2d', weight (64, 8, 3, 3), padding=(1, 1), name='conv.1')"
    assert repr(res.curve).startswith("RankCurve(32 ranks 1..32, params ")


def test_shared_repr_has_one_line_per_layer(rng):
    layers = {k: Piece("linear", rng.standard_normal((96, 96)), bias=np.zeros(96)) for k in "qkv"}
    res = compress_shared(layers, rank=16, X=rng.standard_normal((200, 96)))
    lines = repr(res).splitlines()
    assert len(lines) == 4 and _no_arrays(repr(res))
    assert lines[0].startswith("SharedCompression(3 layers, rank=16, shared Piece('linear', "
                               "weight (16, 96), name='shared')")
    assert "calib_output_error=" in lines[1]


def test_network_repr_has_one_line_per_layer(rng):
    net = {"fc1": LayerSpec(Piece("linear", rng.standard_normal((32, 64)))),
           "fc2": LayerSpec(Piece("linear", rng.standard_normal((10, 32))))}
    res = compress_network(net, 0.5)
    lines = repr(res).splitlines()
    assert len(lines) == 3 and _no_arrays(repr(res))
    assert lines[0].startswith(f"NetworkCompression(2 layers, budget {res.budget:.0f} params, "
                               f"params {res.params_before} -> {res.params_after}")
    assert f"MACs {res.macs_before} -> {res.macs_after}" in lines[0]
