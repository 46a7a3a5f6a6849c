"""The alternating closed forms of the data-aware kron-structured fits (weight SVD,
spatial SVD, Tucker-2): a generalised SVD when the metric is a Kronecker product, never
worse than their starts, and the same optimum as the engine's fusion model."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

import sdf

from sdf.models.compress import (CompressOptions, _fit, _kron, _kron_tucker, compress_conv,
                                  im2col)


def _spd(rng, n):
    A = rng.standard_normal((n, 2 * n))
    return A @ A.T / n + 0.1 * np.eye(n)


def _kronecker_metric(rng, W3, r):
    """A random Kronecker metric ``M_a (x) M_m`` for ``W3`` (out, a, m) and the least
    objective at rank ``r`` (its whitened SVD's tail, the closed-form optimum)."""
    a, m = W3.shape[1:]
    Ma, Mm = _spd(rng, a), _spd(rng, m)
    La, Lm = np.linalg.cholesky(Ma), np.linalg.cholesky(Mm)
    s = np.linalg.svd(np.einsum("ab,oam,mn->bon", La, W3, Lm).reshape(a, -1),
                      compute_uv=False)
    return np.kron(Ma, Mm), float(np.sum(s[r:] ** 2))


def _objective(W3, M, C, F):
    o = W3.shape[0]
    E = np.einsum("orm,ar->oam", C, F).reshape(o, -1) - W3.reshape(o, -1)
    return float(np.einsum("od,de,oe->", E, M, E))


@pytest.mark.parametrize("a, m", [(6, 4), (2, 5)])  # both sides of the a <= m branch
def test_kronecker_metric_is_a_generalised_svd(rng, a, m):
    """M = M_a (x) M_m: the start alone is the optimum (tail of the whitened spectrum)."""
    o, r = 7, 2
    W3 = rng.standard_normal((o, a, m))
    Ma, Mm = _spd(rng, a), _spd(rng, m)
    M = np.kron(Ma, Mm)
    La, Lm = np.linalg.cholesky(Ma), np.linalg.cholesky(Mm)
    Ww = np.einsum("ab,oam,mn->bon", La, W3, Lm).reshape(a, -1)
    s = np.linalg.svd(Ww, compute_uv=False)
    F0 = _kron.nearest_kron_start(W3, _kron._Problem(W3, M, None).kron_pair(), r)
    fit = _kron.fit_kron(W3, M, [("generalised SVD", F0)], max_iter=0)
    assert fit.objective == pytest.approx(np.sum(s[r:] ** 2), rel=1e-9)
    assert _objective(W3, M, fit.C, fit.F) == pytest.approx(fit.objective, rel=1e-9)


def test_alternation_lowers_the_objective_of_its_start(rng):
    o, a, m, r = 8, 6, 3, 2
    W3 = rng.standard_normal((o, a, m))
    M = _spd(rng, a * m)
    F0 = rng.standard_normal((a, r))
    start = _kron.fit_kron(W3, M, [("random", F0)], max_iter=0)
    fit = _kron.fit_kron(W3, M, [("random", F0)], max_iter=200, tol=1e-12)
    assert fit.objective < 0.99 * start.objective
    assert _objective(W3, M, fit.C, fit.F) == pytest.approx(fit.objective, rel=1e-8)
    np.testing.assert_allclose(fit.F.T @ fit.F, np.eye(r), atol=1e-10)


def test_planted_structure_is_recovered(rng):
    o, a, m, r = 9, 7, 4, 3
    C, F = rng.standard_normal((o, r, m)), rng.standard_normal((a, r))
    W3 = np.einsum("orm,ar->oam", C, F)
    M = _spd(rng, a * m)
    fit = _kron.fit_kron(W3, M, [("random", rng.standard_normal((a, r)))], max_iter=500,
                         tol=1e-14)
    W_hat = np.einsum("orm,ar->oam", fit.C, fit.F)
    assert np.linalg.norm(W_hat - W3) <= 1e-7 * np.linalg.norm(W3)


def test_output_rank_is_a_reduced_rank_regression(rng):
    """With r_out, the best C for a fixed F is the rank-r_out projection of the free one."""
    o, a, m, r, ro = 8, 5, 4, 3, 2
    W3, M = rng.standard_normal((o, a, m)), _spd(rng, a * m)
    F = np.linalg.qr(rng.standard_normal((a, r)))[0]
    fit = _kron.fit_kron(W3, M, [("F", F)], out_rank=ro, max_iter=0)
    assert np.linalg.matrix_rank(fit.C.reshape(o, -1), tol=1e-10) == ro
    assert _objective(W3, M, fit.C, fit.F) == pytest.approx(fit.objective, rel=1e-9)
    # no other rank-ro C does better: perturbations of the optimum only raise the objective
    Uo = np.linalg.svd(fit.C.reshape(o, -1))[0][:, :ro]
    for _ in range(5):
        Cp = (Uo + 1e-3 * rng.standard_normal(Uo.shape)) @ np.linalg.pinv(Uo) @ fit.C.reshape(
            o, -1)
        Cp = Cp + 1e-3 * Uo @ rng.standard_normal((ro, r * m))
        assert _objective(W3, M, Cp.reshape(fit.C.shape), fit.F) >= fit.objective


@pytest.mark.parametrize("method", ["weight_svd", "spatial_svd", "tucker2"])
def test_alternation_matches_engine_optimum(rng, method):
    """The default (alternating closed forms) reaches the engine's objective, or lower."""
    W = rng.standard_normal((8, 5, 3, 3))
    X = rng.standard_normal((6, 5, 7, 7)) * np.linspace(0.3, 2, 5)[None, :, None, None]
    rank = (4, 3) if method == "tucker2" else 3
    eng = compress_conv(W, method, rank=rank, X=X, padding=1, balance=0.8,
                        options=CompressOptions(solver="engine", max_iter=500,
                                                tucker_tol_fun=1e-12))
    alt = compress_conv(W, method, rank=rank, X=X, padding=1, balance=0.8,
                        options=CompressOptions(alt_tol=1e-12, max_iter=2000))
    Wm = W.reshape(8, -1)
    calib = _fit.Calibration.from_rows(im2col(X, (3, 3), (1, 1), (1, 1), (1, 1)))
    w_w, w_r = _fit.term_weights(Wm, calib, 0.8)

    def objective(res):
        E = res.weight_approx.reshape(Wm.shape) - Wm
        return w_w * float(np.vdot(E, E)) + w_r * calib.response_norm2(E)

    assert eng.info.solver == "engine" and alt.info.solver == "numpy"
    assert "alternating closed forms" in alt.info.message
    assert objective(alt) <= objective(eng) * (1 + 1e-6)


def test_tucker2_alternation_recovers_planted_weight(rng):
    core = rng.standard_normal((3, 2, 3, 3))
    Uo, Ui = rng.standard_normal((7, 3)), rng.standard_normal((5, 2))
    W = np.einsum("abhw,oa,ib->oihw", core, Uo, Ui)
    X = rng.standard_normal((4, 5, 6, 6))
    res = compress_conv(W, "tucker2", rank=(3, 2), X=X, padding=1, balance=0.5)
    assert res.info.solver == "numpy"
    assert res.weight_error < 1e-8 and res.calib_output_error < 1e-8


def test_extrapolated_alternation_is_no_worse_than_a_plain_one(rng):
    """Each alternation keeps its extrapolation only when it lowers the objective: after
    one alternation the fit is at most the plain closed-form alternation's objective, and
    the reported objective is the one of the returned factors."""
    o, a, m, r = 10, 8, 4, 3
    W3, M = rng.standard_normal((o, a, m)), _spd(rng, a * m)
    F0 = np.linalg.qr(rng.standard_normal((a, r)))[0]
    prob = _kron._Problem(W3, M, None)
    MF = prob.apply_metric(F0)
    C0, _ = prob.c_step(F0, MF)
    F1 = np.linalg.qr(prob.f_step(F0, MF, C0, 2)[0])[0]
    _, f_plain = prob.c_step(F1, prob.apply_metric(F1))
    fit = _kron.fit_kron(W3, M, [("F", F0)], max_iter=1, tol=0.0)
    assert fit.objective <= f_plain * (1 + 1e-12)
    assert _objective(W3, M, fit.C, fit.F) == pytest.approx(fit.objective, rel=1e-9)


def test_apply_metric_is_the_product_with_the_kron_factor(rng):
    o, a, m, r = 3, 5, 4, 2
    M = _spd(rng, a * m)
    F = rng.standard_normal((a, r))
    prob = _kron._Problem(rng.standard_normal((o, a, m)), M, None)
    MK = (M @ np.kron(F, np.eye(m))).reshape(a, m, r, m)  # [a, mu, r, nu]
    np.testing.assert_allclose(prob.apply_metric(F), MK.transpose(0, 1, 3, 2), rtol=1e-12)


@pytest.mark.parametrize("singular", [False, True])
def test_whitened_solve_matches_the_pseudo_inverse(rng, singular):
    n, k = 6, 4
    A = rng.standard_normal((n, n - 2 if singular else 2 * n))
    G, B = A @ A.T, rng.standard_normal((k, n))
    if singular:
        B = B @ G  # in the range of G, where the pseudo-inverse solves exactly
    Y, times_root_inv = _kron._whitened(G, B)
    Gp = np.linalg.pinv(G, hermitian=True)
    np.testing.assert_allclose(times_root_inv(Y), B @ Gp, rtol=1e-7, atol=1e-9)
    assert float(np.vdot(Y, Y)) == pytest.approx(float(np.trace(B @ Gp @ B.T)), rel=1e-8)


def _aware_objective(W, X, balance):
    Wm = W.reshape(W.shape[0], -1)
    calib = _fit.Calibration.from_rows(im2col(X, (3, 3), (1, 1), (1, 1), (1, 1)))
    w_w, w_r = _fit.term_weights(Wm, calib, balance)

    def objective(W_hat):
        E = W_hat.reshape(Wm.shape) - Wm
        return w_w * float(np.vdot(E, E)) + w_r * calib.response_norm2(E)

    return objective


def test_orthonormal_basis_keeps_the_product_with_the_metric(rng):
    """The basis and its product with M come from X and M X by the small triangular factor,
    equal to a fresh product; C rotated by R keeps C K^T."""
    o, a, m, r = 4, 7, 3, 3
    prob = _kron._Problem(rng.standard_normal((o, a, m)), _spd(rng, a * m), None)
    X = rng.standard_normal((a, r))
    Q, MQ, R = _kron._orthonormal_with_metric(X, prob.apply_metric(X))
    np.testing.assert_allclose(Q.T @ Q, np.eye(r), atol=1e-12)
    np.testing.assert_allclose(MQ, prob.apply_metric(Q), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(Q @ R, X, atol=1e-12)
    assert _kron._orthonormal_with_metric(np.ones((a, r)), np.ones((a, m, m, r))) is None


@pytest.mark.parametrize("method", ["weight_svd", "spatial_svd", "tucker2"])
def test_aware_fit_is_no_worse_than_the_free_one_in_the_aware_objective(rng, method):
    W = rng.standard_normal((10, 6, 3, 3))
    X = rng.standard_normal((5, 6, 7, 7)) * np.linspace(0.2, 3, 6)[None, :, None, None]
    rank = (5, 4) if method == "tucker2" else 3
    objective = _aware_objective(W, X, 0.9)
    free = compress_conv(W, method, rank=rank, padding=1)
    aware = compress_conv(W, method, rank=rank, X=X, padding=1)
    assert objective(aware.weight_approx) <= objective(free.weight_approx) * (1 + 1e-12)
    assert objective(aware.weight_approx) < 0.99 * objective(free.weight_approx)


def test_iteration_cap_is_reported(rng):
    W = rng.standard_normal((10, 6, 3, 3))
    X = rng.standard_normal((5, 6, 7, 7)) * np.linspace(0.2, 3, 6)[None, :, None, None]
    capped = compress_conv(W, "weight_svd", rank=3, X=X, padding=1,
                           options=CompressOptions(max_iter=1, alt_tol=0.0))
    assert capped.info.iterations == 1
    assert "stopped at the iteration cap" in capped.info.message
    done = compress_conv(W, "weight_svd", rank=3, X=X, padding=1,
                         options=CompressOptions(max_iter=500, alt_tol=1e-6))
    assert "converged" in done.info.message and done.info.iterations < 500


def test_screened_tucker2_picks_the_candidate_the_full_fits_pick(rng):
    """Skipping the candidates whose lower bound is above an objective reached, and
    dropping those that cannot catch up after a few alternations, keeps the choice (and
    objective) of fitting every candidate in full."""
    from sdf.models.compress import conv
    from sdf.models.compress.layers import Piece

    W = rng.standard_normal((12, 8, 3, 3)) * np.linspace(2, 0.2, 12)[:, None, None, None]
    X = rng.standard_normal((5, 8, 7, 7)) * np.linspace(0.2, 3, 8)[None, :, None, None]
    orig = Piece("conv2d", W, padding=1)
    Wm = W.reshape(12, -1)
    calib = _fit.Calibration.from_rows(im2col(X, (3, 3), (1, 1), (1, 1), (1, 1)))
    w_w, w_r = _fit.term_weights(Wm, calib, 0.9)
    opts = CompressOptions(alt_tol=1e-10, max_iter=1000)
    candidates = [(2, 7), (6, 4), (4, 5)]
    chosen, factors, info = conv._best_tucker2(orig, candidates, calib, w_w, w_r, opts)
    objective = _aware_objective(W, X, 0.9)
    full = {r: objective(conv._fitted_weight("tucker2", orig, conv._fit_tucker2(
        W, r, calib, w_w, w_r, opts)[0])) for r in candidates}
    assert chosen == min(full, key=full.get)
    value = objective(conv._fitted_weight("tucker2", orig, factors))
    assert value == pytest.approx(full[chosen], rel=1e-6)
    assert info.message.count("not fitted: its lower bound") == 2


def _horizontal(F, X):
    return X - F @ (F.T @ X)


@pytest.mark.parametrize("o, r, factored", [(6, 3, False), (2, 4, True)])
def test_newton_residual_and_hessian_match_finite_differences(rng, o, r, factored):
    """With C eliminated, -1/2 the gradient and 1/2 the Hessian (horizontal parts) against
    central differences of the objective and of the residual along a horizontal X; the
    dense route's products through ``C^T C`` and, with few outputs, through ``C``."""
    a, m = 7, 3
    W3, M = rng.standard_normal((o, a, m)), _spd(rng, a * m)
    prob = _kron._Problem(W3, M, None)
    assert prob.factored_hessian(r) == factored
    F = np.linalg.qr(rng.standard_normal((a, r)))[0]
    X = _horizontal(F, rng.standard_normal((a, r)))
    p = prob.point(F, prob.apply_metric(F))
    R, Q4 = prob.residual(p)
    h = 1e-5

    def at(G):
        return prob.point(G, prob.apply_metric(G))

    slope = (at(F + h * X).f - at(F - h * X).f) / (2 * h)
    assert slope == pytest.approx(-2 * float(np.vdot(R, X)), rel=1e-7)
    # the residual at F +- hX, moved back to F's horizontal space (it is horizontal for
    # its own F; the difference of the projections is O(h^2) in that direction)
    dR = (_horizontal(F, prob.residual(at(F + h * X))[0])
          - _horizontal(F, prob.residual(at(F - h * X))[0])) / (2 * h)
    curv = _kron._curvature(p, Q4, np.float64)
    assert curv.factored == factored
    HX = prob.hessvec(p, curv, X, prob.apply_metric(X))
    np.testing.assert_allclose(HX, -dR, rtol=1e-6, atol=1e-7 * np.abs(HX).max())
    # symmetric on the horizontal space
    Y = _horizontal(F, rng.standard_normal((a, r)))
    HY = prob.hessvec(p, curv, Y, prob.apply_metric(Y))
    assert float(np.vdot(Y, HX)) == pytest.approx(float(np.vdot(X, HY)), rel=1e-9)


def test_factored_hessian_products_equal_the_gram_ones(rng, monkeypatch):
    """With few outputs against the rank, the dense route's residual and Hessian products
    contract ``M K`` with ``C`` (out rows): they equal the products through ``C^T C`` and
    ``K^T M dK``, in float64 and in float32 to its rounding."""
    o, a, m, r = 3, 10, 4, 5
    W3, M = rng.standard_normal((o, a, m)), _spd(rng, a * m)
    prob = _kron._Problem(W3, M, None)
    assert prob.factored_hessian(r)
    F = np.linalg.qr(rng.standard_normal((a, r)))[0]
    X = _horizontal(F, rng.standard_normal((a, r)))
    got = {}
    for factored in (True, False):
        monkeypatch.setattr(_kron._Problem, "factored_hessian", lambda self, r: factored)
        p = prob.point(F, prob.apply_metric(F))
        R, Q4 = prob.residual(p)
        assert (Q4 is None) == factored
        HX = {}
        for dtype, work, q in ((np.float64, prob, p), (np.float32, prob.single(),
                                                      p.astype(np.float32))):
            curv = _kron._curvature(p, Q4, dtype)
            HX[dtype] = work.hessvec(q, curv, X.astype(dtype), work.apply_metric(
                X.astype(dtype)))
        got[factored] = R, HX
    np.testing.assert_allclose(got[True][0], got[False][0], rtol=1e-10, atol=1e-12)
    want = got[False][1][np.float64]
    np.testing.assert_allclose(got[True][1][np.float64], want, rtol=1e-9, atol=1e-12)
    assert got[True][1][np.float32].dtype == np.float32
    np.testing.assert_allclose(got[True][1][np.float32], want, atol=1e-4 * np.abs(want).max())


def test_factored_newton_direction_forms_the_metric_product_of_its_step(rng, monkeypatch):
    """On the factored dense route the Newton CG tracks no product with ``M``: the step's
    ``apply_metric`` is formed after CG. Step, product and promised decrease equal those
    of the route through ``C^T C`` (float64; in mixed precision to float32's rounding)."""
    o, a, m, r = 3, 10, 4, 5
    W3, M = rng.standard_normal((o, a, m)), _spd(rng, a * m)
    prob = _kron._Problem(W3, M, None)
    # a few alternations from a random start: CG meets no negative curvature there (where
    # it does, its step is the first preconditioned residual, whatever the products)
    F0 = np.linalg.qr(rng.standard_normal((a, r)))[0]
    F = _kron.fit_kron(W3, M, [("random", F0)], max_iter=10, tol=0.0, newton_after=10,
                       single=False).F
    got = {}
    for factored in (True, False):
        monkeypatch.setattr(_kron._Problem, "factored_hessian", lambda self, r: factored)
        p = prob.point(F, prob.apply_metric(F))
        for low in (None, prob.single()):
            steps = _kron._newton_direction(prob, p, 8, 1e-14, low)
            assert steps is not None and steps.X.dtype == np.float64
            assert not steps.negative and not steps.boundary
            np.testing.assert_allclose(steps.MX, prob.apply_metric(steps.X),
                                       rtol=1e-5 if low else 1e-12,
                                       atol=1e-5 * np.abs(steps.MX).max())
            got[factored, low is None] = steps
    for exact, rtol in ((True, 1e-8), (False, 1e-3)):
        want, have = got[False, exact], got[True, exact]
        np.testing.assert_allclose(have.X, want.X, rtol=rtol, atol=rtol * np.abs(want.X).max())
        assert have.decrease == pytest.approx(want.decrease, rel=rtol)


def test_newton_phase_reaches_the_optimum_of_long_alternations(rng):
    """The Newton steps end where many plain alternations end (or lower), in fewer
    iterations, and the reported objective is the one of the returned factors."""
    o, a, m, r = 12, 9, 4, 4
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.3, a)[None, :, None]
    M = _spd(rng, a * m)
    F0 = rng.standard_normal((a, r))
    slow = _kron.fit_kron(W3, M, [("F", F0)], max_iter=3000, tol=1e-13,
                          newton_after=3000)
    fast = _kron.fit_kron(W3, M, [("F", F0)], max_iter=3000, tol=1e-13)
    assert fast.newton_steps > 0 and slow.newton_steps == 0
    assert fast.iterations < slow.iterations
    assert fast.objective <= slow.objective * (1 + 1e-9)
    assert _objective(W3, M, fast.C, fast.F) == pytest.approx(fast.objective, rel=1e-10)


def test_fit_from_a_random_start_reaches_the_generalised_svd_of_a_kronecker_metric(rng):
    """M = M_a (x) M_m: the optimum is known in closed form (tail of the whitened
    spectrum); alternations then Newton steps reach it from a random start."""
    o, a, m, r = 9, 8, 3, 3
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.2, a)[None, :, None]
    Ma, Mm = _spd(rng, a), _spd(rng, m)
    La, Lm = np.linalg.cholesky(Ma), np.linalg.cholesky(Mm)
    s = np.linalg.svd(np.einsum("ab,oam,mn->bon", La, W3, Lm).reshape(a, -1),
                      compute_uv=False)
    fit = _kron.fit_kron(W3, np.kron(Ma, Mm), [("random", rng.standard_normal((a, r)))],
                         max_iter=500, tol=1e-14)
    assert fit.newton_steps > 0
    assert fit.objective == pytest.approx(np.sum(s[r:] ** 2), rel=1e-8)


