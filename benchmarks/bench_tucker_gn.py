"""Tucker (LMLRA) by Gauss-Newton from random starts, against HOOI (TensorLy's ``tucker``).

Problem: 100^3 data with multilinear rank (10, 10, 10) (Gaussian factors and core) plus
1 % Gaussian noise. The optimum is the best relative error any run reaches (HOOI run to
convergence included); a run *reaches* it when its relative error is within a relative
1e-6 of it.

Solvers, each from ``STARTS`` random starts (seeds 1..5) where the method takes a start:

====================  ==================================================================
sdf GN, orthonormal   ``Model(LMLRA).fit(method="nls")`` from random orthonormal bases
                      and the projected core ``T ×_n U_n^T``
sdf GN, Gaussian      the same from Gaussian factors and a Gaussian core
sdf GN, MLSVD         the same from the truncated MLSVD (a deterministic start)
sdf lmlra driver      ``sdf.models.lmlra`` (MLSVD -> HOOI -> engine), default settings
TensorLy, SVD         ``tensorly.decomposition.tucker`` (HOOI) from its default SVD start
TensorLy, random      the same from the random orthonormal bases of the sdf runs
====================  ==================================================================

A second part runs BTD by Gauss-Newton: 30^3 data, three blocks of multilinear rank
(3, 3, 3) whose factors have strongly correlated columns (every column 0.7 times the
first plus 0.3 times its own Gaussian column: ill-conditioned Gramians), 1 % noise, from
the planted blocks perturbed by 50 % (5 seeds): iterations, time and final error.

The two deterministic runs (the MLSVD start, the driver) are repeated ``STARTS`` times
like the random starts, so that every time is a median over ``STARTS`` runs.

Iterations: Gauss-Newton iterations (0: the start), HOOI sweeps. Times to the
optimum: for the engine, the clock at the first iteration whose error
reaches it (callback, one process clock, data object built before the clock starts); for
TensorLy, the time of the shortest run (``n_iter_max = k``, ``tol = 0``, k = 1, 2, ...)
whose error reaches it, the SVD start included; for the driver, its total time (it
reports no per-sweep times). pytensorlab's ``lmlra`` is not installable here, so HOOI in
TensorLy is the baseline of the ratios: against its default SVD start and against its
fastest configuration on this problem. BLAS runs on ``--threads`` threads (default 1).

Run: ``python benchmarks/bench_tucker_gn.py [--threads N] [--out PATH]``; the table is
printed and written to ``benchmarks/results/bench_tucker_gn.txt``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import sdf
from sdf import algebra
from sdf.decomp import lmlra_hooi, mlsvd
from sdf.models import lmlra
from sdf.tensors import as_tensor

SIZE, RANK, NOISE = 100, 10, 1e-2
STARTS = 5
MAX_ITER = 100
REACH = 1e-6
TENSORLY_MAX_SWEEPS = 60

try:
    import tensorly as tl
    from tensorly.decomposition import tucker as tl_tucker
except ImportError:  # pragma: no cover - optional peer
    tl = None


@dataclass
class Run:
    """One run: per iteration the time since its clock started and the relative error
    (``first`` numbers the first entry: 0 when it is the start, 1 when it is after one
    iteration)."""

    times: list[float]
    errors: list[float]
    total: float
    first: int = 0

    def reach(self, target: float) -> tuple[int | None, float]:
        """(iteration, time) at which the error first reaches ``target``."""
        for k, (t, e) in enumerate(zip(self.times, self.errors)):
            if e <= target:
                return k + self.first, t
        return None, float("inf")


def planted(rng: np.random.Generator) -> np.ndarray:
    U = [rng.standard_normal((SIZE, RANK)) for _ in range(3)]
    T = algebra.tucker_to_tensor(U, rng.standard_normal((RANK,) * 3))
    E = rng.standard_normal(T.shape)
    return T + NOISE * np.linalg.norm(T) / np.linalg.norm(E) * E


def orthonormal_start(T: np.ndarray, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    U = [np.linalg.qr(rng.standard_normal((SIZE, RANK)))[0] for _ in range(3)]
    return U, algebra.tmprod(T, [u.T for u in U])


def gaussian_start(T: np.ndarray, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    return ([rng.standard_normal((SIZE, RANK)) for _ in range(3)],
            rng.standard_normal((RANK,) * 3))


def run_engine(T: np.ndarray, start: tuple[list[np.ndarray], np.ndarray]) -> Run:
    data = as_tensor(T)
    times: list[float] = []
    t0 = time.perf_counter()

    def record(info: sdf.IterationInfo) -> None:
        times.append(time.perf_counter() - t0)

    U, S = start
    model = sdf.Model(T=sdf.LMLRA(data, [sdf.Variable(u) for u in U], sdf.Variable(S)))
    result = model.fit(method="nls", max_iter=MAX_ITER, callback=record)
    total = time.perf_counter() - t0
    return Run(times, list(result.history.relerr["T"]), total)


def run_engine_mlsvd(T: np.ndarray) -> Run:
    data = as_tensor(T)
    times: list[float] = []
    t0 = time.perf_counter()

    def record(info: sdf.IterationInfo) -> None:
        times.append(time.perf_counter() - t0)

    ml = mlsvd(T, core_shape=[RANK] * 3)
    model = sdf.Model(T=sdf.LMLRA(data, [sdf.Variable(u) for u in ml.factors],
                                  sdf.Variable(ml.core)))
    result = model.fit(method="nls", max_iter=MAX_ITER, callback=record)
    total = time.perf_counter() - t0
    return Run(times, list(result.history.relerr["T"]), total)


def run_driver(T: np.ndarray) -> Run:
    """The driver's total time; its iterations are its HOOI sweeps plus engine iterations."""
    data = as_tensor(T)
    t0 = time.perf_counter()
    dec = lmlra(data, (RANK,) * 3)
    total = time.perf_counter() - t0
    iterations = sum(s.iterations for s in dec.stages)
    return Run([total], [float(dec.relerr)], total, first=iterations)


