"""The fast CP of convolution weights: slice-SVD start, ALS, response rounds."""

import numpy as np
import pytest

from sdf.errors import OptionError
from sdf.models.compress import CompressOptions, _fit, compress_conv, im2col
from sdf.models.compress import _cp
from sdf.models.diagnostics import fms

from cp_layers import decaying_weight, planted, relu_maps

FAST = CompressOptions(cp_engine_size=0)  # the alternating fit alone


def _metric(W, X, balance):
    """``(w_w, M)`` of the fitted objective ``tr(E M E^T)`` (M None: weight only)."""
    Wm = W.reshape(W.shape[0], -1)
    if X is None:
        return _fit.term_weights(Wm, None, 0.0)[0], None
    calib = _fit.Calibration.from_rows(im2col(X, (3, 3), (1, 1), (1, 1), (1, 1)))
    w_w, w_r = _fit.term_weights(Wm, calib, balance)
    return w_w, w_r * calib.gram + w_w * np.eye(Wm.shape[1])


def _weight_from_pieces(res):
    """The weight the four pieces (1x1, kh x 1, 1 x kw, 1x1) run, rebuilt from them."""
    Ui, Uh, Uw, Uo = (p.weight for p in res.pieces)
    return np.einsum("or,ri,rh,rw->oihw", Uo[:, :, 0, 0], Ui[:, :, 0, 0], Uh[:, 0, :, 0],
                     Uw[:, 0, 0, :])


def test_slice_start_is_an_exact_cp_whose_error_is_the_discarded_tails(rng):
    W = decaying_weight(rng, 12, 7)
    rank = 20
    factors, err2 = _cp.spatial_slices_start(W, rank)
    assert [f.shape for f in factors] == [(12, rank), (7, rank), (3, rank), (3, rank)]
    W_hat = np.einsum("or,ir,hr,wr->oihw", *factors)
    assert np.vdot(W - W_hat, W - W_hat) == pytest.approx(err2, rel=1e-10)
    # the tails: all singular values of the rotated slices but the `rank` largest
    Qh = np.linalg.svd(W.transpose(2, 0, 1, 3).reshape(3, -1))[0]
    Qw = np.linalg.svd(W.transpose(3, 0, 1, 2).reshape(3, -1))[0]
    slices = np.einsum("oihw,ha,wb->aboi", W, Qh, Qw).reshape(9, 12, 7)
    s = np.sort(np.concatenate([np.linalg.svd(S, compute_uv=False) for S in slices]))
    assert err2 == pytest.approx(np.sum(s[:-rank] ** 2), rel=1e-10)
    # every spatial factor is a unit vector of the principal bases
    for U, Q in ((factors[2], Qh), (factors[3], Qw)):
        np.testing.assert_allclose(np.max(np.abs(Q.T @ U), axis=0), 1.0, rtol=1e-12)


def test_slice_start_of_a_kernel_side_longer_than_the_other_modes(rng):
    """A 2x1x2x5 weight: its width unfolding (5 x 4) has 4 singular vectors, not 5; the
    start is still an exact CP whose error is the discarded tails."""
    W = rng.standard_normal((2, 1, 2, 5))
    for rank in (1, 3, 8):
        factors, err2 = _cp.spatial_slices_start(W, rank)
        W_hat = np.einsum("or,ir,hr,wr->oihw", *factors)
        assert np.vdot(W - W_hat, W - W_hat) == pytest.approx(err2, rel=1e-9, abs=1e-12)
    assert err2 == pytest.approx(0.0, abs=1e-12)  # 8 slices of rank 1 hold all of W
    res = compress_conv(W, "cp", tol=0.05, X=np.maximum(rng.standard_normal((5, 1, 11, 11)), 0),
                        stride=(2, 1), padding=(1, 0), balance=0.5)
    assert res.weight_error <= 0.05 or res.rank == res.curve.ranks[-1]