def test_remaining_decrease_is_the_geometric_tail():
    """Decreases 8, 4 (rate 1/2): the ones to come sum to 2 + 1 + ... = 4; the rate is
    the mean over the window (16, 1: rate 1/2 over 4 iterations, tail 1)."""
    assert _kron.remaining_decrease([8.0, 4.0]) == pytest.approx(4.0)
    assert _kron.remaining_decrease([100.0, 10.0, 1.0], window=1) == pytest.approx(1 / 9)
    assert _kron.remaining_decrease([16.0, 1.0, 9.0, 3.0, 1.0], window=4) == pytest.approx(1)


def test_slowest_remaining_decrease_takes_the_slowest_recent_rate():
    """The final stop's prediction: the largest ratio of the last ``window`` decreases
    below 1, where the mean rate is that of a fast start; never a faster rate than the
    mean, never less than the last decrease, and where the decreases zig-zag (one larger
    than the one before it) never less than the one before the last."""
    assert _kron.remaining_decrease([64.0, 8.0, 4.0, 1.0]) == pytest.approx(1 / 3)
    assert _kron.remaining_decrease([64.0, 8.0, 4.0, 1.0], slowest=True) == pytest.approx(1)
    # ratios 1/4, 2, 1/4: the mean 1/2 would predict 0.5; the zig-zag, 2
    assert _kron.remaining_decrease([4.0, 1.0, 2.0, 0.5]) == pytest.approx(0.5)
    assert _kron.remaining_decrease([4.0, 1.0, 2.0, 0.5], slowest=True) == pytest.approx(2)
    # ratios 1/4, 1/4, 1/8: no zig-zag, the slowest rate
    assert _kron.remaining_decrease([64.0, 16.0, 4.0, 0.5], slowest=True) == pytest.approx(0.5)
    assert _kron.remaining_decrease([4.0, 0.0, 1.0], slowest=True) == pytest.approx(1.0)
    assert _kron.remaining_decrease([1e3, 1e2, 1e1, 1.0]) == pytest.approx(1 / 9)
    assert _kron.remaining_decrease([1e3, 1e2, 1e1, 1.0], slowest=True) == pytest.approx(1)
    assert _kron.remaining_decrease([1.0], slowest=True) == np.inf
    assert _kron.remaining_decrease([1.0, 0.0], slowest=True) == 0.0


