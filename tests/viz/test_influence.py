"""plot_influence: leverage and scaled Q residual per mode, limits, flagged slabs labelled."""

import numpy as np
import pytest
import xarray as xr

from sdf.errors import ModelError
from sdf.viz import plot_influence
from sdf.viz.influence import q_residuals


def labelled(T):
    return xr.DataArray(T, dims=("sample", "emission", "excitation"),
                        coords={"sample": [f"s{i}" for i in range(T.shape[0])]})


def test_one_panel_per_mode_with_leverage_and_q(planted):
    U, T = planted(0, (12, 7, 8))
    rp = plot_influence(U, data=T + 0.01 * np.random.default_rng(1).standard_normal(T.shape))
    assert len(rp.axes) == 3 and rp.modes == [0, 1, 2]
    H = U[1] @ np.linalg.pinv(U[1].T @ U[1]) @ U[1].T
    np.testing.assert_allclose(rp.leverage[1], np.diag(H))
    np.testing.assert_allclose(rp.points[1].get_offsets()[:, 0], np.diag(H))
    assert np.nanmean(rp.q[0]) == pytest.approx(1.0)
    assert rp.leverage_limit[0] == pytest.approx(3 * 2 / 12)


def test_outlier_sample_flagged_and_labelled_by_coordinate(planted):
    U, T = planted(0, (12, 7, 8))
    rng = np.random.default_rng(2)
    T = T + 0.01 * rng.standard_normal(T.shape)
    T[5] += 0.5 * rng.standard_normal(T.shape[1:])
    rp = plot_influence(U, data=labelled(T), modes=[0])
    assert 5 in rp.flagged[0]
    texts = [t.get_text() for t in rp.axes[0].texts]
    assert "s5" in texts
    assert rp.axes[0].get_title() == "influence: sample"


def test_q_residuals_scale_missing_slabs_to_full_size():
    R = np.array([[1.0, 1.0], [3.0, np.nan]])
    np.testing.assert_allclose(q_residuals(R, 0), [0.2, 1.8])


def test_missing_entries_are_left_out(result_missing):
    rp = plot_influence(result_missing)
    assert all(np.isfinite(q).all() for q in rp.q)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"modes": [3]}, r"plot_influence: mode must be an int in \[0, 3\), got 3"),
    ({"modes": []}, "plot_influence: modes is empty"),
    ({"level": 1.5}, r"plot_influence: level must be a float in \(0, 1\), got 1.5")])
def test_bad_arguments_fail(result_xr, kwargs, match):
    with pytest.raises(ModelError, match=match):
        plot_influence(result_xr, **kwargs)
