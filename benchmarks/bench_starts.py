"""Reliable starts: the LL1 driver's GEVD start against random starts, and the check of
fits on incomplete data.

Part 1, LL1 recoveries. Planted rank-(L, L, 1) data ``sum_r (A_r B_r^T) o c_r`` with
standard-normal factors, three cases: (12, 12, 10) with L = [2, 2, 2]; (10, 10, 10) with
L = [3, 3]; (8, 9, 7) with L = [2, 3, 1]. Twenty seeds each (a new planted tensor and a
new driver seed per seed), without noise and with Gaussian noise of 1 % and 10 % of the
data's norm. A run counts as a recovery when its model is within the noise of the
noise-free tensor: ``||model - T_clean|| / ||T_clean|| < 1e-6`` without noise (the
engine resolves errors down to about 1e-8 there, sqrt(eps)), below the
noise level with noise. ``init="random"`` is the driver's former default (the baseline),
``init="auto"`` the GEVD start (Tensorlab's ``ll1_gevd``); ``n_starts=3`` adds two random
starts to the GEVD one. Times are medians per run; the ratio is over the random start's.

Part 2, the check after ``Model.fit`` on incomplete data: planted rank-3 CPDs of shape
(20, 20, 20) with 70 % of the entries missing, four masks, fitted from a random start by
``Model.fit`` (500 iterations at most): relative error on the known entries and on the
whole grid, and which warnings were issued; then the ``cpd`` driver on the same data.

Run: ``python benchmarks/bench_starts.py [--quick]``; the tables are also written to
``benchmarks/results/bench_starts.txt``.
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
from sdf.models import cpd, ll1

LINES: list[str] = []
CASES = [((12, 12, 10), [2, 2, 2]), ((10, 10, 10), [3, 3]), ((8, 9, 7), [2, 3, 1])]


def say(line: str = "") -> None:
    print(line)
    LINES.append(line)


def planted_ll1(seed: int, shape: tuple[int, ...], L: list[int], noise: float
                ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 + seed)
    R, S = len(L), sum(L)
    A, B = rng.standard_normal((shape[0], S)), rng.standard_normal((shape[1], S))
    C = rng.standard_normal((shape[2], R))
    T = np.einsum("ir,jr,kr->ijk", A, B, C[:, np.repeat(np.arange(R), L)])
    E = rng.standard_normal(T.shape)
    return T, T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E


def ll1_runs(shape: tuple[int, ...], L: list[int], noise: float, seeds: range,
             **options: Any) -> tuple[int, float]:
    ok, times = 0, []
    for seed in seeds:
        clean, T = planted_ll1(seed, shape, L, noise)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dec = ll1(T, L, seed=seed, **options)
        times.append(time.perf_counter() - t0)
        A, B, C = dec.factors
        model = np.einsum("ir,jr,kr->ijk", A, B, C[:, np.repeat(np.arange(len(L)), L)])
        err = np.linalg.norm(model - clean) / np.linalg.norm(clean)
        ok += bool(err < (1e-6 if noise == 0 else noise))
    return ok, statistics.median(times)


def part1(seeds: range) -> None:
    say(f"LL1 driver: recoveries out of {len(seeds)} seeds (median time per run)")
    say()
    say(f"{'shape':<14} {'L':<10} {'noise':>6}  {'random (old)':>17}  {'GEVD (new)':>17}  "
        f"{'GEVD + 2 random':>17}  {'time ratio':>10}")
    for shape, L in CASES:
        for noise in (0.0, 0.01, 0.1):
            old = ll1_runs(shape, L, noise, seeds, init="random")
            new = ll1_runs(shape, L, noise, seeds)
            multi = ll1_runs(shape, L, noise, seeds, n_starts=3)
            say(f"{str(shape):<14} {str(L):<10} {noise:6.2f}  "
                f"{old[0]:4d} ({old[1]:7.3f} s)  {new[0]:4d} ({new[1]:7.3f} s)  "
                f"{multi[0]:4d} ({multi[1]:7.3f} s)  {new[1] / old[1]:10.2f}")


def part2() -> None:
    say()
    say("Model.fit from a random start on 70 % missing data, planted rank 3, (20, 20, 20)")
    say()
    say(f"{'mask':>4}  {'known err':>9}  {'grid err':>9}  {'warned':<34}  {'cpd driver':>10}")
    for mask in range(4):
        rng = np.random.default_rng(mask)
        factors = [rng.standard_normal((20, 3)) for _ in range(3)]
        T = np.einsum("ir,jr,kr->ijk", *factors)
        data = np.where(rng.random(T.shape) < 0.7, np.nan, T)
        vs = [sdf.Variable.random((20, 3), seed=10 + 3 * mask + k, name="abc"[k])
              for k in range(3)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = sdf.Model(t=sdf.CPD(data, vs)).fit(max_iter=500)
        full = np.einsum("ir,jr,kr->ijk", res["a"], res["b"], res["c"])
        grid = np.linalg.norm(full - T) / np.linalg.norm(T)
        kinds = sorted({"poor minimum" if "far above" in str(w.message) else
                        "norm blown up" if "whole grid" in str(w.message) else "other"
                        for w in caught})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dec = cpd(data, 3, seed=0)
        drv = np.linalg.norm(sdf.algebra.cpd_to_tensor(dec.factors) - T) / np.linalg.norm(T)
        say(f"{mask:>4}  {res.relerr['t']:9.2e}  {grid:9.2e}  {', '.join(kinds) or '-':<34}  "
            f"{drv:10.2e}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="5 seeds instead of 20")
    args = parser.parse_args()
    part1(range(5 if args.quick else 20))
    part2()
    out = Path(__file__).parent / "results" / "bench_starts.txt"
    out.write_text("\n".join(LINES) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
