"""Every sdf.viz function accepts every driver's output (a Decomposition; fuse's Result)."""

from __future__ import annotations

import numpy as np
import pytest

import sdf

from sdf import algebra
from sdf.models import btd, cmtf, cpd, fuse, ll1, lmlra, rankest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
viz = pytest.importorskip("sdf.viz")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


xr = pytest.importorskip("xarray")


@pytest.fixture(scope="module")
def decompositions():
    rng = np.random.default_rng(0)
    F = [rng.standard_normal((n, 2)) for n in (7, 6, 5)]
    T = algebra.cpd_to_tensor(F) + 0.01 * rng.standard_normal((7, 6, 5))
    Y = F[0] @ rng.standard_normal((4, 2)).T
    dims = {"X": ("a", "b", "c"), "Y": ("a", "d")}
    arrays = {k: xr.DataArray(v, dims=dims[k]) for k, v in (("X", T), ("Y", Y))}
    return {
        "cpd": cpd(T, 2, seed=0),
        "lmlra": lmlra(T, (2, 2, 2)),
        "btd": btd(T, [(1, 2, 2), (1, 1, 1)], seed=0, max_iter=20),
        "ll1": ll1(T, [2, 1], seed=0, max_iter=20),
        "cmtf": cmtf({"X": T, "Y": Y}, 2, modes=dims, seed=0, max_iter=20),
        "fuse": fuse(arrays, 2, seed=0, max_iter=20),
    }


KINDS = ["cpd", "lmlra", "btd", "ll1", "cmtf", "fuse"]
VIEW_KIND = {"cpd": "CPD", "lmlra": "LMLRA", "btd": "BTD", "ll1": "LL1", "cmtf": "CPD",
             "fuse": "CPD"}


@pytest.mark.parametrize("kind", KINDS)
def test_normalize_columns_and_align_signs(decompositions, kind):
    dec = decompositions[kind]
    view = viz.normalize_columns(dec)
    assert view.kind == VIEW_KIND[kind]
    for A in view.factors:
        np.testing.assert_allclose(np.linalg.norm(A, axis=0), 1.0)
    aligned = viz.align_signs(dec)
    np.testing.assert_allclose(aligned.full(), viz.align_signs(aligned).full())
    np.testing.assert_allclose(aligned.full(), _full_model(dec), atol=1e-12)


def _full_model(dec):
    """The model of the first data term, from the decomposition's own layout."""
    if hasattr(dec, "kind") and dec.kind == "LMLRA":
        return algebra.tucker_to_tensor(dec.factors, dec.core)
    if hasattr(dec, "kind") and dec.kind == "BTD":
        return sum(algebra.tucker_to_tensor(b[:-1], b[-1]) for b in dec.factors)
    if hasattr(dec, "kind") and dec.kind == "LL1":
        A, B, C = dec.factors
        return algebra.cpd_to_tensor([A, B, C[:, np.repeat(np.arange(len(dec.L)), dec.L)]])
    if hasattr(dec, "kind") and dec.kind == "CMTF":
        return algebra.cpd_to_tensor(dec.factors[:3])
    if hasattr(dec, "kind"):
        return algebra.cpd_to_tensor(dec.factors)
    return algebra.cpd_to_tensor(dec.factors("X"))  # fuse: an sdf.Result


@pytest.mark.parametrize("kind", KINDS)
def test_views_carry_the_data_fitted(decompositions, kind):
    view = viz.normalize_columns(decompositions[kind])
    assert view.data is not None and view.data.shape == view.shape


def test_views_of_fuse_keep_dim_names(decompositions):
    assert viz.align_signs(decompositions["fuse"]).dims == ["a", "b", "c"]
    assert viz.align_signs(decompositions["fuse"], term="Y").dims == ["a", "d"]


def test_a_views_term_cannot_be_chosen_again(decompositions):
    view = viz.align_signs(decompositions["cpd"])
    with pytest.raises(sdf.ModelError, match="term='x' needs an sdf.Result or a Decomposition"):
        viz.normalize_columns(view, term="x")


@pytest.mark.parametrize("kind", KINDS)
def test_plot_factors(decompositions, kind):
    assert viz.plot_factors(decompositions[kind]) is not None


@pytest.mark.parametrize("kind", KINDS)
def test_plot_convergence(decompositions, kind):
    assert viz.plot_convergence(decompositions[kind]) is not None


@pytest.mark.parametrize("kind", KINDS)
def test_plot_residuals(decompositions, kind):
    assert viz.plot_residuals(decompositions[kind]) is not None


@pytest.mark.parametrize("kind", KINDS)
def test_plot_slices(decompositions, kind):
    assert viz.plot_slices(decompositions[kind]) is not None


def test_rank_curves_take_a_rank_estimate():
    rng = np.random.default_rng(1)
    T = algebra.cpd_to_tensor([rng.standard_normal((n, 2)) for n in (6, 5, 4)])
    est = rankest(T + 1e-3 * rng.standard_normal(T.shape), 3, n_starts=1, seed=0)
    assert viz.plot_rankest(est) is not None
    assert viz.plot_core_consistency(est) is not None
