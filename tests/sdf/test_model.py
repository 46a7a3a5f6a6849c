"""The model language: construction, checking, summary, options, results and stopping."""

import numpy as np
import pytest

import sdf
from sdf import transforms as tf


@pytest.fixture
def cpd3(rng):
    A, B, C = (rng.standard_normal((n, 2)) for n in (6, 5, 4))
    T = np.einsum("ir,jr,kr->ijk", A, B, C)
    a, b, c = (sdf.Variable.random((n, 2), seed=s, name=k)
               for s, (k, n) in enumerate(zip("abc", (6, 5, 4))))
    return T, (a, b, c)


def test_variable_copies_its_initial_value():
    x = np.ones((3, 2))
    v = sdf.Variable(x, name="v")
    x[0, 0] = 5.0
    assert v.value[0, 0] == 1.0


def test_variable_random_is_reproducible():
    a = sdf.Variable.random((4, 3), seed=7)
    b = sdf.Variable.random((4, 3), seed=np.random.default_rng(7))
    np.testing.assert_array_equal(a.value, b.value)


def test_wrong_row_count_names_term_factor_and_sizes(cpd3):
    T, (a, b, c) = cpd3
    bad = sdf.Variable.random((7, 2), seed=0, name="B")
    with pytest.raises(sdf.ModelError,
                       match=r"term 'eem', factor 1 \('B'\): expected 5 rows to match mode 1 of the data, got 7"):
        sdf.Model(eem=sdf.CPD(T, [a, bad, c])).check()


def test_wrong_number_of_factors(cpd3):
    T, (a, b, c) = cpd3
    with pytest.raises(sdf.ModelError, match=r"term 't': 2 factors given but the data has 3 modes"):
        sdf.Model(t=sdf.CPD(T, [a, b])).check()


def test_mismatched_ranks(cpd3):
    T, (a, b, c) = cpd3
    c3 = sdf.Variable.random((4, 3), seed=0, name="c3")
    with pytest.raises(sdf.ModelError, match=r"term 't': factors have different numbers of columns \[2, 2, 3\]"):
        sdf.Model(t=sdf.CPD(T, [a, b, c3])).check()


def test_factor_must_be_a_matrix(cpd3):
    T, (a, b, c) = cpd3
    v = sdf.Variable.random(4, seed=0, name="v")
    with pytest.raises(sdf.ModelError, match=r"factor 2 \('v'\): expected a matrix"):
        sdf.Model(t=sdf.CPD(T, [a, b, v])).check()


def test_non_finite_initial_value_names_variable_and_entry(cpd3):
    T, (a, b, c) = cpd3
    x = c.value.copy()
    x[1, 0] = np.nan
    bad = sdf.Variable(x, name="cbad")
    with pytest.raises(sdf.ModelError, match=r"variable 'cbad': initial value has a non-finite entry at \(1, 0\)"):
        sdf.Model(t=sdf.CPD(T, [a, b, bad])).fit()


def test_all_missing_data_is_refused(cpd3):
    T, (a, b, c) = cpd3
    with pytest.raises(sdf.DataError, match="missing"):
        sdf.CPD(np.full(T.shape, np.nan), [a, b, c])


def test_empty_model_and_wrong_terms():
    with pytest.raises(sdf.ModelError, match="no terms"):
        sdf.Model()
    with pytest.raises(sdf.ModelError, match=r"term 'x': expected an sdf term"):
        sdf.Model(x=np.ones(3))


def test_two_variables_with_one_name(cpd3):
    T, (a, b, c) = cpd3
    c2 = sdf.Variable.random((4, 2), seed=3, name="a")
    with pytest.raises(sdf.ModelError, match="variable 'a': two different variables share this name"):
        sdf.Model(t=sdf.CPD(T, [a, b, c2])).check()


def test_weight_and_relweight_are_exclusive(cpd3):
    T, (a, b, c) = cpd3
    with pytest.raises(sdf.ModelError, match="weight or relweight, not both"):
        sdf.CPD(T, [a, b, c], weight=1.0, relweight=1.0)
    with pytest.raises(sdf.ModelError, match="weight must be a finite number >= 0"):
        sdf.CPD(T, [a, b, c], weight=-1.0)


def test_relweights_follow_the_mean_squared_error_convention(cpd3, rng):
    T, (a, b, c) = cpd3
    Y = rng.standard_normal((6, 3))
    d = sdf.Variable.random((3, 2), seed=5, name="d")
    model = sdf.Model(t=sdf.CPD(T, [a, b, c], relweight=3.0),
                      y=sdf.CPD(Y, [a, d]), r=sdf.L2(d, weight=0.5))
    w = model.weights
    assert w["t"] == pytest.approx(2 * 3.0 / (4.0 * T.size))
    assert w["y"] == pytest.approx(2 * 1.0 / (4.0 * Y.size))
    assert w["r"] == 0.5


def test_unknown_option_fails_loudly(cpd3):
    T, (a, b, c) = cpd3
    model = sdf.Model(t=sdf.CPD(T, [a, b, c]))
    with pytest.raises(sdf.ModelError, match=r"unknown option\(s\) 'maxiter'.*known: "):
        model.fit(maxiter=3)
    with pytest.raises(sdf.ModelError, match="NLSOptions.max_iter must be an integer >= 1"):
        model.fit(max_iter=0)
    with pytest.raises(sdf.ModelError, match="method must be one of"):
        model.fit(method="als")