def test_slice_start_water_filling_beats_equal_ranks(rng):
    W = decaying_weight(rng, 10, 6)
    _, err2 = _cp.spatial_slices_start(W, 18)
    Qh = np.linalg.svd(W.transpose(2, 0, 1, 3).reshape(3, -1))[0]
    Qw = np.linalg.svd(W.transpose(3, 0, 1, 2).reshape(3, -1))[0]
    slices = np.einsum("oihw,ha,wb->aboi", W, Qh, Qw).reshape(9, 10, 6)
    equal = sum(np.sum(np.linalg.svd(S, compute_uv=False)[2:] ** 2) for S in slices)
    assert err2 < equal


def _reference_sweep(W, factors):
    """One ALS sweep (out, in, h, w in turn), each factor the least-squares solution
    against the explicit Khatri-Rao product of the others."""
    factors = [f.copy() for f in factors]
    for n in range(4):
        others = [factors[k] for k in range(4) if k != n]
        kr = np.einsum("ar,br,cr->abcr", *others).reshape(-1, others[0].shape[1])
        unfolding = np.moveaxis(W, n, 0).reshape(W.shape[n], -1)
        factors[n] = np.linalg.lstsq(kr, unfolding.T, rcond=None)[0].T
    return factors


@pytest.mark.parametrize("shape", [(24, 5, 3, 3), (5, 24, 3, 3), (9, 9, 3, 1)])
def test_als_sweep_is_the_least_squares_update_of_each_factor(rng, shape):
    """Narrow inputs (in < out) take the MTTKRP of the output factor through the
    Khatri-Rao product, wide ones through ``Wt U_in``: both are the exact update."""
    W = rng.standard_normal(shape)
    rank = 4
    start = [rng.standard_normal((n, rank)) for n in shape]
    o, i = shape[:2]
    Wm = W.reshape(o, -1)
    norm2 = float(np.vdot(W, W))
    Wt = W.transpose(0, 2, 3, 1).reshape(-1, i)
    # the second sweep reuses the first one's work arrays, stale entries and all
    work = {}
    for _ in range(2):
        swept, objective = _cp._sweep(Wm, Wt, shape, start, norm2, work)
        for got, want in zip(swept, _reference_sweep(W, start)):
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
        W_hat = np.einsum("or,ir,hr,wr->oihw", *swept)
        assert objective == pytest.approx(np.vdot(W - W_hat, W - W_hat) / norm2, rel=1e-9)
        start = swept
    assert work and all(np.all(np.isfinite(buf)) for buf in work.values())


@pytest.mark.parametrize("shape", [(4, 11, 3, 2), (11, 4, 2, 3), (5, 5, 1, 1)])
def test_expand_is_the_cp_weight_through_either_side(rng, shape):
    """More inputs than outputs take the Khatri-Rao product with the output factor, the
    others with the input factor; column-major factors (as solves return them) too."""
    factors = [np.asfortranarray(rng.standard_normal((n, 6))) for n in shape]
    want = np.einsum("or,ir,hr,wr->oihw", *factors).reshape(shape[0], -1)
    got = _cp._expand(factors)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert got.flags.c_contiguous
    assert _cp._weight_objective(want + 1.0, factors, 2.0) == pytest.approx(want.size / 2)


def test_khatri_rao_is_c_ordered_and_fills_a_given_buffer(rng):
    A = np.asfortranarray(rng.standard_normal((5, 3)))
    B = np.asfortranarray(rng.standard_normal((4, 3)))
    want = np.einsum("ar,br->abr", A, B).reshape(20, 3)
    buf = np.full(100, np.nan)
    got = _cp._kr(A, B, out=buf)
    np.testing.assert_array_equal(got, want)
    assert np.shares_memory(got, buf) and got.flags.c_contiguous
    small = np.empty(7)
    got = _cp._kr(A, B, out=small)            # too small: a new array
    np.testing.assert_array_equal(got, want)
    assert not np.shares_memory(got, small)
    work = {}
    first = _cp._workspace(work, "A", (4, 5))
    assert _cp._workspace(work, "A", (2, 3)).base is first.base  # reused, not grown
    assert _cp._workspace(work, "A", (6, 5)).shape == (6, 5)


