"""Products with the metric ``M = w I + R^T R`` through the calibration rows ``R`` (fewer
rows than values per row): the same products, points and fits as with the dense ``M``."""

import numpy as np
import pytest

from sdf.models.compress import CompressOptions, _fit, _kron, _kron_tucker, compress_conv


def _root_problem(rng, o=9, a=8, m=4, k=3, out_rank=None):
    """A problem with a metric of ``k`` rows, built dense and through its root."""
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.3, a)[None, :, None]
    R = rng.standard_normal((k, a * m))
    M = R.T @ R + 0.3 * np.eye(a * m)
    metric = _fit.Metric(M, 0.3, R)
    return _kron._Problem(W3, M, out_rank), _kron._Problem(W3, metric, out_rank), M, metric


@pytest.mark.parametrize("k", [3, 12])  # both products through R; only the thin ones
def test_root_products_equal_the_dense_ones(rng, k):
    dense, rooted, _, _ = _root_problem(rng, k=k)
    assert rooted.thin_by_root and rooted.wide_by_root == (k == 3)
    F = rng.standard_normal((8, 3))
    np.testing.assert_allclose(rooted.apply_metric(F), dense.apply_metric(F), rtol=1e-10,
                               atol=1e-12)
    Y3 = rng.standard_normal((8, 4, 5))
    np.testing.assert_allclose(rooted.metric_times(Y3), dense.metric_times(Y3), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(rooted.WM3, dense.WM3, rtol=1e-10, atol=1e-12)
    assert rooted.c0 == pytest.approx(dense.c0, rel=1e-12)
    low_d, low_r = dense.single(), rooted.single()
    np.testing.assert_allclose(low_r.apply_metric(F.astype(np.float32)),
                               low_d.apply_metric(F.astype(np.float32)), rtol=1e-4, atol=1e-4)


def test_metric_times_is_the_product_with_m(rng):
    dense, rooted, M, _ = _root_problem(rng)
    Y3 = rng.standard_normal((8, 4, 2))
    for prob in (dense, rooted):
        np.testing.assert_allclose(prob.metric_times(Y3), M @ Y3.reshape(32, 2), rtol=1e-10)


def test_rank_hessian_product_through_the_root_equals_the_dense_one(rng):
    dense, rooted, _, _ = _root_problem(rng, out_rank=4)
    F = np.linalg.qr(rng.standard_normal((8, 3)))[0]
    X = rng.standard_normal(F.shape)
    X -= F @ (F.T @ X)
    HX = []
    for prob in (dense, rooted):
        p = _kron_tucker.rank_point(prob, F, prob.apply_metric(F))
        R, products = _kron_tucker.rank_residual(prob, p)
        HX.append((R, _kron_tucker.rank_hessvec(prob, p, products, X), p.f))
    np.testing.assert_allclose(HX[1][0], HX[0][0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(HX[1][1], HX[0][1], rtol=1e-9, atol=1e-12)
    assert HX[1][2] == pytest.approx(HX[0][2], rel=1e-12)


@pytest.mark.parametrize("out_rank", [None, 4])
def test_fit_through_the_root_reaches_the_dense_objective(rng, out_rank):
    _, _, M, metric = _root_problem(rng, out_rank=out_rank)
    W3 = _root_problem(np.random.default_rng(0))[0].W3
    F0 = rng.standard_normal((8, 3))
    newton = None if out_rank is None else _kron_tucker.RankNewton
    fits = [_kron.fit_kron(W3, given, [("random", F0)], out_rank, tol=1e-10,
                           newton=None if newton is None else newton())
            for given in (M, metric)]
    assert fits[1].objective == pytest.approx(fits[0].objective, rel=1e-9)


@pytest.mark.parametrize("method, bias", [("tucker2", False), ("weight_svd", False),
                                          ("spatial_svd", False), ("tucker2", True)])
def test_conv_fit_with_few_patches_matches_the_dense_metric(rng, method, bias, monkeypatch):
    """A wide conv with fewer patches than values per patch: the fit through the rows
    (centered ones with a bias) reaches the objective of the fit with the dense metric."""
    W = rng.standard_normal((6, 12, 3, 3))
    X = np.maximum(rng.standard_normal((1, 12, 4, 4)) + 0.3, 0.0)  # 16 patches of 108
    opts = CompressOptions(alt_tol=1e-10)
    kwargs = dict(ratio=0.5, X=X, padding=1, input_hw=(4, 4), options=opts,
                  bias=rng.standard_normal(6) if bias else None)
    rooted = compress_conv(W, method, **kwargs)
    with_root = _fit.response_metric
    monkeypatch.setattr(_fit, "response_metric",
                        lambda *args: _fit.Metric(with_root(*args).dense, args[1]))
    dense = compress_conv(W, method, **kwargs)
    assert rooted.calib_output_error == pytest.approx(dense.calib_output_error, rel=1e-5)
    assert rooted.weight_error == pytest.approx(dense.weight_error, rel=1e-4)
