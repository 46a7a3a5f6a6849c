import numpy as np
import pytest

from sdf.algebra import unfold
from sdf.decomp import lmlra_hooi
from sdf.errors import DataError, ModelError, SdfWarning
from sdf.models.compress import (CONV_METHODS, CompressOptions, Piece, compress_conv, layer_cost,
                                 max_rank)
from sdf.models.compress.conv import (_HOOI_TOL, _best_tucker2, _fit_tucker2, _hooi,
                                      _tucker2_lower_bounds)

GEOMETRIES = [dict(stride=1, padding=1, dilation=1), dict(stride=2, padding=1, dilation=1),
              dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2))]


def _planted_cp(rng, shape, rank):
    U = [rng.standard_normal((n, rank)) for n in shape]
    return np.einsum("or,ir,hr,wr->oihw", *U)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=["same", "stride2", "dilated"])
@pytest.mark.parametrize("method", [m for m in CONV_METHODS if m != "cp"])
def test_full_rank_pieces_reproduce_layer(rng, method, geo):
    W, b = rng.standard_normal((8, 5, 3, 3)), rng.standard_normal(8)
    x = rng.standard_normal((2, 5, 9, 9))
    orig = Piece("conv2d", W, bias=b, **geo)
    top = max_rank(method, orig)
    res = compress_conv(W, method, rank=top, bias=b, input_hw=(9, 9), **geo)
    y = orig.forward(x)
    assert np.abs(res.forward(x) - y).max() <= 1e-10 * np.abs(y).max()
    assert res.dense().shape == W.shape


@pytest.mark.parametrize("geo", GEOMETRIES, ids=["same", "stride2", "dilated"])
def test_cp_pieces_run_the_fitted_weight(rng, geo):
    W = _planted_cp(rng, (6, 4, 3, 3), 3)
    x = rng.standard_normal((2, 4, 8, 8))
    res = compress_conv(W, "cp", rank=3, input_hw=(8, 8), options=CompressOptions(
        max_iter=2000), **geo)
    assert res.weight_error < 1e-6
    ref = Piece("conv2d", res.dense(), **geo).forward(x)
    assert np.abs(res.forward(x) - ref).max() <= 1e-10 * np.abs(ref).max()
    assert [p.groups for p in res.pieces] == [1, 3, 3, 1]


@pytest.mark.parametrize("method", CONV_METHODS)
def test_cost_formula_matches_pieces(rng, method):
    W = rng.standard_normal((12, 6, 3, 3))
    res = compress_conv(W, method, ratio=0.5, bias=np.zeros(12), stride=2, padding=1,
                        input_hw=(10, 10), options=CompressOptions(max_iter=20))
    assert layer_cost(method, res.original, res.rank, (10, 10)) == (res.params_after,
                                                                     res.macs_after)
    assert res.params_after <= 0.5 * res.params_before


@pytest.mark.parametrize("method", ["weight_svd", "spatial_svd", "channel_svd", "tucker2"])
def test_data_aware_lowers_output_error(rng, method):
    W = rng.standard_normal((8, 6, 3, 3))
    X = rng.standard_normal((6, 6, 8, 8)) * np.linspace(0.1, 2, 6)[None, :, None, None]
    X_test = rng.standard_normal((6, 6, 8, 8)) * np.linspace(0.1, 2, 6)[None, :, None, None]
    opts = CompressOptions(max_iter=300)
    plain = compress_conv(W, method, rank=2, padding=1, options=opts)
    aware = compress_conv(W, method, rank=2, X=X, padding=1, balance=0.99, options=opts)
    assert aware.output_error(X_test) < plain.output_error(X_test)
    assert aware.calib_output_error < plain.output_error(X)


@pytest.mark.parametrize("method", ["weight_svd", "cp", "tucker2"])
def test_gauss_newton_matches_lbfgs_data_aware(rng, method):
    W = rng.standard_normal((6, 4, 3, 3))
    X = rng.standard_normal((3, 4, 6, 6))
    res = {m: compress_conv(W, method, rank=2, X=X, padding=1, balance=0.7, options=CompressOptions(
        solver="engine", engine_method=m, max_iter=300, seed=1)) for m in ("minf", "nls")}
    assert res["nls"].info.solver == res["minf"].info.solver == "engine"
    assert "L-BFGS" in res["minf"].info.message and "Gauss-Newton" in res["nls"].info.message
    assert res["nls"].calib_output_error <= res["minf"].calib_output_error * 1.05


