"""plot_factors: panels, labels from dims, drawn values, colours, cores, blocks, inputs."""

import subprocess
import tempfile
import sys
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer

import sdf
from sdf.errors import DataError, ModelError
from sdf.tensors import CPDTensor, TuckerTensor
from sdf.viz import align_signs, plot_factors
from sdf.viz._common import as_decomposition

RANK, SHAPE = 2, (6, 7, 8)  # as in conftest.py


def _unit(A):
    return A / np.linalg.norm(A, axis=0)


def _rgba(artist):
    if isinstance(artist, BarContainer):
        return to_rgba(artist.patches[0].get_facecolor())
    return to_rgba(artist.get_color())


def test_one_panel_per_mode_with_dim_labels(result_xr):
    fp = plot_factors(result_xr)
    assert len(fp.figure.axes) == 3
    assert [ax.get_title() for ax in fp.axes[0]] == ["sample", "emission", "excitation"]
    assert [ax.get_xlabel() for ax in fp.axes[0]] == ["sample", "emission", "excitation"]


def test_lines_are_normalised_factor_columns_against_coordinates(result_xr):
    fp = plot_factors(result_xr, align=False)
    values = result_xr.factors["T"]
    coords = result_xr.model.terms["T"].data.coords
    for n in (1, 2):
        for r in range(RANK):
            line = fp.artists[0][n][r]
            np.testing.assert_allclose(line.get_ydata(), _unit(values[n])[:, r])
            np.testing.assert_allclose(line.get_xdata(),
                                       coords[["sample", "emission", "excitation"][n]])


def test_raw_columns_when_not_normalised(rng):
    U = [rng.standard_normal((n, 3)) for n in (4, 5)]
    fp = plot_factors(U, normalize=False, align=False)
    for n in range(2):
        for r in range(3):
            np.testing.assert_array_equal(fp.artists[0][n][r].get_ydata(), U[n][:, r])


def test_component_colour_is_the_same_in_every_panel(result_xr):
    fp = plot_factors(result_xr)
    for r in range(RANK):
        colours = {_rgba(fp.artists[0][n][r]) for n in range(3)}
        assert colours == {to_rgba(f"C{r}")}


def test_categorical_mode_is_drawn_as_bars_with_coordinate_ticks(result_xr):
    fp = plot_factors(result_xr, align=False)
    bars = fp.artists[0][0]
    assert all(isinstance(b, BarContainer) for b in bars)
    heights = [p.get_height() for p in bars[1].patches]
    np.testing.assert_allclose(heights, _unit(result_xr.factors["T"][0])[:, 1])
    labels = [t.get_text() for t in fp.axes[0][0].get_xticklabels()]
    assert labels == [f"s{i}" for i in range(SHAPE[0])]


def test_no_dims_gives_mode_titles_and_index_axis(rng):
    fp = plot_factors([rng.standard_normal((n, 2)) for n in (3, 4, 5)])
    assert [ax.get_title() for ax in fp.axes[0]] == ["mode 0", "mode 1", "mode 2"]
    assert fp.axes[0][2].get_xlabel() == "index"
    np.testing.assert_array_equal(fp.artists[0][2][0].get_xdata(), np.arange(5))


def test_cpd_sign_alignment_flips_pairs_and_keeps_the_model(rng):
    U = [rng.standard_normal((n, 3)) for n in (5, 6, 7)]
    U[0][:, 0] = -np.abs(U[0][:, 0])
    U[1][:, 0] = -np.abs(U[1][:, 0])
    dec = as_decomposition(U)
    out = align_signs(dec)
    np.testing.assert_allclose(out.full(), dec.full())
    assert out.factors[0][:, 0].max() > 0 and out.factors[1][:, 0].max() > 0
    for r in range(3):
        peaks = [A[np.argmax(np.abs(A[:, r])), r] for A in out.factors]
        assert sum(p < 0 for p in peaks) <= 1


def test_tucker_core_heatmap_equals_the_core(rng):
    U = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in ((5, 2), (6, 3), (7, 2))]
    S = rng.standard_normal((2, 3, 2))
    fp = plot_factors(TuckerTensor(U, S), normalize=False, align=False)
    assert len(fp.figure.axes) == 5  # 3 modes, the core and its colour bar
    np.testing.assert_allclose(fp.core_images[0].get_array(), S.reshape(2, -1))


def test_tucker_alignment_makes_every_peak_positive_and_core_compensates(rng):
    U = [rng.standard_normal((n, r)) for n, r in ((5, 2), (6, 3), (7, 2))]
    S = rng.standard_normal((2, 3, 2))
    fp = plot_factors(TuckerTensor(U, S))
    for A in fp.factors[0]:
        assert (A[np.argmax(np.abs(A), axis=0), np.arange(A.shape[1])] > 0).all()
    np.testing.assert_allclose(sdf.algebra.tucker_to_tensor(fp.factors[0], fp.cores[0]),
                               sdf.algebra.tucker_to_tensor(U, S), atol=1e-12)


def test_btd_blocks_share_a_colour_and_differ_by_line_style(rng):
    blocks = [tuple(rng.standard_normal((n, 2)) for n in (4, 5, 6)) + (
        rng.standard_normal((2, 2, 2)),) for _ in range(2)]
    fp = plot_factors(blocks)
    lines = fp.artists[0][1]
    assert [_rgba(ln) for ln in lines] == [to_rgba(c) for c in ("C0", "C0", "C1", "C1")]
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    dec = as_decomposition(blocks)
    expected = sum(sdf.algebra.tucker_to_tensor(b[:3], b[3]) for b in blocks)
    np.testing.assert_allclose(dec.full(), expected)
    np.testing.assert_allclose(align_signs(dec).full(), expected)


