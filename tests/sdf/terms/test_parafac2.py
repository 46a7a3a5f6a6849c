"""PARAFAC2 term: derivatives against autograd and finite differences, coupling, dict
language, bad input."""

import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, hessian_vector_product, jacobian

import sdf
from sdf import transforms as tf
from sdf.problem import Problem

WIDTHS = (4, 6, 3, 5)
I, R = 5, 3


def planted(rng, widths=WIDTHS, rank=R, rows=I):
    A, B, C = (rng.standard_normal((rows, rank)), rng.standard_normal((rank, rank)),
               rng.standard_normal((len(widths), rank)))
    P = [np.linalg.qr(rng.standard_normal((J, rank)))[0] for J in widths]
    X = [A @ np.diag(c) @ (Pk @ B).T for c, Pk in zip(C, P)]
    return [A, B, C], P, X


def random_slices(rng, missing=0.0):
    X = [rng.standard_normal((I, J)) for J in WIDTHS]
    for x in X:
        x[rng.random(x.shape) < missing] = np.nan
        x[0, 0] = 1.0
    return X


def reference_fval(values, X):
    """f(A, B, C) = sum_k (||X_k||^2 + ||M_k||^2)/2 - ||X_k^T M_k||_* (full data): the
    Procrustes minimum written with the nuclear norm, autograd-differentiable."""
    A, B, C = values
    f = 0.0
    for k, Xk in enumerate(X):
        M = anp.dot(A * C[k], B.T)
        Z = anp.dot(Xk.T, M)
        f = f + 0.5 * (anp.sum(Xk**2) + anp.sum(M**2)) - anp.sum(
            anp.sqrt(anp.linalg.eigh(anp.dot(Z.T, Z))[0]))
    return f


def flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


def unflat(z, shapes):
    out, k = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(anp.reshape(z[k : k + n], s))
        k += n
    return out


def test_fval_and_gradient_match_autograd(rng):
    values, _, _ = planted(rng)
    X = random_slices(rng)
    shapes = [v.shape for v in values]
    state = sdf.PARAFAC2(X, values).prepare(values)
    ref = lambda z: reference_fval(unflat(z, shapes), X)  # noqa: E731
    z = flat(values)
    assert state.fval == pytest.approx(ref(z), rel=1e-10)
    np.testing.assert_allclose(flat(state.gradient()), grad(ref)(z), rtol=1e-9, atol=1e-9)


def test_gauss_newton_is_the_hessian_at_an_exact_fit(rng):
    values, _, X = planted(rng)
    shapes = [v.shape for v in values]
    state = sdf.PARAFAC2(X, values).prepare(values)
    assert state.fval == pytest.approx(0.0, abs=1e-12)
    v = rng.standard_normal(flat(values).size)
    hv = hessian_vector_product(lambda z: reference_fval(unflat(z, shapes), X))(flat(values), v)
    np.testing.assert_allclose(flat(state.gn_product(unflat(v, shapes))), hv, rtol=1e-7,
                               atol=1e-7 * np.abs(hv).max())


@pytest.mark.parametrize("missing", [0.0, 0.3])
def test_gauss_newton_is_the_schur_complement_of_the_rotations(missing, rng):
    """J^T (I - Π) J v, J the residual's Jacobian at fixed P_k, Π the projection on the
    rotations P_k -> P_k (I + Ω_k) (dense reference on the known entries)."""
    values, _, _ = planted(rng)
    X = random_slices(rng, missing)
    state = sdf.PARAFAC2(X, values).prepare(values)
    P = [state.P[k, :J] for k, J in enumerate(WIDTHS)]
    known = [~np.isnan(x) for x in X]
    ia, ib = np.triu_indices(R, 1)
    m = len(ia)
    shapes = [v.shape for v in values]

    def residual(z):
        A, B, C = unflat(z[: -len(X) * m], shapes)
        omegas = z[-len(X) * m :]
        out = []
        for k, Xk in enumerate(X):
            w = omegas[k * m : (k + 1) * m]
            Om = sum(w[j] * (np.eye(R)[:, [ia[j]]] @ np.eye(R)[[ib[j]], :]
                             - np.eye(R)[:, [ib[j]]] @ np.eye(R)[[ia[j]], :]) for j in range(m))
            Pk = P[k] + anp.dot(P[k], Om)
            model = anp.dot(anp.dot(A * C[k], B.T), Pk.T)
            out.append(model[known[k]])
        return anp.concatenate(out)

    J = jacobian(residual)(np.concatenate([flat(values), np.zeros(len(X) * m)]))
    n = flat(values).size
    Jx, Jw = J[:, :n], J[:, n:]
    reduced = Jx.T @ Jx - Jx.T @ Jw @ np.linalg.pinv(Jw.T @ Jw) @ Jw.T @ Jx
    v = rng.standard_normal(n)
    np.testing.assert_allclose(flat(state.gn_product(unflat(v, shapes))), reduced @ v,
                               rtol=1e-8, atol=1e-8 * np.abs(reduced @ v).max())


