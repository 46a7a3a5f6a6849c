"""The fast CP of convolution weights: slice-SVD start, ALS, response rounds."""

import numpy as np
import pytest

from sdf.errors import OptionError
from sdf.models.compress import CompressOptions, _fit, compress_conv, im2col
from sdf.models.compress import _cp
from sdf.models.diagnostics import fms

FAST = CompressOptions(cp_engine_size=0)  # the alternating fit alone


def _planted(rng, shape, rank, noise=0.0):
    U = [rng.standard_normal((n, rank)) for n in shape]
    W = np.einsum("or,ir,hr,wr->oihw", *U)
    N = rng.standard_normal(shape)
    return W + noise * np.linalg.norm(W) / np.linalg.norm(N) * N, U


def _decaying_weight(rng, o, i):
    """A trained-like weight: singular values k^-0.6 of the (out, in*9) matrix."""
    k = min(o, 9 * i)
    U = np.linalg.qr(rng.standard_normal((o, k)))[0]
    V = np.linalg.qr(rng.standard_normal((9 * i, k)))[0]
    return ((U * np.arange(1, k + 1) ** -0.6) @ V.T).reshape(o, i, 3, 3)


def _maps(rng, n, i, hw):
    mix = rng.standard_normal((i, i)) * np.linspace(0.2, 2, i)
    return np.maximum(np.einsum("ij,njhw->nihw", mix, rng.standard_normal((n, i, hw, hw))) + 0.3,
                      0.0)


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
    W = _decaying_weight(rng, 12, 7)
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


def test_slice_start_water_filling_beats_equal_ranks(rng):
    W = _decaying_weight(rng, 10, 6)
    _, err2 = _cp.spatial_slices_start(W, 18)
    Qh = np.linalg.svd(W.transpose(2, 0, 1, 3).reshape(3, -1))[0]
    Qw = np.linalg.svd(W.transpose(3, 0, 1, 2).reshape(3, -1))[0]
    slices = np.einsum("oihw,ha,wb->aboi", W, Qh, Qw).reshape(9, 10, 6)
    equal = sum(np.sum(np.linalg.svd(S, compute_uv=False)[2:] ** 2) for S in slices)
    assert err2 < equal


def test_planted_cp_is_recovered_to_the_noise_level(rng):
    W, U = _planted(rng, (20, 16, 3, 3), 12, noise=1e-3)
    res = compress_conv(W, "cp", rank=12, options=FAST)
    assert res.info.message.startswith("slice-SVD start")  # the noisy weight has no exact GEVD
    assert res.weight_error < 1.2e-3
    Ui, Uh, Uw, Uo = (p.weight for p in res.pieces)
    est = [Uo[:, :, 0, 0], Ui[:, :, 0, 0].T, Uh[:, 0, :, 0].T, Uw[:, 0, 0, :].T]
    assert fms(est, U) > 0.99


@pytest.mark.parametrize("aware", [False, True], ids=["free", "aware"])
def test_reported_objective_is_the_one_of_the_returned_pieces(rng, aware):
    W = _decaying_weight(rng, 16, 8)
    X = _maps(rng, 3, 8, 6) if aware else None
    res = compress_conv(W, "cp", ratio=0.5, X=X, padding=1, options=FAST)
    w_w, M = _metric(W, X, 0.9)
    E = (_weight_from_pieces(res) - W).reshape(16, -1)
    value = w_w * float(np.vdot(E, E)) if M is None else float(np.vdot(E @ M, E))
    assert res.info.objective == pytest.approx(value, rel=1e-9)
    assert np.allclose(_weight_from_pieces(res), res.dense(), rtol=1e-12, atol=1e-14)


@pytest.mark.filterwarnings("ignore:term .weight.")
def test_small_layer_keeps_the_lower_objective_of_both_fits(rng):
    W = _decaying_weight(rng, 12, 6)
    both = compress_conv(W, "cp", rank=10)
    fast = compress_conv(W, "cp", rank=10, options=FAST)
    engine = compress_conv(W, "cp", rank=10, options=CompressOptions(solver="engine"))
    assert "the lower objective of the alternating fit" in both.info.message
    assert both.info.objective == pytest.approx(min(fast.info.objective,
                                                    engine.info.objective), rel=1e-9)


