"""Extended races of ``bench_peers.py`` (P6-P10), each peer at its best configuration.

====  ==========================================================================
P6    dense CPD 40^4, R = 8, 1 % noise
P7    nonnegative CPD 100^3, R = 10 (uniform factors), 1 % noise
P8    CMTF: tensor 100^3 and matrix 100x50 sharing mode 0, R = 5, 1 % noise each
P9    sparse CPD 1000^3 with about 1e5 nonzeros (sparse nonnegative factors, rank 10)
P10   mostly-known data: CPD 40^4, R = 8, 0.5 % of the entries missing, 1 % noise
====  ==========================================================================

Peers: TensorLy ``parafac`` (P6, and with ``mask`` on P10), ``non_negative_parafac_hals``
(P7), ``coupled_matrix_tensor_3d_factorization`` (P8); pyttb ``cp_als`` (P6, and on an
``sptensor`` on P9). Each peer runs from the same random start as sdf where its API takes
one ("same start"), and from its own recommended start (TensorLy's SVD, pyttb's
``nvecs`` where it fits in memory); the ratio uses the fastest configuration. TensorLy's
HALS and CMTF have no callback: their time to the best error is interpolated from the
total time over the iterations (their iterations cost the same), and the CMTF error is
the joint ``sqrt((||X - M||^2 + ||Y - A V^T||^2) / (||X||^2 + ||Y||^2))`` of the
returned factors, the objective both fits minimise (sdf with weight 1 on both terms).

pytensorlab (optional, ``pip install pytensorlab``) races on the dense CPD P6: its
recommended ``cpd`` with its defaults (MLSVD-RSI compression, GEVD start, NLS on the
core, NLS refinement on the data), the same ``cpd`` from the same random start as sdf,
and its ``cpd_nls`` and ``cpd_als`` on the data from that start, with their default
stopping rules. It has no per-iteration callback: ``PtlClock`` stamps each
iteration its optimizers log (``OptimizationProgressLogger.log``), and the error of an
iteration is ``sqrt(2 f) / ||T||`` of its logged objective ``f = ||T - M||^2 / 2``, on the
data (for ``cpd``, the refinement stage; the iterations on the compressed core come
first in its iteration count, as for sdf).
"""

from __future__ import annotations

import contextlib
import io
import re
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse  # noqa: F401  (sdf reads coordinate data from tuples)

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.models import cpd, fms
from sdf.tensors import as_tensor

TOL = 1e-8
REACH = 1e-4

try:
    import tensorly as tl
    from tensorly.decomposition import coupled_matrix_tensor_3d_factorization as tl_cmtf
    from tensorly.decomposition import non_negative_parafac_hals as tl_hals
    from tensorly.decomposition import parafac as tl_parafac
except ImportError:  # pragma: no cover - optional peer
    tl = None
try:
    import pyttb as ttb
except ImportError:  # pragma: no cover - optional peer
    ttb = None
try:
    import pytensorlab as ptl
    from pytensorlab.optimization.logger import OptimizationProgressLogger
except ImportError:  # pragma: no cover - optional peer
    ptl = None


@dataclass
class Run:
    times: list[float]
    errors: list[float]
    iterations: str
    factors: list[np.ndarray] | None
    total: float


