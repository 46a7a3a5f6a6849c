"""PARAFAC2: the ``sdf.models.parafac2`` driver against TensorLy's ``parafac2`` (ALS).

Planted data ``X_k = A diag(c_k) B^T P_k^T`` plus 1 % Gaussian noise, nonnegative ``A``
and ``C`` (as in chemometrics), rank 4:

====  =============================================================
F1    I = 60, K = 40 slices, every J_k = 50
F2    I = 60, K = 40 slices, J_k from 20 to 150 (varying)
F3    I = 40, K = 30 slices, every J_k = 40, 30 % of the entries missing
====  =============================================================

Both start from their SVD-based start (``init="svd"``). TensorLy runs with its defaults
(line search on, tolerance 1e-8 on the relative change of the error, at most 2000
iterations; ``mask=`` for F3). The issue's measure is the time to the same error: the
time sdf needs to reach TensorLy's final relative error (within a relative 1e-4), the
stages before the fit (compression, start, imputation) included, over TensorLy's total
time (target <= 0.5). Errors are computed here from the returned factors, on the known entries; FMS
compares ``A``, ``C`` and the stacked ``B_k`` with the truth. Medians of 3 runs.

One BLAS thread (threadpoolctl when installed). Run:
``python benchmarks/bench_parafac2.py [--quick]``; the table is also written to
``benchmarks/results/bench_parafac2.txt``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sdf.models import fms, parafac2

REACH = 1e-4
RANK = 4

try:
    import tensorly as tl
    from tensorly.decomposition import parafac2 as tl_parafac2
    from tensorly.parafac2_tensor import parafac2_to_slices
except ImportError:  # pragma: no cover - optional peer
    tl = None

LINES: list[str] = []


def say(line: str = "") -> None:
    print(line)
    LINES.append(line)


def planted(rng: np.random.Generator, rows: int, widths: list[int], missing: float
            ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    A, C = rng.random((rows, RANK)), rng.random((len(widths), RANK)) + 0.1
    B = rng.standard_normal((RANK, RANK))
    P = [np.linalg.qr(rng.standard_normal((J, RANK)))[0] for J in widths]
    X = [A @ np.diag(c) @ (Pk @ B).T for c, Pk in zip(C, P)]
    X = [x + 0.01 * np.linalg.norm(x) / np.sqrt(x.size) * rng.standard_normal(x.shape)
         for x in X]
    for x in X:
        x[rng.random(x.shape) < missing] = np.nan
    return X, [A, B, C], [Pk @ B for Pk in P]


def relerr(X: list[np.ndarray], model: list[np.ndarray]) -> float:
    known = [~np.isnan(x) for x in X]
    res = sum(float(np.sum((m[k] - x[k]) ** 2)) for x, m, k in zip(X, model, known))
    return float(np.sqrt(res / sum(float(np.nansum(x**2)) for x in X)))


def run_sdf(X: list[np.ndarray], target: float) -> tuple[float, float, float, list[Any]]:
    start = time.perf_counter()
    dec = parafac2(X, RANK, seed=0)
    total = time.perf_counter() - start
    before_fit = sum(s.time for s in dec.stages if s.name != "fit")
    errs = np.asarray(dec.history.relerr["data"])
    times = np.asarray(dec.history.time)
    hit = np.flatnonzero(errs <= target * (1 + REACH))
    reach = before_fit + float(times[hit[0]]) if hit.size else float("nan")
    A, B, C = dec.factors
    model = [A @ np.diag(c) @ Bk.T for c, Bk in zip(C, dec.slice_factors)]
    return reach, total, relerr(X, model), [A, np.vstack(dec.slice_factors), C,
                                           len(errs) - 1]


def run_tensorly(X: list[np.ndarray]) -> tuple[float, float, list[Any]]:
    slices = [np.nan_to_num(x, nan=0.0).T for x in X]
    missing = any(np.isnan(x).any() for x in X)
    mask = np.stack([~np.isnan(x.T) for x in X]).astype(float) if missing else None
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, errors = tl_parafac2(np.stack(slices) if missing else slices, RANK, init="svd",
                                  random_state=0, mask=mask, return_errors=True)
    total = time.perf_counter() - start
    weights, (Ct, B, At), projections = out
    Bk = [P @ B for P in projections]
    model = [(At * w) @ np.diag(c) @ b.T for w, c, b in
             zip([weights if weights is not None else 1.0] * len(X), Ct, Bk)]
    return total, relerr(X, model), [At, np.vstack(Bk), Ct, len(errors)]


def case(name: str, title: str, rows: int, widths: list[int], missing: float,
         repeats: int) -> float:
    rng = np.random.default_rng(0)
    X, truth, Bk = planted(rng, rows, widths, missing)
    ref = [truth[0], np.vstack(Bk), truth[2]]
    tl_runs = [run_tensorly(X) for _ in range(repeats)]
    tl_total = statistics.median(r[0] for r in tl_runs)
    tl_err = tl_runs[0][1]
    sdf_runs = [run_sdf(X, tl_err) for _ in range(repeats)]
    reach = statistics.median(r[0] for r in sdf_runs)
    total = statistics.median(r[1] for r in sdf_runs)
    say(f"{name}: {title}")
    say(f"  {'solver':10s} {'t_reach[s]':>10s} {'total[s]':>9s} {'iter':>5s} "
        f"{'relerr':>9s} {'FMS':>7s}")
    f_tl = fms(tl_runs[0][2][:3], ref)
    f_sdf = fms(sdf_runs[0][3][:3], ref)
    say(f"  {'TensorLy':10s} {tl_total:10.3f} {tl_total:9.3f} {tl_runs[0][2][3]:5d} "
        f"{tl_err:9.6f} {f_tl:7.4f}")
    say(f"  {'sdf':10s} {reach:10.3f} {total:9.3f} {sdf_runs[0][3][3]:5d} "
        f"{sdf_runs[0][2]:9.6f} {f_sdf:7.4f}")
    ratio = reach / tl_total
    say(f"  sdf time to TensorLy's error / TensorLy: {ratio:.2f}  (total: "
        f"{total / tl_total:.2f})")
    say()
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run per case")
    args = parser.parse_args()
    if tl is None:
        raise SystemExit("TensorLy is not installed: pip install tensorly")
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(1)
        threads = "one BLAS thread"
    except ImportError:
        limits, threads = None, "BLAS threads as configured (no threadpoolctl)"
    repeats = 1 if args.quick else 3
    say(f"PARAFAC2, rank {RANK}, 1 % noise; {threads}; TensorLy {tl.__version__}")
    say()
    widths = list(np.random.default_rng(1).integers(20, 151, 40))
    ratios = [
        case("F1", "I = 60, K = 40, J_k = 50", 60, [50] * 40, 0.0, repeats),
        case("F2", "I = 60, K = 40, J_k in [20, 150]", 60, [int(J) for J in widths], 0.0,
             repeats),
        case("F3", "I = 40, K = 30, J_k = 40, 30 % missing", 40, [40] * 30, 0.3, repeats),
    ]
    say("ratios (target <= 0.5): " + ", ".join(f"{r:.2f}" for r in ratios))
    out = Path(__file__).parent / "results" / "bench_parafac2.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(LINES) + "\n")
    del limits


if __name__ == "__main__":
    main()