def test_summary_shows_variables_transforms_and_terms(cpd3):
    T, (a, b, c) = cpd3
    model = sdf.Model(t=sdf.CPD(T, [a, tf.nonneg(b), c]))
    text = model.summary()
    assert "Model: 1 term, 3 variables, 30 unknowns" in text
    assert "nonneg(b)" in text and "(5, 2)" in text
    assert "'t': CPD of dense data (6, 5, 4), rank 2" in text


def test_fit_returns_result_with_values_errors_history(cpd3):
    T, (a, b, c) = cpd3
    model = sdf.Model(t=sdf.CPD(T, [a, b, c]))
    res = model.fit(max_iter=100)
    assert isinstance(res, sdf.Result)
    assert res.success and res.stop.converged
    assert res.relerr["t"] < 1e-6
    assert res.abserr["t"] == pytest.approx(res.relerr["t"] * np.linalg.norm(T))
    assert len(res.history.objective) == res.iterations + 1
    assert set(res.variables) == {"a", "b", "c"}
    np.testing.assert_array_equal(res[a], res.variables["a"])
    np.testing.assert_array_equal(res["a"], res.variables["a"])
    assert len(res.factors["t"]) == 3
    # The model's own variables keep their initial values.
    assert not np.allclose(a.value, res.variables["a"])


def test_inputs_are_not_modified(cpd3):
    T, (a, b, c) = cpd3
    T = T.copy()
    T.setflags(write=False)
    before = [v.value.copy() for v in (a, b, c)]
    sdf.Model(t=sdf.CPD(T, [a, b, c])).fit(max_iter=5)
    for v, x in zip((a, b, c), before):
        np.testing.assert_array_equal(v.value, x)


def test_callback_stops_the_run(cpd3):
    T, (a, b, c) = cpd3
    seen = []

    def cb(info):
        seen.append(info.iteration)
        return info.iteration >= 2

    res = sdf.Model(t=sdf.CPD(T, [a, b, c])).fit(callback=cb)
    assert res.stop is sdf.StopReason.CALLBACK
    assert seen == [0, 1, 2] and res.iterations == 2


def test_keyboard_interrupt_returns_best_so_far(cpd3):
    T, (a, b, c) = cpd3

    def cb(info):
        if info.iteration == 3:
            raise KeyboardInterrupt

    res = sdf.Model(t=sdf.CPD(T, [a, b, c])).fit(callback=cb)
    assert res.stop is sdf.StopReason.INTERRUPTED
    assert res.objective == min(res.history.objective)


def test_display_prints_iteration_table(cpd3, capsys):
    T, (a, b, c) = cpd3
    sdf.Model(t=sdf.CPD(T, [a, b, c])).fit(max_iter=4, display=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["iter", "objective", "rel.", "change", "step", "radius", "CG",
                              "time", "[s]"]
    assert [line.split()[0] for line in out[1:]] == ["0", "2", "4"]


@pytest.mark.parametrize("method,extra", [("nls", {"trust": "lm"}), ("minf", {})])
def test_other_solvers_fit_exact_data(cpd3, method, extra):
    T, (a, b, c) = cpd3
    res = sdf.Model(t=sdf.CPD(T, [a, b, c])).fit(method=method, max_iter=500, **extra)
    assert res.relerr["t"] < 1e-5


def test_minf_respects_bounds(cpd3):
    T, (a, b, c) = cpd3
    res = sdf.Model(t=sdf.CPD(np.abs(T), [a, b, c])).fit(
        method="minf", bounds={"a": (0, None), "b": (0, 1.5)}, max_iter=50)
    assert res.variables["a"].min() >= 0
    assert 0 <= res.variables["b"].min() and res.variables["b"].max() <= 1.5
    with pytest.raises(sdf.ModelError, match=r"bounds: unknown variable\(s\) 'zz'"):
        sdf.Model(t=sdf.CPD(T, [a, b, c])).fit(method="minf", bounds={"zz": (0, 1)})


def test_max_time_stops(cpd3):
    T, (a, b, c) = cpd3
    res = sdf.Model(t=sdf.CPD(T, [a, b, c])).fit(max_time=1e-9, tol_fun=0, tol_x=0)
    assert res.stop is sdf.StopReason.MAX_TIME and res.iterations == 1


def test_zero_data_stops_at_once_with_a_reason(cpd3):
    T, (a, b, c) = cpd3
    res = sdf.Model(t=sdf.CPD(np.zeros(T.shape), [a, b, c])).fit(max_iter=50)
    assert np.all(np.isfinite(res.variables["a"]))
    assert res.objective < 1e-20 * max(res.history.objective[0], 1.0) or res.stop.converged


@pytest.mark.parametrize("term", [sdf.L1, sdf.L0])
@pytest.mark.parametrize("smoothing", [0.0, -1.0, float("nan"), "wide"])
def test_regularizer_smoothing_must_be_positive(term, smoothing):
    a = sdf.Variable.random((3, 2), seed=0, name="a")
    with pytest.raises(sdf.ModelError, match=rf"{term.__name__}: smoothing must be > 0"):
        term(a, weight=0.1, smoothing=smoothing)
