"""Data held in chunks by dask (in memory, zarr, netCDF, a LocalCluster): every protocol
operation against the dense formulas, fits equal to those of the same numpy data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
xr = pytest.importorskip("xarray")

import sdf  # noqa: E402
from sdf import algebra  # noqa: E402
from sdf.decomp import mlsvd, mlsvd_rsi  # noqa: E402
from sdf.errors import DataError  # noqa: E402
from sdf.models import cpd, fms  # noqa: E402
from sdf.tensors import DaskTensor, IncompleteTensor, as_tensor  # noqa: E402
from sdf.tensors import _dask  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _data(rng: np.random.Generator, shape: tuple[int, ...], missing: float = 0.0
          ) -> np.ndarray:
    a = rng.standard_normal(shape)
    if missing:
        a[rng.random(shape) < missing] = np.nan
    return a


def _protocol_results(T: sdf.tensors.Tensor, rng: np.random.Generator,
                      complex_factors: bool = False) -> dict[str, object]:
    """Every protocol operation on T, with random factors drawn the same way each call
    (complex ones with ``complex_factors``)."""
    shape = T.shape

    def draw(*size: int) -> np.ndarray:
        if complex_factors:
            return rng.standard_normal(size) + 1j * rng.standard_normal(size)
        return rng.standard_normal(size)

    A = [draw(I, 3) for I in shape]
    U = [draw(I, r) for I, r in zip(shape, (2, 3, 2, 2))]
    S = draw(*[r for r in (2, 3, 2, 2)][: len(shape)])
    session = T.mttkrp_session(A)
    subs = np.stack([rng.integers(0, I, 7) for I in shape], axis=1)
    P, K = T.project_tucker(U, S)
    return {
        "norm_squared": T.norm_squared(),
        "n_known": T.n_known,
        "inner_cpd": T.inner_cpd(A),
        "inner_tucker": T.inner_tucker(U, S),
        "mttkrp": [T.mttkrp(A, n) for n in range(len(shape))],
        "mttkrp_all": T.mttkrp_all(A),
        "session_inner": session.inner(),
        "session_all": session.all(),
        "project": T.project(U),
        "project_tucker_P": P,
        "project_tucker_K": K,
        "values_at": T.values_at(subs),
        "to_dense": T.to_dense(),
    }


def _assert_same(got: dict[str, object], want: dict[str, object]) -> None:
    for key, value in want.items():
        pairs = zip(got[key], value) if isinstance(value, list) else [(got[key], value)]
        for g, w in pairs:
            np.testing.assert_allclose(np.asarray(g, dtype=complex),
                                       np.asarray(w, dtype=complex),
                                       rtol=1e-12, atol=1e-11, err_msg=key)


CASES = {
    "3-way, uneven chunks": ((13, 11, 9), (5, 4, 9), 0.0),
    "2-way": ((17, 12), (6, 5), 0.0),
    "4-way": ((6, 5, 4, 3), (4, 2, 3, 2), 0.0),
    "3-way with NaN": ((13, 11, 9), (5, 4, 4), 0.2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_protocol_operations_agree_with_the_in_memory_kinds(case, rng):
    shape, chunks, missing = CASES[case]
    a = _data(rng, shape, missing)
    T = as_tensor(da.from_array(a, chunks=chunks))
    assert isinstance(T, DaskTensor) and T.dense_view() is None
    want = _protocol_results(as_tensor(a), np.random.default_rng(1))
    _assert_same(_protocol_results(T, np.random.default_rng(1)), want)


@pytest.mark.parametrize("complex_factors", [False, True])
@pytest.mark.parametrize("missing", [0.0, 0.2])
def test_complex_chunks_agree_with_the_in_memory_kinds(missing, complex_factors, rng):
    """Complex data in chunks stay complex (they were refused): every operation equals
    the numpy data's, missing entries (NaN in either part) included."""
    shape = (13, 11, 9)
    a = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    gaps = rng.random(shape) < missing
    a[gaps] = np.where(rng.random(int(gaps.sum())) < 0.5, np.nan + 1j, 1.0 + 1j * np.nan)
    T = as_tensor(da.from_array(a, chunks=(5, 4, 4)))
    assert T.is_complex and T.to_dense().dtype == np.complex128
    ref = as_tensor(a)
    want = _protocol_results(ref, np.random.default_rng(1), complex_factors)
    _assert_same(_protocol_results(T, np.random.default_rng(1), complex_factors), want)
    if missing:
        got, known = T.known_entries(), ref.known_entries()
        assert got is not None and known is not None
        np.testing.assert_array_equal(got.vals, known.vals)


