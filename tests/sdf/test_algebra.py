"""Tests of sdf.algebra against textbook definitions on small random data."""

from __future__ import annotations

import functools
import string
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdf import algebra as al
from sdf.errors import DataError

FAST = settings(max_examples=30, deadline=None)
shapes = st.lists(st.integers(1, 4), min_size=2, max_size=5).map(tuple)
ranks = st.integers(1, 4)
seeds = st.integers(0, 2**32 - 1)


def _factors(rng, shape, R, dtype=float):
    out = [rng.standard_normal((s, R)) for s in shape]
    if dtype is complex:
        out = [A + 1j * rng.standard_normal(A.shape) for A in out]
    return out


def _readonly(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _einsum_cpd(factors):
    """Textbook CPD: T[i0, ..., iN] = sum_r prod_n A_n[i_n, r] (einsum)."""
    letters = string.ascii_lowercase[: len(factors)]
    spec = ",".join(f"{c}z" for c in letters) + "->" + letters
    return np.einsum(spec, *factors)


def _unfold_textbook(T, n):
    """Entry (i_n, j) with j the C-order linear index of the other indices."""
    other = [m for m in range(T.ndim) if m != n]
    M = np.empty((T.shape[n], int(np.prod([T.shape[m] for m in other]))), dtype=T.dtype)
    idx = np.indices(T.shape).reshape(T.ndim, -1)
    cols = np.ravel_multi_index(idx[other], [T.shape[m] for m in other]) if other else 0
    M[idx[n], cols] = T.reshape(-1)
    return M


def _naive_mttkrp(T, factors, n):
    return al.unfold(T, n) @ al.khatri_rao(factors, skip=n)


# ------------------------------------------------------------------ unfold / fold
@FAST
@given(shape=shapes, seed=seeds, data=st.data())
def test_unfold_matches_textbook_definition(shape, seed, data):
    T = np.random.default_rng(seed).standard_normal(shape)
    n = data.draw(st.integers(0, len(shape) - 1))
    np.testing.assert_array_equal(al.unfold(T, n), _unfold_textbook(T, n))


@FAST
@given(shape=shapes, seed=seeds, data=st.data())
def test_fold_inverts_unfold(shape, seed, data):
    T = np.random.default_rng(seed).standard_normal(shape)
    n = data.draw(st.integers(-len(shape), len(shape) - 1))
    np.testing.assert_array_equal(al.fold(al.unfold(T, n), n, shape), T)


def test_unfold_rejects_mode_out_of_range(rng):
    with pytest.raises(DataError, match=r"mode: expected an integer in \[-3, 2\].*got 3"):
        al.unfold(rng.standard_normal((2, 3, 4)), 3)


def test_unfold_rejects_non_integer_mode(rng):
    with pytest.raises(DataError, match="mode: expected an integer, got float"):
        al.unfold(rng.standard_normal((2, 3)), 1.0)


def test_fold_rejects_wrong_matrix_shape(rng):
    with pytest.raises(DataError, match=r"M: expected shape \(3, 8\).*got \(3, 7\)"):
        al.fold(rng.standard_normal((3, 7)), 1, (2, 3, 4))


# --------------------------------------------------------------- Khatri-Rao, kron
@FAST
@given(rows=st.lists(st.integers(1, 4), min_size=1, max_size=4), R=ranks, seed=seeds)
def test_khatri_rao_is_columnwise_kron(rows, R, seed):
    mats = _factors(np.random.default_rng(seed), rows, R)
    expected = np.stack(
        [functools.reduce(np.kron, [M[:, r] for M in mats]) for r in range(R)], axis=1
    )
    np.testing.assert_allclose(al.khatri_rao(mats), expected, rtol=1e-13)


def test_khatri_rao_index_convention(rng):
    B, C = rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    K = al.khatri_rao([B, C])
    j, k, r = 2, 1, 1
    assert K[j * 4 + k, r] == B[j, r] * C[k, r]


def test_khatri_rao_of_column_major_factors_is_c_ordered(rng):
    """Solves return factors column-major; the product is still written row-major (a
    column-major one would be copied whole by the flattening)."""
    B = np.asfortranarray(rng.standard_normal((3, 2)))
    C = np.asfortranarray(rng.standard_normal((4, 2)) + 1j)
    K = al.khatri_rao([B, C, B])
    assert K.flags.c_contiguous and K.dtype == complex
    np.testing.assert_allclose(K, np.einsum("ar,br,cr->abcr", B, C, B).reshape(36, 2),
                               rtol=1e-14)
    # and written once: no column-major product flattened by a copy of itself
    B, C = (np.asfortranarray(rng.standard_normal((n, 40))) for n in (100, 120))
    tracemalloc.start()
    K = al.khatri_rao([B, C])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.2 * K.nbytes


def test_khatri_rao_skip_leaves_one_out(rng):
    mats = _factors(rng, (2, 3, 4, 2), 3)
    np.testing.assert_array_equal(
        al.khatri_rao(mats, skip=-2), al.khatri_rao([mats[0], mats[1], mats[3]])
    )


def test_khatri_rao_rejects_column_mismatch(rng):
    mats = [rng.standard_normal((2, 3)), rng.standard_normal((4, 2))]
    with pytest.raises(DataError, match=r"matrices\[1\]: expected 3 columns.*got shape \(4, 2\)"):
        al.khatri_rao(mats)


def test_khatri_rao_rejects_non_matrix(rng):
    with pytest.raises(DataError, match=r"matrices\[0\]: expected a 2-D array, got shape \(3,\)"):
        al.khatri_rao([rng.standard_normal(3)])


def test_khatri_rao_rejects_bare_matrix(rng):
    with pytest.raises(DataError, match="matrices: expected a sequence of matrices"):
        al.khatri_rao(rng.standard_normal((3, 2)))


def test_khatri_rao_rejects_empty_after_skip(rng):
    with pytest.raises(DataError, match=r"matrices: expected at least one matrix \(after skip\)"):
        al.khatri_rao([rng.standard_normal((3, 2))], skip=0)


def test_khatri_rao_rejects_bad_skip(rng):
    with pytest.raises(DataError, match=r"skip: expected an integer in \[-2, 1\].*got 2"):
        al.khatri_rao([np.ones((2, 2)), np.ones((3, 2))], skip=2)


@FAST
@given(
    dims=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=4),
    seed=seeds,
)
def test_kron_matches_numpy(dims, seed):
    rng = np.random.default_rng(seed)
    mats = [rng.standard_normal(d) for d in dims]
    expected = functools.reduce(np.kron, mats)
    np.testing.assert_allclose(al.kron(*mats), expected, rtol=1e-13)
    np.testing.assert_allclose(al.kron(mats), expected, rtol=1e-13)


