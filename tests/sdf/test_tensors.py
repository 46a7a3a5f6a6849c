"""Tests of sdf.tensors: every data type's operations against dense textbook formulas."""

from __future__ import annotations

import string
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from sdf.errors import DataError
from sdf.tensors import (
    CPDTensor,
    DenseTensor,
    IncompleteTensor,
    MaskedTensor,
    SparseTensor,
    Tensor,
    TuckerTensor,
    as_tensor,
)

KINDS = ["dense", "incomplete", "masked", "sparse", "cpd", "tucker"]
MISSING = ("incomplete", "masked")  # kinds with missing entries


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


# ----------------------------------------------------------------------------- textbook
def unfold(X, n):
    return np.moveaxis(X, n, 0).reshape(X.shape[n], -1)


def khatri_rao(mats):
    """Column-wise Kronecker product, last matrix fastest, by einsum over all rows."""
    letters = string.ascii_lowercase[: len(mats)]
    spec = ",".join(f"{c}z" for c in letters) + f"->{letters}z"
    return np.einsum(spec, *mats).reshape(-1, mats[0].shape[1])


def cpd_full(mats, weights=None):
    letters = string.ascii_lowercase[: len(mats)]
    w = np.ones(mats[0].shape[1]) if weights is None else weights
    return np.einsum(",".join(f"{c}z" for c in letters) + f",z->{letters}", *mats, w)


def tucker_full(mats, core):
    letters, ranks = string.ascii_lowercase[: len(mats)], string.ascii_uppercase[: len(mats)]
    spec = ranks + "," + ",".join(f"{c}{r}" for c, r in zip(letters, ranks)) + "->" + letters
    return np.einsum(spec, core, *mats)


def textbook_mttkrp(X, mats, n):
    return unfold(X, n) @ khatri_rao([A for m, A in enumerate(mats) if m != n])


@st.composite
def problems(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=5)))
    rank = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    return shape, rank, np.random.default_rng(seed)


def make(kind, shape, rng):
    """A tensor of ``kind`` and its reference: dense array, zeros where unknown, and mask."""
    N = len(shape)
    X = rng.standard_normal(shape)
    known = np.ones(shape, dtype=bool)
    if kind in ("incomplete", "masked", "sparse"):
        known = rng.random(shape) < 0.5
        known.flat[rng.integers(X.size)] = True
        X = np.where(known, X, 0.0)
    if kind == "dense":
        T = DenseTensor(X)
    elif kind == "incomplete":
        T = IncompleteTensor(np.where(known, X, np.nan))
    elif kind == "masked":
        T = MaskedTensor(np.where(known, X, np.nan))
    elif kind == "sparse":
        T = SparseTensor.from_entries(np.argwhere(known), X[known], shape)
    elif kind == "cpd":
        B, w = [rng.standard_normal((I, 2)) for I in shape], rng.standard_normal(2)
        T, X = CPDTensor(B, w), cpd_full(B, w)
    else:
        B = [rng.standard_normal((I, 2)) for I in shape]
        H = rng.standard_normal((2,) * N)
        T, X = TuckerTensor(B, H), tucker_full(B, H)
    return T, X, known