def _scripted_problem(rng):
    """A small problem, an orthonormal ``F`` and a ``C`` (4 outputs) for :func:`_refine`
    driven by scripted steps."""
    o, a, m, r = 4, 6, 2, 2
    W3 = rng.standard_normal((o, a, m))
    prob = _kron._Problem(W3, np.eye(a * m), None)
    F = np.linalg.qr(rng.standard_normal((a, r)))[0]
    return prob, F, rng.standard_normal((o, r, m))


def test_final_stop_waits_out_a_slow_tail_after_a_fast_start(rng):
    """Decreases that fall fast (0.1, 0.03, 0.006), then at half their size a step
    (0.003, 0.0015, ...): the mean rate of the last ones stops before the first slow
    step, over twice the tolerance short of the limit; the slowest rate stops within the
    tolerance of it."""
    prob, F, C = _scripted_problem(rng)
    o = C.shape[0]
    decreases = [0.1, 0.03] + [0.006 * 0.5 ** k for k in range(40)]
    limit = 1.0 - 0.13 - 0.012
    tol = 2.5e-3
    gaps = {}
    for final in (False, True):
        values = iter(1.0 - np.cumsum(decreases))

        def newton(prob, F, MF, cg_iter, cg_tol, enough, resolved):
            return SimpleNamespace(F=F.copy(), MF=MF, C=C.reshape(o, -1), f=next(values),
                                   unmet=0.0)

        state = _kron._State(F, prob.apply_metric(F), C, 1.0)
        assert _kron._refine(prob, state, 40, tol, 2, 0, newton, final=final)
        gaps[final] = (state.iterations, (state.f - limit) / state.f)
    assert gaps[False][0] == 3 and gaps[False][1] > 2 * tol
    assert gaps[True][0] == 5 and gaps[True][1] <= tol


