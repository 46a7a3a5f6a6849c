"""The TT core solves of the data-aware fits: conjugate gradients through the metric's
calibration rows (single-precision products, double-precision line search) against the
dense normal equations, and the metric's factored form against its dense matrix."""

import numpy as np
import pytest

import sdf.models.compress._fit as _fit
import sdf.models.compress._formats as fmt
import sdf.models.compress.tensorized as tz
from sdf.models.compress import tensorize_linear
from test_tensorized import _dense_normal_solve

SHAPES = ((1, 2, 3, 2), (2, 3, 2, 3), (3, 2, 3, 1))  # out 12, in 18


@pytest.fixture(autouse=True)
def _one_blas_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        yield


def _factored_metric(rng, n=18, rows=7, scale=0.3):
    """``scale I + P^T P`` with a strong mean direction in the rows (as ReLU inputs have)."""
    P = rng.standard_normal((rows, n)) + 2.0
    s = np.full(n, scale)
    return fmt.Metric(full=np.diag(s) + P.T @ P, factored=(s, P))


def _with_core(metric, W, cores, k, core):
    """The objective of ``cores`` with core ``k`` replaced by ``core``."""
    trial = list(cores)
    trial[k] = core
    return metric.value(fmt.tt_dense(trial) - W)


def _case(rng):
    W = rng.standard_normal((12, 18))
    cores = [rng.standard_normal(s) for s in SHAPES]
    return W, cores


def test_factored_metric_products_equal_the_dense_metric(rng):
    metric = _factored_metric(rng)
    E = rng.standard_normal((5, 18))
    np.testing.assert_allclose(metric.apply(E), E @ metric.full, rtol=1e-12)
    np.testing.assert_allclose(metric.row_values(E), np.diag(E @ metric.full @ E.T),
                               rtol=1e-12)
    np.testing.assert_allclose(metric.single.apply(E.astype(np.float32)), E @ metric.full,
                               rtol=1e-5)


def test_layer_metric_is_factored_through_the_rows_with_padding(rng):
    W, X = rng.standard_normal((6, 13)), rng.standard_normal((4, 13))
    calib = _fit.Calibration.from_rows(X)
    metric = tz._metric(W, calib, 0.2, 0.7, 15)  # two padded inputs
    assert metric.factored is not None
    scale, root = metric.factored
    np.testing.assert_allclose(np.diag(scale) + root.T @ root, metric.full, atol=1e-12)
    np.testing.assert_array_equal(metric.full[13:], 0.0)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_pcg_core_solve_with_factored_metric_equals_dense_normal_equations(k, rng,
                                                                            monkeypatch):
    monkeypatch.setattr(fmt, "_PCG_MIN_SIZE", 0)
    W, cores = _case(rng)
    metric = _factored_metric(rng)
    assert metric.strong_directions(10)[0].shape[0] == 1  # the mean: Woodbury in use
    got = fmt._tt_core_update(cores, k, metric.apply(W), metric)
    np.testing.assert_allclose(got, _dense_normal_solve(cores, k, W, metric.full), rtol=0, atol=1e-9)


@pytest.mark.parametrize("factored", [True, False])
@pytest.mark.parametrize("max_pcg", [1, 100])
def test_single_precision_core_step_lowers_the_objective_even_over_relaxed(
        factored, max_pcg, rng, monkeypatch):
    """Loose tolerance: single-precision products, then the double-precision line search
    makes the step the exact minimiser along it, so any step in (0, 2) times it lowers the
    objective (one PCG iteration included); converged, it is near the exact core."""
    monkeypatch.setattr(fmt, "_PCG_MIN_SIZE", 0)
    monkeypatch.setattr(fmt, "_MAX_PCG", max_pcg)
    W, cores = _case(rng)
    metric = _factored_metric(rng)
    if not factored:
        metric = fmt.Metric(full=metric.full)

    def f(core, k):
        return _with_core(metric, W, cores, k, core)

    for k in range(3):
        new = fmt._tt_core_update(cores, k, metric.apply(W), metric, 1e-2)
        f0, f_opt = f(cores[k], k), f(_dense_normal_solve(cores, k, W, metric.full), k)
        for relax in (1.0, 1.6, 1.9):
            assert f(cores[k] + relax * (new - cores[k]), k) < f0
        if max_pcg == 100:
            assert f(new, k) - f_opt <= 1e-3 * (f0 - f_opt)