# ----------------------------------------------------------------------------- operations
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=30, deadline=None)
@given(problem=problems())
def test_operations_match_dense_textbook(kind, problem):
    shape, R, rng = problem
    T, X, known = make(kind, shape, rng)
    A = [rng.standard_normal((I, R)) for I in shape]
    U = [rng.standard_normal((I, c)) for I, c in zip(shape, rng.integers(1, 3, len(shape)))]
    G = rng.standard_normal(tuple(M.shape[1] for M in U))
    assert T.kind == ("incomplete" if kind in MISSING else kind)
    assert T.shape == shape and T.ndim == len(shape)
    assert T.size == X.size
    assert T.norm_squared() == pytest.approx(np.sum(X**2), rel=1e-9, abs=1e-9)
    assert T.norm() == pytest.approx(np.linalg.norm(X), rel=1e-9, abs=1e-9)
    assert T.inner_cpd(A) == pytest.approx(np.sum(X * cpd_full(A)), rel=1e-9, abs=1e-9)
    assert T.inner_tucker(U, G) == pytest.approx(np.sum(X * tucker_full(U, G)),
                                                 rel=1e-9, abs=1e-9)
    every = T.mttkrp_all(A)
    for n in range(len(shape)):
        want = textbook_mttkrp(X, A, n)
        np.testing.assert_allclose(T.mttkrp(A, n), want, atol=1e-10)
        np.testing.assert_allclose(every[n], want, atol=1e-10)
    subs = np.argwhere(np.ones(shape, dtype=bool))
    dense = np.where(known, X, np.nan) if kind in MISSING else X
    np.testing.assert_allclose(T.values_at(subs), dense.ravel(), atol=1e-12)
    np.testing.assert_allclose(T.to_dense(), dense, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_n_known_counts_known_entries(kind, rng):
    T, _, known = make(kind, (3, 4, 2), rng)
    assert T.n_known == (int(known.sum()) if kind in MISSING else 24)


@pytest.mark.parametrize("kind", KINDS)
def test_negative_mode_counts_from_the_end(kind, rng):
    T, _, _ = make(kind, (3, 4, 2), rng)
    A = [rng.standard_normal((I, 2)) for I in T.shape]
    np.testing.assert_allclose(T.mttkrp(A, -1), T.mttkrp(A, 2))


def test_vector_data_supports_every_operation(rng):
    x = rng.standard_normal(5)
    a = rng.standard_normal((5, 2))
    T = as_tensor(x)
    assert T.inner_cpd([a]) == pytest.approx(x @ a.sum(axis=1))
    np.testing.assert_allclose(T.mttkrp([a], 0), np.outer(x, np.ones(2)))
    np.testing.assert_allclose(T.mttkrp_all([a])[0], np.outer(x, np.ones(2)))


def test_coordinate_storage_is_c_sorted_with_linear_index(rng):
    subs = np.array([[1, 2, 0], [0, 0, 1], [1, 0, 0], [0, 2, 1]])
    T = IncompleteTensor.from_entries(subs, [1.0, 2.0, 3.0, 4.0], (2, 3, 2))
    np.testing.assert_array_equal(T.subs, [[0, 0, 1], [0, 2, 1], [1, 0, 0], [1, 2, 0]])
    np.testing.assert_array_equal(T.vals, [2.0, 4.0, 3.0, 1.0])
    np.testing.assert_array_equal(T.linear_index, np.ravel_multi_index(T.subs.T, T.shape))
    assert T.nnz == 4 and T.density == pytest.approx(4 / 12)


def test_mode_indicator_is_cached_and_sums_per_index(rng):
    T, X, known = make("sparse", (4, 3, 5), rng)
    M = T.mode_indicator(1)
    assert M is T.mode_indicator(1) and M.shape == (3, T.nnz)
    np.testing.assert_allclose(M @ T.vals, X.sum(axis=(0, 2)))


def test_values_at_missing_entries(rng):
    subs, vals = np.array([[0, 1]]), np.array([5.0])
    query = np.array([[0, 1], [1, 1], [0, 0]])
    np.testing.assert_array_equal(
        IncompleteTensor.from_entries(subs, vals, (2, 2)).values_at(query), [5.0, np.nan, np.nan])
    np.testing.assert_array_equal(
        SparseTensor.from_entries(subs, vals, (2, 2)).values_at(query), [5.0, 0.0, 0.0])


def test_empty_sparse_tensor_is_zero():
    T = SparseTensor.from_entries(np.zeros((0, 2), dtype=int), [], (2, 3))
    A = [np.ones((2, 1)), np.ones((3, 1))]
    assert T.norm() == 0.0 and T.inner_cpd(A) == 0.0
    np.testing.assert_array_equal(T.mttkrp(A, 0), np.zeros((2, 1)))
    np.testing.assert_array_equal(T.values_at(np.array([[1, 1]])), [0.0])


def test_stored_arrays_are_read_only(rng):
    T, _, _ = make("incomplete", (3, 4), rng)
    C, _, _ = make("cpd", (3, 4), rng)
    for a in (T.subs, T.vals, T.linear_index, as_tensor(np.ones((2, 2))).data,
              C.factors[0], C.weights):
        assert not a.flags.writeable


def test_repr_names_kind_and_size(rng):
    T, _, _ = make("sparse", (3, 4), rng)
    assert repr(T).startswith("SparseTensor(shape=(3, 4), nnz=")


# ----------------------------------------------------------------------------- cost
def test_incomplete_cost_scales_with_nnz_not_size(rng):
    shape, nnz, R = (1000, 1000, 1000), 1000, 5
    subs = rng.integers(0, 1000, size=(nnz, 3))
    subs = np.unique(subs, axis=0)
    A = [rng.standard_normal((1000, R)) for _ in range(3)]
    tracemalloc.start()
    T = as_tensor((subs, rng.standard_normal(len(subs)), shape), missing="unknown")
    T.norm(), T.inner_cpd(A), T.inner_tucker(A, np.ones((R, R, R)))
    Ms = T.mttkrp_all(A)
    T.values_at(subs[:10])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert T.kind == "incomplete" and T.size == 10**9 and len(Ms) == 3
    assert peak < 20 * 2**20  # the dense tensor would take 8 GB


def test_factored_data_are_never_expanded(rng):
    shape = (10**4, 10**4, 10**4)
    B = [rng.standard_normal((I, 3)) for I in shape]
    A = [rng.standard_normal((I, 2)) for I in shape]
    for T in (CPDTensor(B), TuckerTensor(B, rng.standard_normal((3, 3, 3)))):
        assert np.isfinite(T.norm()) and np.isfinite(T.inner_cpd(A))
        assert np.isfinite(T.inner_tucker(A, np.ones((2, 2, 2))))
        assert T.mttkrp_all(A)[1].shape == (10**4, 2)


# ----------------------------------------------------------------------------- as_tensor
def test_array_without_nan_is_dense(rng):
    X = rng.standard_normal((3, 4))
    T = as_tensor(X)
    assert isinstance(T, DenseTensor)
    np.testing.assert_array_equal(T.to_dense(), X)


def test_nan_array_mostly_known_is_masked(rng):
    X = rng.standard_normal((3, 4))
    X[1, 2] = np.nan
    T = as_tensor(X)
    assert isinstance(T, MaskedTensor) and T.n_known == 11 and T.kind == "incomplete"
    np.testing.assert_array_equal(T.to_dense(), X)


@pytest.mark.parametrize("n_missing, kind", [(1, MaskedTensor), (8, MaskedTensor),
                                             (9, IncompleteTensor), (11, IncompleteTensor)])
def test_storage_follows_the_fraction_known(n_missing, kind, rng):
    # Dense with a mask while that is no larger than coordinates (9 bytes per entry of
    # the grid against 32 per known entry of a matrix: at least 4 of 12 known).
    X = rng.standard_normal((3, 4))
    X.flat[rng.permutation(12)[:n_missing]] = np.nan
    T = as_tensor(X)
    assert type(T) is kind and T.n_known == 12 - n_missing
    np.testing.assert_array_equal(T.to_dense(), X)
    np.testing.assert_array_equal(T.known_entries().vals, X[~np.isnan(X)])


@pytest.mark.parametrize("dtype, n_known, kind", [
    (float, 225, MaskedTensor), (float, 224, IncompleteTensor),
    (complex, 355, MaskedTensor), (complex, 354, IncompleteTensor)])
def test_storage_rule_at_order_three_is_the_memory_break_even(dtype, n_known, kind, rng):
    # 10^3 grid: masked 9 (complex 17) bytes per entry, coordinates 40 (48) per known one.
    X = rng.standard_normal((10, 10, 10)).astype(dtype)
    X.flat[rng.permutation(1000)[n_known:]] = np.nan
    T = as_tensor(X)
    assert type(T) is kind and T.n_known == n_known


def test_mask_marks_known_entries_and_ignores_the_rest(rng):
    X = rng.standard_normal((3, 4))
    X[0, 0] = np.inf
    mask = np.ones((3, 4), dtype=bool)
    mask[0, 0] = False
    T = as_tensor(X, mask=mask)
    assert isinstance(T, MaskedTensor) and T.n_known == 11
    assert np.isnan(T.to_dense()[0, 0])


def test_full_mask_gives_dense(rng):
    T = as_tensor(rng.standard_normal((3, 4)), mask=np.ones((3, 4), dtype=bool))
    assert isinstance(T, DenseTensor)


@pytest.mark.parametrize("fmt", ["coo", "csr", "csc", "lil", "dok"])
@pytest.mark.parametrize("array_api", [False, True])
def test_scipy_sparse_becomes_sparse_tensor(fmt, array_api, rng):
    dense = sp.random(6, 5, density=0.3, random_state=0).toarray()
    M = (sp.coo_array if array_api else sp.coo_matrix)(dense).asformat(fmt)
    T = as_tensor(M)
    assert isinstance(T, SparseTensor) and T.nnz == np.count_nonzero(dense)
    np.testing.assert_array_equal(T.to_dense(), dense)


def test_scipy_sparse_duplicates_are_summed():
    M = sp.coo_matrix(([1.0, 2.0, 4.0], ([0, 0, 1], [1, 1, 0])), shape=(2, 2))
    T = as_tensor(M)
    np.testing.assert_array_equal(T.to_dense(), [[0.0, 3.0], [4.0, 0.0]])
    np.testing.assert_array_equal(M.data, [1.0, 2.0, 4.0])  # input untouched


def test_scipy_sparse_with_missing_unknown_is_incomplete():
    T = as_tensor(sp.eye(3, format="csr"), missing="unknown")
    assert isinstance(T, IncompleteTensor) and T.nnz == 3 and T.n_known == 3


@pytest.mark.parametrize(("missing", "cls"), [("zero", SparseTensor),
                                               ("unknown", IncompleteTensor)])
def test_triplets_follow_missing(missing, cls, rng):
    subs = np.array([[0, 1, 1], [2, 0, 1]])
    T = as_tensor((subs, [1.5, -2.0], (3, 2, 2)), missing=missing)
    assert type(T) is cls and T.nnz == 2
    assert T.values_at(np.array([[2, 0, 1]]))[0] == -2.0


def test_incomplete_triplets_drop_nan_values():
    T = IncompleteTensor.from_entries([[0, 0], [1, 1]], [np.nan, 3.0], (2, 2))
    assert T.nnz == 1 and T.vals[0] == 3.0


def test_tensor_is_returned_as_is(rng):
    T, _, _ = make("cpd", (3, 4), rng)
    assert as_tensor(T) is T


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32, np.bool_, ">f8", ">i4"])
def test_dtypes_become_native_float64(dtype):
    x = np.arange(1, 7).reshape(2, 3).astype(dtype)
    T = as_tensor(x)
    assert T.data.dtype == np.float64 and T.data.dtype.isnative
    np.testing.assert_array_equal(T.data, x.astype(np.float64))


