"""The race: ``sdf.models`` drivers against TensorLy, pyttb (the ``bench`` extra) and pytensorlab.

Problems (Gaussian factors unless said; noise relative to the data norm):

====  ======================================================================
P1    CPD 100^3, R = 10, 1 % noise
P2    the swamp: CPD 50^3, R = 5, column congruence 0.9 in every mode, 0.1 % noise
P3    CPD 200^3, R = 20, 1 % noise
P4    CPD 60^3, R = 5, 50 % of the entries missing, 1 % noise
P5    Tucker 100^3 with a 10^3 core, 1 % noise
====  ======================================================================

Solvers: ``sdf.models.cpd`` / ``sdf.models.lmlra`` ("sdf"), TensorLy's ``parafac``
(ALS; with ``mask`` on P4) and ``tucker`` (HOOI), pyttb's ``cp_als`` and
``tucker_als``, and a plain ALS loop written with ``sdf.algebra`` ("sdf-ALS"; EM
imputation on P4). A peer that is not installed is skipped. Every CPD solver starts
from the same random factors in each repetition (sdf projects them on its MLSVD
bases); the Tucker solvers start from their own SVD-based initialisation.

pytensorlab (the Python port of Tensorlab; optional, ``pip install pytensorlab``: it is
not in the ``bench`` extra, as it pulls vedo and VTK) races on the dense CPD problems
P1-P3 in four configurations: "ptl cpd", its recommended ``cpd`` with all defaults
(MLSVD-RSI compression, GEVD start, NLS on the core, NLS refinement on the data); "ptl
cpd same", the same driver from the same random start; "ptl NLS" and "ptl ALS",
``cpd_nls`` and ``cpd_als`` on the data from that start. They keep pytensorlab's own
default stopping rules (tolerances relative to the starting objective), which only
change their total time; their time to the best error comes from ``PtlClock``
(``benchmarks/_peers_extended.py``), which stamps each iteration pytensorlab logs, as it
has no callback. To compare drivers like for like, "sdf default" runs ``cpd`` with its
default (GEVD) start on those problems too.

Stopping rule, the same for all (TensorLy's ``abs_rec_error`` and pyttb's fit change):
stop when the relative error changes by less than ``TOL`` between two iterations, or
after ``MAX_ITER`` iterations. For sdf the rule applies to the fit on the data (after
the fit on the compressed core), through the ``callback``.

Data objects (TensorLy/pyttb tensors, ``sdf.tensors.as_tensor``) are built before the
clock starts, for every solver.

Reported per solver (medians over ``REPS`` repetitions): time to reach the best
relative error any solver reached on that problem (within a relative 1e-4; "-" if not
reached in most repetitions), total time, iterations (sdf: core or imputation rounds +
data), final relative error and factor match score with the planted factors; then the
ratio of sdf's time to the best peer's. Finally the P3 reliability run: FMS over 20
random starts.

BLAS runs on ``--threads`` threads (default 1) for every solver alike, and pytensorlab's
numba kernels on as many numba threads (``numba.set_num_threads``), so the race is fair.

The extended races P6-P10 (4-way dense, nonnegative, CMTF, sparse, mostly-known data;
see ``benchmarks/_peers_extended.py``) race every peer at its best configuration: the same
random start where its API takes one and its own recommended start.

Run: ``python benchmarks/bench_peers.py [--quick] [--threads N] [--set {classic,extended,all}]``.
Everything runs in one process: ratios, not absolute times, are the result. The printed
tables are also written to ``benchmarks/results/bench_peers.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pathlib import Path

from sdf import algebra
from sdf.models import cpd, fms, lmlra
from sdf.tensors import as_tensor

from _peers_extended import Stamped, ptl, ptl_cpd, warm_up_pytensorlab

TOL = 1e-8
MAX_ITER = 1000
REPS = 3
REACH = 1e-4

try:
    import tensorly as tl
    from tensorly.decomposition import parafac as tl_parafac
    from tensorly.decomposition import tucker as tl_tucker
except ImportError:  # pragma: no cover - optional peer
    tl = None
try:
    import pyttb as ttb
except ImportError:  # pragma: no cover - optional peer
    ttb = None


# ----------------------------------------------------------------------------- problems
@dataclass
class Problem:
    name: str
    kind: str  # "cpd" or "tucker"
    T: np.ndarray
    rank: int | tuple[int, ...]
    truth: list[np.ndarray]
    mask: np.ndarray | None = None
    starts: list[list[np.ndarray]] = field(default_factory=list)


def _noisy(T, noise, rng):
    E = rng.standard_normal(T.shape)
    return T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E


def _congruent(I, R, c, rng):
    Q = np.linalg.qr(rng.standard_normal((I, R)))[0]
    K = (1 - c) * np.eye(R) + c * np.ones((R, R))
    return Q @ np.linalg.cholesky(K).T


def make_problems(quick: bool) -> list[Problem]:
    rng = np.random.default_rng(2024)
    s = (lambda n: max(n // 2, 10)) if quick else (lambda n: n)
    out = []
    for name, I, R, noise in (("P1", s(100), 10, 1e-2), ("P2", s(50), 5, 1e-3),
                              ("P3", s(200), 20, 1e-2), ("P4", s(60), 5, 1e-2)):
        F = ([_congruent(I, R, 0.9, rng) for _ in range(3)] if name == "P2"
             else [rng.standard_normal((I, R)) for _ in range(3)])
        T = _noisy(algebra.cpd_to_tensor(F), noise, rng)
        mask = rng.random(T.shape) >= 0.5 if name == "P4" else None
        p = Problem(name, "cpd", T, R, F, mask)
        p.starts = [[rng.standard_normal((I, R)) for _ in range(3)] for _ in range(REPS)]
        out.append(p)
    I, R = s(100), 10
    U = [rng.standard_normal((I, R)) for _ in range(3)]
    T = _noisy(algebra.tucker_to_tensor(U, rng.standard_normal((R, R, R))), 1e-2, rng)
    out.append(Problem("P5", "tucker", T, (R, R, R), U, starts=[[]] * REPS))
    return out


# ----------------------------------------------------------------------------- runs
@dataclass
class Run:
    times: list[float]
    errors: list[float]
    iterations: str
    factors: list[np.ndarray] | None
    total: float


def run_sdf(p: Problem, start, default_start: bool = False) -> Run:
    # Like the peers' tensor objects, the data object is built before the clock starts.
    data = as_tensor(np.where(p.mask, p.T, np.nan) if p.mask is not None else p.T)
    normT = data.norm()
    times, errors = [], []
    t0 = time.perf_counter()

    def record(info) -> bool:
        times.append(time.perf_counter() - t0)
        errors.append(float(np.sqrt(2.0 * info.fvals[0])) / normT)
        return len(errors) > 1 and abs(errors[-2] - errors[-1]) < TOL

    if p.kind == "tucker":
        dec = lmlra(data, p.rank, callback=record, max_iter=MAX_ITER)
    else:
        dec = cpd(data, p.rank, init="auto" if default_start else start, callback=record,
                  max_iter=MAX_ITER)
    total = time.perf_counter() - t0
    its = "+".join(str(s.iterations) for s in dec.stages
                   if s.name in ("core", "hooi", "als", "refine", "fit"))
    return Run(times, errors, its, dec.factors if p.kind == "cpd" else None, total)


def run_sdf_als(p: Problem, start) -> Run:
    A = [x.copy() for x in start]
    W = p.mask.astype(float) if p.mask is not None else None
    T0 = np.where(p.mask, p.T, 0.0) if p.mask is not None else p.T
    normT = np.linalg.norm(T0)
    times, errors = [], []
    t0 = time.perf_counter()
    X = T0
    for it in range(MAX_ITER):
        if W is not None:  # EM: fill the missing entries with the current model
            X = T0 + (1 - W) * algebra.cpd_to_tensor(A)
        for n in range(3):
            M = algebra.mttkrp(X, A, n)
            A[n] = np.linalg.solve(algebra.hadamard(algebra.gramians(A), skip=n), M.T).T
        if W is None:
            inner = float(np.sum(M * A[-1]))
            msq = float(np.sum(algebra.hadamard(algebra.gramians(A))))
            err = np.sqrt(max(normT**2 - 2 * inner + msq, 0.0)) / normT
        else:
            err = np.linalg.norm(W * (algebra.cpd_to_tensor(A) - T0)) / normT
        times.append(time.perf_counter() - t0)
        errors.append(err)
        if it and abs(errors[-2] - errors[-1]) < TOL:
            break
    return Run(times, errors, str(len(errors)), A, time.perf_counter() - t0)


def run_tensorly(p: Problem, start) -> Run:
    data = np.where(p.mask, p.T, 0.0) if p.mask is not None else p.T
    X = tl.tensor(data)
    W = p.mask.astype(float) if p.mask is not None else None
    normT = np.linalg.norm(data)
    times, errors = [], []
    spent = [0.0]  # time spent measuring masked errors, not charged to TensorLy
    t0 = time.perf_counter()

    def record(cp, rec_error) -> None:
        now = time.perf_counter()
        if W is not None:  # TensorLy's error includes imputed entries: measure our own
            w, F = cp
            rec_error = np.linalg.norm(W * (algebra.cpd_to_tensor([F[0] * w, *F[1:]]) - data))
            rec_error /= normT
            spent[0] += time.perf_counter() - now
        times.append(now - t0 - spent[0] + (time.perf_counter() - now if W is None else 0))
        errors.append(float(rec_error))

    if p.kind == "tucker":
        _, errs = tl_tucker(X, rank=list(p.rank), init="svd", tol=TOL, n_iter_max=MAX_ITER,
                            return_errors=True)
        total = time.perf_counter() - t0
        return Run([total] * len(errs), [float(e) for e in errs], str(len(errs)), None, total)
    init = (np.ones(p.rank), [x.copy() for x in start])
    cp = tl_parafac(X, p.rank, n_iter_max=MAX_ITER, init=init, tol=TOL, mask=W,
                    callback=record)
    total = time.perf_counter() - t0 - spent[0]
    w, F = cp
    return Run(times, errors, str(len(errors)), [F[0] * w, *F[1:]], total)


_PYTTB_LINE = re.compile(r"Iter\s+(\d+):.*?f(?:it)?\s*=\s*([-+0-9.eE]+)")


def run_pyttb(p: Problem, start) -> Run | None:
    if p.mask is not None:
        return None  # cp_als has no missing-data support
    X = ttb.tensor(p.T)
    t0 = time.perf_counter()
    out = Stamped(t0)
    with contextlib.redirect_stdout(out):
        if p.kind == "tucker":
            ttb.tucker_als(X, list(p.rank), stoptol=TOL, maxiters=MAX_ITER, init="nvecs",
                           printitn=1)
            F = None
        else:
            init = ttb.ktensor([x.copy() for x in start], np.ones(p.rank))
            M, _, _ = ttb.cp_als(X, p.rank, stoptol=TOL, maxiters=MAX_ITER, init=init,
                                 printitn=1)
            F = [M.factor_matrices[0] * M.weights, *M.factor_matrices[1:]]
    total = time.perf_counter() - t0
    times, errors = [], []
    for t, line in out.lines:
        m = _PYTTB_LINE.search(line)
        if m:
            times.append(t)
            errors.append(1.0 - float(m.group(2)))
    return Run(times, errors, str(len(errors)), F, total)


def dense_cpd_only(solve: Callable[[Problem, list[np.ndarray]], Run]) -> Callable:
    """``solve`` on the dense CPD problems; None (skipped) elsewhere."""
    return lambda p, start: (None if p.kind != "cpd" or p.mask is not None
                             else solve(p, start))


SOLVERS: dict[str, Callable] = {"sdf": run_sdf, "sdf-ALS": run_sdf_als}
if tl is not None:
    SOLVERS["TensorLy"] = run_tensorly
if ttb is not None:
    SOLVERS["pyttb"] = run_pyttb
if ptl is not None:
    SOLVERS["sdf default"] = dense_cpd_only(lambda p, st: run_sdf(p, st, default_start=True))
    SOLVERS["ptl cpd"] = dense_cpd_only(lambda p, st: ptl_cpd(p.T, p.rank, None, "cpd"))
    SOLVERS["ptl cpd same"] = dense_cpd_only(lambda p, st: ptl_cpd(p.T, p.rank, st, "cpd"))
    SOLVERS["ptl NLS"] = dense_cpd_only(lambda p, st: ptl_cpd(p.T, p.rank, st, "nls"))
    SOLVERS["ptl ALS"] = dense_cpd_only(lambda p, st: ptl_cpd(p.T, p.rank, st, "als"))


# ----------------------------------------------------------------------------- report
def _reach_time(run: Run, target: float) -> float:
    for t, e in zip(run.times, run.errors):
        if e <= target:
            return t
    return float("inf")


def race(p: Problem) -> list[tuple]:
    runs: dict[str, list[Run]] = {}
    for rep in range(REPS):
        for name, fn in SOLVERS.items():
            if p.kind == "tucker" and name == "sdf-ALS":
                continue
            r = fn(p, p.starts[rep])
            if r is not None:
                runs.setdefault(name, []).append(r)
    finals = [min(r.errors) for rs in runs.values() for r in rs if r.errors]
    best = min(finals)
    target = best * (1 + REACH)
    rows = []
    for name, rs in runs.items():
        reach = statistics.median(_reach_time(r, target) for r in rs)
        total = statistics.median(r.total for r in rs)
        final = statistics.median(r.errors[-1] for r in rs)
        f = (statistics.median(fms(r.factors, p.truth) for r in rs)
             if rs[0].factors is not None else float("nan"))
        its = "/".join(r.iterations for r in rs)
        rows.append((p.name, name, reach, total, its, final, f))
    return rows


def p3_reliability(p: Problem, n_starts: int) -> list[float]:
    rng = np.random.default_rng(7)
    scores = []
    for _ in range(n_starts):
        start = [rng.standard_normal(A.shape) for A in p.truth]
        scores.append(fms(cpd(p.T, p.rank, init=start).factors, p.truth))
    return scores


PEERS = ("TensorLy", "pyttb", "ptl cpd", "ptl cpd same", "ptl NLS", "ptl ALS")
ALS = ("sdf-ALS", "TensorLy", "pyttb", "ptl ALS")


def _summary(name: str, rows: list[tuple]) -> str:
    """One line: ratio to the best external peer, speed-up over the fastest ALS."""
    ours = next(r for r in rows if r[1] == "sdf")
    peers = [r for r in rows if r[1] in PEERS]
    parts = [f"{name}: sdf {ours[2]:.3f} s"]
    if peers:
        best = min(peers, key=lambda r: (r[2], r[3]))
        if np.isfinite(best[2]):
            parts.append(f"best peer {best[1]} {best[2]:.3f} s, ratio {ours[2] / best[2]:.2f}")
        else:
            parts.append("no peer reached the best error")
    als = [r for r in rows if r[1] in ALS and (r[1] != "pyttb" or name != "P5")]
    if als and name != "P5":
        fast = min(als, key=lambda r: (r[2], r[3]))
        if np.isfinite(fast[2]):
            parts.append(f"fastest ALS ({fast[1]}) {fast[2] / ours[2]:.1f}x slower")
        else:
            slowest_total = min(r[3] for r in als)
            parts.append(f"no ALS reached it (ALS stopped after >= {slowest_total:.3f} s, "
                         f"{slowest_total / ours[2]:.1f}x sdf's time)")
    ptl_rows = {r[1]: r for r in rows if r[1].startswith("ptl")}
    if ptl_rows:
        default = next(r for r in rows if r[1] == "sdf default")
        fastest = min(ptl_rows.values(), key=lambda r: (r[2], r[3]))
        parts.append(f"pytensorlab: sdf default / ptl cpd {default[2] / ptl_rows['ptl cpd'][2]:.2f}"
                     f", sdf / ptl cpd same {ours[2] / ptl_rows['ptl cpd same'][2]:.2f}, "
                     f"sdf / {fastest[1]} (its fastest) {ours[2] / fastest[2]:.2f}")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="halved sizes, for a smoke run")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for every solver (default 1: a shared machine's "
                             "oversubscribed BLAS threads distort small LAPACK calls)")
    parser.add_argument("--set", choices=("classic", "extended", "all"), default="all",
                        help="P1-P5 (classic), P6-P10 (extended) or both")
    args = parser.parse_args()
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        threadpool_limits = None
    if threadpool_limits is not None:
        threadpool_limits(args.threads)
    if ptl is not None:
        warm_up_pytensorlab(args.threads)
    say(f"peers: TensorLy {'yes' if tl else 'absent'}, pyttb {'yes' if ttb else 'absent'}, "
        f"pytensorlab {'yes' if ptl else 'absent'}; tol {TOL:g} on the relative error change "
        f"(pytensorlab: its own defaults), max {MAX_ITER} iterations, {REPS} repetitions "
        f"(medians), {args.threads} BLAS (and numba) thread(s)")
    if args.set != "extended":
        classic(args.quick, say)
    if args.set != "classic":
        from _peers_extended import make_races, run_race

        say("\nExtended races (P6-P10), each peer at its best configuration, "
            f"medians of {REPS}")
        for race_ in make_races(args.quick, REPS):
            run_race(race_, say)
    out = Path(__file__).parent / "results" / "bench_peers.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def classic(quick: bool, say: Callable[[str], None]) -> None:
    fmt = "{:<4} {:<12} {:>10} {:>9} {:>20} {:>11} {:>7}"
    say(fmt.format("prob", "solver", "t_best[s]", "total[s]", "iterations", "relerr", "FMS"))
    problems = make_problems(quick)
    ratios = []
    for p in problems:
        rows = race(p)
        for row in rows:
            reach = "-" if not np.isfinite(row[2]) else f"{row[2]:.3f}"
            fm = "-" if np.isnan(row[6]) else f"{row[6]:.4f}"
            say(fmt.format(row[0], row[1], reach, f"{row[3]:.3f}", row[4][:20],
                           f"{row[5]:.6f}", fm))
        ratios.append((p.name, rows))
    say("\nsdf against the peers (time to the best error; ratio < 1: sdf is faster):")
    for name, rows in ratios:
        say("  " + _summary(name, rows))
    p3 = next(p for p in problems if p.name == "P3")
    scores = p3_reliability(p3, 20)
    good = sum(s >= 0.99 for s in scores)
    say(f"\nP3 from 20 random starts: FMS >= 0.99 in {good}/20 "
        f"(min {min(scores):.4f}, median {statistics.median(scores):.4f})")


if __name__ == "__main__":
    main()
