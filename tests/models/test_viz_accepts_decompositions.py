"""Every sdf.viz function accepts a driver's Decomposition as it accepts a Result."""

from __future__ import annotations

import numpy as np
import pytest

from sdf import algebra
from sdf.models import btd, cpd, ll1, lmlra, rankest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
viz = pytest.importorskip("sdf.viz")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def decompositions():
    rng = np.random.default_rng(0)
    F = [rng.standard_normal((n, 2)) for n in (7, 6, 5)]
    T = algebra.cpd_to_tensor(F) + 0.01 * rng.standard_normal((7, 6, 5))
    return {
        "cpd": cpd(T, 2, seed=0),
        "lmlra": lmlra(T, (2, 2, 2)),
        "btd": btd(T, [(1, 1, 1), (1, 1, 1)], seed=0, max_iter=20),
        "ll1": ll1(T, [1, 1], seed=0),
    }


KINDS = ["cpd", "lmlra", "btd", "ll1"]


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
