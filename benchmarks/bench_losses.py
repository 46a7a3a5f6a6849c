"""Non-Gaussian losses against pyttb's ``gcp_opt`` and ``cp_apr``, in one process.

Races (every solver from the same start; the peers with their own default settings):

* **Poisson, log link** (100x80x60, rank 5, mean count about 2: the log of the mean is
  the CPD). Start: sdf's own start for counts (a least-squares CPD of ``log(x + 1/2)``,
  timed separately). Peer: ``gcp_opt`` (POISSON_LOG, L-BFGS-B defaults).
* **Poisson, identity link** (same size, nonnegative gamma-distributed factors, mean
  count 2: the mean is the CPD, cp_apr's model). Start: uniform random factors.
  Peers: ``cp_apr`` (its default multiplicative-update algorithm and tolerance, with
  ``stoptime`` capping its run) and ``gcp_opt`` (POISSON, nonnegative bounds). sdf fits
  ``Poisson(link="identity")`` with ``tf.nonneg`` factors (``x = z^2``).
* **Bernoulli, logit link** (80x60x50, rank 4). Start: sdf's own start for binary data (a
  least-squares CPD of ``4 (x - 1/2)``). Peer: ``gcp_opt`` (BERNOULLI_LOGIT).
* **Huber**: rank-5 tensor with 5 % gross outliers, FMS of Huber and least squares.

For each peer the target is its final objective (pyttb's units: each loss without its
data-only constant); the sdf columns give the time at which sdf's Gauss-Newton ("nls")
first reaches it (within 1e-9 relative), and the ratio to the peer's time. The machine is
shared: the fast races (log-link Poisson, Bernoulli) take the best of ``REPEATS`` runs
for every solver (fastest peer run, fastest sdf time to the target); the identity-link
race runs once (cp_apr alone takes its full minute). "sdf driver"
is :func:`sdf.models.cpd` with ``loss=`` from scratch (its start included). FMS is the
factor match score against the planted factors; "LS" is a least-squares CPD of the same
data.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_losses.py`` (writes
``benchmarks/results/bench_losses.txt``).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyttb as ttb
from pyttb.gcp.fg_setup import Objectives
from pyttb.gcp.optimizers import LBFGSB

import sdf
from sdf import algebra
from sdf import transforms as tf
from sdf.models import cpd
from sdf.models.diagnostics import fms

SHAPE, RANK = (100, 80, 60), 5
CP_APR_STOPTIME = 60.0
REPEATS = 3
Objective = Callable[[list[np.ndarray]], float]


def poisson_log_planted(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = [0.7 * rng.standard_normal((n, RANK)) for n in SHAPE]
    offset = np.log(2.0) - np.log(np.mean(np.exp(algebra.cpd_to_tensor(truth))))
    for A in truth:
        A[:, 0] = np.cbrt(offset) + 0.05 * rng.standard_normal(A.shape[0])
    return truth, rng.poisson(np.exp(algebra.cpd_to_tensor(truth))).astype(float)


def poisson_identity_planted(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = [rng.gamma(0.5, 1.0, (n, RANK)) for n in SHAPE]
    scale = np.cbrt(2.0 / algebra.cpd_to_tensor(truth).mean())
    truth = [A * scale for A in truth]
    return truth, rng.poisson(algebra.cpd_to_tensor(truth)).astype(float)


def bernoulli_planted(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = [rng.standard_normal((n, 4)) for n in (80, 60, 50)]
    p = 1.0 / (1.0 + np.exp(-algebra.cpd_to_tensor(truth)))
    return truth, (rng.random(p.shape) < p).astype(float)


def objective(kind: str, X: np.ndarray) -> Objective:
    """pyttb's objective of ``kind`` at factors (sum over all entries)."""
    def value(factors: list[np.ndarray]) -> float:
        M = algebra.cpd_to_tensor(factors)
        with np.errstate(over="ignore", divide="ignore"):
            if kind == "poisson_log":
                return float(np.sum(np.exp(M) - X * M))
            if kind == "poisson":
                return float(np.sum(M - X * np.log(M + 1e-10)))
            return float(np.sum(np.logaddexp(0.0, M) - X * M))
    return value


def sdf_offset(kind: str, X: np.ndarray) -> float:
    """sdf's loss value minus pyttb's objective (the data-only part of the loss)."""
    xlogx = np.where(X > 0, X * np.log(np.where(X > 0, X, 1.0)), 0.0)
    return float(np.sum(xlogx - X)) if kind.startswith("poisson") else 0.0


