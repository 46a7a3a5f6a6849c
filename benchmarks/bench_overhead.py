"""Cost of generality: a one-term model on the engine against a hand-specialised CPD-GN.

The specialised solver below runs the same algorithm as ``Model.fit(method="nls")`` on a
plain dense CPD: objective and gradient through ``sdf.algebra.MTTKRPTree``, Gauss-Newton
products from the Gramians, exact block-Jacobi preconditioner, PCG, dogleg trust region
with the same radius rule and tolerances; but no expression graph, no terms, no scaling
layer and no history. Both start from the same random factors; the table prints time per
iteration and total time, and the ratio engine / specialised (target: <= 1.1).

A peer column (when pyttb is installed): pyttb's ``cp_als`` from the same start, timed
to the first iteration whose relative error is within a relative 1e-4 of the engine's
final error (its own progress lines, stamped as printed), and the ratio engine / pyttb
(target on 100^3 rank 10: <= 1.0). Everything runs on one BLAS thread; times are medians
over 3 seeds. The last column counts the Python function calls of one engine fit
(``cProfile``, seed 0, untimed run) per Gauss-Newton iteration, model set-up and
diagnostics included: the per-call overhead the timings hide on small problems.

Run: ``python benchmarks/bench_overhead.py``; writes the table to
``benchmarks/results/bench_overhead.txt``.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import re
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import sdf
from sdf import algebra
from sdf.solvers.nls import _dogleg, _update_radius, pcg

from _peers_extended import Stamped

try:
    import pyttb as ttb
except ImportError:  # the peer column is left out
    ttb = None

RESULTS = Path(__file__).resolve().parent / "results" / "bench_overhead.txt"
_PYTTB_LINE = re.compile(r"Iter\s+(\d+):.*?f(?:it)?\s*=\s*([-+0-9.eE]+)")


def planted(shape, rank, seed):
    rng = np.random.default_rng(seed)
    T = algebra.cpd_to_tensor([rng.standard_normal((n, rank)) for n in shape])
    E = rng.standard_normal(shape)
    T = T + 0.01 * np.linalg.norm(T) / np.linalg.norm(E) * E
    return T, [rng.standard_normal((n, rank)) for n in shape]


def specialised_gn(T, start, max_iter=200, tol_fun=1e-12, tol_x=1e-8, cg_tol=1e-3, cg_iter=15):
    """Dogleg Gauss-Newton for a dense CPD, written directly on the factors."""
    shapes = [A.shape for A in start]
    sizes = np.cumsum([0] + [A.size for A in start])
    split = lambda z: [z[sizes[n] : sizes[n + 1]].reshape(s) for n, s in enumerate(shapes)]  # noqa: E731
    norm_sq = float(np.vdot(T, T))

    def evaluate(z):
        F = split(z)
        grams = [A.T @ A for A in F]
        tree = algebra.MTTKRPTree(T, F)
        W = [algebra.hadamard(grams, skip=n) for n in range(len(F))]
        f = 0.5 * (norm_sq - 2 * tree.inner() + float(np.sum(W[0] * grams[0])))
        return f, F, grams, W, tree

    def gradient(F, W, tree):
        return np.concatenate([(A @ Wn - M).ravel() for A, Wn, M in zip(F, W, tree.all())])

    z = np.concatenate([A.ravel() for A in start])
    f, F, grams, W, tree = evaluate(z)
    f0, radius, its = f, np.nan, 0
    for its in range(1, max_iter + 1):
        g = gradient(F, W, tree)
        N = len(F)
        P = np.zeros((N, N) + grams[0].shape)
        for n in range(N):
            for m in range(n + 1, N):
                rest = [gr for k, gr in enumerate(grams) if k not in (n, m)]
                P[n, m] = P[m, n] = algebra.hadamard(rest) if rest else 1.0
        inv = [np.linalg.inv(Wn) for Wn in W]

        def gn(v, F=F, W=W, P=P):
            dF = split(v)
            cross = np.stack([dA.T @ A for A, dA in zip(F, dF)])
            acc = np.einsum("nmrs,mrs->nrs", P, cross)
            return np.concatenate([(dA @ Wn + A @ a).ravel()
                                   for A, dA, Wn, a in zip(F, dF, W, acc)])

        def precond(r, inv=inv):
            return np.concatenate([(x @ Wi).ravel() for x, Wi in zip(split(r), inv)])

        p_gn, Hp_gn, _, _ = pcg(gn, -g, precond, cg_tol, cg_iter)
        Hg = gn(g)
        alpha = float(g @ g) / float(g @ Hg)
        if np.isnan(radius):
            radius = float(np.linalg.norm(p_gn))
        while True:
            p, Hp = _dogleg(g, p_gn, Hp_gn, -alpha * g, -alpha * Hg, radius)
            predicted = -(float(g @ p) + 0.5 * float(p @ Hp))
            trial = evaluate(z + p)
            rho = (f - trial[0]) / predicted if predicted > 0 else -1.0
            radius = _update_radius(radius, float(np.linalg.norm(p)), rho)
            if rho > 0:
                break
        change = (f - trial[0]) / f0
        step = float(np.linalg.norm(p)) / float(np.linalg.norm(z))
        z = z + p
        f, F, grams, W, tree = trial
        if change <= tol_fun or step <= tol_x:
            break
    return its, np.sqrt(2 * f / norm_sq)


def engine_gn(T, start):
    vs = [sdf.Variable(A, name=f"f{n}") for n, A in enumerate(start)]
    res = sdf.Model(t=sdf.CPD(T, vs, weight=1.0)).fit(method="nls")
    return res.iterations, res.relerr["t"]


def engine_calls_per_iteration(T, start):
    """Python function calls of one engine fit per Gauss-Newton iteration (untimed)."""
    profile = cProfile.Profile()
    profile.enable()
    iterations, _ = engine_gn(T, start)
    profile.disable()
    return pstats.Stats(profile).total_calls / iterations


def pyttb_time_to(T, start, target):
    """Seconds pyttb's ``cp_als`` (same start) takes to a relative error <= ``target``."""
    X = ttb.tensor(T)
    init = ttb.ktensor([A.copy() for A in start], np.ones(start[0].shape[1]))
    t0 = time.perf_counter()
    out = Stamped(t0)
    with contextlib.redirect_stdout(out):
        ttb.cp_als(X, start[0].shape[1], stoptol=1e-10, maxiters=500, init=init, printitn=1)
    for t, line in out.lines:
        m = _PYTTB_LINE.search(line)
        if m and 1.0 - float(m.group(2)) <= target:
            return t
    return float("inf")