def test_complex_fit_of_chunks_equals_the_numpy_fit(rng):
    F = [rng.standard_normal((n, 3)) + 1j * rng.standard_normal((n, 3)) for n in (12, 10, 9)]
    a = algebra.cpd_to_tensor(F)
    a = a + 0.01 * (rng.standard_normal(a.shape) + 1j * rng.standard_normal(a.shape))
    want = cpd(a, 3, seed=0)
    got = cpd(da.from_array(a, chunks=(5, 5, 5)), 3, seed=0)
    assert all(np.iscomplexobj(f) for f in got.factors)
    assert got.relerr == pytest.approx(want.relerr, rel=1e-8)
    assert fms(got.factors, F) > 0.999


def test_values_at_reads_only_the_chunks_holding_the_entries(rng):
    a = rng.standard_normal((12, 10, 8))
    reads = []

    def load(block: np.ndarray) -> np.ndarray:
        reads.append(block.shape)
        return block

    x = da.from_array(a, chunks=(6, 5, 4)).map_blocks(load)
    reads.clear()
    J = np.meshgrid(np.arange(6, 12), [0, 2, 4], [1, 3], indexing="ij")
    subs = np.stack([g.ravel() for g in J], axis=1)[::-1]  # any order comes back in order
    np.testing.assert_array_equal(as_tensor(x).values_at(subs), a[tuple(subs.T)])
    assert reads == [(6, 5, 4)]


def test_known_entries_are_those_of_the_numpy_data(rng):
    a = _data(rng, (8, 7, 6), 0.3)
    got = as_tensor(da.from_array(a, chunks=(3, 4, 5))).known_entries()
    want = as_tensor(a).known_entries()
    assert got is not None and want is not None
    np.testing.assert_array_equal(got.subs, want.subs)
    np.testing.assert_array_equal(got.vals, want.vals)
    assert as_tensor(da.from_array(np.ones((3, 4)), chunks=2)).known_entries() is None


def test_conversion_reads_nothing_and_keeps_the_dask_array(rng):
    calls = []

    def load(block: np.ndarray) -> np.ndarray:
        calls.append(block.size)
        return block

    x = da.from_array(rng.standard_normal((6, 5)), chunks=3).map_blocks(load)
    calls.clear()  # map_blocks calls it on an empty array to learn the output type
    T = as_tensor(x)
    assert calls == [] and T.array is x and T.chunks == ((3, 3), (3, 2))
    T.norm_squared()
    assert len(calls) == 4


def test_dask_backed_dataarray_keeps_dims_and_coords_and_stays_lazy(rng):
    a = rng.standard_normal((6, 5, 4))
    arr = xr.DataArray(da.from_array(a, chunks=3), dims=("time", "x", "y"),
                       coords={"time": np.arange(6) * 0.5})
    T = as_tensor(arr)
    assert T.kind == "dask" and T.dims == ("time", "x", "y")
    np.testing.assert_array_equal(T.coords["time"], np.arange(6) * 0.5)
    np.testing.assert_array_equal(T.coords["y"], np.arange(4))
    assert T.norm_squared() == pytest.approx(float(np.sum(a * a)), rel=1e-13)