def test_tt_als_with_factored_metric_never_rises_and_reports_its_objective(rng, monkeypatch):
    monkeypatch.setattr(fmt, "_PCG_MIN_SIZE", 0)
    W = rng.standard_normal((12, 18))
    metric = _factored_metric(rng)
    cores = [rng.standard_normal(s) for s in SHAPES]
    res = fmt.tt_als(W, cores, metric, 12, 15, 0.0)
    hist = np.array(res.history)
    assert np.all(np.diff(hist) <= 1e-12 * hist[0]) and hist[-1] < 0.5 * hist[0]
    assert res.objective == pytest.approx(metric.value(fmt.tt_dense(res.factors) - W),
                                          rel=1e-12)


def test_layer_objective_matches_exact_core_solves(rng, monkeypatch):
    """The loose single-precision core solves end where exact double-precision solves do
    (the 10 sweeps of a data-aware layer with fewer calibration rows than inputs)."""
    W = rng.standard_normal((32, 48)) @ np.diag(np.linspace(2, 0.1, 48))
    X = np.maximum(rng.standard_normal((20, 48)) + 0.3, 0.0)
    w_w, w_r = _fit.term_weights(W, _fit.Calibration.from_rows(X), 0.9)

    def objective(layer):
        E = layer.dense() - W
        return w_w * np.vdot(E, E) + w_r * np.vdot(X @ E.T, X @ E.T)

    monkeypatch.setattr(fmt, "_PCG_MIN_SIZE", 0)
    fast = objective(tensorize_linear(W, "tt", ratio=0.3, X=X))
    monkeypatch.setattr(fmt, "_PCG_MIN_SIZE", 10 ** 9)
    exact = objective(tensorize_linear(W, "tt", ratio=0.3, X=X))
    assert fast == pytest.approx(exact, rel=1e-3)


def test_line_search_turns_wrong_single_precision_products_into_descent(rng, monkeypatch):
    """Single-precision products that are off by a factor 5 (a stand-in for rounding) give
    a step 5 times too long; the double-precision line search scales it back to the exact
    minimiser along it."""
    monkeypatch.setattr(fmt, "_PCG_MIN_SIZE", 0)
    W, cores = _case(rng)
    metric = _factored_metric(rng)
    s, P = metric.factored
    metric.__dict__["single"] = fmt.Metric(full=0.2 * metric.full,
                                           factored=(0.2 * s, np.sqrt(0.2) * P))

    def f(core, k):
        return _with_core(metric, W, cores, k, core)

    for k in range(3):
        new = fmt._tt_core_update(cores, k, metric.apply(W), metric, 1e-2)
        step = new - cores[k]
        values = [f(cores[k] + t * step, k) for t in (0.0, 0.9, 1.0, 1.1, 1.9)]
        assert values[2] <= min(values[1], values[3]) and values[4] < values[0]


def test_low_rank_preconditioner_is_the_normal_matrix_when_the_rows_have_one_direction(rng):
    """Orthonormal fixed cores, a uniform weight term and calibration rows along one
    direction: the preconditioner ``c I + Z^T Z`` is the normal matrix itself."""
    n = 18
    v = rng.standard_normal(n)
    P = np.outer(rng.standard_normal(7), v)
    s = np.full(n, 0.3)
    metric = fmt.Metric(full=np.diag(s) + P.T @ P, factored=(s, P))
    cores = [rng.standard_normal(sh) for sh in SHAPES]
    fmt._move_gauge(cores, 0, 1)
    fmt._move_gauge(cores, 2, -1)  # core 1 between orthonormal cores
    L, R = fmt._tt_left(cores, 1), fmt._tt_right(cores, 1)
    Lm = L.reshape(L.shape[0], -1)
    Rm = R.transpose(1, 0, 2).reshape(R.shape[1], -1)
    a, _, i, b = cores[1].shape
    N = fmt._tt_normal_full((Lm.T @ Lm).reshape(L.shape[1], a, L.shape[1], a),
                            (Rm.T @ Rm).reshape(b, R.shape[2], b, R.shape[2]), metric.full, i)
    inverse = fmt._low_rank_inverse(L, R, metric, i)
    np.testing.assert_allclose(inverse(N), np.eye(N.shape[0]), atol=1e-9)


