"""Honest stopping: budget stops while still improving are flagged; stages say how they stopped."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.fit import _still_decreasing
from sdf.models import cmtf, cpd


@pytest.fixture
def data(rng):
    T = algebra.cpd_to_tensor([rng.standard_normal((n, 3)) for n in (10, 9, 8)])
    return T + 0.01 * rng.standard_normal(T.shape)


def model_of(T):
    return sdf.Model(eem=sdf.CPD(T, [sdf.Variable.random((n, 3), seed=k, name=f"x{k}")
                                     for k, n in enumerate(T.shape)]))


def test_budget_stop_while_improving_warns_once_naming_term_and_change(data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model_of(data).fit(max_iter=3)
    found = [str(w.message) for w in caught if "still decreasing" in str(w.message)]
    assert len(found) == 1
    assert found[0].startswith("term 'eem' (relative error ")
    assert f"{res.history.relchange[-1]:.2e} > 10 x tol_fun" in found[0]
    assert res.stop is sdf.StopReason.MAX_ITER and not res.converged
    assert found[0] in res.warnings


def test_converged_fit_is_converged_and_quiet(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model_of(data).fit(max_iter=300)
    assert res.stop.converged and res.converged and res.warnings == []


@pytest.mark.parametrize(("last", "flagged"), [(5e-12, False), (2e-11, True), (np.nan, False)])
def test_still_decreasing_rule_is_ten_times_tol_fun(last, flagged):
    history = sdf.History(relchange=[np.nan, 1e-3, last], relerr={"eem": [1.0, 0.5, 0.4]})
    found = _still_decreasing(sdf.StopReason.MAX_ITER, history, 1e-12)
    assert bool(found) == flagged
    assert not _still_decreasing(sdf.StopReason.TOL_X, history, 1e-12)


def test_lbfgs_budget_stop_is_flagged(data):
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = model_of(data).fit(method="minf", max_iter=5)
    assert res.stop is sdf.StopReason.MAX_ITER and not res.converged


def test_converged_survives_save_and_load(data, tmp_path):
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = model_of(data).fit(max_iter=3)
    res.save(tmp_path / "fit.nc")
    assert not sdf.load_result(tmp_path / "fit.nc").converged


def test_driver_stages_report_their_stop(rng):
    T = algebra.cpd_to_tensor([rng.standard_normal((n, 3)) for n in (20, 15, 10)])
    dec = cpd(T + 1e-3 * rng.standard_normal(T.shape), 3, seed=0)
    stops = {s.name: s.stop for s in dec.stages}
    assert stops["compress"] is None and stops["init"] is None
    assert stops["core"] is not None and stops["refine"] is dec.stop
    assert dec.stages[-1].history is dec.history
    assert "refine (" in repr(dec) and "core (" in repr(dec)
    assert dec.converged


def test_driver_refine_stopped_early_is_reported(rng):
    T = algebra.cpd_to_tensor([rng.standard_normal((n, 3)) for n in (10, 9, 8)])
    T = T + 0.05 * rng.standard_normal(T.shape)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        dec = cpd(T, 3, init="random", compress=False, seed=0, max_iter=2)
    assert dec.stages[-1].stop is sdf.StopReason.MAX_ITER and not dec.converged


def test_cmtf_fit_stage_reports_its_stop(rng):
    A, B, C, D = (rng.standard_normal((n, 2)) for n in (6, 5, 4, 3))
    dec = cmtf({"x": algebra.cpd_to_tensor([A, B, C]), "y": A @ D.T}, 2,
               modes={"x": ["i", "j", "k"], "y": ["i", "l"]}, seed=0)
    assert dec.stages[-1].name == "fit" and dec.stages[-1].stop is dec.stop