def test_response_rounds_never_end_above_the_warm_start(rng):
    W = _decaying_weight(rng, 16, 8)
    X = _maps(rng, 3, 8, 6)
    w_w, M = _metric(W, X, 0.9)
    free = compress_conv(W, "cp", rank=20, padding=1, options=FAST)
    warm = [p.weight for p in free.pieces]
    factors = [warm[3][:, :, 0, 0], warm[0][:, :, 0, 0].T, warm[1][:, 0, :, 0].T,
               warm[2][:, 0, 0, :].T]
    Wm = W.reshape(16, -1)
    start = _cp.response_objective(Wm, factors, M)
    for rounds in (1, 5):
        fit = _cp.als_response(W, factors, M, rounds, 0.0)
        assert fit.objective <= start
        assert fit.objective == pytest.approx(_cp.response_objective(Wm, fit.factors, M),
                                              rel=1e-10)
    aware = compress_conv(W, "cp", rank=20, X=X, padding=1, options=FAST)
    assert aware.info.objective < start


def test_capped_fits_say_iteration_cap(rng):
    W = _decaying_weight(rng, 16, 8)
    X = _maps(rng, 3, 8, 6)
    res = compress_conv(W, "cp", rank=20, X=X, padding=1, options=CompressOptions(
        cp_engine_size=0, cp_work=1.0, cp_response_work=1.0))
    assert "ALS (1 sweeps, iteration cap)" in res.info.message
    assert "response updates (1 rounds, iteration cap)" in res.info.message
    assert res.info.iterations == 2
    done = compress_conv(W, "cp", rank=20, options=CompressOptions(cp_engine_size=0,
                                                                   max_iter=5000))
    assert "converged" in done.info.message


def test_fast_fit_is_deterministic(rng):
    W = _decaying_weight(rng, 16, 8)
    a, b = (compress_conv(W, "cp", ratio=0.4, options=FAST) for _ in range(2))
    np.testing.assert_array_equal(a.weight_approx, b.weight_approx)


def test_nearest_kron_of_a_kron_product_is_exact(rng):
    A = rng.standard_normal((5, 5))
    B = rng.standard_normal((4, 4))
    A, B = A @ A.T, B @ B.T
    KA, KB = _cp.nearest_kron(np.kron(A, B), 5, 4)
    np.testing.assert_allclose(np.kron(KA, KB), np.kron(A, B), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["cp_work", "cp_response_work", "cp_engine_size"])
def test_cp_budgets_must_be_nonnegative(name):
    with pytest.raises(OptionError, match=f"CompressOptions.{name} must be >= 0, got -1"):
        CompressOptions(**{name: -1})


def test_spatial_step_lowers_the_response_objective(rng):
    W = _decaying_weight(rng, 10, 6)
    X = _maps(rng, 3, 6, 6)
    _, M = _metric(W, X, 0.9)
    Wm = W.reshape(10, -1)
    factors = [rng.standard_normal((n, 7)) for n in (10, 6, 3, 3)]
    E = Wm - factors[0] @ _cp._kr(factors[1], _cp._kr(factors[2], factors[3])).T
    Uh, Uw, EM = _cp._spatial_step(Wm, M, factors, -E @ M)
    after = [factors[0], factors[1], Uh, Uw]
    value = _cp.response_objective(Wm, after, M)
    assert value < _cp.response_objective(Wm, factors, M)
    E_after = factors[0] @ _cp._kr(factors[1], _cp._kr(Uh, Uw)).T - Wm
    np.testing.assert_allclose(EM, E_after @ M, rtol=1e-9, atol=1e-12)


def test_min_quartic_finds_the_global_minimum():
    # (t - 2)^2 (t + 1)^2 + t: minima near t = 2 and t = -1; the one at 2 is lower
    coef = np.polynomial.polynomial.polyadd(
        np.polynomial.polynomial.polymul([4, -4, 1], [1, 2, 1]), [0, 1])
    t = _cp._min_quartic(coef)
    grid = np.linspace(-3, 4, 70001)
    assert t == pytest.approx(grid[np.argmin(np.polynomial.polynomial.polyval(grid, coef))],
                              abs=1e-3)
