"""Rank selection by weighed evidence against the error-curve corner alone, and its cost.

Part 1, accuracy. 20 planted CPDs (seeded), rank ``R0`` cycling through 3, 4, 5, 6;
shape drawn in (16..24) x (12..18) x (10..14); the columns of every factor correlated
(every pair with correlation ``rho`` drawn in [0.5, 0.8]); component sizes drawn
log-uniformly over a factor 10; Gaussian noise of relative size drawn in [5 %, 10 %];
5 % of the entries missing (NaN). ``rankest(T, R0 + 2, n_starts=2, max_iter=100)`` with
its default criteria; the error-curve corner alone (``lcorner`` of the same fits'
errors, the previous rankest) is read off the same run, so both see identical fits.

Part 2, cost. ``rankest`` up to rank 8 on a synthetic 438 x 6 x 11 tensor of the shape
of the serology data the issue reports (rank 3, correlated factors, 10 % noise), dense
and with 15 % of the entries missing: total time, and the share spent on the scan of
fits (the error curve, what the previous rankest did) against the extra evidence
(split-half refits, core consistency), measured in the same run from the progress
callback.

Part 3, parallel fits. The scan's 16 fits (ranks 1..8, 2 starts) of the dense tensor run
one after the other and in a ``concurrent.futures.ProcessPoolExecutor`` of 2 workers
(the machine has 2 cores): the ratio says whether an ``n_jobs`` option would pay.

Run: ``python benchmarks/bench_rankest.py [--quick]`` (``--quick``: 8 data sets and no
part 3); the tables are also written to ``benchmarks/results/bench_rankest.txt``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from sdf import algebra
from sdf.errors import SdfWarning
from sdf.models import cpd, rankest
from sdf.models.rank import RankProgress

LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def planted(rng: np.random.Generator, rank: int, shape: tuple[int, ...], rho: float,
            noise: float, missing: float) -> np.ndarray:
    """A CPD with pairwise column correlation ``rho``, spread sizes, noise, NaN holes."""
    C = np.full((rank, rank), rho) + (1.0 - rho) * np.eye(rank)
    L = np.linalg.cholesky(C)
    F = [rng.standard_normal((n, rank)) @ L.T for n in shape]
    F[0] = F[0] * 10.0 ** rng.uniform(0.0, 1.0, rank)
    T = algebra.cpd_to_tensor(F)
    E = rng.standard_normal(shape)
    T = T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E
    T[rng.random(shape) < missing] = np.nan
    return T


def accuracy(n_sets: int) -> None:
    say(f"Part 1: {n_sets} planted data sets, rank 3-6, correlated factors, 5 % missing")
    say(f"{'set':>3} {'R0':>3} {'shape':>13} {'rho':>5} {'noise':>6} {'rankest':>8} "
        f"{'corner':>7} {'runner-up':>10} {'time s':>7}")
    rng = np.random.default_rng(0)
    hits = corner_hits = 0
    total = 0.0
    for k in range(n_sets):
        R0 = 3 + k % 4
        shape = (int(rng.integers(16, 25)), int(rng.integers(12, 19)), int(rng.integers(10, 15)))
        rho, noise = float(rng.uniform(0.5, 0.8)), float(rng.uniform(0.05, 0.10))
        T = planted(rng, R0, shape, rho, noise, 0.05)
        t0 = time.perf_counter()
        est = rankest(T, R0 + 2, n_starts=2, seed=k, max_iter=100)
        seconds = time.perf_counter() - t0
        total += seconds
        hits += est.rank == R0
        corner_hits += est.corner == R0
        say(f"{k:3d} {R0:3d} {str(shape):>13} {rho:5.2f} {noise:6.3f} {est.rank:8d} "
            f"{est.corner:7d} {str(est.runner_up):>10} {seconds:7.1f}")
    say(f"right rank: rankest {hits}/{n_sets}, error-curve corner alone {corner_hits}/{n_sets}"
        f" (ratio {hits / max(corner_hits, 1):.2f}); {total:.0f} s in all")


def serology_like(missing: float) -> np.ndarray:
    rng = np.random.default_rng(438)
    return planted(rng, 3, (438, 6, 11), 0.6, 0.10, missing)


def cost() -> None:
    say()
    say("Part 2: rankest up to rank 8 on a synthetic 438 x 6 x 11 tensor (rank 3, rho 0.6, "
        "10 % noise)")
    say(f"{'data':>12} {'total s':>8} {'scan s':>7} {'evidence s':>11} {'ratio':>6} "
        f"{'rank':>5} {'corner':>7}")
    for missing in (0.0, 0.15):
        T = serology_like(missing)
        events: list[RankProgress] = []
        t0 = time.perf_counter()
        est = rankest(T, 8, n_starts=2, seed=0, progress=events.append)
        total = time.perf_counter() - t0
        scan = max(e.elapsed for e in events if e.stage == "fit")
        label = "dense" if missing == 0 else f"{missing:.0%} missing"
        say(f"{label:>12} {total:8.1f} {scan:7.1f} {total - scan:11.1f} {total / scan:6.2f} "
            f"{est.rank:5d} {est.corner:7d}")
    say("ratio: total / scan, the cost of the evidence over the error curve alone")


def _fit(args: tuple[np.ndarray, int, int]) -> float:
    T, R, start = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        return cpd(T, R, init="auto" if start == 0 else "random", seed=start).relerr


def parallel() -> None:
    say()
    say("Part 3: the scan's 16 fits (ranks 1-8, 2 starts), dense 438 x 6 x 11")
    T = serology_like(0.0)
    jobs = [(T, R, s) for R in range(1, 9) for s in range(2)]
    t0 = time.perf_counter()
    serial = [_fit(j) for j in jobs]
    t_serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        pooled = list(pool.map(_fit, jobs))
    t_pool = time.perf_counter() - t0
    same = np.allclose(serial, pooled)
    say(f"one after the other {t_serial:.1f} s, process pool of 2 {t_pool:.1f} s "
        f"(speed-up {t_serial / t_pool:.2f}x, same errors: {same})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", SdfWarning)
    accuracy(8 if args.quick else 20)
    cost()
    if not args.quick:
        parallel()
    out = Path(__file__).parent / "results" / "bench_rankest.txt"
    out.write_text("\n".join(LINES) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
