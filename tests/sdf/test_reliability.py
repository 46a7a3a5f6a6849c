"""Bad input and hard problems: inputs untouched, clear stop reasons, scale invariance,
long runs and reproducibility."""

import hashlib
import subprocess
import tempfile
import sys
import textwrap
import warnings

import numpy as np
import pytest
import xarray as xr

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.errors import DegeneracyWarning, SdfWarning
from sdf.models import fms
from sdf.models.fuse import fuse
from sdf.problem import Problem
from sdf.transforms import Transform

SHAPE = (7, 6, 5)


def planted(rng, rank=3, shape=SHAPE, noise=0.0):
    F = [rng.standard_normal((n, rank)) for n in shape]
    T = algebra.cpd_to_tensor(F)
    return T + noise * np.linalg.norm(T) / np.sqrt(T.size) * rng.standard_normal(shape), F


def starts(rank=3, shape=SHAPE, seed=100):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, rank)) for n in shape]


def fit(data, init, **options):
    vs = [sdf.Variable(x, name=f"x{k}") for k, x in enumerate(init)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        return sdf.Model(t=sdf.CPD(data, vs)).fit(**options), vs


def finite(res):
    return all(np.all(np.isfinite(v)) for v in res.variables.values())


def readonly(x):
    x = np.array(x, copy=True)
    x.setflags(write=False)
    return x


# ------------------------------------------------------------------ inputs untouched
@pytest.mark.parametrize("method", ["nls", "minf"])
def test_check_and_fit_leave_data_init_and_options_untouched(rng, method):
    T, _ = planted(rng)
    T[0, 0, 0] = np.nan
    T, Y = readonly(T), readonly(rng.standard_normal((7, 4)))
    inits = [readonly(x) for x in starts()] + [readonly(rng.standard_normal((4, 3)))]
    copies = [x.copy() for x in (T, Y, *inits)]
    a, b, c, d = (sdf.Variable(x, name=n) for x, n in zip(inits, "abcd"))
    cls = sdf.NLSOptions if method == "nls" else sdf.MinfOptions
    extra = {} if method == "nls" else {"bounds": {"d": (readonly(np.zeros((4, 3))) - 1, None)}}
    options = cls(max_iter=5, **extra)
    before = repr(options)
    model = sdf.Model(t=sdf.CPD(T, [a, tf.nonneg(b), c]), y=sdf.CPD(Y, [a, d]))
    model.check()
    model.fit(method=method, options=options, tol_fun=0.0)
    for x, y in zip((T, Y, *inits), copies):
        np.testing.assert_array_equal(x, y)
    for v, x in zip((a, b, c, d), inits):
        np.testing.assert_array_equal(v.value, x)
    assert repr(options) == before


def test_from_dict_leaves_the_spec_untouched(rng):
    T, _ = planted(rng)
    spec = {"variables": {k: readonly(x) for k, x in zip("abc", starts())},
            "factors": {"B": ("b", tf.nonneg)},
            "factorizations": {"t": {"data": readonly(T), "cpd": ["a", "B", "c"]}}}
    copies = {k: v.copy() for k, v in spec["variables"].items()}
    sdf.Model.from_dict(spec).fit(max_iter=3)
    assert list(spec) == ["variables", "factors", "factorizations"]
    for k, v in copies.items():
        np.testing.assert_array_equal(spec["variables"][k], v)


DRIVERS = {
    "cpd": lambda X, o: sdf.models.cpd(X, 2, seed=0, options=o),
    "cpd_init": lambda X, o: sdf.models.cpd(X, 2, init=[readonly(x) for x in starts(2)], options=o),
    "lmlra": lambda X, o: sdf.models.lmlra(X, (2, 2, 2), seed=0, options=o),
    "btd": lambda X, o: sdf.models.btd(X, [(2, 2, 2), (1, 1, 1)], seed=0, options=o),
    "ll1": lambda X, o: sdf.models.ll1(X, [2, 1], seed=0, options=o),
    "cmtf": lambda X, o: sdf.models.cmtf({"t": X, "m": readonly(X[:, :, 0])}, 2,
                                          modes={"t": ["i", "j", "k"], "m": ["i", "l"]},
                                          seed=0, options=o),
    "fuse": lambda X, o: fuse({"t": xr.DataArray(X, dims=("i", "j", "k"))}, 2, seed=0,
                              options=o),
}


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_drivers_leave_inputs_untouched(rng, driver):
    X = readonly(planted(rng, rank=2)[0])
    copy = X.copy()
    options = sdf.NLSOptions(max_iter=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DRIVERS[driver](X, options)
    np.testing.assert_array_equal(X, copy)
    assert options == sdf.NLSOptions(max_iter=4)


# ------------------------------------------------------------------ hard problems
def test_all_zero_data_stops_with_finite_factors_and_says_so():
    vs = [sdf.Variable(x, name=f"x{k}") for k, x in enumerate(starts())]
    with pytest.warns(SdfWarning, match="the data are all zero"):
        res = sdf.Model(t=sdf.CPD(np.zeros(SHAPE), vs)).fit(max_iter=50)
    assert finite(res) and res.stop.converged
    assert res.abserr["t"] < 1e-4 * res.history.objective[0] ** 0.5
    assert any("all zero" in w for w in res.warnings)


def test_rank_above_every_dimension(rng):
    T, _ = planted(rng, rank=3)
    res, _ = fit(T, starts(rank=9), max_iter=100)
    assert finite(res) and res.success and res.relerr["t"] < 1e-4


def test_collinear_factors(rng):
    F = [rng.standard_normal((n, 3)) for n in SHAPE]
    F[0][:, 1] = F[0][:, 0] + 1e-6 * rng.standard_normal(SHAPE[0])
    res, _ = fit(algebra.cpd_to_tensor(F), starts(), max_iter=100)
    assert finite(res) and res.success and res.relerr["t"] < 1e-3


def test_zero_component_gives_a_singular_gramian_and_a_warning(rng):
    T, _ = planted(rng)
    init = starts()
    for x in init:
        x[:, 1] = 0.0
    vs = [sdf.Variable(x, name=f"x{k}") for k, x in enumerate(init)]
    with pytest.warns(SdfWarning, match=r"component\(s\) \[1\] are zero.*effective rank is 2 of 3"):
        res = sdf.Model(t=sdf.CPD(T, vs)).fit(max_iter=50)
    assert finite(res) and res.stop.converged


def test_cp_degeneracy_is_detected_and_reported(rng):
    # A rank-3 tensor with no best rank-2 approximation: components diverge and cancel.
    a, b, c = ([rng.standard_normal(n) for _ in range(2)] for n in SHAPE)
    outer = lambda x, y, z: np.einsum("i,j,k->ijk", x, y, z)  # noqa: E731
    T = outer(a[0], b[0], c[1]) + outer(a[0], b[1], c[0]) + outer(a[1], b[0], c[0])
    vs = [sdf.Variable.random((n, 2), seed=1 + k, name=f"x{k}") for k, n in enumerate(SHAPE)]
    with pytest.warns(DegeneracyWarning, match=r"term 't': degenerate CPD.*congruence \(0, 1\): -0\.9"):
        res = sdf.Model(t=sdf.CPD(T, vs)).fit(max_iter=500)
    assert finite(res)
    assert any("degenerate CPD" in w for w in res.warnings)
    assert issubclass(DegeneracyWarning, UserWarning)


def test_a_healthy_fit_has_no_warnings(rng):
    T, _ = planted(rng, noise=0.01)
    vs = [sdf.Variable(x, name=f"x{k}") for k, x in enumerate(starts())]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SdfWarning)
        res = sdf.Model(t=sdf.CPD(T, vs)).fit(max_iter=200)
    assert res.warnings == [] and res.stop.converged


@pytest.mark.parametrize("method", ["nls", "minf"])
@pytest.mark.parametrize("exponent", [498, -498])
def test_scaling_by_a_power_of_two_changes_nothing_but_the_scale(rng, method, exponent):
    # 2**498 ~ 1e150: the solvers work in units of powers of two, so every step is the same.
    T, _ = planted(rng, noise=0.01)
    base, _ = fit(T, starts(), method=method, max_iter=100)
    s = 2.0 ** (exponent // 3)
    res, _ = fit(T * s**3, [x * s for x in starts()], method=method, max_iter=100)
    assert res.stop is base.stop and res.iterations == base.iterations
    for k in base.variables:
        np.testing.assert_array_equal(res.variables[k] / s, base.variables[k])
    np.testing.assert_array_equal(np.array(res.history.objective) / s**6, base.history.objective)


@pytest.mark.parametrize("method", ["nls", "minf"])
@pytest.mark.parametrize("scale", [1e150, 1e-150])
def test_results_are_scale_invariant(rng, method, scale):
    T, F = planted(rng, rank=2, noise=0.01)
    base, _ = fit(T, starts(2), method=method, max_iter=500)
    s = scale ** (1 / 3)
    res, _ = fit(T * scale, [x * s for x in starts(2)], method=method, max_iter=500)
    assert res.stop is base.stop and res.stop.converged and finite(res)
    assert res.relerr["t"] == pytest.approx(base.relerr["t"], rel=1e-6)
    assert res.objective == pytest.approx(base.objective * scale**2, rel=1e-5)
    factors = [res.variables[f"x{k}"] / s for k in range(3)]
    assert fms(factors, [base.variables[f"x{k}"] for k in range(3)]) > 1 - 1e-8


def _true_relerr(res, data, scale):
    """The error recomputed from the factors (in units where it cannot underflow)."""
    model = algebra.cpd_to_tensor([res.variables[f"x{k}"] / scale ** (1 / 3) for k in range(3)])
    return np.linalg.norm(model - data / scale) / np.linalg.norm(data / scale)


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-160, 1e120, 1e300])
def test_any_finite_data_scale_fits_like_the_rescaled_copy(rng, scale):
    T, _ = planted(rng, noise=1e-3)
    ref, _ = fit(T, starts(), max_iter=30)
    start = [x * scale ** (1 / 3) for x in starts()]
    res, _ = fit(T * scale, start, max_iter=30)
    assert res.success and res.stop is ref.stop and res.iterations == ref.iterations
    assert res.relerr["t"] == pytest.approx(ref.relerr["t"], rel=1e-10)
    rescaled = [res.variables[f"x{k}"] / scale ** (1 / 3) for k in range(3)]
    assert _true_relerr(res, T * scale, scale) == pytest.approx(res.relerr["t"], rel=1e-6)
    for k in range(3):
        np.testing.assert_allclose(rescaled[k], ref.variables[f"x{k}"], rtol=1e-8, atol=1e-12)


