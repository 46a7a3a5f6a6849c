"""Products with the metric ``M = w I + R^T R`` through the calibration rows ``R`` (fewer
rows than values per row): the same products, points and fits as with the dense ``M``."""

import numpy as np
import pytest

from sdf.models.compress import (CompressOptions, _fit, _kron, _kron_tucker, _roots,
                                 compress_conv, im2col)


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
    """A wide conv with fewer patches than values per patch: the fit through the rows or
    the maps (centered ones with a bias) reaches the objective of the fit with the dense
    metric from the same start (the generalised SVD's Kronecker factors differ: partial
    traces through the rows, the nearest Kronecker product with the dense metric). Where
    the patches are fewer than the columns of ``K`` (``r m``), the fit through them never
    forms ``K^T M K`` (``(r m)^2`` entries and an ``(r m)^3`` factorization; a 16x512x7x7
    conv's weight SVD took more than 10 minutes that way)."""
    monkeypatch.setattr(_kron, "nearest_kron_start", lambda *args: None)
    W = rng.standard_normal((6, 12, 3, 3))
    X = np.maximum(rng.standard_normal((1, 12, 4, 4)) + 0.3, 0.0)  # 16 patches of 108
    opts = CompressOptions(alt_tol=1e-10)
    kwargs = dict(ratio=0.5, X=X, padding=1, input_hw=(4, 4), options=opts,
                  bias=rng.standard_normal(6) if bias else None)
    formed = _kron._Problem.gram_k

    def gram_k(prob, F, MF):
        few = prob.kroot is not None and prob.kroot.rows < F.shape[1] * prob.shape[2]
        assert not few, "K^T M K formed through fewer rows than its order"
        return formed(prob, F, MF)

    monkeypatch.setattr(_kron._Problem, "gram_k", gram_k)
    rooted = compress_conv(W, method, **kwargs)
    with_root = _fit.response_metric
    monkeypatch.setattr(_fit, "response_metric",
                        lambda *args: _fit.Metric(with_root(*args).dense, args[1]))
    dense = compress_conv(W, method, **kwargs)
    assert rooted.calib_output_error == pytest.approx(dense.calib_output_error, rel=1e-5)
    assert rooted.weight_error == pytest.approx(dense.weight_error, rel=1e-4)


GEOMETRIES = [  # kernel, stride, padding, dilation, split
    ((3, 3), (1, 1), (1, 1), (1, 1), "weight"),
    ((3, 3), (2, 1), (0, 1), (1, 2), "weight"),
    ((3, 2), (1, 2), (1, 0), (2, 1), "spatial"),
    ((5, 3), (1, 1), (2, 1), (1, 1), "spatial"),
]


