"""Time to compress layers of about 1 M weights, data-free and data-aware (run as a script).

Targets: any layer up to 1 M weights in under 1 s data-free and under 5 s data-aware; a
network of 10 such layers with one budget in under 30 s. Layers: a 256x256x3x3 conv
(590k weights; calibration maps (16, 256, 16, 16): 4096 im2col patches of 2304 values)
and a 1024x1024 linear layer (calibration inputs (4096, 1024)). Weights have decaying
spectra and the inputs are ReLU feature maps with correlated channels, as in trained
networks. A 512x192x3x3 conv (885k weights, calibration maps (16, 192, 16, 16)) checks a
wider, shallower layer. Every case runs at ``ratio=0.5``, by default on one BLAS thread
(the machine is shared).

The machine is shared and its load changes from run to run: wall time is printed, but
on one BLAS thread the targets are read against CPU time (what an unloaded core would
take), also given in units of a baseline measured in the same process: one SVD of a
1024x1024 matrix (``svd u``). ``--threads default`` keeps the machine's BLAS threads (what
a user gets; sdf runs its fits with one multi-threaded pool, see ``sdf._blas``) and reads
the targets, and the unit, against wall time: run it on an otherwise idle machine, with
``--reps`` above 1 (wall times of the same case here vary by 20 % from run to run; the
table gives medians). ``objective`` is the fitted objective (1 at ``W_hat = 0``;
data-free: the squared weight error).
The errors (weight error ``||W_hat - W|| / ||W||`` and calibration output error) are
printed beside the time; ``--before FILE`` adds the errors of an earlier run's table
(same cases, same data) and their ratios.

With CP among the methods, a table compresses a wide 16x200x3x3 conv whose calibration
maps give fewer patches (256) than values per patch (1800), data-aware (with
``--cp-engine`` also by the engine's Gauss-Newton, which takes minutes there).

A table compresses the 256x256x3x3 conv with 4x4 calibration maps (256 patches of 2304
values, a Gram of rank 256: a late layer of an image network with a small calibration
set), data-aware, by every conv method.

A table compresses layers of other shapes (:data:`SHAPES`: 1x1, 7x1, 7x7 and 5x5
kernels, and a 64x1024x3x3 conv whose patches hold 9216 values), data-aware, by every
conv method that applies.

A further table compresses the 32x16x3x3 conv2 of the digits CNN (the layer of the issue
that took 154 s data-aware) with its real calibration inputs, by the default solver and
by the engine-only path (``solver="engine"``), in the same process.

``--cp-engine`` adds, for CP, the
engine's Gauss-Newton fit (``CompressOptions(solver="engine")``, the path CP took before
the alternating fit) stopped by its callback at the cap, with the objective it reached.

Usage: ``python benchmarks/bench_compress_speed.py [--cap CPU_SECONDS] [--before FILE]
[--methods cp,svd,...] [--skip-network] [--skip-digits] [--skip-few-patches]
[--skip-shapes] [--cp-engine]
[--threads {1,default}] [--reps N] [--out FILE]``;
writes the table to ``benchmarks/results/bench_compress_speed.txt`` (or ``--out``).
``--methods`` keeps only the rows of those methods (``svd``: the linear layer).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

from sdf.models.compress import (CompressOptions, LayerSpec, Piece, _fit, compress_conv,
                                 compress_linear, compress_network, im2col, nets)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_compress_speed.txt"
CONV_METHODS = ("weight_svd", "spatial_svd", "channel_svd", "cp", "tucker2")
TARGET = {"free": 1.0, "aware": 5.0, "network": 30.0}
#: the clock the targets and the unit are read on: "cpu" (one BLAS thread) or "wall"
#: (``--threads default``)
READ_ON = {"clock": "cpu"}
#: runs per case (``--reps``): times are their medians
REPS = {"runs": 1}


class CaseTimeout(Exception):
    """A case ran past the time cap."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout


def _decaying(rng: np.random.Generator, rows: int, cols: int, power: float) -> np.ndarray:
    """A matrix with singular values ``k^-power`` (random singular vectors)."""
    k = min(rows, cols)
    U = np.linalg.qr(rng.standard_normal((rows, k)))[0]
    V = np.linalg.qr(rng.standard_normal((cols, k)))[0]
    return (U * np.arange(1, k + 1) ** -power) @ V.T