def test_remaining_decrease_is_infinite_without_a_shrinking_rate():
    assert _kron.remaining_decrease([1.0]) == np.inf
    assert _kron.remaining_decrease([1.0, 2.0]) == np.inf
    assert _kron.remaining_decrease([1.0, 0.0]) == 0.0


def test_stop_on_the_predicted_tail_is_close_to_the_limit(rng):
    """A slowly converging Tucker-2 fit (output rank: alternations only) stopped by the
    predicted tail at ``tol`` is within about ``tol`` of the limit of a long run."""
    o, a, m, r, ro = 12, 10, 4, 4, 5
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.2, a)[None, :, None]
    M = _spd(rng, a * m)
    F0 = rng.standard_normal((a, r))
    limit = _kron.fit_kron(W3, M, [("F", F0)], out_rank=ro, max_iter=5000, tol=1e-15)
    fit = _kron.fit_kron(W3, M, [("F", F0)], out_rank=ro, max_iter=5000, tol=1e-6)
    assert fit.converged and limit.converged
    assert fit.iterations < limit.iterations
    assert fit.objective - limit.objective <= 3e-6 * limit.objective


@pytest.mark.parametrize("out_rank", [None, 4])
def test_objective_is_the_float64_one_of_the_returned_factors(rng, out_rank):
    """The float32 iterations leave no trace: C and F are float64 and the objective is
    the float64 one recomputed from them."""
    o, a, m, r = 10, 9, 4, 3
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.2, a)[None, :, None]
    M = _spd(rng, a * m)
    fit = _kron.fit_kron(W3, M, [("random", rng.standard_normal((a, r)))], out_rank,
                         max_iter=300)
    assert fit.iterations > 1
    assert fit.C.dtype == fit.F.dtype == np.float64
    assert fit.objective == pytest.approx(_objective(W3, M, fit.C, fit.F), rel=1e-12)