def _patch_metric(rng, geometry, center, n=1, c=10, hw=(4, 5), w=0.3, w_r=0.7):
    """Maps with fewer patches ``P`` than values per patch, the split ``(a, m)`` and the
    metric ``w I + w_r P_c^T P_c`` with its rows and its maps."""
    kernel, stride, padding, dilation, split = geometry
    x = np.maximum(rng.standard_normal((n, c) + hw) + 0.3, 0.0)
    P = im2col(x, kernel, stride, padding, dilation)
    mean = P.mean(axis=0) if center else None
    Pc = P if mean is None else P - mean
    a, m = (c, kernel[0] * kernel[1]) if split == "weight" else (c * kernel[0], kernel[1])
    maps = _roots.PatchMaps.from_maps(x, kernel, stride, padding, dilation)
    R = np.sqrt(w_r) * Pc
    metric = _fit.Metric(w * np.eye(P.shape[1]) + R.T @ R, w, R, (maps, mean, np.sqrt(w_r)))
    return metric, R, a, m


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("center", [False, True])
def test_patch_root_products_are_those_of_the_patches(rng, geometry, center):
    metric, R, a, m = _patch_metric(rng, geometry, center)
    patches, rows = metric.kron_root(a, m), _roots.RowsRoot(R, a, m)
    assert isinstance(patches, _roots.PatchRoot)
    F, Z = rng.standard_normal((a, 3)), rng.standard_normal((R.shape[0], m, 3))
    image = patches.image(F)
    np.testing.assert_allclose(image.transpose(0, 2, 1).reshape(-1, 3 * m),
                               R @ np.kron(F, np.eye(m)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(image, rows.image(F), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(patches.back(Z), rows.back(Z), rtol=1e-12, atol=1e-12)
    low = patches.astype(np.float32)
    assert low.image(F.astype(np.float32)).dtype == np.float32
    assert low.back(Z.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(low.back(Z.astype(np.float32)), rows.back(Z), rtol=1e-4,
                               atol=1e-4)
    # partial traces: over a exact, over m exact in its trace (edges approximated)
    (pm, pa), (rm, ra) = patches.traces(), rows.traces()
    np.testing.assert_allclose(pa, ra, rtol=1e-12, atol=1e-12)
    G = R.T @ R
    np.testing.assert_allclose(ra, np.einsum("anam->nm", G.reshape(a, m, a, m)), rtol=1e-12)
    np.testing.assert_allclose(rm, np.einsum("anbn->ab", G.reshape(a, m, a, m)), rtol=1e-12)
    assert np.trace(pm) == pytest.approx(np.trace(rm), rel=1e-12)


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[3]])
def test_patch_partial_trace_over_the_kernel_is_close_on_large_maps(rng, geometry):
    """The partial trace over ``m`` drops only the maps' edges (a preconditioner's and a
    start's factor): close to the exact one on 16x16 maps."""
    metric, R, a, m = _patch_metric(rng, geometry, center=True, n=2, c=3, hw=(16, 16))
    approx, exact = metric.kron_root(a, m).traces()[0], _roots.RowsRoot(R, a, m).traces()[0]
    assert np.linalg.norm(approx - exact) < 0.1 * np.linalg.norm(exact)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("through", ["maps", "rows"])
def test_image_route_points_and_hessian_products_equal_the_dense_ones(rng, geometry, through):
    """The image route (``M K`` kept as ``R K``): the same closed-form ``C``, objective,
    gradient, Hessian products and ``F`` steps as the dense ``M K``."""
    metric, R, a, m = _patch_metric(rng, geometry, center=True)
    if through == "rows":
        metric = _fit.Metric(metric.dense, metric.scale, R)
    o, r = 5, 3
    W3 = rng.standard_normal((o, a, m))
    dense, image = _kron._Problem(W3, metric.dense, None, r), _kron._Problem(W3, metric, None, r)
    assert dense.kroot is None and image.kroot is not None
    F = np.linalg.qr(rng.standard_normal((a, r)))[0]
    pd, pi = (prob.point(F, prob.apply_metric(F)) for prob in (dense, image))
    assert pi.f == pytest.approx(pd.f, rel=1e-12)
    np.testing.assert_allclose(pi.C, pd.C, rtol=1e-10, atol=1e-12)
    (Rd, Q4d), (Ri, Q4i) = dense.residual(pd), image.residual(pi)
    np.testing.assert_allclose(Ri, Rd, rtol=1e-10, atol=1e-12)
    X = rng.standard_normal((a, r))
    X -= F @ (F.T @ X)
    Hd = dense.hessvec(pd, _kron._curvature(pd, Q4d, np.float64), X, dense.apply_metric(X))
    Hi = image.hessvec(pi, _kron._curvature(pi, Q4i, np.float64, image=True), X,
                       image.apply_metric(X))
    np.testing.assert_allclose(Hi, Hd, rtol=1e-9, atol=1e-12)
    image.Ma_inv = dense.Ma_inv  # the preconditioners differ (partial traces approximated)
    C = rng.standard_normal((o, r, m))
    Xd, Xi = (prob.f_step(F, prob.apply_metric(F), C, 3) for prob in (dense, image))
    np.testing.assert_allclose(Xi[0], Xd[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(Xi[1], image.apply_metric(Xi[0]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("route", ["dense", "image"])
def test_formed_gram_is_k_t_m_k_in_lam_major_order(rng, route):
    """``gram_k`` is ``K^T M K`` (``K = kron(F, I_m)``, columns ``(s, lam)``) with its rows
    and columns permuted to ``(lam, s)``; its Cholesky solves take and give rows in
    ``(s, lam)`` order, in float64 and, for the products, in float32."""
    metric, R, a, m = _patch_metric(rng, GEOMETRIES[0], center=True)
    r = 2  # r m = 18, below the 20 patches: formed, not by the Woodbury identity
    W3 = rng.standard_normal((5, a, m))
    prob = _kron._Problem(W3, metric.dense if route == "dense" else metric, None,
                          None if route == "dense" else r)
    assert (prob.kroot is None) == (route == "dense") and not prob.low_rank_gram(r)
    F = rng.standard_normal((a, r))
    K = np.kron(F, np.eye(m))
    G = K.T @ metric.dense @ K                       # (s, lam) order
    order = np.arange(r * m).reshape(r, m).T.ravel()  # (lam, s) position -> (s, lam) index
    np.testing.assert_allclose(prob.gram_k(F, prob.apply_metric(F)), G[np.ix_(order, order)],
                               rtol=1e-10, atol=1e-12 * np.abs(G).max())
    gram = prob.gram_solve(F, prob.apply_metric(F))
    assert isinstance(gram, _kron._CholeskyGram)
    B = rng.standard_normal((3, r * m))
    want = np.linalg.solve(G, B.T).T
    np.testing.assert_allclose(gram.solve(B), want, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gram.times_inverse(np.float64)(B), want, rtol=1e-9, atol=1e-11)
    low = gram.times_inverse(np.float32)(B.astype(np.float32))
    assert low.dtype == np.float32
    assert np.linalg.norm(low - want) < 1e-3 * np.linalg.norm(want)


@pytest.mark.parametrize("orthonormal", [True, False])
def test_woodbury_gram_solves_like_the_formed_gram(rng, orthonormal):
    """With fewer calibration rows (20 patches) than ``r m`` (27), ``K^T M K`` is an
    identity part plus a low-rank product: its solves by the Woodbury identity equal the
    formed matrix's, for any full-rank ``F`` and in float32 to its rounding."""
    metric, R, a, m = _patch_metric(rng, GEOMETRIES[0], center=True)
    r = 3
    W3 = rng.standard_normal((5, a, m))
    dense, image = _kron._Problem(W3, metric.dense, None, r), _kron._Problem(W3, metric, None, r)
    assert image.low_rank_gram(r) and R.shape[0] < r * m
    F = rng.standard_normal((a, r))
    if orthonormal:
        F = np.linalg.qr(F)[0]
    gram = image.gram_solve(F, image.apply_metric(F))
    assert isinstance(gram, _kron._WoodburyGram) and (gram.ftf_inv is None) == orthonormal
    G = dense.gram_k(F, dense.apply_metric(F))  # in (lam, s) order
    B = rng.standard_normal((4, r * m))
    want = _kron._s_major(np.linalg.solve(G, _kron._lam_major(B, m).T).T, m)
    np.testing.assert_allclose(gram.solve(B), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gram.times_inverse(np.float64)(B), want, rtol=1e-10, atol=1e-12)
    low = gram.times_inverse(np.float32)(B.astype(np.float32))
    assert low.dtype == np.float32
    np.testing.assert_allclose(low, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("out_rank", [None, 2])
def test_closed_form_c_on_the_woodbury_route_equals_the_dense_one(rng, out_rank):
    metric, R, a, m = _patch_metric(rng, GEOMETRIES[0], center=False)
    r = 3
    W3 = rng.standard_normal((5, a, m))
    dense = _kron._Problem(W3, metric.dense, out_rank, r)
    image = _kron._Problem(W3, metric, out_rank, r)
    assert image.low_rank_gram(r)
    F = rng.standard_normal((a, r))  # not orthonormal: an alternation's step
    (Cd, fd), (Ci, fi) = (prob.c_step(F, prob.apply_metric(F)) for prob in (dense, image))
    assert fi == pytest.approx(fd, rel=1e-12)
    np.testing.assert_allclose(Ci, Cd, rtol=1e-9, atol=1e-12)


def test_image_route_only_where_it_applies(rng):
    metric, R, a, m = _patch_metric(rng, GEOMETRIES[0], center=False)
    W3 = rng.standard_normal((5, a, m))
    assert _kron._Problem(W3, metric, None, 3).kroot is not None
    assert _kron._Problem(W3, metric, 2, 3).kroot is not None  # an output rank too
    assert _kron._Problem(W3, metric, None).kroot is None  # no rank to weigh the cost by
    W1 = rng.standard_normal((5, a * m, 1))  # m = 1: M is its own Kronecker product
    assert _kron._Problem(W1, _fit.Metric(metric.dense, metric.scale, R), None, 3).kroot is None


def test_partial_traces_give_a_kronecker_metric_exactly(rng):
    a, m = 20, 3
    Ra, Rm = rng.standard_normal((3, a)), rng.standard_normal((1, m))
    R = np.kron(Ra, Rm)  # R^T R = (Ra^T Ra) (x) (Rm^T Rm)
    metric = _fit.Metric(R.T @ R, 0.0, R)
    prob = _kron._Problem(rng.standard_normal((4, a, m)), metric, None, 2)
    assert prob.kroot is not None
    Ma, Mm = prob.kron_pair()
    np.testing.assert_allclose(np.kron(Ma, Mm) / np.trace(R.T @ R), R.T @ R, rtol=1e-10,
                               atol=1e-12)


def _assert_same_rank_products(dense, image, F, X):
    """Tucker-2's objective, gradient and Hessian product along ``X`` at ``F``: the image
    route's equal the dense route's."""
    out = []
    for prob in (dense, image):
        p = _kron_tucker.rank_point(prob, F, prob.apply_metric(F))
        Rg, products = _kron_tucker.rank_residual(prob, p)
        out.append((p.f, Rg, _kron_tucker.rank_hessvec(prob, p, products, X)))
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-12)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out[1][2], out[0][2], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[2]])
def test_rank_products_on_the_image_route_equal_the_dense_ones(rng, geometry):
    """Tucker-2's point, gradient and Hessian products with ``M K`` kept as its image."""
    metric, R, a, m = _patch_metric(rng, geometry, center=True)
    o, r, out_rank = 6, 3, 2
    W3 = rng.standard_normal((o, a, m))
    dense = _kron._Problem(W3, metric.dense, out_rank, r)
    image = _kron._Problem(W3, metric, out_rank, r)
    assert dense.kroot is None and image.kroot is not None
    F = np.linalg.qr(rng.standard_normal((a, r)))[0]
    X = rng.standard_normal((a, r))
    X -= F @ (F.T @ X)
    _assert_same_rank_products(dense, image, F, X)


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_metric_kron_pair_of_a_kronecker_root_is_exact(rng, shift):
    """Through the root, the Kronecker pair is the partial traces of ``M - shift I``
    (exact for a Kronecker product); with the matrix formed, the nearest Kronecker
    product; the two agree on ``kron(A, B)``."""
    a, m, w = 20, 3, 0.3
    R = np.kron(rng.standard_normal((3, a)), rng.standard_normal((1, m)))
    M = w * np.eye(a * m) + R.T @ R
    calib = _fit.Calibration.from_rows(R)
    rooted = _fit.response_metric(calib, w, 1.0)
    assert rooted.matrix is None and rooted.root is not None
    A, B = rooted.kron_pair(a, m, shift)
    assert "dense" not in rooted.__dict__  # the metric was never formed
    if shift == w:  # M - w I = R^T R is a Kronecker product: both routes give it exactly
        np.testing.assert_allclose(np.kron(A, B), R.T @ R, rtol=1e-10, atol=1e-12)
        Ad, Bd = _fit.Metric(M, w).kron_pair(a, m, shift)
        np.testing.assert_allclose(np.kron(Ad, Bd), R.T @ R, rtol=1e-8, atol=1e-10)
    assert np.trace(np.kron(A, B)) == pytest.approx(np.trace(M) - shift * a * m, rel=1e-10)


def test_response_metric_keeps_the_calibration_rows_unscaled(rng):
    """The root is the calibration's rows themselves (no scaled copy of thousands of
    patches); its weight enters the products, the rows' Kronecker root, the dense matrix
    and Tucker-2's products on the image route alike."""
    a, m, w_w, w_r = 6, 4, 0.3, 0.7
    calib = _fit.Calibration.from_rows(rng.standard_normal((5, a * m)))
    metric = _fit.response_metric(calib, w_w, w_r)
    assert metric.root is calib.rows and metric.root_weight == w_r
    M = _fit.metric_matrix(calib, w_w, w_r)
    E = rng.standard_normal((3, a * m))
    np.testing.assert_allclose(metric.times(E), E @ M, rtol=1e-12)
    R = metric.weighted_root()
    np.testing.assert_allclose(w_w * np.eye(a * m) + R.T @ R, M, rtol=1e-12)
    F = rng.standard_normal((a, 2))
    np.testing.assert_allclose(metric.kron_root(a, m).image(F).transpose(0, 2, 1).reshape(5, -1),
                               R @ np.kron(F, np.eye(m)), rtol=1e-12)
    # the image route keeps no rows; Tucker-2's products through it carry the weight
    W3 = rng.standard_normal((4, a, m))
    assert _kron._Problem(W3, metric, None, 2).R is None
    image, dense = _kron._Problem(W3, metric, 2, 2), _kron._Problem(W3, _fit.Metric(M), 2)
    assert image.kroot is not None and image.R is None
    F = np.linalg.qr(F)[0]
    X = rng.standard_normal((a, 2))
    X -= F @ (F.T @ X)
    _assert_same_rank_products(dense, image, F, X)


def test_data_aware_cp_through_the_root_never_forms_the_metric(rng):
    """The CP response rounds on a thin metric (fewer patches than values): products and
    preconditioners through the root, the objective that of the returned factors."""
    from sdf.models.compress import _cp

    W = rng.standard_normal((6, 12, 3, 3))
    X = np.maximum(rng.standard_normal((1, 12, 4, 4)) + 0.3, 0.0)
    calib = _fit.Calibration.from_rows(im2col(X, 3, padding=1))
    w_w, w_r = _fit.term_weights(W.reshape(6, -1), calib, 0.9)
    metric = _fit.response_metric(calib, w_w, w_r)
    start = _cp.als_weight(W, _cp.spatial_slices_start(W, 8)[0], 30, 1e-6, 0).factors
    fit = _cp.als_response(W, start, metric, 20, 1e-8)
    assert "dense" not in metric.__dict__
    M = _fit.metric_matrix(calib, w_w, w_r)
    assert fit.objective == pytest.approx(
        _cp.response_objective(W.reshape(6, -1), fit.factors, M), rel=1e-10)
    assert fit.objective < _cp.response_objective(W.reshape(6, -1), start, M)


def test_woodbury_products_keep_their_accuracy_in_a_float32_fit(rng):
    """The Woodbury form's two terms cancel where ``B`` lies in the span of the rows: its
    products run in float64 whatever the dtype asked for, so a float32 CG's products with
    ``G^{-1}`` are those of ``G`` to float32 rounding even when the identity part is tiny
    (a weight share of 1e-6: the capacitance matrix's condition is about 1e9)."""
    metric, R, a, m = _patch_metric(rng, GEOMETRIES[0], center=False, w=1e-6)
    r = 3
    W3 = rng.standard_normal((5, a, m))
    dense, image = _kron._Problem(W3, metric.dense, None, r), _kron._Problem(W3, metric, None, r)
    F = np.linalg.qr(rng.standard_normal((a, r)))[0]
    gram = image.gram_solve(F, image.apply_metric(F))
    assert isinstance(gram, _kron._WoodburyGram)
    rhs = image.weight_times(F).astype(np.float32)  # in the span of the rows, mostly
    G = dense.gram_k(F, dense.apply_metric(F))  # in (lam, s) order
    want = _kron._s_major(np.linalg.solve(G, _kron._lam_major(rhs.astype(np.float64), m).T).T, m)
    low = gram.times_inverse(np.float32)(rhs)
    assert low.dtype == np.float32
    assert np.linalg.norm(low - want) < 1e-5 * np.linalg.norm(want)
