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

import numpy as np

from sdf.models.compress import LayerSpec, compress_network, nets

RATIO = 0.5


def main() -> None:
    digits = nets.load_digits_split(seed=0)
    cache = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")
    cnn = nets.cached_net("cnn-digits-v1", lambda: nets.train_cnn_digits(digits, seed=0), cache)
    calib, test = cnn.layer_inputs(digits.X_calib), cnn.layer_inputs(digits.X_test)
    acc0 = cnn.accuracy(digits.X_test, digits.y_test)
    print(f"CNN: {cnn.n_params} parameters, held-out accuracy {acc0:.3f}")
    results = {}
    for aware in (False, True):
        specs = {n: LayerSpec(p, X=calib[n] if aware else None, X_test=test[n])
                 for n, p in cnn.layers.items()}
        res = compress_network(specs, RATIO, balance=0.99)
        acc = cnn.accuracy(digits.X_test, digits.y_test,
                           {n: c.pieces for n, c in res.layers.items()})
        results[aware] = res
        print(f"\n{'data-aware' if aware else 'weights only'}: "
              f"{res.params_after}/{res.params_before} parameters, accuracy {acc0:.3f} -> {acc:.3f}")
        print(f"{'layer':6} {'method':12} {'rank':>4} {'params':>14} {'weight err':>10} "
              f"{'out err (test)':>14}")
        for row in res.table():
            print(f"{row['layer']:6} {row['method']:12} {row['rank']:>4} "
                  f"{row['params_before']:>6} -> {row['params_after']:<5} "
                  f"{row['weight_error']:>10.4f} {row['test_output_error']:>14.4f}")
    path = str(Path(__file__).resolve().parent / "compress_network.png")
    _plot(results[True], path)
    print(f"\nfigure written to {path}")


def _plot(res, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        from sdf.viz import plot_compression
    except ImportError:
        plot_compression = None
    fig, ax = plt.subplots(figsize=(6, 4))
    layers = list(res.layers.values())
    if plot_compression is not None:
        plot_compression(layers, ax=ax)
    else:
        for c in layers:
            ax.plot(c.curve.params / c.params_before, c.curve.errors, label=c.name)
            k = int(np.flatnonzero(c.curve.ranks == c.rank)[0])
            ax.plot(c.curve.params[k] / c.params_before, c.curve.errors[k], "ko")
        ax.set_xlabel("parameters / original")
        ax.set_ylabel("relative error")
        ax.legend()
    ax.set_title(f"rank choice at {RATIO:.0%} of the parameters")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