def test_planted_cp_is_recovered_to_the_noise_level(rng):
    W, U = planted(rng, (20, 16, 3, 3), 12, noise=1e-3)
    res = compress_conv(W, "cp", rank=12, options=FAST)
    assert not res.info.message.startswith("GEVD")  # the noisy weight has no exact GEVD
    assert res.weight_error < 1.2e-3
    Ui, Uh, Uw, Uo = (p.weight for p in res.pieces)
    est = [Uo[:, :, 0, 0], Ui[:, :, 0, 0].T, Uh[:, 0, :, 0].T, Uw[:, 0, 0, :].T]
    assert fms(est, U) > 0.99


@pytest.mark.parametrize("aware", [False, True], ids=["free", "aware"])
def test_reported_objective_is_the_one_of_the_returned_pieces(rng, aware):
    W = decaying_weight(rng, 16, 8)
    X = relu_maps(rng, 3, 8, 6) if aware else None
    res = compress_conv(W, "cp", ratio=0.5, X=X, padding=1, options=FAST)
    w_w, M = _metric(W, X, 0.9)
    E = (_weight_from_pieces(res) - W).reshape(16, -1)
    value = w_w * float(np.vdot(E, E)) if M is None else float(np.vdot(E @ M, E))
    assert res.info.objective == pytest.approx(value, rel=1e-9)
    # roundoff on the sum of components, whose size may well exceed the weight's entries
    size = np.prod([np.linalg.norm(p.weight.reshape(p.weight.shape[0], -1), axis=1)
                    for p in res.pieces[:3]], axis=0).max() * np.abs(res.pieces[3].weight).max()
    assert np.allclose(_weight_from_pieces(res), res.dense(), rtol=1e-12, atol=1e-14 * size)


def test_als_from_the_slice_start_takes_its_known_error(rng):
    """The slice start's discarded tails are its error: ALS given them keeps the same
    iterates as ALS computing it, and a start no sweep improves on is returned with
    its error recomputed."""
    W = decaying_weight(rng, 12, 10)
    start, err2 = _cp.spatial_slices_start(W, 15)
    computed = _cp.als_weight(W, start, 6, 1e-9, 0)
    given = _cp.als_weight(W, start, 6, 1e-9, 0, start_error2=err2)
    for a, b in zip(computed.factors, given.factors):
        np.testing.assert_array_equal(a, b)
    assert given.objective == computed.objective
    # a start error given far below the truth: the start is kept, its error recomputed
    kept = _cp.als_weight(W, start, 3, 1e-9, 0, start_error2=0.0)
    for a, b in zip(kept.factors, start):
        np.testing.assert_array_equal(a, b)
    assert kept.objective == pytest.approx(err2, rel=1e-9)


@pytest.mark.filterwarnings("ignore:term .weight.")
def test_small_layer_keeps_the_lower_objective_of_both_fits(rng):
    W = decaying_weight(rng, 12, 6)
    from sdf.models.compress.conv import _fit_cp_fast
    both = compress_conv(W, "cp", rank=10)
    # the engine candidate runs beside one start of the alternating fit
    fast = _fit_cp_fast(W, 10, None, _metric(W, None, 0.9)[0], 0.0, CompressOptions())[1]
    engine = compress_conv(W, "cp", rank=10, options=CompressOptions(solver="engine"))
    assert "the lower objective of the alternating fit" in both.info.message
    assert both.info.objective == pytest.approx(min(fast.objective,
                                                    engine.info.objective), rel=1e-9)


def test_response_rounds_never_end_above_the_warm_start(rng):
    W = decaying_weight(rng, 16, 8)
    X = relu_maps(rng, 3, 8, 6)
    w_w, M = _metric(W, X, 0.9)
    free = compress_conv(W, "cp", rank=20, padding=1, options=FAST)
    warm = [p.weight for p in free.pieces]
    factors = [warm[3][:, :, 0, 0], warm[0][:, :, 0, 0].T, warm[1][:, 0, :, 0].T,
               warm[2][:, 0, 0, :].T]
    Wm = W.reshape(16, -1)
    start = _cp.response_objective(Wm, factors, M)
    for rounds in (1, 5):
        fit = _cp.als_response(W, factors, _cp.Metric(M), rounds, 0.0)
        assert fit.objective <= start
        assert fit.objective == pytest.approx(_cp.response_objective(Wm, fit.factors, M),
                                              rel=1e-10)
    aware = compress_conv(W, "cp", rank=20, X=X, padding=1, options=FAST)
    assert aware.info.objective < start


