"""Warnings a user gets from drivers and fits name the user's own line."""

import warnings

import numpy as np
import pytest

import sdf
from sdf.algebra import cpd_to_tensor
from sdf.errors import DegeneracyWarning, SdfWarning
from sdf.models import cpd, degeneracy


def test_cpd_rank_above_the_maximal_rank_bound_warns(rng):
    T = rng.standard_normal((3, 4, 5))  # any 3x4x5 tensor has rank <= 3 * 4 = 12
    with pytest.warns(SdfWarning, match=r"cpd: rank 13 exceeds 12, an upper bound on the "
                                        r"rank of any 3x4x5 tensor") as record:
        cpd(T, 13, max_iter=2, seed=0)
    bound = [w for w in record if "exceeds" in str(w.message)]
    assert bound[0].filename == __file__


def test_cpd_rank_at_the_bound_does_not_warn_about_it(rng):
    T = rng.standard_normal((3, 4, 5))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cpd(T, 12, max_iter=2, seed=0)
    assert not [w for w in record if "exceeds" in str(w.message)]


def _degenerate_factors():
    a = np.array([[1.0, 1.0], [0.0, 0.05]])
    return [a, a, a * [1.0, -1.0]]


def test_degeneracy_warning_points_at_the_callers_line():
    with pytest.warns(DegeneracyWarning) as record:
        degeneracy(_degenerate_factors())
    assert record[0].filename == __file__


def test_fit_diagnosis_warning_from_a_driver_points_at_the_callers_line(rng):
    A = [rng.standard_normal((n, 2)) for n in (6, 5, 4)]
    with pytest.warns(SdfWarning, match="still decreasing") as record:
        cpd(cpd_to_tensor(A) + 0.1 * rng.standard_normal((6, 5, 4)), 2, max_iter=1,
            init="random", seed=0, compress=False)
    assert {w.filename for w in record} == {__file__}


def test_fit_diagnosis_warning_from_model_fit_points_at_the_callers_line(rng):
    a = sdf.Variable(rng.standard_normal((6, 2)), name="a")
    model = sdf.Model(x=sdf.CPD(rng.standard_normal((6, 5)), [a, rng.standard_normal((5, 2))]))
    with pytest.warns(SdfWarning) as record:
        model.fit(max_iter=1)
    assert {w.filename for w in record} == {__file__}


def test_degeneracy_warning_from_cpd_points_at_the_callers_line(rng):
    # A tensor of rank 3 and border rank 2: rank-2 fits diverge into cancelling pairs.
    a, b = rng.standard_normal((2, 6))
    T = (np.einsum("i,j,k->ijk", a, a, b) + np.einsum("i,j,k->ijk", a, b, a)
         + np.einsum("i,j,k->ijk", b, a, a))
    with pytest.warns(DegeneracyWarning, match="degenerate CPD") as record:
        cpd(T, 2, seed=0, max_iter=500)
    degenerate = [w for w in record if issubclass(w.category, DegeneracyWarning)]
    assert degenerate and all(w.filename == __file__ for w in degenerate)
