"""Multi-fit work shows progress labelled per fit, and labels each fit's table."""

import sys

import numpy as np
import pytest

from sdf.algebra import cpd_to_tensor
from sdf.models import mlrankest, parafac2, rankest, stability
from sdf.models.compress import LayerSpec, Piece, compress_network


@pytest.fixture
def no_tqdm(monkeypatch):
    """Make ``import tqdm.auto`` fail, as when tqdm is not installed."""
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


@pytest.fixture
def T(rng):
    A = [rng.standard_normal((n, 2)) for n in (8, 7, 6)]
    return cpd_to_tensor(A) + 1e-3 * rng.standard_normal((8, 7, 6))


def test_rankest_progress_text_bar_labels_every_fit(T, capsys, no_tqdm):
    rankest(T, 3, n_starts=2, seed=0, progress=True,
            criteria=__import__("sdf").models.RankCriteria(stability_repeats=0))
    err = capsys.readouterr().err
    line = err.split("\r")[-1]
    assert line.startswith("rankest [########################] 6/6 rank 3, start 2 of 2")
    assert line.endswith("\n")
    for R in (1, 2, 3):
        for k in (1, 2):
            assert f"rank {R}, start {k} of 2: relerr" in err


def test_rankest_progress_counts_stability_fits(T, capsys, no_tqdm):
    rankest(T, 3, n_starts=1, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "stability: split-half" not in err  # labelled by rankest
    assert "split 2 of 2, second half, rank 2" in err
    last = err.split("\r")[-1]
    done, total = last.split("] ")[1].split()[0].split("/")
    assert done == total


def test_rankest_progress_with_tqdm(T, capsys):
    pytest.importorskip("tqdm")
    rankest(T, 2, n_starts=1, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "rankest" in err and "fit" in err and "rank 2" in err


def test_rankest_display_labels_each_internal_table(T, capsys):
    rankest(T, 2, n_starts=1, seed=0, display=50,
            criteria=__import__("sdf").models.RankCriteria(stability_repeats=0))
    out = capsys.readouterr().out
    assert "-- rankest: rank 1, start 1 of 1 --" in out
    assert "-- rankest: rank 2, start 1 of 1 --" in out
    # every table (one per fit on the core, one per refinement) has its heading above it
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("iter"):
            assert lines[i - 1].startswith("-- ")


def test_stability_progress_and_labelled_tables(T, capsys, no_tqdm):
    stability(T, 2, n_repeats=2, seed=0, progress=True, display=100)
    captured = capsys.readouterr()
    assert "stability [" in captured.err and "4/4 split 2 of 2, second half, rank 2" in captured.err
    assert "-- stability: split 1 of 2, first half, rank 2 --" in captured.out


def test_mlrankest_progress_per_mode(T, capsys, no_tqdm):
    est = mlrankest(T, progress=True)
    err = capsys.readouterr().err
    assert "mlrankest [" in err and "3/3 mode 2 (6 singular values)" in err
    assert len(est.errors) == 3


def test_parafac2_progress_labels_each_start(rng, capsys, no_tqdm):
    slices = [rng.standard_normal((5, 4)) for _ in range(6)]
    parafac2(slices, 2, n_starts=3, seed=0, progress=True, max_iter=5)
    err = capsys.readouterr().err
    assert "start 1 of 3 (svd): relerr" in err and "3/3 start 3 of 3 (random)" in err


def test_compress_network_progress_labels_each_layer(rng, capsys, no_tqdm):
    net = {"fc1": LayerSpec(Piece("linear", rng.standard_normal((16, 24)))),
           "fc2": LayerSpec(Piece("linear", rng.standard_normal((8, 16))))}
    compress_network(net, 0.5, progress=True)
    err = capsys.readouterr().err
    assert "1/4 fc1: error curve" in err and "2/4 fc2: error curve" in err
    assert "3/4 fc1: svd at rank" in err and "4/4 fc2: " in err


@pytest.mark.parametrize("call", [
    lambda T: rankest(T, 2, progress="yes"),
    lambda T: stability(T, 2, progress=2),
    lambda T: mlrankest(T, progress="yes"),
])
def test_progress_must_be_a_flag(T, call):
    with pytest.raises(ValueError, match="progress: expected True"):
        call(T)