def test_capped_fits_say_iteration_cap(rng, monkeypatch):
    import sdf.models.compress.conv as conv
    monkeypatch.setattr(conv, "_LM_WEIGHTS", 0)  # the alternating fit alone
    W = decaying_weight(rng, 16, 8)
    X = relu_maps(rng, 3, 8, 6)
    res = compress_conv(W, "cp", rank=20, X=X, padding=1, options=CompressOptions(
        cp_engine_size=0, cp_work=1.0, cp_response_work=1.0))
    assert "ALS (1 sweeps, iteration cap)" in res.info.message
    assert "response updates (1 rounds, iteration cap)" in res.info.message
    assert res.info.iterations == 2
    done = compress_conv(W, "cp", rank=20, options=CompressOptions(cp_engine_size=0,
                                                                   max_iter=5000))
    assert "converged" in done.info.message


def test_fast_fit_is_deterministic(rng):
    W = decaying_weight(rng, 16, 8)
    a, b = (compress_conv(W, "cp", ratio=0.4, options=FAST) for _ in range(2))
    np.testing.assert_array_equal(a.weight_approx, b.weight_approx)


@pytest.mark.parametrize("name", ["cp_work", "cp_response_work", "cp_engine_size"])
def test_cp_budgets_must_be_nonnegative(name):
    with pytest.raises(OptionError, match=f"CompressOptions.{name} must be >= 0, got -1"):
        CompressOptions(**{name: -1})


def _small_aware(rng, o=8, i=6, rank=7, n=2, hw=5):
    W = decaying_weight(rng, o, i)
    X = relu_maps(rng, n, i, hw)
    w_w, M = _metric(W, X, 0.9)
    factors = [rng.standard_normal((s, rank)) for s in (o, i, 3, 3)]
    return W, M, factors