def conv_layer(rng: np.random.Generator, o: int, i: int, n: int, hw: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """A trained-like conv weight (o, i, 3, 3) and ReLU calibration maps (n, i, hw, hw)."""
    W = _decaying(rng, o, i * 9, 0.6).reshape(o, i, 3, 3)
    mix = _decaying(rng, i, i, 0.8) * np.sqrt(i)
    Z = rng.standard_normal((n, i, hw + 2, hw + 2))
    Z = (Z[:, :, :-2, :-2] + Z[:, :, 1:-1, 1:-1] + Z[:, :, 2:, 2:]) / 3  # spatial smoothing
    X = np.einsum("ij,njhw->nihw", mix, Z[:, :, :hw, :hw], optimize=True)
    return W, np.maximum(X + 0.3, 0.0)


def linear_layer(rng: np.random.Generator, o: int, i: int, n: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A trained-like linear weight (o, i) and ReLU calibration inputs (n, i)."""
    W = _decaying(rng, o, i, 0.6)
    X = rng.standard_normal((n, i)) @ (_decaying(rng, i, i, 0.8) * np.sqrt(i))
    return W, np.maximum(X + 0.3, 0.0)


def svd_unit(rng: np.random.Generator, clock: Callable[[], float] = time.process_time
             ) -> float:
    """Seconds (on ``clock``) of one SVD of a 1024x1024 matrix (median of 3): the unit."""
    A = rng.standard_normal((1024, 1024))
    times = []
    for _ in range(3):
        t0 = clock()
        np.linalg.svd(A, full_matrices=False)
        times.append(clock() - t0)
    return float(np.median(times))


def timed(fun: Callable[[], Any], cap: float) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds, result) of ``fun()``, medians over ``REPS["runs"]``
    runs (the result of the last); None past ``cap`` CPU seconds."""
    runs = [_timed_once(fun, cap) for _ in range(REPS["runs"])]
    if any(out is None for _, _, out in runs):
        return max(w for w, _, _ in runs), max(c for _, c, _ in runs), None
    return (float(np.median([w for w, _, _ in runs])), float(np.median([c for _, c, _ in runs])),
            runs[-1][2])


def _timed_once(fun: Callable[[], Any], cap: float) -> tuple[float, float, Any]:
    signal.signal(signal.SIGPROF, _on_alarm)
    signal.setitimer(signal.ITIMER_PROF, cap)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        out = fun()
    except CaseTimeout:
        out = None
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    return time.perf_counter() - t0, time.process_time() - c0, out


class Objective:
    """The fitted objective ``w_w ||E||^2 + w_r ||P_c E^T||^2`` of a layer (1 at W_hat = 0)."""

    def __init__(self, W: np.ndarray, rows: np.ndarray | None, center: bool,
                 balance: float = 0.9) -> None:
        self.Wm = W.reshape(W.shape[0], -1)
        self.calib = None if rows is None else _fit.Calibration.from_rows(
            rows, CompressOptions().max_calib_rows, CompressOptions().seed, center=center)
        self.w_w, self.w_r = _fit.term_weights(self.Wm, self.calib,
                                               balance if rows is not None else 0.0)

    def __call__(self, res: Any) -> float:
        E = res.weight_approx.reshape(self.Wm.shape) - self.Wm
        value = self.w_w * float(np.vdot(E, E))
        if self.calib is not None:
            value += self.w_r * self.calib.response_norm2(E)
        return value


def _read_before(path: str | None) -> dict[str, tuple[float, ...]]:
    """Errors of an earlier table: case -> (weight error, calibration error, objective)."""
    if path is None:
        return {}
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 10 and parts[0] in ("free", "aware", "digits", "wide", "few", "shape"):
            try:
                out[" ".join(parts[:3])] = tuple(float(v) for v in parts[7:10])
            except ValueError:
                continue
    return out


def _row(kind: str, layer: str, method: str, wall: float, cpu: float, unit: float,
         res: Any, objective: Objective, before: dict[str, tuple[float, ...]]) -> str:
    target = TARGET.get("aware" if kind in ("digits", "wide", "few", "shape") else kind)
    read = wall if READ_ON["clock"] == "wall" else cpu
    t_ratio = "" if target is None else f"{read / target:.2f}"
    head = (f"{kind:7} {layer:14} {method:12} {wall:8.2f} {cpu:8.2f} {read / unit:7.1f} "
            f"{t_ratio:>7}")
    if res is None:
        return f"{head}  (stopped at the {cpu:.0f} CPU s cap)"
    cal = res.calib_output_error
    now = (res.weight_error, np.nan if cal is None else cal, objective(res))
    line = f"{head} {now[0]:11.5f} {now[1]:11.5f} {now[2]:11.6f}"
    ref = before.get(f"{kind} {layer} {method}")
    if ref is not None:
        line += "  | " + " ".join(f"{b:.5g}" for b in ref) + "  ratio " + " ".join(
            "nan" if b != b or b == 0 else f"{a / b:.4f}" for a, b in zip(now, ref))
    return line


HEADER = (f"{'kind':7} {'layer':14} {'method':12} {'wall s':>8} {'cpu s':>8} {'svd u':>7} "
          f"{'/target':>7} {'weight_err':>11} {'calib_err':>11} {'objective':>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=120.0, help="CPU seconds per case")
    parser.add_argument("--before", default=None, help="an earlier results file")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-network", action="store_true")
    parser.add_argument("--skip-few-patches", action="store_true")
    parser.add_argument("--skip-shapes", action="store_true")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods whose rows run (default: all)")
    parser.add_argument("--cp-engine", action="store_true",
                        help="add the engine's capped Gauss-Newton CP rows")
    parser.add_argument("--threads", choices=("1", "default"), default="1",
                        help="one BLAS thread (targets on CPU time) or the machine's "
                             "default threads (targets on wall time)")
    parser.add_argument("--reps", type=int, default=1,
                        help="runs per case; times are their medians")
    parser.add_argument("--out", default=str(RESULTS), help="results file")
    args = parser.parse_args()
    READ_ON["clock"] = "wall" if args.threads == "default" else "cpu"
    REPS["runs"] = max(args.reps, 1)
    methods = set(args.methods.split(",")) if args.methods else {*CONV_METHODS, "svd"}
    before = _read_before(args.before)
    rng = np.random.default_rng(0)
    lines = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    threads = (threadpool_limits(1) if args.threads == "1" else contextlib.nullcontext())
    with threads:
        unit = svd_unit(rng, time.perf_counter if args.threads == "default"
                        else time.process_time)
        W_conv, X_conv = conv_layer(rng, 256, 256, 16, 16)
        W_lin, X_lin = linear_layer(rng, 1024, 1024, 4096)
        convs = {"conv256": (W_conv, X_conv),
                 "conv512x192": conv_layer(np.random.default_rng(1), 512, 192, 16, 16)}
        clock = ("s CPU, 1 BLAS thread" if args.threads == "1"
                 else "s wall, the machine's default BLAS threads")
        emit(f"time unit (svd u): one 1024x1024 SVD = {unit:.3f} {clock}; medians over "
             f"{REPS['runs']} run(s) per case; "
             f"targets ({clock.split(',')[0]}): free {TARGET['free']}, aware "
             f"{TARGET['aware']}, network {TARGET['network']}")
        emit(HEADER + ("  | before: weight calib objective, ratios now/before" if before
                       else ""))
        for kind in ("free", "aware"):
            aware = kind == "aware"
            for layer, (W, X_maps) in convs.items():
                X = X_maps if aware else None
                rows = None if X is None else im2col(X, (3, 3), (1, 1), (1, 1), (1, 1))
                obj = Objective(W, rows, center=False)
                for method in (m for m in CONV_METHODS if m in methods):
                    wall, cpu, res = timed(lambda: compress_conv(
                        W, method, ratio=0.5, X=X, padding=1, input_hw=(16, 16)), args.cap)
                    emit(_row(kind, layer, method, wall, cpu, unit, res, obj, before))
                if args.cp_engine and "cp" in methods:
                    wall, cpu, res = cp_engine_capped(W, X, args.cap)
                    emit(_row(kind, layer, "cp/engine", wall, cpu, unit, res, obj, before))
            if "svd" in methods:
                X = X_lin if aware else None
                obj = Objective(W_lin, X, center=False)
                wall, cpu, res = timed(lambda: compress_linear(W_lin, ratio=0.5, X=X),
                                       args.cap)
                emit(_row(kind, "fc1024", "svd", wall, cpu, unit, res, obj, before))
        for kind in ("free", "aware") if not args.skip_network else ():
            specs = {}
            for k in range(10):
                if k % 2:
                    W, X = conv_layer(rng, 256, 256, 16, 16)
                    specs[f"conv{k}"] = LayerSpec(Piece("conv2d", W, padding=1),
                                                  X=X if kind == "aware" else None,
                                                  input_hw=(16, 16))
                else:
                    W, X = linear_layer(rng, 1024, 1024, 4096)
                    specs[f"fc{k}"] = LayerSpec(Piece("linear", W),
                                                X=X if kind == "aware" else None)
            wall, cpu, res = timed(lambda: compress_network(specs, 0.5), 10 * args.cap)
            read = wall if READ_ON["clock"] == "wall" else cpu
            ok = "(stopped at the cap)" if res is None else (
                f"params {res.params_after / res.params_before:.3f} of {res.params_before}")
            emit(f"network 10-layers-{kind:5}  {'auto':12} {wall:8.2f} {cpu:8.2f} "
                 f"{read / unit:7.1f} {read / TARGET['network']:7.2f} {ok}")
        if "cp" in methods:
            wide_table(emit, unit, args.cap, before, args.cp_engine)
        if not args.skip_few_patches:
            few_patches_table(emit, unit, args.cap, before, methods)
        if not args.skip_shapes:
            shapes_table(emit, unit, args.cap, before, methods)
        if not args.skip_digits:
            digits_table(emit, unit, args.cap, before, methods)
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written to {out}")


def few_patches_table(emit: Callable[[str], None], unit: float, cap: float,
                      before: dict[str, tuple[float, ...]], methods: set[str]) -> None:
    """A deep layer: the 256x256x3x3 conv with 4x4 calibration maps (16 of them: 256
    patches of 2304 values, a calibration Gram of rank 256, as late layers of image
    networks with a small calibration set give), data-aware, every conv method."""
    W, X = conv_layer(np.random.default_rng(7), 256, 256, 16, 4)
    obj = Objective(W, im2col(X, (3, 3), (1, 1), (1, 1), (1, 1)), center=False)
    emit("deep layer, few patches (256x256x3x3, 4x4 maps: 256 patches of 2304 values):")
    for method in (m for m in CONV_METHODS if m in methods):
        wall, cpu, res = timed(lambda: compress_conv(W, method, ratio=0.5, X=X, padding=1,
                                                     input_hw=(4, 4)), cap)
        emit(_row("few", "conv256/4x4", method, wall, cpu, unit, res, obj, before))


#: Other kernel shapes, each at most 1 M weights (out, in, kh, kw), with 16 ReLU maps of
#: 16x16: pointwise convs (the kron fits are then closed forms), a column kernel, large
#: kernels (7x7, 5x5) and a wide input side (64 outputs, 9216 values per patch).
SHAPES = ((512, 512, 1, 1), (1024, 256, 1, 1), (128, 64, 7, 1), (64, 64, 7, 7),
          (128, 128, 5, 5), (64, 1024, 3, 3))


def shapes_table(emit: Callable[[str], None], unit: float, cap: float,
                 before: dict[str, tuple[float, ...]], methods: set[str]) -> None:
    """The layers of :data:`SHAPES`, data-aware, every conv method that applies (the
    spatial SVD needs ``kh > 1``)."""
    emit("other shapes, data-aware (16 maps of 16x16):")
    for k, (o, i, kh, kw) in enumerate(SHAPES):
        rng = np.random.default_rng(20 + k)
        W = _decaying(rng, o, i * kh * kw, 0.6).reshape(o, i, kh, kw)
        mix = _decaying(rng, i, i, 0.8) * np.sqrt(i)
        X = np.maximum(np.einsum("ij,njhw->nihw", mix, rng.standard_normal((16, i, 16, 16)),
                                 optimize=True) + 0.3, 0.0)
        pad = (kh // 2, kw // 2)
        obj = Objective(W, im2col(X, (kh, kw), (1, 1), pad, (1, 1)), center=False)
        for method in (m for m in CONV_METHODS if m in methods):
            if method == "spatial_svd" and kh == 1:
                continue
            wall, cpu, res = timed(lambda: compress_conv(W, method, ratio=0.5, X=X,
                                                         padding=pad, input_hw=(16, 16)), cap)
            emit(_row("shape", f"{o}x{i}x{kh}x{kw}", method, wall, cpu, unit, res, obj,
                      before))


def cp_engine_capped(W: np.ndarray, X: np.ndarray | None, cap: float
                     ) -> tuple[float, float, Any]:
    """The engine's CP (Gauss-Newton from a random start) stopped by its callback once
    ``cap`` CPU seconds have passed: (wall, CPU, the layer it returned)."""
    c0 = time.process_time()

    def stop(info: Any) -> bool:
        return time.process_time() - c0 > cap

    opts = CompressOptions(solver="engine", engine_options={"callback": stop})
    return _timed_once(lambda: compress_conv(W, "cp", ratio=0.5, X=X, padding=1,
                                             input_hw=(16, 16), options=opts), 2 * cap)


def wide_table(emit: Callable[[str], None], unit: float, cap: float,
               before: dict[str, tuple[float, ...]], engine: bool) -> None:
    """A wide conv (16x200x3x3) with fewer calibration patches than values per patch
    (4 ReLU maps 200x8x8: 256 patches of 1800 values, a Gram of rank 256): data-aware
    CP at ratio 0.5 (rank 64); with ``engine``, also the engine's Gauss-Newton fit."""
    rng = np.random.default_rng(5)
    W = _decaying(rng, 16, 200 * 9, 0.6).reshape(16, 200, 3, 3)
    X = np.maximum(rng.standard_normal((4, 200, 8, 8)) + 0.3, 0.0)
    obj = Objective(W, im2col(X, (3, 3), (1, 1), (1, 1), (1, 1)), center=False)
    emit("wide layer, few patches (16x200x3x3, 256 patches of 1800 values):")
    solvers = ("auto", "engine") if engine else ("auto",)
    for solver in solvers:
        opts = CompressOptions(solver=solver)
        wall, cpu, res = timed(lambda: compress_conv(W, "cp", ratio=0.5, X=X, padding=1,
                                                     input_hw=(8, 8), options=opts), cap)
        emit(_row("wide", f"conv16x200/{solver}", "cp", wall, cpu, unit, res, obj, before))


def digits_conv2() -> tuple[Piece, np.ndarray, dict[str, Any]]:
    """The digits CNN's conv2 (trained once, cached), its calibration inputs and its
    geometry (``stride``, ``padding``, ``dilation``)."""
    digits = nets.load_digits_split(seed=0)
    cache = os.path.join(tempfile.gettempdir(), "sdfusion-compress-cache")
    cnn = nets.cached_net("cnn-digits-v1", lambda: nets.train_cnn_digits(digits), cache)
    p = cnn.layers["conv2"]
    X = cnn.layer_inputs(digits.X_calib)["conv2"]
    return p, X, dict(stride=p.stride, padding=p.padding, dilation=p.dilation)


def digits_table(emit: Callable[[str], None], unit: float, cap: float,
                 before: dict[str, tuple[float, ...]], methods: set[str]) -> None:
    """The digits CNN's conv2 (32x16x3x3), data-aware, default solver and engine only."""
    p, X, geo = digits_conv2()
    obj = Objective(p.weight, im2col(X, p.kernel_size, p.stride, p.padding, p.dilation),
                    center=True)
    for solver in ("auto", "engine"):
        for method in (m for m in ("weight_svd", "spatial_svd", "cp", "tucker2")
                       if m in methods):
            opts = CompressOptions(solver=solver)
            wall, cpu, res = timed(lambda: compress_conv(p.weight, method, ratio=0.5, X=X,
                                                         bias=p.bias, options=opts, **geo), cap)
            emit(_row("digits", f"conv2/{solver}", method, wall, cpu, unit, res, obj, before))


if __name__ == "__main__":
    main()