def _fit(data: object, start: list[np.ndarray], lmlra: bool = False,
         max_iter: int = 4) -> sdf.Result:
    names = [f"x{n}" for n in range(len(start))]
    v = [sdf.Variable(s.copy(), name=nm) for s, nm in zip(start, names)]
    term = (sdf.LMLRA(data, v[:-1], v[-1]) if lmlra else sdf.CPD(data, v))
    # A few iterations, before the objective reaches the rounding floor where either run
    # may take other (equally good) steps.
    return sdf.Model(t=term).fit(max_iter=max_iter, tol_fun=0, tol_x=0)


def _planted(rng: np.random.Generator, shape: tuple[int, ...], rank: int,
             noise: float = 0.05) -> tuple[np.ndarray, list[np.ndarray]]:
    A = [rng.standard_normal((I, rank)) for I in shape]
    T = algebra.cpd_to_tensor(A)
    return T + noise * rng.standard_normal(shape), A


def _max_reldiff(r1: sdf.Result, r2: sdf.Result) -> float:
    return max(float(np.abs(r1.variables[k] - r2.variables[k]).max()
                     / np.abs(r1.variables[k]).max()) for k in r1.variables)


def test_cpd_fit_of_dask_data_equals_the_fit_of_the_numpy_data(rng):
    a, A = _planted(rng, (24, 20, 16), 3)
    start = [M + 0.3 * rng.standard_normal(M.shape) for M in A]
    r_np = _fit(a, start)
    r_dask = _fit(da.from_array(a, chunks=(10, 7, 16)), start)
    assert r_np.iterations == r_dask.iterations == 4
    assert _max_reldiff(r_np, r_dask) <= 1e-10
    assert r_dask.relerr["t"] == pytest.approx(r_np.relerr["t"], rel=1e-10)


def test_lmlra_fit_of_dask_data_equals_the_fit_of_the_numpy_data(rng):
    U = [np.linalg.qr(rng.standard_normal((I, 2)))[0] for I in (18, 15, 12)]
    a = algebra.tucker_to_tensor(U, rng.standard_normal((2, 2, 2)))
    a = a + 0.01 * rng.standard_normal(a.shape)
    start = [M + 0.2 * rng.standard_normal(M.shape) for M in U] + [rng.standard_normal((2, 2, 2))]
    r_np = _fit(a, start, lmlra=True)
    r_dask = _fit(da.from_array(a, chunks=(7, 8, 5)), start, lmlra=True)
    assert r_np.iterations == r_dask.iterations == 4
    assert _max_reldiff(r_np, r_dask) <= 1e-10


def test_nan_entries_are_missing_and_fit_like_the_numpy_data(rng):
    a, A = _planted(rng, (20, 18, 16), 3)
    a[rng.random(a.shape) < 0.3] = np.nan
    start = [M + 0.3 * rng.standard_normal(M.shape) for M in A]
    # Dask data give their known entries as coordinates: the numpy data held so take the
    # same steps (held densely with a mask, the preconditioner's blocks differ).
    r_np = _fit(IncompleteTensor(a), start)
    r_dask = _fit(da.from_array(a, chunks=(8, 9, 16)), start)
    assert _max_reldiff(r_np, r_dask) <= 1e-10
    assert sdf.CPD(da.from_array(a, chunks=8), [A[0], A[1], A[2]]).n_entries == np.sum(
        ~np.isnan(a))


def test_known_entries_beyond_the_memory_limit_are_refused_with_the_size(rng):
    a = _data(rng, (10, 10, 10), 0.5)
    T = DaskTensor(da.from_array(a, chunks=5), name="cube", max_known_bytes=1000)
    with pytest.raises(DataError, match=r"cube: dask data with \d+ missing \(NaN\) entries.*"
                                        r"above the limit.*max_known_bytes"):
        T.known_entries()


def test_inf_is_an_error_naming_the_entry(rng):
    a = rng.standard_normal((6, 6))
    a[4, 3] = np.inf
    T = as_tensor(da.from_array(a, chunks=4), name="signal")
    with pytest.raises(DataError, match=r"signal: entry \(4, 3\) is inf"):
        T.norm_squared()


