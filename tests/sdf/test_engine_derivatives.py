"""Objective, gradient and Gauss-Newton products of compiled models against autograd.

For every data type, regularizer and a few transforms, a reference residual is written
in autograd.numpy; the engine's f, gradient and ``J^T W J v`` must match it.
"""

import functools
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.sparse as sps
from autograd import grad

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.problem import Problem
from sdf.tensors import CPDTensor, IncompleteTensor, MaskedTensor, TuckerTensor
from sdf.terms import cpd as cpd_module

from terms._reference import check_model, gauss_newton_part  # noqa: E402


def cpd_full(factors):
    letters = "ijklm"[: len(factors)]
    spec = ",".join(f"{c}r" for c in letters) + "->" + letters
    return anp.einsum(spec, *factors)


def check(model, residuals, rng, rtol=1e-8):
    """f, gradient and J^T W J v against autograd; the preconditioner is SPD."""
    point = check_model(model, residuals, rng, rtol=rtol)
    n = point.problem.n
    u, w_ = rng.standard_normal(n), rng.standard_normal(n)
    M = point.preconditioner()
    assert u @ M(w_) == pytest.approx(w_ @ M(u), rel=1e-8)
    assert u @ M(u) > 0


def variables(shapes, rng, names="abcde"):
    return [sdf.Variable(rng.standard_normal(s), name=n) for s, n in zip(shapes, names)]


@pytest.mark.parametrize("order", [2, 3, 4])
def test_dense_cpd(order, rng):
    shape = (4, 5, 3, 2)[:order]
    T = rng.standard_normal(shape)
    vs = variables([(n, 3) for n in shape], rng)
    model = sdf.Model(t=sdf.CPD(T, vs))
    w = model.weights["t"]
    check(model, lambda v: [(w, cpd_full([v[x.name] for x in vs]) - T)], rng)


def test_incomplete_cpd(rng):
    T = rng.standard_normal((5, 6, 4))
    mask = rng.random(T.shape) < 0.4
    data = np.where(mask, T, np.nan)
    vs = variables([(5, 2), (6, 2), (4, 2)], rng)
    model = sdf.Model(t=sdf.CPD(data, vs))
    w = model.weights["t"]
    check(model, lambda v: [(w, (cpd_full([v["a"], v["b"], v["c"]]) - T)[mask])], rng)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("complement_max", [0.0, 1.0], ids=["masked-dense", "complement"])
def test_masked_cpd(order, complement_max, rng, monkeypatch):
    # Both strategies for masked data: dense masked tensors, and the dense fit minus the
    # missing entries (chosen by the fraction missing; forced here).
    monkeypatch.setattr(cpd_module, "_COMPLEMENT_MAX_MISSING", complement_max)
    shape = (5, 6, 4, 3)[:order]
    T = rng.standard_normal(shape)
    mask = rng.random(shape) < 0.7
    data = MaskedTensor(np.where(mask, T, np.nan))
    vs = variables([(n, 2) for n in shape], rng)
    model = sdf.Model(t=sdf.CPD(data, vs), ridge=sdf.L2([vs[0]], weight=0.1))
    w = model.weights["t"]
    check(model, lambda v: [(w, (cpd_full([v[x.name] for x in vs]) - T)[mask]),
                            (0.1, v["a"])], rng)


def test_sparse_cpd_counts_unstored_entries_as_zeros(rng):
    M = sps.random(6, 7, density=0.3, random_state=1, format="csr")
    vs = variables([(6, 2), (7, 2)], rng)
    model = sdf.Model(t=sdf.CPD(M, vs, weight=1.0))
    dense = M.toarray()
    check(model, lambda v: [(1.0, v["a"] @ v["b"].T - dense)], rng)


