"""Bounds inside Gauss-Newton against L-BFGS-B on nonnegative CPD.

Data: the amino acids fluorescence data (5 samples x 61 excitation x 201 emission
wavelengths; R. Bro, "PARAFAC. Tutorial and applications", Chemom. Intell. Lab. Syst. 38
(1997) 149-171; shipped as ``examples/data/amino_acids.npz``), rank 3 and rank 4, and a
planted nonnegative CPD (40 x 30 x 20, rank 5, 30 % of the factors' entries zero, 1 %
noise) where the factor match score (FMS) to the truth is known.

Every method starts from the same nonnegative random starts (5 seeds) and fits the same
model with ``lower=0`` on every factor:

* ``nls`` bounded: the projected, active-set trust-region Gauss-Newton
  (``model.fit(method="nls", lower=0)``);
* ``minf``: L-BFGS-B (``model.fit(method="minf", lower=0)``), the baseline;
* ``nls`` + ``tf.nonneg``: nonnegativity by squaring (x = z**2), unbounded Gauss-Newton,
  for reference.

Both solvers run to their default tolerances (at most 2000 iterations). Reported: median
iterations, median time, median final relative error and, on planted data, median FMS;
the ratio is the median time over L-BFGS-B's median time on the same problem (< 1:
faster than L-BFGS-B).

One BLAS thread (threadpoolctl when installed). Run:
``python benchmarks/bench_bounded_gn.py [--quick]``; the table is also written to
``benchmarks/results/bench_bounded_gn.txt``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import sdf
from sdf import transforms as tf
from sdf.models import fms

DATA = Path(__file__).resolve().parent.parent / "examples" / "data" / "amino_acids.npz"
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line)
    LINES.append(line)


def amino_acids() -> np.ndarray:
    return np.load(DATA)["X"].astype(float)


def planted(rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    factors = [np.abs(rng.standard_normal((n, 5))) for n in (40, 30, 20)]
    for f in factors:
        f[rng.random(f.shape) < 0.3] = 0.0
    T = np.einsum("ir,jr,kr->ijk", *factors)
    T += 0.01 * np.linalg.norm(T) / np.sqrt(T.size) * rng.standard_normal(T.shape)
    return T, factors


def run(T: np.ndarray, rank: int, seed: int, how: str) -> dict[str, Any]:
    starts = [np.abs(np.random.default_rng([seed, n]).standard_normal((size, rank)))
              for n, size in enumerate(T.shape)]
    names = [f"x{n}" for n in range(T.ndim)]
    if how == "nls+nonneg":
        vs = [sdf.Variable(np.sqrt(s), name=nm) for s, nm in zip(starts, names)]
        factors = [tf.nonneg(v) for v in vs]
        options: dict[str, Any] = {"method": "nls"}
    else:
        vs = [sdf.Variable(s, name=nm) for s, nm in zip(starts, names)]
        factors = list(vs)
        options = {"method": how, "lower": 0.0}
    model = sdf.Model(t=sdf.CPD(T, factors))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(max_iter=2000, **options)
    seconds = time.perf_counter() - t0
    values = [res[f] for f in factors]
    return {"time": seconds, "iterations": res.iterations, "relerr": res.relerr["t"],
            "values": values, "min": min(float(v.min()) for v in values),
            "stop": res.stop.name}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 seeds instead of 5")
    args = parser.parse_args()
    try:
        from threadpoolctl import threadpool_limits
        limits: Any = threadpool_limits(1)
        threads = "one BLAS thread"
    except ImportError:  # pragma: no cover
        limits, threads = None, "BLAS threads as configured (no threadpoolctl)"
    seeds = range(2 if args.quick else 5)
    T_planted, truth = planted(np.random.default_rng(0))
    problems = [("amino acids, R=3", amino_acids(), 3, None),
                ("amino acids, R=4", amino_acids(), 4, None),
                ("planted 40x30x20, R=5", T_planted, 5, truth)]
    say(f"Bounded Gauss-Newton vs L-BFGS-B, nonnegative CPD ({threads}; medians over "
        f"{len(seeds)} starts)")
    say()
    say(f"{'problem':<22} {'method':<12} {'iters':>6} {'time [s]':>9} {'ratio':>6} "
        f"{'rel. error':>11} {'FMS':>6} {'min entry':>10}  stops")
    for label, T, rank, factors in problems:
        rows = {how: [run(T, rank, s, how) for s in seeds]
                for how in ("minf", "nls", "nls+nonneg")}
        base = statistics.median(r["time"] for r in rows["minf"])
        for how in ("nls", "minf", "nls+nonneg"):
            rs = rows[how]
            t = statistics.median(r["time"] for r in rs)
            its = statistics.median(r["iterations"] for r in rs)
            err = statistics.median(r["relerr"] for r in rs)
            match = (f"{statistics.median(fms(r['values'], factors) for r in rs):6.4f}"
                     if factors is not None else f"{'-':>6}")
            low = min(r["min"] for r in rs)
            stops = ",".join(sorted({r["stop"] for r in rs}))
            name = {"nls": "nls bounded", "minf": "L-BFGS-B"}.get(how, how)
            say(f"{label:<22} {name:<12} {its:6.0f} {t:9.3f} {t / base:6.2f} {err:11.4e} "
                f"{match} {low:10.2e}  {stops}")
    if limits is not None:
        limits.restore_original_limits()
    out = Path(__file__).parent / "results" / "bench_bounded_gn.txt"
    out.write_text("\n".join(LINES) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
