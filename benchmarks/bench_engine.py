"""Gauss-Newton (the fusion engine) against a plain ALS loop, and the cost of one GN iteration.

For each problem (Gaussian factors, 1 % noise, the same random start for every solver):

* time for ``method="nls"`` to reach the noise floor, defined as a relative error within a
  factor (1 + 1e-4) of the best error any solver reached, against an ALS loop written with
  ``sdf.algebra`` in this script;
* the cost of one GN iteration (total GN time / iterations) in units of one all-modes
  MTTKRP on the same data.

Run: ``python benchmarks/bench_engine.py [--quick]``. Ratios, not absolute times, are the
result: both sides run in this process on the same machine state.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import sdf
from sdf import algebra


def planted(shape, rank, noise, seed):
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    T = algebra.cpd_to_tensor(factors)
    E = rng.standard_normal(shape)
    T = T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E
    start = [rng.standard_normal((n, rank)) for n in shape]
    return T, start


def als(T, start, max_iter=500, tol=1e-12):
    """Plain CPD-ALS; returns (times, relative errors) per iteration."""
    factors = [A.copy() for A in start]
    normT = np.linalg.norm(T)
    t0 = time.perf_counter()
    times, errors = [], []
    prev = np.inf
    for _ in range(max_iter):
        for n in range(T.ndim):
            V = algebra.hadamard(algebra.gramians(factors), skip=n)
            M = algebra.mttkrp(T, factors, n)
            factors[n] = np.linalg.solve(V, M.T).T
        # error from the last mode's MTTKRP and Gramians, as cheap as one ALS update allows
        G = algebra.gramians(factors)
        model_sq = float(np.sum(algebra.hadamard(G)))
        inner = float(np.sum(M * factors[-1]))
        err = np.sqrt(max(normT**2 - 2 * inner + model_sq, 0.0)) / normT
        times.append(time.perf_counter() - t0)
        errors.append(err)
        if abs(prev - err) <= tol * max(err, 1e-300):
            break
        prev = err
    return np.array(times), np.array(errors)


def gn(T, start):
    vs = [sdf.Variable(A, name=f"f{n}") for n, A in enumerate(start)]
    res = sdf.Model(t=sdf.CPD(T, vs)).fit(method="nls", max_iter=200, tol_fun=1e-14, tol_x=1e-10)
    return np.array(res.history.time), np.array(res.history.relerr["t"]), res.iterations


def time_to(times, errors, target):
    hit = np.nonzero(errors <= target)[0]
    return float(times[hit[0]]) if len(hit) else float("nan")


def mttkrp_time(T, factors, reps=5):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        algebra.mttkrp_all(T, factors)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the 100^3 problem")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    problems = [((100, 100, 100), 10)] + ([] if args.quick else [((200, 200, 200), 20)])
    print(f"{'problem':<16} {'GN time':>8} {'ALS time':>9} {'GN/ALS':>7} {'GN it':>6} "
          f"{'ALS it':>7} {'best err':>10} {'GN it / MTTKRP':>15}")
    for shape, rank in problems:
        rows = []
        for rep in range(args.reps):
            T, start = planted(shape, rank, 0.01, seed=rep)
            t_gn, e_gn, it_gn = gn(T, start)
            t_als, e_als = als(T, start)
            best = min(e_gn.min(), e_als.min())
            target = best * (1 + 1e-4)
            unit = mttkrp_time(T, start)
            rows.append((time_to(t_gn, e_gn, target), time_to(t_als, e_als, target),
                         it_gn, len(e_als), best, (t_gn[-1] / max(it_gn, 1)) / unit))
        # A solver that never reached the target counts as infinitely slow in the median.
        med = [statistics.median(np.nan_to_num(col, nan=np.inf)) for col in zip(*rows)]
        reached = sum(np.isfinite(r[1]) for r in rows)
        name = "x".join(map(str, shape)) + f" R={rank}"
        print(f"{name:<16} {med[0]:8.2f} {med[1]:9.2f} {med[0] / med[1]:7.2f} {med[2]:6.0f} "
              f"{med[3]:7.0f} {med[4]:10.3e} {med[5]:15.2f}   (ALS reached it in "
              f"{reached}/{len(rows)} runs)")


if __name__ == "__main__":
    main()
