"""The fast paths of the Gauss-Newton inner loop against dense references.

The stacked CPD Gramian product (``TermState.gn_product_flat``), the direct product and
gradient of models without transforms, the batched block-Jacobi preconditioner and the
copy-free PCG are each checked against a dense ``J^T W J`` (autograd), explicit block
inverses or a direct solve, on small cases; the whole path on planted CPDs.
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import jacobian

import sdf
from sdf import algebra
from sdf.models import fms
from sdf.problem import Problem, _invert
from sdf.solvers._run import ScaledProblem
from sdf.solvers.nls import pcg
from sdf.tensors import as_tensor


def cpd_full(factors):
    letters = "ijklm"[: len(factors)]
    return anp.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)


def dense_gramian(shapes, values):
    """``J^T J`` of the CPD residual at ``values`` (flat, inputs in order), by autograd."""
    sizes = np.cumsum([0] + [int(np.prod(s)) for s in shapes])

    def model(z):
        return anp.ravel(cpd_full([anp.reshape(z[sizes[k]:sizes[k + 1]], s)
                                   for k, s in enumerate(shapes)]))

    J = jacobian(model)(np.concatenate([np.ravel(v) for v in values]))
    return J.T @ J


@pytest.mark.parametrize("shapes", [
    [(4, 3), (4, 3)], [(5, 2), (5, 2), (5, 2)], [(3, 3), (3, 3), (3, 3), (3, 3)],
    [(4, 3), (5, 3), (2, 3)], [(3, 2), (4, 2), (3, 2), (2, 2)],
], ids=["2-way", "3-way", "4-way", "3-way-unequal", "4-way-unequal"])
def test_flat_cpd_gramian_product_is_the_dense_gramian(shapes, rng):
    values = [rng.standard_normal(s) for s in shapes]
    T = rng.standard_normal(tuple(s[0] for s in shapes))
    state = sdf.CPD(T, [sdf.Variable(v) for v in values]).prepare(values)
    G = dense_gramian(shapes, values)
    v = rng.standard_normal(G.shape[0])
    flat = state.gn_product_flat(v.copy())
    np.testing.assert_allclose(flat, G @ v, rtol=1e-10, atol=1e-10 * np.abs(G @ v).max())
    # The per-input form gives the same numbers.
    ends = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    listed = state.gn_product([d.reshape(s) for d, s in zip(np.split(v, ends), shapes)])
    np.testing.assert_allclose(flat, np.concatenate([p.ravel() for p in listed]),
                               rtol=1e-12, atol=1e-12 * np.abs(flat).max())


def test_flat_cpd_gramian_product_leaves_complex_factors_to_the_listed_form(rng):
    values = [rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2)) for _ in range(3)]
    T = rng.standard_normal((3, 3, 3))
    state = sdf.CPD(T, [sdf.Variable(v) for v in values]).prepare(values)
    assert state.gn_product_flat(rng.standard_normal(18)) is None


def coupled(rng):
    """Two CPD terms sharing ``b`` (the second's inputs not one run of z), and a ridge."""
    a, b, c, d = (sdf.Variable(rng.standard_normal((n, 2)), name=x)
                  for n, x in zip((4, 5, 3, 6), "abcd"))
    T, Y = rng.standard_normal((4, 5, 3)), rng.standard_normal((6, 5))
    model = sdf.Model(t=sdf.CPD(T, [a, b, c], weight=0.7), y=sdf.CPD(Y, [d, b], weight=1.3),
                      ridge=sdf.L2([c], weight=0.1))
    return model, (a, b, c, d), T, Y


def test_direct_product_and_gradient_of_a_coupled_model(rng):
    model, (a, b, c, d), T, Y = coupled(rng)
    problem = Problem.from_model(model)
    assert problem.spans[0] == (0, problem.offsets[3]) and problem.spans[1] is None
    z = problem.z0 + 0.1 * rng.standard_normal(problem.n)

    def split(zz):
        return [anp.reshape(zz[problem.offsets[k]:problem.offsets[k + 1]], v.shape)
                for k, v in enumerate(problem.variables)]

    def residual(zz):
        A, B, C, D = split(zz)
        return anp.concatenate([np.sqrt(0.7) * anp.ravel(cpd_full([A, B, C]) - T),
                                np.sqrt(1.3) * anp.ravel(anp.dot(D, B.T) - Y),
                                np.sqrt(0.1) * anp.ravel(C)])

    point = problem.point(z)
    J = jacobian(residual)(z)
    v = rng.standard_normal(problem.n)
    np.testing.assert_allclose(point.gn_product(v), J.T @ (J @ v), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(point.gradient(), J.T @ residual(z), rtol=1e-10, atol=1e-10)


def test_batched_preconditioner_is_the_inverse_of_each_block(rng):
    values = [rng.standard_normal((6, 3)) for _ in range(3)]
    T = algebra.cpd_to_tensor(values)
    vs = [sdf.Variable(v, name=x) for v, x in zip(values, "abc")]
    point = Problem.from_model(sdf.Model(t=sdf.CPD(T, vs, weight=1.0))).point(
        np.concatenate([v.ravel() for v in values]))
    M = point.preconditioner()
    assert any(isinstance(what, np.ndarray) for _, _, what in M._plan)  # one batch
    W = point.states[0].blocks()
    r = rng.standard_normal(point.problem.n)
    expected = np.concatenate([seg.reshape(6, 3) @ _invert(Wn, (6, 3))
                               for seg, Wn in zip(np.split(r, 3), W)])
    np.testing.assert_allclose(M(r), expected.ravel(), rtol=1e-13)
    # And (nearly) the exact inverse of the block-diagonal Gramian J^T J.
    G = dense_gramian([(6, 3)] * 3, values)
    blocks = [G[k * 18:(k + 1) * 18, k * 18:(k + 1) * 18] for k in range(3)]
    exact = np.concatenate([np.linalg.solve(B, seg) for B, seg in zip(blocks, np.split(r, 3))])
    np.testing.assert_allclose(M(r), exact, rtol=1e-6)


def test_preconditioner_of_mixed_sizes_and_a_complex_variable(rng):
    a = sdf.Variable(rng.standard_normal((4, 2)), name="a")
    b = sdf.Variable(rng.standard_normal((5, 2)) + 1j * rng.standard_normal((5, 2)), name="b")
    c = sdf.Variable(rng.standard_normal((4, 2)), name="c")
    d = sdf.Variable(rng.standard_normal((4, 2)), name="d")
    T = rng.standard_normal((4, 5, 4)) + 1j * rng.standard_normal((4, 5, 4))
    model = sdf.Model(t=sdf.CPD(T, [a, b, c]), m=sdf.CPD(rng.standard_normal((4, 4)), [c, d]))
    point = Problem.from_model(model).point(Problem.from_model(model).z0)
    M = point.preconditioner()
    u, w = (rng.standard_normal(point.problem.n) for _ in range(2))
    assert u @ M(w) == pytest.approx(w @ M(u), rel=1e-10)  # symmetric
    assert u @ M(u) > 0


def test_pcg_returns_the_best_iterate_without_aliasing(rng):
    Q = rng.standard_normal((8, 8))
    A = Q @ Q.T + 0.1 * np.eye(8)
    b = rng.standard_normal(8)
    x, Ax, its, broke = pcg(lambda v: A @ v, b, lambda r: r, 1e-12, 50)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-8)
    np.testing.assert_allclose(Ax, A @ x, rtol=1e-8, atol=1e-10)
    assert not broke and its <= 50
    # Fewer iterations: the iterate and its product still belong together.
    x, Ax, its, _ = pcg(lambda v: A @ v, b, lambda r: r, 1e-12, 3)
    assert its == 3
    np.testing.assert_allclose(Ax, A @ x, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape, rank", [((12, 12, 12), 3), ((10, 14, 9), 4)])
def test_planted_cpd_is_recovered_and_its_error_is_the_recomputed_one(shape, rank, rng):
    factors = [rng.standard_normal((n, rank)) for n in shape]
    T = algebra.cpd_to_tensor(factors)
    noise = rng.standard_normal(shape)
    T = T + 1e-3 * np.linalg.norm(T) / np.linalg.norm(noise) * noise
    vs = [sdf.Variable(A + 0.3 * rng.standard_normal(A.shape), name=x)
          for A, x in zip(factors, "abc")]
    res = sdf.Model(t=sdf.CPD(T, vs, weight=1.0)).fit(method="nls")
    found = [res[v] for v in vs]
    assert fms(found, factors) == pytest.approx(1.0, abs=1e-4)
    recomputed = np.linalg.norm(algebra.cpd_to_tensor(found) - T) / np.linalg.norm(T)
    assert res.relerr["t"] == pytest.approx(recomputed, rel=1e-9)
    assert res.stop.converged


@pytest.mark.parametrize("scales", [(1e40, 1e40, 1e40), (1e40, 1.0, 1.0)],
                         ids=["one-unit", "per-variable-units"])
def test_scaled_products_match_the_unscaled_ones(scales, rng):
    # Factors far from unit scale: the solver's units multiply exactly.
    values = [s * rng.standard_normal((n, 2)) for s, n in zip(scales, (5, 4, 3))]
    T = algebra.cpd_to_tensor(values) * 1.5
    vs = [sdf.Variable(v, name=x) for v, x in zip(values, "abc")]
    raw = Problem.from_model(sdf.Model(t=sdf.CPD(as_tensor(T), vs, weight=1.0)))
    scaled = ScaledProblem(raw)
    assert (scaled.units is None) == (scales[1] == 1e40)
    point = scaled.point(scaled.z0.copy())
    v = rng.standard_normal(raw.n)
    units = scaled.exponents[0] if scaled.units is None else scaled.units
    expected = np.ldexp(point.raw.gn_product(scaled.to_raw(v)), units)
    np.testing.assert_array_equal(point.gn_product(v), expected)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 3), (3, 4, 2, 5), (2, 3, 4, 2, 3)])