@pytest.mark.parametrize("method", ["weight_svd", "cp", "tucker2"])
def test_data_aware_fit_improves_on_its_start(rng, method):
    W = rng.standard_normal((6, 4, 3, 3))
    X = rng.standard_normal((3, 4, 6, 6))
    start = compress_conv(W, method, rank=2, padding=1, options=CompressOptions(max_iter=1))
    aware = compress_conv(W, method, rank=2, X=X, padding=1, balance=0.7)
    if method == "cp":  # a small layer: both fits ran, the lower objective was kept
        assert "the lower objective of the alternating fit" in aware.info.message
    else:
        assert aware.info.solver == "numpy"
    assert aware.calib_output_error < start.output_error(X)


@pytest.mark.filterwarnings("ignore:term .weight.")
def test_cp_starts_from_gevd_when_it_is_exact_else_from_slices(rng):
    fast = CompressOptions(cp_engine_size=0)
    res = compress_conv(_planted_cp(rng, (6, 4, 3, 3), 3), "cp", rank=3, options=fast)
    assert res.info.message == "GEVD" and res.weight_error < 1e-10
    W = rng.standard_normal((6, 4, 3, 3))
    res = compress_conv(W, "cp", rank=3, options=fast)
    assert res.info.message.startswith(("slice-SVD start", "random start, then ALS"))
    assert res.info.solver == "numpy"
    engine = compress_conv(W, "cp", rank=3, options=CompressOptions(solver="engine"))
    assert engine.info.message.startswith("random start, then Gauss-Newton")
    res = compress_conv(_planted_cp(rng, (6, 1, 3, 3), 7), "cp", rank=7,  # no GEVD pencil
                        options=CompressOptions(solver="engine"))
    assert res.info.message.startswith("random start, then Gauss-Newton")
    again = compress_conv(W, "cp", rank=3)
    np.testing.assert_array_equal(again.weight_approx, compress_conv(W, "cp", rank=3).weight_approx)


def test_cp_factors_come_back_balanced(rng):
    res = compress_conv(rng.standard_normal((6, 4, 3, 3)), "cp", rank=3)
    norms = [np.linalg.norm(p.weight.reshape(p.weight.shape[0], -1), axis=1)
             for p in res.pieces[:3]]
    norms.append(np.linalg.norm(res.pieces[3].weight.reshape(6, 3), axis=0))
    np.testing.assert_allclose(norms, np.repeat(norms[:1], 4, axis=0), rtol=1e-10)


def test_tucker2_without_data_is_hooi(rng):
    core = rng.standard_normal((3, 2, 3, 3))
    Uo, Ui = rng.standard_normal((7, 3)), rng.standard_normal((5, 2))
    W = np.einsum("abhw,oa,ib->oihw", core, Uo, Ui)
    res = compress_conv(W + 1e-3 * rng.standard_normal(W.shape), "tucker2", rank=(3, 2))
    assert res.info.solver == "numpy" and res.info.message == "HOOI"
    assert res.info.iterations >= 1
    assert np.linalg.norm(res.dense() - W) / np.linalg.norm(W) < 1e-3


def test_numpy_solver_is_a_deprecated_alias_of_auto(rng):
    W = rng.standard_normal((6, 4, 3, 3))
    with pytest.warns(DeprecationWarning, match="solver='numpy'.* deprecated alias of 'auto'"):
        opts = CompressOptions(solver="numpy")
    assert opts.solver == "auto"
    a = compress_conv(W, "cp", rank=2, options=opts)
    b = compress_conv(W, "cp", rank=2)
    np.testing.assert_array_equal(a.weight_approx, b.weight_approx)