def test_nested_lists_are_arrays():
    T = as_tensor([[1, 2], [3, float("nan")]])
    assert isinstance(T, MaskedTensor) and T.known_entries().vals.tolist() == [1.0, 2.0, 3.0]


def test_dataarray_keeps_dims_and_coords(rng):
    xr = pytest.importorskip("xarray")
    X = rng.standard_normal((3, 4))
    X[0, 0] = np.nan
    da = xr.DataArray(X, dims=("time", "sensor"), coords={"sensor": list("abcd")})
    T = as_tensor(da)
    assert isinstance(T, MaskedTensor) and T.dims == ("time", "sensor")
    np.testing.assert_array_equal(T.coords["time"], np.arange(3))
    np.testing.assert_array_equal(T.coords["sensor"], list("abcd"))
    assert isinstance(T.coords["sensor"], np.ndarray)


def test_dataarray_with_mask(rng):
    xr = pytest.importorskip("xarray")
    da = xr.DataArray(rng.standard_normal((2, 3)), dims=("a", "b"))
    known = np.array([[True, False, True], [True, True, True]])
    mask = xr.DataArray(known.T, dims=("b", "a"))  # aligned by dim name
    T = as_tensor(da, mask=mask)
    assert T.n_known == 5 and T.dims == ("a", "b")
    assert np.isnan(T.to_dense()[0, 1])


