import numpy as np
import pytest

import sdf.models.compress._fit as _fit
import sdf.models.compress._formats as fmt
import sdf.models.compress._tucker_als as tals
from sdf.models.compress import tensorize_linear

OSZ, ISZ, CORE = (3, 2), (4, 3), (2, 2, 3, 2)


def _case(rng):
    W = rng.standard_normal((6, 12))
    U = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip(OSZ, CORE[:2])]
    V = [rng.standard_normal((n, s)) for n, s in zip(ISZ, CORE[2:])]
    core = rng.standard_normal(CORE)
    root = rng.standard_normal((5, 12))
    return W, U, V, core, root, 0.3, 0.7


def _dense_lstsq(W, root, w_w, w_r, W_hat_of, shape):
    """Minimiser of w_w ||E||^2 + w_r ||R E^T||^2 over a linear block, by a design matrix."""
    L = np.linalg.cholesky(w_w * np.eye(W.shape[1]) + w_r * root.T @ root)
    cols = []
    for e in range(int(np.prod(shape))):
        B = np.zeros(int(np.prod(shape)))
        B[e] = 1.0
        cols.append((W_hat_of(B.reshape(shape)) @ L).ravel())
    sol = np.linalg.lstsq(np.stack(cols, axis=1), (W @ L).ravel(), rcond=None)[0]
    return sol.reshape(shape)


def test_core_update_equals_dense_least_squares(rng):
    W, U, V, _, root, w_w, w_r = _case(rng)
    got = tals.tucker_core_update(W, U, V, root, w_w, w_r)
    want = _dense_lstsq(W, root, w_w, w_r, lambda C: fmt.tucker_dense(U, V, C), CORE)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("k", [0, 1])
def test_factor_update_equals_dense_least_squares(rng, k):
    W, U, V, core, root, w_w, w_r = _case(rng)

    def W_hat(Vk):
        return fmt.tucker_dense(U, [Vk if j == k else v for j, v in enumerate(V)], core)

    got = tals.tucker_factor_update(W, U, V, core, k, root, w_w, w_r)
    want = _dense_lstsq(W, root, w_w, w_r, W_hat, V[k].shape)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("gram", [True, False])
def test_als_objective_never_rises(rng, gram, monkeypatch):
    monkeypatch.setattr(tals, "_gram_route", lambda *args: gram)
    W, U, V, core, root, w_w, w_r = _case(rng)
    V = [np.linalg.qr(v)[0] for v in V]
    res = tals.tucker_als(W, U, V, core, root, w_w, w_r, 15, 0.0)
    hist = np.array(res.history)
    assert np.all(np.diff(hist) <= 1e-12 * hist[0])
    assert hist[-1] < 0.9 * hist[0]
    d = len(U)
    f = tals.tucker_objective(W, res.factors[:d], res.factors[d:2 * d], res.factors[-1], root,
                             w_w, w_r)
    assert f == pytest.approx(res.objective, rel=1e-10)


@pytest.mark.parametrize("shape", [None, ((5, 2), (5, 5))])
def test_aware_tucker_beats_data_free_and_start(rng, shape):
    W = rng.standard_normal((9, 20)) @ np.diag(np.linspace(2, 0.1, 20))
    X = np.maximum(rng.standard_normal((15, 20)) + 0.3, 0)
    calib = _fit.Calibration.from_rows(X)
    w_w, w_r = _fit.term_weights(W, calib, 0.9)

    def objective(layer):
        E = layer.dense() - W
        return w_w * np.vdot(E, E) + w_r * np.vdot(X @ E.T, X @ E.T)

    free = tensorize_linear(W, "tucker", rank=2, shape=shape)
    aware = tensorize_linear(W, "tucker", rank=2, shape=shape, X=X)
    again = tensorize_linear(W, "tucker", rank=2, shape=shape, X=X)
    assert "ALS sweeps in the metric" in aware.info.message
    assert objective(aware) < 0.9 * objective(free)
    np.testing.assert_array_equal(aware.dense(), again.dense())


@pytest.mark.parametrize("gram", [True, False])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_factor_update_of_an_order_three_input_side_equals_dense_least_squares(
        rng, k, gram, monkeypatch):
    """Input modes before and after k; the normal matrix from the dense metric (the core's
    Gram matrix against it) and from the calibration rows' design matrix."""
    monkeypatch.setattr(tals, "_gram_route", lambda *args: gram)
    osz, isz, core_shape = (2, 3), (3, 2, 4), (2, 2, 2, 2, 3)
    W = rng.standard_normal((6, 24))
    U = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip(osz, core_shape[:2])]
    V = [rng.standard_normal((n, s)) for n, s in zip(isz, core_shape[2:])]
    core = rng.standard_normal(core_shape)
    root = rng.standard_normal((7, 24))

    def W_hat(Vk):
        return fmt.tucker_dense(U, [Vk if j == k else v for j, v in enumerate(V)], core)

    got = tals.tucker_factor_update(W, U, V, core, k, root, 0.2, 0.8)
    want = _dense_lstsq(W, root, 0.2, 0.8, W_hat, V[k].shape)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(tals.tucker_core_update(W, U, V, root, 0.2, 0.8),
                               _dense_lstsq(W, root, 0.2, 0.8,
                                            lambda C: fmt.tucker_dense(U, V, C), core_shape),
                               rtol=1e-8, atol=1e-10)


def test_gram_route_is_chosen_by_cost():
    # many output core rows, few inputs per factor: the dense metric wins
    assert tals._gram_route(441, 100, 512, 32, 21)
    # ten output core rows against 2048 inputs: the calibration rows win
    assert not tals._gram_route(10, 64, 2048, 64, 5)
