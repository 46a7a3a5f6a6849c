"""Loewner tensors of order K > 2 (loewnerize with order): divided differences, structured."""

import itertools

import numpy as np
import pytest

import sdf
from sdf.errors import DataError
from sdf.tensorize import loewnerize
from sdf.tensors import HigherOrderLoewnerTensor, LoewnerTensor

from test_tensorize import assert_matches_dense


def _divided_difference(f, t):
    """f[t_0, ..., t_{K-1}] by the recursive definition (distinct points)."""
    if len(t) == 1:
        return f[0]
    return (_divided_difference(f[1:], t[1:]) - _divided_difference(f[:-1], t[:-1])) \
        / (t[-1] - t[0])


def test_entries_are_divided_differences(rng):
    t = np.sort(rng.uniform(0, 5, 12))
    f = np.sin(t)
    T = loewnerize(f, t, order=3)
    sets = [np.arange(k, 12, 3) for k in range(3)]
    for idx in itertools.product(range(4), repeat=3):
        samples = [s[i] for s, i in zip(sets, idx)]
        assert T[idx] == pytest.approx(_divided_difference(f[samples], t[samples]), rel=1e-9)


def test_order_two_is_the_loewner_matrix(rng):
    t = rng.uniform(0, 3, 9)
    f = rng.standard_normal(9)
    K2 = HigherOrderLoewnerTensor(f, t, order=2)
    np.testing.assert_allclose(K2.to_dense(), LoewnerTensor(f, t).to_dense(), rtol=1e-12)


@pytest.mark.parametrize("signal_shape, axis, order", [
    ((12,), 0, 3),
    ((13,), 0, 4),
    ((10, 2), 0, 2),
    ((2, 11, 3), 1, 3),
])
def test_higher_order_loewner_matches_dense(signal_shape, axis, order, rng):
    x = rng.standard_normal(signal_shape)
    t = np.cumsum(rng.uniform(0.5, 1.5, signal_shape[axis]))
    T = HigherOrderLoewnerTensor(x, t, order, axis=axis)
    assert T.kind == "loewner-k" and T.order == order
    assert_matches_dense(T, rng)


def test_given_sets_choose_the_partition(rng):
    t = np.arange(9.0)
    f = rng.standard_normal(9)
    sets = [np.array([0, 1, 2]), np.array([3, 4]), np.array([5, 6, 7, 8])]
    T = loewnerize(f, t, order=3, sets=sets, full=False)
    assert T.shape == (3, 2, 4)
    np.testing.assert_allclose(T.set_points[2], t[5:])
    assert T.to_dense()[2, 1, 3] == pytest.approx(_divided_difference(f[[2, 4, 8]],
                                                                      t[[2, 4, 8]]))


def test_rational_function_gives_a_low_rank_loewner_tensor(rng):
    # f(t) = 1 / (t - p): its divided differences are prod_k 1 / (t_k - p), rank one.
    t = np.linspace(0, 1, 30)
    T = loewnerize(1.0 / (t - 2.5), t, order=3, full=False)
    a = [sdf.Variable(rng.uniform(0.5, 1.0, (I, 1)), name=f"a{k}")
         for k, I in enumerate(T.shape)]
    result = sdf.Model(loewner=sdf.CPD(T, a)).fit(max_iter=100)
    assert result.relerr["loewner"] < 1e-6  # from norms and inner products: ~sqrt(eps)
    D = T.to_dense()
    M = np.einsum("ir,jr,kr->ijk", *(result[v] for v in a))
    # the fit stops near the exact one (an absolute tolerance): a few 1e-9 seen
    assert np.linalg.norm(M - D) < 1e-7 * np.linalg.norm(D)


@pytest.mark.parametrize("call, match", [
    (lambda: loewnerize(np.ones(5), order=3, rows=[0, 1]), "for order 3 give sets instead"),
    (lambda: HigherOrderLoewnerTensor(np.ones(4), np.array([0.0, 1, 2, 0]), 2),
     "point 0.0 is in sets 0 and 1"),
    (lambda: HigherOrderLoewnerTensor(np.ones(2), order=3), "every one of the 3 sets needs"),
    (lambda: HigherOrderLoewnerTensor(np.ones(6), order=2, sets=[[0, 1], [1, 2]]),
     "a sample index appears twice"),
    (lambda: HigherOrderLoewnerTensor(np.ones(6), order=1), "order must be an int >= 2"),
])
def test_bad_loewner_input_is_named(call, match):
    with pytest.raises(DataError, match=match):
        call()
