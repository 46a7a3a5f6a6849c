import numpy as np
import pytest

from sdf.errors import DataError, ModelError
from sdf.models.compress import (CompressOptions, LayerSpec, Piece, RankCurve, allocate_ranks,
                                 compress_linear, compress_network, compress_shared, run_pieces)


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


def test_shared_ratio_names_the_least_ratio_and_caps_the_rank(rng):
    """A ratio below rank 1's cost names that cost (it said "rank must be in [1, 2], got
    0"); a ratio above the largest rank's cost takes the largest rank (it refused it)."""
    layers = {"a": Piece("linear", rng.standard_normal((1, 3))),
              "b": Piece("linear", rng.standard_normal((1, 3)), bias=np.ones(1))}
    with pytest.raises(ModelError, match=r"even rank 1 costs 0\.857 of the layers' params, "
                                         r"more than ratio=0\.8: ask for a ratio of at "
                                         r"least 0\.857"):
        compress_shared(layers, ratio=0.8)
    full = compress_shared(layers, ratio=5.0)
    assert full.rank == 2 and full.weight_error() < 1e-15
    zero = {"z": Piece("linear", np.zeros((4, 6))), **_qkv(rng, d=6, shared=2)}
    res = compress_shared(zero, rank=2)
    assert res.layers["z"].weight_error < 1e-12  # absolute: the weight is zero


def test_network_budget_and_curves(rng):
    specs = {"fc1": LayerSpec(Piece("linear", rng.standard_normal((40, 30)))),
             "conv": LayerSpec(Piece("conv2d", rng.standard_normal((8, 4, 3, 3)), padding=1),
                               X=rng.standard_normal((3, 4, 6, 6))),
             "fc2": LayerSpec(Piece("linear", rng.standard_normal((10, 40)) * 0.1))}
    res = compress_network(specs, 0.5)
    assert res.params_after <= 0.5 * res.params_before
    assert set(res.curves) == set(specs) and isinstance(res.curves["conv"], RankCurve)
    assert res.layers["conv"].method in ("channel_svd", "dense")


def test_ten_big_layers_to_one_budget(rng):
    """10 layers of 147k-262k weights each, compressed to one budget (the time this takes is
    measured by benchmarks/bench_compress_speed.py)."""
    specs = {}
    for k in range(10):
        if k % 2:
            W = rng.standard_normal((128, 128, 3, 3)) / 30
            specs[f"conv{k}"] = LayerSpec(Piece("conv2d", W, padding=1), input_hw=(16, 16))
        else:
            specs[f"fc{k}"] = LayerSpec(Piece("linear", rng.standard_normal((512, 512))))
    res = compress_network(specs, 0.5)
    assert 0.45 * res.params_before <= res.params_after <= 0.5 * res.params_before
    assert set(res.layers) == set(specs)


def _conv_heavy_net(rng):
    """A convolution on a large feature map (most MACs, few weights) and a wide dense
    head (most weights, few MACs): the two budgets pull in opposite directions."""
    basis = np.linalg.qr(rng.standard_normal((16 * 9, 6)))[0]
    conv = (rng.standard_normal((32, 6)) @ basis.T).reshape(32, 16, 3, 3)
    conv = conv + 0.05 * rng.standard_normal(conv.shape)
    head = rng.standard_normal((64, 8)) @ rng.standard_normal((8, 2048))
    head = head + 0.05 * rng.standard_normal(head.shape)
    return {"conv": LayerSpec(Piece("conv2d", conv, padding=1), input_hw=(32, 32)),
            "head": LayerSpec(Piece("linear", head))}


def test_a_mac_budget_cuts_the_macs_a_parameter_budget_leaves(rng):
    specs = _conv_heavy_net(rng)
    by_params = compress_network(specs, 0.5)
    by_macs = compress_network(specs, macs_ratio=0.5)
    assert by_params.params_after <= 0.5 * by_params.params_before
    assert by_macs.macs_after <= 0.5 * by_macs.macs_before
    # The parameter budget is met in the head, which runs few MACs.
    assert by_params.macs_after > 0.8 * by_params.macs_before
    assert by_macs.layers["conv"].method != "dense"
    assert by_macs.mac_budget == pytest.approx(0.5 * by_macs.macs_before)
    assert by_macs.budget is None and "MACs" in repr(by_macs).splitlines()[0]


def test_both_budgets_are_kept_together(rng):
    res = compress_network(_conv_heavy_net(rng), 0.4, macs_ratio=0.6)
    assert res.params_after <= 0.4 * res.params_before
    assert res.macs_after <= 0.6 * res.macs_before


def test_a_mac_budget_needs_the_input_size_of_every_convolution(rng):
    specs = {"conv": LayerSpec(Piece("conv2d", rng.standard_normal((8, 4, 3, 3)))),
             "fc": LayerSpec(Piece("linear", rng.standard_normal((10, 20))))}
    with pytest.raises(ModelError, match=r"layer 'conv': a MAC budget needs the input size"):
        compress_network(specs, macs_ratio=0.5)
    with pytest.raises(ModelError, match=r"give ratio .*, macs_ratio .* or both"):
        compress_network(specs)
    with pytest.raises(ModelError, match=r"macs_ratio must be in \(0, 1\], got 1.5"):
        compress_network(specs, macs_ratio=1.5)
    with pytest.raises(ModelError, match=r"compress_network: the smallest ranks already cost "
                                         r"\d+ parameters, over the budget of \d+"):
        compress_network(specs, 0.01)


