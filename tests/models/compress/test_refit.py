"""Whole-network refit: closed-form layer refits, the joint engine fit, the held-out guard."""

import dataclasses

import numpy as np
import pytest

from sdf.errors import DataError, OptionError
from sdf.models.compress import (Op, Piece, RefitOptions, SequentialNet, as_sequential,
                                 compress_conv, compress_linear, compress_network,
                                 refit_network)
from sdf.models.compress._trace import traced_forward


def _planted(rng, n=400):
    """A ReLU network whose inputs lie near a 5-dimensional subspace of their 24 dims."""
    net = SequentialNet([
        Piece("linear", rng.standard_normal((48, 24)) / 5, bias=0.1 * rng.standard_normal(48),
              name="fc1"), Op("relu"),
        Piece("linear", rng.standard_normal((32, 48)) / 7, bias=0.1 * rng.standard_normal(32),
              name="fc2"), Op("relu"),
        Piece("linear", rng.standard_normal((6, 32)) / 6, name="fc3")], (24,))
    basis = np.linalg.qr(rng.standard_normal((24, 5)))[0]
    X = 3 * rng.standard_normal((n, 5)) @ basis.T + 0.05 * rng.standard_normal((n, 24))
    return net, X


def _planted_exact(rng, n=300):
    """Inputs in a 5-dim subspace, fc2 of rank 4: rank-(5, 4) pieces can match exactly.

    The start compresses fc1 from its weight alone (rank 5, the wrong input subspace).
    """
    net, _ = _planted(rng)
    fc2 = net.layers["fc2"]
    U, s, Vt = np.linalg.svd(fc2.weight, full_matrices=False)
    low = dataclasses.replace(fc2, weight=(U[:, :4] * s[:4]) @ Vt[:4])
    net = SequentialNet([low if step is fc2 else step for step in net.steps], (24,))
    X = 3 * rng.standard_normal((n, 5)) @ np.linalg.qr(rng.standard_normal((24, 5)))[0].T
    start = {name: compress_linear(p.weight, rank=r, bias=p.bias, name=name).pieces
             for (name, p), r in zip(net.layers.items(), (5, 4, 6))}
    return net, X, start


def test_refit_lowers_train_and_held_out_error_on_planted_case(rng):
    net, X, start = _planted_exact(rng)
    res = refit_network(net, start, X, options=RefitOptions(ridge=1e-6))
    assert res.train_error_before > 0.3 and res.holdout_error_before > 0.3
    assert res.train_error_after < 0.01 and res.holdout_error_after < 0.01
    assert [s.name for s in res.stages] == ["sequential", "joint"]
    assert all(s.accepted for s in res.stages)
    # the same shapes and parameter count; the errors recomputed from the pieces
    assert net.count_params(res.pieces) == net.count_params(start)
    for name, pieces in start.items():
        assert [p.weight.shape for p in res.pieces[name]] == [p.weight.shape for p in pieces]
    Y = net.forward(X)
    err = np.linalg.norm(net.forward(X, res.pieces) - Y) / np.linalg.norm(Y)
    assert err == pytest.approx(np.hypot(res.train_error_after * 0, err))
    assert err < 0.01


def test_refit_of_a_budget_compression_lowers_both_errors(rng):
    net, X = _planted(rng)
    compressed = compress_network(net.layer_specs(), 0.3)  # from the weights alone
    res = refit_network(net, compressed, X)
    assert res.train_error_after < 0.6 * res.train_error_before
    assert res.holdout_error_after < 0.6 * res.holdout_error_before
    assert res.stages[1].holdout_error < res.stages[0].holdout_error
    assert net.count_params(res.pieces) == compressed.params_after


def test_sequential_refit_is_exact_for_a_planted_low_rank_map(rng):
    """Outputs of a rank-3 layer from a wrong rank-3 start: the closed form recovers them."""
    A, B = rng.standard_normal((20, 3)), rng.standard_normal((15, 3))
    layer = Piece("linear", A @ B.T + 0.3 * rng.standard_normal((20, 15)),
                  bias=rng.standard_normal(20), name="fc")
    net = SequentialNet([layer], (15,))
    X = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 15))  # rank-3 inputs
    start = compress_linear(layer.weight, rank=3, bias=layer.bias, name="fc")
    res = refit_network(net, {"fc": start}, X,
                        options=RefitOptions(ridge=0.0, joint=False))
    assert res.train_error_before > 0.05
    assert res.train_error_after < 1e-8 and res.holdout_error_after < 1e-8


def test_overfitting_guard_triggers_on_a_tiny_calibration_set(rng):
    net, X = _planted(rng)
    compressed = compress_network(net.layer_specs(), 0.3)
    opts = RefitOptions(sequential=False, max_iter=60, patience=3, ridge=0.0)
    res = refit_network(net, compressed, X[:16], options=opts)
    joint = res.stages[0]
    assert res.guard_triggered and joint.guarded
    assert joint.iterations < opts.max_iter
    assert "held-out error lowest at iteration" in joint.message
    assert res.holdout_error_after <= res.holdout_error_before
    # on 12 fitting inputs the fit overfits: far lower error there than held out
    assert res.train_error_after < 0.5 * res.holdout_error_after