def unpack(model: ttb.ktensor) -> list[np.ndarray]:
    return [np.array(U) * (model.weights if n == 0 else 1.0)
            for n, U in enumerate(model.factor_matrices)]


def run_gcp(X: np.ndarray, kind: Objectives, init: list[np.ndarray]
            ) -> tuple[list[np.ndarray], float]:
    t0 = time.perf_counter()
    model, _, _ = ttb.gcp_opt(ttb.tensor(X), init[0].shape[1], kind, LBFGSB(),
                              init=ttb.ktensor([A.copy() for A in init]), printitn=0)
    return unpack(model), time.perf_counter() - t0


def run_cp_apr(X: np.ndarray, init: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    t0 = time.perf_counter()
    model, _, _ = ttb.cp_apr(ttb.tensor(X), RANK, init=ttb.ktensor([A.copy() for A in init]),
                             printitn=0, stoptime=CP_APR_STOPTIME)
    return unpack(model), time.perf_counter() - t0


def run_sdf(X: np.ndarray, init: list[np.ndarray], loss: sdf.losses.LossLike,
            offset: float, nonneg: bool = False, max_iter: int = 200
            ) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """Fitted factors and the trace (time, objective in pyttb's units) per iteration."""
    variables = [sdf.Variable(np.sqrt(A) if nonneg else A.copy()) for A in init]
    factors = [tf.nonneg(v) for v in variables] if nonneg else variables
    trace: list[tuple[float, float]] = []
    model = sdf.Model(x=sdf.CPD(X, factors, loss=loss, weight=1.0))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sdf.errors.SdfWarning)
        res = model.fit(method="nls", max_iter=max_iter, callback=lambda info: trace.append(
            (time.perf_counter() - t0, float(info.fvals[0]) - offset)))
    return [res[f] for f in factors], trace


def time_to(trace: list[tuple[float, float]], target: float) -> float:
    for t, f in trace:
        if f <= target + 1e-9 * abs(target):
            return t
    return float("nan")


def race(lines: list[str], title: str, truth: list[np.ndarray], X: np.ndarray,
         kind: str, peers: dict[str, Callable[[], tuple[list[np.ndarray], float]]],
         sdf_fit: Callable[[], tuple[list[np.ndarray], list[tuple[float, float]]]],
         extra: list[tuple[str, list[np.ndarray], float]], repeats: int = 1) -> None:
    value = objective(kind, X)
    lines += ["", title,
              f"{'solver':<34}{'objective':>16}{'time [s]':>10}{'FMS':>7}"
              f"{'sdf nls to it [s]':>19}{'ratio':>7}"]
    fits = [sdf_fit() for _ in range(repeats)]
    factors, trace = fits[0]
    for label, run in peers.items():
        runs = [run() for _ in range(repeats)]
        found, elapsed = min(runs, key=lambda r: r[1])
        target = value(found)
        reach = min(time_to(t, target) for _, t in fits)
        lines.append(f"{label:<34}{target:>16.3f}{elapsed:>10.2f}{fms(found, truth):>7.3f}"
                     f"{reach:>19.2f}{reach / elapsed:>7.2f}")
    lines.append(f"{'sdf nls (same start)':<34}{value(factors):>16.3f}"
                 f"{min(t[-1][0] for _, t in fits):>10.2f}{fms(factors, truth):>7.3f}")
    for label, found, elapsed in extra:
        lines.append(f"{label:<34}{value(found):>16.3f}{elapsed:>10.2f}{fms(found, truth):>7.3f}")


def timed_cpd(X: np.ndarray, rank: int, **kw: object) -> tuple[list[np.ndarray], float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sdf.errors.SdfWarning)
        dec = cpd(X, rank, seed=0, **kw)  # type: ignore[arg-type]
    return dec.factors, time.perf_counter() - t0


