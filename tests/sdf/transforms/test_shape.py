"""Shape constraints: the values lie on the constraint set, preimages round-trip, errors."""

import numpy as np
import pytest

import sdf
from sdf import transforms as tf


def test_simplex_columns_are_probability_vectors(rng):
    x = tf.Simplex().value(rng.standard_normal((6, 3)))
    assert np.all(x >= 0)
    np.testing.assert_allclose(x.sum(axis=0), 1.0)


@pytest.mark.parametrize("direction,nonneg", [("increasing", False), ("decreasing", False),
                                              ("increasing", True), ("decreasing", True)])
def test_monotone_columns_are_monotone(rng, direction, nonneg):
    x = tf.Monotone(direction, nonneg).value(rng.standard_normal((7, 3)))
    steps = np.diff(x, axis=0)
    assert np.all(steps >= 0) if direction == "increasing" else np.all(steps <= 0)
    if nonneg:
        assert np.all(x >= 0)


def test_unimodal_columns_rise_then_fall_around_their_peaks(rng):
    peaks = [0, 4, 8]
    x = tf.Unimodal(peaks).value(rng.standard_normal((9, 3)))
    assert np.all(x >= 0)
    for r, m in enumerate(peaks):
        assert np.all(np.diff(x[: m + 1, r]) >= 0) and np.all(np.diff(x[m:, r]) <= 0)
        assert np.argmax(x[:, r]) == m


@pytest.mark.parametrize("transform", [tf.Simplex(), tf.Monotone(), tf.Monotone("decreasing"),
                                       tf.Monotone(nonneg=True),
                                       tf.Monotone("decreasing", nonneg=True),
                                       tf.Unimodal([2, 0])], ids=repr)
def test_preimage_reproduces_values_on_the_constraint_set(rng, transform):
    x = transform.value(rng.standard_normal((5, 2)))
    np.testing.assert_allclose(transform.value(transform.preimage(x)), x, rtol=1e-10, atol=1e-12)


def test_unimodal_from_profiles_finds_the_peaks():
    t = np.linspace(0, 1, 30)[:, None]
    profiles = np.exp(-((t - np.array([0.2, 0.7])) / 0.1) ** 2)
    transform, z = tf.Unimodal.from_profiles(profiles)
    assert transform.peaks == (6, 20)
    np.testing.assert_allclose(transform.value(z), profiles, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("make,message", [
    (lambda: tf.Monotone("up"), r"monotone: direction must be 'increasing' or 'decreasing'"),
    (lambda: tf.Monotone(nonneg=1), r"monotone: nonneg must be True or False"),
    (lambda: tf.Unimodal(1.5), r"unimodal: peaks must be an integer or a sequence"),
    (lambda: tf.Unimodal([-1]), r"unimodal: peaks must be row indices >= 0"),
    (lambda: tf.unimodal(sdf.Variable(np.ones((4, 2))), peaks=[1]),
     r"unimodal: 1 peak row\(s\) given for 2 column\(s\)"),
    (lambda: tf.unimodal(sdf.Variable(np.ones((4, 1))), peaks=[4]),
     r"unimodal: peak row 4 is outside the 4 rows"),
    (lambda: tf.simplex(sdf.Variable(np.ones((2, 2, 2)))),
     r"simplex: input must be a vector or a matrix"),
])
def test_bad_parameters_are_named(make, message):
    with pytest.raises(sdf.TransformError, match=message):
        make()


def test_shape_transforms_round_trip_through_the_dict_language(rng):
    T = rng.random((6, 5, 4))
    a = sdf.Variable(rng.standard_normal((6, 2)), name="a")
    b = sdf.Variable(rng.standard_normal((5, 2)), name="b")
    c = sdf.Variable(rng.standard_normal((4, 2)), name="c")
    spec = {"variables": {"a": a.value, "b": b.value, "c": c.value},
            "factors": {"A": ("a", tf.Unimodal([1, 3])), "B": ("b", tf.Simplex()),
                        "C": ("c", tf.Monotone("decreasing", nonneg=True))},
            "factorizations": {"t": {"data": T, "cpd": ["A", "B", "C"]},
                               "rough": {"regSmooth": ["A"], "weight": 0.1}}}
    model = sdf.Model.from_dict(spec)
    again = sdf.Model.from_dict(model.to_dict())
    z = {"a": a.value, "b": b.value, "c": c.value}
    for name in ("t", "rough"):
        for e1, e2 in zip(model.terms[name].inputs, again.terms[name].inputs):
            np.testing.assert_array_equal(model.evaluate(e1, z), again.evaluate(e2, z))
    assert again.terms["rough"].kind == "Smooth"


def test_smooth_gradient_and_gramian_match_finite_differences(rng):
    x = rng.standard_normal((7, 2))
    term = sdf.Smooth(sdf.Variable(x), order=2)
    state = term.prepare([x])
    D = np.diff(np.eye(7), n=2, axis=0)
    np.testing.assert_allclose(state.fval, 0.5 * np.sum((D @ x) ** 2))
    np.testing.assert_allclose(state.gradient()[0], D.T @ D @ x, atol=1e-12)
    v = rng.standard_normal((7, 2))
    np.testing.assert_allclose(state.gn_product([v])[0], D.T @ D @ v, atol=1e-12)
    h = 1e-6
    numeric = (term.prepare([x + h * v]).fval - term.prepare([x - h * v]).fval) / (2 * h)
    assert numeric == pytest.approx(np.vdot(state.gradient()[0], v), rel=1e-6)
    np.testing.assert_allclose(np.diagonal(state.blocks()[0], axis1=1, axis2=2)[:, 0],
                               np.diag(D.T @ D))


def test_smooth_penalty_gives_the_penalised_least_squares_profile(rng):
    t = np.linspace(0, 1, 40)
    clean = np.sin(2 * np.pi * t)[:, None]
    noisy = clean + 0.2 * rng.standard_normal(clean.shape)
    a = sdf.Variable(np.zeros((40, 1)), name="a")
    res = sdf.Model(d=sdf.CPD(noisy, [a, np.ones((1, 1))], weight=1.0),
                    rough=sdf.Smooth(a, weight=20.0)).fit(tol_fun=1e-15)
    D = np.diff(np.eye(40), n=2, axis=0)
    expected = np.linalg.solve(np.eye(40) + 20.0 * D.T @ D, noisy)  # (I + w D'D) a = y
    np.testing.assert_allclose(res["a"], expected, atol=1e-6)
    assert np.linalg.norm(res["a"] - clean) < 0.6 * np.linalg.norm(noisy - clean)


def test_smooth_needs_more_rows_than_its_order():
    with pytest.raises(sdf.ModelError, match=r"expected a vector or matrix with more than 2 rows"):
        sdf.Model(d=sdf.CPD(np.ones((2, 2)), [sdf.Variable(np.ones((2, 1))), np.ones((2, 1))]),
                  r=sdf.Smooth(sdf.Variable(np.ones((2, 1))))).check()
    with pytest.raises(sdf.ModelError, match=r"Smooth: order must be an integer >= 1"):
        sdf.Smooth(sdf.Variable(np.ones((4, 1))), order=0)
