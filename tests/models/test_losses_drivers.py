"""Drivers with a loss per data set: cpd, cmtf, fuse and rankest (planted problems)."""

import numpy as np
import pytest
import xarray as xr

import sdf
from sdf import algebra
from sdf.errors import ModelError
from sdf.models import cmtf, cpd, fms, fuse, rankest

SHAPE, RANK = (30, 25, 20), 3


@pytest.fixture
def planted_counts():
    rng = np.random.default_rng(0)
    truth = [0.8 * rng.standard_normal((n, RANK)) for n in SHAPE]
    counts = rng.poisson(np.exp(algebra.cpd_to_tensor(truth))).astype(float)
    return truth, counts


def test_cpd_poisson_recovers_where_least_squares_does_not(planted_counts):
    truth, counts = planted_counts
    dec = cpd(counts, RANK, loss="poisson", seed=0)
    ls = cpd(counts, RANK, seed=0)
    assert [s.name for s in dec.stages] == ["init", "fit"]
    assert "working data" in dec.stages[0].detail
    assert fms(dec.factors, truth) > 0.95
    assert fms(ls.factors, truth) < fms(dec.factors, truth) - 0.1


def test_cpd_bernoulli_recovers_logit_factors():
    rng = np.random.default_rng(1)
    truth = [rng.standard_normal((n, 2)) for n in (40, 35, 30)]
    p = 1.0 / (1.0 + np.exp(-algebra.cpd_to_tensor(truth)))
    X = (rng.random(p.shape) < p).astype(float)
    dec = cpd(X, 2, loss="bernoulli", seed=0)
    assert fms(dec.factors, truth) > 0.9


def test_cpd_identity_link_starts_nonnegative(planted_counts):
    rng = np.random.default_rng(2)
    truth = [rng.random((n, 2)) for n in SHAPE]
    X = rng.poisson(2.0 * algebra.cpd_to_tensor(truth)).astype(float)
    dec = cpd(X, 2, loss=sdf.losses.Poisson(link="identity"), seed=0)
    assert "absolute values" in dec.stages[0].detail
    assert np.all(algebra.cpd_to_tensor(dec.factors) >= 0)
    assert fms(dec.factors, truth) > 0.9


def test_result_reports_loss_and_deviance(planted_counts):
    _, counts = planted_counts
    dec = cpd(counts, RANK, loss="poisson", seed=0, max_iter=20)
    res = dec.result
    assert res.losses == {"data": "poisson"}
    assert res.deviance["data"] == pytest.approx(2 * res.loss_values["data"])
    M = algebra.cpd_to_tensor(dec.factors)
    recomputed = 2 * np.sum(sdf.losses.Poisson().value(M, counts))
    assert res.deviance["data"] == pytest.approx(recomputed, rel=1e-10)
    assert dec.deviance == res.deviance
    assert "poisson deviance" in repr(res) and "poisson deviance" in repr(dec)


def test_result_repr_without_other_losses_is_unchanged():
    a = sdf.Variable(np.ones((3, 1)), name="a")
    res = sdf.Model(m=sdf.CPD(np.outer([1.0, 2, 3], [1.0, 1]), [a, np.ones((2, 1))])).fit()
    assert "losses" not in repr(res)
    assert res.losses == {"m": "gaussian"}


def test_cmtf_mixed_losses_share_a_factor(planted_counts):
    truth, counts = planted_counts
    rng = np.random.default_rng(3)
    Y = truth[0] @ rng.standard_normal((6, RANK)).T + 0.05 * rng.standard_normal((30, 6))
    dec = cmtf({"X": counts, "Y": Y}, RANK, modes={"X": "ijk", "Y": "il"},
               losses={"X": "poisson"}, seed=0)
    assert dec.result.losses == {"X": "poisson", "Y": "gaussian"}
    assert fms(dec.factors[:3], truth) > 0.9
    assert 0 < dec.relerr < 1


def test_cmtf_rejects_unknown_loss_and_data_set(planted_counts):
    _, counts = planted_counts
    with pytest.raises(ModelError, match=r"losses\['X'\]: unknown loss 'poison'"):
        cmtf({"X": counts}, 2, modes={"X": "ijk"}, losses={"X": "poison"})
    with pytest.raises(ModelError, match="losses: unknown data sets"):
        cmtf({"X": counts}, 2, modes={"X": "ijk"}, losses={"Z": "poisson"})


def test_fuse_takes_a_loss_per_data_set(planted_counts):
    truth, counts = planted_counts
    X = xr.DataArray(counts, dims=("i", "j", "k"))
    res = fuse({"X": X}, RANK, losses={"X": "poisson"}, seed=0, max_iter=200)
    assert res.losses == {"X": "poisson"}
    with pytest.raises(ModelError, match="losses names unknown data set"):
        fuse({"X": X}, RANK, losses={"Y": "poisson"})


def test_cpd_rejects_a_bad_loss(planted_counts):
    with pytest.raises(ModelError, match="loss: unknown loss 'nope'"):
        cpd(planted_counts[1], 2, loss="nope")


def test_rankest_reports_deviance(planted_counts):
    _, counts = planted_counts
    est = rankest(counts, 3, loss="poisson", seed=0,
                  criteria=sdf.models.RankCriteria(stability_repeats=0))
    assert est.loss == "poisson"
    assert est.summary().splitlines()[0].startswith("rank deviance")
    assert np.all(np.diff(est.deviance) < 0)
    assert est.deviance[0] == pytest.approx(est.fits[0].result.deviance["data"])
