"""Compression time of randomly drawn conv layers against the targets (run as a script).

The targets of :mod:`bench_compress_speed` are for *any* layer of up to 1 M weights:
under 1 s data-free and under 5 s data-aware. Its fixed layers cannot show the shapes
that miss them, so this script draws layers at random, one per seed, and compresses each
by every conv method at ``ratio=0.5``, data-free and data-aware:

- out channels from {16, 32, 64, 96, 128, 192, 256, 384, 512}, in channels from {3, 16,
  32, 64, 96, 128, 192, 256, 384, 512}, square kernels of 1, 3 (three times as likely), 5
  or 7; a draw above 1 M weights is skipped;
- stride 1 (twice as likely) or 2, padding ``k // 2``;
- calibration maps: 4, 8 or 16 maps of 7, 14 or 28 pixels square (14 or 28 for kernels
  above 3), ReLU of channels mixed by a matrix with singular values ``0.8^j``;
- weights with singular values ``rate^j + 0.01`` (``rate`` uniform in [0.9, 0.995]) and
  random singular vectors: slowly decaying spectra, the hard case for the fits.

Each row gives the times (wall and CPU), the time in units of one 1024x1024 SVD measured in
the same process (``svd u``; the machine's speed changes from hour to hour, this unit
with it), its ratio to the target, the weight error, the calibration output error and
how the fit ended. ``OVER`` marks a row above its target, ``CAP`` one stopped at
``--cap`` CPU seconds. A summary counts, per method and kind, the rows over target and
gives the median and the largest time. As in :mod:`bench_compress_speed`, one BLAS
thread by default (targets read on CPU time), ``--threads default`` for wall time.

Usage: ``python benchmarks/bench_compress_sweep.py [--seeds LO:HI] [--cap CPU_SECONDS]
[--methods weight_svd,...] [--threads {1,default}] [--out FILE]``; writes the table to
``benchmarks/results/bench_compress_sweep.txt`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_compress_speed as speed  # noqa: E402

from sdf.models.compress import compress_conv  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_compress_sweep.txt"
OUTS = (16, 32, 64, 96, 128, 192, 256, 384, 512)
INS = (3, 16, 32, 64, 96, 128, 192, 256, 384, 512)
KERNELS = (1, 3, 3, 3, 5, 7)
MAX_WEIGHTS = 1_000_000


@dataclass(frozen=True)
class Layer:
    """A drawn conv layer: weight (out, in, k, k), calibration maps, stride."""

    seed: int
    W: np.ndarray
    X: np.ndarray
    stride: int

    @property
    def name(self) -> str:
        o, i, k, _ = self.W.shape
        n, _, hw, _ = self.X.shape
        return f"{o}x{i}x{k}x{k}/s{self.stride}/{n}x{hw}"


def _spectrum(rng: np.random.Generator, rows: int, cols: int, rate: float) -> np.ndarray:
    """A matrix with singular values ``rate^j + 0.01`` and random singular vectors."""
    k = min(rows, cols)
    U = np.linalg.qr(rng.standard_normal((rows, k)))[0]
    V = np.linalg.qr(rng.standard_normal((cols, k)))[0]
    return (U * (rate ** np.arange(k) + 0.01)) @ V.T


def draw(seed: int) -> Layer | None:
    """The layer of ``seed`` (None: the draw has more than :data:`MAX_WEIGHTS` weights)."""
    rng = np.random.default_rng(seed)
    o, i, k = int(rng.choice(OUTS)), int(rng.choice(INS)), int(rng.choice(KERNELS))
    if o * i * k * k > MAX_WEIGHTS:
        return None
    hw = int(rng.choice([7, 14, 28])) if k <= 3 else int(rng.choice([14, 28]))
    n = int(rng.choice([4, 8, 16]))
    W = _spectrum(rng, o, i * k * k, float(rng.uniform(0.9, 0.995))).reshape(o, i, k, k)
    mix = _spectrum(rng, i, i, 0.8) * np.sqrt(i)
    X = np.maximum(np.einsum("ij,njhw->nihw", mix, rng.standard_normal((n, i, hw, hw)),
                             optimize=True) + 0.3, 0.0)
    return Layer(seed, W, X, int(rng.choice([1, 1, 2])))


def _row(layer: Layer, method: str, kind: str, wall: float, cpu: float, unit: float,
         res: Any) -> tuple[str, float, bool]:
    """The table row, the time read against the target and whether it is over."""
    read = wall if speed.READ_ON["clock"] == "wall" else cpu
    target = speed.TARGET[kind]
    head = (f"{layer.seed:4d} {layer.name:24} {method:12} {kind:5} {wall:8.2f} {cpu:8.2f} "
            f"{read / unit:7.1f} {read / target:7.2f}")
    if res is None:
        return f"{head}  CAP (stopped at {cpu:.0f} CPU s)", read, True
    cal = res.calib_output_error
    over = read > target
    end = res.info.message[:90] if res.info is not None else ""
    return (f"{head} {res.weight_error:10.4f} {np.nan if cal is None else cal:10.4f}  "
            f"{'OVER' if over else '    '}  {end}", read, over)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0:40", help="seed range LO:HI (HI excluded)")
    parser.add_argument("--cap", type=float, default=60.0, help="CPU seconds per case")
    parser.add_argument("--methods", default=",".join(speed.CONV_METHODS),
                        help="comma-separated conv methods")
    parser.add_argument("--threads", choices=("1", "default"), default="1",
                        help="one BLAS thread (targets on CPU time) or the machine's "
                             "default threads (targets on wall time)")
    parser.add_argument("--out", default=str(RESULTS), help="results file")
    args = parser.parse_args()
    lo, hi = (int(v) for v in args.seeds.split(":"))
    methods = args.methods.split(",")
    speed.READ_ON["clock"] = "wall" if args.threads == "default" else "cpu"
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    times: dict[tuple[str, str], list[float]] = {}
    over: dict[tuple[str, str], list[tuple[float, str]]] = {}  # (time, layer)
    threads = (threadpool_limits(1) if args.threads == "1" else contextlib.nullcontext())
    with threads, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unit = speed.svd_unit(np.random.default_rng(0), time.perf_counter
                              if args.threads == "default" else time.process_time)
        emit(f"time unit (svd u): one 1024x1024 SVD = {unit:.3f} s "
             f"({speed.READ_ON['clock']}); seeds {lo}..{hi - 1}; targets: free "
             f"{speed.TARGET['free']} s, aware {speed.TARGET['aware']} s; cap {args.cap} "
             "CPU s")
        emit(f"{'seed':>4} {'layer (o x i x k x k/stride/maps)':24} {'method':12} "
             f"{'kind':5} {'wall s':>8} {'cpu s':>8} {'svd u':>7} {'/target':>7} "
             f"{'weight_err':>10} {'calib_err':>10}")
        for seed in range(lo, hi):
            layer = draw(seed)
            if layer is None:
                continue
            k = layer.W.shape[2]
            for method in methods:
                if method == "spatial_svd" and k == 1:
                    continue
                for kind in ("free", "aware"):
                    X = layer.X if kind == "aware" else None
                    wall, cpu, res = speed.timed(lambda: compress_conv(
                        layer.W, method, ratio=0.5, X=X, stride=layer.stride,
                        padding=k // 2, input_hw=layer.X.shape[2:]), args.cap)
                    line, read, is_over = _row(layer, method, kind, wall, cpu, unit, res)
                    emit(line)
                    times.setdefault((method, kind), []).append(read)
                    if is_over:
                        over.setdefault((method, kind), []).append(
                            (read, f"{layer.seed}:{layer.name}"))
        emit("")
        emit(f"{'method':12} {'kind':5} {'cases':>5} {'over':>5} {'median s':>9} "
             f"{'max s':>8}  slowest over target")
        for (method, kind), ts in sorted(times.items()):
            slow = sorted(over.get((method, kind), []), reverse=True)
            names = ", ".join(f"{name} {t:.1f}s" for t, name in slow[:4])
            emit(f"{method:12} {kind:5} {len(ts):5d} {len(slow):5d} "
                 f"{float(np.median(ts)):9.2f} {max(ts):8.2f}  {names}")
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