@pytest.mark.parametrize("max_iter", [2, 300])  # the cap in the float32 phase; converged
@pytest.mark.parametrize("out_rank", [None, 4])
def test_fit_returns_the_fresh_product_and_closed_form_of_its_factor(rng, out_rank,
                                                                     max_iter):
    """Whether the fit ends in its float32 phase or after float64 iterations, ``MF`` is
    the product of the returned ``F`` with the metric, and ``C`` and the objective are
    its float64 closed form (a fit from it starts where this one ended)."""
    o, a, m, r = 10, 9, 4, 3
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.2, a)[None, :, None]
    M = _spd(rng, a * m)
    prob = _kron._Problem(W3, M, out_rank, r)
    fit = _kron.fit_kron(W3, M, [("random", rng.standard_normal((a, r)))], out_rank,
                         max_iter=max_iter, problem=prob)
    assert fit.objective < fit.start_objective
    assert fit.converged == (max_iter == 300)
    MF = prob.apply_metric(fit.F)
    np.testing.assert_allclose(fit.MF, MF, rtol=0, atol=1e-12 * np.abs(MF).max())
    C, f = prob.c_step(fit.F, MF)
    np.testing.assert_allclose(fit.C, C, rtol=0, atol=1e-10 * np.abs(C).max())
    assert fit.objective == pytest.approx(f, rel=1e-12)
    start = _kron.Start("again", fit.F, fit.MF, fit.C, fit.objective)
    again = _kron.fit_kron(W3, M, [start], out_rank, max_iter=0, problem=prob)
    assert again.objective == fit.objective and again.F is fit.F


@pytest.mark.parametrize("out_rank", [None, 4])
def test_objective_without_iterations_is_that_of_the_returned_factors(rng, out_rank):
    """With no iteration (or none that lowers the objective) the start's closed form is
    returned as it was evaluated: its objective is still that of the returned factors."""
    o, a, m, r = 10, 9, 4, 3
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.2, a)[None, :, None]
    M = _spd(rng, a * m)
    prob = _kron._Problem(W3, M, out_rank)
    start = _kron.evaluate_start(prob, "random", rng.standard_normal((a, r)))
    fit = _kron.fit_kron(W3, M, [start], out_rank, max_iter=0, problem=prob)
    assert fit.iterations == 0 and fit.converged and fit.F is start.F
    assert fit.objective == pytest.approx(_objective(W3, M, fit.C, fit.F), rel=1e-12)
    assert fit.objective == fit.start_objective


def test_float32_iterations_reach_the_float64_optimum(rng):
    """Planted Kronecker metric (optimum in closed form): the default fit (float32 first)
    ends at the optimum to within its tolerance, as the all-float64 fit does."""
    o, a, m, r = 12, 10, 3, 3
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.2, a)[None, :, None]
    M, optimum = _kronecker_metric(rng, W3, r)
    F0 = rng.standard_normal((a, r))
    fits = [_kron.fit_kron(W3, M, [("random", F0)], max_iter=500,
                           single=single) for single in (True, False)]
    for fit in fits:
        assert fit.converged
        assert fit.objective == pytest.approx(optimum, rel=3e-6)


@pytest.mark.parametrize("tol, planted, dtypes", [
    (1e-4, False, [np.float32]), (1e-6, False, [np.float32, np.float64]),
    (1e-4, True, [np.float32, np.float64])])
def test_a_tolerance_float32_resolves_ends_the_fit_in_float32(rng, monkeypatch, tol,
                                                              planted, dtypes):
    """At a tolerance of at least the float32 hand-over's, the float32 iterations are the
    final ones (no float64 iterations), unless the objective is so small against the
    weight's (a planted structure: 1e-6 of it) that float32 does not resolve its
    tolerance; the fit ends within the tolerance of the closed-form optimum (planted
    Kronecker metric), with the float64 objective of the factors it returns."""
    o, a, m, r = 12, 10, 3, 3
    if planted:
        W3 = (np.einsum("orm,ar->oam", rng.standard_normal((o, r, m)),
                        rng.standard_normal((a, r)))
              + 1e-3 * rng.standard_normal((o, a, m)))
    else:
        W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.2, a)[None, :, None]
    M, optimum = _kronecker_metric(rng, W3, r)
    phases = []
    refine = _kron._refine

    def spy(prob, *args, **kwargs):
        phases.append((prob.W3.dtype, kwargs.get("final", True)))
        return refine(prob, *args, **kwargs)

    monkeypatch.setattr(_kron, "_refine", spy)
    fit = _kron.fit_kron(W3, M, [("random", rng.standard_normal((a, r)))], max_iter=500,
                         tol=tol)
    assert [dtype for dtype, _ in phases] == dtypes
    assert phases[-1][1]  # the last phase is a final one
    assert fit.converged and fit.iterations > 0
    assert optimum <= fit.objective <= optimum * (1 + 3 * tol)
    assert fit.objective == pytest.approx(_objective(W3, M, fit.C, fit.F), rel=1e-12)


def test_compress_options_tolerances_default_per_fit_and_follow_alt_tol():
    assert (CompressOptions().sweep_tol, CompressOptions().subspace_tol) == (1e-6, 1e-4)
    given = CompressOptions(alt_tol=1e-9)
    assert (given.sweep_tol, given.subspace_tol) == (1e-9, 1e-9)
    with pytest.raises(sdf.OptionError, match="alt_tol must be >= 0"):
        CompressOptions(alt_tol=-1.0)


@pytest.mark.parametrize("n_rows", [5, 40])
def test_calibration_root_has_as_many_rows_as_the_gram_has_rank(rng, n_rows):
    P = rng.standard_normal((n_rows, 12))
    calib = _fit.Calibration.from_rows(P)
    R = calib.root()
    assert R.shape == (min(n_rows, 12), 12)
    np.testing.assert_allclose(R.T @ R, calib.gram, atol=1e-10 * np.abs(calib.gram).max())


def test_preconditioner_factor_of_a_singular_float32_block(rng):
    """A rank-limited C gives a singular block of the F-step's preconditioner: the
    factorization grows its ridge until it succeeds (float32 too)."""
    B = rng.standard_normal((9, 3))
    for dtype in (np.float32, np.float64):
        S = (B @ B.T).astype(dtype)
        given = S.copy()
        c, lower = _kron._factor(S)
        assert np.isfinite(c).all() and c.dtype == dtype
        np.testing.assert_array_equal(S, given)  # factored in a copy


def test_mixed_precision_newton_reaches_the_float64_optimum(rng):
    """Float32 Hessian products with a float64 gradient (the default after the float32
    phase) converge to the all-float64 limit to 1e-9, far below float32's rounding."""
    o, a, m, r = 14, 10, 4, 4
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.2, a)[None, :, None]
    M = _spd(rng, a * m)
    F0 = rng.standard_normal((a, r))
    mixed, double = (_kron.fit_kron(W3, M, [("F", F0)], max_iter=500, tol=1e-13,
                                    single=single) for single in (True, False))
    assert mixed.converged and double.converged and mixed.newton_steps > 0
    assert mixed.objective == pytest.approx(double.objective, rel=1e-9)
    assert _objective(W3, M, mixed.C, mixed.F) == pytest.approx(mixed.objective, rel=1e-12)


