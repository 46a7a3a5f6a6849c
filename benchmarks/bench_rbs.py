"""CPD by randomized block sampling against the full-data ``cpd`` driver on a zarr store.

A ``size^3`` float32 rank-``rank`` tensor plus 1 % noise is written to a zarr store in
``chunk^3`` chunks (chunk by chunk, see ``examples/bigdata_zarr.py``); then, each in a
child process of its own (so that each peak resident memory is its own):

* ``cpd``: the full-data driver (randomized MLSVD in four passes, the core fitted in
  memory, Gauss-Newton refinement on the store, each iteration a pass or two);
* ``cpd_rbs``: randomized block sampling (blocks of whole chunks), then one pass for the
  error.

Printed: time, relative error against the noise level, factor match score, the share of
the store read and the peak resident memory; the ratio rbs / cpd of the times. The table
goes to ``benchmarks/results/bench_rbs.txt``.

Run: ``python benchmarks/bench_rbs.py [--size 1000 --chunk 100 --rank 5]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _example() -> object:
    spec = importlib.util.spec_from_file_location("bigdata_zarr",
                                                  ROOT / "examples" / "bigdata_zarr.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(method: str, path: str, rank: int, truth: str) -> None:
    """Fit the store with ``method`` and print one JSON line of figures."""
    import dask
    import dask.array as da

    from sdf.models import cpd, cpd_rbs, fms

    data = da.from_zarr(path)
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        if method == "cpd":
            dec, read = cpd(data, rank, seed=0), float("nan")
        else:
            dec = cpd_rbs(data, rank, seed=0)
            sample = next(s for s in dec.stages if s.name == "sample")
            # Blocks of cpd_rbs's default shape, plus the final pass for the error.
            block = np.prod([int(x) for x in sample.detail.split("(")[1].split(")")[0]
                             .split(",") if x.strip()])
            read = sample.iterations * block / data.size + 1.0
    seconds = time.perf_counter() - t0
    A = list(np.load(truth).values())
    print(json.dumps({
        "method": method, "time": seconds, "relerr": dec.relerr,
        "fms": fms(dec.factors, A), "read": read,
        "stages": [f"{s.name}: {s.detail} ({s.iterations} it, {s.time:.1f} s)"
                   for s in dec.stages],
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--rank", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "PATH", "RANK", "TRUTH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, path, rank, truth = args.child
        child(method, path, int(rank), truth)
        return

    folder = Path(tempfile.mkdtemp(dir=args.folder))
    try:
        path = folder / "cube.zarr"
        t0 = time.perf_counter()
        truth = _example().write_store(path, args.size, args.chunk, args.rank, 0.01,  # type: ignore[attr-defined]
                                       seed=0)
        np.savez(folder / "truth.npz", *truth)
        written = time.perf_counter() - t0
        rows = {}
        for method in ("cpd", "rbs"):
            out = subprocess.run([sys.executable, __file__, "--child", method, str(path),
                                  str(args.rank), str(folder / "truth.npz")],
                                 capture_output=True, text=True, check=True)
            rows[method] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    gb = 4 * args.size**3 / 2**30
    lines = [f"{args.size}^3 float32 zarr store ({gb:.1f} GiB) in {args.chunk}^3 chunks, "
             f"rank {args.rank} + 1 % noise (written in {written:.0f} s); threaded scheduler",
             f"{'method':10s} {'time [s]':>9s} {'relerr':>9s} {'FMS':>8s} {'data read':>10s} "
             f"{'peak RSS [MB]':>14s}"]
    for name, row in (("cpd", rows["cpd"]), ("cpd_rbs", rows["rbs"])):
        read = "passes" if np.isnan(row["read"]) else f"{row['read']:.2f} x"
        lines.append(f"{name:10s} {row['time']:9.1f} {row['relerr']:9.5f} {row['fms']:8.5f} "
                     f"{read:>10s} {row['peak_mb']:14.0f}")
    lines.append(f"time ratio cpd_rbs / cpd: {rows['rbs']['time'] / rows['cpd']['time']:.2f}")
    for name in ("cpd", "rbs"):
        lines.append(f"  {name} stages: " + "; ".join(rows[name]["stages"]))
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / "bench_rbs.txt"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
