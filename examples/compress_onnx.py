"""Round trip through ONNX: train, export, read, compress, refit, write, run with onnxruntime.

A scikit-learn MLP (64-128-64-10) is trained on the 8x8 digits (cached under the system
temp directory) and written as an ONNX model; the model is read back into a
``SequentialNet`` (its numpy forward checked against onnxruntime), compressed to 30 % of
its parameters (weights only, and data-aware), the compressed network refitted to the
dense network's outputs, and written as a new ONNX model of thinner ``Gemm`` layers that
onnxruntime runs. The report gives accuracies and latencies; the figure shows accuracy
against parameters for the three fits. Needs ``pip install "sdfusion[onnx]"``.
Run: ``python examples/compress_onnx.py``.
"""

import os
from pathlib import Path
import tempfile

# Small matrices: one BLAS thread is fastest (and does not fight onnxruntime's own thread)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from sdf.models.compress import (as_sequential, compress_network, nets, onnx_latency,  # noqa: E402
                                 read_onnx, refit_network, run_onnx, write_onnx)

RATIO = 0.3
BATCH = 256


def main() -> None:
    digits = nets.load_digits_split(seed=0)
    cache = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")
    mlp = nets.cached_net("mlp-digits-v1", lambda: nets.train_mlp_digits(digits, seed=0), cache)
    with tempfile.TemporaryDirectory() as tmp:
        dense_path = Path(tmp) / "mlp.onnx"
        write_onnx(as_sequential(mlp), path=dense_path)          # the model to compress
        net = read_onnx(dense_path)
        x = digits.X_test
        diff = np.max(np.abs(net.forward(x) - run_onnx(dense_path, x)))
        acc0 = net.accuracy(x, digits.y_test)
        print(f"read {dense_path.name}: {net}")
        print(f"numpy forward vs onnxruntime: largest difference {diff:.1e}; "
              f"dense accuracy {acc0:.4f}")

        curves = {"svd": [], "data-aware": [], "data-aware + refit": []}
        params = []
        for ratio in (0.1, 0.2, RATIO, 0.5):
            accs, pieces = _compress(net, digits, ratio)
            for key, acc in accs.items():
                curves[key].append(acc)
            params.append(net.count_params(pieces))
            if ratio == RATIO:
                chosen, chosen_accs = pieces, accs
        print(f"\nat {RATIO:.0%} of the parameters ({net.count_params(chosen)}/{net.n_params}):"
              f" accuracy svd {chosen_accs['svd']:.4f}, data-aware "
              f"{chosen_accs['data-aware']:.4f}, data-aware + refit "
              f"{chosen_accs['data-aware + refit']:.4f} (dense {acc0:.4f})")

        small_path = Path(tmp) / "mlp_compressed.onnx"
        model = write_onnx(net, chosen, path=small_path)
        ort_acc = float(np.mean(np.argmax(run_onnx(small_path, x), axis=1) == digits.y_test))
        batch = np.resize(x, (BATCH, x.shape[1]))
        t_dense = onnx_latency(dense_path, batch, repeat=50)
        t_small = onnx_latency(small_path, batch, repeat=50)
        macs = net.count_macs(chosen) / net.count_macs()
        print(f"compressed ONNX: {len(model.graph.node)} nodes "
              f"({', '.join(sorted({n.op_type for n in model.graph.node}))}), "
              f"{small_path.stat().st_size // 1024} KiB vs {dense_path.stat().st_size // 1024} KiB")
        print(f"onnxruntime: accuracy {ort_acc:.4f}; batch of {BATCH}, 1 thread: "
              f"{1e3 * t_small:.3f} ms vs {1e3 * t_dense:.3f} ms dense "
              f"({t_dense / t_small:.2f}x faster; MACs {macs:.2f} of the dense network's)")

    path = str(Path(__file__).resolve().parent / "compress_onnx.png")
    _plot(np.array(params) / net.n_params, curves, acc0, path)
    print(f"\nfigure written to {path}")


def _compress(net, digits, ratio):
    """Accuracies of the three fits at ``ratio``; the refitted pieces."""
    accs = {}
    for aware in (False, True):
        res = compress_network(net.layer_specs(digits.X_calib if aware else None), ratio,
                               balance=0.99)
        pieces = {n: c.pieces for n, c in res.layers.items()}
        accs["data-aware" if aware else "svd"] = net.accuracy(digits.X_test, digits.y_test,
                                                              pieces)
    refit = refit_network(net, res, digits.X_train)
    accs["data-aware + refit"] = net.accuracy(digits.X_test, digits.y_test, refit.pieces)
    return accs, refit.pieces


def _plot(share, curves, acc0, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (label, accs), marker in zip(curves.items(), "osD"):
        ax.plot(share, accs, marker=marker, label=label)
    ax.axhline(acc0, color="k", ls="--", lw=1, label="dense")
    ax.set_xlabel("parameters / dense network")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("digits MLP: accuracy against parameters")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