def test_grouped_convolutions_are_kept_dense(rng):
    """A depthwise conv (groups = channels) in a network: kept dense, its pieces the layer
    itself, and the network with the replacements runs as the layers say; asking a conv
    method for it is an error."""
    dw = Piece("conv2d", rng.standard_normal((8, 1, 3, 3)), groups=8, padding=(1, 1),
               name="dw")
    pw = Piece("conv2d", rng.standard_normal((16, 8, 1, 1)), name="pw")
    X = rng.standard_normal((2, 8, 8, 8))
    res = compress_network({"dw": LayerSpec(dw, X=X), "pw": LayerSpec(pw, X=dw.forward(X))},
                           0.5)
    kept = res.layers["dw"]
    assert kept.method == "dense" and kept.pieces == (dw,)
    assert kept.info.message == "kept dense: a grouped convolution (groups=8)"
    assert res.params_after <= 0.5 * res.params_before
    y = run_pieces(res.layers["pw"].pieces, run_pieces(kept.pieces, X))
    assert y.shape == (2, 16, 8, 8)
    with pytest.raises(ModelError, match=r"layer 'dw' is a grouped convolution \(groups=8\), "
                                         r"which 'spatial_svd' cannot factor"):
        compress_network({"dw": LayerSpec(dw, method="spatial_svd", X=X)}, 0.5)


def test_network_input_errors_name_the_layer(rng):
    """Layers given as a list, a layer that is not a LayerSpec, and calibration maps with
    a NaN: each a clear error naming the place."""
    spec = LayerSpec(Piece("linear", rng.standard_normal((10, 20))))
    with pytest.raises(ModelError, match="layers must be a mapping of layer name to "
                                         "LayerSpec, got list"):
        compress_network([spec], 0.5)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="layer 'fc' is a Piece, not a LayerSpec"):
        compress_network({"fc": spec.layer}, 0.5)  # type: ignore[dict-item]
    X = np.ones((2, 4, 6, 6))
    X[1, 2, 3, 3] = np.nan
    conv = LayerSpec(Piece("conv2d", rng.standard_normal((8, 4, 3, 3)), padding=(1, 1)), X=X)
    with pytest.raises(DataError, match=r"compress_conv\('conv', .*\): X has 1 non-finite "
                                        r"entries \(the first at \(1, 2, 3, 3\): nan\)"):
        compress_network({"conv": conv, "fc": spec}, 0.5)


def test_allocation_by_macs_matches_brute_force_on_convex_curves():
    import itertools

    rng = np.random.default_rng(3)
    curves = {}
    for name in "abc":
        ranks = np.arange(1, 7)
        errors = np.sort(rng.random(6))[::-1] * np.exp(-0.5 * ranks)  # convex, decreasing
        curves[name] = RankCurve(ranks, 10 * ranks, rng.integers(5, 50) * ranks, errors)
    budget = 0.5 * sum(float(c.macs[-1]) for c in curves.values())
    got = allocate_ranks(curves, mac_budget=budget)
    best = min((sum(float(curves[n].errors[k] ** 2) for n, k in zip("abc", ks)), ks)
               for ks in itertools.product(range(6), repeat=3)
               if sum(float(curves[n].macs[k]) for n, k in zip("abc", ks)) <= budget)
    spent = sum(float(curves[n].macs[got[n] - 1]) for n in "abc")
    assert spent <= budget
    mine = sum(float(curves[n].errors[got[n] - 1] ** 2) for n in "abc")
    assert mine <= 1.2 * best[0]


def test_allocation_refuses_unknown_macs_and_no_budget():
    c = RankCurve(np.arange(1, 3), np.array([1, 2]), np.array([-1, -1]), np.array([0.5, 0.1]))
    with pytest.raises(ModelError, match=r"layer 'x' has unknown MAC counts"):
        allocate_ranks({"x": c}, mac_budget=10)
    with pytest.raises(ModelError, match=r"give a parameter budget, a MAC budget or both"):
        allocate_ranks({"x": c})


@pytest.mark.parametrize("max_rows", [20000, 100])
def test_shared_convs_take_their_calibration_from_the_maps(rng, monkeypatch, max_rows):
    """Two 3x3 convs reading the same maps, 300 patches of 72 values (all of them, or a
    sample of 100): no im2col rows, and each layer's reported error is its forward
    pass's on every patch."""
    import sdf.models.compress.conv as conv_module
    import sdf.models.compress.network as network_module

    layers = {"a": Piece("conv2d", rng.standard_normal((6, 8, 3, 3)), padding=(1, 1)),
              "b": Piece("conv2d", rng.standard_normal((5, 8, 3, 3)), padding=(1, 1))}
    X = np.maximum(rng.standard_normal((3, 8, 10, 10)) + 0.3, 0.0)

    def refuse(*args, **kwargs):
        raise AssertionError("the im2col rows were formed")

    monkeypatch.setattr(conv_module, "im2col", refuse)
    monkeypatch.setattr(network_module, "im2col", refuse, raising=False)
    res = compress_shared(layers, rank=4, X=X, options=CompressOptions(max_calib_rows=max_rows))
    for name, p in layers.items():
        y = p.forward(X)
        err = np.linalg.norm(res.layers[name].forward(X) - y) / np.linalg.norm(y)
        assert res.layers[name].calib_output_error == pytest.approx(err, rel=1e-10)


def test_shared_rejects_inputs_of_another_width(rng):
    lin = {k: Piece("linear", rng.standard_normal((3, 6))) for k in "ab"}
    with pytest.raises(DataError, match=r"compress_shared: X has shape \(10, 5\), which does "
                                        "not match the layers' input"):
        compress_shared(lin, rank=2, X=rng.standard_normal((10, 5)))
    convs = {k: Piece("conv2d", rng.standard_normal((3, 4, 3, 3))) for k in "ab"}
    with pytest.raises(DataError, match=r"X has shape \(2, 5, 6, 6\)"):
        compress_shared(convs, rank=2, X=rng.standard_normal((2, 5, 6, 6)))
