"""A MAC budget against a parameter budget on a trained CNN (digits), data-aware.

The small CNN of :mod:`sdf.models.compress.nets` (two convolutions and dense layers,
trained in the process or loaded from the cache) is compressed to 50 % of its
parameters and, separately, to 50 % of its multiply-accumulates; then with CP allowed on
the convolutions (whose error curves come from one warm-started rank path per layer).
For each: parameter and MAC ratios, held-out accuracy, the time of ``compress_network``
and the measured forward time of the held-out set (fastest of 30 runs interleaved with
the dense network's, one BLAS thread) as a ratio to the dense network's.

Run: ``python benchmarks/bench_mac_budget.py``; the table goes to
``benchmarks/results/bench_mac_budget.txt``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from sdf.models.compress import LayerSpec, compress_network, nets

ROOT = Path(__file__).resolve().parents[1]


def forward_ratio(cnn: Any, x: np.ndarray, replace: Any, runs: int = 30) -> float:
    """Fastest compressed forward over fastest dense forward, runs interleaved (the
    machine's load then weighs on both alike)."""
    best = [np.inf, np.inf]
    for _ in range(runs):
        for k, rep in enumerate((None, replace)):
            t0 = time.perf_counter()
            cnn.forward(x, rep)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best[1] / best[0]


def _timed(cnn: Any, x: np.ndarray) -> float:
    t0 = time.perf_counter()
    cnn.forward(x)
    return time.perf_counter() - t0


def main() -> None:
    digits = nets.load_digits_split(seed=0)
    cache = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")
    cnn = nets.cached_net("cnn-digits-v1", lambda: nets.train_cnn_digits(digits, seed=0), cache)
    calib, test = cnn.layer_inputs(digits.X_calib), cnn.layer_inputs(digits.X_test)
    x = digits.X_test
    rows = []
    with threadpool_limits(1):
        t_dense = min(_timed(cnn, x) for _ in range(10))
        acc0 = cnn.accuracy(x, digits.y_test)
        configs = [("50 % params", {"ratio": 0.5}, "auto"),
                   ("50 % MACs", {"macs_ratio": 0.5}, "auto"),
                   ("50 % MACs, CP convs", {"macs_ratio": 0.5}, "cp")]
        for label, budget, conv_method in configs:
            specs = {n: LayerSpec(p, method=conv_method if p.kind == "conv2d" else "auto",
                                  X=calib[n], X_test=test[n])
                     for n, p in cnn.layers.items()}
            t0 = time.perf_counter()
            res = compress_network(specs, balance=0.99, **budget)
            seconds = time.perf_counter() - t0
            replace = {n: c.pieces for n, c in res.layers.items()}
            rows.append((label, res.params_after / res.params_before,
                         (res.macs_after or 0) / (res.macs_before or 1),
                         cnn.accuracy(x, digits.y_test, replace), seconds,
                         forward_ratio(cnn, x, replace),
                         ", ".join(f"{n}: {c.method} {c.rank}" for n, c in res.layers.items())))
    lines = [f"digits CNN, {cnn.n_params} parameters, held-out accuracy {acc0:.4f}, "
             f"dense forward of {len(x)} samples {1e3 * t_dense:.2f} ms (1 BLAS thread)",
             f"{'budget':22s} {'params':>7s} {'MACs':>6s} {'accuracy':>9s} {'fit [s]':>8s} "
             f"{'forward / dense':>16s}  layers"]
    for label, p, m, acc, s, f, layers in rows:
        lines.append(f"{label:22s} {p:7.3f} {m:6.3f} {acc:9.4f} {s:8.1f} {f:16.2f}  {layers}")
    text = "\n".join(lines)
    print(text)
    (ROOT / "benchmarks" / "results" / "bench_mac_budget.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
