"""The unimodal constraint on a planted chromatography-like tensor (GC-MS / HPLC-DAD).

Planted data ``T = sum_r e_r o s_r o c_r``, 60 elution times x 40 spectral channels x
5 samples, rank 3: elution profiles ``e_r`` Gaussian peaks of standard deviation 6 at
times 25, 29 and 34 (strongly overlapping), spectra ``s_r`` nonnegative and strongly
correlated (a shared smooth baseline of weight 5 plus three random bands each),
concentrations ``c_r`` uniform in [0.2, 1].
Gaussian noise of 10 % of the data's norm. Five noise draws.

Each draw is fitted three ways, each from the previous one's result (the usual
chemometrics sequence of ever more constrained models):

* ``unconstrained``: the CPD fit from a random start (``model.fit(method="nls")``);
* ``nonnegative``: every factor ``>= 0`` (bounded Gauss-Newton, ``lower=0``), from the
  unconstrained factors (signs fixed, absolute values);
* ``unimodal``: elution profiles through ``tf.unimodal`` with the peak rows and start of
  the nonnegative fit (``tf.Unimodal.from_profiles``), spectra and concentrations
  ``>= 0`` (``lower=0``).

Reported: factor match score (FMS, product of the columns' congruences, best
permutation) of all three modes and of the elution mode alone against the planted
factors, relative error against the data, and the error of the elution profiles
(``||E - E_true|| / ||E_true||`` after scaling each column to the true one's norm); medians
over the draws, and the ratio of the elution error to the unconstrained fit's.

Run: ``python benchmarks/bench_shape_constraints.py [--quick]``; the table is also
written to ``benchmarks/results/bench_shape_constraints.txt``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import sdf
from sdf import transforms as tf
from sdf.models import fms

LINES: list[str] = []
SHAPE = (60, 40, 5)
RANK = 3
BASELINE = 5.0


def say(line: str = "") -> None:
    print(line)
    LINES.append(line)


def planted(rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    t = np.arange(SHAPE[0])[:, None]
    elution = np.exp(-0.5 * ((t - np.array([25.0, 29.0, 34.0])) / 6.0) ** 2)
    w = np.arange(SHAPE[1])[:, None]
    baseline = np.exp(-w / 25.0)
    spectra = BASELINE * baseline + sum(
        rng.random((1, RANK)) * np.exp(-0.5 * ((w - rng.uniform(0, SHAPE[1], (1, RANK))) / 2.5)
                                       ** 2) for _ in range(3))
    conc = rng.uniform(0.2, 1.0, (SHAPE[2], RANK))
    factors = [elution, spectra, conc]
    T = np.einsum("ir,jr,kr->ijk", *factors)
    return T, factors


def elution_error(E: np.ndarray, truth: np.ndarray) -> float:
    """Relative error of the elution profiles, best column permutation and scaling."""
    best = np.inf
    for perm in itertools.permutations(range(RANK)):
        P = E[:, perm]
        scale = np.sum(P * truth, axis=0) / np.maximum(np.sum(P * P, axis=0), 1e-300)
        best = min(best, float(np.linalg.norm(P * scale - truth) / np.linalg.norm(truth)))
    return best


def fit(model: sdf.Model, **options: Any) -> sdf.Result:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(max_iter=300, **options)


def one_draw(seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    clean, truth = planted(rng)
    T = clean + 0.1 * np.linalg.norm(clean) / np.sqrt(clean.size) * rng.standard_normal(SHAPE)
    starts = [rng.standard_normal((n, RANK)) for n in SHAPE]
    vs = [sdf.Variable(s, name=n) for s, n in zip(starts, ("e", "s", "c"))]
    free = fit(sdf.Model(t=sdf.CPD(T, vs)))
    E, S, C = (free[n] for n in ("e", "s", "c"))
    # Sign fix: make every column of E and S mostly positive (a CPD's sign freedom).
    se, ss = np.sign(E.sum(axis=0)), np.sign(S.sum(axis=0))
    E, S, C = E * se, S * ss, C * se * ss
    nonneg_start = [np.abs(E), np.abs(S), np.abs(C)]

    vs = [sdf.Variable(x, name=n) for x, n in zip(nonneg_start, ("e", "s", "c"))]
    nonneg = fit(sdf.Model(t=sdf.CPD(T, vs)), lower=0.0)

    shape, z0 = tf.Unimodal.from_profiles(nonneg["e"])
    e = sdf.Variable(z0, name="e")
    s = sdf.Variable(nonneg["s"], name="s")
    c = sdf.Variable(nonneg["c"], name="c")
    profiles = shape(e)
    uni = fit(sdf.Model(t=sdf.CPD(T, [profiles, s, c])), lower={"s": 0.0, "c": 0.0})
    uni_factors = [uni[profiles], uni["s"], uni["c"]]
    out = {}
    for label, res, factors in (("unconstrained", free, [E, S, C]),
                                ("nonnegative", nonneg, [nonneg["e"], nonneg["s"], nonneg["c"]]),
                                ("unimodal", uni, uni_factors)):
        out[label] = {"fms": fms(factors, truth), "fms_e": fms([factors[0]], [truth[0]]),
                      "relerr": res.relerr["t"], "e_err": elution_error(factors[0], truth[0]),
                      "iterations": res.iterations}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 draws instead of 5")
    args = parser.parse_args()
    draws = [one_draw(seed) for seed in range(2 if args.quick else 5)]
    say(f"Unimodal elution profiles, planted chromatography-like tensor {SHAPE}, rank {RANK}, "
        f"10 % noise (medians over {len(draws)} draws)")
    say()
    say(f"{'fit':<14} {'FMS (all)':>9} {'FMS (elution)':>13} {'elution err':>11} "
        f"{'ratio':>6} {'rel. error':>10} {'iters':>6}")
    base = statistics.median(d["unconstrained"]["e_err"] for d in draws)
    for label in ("unconstrained", "nonnegative", "unimodal"):
        med = {k: statistics.median(d[label][k] for d in draws)
               for k in ("fms", "fms_e", "e_err", "relerr", "iterations")}
        say(f"{label:<14} {med['fms']:9.4f} {med['fms_e']:13.4f} {med['e_err']:11.4f} "
            f"{med['e_err'] / base:6.2f} {med['relerr']:10.4f} {med['iterations']:6.0f}")
    say()
    say("per draw, FMS (all) unconstrained / nonnegative / unimodal: " + "; ".join(
        f"{d['unconstrained']['fms']:.3f} / {d['nonnegative']['fms']:.3f} / "
        f"{d['unimodal']['fms']:.3f}" for d in draws))
    out = Path(__file__).parent / "results" / "bench_shape_constraints.txt"
    out.write_text("\n".join(LINES) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