def test_reported_error_of_a_degenerate_cpd_is_that_of_its_factors(rng):
    """Unit-norm columns that cancel: a model of size 1e-8 from components of size 1 (the
    Gramian expansion of ``||M||^2`` then loses its digits to cancellation well above
    1e-6 of ``||T||^2``). The reported error is the one recomputed from the factors: a
    fit that ended there, and the term on such factors directly."""
    A, B = rng.random((7, 3)), rng.random((8, 3))
    T = (A @ B.T + 0.01 * rng.standard_normal((7, 8))) * 1e-8
    v0, v1 = (sdf.Variable.random((n, 3), seed=k, name=f"v{k}") for k, n in ((1, 7), (2, 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        res = sdf.Model(t=sdf.CPD(T, [tf.nonneg(v0), tf.normalize(v1)])).fit(max_iter=200)
    a, b = res.factors["t"]
    assert res.relerr["t"] == pytest.approx(np.linalg.norm(T - a @ b.T) / np.linalg.norm(T),
                                            rel=1e-9, abs=0)
    # the term alone: three unit components summing to a model of size 1e-8
    b1 = rng.standard_normal(8)
    Bd = np.stack([b1, b1, -b1], axis=1) / np.linalg.norm(b1)
    Ad = np.stack([np.ones(7), np.ones(7), np.ones(7)], axis=1)
    Ad[:, 2] = 2.0 - 1e-8 * rng.random(7)
    term = sdf.CPD(T, [sdf.Variable(Ad, name="a"), sdf.Variable(Bd, name="b")])
    direct = 0.5 * np.linalg.norm(T - Ad @ Bd.T) ** 2
    expanded = term.prepare([Ad, Bd]).fval
    assert abs(expanded - direct) > 1e-3 * direct  # the expansion has lost digits
    assert term.exact_fval([Ad, Bd], expanded) == pytest.approx(direct, rel=1e-9, abs=0)


@pytest.mark.parametrize("kind", ["lmlra", "btd"])
def test_reported_error_of_cancelling_tucker_blocks_is_that_of_the_residual(rng, kind):
    """LMLRA and BTD: core slices (of size 1e4) or blocks (of size 1) that cancel to a
    model of size 1e-8 (LMLRA's expansion loses fewer digits: it needs the larger core)."""
    T = rng.standard_normal((5, 6, 4)) * 1e-8
    U = [np.linalg.qr(rng.standard_normal((n, 2)))[0] for n in T.shape]
    S = rng.standard_normal((2, 2, 2)) * (1e4 if kind == "lmlra" else 1.0)
    small = rng.standard_normal((2, 2, 2)) * 1e-8
    if kind == "lmlra":
        S2 = np.concatenate([S, -S + small], axis=0)  # core slices that cancel
        U0 = np.concatenate([U[0], U[0]], axis=1)
        values = [U0, U[1], U[2], S2]
        term = sdf.LMLRA(T, [sdf.Variable(v, name=f"u{k}") for k, v in enumerate(values[:3])],
                         sdf.Variable(S2, name="s"))
        model = algebra.tucker_to_tensor(values[:3], S2)
    else:
        blocks = [(U, S), (U, -S + small)]
        values = [*U, S, *U, -S + small]
        term = sdf.BTD(T, [[sdf.Variable(v, name=f"x{k}{b}") for k, v in enumerate([*Ub, Sb])]
                           for b, (Ub, Sb) in enumerate(blocks)])
        model = sum(algebra.tucker_to_tensor(list(Ub), Sb) for Ub, Sb in blocks)
    direct = 0.5 * np.linalg.norm(T - model) ** 2
    expanded = term.prepare(values).fval
    assert abs(expanded - direct) > (1e-7 if kind == "lmlra" else 1e-3) * direct
    assert term.exact_fval(values, expanded) == pytest.approx(direct, rel=1e-9, abs=0)


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1e150, 1e300])
def test_a_start_far_from_the_data_scale_is_rescaled(rng, scale):
    T, _ = planted(rng, noise=1e-3)
    ref, _ = fit(T, starts(), max_iter=50)
    vs = [sdf.Variable(x, name=f"x{k}") for k, x in enumerate(starts())]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SdfWarning)
        res = sdf.Model(t=sdf.CPD(T * scale, vs)).fit(max_iter=50)
    assert res.success
    assert res.relerr["t"] == pytest.approx(ref.relerr["t"], rel=1e-6)
    assert _true_relerr(res, T * scale, scale) == pytest.approx(res.relerr["t"], rel=1e-6)