@pytest.mark.parametrize("n", [1, 2, 3], ids=["in", "h", "w"])
def test_block_cg_reaches_the_solution_of_the_normal_equations(rng, n):
    W, M, factors = _small_aware(rng)
    Wm = W.reshape(8, -1)
    L = np.linalg.cholesky(M)
    # the objective ||E L||^2 is linear least squares in factor n: its Jacobian by columns
    shape = factors[n].shape
    def model(U):
        return _cp._expand([U if k == n else F for k, F in enumerate(factors)])
    J = np.stack([(model(e.reshape(shape)) @ L).ravel() for e in np.eye(np.prod(shape))], 1)
    exact = np.linalg.lstsq(J, (Wm @ L).ravel(), rcond=None)[0].reshape(shape)
    E = model(factors[n]) - Wm
    U, E_cg, EM = _cp.block_cg(_cp.Metric(M), factors, n, E, E @ M, 3 * int(np.prod(shape)),
                               lambda X: X)
    np.testing.assert_allclose(U, exact, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(E_cg, model(U) - Wm, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(EM, E_cg @ M, rtol=1e-8, atol=1e-10)


def test_metric_through_the_root_equals_the_dense_product(rng):
    root = rng.standard_normal((4, 18))
    M = 0.3 * np.eye(18) + root.T @ root
    E = rng.standard_normal((5, 18))
    np.testing.assert_allclose(_cp.Metric(M, 0.3, root).times(E), E @ M, rtol=1e-12)
    assert _cp.Metric(M, 0.3, root).cost(5) < _cp.Metric(M).cost(5)


def test_response_objective_never_rises_over_rounds(rng):
    W, M, factors = _small_aware(rng)
    values = [_cp.response_objective(W.reshape(8, -1), factors, M)]
    for rounds in range(1, 7):
        values.append(_cp.als_response(W, factors, _cp.Metric(M), rounds, 0.0,
                                       cg_iterations=(3, 1)).objective)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(values, values[1:]))
    assert values[-1] < 0.5 * values[0]


def test_cg_schedule_balances_the_round_and_fills_the_budget():
    M = np.eye(18 * 9)
    shape, metric = (16, 18, 3, 3), _cp.Metric(M)
    step = 2.0 * 16 * 18 * 9 * 20 + metric.cost(16)
    balanced = int(min(max(_cp.round_cost(shape, 20, metric, (0, 0)) / step, 1), _cp.CG_INPUT))
    rich = _cp.cg_schedule(shape, 20, metric, 1e12, 10 ** 6)
    assert rich == _cp.Schedule((balanced, _cp.CG_SPATIAL_LONG), 1e12, False)
    poor = _cp.cg_schedule(shape, 20, metric, 1.0, 10 ** 6)
    assert poor == _cp.Schedule((balanced, 0), 1.0, False)
    # few rounds allowed: that many balanced rounds and their work
    few = _cp.cg_schedule(shape, 20, metric, 1e12, 10)
    assert few.iterations == (balanced, max(1, _cp.CG_SPATIAL // balanced))
    assert few.work == 10 * _cp.round_cost(shape, 20, metric, few.iterations)


def test_cg_schedule_keeps_the_identity_part_apart_where_its_eigenproblem_is_cheap():
    shape = (16, 18, 3, 3)
    metric = _cp.Metric(np.eye(18 * 9), 0.5)
    # small layers (the rounds cap binds): always, its eigenproblem counted in the work
    few = _cp.cg_schedule(shape, 20, metric, 1e12, 10)
    assert few.separate
    assert few.work == 10 * _cp.round_cost(shape, 20, metric, few.iterations, True)
    assert few.work > 10 * _cp.round_cost(shape, 20, metric, few.iterations)
    # budget-bound: only while the eigenproblem costs at most half a CG iteration
    assert _cp.cg_schedule(shape, 5, metric, 1.0, 10 ** 6).separate
    assert not _cp.cg_schedule(shape, 100, metric, 1.0, 10 ** 6).separate
    assert not _cp.cg_schedule(shape, 5, _cp.Metric(np.eye(18 * 9)), 1e12, 10).separate


def test_work_cap_shortens_the_last_round(rng):
    W, M, factors = _small_aware(rng)
    metric = _cp.Metric(M)
    full = _cp.round_cost(W.shape, 7, metric, (4, 1))
    one = _cp.round_cost(W.shape, 7, metric, (1, 0))
    fit = _cp.als_response(W, factors, metric, 100, 0.0, work=2 * full + one,
                           cg_iterations=(4, 1))
    assert fit.iterations == 3 and fit.stop == "iteration cap"


def test_wide_layer_with_few_patches_gains_from_long_cg_runs(rng):
    """A wide layer whose Gram has rank below its width (25 patches of 360 values): at
    one work budget, the scheduled rounds (long CG runs on the input factor, products
    through the calibration root) end lower than rounds of one preconditioned gradient
    step, and well below the data-free warm start."""
    W = decaying_weight(rng, 8, 40)
    X = np.maximum(rng.standard_normal((1, 40, 5, 5)) + 0.3, 0.0)
    calib = _fit.Calibration.from_rows(im2col(X, (3, 3), (1, 1), (1, 1), (1, 1)))
    w_w, w_r = _fit.term_weights(W.reshape(8, -1), calib, 0.9)
    metric = _fit.response_metric(calib, w_w, w_r)
    assert metric.thin and metric.root is not None and metric.root.shape == (25, 360)
    start, _ = _cp.spatial_slices_start(W, 16)
    start = _cp.als_weight(W, start, 50, 1e-6, 0).factors
    warm = _cp.response_objective(W.reshape(8, -1), start, metric.dense)
    work = 1e9
    scheduled = _cp.als_response(W, start, metric, 10 ** 6, 0.0, work)
    gradient = _cp.als_response(W, start, metric, 10 ** 6, 0.0, work, cg_iterations=(1, 0))
    assert scheduled.objective < 0.97 * gradient.objective
    assert scheduled.objective < 0.5 * warm


def test_input_preconditioner_is_the_exact_inverse_for_a_kronecker_metric(rng):
    """With ``M = c I + A kron B`` exactly, the preconditioner inverts the input factor's
    block Hessian: one preconditioned CG iteration reaches the block minimiser."""
    o, i, rank = 5, 4, 3
    A = rng.standard_normal((i, i))
    B = rng.standard_normal((9, 9))
    M = 0.3 * np.eye(9 * i) + np.kron(A @ A.T, B @ B.T)
    W = rng.standard_normal((o, i, 3, 3))
    factors = [rng.standard_normal((s, rank)) for s in (o, i, 3, 3)]
    pre = _cp.InputPreconditioner(M, 0.3, i, 9)
    Uo, Ui, Uh, Uw = factors
    solve = pre.solver(Uo.T @ Uo, _cp._kr(Uh, Uw))
    # the Hessian of the objective in U_in, column by column
    def hess(D):
        EM = _cp.Metric(M).times(_cp._expand([Uo, D, Uh, Uw]))
        return _cp._contract(EM, factors, 1)
    X = rng.standard_normal((i, rank))
    np.testing.assert_allclose(hess(solve(X)), X, rtol=1e-8, atol=1e-10)
    Wm = W.reshape(o, -1)
    E = _cp._expand(factors) - Wm
    U, E1, EM1 = _cp.block_cg(_cp.Metric(M, 0.3), factors, 1, E, E @ M, 1, solve)
    more = _cp.block_cg(_cp.Metric(M, 0.3), factors, 1, E, E @ M, 50, solve)[0]
    np.testing.assert_allclose(U, more, rtol=1e-7, atol=1e-9)


def test_input_preconditioner_without_identity_part_is_the_kronecker_solve(rng):
    i, rank = 4, 3
    A = rng.standard_normal((i, i))
    B = rng.standard_normal((9, 9))
    M = np.kron(A @ A.T, B @ B.T)
    pre = _cp.InputPreconditioner(M, 0.0, i, 9)
    Go, S = np.eye(rank) + 0.1, rng.standard_normal((9, rank))
    X = rng.standard_normal((i, rank))
    expected = np.linalg.solve(pre.A, X) @ np.linalg.inv(Go * (S.T @ pre.B @ S))
    np.testing.assert_allclose(pre.solver(Go, S)(X), expected, rtol=1e-8, atol=1e-10)


def test_contract_is_the_gradient_contraction(rng):
    factors = [rng.standard_normal((s, 4)) for s in (5, 3, 2, 3)]
    FM = rng.standard_normal((5, 3 * 2 * 3))
    G4 = (FM.T @ factors[0]).reshape(3, 2, 3, 4)
    expected = [np.einsum("ihwr,hr,wr->ir", G4, factors[2], factors[3]),
                np.einsum("ihwr,ir,wr->hr", G4, factors[1], factors[3]),
                np.einsum("ihwr,ir,hr->wr", G4, factors[1], factors[2])]
    for n in (1, 2, 3):
        np.testing.assert_allclose(_cp._contract(FM, factors, n), expected[n - 1],
                                   rtol=1e-12, atol=1e-12)


def test_extrapolated_rounds_end_lower_and_never_rise(rng):
    """The accelerated rounds: never above the start, the objective recomputed from the
    factors, and lower than as many plain rounds on a slowly converging fit."""
    W = decaying_weight(rng, 16, 8)
    X = relu_maps(rng, 3, 8, 6)
    w_w, M = _metric(W, X, 0.9)
    start = _cp.als_weight(W, _cp.spatial_slices_start(W, 20)[0], 50, 1e-6, 0).factors
    metric = _cp.Metric(M, w_w)
    Wm = W.reshape(16, -1)
    plain = _cp.als_response(W, start, metric, 40, 0.0, cg_iterations=(2, 1),
                             accelerate=False)
    fast = _cp.als_response(W, start, metric, 40, 0.0, cg_iterations=(2, 1))
    assert fast.objective < plain.objective
    assert fast.objective == pytest.approx(_cp.response_objective(Wm, fast.factors, M),
                                           rel=1e-10)
    values = [_cp.als_response(W, start, metric, k, 0.0, cg_iterations=(2, 1)).objective
              for k in (1, 2, 5, 10, 20)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(values, values[1:]))


def test_default_cp_skips_the_engine_on_a_data_aware_small_layer(rng):
    W = decaying_weight(rng, 16, 8)
    X = relu_maps(rng, 3, 8, 6)
    res = compress_conv(W, "cp", ratio=0.5, X=X, padding=1)
    assert res.info.solver == "numpy" and "the lower objective" not in res.info.message
    assert res.info.objective == compress_conv(W, "cp", ratio=0.5, X=X, padding=1,
                                               options=FAST).info.objective


def test_gram_solver_solves_and_falls_back_to_least_squares(rng):
    X = rng.standard_normal((6, 4))
    V = X.T @ X
    rhs = rng.standard_normal((3, 4))
    np.testing.assert_allclose(_cp._gram_solver(V)(rhs) @ V, rhs, rtol=1e-9, atol=1e-10)
    singular = np.outer(X[0], X[0])
    np.testing.assert_allclose(_cp._gram_solver(singular)(rhs),
                               rhs @ np.linalg.pinv(singular), rtol=1e-9, atol=1e-10)


def _aware_problem(rng, o=8, i=4):
    """A small data-aware CP problem: weight, calibration, term weights and metric."""
    W = decaying_weight(rng, o, i)
    calib = _fit.Calibration.from_rows(
        im2col(relu_maps(rng, 4, i, 8), (3, 3), (1, 1), (1, 1), (1, 1)))
    w_w, w_r = _fit.term_weights(W.reshape(o, -1), calib, 0.9)
    return W, calib, w_w, w_r, _fit.response_metric(calib, w_w, w_r).dense


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_several_starts_is_never_above_the_first_start(seed):
    from sdf.models.compress.conv import _fit_cp_starts
    W, calib, w_w, w_r, M = _aware_problem(np.random.default_rng(seed))
    opts = CompressOptions(seed=seed)
    one, one_info = _fit_cp_starts(W, 8, calib, w_w, w_r, opts, 1)
    best, best_info = _fit_cp_starts(W, 8, calib, w_w, w_r, opts, 4)
    assert best_info.objective <= one_info.objective
    assert "the lowest objective of 4 starts" in best_info.message
    Wm = W.reshape(W.shape[0], -1)
    assert _cp.response_objective(Wm, best, M) == pytest.approx(best_info.objective, rel=1e-9)


def test_random_start_fit_reports_its_start_and_its_objective(rng):
    from sdf.models.compress.conv import _fit_cp_fast
    W, calib, w_w, w_r, M = _aware_problem(rng)
    factors, info = _fit_cp_fast(W, 8, calib, w_w, w_r, CompressOptions(seed=5),
                                 random_start=True)
    assert info.message.startswith("random start, then ALS")
    Wm = W.reshape(W.shape[0], -1)
    assert _cp.response_objective(Wm, factors, M) == pytest.approx(info.objective, rel=1e-9)


def test_small_layer_starts_are_reproducible_with_a_seed(rng):
    W = decaying_weight(rng, 16, 8)
    X = relu_maps(rng, 4, 8, 8)
    fits = [compress_conv(W, "cp", ratio=0.5, X=X, padding=1,
                          options=CompressOptions(seed=s)) for s in (3, 3, 4)]
    assert "starts" in fits[0].info.message
    assert np.array_equal(fits[0].weight_approx, fits[1].weight_approx)
    assert fits[0].info.message == fits[1].info.message
    assert not np.array_equal(fits[0].weight_approx, fits[2].weight_approx)


def test_start_count_falls_with_the_model_size():
    from sdf.models.compress.conv import _MAX_STARTS, _cp_starts
    counts = [_cp_starts(size, aware) for aware in (False, True)
              for size in (0, 10 ** 4, 10 ** 5, 10 ** 6, 10 ** 8)]
    assert counts[0] == _MAX_STARTS and counts[4] == counts[9] == 1
    assert counts[:5] == sorted(counts[:5], reverse=True)
    assert counts[5:] == sorted(counts[5:], reverse=True)
    assert all(a >= b for a, b in zip(counts[:5], counts[5:]))  # aware starts cost more
