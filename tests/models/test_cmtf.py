"""Coupled matrix-tensor factorization on planted problems."""

from __future__ import annotations

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.models import cmtf, fms


@pytest.fixture
def coupled(rng):
    A, B, C, D = (rng.standard_normal((n, 2)) for n in (9, 8, 7, 6))
    return (A, B, C, D), algebra.cpd_to_tensor([A, B, C]), A @ D.T


def test_tensor_and_matrix_share_a_mode(coupled):
    (A, B, C, D), X, Y = coupled
    dec = cmtf({"X": X, "Y": Y}, 2, modes={"X": ["i", "j", "k"], "Y": ["i", "l"]}, seed=0)
    assert dec.kind == "CMTF" and dec.labels == ["i", "j", "k", "l"]
    assert dec.relerr < 1e-6 and set(dec.relerrs) == {"X", "Y"}
    assert fms(dec.factors[:3], [A, B, C]) > 0.9999
    assert fms([dec.factors[0], dec.factors[3]], [A, D]) > 0.9999


def test_missing_entries_in_both(coupled, rng):
    (A, B, C, D), X, Y = coupled
    X, Y = X.copy(), Y.copy()
    X[rng.random(X.shape) < 0.3] = np.nan
    Y[rng.random(Y.shape) < 0.3] = np.nan
    dec = cmtf({"X": X, "Y": Y}, 2, modes={"X": "ijk", "Y": "il"}, seed=0)
    assert dec.result.model.terms["X"].data.kind == "incomplete"
    assert fms(dec.factors[:3], [A, B, C]) > 0.999


def test_coupling_in_a_non_leading_mode(rng):
    A, B, C, E = (rng.standard_normal((n, 2)) for n in (7, 6, 5, 4))
    X = algebra.cpd_to_tensor([A, B, C])
    Z = algebra.cpd_to_tensor([E, C, B])  # shares two modes, in another order
    dec = cmtf({"X": X, "Z": Z}, 2, modes={"X": ["a", "b", "c"], "Z": ["e", "c", "b"]}, seed=0)
    assert dec.relerr < 1e-6
    assert fms([dec.factors[dec.labels.index(k)] for k in "abce"], [A, B, C, E]) > 0.999


def test_matrices_only_random_start(rng):
    A, B, C = (rng.standard_normal((n, 2)) for n in (8, 7, 6))
    dec = cmtf({"Y1": A @ B.T, "Y2": A @ C.T}, 2, modes={"Y1": "ab", "Y2": "ac"}, seed=0)
    assert dec.relerr < 1e-6


def test_xarray_dims_couple(coupled):
    xr = pytest.importorskip("xarray")
    (A, B, C, D), X, Y = coupled
    dec = cmtf({"X": xr.DataArray(X, dims=("s", "ex", "em")),
                "Y": xr.DataArray(Y, dims=("s", "conc"))}, 2, seed=0)
    assert dec.labels == ["s", "ex", "em", "conc"]


def test_relweights_change_the_balance(coupled, rng):
    (A, B, C, D), X, Y = coupled
    Xn = X + 0.1 * rng.standard_normal(X.shape)
    modes = {"X": "ijk", "Y": "il"}
    light = cmtf({"X": Xn, "Y": Y}, 2, modes=modes, relweights={"X": 0.01}, seed=0)
    heavy = cmtf({"X": Xn, "Y": Y}, 2, modes=modes, relweights={"X": 100.0}, seed=0)
    assert light.relerrs["Y"] < heavy.relerrs["Y"]
    assert heavy.relerrs["X"] <= light.relerrs["X"]


def test_relweights_are_the_engines_relweight(coupled):
    _, X, Y = coupled
    dec = cmtf({"X": X, "Y": Y}, 2, modes={"X": "ijk", "Y": "il"}, relweights={"X": 3.0},
               seed=0, max_iter=2)
    terms = dec.result.model.terms
    assert (terms["X"].relweight, terms["Y"].relweight) == (3.0, 1.0)


def test_weights_is_a_deprecated_alias_of_relweights(coupled):
    _, X, Y = coupled
    args = ({"X": X, "Y": Y}, 2)
    kwargs = {"modes": {"X": "ijk", "Y": "il"}, "seed": 0, "max_iter": 5}
    with pytest.warns(DeprecationWarning, match=r"cmtf: weights= is deprecated, use relweights="):
        old = cmtf(*args, weights={"X": 5.0}, **kwargs)
    new = cmtf(*args, relweights={"X": 5.0}, **kwargs)
    for a, b in zip(old.factors, new.factors):
        np.testing.assert_array_equal(a, b)


def test_weights_and_relweights_together_are_refused(coupled):
    _, X, Y = coupled
    with pytest.raises(sdf.ModelError, match="weights: deprecated name of relweights"):
        cmtf({"X": X, "Y": Y}, 2, modes={"X": "ijk", "Y": "il"}, relweights={"X": 1.0},
             weights={"X": 1.0})


def test_given_factors_by_label(coupled):
    (A, B, C, D), X, Y = coupled
    dec = cmtf({"X": X, "Y": Y}, 2, modes={"X": "ijk", "Y": "il"}, init={"i": A, "l": D})
    assert dec.relerr < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"modes": None}, "modes: no mode labels for data set 'X'"),
     ({"modes": {"X": "ij", "Y": "il"}}, r"modes\['X'\]: expected 3 labels, got 2"),
     ({"modes": {"X": "iji", "Y": "il"}}, r"modes\['X'\]: labels repeat"),
     ({"modes": {"X": "ijk", "Y": "jl"}}, "label 'j' has 8 entries in data set 'X' but 9"),
     ({"modes": {"X": "ijk", "Y": "il", "Z": "a"}}, "modes: labels given for unknown"),
     ({"modes": {"X": "ijk", "Y": "il"}, "relweights": {"W": 1.0}},
      "relweights: unknown data sets"),
     ({"modes": {"X": "ijk", "Y": "il"}, "init": {"q": np.ones((3, 2))}}, "init: unknown label"),
     ({"modes": {"X": "ijk", "Y": "il"}, "init": {"i": np.ones((3, 2))}},
      r"init\['i'\]: expected shape \(9, 2\)"),
     ({"modes": {"X": "ijk", "Y": "il"}, "init": "gevd"}, "init: expected 'auto', 'random'")],
)
def test_bad_arguments(coupled, kwargs, match):
    _, X, Y = coupled
    with pytest.raises(sdf.ModelError, match=match):
        cmtf({"X": X, "Y": Y}, 2, **kwargs)


def test_empty_data():
    with pytest.raises(sdf.ModelError, match="data: expected a non-empty mapping"):
        cmtf({}, 2)
