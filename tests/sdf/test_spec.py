"""The Tensorlab-style dict language: Model.from_dict and Model.to_dict."""

import numpy as np
import pytest

import sdf
from sdf import transforms as tf


@pytest.fixture
def data(rng):
    A, B, C, D = (rng.random((n, 2)) for n in (6, 5, 4, 3))
    T = np.einsum("ir,jr,kr->ijk", A, B, C)
    Y = A @ D.T
    init = {k: rng.standard_normal((n, 2)) for k, n in zip("abcd", (6, 5, 4, 3))}
    return T, Y, init


def test_dict_and_objects_give_identical_fits(data):
    T, Y, init = data
    t = np.linspace(0, 1, 4)
    spec = {
        "variables": {**init, "c": np.full((3, 2), 0.1)},
        "factors": {"A": "a", "B": ("b", tf.nonneg), "C": ("c", tf.Poly(points=t))},
        "factorizations": {
            "eem": {"data": T, "cpd": ["A", "B", "C"]},
            "conc": {"data": Y, "cpd": ["A", "d"], "relweight": 0.5},
            "ridge": {"regL2": ["B"], "weight": 1e-4},
        },
    }
    from_dict = sdf.Model.from_dict(spec).fit(max_iter=40)
    a, b, d = (sdf.Variable(init[k], name=k) for k in "abd")
    c = sdf.Variable(np.full((3, 2), 0.1), name="c")
    B = tf.nonneg(b)
    objects = sdf.Model(
        eem=sdf.CPD(T, [a, B, tf.poly(c, points=t)]),
        conc=sdf.CPD(Y, [a, d], relweight=0.5),
        ridge=sdf.L2(B, weight=1e-4),
    ).fit(max_iter=40)
    for k in "abcd":
        np.testing.assert_array_equal(from_dict.variables[k], objects.variables[k])
    assert from_dict.iterations == objects.iterations


def test_round_trip_through_to_dict(data):
    T, Y, init = data
    a, b, c, d = (sdf.Variable(init[k], name=k) for k in "abcd")
    model = sdf.Model(
        eem=sdf.CPD(T, [a, tf.nonneg(b), c], weight=2.0),
        conc=sdf.CPD(Y, [a, tf.matvec(np.eye(3), d)]),
        l1=sdf.L1(d, weight=0.1, smoothing=0.01),
        l2=sdf.L2([c], weight=0.2, target=np.ones((4, 2))),
    )
    spec = model.to_dict()
    assert spec["factorizations"]["eem"]["cpd"][0] == "a"
    again = sdf.Model.from_dict(spec)
    r1, r2 = model.fit(max_iter=10), again.fit(max_iter=10)
    for k in "abcd":
        np.testing.assert_array_equal(r1.variables[k], r2.variables[k])
    assert again.to_dict()["factorizations"].keys() == spec["factorizations"].keys()


def test_list_references_by_index_and_implicit_factors(data):
    T, Y, init = data
    spec = {"variables": [init["a"], init["b"], init["c"]],
            "factorizations": [{"data": T, "cpd": [0, 1, 2]}]}
    model = sdf.Model.from_dict(spec)
    assert list(model.terms) == ["0"]
    assert model.variable_names == ["0", "1", "2"]


def test_transform_entry_applies_one_transform_to_many_variables(data):
    T, Y, init = data
    spec = {"variables": {k: init[k] for k in "abc"},
            "transform": [(["a", "b"], tf.nonneg)],
            "factorizations": {"t": {"data": T, "cpd": ["a", "b", "c"]}}}
    model = sdf.Model.from_dict(spec)
    labels = [e.label() for e in model.terms["t"].inputs]
    assert labels == ["a", "b", "c"]
    assert [type(e).__name__ for e in model.terms["t"].inputs] == ["Node", "Node", "Variable"]


def test_sub_factors_are_stacked(data):
    T, Y, init = data
    spec = {"variables": {"a1": init["a"][:2], "a2": init["a"][2:], "b": init["b"],
                          "c1": init["c"][:, :1], "c2": init["c"][:, 1:]},
            "factors": {"A": ["a1", ("a2", tf.nonneg)], "C": [["c1", "c2"]]},
            "factorizations": {"t": {"data": T, "cpd": ["A", "b", "C"]}}}
    model = sdf.Model.from_dict(spec)
    assert [e.shape for e in model.terms["t"].inputs] == [(6, 2), (5, 2), (4, 2)]
    model.check()


def test_unknown_factor_names_the_dict_path(data):
    T, Y, init = data
    spec = {"variables": {k: init[k] for k in "abc"},
            "factors": {"A": "a", "B": "b", "C": "c"},
            "factorizations": {"eem": {"data": T, "cpd": ["A", "Bx", "C"]}}}
    with pytest.raises(sdf.ModelError,
                       match=r"factorizations\['eem'\]\['cpd'\]\[1\]: unknown factor 'Bx' "
                             r"\(known: A, B, C; variables: a, b, c\)"):
        sdf.Model.from_dict(spec)


