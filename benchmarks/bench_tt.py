"""Tensor trains: the engine's Gauss-Newton (``sdf.models.tt``) against TT-ALS sweeps.

Planted 6-way trains plus Gaussian noise (relative level 1e-3):

====  ==============================================================================
P1    10 x 10 x 10 x 10 x 10 x 10 (10^6 entries), TT ranks (1, 3, 4, 5, 4, 3, 1), full
P2    7 x 7 x 7 x 7 x 7 x 7, TT ranks (1, 2, 3, 3, 3, 2, 1), 20 % of the entries known
====  ==============================================================================

Both methods start from the same random left-orthonormal train (seeded; its last core
scaled to the data's norm). The baseline is written here with numpy: one-site TT-ALS,
each core in turn solved exactly by least squares with the others fixed, sweeping left to
right and back (one "iteration" = one core update; a sweep updates N cores).
On full data the interfaces are kept orthonormal, so each update is a projection of the
data (``O(prod I r)``); with missing entries each slice of each core solves its own
normal equations over its known entries. ALS stops when a sweep changes the error by
less than a relative 1e-9 or after 200 sweeps (60 on completion). GN is the driver with
its default settings (``max_iter=500`` here). The "time to GN's error" column is the
time ALS needs to reach GN's final error within a relative 1e-3 ("-" if it never does).
For P1 the driver's own TT-SVD start is shown too. Errors are recomputed here from the
returned cores: on the data's known entries and, against the noiseless planted tensor,
on all entries (P2: the completion error). One BLAS thread.

Run: ``python benchmarks/bench_tt.py``; the table is also written to
``benchmarks/results/bench_tt.txt``.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from sdf.errors import SdfWarning  # noqa: E402
from sdf.models import tt  # noqa: E402

REACH = 1e-3
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line)
    LINES.append(line)


def full(cores: list[np.ndarray]) -> np.ndarray:
    out = cores[0].reshape(cores[0].shape[1], -1)
    shape = [cores[0].shape[1]]
    for G in cores[1:]:
        out = (out @ G.reshape(G.shape[0], -1)).reshape(-1, G.shape[2])
        shape.append(G.shape[1])
    return out.reshape(shape)


def random_train(shape, ranks, norm, rng):
    cores = []
    for k in range(len(shape) - 1):
        Q, _ = np.linalg.qr(rng.standard_normal((ranks[k] * shape[k], ranks[k + 1])))
        cores.append(Q.reshape(ranks[k], shape[k], ranks[k + 1]))
    last = rng.standard_normal((ranks[-2], shape[-1], 1))
    cores.append(last * norm / np.linalg.norm(last))
    return cores


# ----------------------------------------------------------------------------- TT-ALS
def _right_orthonormal(cores):
    """Cores 1..N-1 right-orthonormal (LQ from the right), the rest moved into core 0."""
    cores = [G.copy() for G in cores]
    for k in range(len(cores) - 1, 0, -1):
        G = cores[k]
        Q, R = np.linalg.qr(G.reshape(G.shape[0], -1).T)
        cores[k] = Q.T.reshape(-1, G.shape[1], G.shape[2])
        cores[k - 1] = np.tensordot(cores[k - 1], R.T, axes=([2], [0]))
    return cores


def _right_interface(cores, k):
    """Cores k+1..N-1 contracted: (r_{k+1}, prod I_>k)."""
    Y = np.ones((1, 1))
    for G in reversed(cores[k + 1:]):
        Y = (G.reshape(-1, G.shape[2]) @ Y).reshape(G.shape[0], -1)
    return Y


def _left_interface(cores, k):
    """Cores 0..k-1 contracted: (prod I_<k, r_k)."""
    Y = np.ones((1, 1))
    for G in cores[:k]:
        Y = (Y @ G.reshape(G.shape[0], -1)).reshape(-1, G.shape[2])
    return Y


class Trace:
    """Error after every core update, the time it was reached, and when ``target`` was."""

    def __init__(self, target):
        self.start, self.target = time.perf_counter(), target
        self.updates, self.errors, self.reached = 0, [], None

    def record(self, err):
        self.updates += 1
        self.errors.append(err)
        if self.reached is None and self.target is not None and err <= self.target * (1 + REACH):
            self.reached = time.perf_counter() - self.start


def tt_als_full(T, cores, max_sweeps, tol, target):
    """One-site TT-ALS on full data, interfaces kept orthonormal (each update is the
    projection of the data; the error is then ``sqrt(||T||^2 - ||G_k||^2) / ||T||``)."""
    N, shape = T.ndim, T.shape
    norm2 = float(np.vdot(T, T))
    trace = Trace(target)
    cores = _right_orthonormal(cores)
    last, sweeps = np.inf, 0
    for sweeps in range(1, max_sweeps + 1):
        P = T.reshape(1, -1)  # the data projected on the left-orthonormal cores < k
        for k in range(N - 1):
            rows = P.reshape(P.shape[0] * shape[k], -1)
            G = rows @ _right_interface(cores, k).T
            trace.record(np.sqrt(max(norm2 - float(np.sum(G * G)), 0.0) / norm2))
            Q, R = np.linalg.qr(G)
            cores[k] = Q.reshape(P.shape[0], shape[k], -1)
            cores[k + 1] = np.tensordot(R, cores[k + 1], axes=([1], [0]))
            P = Q.T @ rows
        S = T.reshape(-1, 1)  # the data projected on the right-orthonormal cores > k
        for k in range(N - 1, 0, -1):
            cols = S.reshape(-1, shape[k] * S.shape[1])
            G = _left_interface(cores, k).T @ cols
            trace.record(np.sqrt(max(norm2 - float(np.sum(G * G)), 0.0) / norm2))
            Q, R = np.linalg.qr(G.T)
            cores[k] = Q.T.reshape(-1, shape[k], cores[k].shape[2])
            cores[k - 1] = np.tensordot(cores[k - 1], R.T, axes=([2], [0]))
            S = cols @ Q
        err = trace.errors[-1]
        if abs(last - err) <= tol * err:
            break
        last = err
    return cores, trace, sweeps


def _entry_products(cores, subs):
    """Per known entry, the products of the cores left of k (nnz, r_k) and right of k
    (nnz, r_{k+1}), for every k."""
    N, nnz = len(cores), len(subs)
    left = [np.ones((nnz, 1))]
    for k in range(N - 1):
        left.append(np.einsum("ea,aeb->eb", left[-1], cores[k][:, subs[:, k], :]))
    right = [None] * N
    right[N - 1] = np.ones((nnz, 1))
    for k in range(N - 1, 0, -1):
        right[k - 1] = np.einsum("aeb,eb->ea", cores[k][:, subs[:, k], :], right[k])
    return left, right


def tt_als_completion(X, cores, max_sweeps, tol, target):
    """One-site TT-ALS on the known entries: each slice of the core being updated solves
    its normal equations (a tiny ridge keeps empty or deficient slices solvable)."""
    N, shape = X.ndim, X.shape
    known = ~np.isnan(X)
    subs = np.argwhere(known)
    vals = X[known]
    norm = np.linalg.norm(vals)
    indicators = [sp.csr_array((np.ones(len(subs)), (subs[:, k], np.arange(len(subs)))),
                               shape=(shape[k], len(subs))) for k in range(N)]
    cores = [G.copy() for G in cores]
    trace = Trace(target)
    last, sweeps = np.inf, 0
    for sweeps in range(1, max_sweeps + 1):
        for k in [*range(N - 1), *range(N - 1, 0, -1)]:
            left, right = _entry_products(cores, subs)
            ra, rb = left[k].shape[1], right[k].shape[1]
            Z = (left[k][:, :, None] * right[k][:, None, :]).reshape(len(subs), -1)
            A = (indicators[k] @ (Z[:, :, None] * Z[:, None, :]).reshape(len(subs), -1)
                 ).reshape(shape[k], ra * rb, ra * rb)
            b = indicators[k] @ (Z * vals[:, None])
            ridge = 1e-12 * np.trace(A, axis1=1, axis2=2).max() + 1e-300
            x = np.linalg.solve(A + ridge * np.eye(ra * rb), b[:, :, None])[:, :, 0]
            cores[k] = np.transpose(x.reshape(shape[k], ra, rb), (1, 0, 2))
            model = np.einsum("ea,aeb,eb->e", left[k], cores[k][:, subs[:, k], :], right[k])
            trace.record(np.linalg.norm(model - vals) / norm)
        err = trace.errors[-1]
        if abs(last - err) <= tol * err:
            break
        last = err
    return cores, trace, sweeps


# ----------------------------------------------------------------------------- cases
def errors(cores, X, T):
    M = full(cores)
    known = ~np.isnan(X)
    return (np.linalg.norm((M - X)[known]) / np.linalg.norm(X[known]),
            np.linalg.norm(M - T) / np.linalg.norm(T))


def run_case(name, shape, ranks, known_share, max_sweeps, seed):
    rng = np.random.default_rng(seed)
    planted = [rng.standard_normal((ranks[k], n, ranks[k + 1])) for k, n in enumerate(shape)]
    T = full(planted)
    noise = rng.standard_normal(shape)
    X = T + 1e-3 * np.linalg.norm(T) / np.linalg.norm(noise) * noise
    if known_share < 1:
        X[rng.random(shape) >= known_share] = np.nan
    known = ~np.isnan(X)
    scale = np.linalg.norm(X[known]) * np.sqrt(X.size / known.sum())
    start = random_train(shape, ranks, scale, np.random.default_rng(seed + 1))
    rows = []
    runs = [("GN, random start", start)] + ([("GN, TT-SVD start", "auto")]
                                           if known_share == 1 else [])
    gn_error = None
    for label, init in runs:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SdfWarning)
            dec = tt(X, ranks, init=init, max_iter=500)
        seconds = time.perf_counter() - t
        fit, truth = errors(dec.factors, X, T)
        if gn_error is None:
            gn_error = fit
        rows.append((label, f"{dec.iterations} it", seconds, fit, truth, "", 1.0))
    gn_time = rows[0][2]
    t = time.perf_counter()
    if known_share == 1:
        cores, trace, sweeps = tt_als_full(X, start, max_sweeps, 1e-9, gn_error)
    else:
        cores, trace, sweeps = tt_als_completion(X, start, max_sweeps, 1e-9, gn_error)
    seconds = time.perf_counter() - t
    fit, truth = errors(cores, X, T)
    reach = "-" if trace.reached is None else f"{trace.reached:.2f}"
    rows.append(("TT-ALS (numpy), random start", f"{sweeps} sw / {trace.updates} up",
                 seconds, fit, truth, reach, seconds / gn_time))
    n_known = int(known.sum())
    say(f"{name}: shape {shape}, TT ranks {ranks}, {n_known} known entries "
        f"({100 * known_share:.0f} %), noise 1e-3")
    say(f"  {'method':<30} {'iterations':>16} {'time [s]':>9} {'relerr (data)':>14} "
        f"{'err vs planted':>15} {'t to GN err':>12} {'time / GN':>10}")
    for label, its, sec, fit, truth, reach, ratio in rows:
        say(f"  {label:<30} {its:>16} {sec:>9.2f} {fit:>14.3e} {truth:>15.3e} "
            f"{reach:>12} {ratio:>10.2f}")
    say()


def main():
    say("Tensor trains: sdf.models.tt (Gauss-Newton) vs one-site TT-ALS sweeps (numpy)")
    say(f"numpy {np.__version__}, OMP/OPENBLAS threads {os.environ.get('OMP_NUM_THREADS')}")
    say()
    run_case("P1", (10,) * 6, (1, 3, 4, 5, 4, 3, 1), 1.0, 200, 0)
    run_case("P2", (7,) * 6, (1, 2, 3, 3, 3, 2, 1), 0.2, 60, 1)
    out = Path(__file__).parent / "results" / "bench_tt.txt"
    out.write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
