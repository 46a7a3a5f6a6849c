"""Where the data-aware kron fits stop: the default tolerance against ``alt_tol=1e-6``.

The data-aware weight SVD, spatial SVD and Tucker-2 stop when the decrease of their
objective still to come, predicted from their last iterations (and checked against their
Newton model), is ``CompressOptions.subspace_tol`` of it (``1e-4``). This script measures
what that costs in objective and saves in time: it compresses the random conv layers of
:mod:`bench_compress_sweep` (one per seed) by those three methods at ``ratio=0.5``,
data-aware, once at ``alt_tol=1e-6`` and once at the default, one BLAS thread, CPU
seconds. Each row gives both times, their ratio, the objective at ``1e-6``
(``Objective`` of :mod:`bench_compress_speed`, 1 at ``W_hat = 0``) and the relative
change of the default's, and how each fit ended. The summary gives the median, 90th
percentile and largest change, how many fits ended more than ``5e-5`` and ``1e-4`` above,
and the geometric mean of the time ratios of the fits that took over 1 s at ``1e-6``.

Usage: ``python benchmarks/bench_compress_tolerance.py [--seeds LO:HI] [--out FILE]``;
appends the table as a section to ``benchmarks/results/bench_compress_tolerance.txt`` (or
``--out``).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compress_speed import Objective  # noqa: E402
from bench_compress_sweep import draw  # noqa: E402

from sdf.models.compress import CompressOptions, compress_conv, im2col  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_compress_tolerance.txt"
METHODS = ("weight_svd", "spatial_svd", "tucker2")
#: the tight tolerance the default is compared with
TIGHT = 1e-6


def fit(W: np.ndarray, X: np.ndarray, stride: int, pad: tuple[int, int], method: str,
        alt_tol: float | None) -> tuple[float, Any]:
    """CPU seconds and result of one data-aware compression."""
    t0 = time.process_time()
    res = compress_conv(W, method, ratio=0.5, X=X, stride=stride, padding=pad,
                        input_hw=X.shape[2:], options=CompressOptions(alt_tol=alt_tol))
    return time.process_time() - t0, res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0:110", help="seed range LO:HI (HI excluded)")
    parser.add_argument("--out", default=str(RESULTS), help="results file (appended)")
    args = parser.parse_args()
    lo, hi = (int(v) for v in args.seeds.split(":"))
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    emit(f"data-aware kron fits, ratio=0.5, 1 BLAS thread, CPU s; alt_tol={TIGHT:g} "
         f"against the default; seeds {lo}:{hi}")
    emit(f"{'seed':>4} {'layer':24} {'method':12} {'t tight':>8} {'t dflt':>8} {'ratio':>6} "
         f"{'objective':>12} {'change':>8}  fit (default) | fit (tight)")
    changes, ratios = [], []
    for seed in range(lo, hi):
        layer = draw(seed)
        if layer is None:
            continue
        W, X, stride = layer.W, layer.X, layer.stride
        pad = (W.shape[2] // 2, W.shape[3] // 2)
        objective = Objective(W, im2col(X, W.shape[2:], (stride, stride), pad, (1, 1)),
                              center=False)
        for method in METHODS:
            if method == "spatial_svd" and W.shape[2] == 1:
                continue
            with threadpool_limits(1):
                t_tight, tight = fit(W, X, stride, pad, method, TIGHT)
                t_default, default = fit(W, X, stride, pad, method, None)
            f_tight = objective(tight)
            change = objective(default) / f_tight - 1
            changes.append(change)
            if t_tight > 1.0:
                ratios.append(t_default / t_tight)
            ends = [r.info.message.split(" (ranks")[0] if r.info is not None else ""
                    for r in (default, tight)]
            emit(f"{seed:4d} {layer.name:24} {method:12} {t_tight:8.2f} {t_default:8.2f} "
                 f"{t_default / t_tight:6.2f} {f_tight:12.9f} {change:+8.1e}  "
                 f"{ends[0]} | {ends[1]}")
    c = np.array(changes)
    emit(f"{len(c)} fits: objective change median {np.median(c):.1e}, 90th percentile "
         f"{np.quantile(c, 0.9):.1e}, largest {c.max():.1e}; above 5e-5: "
         f"{int((c > 5e-5).sum())}, above 1e-4: {int((c > 1e-4).sum())}")
    if ratios:
        emit(f"{len(ratios)} fits over 1 s at alt_tol={TIGHT:g}: time ratio "
             f"{min(ratios):.2f} to {max(ratios):.2f}, geometric mean "
             f"{float(np.exp(np.mean(np.log(ratios)))):.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with out.open("a") as handle:
        handle.write(f"\n## {stamp}\n" + "\n".join(lines) + "\n")
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
