"""Non-Gaussian losses against pyttb's ``gcp_opt`` (generalized CP, L-BFGS-B), in one process.

Planted Poisson CPD (100x80x60, rank 5, mean count about 2, log link: the log of the mean
is the CPD). Every solver starts from the same random factors (the first component carrying the mean). pyttb's ``gcp_opt`` runs
with its default L-BFGS-B settings (``pgtol = 1e-4 * number of entries``) and with tight
ones (``pgtol = 1e-8``, ``factr = 10``); its final objective ``sum(exp(M) - X M)`` is the
target. For sdf (``loss="poisson"``, Gauss-Newton "nls" and L-BFGS "minf") the table
gives the time at which its objective, in pyttb's units (sdf's value less the constant
``sum(x log x - x)``), first reaches the target (within ``1e-9`` relative), the ratio to
pyttb's time, and the factor match score (FMS) against the truth; a least-squares fit of
the counts gives the FMS that ignoring the loss costs. A Huber row compares FMS of Huber
and least squares on a rank-5 tensor with 5 % gross outliers.

Run: ``python benchmarks/bench_losses.py`` (writes ``benchmarks/results/bench_losses.txt``).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import logging

import numpy as np
import pyttb as ttb
from pyttb.gcp.fg_setup import Objectives
from pyttb.gcp.optimizers import LBFGSB

import sdf
from sdf import algebra
from sdf.models.diagnostics import fms

SHAPE, RANK = (100, 80, 60), 5


def planted_poisson(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Truth (log-mean factors, one near-constant component setting the mean) and counts."""
    rng = np.random.default_rng(seed)
    truth = [0.7 * rng.standard_normal((n, RANK)) for n in SHAPE]
    M = algebra.cpd_to_tensor(truth)
    offset = np.log(2.0) - np.log(np.mean(np.exp(M)))  # mean count 2
    for A in truth:
        A[:, 0] = np.cbrt(offset) + 0.05 * rng.standard_normal(A.shape[0])
    M = algebra.cpd_to_tensor(truth)
    return truth, rng.poisson(np.exp(M)).astype(float)


def start(seed: int, X: np.ndarray) -> list[np.ndarray]:
    """Small random factors whose first component carries the data's mean (log link):
    from a start at zero, L-BFGS-B's first step overflows ``exp`` and pyttb stops there."""
    rng = np.random.default_rng(seed)
    factors = [0.1 * rng.standard_normal((n, RANK)) for n in SHAPE]
    for A in factors:
        A[:, 0] = np.cbrt(np.log(X.mean()))
    return factors


def pyttb_objective(factors: list[np.ndarray], X: np.ndarray) -> float:
    M = algebra.cpd_to_tensor(factors)
    with np.errstate(over="ignore"):
        return float(np.sum(np.exp(M) - X * M))


def run_pyttb(X: np.ndarray, init: list[np.ndarray], **solver: float
              ) -> tuple[list[np.ndarray], float]:
    optimizer = LBFGSB(maxiter=2000, **solver)
    t0 = time.perf_counter()
    model, _, _ = gcp_opt(X, init, optimizer)
    elapsed = time.perf_counter() - t0
    factors = [np.asarray(U) * (model.weights if n == 0 else 1.0)
               for n, U in enumerate(model.factor_matrices)]
    return factors, elapsed


def gcp_opt(X: np.ndarray, init: list[np.ndarray], optimizer: LBFGSB) -> tuple:
    return ttb.gcp_opt(ttb.tensor(X), RANK, Objectives.POISSON_LOG, optimizer,
                       init=ttb.ktensor([A.copy() for A in init]), printitn=0)


def run_sdf(X: np.ndarray, init: list[np.ndarray], method: str, loss: str = "poisson"
            ) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """Fitted factors and the trace (time, objective in pyttb's units) per iteration."""
    offset = float(np.sum(np.where(X > 0, X * np.log(np.where(X > 0, X, 1.0)), 0.0) - X))
    variables = [sdf.Variable(A.copy(), name=f"f{n}") for n, A in enumerate(init)]
    trace: list[tuple[float, float]] = []
    model = sdf.Model(x=sdf.CPD(X, variables, loss=loss, weight=1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sdf.errors.SdfWarning)
        res = model.fit(method=method, max_iter=1000,
                        callback=lambda info: trace.append((info.time,
                                                            float(info.fvals[0]) - offset)))
    return [res[v] for v in variables], trace


def time_to(trace: list[tuple[float, float]], target: float) -> float:
    for t, f in trace:
        if f <= target + 1e-9 * abs(target):
            return t
    return float("nan")


def poisson_race(lines: list[str]) -> None:
    truth, X = planted_poisson(0)
    init = start(1, X)
    lines.append(f"Planted Poisson CPD {SHAPE}, rank {RANK}, mean count {X.mean():.2f}")
    header = (f"{'solver':<26}{'objective':>16}{'time [s]':>10}{'FMS':>7}"
              f"{'sdf nls to it [s]':>19}{'ratio':>7}{'sdf minf to it [s]':>20}{'ratio':>7}")
    lines.append(header)
    sdf_runs = {m: run_sdf(X, init, m) for m in ("nls", "minf")}
    for label, solver in (("pyttb gcp_opt (default)", {}),
                          ("pyttb gcp_opt (tight)", {"pgtol": 1e-8, "factr": 10.0})):
        factors, elapsed = run_pyttb(X, init, **solver)
        target = pyttb_objective(factors, X)
        row = f"{label:<26}{target:>16.6f}{elapsed:>10.2f}{fms(factors, truth):>7.3f}"
        for method in ("nls", "minf"):
            reach = time_to(sdf_runs[method][1], target)
            row += f"{reach:>19.2f}{reach / elapsed:>7.2f}" if method == "nls" else \
                f"{reach:>20.2f}{reach / elapsed:>7.2f}"
        lines.append(row)
    for method, (factors, trace) in sdf_runs.items():
        lines.append(f"{'sdf ' + method + ' (poisson)':<26}{pyttb_objective(factors, X):>16.6f}"
                     f"{trace[-1][0]:>10.2f}{fms(factors, truth):>7.3f}")
    ls, trace = run_sdf(X, init, "nls", loss="gaussian")
    lines.append(f"{'sdf nls (least squares)':<26}{pyttb_objective(ls, X):>16.6f}"
                 f"{trace[-1][0]:>10.2f}{fms(ls, truth):>7.3f}")


def huber_outliers(lines: list[str]) -> None:
    rng = np.random.default_rng(2)
    shape = (60, 50, 40)
    truth = [rng.standard_normal((n, RANK)) for n in shape]
    M = algebra.cpd_to_tensor(truth)
    X = M + 0.1 * rng.standard_normal(shape)
    outliers = rng.random(shape) < 0.05
    X[outliers] += 20 * np.abs(M).max() * rng.standard_normal(int(outliers.sum()))
    lines.append("")
    lines.append(f"Rank-{RANK} tensor {shape}, 5 % gross outliers: FMS against the truth")
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
    poisson_race(lines)
    huber_outliers(lines)
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "bench_losses.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