@pytest.mark.parametrize("scale", [1e-8, 1e8])
def test_a_btd_start_far_from_the_data_scale_is_rescaled(rng, scale):
    """Unit blocks against data at 1e-8 stopped at relative error 185 ("converged"):
    the blocks' model norm was unknown to the rescaling of the start."""
    T = algebra.cpd_to_tensor([rng.standard_normal((n, 2)) for n in (4, 3, 5)]) * scale
    blocks = [[sdf.Variable(rng.standard_normal((n, 2)), name=f"u{b}{k}")
               for k, n in enumerate(T.shape)]
              + [sdf.Variable(rng.standard_normal((2, 2, 2)), name=f"s{b}")] for b in range(2)]
    res = sdf.Model(t=sdf.BTD(T, blocks)).fit(max_iter=200)
    model = sum(algebra.tucker_to_tensor([res.variables[f"u{b}{k}"] for k in range(3)],
                                         res.variables[f"s{b}"]) for b in range(2))
    assert res.success and res.relerr["t"] < 1e-6
    assert np.linalg.norm(model - T) / np.linalg.norm(T) == pytest.approx(res.relerr["t"],
                                                                         rel=1e-6)


def test_tolerances_hold_against_the_zero_model_from_a_start_worse_than_it(rng):
    """A tensor train of data at 1e-8 from unit cores, each also in a zero-weight term (so
    that the start is not rescaled: only variables entering one term alone are): the
    objective's changes are measured against the zero model's objective, not the start's
    (relative to that 1e16 times larger start, the fit stopped at relative error 49)."""
    cores = [rng.standard_normal(s) for s in [(1, 4, 2), (2, 5, 2), (2, 3, 1)]]
    T = sdf.tensors.TTTensor(cores).to_dense() * 1e-8
    start = [sdf.Variable(rng.standard_normal(G.shape), name=f"g{k}")
             for k, G in enumerate(cores)]
    unused = {f"r{k}": sdf.L2([G], weight=0.0) for k, G in enumerate(start)}
    problem = Problem.from_model(sdf.Model(t=sdf.TT(T, start), **unused))
    np.testing.assert_array_equal(sdf.fit.rescaled_start(problem), problem.z0)
    res = sdf.Model(t=sdf.TT(T, start), **unused).fit(max_iter=300)
    assert res.success and res.relerr["t"] < 1e-8


