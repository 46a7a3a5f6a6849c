"""Calibration statistics of conv layers straight from the feature maps, and the errors
reported from them."""

import numpy as np
import pytest

import sdf.models.compress.conv as conv_module
from sdf.models.compress import (CompressOptions, Piece, _fit, compress_conv,
                                 compress_linear, im2col)
from sdf.models.compress._roots import DenseRows, PatchMaps
from sdf.models.compress.linear import calib_error

GEOMETRIES = [  # (map shape, kernel, padding, dilation)
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1)),
    ((2, 3, 7, 6), (3, 2), (0, 2), (1, 1)),
    ((1, 2, 9, 8), (3, 3), (2, 1), (2, 3)),
    ((2, 2, 5, 5), (5, 5), (4, 4), (1, 1)),
    ((1, 2, 4, 4), (3, 3), (3, 3), (3, 1)),
    ((2, 4, 6, 6), (1, 1), (0, 0), (1, 1)),
]


@pytest.mark.parametrize("shape, kernel, padding, dilation", GEOMETRIES)
def test_patch_gram_is_the_gram_of_the_im2col_patches(rng, shape, kernel, padding, dilation):
    x = rng.standard_normal(shape)
    P = im2col(x, kernel, 1, padding, dilation)
    G, col = _fit.patch_gram(x, kernel, padding, dilation)
    np.testing.assert_allclose(G, P.T @ P, rtol=0, atol=1e-12 * np.abs(P.T @ P).max())
    np.testing.assert_allclose(col, P.sum(axis=0), rtol=0, atol=1e-12 * np.abs(P).sum())


@pytest.mark.parametrize("center", [False, True])
def test_calibration_from_maps_equals_the_one_from_rows(rng, center):
    x = rng.standard_normal((3, 4, 6, 5)) + 1.5
    maps = _fit.Calibration.from_maps(x, (3, 3), (1, 1), (1, 1), center=center)
    rows = _fit.Calibration.from_rows(im2col(x, 3, 1, 1), center=center)
    assert maps is not None and maps.n_rows == rows.n_rows and not maps.sampled
    np.testing.assert_allclose(maps.gram, rows.gram, rtol=0, atol=1e-12 * np.abs(rows.gram).max())
    if center:
        np.testing.assert_allclose(maps.mean, rows.mean, rtol=1e-12)
    else:
        assert maps.mean is None


def test_calibration_from_maps_declines_few_patches_and_heavy_centering(rng):
    # 2 x 2 x 2 = 8 patches of 36 values: the rows are the cheaper root
    assert _fit.Calibration.from_maps(rng.standard_normal((2, 4, 2, 2)), (3, 3), (1, 1),
                                      (1, 1)) is None
    # a mean 1e3 times the spread: subtracting n mu mu^T would cancel about 12 digits
    x = 1e3 + rng.standard_normal((3, 2, 6, 6))
    assert _fit.Calibration.from_maps(x, (3, 3), (0, 0), (1, 1), center=True) is None
    assert _fit.Calibration.from_maps(x, (3, 3), (0, 0), (1, 1)) is not None


@pytest.mark.parametrize("center", [False, True])
def test_output_error_from_the_gram_equals_the_one_on_the_rows(rng, center):
    P = rng.standard_normal((50, 12)) + 1.0
    Wm, Wm_hat, b = (rng.standard_normal((5, 12)), rng.standard_normal((5, 12)),
                     rng.standard_normal(5))
    calib = _fit.Calibration.from_rows(P, center=center)
    shift = calib.bias_shift(Wm, Wm_hat)
    bias = b if center else None
    new_bias = None if shift is None else b + shift
    expected = calib_error(P, Wm, Wm_hat, bias, new_bias)
    change = None if new_bias is None else new_bias - b
    assert calib.output_error(Wm, Wm_hat, change) == pytest.approx(expected, rel=1e-12)
    if center:  # the bias left as it was: the mean's response change counts
        unrefitted = calib_error(P, Wm, Wm_hat, bias, bias)
        assert calib.output_error(Wm, Wm_hat) == pytest.approx(unrefitted, rel=1e-12)


