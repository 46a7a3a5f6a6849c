"""Never a wrong answer marked as success, never a hang or a bare traceback: stale and
masked data, deep and cyclic expressions, numbers float64 cannot hold, interrupts, time
and memory budgets, and errors that name their place."""

import os
import time
import warnings

import numpy as np
import pytest
import xarray as xr

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.errors import FileFormatError, SdfWarning
from sdf.transforms import Transform

SHAPE = (4, 5, 3)


def planted(rng, rank=2, shape=SHAPE, noise=0.1):
    F = [rng.standard_normal((n, rank)) for n in shape]
    T = algebra.cpd_to_tensor(F)
    return T + noise * rng.standard_normal(shape)


def variables(rank=2, shape=SHAPE, scale=1.0):
    return [sdf.Variable(scale * np.random.default_rng(10 + k).standard_normal((n, rank)),
                         name=f"x{k}") for k, n in enumerate(shape)]


def quiet_fit(model, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        return model.fit(**options)


def recomputed_relerr(res, data, known=None):
    """The relative error of the returned factors on the known entries of ``data``."""
    model = algebra.cpd_to_tensor([res.variables[f"x{k}"] for k in range(data.ndim)])
    known = np.ones(data.shape, bool) if known is None else known
    return np.linalg.norm((model - data)[known]) / np.linalg.norm(data[known])


class _Identity(Transform):
    """x = z; counts its evaluations and products, optionally raising or sleeping."""

    name = "identity"

    def __init__(self, interrupt_first=False, sleep=0.0):
        self.values = self.products = 0
        self.interrupt_first, self.sleep = interrupt_first, sleep

    def value(self, z):
        self.values += 1
        if self.interrupt_first and self.values == 1:
            raise KeyboardInterrupt
        return np.asarray(z, dtype=float)

    def jvp(self, z, dz):
        self.products += 1
        time.sleep(self.sleep)
        return dz

    def vjp(self, z, g):
        return g


# ------------------------------------------------------------------ data
def test_editing_the_users_array_after_a_fit_leaves_the_next_fit_true(rng):
    T = planted(rng)
    original = T.copy()
    model = sdf.Model(t=sdf.CPD(T, variables()))
    first = quiet_fit(model, max_iter=100)
    T *= 10
    second = quiet_fit(model, max_iter=100)
    assert second.relerr["t"] == pytest.approx(recomputed_relerr(second, original), rel=1e-6)
    assert second.relerr["t"] == pytest.approx(first.relerr["t"], rel=1e-6)


@pytest.mark.parametrize("method", ["nls", "minf"])
def test_masked_entries_are_missing(rng, method):
    T = planted(rng)
    mask = np.zeros(SHAPE, bool)
    mask[0, 0, 0] = True
    mask[1, 2, :] = True
    hidden = T.copy()
    hidden[mask] = 1e3  # values the fit must never see
    X = np.ma.masked_array(hidden, mask=mask)
    res = quiet_fit(sdf.Model(t=sdf.CPD(X, variables())), method=method, max_iter=200)
    assert res.relerr["t"] == pytest.approx(recomputed_relerr(res, T, ~mask), rel=1e-6)
    assert res.relerr["t"] < 0.5


def test_factorizations_keyed_1_and_text_1_are_refused():
    spec = {"variables": {"a": np.ones((4, 2)), "b": np.ones((5, 2))},
            "factorizations": {1: {"data": np.ones((4, 5)), "cpd": ["a", "b"]},
                               "1": {"data": np.ones((4, 5)), "cpd": ["a", "b"]}}}
    with pytest.raises(sdf.ModelError,
                       match=r"factorizations\['1'\]: another factorization is keyed '1'"):
        sdf.Model.from_dict(spec)


@pytest.mark.parametrize("key,value", [("L", [1, 1]), ("target", np.zeros((4, 2))),
                                       ("smoothing", 0.1)])
def test_options_of_other_terms_on_a_cpd_entry_are_refused(key, value):
    spec = {"variables": {"a": np.ones((4, 2)), "b": np.ones((5, 2))},
            "factorizations": {"t": {"data": np.ones((4, 5)), "cpd": ["a", "b"], key: value}}}
    with pytest.raises(sdf.ModelError,
                       match=rf"factorizations\['t'\]: unknown key\(s\) '{key}' for a 'cpd'"):
        sdf.Model.from_dict(spec)


@pytest.mark.parametrize("dtype", ["datetime64[s]", "timedelta64[s]"])
def test_dates_and_durations_are_refused(dtype):
    with pytest.raises(sdf.DataError, match=r"CPD data: data has dtype .*64\[s\] \(dates or"):
        sdf.CPD(np.zeros(SHAPE, dtype=dtype), variables())


# ------------------------------------------------------------------ files and options
@pytest.mark.parametrize("where", ["missing folder", "a folder"])
def test_bad_checkpoint_path_is_refused_before_the_first_iteration(rng, tmp_path, where):
    path = tmp_path / "nowhere" / "run.nc" if where == "missing folder" else tmp_path
    seen = []
    model = sdf.Model(t=sdf.CPD(planted(rng), variables()))
    with pytest.raises(sdf.OptionError, match=r"NLSOptions\.checkpoint: .*(does not exist|is a folder)"):
        model.fit(checkpoint=path, callback=seen.append)
    assert seen == []


@pytest.mark.parametrize("via", ["file", "result"])
def test_resuming_after_renaming_a_term_is_refused(rng, tmp_path, via):
    T, vs = planted(rng), variables()
    res = quiet_fit(sdf.Model(t=sdf.CPD(T, vs)), max_iter=2)
    path = tmp_path / "run.nc"
    res.save(path)
    renamed = sdf.Model(u=sdf.CPD(T, vs))
    with pytest.raises(sdf.ModelError, match=r"the saved terms \['t'\] do not match the model's \['u'\]"):
        renamed.fit(resume=path if via == "file" else res)


def test_result_files_respect_the_umask(rng, tmp_path):
    res = quiet_fit(sdf.Model(t=sdf.CPD(planted(rng), variables())), max_iter=2)
    old = os.umask(0o027)
    try:
        res.save(tmp_path / "run.nc")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "run.nc").st_mode & 0o777 == 0o640