def test_plain_arrays_have_no_dims():
    T = as_tensor(np.ones((2, 2)))
    assert T.dims is None and T.coords is None


def test_inputs_are_never_modified(rng):
    X = rng.standard_normal((3, 4))
    X[1, 1] = np.nan
    mask = ~np.isnan(X)
    subs, vals = np.array([[2, 3], [0, 0]]), np.array([1.0, 2.0])
    B, w = [rng.standard_normal((3, 2)), rng.standard_normal((4, 2))], np.ones(2)
    inputs = [X, mask, subs, vals, *B, w]
    copies = [a.copy() for a in inputs]
    for a in inputs:
        a.setflags(write=False)
    as_tensor(X), as_tensor(X, mask=mask), as_tensor(np.nan_to_num(X))
    as_tensor((subs, vals, (3, 4))), as_tensor((subs, vals, (3, 4)), missing="unknown")
    C = CPDTensor(B, w)
    Tk = TuckerTensor(B, np.eye(2))
    for T in (C, Tk, as_tensor(X)):
        T.mttkrp_all(B), T.inner_cpd(B), T.values_at(subs)
    for a, c in zip(inputs, copies):
        np.testing.assert_array_equal(a, c)


def test_dense_tensor_shares_no_writable_memory():
    X = np.ones((2, 3))
    T = DenseTensor(X)
    assert X.flags.writeable and not T.data.flags.writeable


