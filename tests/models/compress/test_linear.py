import numpy as np
import pytest

from sdf.errors import DataError, ModelError, OptionError
from sdf.models.compress import (CompressOptions, closed_form_data_aware, compress_linear,
                                 truncated_svd)


def test_truncated_svd_is_eckart_young(rng):
    W = rng.standard_normal((20, 12))
    A, B = truncated_svd(W, 5)
    s = np.linalg.svd(W, compute_uv=False)
    assert np.linalg.norm(W - A @ B.T) == pytest.approx(np.sqrt(np.sum(s[5:] ** 2)))


def test_ratio_respects_budget_and_counts(rng):
    res = compress_linear(rng.standard_normal((64, 32)), ratio=0.5, bias=np.zeros(64))
    assert res.params_after <= 0.5 * res.params_before
    assert res.params_after == res.rank * (64 + 32) + 64
    assert res.macs_after == res.rank * 96 and res.macs_before == 64 * 32


def test_full_rank_forward_reproduces_layer(rng):
    W, b, x = rng.standard_normal((10, 7)), rng.standard_normal(10), rng.standard_normal((5, 7))
    res = compress_linear(W, rank=7, bias=b)
    np.testing.assert_allclose(res.forward(x), x @ W.T + b, atol=1e-10)
    assert res.dense().shape == (10, 7)


def test_data_aware_numpy_is_closed_form(rng):
    W, X = rng.standard_normal((30, 20)), rng.standard_normal((100, 20))
    res = compress_linear(W, rank=6, X=X, balance=1.0)
    cf = closed_form_data_aware(W, X, 6)
    assert np.linalg.norm(res.dense() - cf) / np.linalg.norm(cf) < 1e-10


def test_data_aware_lowers_calibration_output_error(rng):
    W = rng.standard_normal((30, 20))
    X = rng.standard_normal((100, 20)) * np.linspace(0.1, 3, 20)
    plain = compress_linear(W, rank=6)
    aware = compress_linear(W, rank=6, X=X, balance=0.9)
    assert aware.output_error(X) < 0.8 * plain.output_error(X)
    assert aware.calib_output_error == pytest.approx(aware.output_error(X))


def test_engine_fit_reproduces_closed_form_optimum(rng):
    """Weight term off: the fusion model's fit is the whitened truncated SVD (1e-6)."""
    W, X = rng.standard_normal((40, 24)), rng.standard_normal((200, 24))
    opts = CompressOptions(solver="engine", max_iter=2000, tol_fun=1e-22,
                           engine_options={"tol_x": 1e-15})
    res = compress_linear(W, rank=8, X=X, balance=1.0, options=opts)
    cf = closed_form_data_aware(W, X, 8)
    assert res.info.solver == "engine" and "weight" not in res.info.relerr
    assert np.linalg.norm(res.dense() - cf) / np.linalg.norm(cf) < 1e-6


def test_engine_fit_with_both_terms_matches_numpy(rng):
    W, X = rng.standard_normal((30, 16)), rng.standard_normal((80, 16))
    opts = CompressOptions(solver="engine", max_iter=1000, tol_fun=1e-20,
                           engine_options={"tol_x": 1e-14})
    eng = compress_linear(W, rank=5, X=X, balance=0.5, options=opts)
    ref = compress_linear(W, rank=5, X=X, balance=0.5)
    assert set(eng.info.relerr) == {"weight", "response"}
    assert np.linalg.norm(eng.dense() - ref.dense()) / np.linalg.norm(ref.dense()) < 1e-5


def test_bias_refit_is_affine_data_aware_optimum(rng):
    W, b = rng.standard_normal((8, 6)), rng.standard_normal(8)
    X = rng.standard_normal((200, 6)) + 5.0
    res = compress_linear(W, rank=2, X=X, bias=b, balance=1.0)
    mu = X.mean(axis=0)
    W_hat = closed_form_data_aware(W, X - mu, 2)
    assert np.allclose(res.dense(), W_hat, atol=1e-8)
    assert np.allclose(res.pieces[-1].bias, b + (W - W_hat) @ mu, atol=1e-8)
    y = X @ W.T + b
    err = np.linalg.norm(res.forward(X) - y) / np.linalg.norm(X @ W.T)
    assert res.calib_output_error == pytest.approx(err, rel=1e-10)


def test_bias_refit_lowers_error_on_shifted_inputs(rng):
    W, b = rng.standard_normal((8, 6)), rng.standard_normal(8)
    X = rng.standard_normal((200, 6)) + 5.0
    X_test = rng.standard_normal((200, 6)) + 5.0
    with_bias = compress_linear(W, rank=2, X=X, bias=b, balance=0.99)
    without = compress_linear(W, rank=2, X=X, balance=0.99)
    assert with_bias.output_error(X_test) < without.output_error(X_test)


def test_tol_picks_smallest_rank(rng):
    W = rng.standard_normal((20, 20)) @ np.diag(0.5 ** np.arange(20))
    res = compress_linear(W, tol=0.01)
    assert res.weight_error <= 0.01
    assert compress_linear(W, rank=res.rank - 1).weight_error > 0.01
    assert res.curve.errors[res.rank - 1] == pytest.approx(res.weight_error)


def test_inputs_not_modified(rng):
    W, X = rng.standard_normal((8, 6)), rng.standard_normal((20, 6))
    W0, X0 = W.copy(), X.copy()
    compress_linear(W, rank=2, X=X)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(X, X0)


def test_errors_name_the_place(rng):
    with pytest.raises(ModelError, match=r"compress_linear\('fc'\): W has shape \(2, 3, 4\)"):
        compress_linear(np.zeros((2, 3, 4)), rank=1, name="fc")
    with pytest.raises(ModelError, match="give exactly one of rank, ratio or tol, got rank, ratio"):
        compress_linear(np.ones((4, 4)), rank=1, ratio=0.5)
    with pytest.raises(DataError, match=r"X has shape \(5, 3\) but the layer reads \(n, 4\)"):
        compress_linear(np.ones((4, 4)), rank=1, X=np.ones((5, 3)))
    with pytest.raises(ModelError, match=r"balance must be in \[0, 1\]"):
        compress_linear(np.ones((4, 4)), rank=1, balance=2.0)
    with pytest.raises(OptionError, match="CompressOptions.solver"):
        CompressOptions(solver="magic")
    with pytest.raises(OptionError, match=r"CompressOptions.tucker_tol_fun must be >= 0"):
        CompressOptions(tucker_tol_fun=-1.0)
