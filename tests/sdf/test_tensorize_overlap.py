"""Overlapping segmentation (segmentize with a shift) and Hankel tensors with steps."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import sdf
from sdf.errors import DataError
from sdf.tensorize import dehankelize, desegmentize, segmentize
from sdf.tensors import CPDTensor, DenseTensor, HankelTensor, OverlappingSegmentedTensor
from sdf.tensors._hankel import sample_counts

from test_tensorize import assert_matches_dense


def _windows(x, length, shift):
    """Reference: the windows as columns, from numpy's sliding-window view."""
    return sliding_window_view(x, length)[::shift].T


@pytest.mark.parametrize("L, length, shift", [(20, 6, 2), (21, 6, 2), (17, 5, 1),
                                              (30, 4, 4), (30, 3, 5), (9, 9, 3)])
def test_segmentize_with_shift_gives_the_windows(L, length, shift, rng):
    x = rng.standard_normal(L)
    np.testing.assert_array_equal(segmentize(x, length, shift=shift), _windows(x, length, shift))
    T = segmentize(x, length, shift=shift, full=False)
    assert isinstance(T, OverlappingSegmentedTensor) and T.kind == "overlapping-segmented"
    assert (T.segment_length, T.shift, T.n_segments) == (length, shift, (L - length) // shift + 1)


@pytest.mark.parametrize("signal_shape, axis, length, shift", [
    ((25,), 0, 7, 3),
    ((25, 2), 0, 6, 2),
    ((3, 19), 1, 5, 1),
    ((2, 16, 3), 1, 4, 3),
    ((150,), 0, 70, 1),
    ((40,), 0, 9, 4),
])
def test_overlapping_segments_match_dense(signal_shape, axis, length, shift, rng):
    x = rng.standard_normal(signal_shape)
    T = OverlappingSegmentedTensor(x, length, shift, axis)
    assert_matches_dense(T, rng)


@pytest.mark.parametrize("length, shift, strided", [(9, 4, True), (70, 1, False),
                                                    (400, 100, True), (2000, 10, False)])
def test_few_overlaps_read_strided_blocks_many_use_ffts(length, shift, strided, rng):
    x = rng.standard_normal(length + 40 * shift)
    T = OverlappingSegmentedTensor(x, length, shift)
    assert bool(T._blocks) is strided
    A = [rng.standard_normal((n, 3)) for n in T.shape]
    D = DenseTensor(T.to_dense())
    for got, ref in zip(T.mttkrp_all(A), D.mttkrp_all(A)):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("sizes, steps", [((4, 3, 2), (1, 2, 3)), ((3, 5), (2, 1)),
                                          ((2, 2, 2, 3), (1, 1, 3, 2))])
def test_hankel_with_steps_matches_dense(sizes, steps, rng):
    L = sum(s * (I - 1) for I, s in zip(sizes, steps)) + 1
    x = rng.standard_normal(L)
    H = HankelTensor(x, sizes, steps=steps)
    grids = np.ix_(*[s * np.arange(I) for I, s in zip(sizes, steps)])
    np.testing.assert_array_equal(H.to_dense(), x[sum(grids)])
    assert_matches_dense(H, rng)


@pytest.mark.parametrize("sizes, steps", [((5, 4), (1, 3)), ((3, 3, 2), (2, 1, 4)),
                                          ((4, 4), (1, 1)), ((2, 6), (1, 7))])
def test_sample_counts_count_the_entries(sizes, steps):
    grids = np.ix_(*[s * np.arange(I) for I, s in zip(sizes, steps)])
    want = np.bincount(sum(grids).ravel())
    np.testing.assert_array_equal(sample_counts(sizes, steps), want)


def test_structured_mttkrp_agrees_with_dense_on_a_long_signal(rng):
    x = rng.standard_normal(4000)
    T = segmentize(x, 200, shift=50, full=False)
    D = DenseTensor(T.to_dense())
    A = [rng.standard_normal((I, 4)) for I in T.shape]
    for got, ref in zip(T.mttkrp_all(A), D.mttkrp_all(A)):
        assert np.abs(got - ref).max() <= 1e-10 * np.abs(ref).max()


def test_desegmentize_with_shift_inverts_and_averages(rng):
    x = rng.standard_normal(23)
    dense = segmentize(x, 7, shift=2)
    used = x[:7 + 2 * 8]
    np.testing.assert_allclose(desegmentize(dense, shift=2), used, rtol=1e-14)
    np.testing.assert_array_equal(desegmentize(segmentize(x, 7, shift=2, full=False), shift=2),
                                  used)
    noisy = dense + rng.standard_normal(dense.shape)
    counts = sample_counts((7, 9), (1, 2))
    sums = np.bincount((np.arange(7)[:, None] + 2 * np.arange(9)).ravel(), noisy.ravel())
    np.testing.assert_allclose(desegmentize(noisy, shift=2), sums / counts, rtol=1e-13)


def test_desegmentize_a_cpd_in_factored_form(rng):
    factors = [rng.standard_normal((6, 2)), rng.standard_normal((5, 2))]
    cpd = CPDTensor(factors, weights=[1.0, -2.0])
    np.testing.assert_allclose(desegmentize(cpd, shift=3), desegmentize(cpd.to_dense(), shift=3),
                               rtol=1e-12, atol=1e-12)


def test_dehankelize_of_overlapping_segments_averages_its_antidiagonals(rng):
    T = OverlappingSegmentedTensor(rng.standard_normal(20), 6, 2)
    np.testing.assert_allclose(dehankelize(T), dehankelize(T.to_dense()), rtol=1e-13)


def test_cpd_of_overlapping_segments_recovers_exponentials(rng):
    t = np.arange(3000)
    x = 1.0 * 0.999 ** t - 0.5 * 0.9985 ** t + 0.005 * rng.standard_normal(t.size)
    T = segmentize(x, 400, shift=100, full=False)  # 400 x 27 windows, 75 % overlap
    z = [0.999, 0.9985]
    start = [np.stack([zr ** (s * np.arange(I)) for zr in z], axis=1) * (1 + 0.01 * k)
             for k, (I, s) in enumerate(zip(T.shape, (1, 100)))]
    a, b = (sdf.Variable(v, name=n) for v, n in zip(start, "ab"))
    result = sdf.Model(seg=sdf.CPD(T, [a, b])).fit(max_iter=100)
    fitted = desegmentize(CPDTensor([result[a], result[b]]), shift=100)
    clean = (1.0 * 0.999 ** t - 0.5 * 0.9985 ** t)[:fitted.size]
    assert np.linalg.norm(fitted - clean) / np.linalg.norm(clean) < 0.01


@pytest.mark.parametrize("call, match", [
    (lambda: segmentize(np.ones(10), 4, shift=0), "segmentize: shift must be an int >= 1"),
    (lambda: segmentize(np.ones(10), (2, 5), shift=1),
     "segmentize: with a shift, sizes must be the segment length"),
    (lambda: segmentize(np.ones(10), 11, shift=1), "window length 11 is longer than the signal"),
    (lambda: desegmentize(np.ones((2, 2, 2)), 3, shift=1), "desegmentize: a shift needs order 2"),
    (lambda: HankelTensor(np.ones(10), (3, 3), steps=(1, 2, 1)), "3 steps for 2 Hankel modes"),
    (lambda: HankelTensor(np.ones(10), (3, 3), steps=(1, 2)),
     r"sum\(steps\[k\] \* \(sizes\[k\] - 1\)\) \+ 1 == L"),
])
def test_bad_shift_input_is_named(call, match):
    with pytest.raises(DataError, match=match):
        call()
