"""Data-aware kron fits on slow layers, against an earlier checkout (run as a script).

The cases are the data-aware fits that were furthest over the 5 s target in the sweeps of
``bench_compress_sweep.py`` (layers drawn there by seed) and the fixed kernel shapes of
``bench_compress_speed.py`` (``SHAPES``, 16 ReLU maps of 16x16), ``ratio=0.5``:

- Tucker-2, whose rank screen alternates on every candidate pair before it drops those
  that cannot catch up (192x384x3x3 stride 2, 256x384x3x3, 128x128x5x5 with 4 maps of
  28x28, and the 64x64x7x7 and 128x128x5x5 shapes);
- weight and spatial SVDs with few outputs against the rank, whose Newton steps multiply
  by the metric's image of the factor (64x192x7x7 with 12544 patches; the spatial SVDs of
  the 64x64x7x7 and 128x128x5x5 shapes), and a weight SVD with fewer patches than ``r m``
  (16x384x7x7 with 3136 patches: ``K^T M K`` by the Woodbury identity);
- the three kron fits of the 64x1024x3x3 shape (4096 patches of 9216 values), whose
  Newton steps each lower the objective by about ``1e-5`` of it for many steps, and the
  weight SVD of the 128x128x5x5 shape, whose steps converge fast.

With ``--free``, data-free CP fits instead: the random layers of the sweeps that came
nearest the 1 s target (ALS sweeps whose large products, Khatri-Rao products and
expansions of the CP weight cost more in memory traffic than in arithmetic).

Each case runs in a fresh process, one BLAS thread, CPU seconds (the machine is shared:
CPU time is what an unloaded core would take), first with the earlier checkout (its
``sdf`` first on ``PYTHONPATH``), then with this one, ``--repeat`` times each (default 1;
the least CPU time is kept). The table gives both times, their ratio, the weight and
calibration output errors and the objective of each (``Objective`` of
``bench_compress_speed.py``, 1 at ``W_hat = 0``) and its relative change.

Usage: ``python benchmarks/bench_compress_fits.py --before PATH [--free] [--repeat N]
[--only SUBSTRINGS] [--out FILE]`` with ``PATH`` a checkout of the earlier commit (``git worktree
add PATH COMMIT``); ``--out`` appends the table as a section to the results file (default
``benchmarks/results/bench_compress_fits.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results" / "bench_compress_fits.txt"
#: (layer, method): a sweep seed ("seedN") or a kernel shape of ``SHAPES`` ("OxIxKHxKW")
CASES = (("seed28", "tucker2"), ("seed104", "tucker2"), ("seed1", "tucker2"),
         ("64x64x7x7", "tucker2"), ("128x128x5x5", "tucker2"),
         ("64x64x7x7", "spatial_svd"), ("128x128x5x5", "spatial_svd"),
         ("seed105", "weight_svd"), ("seed108", "weight_svd"),
         ("64x1024x3x3", "weight_svd"), ("64x1024x3x3", "spatial_svd"),
         ("64x1024x3x3", "tucker2"), ("128x128x5x5", "weight_svd"))
#: data-free cases (``--free``)
FREE_CASES = (("seed49", "cp"), ("seed57", "cp"), ("seed63", "cp"), ("seed79", "cp"),
              ("seed101", "cp"), ("seed105", "cp"), ("seed107", "cp"), ("seed108", "cp"))


def layer(spec: str) -> tuple[str, np.ndarray, np.ndarray, int]:
    """Name, weight, calibration maps and stride of a case's layer."""
    import bench_compress_speed as speed
    from bench_compress_sweep import draw

    if spec.startswith("seed"):
        drawn = draw(int(spec[4:]))
        assert drawn is not None
        return drawn.name, drawn.W, drawn.X, drawn.stride
    o, i, kh, kw = (int(v) for v in spec.split("x"))
    rng = np.random.default_rng(20 + speed.SHAPES.index((o, i, kh, kw)))
    W = speed._decaying(rng, o, i * kh * kw, 0.6).reshape(o, i, kh, kw)
    mix = speed._decaying(rng, i, i, 0.8) * np.sqrt(i)
    X = np.maximum(np.einsum("ij,njhw->nihw", mix, rng.standard_normal((16, i, 16, 16)),
                             optimize=True) + 0.3, 0.0)
    return f"{spec}/s1/16x16", W, X, 1