def _damaged_copy(tmp_path, rng, attr, value):
    path = tmp_path / "run.nc"
    quiet_fit(sdf.Model(t=sdf.CPD(planted(rng), variables())), max_iter=2).save(path)
    with xr.open_dataset(path, engine="scipy") as ds:
        ds = ds.load()
    ds.attrs[attr] = value
    ds.to_netcdf(tmp_path / "damaged.nc", engine="scipy")
    return tmp_path / "damaged.nc"


@pytest.mark.parametrize("marker", ["one", np.array([1, 2], dtype=np.int32), 1.5])
def test_malformed_format_marker_is_a_file_format_error(rng, tmp_path, marker):
    path = _damaged_copy(tmp_path, rng, "sdfusion_result", marker)
    with pytest.raises(FileFormatError, match="damaged 'sdfusion_result' attribute"):
        sdf.load_result(path)


def test_deeply_nested_json_is_a_file_format_error(rng, tmp_path):
    path = _damaged_copy(tmp_path, rng, "result", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(FileFormatError, match="damaged 'result' attribute"):
        sdf.load_result(path)


def test_numpy_scalars_are_accepted_as_options(rng):
    model = sdf.Model(t=sdf.CPD(planted(rng), variables()))
    res = quiet_fit(model, max_iter=np.int64(3), tol_fun=np.float32(0), cg_max_iter=np.int16(5),
                    max_time=np.float64(60), checkpoint_every=np.int32(2))
    assert res.iterations == 3
    res = quiet_fit(model, method="minf", max_iter=np.int64(3), memory=np.uint8(4),
                    tol_fun=np.float64(0), tol_grad=np.float16(0))
    assert res.iterations == 3
    options = sdf.NLSOptions(max_iter=np.int64(3), tol_x=np.float32(0.5))
    assert type(options.max_iter) is int and type(options.tol_x) is float


# ------------------------------------------------------------------ solvers
def test_lbfgs_from_a_zero_start_is_stationary_not_success(rng):
    T = planted(rng)
    res = quiet_fit(sdf.Model(t=sdf.CPD(T, variables(scale=0.0))), method="minf")
    assert res.stop is sdf.StopReason.STATIONARY and not res.success
    assert res.relerr["t"] == pytest.approx(1.0)
    gn = quiet_fit(sdf.Model(t=sdf.CPD(T, variables(scale=0.0))), method="nls")
    assert gn.stop is sdf.StopReason.STATIONARY


def test_a_near_zero_start_is_rescaled_to_the_data(rng):
    # 1e-9 of the data's scale: rescaled before the run, so both solvers fit.
    T = planted(rng)
    for method in ("minf", "nls"):
        ref = quiet_fit(sdf.Model(t=sdf.CPD(T, variables())), method=method, max_iter=500)
        res = quiet_fit(sdf.Model(t=sdf.CPD(T, variables(scale=1e-9))), method=method,
                        max_iter=500)
        assert res.success and res.relerr["t"] == pytest.approx(ref.relerr["t"], rel=1e-4)


def test_lbfgs_at_a_fitted_start_still_converges(rng):
    T = planted(rng, noise=0.0)
    first = quiet_fit(sdf.Model(t=sdf.CPD(T, variables())), method="minf", max_iter=500)
    again = [sdf.Variable(first.variables[f"x{k}"], name=f"x{k}") for k in range(3)]
    res = quiet_fit(sdf.Model(t=sdf.CPD(T, again)), method="minf")
    assert res.success and res.stop.converged


@pytest.mark.parametrize("method", ["nls", "minf"])
def test_ctrl_c_during_the_first_evaluation_returns_the_start(rng, method):
    T, vs = planted(rng), variables()
    transform = _Identity(interrupt_first=True)
    res = quiet_fit(sdf.Model(t=sdf.CPD(T, [transform(vs[0]), vs[1], vs[2]])), method=method)
    assert res.stop is sdf.StopReason.INTERRUPTED and res.iterations == 0
    for k, v in enumerate(vs):
        np.testing.assert_array_equal(res.variables[f"x{k}"], v.value)
    assert len(res.history.objective) == 1
    assert res.relerr["t"] == pytest.approx(recomputed_relerr(res, T), rel=1e-12)


@pytest.mark.parametrize("trust", ["dogleg", "lm"])
def test_time_budget_holds_inside_conjugate_gradients(rng, trust):
    # 2 ms per Gramian product: 400 CG products take 0.8 s; a 0.05 s budget allows ~25.
    shape = (30, 20, 10)
    T, vs = planted(rng, rank=5, shape=shape), variables(rank=5, shape=shape)
    slow = _Identity(sleep=0.002)
    model = sdf.Model(t=sdf.CPD(T, [slow(vs[0]), vs[1], vs[2]]))
    res = quiet_fit(model, max_time=0.05, max_iter=50, cg_max_iter=400, cg_tol=0.0,
                    trust=trust)
    assert res.stop is sdf.StopReason.MAX_TIME and res.iterations == 1
    assert slow.products < 100


def test_conjugate_gradients_stop_at_a_deadline():
    A = np.diag(np.arange(1.0, 51.0))
    x, Ax, its, broke = sdf.solvers.pcg(lambda v: A @ v, np.ones(50), lambda r: r, 0.0, 50,
                                        deadline=time.perf_counter() - 1.0)
    assert its == 1 and not broke
    np.testing.assert_allclose(Ax, A @ x)


# ------------------------------------------------------------------ numbers float64 cannot hold
def test_subnormal_weight_is_refused(rng):
    model = sdf.Model(t=sdf.CPD(planted(rng), variables(), weight=1e-310))
    with pytest.raises(sdf.ModelError, match=r"term 't': weight 1e-310 is below the smallest normal"):
        model.fit(max_iter=2)


@pytest.mark.parametrize("method", ["nls", "minf"])
def test_a_start_1e160_below_the_data_scale_is_rescaled_and_fits(rng, method):
    T = planted(rng)
    ref = quiet_fit(sdf.Model(t=sdf.CPD(T, variables())), method=method, max_iter=300)
    res = quiet_fit(sdf.Model(t=sdf.CPD(T, variables(scale=1e-160))), method=method,
                    max_iter=300)
    assert res.success and res.relerr["t"] == pytest.approx(ref.relerr["t"], rel=1e-4)
    assert recomputed_relerr(res, T) == pytest.approx(res.relerr["t"], rel=1e-6)


@pytest.mark.parametrize("key,value,expected", [
    ("exponent_z", float("inf"), "exponent_z = inf"),
    ("exponent_f", 1e300, "exponent_f = 1e\\+300"),
    ("exponent_z", 0.5, "exponent_z = 0.5"),
    ("f0", float("nan"), "f0 = nan"),
    ("radius", -1.0, "radius = -1.0"),
])
def test_damaged_solver_state_is_refused_at_resume(rng, tmp_path, key, value, expected):
    model = sdf.Model(t=sdf.CPD(planted(rng), variables()))
    res = quiet_fit(model, max_iter=2)
    res.state[key] = value
    res.save(tmp_path / "run.nc")
    for resume in (res, tmp_path / "run.nc"):
        with pytest.raises(sdf.ModelError, match=rf"fit\(resume=...\): damaged solver state: {expected}"):
            model.fit(resume=resume, max_iter=4)


# ------------------------------------------------------------------ deep and cyclic graphs
def test_hundreds_of_nested_transforms_work(rng):
    T, vs = planted(rng), variables()
    deep = vs[0]
    for _ in range(200):
        deep = tf.transpose(tf.transpose(deep))
    model = sdf.Model(t=sdf.CPD(T, [deep, vs[1], vs[2]]))
    res = quiet_fit(model, max_iter=200)
    plain = quiet_fit(sdf.Model(t=sdf.CPD(T, vs)), max_iter=200)
    assert res.stop.converged and res.relerr["t"] == pytest.approx(plain.relerr["t"], rel=1e-6)
    assert model.summary().count("transpose(") > 400
    assert deep.label().startswith("transpose(transpose(") and repr(deep)
    back = sdf.Model.from_dict(model.to_dict())
    assert len(back.named_expressions()) == len(model.named_expressions())


@pytest.mark.parametrize("step", ["reference", "transform"])
def test_dict_reference_chains_hundreds_deep_work(rng, step):
    n = 400
    factors = {}
    for k in reversed(range(1, n)):  # each factor defined before the one it references
        factors[f"F{k}"] = f"F{k - 1}" if step == "reference" else (f"F{k - 1}", tf.transpose,
                                                                      tf.transpose)
    factors["F0"] = "a"
    spec = {"variables": {"a": np.ones((4, 2)), "b": np.ones((5, 2)), "c": np.ones((3, 2))},
            "factors": factors,
            "factorizations": {"t": {"data": planted(rng), "cpd": [f"F{n - 1}", "b", "c"]}}}
    res = quiet_fit(sdf.Model.from_dict(spec), max_iter=2)
    assert res.iterations == 2


def test_dict_reference_cycle_names_its_factors():
    spec = {"variables": {"a": np.ones((4, 2))},
            "factors": {"A": ("B", tf.nonneg), "B": ("C", tf.nonneg), "C": ("A", tf.nonneg)},
            "factorizations": {"t": {"data": np.ones((4, 4)), "cpd": ["A", "A"]}}}
    with pytest.raises(sdf.ModelError, match=r"factors\['A'\]: cycle of references A -> B -> C -> A"):
        sdf.Model.from_dict(spec)


def test_spec_nested_too_deeply_is_a_model_error():
    item = "a"
    for _ in range(5000):
        item = (item,)
    spec = {"variables": {"a": np.ones((4, 2))}, "factors": {"A": item},
            "factorizations": {"t": {"data": np.ones((4, 4)), "cpd": ["A", "A"]}}}
    with pytest.raises(sdf.ModelError, match="model spec: nested too deeply"):
        sdf.Model.from_dict(spec)


def test_a_cycle_made_by_reassigning_inputs_is_refused():
    a = sdf.Variable(np.ones((4, 2)), name="a")
    x = tf.nonneg(a, name="x")
    y = tf.nonneg(x)
    x.inputs = (y,)
    with pytest.raises(sdf.ModelError, match=r"expression <nonneg expression (\d+)>: cycle of inputs <nonneg expression \1> -> x -> <nonneg expression \1>;"):
        sdf.Model(t=sdf.CPD(np.ones((4, 4)), [y, a]))
    p = tf.nonneg(a)
    q = tf.nonneg(p)
    p.inputs = (q,)
    with pytest.raises(sdf.ModelError, match="cycle of inputs"):
        q.label()


# ------------------------------------------------------------------ memory
def test_rank_beyond_memory_is_refused_before_anything_is_allocated(rng, monkeypatch):
    monkeypatch.setattr(sdf.fit, "_available_memory", lambda: 16 * 10**9)
    model = sdf.Model(t=sdf.CPD(planted(rng), variables(rank=20_000)))
    with pytest.raises(sdf.ModelError, match=r"term 't': rank 20000 needs about 57\.6 GB for 18 "
                       r"matrices of size 20000 x 20000, more than the 16 GB"):
        model.fit(max_iter=2)
    with pytest.raises(sdf.ModelError, match=r"needs about 19\.2 GB .*; lower the rank$"):
        model.fit(method="minf", max_iter=2)


def test_memory_check_lets_ordinary_models_through(rng, monkeypatch):
    monkeypatch.setattr(sdf.fit, "_available_memory", lambda: 10**8)
    vs = variables()
    res = quiet_fit(sdf.Model(t=sdf.CPD(planted(rng), vs), r=sdf.L2(vs[0], weight=1e-3)),
                    max_iter=2)
    assert res.iterations == 2
    monkeypatch.setattr(sdf.fit, "_available_memory", lambda: None)  # unknown: no check
    assert quiet_fit(sdf.Model(t=sdf.CPD(planted(rng), variables())), max_iter=2).iterations == 2


# ------------------------------------------------------------------ errors that name their place
def test_variable_from_text_names_the_variable():
    with pytest.raises(sdf.ModelError, match=r"^Variable: initial value: expected a numeric array, got str 'x'"):
        sdf.Variable("x")
    with pytest.raises(sdf.ModelError, match=r"^variable 'v': initial value: expected a numeric"):
        sdf.Variable([[1.0], ["a", 2]], name="v")


def test_regularizer_arguments_name_the_term():
    with pytest.raises(sdf.ModelError, match=r"^L1: factors must be an sdf expression, an array or a list of them, got int 5"):
        sdf.L1(5)
    a = sdf.Variable(np.ones((3, 2)), name="a")
    with pytest.raises(sdf.ModelError, match=r"^L2, target 0: expected a numeric array \(or None for zero\), got str 'zero'"):
        sdf.L2(a, target="zero")


def test_callback_returning_an_array_names_the_callback(rng):
    model = sdf.Model(t=sdf.CPD(planted(rng), variables()))

    def progress(info):
        return info.z

    with pytest.raises(sdf.ModelError, match=r"fit: callback 'progress' returned ndarray of shape \(24,\)"):
        model.fit(callback=progress, max_iter=3)
    stops = quiet_fit(model, callback=lambda info: np.bool_(info.iteration == 2), max_iter=9)
    assert stops.stop is sdf.StopReason.CALLBACK and stops.iterations == 2


def test_non_string_names_are_refused_where_given():
    with pytest.raises(sdf.ModelError, match=r"^Variable: name must be a string or None, got 5 \(int\)"):
        sdf.Variable(np.ones((3, 2)), name=5)
    a = sdf.Variable(np.ones((3, 2)), name="a")
    with pytest.raises(sdf.ModelError, match=r"^nonneg expression: name must be a string or None, got \('b',\)"):
        tf.nonneg(a, name=("b",))