def test_tucker2_engine_recovers_planted_weight(rng):
    core = rng.standard_normal((3, 2, 3, 3))
    Uo, Ui = rng.standard_normal((7, 3)), rng.standard_normal((5, 2))
    W = np.einsum("abhw,oa,ib->oihw", core, Uo, Ui)
    X = rng.standard_normal((4, 5, 6, 6))
    res = compress_conv(W, "tucker2", rank=(3, 2), X=X, padding=1, balance=0.5,
                        options=CompressOptions(solver="engine"))
    assert res.info.solver == "engine" and "Gauss-Newton" in res.info.message
    assert res.weight_error < 1e-6 and res.calib_output_error < 1e-6


def test_tucker2_engine_option_uses_engine_when_data_aware(rng):
    W, X = rng.standard_normal((6, 4, 3, 3)), rng.standard_normal((3, 4, 6, 6))
    res = compress_conv(W, "tucker2", rank=(3, 2), X=X, padding=1,
                        options=CompressOptions(solver="engine"))
    assert res.info.solver == "engine" and res.info.iterations >= 1


@pytest.mark.parametrize("method", CONV_METHODS)
def test_refit_bias_error_matches_forward_pass(rng, method):
    W, b = rng.standard_normal((6, 4, 3, 3)), rng.standard_normal(6)
    X = rng.standard_normal((3, 4, 6, 6)) + 2.0
    res = compress_conv(W, method, rank=2, X=X, bias=b, padding=1, options=CompressOptions(
        max_iter=50))
    y = res.original.forward(X)
    err = np.linalg.norm(res.forward(X) - y) / np.linalg.norm(y - b[:, None, None])
    assert res.calib_output_error == pytest.approx(err, rel=1e-8)
    assert not np.allclose(res.pieces[-1].bias, b)


def test_tucker2_tol_uses_grid_curve(rng):
    W = rng.standard_normal((8, 6, 3, 3))
    res = compress_conv(W, "tucker2", tol=0.5)
    assert res.weight_error <= 0.5
    assert res.curve is not None and np.all(np.diff(res.curve.errors) <= 1e-12)


def test_conv_errors_name_the_place(rng):
    with pytest.raises(ModelError, match=r"compress_conv\('c1', method='cp'\): W has shape "
                                         r"\(8, 3, 3\) but a conv weight needs 4 dims"):
        compress_conv(np.zeros((8, 3, 3)), "cp", rank=1, name="c1")
    with pytest.raises(ModelError, match="method must be one of"):
        compress_conv(np.zeros((2, 2, 3, 3)), "svd", rank=1)
    with pytest.raises(ModelError, match="groups=2 is not supported"):
        compress_conv(np.zeros((2, 1, 3, 3)), "cp", rank=1, groups=2)
    with pytest.raises(DataError, match=r"X has shape \(1, 3, 5, 5\) but the layer reads"):
        compress_conv(np.ones((2, 2, 3, 3)), "weight_svd", rank=1, X=np.ones((1, 3, 5, 5)))
    X = np.ones((2, 2, 5, 5))
    X[1, 0, 2, 3], X[1, 1, 4, 4] = np.nan, np.inf
    for method in CONV_METHODS:
        with pytest.raises(DataError, match=(rf"compress_conv\('conv', method='{method}'\): X "
                                             r"has 2 non-finite entries \(the first at "
                                             r"\(1, 0, 2, 3\): nan\)")):
            compress_conv(np.ones((2, 2, 3, 3)), method, rank=1, X=X)
    with pytest.raises(ModelError, match=r"rank must be an int in \[1, 2\]"):
        compress_conv(np.ones((2, 2, 3, 3)), "weight_svd", rank=5)
    # a ratio below what rank 1 costs: the layer, and the least ratio that fits
    for method, least in (("weight_svd", "0.231"), ("tucker2", "0.144")):
        with pytest.raises(ModelError, match=(
                rf"compress_conv\('c2', method='{method}'\): even rank 1 of '{method}' costs "
                rf"{least} of the layer's params, more than ratio=0.05")):
            compress_conv(np.ones((16, 5, 1, 2)), method, ratio=0.05, name="c2")


def test_tucker2_ratio_keeps_few_input_channels(rng):
    """3 input channels: the input rank stays full and the output rank is cut."""
    W = rng.standard_normal((32, 3, 3, 3))
    res = compress_conv(W, "tucker2", ratio=0.5)
    assert res.rank[1] == 3 and res.params_after <= 0.5 * res.params_before
    proportional = compress_conv(W, "tucker2", rank=(10, 1))
    assert res.weight_error < proportional.weight_error


