import numpy as np
import pytest

import sdf.models.compress._formats as fmt
from sdf.errors import DataError, ModelError
from sdf.models.compress import TensorizedLinear, factor_sizes, tensorize_linear


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """These problems are small: one BLAS thread is fastest and does not fight other jobs."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        yield


def _prod(xs):
    return int(np.prod(xs)) if len(xs) else 1


# ------------------------------------------------------------------ sizes
@pytest.mark.parametrize("n, d, expected", [(64, 2, (8, 8)), (64, 3, (4, 4, 4)),
                                            (784, 2, (28, 28)), (128, 2, (16, 8)),
                                            (1000, 3, (10, 10, 10)), (1, 3, (1, 1, 1)),
                                            (26, 2, (7, 4))])  # 13 x 2 too unbalanced: pad
def test_factor_sizes_balanced_and_exact(n, d, expected):
    assert factor_sizes(n, d) == expected


@pytest.mark.parametrize("p", [13, 97, 101])
def test_prime_is_padded_or_left_unfactored(p):
    padded = factor_sizes(p, 2)
    assert _prod(padded) > p and max(padded) <= int(np.ceil(np.sqrt(p))) + 1
    assert factor_sizes(p, 2, pad=False) == (p, 1)


def test_factor_sizes_rejects_bad_input():
    with pytest.raises(ModelError, match="n must be an int >= 1"):
        factor_sizes(0, 2)
    with pytest.raises(ModelError, match="d must be an int >= 1"):
        factor_sizes(10, 0)


# ------------------------------------------------------------------ forward = dense
CASES = [("tt", 3, {}), ("cp", 4, {}), ("tucker", 3, {}),
         ("tt", 2, {"order": 3}), ("cp", 3, {"order": 3}), ("tucker", 2, {"order": 3})]


@pytest.mark.parametrize("format, rank, kw", CASES)
def test_forward_equals_dense_weight_product(format, rank, kw, rng):
    W, b = rng.standard_normal((24, 36)), rng.standard_normal(24)
    layer = tensorize_linear(W, format, rank=rank, bias=b, **kw)
    x = rng.standard_normal((7, 36))
    np.testing.assert_allclose(layer.forward(x), x @ layer.dense().T + b, atol=1e-10)


@pytest.mark.parametrize("format", ["tt", "cp", "tucker"])
def test_forward_never_forms_the_weight(format, rng, monkeypatch):
    layer = tensorize_linear(rng.standard_normal((16, 16)), format, rank=3)
    expected = layer.forward(np.eye(16))

    def refuse(*args):
        raise AssertionError("the forward pass formed the weight")

    for name in ("tt_dense", "cp_dense", "tucker_dense", "unpaired_matrix"):
        monkeypatch.setattr(fmt, name, refuse)
    np.testing.assert_array_equal(layer.forward(np.eye(16)), expected)


@pytest.mark.parametrize("format", ["tt", "cp", "tucker"])
def test_padded_sizes_forward_and_exact_at_full_rank(format, rng):
    W = rng.standard_normal((13, 17))  # both prime: padded to (5, 3) x (6, 3)
    layer = tensorize_linear(W, format, rank=200 if format != "cp" else 15)
    assert layer.out_sizes == (5, 3) and layer.in_sizes == (6, 3)
    x = rng.standard_normal((4, 17))
    np.testing.assert_allclose(layer.forward(x), x @ W.T, atol=1e-10)


def test_tt_svd_is_exact_at_full_rank(rng):
    W = rng.standard_normal((27, 64))
    layer = tensorize_linear(W, "tt", rank=10**6, order=3, sweeps=0)
    assert layer.info.message == "TT-SVD"
    assert layer.rank == (1, 12, 12, 1)  # the unfolding sizes min(3*4, 9*16), min(9*16, 4*3)
    assert layer.weight_error < 1e-12


def test_tt_at_low_rank_matches_tt_svd_error_bound(rng):
    """TT-SVD error is at most sqrt(d - 1) times the best; ALS refinement never raises it."""
    W = rng.standard_normal((16, 16))
    svd0 = tensorize_linear(W, "tt", rank=4, sweeps=0)
    refined = tensorize_linear(W, "tt", rank=4, sweeps=5)
    # d = 2: the TT-matrix is the SVD of the paired matrix, TT-SVD is already optimal
    s = np.linalg.svd(fmt.paired_tensor(W, (4, 4), (4, 4)), compute_uv=False)
    best = np.sqrt(np.sum(s[4:] ** 2)) / np.linalg.norm(W)
    assert svd0.weight_error == pytest.approx(best, rel=1e-10)
    assert refined.weight_error <= svd0.weight_error + 1e-12


@pytest.mark.parametrize("format", ["tt", "cp"])
def test_als_refinement_lowers_error_with_padded_sizes(format, rng):
    """Padded output rows are free in the sweeps: the error on the real entries only drops."""
    W = rng.standard_normal((13, 17))
    start = tensorize_linear(W, format, rank=2, sweeps=0)
    refined = tensorize_linear(W, format, rank=2, sweeps=20)
    assert refined.out_sizes == (5, 3)
    assert refined.weight_error < start.weight_error


# ------------------------------------------------------------------ counts
def _tt_counts(out_sizes, in_sizes, ranks):
    params = sum(ranks[k] * o * i * ranks[k + 1]
                 for k, (o, i) in enumerate(zip(out_sizes, in_sizes)))
    macs = sum(_prod(out_sizes[:k]) * ranks[k] * in_sizes[k] * out_sizes[k] * ranks[k + 1]
               * _prod(in_sizes[k + 1:]) for k in range(len(in_sizes)))
    return params, macs


def test_tt_param_and_mac_counts_exact(rng):
    layer = tensorize_linear(rng.standard_normal((60, 64)), "tt", rank=5, order=3,
                             bias=np.zeros(60))
    assert layer.out_sizes == (5, 4, 3) and layer.in_sizes == (4, 4, 4)
    params, macs = _tt_counts(layer.out_sizes, layer.in_sizes, layer.rank)
    assert layer.rank == (1, 5, 5, 1)
    assert layer.n_params == params + 60 == 20 * 5 + 5 * 16 * 5 + 5 * 12 + 60
    assert layer.macs == macs == 4 * 16 * 5 * 5 + 5 * 5 * 4 * 4 * 5 * 4 + 20 * 5 * 4 * 3
    assert layer.params_before == 60 * 64 + 60 and layer.macs_before == 60 * 64


def test_cp_and_tucker_counts_exact(rng):
    W = rng.standard_normal((12, 20))
    cp = tensorize_linear(W, "cp", rank=3)          # (4, 3) x (5, 4)
    assert cp.n_params == 3 * (4 * 5 + 3 * 4)
    assert cp.macs == 3 * (5 * 4 * 4) + 3 * (4 * 4 * 3)
    tk = tensorize_linear(W, "tucker", rank=2)
    assert tk.rank == (2, 2, 2, 2)
    assert tk.n_params == 2 * (4 + 3 + 5 + 4) + 16
    # inputs: x ×_1 V_1 (5*2*4), ×_2 V_2 (2*4*2); core 16; outputs (2*4*2) + (4*3*1)
    assert tk.macs == 5 * 2 * 4 + 2 * 4 * 2 + 16 + 2 * 4 * 2 + 4 * 2 * 3


@pytest.mark.parametrize("format", ["tt", "cp", "tucker"])
def test_ratio_takes_largest_rank_within_budget(format, rng):
    W = rng.standard_normal((64, 64))
    layer = tensorize_linear(W, format, ratio=0.1, order=3)
    assert layer.n_params <= 0.1 * layer.params_before
    r = max(layer.rank) if isinstance(layer.rank, tuple) else layer.rank
    from sdf.models.compress.tensorized import params_at
    assert params_at(format, layer.out_sizes, layer.in_sizes, r + 1) > 0.1 * 64 * 64


# ------------------------------------------------------------------ data-aware
def _calib(rng, n=300, d=64):
    return rng.standard_normal((n, d)) * np.linspace(0.05, 3, d)


@pytest.mark.parametrize("format, rank", [("tt", 3), ("cp", 6), ("tucker", 3)])
def test_data_aware_beats_data_free_on_calibration_response(format, rank, rng):
    W, X = rng.standard_normal((32, 64)), _calib(rng)
    plain = tensorize_linear(W, format, rank=rank, order=3)
    aware = tensorize_linear(W, format, rank=rank, order=3, X=X, balance=0.9)
    assert aware.output_error(X, W) < 0.95 * plain.output_error(X, W)
    assert aware.calib_output_error == pytest.approx(aware.output_error(X, W), rel=1e-12)


def test_data_aware_bias_is_refitted_to_the_mean_input(rng):
    W, b = rng.standard_normal((16, 16)), rng.standard_normal(16)
    X = rng.standard_normal((200, 16)) + 5.0  # far-off mean
    layer = tensorize_linear(W, "tt", rank=2, X=X, bias=b)
    mu = X.mean(axis=0)
    np.testing.assert_allclose(layer.bias, b + (W - layer.dense()) @ mu, atol=1e-10)
    np.testing.assert_allclose(layer.forward(mu[None]), (mu @ W.T + b)[None], atol=1e-9)


@pytest.mark.parametrize("diag", [False, True])
def test_tt_core_update_is_exact_least_squares(diag, rng):
    """After a core update the objective is stationary in that core (it is quadratic)."""
    W = rng.standard_normal((12, 16))
    cores = [rng.standard_normal(s) for s in ((1, 4, 4, 3), (3, 3, 4, 1))]
    if diag:
        metric = fmt.Metric(diag=rng.uniform(0.1, 2.0, 16))
    else:
        P = rng.standard_normal((40, 16))
        metric = fmt.Metric(full=P.T @ P + 0.1 * np.eye(16))
    for k in (0, 1):
        cores[k] = fmt._tt_core_update(cores, k, metric.apply(W), metric)
        f0 = metric.value(fmt.tt_dense(cores) - W)
        for _ in range(3):
            D = rng.standard_normal(cores[k].shape)
            trial = list(cores)
            trial[k] = cores[k] + 1e-3 * D
            assert metric.value(fmt.tt_dense(trial) - W) >= f0
            trial[k] = cores[k] + D
            fp = metric.value(fmt.tt_dense(trial) - W)
            trial[k] = cores[k] - D
            fm = metric.value(fmt.tt_dense(trial) - W)
            assert abs(fp - fm) <= 1e-9 * (fp + fm)  # zero directional derivative


def _dense_normal_solve(cores, k, W, M):
    """Core k from the normal equations of the dense design matrix (no structure used)."""
    a, o, i, b = cores[k].shape
    cols = []
    for j in range(cores[k].size):
        E = np.zeros(cores[k].size)
        E[j] = 1.0
        trial = list(cores)
        trial[k] = E.reshape(cores[k].shape)
        cols.append(fmt.tt_dense(trial).reshape(-1))
    J = np.array(cols).T  # (out in, core entries)
    Mbig = np.kron(np.eye(W.shape[0]), M)
    g = np.linalg.solve(J.T @ Mbig @ J, J.T @ Mbig @ W.reshape(-1))
    return g.reshape(a, o, i, b)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_tt_core_solve_equals_dense_normal_equations(k, rng):
    """Middle and end cores (both contraction orders of the normal matrix) of an order-3
    TT-matrix under a full metric, against the dense design matrix's normal equations."""
    W = rng.standard_normal((2 * 3 * 2, 3 * 2 * 3))
    cores = [rng.standard_normal(s) for s in ((1, 2, 3, 2), (2, 3, 2, 3), (3, 2, 3, 1))]
    P = rng.standard_normal((7, 18))  # fewer rows than inputs: a low-rank Gram
    M = 0.3 * np.eye(18) + P.T @ P
    got = fmt._tt_core_update(cores, k, W @ M, fmt.Metric(full=M))
    np.testing.assert_allclose(got, _dense_normal_solve(cores, k, W, M), rtol=0, atol=1e-10)