def test_mixed_precision_newton_direction_is_the_float64_one(rng):
    """CG run to convergence: the direction from float32 Hessian products and a float64
    gradient agrees with the float64 one to float32 accuracy, and it is float64."""
    o, a, m, r = 12, 9, 3, 3
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.5, a)[None, :, None]
    M = _spd(rng, a * m) + 3 * np.eye(a * m)
    prob = _kron._Problem(W3, M, None)
    F = np.linalg.qr(rng.standard_normal((a, r)))[0]
    p = prob.point(F, prob.apply_metric(F))
    n = (a - r) * r
    exact = _kron._newton_direction(prob, p, n, 1e-20)
    mixed = _kron._newton_direction(prob, p, n, 1e-10, low=prob.single())
    assert exact is not None and mixed is not None
    assert mixed.X.dtype == mixed.MX.dtype == np.float64
    for got, want in ((mixed.X, exact.X), (mixed.MX, exact.MX)):
        np.testing.assert_allclose(got, want, atol=1e-3 * np.abs(want).max())


@pytest.mark.parametrize("promised, iterations", [(0.05, 7), (6e-6, 7), (1e-9, 4)])
def test_a_newton_step_that_missed_its_model_ends_the_fit_only_if_it_promised_little(
        rng, promised, iterations):
    """A Newton step that met negative curvature or was halved lowers the objective a
    little (1e-7) where the next ones lower it a lot: the fit goes on after it when its
    model promised more than a quarter of the tolerance times the objective (1.25e-5 at
    the step; where the rate of the decreases alone would call it converged), and stops
    as before when it promised no more (rounding). After the large decrease that
    follows, the decreases zig-zag: the stop waits for two small ones."""
    prob, F, C = _scripted_problem(rng)
    o = C.shape[0]
    values = iter([0.5, 0.25, 0.125, 0.1249999, 0.05, 0.0499999999, 0.04999999989])
    unmet = iter([0.0, 0.0, 0.0, promised, 0.0, 0.0, 0.0])

    def newton(prob, F, MF, cg_iter, cg_tol, enough, resolved):  # (a new F: a step)
        return SimpleNamespace(F=F.copy(), MF=MF, C=C.reshape(o, -1), f=next(values),
                               unmet=next(unmet))

    state = _kron._State(F, prob.apply_metric(F), C, 1.0)
    assert _kron._refine(prob, state, 10, 1e-4, 2, 0, newton)
    assert state.iterations == iterations


@pytest.mark.parametrize("final, failures, iterations", [
    (True, (4,), 5), (True, (4, 5), 5), (False, (4,), 4)])
def test_an_alternation_after_a_failed_newton_step_does_not_end_the_final_fit(
        rng, monkeypatch, final, failures, iterations):
    """Newton steps lower the objective by 0.5, 0.25, 0.125; the fourth finds no decrease
    and an alternation lowers it by 1e-7 (the rate calls that converged), the next
    iteration by 1e-8. In the final iterations the fit goes on after that alternation
    (the Newton model failed: the alternation's decrease says nothing of the steps to
    come), unless it follows another (a Newton step also gives up where it cannot move);
    before the final ones it stops there as after any iteration."""
    prob, F, C = _scripted_problem(rng)
    o = C.shape[0]
    values = iter([0.5, 0.25, 0.125, 0.1249999, 0.12499989])
    iteration = iter(range(1, 10))

    def newton(prob, F, MF, cg_iter, cg_tol, enough, resolved):
        if next(iteration) in failures:
            return None
        return SimpleNamespace(F=F.copy(), MF=MF, C=C.reshape(o, -1), f=next(values),
                               unmet=0.0)

    def alternation(prob, F, MF, C3, f, step, cg_iter):
        return F.copy(), MF, C3, next(values), step

    monkeypatch.setattr(_kron, "_alternation", alternation)
    state = _kron._State(F, prob.apply_metric(F), C, 1.0)
    assert _kron._refine(prob, state, 10, 1e-4, 2, 0, newton, final=final)
    assert state.iterations == iterations
    assert state.newton_steps == iterations - len([i for i in failures if i <= iterations])


def _cg(H, R, radius, precond=None):
    """:func:`_kron._metric_pcg` on the matrix ``H`` from zero, the metric's product an
    identity (so ``MX`` must track ``X``)."""
    precond = (lambda Y: Y) if precond is None else precond
    return _kron._metric_pcg(lambda P: P.copy(), lambda P, MP: H @ P, precond, R,
                             np.zeros_like(R), np.zeros_like(R), 50, 1e-20,
                             keep_first_on_negative=True, radius=radius)


@pytest.mark.parametrize("curvature", ["positive", "negative"])
def test_cg_in_a_trust_region_stops_at_its_boundary(rng, curvature):
    """Where the model's minimiser lies outside the region, or the curvature is negative,
    CG stops on the boundary (``||X||`` = radius), ``MX`` tracks ``X``, and the promised
    decrease is the model's own, ``2 <R, X> - <X, H X>``; with a region that holds the
    minimiser, CG ends inside it at the minimiser."""
    n = 12
    H = _spd(rng, n)
    R = rng.standard_normal((n, 1))
    radius = 0.3
    if curvature == "negative":  # R mostly along a direction of negative curvature
        w, V = np.linalg.eigh(H)
        H = (V * np.r_[-0.5, w[1:]]) @ V.T
        R = 3 * V[:, :1] + 0.1 * R
        radius = 5.0
    diag = np.linspace(0.5, 2.0, n)[:, None]
    steps = _cg(H, R, radius, lambda Y: diag * Y)
    assert steps.boundary and steps.negative is (curvature == "negative")
    assert np.linalg.norm(steps.X) == pytest.approx(radius, rel=1e-12)
    np.testing.assert_array_equal(steps.MX, steps.X)
    model = 2 * float(np.vdot(R, steps.X)) - float(np.vdot(steps.X, H @ steps.X))
    assert steps.decrease == pytest.approx(model, rel=1e-10) and steps.decrease > 0
    if curvature == "positive":
        minimiser = np.linalg.solve(H, R)
        wide = _cg(H, R, 2 * np.linalg.norm(minimiser))
        assert not wide.boundary and not wide.negative
        np.testing.assert_allclose(wide.X, minimiser, rtol=1e-8)
        assert wide.decrease == pytest.approx(float(np.vdot(R, minimiser)), rel=1e-10)


@pytest.mark.parametrize("t, decrease, boundary, radius", [
    (0.25, 0.9, True, 1.0), (1.0, 0.1, False, 2.0), (1.0, 0.9, True, 3.0),
    (1.0, 0.9, False, 1.5), (1.0, 0.5, True, 1.5)])