def test_cycles_of_references_are_refused(data):
    T, Y, init = data
    spec = {"variables": {"a": init["a"]},
            "factors": {"P": ("Q", tf.nonneg), "Q": ("P", tf.nonneg)},
            "factorizations": {"t": {"data": Y, "cpd": ["P", "a"]}}}
    with pytest.raises(sdf.ModelError, match=r"cycle of references P -> Q -> P"):
        sdf.Model.from_dict(spec)


@pytest.mark.parametrize("spec,match", [
    ({"variables": {}, "factorizations": {}, "extra": 1}, r"unknown key\(s\) 'extra'"),
    ({"factorizations": {"t": {"cpd": ["a"]}}}, r"factorizations\['t'\]: missing 'data'"),
    ({"factorizations": {"t": {"data": np.ones(3)}}}, r"expected exactly one of cpd"),
    ({"factorizations": {"t": {"data": np.ones(3), "cpd": ["a"], "wieght": 1}}},
     r"factorizations\['t'\]: unknown key\(s\) 'wieght'"),
    ({"variables": {"a": "x"}}, r"variables\['a'\]: expected a numeric array"),
    ({"variables": {"a": np.ones((2, 1))}, "factors": {"A": ("a", 3)},
      "factorizations": {"t": {"data": np.ones((2, 2)), "cpd": ["A", "A"]}}},
     r"factors\['A'\]\[1\]: expected a transform"),
    ({"variables": {"a": np.ones((2, 1))},
      "factorizations": {"t": {"data": np.ones((2, 2)), "cpd": "a"}}},
     r"factorizations\['t'\]\['cpd'\]: expected a list of factor references"),
    ({"variables": {"a": np.ones((2, 1))},
      "factorizations": {"t": {"data": np.ones((2, 2)), "cpd": ["a", "a"], "weight": -1}}},
     r"factorizations\['t'\]: CPD: weight must be a finite number >= 0"),
    ("not a dict", r"model spec: expected a dict"),
])
def test_malformed_specs(spec, match):
    with pytest.raises(sdf.ModelError, match=match):
        sdf.Model.from_dict(spec)


def test_lmlra_btd_ll1_round_trip(rng):
    T = rng.standard_normal((4, 5, 3))
    U = [sdf.Variable(rng.standard_normal((n, 2)), name=f"u{k}") for k, n in enumerate(T.shape)]
    S = sdf.Variable(rng.standard_normal((2, 2, 2)), name="S")
    V = [sdf.Variable(rng.standard_normal((n, 2)), name=f"v{k}") for k, n in enumerate(T.shape)]
    S2 = sdf.Variable(rng.standard_normal((2, 2, 2)), name="S2")
    A = sdf.Variable(rng.standard_normal((4, 3)), name="A")
    B = sdf.Variable(rng.standard_normal((5, 3)), name="B")
    C = sdf.Variable(rng.standard_normal((3, 2)), name="C")
    model = sdf.Model(
        tucker=sdf.LMLRA(T, U, S),
        blocks=sdf.BTD(T, [(*U, S), (*V, S2)], relweight=0.5),
        ll1=sdf.LL1(T, [A, B, C], [2, 1], weight=0.1),
    )
    spec = model.to_dict()
    assert spec["factorizations"]["tucker"]["lmlra"] == ["u0", "u1", "u2", "S"]
    assert spec["factorizations"]["blocks"]["btd"][1] == ["v0", "v1", "v2", "S2"]
    assert spec["factorizations"]["ll1"]["L"] == [2, 1]
    again = sdf.Model.from_dict(spec)
    r1, r2 = model.fit(max_iter=5), again.fit(max_iter=5)
    for name in r1.variables:
        np.testing.assert_array_equal(r1.variables[name], r2.variables[name])


def test_complex_variables_round_trip(rng):
    """Complex initial values stay complex through the dict (they were cast to float,
    keeping the real part with a ComplexWarning: the round-tripped TT fit of a complex
    train ended at relative error 0.71 instead of 3e-14)."""
    ranks, shape = (1, 2, 3, 1), (4, 5, 6)
    cores = [rng.standard_normal((ranks[k], n, ranks[k + 1]))
             + 1j * rng.standard_normal((ranks[k], n, ranks[k + 1]))
             for k, n in enumerate(shape)]
    T = np.einsum("aib,bjc,ckd->ijk", *cores)
    g = [sdf.Variable(G + 0.05 * rng.standard_normal(G.shape), name=f"g{k}")
         for k, G in enumerate(cores)]
    model = sdf.Model(t=sdf.TT(T, g))
    again = sdf.Model.from_dict(model.to_dict())
    for v, w in zip(model.variables, again.variables):
        assert w.is_complex
        np.testing.assert_array_equal(v.value, w.value)
    r1, r2 = model.fit(max_iter=100), again.fit(max_iter=100)
    for name in r1.variables:
        np.testing.assert_array_equal(r1.variables[name], r2.variables[name])
    assert r2.relerr["t"] < 1e-10
