"""Coupling through xarray dim names: fuse, fuse_model and Result.to_xarray."""

import warnings

import numpy as np
import pytest
import xarray as xr

import sdf
from sdf import transforms as tf
from sdf.errors import SdfWarning
from sdf.models.fuse import fuse, fuse_model


@pytest.fixture
def coupled(rng):
    M, G, T, L = rng.random((12, 2)), rng.random((9, 2)), rng.random((7, 2)), rng.random((5, 2))
    X = xr.DataArray(np.einsum("ir,jr,kr->ijk", M, G, T), dims=("mouse", "gene", "time"),
                     coords={"mouse": np.arange(100, 112), "time": np.linspace(0, 6, 7)})
    Y = xr.DataArray(M @ L.T, dims=("mouse", "lipid"),
                     coords={"mouse": np.arange(100, 112),
                             "lipid": [f"L{k}" for k in range(5)]})
    return X, Y, (M, G, T, L)


def test_shared_dims_share_one_variable(coupled):
    X, Y, _ = coupled
    model = fuse_model({"x": X, "y": Y}, rank=2, seed=0)
    assert model.variable_names == ["mouse", "gene", "time", "lipid"]
    assert model.terms["x"].inputs[0] is model.terms["y"].inputs[0]


def test_fuse_fits_and_returns_coordinates(coupled):
    X, Y, truth = coupled
    result = fuse({"x": X, "y": Y}, rank=2, seed=1, max_iter=300,
                  transforms={"lipid": tf.nonneg})
    assert result.relerr["x"] < 1e-4 and result.relerr["y"] < 1e-4
    ds = result.to_xarray()
    assert ds["mouse_factor"].dims == ("mouse", "component")
    np.testing.assert_array_equal(ds["mouse"].values, np.arange(100, 112))
    assert list(ds["lipid"].values) == [f"L{k}" for k in range(5)]
    assert np.all(ds["lipid_factor"].values >= 0)
    np.testing.assert_array_equal(ds["mouse_factor"].values, result.variables["mouse"])
    assert ds.attrs["relerr_x"] == result.relerr["x"]


def test_to_xarray_writes_netcdf_with_scipy(coupled, tmp_path):
    X, Y, _ = coupled
    ds = fuse({"x": X, "y": Y}, rank=2, seed=0, max_iter=20).to_xarray()
    path = tmp_path / "factors.nc"
    ds.to_netcdf(path, engine="scipy")
    back = xr.open_dataset(path, engine="scipy").load()
    np.testing.assert_array_equal(back["gene_factor"].values, ds["gene_factor"].values)
    assert back.attrs["stop"] == ds.attrs["stop"]


def test_to_xarray_names_different_expressions_of_one_dim_per_term(rng):
    X = xr.DataArray(rng.random((4, 3)), dims=("a", "b"))
    Y = xr.DataArray(rng.random((4, 5)), dims=("a", "c"))
    a1, a2 = sdf.Variable.random((4, 1), seed=1, name="a1"), sdf.Variable.random((4, 1), seed=2, name="a2")
    b, c = sdf.Variable.random((3, 1), seed=3, name="b"), sdf.Variable.random((5, 1), seed=4, name="c")
    ds = sdf.Model(x=sdf.CPD(X, [a1, b]), y=sdf.CPD(Y, [a2, c])).fit(max_iter=5).to_xarray()
    assert {"a_factor", "y_a_factor", "b_factor", "c_factor"} == set(ds.data_vars)


def test_numpy_data_without_dims_keeps_variables_by_name(rng):
    a, b = sdf.Variable.random((4, 2), seed=1, name="a"), sdf.Variable.random((3, 2), seed=2, name="b")
    ds = sdf.Model(m=sdf.CPD(rng.random((4, 3)), [a, b])).fit(max_iter=3).to_xarray()
    assert ds["a"].dims == ("a_dim0", "a_dim1")


@pytest.mark.parametrize("kwargs,match", [
    ({"rank": 0}, r"fuse: rank must be an integer >= 1, got 0"),
    ({"rank": 2, "transforms": {"mice": tf.nonneg}}, r"transforms names unknown dim\(s\) 'mice'"),
    ({"rank": 2, "relweights": {"z": 1.0}}, r"relweights names unknown data set\(s\) 'z'"),
    ({"rank": 2, "init": {"gene": np.ones((9, 3))}}, r"init\['gene'\] has shape \(9, 3\), expected \(9, 2\)"),
])
def test_bad_arguments(coupled, kwargs, match):
    X, Y, _ = coupled
    with pytest.raises(sdf.ModelError, match=match):
        fuse_model({"x": X, "y": Y}, **kwargs)


def test_inconsistent_dims_are_refused(coupled):
    X, Y, _ = coupled
    with pytest.raises(sdf.ModelError, match=r"dim 'mouse' has 12 entries in 'x' but 11 in 'y'"):
        fuse_model({"x": X, "y": Y.isel(mouse=slice(0, 11))}, rank=2)
    shifted = Y.assign_coords(mouse=np.arange(12))
    with pytest.raises(sdf.ModelError, match=r"dim 'mouse' has different coordinates in 'x' and 'y'"):
        fuse_model({"x": X, "y": shifted}, rank=2)
    with pytest.raises(sdf.ModelError, match=r"data\['x'\] must be an xarray.DataArray"):
        fuse_model({"x": X.values}, rank=2)


def test_n_starts_keeps_the_lowest_objective_and_lists_every_start(coupled):
    X, Y, _ = coupled
    best = fuse({"x": X, "y": Y}, rank=2, seed=3, n_starts=3, max_iter=15)
    assert [s.index for s in best.starts] == [0, 1, 2]
    singles = []
    rng = np.random.default_rng(3)
    for k in range(3):
        model = fuse_model({"x": X, "y": Y}, rank=2, seed=rng)
        with warnings.catch_warnings():  # short fits may stop while still improving
            warnings.simplefilter("ignore", SdfWarning)
            singles.append(model.fit(max_iter=15).objective)
    assert best.objective == pytest.approx(min(singles), rel=1e-12)
    for record, objective in zip(best.starts, singles):
        assert record.iterations <= 15 and record.time > 0
    again = fuse({"x": X, "y": Y}, rank=2, seed=3, n_starts=3, max_iter=15)
    assert all(np.array_equal(best.variables[k], again.variables[k]) for k in best.variables)
    assert fuse({"x": X, "y": Y}, rank=2, seed=3, max_iter=5).starts == []


def test_n_starts_must_be_a_positive_integer(coupled):
    X, Y, _ = coupled
    with pytest.raises(sdf.ModelError, match=r"n_starts: expected an integer >= 1, got 0"):
        fuse({"x": X, "y": Y}, rank=2, n_starts=0)