def test_kron_of_vectors_is_a_vector(rng):
    a, b = rng.standard_normal(2), rng.standard_normal(3)
    np.testing.assert_allclose(al.kron(a, b), np.kron(a, b))


def test_kron_consistent_with_khatri_rao(rng):
    B, C = rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    for r in range(2):
        np.testing.assert_allclose(al.kron(B[:, [r]], C[:, [r]])[:, 0], al.khatri_rao([B, C])[:, r])


def test_kron_rejects_mixed_dimensions(rng):
    with pytest.raises(DataError, match=r"matrices\[1\]: expected a 2-D array like matrices\[0\]"):
        al.kron(rng.standard_normal((2, 2)), rng.standard_normal(3))


def test_kron_rejects_empty():
    with pytest.raises(DataError, match="matrices: expected at least one matrix"):
        al.kron()


# ---------------------------------------------------------------------- tmprod
@FAST
@given(shape=shapes, seed=seeds, data=st.data())
def test_tmprod_single_mode_definition(shape, seed, data):
    rng = np.random.default_rng(seed)
    T = rng.standard_normal(shape)
    n = data.draw(st.integers(0, len(shape) - 1))
    U = rng.standard_normal((data.draw(st.integers(1, 4)), shape[n]))
    out = al.tmprod(T, U, n)
    new_shape = shape[:n] + (U.shape[0],) + shape[n + 1 :]
    np.testing.assert_allclose(out, al.fold(U @ al.unfold(T, n), n, new_shape), atol=1e-12)


