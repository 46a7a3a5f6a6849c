"""plot_slices: data/model/residual panels, missing entries masked, slider."""

import numpy as np
import pytest
from matplotlib.widgets import Slider

from sdf.errors import ModelError
from sdf.viz import plot_slices


def test_three_panels_labelled_from_dims(result_xr):
    sp = plot_slices(result_xr, mode=0, index=1)
    assert len(sp.axes) == 3 and sp.slider is None
    assert [ax.get_title() for ax in sp.axes] == [
        "data: sample = s1", "model: sample = s1", "residual: sample = s1"]
    assert sp.axes[0].get_ylabel() == "emission" and sp.axes[0].get_xlabel() == "excitation"


def test_images_hold_the_slice_of_data_model_and_residual(result_xr):
    sp = plot_slices(result_xr, mode=2, index=3)
    D = result_xr.model.terms["T"].data.to_dense()[:, :, 3]
    A, B, C = result_xr.factors["T"]
    M = np.einsum("ir,jr,r->ij", A, B, C[3])
    np.testing.assert_allclose(sp.artists[0].get_array(), D)
    np.testing.assert_allclose(sp.artists[1].get_array(), M, atol=1e-12)
    np.testing.assert_allclose(sp.artists[2].get_array(), D - M, atol=1e-12)


def test_missing_entries_are_masked_in_every_panel(result_missing):
    sp = plot_slices(result_missing, mode=0, index=0)
    missing = np.isnan(result_missing.model.terms["T"].data.to_dense()[0])
    assert missing.any()
    for im in sp.artists:
        np.testing.assert_array_equal(np.ma.getmaskarray(im.get_array()), missing)


def test_set_index_and_slider_update_the_images(result_missing):
    sp = plot_slices(result_missing, mode=0, slider=True)
    assert isinstance(sp.slider, Slider)
    D = result_missing.model.terms["T"].data.to_dense()
    sp.slider.set_val(4)
    assert sp.index == 4 and sp.axes[0].get_title() == "data: sample = s4"
    np.testing.assert_array_equal(sp.artists[0].get_array().filled(np.nan), D[4])


def test_matrix_slices_are_curves_with_gaps(rng):
    A, B = rng.standard_normal((4, 2)), rng.standard_normal((5, 2))
    X = A @ B.T
    X[1, 2] = np.nan
    sp = plot_slices([A, B], data=X, mode=0, index=1)
    np.testing.assert_array_equal(sp.artists[0].get_ydata(), X[1])
    assert np.isnan(sp.artists[1].get_ydata()[2])  # model only at known entries


def test_four_way_slices_are_unfolded(rng):
    U = [rng.standard_normal((n, 2)) for n in (3, 4, 5, 6)]
    sp = plot_slices(U, data=np.einsum("ir,jr,kr,lr->ijkl", *U), mode=1)
    assert sp.artists[0].get_array().shape == (3, 30)


def test_index_out_of_range_fails(result_xr):
    with pytest.raises(ModelError, match=r"index must be an int in \[0, 8\) for mode 2 "
                                         r"\(excitation\), got 8"):
        plot_slices(result_xr, mode=2, index=8)


def test_slider_on_a_figure_without_layout_engine(result_xr):
    import matplotlib.pyplot as plt

    fig = plt.figure()
    sp = plot_slices(result_xr, mode=1, slider=True, fig=fig)
    assert sp.figure is fig and len(fig.axes) == 7  # 3 panels, 3 colour bars, the slider