# ----------------------------------------------------------------------------- errors
def test_inf_is_rejected_with_its_index():
    X = np.zeros((2, 3, 4))
    X[1, 0, 2] = np.inf
    with pytest.raises(DataError, match=r"^data: entry \(1, 0, 2\) is inf; Inf is not allowed"):
        as_tensor(X)


def test_error_messages_start_with_name():
    with pytest.raises(DataError, match=r"^eem: entry \(0, 1\) is inf"):
        as_tensor([[1.0, -np.inf]], name="eem")


def test_inf_in_triplet_values():
    with pytest.raises(DataError, match=r"data: entry \(1, 1\) is inf"):
        as_tensor(([[0, 0], [1, 1]], [1.0, np.inf], (2, 2)))


def test_inf_in_scipy_sparse():
    with pytest.raises(DataError, match=r"data: entry \(0, 0\) is inf"):
        as_tensor(sp.csr_matrix(np.array([[np.inf, 0.0], [0.0, 1.0]])))


def test_inf_in_incomplete_array():
    with pytest.raises(DataError, match=r"data: entry \(0, 1\) is inf"):
        as_tensor([[np.nan, np.inf]])


@pytest.mark.parametrize(("mask", "match"), [
    (np.ones((2, 2), dtype=bool), r"data: mask must have the data's shape \(2, 3\), got \(2, 2\)"),
    (np.ones((2, 3)), r"data: mask must be a boolean array .* got dtype float64"),
])
def test_bad_mask(mask, match):
    with pytest.raises(DataError, match=match):
        as_tensor(np.ones((2, 3)), mask=mask)


