"""Entries held in chunks (coordinates and values as dask/zarr arrays): every protocol
operation against the in-memory sparse and incomplete kinds, fits equal to theirs,
duplicate and range checks, and nothing gathered when the other entries are zeros."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

import sdf  # noqa: E402
from sdf import algebra  # noqa: E402
from sdf.errors import DataError  # noqa: E402
from sdf.tensors import DaskEntriesTensor, IncompleteTensor, SparseTensor, as_tensor  # noqa: E402
from sdf.tensors import _dask_entries  # noqa: E402
from test_dask import _assert_same, _fit, _max_reldiff, _protocol_results  # noqa: E402


def _entries(rng: np.random.Generator, shape: tuple[int, ...], n: int, shuffle: bool = True
             ) -> tuple[np.ndarray, np.ndarray]:
    lin = np.unique(rng.integers(0, int(np.prod(shape)), n))
    if shuffle:
        rng.shuffle(lin)
    return np.stack(np.unravel_index(lin, shape), axis=1), rng.standard_normal(lin.size)


def _chunked(subs: np.ndarray, vals: np.ndarray, chunk: int) -> tuple[object, object]:
    return da.from_array(subs, chunks=(chunk, subs.shape[1])), da.from_array(vals, chunks=chunk)


@pytest.mark.parametrize("missing", ["zero", "unknown"])
@pytest.mark.parametrize("shape", [(13, 11, 9), (17, 12), (6, 5, 4, 3)])
def test_protocol_operations_agree_with_the_in_memory_kinds(shape, missing, rng):
    subs, vals = _entries(rng, shape, int(0.3 * np.prod(shape)))
    chunked = as_tensor((*_chunked(subs, vals, 37), shape), missing=missing)
    assert isinstance(chunked, DaskEntriesTensor)
    in_memory = as_tensor((subs, vals, shape), missing=missing)
    assert type(in_memory) is (SparseTensor if missing == "zero" else IncompleteTensor)
    _assert_same(_protocol_results(chunked, np.random.default_rng(2)),
                 _protocol_results(in_memory, np.random.default_rng(2)))
    if missing == "unknown":
        got, want = chunked.known_entries(), in_memory.known_entries()
        assert np.array_equal(got.subs, want.subs) and np.array_equal(got.vals, want.vals)
    else:
        assert chunked.known_entries() is None


@pytest.mark.parametrize("complex_factors", [False, True])
@pytest.mark.parametrize("missing", ["zero", "unknown"])
def test_complex_entries_agree_with_the_in_memory_kinds(missing, complex_factors, rng):
    """Complex values in chunks stay complex (they were refused)."""
    shape = (13, 11, 9)
    subs, vals = _entries(rng, shape, int(0.3 * np.prod(shape)))
    vals = vals + 1j * rng.standard_normal(vals.shape)
    chunked = as_tensor((*_chunked(subs, vals, 37), shape), missing=missing)
    in_memory = as_tensor((subs, vals, shape), missing=missing)
    assert chunked.is_complex and chunked.to_dense().dtype == np.complex128
    _assert_same(_protocol_results(chunked, np.random.default_rng(2), complex_factors),
                 _protocol_results(in_memory, np.random.default_rng(2), complex_factors))
    if missing == "unknown":
        got, want = chunked.known_entries(), in_memory.known_entries()
        assert np.array_equal(got.subs, want.subs) and np.array_equal(got.vals, want.vals)


def test_cpd_fits_of_chunked_entries_equal_the_in_memory_fits(rng):
    shape, rank = (20, 18, 16), 3
    A = [rng.standard_normal((I, rank)) for I in shape]
    subs, _ = _entries(rng, shape, 3000)
    vals = algebra.cpd_to_tensor(A)[tuple(subs.T)]
    start = [M + 0.3 * rng.standard_normal(M.shape) for M in A]
    for missing in ("zero", "unknown"):
        chunked = as_tensor((*_chunked(subs, vals, 400), shape), missing=missing)
        in_memory = as_tensor((subs, vals, shape), missing=missing)
        assert _max_reldiff(_fit(chunked, start), _fit(in_memory, start)) <= 1e-10


def test_a_zarr_coordinate_store_opens_lazily_and_fits(tmp_path, rng):
    shape = (15, 14, 13)
    A = [rng.random((I, 2)) for I in shape]
    subs, _ = _entries(rng, shape, 1500, shuffle=False)
    vals = algebra.cpd_to_tensor(A)[tuple(subs.T)]
    zs = zarr.open(str(tmp_path / "subs.zarr"), mode="w", shape=subs.shape,
                   chunks=(300, 3), dtype="int64")
    zs[:] = subs
    zv = zarr.open(str(tmp_path / "vals.zarr"), mode="w", shape=vals.shape, chunks=(300,),
                   dtype="float64")
    zv[:] = vals
    T = as_tensor((zs, zv, shape), missing="unknown")
    assert isinstance(T, DaskEntriesTensor) and T.nnz == subs.shape[0]
    dec = sdf.models.cpd(T, 2, seed=0)
    assert dec.relerr < 1e-6


def test_duplicates_across_chunks_are_found_where_chunk_ranges_overlap(rng):
    shape = (9, 8, 7)
    subs, vals = _entries(rng, shape, 200, shuffle=False)
    subs2 = np.concatenate([subs, subs[[5]]])
    vals2 = np.concatenate([vals, [1.0]])
    T = as_tensor((*_chunked(subs2, vals2, 50), shape))
    expected = tuple(int(i) for i in subs[5])
    with pytest.raises(DataError, match=rf"entry \({expected[0]}, {expected[1]}, "
                                        rf"{expected[2]}\) appears more than once"):
        T.norm()
    # Sorted entries never overlap: no cross-chunk comparison is needed, and none fails.
    assert as_tensor((*_chunked(subs, vals, 50), shape)).norm() == pytest.approx(
        np.linalg.norm(vals))


@pytest.mark.parametrize(("subs", "vals", "match"), [
    (np.array([[0, 0], [5, 0]]), np.array([1.0, 2.0]), r"data: .*out of range|index 5"),
    (np.array([[0, 0], [1, 0]]), np.array([1.0, np.inf]), r"data: entry \(1, 0\) is inf"),
    (np.array([[0, 0], [1, 0]]), np.array([1.0, np.nan]), r"data: entry \(1, 0\) is NaN"),
    (np.array([[0, 0, 0]]), np.array([1.0]), r"subs must have shape \(nnz, 2\)"),
    (np.array([[0.5, 0.0]]), np.array([1.0]), r"subs must be integers"),
    (np.array([[0, 0]]), np.array(["a"]), r"vals must be real or complex numbers, got "
                                          r"dtype <U1"),
])
def test_bad_entries_are_located_errors(subs, vals, match):
    T = None
    with pytest.raises(DataError, match=match):
        T = as_tensor((*_chunked(subs, vals, 1), (3, 4)))
        T.norm()


def test_missing_entries_past_the_memory_limit_are_refused_with_the_size(rng):
    subs, vals = _entries(rng, (10, 10, 10), 300)
    T = DaskEntriesTensor(*_chunked(subs, vals, 64), (10, 10, 10), missing="unknown",
                          max_known_bytes=1000)
    with pytest.raises(DataError, match=r"need .* GiB in memory, above the limit"):
        T.known_entries()


def test_to_dense_refuses_past_its_limit(monkeypatch, rng):
    subs, vals = _entries(rng, (10, 10, 10), 30)
    T = as_tensor((*_chunked(subs, vals, 8), (10, 10, 10)))
    assert T.to_dense()[tuple(subs.T)].tolist() == vals.tolist()
    monkeypatch.setattr(_dask_entries, "MAX_DENSE_BYTES", 100)
    with pytest.raises(DataError, match=r"above the limit .* for to_dense"):
        T.to_dense()


def test_extreme_scales_fit_like_the_in_memory_entries(rng):
    shape = (12, 10, 8)
    A = [rng.standard_normal((I, 2)) for I in shape]
    subs, _ = _entries(rng, shape, 600)
    vals = 1e-280 * algebra.cpd_to_tensor(A)[tuple(subs.T)]
    start = [1e-94 * M + 1e-95 * rng.standard_normal(M.shape) for M in A]
    T = as_tensor((*_chunked(subs, vals, 100), shape), missing="unknown")
    assert T.scale_exponent() == as_tensor((subs, vals, shape)).scale_exponent() < -900
    # Six iterations: while the objective falls fast each takes at most 3 CG steps.
    chunked = _fit(T, start, max_iter=6)
    in_memory = _fit(as_tensor((subs, vals, shape), missing="unknown"), start, max_iter=6)
    assert chunked.relerr["t"] < 1e-3
    assert _max_reldiff(chunked, in_memory) <= 1e-10
