"""Each example's report and figure agree, and its figure says what it shows."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def example(monkeypatch):
    """Import an example script as a module (the examples folder on the path)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name: str):
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return load


def _peak(line) -> float:
    x, y = line.get_xdata(), line.get_ydata()
    return float(np.asarray(x)[int(np.argmax(y))])


def test_quickstart_figure_has_units_labels_and_a_legend_beside_the_panels(example):
    quickstart = example("quickstart")
    X = quickstart.load_amino_acids()
    assert X.emission.attrs["units"] == "nm" and X.excitation.attrs["units"] == "nm"
    import sdf
    a, b, c = (sdf.Variable.random((n, 3), seed=k, name=d)
               for k, (d, n) in enumerate(zip(X.dims, X.shape)))
    result = sdf.Model(eem=sdf.CPD(X, [a, b, c])).fit(max_iter=3)
    fig = quickstart._figure(result, X)
    row = fig.axes[:3]
    assert [ax.get_xlabel() for ax in row][1:] == ["excitation wavelength (nm)",
                                                  "emission wavelength (nm)"]
    assert row[0].get_ylabel() == "loading (unit norm)"
    assert all(ax.get_legend() is None for ax in row) and len(fig.legends) == 1


@pytest.mark.slow
def test_coupled_eem_report_numbers_components_as_its_figure(example, capsys, monkeypatch):
    coupled_eem = example("coupled_eem")
    drawn = {}
    original = coupled_eem.figure

    def keep(*args):
        drawn["fig"] = original(*args)
        return drawn["fig"]

    monkeypatch.setattr(coupled_eem, "figure", keep)
    coupled_eem.main()
    report = capsys.readouterr().out
    fig = drawn["fig"]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["component 0: phenylalanine", "component 1: tyrosine",
                      "component 2: tryptophan"]
    emission = fig.axes[5]  # coupled row, emission panel
    for k, who in enumerate(coupled_eem.AMINO_ACIDS):
        line = [ln for ln in emission.get_lines() if ln.get_label() == f"component {k}"][0]
        assert f"component {k} ({who}): " in report
        printed = report.split(f"component {k} ({who}): ")[1].split("emission peak ")[1]
        assert float(printed.split(" nm")[0]) == pytest.approx(_peak(line))


@pytest.mark.slow
def test_nutrimouse_printed_signs_are_the_bars_drawn(example, capsys):
    nutrimouse = example("nutrimouse")
    data = nutrimouse.load_nutrimouse()
    folded = {name: nutrimouse.fold(da) for name, da in data.items()}
    res, _ = nutrimouse.best_fit(folded)
    factors = nutrimouse.oriented(res.to_xarray())
    nutrimouse.describe_folded(factors)
    report = capsys.readouterr().out
    cmf, _ = nutrimouse.best_fit(data)
    coords = data["gene"].coords
    fig = nutrimouse._figure(cmf.to_xarray()["mouse_factor"], coords["genotype"].values,
                             coords["diet"].values, factors)
    bottom = [ax for ax in fig.axes if ax.get_title() == "genotype"][0]
    for r in range(nutrimouse.RANK):
        heights = [p.get_height() for p in bottom.containers[r]]
        wt, ppar = report.split(f"component {r}: ")[1].split("(wt ")[1].split(")")[0] \
            .split(", ppar ")
        assert [float(wt), float(ppar)] == pytest.approx(heights, abs=0.006)


def test_compress_network_figure_shows_the_tables_weight_errors_and_accuracy(example, rng):
    compress_network = example("compress_network")
    from sdf.models.compress import LayerSpec, Piece
    from sdf.models.compress import compress_network as compress

    net = {"fc1": LayerSpec(Piece("linear", rng.standard_normal((24, 40)))),
           "fc2": LayerSpec(Piece("linear", rng.standard_normal((10, 24))))}
    res = compress(net, 0.5)
    accuracy = {"original": 0.98, "weights only": 0.95, "data-aware": 0.97}
    fig = compress_network.figure({"weights only": res, "data-aware": res}, accuracy)
    curves, bars = fig.axes[:2]
    assert curves.get_ylabel() == "relative weight error ||W - W_r|| / ||W||"
    chosen = [ln.get_ydata()[0] for ln in curves.get_lines() if ln.get_marker() == "*"]
    assert sorted(chosen) == pytest.approx(sorted(r["weight_error"] for r in res.table()),
                                           abs=1e-9)
    assert [p.get_height() for p in bars.patches] == list(accuracy.values())
    assert bars.get_ylabel() == "held-out accuracy"