def test_identity_weight_only_for_orthonormal_cores_and_a_uniform_diagonal(rng):
    metric = _factored_metric(rng)
    cores = [rng.standard_normal(sh) for sh in SHAPES]
    L, R = fmt._tt_left(cores, 1), fmt._tt_right(cores, 1)
    assert fmt._identity_weight(L, R, metric) is None  # random cores
    fmt._move_gauge(cores, 0, 1)
    fmt._move_gauge(cores, 2, -1)
    L, R = fmt._tt_left(cores, 1), fmt._tt_right(cores, 1)
    assert fmt._identity_weight(L, R, metric) == pytest.approx(0.3)
    s, P = metric.factored
    padded = fmt.Metric(full=metric.full, factored=(np.r_[s[:-1], 0.0], P))
    assert fmt._identity_weight(L, R, padded) is None


def _gauged_case(rng):
    """Cores with the gauge on core 0 (the others orthonormal, as the sweeps keep them)."""
    W, cores = _case(rng)
    fmt._move_gauge(cores, 2, -1)
    fmt._move_gauge(cores, 1, -1)
    return W, cores


def test_first_core_root_term_equals_assembling_then_projecting(rng):
    W, cores = _gauged_case(rng)
    P = rng.standard_normal(cores[0].shape)
    _, o, i, b = P.shape
    L, R = fmt._tt_left(cores, 0), fmt._tt_right(cores, 0)
    root = rng.standard_normal((7, 18))
    want = fmt._tt_project((fmt._tt_assemble(L, P, R) @ root.T) @ root, L, R, o, i)
    got = fmt._first_core_root_term(P, np.ascontiguousarray(R.transpose(0, 2, 1)), root)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_pcg_first_core_between_orthonormal_cores_equals_dense_normal_equations(
        rng, monkeypatch):
    """The identity weight term and the first core's batched products with the root."""
    monkeypatch.setattr(fmt, "_PCG_MIN_SIZE", 0)
    W, cores = _gauged_case(rng)
    metric = _factored_metric(rng)
    L, R = fmt._tt_left(cores, 0), fmt._tt_right(cores, 0)
    assert fmt._identity_weight(L, R, metric) == pytest.approx(0.3)
    got = fmt._tt_core_update(cores, 0, metric.apply(W), metric)
    np.testing.assert_allclose(got, _dense_normal_solve(cores, 0, W, metric.full), rtol=0,
                               atol=1e-9)
    loose = fmt._tt_core_update(cores, 0, metric.apply(W), metric, 1e-2)
    f0 = _with_core(metric, W, cores, 0, cores[0])
    for relax in (1.0, 1.6, 1.9):
        assert _with_core(metric, W, cores, 0, cores[0] + relax * (loose - cores[0])) < f0


def test_factored_metric_value_equals_the_dense_trace(rng):
    metric = _factored_metric(rng)
    E = rng.standard_normal((5, 18))
    assert metric.value(E) == pytest.approx(np.trace(E @ metric.full @ E.T), rel=1e-12)


def test_low_rank_preconditioner_keeps_single_precision(rng):
    metric = _factored_metric(rng)
    W, cores = _gauged_case(rng)
    L, R = fmt._tt_left(cores, 1), fmt._tt_right(cores, 1)
    inverse = fmt._low_rank_inverse(L, R, metric, cores[1].shape[2])
    B = rng.standard_normal((L.shape[2] * cores[1].shape[2] * R.shape[0], 3))
    single = inverse(B.astype(np.float32))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, inverse(B), rtol=1e-4, atol=1e-5 * np.abs(B).max())


def test_tt_als_with_padded_outputs_follows_the_freed_rows(rng, monkeypatch):
    """Padded output rows far from the fit: their target is reset to the fit every sweep
    (and the metric's product with it redone), so they never pull the fit."""
    monkeypatch.setattr(fmt, "_PCG_MIN_SIZE", 0)
    W = rng.standard_normal((12, 18))
    W[10:] = 1e3
    metric = _factored_metric(rng)
    cores = [rng.standard_normal(s) for s in SHAPES]
    res = fmt.tt_als(W, cores, metric, 10, 10, 0.0)
    hist = np.array(res.history)
    assert np.all(np.diff(hist) <= 1e-12 * hist[0]) and hist[-1] < 0.5 * hist[0]
    assert res.objective == pytest.approx(
        metric.value((fmt.tt_dense(res.factors) - W)[:10]), rel=1e-12)