def test_factored_data(rng):
    F = [rng.standard_normal((n, 2)) for n in (4, 5, 3)]
    G = [rng.standard_normal((n, 2)) for n in (4, 5, 3)]
    core = rng.standard_normal((2, 2, 2))
    Tc = cpd_full(F)
    Tt = np.einsum("abc,ia,jb,kc->ijk", core, *G)
    vs = variables([(4, 3), (5, 3), (3, 3)], rng)
    model = sdf.Model(c=sdf.CPD(CPDTensor(F), vs, weight=1.0),
                      t=sdf.CPD(TuckerTensor(G, core), vs, weight=0.5))
    check(model, lambda v: [(1.0, cpd_full([v["a"], v["b"], v["c"]]) - Tc),
                            (0.5, cpd_full([v["a"], v["b"], v["c"]]) - Tt)], rng)


def test_symmetric_use_of_one_factor(rng):
    T = rng.standard_normal((5, 5, 3))
    a, c = variables([(5, 2), (3, 2)], rng, names="ac")
    model = sdf.Model(t=sdf.CPD(T, [a, a, c], weight=1.0))
    check(model, lambda v: [(1.0, cpd_full([v["a"], v["a"], v["c"]]) - T)], rng)


def test_coupled_model_with_transforms_and_regularizers(rng):
    T = rng.standard_normal((5, 4, 3))
    Y = rng.standard_normal((5, 6))
    X = rng.standard_normal((6, 3))
    a, b, c, d = variables([(5, 2), (4, 2), (3, 2), (3, 2)], rng, names="abcd")
    target = rng.standard_normal((3, 2))
    model = sdf.Model(
        t=sdf.CPD(T, [a, tf.nonneg(b), c]),
        y=sdf.CPD(Y, [a, tf.matvec(X, d)], relweight=2.0),
        ridge=sdf.L2(c, weight=0.3, target=target),
        sparse=sdf.L1(d, weight=0.2, smoothing=0.5),
        count=sdf.L0(d, weight=0.1, smoothing=0.7),
    )
    w = model.weights

    def residuals(v):
        A, B, C, D = v["a"], v["b"] ** 2, v["c"], v["d"]
        return [
            (w["t"], cpd_full([A, B, C]) - T),
            (w["y"], A @ (X @ D).T - Y),
            (0.3, C - target),
            (0.2, anp.sqrt(2.0) * (D**2 + 0.25) ** 0.25),
            (0.1, anp.sqrt(2.0 * (1.0 - anp.exp(-(D**2) / 0.49)))),
        ]

    problem = Problem.from_model(model)
    z = problem.z0 + 0.1 * rng.standard_normal(problem.n)
    point = problem.point(z)
    # The smoothed L1 residual is defined up to its constant offset: compare f up to it.
    offset = 0.2 * 0.5 * d.value.size
    ref_f = sum(0.5 * wt * np.sum(np.asarray(r) ** 2) for wt, r in residuals(
        {n: z[problem.offsets[k] : problem.offsets[k + 1]].reshape(var.shape)
         for k, (n, var) in enumerate(zip(problem.names, problem.variables))}))
    assert point.f == pytest.approx(ref_f - offset, rel=1e-10)
    # The L0 residual's Jacobian is what Gauss-Newton uses: compare everything else exactly.
    check_model(model, residuals, rng, rtol=1e-7, check_f=False)


def test_constant_factor_and_frozen_entries(rng):
    T = rng.standard_normal((4, 5, 3))
    a, b = variables([(4, 2), (5, 2)], rng, names="ab")
    C = rng.standard_normal((3, 2))
    mask = np.zeros((5, 2), dtype=bool)
    mask[0] = True
    frozen = b.value[mask]
    model = sdf.Model(t=sdf.CPD(T, [a, tf.const(b, mask=mask), C], weight=1.0))

    def residuals(v):
        B = anp.where(mask, b.value, v["b"])
        return [(1.0, cpd_full([v["a"], B, C]) - T)]

    check(model, residuals, rng)
    result = model.fit(max_iter=30)
    np.testing.assert_array_equal(result[model.terms["t"].inputs[1]][mask], frozen)


# (Masked data with many entries missing take the known fraction of each row times the
# full-data block: see test_sampled_cpd.py.)
@pytest.mark.parametrize("storage, complement_max", [
    (IncompleteTensor, 0.0), (MaskedTensor, 1.0)], ids=["coordinates", "complement"])
