"""plot_convergence: panels, drawn histories, several runs."""

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from sdf.errors import ModelError
from sdf.viz import plot_convergence


def test_four_panels_with_the_history(result_xr):
    cp = plot_convergence(result_xr)
    h = result_xr.history
    assert len(cp.figure.axes) == 4
    positive = np.array(h.objective) > 0  # log axes: zeros are left out (NaN)
    np.testing.assert_allclose(cp.lines["", "objective"].get_ydata()[positive],
                               np.array(h.objective)[positive])
    assert np.isnan(cp.lines["", "objective"].get_ydata()[~positive]).all()
    np.testing.assert_allclose(cp.lines["", "relerr:T"].get_ydata()[positive],
                               np.array(h.relerr["T"])[positive])
    np.testing.assert_allclose(cp.lines["", "cg_iterations"].get_ydata(), h.cg_iterations)
    np.testing.assert_allclose(cp.lines["", "radius"].get_ydata(), h.radius)
    np.testing.assert_array_equal(cp.lines["", "objective"].get_xdata(), h.iterations)
    assert cp.axes["radius"].get_xlabel() == "iteration"


def test_several_runs_overlaid_in_their_own_colours(result_xr, result_missing):
    cp = plot_convergence({"dense": result_xr, "missing": result_missing.history})
    assert to_rgba(cp.lines["dense", "objective"].get_color()) == to_rgba("C0")
    assert to_rgba(cp.lines["missing", "relerr:T"].get_color()) == to_rgba("C1")
    assert [t.get_text() for t in cp.axes["objective"].get_legend().get_texts()] == [
        "dense", "missing"]


def test_against_time(result_xr):
    cp = plot_convergence([result_xr], x="time")
    np.testing.assert_allclose(cp.lines["run 0", "objective"].get_xdata(),
                               result_xr.history.time)
    assert cp.axes["cg_iterations"].get_xlabel() == "time (s)"


def test_bad_x_fails(result_xr):
    with pytest.raises(ModelError, match="x must be 'iteration' or 'time', got 'iter'"):
        plot_convergence(result_xr, x="iter")


def test_bad_run_fails():
    with pytest.raises(ModelError, match="run 'a' is a int; expected an sdf.Result"):
        plot_convergence({"a": 3})


def test_label_count_must_match(result_xr):
    with pytest.raises(ModelError, match="2 labels given for 1 runs"):
        plot_convergence([result_xr], labels=["a", "b"])


def test_driver_stages_on_one_time_axis(rng):
    from sdf.algebra import cpd_to_tensor
    from sdf.models import cpd

    T = cpd_to_tensor([rng.standard_normal((n, 2)) for n in (20, 15, 10)])
    dec = cpd(T + 0.01 * rng.standard_normal(T.shape), 2, seed=0)
    cp = plot_convergence(dec)
    assert sorted({run for run, _ in cp.lines}) == ["core", "refine"]
    core, refine = dec.stages[2], dec.stages[3]
    start = sum(st.time for st in dec.stages[:3])
    np.testing.assert_allclose(cp.lines["refine", "objective"].get_xdata(),
                               start + np.asarray(refine.history.time))
    assert cp.lines["core", "objective"].get_xdata()[-1] <= start
    assert cp.axes["radius"].get_xlabel() == "time (s)"
    shaded = [p for p in cp.axes["objective"].patches]
    assert len(shaded) == 2  # compress and init


def test_driver_stages_end_to_end_by_iteration(rng):
    from sdf.algebra import cpd_to_tensor
    from sdf.models import cpd

    T = cpd_to_tensor([rng.standard_normal((n, 2)) for n in (20, 15, 10)])
    dec = cpd(T + 0.01 * rng.standard_normal(T.shape), 2, seed=0)
    cp = plot_convergence({"cpd": dec}, x="iteration")
    n_core = len(dec.stages[2].history.objective)
    assert cp.lines["cpd: refine", "objective"].get_xdata()[0] == n_core