@pytest.mark.parametrize("dtype", [float, complex])
def test_engine_tree_gives_every_mttkrp_and_the_inner_product(shape, dtype, rng):
    T = rng.standard_normal(shape).astype(dtype)
    factors = [rng.standard_normal((n, 3)).astype(dtype) for n in shape]
    if dtype is complex:
        T = T + 1j * rng.standard_normal(shape)
        factors = [A + 1j * rng.standard_normal(A.shape) for A in factors]
    for data in (T, np.asfortranarray(T)):
        tree = algebra.MTTKRPTree._unchecked(data, factors)
        assert tree.inner() == pytest.approx(np.sum(T * algebra.cpd_to_tensor(factors)),
                                             rel=1e-12)
        for n, M in enumerate(tree.all()):
            expected = algebra.unfold(T, n) @ algebra.khatri_rao(factors, skip=n)
            np.testing.assert_allclose(M, expected, rtol=1e-12, atol=1e-12)
            assert M.flags.c_contiguous


def test_cauchy_point_only_when_the_gauss_newton_step_leaves_the_trust_region(rng,
                                                                             monkeypatch):
    """Each Gauss-Newton product is a CG step, except one per iteration whose step had to
    be cut to the trust region (the Cauchy point's): near convergence, none."""
    from sdf.solvers import _run

    calls = [0]
    product = _run.ScaledPoint.gn_product

    def counted(self, v):
        calls[0] += 1
        return product(self, v)

    monkeypatch.setattr(_run.ScaledPoint, "gn_product", counted)
    truth = [rng.standard_normal((I, 3)) for I in (12, 11, 10)]
    start = [A + 0.05 * rng.standard_normal(A.shape) for A in truth]
    variables = [sdf.Variable(A, name=f"x{n}") for n, A in enumerate(start)]
    res = sdf.Model(t=sdf.CPD(algebra.cpd_to_tensor(truth), variables)).fit(max_iter=30)
    assert res.relerr["t"] < 1e-8
    cauchy = calls[0] - sum(res.history.cg_iterations)
    assert 0 <= cauchy < res.iterations