@FAST
@given(shape=shapes, seed=seeds)
def test_tmprod_all_modes_is_sequential_products(shape, seed):
    rng = np.random.default_rng(seed)
    T = rng.standard_normal(shape)
    mats = [rng.standard_normal((s, int(rng.integers(1, 4)))) for s in shape]
    expected = T
    for n, U in enumerate(mats):
        expected = np.moveaxis(np.tensordot(U.T, expected, axes=(1, n)), 0, n)
    np.testing.assert_allclose(al.tmprod(T, mats, transpose=True), expected, atol=1e-12)
    transposed = [U.T.copy() for U in mats]
    np.testing.assert_allclose(al.tmprod(T, transposed), expected, atol=1e-12)


def test_tmprod_subset_of_modes_in_any_order(rng):
    T = rng.standard_normal((3, 4, 5))
    U0, U2 = rng.standard_normal((2, 3)), rng.standard_normal((6, 5))
    a = al.tmprod(T, [U2, U0], [2, 0])
    b = al.tmprod(al.tmprod(T, U0, 0), U2, 2)
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert a.shape == (2, 4, 6)


def test_tmprod_rejects_wrong_columns(rng):
    with pytest.raises(DataError, match=r"matrices\[0\]: expected 4 columns to match mode 1"):
        al.tmprod(rng.standard_normal((3, 4, 5)), rng.standard_normal((2, 3)), 1)


def test_tmprod_rejects_duplicate_modes(rng):
    U = rng.standard_normal((2, 3))
    with pytest.raises(DataError, match=r"modes: expected distinct modes, got \[0, 0\]"):
        al.tmprod(rng.standard_normal((3, 3)), [U, U], [0, 0])


def test_tmprod_rejects_modes_count_mismatch(rng):
    with pytest.raises(DataError, match="modes: expected 1 modes"):
        al.tmprod(rng.standard_normal((3, 3)), [np.ones((2, 3))], [0, 1])


def test_tmprod_rejects_missing_modes(rng):
    with pytest.raises(DataError, match="matrices: expected 3 matrices"):
        al.tmprod(rng.standard_normal((3, 3, 3)), [np.ones((2, 3))])


def test_tmprod_rejects_bool_mode(rng):
    with pytest.raises(DataError, match="modes: expected an integer, got bool"):
        al.tmprod(rng.standard_normal((3, 3)), [np.ones((2, 3))], True)


# ----------------------------------------------------------------- CPD / Tucker
@FAST
@given(shape=shapes, R=ranks, seed=seeds)
def test_cpd_to_tensor_matches_einsum_and_unfolding_identity(shape, R, seed):
    A = _factors(np.random.default_rng(seed), shape, R)
    T = al.cpd_to_tensor(A)
    np.testing.assert_allclose(T, _einsum_cpd(A), atol=1e-12)
    for n in range(len(shape)):
        np.testing.assert_allclose(
            al.unfold(T, n), A[n] @ al.khatri_rao(A, skip=n).T, atol=1e-12
        )


def test_cpd_to_tensor_weights(rng):
    A = _factors(rng, (2, 3, 4), 3)
    w = rng.standard_normal(3)
    expected = _einsum_cpd([A[0] * w, A[1], A[2]])
    np.testing.assert_allclose(al.cpd_to_tensor(A, weights=w), expected, atol=1e-12)


def test_cpd_to_tensor_rejects_bad_weights(rng):
    with pytest.raises(DataError, match=r"weights: expected shape \(3,\).*got \(2,\)"):
        al.cpd_to_tensor(_factors(rng, (2, 3), 3), weights=np.ones(2))