def test_all_missing_and_masked_dask_data_are_refused():
    with pytest.raises(DataError, match="all entries are missing"):
        as_tensor(da.full((3, 3), np.nan, chunks=2)).n_known
    with pytest.raises(DataError, match="dtype <U1; expected real or complex numbers"):
        as_tensor(da.from_array(np.array([["a", "b"]]), chunks=1))
    with pytest.raises(DataError, match="a mask cannot be combined with dask data"):
        as_tensor(da.ones((3, 3), chunks=2), mask=np.ones((3, 3), bool))


def test_to_dense_refuses_past_its_limit(monkeypatch):
    monkeypatch.setattr(_dask, "MAX_DENSE_BYTES", 100)
    with pytest.raises(DataError, match=r"data: dask data of shape \(10, 10\).*to_dense"):
        as_tensor(da.ones((10, 10), chunks=5)).to_dense()


def test_zarr_store_round_trip_opens_lazily_and_fits(tmp_path, rng):
    a, A = _planted(rng, (20, 16, 12), 2, noise=0.01)
    store = zarr.open_array(str(tmp_path / "cube.zarr"), mode="w", shape=a.shape,
                            chunks=(8, 8, 6), dtype="float32")
    store[...] = a
    reopened = zarr.open_array(str(tmp_path / "cube.zarr"), mode="r")
    for data in (reopened, da.from_zarr(str(tmp_path / "cube.zarr"))):
        T = as_tensor(data)
        assert T.kind == "dask" and T.chunks[0] == (8, 8, 4)
        np.testing.assert_allclose(T.to_dense(), a.astype(np.float32), rtol=0)
    dec = cpd(reopened, 2, seed=0)
    assert dec.relerr < 0.02 and fms(dec.factors, A) > 0.999


def test_netcdf_through_xarray_with_dask_chunks_fits(tmp_path, rng):
    a, A = _planted(rng, (16, 14, 12), 2, noise=0.01)
    xr.DataArray(a, dims=("t", "x", "y"), name="cube").to_netcdf(tmp_path / "cube.nc",
                                                                 engine="scipy")
    arr = xr.open_dataarray(tmp_path / "cube.nc", engine="scipy", chunks={"t": 8})
    dec = cpd(arr, 2, seed=0)
    assert dec.labels == ["t", "x", "y"]
    assert dec.relerr < 0.02 and fms(dec.factors, A) > 0.999
    arr.close()


def test_randomized_mlsvd_matches_the_mlsvd_on_low_rank_plus_noise(rng):
    U = [np.linalg.qr(rng.standard_normal((I, 4)))[0] for I in (40, 35, 30)]
    a = algebra.tucker_to_tensor(U, 10 * rng.standard_normal((4, 4, 4)))
    a = a + 0.01 * rng.standard_normal(a.shape)
    exact = mlsvd(a, core_shape=(4, 4, 4))
    rand = mlsvd_rsi(da.from_array(a, chunks=12), (4, 4, 4), seed=3)
    err = [np.linalg.norm(a - r.to_tensor()) / np.linalg.norm(a) for r in (exact, rand)]
    assert err[1] <= 1.01 * err[0]
    for Ue, Ur in zip(exact.factors, rand.factors):  # same subspaces
        assert np.linalg.svd(Ue.T @ Ur, compute_uv=False).min() > 0.9999
    same = mlsvd_rsi(a, (4, 4, 4), seed=3)
    np.testing.assert_allclose(same.core, rand.core, rtol=1e-10, atol=1e-10)


def test_randomized_mlsvd_refuses_missing_entries_and_bad_settings(rng):
    a = _data(rng, (5, 5, 5), 0.2)
    with pytest.raises(DataError, match="missing"):
        mlsvd_rsi(da.from_array(a, chunks=3), (2, 2, 2))
    with pytest.raises(DataError, match="oversampling: expected an integer >= 0"):
        mlsvd_rsi(np.ones((4, 4)), (1, 1), oversampling=-1)


