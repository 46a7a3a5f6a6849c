"""Time around the data-aware kron-structured fits of ~1 M-weight conv layers (run as a script).

Weight SVD, spatial SVD and Tucker-2 with calibration maps, ``ratio=0.5``, on the layers of
``bench_compress_speed.py``: conv256 (256x256x3x3, maps (16, 256, 16, 16): 4096 patches of
2304 values) and conv512x192 (512x192x3x3, maps (16, 192, 16, 16)); one BLAS thread, CPU
seconds (the machine is shared: CPU time is what an unloaded core would take; also in
units of one 1024x1024 SVD measured in the same process, ``svd u``). Target: 5 CPU s per
layer.

Per case: CPU s of ``compress_conv``, CPU s until the fit's first iteration starts
(calibration statistics, weights, rank screening, starts), the objective (1 at ``W_hat =
0``, recomputed from the returned layer with the patches' Gram matrix), the weight and
calibration output errors. Then, in this process, the calibration statistics of conv256
from the im2col patches (``Calibration.from_rows(im2col(X))``, the path of strided
layers) against those from the maps (``Calibration.from_maps``), and the calibration
output error on the patches (``calib_error``) against the one from the Gram matrix
(``Calibration.output_error``).

Usage: ``python benchmarks/bench_compress_kron.py [--before-python PY] [--repeat N]
[--out FILE]``. ``--before-python`` names the interpreter of an earlier checkout (its
own venv): each case then runs in turn there (a subprocess running this script with
``--case``) and here, ``--repeat`` times each (default 2; the least CPU time is kept, so
that the load of a shared machine weighs alike on both), and the table adds the ratios
now / before. ``--out`` appends the table as a section to the results file (default
``benchmarks/results/bench_compress_kron.txt``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compress_speed import Objective, conv_layer, svd_unit  # noqa: E402

from sdf.models.compress import _fit, _kron, compress_conv, im2col  # noqa: E402
from sdf.models.compress.linear import calib_error  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_compress_kron.txt"
METHODS = ("weight_svd", "spatial_svd", "tucker2")


def layers() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The two benchmark layers, drawn as ``bench_compress_speed.py`` draws them."""
    rng = np.random.default_rng(0)
    rng.standard_normal((1024, 1024))  # the svd unit's matrix
    return {"conv256": conv_layer(rng, 256, 256, 16, 16),
            "conv512x192": conv_layer(np.random.default_rng(1), 512, 192, 16, 16)}


def run_case(W: np.ndarray, X: np.ndarray, method: str) -> dict[str, float]:
    """CPU s of the compression and until its first iteration; objective and errors."""
    first: list[float] = []
    refine = _kron._refine

    def timed_refine(*args: Any) -> Any:
        if not first:
            first.append(time.process_time())
        return refine(*args)

    _kron._refine = timed_refine
    try:
        t0 = time.process_time()
        res = compress_conv(W, method, ratio=0.5, X=X, padding=1, input_hw=(16, 16))
        cpu = time.process_time() - t0
    finally:
        _kron._refine = refine
    objective = Objective(W, im2col(X, 3, 1, 1), center=False)(res)
    return {"cpu": cpu, "first": (first[0] - t0) if first else float("nan"),
            "objective": objective, "weight_err": res.weight_error,
            "calib_err": float(res.calib_output_error)}