def test_tt_als_objective_never_rises_and_beats_the_weight_fit(rng):
    """Data-aware sweeps (over-relaxed after the first) lower the objective every sweep and
    end below the objective of the data-free (weight-only) fit."""
    W = rng.standard_normal((16, 27))
    X = np.maximum(rng.standard_normal((10, 27)) + 0.3, 0.0)
    M = 0.1 * np.eye(27) / np.vdot(W, W) + 0.9 * X.T @ X / np.linalg.norm(X @ W.T) ** 2
    metric = fmt.Metric(full=M)
    cores = [rng.standard_normal(s) for s in ((1, 4, 3, 3), (3, 2, 3, 3), (3, 2, 3, 1))]
    free = fmt.tt_als(W, cores, fmt.Metric(diag=np.ones(27)), 16, 20, 0.0)
    aware = fmt.tt_als(W, free.factors, metric, 16, 20, 0.0)
    hist = np.array(aware.history)
    assert len(hist) == aware.sweeps + 1 and np.all(np.diff(hist) <= 1e-12 * hist[0])
    assert aware.objective == pytest.approx(metric.value(fmt.tt_dense(aware.factors) - W))
    assert aware.objective < 0.9 * metric.value(fmt.tt_dense(free.factors) - W)


def test_data_aware_layer_objective_is_below_the_data_free_layers(rng):
    W = rng.standard_normal((24, 32))
    X = np.maximum(rng.standard_normal((12, 32)) + 0.3, 0.0)
    w_w, w_r = 0.1 / np.vdot(W, W), 0.9 / np.linalg.norm(X @ W.T) ** 2

    def objective(layer):
        E = layer.dense() - W
        return w_w * np.vdot(E, E) + w_r * np.vdot(X @ E.T, X @ E.T)

    for format in ("tt", "cp"):
        free = tensorize_linear(W, format, ratio=0.3)
        aware = tensorize_linear(W, format, ratio=0.3, X=X)
        assert objective(aware) < objective(free)