def test_incomplete_preconditioner_blocks_are_exact_per_row(storage, complement_max, rng,
                                                           monkeypatch):
    monkeypatch.setattr(cpd_module, "_COMPLEMENT_MAX_MISSING", complement_max)
    T = rng.standard_normal((5, 6, 4))
    data = storage(np.where(rng.random(T.shape) < 0.5, T, np.nan))
    vs = variables([(5, 2), (6, 2), (4, 2)], rng)
    model = sdf.Model(t=sdf.CPD(data, vs, weight=1.0))
    point = Problem.from_model(model).point(Problem.from_model(model).z0)
    blocks = point.states[0].blocks()
    # Block row i of mode 0 is the Gramian of J restricted to row i of factor a.
    for i in range(5):
        cols = []
        for r in range(2):
            e = np.zeros(Problem.from_model(model).n)
            e[i * 2 + r] = 1.0
            cols.append(point.gn_product(e)[i * 2 : i * 2 + 2])
        np.testing.assert_allclose(np.array(cols).T, blocks[0][i], rtol=1e-10, atol=1e-12)


def test_transform_curvature_is_the_positive_part_of_the_dropped_hessian_term(rng):
    T = rng.standard_normal((5, 4))
    b, c = variables([(5, 2), (4, 2)], rng, names="bc")
    model = sdf.Model(t=sdf.CPD(T, [tf.nonneg(b), c], weight=1.0))
    problem = Problem.from_model(model)
    point = problem.point(problem.z0)
    # Gradient of f with respect to x = b**2, from autograd on f(x).
    g_x = grad(lambda X: 0.5 * anp.sum((X @ c.value.T - T) ** 2))(b.value**2)
    expected = np.maximum(2.0 * g_x, 0.0)
    assert np.any(expected > 0) and np.any(expected == 0)
    np.testing.assert_allclose(point.curvature()[id(b)], expected, rtol=1e-12)
    v = rng.standard_normal(problem.n)
    extra = point.gn_product(v) - gauss_newton_part(point, v)
    np.testing.assert_allclose(extra[:10], expected.ravel() * v[:10], rtol=1e-10, atol=1e-14)
    assert np.all(extra[10:] == 0)


# ---------------------------------------------------------------------------- routed blocks
def _train_problem(rng, wrap):
    """A tensor train whose cores reach the term through ``wrap`` (an elementwise chain)."""
    shapes = [(1, 4, 2), (2, 5, 3), (3, 6, 1)]
    T = sdf.tensors.TTTensor([rng.standard_normal(s) for s in shapes]).to_dense()
    values = [rng.uniform(0.5, 1.0, s) * rng.choice([-1.0, 1.0], s) for s in shapes]
    cores = [sdf.Variable(v, name=f"g{k}") for k, v in enumerate(values)]
    return Problem.from_model(sdf.Model(t=sdf.TT(T, [wrap(G) for G in cores])))


@pytest.mark.parametrize("wrap", [tf.identity, lambda G: tf.scale(tf.nonneg(G), 3.0),
                                  lambda G: tf.exp(tf.identity(G))],
                         ids=["identity", "scale-nonneg", "exp-identity"])