@FAST
@given(shape=shapes, seed=seeds)
def test_tucker_to_tensor_matches_einsum(shape, seed):
    rng = np.random.default_rng(seed)
    core_shape = tuple(int(rng.integers(1, 4)) for _ in shape)
    S = rng.standard_normal(core_shape)
    U = [rng.standard_normal((s, r)) for s, r in zip(shape, core_shape)]
    letters = string.ascii_lowercase[: len(shape)]
    upper = letters.upper()
    spec = upper + "," + ",".join(f"{a}{b}" for a, b in zip(letters, upper)) + "->" + letters
    np.testing.assert_allclose(al.tucker_to_tensor(U, S), np.einsum(spec, S, *U), atol=1e-12)


def test_tucker_to_tensor_rejects_factor_count(rng):
    with pytest.raises(DataError, match=r"factors: expected 3 matrices \(one per mode of the core"):
        al.tucker_to_tensor([np.ones((2, 2))], np.ones((2, 2, 2)))


def test_tucker_to_tensor_rejects_factor_columns(rng):
    with pytest.raises(DataError, match=r"factors\[1\]: expected 2 columns to match mode 1 of core"):
        al.tucker_to_tensor([np.ones((3, 2)), np.ones((3, 3))], np.ones((2, 2)))


# ---------------------------------------------------------------------- MTTKRP
@FAST
@given(shape=shapes, R=ranks, seed=seeds)
def test_mttkrp_matches_naive_every_mode(shape, R, seed):
    rng = np.random.default_rng(seed)
    T = rng.standard_normal(shape)
    A = _factors(rng, shape, R)
    for n in range(len(shape)):
        np.testing.assert_allclose(al.mttkrp(T, A, n), _naive_mttkrp(T, A, n), atol=1e-11)


@FAST
@given(shape=shapes, R=ranks, seed=seeds)
def test_mttkrp_all_matches_naive(shape, R, seed):
    rng = np.random.default_rng(seed)
    T = rng.standard_normal(shape)
    A = _factors(rng, shape, R)
    G = al.mttkrp_all(T, A)
    assert len(G) == len(shape)
    for n, g in enumerate(G):
        np.testing.assert_allclose(g, _naive_mttkrp(T, A, n), atol=1e-11)


@pytest.mark.parametrize("layout", ["F", "strided", "transposed"])
def test_mttkrp_any_memory_layout(rng, layout):
    base = rng.standard_normal((4, 6, 5, 3))
    T = {
        "F": np.asfortranarray(base),
        "strided": base[:, ::2, :, :],
        "transposed": base.transpose(2, 0, 3, 1),
    }[layout]
    A = _factors(rng, T.shape, 3)
    G = al.mttkrp_all(T, A)
    for n in range(T.ndim):
        expected = _naive_mttkrp(np.ascontiguousarray(T), A, n)
        np.testing.assert_allclose(G[n], expected, atol=1e-11)
        np.testing.assert_allclose(al.mttkrp(T, A, n), expected, atol=1e-11)


def test_mttkrp_complex_without_conjugation(rng):
    A = _factors(rng, (3, 4, 2), 2, dtype=complex)
    T = rng.standard_normal((3, 4, 2)) + 1j * rng.standard_normal((3, 4, 2))
    for n, g in enumerate(al.mttkrp_all(T, A)):
        np.testing.assert_allclose(g, _naive_mttkrp(T, A, n), atol=1e-12)


def test_mttkrp_rejects_wrong_rows(rng):
    A = _factors(rng, (3, 5, 2), 2)
    with pytest.raises(DataError, match=r"factors\[1\]: expected 4 rows to match mode 1"):
        al.mttkrp(rng.standard_normal((3, 4, 2)), A, 0)