@pytest.mark.parametrize("method", ["nls", "minf"])
def test_a_regularized_start_far_from_the_data_scale_converges(method, rng):
    """A CPD with L2 terms on its factors (weight 0: the optimum is the plain CPD's) on
    data at 1e-8, from unit factors, which the rescaling leaves alone (they enter two
    terms): the tolerances are relative to the objective at zero, not to the 1e16 times
    larger start's (Gauss-Newton stopped at relative error 10 to 24, "converged"), and
    L-BFGS shrinks the start to the data's size first (it stopped at 0.7 to 1.3)."""
    T = algebra.cpd_to_tensor([rng.standard_normal((n, 2)) for n in (5, 6, 7)]) * 1e-8
    for seed in range(1, 4):
        start = np.random.default_rng(seed)
        vs = [sdf.Variable(start.standard_normal((n, 2)), name=f"a{k}")
              for k, n in enumerate(T.shape)]
        terms = {f"r{k}": sdf.L2([v], weight=0.0) for k, v in enumerate(vs)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SdfWarning)
            res = sdf.Model(t=sdf.CPD(T, vs), **terms).fit(method=method, max_iter=500)
        assert res.success and res.relerr["t"] < 1e-6, (seed, res.relerr["t"])


@pytest.mark.parametrize("method", ["nls", "minf"])
@pytest.mark.parametrize("kind", ["TT", "TR", "PARAFAC2"])
def test_ring_and_parafac2_starts_far_from_the_data_scale_are_rescaled(kind, method, rng):
    """Unit cores (factors) against data at 1e-8 are rescaled to the data's norm, as CPD,
    LMLRA and BTD starts are: from them L-BFGS shrank one core alone and stopped on
    tol_fun at relative error 1.0 (a train), 0.95 (PARAFAC2)."""
    if kind == "PARAFAC2":
        A, B, C = (rng.standard_normal(s) for s in ((5, 1), (1, 1), (4, 1)))
        data = [1e-8 * A @ np.diag(c) @ (np.linalg.qr(rng.standard_normal((J, 1)))[0] @ B).T
                for c, J in zip(C, (4, 6, 5, 7))]
        start = [sdf.Variable(np.random.default_rng(1).standard_normal(s), name=n)
                 for s, n in (((5, 1), "A"), ((1, 1), "B"), ((4, 1), "C"))]
        term = sdf.PARAFAC2(data, start)
    else:
        r0 = 1 if kind == "TT" else 2
        shapes = [(r0, 6, 2), (2, 7, 2), (2, 8, r0)]
        truth = [rng.standard_normal(s) for s in shapes]
        data = 1e-8 * np.einsum("aib,bjc,cka->ijk", *truth)
        start = [sdf.Variable(np.random.default_rng(k).standard_normal(s), name=f"g{k}")
                 for k, s in enumerate(shapes)]
        term = getattr(sdf, kind)(data, start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        res = sdf.Model(t=term).fit(method=method, max_iter=2000)
    assert res.success and res.relerr["t"] < 1e-6


@pytest.mark.parametrize("kind", ["TT", "TR", "PARAFAC2"])
@pytest.mark.parametrize("cplx", [False, True], ids=["real", "complex"])
def test_model_norms_of_rings_and_parafac2_hold_at_any_scale(kind, cplx, rng):
    def draw(*shape):
        return rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if cplx else 0)
    if kind == "PARAFAC2":
        values = [draw(5, 2), draw(2, 2) * 1e-200, draw(4, 2)]
        P = [np.linalg.qr(draw(J, 2))[0] for J in (3, 4, 3, 5)]
        slices = [values[0] @ np.diag(c) @ (Pk @ values[1] * 1e200).T
                  for c, Pk in zip(values[2], P)]
        term = sdf.PARAFAC2([np.ones((5, J)) for J in (3, 4, 3, 5)], values)
        norm = np.sqrt(sum(np.linalg.norm(x) ** 2 for x in slices))
    else:
        r0 = 1 if kind == "TT" else 2
        values = [draw(r0, 4, 3), draw(3, 5, 2) * 1e-200, draw(2, 3, r0)]
        full = np.einsum("aib,bjc,cka->ijk", values[0], values[1] * 1e200, values[2])
        term = getattr(sdf, kind)(np.ones(full.shape), values)
        norm = np.linalg.norm(full)
    assert term.model_log2_norm(values) == pytest.approx(np.log2(norm) - 200 * np.log2(10),
                                                         rel=1e-12)