def _noisy(T: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    E = rng.standard_normal(T.shape)
    return T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E


def _recorder(norm: float) -> tuple[Callable[..., bool], list[float], list[float], list[float]]:
    times: list[float] = []
    errors: list[float] = []
    t0 = [time.perf_counter()]

    def record(info: sdf.IterationInfo) -> bool:
        times.append(time.perf_counter() - t0[0])
        errors.append(float(np.sqrt(2.0 * sum(info.fvals))) / norm)
        return len(errors) > 1 and abs(errors[-2] - errors[-1]) < TOL

    return record, times, errors, t0


# ----------------------------------------------------------------------------- sdf
def sdf_cpd(data: object, norm: float, start: list[np.ndarray], max_iter: int) -> Run:
    X = as_tensor(data)
    record, times, errors, t0 = _recorder(norm)
    t0[0] = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dec = cpd(X, start[0].shape[1], init=[A.copy() for A in start], callback=record,
                  max_iter=max_iter)
    its = "+".join(str(s.iterations) for s in dec.stages if s.name in ("core", "als",
                                                                      "refine", "fit"))
    return Run(times, errors, its, dec.factors, time.perf_counter() - t0[0])


def sdf_nonneg(T: np.ndarray, start: list[np.ndarray], max_iter: int) -> Run:
    record, times, errors, t0 = _recorder(float(np.linalg.norm(T)))
    names = [f"z{n}" for n in range(T.ndim)]
    t0[0] = time.perf_counter()
    zs = [sdf.Variable(np.sqrt(np.abs(A)), name=nm) for A, nm in zip(start, names)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sdf.Model(t=sdf.CPD(T, [tf.nonneg(z) for z in zs])).fit(
            max_iter=max_iter, callback=record)
    factors = [res.variables[nm] ** 2 for nm in names]
    return Run(times, errors, str(res.iterations), factors, time.perf_counter() - t0[0])


def sdf_cmtf(X: np.ndarray, Y: np.ndarray, start: list[np.ndarray], max_iter: int) -> Run:
    record, times, errors, t0 = _recorder(float(np.sqrt(np.vdot(X, X) + np.vdot(Y, Y))))
    t0[0] = time.perf_counter()
    a, b, c, d = (sdf.Variable(A.copy(), name=nm) for A, nm in zip(start, "abcd"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sdf.Model(x=sdf.CPD(X, [a, b, c], weight=1.0),
                        y=sdf.CPD(Y, [a, d], weight=1.0)).fit(max_iter=max_iter,
                                                             callback=record)
    factors = [res.variables[nm] for nm in "abcd"]
    return Run(times, errors, str(res.iterations), factors, time.perf_counter() - t0[0])


# ----------------------------------------------------------------------------- peers
def tl_cp(data: np.ndarray, mask: np.ndarray | None, start: list[np.ndarray] | str,
          max_iter: int, linesearch: bool = False) -> Run:
    X = tl.tensor(data)
    W = None if mask is None else mask.astype(float)
    norm = float(np.linalg.norm(data))
    times: list[float] = []
    errors: list[float] = []
    spent = [0.0]  # time measuring the error on the known entries, not charged to TensorLy
    t0 = time.perf_counter()

    def record(cp: tuple, rec_error: float) -> None:
        now = time.perf_counter()
        if W is not None:
            w, F = cp
            rec_error = float(np.linalg.norm(
                W * (algebra.cpd_to_tensor([F[0] * w, *F[1:]]) - data))) / norm
        times.append(now - t0 - spent[0])
        errors.append(float(rec_error))
        spent[0] += time.perf_counter() - now

    R = 8 if isinstance(start, str) else start[0].shape[1]
    init = start if isinstance(start, str) else (np.ones(R), [A.copy() for A in start])
    w, F = tl_parafac(X, R, n_iter_max=max_iter, init=init, tol=TOL, mask=W,
                      linesearch=linesearch, callback=record)
    return Run(times, errors, str(len(errors)), [F[0] * w, *F[1:]],
               time.perf_counter() - t0 - spent[0])


def tl_nonneg(T: np.ndarray, start: list[np.ndarray] | str, rank: int, max_iter: int) -> Run:
    X = tl.tensor(T)
    init = start if isinstance(start, str) else (np.ones(rank), [np.abs(A) for A in start])
    t0 = time.perf_counter()
    (w, F), errs = tl_hals(X, rank, n_iter_max=max_iter, init=init, tol=TOL,
                           return_errors=True)
    total = time.perf_counter() - t0
    factors = [F[0] * w, *F[1:]]
    final = float(np.linalg.norm(algebra.cpd_to_tensor(factors) - T) / np.linalg.norm(T))
    errors = [float(e) for e in errs[:-1]] + [final]  # TensorLy's errors are relative
    times = [total * (k + 1) / len(errors) for k in range(len(errors))]
    return Run(times, errors, str(len(errors)), factors, total)


def tl_coupled(X: np.ndarray, Y: np.ndarray, rank: int, max_iter: int) -> Run:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cp, mat, errs = tl_cmtf(tl.tensor(X), tl.tensor(Y), rank, init="svd",
                                n_iter_max=max_iter, tol=TOL)
    total = time.perf_counter() - t0
    A, B, C = (F * (cp.weights if k == 0 else 1.0) for k, F in enumerate(cp.factors))
    V = mat.factors[1]
    norm_sq = float(np.vdot(X, X) + np.vdot(Y, Y))
    sq = [float(e) / norm_sq for e in errs]
    final = (np.linalg.norm(algebra.cpd_to_tensor([A, B, C]) - X) ** 2
             + np.linalg.norm(mat.factors[0] * (mat.weights if mat.weights is not None else 1)
                              @ V.T - Y) ** 2) / norm_sq
    errors = [float(np.sqrt(max(e, 0.0))) for e in sq] + [float(np.sqrt(final))]
    times = [total * (k + 1) / len(errors) for k in range(len(errors))]
    return Run(times, errors, str(len(errors)), [A, B, C, V], total)


_PYTTB_LINE = re.compile(r"Iter\s+(\d+):.*?f(?:it)?\s*=\s*([-+0-9.eE]+)")


class Stamped(io.TextIOBase):
    """stdout stand-in recording (seconds since t0, line) of a solver's progress lines
    (for peers that only print their progress)."""

    def __init__(self, t0: float) -> None:
        self.t0, self.lines = t0, []

    def write(self, s: str) -> int:
        now = time.perf_counter() - self.t0
        self.lines += [(now, ln) for ln in s.splitlines() if ln.strip()]
        return len(s)


def pyttb_cp(X: object, start: list[np.ndarray] | str, rank: int, max_iter: int) -> Run:
    t0 = time.perf_counter()
    out = Stamped(t0)
    init = start if isinstance(start, str) else ttb.ktensor([A.copy() for A in start],
                                                            np.ones(rank))
    with contextlib.redirect_stdout(out):
        M, _, _ = ttb.cp_als(X, rank, stoptol=TOL, maxiters=max_iter, init=init, printitn=1)
    total = time.perf_counter() - t0
    times, errors = [], []
    for t, line in out.lines:
        m = _PYTTB_LINE.search(line)
        if m:
            times.append(t)
            errors.append(1.0 - float(m.group(2)))
    F = [M.factor_matrices[0] * M.weights, *M.factor_matrices[1:]]
    return Run(times, errors, str(len(errors)), F, total)


class PtlClock:
    """Stamps of the iterations pytensorlab logs during one call: (seconds since ``t0``,
    logged objective, stage), a stage per progress logger (``cpd``: core, then
    refinement on the data). pytensorlab has no callback; its optimizers log every
    iteration through ``OptimizationProgressLogger.log``, which this wraps while active."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.entries: list[tuple[float, float, int]] = []
        self._loggers: list[int] = []

    def __enter__(self) -> PtlClock:
        self._log = OptimizationProgressLogger.log
        log = self._log

        def stamped(logger: object, z: object, fval: float, **kwargs: object) -> None:
            now = time.perf_counter() - self.t0
            if id(logger) not in self._loggers:
                self._loggers.append(id(logger))
            self.entries.append((now, float(fval), self._loggers.index(id(logger))))
            log(logger, z, fval, **kwargs)

        OptimizationProgressLogger.log = stamped
        return self

    def __exit__(self, *exc: object) -> None:
        OptimizationProgressLogger.log = self._log

    def counts(self) -> list[int]:
        """Iterations per stage."""
        return [sum(1 for e in self.entries if e[2] == k) for k in range(len(self._loggers))]

    def last_stage(self) -> list[tuple[float, float]]:
        """(seconds, objective) of the iterations of the last stage (the one on the data)."""
        last = len(self._loggers) - 1
        return [(t, f) for t, f, k in self.entries if k == last]


def ptl_cpd(T: np.ndarray, rank: int, start: list[np.ndarray] | None, method: str) -> Run:
    """pytensorlab on dense ``T``: ``method`` "cpd" (its driver; ``start=None``: its own
    GEVD start), "nls" (``cpd_nls``) or "als" (``cpd_als``) from ``start``."""
    norm = float(np.linalg.norm(T))
    t0 = time.perf_counter()
    with PtlClock(t0) as clock:
        init = None if start is None else ptl.PolyadicTensor([A.copy() for A in start])
        if method == "cpd":
            U, _ = ptl.cpd(T, rank, initialization=init, print_steps=False)
        elif method == "nls":
            U, _ = ptl.cpd_nls(T, init, ptl.CPDNlsOptions(display=0))
        else:
            U, _ = ptl.cpd_als(T, init, ptl.CPDAlsOptions(display=0))
    total = time.perf_counter() - t0
    stage = clock.last_stage()
    return Run([t for t, _ in stage], [float(np.sqrt(2.0 * f)) / norm for _, f in stage],
               "+".join(str(n) for n in clock.counts()), list(U.factors), total)


def warm_up_pytensorlab(threads: int) -> None:
    """Use ``threads`` numba threads and compile pytensorlab's numba kernels before any
    clock runs."""
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    T = algebra.cpd_to_tensor([rng.standard_normal((12, 3)) for _ in range(3)])
    start = [rng.standard_normal((12, 3)) for _ in range(3)]
    for method in ("cpd", "nls", "als"):
        ptl_cpd(T, 3, start, method)
    ptl_cpd(T, 3, None, "cpd")


def ptl_solvers(T: np.ndarray, rank: int) -> dict[str, Callable[[list[np.ndarray]], Run]]:
    """pytensorlab's configurations on a dense CPD: its default ``cpd``, and ``cpd``,
    ``cpd_nls``, ``cpd_als`` from the same start as sdf."""
    return {"ptl cpd": lambda st: ptl_cpd(T, rank, None, "cpd"),
            "ptl cpd same start": lambda st: ptl_cpd(T, rank, st, "cpd"),
            "ptl NLS same start": lambda st: ptl_cpd(T, rank, st, "nls"),
            "ptl ALS same start": lambda st: ptl_cpd(T, rank, st, "als")}


# ----------------------------------------------------------------------------- problems
@dataclass
class Race:
    name: str
    title: str
    truth: list[np.ndarray]
    solvers: dict[str, Callable[[list[np.ndarray]], Run | None]]
    starts: list[list[np.ndarray]]


def make_races(quick: bool, reps: int) -> list[Race]:
    rng = np.random.default_rng(2025)
    s = (lambda n: max(n // 2, 10)) if quick else (lambda n: n)
    races = []

    def starts_for(shape: tuple[int, ...], R: int) -> list[list[np.ndarray]]:
        return [[rng.standard_normal((I, R)) for I in shape] for _ in range(reps)]

    # P6 dense 4-way
    shape6, R = (s(40),) * 4, 8
    F6 = [rng.standard_normal((I, R)) for I in shape6]
    T6 = _noisy(algebra.cpd_to_tensor(F6), 1e-2, rng)
    n6 = float(np.linalg.norm(T6))
    sol6: dict[str, Callable[[list[np.ndarray]], Run | None]] = {
        "sdf cpd": lambda st: sdf_cpd(T6, n6, st, 500)}
    if tl is not None:
        X6 = tl.tensor(T6)
        sol6["TensorLy same start"] = lambda st: tl_cp(X6, None, st, 500)
        sol6["TensorLy svd"] = lambda st: tl_cp(X6, None, "svd", 500)
    if ttb is not None:
        Y6 = ttb.tensor(T6)
        sol6["pyttb same start"] = lambda st: pyttb_cp(Y6, st, R, 500)
        sol6["pyttb nvecs"] = lambda st: pyttb_cp(Y6, "nvecs", R, 500)
    if ptl is not None:
        sol6.update(ptl_solvers(T6, R))
    races.append(Race("P6", f"dense CPD {shape6[0]}^4, R = {R}", F6, sol6,
                      starts_for(shape6, R)))

    # P7 nonnegative
    shape7, R7 = (s(100),) * 3, 10
    F7 = [rng.random((I, R7)) for I in shape7]
    T7 = _noisy(algebra.cpd_to_tensor(F7), 1e-2, rng)
    sol7: dict[str, Callable[[list[np.ndarray]], Run | None]] = {
        "sdf nonneg GN": lambda st: sdf_nonneg(T7, st, 500)}
    if tl is not None:
        sol7["TensorLy HALS same"] = lambda st: tl_nonneg(T7, st, R7, 1000)
        sol7["TensorLy HALS svd"] = lambda st: tl_nonneg(T7, "svd", R7, 1000)
    races.append(Race("P7", f"nonnegative CPD {shape7[0]}^3, R = {R7}", F7, sol7,
                      [[np.abs(A) for A in st] for st in starts_for(shape7, R7)]))

    # P8 CMTF
    I8, J8, R8 = s(100), s(50), 5
    F8 = [rng.standard_normal((n, R8)) for n in (I8, I8, I8, J8)]
    X8 = _noisy(algebra.cpd_to_tensor(F8[:3]), 1e-2, rng)
    Y8 = _noisy(F8[0] @ F8[3].T, 1e-2, rng)
    sol8: dict[str, Callable[[list[np.ndarray]], Run | None]] = {
        "sdf engine": lambda st: sdf_cmtf(X8, Y8, st, 500)}
    if tl is not None:
        sol8["TensorLy svd"] = lambda st: tl_coupled(X8, Y8, R8, 1000)
    races.append(Race("P8", f"CMTF {I8}^3 + {I8}x{J8}, R = {R8}", F8, sol8,
                      [[rng.standard_normal((n, R8)) for n in (I8, I8, I8, J8)]
                       for _ in range(reps)]))

    # P9 sparse: sparse nonnegative factors, about 1e5 nonzeros
    I9, R9, per = (s(1000),) * 3, 10, 22
    F9 = []
    for I in I9:
        A = np.zeros((I, R9))
        for r in range(R9):
            A[rng.choice(I, per, replace=False), r] = rng.random(per) + 0.5
        F9.append(A)
    subs, vals = _sparse_cpd(F9)
    vals = vals + 1e-2 * np.linalg.norm(vals) / np.sqrt(vals.size) * rng.standard_normal(vals.size)
    n9 = float(np.linalg.norm(vals))
    sol9: dict[str, Callable[[list[np.ndarray]], Run | None]] = {
        "sdf cpd": lambda st: sdf_cpd(as_tensor((subs, vals, I9)), n9, st, 300)}
    if ttb is not None:
        S9 = ttb.sptensor(subs.astype(np.int64), vals[:, None], I9)
        sol9["pyttb same start"] = lambda st: pyttb_cp(S9, st, R9, 300)
        sol9["pyttb random"] = lambda st: pyttb_cp(S9, "random", R9, 300)
    races.append(Race("P9", f"sparse CPD {I9[0]}^3, {vals.size} nonzeros, R = {R9}", F9,
                      sol9, [[np.abs(A) for A in st] for st in starts_for(I9, R9)]))

    # P10 mostly known
    shape10 = (s(40),) * 4
    F10 = [rng.standard_normal((I, R)) for I in shape10]
    T10 = _noisy(algebra.cpd_to_tensor(F10), 1e-2, rng)
    mask = rng.random(shape10) >= 0.005
    D10 = np.where(mask, T10, np.nan)
    filled = np.where(mask, T10, 0.0)
    n10 = float(np.linalg.norm(filled))
    sol10: dict[str, Callable[[list[np.ndarray]], Run | None]] = {
        "sdf cpd": lambda st: sdf_cpd(D10, n10, st, 500)}
    if tl is not None:
        sol10["TensorLy same start"] = lambda st: tl_cp(filled, mask, st, 500)
        sol10["TensorLy-ls same"] = lambda st: tl_cp(filled, mask, st, 500, linesearch=True)
        sol10["TensorLy svd"] = lambda st: tl_cp(filled, mask, "svd", 500)
    races.append(Race("P10", f"CPD {shape10[0]}^4, R = {R}, 0.5 % missing", F10, sol10,
                      starts_for(shape10, R)))
    return races


def _sparse_cpd(factors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates and values of the nonzeros of a CPD of sparse factors."""
    parts = []
    for r in range(factors[0].shape[1]):
        rows = [np.flatnonzero(A[:, r]) for A in factors]
        grid = np.stack(np.meshgrid(*rows, indexing="ij"), axis=-1).reshape(-1, len(rows))
        parts.append(grid)
    subs = np.unique(np.concatenate(parts), axis=0)
    vals = np.zeros(len(subs))
    for r in range(factors[0].shape[1]):
        vals += np.prod([A[subs[:, n], r] for n, A in enumerate(factors)], axis=0)
    return subs, vals


def _reach(run: Run, target: float) -> float:
    return next((t for t, e in zip(run.times, run.errors) if e <= target), float("inf"))


def run_race(race: Race, say: Callable[[str], None]) -> None:
    runs: dict[str, list[Run]] = {}
    for start in race.starts:
        for key, fn in race.solvers.items():
            r = fn(start)
            if r is not None and r.errors:
                runs.setdefault(key, []).append(r)
    best = min(min(r.errors) for rs in runs.values() for r in rs)
    target = best * (1 + REACH)
    say(f"{race.name}: {race.title}; best relative error {best:.6f}")
    say(f"  {'solver':<20} {'t_best[s]':>10} {'total[s]':>9} {'iterations':>16} "
        f"{'relerr':>10} {'FMS':>7}")
    reach = {k: statistics.median(_reach(r, target) for r in rs) for k, rs in runs.items()}
    for key, rs in runs.items():
        t = "-" if not np.isfinite(reach[key]) else f"{reach[key]:.3f}"
        total = statistics.median(r.total for r in rs)
        final = statistics.median(r.errors[-1] for r in rs)
        score = statistics.median(fms(r.factors, race.truth) for r in rs)
        its = "/".join(r.iterations for r in rs)
        say(f"  {key:<20} {t:>10} {total:9.3f} {its[:16]:>16} {final:10.6f} {score:7.4f}")
    ours = next(k for k in runs if k.startswith("sdf"))
    peers = {k: v for k, v in reach.items() if not k.startswith("sdf")}
    if peers:
        peer = min(peers, key=lambda k: peers[k])
        if np.isfinite(peers[peer]):
            say(f"  {ours} / {peer} (the fastest peer configuration): "
                f"{reach[ours] / peers[peer]:.2f}")
        else:
            say(f"  no peer configuration reached the best error within {REACH:g}")
    ptl_reach = {k: v for k, v in peers.items() if k.startswith("ptl")}
    if ptl_reach:
        fastest = min(ptl_reach, key=lambda k: ptl_reach[k])
        say(f"  {ours} / ptl cpd (pytensorlab's default): {reach[ours] / reach['ptl cpd']:.2f}; "
            f"/ {fastest} (its fastest configuration): {reach[ours] / reach[fastest]:.2f}")
    say("")