def poisson_log_race(lines: list[str]) -> None:
    truth, X = poisson_log_planted(0)
    t0 = time.perf_counter()
    start, _ = timed_cpd(np.log(X + 0.5), RANK, max_iter=50)
    start_time = time.perf_counter() - t0
    offset = sdf_offset("poisson_log", X)
    driver, driver_time = timed_cpd(X, RANK, loss="poisson")
    ls, ls_time = timed_cpd(X, RANK)
    race(lines, f"Planted Poisson CPD {SHAPE}, rank {RANK}, log link, mean count "
         f"{X.mean():.2f}; start: least-squares CPD of log(x + 1/2) ({start_time:.2f} s)",
         truth, X, "poisson_log",
         {"pyttb gcp_opt (POISSON_LOG)": lambda: run_gcp(X, Objectives.POISSON_LOG, start)},
         lambda: run_sdf(X, start, "poisson", offset), [("sdf driver cpd(loss='poisson')", driver, driver_time),
               ("sdf cpd, least squares", ls, ls_time)], REPEATS)


def poisson_identity_race(lines: list[str]) -> None:
    truth, X = poisson_identity_planted(0)
    rng = np.random.default_rng(1)
    start = [rng.random((n, RANK)) for n in SHAPE]
    offset = sdf_offset("poisson", X)
    driver, driver_time = timed_cpd(X, RANK, loss=sdf.losses.Poisson(link="identity"))
    ls, ls_time = timed_cpd(X, RANK)
    race(lines, f"Planted Poisson CPD {SHAPE}, rank {RANK}, identity link (nonnegative "
         f"factors), mean count {X.mean():.2f}; start: uniform random factors",
         truth, X, "poisson",
         {f"pyttb cp_apr (mu, stoptime {CP_APR_STOPTIME:g} s)": lambda: run_cp_apr(X, start),
          "pyttb gcp_opt (POISSON)": lambda: run_gcp(X, Objectives.POISSON, start)},
         lambda: run_sdf(X, start, sdf.losses.Poisson(link="identity"), offset, nonneg=True), [("sdf driver cpd(loss=identity)", driver, driver_time),
               ("sdf cpd, least squares", ls, ls_time)])


def bernoulli_race(lines: list[str]) -> None:
    truth, X = bernoulli_planted(0)
    t0 = time.perf_counter()
    start, _ = timed_cpd(4.0 * (X - 0.5), 4, max_iter=50)
    start_time = time.perf_counter() - t0
    driver, driver_time = timed_cpd(X, 4, loss="bernoulli")
    ls, ls_time = timed_cpd(X, 4)
    race(lines, f"Planted Bernoulli CPD {X.shape}, rank 4, logit link, {X.mean():.2f} ones; "
         f"start: least-squares CPD of 4 (x - 1/2) ({start_time:.2f} s)",
         truth, X, "bernoulli",
         {"pyttb gcp_opt (BERNOULLI_LOGIT)": lambda: run_gcp(X, Objectives.BERNOULLI_LOGIT,
                                                             start)},
         lambda: run_sdf(X, start, "bernoulli", 0.0),
         [("sdf driver cpd(loss='bernoulli')", driver, driver_time),
          ("sdf cpd, least squares", ls, ls_time)], REPEATS)


def huber_outliers(lines: list[str]) -> None:
    rng = np.random.default_rng(2)
    shape = (60, 50, 40)
    truth = [rng.standard_normal((n, RANK)) for n in shape]
    M = algebra.cpd_to_tensor(truth)
    X = M + 0.1 * rng.standard_normal(shape)
    outliers = rng.random(shape) < 0.05
    X[outliers] += 20 * np.abs(M).max() * rng.standard_normal(int(outliers.sum()))
    lines += ["", f"Rank-{RANK} tensor {shape}, 5 % gross outliers: FMS against the truth"]
    for label, loss in (("huber (threshold 0.3)", sdf.losses.Huber(0.3)),
                        ("least squares", "gaussian")):
        init = [0.3 * np.random.default_rng(3).standard_normal((n, RANK)) for n in shape]
        variables = [sdf.Variable(A) for A in init]
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sdf.errors.SdfWarning)
            res = sdf.Model(x=sdf.CPD(X, variables, loss=loss)).fit(max_iter=300)
        lines.append(f"  {label:<24} FMS {fms([res[v] for v in variables], truth):.3f}  "
                     f"{time.perf_counter() - t0:.2f} s")


def main() -> None:
    logging.disable(logging.WARNING)  # pyttb logs a copy of every non-Fortran-ordered factor
    lines: list[str] = []
    for part in (poisson_log_race, poisson_identity_race, bernoulli_race, huber_outliers):
        part(lines)
        print("\n".join(lines), flush=True)
        print("-" * 40)
    text = "\n".join(lines).lstrip("\n")
    out = Path(__file__).parent / "results" / "bench_losses.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
