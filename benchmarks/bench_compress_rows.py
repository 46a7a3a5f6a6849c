"""Data-aware kron fits (Tucker-2, weight SVD, spatial SVD) with the metric's products
through the calibration rows (``M = w_w I + R^T R``) against the dense metric.

"before" is the same code with the rows withheld (``conv._metric_root`` returning None:
every product with the dense ``M``, the route before the root one), "after" the default;
both in this process, CPU seconds at 1 BLAS thread (best of ``--repeat`` runs), objective
``w_w ||E||^2 + w_r ||P E^T||^2`` (1 at W_hat = 0). Cases: the wide 16x200x3x3 conv of
bench_compress_speed's ``wide_table`` (256 patches of 1800 values: the root route) and
conv256 (4096 patches of 2304 values: no root, the same route both times). The table is
appended to benchmarks/results/bench_compress_tucker2.txt.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compress_speed import Objective, _decaying, conv_layer  # noqa: E402

from sdf.models.compress import compress_conv, conv, im2col  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_compress_tucker2.txt"


def _cases() -> list[tuple[str, str, Callable[[], Any], Objective]]:
    rng = np.random.default_rng(5)
    W = _decaying(rng, 16, 200 * 9, 0.6).reshape(16, 200, 3, 3)
    X = np.maximum(rng.standard_normal((4, 200, 8, 8)) + 0.3, 0.0)
    wide_obj = Objective(W, im2col(X, (3, 3), (1, 1), (1, 1), (1, 1)), center=False)
    rng = np.random.default_rng(0)
    rng.standard_normal((1024, 1024))  # as bench_compress_speed draws its time unit
    W2, X2 = conv_layer(rng, 256, 256, 16, 16)
    big_obj = Objective(W2, im2col(X2, (3, 3), (1, 1), (1, 1), (1, 1)), center=False)
    cases: list[tuple[str, str, Callable[[], Any], Objective]] = [
        ("wide", method, lambda method=method: compress_conv(
            W, method, ratio=0.5, X=X, padding=1, input_hw=(8, 8)), wide_obj)
        for method in ("tucker2", "weight_svd", "spatial_svd")]
    cases.append(("conv256", "tucker2", lambda: compress_conv(
        W2, "tucker2", ratio=0.5, X=X2, padding=1, input_hw=(16, 16)), big_obj))
    return cases


def _timed(fun: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fun()
        best = min(best, time.process_time() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    root_route = conv._metric_root
    lines = [
        "",
        "Kron fits through the calibration rows (M = w_w I + R^T R, R the k patches, when k "
        "< d and cheaper by flop count):",
        "compress_conv(W, method, ratio=0.5, X=X), CPU s at 1 BLAS thread, best of "
        f"{args.repeat} (loaded shared machine); before = dense M (rows withheld), same process.",
        f"{'case':9s} {'method':12s} {'before s':>9s} {'after s':>8s} {'ratio':>6s} "
        f"{'objective before':>17s} {'objective after':>16s} {'rel. change':>12s}",
    ]
    with threadpool_limits(1):
        for layer, method, fun, objective in _cases():
            conv._metric_root = lambda *args: None  # type: ignore[assignment]
            t_before, res_before = _timed(fun, args.repeat if layer == "wide" else 1)
            conv._metric_root = root_route
            t_after, res_after = _timed(fun, args.repeat if layer == "wide" else 1)
            f0, f1 = objective(res_before), objective(res_after)
            lines.append(f"{layer:9s} {method:12s} {t_before:9.2f} {t_after:8.2f} "
                         f"{t_after / t_before:6.2f} {f0:17.11f} {f1:16.11f} "
                         f"{(f1 - f0) / f0:12.1e}")
            print(lines[-1], flush=True)
    with RESULTS.open("a") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
