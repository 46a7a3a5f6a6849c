"""Loewner data (LoewnerTensor, sdf.tensorize.loewnerize) against the dense formulas."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sdf
from sdf.errors import DataError
from sdf.tensorize import loewnerize
from sdf.tensors import LoewnerTensor

from test_tensorize import assert_matches_dense


@pytest.mark.parametrize("signal_shape, axis", [((9,), 0), ((8, 3), 0), ((2, 7, 3), 1),
                                               ((3, 2, 6), 2)])
def test_loewner_operations_match_dense(signal_shape, axis, rng):
    x = rng.standard_normal(signal_shape)
    T = LoewnerTensor(x, rng.standard_normal(signal_shape[axis]), axis=axis)
    assert T.kind == "loewner"
    assert_matches_dense(T, rng)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 12), st.integers(0, 2), st.integers(0, 10**6))
def test_loewner_random_sizes_and_partitions(L, n_rest, seed):
    rng = np.random.default_rng(seed)
    rest = tuple(int(s) for s in rng.integers(1, 4, n_rest))
    axis = int(rng.integers(0, n_rest + 1))
    x = rng.standard_normal(rest[:axis] + (L,) + rest[axis:])
    rows = rng.choice(L, size=int(rng.integers(1, L)), replace=False)
    T = loewnerize(x, np.linspace(0.0, 1.0, L), rows=rows, axis=axis, full=False)
    assert_matches_dense(T, rng, rank=2)


def test_loewner_entries_follow_the_definition(rng):
    t = np.sort(rng.uniform(0, 1, 7))
    f = rng.standard_normal(7)
    Lw = loewnerize(f, t, rows=[1, 4, 5])
    cols = [0, 2, 3, 6]
    want = (f[[1, 4, 5]][:, None] - f[cols][None, :]) / (t[[1, 4, 5]][:, None] - t[cols][None, :])
    np.testing.assert_allclose(Lw, want)
    default = loewnerize(f, t, full=False)
    np.testing.assert_array_equal(default.row_points, t[0::2])
    np.testing.assert_array_equal(default.column_points, t[1::2])


def test_loewner_of_a_rational_function_has_its_degree_as_rank():
    t = np.linspace(0.0, 1.0, 40)
    f = 1 / (t + 0.5) + 2 / (t + 1.5) - 1 / (t + 3.0)  # degree 3
    s = np.linalg.svd(loewnerize(t * 0 + f, t), compute_uv=False)
    assert s[3] < 1e-10 * s[0] < s[2]


def test_cpd_fit_of_loewner_data_equals_the_dense_fit(rng):
    t = np.linspace(0.0, 1.0, 30)
    poles = np.array([0.5, 1.5, 3.0])
    sources = 1 / (t[:, None] + poles)  # (30, 3) rational sources
    mixing = rng.standard_normal((3, 4))
    X = sources @ mixing + 1e-4 * rng.standard_normal((30, 4))
    structured = loewnerize(X, t, full=False)
    dense = structured.to_dense()
    start = [rng.standard_normal((n, 3)) for n in structured.shape]
    fits = []
    for data in (structured, dense):
        variables = [sdf.Variable(s.copy(), name=k) for s, k in zip(start, "abc")]
        fits.append(sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=60))
    assert fits[0].relerr["t"] == pytest.approx(fits[1].relerr["t"], rel=1e-5, abs=1e-8)
    for k in "abc":
        np.testing.assert_allclose(fits[0].variables[k], fits[1].variables[k],
                                   rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda: loewnerize(np.ones(4), [0.0, 1.0, 1.0, 2.0]), "point 1.0 is in both the row and"),
    (lambda: loewnerize(np.ones(4), [0.0, 1.0]), r"points must be 4 finite numbers"),
    (lambda: loewnerize(np.ones(4), rows=[0, 1, 2, 3]), "both the row and the column set"),
    (lambda: loewnerize(np.ones(4), rows=[0, 9]), r"rows must be sample indices in \[0, 4\)"),
    (lambda: loewnerize(np.ones(4), rows=[1, 1]), "rows has repeated sample indices"),
])
def test_loewner_bad_input_is_named(call, match):
    with pytest.raises(DataError, match=match):
        call()


def test_large_loewner_is_structured_and_refuses_to_expand():
    t = np.arange(4 * 10**4, dtype=float)
    T = loewnerize(np.sin(t / 100), t)
    assert isinstance(T, LoewnerTensor) and T.shape == (2 * 10**4, 2 * 10**4)
    small = LoewnerTensor(np.ones((2 * 10**4, 600)), t[:2 * 10**4] * 0 + np.arange(2 * 10**4))
    with pytest.raises(DataError, match="expanding this Loewner tensor"):
        small.to_dense()
