"""Real trained weights: an MLPClassifier and a small CNN on the digits data."""

import pytest

from sdf.models.compress import LayerSpec, compress_conv, compress_linear, compress_network


def test_trained_nets_are_accurate(mlp, cnn, digits):
    assert mlp.accuracy(digits.X_test, digits.y_test) > 0.95
    assert cnn.accuracy(digits.X_test, digits.y_test) > 0.95


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_data_aware_at_half_params_beats_svd_on_held_out(which, mlp, cnn, digits):
    net = {"mlp": mlp, "cnn": cnn}[which]
    calib, test = net.layer_inputs(digits.X_calib), net.layer_inputs(digits.X_test)
    ratios = {}
    for name, p in net.layers.items():
        if p.kind != "linear":
            continue
        plain = compress_linear(p.weight, ratio=0.5, bias=p.bias)
        aware = compress_linear(p.weight, ratio=0.5, bias=p.bias, X=calib[name], balance=0.99)
        ratios[name] = aware.output_error(test[name]) / plain.output_error(test[name])
    assert max(ratios.values()) <= 0.7
    hidden = [r for n, r in ratios.items() if n != list(net.layers)[-1]]
    assert max(hidden) <= 0.5


def test_conv_data_aware_on_cnn(cnn, digits):
    p = cnn.layers["conv2"]
    X, X_test = cnn.layer_inputs(digits.X_calib)["conv2"], cnn.layer_inputs(digits.X_test)["conv2"]
    geo = dict(stride=p.stride, padding=p.padding, bias=p.bias)
    plain = compress_conv(p.weight, "channel_svd", ratio=0.5, **geo)
    aware = compress_conv(p.weight, "channel_svd", ratio=0.5, X=X, balance=0.99, **geo)
    assert aware.output_error(X_test) <= 0.7 * plain.output_error(X_test)


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_network_accuracy_at_half_params(which, mlp, cnn, digits):
    net = {"mlp": mlp, "cnn": cnn}[which]
    calib, test = net.layer_inputs(digits.X_calib), net.layer_inputs(digits.X_test)
    acc0 = net.accuracy(digits.X_test, digits.y_test)
    accs = {}
    for aware in (False, True):
        specs = {n: LayerSpec(p, X=calib[n] if aware else None, X_test=test[n])
                 for n, p in net.layers.items()}
        res = compress_network(specs, 0.5, balance=0.99)
        assert res.params_after <= 0.5 * res.params_before
        accs[aware] = net.accuracy(digits.X_test, digits.y_test,
                                   {n: c.pieces for n, c in res.layers.items()})
    assert accs[True] >= accs[False] - 0.005
    assert accs[True] >= acc0 - 0.03