def cpu_of(fun: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Least CPU s of ``repeat`` calls of ``fun`` and its last result."""
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fun()
        best = min(best, time.process_time() - t0)
    return float(best), out


def calibration_rows(W: np.ndarray, X: np.ndarray) -> list[str]:
    """The calibration statistics and output error of conv256, both ways, same process."""
    Wm = W.reshape(W.shape[0], -1)
    W_hat = Wm + 0.1 * np.random.default_rng(2).standard_normal(Wm.shape)

    def from_rows() -> tuple[np.ndarray, _fit.Calibration]:
        P = im2col(X, 3, 1, 1)
        return P, _fit.Calibration.from_rows(P)

    t_rows, (P, by_rows) = cpu_of(from_rows)
    t_maps, by_maps = cpu_of(lambda: _fit.Calibration.from_maps(X, (3, 3), (1, 1), (1, 1)))
    t_err_rows, err_rows = cpu_of(lambda: calib_error(P, Wm, W_hat, None, None))
    t_err_gram, err_gram = cpu_of(lambda: by_maps.output_error(Wm, W_hat))
    gram_diff = float(np.abs(by_maps.gram - by_rows.gram).max() / np.abs(by_rows.gram).max())
    return [
        f"{'conv256 calibration':34} {'cpu s':>8} {'ratio':>7}  agreement",
        f"{'  im2col + P^T P (from_rows)':34} {t_rows:8.3f} {1.0:7.2f}",
        f"{'  from the maps (from_maps)':34} {t_maps:8.3f} {t_maps / t_rows:7.2f}  "
        f"max |G - G_rows| / max |G_rows| = {gram_diff:.1e}",
        f"{'  output error on the patches':34} {t_err_rows:8.3f} {1.0:7.2f}",
        f"{'  output error from the Gram':34} {t_err_gram:8.3f} {t_err_gram / t_err_rows:7.2f}  "
        f"relative difference {abs(err_gram - err_rows) / err_rows:.1e}",
    ]


def before_case(python: str, layer: str, method: str) -> dict[str, float]:
    """The case numbers of the earlier checkout, from its interpreter."""
    out = subprocess.run([python, __file__, "--case", layer, method], check=True,
                         capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def least(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of least CPU time (the fits are deterministic: the same numbers else)."""
    return min(runs, key=lambda run: run["cpu"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-python", default=None,
                        help="interpreter of an earlier checkout")
    parser.add_argument("--repeat", type=int, default=2, help="runs per case and checkout")
    parser.add_argument("--case", nargs=2, default=None, metavar=("LAYER", "METHOD"),
                        help="run one case and print its numbers as JSON")
    parser.add_argument("--out", default=str(RESULTS), help="results file (appended)")
    args = parser.parse_args()
    if args.case is not None:
        with threadpool_limits(1):
            W, X = layers()[args.case[0]]
            print(json.dumps(run_case(W, X, args.case[1])))
        return
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with threadpool_limits(1):
        unit = svd_unit(np.random.default_rng(0))
        emit(f"data-aware kron fits, ratio=0.5, 1 BLAS thread; svd u = one 1024x1024 SVD = "
             f"{unit:.3f} CPU s; target 5 CPU s per layer; least CPU s of {args.repeat} runs")
        emit(f"{'layer':12} {'method':12} {'cpu s':>7} {'svd u':>6} {'1st it':>7} "
             f"{'weight_err':>11} {'calib_err':>10} {'objective':>13}"
             + ("  | before: cpu s, 1st it, objective; ratio cpu, objective change"
                if args.before_python else ""))
        for layer, (W, X) in layers().items():
            for method in METHODS:
                runs, earlier = [], []
                for _ in range(args.repeat):
                    if args.before_python:
                        earlier.append(before_case(args.before_python, layer, method))
                    runs.append(run_case(W, X, method))
                case = least(runs)
                line = (f"{layer:12} {method:12} {case['cpu']:7.2f} {case['cpu'] / unit:6.1f} "
                        f"{case['first']:7.2f} {case['weight_err']:11.6f} "
                        f"{case['calib_err']:10.6f} {case['objective']:13.10f}")
                if earlier:
                    b = least(earlier)
                    line += (f"  | {b['cpu']:6.2f} {b['first']:6.2f} {b['objective']:13.10f}  "
                             f"{case['cpu'] / b['cpu']:5.2f} "
                             f"{case['objective'] / b['objective'] - 1:+.1e}")
                emit(line)
        for line in calibration_rows(*layers()["conv256"]):
            emit(line)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open(args.out, "a") as f:
        f.write(f"\n## bench_compress_kron.py ({stamp}): time around the kron fits\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