def test_mttkrp_all_rejects_factor_count(rng):
    with pytest.raises(DataError, match="factors: expected 3 factor matrices"):
        al.mttkrp_all(rng.standard_normal((3, 4, 2)), _factors(rng, (3, 4), 2))


def test_mttkrp_all_rejects_rank_mismatch(rng):
    A = [rng.standard_normal((3, 2)), rng.standard_normal((4, 3))]
    with pytest.raises(DataError, match=r"factors: expected the same number of columns in every factor, got \[2, 3\]"):
        al.mttkrp_all(rng.standard_normal((3, 4)), A)


def test_mttkrp_rejects_vector(rng):
    with pytest.raises(DataError, match=r"T: expected a tensor of order >= 2, got shape \(3,\)"):
        al.mttkrp(rng.standard_normal(3), [np.ones((3, 1))], 0)


# ------------------------------------------------------- Gramians, norms, inners
def test_gramians_and_hadamard_give_khatri_rao_gram(rng):
    A = _factors(rng, (3, 4, 5, 2), 3, dtype=complex)
    for n in range(4):
        K = al.khatri_rao(A, skip=n)
        np.testing.assert_allclose(
            al.hadamard(al.gramians(A), skip=n), K.conj().T @ K, atol=1e-12
        )


def test_hadamard_rejects_shape_mismatch(rng):
    with pytest.raises(DataError, match=r"matrices\[1\]: expected shape \(2, 2\)"):
        al.hadamard([np.ones((2, 2)), np.ones((2, 3))])


@FAST
@given(shape=shapes, seed=seeds)
def test_frob_and_inner_match_definitions(shape, seed):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal(shape), rng.standard_normal(shape)
    assert al.frob(X) == pytest.approx(np.sqrt(np.sum(X * X)), rel=1e-12)
    assert al.frob(X, squared=True) == pytest.approx(np.sum(X * X), rel=1e-12)
    assert al.inner(X, Y) == pytest.approx(np.sum(X * Y), rel=1e-10, abs=1e-12)


def test_inner_conjugates_first_argument(rng):
    X = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    Y = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    assert al.inner(X, Y) == pytest.approx(np.sum(X.conj() * Y))
    assert al.inner(X, X) == pytest.approx(al.frob(X, squared=True))


def test_frob_of_integers(rng):
    assert al.frob(np.array([[3, 4]])) == 5.0


def test_inner_rejects_shape_mismatch(rng):
    with pytest.raises(DataError, match=r"Y: expected shape \(2, 3\) to match X, got \(3, 2\)"):
        al.inner(np.ones((2, 3)), np.ones((3, 2)))


@FAST
@given(shape=shapes, R=ranks, seed=seeds)
def test_cpd_norm_squared_matches_full_tensor(shape, R, seed):
    rng = np.random.default_rng(seed)
    A = _factors(rng, shape, R)
    w = rng.standard_normal(R)
    full = al.cpd_to_tensor(A, weights=w)
    assert al.cpd_norm_squared(A, weights=w) == pytest.approx(
        al.frob(full, squared=True), rel=1e-10, abs=1e-12
    )


@pytest.mark.parametrize("dtype", [float, complex])
def test_cpd_inner_matches_full_tensors(rng, dtype):
    A = _factors(rng, (3, 4, 2, 3), 2, dtype=dtype)
    B = _factors(rng, (3, 4, 2, 3), 4, dtype=dtype)
    wa, wb = rng.standard_normal(2), rng.standard_normal(4)
    expected = al.inner(al.cpd_to_tensor(A, wa), al.cpd_to_tensor(B, wb))
    got = al.cpd_inner(A, B, weights_a=wa, weights_b=wb)
    assert got == pytest.approx(expected, rel=1e-10)
    assert isinstance(got, complex if dtype is complex else float)
    assert al.cpd_norm_squared(A) == pytest.approx(al.frob(al.cpd_to_tensor(A), squared=True))