def test_cpd_driver_compresses_dask_data_by_the_randomized_mlsvd(rng):
    a, A = _planted(rng, (40, 36, 30), 3, noise=0.05)
    dec = cpd(da.from_array(a, chunks=(20, 18, 15)), 3, seed=0)
    assert dec.stages[0].detail.startswith("randomized MLSVD (4 passes) to core (3, 3, 3)")
    ref = cpd(a, 3, seed=0)
    assert dec.relerr == pytest.approx(ref.relerr, rel=1e-6)
    assert fms(dec.factors, A) > 0.999


def test_threaded_and_synchronous_schedulers_agree(rng):
    a = rng.standard_normal((12, 10, 8))
    A = [rng.standard_normal((I, 2)) for I in a.shape]
    T = as_tensor(da.from_array(a, chunks=5))
    with dask.config.set(scheduler="threads"):
        threaded = T.mttkrp_all(A)
    with dask.config.set(scheduler="synchronous"):
        serial = T.mttkrp_all(A)
    for M1, M2 in zip(threaded, serial):
        np.testing.assert_allclose(M1, M2, rtol=1e-13)


@pytest.fixture(scope="module")
def cluster_client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_local_cluster_runs_every_operation_and_the_same_fit(cluster_client, rng):
    a, A = _planted(rng, (16, 14, 12), 2)
    x = da.from_array(a, chunks=(8, 7, 6))
    on_cluster = _protocol_results(as_tensor(x), np.random.default_rng(2))
    assert cluster_client.run(lambda: 1)  # the workers answered
    _assert_same(on_cluster, _protocol_results(as_tensor(a), np.random.default_rng(2)))
    start = [M + 0.3 * rng.standard_normal(M.shape) for M in A]
    r_cluster = _fit(x, start)
    with dask.config.set(scheduler="threads"):
        r_threads = _fit(x, start)
    assert _max_reldiff(r_cluster, r_threads) <= 1e-10


def test_import_sdf_does_not_import_dask():
    code = ("import sys, numpy as np, sdf, sdf.models\n"
            "sdf.tensors.as_tensor(np.ones((2, 2)))\n"
            "print(','.join(m for m in ('dask', 'zarr', 'distributed') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_bigdata_example_fits_a_zarr_store_in_a_few_chunks_of_memory(tmp_path):
    # A 125 MB store in 64 chunks: the fit adds less than half the store's size to the
    # resident memory (modules it imports included).
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "bigdata_zarr.py"), "--size", "320",
         "--chunk", "80", "--folder", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "randomized MLSVD (4 passes)" in proc.stdout

    def number(pattern: str) -> float:
        found = re.search(pattern, proc.stdout)
        assert found, f"no {pattern!r} in:\n{proc.stdout}"
        return float(found.group(1))

    store = number(r"store: cube\.zarr, (\d+) MB")
    # What the fit allocates (the resident peak also counts the store's writing and the
    # modules imported, and varies with the machine's state).
    assert number(r"peak of the arrays allocated during the fit: (\d+) MB") < 0.5 * store
    assert number(r"relative error (\d+\.\d+) % \(noise") < 1.01
    assert list(tmp_path.iterdir()) == []  # the store was removed


def test_lmlra_driver_on_dask_data_uses_the_randomized_mlsvd_and_reads_no_dense_copy(
        rng, monkeypatch):
    from sdf.models import lmlra

    U = [np.linalg.qr(rng.standard_normal((I, 3)))[0] for I in (30, 26, 22)]
    a = algebra.tucker_to_tensor(U, rng.standard_normal((3, 3, 3)))
    a = a + 1e-3 * np.linalg.norm(a) / np.sqrt(a.size) * rng.standard_normal(a.shape)
    monkeypatch.setattr(DaskTensor, "to_dense", lambda self: pytest.fail("expanded"))
    dec = lmlra(da.from_array(a, chunks=(10, 13, 11)), (3, 3, 3), seed=0)
    assert dec.stages[0].detail == "randomized MLSVD (4 passes)"
    assert dec.relerr == pytest.approx(lmlra(a, (3, 3, 3)).relerr, rel=1e-6)
