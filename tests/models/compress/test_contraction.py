import numpy as np
import pytest
from scipy.optimize import minimize

from sdf.errors import DataError, ModelError
from sdf.models.compress import CompressOptions, LowRankHead, compress_head, conv2d


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """These problems are small: one BLAS thread is fastest and does not fight other jobs."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.mark.parametrize("format, rank", [("tucker", (5, 3, 2, 3)), ("cp", 4)])
def test_forward_equals_dense_weight_product(format, rank, rng):
    Wt, b = rng.standard_normal((5, 4, 6, 7)), rng.standard_normal(5)
    head = compress_head(Wt, rank=rank, format=format, bias=b)
    F = rng.standard_normal((9, 4, 6, 7))
    expected = F.reshape(9, -1) @ head.dense().reshape(5, -1).T + b
    np.testing.assert_allclose(head.forward(F), expected, atol=1e-10)
    np.testing.assert_allclose(head.forward(F.reshape(9, -1)), expected, atol=1e-10)


@pytest.mark.parametrize("format", ["tucker", "cp"])
def test_forward_never_forms_the_weight(format, rng, monkeypatch):
    head = compress_head(rng.standard_normal((3, 4, 5, 5)), rank=2, format=format)
    F = rng.standard_normal((2, 4, 5, 5))
    expected = head.forward(F)
    monkeypatch.setattr(LowRankHead, "dense", lambda self: 1 / 0)
    np.testing.assert_array_equal(head.forward(F), expected)


def test_tucker_exact_at_full_rank(rng):
    Wt = rng.standard_normal((10, 4, 6, 6))
    head = compress_head(Wt.reshape(10, -1), rank=(10, 4, 6, 6), feature_shape=(4, 6, 6))
    assert head.weight_error < 1e-12


def test_param_and_mac_counts_exact(rng):
    Wt = rng.standard_normal((10, 8, 6, 5))
    tk = compress_head(Wt, rank=(4, 3, 2, 2), bias=np.zeros(10))
    assert tk.n_params == 10 * 4 + 8 * 3 + 6 * 2 + 5 * 2 + 4 * 3 * 2 * 2 + 10
    assert tk.macs == 8 * 6 * 5 * 3 + 6 * 5 * 3 * 2 + 5 * 3 * 2 * 2 + 4 * 3 * 2 * 2 + 4 * 10
    assert tk.params_before == 2400 + 10 and tk.macs_before == 2400
    cp = compress_head(Wt, rank=3, format="cp")
    assert cp.n_params == 3 * (10 + 8 + 6 + 5)
    assert cp.macs == 8 * 6 * 5 * 3 + 6 * 5 * 3 + 5 * 3 + 3 * 10


def test_ratio_respected(rng):
    Wt = rng.standard_normal((10, 8, 8, 8))
    for format in ("tucker", "cp"):
        head = compress_head(Wt, ratio=0.1, format=format,  # type: ignore[arg-type]
                             options=CompressOptions(max_iter=20))
        assert head.n_params <= 0.1 * head.params_before


@pytest.mark.parametrize("format, rank", [("tucker", 2), ("cp", 3)])
def test_data_aware_beats_data_free_on_calibration_response(format, rank, rng):
    Wt = rng.standard_normal((6, 4, 5, 5))
    X = rng.standard_normal((300, 4, 5, 5)) * np.linspace(0.05, 3, 100).reshape(4, 5, 5)
    opts = CompressOptions(max_iter=60)
    plain = compress_head(Wt, rank=rank, format=format, options=opts)
    aware = compress_head(Wt, rank=rank, X=X, format=format, options=opts)
    Y = X.reshape(300, -1) @ Wt.reshape(6, -1).T
    err = lambda h: np.linalg.norm(h.forward(X) - Y) / np.linalg.norm(Y)  # noqa: E731
    assert aware.calib_output_error == pytest.approx(err(aware), rel=1e-10)
    assert err(aware) < 0.95 * err(plain)


def _softmax_head(A, y, K, lam=1e-3):
    """Multinomial logistic regression (L-BFGS): weight (K, D) and bias (K,)."""
    n, D = A.shape
    Y = np.eye(K)[y]

    def loss(w):
        W, b = w[:K * D].reshape(K, D), w[K * D:]
        Z = A @ W.T + b
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        G = (P - Y) / n
        value = -np.sum(Y * np.log(P + 1e-300)) / n + lam / 2 * np.sum(W * W)
        return value, np.concatenate([(G.T @ A + lam * W).ravel(), G.sum(axis=0)])

    w = minimize(loss, np.zeros(K * D + K), jac=True, method="L-BFGS-B",
                 options={"maxiter": 500}).x
    return w[:K * D].reshape(K, D), w[K * D:]


def test_regression_head_accuracy_near_dense_head_on_digits():
    """Digits 8x8 -> 8 fixed random 3x3 filters + ReLU -> (8, 8, 8) maps -> softmax head.

    The Tucker head at <= 10 % of the parameters, fitted from 500 calibration maps, keeps
    the test accuracy within 5 points of the dense head (measured: 97.7 % dense, 94.6 %
    Tucker); the data-free Tucker head at the same size is far worse.
    """
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(data.target))
    tr, te = idx[:1200], idx[1200:]
    filters = rng.standard_normal((8, 1, 3, 3))

    def features(images):
        return np.maximum(conv2d(images.reshape(-1, 1, 8, 8) / 16.0, filters, padding=1), 0)

    F_tr, F_te = features(data.data[tr]), features(data.data[te])
    W, b = _softmax_head(F_tr.reshape(len(tr), -1), data.target[tr], 10)
    accuracy = lambda scores: float(np.mean(scores.argmax(1) == data.target[te]))  # noqa
    dense = accuracy(F_te.reshape(len(te), -1) @ W.T + b)
    head = compress_head(W, ratio=0.1, X=F_tr[:500], bias=b, feature_shape=(8, 8, 8))
    free = compress_head(W, ratio=0.1, bias=b, feature_shape=(8, 8, 8))
    assert head.n_params <= 0.1 * head.params_before
    assert dense > 0.95
    assert accuracy(head.forward(F_te)) >= dense - 0.05
    assert accuracy(free.forward(F_te)) < accuracy(head.forward(F_te)) - 0.1


def test_bad_arguments(rng):
    Wt = rng.standard_normal((3, 2, 4, 4))
    with pytest.raises(ModelError, match="needs feature_shape"):
        compress_head(Wt.reshape(3, -1), rank=2)
    with pytest.raises(ModelError, match="Tucker rank .* must have 4 entries"):
        compress_head(Wt, rank=(3, 3, 1, 1))
    with pytest.raises(ModelError, match="format must be 'tucker' or 'cp'"):
        compress_head(Wt, rank=2, format="tt")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="X must hold finite feature maps"):
        compress_head(Wt, rank=2, X=np.ones((4, 2, 4, 3)))
    head = compress_head(Wt, rank=2)
    with pytest.raises(DataError, match=r"the head reads \(n, 2, 4, 4\)"):
        head.forward(np.ones((1, 3, 4, 4)))