def test_the_trust_region_follows_how_well_its_steps_met_their_model(
        t, decrease, boundary, radius):
    """From 1.5 with a step direction of norm 4 promising 1: a halved step sets the
    region to the length that held, a full step meeting under a quarter of its promise
    to half the direction, one at the boundary meeting over three quarters doubles it;
    otherwise it stays."""
    region = _kron._TrustRegion(1.5)
    region.update(t, 4.0, decrease, 1.0, boundary)
    assert region.radius == radius


def test_a_newton_step_stays_in_its_trust_region():
    """From a random start the Newton step left to itself goes far (0.92, on negative
    curvature); in a region of 0.2 it stays within, still lowers the objective, counts
    as having missed its model (cut short, so its promise blocks the stop), and having
    met that model the region doubles."""
    rng = np.random.default_rng(5)
    o, a, m, r = 12, 9, 3, 3
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.5, a)[None, :, None]
    M = _spd(rng, a * m) + 3 * np.eye(a * m)
    prob = _kron._Problem(W3, M, None)
    F = np.linalg.qr(rng.standard_normal((a, r)))[0]
    MF = prob.apply_metric(F)
    p = prob.point(F, MF)
    free = _kron._newton_direction(prob, p, 50, 1e-12)
    assert free.negative and np.linalg.norm(free.X) > 0.9
    region = _kron._TrustRegion(0.2)
    q = _kron._newton_update(prob, F, MF, 50, 1e-12, p=p, region=region)
    assert q is not None and q.f < p.f and q.unmet > 0
    # the step X is horizontal: span(q.F) turned by angles whose tangents are X's
    # singular values
    cosines = np.linalg.svd(F.T @ q.F, compute_uv=False)
    tangents = np.sqrt(np.maximum(1 / cosines ** 2 - 1, 0))
    assert np.linalg.norm(tangents) == pytest.approx(0.2, rel=1e-9)
    assert region.radius == pytest.approx(0.4)


@pytest.mark.parametrize("t, cut, share, missed", [
    (1.0, False, 0.97, False), (1.0, False, 0.14, True), (0.5, False, 0.97, True),
    (1.0, True, 0.97, True)])
def test_a_step_misses_its_model_when_halved_cut_short_or_far_short(t, cut, share, missed):
    assert _kron.missed_model(t, cut, share * 1e-5, 1e-5) is missed


def _near_optimum(out_rank=None):
    """A problem and an ``F`` after 8 alternations: near enough to the optimum for the
    Newton model to hold (a full step meets it to 1e-3), far enough for rounding not to
    blur the decreases."""
    rng = np.random.default_rng(2)
    o, a, m, r = 12, 9, 3, 3
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.5, a)[None, :, None]
    M = _spd(rng, a * m) + 3 * np.eye(a * m)
    fit = _kron.fit_kron(W3, M, [("F", rng.standard_normal((a, r)))], out_rank,
                         max_iter=8, tol=0.0, newton_after=1000, single=False)
    prob = _kron._Problem(W3, M, out_rank)
    return prob, fit.F, prob.apply_metric(fit.F)


@pytest.mark.parametrize("scale, missed", [(1.0, False), (1.8, True)])
def test_a_full_step_far_short_of_its_model_carries_its_promise(monkeypatch, scale, missed):
    """Along ``s`` times the Newton direction the model promises ``s P`` and the objective
    falls by about ``(2 s - s^2) P``: at ``s`` = 1.8 a fifth of the promise. That full
    step's point carries the promise (``unmet``), the Newton step's none."""
    prob, F, MF = _near_optimum()
    newton_direction = _kron._newton_direction

    def scaled(*args, **kwargs):
        d = newton_direction(*args, **kwargs)
        return dataclasses.replace(d, X=scale * d.X, MX=scale * d.MX,
                                   decrease=scale * d.decrease)

    monkeypatch.setattr(_kron, "_newton_direction", scaled)
    p = prob.point(F, MF)
    q = _kron._newton_update(prob, F, MF, 50, 1e-12)
    assert q is not None and q.f < p.f
    assert (q.unmet > 0) is missed
    if missed:
        assert p.f - q.f < 0.5 * q.unmet


@pytest.mark.parametrize("out_rank", [None, 4])
def test_a_newton_step_that_promises_too_little_is_not_taken(monkeypatch, out_rank):
    """Where the Newton model promises at most ``enough``, the step returns the point of
    ``F`` itself (the fit has converged); with ``enough`` = 0 it moves and lowers the
    objective."""
    # float64 Hessian products (float32 ones may call rounding negative curvature here)
    monkeypatch.setattr(_kron_tucker.RankNewton, "_single", lambda self, prob: prob)
    prob, F, MF = _near_optimum(out_rank)
    newton = _kron._VarProNewton(None) if out_rank is None else _kron_tucker.RankNewton()
    p = newton.point_at(prob, F, MF)
    same = newton(prob, F, MF, 50, 1e-12, 1e3 * p.f, 0.0)
    assert same is not None and same.F is F and same.f == p.f and same.unmet == 0.0
    moved = type(newton)(None) if out_rank is None else _kron_tucker.RankNewton()
    step = moved(prob, F, MF, 50, 1e-12, 0.0, 0.0)
    assert step is not None and step.F is not F and step.f < p.f


@pytest.mark.parametrize("resolved, trials", [(1.0, 1), (0.0, 5)])
def test_a_failed_step_that_promised_little_is_not_halved(monkeypatch, resolved, trials):
    """Uphill, a full step promising at most ``resolved`` ends the search at once (the
    point of ``F``, converged: rounding, not the step, is at fault there); promising
    more, it is halved four times before the step gives up (None)."""
    prob, F, MF = _near_optimum()
    p = prob.point(F, MF)
    newton_direction, point = _kron._newton_direction, prob.point
    tried = []

    def uphill(*args, **kwargs):
        d = newton_direction(*args, **kwargs)
        return dataclasses.replace(d, X=-d.X, MX=-d.MX, decrease=0.5)

    def counted(*args):
        tried.append(1)
        return point(*args)

    monkeypatch.setattr(_kron, "_newton_direction", uphill)
    monkeypatch.setattr(prob, "point", counted)
    got = _kron._newton_update(prob, F, MF, 50, 1e-12, p=p, resolved=resolved)
    assert len(tried) == trials
    assert (got is None) if trials == 5 else (got.F is F and got.f == p.f)


def test_fit_ends_without_a_step_its_model_calls_too_small(rng):
    """The fit stops at an untaken Newton step: converged, with the objective of the
    last step taken, and the untaken one not counted."""
    o, a, m, r = 12, 9, 3, 3
    W3 = rng.standard_normal((o, a, m)) * np.linspace(2, 0.5, a)[None, :, None]
    M = _spd(rng, a * m) + 3 * np.eye(a * m)
    calls = []

    class Counting(_kron._VarProNewton):
        def __call__(self, prob, F, MF, cg_iter, cg_tol, enough, resolved):
            point = super().__call__(prob, F, MF, cg_iter, cg_tol, enough, resolved)
            calls.append(point is not None and point.F is F)
            return point

    fit = _kron.fit_kron(W3, M, [("F", rng.standard_normal((a, r)))], max_iter=200,
                         tol=1e-8, single=False, newton=Counting(None))
    assert fit.converged and calls[-1] and not any(calls[:-1])
    assert fit.newton_steps == len(calls) - 1
    assert fit.objective == pytest.approx(_objective(W3, M, fit.C, fit.F), rel=1e-12)


