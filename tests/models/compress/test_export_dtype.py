"""Export in float32 (PyTorch's default) or float64; the numpy forward runs float32 inputs
in float32 as the exported network does. Runs without PyTorch."""

import numpy as np
import pytest

from sdf.errors import ModelError
from sdf.models.compress import (Piece, compress_conv, compress_linear, export_arrays,
                                 run_pieces)


def test_export_arrays_are_float32_by_default(rng):
    layer = compress_linear(rng.standard_normal((12, 20)), rank=4,
                            bias=rng.standard_normal(12))
    arrays = export_arrays(layer.pieces)
    assert all(w.dtype == np.float32 and (b is None or b.dtype == np.float32)
               for w, b in arrays)
    assert arrays[-1][1] is not None  # the bias travels with the last piece
    assert all(w.dtype == np.float64 for w, _ in export_arrays(layer.pieces, "float64"))


def test_export_dtype_is_checked(rng):
    with pytest.raises(ModelError, match="dtype: expected float32 or float64, got int32"):
        export_arrays([Piece("linear", np.eye(2))], np.int32)


def test_linear_forward_in_float32_matches_float64(rng):
    layer = compress_linear(rng.standard_normal((12, 20)), rank=4,
                            bias=rng.standard_normal(12))
    x = rng.standard_normal((5, 20))
    y32 = layer.forward(x.astype(np.float32))
    y64 = layer.forward(x)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    assert np.allclose(y32, y64, rtol=1e-4, atol=1e-4)
    # the float32 forward is the exported parameters' arithmetic
    h = x.astype(np.float32)
    for w, b in export_arrays(layer.pieces):
        h = h @ w.T + (0 if b is None else b)
    assert np.allclose(h, y32, rtol=1e-6, atol=1e-6)


def test_conv_forward_in_float32_matches_float64(rng):
    layer = compress_conv(rng.standard_normal((6, 4, 3, 3)), "tucker2", rank=(3, 2),
                          padding=1, bias=rng.standard_normal(6))
    x = rng.standard_normal((2, 4, 7, 7))
    y32 = run_pieces(layer.pieces, x.astype(np.float32))
    assert y32.dtype == np.float32
    assert np.allclose(y32, layer.forward(x), rtol=1e-4, atol=1e-4)


def test_to_torch_builds_float32_modules_by_default(rng):
    torch = pytest.importorskip("torch")
    layer = compress_linear(rng.standard_normal((12, 20)), rank=4)
    net = layer.to_torch()
    x = rng.standard_normal((3, 20)).astype(np.float32)
    out = net(torch.from_numpy(x)).detach().numpy()
    assert out.dtype == np.float32
    assert np.allclose(out, layer.forward(x), rtol=1e-5, atol=1e-5)
