"""Benchmark of the whole-network refit and of compressed ONNX models (run as a script).

1. Accuracy at 30 % of the parameters, before and after :func:`refit_network`, of trained
   digits classifiers (scikit-learn MLPs, the small CNN), from a weights-only (SVD) and a
   data-aware compression; baseline: the dense network's accuracy, same process.
2. Accuracy against parameters on the digits MLP: SVD, data-aware, data-aware + refit.
3. onnxruntime latency of the compressed network against the dense one (same batch of 256,
   one intra-op thread), with the MAC ratio and the share of the ideal speed-up reached;
   the written models are checked against the numpy forward first.

Writes the tables to benchmarks/results/bench_refit_onnx.txt. Run with
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_refit_onnx.py``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from sdf.models.compress import (RefitOptions, as_sequential, compress_network, nets,
                                 onnx_latency, refit_network, run_onnx, write_onnx)

RATIO = 0.3
BATCH = 256
OUT = Path(__file__).resolve().parent / "results" / "bench_refit_onnx.txt"
CACHE = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def networks(digits: nets.DigitsSplit) -> dict[str, nets.SmallNet]:
    return {
        "mlp 64-128-64-10": nets.cached_net(
            "mlp-digits-v1", lambda: nets.train_mlp_digits(digits, seed=0), CACHE),
        "mlp 64-512-512-10": nets.cached_net(
            "mlp512-digits-v1", lambda: nets.train_mlp_digits(digits, (512, 512), seed=0),
            CACHE),
        "cnn conv16-conv32-64-10": nets.cached_net(
            "cnn-digits-v1", lambda: nets.train_cnn_digits(digits, seed=0), CACHE),
    }


def compressed(net, digits: nets.DigitsSplit, ratio: float, aware: bool):
    res = compress_network(net.layer_specs(digits.X_calib if aware else None), ratio,
                           balance=0.99)
    return res, {n: c.pieces for n, c in res.layers.items()}


def bench_accuracy(digits: nets.DigitsSplit, nets_: dict[str, nets.SmallNet]) -> dict:
    say(f"1. accuracy at {RATIO:.0%} of the parameters (held-out digits, {len(digits.y_test)} "
        "images); refit on the training inputs (CNN: 500 calibration inputs), 25 % held out")
    say(f"{'network':24} {'start':10} {'params':>13} {'dense':>6} {'start':>6} {'refit':>6} "
        f"{'refit-dense':>11} {'out err (held-out)':>18} {'time':>6}")
    refits = {}
    for label, small in nets_.items():
        net = as_sequential(small)
        acc0 = net.accuracy(digits.X_test, digits.y_test)
        X = digits.X_calib if label.startswith("cnn") else digits.X_train
        for aware in (False, True):
            res, rep = compressed(net, digits, RATIO, aware)
            acc1 = net.accuracy(digits.X_test, digits.y_test, rep)
            start = time.perf_counter()
            ref = refit_network(net, res, X, options=RefitOptions(max_iter=300))
            took = time.perf_counter() - start
            acc2 = net.accuracy(digits.X_test, digits.y_test, ref.pieces)
            refits[(label, aware)] = ref
            say(f"{label:24} {'data-aware' if aware else 'svd':10} "
                f"{res.params_after:>6}/{res.params_before:<6} {acc0:6.4f} {acc1:6.4f} "
                f"{acc2:6.4f} {100 * (acc2 - acc0):+10.2f}p "
                f"{ref.holdout_error_before:8.4f} -> {ref.holdout_error_after:6.4f} {took:5.1f}s")
    return refits


def bench_curve(digits: nets.DigitsSplit, small: nets.SmallNet) -> None:
    net = as_sequential(small)
    acc0 = net.accuracy(digits.X_test, digits.y_test)
    say(f"\n2. accuracy against parameters, digits MLP 64-128-64-10 (dense {acc0:.4f}, "
        f"{net.n_params} parameters)")
    say(f"{'ratio':>5} {'params':>7} {'svd':>6} {'aware':>6} {'aware+refit':>11} "
        f"{'svd+refit':>9}")
    for ratio in (0.1, 0.2, 0.3, 0.5):
        accs = []
        for aware in (False, True):
            res, rep = compressed(net, digits, ratio, aware)
            ref = refit_network(net, res, digits.X_train, options=RefitOptions(max_iter=300))
            accs.append((net.accuracy(digits.X_test, digits.y_test, rep),
                         net.accuracy(digits.X_test, digits.y_test, ref.pieces)))
        say(f"{ratio:5.2f} {res.params_after:>7} {accs[0][0]:6.4f} {accs[1][0]:6.4f} "
            f"{accs[1][1]:11.4f} {accs[0][1]:9.4f}")


def _latencies(dense, small, x: np.ndarray, rounds: int = 5) -> tuple[float, float]:
    """Best of ``rounds`` medians, dense and compressed measured alternately."""
    best = [np.inf, np.inf]
    for _ in range(rounds):
        for k, model in enumerate((dense, small)):
            best[k] = min(best[k], onnx_latency(model, x, threads=1, repeat=30))
    return best[0], best[1]


def bench_latency(digits: nets.DigitsSplit, nets_: dict[str, nets.SmallNet],
                  refits: dict) -> None:
    say(f"\n3. onnxruntime latency, batch {BATCH}, 1 intra-op thread (refitted data-aware "
        f"compression at {RATIO:.0%} of the parameters)")
    say("ideal = 1 / MAC ratio; 'of ideal': measured speed-up / ideal speed-up; 'saving': "
        "time saved / MACs saved, (1 - t_c / t_d) / (1 - MAC ratio)")
    say(f"{'network':24} {'MAC ratio':>9} {'ideal':>6} {'dense ms':>9} {'compr ms':>9} "
        f"{'speed-up':>8} {'of ideal':>8} {'saving':>6} {'rel. |ort-numpy|':>16}")
    x = np.resize(digits.X_test, (BATCH, digits.X_test.shape[1]))
    for label, small in nets_.items():
        net = as_sequential(small)
        rep = refits[(label, True)].pieces
        dense, comp = write_onnx(net), write_onnx(net, rep)
        y = net.forward(x, rep)
        diff = float(np.max(np.abs(run_onnx(comp, x) - y)) / np.max(np.abs(y)))
        mac = net.count_macs(rep) / net.count_macs()
        t_dense, t_comp = _latencies(dense, comp, x)
        speed = t_dense / t_comp
        saving = (1 - t_comp / t_dense) / (1 - mac)
        say(f"{label:24} {mac:9.3f} {1 / mac:5.2f}x {1e3 * t_dense:9.3f} {1e3 * t_comp:9.3f} "
            f"{speed:7.2f}x {speed * mac:8.2f} {saving:6.2f} {diff:16.2e}")


def main() -> None:
    digits = nets.load_digits_split(seed=0)
    nets_ = networks(digits)
    start = time.perf_counter()
    refits = bench_accuracy(digits, nets_)
    bench_curve(digits, nets_["mlp 64-128-64-10"])
    bench_latency(digits, nets_, refits)
    say(f"\ntotal {time.perf_counter() - start:.0f} s (2-core machine shared with other jobs)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(LINES) + "\n")
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