def test_ll1_blocks_grouped_and_model_kept_by_alignment(rng):
    L = [2, 1]
    A, B, C = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal((6, 2))
    fp = plot_factors([A, B, C], L=L)
    assert [_rgba(ln) for ln in fp.artists[0][0]] == [to_rgba(c) for c in ("C0", "C0", "C1")]
    assert [_rgba(ln) for ln in fp.artists[0][2]] == [to_rgba(c) for c in ("C0", "C1")]
    expected = (np.einsum("il,jl,k->ijk", A[:, :2], B[:, :2], C[:, 0])
                + np.einsum("il,jl,k->ijk", A[:, 2:], B[:, 2:], C[:, 1]))
    dec = as_decomposition([A, B, C], L=L)
    np.testing.assert_allclose(dec.full(), expected)
    np.testing.assert_allclose(align_signs(dec).full(), expected)


def test_models_side_by_side_are_matched_to_the_first(planted):
    U, _ = planted(3)
    perm = [1, 0]
    other = [A[:, perm] * s for A, s in zip(U, ([-1, 1], [-1, 1], [1, 1]))]
    fp = plot_factors({"unconstrained": U, "constrained": other})
    assert np.array(fp.axes).shape == (2, 3)
    assert fp.axes[1][0].get_title() == "constrained: mode 0"
    for A, B in zip(fp.factors[0], fp.factors[1]):
        np.testing.assert_allclose(A, B)


def test_dataset_of_factors_gives_dims_and_coordinates(rng):
    ds = xr.Dataset({
        f"{d}_factor": xr.DataArray(rng.standard_normal((n, 2)), dims=(d, "component"),
                        coords={d: np.arange(n) * 10.0})
        for d, n in (("time", 4), ("freq", 5))})
    fp = plot_factors(ds)
    assert [ax.get_xlabel() for ax in fp.axes[0]] == ["time", "freq"]
    np.testing.assert_array_equal(fp.artists[0][1][0].get_xdata(), np.arange(5) * 10.0)


def test_cpdtensor_weights_are_absorbed(rng):
    U = [rng.standard_normal((n, 2)) for n in (3, 4)]
    dec = as_decomposition(CPDTensor(U, weights=[2.0, 3.0]))
    np.testing.assert_allclose(dec.full(), CPDTensor(U, weights=[2.0, 3.0]).to_dense())


def test_models_result_is_duck_typed(result_xr):
    res = SimpleNamespace(factors=result_xr.factors["T"], core=None, relerr=0.0,
                          history=result_xr.history, result=result_xr)
    dec = as_decomposition(res)
    assert dec.dims == ["sample", "emission", "excitation"] and dec.data is not None


def test_lmlra_and_ll1_terms_of_a_result_are_recognised(rng):
    U = [rng.standard_normal((n, r)) for n, r in ((4, 2), (5, 3))]
    S = rng.standard_normal((2, 3))
    T = sdf.algebra.tucker_to_tensor(U, S)
    variables = [sdf.Variable(x, name=k) for x, k in zip([*U, S], ("u", "v", "s"))]
    res = sdf.Model(T=sdf.LMLRA(T, variables[:2], variables[2])).fit(max_iter=1)
    fp = plot_factors(res, normalize=False, align=False)
    np.testing.assert_allclose(fp.core_images[0].get_array(), res.factors["T"][-1])
    A, B, C = (sdf.Variable(rng.standard_normal((n, r))) for n, r in ((4, 3), (5, 3), (2, 2)))
    res = sdf.Model(T=sdf.LL1(rng.standard_normal((4, 5, 2)), [A, B, C], [2, 1])).fit(max_iter=1)
    assert as_decomposition(res).kind == "LL1"


def test_draws_on_the_given_figure_and_never_shows(rng, monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show called"))
    fig = plt.figure()
    fp = plot_factors([rng.standard_normal((n, 2)) for n in (3, 4)], fig=fig)
    assert fp.figure is fig and len(fig.axes) == 2


def test_png_is_written(result_xr, tmp_path):
    plot_factors(result_xr).figure.savefig(tmp_path / "factors.png")
    assert (tmp_path / "factors.png").read_bytes()[:4] == b"\x89PNG"


def test_importing_sdf_viz_does_not_import_matplotlib():
    code = "import sys, sdf.viz; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), check=True)


def test_unknown_term_names_the_terms(result_xr):
    with pytest.raises(ModelError, match=r"no term 'X' in the result \(terms: T\)"):
        plot_factors(result_xr, term="X")


def test_regularizer_term_is_refused(rng):
    a = sdf.Variable.random((3, 2), seed=0, name="a")
    res = sdf.Model(T=sdf.CPD(rng.standard_normal((3, 4)), [a, rng.standard_normal((4, 2))]),
                    reg=sdf.L2([a], weight=1e-3)).fit(max_iter=3)
    with pytest.raises(ModelError, match="term 'reg' is a .* regularizer"):
        plot_factors(res, term="reg")


def test_cpd_factors_with_different_ranks_fail(rng):
    with pytest.raises(DataError, match=r"same number of columns, got \[2, 3\]"):
        plot_factors([rng.standard_normal((3, 2)), rng.standard_normal((4, 3))])


def test_unsupported_input_fails():
    with pytest.raises(DataError, match="expected an sdf.Result, a list of factor"):
        plot_factors(42)


def test_term_without_result_fails(rng):
    with pytest.raises(ModelError, match="term='T' needs an sdf.Result"):
        plot_factors([rng.standard_normal((3, 2))] * 2, term="T")