def test_data_aware_tucker2_output_rank_above_its_core_columns(rng):
    """An output rank above ``r_in kh kw`` (the core's columns) gets pieces of the asked
    shapes, data-aware as data-free, and the fit of the largest useful output rank."""
    W, x = rng.standard_normal((4, 7, 2, 1)), np.maximum(rng.standard_normal((2, 7, 6, 6)), 0)
    useful = compress_conv(W, "tucker2", rank=(2, 1), X=x)
    for X in (x, None):
        res = compress_conv(W, "tucker2", rank=(3, 1), X=X)
        assert [p.weight.shape for p in res.pieces] == [(1, 7, 1, 1), (3, 1, 2, 1),
                                                        (4, 3, 1, 1)]
        y = Piece("conv2d", res.weight_approx).forward(x)
        assert np.abs(res.forward(x) - y).max() <= 1e-12 * np.abs(y).max()
    assert res.weight_error < 1.0
    assert compress_conv(W, "tucker2", rank=(3, 1), X=x).calib_output_error == pytest.approx(
        useful.calib_output_error, rel=1e-6)


@pytest.mark.parametrize("method", [m for m in CONV_METHODS if m != "channel_svd"])
def test_weight_scale_changes_nothing_but_the_scale(rng, method):
    """Weights scaled by 1e-100 ... 1e100 give the same relative errors and the same
    ranks (float32 phases, Gram matrices and ratio ranks read the weight relative to its
    norm), and pieces that run the scaled approximation."""
    W, X = rng.standard_normal((8, 6, 3, 3)), np.maximum(rng.standard_normal((2, 6, 7, 7)), 0)
    ref = compress_conv(W, method, ratio=0.5, X=X, padding=1)
    for s in (1e-100, 1e-30, 1e-6, 1e30, 1e100):
        res = compress_conv(W * s, method, ratio=0.5, X=X, padding=1)
        assert res.rank == ref.rank
        assert res.weight_error == pytest.approx(ref.weight_error, rel=1e-3)
        assert res.calib_output_error == pytest.approx(ref.calib_output_error, rel=1e-3)
        y = Piece("conv2d", res.weight_approx, padding=(1, 1)).forward(X)
        assert np.abs(res.forward(X) - y).max() <= 1e-10 * np.abs(y).max()


@pytest.mark.parametrize("method", CONV_METHODS)
def test_all_zero_calibration_warns_and_fits_data_free(rng, method):
    """Calibration maps that are all zero (or constant, with a bias) tell nothing about the
    response: a warning, and the data-free fit (CP's small-layer engine candidate included, which once met an
    empty response term)."""
    W, b = rng.standard_normal((12, 4, 3, 3)), np.ones(12)
    free = compress_conv(W, method, ratio=0.5, bias=b)
    # zeros, and constant inputs (centered for the bias: zero but for the mean's rounding,
    # which once became the whole response term)
    for X in (np.zeros((2, 4, 9, 9)), np.full((2, 4, 9, 9), 0.3)):
        with pytest.warns(SdfWarning, match="calibration inputs are all zero"):
            res = compress_conv(W, method, ratio=0.5, padding=0, X=X, bias=b)
        assert res.rank == free.rank
        assert res.weight_error == pytest.approx(free.weight_error, rel=1e-6)
        assert res.calib_output_error == pytest.approx(0.0, abs=1e-12)


def test_cp_with_the_whole_share_on_the_response(rng):
    """``balance=1`` leaves no weight term (``w_w = 0``): the small-layer engine candidate
    starts from a weight-only fit of its own scale, and the fit meets the response."""
    W, X = rng.standard_normal((9, 2, 3, 3)), np.maximum(rng.standard_normal((4, 2, 9, 9)), 0)
    res = compress_conv(W, "cp", ratio=0.3, X=X, stride=2, balance=1.0)
    low = compress_conv(W, "cp", ratio=0.3, X=X, stride=2, balance=0.0)
    assert "Gauss-Newton on the weight" in res.info.message or "ALS" in res.info.message
    assert res.calib_output_error < low.calib_output_error