def main() -> None:
    head = (f"{'problem':<16} {'engine [s]':>10} {'special [s]':>11} {'ratio':>6} "
            f"{'it eng/spec':>11} {'s/it ratio':>10} {'relerr eng':>11} {'relerr spec':>11}"
            f" {'pyttb [s]':>9} {'eng/pyttb':>9} {'calls/it':>8}")
    lines = [head]
    print(head, flush=True)
    for shape, rank in [((100, 100, 100), 10), ((200, 200, 200), 20), ((50, 50, 50), 5)]:
        rows = []
        for seed in range(3):
            T, start = planted(shape, rank, seed)
            t0 = time.perf_counter()
            it_s, err_s = specialised_gn(T, start)
            t_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            it_e, err_e = engine_gn(T, start)
            t_e = time.perf_counter() - t0
            t_p = (pyttb_time_to(T, start, err_e * (1 + 1e-4)) if ttb is not None
                   else float("nan"))
            rows.append((t_e, t_s, it_e, it_s, (t_e / it_e) / (t_s / it_s), err_e, err_s, t_p))
        med = [statistics.median(c) for c in zip(*rows)]
        calls = engine_calls_per_iteration(*planted(shape, rank, 0))
        name = "x".join(map(str, shape)) + f" R={rank}"
        line = (f"{name:<16} {med[0]:10.3f} {med[1]:11.3f} {med[0] / med[1]:6.2f} "
                f"{med[2]:5.0f}/{med[3]:<5.0f} {med[4]:10.2f} {med[5]:11.3e} {med[6]:11.3e}"
                f" {med[7]:9.3f} {med[0] / med[7]:9.2f} {calls:8.0f}")
        lines.append(line)
        print(line, flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