def test_output_error_of_a_sampled_calibration_is_left_to_the_rows(rng):
    calib = _fit.Calibration.from_rows(rng.standard_normal((50, 4)), max_rows=20)
    assert calib.sampled and calib.output_error(np.ones((2, 4)), np.zeros((2, 4))) is None


@pytest.mark.parametrize("method", ["weight_svd", "spatial_svd", "tucker2"])
@pytest.mark.parametrize("bias, stride, max_rows", [
    (False, 1, 20000), (True, 1, 20000), (False, 2, 20000), (True, 1, 100)])
def test_reported_errors_are_those_of_the_returned_layer(rng, method, bias, stride, max_rows):
    """From the maps (stride 1), from the patches (stride 2) or from a sample of them
    (``max_calib_rows``): the reported output error is the forward pass's."""
    W = rng.standard_normal((8, 5, 3, 3))
    b = rng.standard_normal(8) if bias else None
    X = np.maximum(rng.standard_normal((3, 5, 8, 8)) + 0.3, 0.0)
    rank = (4, 3) if method == "tucker2" else 3
    res = compress_conv(W, method, rank=rank, X=X, bias=b, padding=1, stride=stride,
                        options=CompressOptions(max_calib_rows=max_rows))
    y = res.original.forward(X)
    y0 = y if b is None else y - b[:, None, None]
    err = np.linalg.norm(res.forward(X) - y) / np.linalg.norm(y0)
    assert res.calib_output_error == pytest.approx(err, rel=1e-10)
    W_hat = res.dense()
    assert res.weight_error == pytest.approx(
        np.linalg.norm(W_hat - W) / np.linalg.norm(W), rel=1e-12)


@pytest.mark.parametrize("bias, max_rows", [(False, 20000), (True, 20000), (True, 30)])
def test_linear_reported_output_error_is_that_of_the_returned_layer(rng, bias, max_rows):
    W = rng.standard_normal((12, 8))
    b = rng.standard_normal(12) if bias else None
    X = rng.standard_normal((60, 8)) + 0.5
    res = compress_linear(W, rank=3, X=X, bias=b,
                          options=CompressOptions(max_calib_rows=max_rows))
    y = res.original.forward(X)
    y0 = y if b is None else y - b
    err = np.linalg.norm(res.forward(X) - y) / np.linalg.norm(y0)
    assert res.calib_output_error == pytest.approx(err, rel=1e-10)


@pytest.mark.parametrize("method", ["weight_svd", "spatial_svd", "tucker2", "cp", "channel_svd"])
def test_balance_one_with_unseen_inputs_keeps_the_weights_bounded(rng, method):
    """32 calibration patches of 216 values: the response alone leaves most input
    directions free (a spatial SVD's weights ran to 5e7 times their size); the weight
    term's least share keeps every fit near the weight, at a response error of a few
    1e-7 where the closed forms and alternations reach it."""
    W = rng.standard_normal((32, 24, 3, 3))
    X = np.maximum(rng.standard_normal((2, 24, 4, 4)) + 0.3, 0.0)
    res = compress_conv(W, method, ratio=0.5, X=X, padding=1, balance=1.0)
    assert res.weight_error < 1.0
    free = compress_conv(W, method, ratio=0.5, X=X, padding=1, balance=0.5)
    assert res.calib_output_error <= free.calib_output_error + 1e-6


def test_weight_share_is_kept_only_where_inputs_are_unseen(rng):
    Wm = rng.standard_normal((5, 6))
    nw = float(np.vdot(Wm, Wm))
    full = _fit.Calibration.from_rows(rng.standard_normal((40, 6)))
    assert not full.leaves_inputs_unseen()
    assert _fit.term_weights(Wm, full, 1.0)[0] == 0.0
    few = _fit.Calibration.from_rows(rng.standard_normal((4, 6)))
    dead = rng.standard_normal((40, 6))
    dead[:, 2] = 0.0
    for calib in (few, _fit.Calibration.from_rows(dead)):
        assert calib.leaves_inputs_unseen()
        w_w, w_r = _fit.term_weights(Wm, calib, 1.0)
        assert w_w == pytest.approx(_fit.MIN_WEIGHT_SHARE / nw)
        assert w_r == pytest.approx((1 - _fit.MIN_WEIGHT_SHARE) / calib.response_norm2(Wm))
        # a balance below the cap is the user's
        assert _fit.term_weights(Wm, calib, 0.9)[0] == pytest.approx(0.1 / nw)
    centered = _fit.Calibration.from_rows(rng.standard_normal((6, 6)), center=True)
    assert centered.leaves_inputs_unseen()