def run_tensorly(T: np.ndarray, init: object, target: float) -> Run:
    """Shortest TensorLy run reaching ``target``: one run per sweep count."""
    X = tl.tensor(T)
    times, errors = [], []
    for sweeps in range(1, TENSORLY_MAX_SWEEPS + 1):
        start = init if isinstance(init, str) else (init[1].copy(), [u.copy() for u in init[0]])
        t0 = time.perf_counter()
        core, factors = tl_tucker(X, rank=[RANK] * 3, init=start, tol=0, n_iter_max=sweeps)
        elapsed = time.perf_counter() - t0
        err = float(np.sqrt(max(np.vdot(T, T) - np.vdot(core, core), 0.0)) / np.linalg.norm(T))
        times.append(elapsed)
        errors.append(err)
        if err <= target:
            break
    return Run(times, errors, times[-1], first=1)


def btd_part() -> list[str]:
    rng = np.random.default_rng(7)
    shape, R = (30, 30, 30), 3

    def factor(n: int) -> np.ndarray:
        X = rng.standard_normal((n, R))
        X[:, 1:] = 0.7 * X[:, :1] + 0.3 * X[:, 1:]
        return X

    truth = [[factor(n) for n in shape] + [rng.standard_normal((R,) * 3)] for _ in range(3)]
    T = sum(algebra.tucker_to_tensor(b[:-1], b[-1]) for b in truth)
    E = rng.standard_normal(T.shape)
    T = T + NOISE * np.linalg.norm(T) / np.linalg.norm(E) * E
    data = as_tensor(T)
    lines = ["BTD 30^3, 3 blocks of rank (3,3,3), correlated factors, 1 % noise, start = "
             "truth + 50 % perturbation, max 200 iterations",
             f"{'seed':<6}{'iterations':>11}{'time [s]':>10}{'final relerr':>15}  stop"]
    for seed in range(STARTS):
        r = np.random.default_rng(100 + seed)
        blocks = [[sdf.Variable(x + 0.5 * np.linalg.norm(x) / np.sqrt(x.size)
                                * r.standard_normal(x.shape)) for x in b] for b in truth]
        t0 = time.perf_counter()
        result = sdf.Model(T=sdf.BTD(data, blocks)).fit(method="nls", max_iter=200)
        elapsed = time.perf_counter() - t0
        lines.append(f"{seed:<6}{result.iterations:>11}{elapsed:>10.3f}"
                     f"{result.relerr['T']:>15.6e}  {result.stop.name}")
    return lines


