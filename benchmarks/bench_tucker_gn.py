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
ptl lmlra             pytensorlab's recommended ``lmlra`` with its defaults (``mlsvd``
                      start, then ``lmlra_hooi``)
ptl lmlra, RSI        the same from the randomized ``mlsvd_rsi`` start
ptl lmlra, random     the same from the random orthonormal starts of the sdf runs
ptl HOOI, random      ``lmlra_hooi`` from the random orthonormal starts of the sdf runs
ptl NLS, orthonormal  ``lmlra_nls`` (its Gauss-Newton) from the same orthonormal starts
                      and projected cores as "sdf GN, orthonormal"
ptl NLS, Gaussian     ``lmlra_nls`` from the same Gaussian starts as "sdf GN, Gaussian"
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
whose error reaches it, the SVD start included; for pytensorlab (no per-iteration
callback), likewise the time of the shortest run with its iteration cap ``maxiter = k``
(k = 0, 1, 2, ...; k = 0 is the start alone, MLSVD included for ``lmlra``) whose returned
decomposition reaches it, its other settings at their defaults; its "total" is a run with
all defaults. For the driver, its total time (it reports no per-sweep times). The ratios
compare the sdf runs with pytensorlab's default ``lmlra`` and with its fastest
configuration on this problem, then with TensorLy's default and fastest; a last line
times the driver, pytensorlab's ``lmlra`` (default, and from a random start) and its
fastest configuration (each with the cap that reached the optimum, first start) in turns,
``INTERLEAVED`` rounds, so that a drift of the shared machine's load hits them alike.
Every peer runs on ``--threads`` BLAS threads (default 1, through threadpoolctl) and
pytensorlab's numba kernels on as many numba threads (``numba.set_num_threads``), so
the race is fair.
pytensorlab and TensorLy are optional: a peer that is not installed is skipped
(``pip install pytensorlab``; it is not in the ``bench`` extra, as it pulls vedo and VTK).

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
try:
    import pytensorlab as ptl
except ImportError:  # pragma: no cover - optional peer
    ptl = None
PTL_MAX_ITER = 40
INTERLEAVED = 9


@dataclass
class Run:
    """One run: per iteration the time since its clock started and the relative error
    (``first`` numbers the first entry: 0 when it is the start, 1 when it is after one
    iteration)."""

    times: list[float]
    errors: list[float]
    total: float
    first: int = 0
    final: float | None = None  # the final error when it is not ``errors[-1]``

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


def run_pytensorlab(T: np.ndarray, solve: Callable[[int | None], object],
                    target: float) -> Run:
    """Shortest pytensorlab run reaching ``target``: one run per iteration cap
    ``solve(k)``, k = 0, 1, ...; then one run with its default stopping (``solve(None)``)."""
    norm = float(np.linalg.norm(T))
    times, errors = [], []
    for cap in range(PTL_MAX_ITER + 1):
        t0 = time.perf_counter()
        tucker = solve(cap)
        times.append(time.perf_counter() - t0)
        errors.append(float(np.linalg.norm(T - np.asarray(tucker))) / norm)
        if errors[-1] <= target:
            break
    t0 = time.perf_counter()
    tucker = solve(None)
    total = time.perf_counter() - t0
    final = float(np.linalg.norm(T - np.asarray(tucker))) / norm
    return Run(times, errors, total, final=final)


def pytensorlab_solvers(T: np.ndarray) -> dict[str, Callable[..., Callable[[int | None], object]]]:
    """Makers of ``solve(cap)`` for each pytensorlab configuration (``cap=None``: its
    default stopping); the random ones take the sdf run's start."""
    core = (RANK,) * 3

    def lmlra_default(initialization: object) -> Callable[[int | None], object]:
        def solve(cap: int | None) -> object:
            options = ptl.LMLRAHooiOptions(display=0) if cap is None else \
                ptl.LMLRAHooiOptions(maxiter=cap, display=0)
            init = initialization
            if isinstance(init, tuple):  # a start: a fresh copy for every run
                init = ptl.TuckerTensor([u.copy() for u in init[0]], init[1].copy())
            return ptl.lmlra(T, core, initialization=init, options=options,
                             print_steps=False)[0]
        return solve

    def from_start(method: Callable[..., tuple[object, object]], options_class: type,
                   start: tuple[list[np.ndarray], np.ndarray]) -> Callable[[int | None], object]:
        def solve(cap: int | None) -> object:
            init = ptl.TuckerTensor([u.copy() for u in start[0]], start[1].copy())
            options = options_class(display=0) if cap is None else \
                options_class(maxiter=cap, display=0)
            return method(T, init, options)[0]
        return solve

    return {
        "ptl lmlra": lambda: lmlra_default(ptl.mlsvd),
        "ptl lmlra, RSI": lambda: lmlra_default(ptl.mlsvd_rsi),
        "ptl lmlra, random": lambda s: lmlra_default(orthonormal_start(T, s)),
        "ptl HOOI, random": lambda s: from_start(ptl.lmlra_hooi, ptl.LMLRAHooiOptions,
                                                 orthonormal_start(T, s)),
        "ptl NLS, orthonormal": lambda s: from_start(ptl.lmlra_nls, ptl.LMLRANlsOptions,
                                                     orthonormal_start(T, s)),
        "ptl NLS, Gaussian": lambda s: from_start(ptl.lmlra_nls, ptl.LMLRANlsOptions,
                                                  gaussian_start(T, s)),
    }