def test_cpd_inner_rejects_shape_mismatch(rng):
    with pytest.raises(DataError, match=r"factors_b\[1\]: expected 4 rows"):
        al.cpd_inner(_factors(rng, (3, 4), 2), _factors(rng, (3, 5), 2))


# ---------------------------------------------------------- inputs not modified
def test_functions_accept_read_only_inputs_and_leave_them_intact(rng):
    T = rng.standard_normal((3, 4, 5))
    A = _factors(rng, (3, 4, 5), 2)
    U = [rng.standard_normal((2, s)) for s in (3, 4, 5)]
    w = rng.standard_normal(2)
    arrays = [T, w, *A, *U]
    copies = [a.copy() for a in arrays]
    _readonly(*arrays)
    al.unfold(T, 1)
    al.fold(al.unfold(T, 2), 2, T.shape)
    al.khatri_rao(A)
    al.kron(A)
    al.tmprod(T, U)
    al.tmprod(T, U[1], 1)
    al.cpd_to_tensor(A, weights=w)
    al.tucker_to_tensor([M.T for M in U], T[:2, :2, :2])
    al.mttkrp(T, A, 1)
    al.mttkrp_all(T, A)
    al.hadamard(al.gramians(A))
    al.frob(T)
    al.inner(T, T)
    al.cpd_norm_squared(A, weights=w)
    al.cpd_inner(A, A, weights_a=w)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


def test_khatri_rao_of_one_matrix_is_a_copy(rng):
    B = rng.standard_normal((3, 2))
    K = al.khatri_rao([B])
    K[0, 0] = 99.0
    assert B[0, 0] != 99.0


def test_all_is_sorted():
    assert al.__all__ == sorted(al.__all__)


# Sparse data (scipy.sparse matrices, sdf.tensors data kinds) in algebra and mlsvd.
mttkrp, tmprod = al.mttkrp, al.tmprod

def _sparse_pair():
    sparse = pytest.importorskip("scipy.sparse")
    M = sparse.random(6, 20, density=0.3, random_state=0, format="coo")
    return M, M.toarray()


@pytest.mark.parametrize("fmt", ["coo", "csr", "csc"])
@pytest.mark.parametrize("mode", [0, 1])
def test_mttkrp_of_a_scipy_sparse_matrix_matches_dense(rng, fmt, mode):
    M, D = _sparse_pair()
    A = [rng.standard_normal((6, 3)), rng.standard_normal((20, 3))]
    assert np.allclose(mttkrp(M.asformat(fmt), A, mode), mttkrp(D, A, mode))


def test_mttkrp_of_a_coordinate_tensor_matches_dense(rng):
    from sdf.tensors import as_tensor
    X = as_tensor((np.array([[0, 1, 2], [1, 2, 3], [2, 0, 4]]), np.array([1.0, 2.0, -1.0]),
                   (3, 4, 5)))
    A = [rng.standard_normal((n, 2)) for n in (3, 4, 5)]
    for n in range(3):
        assert np.allclose(mttkrp(X, A, n), mttkrp(X.to_dense(), A, n))


def test_tmprod_and_mlsvd_of_sparse_data_match_dense(rng):
    from sdf.decomp import mlsvd
    M, D = _sparse_pair()
    U = rng.standard_normal((3, 6))
    assert np.allclose(tmprod(M, U, 0), tmprod(D, U, 0))
    assert np.allclose(mlsvd(M).core, mlsvd(D).core)


def test_raw_coordinate_tuple_gets_a_hint_not_a_shape_error():
    coo = (np.array([[0, 1, 2]]), np.array([1.0]), (3, 4, 5))
    A = [np.ones((n, 2)) for n in (3, 4, 5)]
    with pytest.raises(DataError, match=r"T: a \(subs, vals, shape\) tuple is coordinate "
                                        r"data, not an array; pass sdf.tensors.as_tensor"):
        mttkrp(coo, A, 0)
    with pytest.raises(DataError, match=r"coordinate data"):
        tmprod(coo, np.ones((2, 3)), 0)