def _rows(name: str, runs: list[Run], target: float) -> tuple[str, str, float, float, float]:
    reached = [r.reach(target) for r in runs]
    its = " ".join("-" if k is None else str(k) for k, _ in reached)
    reach_t = statistics.median(t for _, t in reached)
    total = statistics.median(r.total for r in runs)
    final = statistics.median(r.errors[-1] for r in runs)
    return name, its, reach_t, total, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for every solver (default 1)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "bench_tucker_gn.txt")
    args = parser.parse_args()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        threadpool_limits = None
    if threadpool_limits is not None:
        threadpool_limits(args.threads)

    T = planted(np.random.default_rng(2024))
    if tl is not None:  # the first call pays for TensorLy's backend set-up: not timed
        tl_tucker(tl.tensor(T[:20, :20, :20]), rank=[2, 2, 2], n_iter_max=1)
    seeds = range(1, STARTS + 1)
    hooi = lmlra_hooi(T, [RANK] * 3, max_iter=500, tol=1e-14)
    runs: dict[str, list[Run]] = {
        "sdf GN, orthonormal": [run_engine(T, orthonormal_start(T, s)) for s in seeds],
        "sdf GN, Gaussian": [run_engine(T, gaussian_start(T, s)) for s in seeds],
        "sdf GN, MLSVD": [run_engine_mlsvd(T) for _ in seeds],
        "sdf lmlra driver": [run_driver(T) for _ in seeds],
    }
    optimum = min([float(hooi.relerr)] + [min(r.errors) for rs in runs.values() for r in rs])
    target = optimum * (1 + REACH)
    if tl is not None:
        runs["TensorLy, SVD"] = [run_tensorly(T, "svd", target)]
        runs["TensorLy, random"] = [run_tensorly(T, orthonormal_start(T, s), target)
                                    for s in seeds]
    rows = [_rows(name, rs, target) for name, rs in runs.items()]
    lines = [f"LMLRA 100^3, multilinear rank (10,10,10), 1 % noise; optimum relerr "
             f"{optimum:.6e} (HOOI to convergence: {float(hooi.relerr):.6e}); reach = within "
             f"a relative {REACH:g}; {args.threads} BLAS thread(s); medians over the starts",
             f"{'solver':<22}{'iterations to reach (per start)':<34}{'reach [s]':>10}"
             f"{'total [s]':>10}{'final relerr':>15}"]
    for name, its, reach_t, total, final in rows:
        lines.append(f"{name:<22}{its:<34}{reach_t:>10.3f}{total:>10.3f}{final:>15.6e}")
    reach = {r[0]: r[2] for r in rows}
    if tl is not None:
        best = min(("TensorLy, SVD", "TensorLy, random"), key=lambda name: reach[name])
        lines.append(f"ratios of time to the optimum (< 1: sdf faster), against TensorLy's "
                     f"default start and its fastest configuration ({best}):")
        for ours in ("sdf GN, orthonormal", "sdf GN, Gaussian", "sdf GN, MLSVD",
                     "sdf lmlra driver"):
            lines.append(f"  {ours:<22} / TensorLy, SVD {reach[ours] / reach['TensorLy, SVD']:6.2f}"
                         f"    / {best} {reach[ours] / reach[best]:6.2f}")
    else:
        lines.append("TensorLy is not installed: no ratios")
    text = "\n".join(lines + [""] + btd_part())
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
