"""Figures name what they show: dims with units, the model's factor names, every coupled
term's modes, readable category ticks, labelled colour bars; TensorLy inputs accepted."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import sdf  # noqa: E402
from sdf.errors import ModelError  # noqa: E402
from sdf.models import cmtf, cpd, fuse  # noqa: E402
from sdf.viz import align_signs, normalize_columns, plot_factors, plot_slices  # noqa: E402


def _nm(values):
    return ("wavelength", values, {"units": "nm", "long_name": "wavelength"})


@pytest.fixture
def eem(rng):
    F = [rng.random((n, 2)) for n in (5, 12, 10)]
    T = np.einsum("ir,jr,kr->ijk", *F) * 100 + 0.1 * rng.standard_normal((5, 12, 10))
    return xr.DataArray(
        T, dims=("sample", "emission", "excitation"),
        coords={"emission": ("emission", 300 + 5 * np.arange(12), {"units": "nm"}),
                "excitation": ("excitation", 250 + 5 * np.arange(10), {"units": "nm"})},
        attrs={"units": "a.u.", "long_name": "intensity"})


def test_axis_labels_carry_the_coordinates_units(eem):
    fp = plot_factors(cpd(eem, 2, seed=0))
    assert [ax.get_xlabel() for ax in fp.axes[0]] == ["sample", "emission (nm)",
                                                      "excitation (nm)"]
    assert fp.axes[0][0].get_ylabel() == "loading (unit norm)"


def test_panels_are_named_by_the_models_variables(rng):
    a, b, c = (sdf.Variable(rng.random((n, 2)), name=k)
               for k, n in zip(("time", "space", "freq"), (5, 6, 7)))
    result = sdf.Model(x=sdf.CPD(rng.random((5, 6, 7)), [a, b, c])).fit(max_iter=30)
    fp = plot_factors(result)
    assert [ax.get_title() for ax in fp.axes[0]] == ["time", "space", "freq"]
    assert "mode 0" not in [ax.get_xlabel() for ax in fp.axes[0]]


def test_cmtf_labels_name_the_panels_and_every_term_is_shown(rng):
    dec = cmtf({"X": rng.random((5, 6, 7)), "Y": rng.random((5, 3))}, 2,
               modes={"X": ["i", "j", "k"], "Y": ["i", "l"]}, seed=0, max_iter=30)
    fp = plot_factors(dec)
    assert [ax.get_title() for ax in fp.axes[0]] == ["i", "j", "k", "l"]


def test_fused_result_shows_every_terms_modes_with_units(rng):
    M, G, L = rng.random((8, 2)), rng.random((6, 2)), rng.random((9, 2))
    gene = xr.DataArray(M @ G.T, dims=("mouse", "gene"))
    spectra = xr.DataArray(M @ L.T, dims=("mouse", "wavelength"),
                           coords={"wavelength": _nm(250 + 5 * np.arange(9))})
    result = fuse({"gene": gene, "spectra": spectra}, 2, seed=0)
    fp = plot_factors(result)
    assert [ax.get_xlabel() for ax in fp.axes[0]] == ["mouse", "gene", "wavelength (nm)"]
    one = plot_factors(result, term="spectra")  # one term on request
    assert len(one.axes[0]) == 2


def test_thirty_string_coordinates_do_not_overlap(rng):
    genes = [f"gene_{k:02d}_long_name" for k in range(30)]
    X = xr.DataArray(rng.random((30, 2)) @ rng.random((2, 6)), dims=("gene", "mouse"),
                     coords={"gene": genes})
    fp = plot_factors(cpd(X, 2, seed=0))
    ax = fp.axes[0][0]
    fig = fp.figure
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    assert 0 < len(boxes) <= 24
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_slice_colour_bars_are_labelled_with_even_ticks(eem):
    sp = plot_slices(cpd(eem, 2, seed=0), mode=0, index=0)
    bars = [ax for ax in sp.figure.axes if ax.get_label() == "<colorbar>"]
    assert [ax.get_ylabel() for ax in bars] == ["intensity (a.u.)", "intensity (a.u.)",
                                               "data - model (a.u.)"]
    for ax in bars:
        ticks = np.asarray(ax.get_yticks())
        assert 3 <= len(ticks) <= 8
        assert np.allclose(np.diff(ticks), np.diff(ticks)[0])


def test_tensorly_cp_tensor_and_weights_factors_tuple(rng):
    F = [rng.random((n, 2)) for n in (5, 6, 7)]
    w = np.array([3.0, 0.5])
    fp = plot_factors((w, F))
    assert len(fp.axes[0]) == 3
    cp_tensor = pytest.importorskip("tensorly.cp_tensor")
    fp = plot_factors(cp_tensor.CPTensor((w, F)))
    assert len(fp.axes[0]) == 3


def test_a_list_of_decompositions_gets_the_mapping_hint(rng):
    T = rng.random((5, 6, 7))
    d = cpd(T, 2, seed=0, max_iter=5)
    with pytest.raises(ModelError, match=r"got a list of 2 decompositions; to compare "
                                         r"several models pass a mapping \{label: "
                                         r"decomposition\}, e.g. \{'model 0': d0"):
        plot_factors([d, d])


def test_to_xarray_keeps_coordinate_and_data_attributes(eem):
    ds = cpd(eem, 2, seed=0).result.to_xarray()
    assert ds["emission_factor"]["emission"].attrs == {"units": "nm"}
    assert ds.attrs["data_units"] == "a.u." and ds.attrs["data_long_name"] == "intensity"


def test_normalize_and_align_accept_every_driver_result(rng):
    from sdf.models import btd, ll1, lmlra, parafac2
    T = rng.standard_normal((6, 5, 4))
    for dec in (cpd(T, 2, seed=0), lmlra(T, (2, 2, 2), seed=0), btd(T, [(1, 1, 1)] * 2, seed=0),
                ll1(T, [1, 1], seed=0),
                parafac2([rng.standard_normal((5, 4)) for _ in range(6)], 2, seed=0)):
        assert normalize_columns(dec).ndim == align_signs(dec).ndim


def test_align_signs_of_a_coupled_view_keeps_every_term(rng):
    from sdf.algebra import cpd_to_tensor
    from sdf.viz._common import coupled_view

    a, b, c, d = (sdf.Variable(rng.standard_normal((n, 2)), name=k)
                  for k, n in zip("abcd", (5, 6, 7, 4)))
    model = sdf.Model(x=sdf.CPD(rng.standard_normal((5, 6, 7)), [a, b, c]),
                      y=sdf.CPD(rng.standard_normal((5, 4)), [a, d]))
    result = model.fit(max_iter=20)
    view = coupled_view(result)
    aligned = align_signs(view)
    assert view.term_modes == [[0, 1, 2], [0, 3]] and view.dims == ["a", "b", "c", "d"]
    for modes in view.term_modes:
        before = cpd_to_tensor([view.factors[m] for m in modes])
        after = cpd_to_tensor([aligned.factors[m] for m in modes])
        assert np.allclose(before, after)
    with pytest.raises(ModelError, match="make no single model tensor"):
        view.full()