def _half_missing(rng, shape=(14, 13, 12), rank=3, missing=0.5):
    truth = [rng.standard_normal((I, rank)) for I in shape]
    T = algebra.cpd_to_tensor(truth)
    return truth, as_tensor(np.where(rng.random(shape) < missing, np.nan, T))


def test_products_read_data_on_masked_and_sampled_entries_only(rng):
    truth, masked = _half_missing(rng)
    mostly_known = as_tensor(np.where(rng.random(masked.shape) < 0.01, np.nan,
                                      algebra.cpd_to_tensor(truth)))
    for data, reads in ((masked, True), (sdf.tensors.IncompleteTensor(masked.to_dense()), True),
                        (algebra.cpd_to_tensor(truth), False), (mostly_known, False)):
        variables = [sdf.Variable(A) for A in truth]
        problem = Problem.from_model(sdf.Model(t=sdf.CPD(data, variables)))
        point = problem.point(np.concatenate([A.ravel() for A in truth]))
        assert point.products_read_data is reads
    # Fisher scoring (a non-Gaussian loss) keeps its full inner solves
    counts = np.abs(np.nan_to_num(masked.to_dense())).round()
    problem = Problem.from_model(sdf.Model(t=sdf.CPD(counts, [sdf.Variable(A) for A in truth],
                                                     loss="poisson")))
    assert problem.point(np.concatenate([A.ravel() for A in truth])).products_read_data is False


