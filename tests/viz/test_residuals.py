"""plot_residuals: histogram, QQ plot, slab errors and leverage of known entries."""

import numpy as np
import pytest

from sdf.errors import DataError, ModelError
from sdf.viz import plot_residuals
from sdf.viz.residuals import slab_sse


def test_histogram_counts_sum_to_known_entries(result_missing):
    rp = plot_residuals(result_missing)
    n_known = result_missing.model.terms["T"].data.n_known
    assert sum(p.get_height() for p in rp.hist) == n_known
    assert rp.residuals.shape == (n_known,)


def test_panels_and_labels_from_dims(result_xr):
    rp = plot_residuals(result_xr)
    assert len(rp.figure.axes) == 6
    assert [ax.get_xlabel() for ax in rp.sse_axes] == ["sample", "emission", "excitation"]
    assert rp.leverage_ax.get_xlabel() == "leverage (sample)"
    assert rp.qq_ax.get_xlabel() == "normal quantile"


def test_slab_errors_and_outlier_slab(planted, rng):
    U, T = planted(0)
    T = T.copy()
    T[2] += 5.0 * rng.standard_normal(T.shape[1:])
    rp = plot_residuals(U, data=T)
    R = T - np.einsum("ir,jr,kr->ijk", *U)
    np.testing.assert_allclose(rp.sse[0], (R**2).sum(axis=(1, 2)), atol=1e-20)
    np.testing.assert_allclose(rp.sse[2], (R**2).sum(axis=(0, 1)), rtol=1e-12)
    assert rp.outliers[0].tolist() == [2]
    heights = [p.get_height() for p in rp.sse_axes[0].patches]
    np.testing.assert_allclose(heights, rp.errors[0])
    np.testing.assert_allclose(rp.errors[0], np.sqrt(rp.sse[0] / (T**2).sum(axis=(1, 2))))


def test_relative_errors_flag_the_outlier_not_the_bright_sample(planted):
    U, T = planted(0, (12, 7, 8))
    rng = np.random.default_rng(3)
    U = [U[0].copy(), U[1], U[2]]
    U[0][4] *= 30.0  # a bright sample, fitted as well as the others
    T = np.einsum("ir,jr,kr->ijk", *U)
    T = T * (1 + 0.02 * rng.standard_normal(T.shape))
    T[9] += 0.5 * np.abs(T[9]).mean() * rng.standard_normal(T.shape[1:])  # an outlier
    relative = plot_residuals(U, data=T)
    absolute = plot_residuals(U, data=T, slab_error="absolute")
    assert relative.outliers[0].tolist() == [9]
    assert 4 in absolute.outliers[0]
    assert relative.sse_axes[0].get_ylabel() == "relative slab error"


def test_bad_slab_error_fails(planted):
    U, T = planted(0)
    with pytest.raises(ModelError, match="slab_error: expected 'relative' or 'absolute'"):
        plot_residuals(U, data=T, slab_error="max")


def test_leverage_is_the_hat_matrix_diagonal(planted):
    U, T = planted(0)
    rp = plot_residuals(U, data=T, mode=1)
    H = U[1] @ np.linalg.pinv(U[1].T @ U[1]) @ U[1].T
    np.testing.assert_allclose(rp.leverage, np.diag(H))
    np.testing.assert_allclose(rp.leverage_ax.collections[0].get_offsets()[:, 0], np.diag(H))


def test_qq_points_are_sorted_residuals(result_missing):
    rp = plot_residuals(result_missing)
    np.testing.assert_allclose(rp.qq_ax.get_lines()[0].get_ydata(), np.sort(rp.residuals))


def test_slab_sse_skips_missing():
    R = np.array([[1.0, np.nan], [2.0, 2.0]])
    np.testing.assert_allclose(slab_sse(R, 1), [5.0, 4.0])


def test_factors_without_data_fail(planted):
    U, _ = planted(0)
    with pytest.raises(DataError, match="no data set to compare with; pass data="):
        plot_residuals(U)


def test_data_of_the_wrong_shape_fails(planted):
    U, T = planted(0)
    with pytest.raises(DataError, match=r"shape \(6, 7\) does not match"):
        plot_residuals(U, data=T[:, :, 0])


def test_bad_mode_fails(result_xr):
    with pytest.raises(ModelError, match=r"mode must be an int in \[0, 3\), got 3"):
        plot_residuals(result_xr, mode=3)
