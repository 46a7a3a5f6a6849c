import itertools

import numpy as np
import pytest

from sdf.errors import ModelError
from sdf.models.compress import Piece, RankCurve, allocate_ranks, rank_for_ratio


def _curve(rng, n):
    s = np.sort(rng.random(n))[::-1] ** 2
    err = np.sqrt(np.concatenate([np.cumsum(s[::-1])[::-1][1:], [0.0]]) / s.sum())
    return RankCurve(np.arange(1, n + 1), 10 * np.arange(1, n + 1), np.zeros(n, int), err)


def test_allocation_respects_budget_and_beats_uniform(rng):
    curves = {k: _curve(rng, 8) for k in "abc"}
    ranks = allocate_ranks(curves, 120)
    spent = sum(curves[k].params[r - 1] for k, r in ranks.items())
    assert spent <= 120
    total = sum(curves[k].errors[r - 1] ** 2 for k, r in ranks.items())
    assert total <= sum(curves[k].errors[3] ** 2 for k in curves) + 1e-12


def test_allocation_is_optimal_on_convex_curves(rng):
    curves = {k: _curve(rng, 6) for k in "ab"}
    ranks = allocate_ranks(curves, 70)
    best = min((curves["a"].errors[i] ** 2 + curves["b"].errors[j] ** 2)
               for i, j in itertools.product(range(6), range(6)) if 10 * (i + j + 2) <= 70)
    got = sum(curves[k].errors[r - 1] ** 2 for k, r in ranks.items())
    assert got == pytest.approx(best)


def test_allocation_over_budget_raises(rng):
    with pytest.raises(ModelError, match="smallest ranks already cost 20 parameters"):
        allocate_ranks({k: _curve(rng, 3) for k in "ab"}, 5)


def test_rank_for_ratio_macs():
    conv = Piece("conv2d", np.zeros((16, 16, 3, 3)), padding=1)
    r = rank_for_ratio("channel_svd", conv, 0.5, "macs", (8, 8))
    assert r == 16 * 16 * 9 // 2 // (16 * 9 + 16)
    with pytest.raises(ModelError, match="MAC ratio of a convolution needs input_hw"):
        rank_for_ratio("channel_svd", conv, 0.5, "macs")