def run_case(spec: str, method: str, free: bool = False) -> dict[str, float | str]:
    """CPU s of the compression (data-free with ``free``), its errors, objective and fit
    summary."""
    from bench_compress_speed import Objective

    from sdf.models.compress import compress_conv, im2col

    name, W, X, stride = layer(spec)
    pad = (W.shape[2] // 2, W.shape[3] // 2)
    t0 = time.process_time()
    res = compress_conv(W, method, ratio=0.5, X=None if free else X, stride=stride,
                        padding=pad, input_hw=X.shape[2:])
    cpu = time.process_time() - t0
    rows = None if free else im2col(X, W.shape[2:], (stride, stride), pad, (1, 1))
    return {"name": name, "cpu": cpu, "weight_err": float(res.weight_error),
            "calib_err": float("nan") if free else float(res.calib_output_error),
            "objective": Objective(W, rows, center=False)(res),
            "fit": res.info.message.split(" (ranks")[0] if res.info is not None else ""}


def in_process(checkout: Path, spec: str, method: str, free: bool
               ) -> dict[str, float | str]:
    """:func:`run_case` in a fresh process importing ``sdf`` from ``checkout``."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    out = subprocess.run([sys.executable, __file__, "--case", spec, method,
                          *(["--free"] if free else [])], env=env,
                         check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=False, help="checkout of the earlier commit")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case and checkout")
    parser.add_argument("--only", default="",
                        help="comma-separated: run the cases whose 'layer method' contains "
                             "one of them")
    parser.add_argument("--case", nargs=2, default=None, metavar=("LAYER", "METHOD"),
                        help="run one case and print its numbers as JSON")
    parser.add_argument("--free", action="store_true",
                        help="the data-free cases (FREE_CASES) instead")
    parser.add_argument("--out", default=str(RESULTS), help="results file (appended)")
    args = parser.parse_args()
    if args.case is not None:
        with threadpool_limits(1):
            print(json.dumps(run_case(*args.case, free=args.free)))
        return
    if args.before is None:
        parser.error("--before PATH is required (a checkout of the earlier commit)")
    here = HERE.parent
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    commit = subprocess.run(["git", "-C", args.before, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    emit(f"{'data-free' if args.free else 'data-aware'} fits, ratio=0.5, 1 BLAS thread, "
         f"CPU s in fresh processes, least of {args.repeat}; before: {commit or args.before}")
    emit(f"{'layer (o x i x k x k/stride/maps)':26} {'method':12} {'before':>7} {'now':>7} "
         f"{'ratio':>6}  {'weight_err':>10} {'calib_err':>9} {'objective':>12} {'change':>8}"
         "  fit now | fit before")
    ratios = []
    for spec, method in FREE_CASES if args.free else CASES:
        if not any(part in f"{spec} {method}" for part in args.only.split(",")):
            continue
        before = min((in_process(Path(args.before), spec, method, args.free)
                      for _ in range(args.repeat)), key=lambda r: float(r["cpu"]))
        now = min((in_process(here, spec, method, args.free) for _ in range(args.repeat)),
                  key=lambda r: float(r["cpu"]))
        ratio = float(now["cpu"]) / float(before["cpu"])
        ratios.append(ratio)
        change = float(now["objective"]) / float(before["objective"]) - 1
        emit(f"{now['name']:26} {method:12} {before['cpu']:7.2f} {now['cpu']:7.2f} "
             f"{ratio:6.2f}  {now['weight_err']:10.6f} {now['calib_err']:9.6f} "
             f"{now['objective']:12.9f} {change:+8.1e}  {now['fit']} | {before['fit']}")
    if ratios:
        emit(f"geometric mean ratio now/before: {float(np.exp(np.mean(np.log(ratios)))):.2f}"
             f" over {len(ratios)} cases")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(args.out, "a") as out:
        out.write(f"\n## bench_compress_fits.py ({stamp})\n" + "\n".join(lines) + "\n")
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
