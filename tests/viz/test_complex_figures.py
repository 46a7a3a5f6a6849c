"""Figures of complex factors: magnitude/phase or real/imaginary panels, phase alignment
that leaves the model unchanged, moduli of complex residuals, clear refusals."""

import numpy as np
import pytest

from sdf.algebra import cpd_to_tensor, tucker_to_tensor
from sdf.errors import DataError, ModelError
from sdf.viz import align_signs, normalize_columns, plot_factors, plot_influence, plot_residuals
from sdf.viz import plot_slices
from sdf.viz._common import _from_factors, as_decomposition


def _complex(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.fixture
def cfactors(rng):
    return [_complex(rng, n, 2) for n in (6, 7, 8)]


def test_complex_factors_are_drawn_as_magnitude_and_phase(cfactors):
    fp = plot_factors(cfactors, normalize=False, align=False)
    assert fp.complex_parts == "magnitude-phase"
    assert len(fp.axes[0]) == 3 and len(fp.second_axes[0]) == 3
    assert fp.axes[0][0].get_ylabel() == "magnitude |a|"
    assert fp.second_axes[0][0].get_ylabel() == "phase arg(a) [rad]"
    for n, A in enumerate(cfactors):
        for r in range(2):
            np.testing.assert_allclose(fp.artists[0][n][r].get_ydata(), np.abs(A[:, r]))
            np.testing.assert_allclose(fp.second_artists[0][n][r].get_ydata(),
                                       np.angle(A[:, r]))


def test_real_imag_parts(cfactors):
    fp = plot_factors(cfactors, normalize=False, align=False, complex_parts="real-imag")
    assert fp.axes[0][0].get_ylabel() == "real part Re(a)"
    assert fp.second_axes[0][0].get_ylabel() == "imaginary part Im(a)"
    np.testing.assert_allclose(fp.artists[0][1][0].get_ydata(), cfactors[1][:, 0].real)
    np.testing.assert_allclose(fp.second_artists[0][1][0].get_ydata(), cfactors[1][:, 0].imag)


def test_unknown_complex_parts_is_refused(cfactors):
    with pytest.raises(ModelError, match="complex_parts must be one of"):
        plot_factors(cfactors, complex_parts="polar")


def test_real_factors_keep_one_row(rng):
    fp = plot_factors([rng.standard_normal((n, 2)) for n in (4, 5)])
    assert fp.complex_parts is None and fp.second_axes == []


def test_phase_alignment_keeps_the_cpd_and_makes_peaks_real_positive(cfactors):
    view = align_signs(cfactors)
    np.testing.assert_allclose(view.full(), cpd_to_tensor(cfactors), atol=1e-12)
    real_peaks = 0
    for A in view.factors:
        peak = A[np.argmax(np.abs(A), axis=0), [0, 1]]
        real_peaks += int(np.sum((np.abs(peak.imag) < 1e-12 * np.abs(peak)) & (peak.real > 0)))
    assert real_peaks >= 2 * 2  # all but one column per component


def test_phase_alignment_of_tucker_moves_phases_into_the_core(rng):
    U = [_complex(rng, n, 2) for n in (4, 5, 6)]
    S = _complex(rng, 2, 2, 2)
    view = align_signs(normalize_columns(_tucker_view(U, S)))
    np.testing.assert_allclose(view.full(), tucker_to_tensor(U, S), atol=1e-12)
    for A in view.factors:
        peak = A[np.argmax(np.abs(A), axis=0), [0, 1]]
        np.testing.assert_allclose(peak.imag, 0.0, atol=1e-12)
        assert (peak.real > 0).all()


def _tucker_view(U, S):
    return _from_factors(U, core=S)


def test_phase_alignment_of_ll1_keeps_the_model(rng):
    A, B, C = _complex(rng, 5, 3), _complex(rng, 6, 3), _complex(rng, 4, 2)
    view = align_signs(as_decomposition([A, B, C], L=[2, 1]))
    ref = np.einsum("ir,jr,kr->ijk", A, B, C[:, [0, 0, 1]])
    np.testing.assert_allclose(view.full(), ref, atol=1e-12)
    c_peaks = view.factors[2][np.argmax(np.abs(view.factors[2]), axis=0), [0, 1]]
    np.testing.assert_allclose(c_peaks.imag, 0.0, atol=1e-12)


def test_compared_complex_models_are_matched_by_phase(cfactors):
    phase = np.exp(1j * np.array([0.5, -1.2]))
    other = [cfactors[0][:, ::-1] * phase, cfactors[1][:, ::-1] * phase.conj(),
             cfactors[2][:, ::-1]]
    fp = plot_factors({"a": cfactors, "b": other}, normalize=False, align=False)
    for A, B in zip(fp.factors[0], fp.factors[1]):
        np.testing.assert_allclose(B, A, atol=1e-12)
    assert len(fp.second_axes) == 2


def test_complex_core_heatmap_shows_its_modulus(rng):
    U = [_complex(rng, n, 2) for n in (4, 5, 6)]
    S = _complex(rng, 2, 2, 2)
    fp = plot_factors(_tucker_view(U, S), normalize=False, align=False)
    np.testing.assert_allclose(fp.core_images[0].get_array(), np.abs(S.reshape(2, -1)))
    assert fp.core_axes[0].get_title().startswith("|core|")


def test_residuals_of_a_complex_model_are_moduli(rng):
    A = [_complex(rng, n, 2) for n in (5, 6, 7)]
    phase = np.exp(1j * rng.uniform(-np.pi, np.pi, 2))
    A[1] = A[1] * phase
    T = cpd_to_tensor(A)
    noisy = T + 0.01 * _complex(rng, *T.shape)
    # real data with a complex model: the residuals are complex
    rp = plot_residuals(A, data=noisy.real)
    assert np.iscomplexobj(rp.residuals)
    heights = [p.get_height() for p in rp.hist]
    assert sum(heights) == T.size
    assert rp.hist_ax.get_xlabel().startswith("|residual|")
    assert rp.qq_ax.get_title().startswith("Rayleigh")
    np.testing.assert_allclose(rp.sse[0], np.sum(np.abs(noisy.real - T) ** 2, axis=(1, 2)))
    assert np.isrealobj(rp.leverage) and rp.leverage.sum() == pytest.approx(2.0)


def test_influence_of_a_complex_model(rng, cfactors):
    T = cpd_to_tensor(cfactors)
    ip = plot_influence(cfactors, data=T.real)
    assert np.isrealobj(ip.leverage[0]) and np.isrealobj(ip.q[0])


def test_slices_refuse_complex_values(rng, cfactors):
    with pytest.raises(DataError, match="plot_slices: the model is complex"):
        plot_slices(cfactors, data=cpd_to_tensor(cfactors).real, slider=False)


def test_plot_residuals_of_a_complex_fit(rng):
    from sdf.models import cpd

    A = [_complex(rng, n, 2) for n in (6, 7, 8)]
    T = cpd_to_tensor(A) + 0.05 * _complex(rng, 6, 7, 8)
    dec = cpd(T, 2, seed=0)
    rp = plot_residuals(dec, data=T)
    np.testing.assert_allclose(rp.residuals, (T - cpd_to_tensor(dec.factors)).ravel())
    assert sum(p.get_height() for p in rp.hist) == T.size
    fp = plot_factors(dec)
    assert fp.complex_parts == "magnitude-phase"


def test_plot_slices_refuses_complex_data(rng, cfactors):
    T = cpd_to_tensor(cfactors)
    with pytest.raises(DataError, match="plot_slices: the data is complex"):
        plot_slices(cfactors, data=T, slider=False)