def test_tucker2_ratio_ranks_beat_proportional_ranks(rng):
    """The pair with the least truncated-HOSVD error, against ranks grown together."""
    U = np.linalg.qr(rng.standard_normal((48, 48)))[0] * 0.8 ** np.arange(48)
    W = np.einsum("op,pihw->oihw", U, rng.standard_normal((48, 24, 3, 3)))
    res = compress_conv(W, "tucker2", ratio=0.4)
    same = compress_conv(W, "tucker2", rank=(res.rank[0] + res.rank[1]) // 2)
    assert res.params_after <= 0.4 * res.params_before
    assert res.weight_error <= same.weight_error


def test_tucker2_ratio_data_aware_never_worse_than_grown_ranks(rng):
    """Data-aware, both candidate pairs are fitted and the lower objective is kept."""
    W = rng.standard_normal((12, 6, 3, 3))
    X = rng.standard_normal((4, 6, 7, 7)) * np.linspace(0.2, 2, 6)[None, :, None, None]
    res = compress_conv(W, "tucker2", ratio=0.5, X=X, padding=1)
    assert "the lower objective of" in res.info.message
    from sdf.models.compress.budget import tucker_ratio_candidates
    pairs = tucker_ratio_candidates(res.original, 0.5)
    others = [compress_conv(W, "tucker2", rank=p, X=X, padding=1) for p in pairs]
    assert res.calib_output_error <= min(o.calib_output_error for o in others) * 1.05
    assert res.rank in pairs


def test_cp_rank_path_errors_are_close_to_fits_from_scratch(rng):
    from sdf.algebra import cpd_to_tensor
    from sdf.models.compress import CompressOptions
    from sdf.models.compress.conv import _cp_path, _fit_cp

    A = [rng.standard_normal((n, 6)) * 0.8 ** np.arange(6) for n in (12, 10, 3, 3)]
    W = cpd_to_tensor(A) + 0.01 * rng.standard_normal((12, 10, 3, 3))
    ranks = np.array([2, 4, 6])
    opts = CompressOptions()
    path = _cp_path(W, ranks, None, 1.0, 0.0, opts)
    for r, f in zip(ranks, path):
        scratch, _ = _fit_cp(W, int(r), None, 1.0, 0.0, opts)
        err_path = np.linalg.norm(cpd_to_tensor(f) - W)
        err_scratch = np.linalg.norm(cpd_to_tensor(scratch) - W)
        assert f[0].shape[1] == r
        assert err_path <= 1.05 * err_scratch + 1e-9 * np.linalg.norm(W)


@pytest.mark.parametrize("shape, ranks", [((12, 7, 3, 3), (5, 4)), ((6, 20, 3, 1), (6, 9)),
                                          ((10, 3, 5, 5), (4, 3)), ((4, 30, 3, 3), (3, 8))])
def test_two_mode_hooi_equals_the_general_hooi_with_full_spatial_modes(shape, ranks, rng):
    W = rng.standard_normal(shape)
    init = [np.linalg.svd(unfold(W, n), full_matrices=False)[0][:, :r]
            for n, r in enumerate(ranks)]
    ref = lmlra_hooi(W, (*ranks, *shape[2:]), init=[*init, np.eye(shape[2]), np.eye(shape[3])],
                     max_iter=200, tol=_HOOI_TOL)
    Uo, Ui, core, sweeps = _hooi(W, ranks, 200)
    W_hat = np.einsum("abhw,oa,ib->oihw", core, Uo, Ui)
    np.testing.assert_allclose(np.linalg.norm(W_hat - W) / np.linalg.norm(W), ref.relerr,
                               rtol=1e-10)
    assert sweeps == ref.iterations
    np.testing.assert_allclose(Uo.T @ Uo, np.eye(ranks[0]), atol=1e-12)
    np.testing.assert_allclose(Ui.T @ Ui, np.eye(ranks[1]), atol=1e-12)


def test_data_free_tucker2_skips_only_candidates_that_cannot_win(rng):
    """Candidates are fitted in the order of their lower bounds; one whose bound is at or
    above an objective reached is skipped, and the choice is that of fitting them all."""
    o, i = 24, 20
    decay = 0.7 ** np.arange(o)
    W = np.einsum("oa,a,aihw->oihw", np.linalg.qr(rng.standard_normal((o, o)))[0], decay,
                  rng.standard_normal((o, i, 3, 3)))
    orig = Piece("conv2d", W, padding=1)
    candidates = [(12, 9), (4, 20), (20, 4)]
    w_w = 1.0 / float(np.vdot(W, W))
    bounds = w_w * _tucker2_lower_bounds(W, candidates)
    values = []
    for ranks in candidates:
        (Uo, core, Ui), _ = _fit_tucker2(W, ranks, None, w_w, 0.0, CompressOptions())
        values.append(w_w * float(np.sum((np.einsum("abhw,oa,ib->oihw", core, Uo, Ui) - W)**2)))
    assert np.all(bounds <= np.array(values) * (1 + 1e-12))
    chosen, _, info = _best_tucker2(orig, candidates, None, w_w, 0.0, CompressOptions())
    assert chosen == candidates[int(np.argmin(values))]
    skipped = info.message.count("not fitted")
    losers = np.arange(len(candidates)) != np.argmin(values)
    assert skipped >= 1 and skipped == int(np.sum(bounds[losers] >= min(values)))


@pytest.mark.parametrize("method", ["weight_svd", "spatial_svd", "tucker2", "cp"])
def test_data_aware_fit_with_a_low_rank_calibration_gram(rng, method):
    # 2 maps of 4x4 give 32 patches of 360 values: the patch Gram has rank 32, so the
    # metric is the weight term's ridge plus a low-rank part (singular blocks in float32)
    W, X = rng.standard_normal((6, 40, 3, 3)), np.abs(rng.standard_normal((2, 40, 4, 4)))
    start = compress_conv(W, method, ratio=0.5, padding=1, input_hw=(4, 4))
    aware = compress_conv(W, method, ratio=0.5, X=X, padding=1, input_hw=(4, 4))
    assert np.isfinite(aware.weight_approx).all()
    assert aware.calib_output_error < start.output_error(X)


def test_cp_engine_candidate_counts_the_response_term(rng):
    from sdf.models.compress.conv import _cp_engine_size

    assert _cp_engine_size((6, 4, 3, 3), 5, 0) == 5 * 6 * 4 * 9
    assert _cp_engine_size((6, 4, 3, 3), 5, 1000) == 5 * (6 * 4 * 9 + 36 ** 2)
    assert _cp_engine_size((6, 4, 3, 3), 5, 10) == 5 * (6 * 4 * 9 + 10 * 36)
    # a narrow-output, wide-input layer: the weight is small but the response term's
    # Jacobian (the 360 x 360 calibration root times a Khatri-Rao product) is not
    W, X = rng.standard_normal((4, 40, 3, 3)), np.abs(rng.standard_normal((2, 40, 6, 6)))
    options = CompressOptions(cp_engine_size=4 * 40 * 9 * 8 + 1)
    free = compress_conv(W, "cp", rank=8, padding=1, options=options)
    aware = compress_conv(W, "cp", rank=8, X=X, padding=1, input_hw=(6, 6), options=options)
    assert "the lower objective of the alternating fit" in free.info.message
    assert "the lower objective" not in aware.info.message


@pytest.mark.parametrize("shape", [(24, 5, 3, 3), (3, 40, 3, 3), (6, 7, 1, 1)])
def test_tucker2_lower_bounds_are_the_channel_unfoldings_svd_tails(shape, rng):
    """Each bound is the larger of the two channel unfoldings' squared singular value
    tails beyond the ranks (unfoldings with more rows than columns included)."""
    W = rng.standard_normal(shape)
    o, i = shape[:2]
    s_out = np.linalg.svd(W.reshape(o, -1), compute_uv=False)
    s_in = np.linalg.svd(np.moveaxis(W, 1, 0).reshape(i, -1), compute_uv=False)
    candidates = [(1, 1), (2, i), (o, 2), (o, i), (min(o, 4), min(i, 3))]
    expected = [max(np.sum(s_out[ro:] ** 2), np.sum(s_in[ri:] ** 2)) for ro, ri in candidates]
    np.testing.assert_allclose(_tucker2_lower_bounds(W, candidates), expected, rtol=1e-9,
                               atol=1e-9 * np.sum(W ** 2))
