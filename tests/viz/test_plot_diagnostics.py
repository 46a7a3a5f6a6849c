"""plot_rankest, plot_core_consistency, plot_compression."""

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from sdf.errors import DataError, ModelError
from sdf.viz import plot_compression, plot_core_consistency, plot_rankest


def test_rankest_draws_errors_and_marks_the_choice():
    cp = plot_rankest([1, 2, 3], [0.5, 0.01, 0.009], chosen=2)
    np.testing.assert_allclose(cp.line.get_ydata(), [0.5, 0.01, 0.009])
    assert cp.chosen.get_xdata().tolist() == [2.0] and cp.chosen.get_ydata().tolist() == [0.01]
    assert cp.ax.get_yscale() == "log" and cp.ax.get_xlabel() == "rank R"


def test_rankest_trials_and_duck_typed_result():
    est = SimpleNamespace(ranks=np.array([1, 2]), errors=np.array([[0.5, 0.4], [0.2, 0.3]]),
                          rank=2)
    cp = plot_rankest(est)
    np.testing.assert_allclose(cp.line.get_ydata(), [0.4, 0.2])
    assert len(cp.trials.get_xdata()) == 4 and cp.chosen is not None


def test_rankest_on_given_axes():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert plot_rankest([1, 2], [1.0, 0.5], ax=ax).ax is ax


def test_rankest_chosen_must_be_a_rank():
    with pytest.raises(ModelError, match=r"chosen rank 5 is not among the ranks \[1, 2\]"):
        plot_rankest([1, 2], [0.5, 0.1], chosen=5)


def test_rankest_shapes_must_match():
    with pytest.raises(DataError, match=r"errors must have shape \(2,\)"):
        plot_rankest([1, 2], [0.5, 0.1, 0.0])


def test_core_consistency_values_and_clipping():
    cp = plot_core_consistency(SimpleNamespace(ranks=[1, 2, 3], corcondia=[100, 80, -400]))
    np.testing.assert_allclose(cp.line.get_ydata(), [100, 80, -400])
    assert cp.ax.get_ylim() == (-105.0, 105.0)
    assert cp.ax.get_ylabel() == "core consistency (%)"


def test_core_consistency_shapes_must_match():
    with pytest.raises(DataError, match=r"corcondia must have shape \(2,\)"):
        plot_core_consistency([1, 2], [100.0])


def test_compression_curves_per_layer_with_chosen_points():
    cp = plot_compression({"fc1": ([0.4, 0.1], [0.1, 0.5]), "fc2": ([0.1, 0.4], [0.3, 0.2])},
                          chosen={"fc1": 0.25, "fc2": (0.1, 0.3)})
    np.testing.assert_allclose(cp.lines["fc1"].get_xdata(), [0.1, 0.4])  # sorted
    np.testing.assert_allclose(cp.chosen["fc1"].get_ydata(), [0.3])  # read off the curve
    assert to_rgba(cp.chosen["fc2"].get_color()) == to_rgba(cp.lines["fc2"].get_color())


def test_compression_arrays_and_labels():
    cp = plot_compression(np.array([[0.1, 0.2], [0.1, 0.2]]),
                          np.array([[0.3, 0.1], [0.2, 0.05]]), labels=["a", "b"])
    assert sorted(cp.lines) == ["a", "b"]


def test_compression_of_compressed_layers_marks_their_rank():
    curve = SimpleNamespace(ranks=np.array([1, 2, 4]), params=np.array([10, 20, 40]),
                            errors=np.array([0.5, 0.2, 0.05]))
    layer = SimpleNamespace(name="conv1", curve=curve, params_before=100, rank=2)
    cp = plot_compression([layer])
    np.testing.assert_allclose(cp.lines["conv1"].get_xdata(), [0.1, 0.2, 0.4])
    assert cp.chosen["conv1"].get_xdata().tolist() == [0.2]


def test_compression_unknown_chosen_layer_fails():
    with pytest.raises(ModelError, match=r"chosen: no layer named \['fc9'\]"):
        plot_compression({"fc1": ([0.1], [0.5])}, chosen={"fc9": 0.1})


def test_compression_mismatched_lengths_fail():
    with pytest.raises(DataError, match="layer 'fc1': 2 ratios but 1 errors"):
        plot_compression({"fc1": ([0.1, 0.2], [0.5])})


def test_rankest_estimate_shows_every_start_runner_up_and_heldout():
    est = SimpleNamespace(ranks=np.array([1, 2, 3]), errors=np.array([0.5, 0.01, 0.009]),
                          start_errors=np.array([[0.5, 0.5], [0.01, 0.2], [0.009, 0.0095]]),
                          rank=2, runner_up=3, heldout=np.array([0.6, 0.02, 0.03]))
    cp = plot_rankest(est)
    assert cp.trials.get_ydata().tolist() == [0.5, 0.5, 0.01, 0.2, 0.009, 0.0095]
    assert cp.line.get_ydata().tolist() == [0.5, 0.01, 0.009]
    assert cp.runner_up.get_xdata().tolist() == [3.0]
    assert cp.heldout.get_ydata().tolist() == [0.6, 0.02, 0.03]


def test_plot_starts_draws_every_start_and_marks_the_kept_one():
    import numpy as np

    from sdf.models import cpd
    from sdf.viz import plot_starts

    rng = np.random.default_rng(0)
    T = np.einsum("ir,jr,kr->ijk", *(rng.standard_normal((n, 2)) for n in (6, 5, 4)))
    dec = cpd(T + 0.1 * rng.standard_normal(T.shape), 2, n_starts=3, seed=0)
    cp = plot_starts(dec)
    assert list(cp.line.get_ydata()) == [s.relerr for s in dec.starts]
    assert cp.chosen.get_ydata()[0] == dec.relerr


def test_plot_starts_needs_starts():
    import numpy as np
    import pytest

    import sdf
    from sdf.models import cpd
    from sdf.viz import plot_starts

    rng = np.random.default_rng(0)
    with pytest.raises(sdf.ModelError, match="plot_starts: no starts to draw"):
        plot_starts(cpd(rng.standard_normal((4, 4, 4)), 1, seed=0))
