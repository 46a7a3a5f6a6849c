"""SequentialNet: the chain of layers and operations, shapes, replacement, SmallNet twin."""

import numpy as np
import pytest

from sdf.errors import DataError, ModelError
from sdf.models.compress import (Op, Piece, SequentialNet, as_sequential, compress_network,
                                 conv2d)


def _cnn(rng):
    return SequentialNet([
        Piece("conv2d", rng.standard_normal((4, 2, 3, 3)), bias=rng.standard_normal(4),
              padding=1, name="c1"),
        Op("relu"), Op("maxpool", kernel_size=2, stride=2),
        Piece("conv2d", rng.standard_normal((6, 4, 3, 3)), stride=2, padding=1, name="c2"),
        Op("relu"), Op("avgpool", kernel_size=2, stride=1), Op("flatten"),
        Piece("linear", rng.standard_normal((3, 6)), bias=rng.standard_normal(3), name="fc"),
    ], (2, 8, 8))


def test_forward_matches_the_layers_by_hand(rng):
    net = _cnn(rng)
    x = rng.standard_normal((5, 2, 8, 8))
    L = net.layers
    h = np.maximum(conv2d(x, L["c1"].weight, padding=1) + L["c1"].bias[:, None, None], 0)
    h = h.reshape(5, 4, 4, 2, 4, 2).max(axis=(3, 5))
    h = np.maximum(conv2d(h, L["c2"].weight, stride=2, padding=1), 0)
    h = (h[:, :, :1, :1] + h[:, :, 1:, :1] + h[:, :, :1, 1:] + h[:, :, 1:, 1:]) / 4
    y = h.reshape(5, -1) @ L["fc"].weight.T + L["fc"].bias
    np.testing.assert_allclose(net.forward(x), y, atol=1e-12)
    np.testing.assert_allclose(net.forward(x.reshape(5, -1)), y, atol=1e-12)
    assert net.output_shape == (3,)
    assert net.input_hw("c2") == (4, 4) and net.input_hw("fc") is None


def test_replace_and_counts(rng):
    net = _cnn(rng)
    x = rng.standard_normal((3, 2, 8, 8))
    res = compress_network(net.layer_specs(x), 0.6)
    rep = {n: c.pieces for n, c in res.layers.items()}
    assert net.count_params(rep) == res.params_after
    io = net.layer_io(x, rep)
    np.testing.assert_allclose(io["fc"][1], net.forward(x, rep))
    assert net.count_macs() == (4 * 18 * 64 + 6 * 36 * 4 + 18)


def test_small_net_twin_runs_the_same_function(cnn, mlp, digits):
    for small in (cnn, mlp):
        net = as_sequential(small)
        np.testing.assert_allclose(net.forward(digits.X_test[:50]),
                                   small.forward(digits.X_test[:50]), atol=1e-12)
        assert net.n_params == small.n_params


def test_bad_chains_name_the_step(rng):
    fc = Piece("linear", np.ones((3, 4)), name="fc")
    with pytest.raises(ModelError, match=r"layer 'fc' \(step 1\) reads inputs of shape \(4,\)"):
        SequentialNet([Op("flatten"), fc], (5,))
    with pytest.raises(ModelError, match="needs a name that no other layer has"):
        SequentialNet([fc, Op("relu"), Piece("linear", np.ones((2, 3)), name="fc")], (4,))
    with pytest.raises(ModelError, match="kind must be one of"):
        Op("softmax")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"inputs must have shape \(n, 4\)"):
        SequentialNet([fc], (4,)).forward(np.ones((2, 5)))
    with pytest.raises(ModelError, match="layers the network does not have: \\['fc9'\\]"):
        SequentialNet([fc], (4,)).forward(np.ones((2, 4)), {"fc9": [fc]})