def test_kronecker_blocks_reach_n_way_variables_through_elementwise_transforms(wrap, rng):
    """An N-way input's Kronecker block ``kron(G)`` reaches a variable under elementwise
    transforms as ``D kron(G) D`` (``D`` the chain's derivative), inverted exactly: a
    core through ``identity`` is preconditioned as the core itself, and each core's
    inverse undoes ``D kron(G) D`` (its cores had no preconditioner: a nonnegative train
    took 387 to 1000 Gauss-Newton iterations, 24 to 58 now)."""
    problem = _train_problem(rng, wrap)
    point = problem.point(problem.z0)
    precond = point.preconditioner()
    state = point.states[0]
    for k, (var, block) in enumerate(zip(problem.variables, state.blocks())):
        assert isinstance(block, tuple)
        d = np.ones(var.shape)
        expr = problem.terms[0].inputs[k]
        while not isinstance(expr, sdf.Variable):
            lin = point.lins[id(expr)]
            d = d * np.broadcast_to(lin.jvp(np.ones(np.shape(lin.z))), expr.shape)
            expr = expr.inputs[0]
        K = problem.weights[0] * functools.reduce(np.kron, block)
        H = d.reshape(-1, 1) * K * d.reshape(1, -1)
        v = rng.standard_normal(int(np.prod(var.shape)))
        full = np.zeros(problem.n)
        sl = slice(problem.offsets[k], problem.offsets[k + 1])
        full[sl] = H @ v
        # (the inverse adds 1e-10 of its mean diagonal: exact to about 1e-7 here)
        np.testing.assert_allclose(precond(full)[sl], v, rtol=1e-6, atol=1e-6)
    if wrap is tf.identity:
        direct = _train_problem(np.random.default_rng(0), lambda G: G)
        wrapped = _train_problem(np.random.default_rng(0), tf.identity)
        u = rng.standard_normal(direct.n)
        np.testing.assert_allclose(wrapped.point(wrapped.z0).preconditioner()(u),
                                   direct.point(direct.z0).preconditioner()(u), rtol=1e-12)


def test_nonnegative_tucker_converges_with_its_routed_core_block(rng):
    """A nonnegative Tucker (factors and core through ``nonneg``) of noisy data: 40 to 76
    Gauss-Newton iterations to the noise level, where the unpreconditioned core took
    953 to 1000."""
    U = [np.abs(rng.standard_normal((n, 3))) for n in (15, 16, 17)]
    S = np.abs(rng.standard_normal((3, 3, 3)))
    T = algebra.tucker_to_tensor(U, S)
    T = T + 0.01 * np.linalg.norm(T) / np.sqrt(T.size) * rng.standard_normal(T.shape)
    start = np.random.default_rng(100)
    us = [sdf.Variable(np.abs(start.standard_normal(u.shape))) for u in U]
    core = sdf.Variable(np.abs(start.standard_normal(S.shape)))
    res = sdf.Model(t=sdf.LMLRA(T, [tf.nonneg(u) for u in us], tf.nonneg(core))).fit(
        max_iter=300)
    assert res.stop.converged and res.iterations < 300
    assert res.relerr["t"] < 0.0105


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("cplx", [False, True], ids=["real", "complex"])
def test_matvec_blocks_are_exact_for_complex_values(side, cplx, rng):
    """A CPD factor through a (complex) known matrix gets the exact block ``J^H J`` of
    its variable, ``(Q^H Q) ⊗ W`` (x = Q z) or ``Q W Q^H`` per row (x = z Q): the
    preconditioner undoes the Gauss-Newton product on it. Complex ones were left
    unscaled, and a complex CPD through ``matvec`` stopped at relative error 1e-6 after
    28 to 452 iterations where the real one reached 1e-9 in 10 to 35 (11 to 15 now)."""
    def draw(*shape):
        return rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if cplx else 0)
    T = algebra.cpd_to_tensor([draw(5, 2), draw(6, 2), draw(4, 2)])
    Q = draw(6, 6) if side == "left" else draw(2, 2)
    vs = [sdf.Variable(draw(n, 2), name=f"a{k}") for k, n in enumerate((5, 6, 4))]
    x = tf.matvec(Q, vs[1]) if side == "left" else tf.matvec(vs[1], Q)
    problem = Problem.from_model(sdf.Model(t=sdf.CPD(T, [vs[0], x, vs[2]])))
    point = problem.point(problem.z0)
    sl = slice(problem.offsets[1], problem.offsets[2])
    v = np.zeros(problem.n)
    v[sl] = rng.standard_normal(sl.stop - sl.start)
    H_v = np.zeros(problem.n)
    H_v[sl] = point.gn_product(v)[sl]
    np.testing.assert_allclose(point.preconditioner()(H_v)[sl], v[sl], rtol=1e-7, atol=1e-7)