def test_gradient_with_missing_entries_matches_finite_differences(rng):
    values, _, _ = planted(rng)
    X = random_slices(rng, 0.3)
    term = sdf.PARAFAC2(X, values)
    shapes = [v.shape for v in values]
    g = flat(term.prepare(values).gradient())
    z, h = flat(values), 1e-6
    fd = np.array([(term.prepare(unflat(z + h * e, shapes)).fval
                    - term.prepare(unflat(z - h * e, shapes)).fval) / (2 * h)
                   for e in np.eye(z.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * np.abs(g).max())


def test_blocks_bound_the_gauss_newton_diagonal(rng):
    values, _, _ = planted(rng)
    for X in (random_slices(rng), random_slices(rng, 0.3)):
        state = sdf.PARAFAC2(X, values).prepare(values)
        for k, block in enumerate(state.blocks()):
            block = np.asarray(block)
            for row in range(values[k].shape[0]):
                Bk = block if block.ndim == 2 else block[row]
                for r in range(R):
                    d = [np.zeros_like(v) for v in values]
                    d[k][row, r] = 1.0
                    assert state.gn_product(d)[k][row, r] <= Bk[r, r] * (1 + 1e-10) + 1e-12


def test_coupled_with_cpd_through_nonneg(rng):
    """A shared with a matrix of side information and sent through nonneg: f and gradient
    against autograd anywhere, the Gauss-Newton product against the Hessian at a point
    fitting both data sets exactly."""
    values, _, X = planted(rng)
    D = rng.standard_normal((7, R))
    zA = np.sqrt(np.abs(values[0]))
    A = zA**2
    X = [A @ np.diag(c) @ Pk.T for c, Pk in
         zip(values[2], sdf.PARAFAC2(X, values).slice_factors(values))]
    Y = A @ D.T
    a = sdf.Variable(zA, name="a")
    b, c, d = (sdf.Variable(x, name=n) for x, n in ((values[1], "b"), (values[2], "c"),
                                                    (D, "d")))
    model = sdf.Model(X=sdf.PARAFAC2(X, [tf.nonneg(a), b, c]), Y=sdf.CPD(Y, [tf.nonneg(a), d]))
    w = model.weights
    problem = Problem.from_model(model)
    shapes = [v.shape for v in problem.variables]

    def f_ref(z):
        za, zb, zc, zd = unflat(z, shapes)
        return (w["X"] * reference_fval([za**2, zb, zc], X)
                + w["Y"] * 0.5 * anp.sum((anp.dot(za**2, zd.T) - Y) ** 2))

    z0 = problem.z0
    v = rng.standard_normal(problem.n)
    hv = hessian_vector_product(f_ref)(z0, v)
    point = problem.point(z0)
    assert point.f == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(point.gn_product(v), hv, rtol=1e-7, atol=1e-7 * np.abs(hv).max())
    z1 = z0 + 0.1 * rng.standard_normal(problem.n)
    point = problem.point(z1)
    assert point.f == pytest.approx(f_ref(z1), rel=1e-10)
    np.testing.assert_allclose(point.gradient(), grad(f_ref)(z1), rtol=1e-8, atol=1e-10)


def test_coupled_fit_recovers_shared_factor(rng):
    values, P, X = planted(rng, widths=(6, 8, 7, 9, 6, 8), rank=2, rows=10)
    D = rng.standard_normal((12, 2))
    Y = values[0] @ D.T
    start = [x + 0.05 * rng.standard_normal(x.shape) for x in (*values, D)]
    a, b, c, d = (sdf.Variable(x) for x in start)
    result = sdf.Model(X=sdf.PARAFAC2(X, [a, b, c]), Y=sdf.CPD(Y, [a, d])).fit(max_iter=100)
    assert result.relerr["X"] < 1e-8 and result.relerr["Y"] < 1e-8
    assert sdf.models.fms([result[a], result[c]], [values[0], values[2]]) > 1 - 1e-8


def test_dict_round_trip(rng):
    values, _, _ = planted(rng)
    X = random_slices(rng, 0.2)
    a, b, c = (sdf.Variable(v, name=n) for v, n in zip(values, "abc"))
    model = sdf.Model(X=sdf.PARAFAC2(X, [tf.nonneg(a), b, c], weight=0.5))
    spec = model.to_dict()
    assert spec["factorizations"]["X"]["weight"] == 0.5
    again = sdf.Model.from_dict(spec)
    assert isinstance(again.terms["X"], sdf.PARAFAC2)
    assert again.terms["X"].widths == WIDTHS
    p1, p2 = Problem.from_model(model), Problem.from_model(again)
    assert p2.point(p2.z0).f == pytest.approx(p1.point(p1.z0).f, rel=1e-12)


def test_data_are_copied_not_modified(rng):
    X = random_slices(rng, 0.2)
    before = [x.copy() for x in X]
    term = sdf.PARAFAC2(X, [np.ones((I, R)), np.eye(R), np.ones((len(X), R))])
    X[0][1, 1] = 99.0
    np.testing.assert_array_equal(term.slices[1], before[1])
    assert term.slices[0][1, 1] == before[0][1, 1] or np.isnan(before[0][1, 1])
    assert term.describe() == "PARAFAC2 of 4 slices (5 x 3..6, with missing entries), rank 3"


def _model(X, shapes):
    vs = [sdf.Variable(np.ones(s), name=n) for s, n in zip(shapes, "ABC")]
    return sdf.Model(t=sdf.PARAFAC2(X, vs))


@pytest.mark.parametrize("shapes,message", [
    ([(6, 3), (3, 3), (4, 3)],
     r"term 't', factor 0 \('A'\): expected 5 rows to match the rows of every slice, got 6"),
    ([(5, 3), (2, 3), (4, 3)],
     r"term 't', factor 1 \('B'\): expected shape \(R, R\) = \(3, 3\) for rank 3, got \(2, 3\)"),
    ([(5, 3), (3, 3), (3, 3)],
     r"term 't', factor 2 \('C'\): expected 4 rows to match the number of slices, got 3"),
    ([(5, 3), (3, 3), (4, 2)], r"term 't', factor 2 \('C'\): expected 3 columns like A, got 2"),
    ([(5, 4), (4, 4), (4, 4)],
     r"term 't': slice 2 has 3 columns, fewer than the rank 4 \(P_k needs 4 orthonormal"),
])
def test_check_errors(shapes, message, rng):
    with pytest.raises(sdf.ModelError, match=message):
        _model(random_slices(rng), shapes).check()


@pytest.mark.parametrize("data,message", [
    ([np.ones((3, 2)), np.ones((4, 2))],
     r"PARAFAC2 data, slice 1: expected 3 rows like slice 0 \(the shared mode\), got 4"),
    ([np.ones((3, 2)), np.ones(3)], r"PARAFAC2 data, slice 1: expected a non-empty matrix"),
    ([np.ones((3, 2)), np.array([[1.0, np.inf], [0, 0], [0, 0]])],
     r"PARAFAC2 data, slice 1: Inf entry at \(0, 1\) \(1 in all\); mark missing entries"),
    ([np.full((2, 2), np.nan)], r"PARAFAC2 data: no known entry"),
    (np.ones((3, 2)), r"PARAFAC2 data: expected a non-empty list of matrices"),
    ([np.ones((2, 2)), [["a", "b"], ["c", "d"]]],
     r"PARAFAC2 data, slice 1: expected a numeric matrix"),
    ([np.ones((2, 2)), np.array([[1.0, 1j], [0, np.inf * 1j]])],
     r"PARAFAC2 data, slice 1: Inf entry at \(1, 1\) \(1 in all\)"),
])
def test_bad_data(data, message):
    with pytest.raises(sdf.DataError, match=message):
        sdf.PARAFAC2(data, [np.ones((3, 1))] * 3)


def test_needs_three_factors():
    with pytest.raises(sdf.ModelError, match=r"PARAFAC2: expected 3 factors \[A, B, C\], got 2"):
        sdf.PARAFAC2([np.ones((2, 2))], [np.ones((2, 1))] * 2)


@pytest.mark.parametrize("missing", [0.0, 0.3])
def test_read_only_inputs_untouched_by_both_solvers(missing, rng):
    values, _, _ = planted(rng)
    X = random_slices(rng, missing)
    given = X + values
    copies = [a.copy() for a in given]
    for a in given:
        a.setflags(write=False)
    model = sdf.Model(t=sdf.PARAFAC2(X, [sdf.Variable(v) for v in values]))
    problem = Problem.from_model(model)
    point = problem.point(problem.z0 + 0.1)
    point.gradient()
    point.gn_product(np.ones(problem.n))
    point.preconditioner()(np.ones(problem.n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sdf.errors.SdfWarning)
        for method in ("nls", "minf"):
            result = model.fit(method=method, max_iter=3)
            assert np.isfinite(result.relerr["t"])
    for a, c in zip(given, copies):
        np.testing.assert_array_equal(a, c)


# ----------------------------------------------------------------------------- complex values
#: (data complex, factors complex)
MIXES = {"complex-complex": (True, True), "real-complex": (False, True),
         "complex-real": (True, False)}


def _cplx(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def complex_case(rng, mix, missing=0.0):
    """Factors near a planted complex PARAFAC2 and slices (with NaN where missing)."""
    data_complex, factors_complex = MIXES[mix]
    make = (lambda s: _cplx(rng, s)) if factors_complex else rng.standard_normal
    values = [make((I, R)), make((R, R)), make((len(WIDTHS), R))]
    X = [_cplx(rng, (I, J)) if data_complex else rng.standard_normal((I, J)) for J in WIDTHS]
    for x in X:
        x[rng.random(x.shape) < missing] = np.nan
        x[0, 0] = 1.0
    return values, X


def split(arrays):
    """The real split of the engine: complex entries as interleaved real and imaginary
    parts."""
    return np.concatenate([np.ascontiguousarray(a, dtype=complex).ravel().view(float)
                           if np.iscomplexobj(a) else np.ravel(a) for a in arrays])


def unsplit(u, like):
    out, k = [], 0
    for a in like:
        n = a.size * (2 if np.iscomplexobj(a) else 1)
        seg = u[k:k + n]
        out.append(anp.reshape(seg[0::2] + 1j * seg[1::2] if np.iscomplexobj(a) else seg,
                               a.shape))
        k += n
    return out


# autograd's reference takes the real part of a real variable's cotangent, warning as it casts
@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning:autograd")
@pytest.mark.parametrize("missing", [0.0, 0.3])
@pytest.mark.parametrize("mix", sorted(MIXES))
def test_complex_gauss_newton_is_the_schur_complement_of_the_unitary_rotations(mix, missing,
                                                                              rng):
    """Complex values: J^H (I - Π) J v on the real split, Π the projection on the
    rotations P_k -> P_k (I + Ω_k) with Ω_k skew-Hermitian (R^2 real parameters); the
    gradient J^H r at the optimal P_k (envelope theorem)."""
    values, X = complex_case(rng, mix, missing)
    state = sdf.PARAFAC2(X, values).prepare(values)
    P = [state.P[k, :J] for k, J in enumerate(WIDTHS)]
    for Pk in P:  # unitary projections
        np.testing.assert_allclose(Pk.conj().T @ Pk, np.eye(R), atol=1e-12)
    known = [~np.isnan(x) for x in X]
    target = [np.where(k, x, 0.0) for k, x in zip(known, X)]
    basis = [(np.eye(R)[:, [a]] @ np.eye(R)[[b], :]) for a in range(R) for b in range(R)]
    skew = [E - E.T for E in basis[:: 1] if np.flatnonzero(E)[0] // R < np.flatnonzero(E)[0] % R]
    skew += [1j * (E + E.T) for E in basis if np.flatnonzero(E)[0] // R < np.flatnonzero(E)[0] % R]
    skew += [1j * basis[a * R + a] for a in range(R)]
    m = len(skew)
    assert m == R * R
    n = split(values).size

    def residual(z):
        A, B, C = unsplit(z[:n], values)
        out = []
        for k, Xk in enumerate(X):
            w = z[n + k * m:n + (k + 1) * m]
            Om = sum(w[j] * skew[j] for j in range(m))
            Pk = P[k] + anp.dot(P[k], Om)
            r = anp.dot(anp.dot(A * C[k], B.T), Pk.T)[known[k]] - target[k][known[k]]
            out += [anp.real(r), anp.imag(r)]
        return anp.concatenate(out)

    z0 = np.concatenate([split(values), np.zeros(len(X) * m)])
    J = jacobian(residual)(z0)
    r0 = residual(z0)
    assert state.fval == pytest.approx(0.5 * r0 @ r0, rel=1e-10)
    Jx, Jw = J[:, :n], J[:, n:]
    # P_k optimal: to rounding with every entry known, to the majorization's tolerance
    # (steps of 1e-9 in P_k) with missing ones
    np.testing.assert_allclose(Jw.T @ r0, 0.0, atol=(1e-5 if missing else 1e-10)
                               * np.abs(Jx.T @ r0).max())
    g = split(state.gradient())
    if not MIXES[mix][1]:
        g = split([np.real(a) for a in state.gradient()])
    np.testing.assert_allclose(g, Jx.T @ r0, rtol=1e-9, atol=1e-9 * np.abs(g).max())
    reduced = Jx.T @ Jx - Jx.T @ Jw @ np.linalg.pinv(Jw.T @ Jw) @ Jw.T @ Jx
    v = rng.standard_normal(n)
    out = state.gn_product(unsplit(v, values))
    if not MIXES[mix][1]:  # a real variable in a complex term: the real part
        out = [np.real(a) for a in out]
    np.testing.assert_allclose(split(out), reduced @ v, rtol=1e-8,
                               atol=1e-8 * np.abs(reduced @ v).max())


@pytest.mark.parametrize("missing", [0.0, 0.3])
def test_complex_gradient_matches_finite_differences_of_the_objective(missing, rng):
    """The objective with P_k eliminated (majorization with missing entries) against
    central differences on the real split: to rounding with every entry known, to the
    majorization's accuracy (it stops at steps of 1e-9 in P_k, a few 1e-6 from its fixed
    point where it converges slowly) with missing ones."""
    values, X = complex_case(rng, "complex-complex", missing)
    term = sdf.PARAFAC2(X, values)
    g = split(term.prepare(values).gradient())
    z, h = split(values), 1e-6
    fd = np.array([(term.prepare(unsplit(z + h * e, values)).fval
                    - term.prepare(unsplit(z - h * e, values)).fval) / (2 * h)
                   for e in np.eye(z.size)])
    tol = 1e-4 if missing else 1e-7
    np.testing.assert_allclose(g, fd, rtol=tol, atol=tol * np.abs(g).max())


@pytest.mark.parametrize("missing", [0.0, 0.3])
def test_complex_blocks_bound_the_gauss_newton_diagonal(missing, rng):
    values, X = complex_case(rng, "complex-complex", missing)
    state = sdf.PARAFAC2(X, values).prepare(values)
    for k, block in enumerate(state.blocks()):
        block = np.asarray(block)
        for row in range(values[k].shape[0]):
            Bk = block if block.ndim == 2 else block[row]
            np.testing.assert_allclose(Bk, Bk.conj().T, atol=1e-12)  # Hermitian
            for r in range(R):
                for unit in (1.0, 1j):
                    d = [np.zeros_like(v) for v in values]
                    d[k][row, r] = unit
                    curvature = np.real(np.conj(unit) * state.gn_product(d)[k][row, r])
                    assert curvature <= Bk[r, r].real * (1 + 1e-10) + 1e-12


@pytest.mark.parametrize("missing", [0.0, 0.3])
def test_complex_planted_fit_recovers_the_slice_factors(missing, rng):
    """A planted complex PARAFAC2 (unitary P_k, complex A, B, C) fitted by Gauss-Newton
    from a nearby start: error at rounding level, B_k = P_k B recovered up to the common
    permutation and complex scaling."""
    A, B, C = _cplx(rng, (8, 2)), _cplx(rng, (2, 2)), _cplx(rng, (5, 2))
    P = [np.linalg.qr(_cplx(rng, (J, 2)))[0] for J in (4, 5, 6, 5, 4)]
    X = [A @ np.diag(c) @ (Pk @ B).T for c, Pk in zip(C, P)]
    for x in X:
        x[rng.random(x.shape) < missing] = np.nan
        x[0, 0] = 0.0 if np.isnan(x[0, 0]) else x[0, 0]
    X = [A @ np.diag(c) @ (Pk @ B).T * np.where(np.isnan(x), np.nan, 1.0)
         for c, Pk, x in zip(C, P, X)]
    variables = [sdf.Variable(F + 0.05 * _cplx(rng, F.shape), name=n)
                 for F, n in zip((A, B, C), "ABC")]
    term = sdf.PARAFAC2(X, variables)
    result = sdf.Model(X=term).fit(method="nls", max_iter=100)
    assert result.success
    assert result.relerr["X"] < 1e-6
    values = [result[v] for v in variables]
    assert all(np.iscomplexobj(v) for v in values)
    # the reported error is that of the returned factors and projections
    model = [values[0] @ np.diag(c) @ Bk.T for c, Bk in zip(values[2], term.slice_factors(values))]
    known = [~np.isnan(x) for x in X]
    err = np.sqrt(sum(np.sum(np.abs(m - x)[k] ** 2) for m, x, k in zip(model, X, known)))
    norm = np.sqrt(sum(np.sum(np.abs(x[k]) ** 2) for x, k in zip(X, known)))
    assert err / norm == pytest.approx(result.relerr["X"], rel=1e-6, abs=1e-12)
    # per slice: B_k's columns are unique up to the common permutation and a phase
    # (with c_k's)
    scores = []
    for perm in ((0, 1), (1, 0)):
        cosines = [np.abs(np.sum((Pk @ B).conj() * Bk[:, perm], axis=0))
                   / (np.linalg.norm(Pk @ B, axis=0) * np.linalg.norm(Bk[:, perm], axis=0))
                   for Pk, Bk in zip(P, term.slice_factors(values))]
        scores.append(np.min(cosines))
    assert max(scores) > 1 - 1e-6


@pytest.mark.parametrize("mix", ["complex-complex", "real-complex"])
def test_reported_error_is_that_of_the_returned_projections(mix, rng):
    """With missing entries a point evaluated twice may get two objectives (each
    majorization starts from the last projections): the reported one (``exact_fval``) is
    the lower, whose projections ``projections`` returns; a point that is not the lowest
    gets its own projections, kept for both."""
    values, X = complex_case(rng, mix, missing=0.6)
    values = [v.astype(complex) for v in values]
    term = sdf.PARAFAC2(X, values)
    W = [~np.isnan(x) for x in X]

    def error(P):  # 1/2 ||W * (A D_k B^T P_k^T - X_k)||^2 of given projections
        A, B, C = values
        return 0.5 * sum(np.sum(np.abs((A * c) @ (Pk @ B).T - x)[w] ** 2)
                         for c, Pk, x, w in zip(C, P, X, W))

    fvals = []
    for seed in range(4):  # majorizations from different unitary starts
        start = [np.linalg.qr(_cplx(np.random.default_rng(seed), (J, R)))[0] for J in WIDTHS]
        warm = np.zeros((len(WIDTHS), max(WIDTHS), R), dtype=complex)
        for k, P in enumerate(start):
            warm[k, :len(P)] = P
        term._warm = warm
        fvals.append(term.prepare(values).fval)
    assert max(fvals) > min(fvals) * (1 + 1e-12)  # the evaluations differ
    reported = term.exact_fval(values, max(fvals))
    assert reported == min(fvals)
    assert error(term.projections(values)) == pytest.approx(reported, rel=1e-10)
    # another point: its own projections, reported and returned alike
    other = [v * 1.01 for v in values]
    f_other = term.exact_fval(other, 0.0)
    values = other
    assert error(term.projections(other)) == pytest.approx(f_other, rel=1e-10)


def test_complex_dict_round_trip(rng):
    """Complex slices and factors stay complex through ``to_dict`` and ``from_dict``."""
    values, X = complex_case(rng, "complex-complex", missing=0.2)
    model = sdf.Model(X=sdf.PARAFAC2(X, [sdf.Variable(v, name=n) for v, n in zip(values, "abc")]))
    again = sdf.Model.from_dict(model.to_dict())
    assert all(np.iscomplexobj(s) for s in again.terms["X"].slices)
    for s1, s2 in zip(model.terms["X"].slices, again.terms["X"].slices):
        np.testing.assert_array_equal(s1, s2)
    p1, p2 = Problem.from_model(model), Problem.from_model(again)
    assert p2.complex_variables == [True] * 3
    assert p2.point(p2.z0).f == pytest.approx(p1.point(p1.z0).f, rel=1e-12)