def test_joint_fit_with_gauss_newton_and_conv_layers(rng):
    net = SequentialNet([
        Piece("conv2d", rng.standard_normal((6, 2, 3, 3)) / 4, padding=1, name="c1"),
        Op("relu"), Op("maxpool", kernel_size=2, stride=2), Op("flatten"),
        Piece("linear", rng.standard_normal((10, 96)) / 10, name="fc")], (2, 8, 8))
    X = rng.standard_normal((300, 2, 8, 8))
    compressed = {"c1": compress_conv(net.layers["c1"].weight, "spatial_svd", rank=3,
                                        padding=1),
                  "fc": compress_linear(net.layers["fc"].weight, rank=5)}
    res = refit_network(net, compressed, X, options=RefitOptions(method="nls", max_iter=30))
    assert res.train_error_after < res.train_error_before
    assert res.holdout_error_after <= res.holdout_error_before


def test_traced_forward_matches_numpy_forward(rng):
    net = SequentialNet([
        Piece("conv2d", rng.standard_normal((4, 2, 3, 3)), bias=np.ones(4), stride=2,
              padding=1, dilation=1, name="c1"), Op("relu"),
        Piece("conv2d", rng.standard_normal((4, 1, 3, 1)), groups=4, padding=(1, 0),
              dilation=(2, 1), name="dw"),
        Op("avgpool", kernel_size=(2, 1), stride=1), Op("flatten"),
        Piece("linear", rng.standard_normal((3, 40)), bias=np.ones(3), name="fc")], (2, 9, 9))
    x = rng.standard_normal((5, 2, 9, 9))
    fun, params, slots = traced_forward(net, {}, ["c1", "dw", "fc"], x)
    np.testing.assert_allclose(fun(*params), net.forward(x), atol=1e-12)
    assert slots[:2] == [("c1", 0, "weight"), ("c1", 0, "bias")]


def test_refit_accepts_small_nets_and_checks_input(mlp, digits):
    compressed = compress_network(as_sequential(mlp).layer_specs(), 0.3)
    res = refit_network(mlp, compressed, digits.X_calib[:200],
                        options=RefitOptions(joint=False))
    assert res.train_error_after < res.train_error_before
    with pytest.raises(DataError, match="cannot be split"):
        refit_network(mlp, compressed, digits.X_calib[:1])
    with pytest.raises(OptionError, match="holdout must be in"):
        RefitOptions(holdout=1.0)


def test_traced_gradient_and_jvp_match_finite_differences(rng):
    import autograd

    net = SequentialNet([
        Piece("conv2d", rng.standard_normal((4, 2, 3, 3)), bias=np.ones(4), stride=2,
              padding=1, name="c1"), Op("relu"),
        Piece("conv2d", rng.standard_normal((4, 1, 3, 1)), groups=4, padding=(1, 0),
              dilation=(2, 1), name="dw"),
        Op("maxpool", kernel_size=(2, 1), stride=1), Op("flatten"),
        Piece("linear", rng.standard_normal((3, 40)), bias=np.ones(3), name="fc")], (2, 9, 9))
    fun, params, _ = traced_forward(net, {}, ["c1", "dw", "fc"], rng.standard_normal((5, 2, 9, 9)))
    v = rng.standard_normal((5, 3))
    d = [rng.standard_normal(p.shape) for p in params]

    def f(ps):
        return np.sum(fun(*ps) * v)

    eps = 1e-6
    fd = (f([p + eps * q for p, q in zip(params, d)])
          - f([p - eps * q for p, q in zip(params, d)])) / (2 * eps)
    grad = autograd.grad(f)(params)
    assert sum(np.vdot(g, q) for g, q in zip(grad, d)) == pytest.approx(fd, rel=1e-6)
    jvp = autograd.make_jvp(lambda ps: fun(*ps))(params)(d)[1]
    assert np.vdot(jvp, v) == pytest.approx(fd, rel=1e-6)


@pytest.mark.slow
def test_refit_restores_mlp_accuracy_at_30_percent(mlp, digits):
    """Weights-only compression loses 1.5 points; the refit on the training inputs brings
    the network within half a point of the dense accuracy."""
    net = as_sequential(mlp)
    acc0 = net.accuracy(digits.X_test, digits.y_test)
    compressed = compress_network(net.layer_specs(), 0.3)
    replace = {n: c.pieces for n, c in compressed.layers.items()}
    acc1 = net.accuracy(digits.X_test, digits.y_test, replace)
    res = refit_network(net, compressed, digits.X_train)
    acc2 = net.accuracy(digits.X_test, digits.y_test, res.pieces)
    assert acc1 < acc0 - 0.01
    assert acc2 >= acc0 - 0.005
    assert res.holdout_error_after < 0.5 * res.holdout_error_before