def warm_up_pytensorlab() -> None:
    """Compile pytensorlab's numba kernels and fill its caches before any clock runs."""
    rng = np.random.default_rng(0)
    small = rng.standard_normal((20, 20, 20))
    start = ptl.TuckerTensor([np.linalg.qr(rng.standard_normal((20, 2)))[0] for _ in range(3)],
                             rng.standard_normal((2, 2, 2)))
    ptl.lmlra(small, (2, 2, 2), print_steps=False)
    ptl.lmlra(small, (2, 2, 2), initialization=ptl.mlsvd_rsi, print_steps=False)
    ptl.lmlra_nls(small, start, ptl.LMLRANlsOptions(display=0, maxiter=2))


def interleaved(T: np.ndarray, runs: dict[str, list[Run]],
                solvers: dict[str, Callable[[int | None], object]],
                names: tuple[str, ...], target: float) -> list[str]:
    """The driver against pytensorlab configurations ``names`` (each with the iteration
    cap with which it reached the optimum from the first start), timed in turns,
    ``INTERLEAVED`` rounds, so that the machine's load drifts alike for all of them."""
    data = as_tensor(T)
    calls: dict[str, Callable[[], object]] = {
        "sdf lmlra driver": lambda: lmlra(data, (RANK,) * 3)}
    names = tuple(name for name in names if runs[name][0].reach(target)[0] is not None)
    for name in names:
        cap = runs[name][0].reach(target)[0]
        calls[name] = lambda name=name, cap=cap: solvers[name](cap)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(INTERLEAVED):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    driver = med["sdf lmlra driver"]
    return [f"interleaved ({INTERLEAVED} rounds in turns, medians): sdf lmlra driver "
            f"{driver:.3f} s; " + "; ".join(f"/ {name} {med[name]:.3f} s: {driver / med[name]:.2f}"
                                           for name in names)]


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
    final = statistics.median(r.errors[-1] if r.final is None else r.final for r in runs)
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
    if ptl is not None:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        warm_up_pytensorlab()

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
    ptl_names: list[str] = []
    solvers: dict[str, Callable[[int | None], object]] = {}
    if ptl is not None:
        for name, make in pytensorlab_solvers(T).items():
            deterministic = name in ("ptl lmlra", "ptl lmlra, RSI")
            runs[name] = [run_pytensorlab(T, make() if deterministic else make(s), target)
                          for s in seeds]
            solvers[name] = make() if deterministic else make(seeds[0])
            ptl_names.append(name)
    rows = [_rows(name, rs, target) for name, rs in runs.items()]
    lines = [f"LMLRA 100^3, multilinear rank (10,10,10), 1 % noise; optimum relerr "
             f"{optimum:.6e} (HOOI to convergence: {float(hooi.relerr):.6e}); reach = within "
             f"a relative {REACH:g}; {args.threads} BLAS (and numba) thread(s); medians over "
             f"the starts",
             f"{'solver':<22}{'iterations to reach (per start)':<34}{'reach [s]':>10}"
             f"{'total [s]':>10}{'final relerr':>15}"]
    for name, its, reach_t, total, final in rows:
        lines.append(f"{name:<22}{its:<34}{reach_t:>10.3f}{total:>10.3f}{final:>15.6e}")
    reach = {r[0]: r[2] for r in rows}
    ours = ("sdf GN, orthonormal", "sdf GN, Gaussian", "sdf GN, MLSVD", "sdf lmlra driver")
    for peer, default, family in (("pytensorlab", "ptl lmlra", ptl_names),
                                  ("TensorLy", "TensorLy, SVD",
                                   ["TensorLy, SVD", "TensorLy, random"] if tl else [])):
        if not family:
            lines.append(f"{peer} is not installed: no ratios against it")
            continue
        best = min(family, key=lambda name: reach[name])
        lines.append(f"ratios of time to the optimum (< 1: sdf faster), against {peer}'s "
                     f"default and its fastest configuration ({best}):")
        for name in ours:
            lines.append(f"  {name:<22} / {default} {reach[name] / reach[default]:6.2f}"
                         f"    / {best} {reach[name] / reach[best]:6.2f}")
    if ptl_names:
        fastest = min(ptl_names, key=lambda k: reach[k])
        compared = tuple(dict.fromkeys(("ptl lmlra", "ptl lmlra, random", fastest)))
        lines += interleaved(T, runs, solvers, compared, target)
    text = "\n".join(lines + [""] + btd_part())
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
