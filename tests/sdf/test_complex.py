"""Complex data and factors end to end: planted problems recovered by both solvers,
reported errors true to the returned complex factors, and nothing complex made real."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.problem import Problem

SHAPE, RANK, NOISE = (30, 40, 50), 5, 0.01


def hermitian_fms(true: list[np.ndarray], found: list[np.ndarray]) -> float:
    """Factor match score for complex factors: per component pair the product over the
    modes of ``|a^H b| / (|a| |b|)`` (blind to scaling and phase), best pairing, mean."""
    score = np.ones((true[0].shape[1], found[0].shape[1]))
    for A, B in zip(true, found):
        A = A / np.linalg.norm(A, axis=0)
        B = B / np.linalg.norm(B, axis=0)
        score = score * np.abs(A.conj().T @ B)
    rows, cols = linear_sum_assignment(-score)
    return float(score[rows, cols].mean())


def _noisy(T: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    N = rng.standard_normal(T.shape)
    if np.iscomplexobj(T):
        N = N + 1j * rng.standard_normal(T.shape)
    return T + NOISE * np.linalg.norm(T) / np.linalg.norm(N) * N


def _true_relerr(factors: list[np.ndarray], data: np.ndarray) -> float:
    return float(np.linalg.norm(algebra.cpd_to_tensor(factors) - data) / np.linalg.norm(data))


def _fit(data: np.ndarray, rank: int, method: str, seed: int) -> tuple[sdf.Result, list]:
    vs = [sdf.Variable.random((n, rank), seed=seed + k, dtype=complex, name="abc"[k])
          for k, n in enumerate(data.shape)]
    return sdf.Model(t=sdf.CPD(data, vs)).fit(method=method, max_iter=500), vs


def _planted(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    F = [rng.standard_normal((n, RANK)) + 1j * rng.standard_normal((n, RANK)) for n in SHAPE]
    return F, _noisy(algebra.cpd_to_tensor(F), rng)


def _check_result(res: sdf.Result, vs: list, data: np.ndarray) -> list[np.ndarray]:
    found = [res[v] for v in vs]
    assert all(A.dtype == np.complex128 and A.imag.any() for A in found)
    assert res.success
    # success=True only with the error of the factors it returns.
    assert res.relerr["t"] == pytest.approx(_true_relerr(found, data), rel=1e-6)
    return found


def test_planted_complex_cpd_is_recovered_by_gauss_newton(rng):
    F, T = _planted(rng)
    res, vs = _fit(T, RANK, "nls", seed=1)
    found = _check_result(res, vs, T)
    assert hermitian_fms(F, found) >= 0.99
    assert res.relerr["t"] == pytest.approx(NOISE, rel=0.1)


@pytest.mark.slow
def test_planted_complex_cpd_is_recovered_by_lbfgs(rng):
    F, T = _planted(rng)
    res, vs = _fit(T, RANK, "minf", seed=1)
    found = _check_result(res, vs, T)
    assert hermitian_fms(F, found) >= 0.99


def _conjugate_pair(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """A real tensor ``2 Re(a∘b∘c) = a∘b∘c + conj(a)∘conj(b)∘conj(c)``: complex rank 2."""
    F = [rng.standard_normal((n, 1)) + 1j * rng.standard_normal((n, 1)) for n in SHAPE]
    pair = [np.hstack([A, A.conj()]) for A in F]
    T = algebra.cpd_to_tensor(pair)
    assert np.abs(T.imag).max() < 1e-12
    return pair, _noisy(T.real, rng)


@pytest.mark.parametrize("method", ["nls", pytest.param("minf", marks=pytest.mark.slow)])
def test_real_data_with_a_complex_conjugate_pair_fit_by_two_complex_components(method, rng):
    pair, T = _conjugate_pair(rng)
    res, vs = _fit(T, 2, method, seed=3)
    found = _check_result(res, vs, T)
    assert res.relerr["t"] == pytest.approx(NOISE, rel=0.05)  # down to the noise
    assert hermitian_fms(pair, found) >= 0.99


def test_complex_variable_with_real_variable_and_real_data(rng):
    """A real variable beside complex ones stays real; the fit explains the data."""
    A = rng.standard_normal((6, 2))
    B, C = (rng.standard_normal((n, 2)) + 1j * rng.standard_normal((n, 2)) for n in (5, 4))
    T = algebra.cpd_to_tensor([A, B, C])
    a = sdf.Variable(A + 0.05 * rng.standard_normal(A.shape), name="a")
    b = sdf.Variable(B + 0.05, name="b")
    c = sdf.Variable(C - 0.05j, name="c")
    res = sdf.Model(t=sdf.CPD(T, [a, b, c])).fit(max_iter=100)
    assert res[a].dtype == np.float64 and res[b].dtype == np.complex128
    assert res.relerr["t"] < 1e-8


def test_problem_packs_complex_variables_as_real_and_imaginary_parts(rng):
    z = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
    a, b = sdf.Variable(z, name="a"), sdf.Variable(np.ones((4, 2)), name="b")
    problem = Problem.from_model(sdf.Model(t=sdf.CPD(np.ones((3, 4)), [a, b])))
    assert problem.n == 2 * 6 + 8 and problem.z0.dtype == np.float64
    np.testing.assert_array_equal(problem.z0[:12:2], z.ravel().real)
    np.testing.assert_array_equal(problem.z0[1:12:2], z.ravel().imag)
    back = problem.unpack(problem.z0)
    np.testing.assert_array_equal(back[0], z)
    np.testing.assert_array_equal(problem.pack(back), problem.z0)


def test_gradient_is_the_conjugate_cogradient(rng):
    """The engine's gradient of f = 1/2 ||z - t||^2 in z is df/dx + i df/dy = z - t
    (= 2 df/d conj(z)); autograd's grad of the same f is its conjugate."""
    from autograd import grad
    import autograd.numpy as anp

    z = rng.standard_normal(3) + 1j * rng.standard_normal(3)
    t = rng.standard_normal(3) + 1j * rng.standard_normal(3)
    a = sdf.Variable(z, name="a")
    problem = Problem.from_model(sdf.Model(r=sdf.L2(a, weight=1.0, target=t)))
    g = problem.unpack(problem.point(problem.z0).gradient())[0]
    np.testing.assert_allclose(g, z - t, rtol=1e-12)
    auto = grad(lambda x: 0.5 * anp.sum(anp.abs(x - t) ** 2))(z)
    np.testing.assert_allclose(np.conj(auto), g, rtol=1e-12)


def test_transformed_complex_factor_fits(rng):
    """A complex Vandermonde factor (harmonics on the unit circle) through matvec."""
    poles = np.exp(2j * np.pi * np.array([0.1, 0.27]))
    B, C = (rng.standard_normal((n, 2)) + 1j * rng.standard_normal((n, 2)) for n in (5, 4))
    T = algebra.cpd_to_tensor([np.vander(poles, 8, increasing=True).T, B, C])
    z = sdf.Variable(poles * np.exp(0.03j), name="z")
    b = sdf.Variable(B + 0.05, name="b")
    c = sdf.Variable(C + 0.05j, name="c")
    res = sdf.Model(t=sdf.CPD(T, [tf.transpose(tf.vander(z, 8)), b, c])).fit(max_iter=200)
    assert res.relerr["t"] < 1e-8
    np.testing.assert_allclose(np.sort_complex(res[z]), np.sort_complex(poles), atol=1e-8)