@pytest.mark.parametrize("final", [True, False])
def test_only_the_final_iterations_leave_small_newton_steps_untaken(rng, final):
    """Before the float64 iterations every Newton step is taken (a float32 step is
    cheaper than the float64 one that would replace it); in the final ones a step whose
    model promises less than a share of the tolerance is not."""
    prob, F, C = _scripted_problem(rng)
    o = C.shape[0]
    values, asked = iter([0.5, 0.25, 0.125]), []

    def newton(prob, F, MF, cg_iter, cg_tol, enough, resolved):
        asked.append(enough)
        return SimpleNamespace(F=F.copy(), MF=MF, C=C.reshape(o, -1), f=next(values),
                               unmet=0.0)

    state = _kron._State(F, prob.apply_metric(F), C, 1.0)
    _kron._refine(prob, state, 3, 1e-4, 2, 0, newton, final=final)
    share = _kron._UNTAKEN_SHARE if final else 0.0
    want = [share * 1e-4 * f for f in (1.0, 0.5, 0.25)]
    assert asked == pytest.approx(want)


@pytest.mark.parametrize("shape", [(7, 5, 3), (4, 9, 2), (2, 40, 3)])
def test_leading_input_basis_spans_the_truncated_svd_factor(rng, shape):
    """The basis from the smaller Gram matrix ((a, a), or (o m, o m) when a is larger)
    spans the leading left singular subspace of the unfolding (o, a, m) -> (a, o m), and
    it is orthonormal."""
    o, a, m = shape
    r = 3
    W3 = rng.standard_normal(shape) * np.linspace(3, 0.2, a)[None, :, None]
    U = np.linalg.svd(W3.transpose(1, 0, 2).reshape(a, -1))[0][:, :r]
    F = _kron.leading_input_basis(W3, r)
    assert F.shape == (a, r)
    np.testing.assert_allclose(F.T @ F, np.eye(r), atol=1e-12)
    np.testing.assert_allclose(F @ F.T, U @ U.T, atol=1e-10)


def test_leading_input_basis_beyond_the_rank_of_the_unfolding(rng):
    """A rank above that of the unfolding (a spatial SVD's ``a = in kh`` larger than
    ``out kw``): the basis holds the unfolding's whole range, completed by orthonormal
    directions."""
    o, a, m, r = 2, 30, 3, 10
    W3 = rng.standard_normal((o, a, m))
    T = W3.transpose(1, 0, 2).reshape(a, -1)
    F = _kron.leading_input_basis(W3, r)
    assert F.shape == (a, r)
    np.testing.assert_allclose(F.T @ F, np.eye(r), atol=1e-12)
    np.testing.assert_allclose(F @ (F.T @ T), T, atol=1e-10 * np.abs(T).max())



@pytest.mark.parametrize("method", ["weight_svd", "tucker2"])
def test_pointwise_conv_is_the_whitened_truncated_svd(rng, method):
    """A 1x1 conv: the metric is its own Kronecker product, so the fit is the generalised
    SVD in closed form; its errors are those of the channel SVD at the same product rank
    (Tucker-2: the smaller of its two ranks)."""
    W = rng.standard_normal((12, 10, 1, 1))
    X = np.maximum(rng.standard_normal((4, 10, 5, 5)) + 0.3, 0.0)
    res = compress_conv(W, method, ratio=0.5, X=X, input_hw=(5, 5))
    assert res.info.message.endswith("generalised SVD: closed form")
    rank = res.rank if method == "weight_svd" else min(res.rank)
    channel = compress_conv(W, "channel_svd", rank=rank, X=X, input_hw=(5, 5))
    assert res.calib_output_error == pytest.approx(channel.calib_output_error, rel=1e-9)
    assert res.weight_error == pytest.approx(channel.weight_error, rel=1e-9)


def test_column_kernel_spatial_svd_is_closed_form_and_no_worse_than_iterating(rng,
                                                                              monkeypatch):
    """A kh x 1 kernel: the spatial SVD has one position per group and its closed form is
    the optimum: at or below what long alternations from the truncated SVD reach."""
    W = rng.standard_normal((8, 4, 3, 1))
    X = np.maximum(rng.standard_normal((2, 4, 6, 6)) + 0.3, 0.0)
    kwargs = dict(rank=3, X=X, padding=(1, 0), input_hw=(6, 6))
    closed = compress_conv(W, "spatial_svd", **kwargs)
    assert closed.info.message.endswith("generalised SVD: closed form")
    monkeypatch.setattr(_kron, "nearest_kron_start", lambda *args: None)
    long = compress_conv(W, "spatial_svd", options=CompressOptions(alt_tol=1e-12), **kwargs)
    assert "alternations" in long.info.message
    assert closed.calib_output_error <= long.calib_output_error * (1 + 1e-8)
    assert closed.calib_output_error == pytest.approx(long.calib_output_error, rel=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_updates_in_place(rng, dtype):
    """``y += alpha x`` in place: contiguous (BLAS), strided and empty arrays alike."""
    x, y = (rng.standard_normal((4, 3, 5)).astype(dtype) for _ in range(2))
    for xs, ys in ((x, y.copy()), (x[:, ::2], y.copy()[:, ::2]), (x[:0], y[:0].copy())):
        want = ys + dtype(0.7) * xs
        _kron._axpy(0.7, xs, ys)
        np.testing.assert_allclose(ys, want, rtol=1e-6, atol=1e-6)
        assert ys.dtype == dtype


@pytest.mark.parametrize("single", [True, False])
def test_give_up_ends_the_fit_unconverged_where_it_says(rng, single):
    """``give_up`` sees the objective and the decreases after every iteration; True ends
    the fit there (no float64 iterations after a float32 phase that gave up), and the
    objective is still the float64 one of the returned factor."""
    o, a, m, r = 10, 8, 3, 3
    W3, M = rng.standard_normal((o, a, m)), _spd(rng, a * m)
    seen = []

    def give_up(f, decreases):
        seen.append((f, list(decreases)))
        return len(decreases) >= 2

    F0 = np.linalg.qr(rng.standard_normal((a, r)))[0]
    fit = _kron.fit_kron(W3, M, [("F0", F0)], out_rank=2, max_iter=50, tol=1e-14,
                         single=single, give_up=give_up)
    assert fit.iterations == 2 and not fit.converged
    assert [len(d) for _, d in seen[:2]] == [1, 2]
    assert fit.objective == pytest.approx(_objective(W3, M, fit.C, fit.F), rel=1e-10)
    assert fit.objective < fit.start_objective