def test_cp_factor_update_is_exact_least_squares(rng):
    W = rng.standard_normal((12, 16))
    P = rng.standard_normal((40, 16))
    metric = fmt.Metric(full=P.T @ P + 0.1 * np.eye(16))
    factors = [rng.standard_normal((4, 4, 3)), rng.standard_normal((3, 4, 3))]
    factors[1] = fmt._cp_factor_update(factors, 1, metric.apply(W), metric)
    D = rng.standard_normal(factors[1].shape)
    fp = metric.value(fmt.cp_dense([factors[0], factors[1] + D]) - W)
    fm = metric.value(fmt.cp_dense([factors[0], factors[1] - D]) - W)
    assert abs(fp - fm) <= 1e-9 * (fp + fm)


# ------------------------------------------------------------------ errors
def test_bad_arguments_name_the_problem(rng):
    W = rng.standard_normal((8, 8))
    with pytest.raises(ModelError, match="format must be one of"):
        tensorize_linear(W, "svd", rank=2)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="give exactly one of rank, ratio or tol"):
        tensorize_linear(W, "tt")
    with pytest.raises(ModelError, match=r"shape .* fewer than the weight's 8 x 8"):
        tensorize_linear(W, "tt", rank=2, shape=((2, 2), (2, 2)))
    with pytest.raises(ModelError, match="bias has 3 entries"):
        tensorize_linear(W, "tt", rank=2, bias=np.ones(3))
    with pytest.raises(DataError, match=r"X has shape \(5, 7\)"):
        tensorize_linear(W, "tt", rank=2, X=np.ones((5, 7)))
    with pytest.raises(ModelError, match="even rank 1"):
        tensorize_linear(W, "tt", ratio=0.01)
    layer = tensorize_linear(W, "tt", rank=2)
    assert isinstance(layer, TensorizedLinear) and "tt" in repr(layer)
    with pytest.raises(DataError, match=r"the layer reads \(n, 8\)"):
        layer.forward(np.ones((2, 9)))
