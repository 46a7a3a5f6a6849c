import time

import numpy as np
import pytest

from sdf.errors import ModelError
from sdf.models.compress import (CompressOptions, LayerSpec, Piece, RankCurve, allocate_ranks,
                                 compress_linear, compress_network, compress_shared)


def _qkv(rng, d=48, shared=12):
    """Q, K, V reading a common input subspace (plus noise), as trained projections do."""
    basis = np.linalg.qr(rng.standard_normal((d, shared)))[0]
    return {k: Piece("linear", rng.standard_normal((d, shared)) @ basis.T
                     + 0.05 * rng.standard_normal((d, d))) for k in "qkv"}


def test_shared_full_rank_is_exact(rng):
    layers = _qkv(rng, d=10, shared=4)
    res = compress_shared(layers, rank=10)
    x = rng.standard_normal((4, 10))
    for name, p in layers.items():
        np.testing.assert_allclose(res.layers[name].forward(x), p.forward(x), atol=1e-10)
    assert res.layers["q"].pieces[0] is res.layers["k"].pieces[0]


def test_sharing_beats_separate_at_equal_parameters(rng):
    layers = _qkv(rng)
    X, X_test = rng.standard_normal((300, 48)), rng.standard_normal((300, 48))
    shared = compress_shared(layers, ratio=0.35, X=X)
    separate = {}
    budget = shared.params_after
    curves = {k: compress_linear(p.weight, rank=1, X=X).curve for k, p in layers.items()}
    ranks = allocate_ranks(curves, budget)
    separate = [compress_linear(p.weight, rank=ranks[k], X=X) for k, p in layers.items()]
    assert sum(c.params_after for c in separate) <= budget
    sep_err = np.sqrt(sum(c.output_error(X_test) ** 2 for c in separate) / 3)
    assert shared.output_error(X_test) < 0.7 * sep_err


def test_shared_engine_matches_numpy(rng):
    layers = _qkv(rng, d=12, shared=4)
    X = rng.standard_normal((60, 12))
    opts = CompressOptions(solver="engine", max_iter=500, tol_fun=1e-20)
    eng = compress_shared(layers, rank=4, X=X, balance=0.5, options=opts)
    ref = compress_shared(layers, rank=4, X=X, balance=0.5)
    assert eng.output_error(X) == pytest.approx(ref.output_error(X), rel=1e-4)


def test_shared_rejects_different_inputs(rng):
    layers = {"a": Piece("linear", np.ones((3, 4))), "b": Piece("linear", np.ones((3, 5)))}
    with pytest.raises(ModelError, match="layer 'b' .* does not read the same input"):
        compress_shared(layers, rank=1)


def test_network_budget_and_curves(rng):
    specs = {"fc1": LayerSpec(Piece("linear", rng.standard_normal((40, 30)))),
             "conv": LayerSpec(Piece("conv2d", rng.standard_normal((8, 4, 3, 3)), padding=1),
                               X=rng.standard_normal((3, 4, 6, 6))),
             "fc2": LayerSpec(Piece("linear", rng.standard_normal((10, 40)) * 0.1))}
    res = compress_network(specs, 0.5)
    assert res.params_after <= 0.5 * res.params_before
    assert set(res.curves) == set(specs) and isinstance(res.curves["conv"], RankCurve)
    assert res.layers["conv"].method in ("channel_svd", "dense")


def test_ten_big_layers_under_ten_seconds(rng):
    """10 layers of 147k-262k weights each, compressed to one budget."""
    specs = {}
    for k in range(10):
        if k % 2:
            W = rng.standard_normal((128, 128, 3, 3)) / 30
            specs[f"conv{k}"] = LayerSpec(Piece("conv2d", W, padding=1), input_hw=(16, 16))
        else:
            specs[f"fc{k}"] = LayerSpec(Piece("linear", rng.standard_normal((512, 512))))
    threadpoolctl = pytest.importorskip("threadpoolctl")
    # one BLAS thread: the test machine is shared, and oversubscribed BLAS threads make
    # a 512 x 512 SVD 10-40x slower than on one thread
    with threadpoolctl.threadpool_limits(1):
        t0 = time.perf_counter()
        res = compress_network(specs, 0.5)
        elapsed = time.perf_counter() - t0
    print(f"10 layers compressed in {elapsed:.2f} s")
    assert res.params_after <= 0.5 * res.params_before
    assert elapsed < 10.0