STRIDED = [  # (map shape, kernel, stride, padding, dilation)
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 3, 9, 8), (3, 2), (2, 1), (0, 2), (1, 1)),
    ((1, 2, 9, 8), (3, 3), (2, 3), (2, 1), (2, 3)),
    ((3, 4, 6, 6), (1, 1), (2, 2), (0, 0), (1, 1)),
]


@pytest.mark.parametrize("shape, kernel, stride, padding, dilation", STRIDED)
def test_patch_maps_statistics_are_those_of_the_im2col_patches(rng, shape, kernel, stride,
                                                               padding, dilation):
    x = rng.standard_normal(shape) + 2.0
    P = im2col(x, kernel, stride, padding, dilation)
    maps = PatchMaps.from_maps(x, kernel, stride, padding, dilation)
    mean = P.mean(axis=0)
    Pc = P - mean
    M = rng.standard_normal((5, P.shape[1]))
    assert (maps.rows, maps.dim) == P.shape
    np.testing.assert_allclose(maps.column_sums(), P.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(maps.column_sums(squares=True), (P**2).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(maps.centered_squares(mean), (Pc**2).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(maps.products(M), P @ M.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(maps.products(M, mean), Pc @ M.T, rtol=1e-12, atol=1e-12)
    # a chunk of one image at a time
    np.testing.assert_allclose(maps.gram(mean, chunk_bytes=1), Pc.T @ Pc, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(maps.gram(), P.T @ P, rtol=1e-12)


@pytest.mark.parametrize("center, stride, offset", [
    (False, 2, 1.5), (True, 2, 1.5), (True, 1, 1.5), (False, 1, 1.5), (True, 1, 1e3)])
def test_calibration_of_patch_maps_equals_the_one_from_rows(rng, center, stride, offset):
    """Stride 1 forms the Gram matrix by :func:`_fit.patch_gram`, centered by subtraction
    unless the mean dwarfs the spread (offset 1e3: then patch block by block)."""
    x = rng.standard_normal((3, 4, 7, 7)) + offset
    P = im2col(x, 3, stride, 1)
    lazy = _fit.Calibration.from_source(
        PatchMaps.from_maps(x, (3, 3), (stride, stride), (1, 1), (1, 1)), center=center)
    rows = _fit.Calibration.from_rows(P, center=center)
    Wm, A, B = (rng.standard_normal((6, 36)), rng.standard_normal((6, 2)),
                rng.standard_normal((36, 2)))
    assert lazy.n_rows == rows.n_rows and lazy.dim == rows.dim == 36
    assert lazy.response_norm2(Wm) == pytest.approx(rows.response_norm2(Wm), rel=1e-12)
    np.testing.assert_allclose(lazy.diagonal, np.diag(rows.gram), rtol=1e-12)
    change = None if not center else rng.standard_normal(6)
    expected = rows.output_error(Wm, A @ B.T, change)
    assert lazy.output_error(Wm, A @ B.T, change) == pytest.approx(expected, rel=1e-12)
    assert lazy.output_error(Wm, A @ B.T, change, factors=(A, B)) == pytest.approx(
        expected, rel=1e-12)
    # the closed form, through the responses
    L = _fit.WhitenedSVD(Wm, lazy, 0.3, 0.7)
    R = _fit.WhitenedSVD(Wm, rows, 0.3, 0.7)
    np.testing.assert_allclose(L.s, R.s, rtol=1e-10)
    metric = _fit.response_metric(lazy, 0.3, 0.7)
    np.testing.assert_allclose(metric.outer(Wm),
                               Wm @ _fit.metric_matrix(rows, 0.3, 0.7) @ Wm.T, rtol=1e-11)
    assert "gram" not in lazy.__dict__  # none of the above formed it
    scale = np.abs(rows.gram).max()
    np.testing.assert_allclose(lazy.gram, rows.gram, rtol=0, atol=1e-12 * scale)
    if center:
        np.testing.assert_allclose(lazy.mean, rows.mean, rtol=1e-12)


def test_calibration_of_patch_maps_sees_constant_and_dead_inputs(rng):
    """Centered constant maps are zero up to the mean's rounding (a diagonal by
    subtraction would keep 1e-16 of the raw energy, far above it), and a dead channel
    leaves inputs unseen."""
    const = np.full((2, 3, 6, 6), 1e3)
    lazy = _fit.Calibration.from_source(
        PatchMaps.from_maps(const, (3, 3), (1, 1), (0, 0), (1, 1)), center=True)
    assert lazy.is_zero()
    x = rng.standard_normal((2, 3, 6, 6))
    x[:, 1] = 0.0
    dead = _fit.Calibration.from_source(
        PatchMaps.from_maps(x, (3, 3), (1, 1), (0, 0), (1, 1)))
    assert not dead.is_zero() and dead.leaves_inputs_unseen()


def _through_the_gram(Wm, P, b, rank):
    """The whitened closed form through the rows' Gram matrix: ``(Wm_hat, new bias,
    calibration output error)`` at balance 0.9."""
    calib = _fit.Calibration.from_rows(P, center=b is not None)
    assert calib.stored_gram is not None
    w_w, w_r = _fit.term_weights(Wm, calib, 0.9)
    A, B = _fit.WhitenedSVD(Wm, calib, w_w, w_r).factors(rank)
    new_bias = None if b is None else b + calib.bias_shift(Wm, A @ B.T)
    return A @ B.T, new_bias, calib_error(P, Wm, A @ B.T, b, new_bias)


@pytest.mark.parametrize("bias, kernel, stride, padding, dilation", [
    (False, (3, 3), 1, 1, 1), (True, (3, 3), 1, 1, 1), (True, (3, 3), 2, 1, 1),
    (True, (3, 2), (2, 1), (0, 2), (2, 1))])
def test_channel_svd_with_many_patches_works_on_the_maps(rng, monkeypatch, bias, kernel,
                                                         stride, padding, dilation):
    """More patches (98 to 392) than values per patch (48 to 72), fewer outputs (16): the
    closed form needs the responses only, so neither the patches nor their Gram matrix
    are formed (a 128x128x7x7 layer with 12544 patches took 26 s through them, 2 s
    without), and the layer is the one the Gram matrix of the patches gives."""
    W = rng.standard_normal((16, 8, *kernel))
    b = rng.standard_normal(16) if bias else None
    X = np.maximum(rng.standard_normal((2, 8, 14, 14)) + 0.3, 0.0)
    P = im2col(X, kernel, stride, padding, dilation)
    W_hat, new_bias, err = _through_the_gram(W.reshape(16, -1), P, b, 5)

    def refuse(*args, **kwargs):
        raise AssertionError("the patches or their Gram matrix were formed")

    monkeypatch.setattr(conv_module, "im2col", refuse)
    monkeypatch.setattr(_fit.Calibration, "gram", property(refuse))
    res = compress_conv(W, "channel_svd", rank=5, X=X, bias=b, padding=padding, stride=stride,
                        dilation=dilation)
    np.testing.assert_allclose(res.dense().reshape(16, -1), W_hat, rtol=1e-9, atol=1e-9)
    assert res.calib_output_error == pytest.approx(err, rel=1e-9)
    if bias:
        np.testing.assert_allclose(res.pieces[-1].bias, new_bias, rtol=1e-9)


def test_dense_rows_statistics_block_by_block(rng):
    """A block of 3 rows at a time (the default reads 32 MB of rows at a time)."""
    P = rng.standard_normal((20, 6)) + 1e3  # a mean that dwarfs the spread
    rows = DenseRows(P, block_bytes=3 * 6 * 8)
    mean = P.mean(axis=0)
    Pc = P - mean
    M = rng.standard_normal((4, 6))
    assert (rows.rows, rows.dim) == P.shape
    np.testing.assert_allclose(rows.column_sums(), P.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(rows.column_sums(squares=True), (P**2).sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(rows.centered_squares(mean), (Pc**2).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rows.products(M, mean), Pc @ M.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rows.products(M), P @ M.T, rtol=1e-14)
    np.testing.assert_allclose(rows.gram(mean), Pc.T @ Pc, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [False, True])
def test_linear_svd_with_many_rows_needs_no_gram_matrix(rng, monkeypatch, bias):
    """More rows (80) than inputs (30), fewer outputs (12): the closed form and the
    reported error come from the responses (a 256x4096 layer with 8192 rows: 5.3 s
    through the Gram matrix, 1.0 s without), equal to the fit through the Gram matrix."""
    W = rng.standard_normal((12, 30))
    b = rng.standard_normal(12) if bias else None
    X = np.maximum(rng.standard_normal((80, 30)) + 0.3, 0.0)
    W_hat, new_bias, err = _through_the_gram(W, X, b, 4)

    def refuse(*args, **kwargs):
        raise AssertionError("the Gram matrix was formed")

    monkeypatch.setattr(_fit.Calibration, "gram", property(refuse))
    res = compress_linear(W, rank=4, X=X, bias=b)
    np.testing.assert_allclose(res.dense(), W_hat, rtol=1e-9, atol=1e-9)
    assert res.calib_output_error == pytest.approx(err, rel=1e-9)
    if bias:
        np.testing.assert_allclose(res.pieces[-1].bias, new_bias, rtol=1e-9)


@pytest.mark.parametrize("ranks", [(2, 16), (3, 10)])
def test_tucker2_with_few_outputs_and_many_patches_forms_the_gram_only_when_needed(
        rng, monkeypatch, ranks):
    """4 outputs, 144 values per patch, 200 patches: with every input channel kept the
    closed form needs only the responses, and the Gram matrix is never formed (a
    128x128x7x7 layer with 12544 patches: 8 s, now 2 s); with fewer input channels it is
    formed from the maps. Either way the fit is the one the patches give."""
    W = rng.standard_normal((4, 16, 3, 3))
    b = rng.standard_normal(4)
    X = np.maximum(rng.standard_normal((2, 16, 10, 10)) + 0.3, 0.0)
    route = conv_module._responses_calibration
    monkeypatch.setattr(conv_module, "_responses_calibration", lambda *args: None)
    expected = compress_conv(W, "tucker2", rank=ranks, X=X, bias=b, padding=1)
    monkeypatch.setattr(conv_module, "_responses_calibration", route)
    formed = []
    gram = _fit.Calibration.gram

    def watched(calib):
        formed.append(True)
        return gram.func(calib)

    monkeypatch.setattr(_fit.Calibration, "gram", property(watched))
    res = compress_conv(W, "tucker2", rank=ranks, X=X, bias=b, padding=1)
    assert bool(formed) == (ranks[1] < 16)
    np.testing.assert_allclose(res.dense(), expected.dense(), rtol=1e-7, atol=1e-7)
    assert res.calib_output_error == pytest.approx(expected.calib_output_error, rel=1e-7)


@pytest.mark.parametrize("method", ["channel_svd", "weight_svd", "tucker2", "cp"])
def test_sampled_patches_come_from_the_maps(rng, monkeypatch, method):
    """More patches (432) than ``max_calib_rows`` (150): the sample is the one
    :meth:`_fit.Calibration.from_rows` draws from the im2col rows, taken from the maps,
    and the output error over every patch is a convolution, without the im2col rows of
    every patch (460 MB for a 64x64x3x3 layer on 32 maps of 56x56); the reported error is
    the forward pass's."""
    W = rng.standard_normal((16, 8, 3, 3))
    b = rng.standard_normal(16)
    X = np.maximum(rng.standard_normal((3, 8, 12, 12)) + 0.3, 0.0)
    opts = CompressOptions(max_calib_rows=150, seed=3)
    calib, maps = conv_module._sampled_calibration(X, Piece("conv2d", W, bias=b, padding=1),
                                                   opts)
    drawn = _fit.Calibration.from_rows(im2col(X, 3, 1, 1), 150, 3, center=True)
    assert calib is not None and maps is not None and calib.sampled and drawn.sampled
    np.testing.assert_array_equal(calib.gram, drawn.gram)
    np.testing.assert_array_equal(calib.mean, drawn.mean)

    def refuse(*args, **kwargs):
        raise AssertionError("the im2col rows of every patch were formed")

    monkeypatch.setattr(conv_module, "im2col", refuse)
    res = compress_conv(W, method, ratio=0.5, X=X, bias=b, padding=1, options=opts)
    y = res.original.forward(X)
    err = np.linalg.norm(res.forward(X) - y) / np.linalg.norm(y - b[:, None, None])
    assert res.calib_output_error == pytest.approx(err, rel=1e-10)


def test_patch_maps_take_the_numbered_im2col_rows(rng):
    x = rng.standard_normal((3, 2, 9, 8))
    P = im2col(x, (3, 2), (2, 1), (1, 0), (1, 2))
    maps = PatchMaps.from_maps(x, (3, 2), (2, 1), (1, 0), (1, 2))
    index = np.array([0, 5, 17, len(P) - 1])
    np.testing.assert_array_equal(maps.take(index), P[index])


def test_channel_svd_with_more_outputs_than_values_takes_the_gram_from_the_maps(
        rng, monkeypatch):
    """32 outputs, 18 values per patch, 200 patches, stride 1: the Gram matrix is cheaper
    than the responses and comes from the maps (:func:`_fit.patch_gram`), no im2col."""
    W = rng.standard_normal((32, 2, 3, 3))
    b = rng.standard_normal(32)
    X = np.maximum(rng.standard_normal((2, 2, 10, 10)) + 0.3, 0.0)
    W_hat, new_bias, err = _through_the_gram(W.reshape(32, -1), im2col(X, 3, 1, 1), b, 7)

    def refuse(*args, **kwargs):
        raise AssertionError("the im2col rows were formed")

    monkeypatch.setattr(conv_module, "im2col", refuse)
    res = compress_conv(W, "channel_svd", rank=7, X=X, bias=b, padding=1)
    np.testing.assert_allclose(res.dense().reshape(32, -1), W_hat, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.pieces[-1].bias, new_bias, rtol=1e-9)
    assert res.calib_output_error == pytest.approx(err, rel=1e-9)


@pytest.mark.parametrize("method", ["weight_svd", "spatial_svd"])
def test_strided_many_patches_take_the_gram_from_the_maps(rng, monkeypatch, method):
    """Stride 2, 98 patches of 72 values: the Gram matrix is summed from the maps a few
    images at a time, without the im2col rows of every patch; the layer and its reported
    error are those of the patches' Gram matrix."""
    W = rng.standard_normal((16, 8, 3, 3))
    b = rng.standard_normal(16)
    X = np.maximum(rng.standard_normal((2, 8, 14, 14)) + 0.3, 0.0)
    route = conv_module._conv_calibration

    def through_rows(X, orig, opts, method):
        rows = im2col(X, orig.kernel_size, orig.stride, orig.padding, orig.dilation)
        return _fit.Calibration.from_rows(rows, center=orig.bias is not None), None

    monkeypatch.setattr(conv_module, "_conv_calibration", through_rows)
    expected = compress_conv(W, method, rank=4, X=X, bias=b, padding=1, stride=2)
    monkeypatch.setattr(conv_module, "_conv_calibration", route)

    def refuse(*args, **kwargs):
        raise AssertionError("the im2col rows were formed")

    monkeypatch.setattr(conv_module, "im2col", refuse)
    res = compress_conv(W, method, rank=4, X=X, bias=b, padding=1, stride=2)
    np.testing.assert_allclose(res.dense(), expected.dense(), rtol=1e-8, atol=1e-8)
    assert res.calib_output_error == pytest.approx(expected.calib_output_error, rel=1e-8)
