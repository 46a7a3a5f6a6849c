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
