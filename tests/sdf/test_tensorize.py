"""Tensorization (sdf.tensorize) and the signal data kinds it builds: HankelTensor and
SegmentedTensor, every operation against the dense formulas, inverses, size rules, and a
CPD fit through the ordinary Model.fit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sdf
from sdf import algebra
from sdf.errors import DataError
from sdf.tensorize import (FULL_LIMIT, decimate, dedecimate, dehankelize, desegmentize,
                           hankelize, segmentize)
from sdf.tensors import CPDTensor, DenseTensor, HankelTensor, SegmentedTensor, Tensor


def assert_matches_dense(T: Tensor, rng, rank=3):
    """Every protocol operation of T equals the DenseTensor of its expansion."""
    D = DenseTensor(T.to_dense())
    assert T.shape == D.shape
    assert T.norm_squared() == pytest.approx(D.norm_squared(), rel=1e-10)
    A = [rng.standard_normal((I, rank)) for I in T.shape]
    assert T.inner_cpd(A) == pytest.approx(D.inner_cpd(A), rel=1e-9, abs=1e-9)
    want = D.mttkrp_all(A)
    for n, (got, ref) in enumerate(zip(T.mttkrp_all(A), want)):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(T.mttkrp(A, n), ref, rtol=1e-9, atol=1e-9)
    session = T.mttkrp_session(A)
    assert session.inner() == pytest.approx(D.inner_cpd(A), rel=1e-9, abs=1e-9)
    for got, ref in zip(session.all(), want):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    U = [rng.standard_normal((I, 2)) for I in T.shape]
    S = rng.standard_normal((2,) * T.ndim)
    np.testing.assert_allclose(T.project(U), D.project(U), rtol=1e-9, atol=1e-9)
    assert T.inner_tucker(U, S) == pytest.approx(D.inner_tucker(U, S), rel=1e-9, abs=1e-9)
    P, K = T.project_tucker(U, S)
    P0, K0 = D.project_tucker(U, S)
    np.testing.assert_allclose(P, P0, rtol=1e-9, atol=1e-9)
    for got, ref in zip(K, K0):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    subs = np.stack([rng.integers(0, I, 12) for I in T.shape], axis=1)
    np.testing.assert_allclose(T.values_at(subs), D.values_at(subs), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- Hankel
@pytest.mark.parametrize("signal_shape, axis, sizes", [
    ((9,), 0, (5, 5)),
    ((9,), 0, (4, 3, 4)),
    ((8,), 0, (2, 2, 2, 2, 4)),
    ((9, 3), 0, (5, 5)),
    ((2, 9, 3), 1, (3, 3, 5)),
    ((4, 7), 1, (4, 4)),
    ((3, 2, 6), 2, (2, 5)),
])
def test_hankel_operations_match_dense(signal_shape, axis, sizes, rng):
    x = rng.standard_normal(signal_shape)
    H = HankelTensor(x, sizes, axis)
    assert H.kind == "hankel" and H.order == len(sizes) and H.signal_length == x.shape[axis]
    assert_matches_dense(H, rng)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(2, 14), st.integers(0, 2), st.integers(0, 10**6))
def test_hankel_random_orders_and_lengths(order, extra, n_rest, seed):
    rng = np.random.default_rng(seed)
    L = order + extra
    rest = tuple(int(s) for s in rng.integers(1, 4, n_rest))
    axis = int(rng.integers(0, n_rest + 1))
    x = rng.standard_normal(rest[:axis] + (L,) + rest[axis:])
    H = hankelize(x, order, axis=axis, full=False)
    dense = hankelize(x, order, axis=axis, full=True)
    np.testing.assert_array_equal(H.to_dense(), dense)
    assert_matches_dense(H, rng, rank=2)
    np.testing.assert_allclose(dehankelize(dense, order, axis=axis), x, atol=1e-12)


def test_hankel_entries_follow_the_definition(rng):
    x = rng.standard_normal(8)
    H = hankelize(x, sizes=(3, 4, 3), full=True)
    i, j, k = np.indices(H.shape)
    np.testing.assert_array_equal(H, x[i + j + k])
    X = rng.standard_normal((3, 8))
    H2 = hankelize(X, axis=1, full=True)
    assert H2.shape == (3, 5, 4)
    np.testing.assert_array_equal(H2[2], hankelize(X[2], full=True))


def test_hankelize_default_sizes_are_nearly_cubical():
    assert hankelize(np.ones(10), 3, full=False).sizes == (4, 4, 4)
    assert hankelize(np.ones(11), 3, full=False).sizes == (5, 4, 4)
    assert hankelize(np.ones(7), full=True).shape == (4, 4)


def test_hankelize_returns_dense_up_to_the_limit_then_structured():
    small = hankelize(np.ones(2000))  # 1001 x 1000 entries: just above 10**6
    assert isinstance(small, HankelTensor)
    assert isinstance(hankelize(np.ones(1999)), np.ndarray)  # 1000 x 1000 = FULL_LIMIT
    assert FULL_LIMIT == 10**6
    assert isinstance(hankelize(np.ones(30), full=False), HankelTensor)


def test_hankelize_does_not_modify_or_share_the_input(rng):
    x = rng.standard_normal(12)
    keep = x.copy()
    H = hankelize(x, full=False)
    x[0] = 100.0
    assert H.signal[0] == keep[0]
    assert not H.signal.flags.writeable


def test_hankel_of_a_long_signal_is_never_expanded():
    H = hankelize(np.sin(np.arange(10**5) * 0.01), 3)
    assert H.size > 3e13
    A = [np.ones((I, 2)) for I in H.shape]
    assert np.isfinite(H.mttkrp_session(A).inner())
    with pytest.raises(DataError, match=r"hankelize: expanding this Hankel tensor of shape "
                       r"\(33334, 33334, 33334\) needs 3.7e\+13 entries"):
        H.to_dense()


@pytest.mark.parametrize("call, match", [
    (lambda: hankelize(np.ones(5), sizes=(2, 2)), r"sizes \(2, 2\) do not fit a signal of length 5"),
    (lambda: hankelize(np.ones(5), order=1), "order must be an int >= 2, got 1"),
    (lambda: hankelize(np.ones(5), order=3, sizes=(3, 3)), "sizes .* give 2 modes, but order is 3"),
    (lambda: hankelize(np.ones((2, 5)), axis=2), r"axis must be an int in \[-2, 2\), got 2"),
    (lambda: hankelize(np.array([1.0, np.inf, 2.0])), "signal must be finite"),
    (lambda: hankelize(3.0), "got a scalar"),
    (lambda: hankelize(np.ones(5), full="yes"), "full must be True, False or None"),
    (lambda: dehankelize(np.ones(4), order=2), "order 2 from axis 0 needs at least 2 modes"),
])
def test_tensorize_bad_input_names_the_function(call, match):
    with pytest.raises(DataError, match=match):
        call()


def test_dehankelize_averages_anti_diagonals(rng):
    M = rng.standard_normal((3, 4))
    want = [np.mean(np.fliplr(M).diagonal(k)) for k in range(3, -3, -1)]
    np.testing.assert_allclose(dehankelize(M), want)


def test_dehankelize_of_factors_equals_dehankelize_of_their_expansion(rng):
    mats = [rng.standard_normal((I, 3)) for I in (4, 5, 2, 3)]  # Hankel modes 1, 2
    w = rng.standard_normal(3)
    T = CPDTensor(mats, weights=w)
    np.testing.assert_allclose(dehankelize(T, axis=1), dehankelize(T.to_dense(), axis=1))
    np.testing.assert_allclose(dehankelize(T, 3), dehankelize(T.to_dense(), 3))


def test_dehankelize_of_a_hankel_tensor_gives_its_signals(rng):
    X = rng.standard_normal((6, 2))
    H = hankelize(X, 3, full=False)
    np.testing.assert_array_equal(dehankelize(H, 3), X)
    np.testing.assert_allclose(dehankelize(H, 2, axis=1), dehankelize(H.to_dense(), 2, axis=1))


# ----------------------------------------------------------------------------- reshapes
@pytest.mark.parametrize("signal_shape, axis, sizes, order", [
    ((12,), 0, (3, 4), "F"),
    ((12,), 0, (2, 3, 2), "C"),
    ((2, 12, 3), 1, (2, 3, 2), "F"),
    ((4, 6), 1, (2, 3), "C"),
])
def test_segmented_operations_match_dense(signal_shape, axis, sizes, order, rng):
    x = rng.standard_normal(signal_shape)
    T = SegmentedTensor(x, sizes, axis, order=order)
    assert_matches_dense(T, rng)
    np.testing.assert_array_equal(T.signal, x)


def test_segmentation_and_decimation_follow_their_definitions(rng):
    x = rng.standard_normal(24)
    S = segmentize(x, 4)
    i, j = np.indices(S.shape)
    np.testing.assert_array_equal(S, x[i + 4 * j])
    D = decimate(x, 4)
    i, j = np.indices(D.shape)
    np.testing.assert_array_equal(D, x[4 * i + j])
    S3 = segmentize(x, (2, 3, -1))
    i, j, k = np.indices(S3.shape)
    np.testing.assert_array_equal(S3, x[i + 2 * j + 6 * k])
    D3 = decimate(x, (-1, 3, 2))
    np.testing.assert_array_equal(D3, x.reshape(4, 3, 2))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), st.integers(0, 2),
       st.integers(0, 10**6))
def test_reshapes_round_trip_in_both_forms(sizes, n_rest, seed):
    rng = np.random.default_rng(seed)
    rest = tuple(int(s) for s in rng.integers(1, 4, n_rest))
    axis = int(rng.integers(0, n_rest + 1))
    L = int(np.prod(sizes))
    x = rng.standard_normal(rest[:axis] + (L,) + rest[axis:])
    K = len(sizes)
    for full in (True, False):
        S = segmentize(x, sizes, axis=axis, full=full)
        D = decimate(x, sizes, axis=axis, full=full)
        np.testing.assert_array_equal(desegmentize(S, K, axis=axis), x)
        np.testing.assert_array_equal(dedecimate(D, K, axis=axis), x)
    np.testing.assert_array_equal(
        segmentize(x, sizes, axis=axis, full=False).to_dense(),
        segmentize(x, sizes, axis=axis, full=True))


def test_segmented_kind_holds_one_copy_and_views_it(rng):
    x = rng.standard_normal(10**4)
    T = segmentize(x, 100, full=False)
    assert isinstance(T, SegmentedTensor)
    view = T.dense_view()
    assert np.shares_memory(view, T.signal) and not view.flags.writeable
    assert not np.shares_memory(T.signal, x)


@pytest.mark.parametrize("call, match", [
    (lambda: segmentize(np.ones(10), 3), "segment length 3 does not divide the signal length 10"),
    (lambda: decimate(np.ones(10), (3, -1)), r"sizes \(3, -1\) cannot reshape a signal of length 10"),
    (lambda: segmentize(np.ones(12), (2, 3)), r"sizes \(2, 3\) do not reshape a signal of length 12"),
    (lambda: decimate(np.ones(12), (-1, -1)), "at most one size may be -1"),
])
def test_reshape_bad_sizes_are_named(call, match):
    with pytest.raises(DataError, match=match):
        call()


# ----------------------------------------------------------------------------- fitting
def _damped_exponentials(L, rng, noise=1e-3):
    poles = np.array([0.97, 0.85, -0.9])
    amplitudes = np.array([1.0, -2.0, 1.5])
    t = np.arange(L)
    clean = (amplitudes * poles ** t[:, None]).sum(axis=1)
    return poles, clean + noise * rng.standard_normal(L)


def _poles_from(factor):
    """Shift invariance of a Vandermonde column: a[1:] = z a[:-1]."""
    return np.sort([float(c[:-1] @ c[1:] / (c[:-1] @ c[:-1])) for c in factor.T])


def test_cpd_of_a_hankelized_signal_recovers_the_poles_like_the_dense_fit(rng):
    poles, x = _damped_exponentials(60, rng)
    H = hankelize(x, 3, full=False)
    dense = hankelize(x, 3, full=True)
    truth = [poles ** np.arange(I)[:, None] for I in H.shape]
    start = [V * (1 + 0.05 * rng.standard_normal(V.shape)) for V in truth]
    fits = []
    for data in (H, dense):
        variables = [sdf.Variable(s.copy(), name=k) for s, k in zip(start, "abc")]
        fits.append(sdf.Model(h=sdf.CPD(data, variables)).fit(max_iter=200, tol_fun=1e-14))
    structured, reference = fits
    assert structured.relerr["h"] == pytest.approx(reference.relerr["h"], rel=1e-6)
    for k in "abc":
        np.testing.assert_allclose(structured.variables[k], reference.variables[k],
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_poles_from(structured.variables["a"]), np.sort(poles),
                               atol=2e-3)
    model = algebra.cpd_to_tensor([structured.variables[k] for k in "abc"])
    assert np.linalg.norm(model - dense) / np.linalg.norm(dense) == pytest.approx(
        structured.relerr["h"], rel=1e-6)
