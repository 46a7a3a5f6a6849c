"""Statistics for source separation (sdf.statistics) and the structured cumulant."""

import numpy as np
import pytest

import sdf
from sdf.errors import DataError
from sdf.statistics import cum3, cum4, cum4_tensor, dcov, scov, stcum4, xcum4
from sdf.tensors import Cumulant4Tensor

from test_tensorize import assert_matches_dense


def _ref_cum4(a, b, c, d):
    """The cross-cumulant straight from its formula, by einsum over centered channels."""
    a, b, c, d = (m - m.mean(axis=0) for m in (a, b, c, d))
    n = a.shape[0]
    b, c = b.conj(), c.conj()
    E = lambda sub, *ops: np.einsum(sub, *ops) / n  # noqa: E731
    return (E("ti,tj,tk,tl->ijkl", a, b, c, d)
            - np.einsum("ij,kl->ijkl", E("ti,tj->ij", a, b), E("tk,tl->kl", c, d))
            - np.einsum("ik,jl->ijkl", E("ti,tk->ik", a, c), E("tj,tl->jl", b, d))
            - np.einsum("il,jk->ijkl", E("ti,tl->il", a, d), E("tj,tk->jk", b, c)))


def test_cum3_matches_its_formula(rng):
    X = rng.exponential(size=(300, 3))
    Y = X - X.mean(axis=0)
    np.testing.assert_allclose(cum3(X), np.einsum("ti,tj,tk->ijk", Y, Y, Y) / 300,
                               rtol=1e-12, atol=1e-14)


