"""Compress every layer of a trained CNN to one global parameter budget.

A small CNN is trained on scikit-learn's 8x8 digits (autograd + Adam, cached under the
system temp directory), every layer is compressed to 50 % of the network's parameters,
once from the weights alone and once data-aware (layer responses on 500 calibration
images as a second data set), and a table and the error-against-parameters trade-off
plot are written. Run: ``python examples/compress_network.py``.
"""

import os
from pathlib import Path
import tempfile

from sdf.models.compress import LayerSpec, compress_network, nets

RATIO = 0.5


def main() -> None:
    digits = nets.load_digits_split(seed=0)
    cache = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")
    cnn = nets.cached_net("cnn-digits-v1", lambda: nets.train_cnn_digits(digits, seed=0), cache)
    calib, test = cnn.layer_inputs(digits.X_calib), cnn.layer_inputs(digits.X_test)
    acc0 = cnn.accuracy(digits.X_test, digits.y_test)
    print(f"CNN: {cnn.n_params} parameters, held-out accuracy {acc0:.3f}")
    results, accuracy = {}, {"original": acc0}
    for aware in (False, True):
        specs = {n: LayerSpec(p, X=calib[n] if aware else None, X_test=test[n])
                 for n, p in cnn.layers.items()}
        res = compress_network(specs, RATIO, balance=0.99)
        acc = cnn.accuracy(digits.X_test, digits.y_test,
                           {n: c.pieces for n, c in res.layers.items()})
        label = "data-aware" if aware else "weights only"
        results[label], accuracy[label] = res, acc
        print(f"\n{label}: {res.params_after}/{res.params_before} parameters, "
              f"accuracy {acc0:.3f} -> {acc:.3f}")
        print(f"{'layer':6} {'method':12} {'rank':>4} {'params':>14} {'weight err':>10} "
              f"{'out err (test)':>14}")
        for row in res.table():
            print(f"{row['layer']:6} {row['method']:12} {row['rank']:>4} "
                  f"{row['params_before']:>6} -> {row['params_after']:<5} "
                  f"{row['weight_error']:>10.4f} {row['test_output_error']:>14.4f}")
    path = str(Path(__file__).resolve().parent / "compress_network.png")
    figure(results, accuracy).savefig(path, dpi=120)
    print("\nfigure: left, each layer's relative weight error against its share of the "
          "parameters (weights-only curves; the stars are the ranks chosen, the 'weight "
          "err' column of the weights-only table); right, held-out accuracy")
    print(f"figure written to {path}")


def figure(results: dict, accuracy: dict[str, float]):
    """Weight error curves of the weights-only run, chosen ranks starred; accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sdf.viz import plot_compression

    fig, (ax, bar_ax) = plt.subplots(1, 2, figsize=(10, 4),
                                     gridspec_kw={"width_ratios": [1.6, 1]},
                                     layout="constrained")
    # Weights only: a layer's curve is the relative error of its weight,
    # ||W - W_r|| / ||W||, at every rank: the table's "weight err" at the chosen rank.
    layers = list(results["weights only"].layers.values())
    plot_compression(layers, ax=ax)
    ax.set_ylabel("relative weight error ||W - W_r|| / ||W||")
    ax.set_xlabel("parameters kept (share of the layer's)")
    ax.set_title(f"weights only: ranks chosen for {RATIO:.0%} of the network")
    names = list(accuracy)
    bars = bar_ax.bar(names, [accuracy[n] for n in names], color=["0.5", "C0", "C1"])
    bar_ax.bar_label(bars, fmt="%.3f")
    low = min(accuracy.values())
    bar_ax.set_ylim(max(0.0, low - 0.1), 1.0)
    bar_ax.set_ylabel("held-out accuracy")
    bar_ax.set_title(f"digits CNN at {RATIO:.0%} of the parameters")
    return fig


if __name__ == "__main__":
    main()