def test_short_inner_solves_while_products_read_the_data(rng):
    """Half the entries missing: at most 3 CG steps per iteration while the objective
    falls fast, the full budget near the solution; the planted factors to full accuracy."""
    truth, data = _half_missing(rng)
    variables = [sdf.Variable.random((I, 3), seed=n, name=f"x{n}")
                 for n, I in enumerate(data.shape)]
    res = sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=100)
    assert res.relerr["t"] < 1e-9
    assert fms([res.variables[f"x{n}"] for n in range(3)], truth) > 0.99999
    steps, change = res.history.cg_iterations[1:], res.history.relchange[1:]
    fast = [s for s, c in zip(steps, [np.inf] + change[:-1]) if c > 1e-6]
    assert fast and max(fast) <= 3
    assert max(steps) > 3  # the final iterations solve accurately


def test_the_short_inner_solve_is_an_option(rng):
    truth, data = _half_missing(rng)
    variables = [sdf.Variable.random((I, 3), seed=n, name=f"x{n}")
                 for n, I in enumerate(data.shape)]
    res = sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=100, cg_max_iter=8,
                                                      cg_max_iter_reading_data=8)
    assert res.relerr["t"] < 1e-9
    assert max(res.history.cg_iterations[1:4]) > 3
    with pytest.raises(sdf.OptionError, match="cg_max_iter_reading_data must be an integer"):
        sdf.NLSOptions(cg_max_iter_reading_data=0)


def test_dense_data_keep_the_full_inner_solve(rng):
    truth = [rng.standard_normal((I, 4)) for I in (12, 11, 10)]
    variables = [sdf.Variable.random(A.shape, seed=n) for n, A in enumerate(truth)]
    res = sdf.Model(t=sdf.CPD(algebra.cpd_to_tensor(truth), variables)).fit(max_iter=100)
    assert max(res.history.cg_iterations) > 3


def test_solver_norm_equals_numpy_norm(rng):
    from sdf.solvers.nls import _norm

    for x in (rng.standard_normal(1000), np.zeros(3), np.array([3.0, np.inf]),
              np.array([1.0, np.nan])):
        expected = np.linalg.norm(x)
        assert _norm(x) == expected or (np.isnan(expected) and np.isnan(_norm(x)))
