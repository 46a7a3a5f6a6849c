import dataclasses

import numpy as np
import pytest

from sdf.errors import DataError, ModelError, OptionError
from sdf.models.compress import (CompressOptions, closed_form_data_aware, compress_conv,
                                 compress_linear, truncated_svd)


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
    X = np.ones((4, 2))
    X[2, 1] = np.inf
    with pytest.raises(DataError, match=r"compress_linear\('fc'\): X has 1 non-finite entries "
                                        r"\(the first at \(2, 1\): inf\)"):
        compress_linear(np.ones((3, 2)), rank=1, X=X, name="fc")
    with pytest.raises(ModelError, match=r"compress_linear\('fc'\): even rank 1 of 'svd' costs "
                                         r"0.833 of the layer's params, more than ratio=0.1"):
        compress_linear(np.ones((3, 2)), ratio=0.1, name="fc")
    with pytest.raises(ModelError, match=r"balance must be in \[0, 1\]"):
        compress_linear(np.ones((4, 4)), rank=1, balance=2.0)
    with pytest.raises(OptionError, match="CompressOptions.solver"):
        CompressOptions(solver="magic")
    with pytest.raises(OptionError, match=r"CompressOptions.tucker_tol_fun must be >= 0"):
        CompressOptions(tucker_tol_fun=-1.0)


def _whitened_objective(Wm, Wm_hat, P, w_w, w_r):
    E = Wm_hat - Wm
    return w_w * np.sum(E ** 2) + w_r * np.sum((P @ E.T) ** 2)


@pytest.mark.parametrize("n_rows, w_w, center", [(6, 0.3, False), (6, 0.0, False),
                                                   (40, 0.3, False), (40, 0.3, True)])
def test_output_side_closed_form_is_the_whitened_truncated_svd(rng, n_rows, w_w, center):
    """Fewer outputs than inputs: the closed form from ``Wm M Wm^T`` has the singular
    values and the objective of the truncated SVD of ``Wm L`` (L the root of M), with
    the rows kept (fewer than inputs; with ``w_w = 0`` M is singular) or the Gram."""
    from sdf.models.compress._fit import Calibration, WhitenedSVD, lowrank_fit

    Wm, P = rng.standard_normal((5, 12)), rng.standard_normal((n_rows, 12)) + 0.5
    calib = Calibration.from_rows(P, center=center)
    Pc = P - P.mean(axis=0) if center else P
    w_r = 0.7
    M = w_w * np.eye(12) + w_r * Pc.T @ Pc
    lam, V = np.linalg.eigh(M)
    L = V * np.sqrt(np.clip(lam, 0, None))
    s = np.linalg.svd(Wm @ L, compute_uv=False)
    fit = WhitenedSVD(Wm, calib, w_w, w_r)
    np.testing.assert_allclose(fit.s, s, rtol=1e-9, atol=1e-9 * s[0])
    for rank in (1, 3, 5):
        A, B = fit.factors(rank)
        assert _whitened_objective(Wm, A @ B.T, Pc, w_w, w_r) == pytest.approx(
            np.sum(s[rank:] ** 2), rel=1e-9, abs=1e-12 * s[0] ** 2)
        if w_w > 0:  # M positive definite: the optimum is unique
            A0, B0, _ = lowrank_fit(Wm, rank, np.linalg.cholesky(M))
            np.testing.assert_allclose(A @ B.T, A0 @ B0.T, atol=1e-9)


def test_few_calibration_rows_never_form_the_gram_matrix(rng):
    """With fewer rows than inputs, the weights of the two terms and the output-side
    closed form need only products with the rows (the d x d Gram is formed on demand)."""
    from sdf.models.compress._fit import Calibration, WhitenedSVD, term_weights

    Wm, P = rng.standard_normal((4, 30)), rng.standard_normal((10, 30))
    calib = Calibration.from_rows(P)
    w_w, w_r = term_weights(Wm, calib, 0.5)
    WhitenedSVD(Wm, calib, w_w, w_r).factors(2)
    assert "gram" not in vars(calib)
    np.testing.assert_allclose(calib.gram, P.T @ P)
    assert w_r == pytest.approx(0.5 / np.sum((P @ Wm.T) ** 2))


def test_wide_channel_svd_matches_the_whitened_truncated_svd(rng):
    """A conv with fewer outputs than patch values: the channel SVD's calibration error
    is that of the whitened truncated SVD of its unfolding."""
    from sdf.models.compress import compress_conv, im2col

    W = rng.standard_normal((4, 6, 3, 3))
    X = np.maximum(rng.standard_normal((2, 6, 5, 5)) + 0.3, 0.0)  # 50 patches of 54
    res = compress_conv(W, "channel_svd", rank=2, X=X, padding=1, balance=0.5)
    P = im2col(X, (3, 3), (1, 1), (1, 1), (1, 1))
    Wm = W.reshape(4, -1)
    M = 0.5 / np.sum(Wm ** 2) * np.eye(54) + 0.5 / np.sum((P @ Wm.T) ** 2) * (P.T @ P)
    L = np.linalg.cholesky(M)
    U, s, Vt = np.linalg.svd(Wm @ L, full_matrices=False)
    expected = np.linalg.solve(L.T, ((U[:, :2] * s[:2]) @ Vt[:2]).T).T
    np.testing.assert_allclose(res.dense().reshape(4, -1), expected, atol=1e-9)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_errors_stay_exact_under_a_bias_far_larger_than_the_responses(rng, kind):
    """Weights at 1e-30 with unit biases: the refitted bias cannot carry its shift (it
    rounds back to the old bias), and a response added to the bias rounds away. The
    reported calibration error counts the unrepresented shift, and ``output_error``
    differences the responses apart from the biases: both equal the error of the same
    layer at unit scale with the shift dropped (the old code reported 0.0 and 0.74)."""
    if kind == "linear":
        W, X = rng.standard_normal((5, 7)), rng.standard_normal((59, 7))
        bias = rng.standard_normal(5)
        def fit(scale):
            return compress_linear(W * scale, rank=3, X=X, bias=bias, balance=0.0)
    else:
        W, X = rng.standard_normal((9, 6, 3, 3)), rng.standard_normal((2, 6, 8, 8))
        bias = rng.standard_normal(9)
        def fit(scale):
            return compress_conv(W * scale, "weight_svd", rank=3, X=X, bias=bias,
                                 balance=0.0, padding=1)
    tiny, unit = fit(1e-30), fit(1.0)
    assert np.array_equal(tiny.pieces[-1].bias, bias)  # the shift rounded away
    # at unit scale, the same layer with its bias left unrefitted
    pieces = (*unit.pieces[:-1], dataclasses.replace(unit.pieces[-1], bias=bias))
    expected = dataclasses.replace(unit, pieces=pieces).output_error(X)
    assert tiny.output_error(X) == pytest.approx(expected, rel=1e-9)
    assert tiny.calib_output_error == pytest.approx(expected, rel=1e-9)
    assert unit.calib_output_error == pytest.approx(unit.output_error(X), rel=1e-9)
    assert unit.calib_output_error < expected