def test_mask_marking_a_nan_known():
    with pytest.raises(DataError, match=r"data: entry \(0, 1\) is NaN but the mask marks it"):
        as_tensor([[1.0, np.nan]], mask=np.array([[True, True]]))


@pytest.mark.parametrize(("subs", "match"), [
    ([[0, 3]], r"data: subs row 0 is \(0, 3\): index 3 out of range for mode 1 of size 3"),
    ([[0, 0], [-1, 0]], r"data: subs row 1 is \(-1, 0\): index -1 out of range for mode 0"),
    ([[0.0, 1.0]], r"data: subs must be an \(nnz, 2\) integer array, got .* dtype float64"),
    ([[0, 1, 1]], r"data: subs must be an \(nnz, 2\) integer array, got shape \(1, 3\)"),
    ([0, 1], r"data: subs must be an \(nnz, 2\) integer array, got shape \(2,\)"),
])
def test_bad_subs(subs, match):
    with pytest.raises(DataError, match=match):
        as_tensor((np.array(subs), np.ones(len(subs)), (2, 3)))


def test_vals_length_mismatch():
    with pytest.raises(DataError, match=r"data: vals must have shape \(2,\) to match subs, "
                                        r"got \(3,\)"):
        as_tensor(([[0, 0], [1, 1]], [1.0, 2.0, 3.0], (2, 2)))


def test_duplicate_entries():
    with pytest.raises(DataError, match=r"data: entry \(1, 1\) appears more than once"):
        as_tensor(([[1, 1], [0, 0], [1, 1]], [1.0, 2.0, 3.0], (2, 2)), missing="unknown")


def test_nan_in_sparse_triplets():
    with pytest.raises(DataError, match=r"data: entry \(0, 0\) is NaN; the entries of sparse"):
        as_tensor(([[0, 0]], [np.nan], (2, 2)))


@pytest.mark.parametrize(("shape", "match"), [
    ((2, 0), r"data: shape \(2, 0\) has an empty dimension"),
    ((2, -1), r"data: shape \(2, -1\) has an empty dimension"),
    ((2.5, 2), r"data: shape must be a non-empty tuple of ints, got \(2.5, 2\)"),
    ("ab", r"data: shape must be a tuple of ints, got 'ab'"),
])
def test_bad_triplet_shape(shape, match):
    with pytest.raises(DataError, match=match):
        as_tensor((np.zeros((0, 2), dtype=int), [], shape))


@pytest.mark.parametrize(("x", "match"), [
    (np.float64(3.0), r"data: expected an array with at least one mode, got a scalar"),
    (np.ones((3, 0)), r"data: shape \(3, 0\) has an empty dimension"),
    (np.full((2, 2), np.nan), r"data: all entries are missing"),
    (np.array([["a", "b"]]), r"data: data has dtype <U1; expected real numbers"),
    (np.array([["x", 1.0]], dtype=object), r"data: data has dtype object; expected real"),
    ([[1.0, 2.0], [3.0]], r"data: data is not a regular numeric array"),
])
def test_bad_arrays(x, match):
    with pytest.raises(DataError, match=match):
        as_tensor(x)


def test_all_entries_masked_out():
    with pytest.raises(DataError, match=r"data: all entries are missing"):
        as_tensor(np.ones((2, 2)), mask=np.zeros((2, 2), dtype=bool))


def test_incomplete_triplets_without_entries():
    with pytest.raises(DataError, match=r"data: all entries are missing"):
        as_tensor((np.zeros((0, 2), dtype=int), [], (2, 2)), missing="unknown")


def test_bad_missing_keyword():
    with pytest.raises(DataError, match=r"missing: expected 'zero' or 'unknown', got 'nan'"):
        as_tensor(np.ones((2, 2)), missing="nan")


