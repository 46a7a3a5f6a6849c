"""Complex variables in result files: written as real/imaginary pairs, read back bit for
bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import sdf
from sdf import io
from sdf.errors import FileFormatError


def _bits(x):
    return np.ascontiguousarray(x).view(np.uint64)


@pytest.fixture
def complex_result(rng):
    """A result with a real model fitted, then complex values put in its variables."""
    a = sdf.Variable(np.ones((4, 2)), name="a")
    b = sdf.Variable(np.ones((3, 2)), name="b")
    res = sdf.Model(m=sdf.CPD(rng.standard_normal((4, 3)), [a, b])).fit()
    za = rng.standard_normal((4, 2)) + 1j * rng.standard_normal((4, 2))
    # awkward values: signed zeros in both parts, subnormals, huge and tiny exponents
    za[0, 0] = complex(-0.0, -0.0)
    za[1, 1] = complex(5e-324, -1e308)
    za[2, 0] = complex(np.pi * 1e-300, -np.e)
    return dataclasses.replace(res, variables={"a": za, "b": res.variables["b"]})


def test_complex_variables_round_trip_bit_for_bit(complex_result, tmp_path):
    path = tmp_path / "fit.nc"
    complex_result.save(path)
    back = sdf.load_result(path)
    a, b = complex_result.variables["a"], back.variables["a"]
    assert b.dtype == np.complex128 and b.shape == a.shape
    np.testing.assert_array_equal(_bits(b), _bits(a))
    assert back.variables["b"].dtype == np.float64
    np.testing.assert_array_equal(back.variables["b"], complex_result.variables["b"])


def test_complex_nan_payload_survives(complex_result, tmp_path):
    za = complex_result.variables["a"].copy()
    za[3, 1] = complex(np.nan, -np.inf)
    res = dataclasses.replace(complex_result, variables={**complex_result.variables, "a": za})
    res.save(tmp_path / "fit.nc")
    np.testing.assert_array_equal(_bits(sdf.load_result(tmp_path / "fit.nc").variables["a"]),
                                  _bits(za))


def test_pairs_to_complex_inverts_complex_to_pairs(rng):
    z = rng.standard_normal((3, 2, 2)) - 1j * rng.standard_normal((3, 2, 2))
    z[0, 0, 0] = complex(-0.0, 0.0)
    pairs = io.complex_to_pairs(z)
    assert pairs.shape == (3, 2, 2, 2) and pairs.dtype == np.float64
    np.testing.assert_array_equal(_bits(io.pairs_to_complex(pairs)), _bits(z))


def test_pairs_to_complex_rejects_wrong_trailing_dim():
    with pytest.raises(FileFormatError, match="trailing dim of size 2"):
        io.pairs_to_complex(np.zeros((3, 3)))


def test_damaged_complex_variable_is_a_file_format_error(complex_result, tmp_path):
    import xarray as xr

    path = tmp_path / "fit.nc"
    complex_result.save(path)
    with xr.open_dataset(path, engine="scipy", decode_cf=False) as ds:
        ds = ds.load()
    ds = ds.isel(variable_0_part=[0])  # the imaginary parts lost
    ds.to_netcdf(tmp_path / "bad.nc", engine="scipy", format="NETCDF3_64BIT")
    with pytest.raises(FileFormatError, match="missing or damaged content"):
        sdf.load_result(tmp_path / "bad.nc")


@pytest.fixture
def complex_fit(rng):
    import xarray as xr

    F = [rng.standard_normal((n, 2)) + 1j * rng.standard_normal((n, 2)) for n in (5, 4, 3)]
    T = xr.DataArray(np.einsum("ir,jr,kr->ijk", *F), dims=("sensor", "time", "band"),
                     coords={"time": [0.0, 0.5, 1.0, 1.5]})
    vs = [sdf.Variable.random((n, 2), seed=k, dtype=complex, name=d)
          for k, (n, d) in enumerate(zip((5, 4, 3), ("s", "t", "b")))]
    model = sdf.Model(m=sdf.CPD(T, vs))
    return model, model.fit(max_iter=20)


def test_complex_fit_round_trips_with_its_model(complex_fit, tmp_path):
    model, res = complex_fit
    path = tmp_path / "fit.nc"
    res.save(path)
    back = sdf.load_result(path, model=model)
    for name, value in res.variables.items():
        assert back.variables[name].dtype == np.complex128
        np.testing.assert_array_equal(_bits(back.variables[name]), _bits(value))
    for A, B in zip(back.factors["m"], res.factors["m"]):
        np.testing.assert_array_equal(_bits(A), _bits(B))
    assert back.relerr == res.relerr


def test_to_xarray_keeps_complex_factors_exactly(complex_fit):
    model, res = complex_fit
    ds = res.to_xarray()
    assert ds["time_factor"].dtype == np.complex128
    assert ds["time_factor"].coords["time"].values.tolist() == [0.0, 0.5, 1.0, 1.5]
    for dim, name in (("sensor", "s"), ("time", "t"), ("band", "b")):
        np.testing.assert_array_equal(_bits(ds[f"{dim}_factor"].values),
                                      _bits(res.variables[name]))


def test_decomposition_result_round_trips_complex_factors(rng, tmp_path):
    from sdf.models import cpd

    F = [rng.standard_normal((n, 2)) + 1j * rng.standard_normal((n, 2)) for n in (6, 5, 4)]
    dec = cpd(np.einsum("ir,jr,kr->ijk", *F), 2, seed=0)
    dec.result.save(tmp_path / "dec.nc")
    back = sdf.load_result(tmp_path / "dec.nc", model=dec.model)
    for A, B in zip(back.factors["data"], dec.factors):
        np.testing.assert_array_equal(_bits(A), _bits(B))