@pytest.mark.parametrize("rows, inner, cols, dtype", [(5003, 40, 7, float), (3001, 64, 16, complex),
                                                      (50, 40, 7, float), (4000, 30, 17, float)])
def test_tall_product_equals_matmul(rows, inner, cols, dtype, rng):
    # Tall times narrow goes in blocks of rows (a remainder block included).
    from sdf.algebra import _tall_product

    A = rng.standard_normal((rows, inner)).astype(dtype)
    B = rng.standard_normal((inner, cols)).astype(dtype)
    if dtype is complex:
        A = A + 1j * rng.standard_normal(A.shape)
    np.testing.assert_allclose(_tall_product(A, B), A @ B, rtol=1e-13, atol=1e-12)


# ------------------------------------------------------------------ nearest_kron
@pytest.fixture(params=["dense", "lanczos"])
def kron_pair_path(request, monkeypatch):
    """Both ways to the leading pair: the dense eigendecomposition and Lanczos (forced
    on small matrices by a zero size limit)."""
    if request.param == "lanczos":
        monkeypatch.setattr(al, "_DENSE_KRON_PAIR", 0)
    return request.param


@pytest.mark.parametrize("shape_a, shape_b", [((3, 3), (4, 4)), ((5, 2), (3, 4)),
                                              ((9, 9), (2, 2)), ((2, 2), (7, 7)),
                                              ((17, 17), (20, 20))])
def test_nearest_kron_is_the_rank_one_truncation(shape_a, shape_b, kron_pair_path):
    """The residual is that of the best rank-one approximation of the rearrangement
    (17x17 by 20x20: Lanczos at the default size limit too)."""
    rng = np.random.default_rng(0)
    (pa, qa), (pb, qb) = shape_a, shape_b
    M = rng.standard_normal((pa * pb, qa * qb))
    A, B = al.nearest_kron(M, shape_a, shape_b)
    s = np.linalg.svd(M.reshape(pa, pb, qa, qb).transpose(0, 2, 1, 3).reshape(pa * qa, -1),
                      compute_uv=False)
    assert np.linalg.norm(M - np.kron(A, B)) == pytest.approx(np.sqrt(np.sum(s[1:] ** 2)),
                                                              rel=1e-10)
    assert np.linalg.norm(B) == pytest.approx(1.0)
    assert np.linalg.norm(A) == pytest.approx(s[0], rel=1e-10)


def test_nearest_kron_recovers_a_product_and_keeps_semidefinite_factors():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((4, 6)), rng.standard_normal((3, 5))
    A0, B0 = X @ X.T, Y @ Y.T
    A, B = al.nearest_kron(np.kron(A0, B0), (4, 4), (3, 3))
    np.testing.assert_allclose(np.kron(A, B), np.kron(A0, B0), atol=1e-12 * np.abs(A0).max()
                               * np.abs(B0).max())
    assert np.linalg.eigvalsh((A + A.T) / 2).min() > 0
    assert np.linalg.eigvalsh((B + B.T) / 2).min() > 0


@pytest.mark.parametrize("shift", [0.3, -1.2, 5.0])
def test_nearest_kron_shift_equals_the_shifted_matrix(shift, kron_pair_path):
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((12, 30))
    M = Z @ Z.T
    A, B = al.nearest_kron(M, (3, 3), (4, 4), shift=shift)
    A2, B2 = al.nearest_kron(M - shift * np.eye(12), (3, 3), (4, 4))
    np.testing.assert_allclose(np.kron(A, B), np.kron(A2, B2), atol=1e-10 * np.abs(M).max())


def test_nearest_kron_errors_name_the_argument():
    with pytest.raises(DataError, match=r"M: expected shape \(6, 6\)"):
        al.nearest_kron(np.eye(5), (2, 2), (3, 3))
    with pytest.raises(DataError, match="shift: needs square factors"):
        al.nearest_kron(np.ones((6, 4)), (2, 2), (3, 2), shift=1.0)