@pytest.mark.parametrize("x", [CPDTensor([np.ones((2, 1))] * 2), sp.eye(2),
                               ([[0, 0]], [1.0], (2, 2))], ids=["tensor", "scipy", "triplet"])
def test_mask_only_with_arrays(x):
    with pytest.raises(DataError, match=r"data: a mask cannot be combined with"):
        as_tensor(x, mask=np.ones((2, 2), dtype=bool))


def test_dense_tensor_rejects_nan():
    with pytest.raises(DataError, match=r"data: entry \(0, 1\) is NaN; a DenseTensor has no"):
        DenseTensor([[1.0, np.nan]])


def test_sparse_tensor_needs_scipy_sparse():
    with pytest.raises(DataError, match=r"data: expected a scipy.sparse array or matrix, got "
                                        r"ndarray"):
        SparseTensor(np.eye(2))


def test_complex_scipy_sparse_stays_complex():
    T = as_tensor(sp.eye(2, dtype=complex) * (1 + 2j))
    assert T.vals.dtype == np.complex128
    np.testing.assert_array_equal(T.vals, [1 + 2j, 1 + 2j])
    assert T.norm_squared() == pytest.approx(10.0)


@pytest.mark.parametrize(("factors", "match"), [
    ([np.ones((3, 2))], r"factors: expected 2 factor matrices \(one per mode"),
    ([np.ones((3, 2)), np.ones((5, 2))],
     r"factors\[1\]: expected 4 rows to match mode 1 of the data, got 5"),
    ([np.ones((3, 2)), np.ones((4, 3))], r"factors: expected the same number of columns in "
                                         r"every factor, got \[2, 3\]"),
    ([np.ones((3, 2)), np.ones(4)], r"factors\[1\]: expected a matrix \(I_n, R\), got "
                                    r"shape \(4,\)"),
])
@pytest.mark.parametrize("kind", KINDS)
def test_bad_model_factors(kind, factors, match, rng):
    T, _, _ = make(kind, (3, 4), rng)
    with pytest.raises(DataError, match=match):
        T.mttkrp(factors, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_tucker_core(kind, rng):
    T, _, _ = make(kind, (3, 4), rng)
    with pytest.raises(DataError, match=r"core: core must have shape \(2, 1\) \(the factors' "
                                        r"columns\), got \(2, 2\)"):
        T.inner_tucker([np.ones((3, 2)), np.ones((4, 1))], np.ones((2, 2)))


@pytest.mark.parametrize("mode", [2, -3, 1.0])
def test_bad_mode(mode, rng):
    T, _, _ = make("sparse", (3, 4), rng)
    with pytest.raises(DataError, match=r"mode: expected an int in \[0, 2\), got"):
        T.mttkrp([np.ones((3, 1)), np.ones((4, 1))], mode)


def test_bad_query_subs(rng):
    T, _, _ = make("dense", (3, 4), rng)
    with pytest.raises(DataError, match=r"subs: subs row 0 is \(3, 0\): index 3 out of range"):
        T.values_at(np.array([[3, 0]]))


def test_cpd_tensor_validation():
    with pytest.raises(DataError, match=r"data: weights must have shape \(2,\), got \(3,\)"):
        CPDTensor([np.ones((2, 2)), np.ones((3, 2))], weights=np.ones(3))
    with pytest.raises(DataError, match=r"data: factors and weights must be finite"):
        CPDTensor([np.ones((2, 2)), np.full((3, 2), np.nan)])


def test_tucker_tensor_validation():
    with pytest.raises(DataError, match=r"data: core must have shape \(2, 2\)"):
        TuckerTensor([np.ones((2, 2)), np.ones((3, 2))], np.ones((2, 3)))
    with pytest.raises(DataError, match=r"data: factors and core must be finite"):
        TuckerTensor([np.ones((2, 2)), np.ones((3, 2))], np.full((2, 2), np.inf))


def test_tensor_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Tensor()
