"""Data-aware and data-free CP of small conv layers: the default against the engine candidate.

Until ``CompressOptions.cp_engine_size`` was lowered to 1e4, every CP fit of up to 3e6
multiply-adds per Gauss-Newton product also ran the engine's Gauss-Newton fit and kept
the lower objective (2-4 CPU s per layer even at 8x4x3x3). This compares that behaviour
(``cp_engine_size=3e6``, "old") with the default ("new") on 24 synthetic layers: out x in
of 8x4, 16x8, 24x12 and 32x16 (3x3 kernels), three seeds each, data-free and data-aware,
``ratio=0.5``, padding 1. Weights have decaying spectra (singular values ``k^-0.6`` of the
(out, in*9) matrix); calibration inputs are 4 ReLU maps of 8x8 with correlated channels.
The default: data-free layers of up to 2000 weights keep the engine's data-free
Gauss-Newton candidate (the "old" pair), data-aware ones get Levenberg-Marquardt runs
(``sdf.models.compress._cp_lm``) beside the default alternating start, larger layers
several alternating starts (data-free with five times the ALS sweeps).
Then the digits CNN's conv2 (32x16x3x3, its real calibration inputs) with ``tol=0.6``
(a rank path, then the chosen rank), as in ``bench_compress_speed.py``.

Printed per layer: the fitted objective (1 at ``W_hat = 0``), CPU s (one BLAS thread)
and the spread of the components (:func:`spread`) of both, and the ratios new/old of
objective and time. Target: new objective <= old * (1 + 1e-3) and
under 0.5 CPU s per synthetic layer.

Usage: ``python benchmarks/bench_cp_small.py [--skip-digits] [--seeds 1,2,3] [--out FILE]``;
writes the table to ``benchmarks/results/bench_cp_small.txt`` (or ``--out``). Other
seeds (``--seeds 4,5,6``) give layers the defaults were not tuned on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

from bench_compress_speed import digits_conv2
from sdf.models.compress import CompressOptions, compress_conv

RESULTS = Path(__file__).resolve().parent / "results" / "bench_cp_small.txt"
SHAPES = ((8, 4), (16, 8), (24, 12), (32, 16))
SEEDS = (1, 2, 3)
OLD = CompressOptions(cp_engine_size=3e6)
NEW = CompressOptions()


def decaying_weight(rng: np.random.Generator, o: int, i: int) -> np.ndarray:
    """A trained-like 3x3 weight: singular values ``k^-0.6`` of the (out, in*9) matrix."""
    k = min(o, 9 * i)
    U = np.linalg.qr(rng.standard_normal((o, k)))[0]
    V = np.linalg.qr(rng.standard_normal((9 * i, k)))[0]
    return ((U * np.arange(1, k + 1) ** -0.6) @ V.T).reshape(o, i, 3, 3)


def relu_maps(rng: np.random.Generator, n: int, i: int, hw: int) -> np.ndarray:
    """``n`` ReLU feature maps (i channels, hw x hw) with correlated channels."""
    mix = rng.standard_normal((i, i)) * np.linspace(0.2, 2, i)
    return np.maximum(np.einsum("ij,njhw->nihw", mix, rng.standard_normal((n, i, hw, hw)))
                      + 0.3, 0.0)


def timed(fit: Callable[[], Any]) -> tuple[float, Any]:
    """CPU seconds of ``fit()`` and its result."""
    start = time.process_time()
    out = fit()
    return time.process_time() - start, out


def spread(res: Any) -> float:
    """Sum of the CP components' norms over the norm of the weight they make: 1 when no
    components cancel, large for a degenerate CP (components cancelling each other)."""
    Ui, Uh, Uw, Uo = (p.weight for p in res.pieces)
    norms = (np.linalg.norm(Uo[:, :, 0, 0], axis=0) * np.linalg.norm(Ui[:, :, 0, 0], axis=1)
             * np.linalg.norm(Uh[:, 0, :, 0], axis=1) * np.linalg.norm(Uw[:, 0, 0, :], axis=1))
    return float(norms.sum() / np.linalg.norm(res.weight_approx))


def compare(emit: Callable[[str], None], label: str, fit: Callable[[CompressOptions], Any]
            ) -> tuple[float, float]:
    """One row: old and new objective, CPU s and ratios; returns (objective, time) ratios."""
    t_old, res_old = timed(lambda: fit(OLD))
    t_new, res_new = timed(lambda: fit(NEW))
    f_old, f_new = res_old.info.objective, res_new.info.objective
    ratio, speed = f_new / f_old, t_new / t_old
    emit(f"{label:<28} {f_old:11.6g} {t_old:7.2f} {spread(res_old):6.1f}   {f_new:11.6g} "
         f"{t_new:7.2f} {spread(res_new):6.1f}   {ratio:7.4f} {speed:6.3f}  {res_new.rank}")
    return ratio, speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)),
                        help="comma-separated seeds of the synthetic layers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    emit("old: CompressOptions(cp_engine_size=3e6) (engine candidate on every layer); "
         "new: CompressOptions() (default); CPU s on 1 BLAS thread")
    emit("spread: sum of the components' norms over the fitted weight's norm (1: no "
         "cancellation; large: a degenerate CP)")
    emit(f"{'layer':<28} {'old obj':>11} {'cpu s':>7} {'spread':>6}   {'new obj':>11} "
         f"{'cpu s':>7} {'spread':>6}   {'new/old':>7} {'time':>6}  rank")
    ratios, times, speeds = [], [], []
    with threadpool_limits(1):
        for seed in (int(s) for s in args.seeds.split(",")):
            for o, i in SHAPES:
                rng = np.random.default_rng(seed)
                W = decaying_weight(rng, o, i)
                X = relu_maps(rng, 4, i, 8)
                for kind, calib in (("free", None), ("aware", X)):
                    start = time.process_time()
                    ratio, speed = compare(
                        emit, f"seed {seed} {o:2d}x{i:<2d}x3x3 {kind}",
                        lambda opts: compress_conv(W, "cp", ratio=0.5, X=calib, padding=1,
                                                   options=opts))
                    ratios.append(ratio)
                    speeds.append(speed)
                    times.append((time.process_time() - start) * speed / (1 + speed))
        worst = int(np.argmax(ratios))
        emit(f"synthetic: new/old objective min {min(ratios):.4f} max {max(ratios):.4f} "
             f"(layer {worst + 1}), above 1 + 1e-3 on {sum(r > 1 + 1e-3 for r in ratios)} "
             f"of {len(ratios)}; new CPU s max {max(times):.2f}, time new/old median "
             f"{np.median(speeds):.3f}")
        if not args.skip_digits:
            p, X, geo = digits_conv2()
            compare(emit, "digits conv2 tol=0.6 aware",
                    lambda opts: compress_conv(p.weight, "cp", tol=0.6, X=X, bias=p.bias,
                                               options=opts, **geo))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