def test_cum4_and_xcum4_match_their_formula(rng):
    X = [rng.laplace(size=(200, I)) for I in (2, 3, 1, 2)]
    np.testing.assert_allclose(xcum4(*X), _ref_cum4(*X), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(cum4(X[1]), _ref_cum4(*[X[1]] * 4), rtol=1e-11, atol=1e-13)


def test_xcum4_keeps_the_conjugates_of_its_formula(rng):
    X = [rng.standard_normal((100, 2)) + 1j * rng.laplace(size=(100, 2)) for _ in range(4)]
    np.testing.assert_allclose(xcum4(*X), _ref_cum4(*X), rtol=1e-11, atol=1e-13)


def test_cum4_is_symmetric_for_real_data(rng):
    C = cum4(rng.uniform(size=(500, 3)))
    for perm in [(1, 0, 2, 3), (0, 2, 1, 3), (3, 1, 2, 0), (2, 3, 0, 1)]:
        np.testing.assert_allclose(C, C.transpose(perm), atol=1e-15)


def test_cum4_of_gaussian_signals_is_near_zero(rng):
    C = cum4(rng.standard_normal((200000, 3)))
    assert np.abs(C).max() < 0.06


@pytest.mark.parametrize("sample, kurtosis", [
    (lambda rng, n: rng.laplace(size=n), 3.0),
    (lambda rng, n: rng.uniform(-1, 1, size=n), -1.2),
    (lambda rng, n: np.sin(0.01 * np.arange(n)), -1.5),
    (lambda rng, n: np.sign(np.sin(0.01 * np.arange(n)) + 1e-9), -2.0),
])
def test_cum4_gives_known_kurtoses(sample, kurtosis, rng):
    x = sample(rng, 400000)
    k = cum4(x, prewhiten=True)[0, 0, 0, 0]  # whitened: the excess kurtosis itself
    assert k == pytest.approx(kurtosis, abs=0.15)


def test_cum4_of_mixed_independent_sources_is_a_symmetric_cpd(rng):
    n = 200000
    S = np.stack([rng.laplace(size=n), rng.uniform(-1, 1, n)], axis=1)
    S = (S - S.mean(axis=0)) / S.std(axis=0)
    A = rng.standard_normal((3, 2))
    kappa = [3.0, -1.2]
    model = sum(k * np.einsum("i,j,k,l->ijkl", a, a, a, a) for k, a in zip(kappa, A.T))
    C = cum4(S @ A.T)
    assert np.linalg.norm(C - model) / np.linalg.norm(model) < 0.1


def test_prewhitening_gives_identity_covariance(rng):
    X = rng.standard_normal((400, 3)) @ rng.standard_normal((3, 3))
    np.testing.assert_allclose(scov(X, [0], prewhiten=True)[:, :, 0] * 399 / 400,
                               np.eye(3), atol=1e-12)


def test_cumulant_tensor_matches_dense_cum4(rng):
    X = rng.laplace(size=(60, 3))
    T = cum4_tensor(X)
    assert isinstance(T, Cumulant4Tensor) and T.kind == "cumulant4"
    np.testing.assert_allclose(T.to_dense(), cum4(X), rtol=1e-12, atol=1e-14)
    assert_matches_dense(T, rng)


def test_cumulant_tensor_norm_by_gram_blocks(rng):
    X = rng.laplace(size=(20, 4))  # I**3 > n: the norm through Gram blocks
    T = Cumulant4Tensor(X)
    assert T.norm_squared() == pytest.approx(np.sum(cum4(X) ** 2), rel=1e-10)


def test_symmetric_cpd_of_the_structured_cumulant(rng):
    # One variable in three modes, the kurtoses carried by the fourth factor.
    n = 50000
    S = np.stack([rng.laplace(size=n), rng.uniform(-1, 1, n)], axis=1)
    Q = np.linalg.qr(rng.standard_normal((2, 2)))[0]
    X = S @ Q.T
    T = cum4_tensor(X, prewhiten=True)
    a = sdf.Variable(Q + 0.1 * rng.standard_normal((2, 2)), name="a")
    b = sdf.Variable(Q, name="b")
    result = sdf.Model(c=sdf.CPD(T, [a, a, a, b])).fit(max_iter=100)
    found = result.variables["a"] / np.linalg.norm(result.variables["a"], axis=0)
    estimates = T.observations @ found  # whitened mixing is orthogonal: its transpose unmixes
    corr = np.abs(np.corrcoef(estimates.T, S.T)[:2, 2:])
    assert np.sort(corr.max(axis=1)).min() > 0.99


def test_stcum4_matches_lagged_cross_cumulants(rng):
    X = rng.laplace(size=(80, 2))
    L = 2
    C = stcum4(X, L)
    Y = X - X.mean(axis=0)
    m = 80 - 2 * L
    lag = lambda tau: Y[L + tau:L + tau + m]  # noqa: E731
    for taus in [(0, 0, 0), (-2, 1, 0), (2, 2, -1), (1, -2, 2)]:
        ref = _ref_cum4(lag(0), *[lag(t) for t in taus])
        # _ref_cum4 recenters each window; stcum4 centers once over the whole signal
        got = xcum4(lag(0), *[lag(t) for t in taus], center=False)
        np.testing.assert_allclose(C[(..., *[t + L for t in taus])], got, atol=1e-13)
        assert np.abs(got - ref).max() < 0.5 * np.abs(ref).max()


def test_scov_matches_its_formula(rng):
    X = rng.standard_normal((50, 3))
    Y = X - X.mean(axis=0)
    S = scov(X, [0, 2, 7])
    for k, s in enumerate([0, 2, 7]):
        np.testing.assert_allclose(S[:, :, k], Y[:50 - s].T @ Y[s:] / (49 - s), atol=1e-14)
    assert scov(X).shape == (3, 3, 3)


def test_dcov_matches_numpy_cov_per_slice(rng):
    X = rng.standard_normal((3, 20, 2, 4))  # variables, observations, others
    C = dcov(X, axes=(1, 0), unbiased=False)
    assert C.shape == (3, 3, 2, 4)
    np.testing.assert_allclose(C[:, :, 1, 3], np.cov(X[:, :, 1, 3], bias=True), atol=1e-14)


@pytest.mark.parametrize("call, match", [
    (lambda: cum4(np.ones((1, 2))), r"cum4: observations must be an \(n, I\) array"),
    (lambda: cum4(np.array([[1.0, np.inf], [0.0, 1.0]])), "cum4: observations must be finite"),
    (lambda: cum4(np.array([["a", "b"], ["c", "d"]])), "cum4: observations have dtype"),
    (lambda: xcum4(np.ones((5, 1)), np.ones((4, 1)), np.ones((5, 1)), np.ones((5, 1))),
     "xcum4: X1..X4 must have the same number of observations"),
    (lambda: stcum4(np.ones((5, 1)), 2), r"stcum4: max_lag must be an int in \[0, 1\]"),
    (lambda: scov(np.ones((5, 1)), [4]), r"scov: shifts must be ints in \[0, 3\]"),
    (lambda: dcov(np.ones((5, 2)), axes=(1, 1)), "dcov: axes must be two different modes"),
    (lambda: cum4_tensor(np.ones((5, 2)) * 1j), "cum4_tensor: complex observations"),
    (lambda: Cumulant4Tensor(np.ones((2, 2, 2))), r"data: observations must be a nonempty"),
])
def test_bad_input_names_the_function(call, match):
    with pytest.raises(DataError, match=match):
        call()


def test_inputs_are_not_modified(rng):
    X = rng.standard_normal((30, 2))
    before = X.copy()
    cum4(X, prewhiten=True), cum4_tensor(X), scov(X), stcum4(X, 1), dcov(X)
    np.testing.assert_array_equal(X, before)