@pytest.mark.parametrize("scale", [1e-10, 1.0, 1e10])
def test_lbfgs_balances_a_variable_far_from_the_others_scale(rng, scale):
    """A train's last core carries the data's norm beside orthonormal cores: at 1e-10
    (1e10) it is 1e10 times smaller (larger) than they are, and L-BFGS stopped after two
    iterations at relative error 0.97 (0.87), "converged"; at unit scale (norm 30) it ran
    into the iteration cap at 0.045. In its own unit it fits; bounds are read in the same
    units."""
    from sdf.models import tt

    cores = [rng.standard_normal(s) for s in [(1, 8, 3), (3, 9, 3), (3, 10, 1)]]
    T = sdf.tensors.TTTensor(cores).to_dense()
    T *= 30.0 * scale / np.linalg.norm(T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        dec = tt(T, (3, 3), init="random", seed=1, method="minf")
    assert dec.result.success and dec.relerr < 1e-5
    a = sdf.Variable(np.abs(rng.standard_normal((7, 2))), name="a")
    b = sdf.Variable(np.abs(rng.standard_normal((6, 2))) * scale, name="b")
    X = np.abs(rng.standard_normal((7, 2))) @ np.abs(rng.standard_normal((6, 2))).T * scale
    res = sdf.Model(x=sdf.CPD(X, [a, b])).fit("minf", lower=0.0,
                                              upper={"b": 2.0 * scale})
    assert res["a"].min() >= 0.0 and res["b"].min() >= 0.0
    assert res["b"].max() <= 2.0 * scale and res.relerr["x"] < 1e-6


@pytest.mark.parametrize("scale", [1e-10, 1.0, 1e10])
@pytest.mark.parametrize("method", ["nls", "minf"])
def test_an_exact_start_is_a_success_at_any_scale(scale, method):
    """From the planted factors themselves nothing decreases the objective: L-BFGS's
    line search then fails, which at 1e-10 and 1e10 was reported as STEP_FAILED
    (success False) with relative error 1e-16, in about half of the data sets."""
    for seed in range(6):
        T, F = planted(np.random.default_rng(seed))
        vs = [sdf.Variable(F[0] * scale), sdf.Variable(F[1]), sdf.Variable(F[2])]
        res = sdf.Model(t=sdf.CPD(T * scale, vs)).fit(method)
        assert res.success and res.stop.converged and res.relerr["t"] < 1e-14


@pytest.mark.parametrize("method", ["nls", "minf"])
def test_a_regularized_fit_of_data_at_1e_minus_150_stays_in_range(rng, method):
    """With a ridge term the zero model's objective is no reference for the tolerances
    (here it is 1e-298 of the start's in the solver's units: L-BFGS's gradient
    overflowed when divided by it)."""
    T = rng.standard_normal((6, 6, 1, 6)) * 1e-150
    vs = [sdf.Variable(rng.standard_normal((n, 2)) * 1e-150 ** 0.25, name=f"x{k}")
          for k, n in enumerate(T.shape)]
    model = sdf.Model(t=sdf.CPD(T, [tf.nonneg(vs[0]), *vs[1:]]),
                      ridge=sdf.L2(vs[-1], weight=1e-3 / 1e-150 ** 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        res = model.fit(method=method, max_iter=4)
    assert all(np.all(np.isfinite(v)) for v in res.variables.values())


@pytest.mark.parametrize("seed", [1, 8])
def test_an_expansion_of_cancelling_blocks_is_recomputed_while_fitting(seed):
    """Two blocks of size 1 that cancel to a model of size 1e-12: the norms' expansion
    gives 0 (clipped, an "exact fit") or an objective 1e7 times too large; the point the
    solvers read holds the residual's."""
    rng = np.random.default_rng(seed)
    T = rng.standard_normal((5, 6, 4)) * 1e-12
    U = [np.linalg.qr(rng.standard_normal((n, 2)))[0] for n in T.shape]
    S = rng.standard_normal((2, 2, 2))
    blocks = [(U, S), (U, -S + 1e-12 * rng.standard_normal((2, 2, 2)))]
    term = sdf.BTD(T, [[sdf.Variable(v, name=f"x{k}{b}") for k, v in enumerate([*Ub, Sb])]
                       for b, (Ub, Sb) in enumerate(blocks)])
    values = [v for Ub, Sb in blocks for v in (*Ub, Sb)]
    model = sum(algebra.tucker_to_tensor(list(Ub), Sb) for Ub, Sb in blocks)
    direct = 0.5 * np.linalg.norm(T - model) ** 2
    expanded = term.prepare(values).fval
    assert expanded == 0.0 or expanded > 1e6 * direct
    problem = Problem.from_model(sdf.Model(t=term))
    # (the sum of the two blocks keeps about 1e-16 of their size: 1e-5 of the residual)
    assert problem.point(problem.z0).fvals[0] == pytest.approx(direct, rel=1e-4, abs=0)


def test_a_start_that_cannot_be_rescaled_is_reported(rng):
    # The variable enters the term twice (a symmetric CPD): no variable is its own.
    A = rng.standard_normal((5, 2))
    a = sdf.Variable(rng.standard_normal((5, 2)), name="a")
    with pytest.warns(SdfWarning, match=r"initial model's norm .* could not be rescaled"):
        res = sdf.Model(t=sdf.CPD(A @ A.T * 1e150, [a, a])).fit(max_iter=5)
    assert all(np.all(np.isfinite(v)) for v in res.variables.values())


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32, np.uint8])
def test_integer_and_single_precision_data_fit_as_float64(rng, dtype):
    T, _ = planted(rng)
    X = np.abs(T * 10).astype(dtype)
    res, _ = fit(X, starts(), max_iter=20)
    ref, _ = fit(X.astype(np.float64), starts(), max_iter=20)
    for k in res.variables:
        np.testing.assert_array_equal(res.variables[k], ref.variables[k])
        assert res.variables[k].dtype == np.float64


class _Broken(Transform):
    """x = z with a wrong derivative: zero in forward mode ("zero": the Gauss-Newton
    Gramian vanishes), or -1 in both modes ("negated": every step points uphill)."""

    name = "broken"

    def __init__(self, mode):
        self.mode = mode

    def value(self, z):
        return np.asarray(z, dtype=float)

    def jvp(self, z, dz):
        return 0.0 * dz if self.mode == "zero" else -dz

    def vjp(self, z, g):
        return g if self.mode == "zero" else -g


def broken_model(rng, mode):
    T, _ = planted(rng)
    init = starts()
    vs = [sdf.Variable(x, name=f"x{k}") for k, x in enumerate(init)]
    return sdf.Model(t=sdf.CPD(T, [_Broken(mode)(v) for v in vs])), init


def test_cg_breakdown_on_a_singular_gramian_is_the_stop_reason(rng):
    model, init = broken_model(rng, "zero")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        res = model.fit(max_iter=20)
    assert res.stop is sdf.StopReason.CG_BREAKDOWN and not res.success
    assert finite(res) and res.objective <= res.history.objective[0]
    assert any("Gramian was singular" in w for w in res.warnings)


def test_collapsing_trust_region_is_the_stop_reason(rng):
    model, init = broken_model(rng, "negated")
    res = model.fit(max_iter=20)
    assert res.stop is sdf.StopReason.STEP_FAILED and not res.success
    assert "trust region collapsed" in res.message
    for k, x in enumerate(init):  # no step was accepted: the start is the best point
        np.testing.assert_array_equal(res.variables[f"x{k}"], x)


def test_zero_start_is_a_stationary_point_not_an_exact_fit(rng):
    T, _ = planted(rng)
    res, _ = fit(T, [np.zeros((n, 3)) for n in SHAPE], max_iter=20)
    assert res.stop is sdf.StopReason.STATIONARY and not res.success
    assert "stationary point" in res.message


def test_nonfinite_transform_values_end_nonfinite_not_success(rng):
    T, _ = planted(rng)
    init = starts()
    vs = [sdf.Variable(x, name=f"x{k}") for k, x in enumerate(init)]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sdf.Model(t=sdf.CPD(T, [tf.log(vs[0]), vs[1], vs[2]])).fit(max_iter=5)
    assert res.stop is sdf.StopReason.NONFINITE and not res.success and finite(res)


# ------------------------------------------------------------------ long runs
@pytest.mark.parametrize("method", ["nls", "minf"])
def test_max_time_callback_and_ctrl_c_stop_every_solver(rng, method):
    T, _ = planted(rng, noise=0.01)
    res, _ = fit(T, starts(), method=method, max_time=1e-9)
    assert res.stop is sdf.StopReason.MAX_TIME and res.iterations == 1
    res, _ = fit(T, starts(), method=method, callback=lambda info: info.iteration == 3)
    assert res.stop is sdf.StopReason.CALLBACK and res.iterations == 3

    def interrupt(info):
        if info.iteration == 4:
            raise KeyboardInterrupt

    res, _ = fit(T, starts(), method=method, callback=interrupt)
    assert res.stop is sdf.StopReason.INTERRUPTED and res.success
    assert res.objective == min(res.history.objective) and finite(res)


def test_ctrl_c_with_a_checkpoint_loses_nothing(rng, tmp_path):
    T, _ = planted(rng, noise=0.01)
    path = tmp_path / "run.nc"

    def interrupt(info):
        if info.iteration == 6:
            raise KeyboardInterrupt

    res, _ = fit(T, starts(), checkpoint=path, checkpoint_every=100, callback=interrupt)
    saved = sdf.load_result(path)
    assert saved.stop is sdf.StopReason.INTERRUPTED and saved.iterations == res.iterations
    np.testing.assert_array_equal(saved.variables["x0"], res.variables["x0"])


# ------------------------------------------------------------------ reproducibility
_SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, sdf
    rng = np.random.default_rng(3)
    F = [rng.standard_normal((n, 3)) for n in (9, 8, 7)]
    T = np.einsum("ir,jr,kr->ijk", *F) + 0.01 * rng.standard_normal((9, 8, 7))
    vs = [sdf.Variable.random((n, 3), seed=k, name=f"x{k}") for k, n in enumerate((9, 8, 7))]
    for method in ("nls", "minf"):
        res = sdf.Model(t=sdf.CPD(T, vs)).fit(method=method, max_iter=60)
        h = hashlib.sha256()
        for k in sorted(res.variables):
            h.update(res.variables[k].tobytes())
        h.update(np.array(res.history.objective).tobytes())
        print(method, h.hexdigest())
""")


def test_same_seed_same_result_bit_for_bit_across_processes():
    namespace: dict = {}
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(_SCRIPT, namespace)  # noqa: S102 - our own script
    again = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=tempfile.gettempdir(),
                           capture_output=True, text=True, check=True, timeout=120)
    assert out.getvalue() == again.stdout
    assert len(out.getvalue().splitlines()) == 2
    assert hashlib.sha256(out.getvalue().encode()).hexdigest()  # non-empty report
