"""Wall time with the machine's default BLAS threads: one multi-threaded pool or two.

numpy and scipy from PyPI each bring an OpenBLAS with its own thread pool. sdf runs its
fits, drivers and compressions with scipy's pool on one thread (``sdf._blas``); this
script times the same calls in one process three ways, alternating, medians over
``--reps`` runs:

``one pool``   the default: numpy's pool as the machine sets it, the others on 1 thread
``two pools``  ``SDF_KEEP_BLAS_THREADS=1``: every pool on the machine's default count
``1 thread``   every pool on one thread (``threadpool_limits(1)``)

Cases: data-aware compression of a 256x256x3x3 conv (the four kron/CP methods; the
layers and calibration maps of ``bench_compress_speed.py``), of a 512x192x3x3 conv
(spatial SVD) and of a 1024x1024 linear layer; an engine Gauss-Newton CPD of 100^3 rank
10 from a random start and the ``cpd`` and ``lmlra`` drivers on 200^3 rank 20 / 100^3
multilinear rank 10, 1 % noise. Ratios below 1: the default is faster. Absolute times
depend on what else runs on the machine; the ratios are taken run by run.

Run: ``python benchmarks/bench_blas_pools.py [--reps N] [--quick]``; writes the table to
``benchmarks/results/bench_blas_pools.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import sdf
from sdf import algebra
from sdf.models import cpd, lmlra
from sdf.models.compress import compress_conv, compress_linear

from bench_compress_speed import conv_layer, linear_layer

RESULTS = Path(__file__).resolve().parent / "results" / "bench_blas_pools.txt"
MODES = ("one pool", "two pools", "1 thread")


@contextlib.contextmanager
def mode(name: str) -> Iterator[None]:
    """The BLAS set-up of one of ``MODES``."""
    if name == "1 thread":
        with threadpool_limits(1):
            yield
        return
    old = os.environ.get("SDF_KEEP_BLAS_THREADS")
    if name == "two pools":
        os.environ["SDF_KEEP_BLAS_THREADS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SDF_KEEP_BLAS_THREADS", None)
        else:
            os.environ["SDF_KEEP_BLAS_THREADS"] = old


def noisy_cpd(rng: np.random.Generator, size: int, rank: int) -> np.ndarray:
    T = algebra.cpd_to_tensor([rng.standard_normal((size, rank)) for _ in range(3)])
    E = rng.standard_normal(T.shape)
    return T + 0.01 * np.linalg.norm(T) / np.linalg.norm(E) * E


def noisy_tucker(rng: np.random.Generator, size: int, rank: int) -> np.ndarray:
    T = algebra.tucker_to_tensor([rng.standard_normal((size, rank)) for _ in range(3)],
                                 rng.standard_normal((rank,) * 3))
    E = rng.standard_normal(T.shape)
    return T + 0.01 * np.linalg.norm(T) / np.linalg.norm(E) * E


def cases(quick: bool) -> dict[str, Callable[[], Any]]:
    """Each case: a call to time."""
    rng = np.random.default_rng(0)
    rng.standard_normal((1024, 1024))  # the draws of bench_compress_speed's time unit
    W, X = conv_layer(rng, 256, 256, 16, 16)
    W_lin, X_lin = linear_layer(rng, 1024, 1024, 4096)
    W5, X5 = conv_layer(np.random.default_rng(1), 512, 192, 16, 16)
    out: dict[str, Callable[[], Any]] = {}
    methods = ("weight_svd", "tucker2") if quick else ("weight_svd", "spatial_svd",
                                                       "tucker2", "cp")
    for method in methods:
        out[f"conv256 aware {method}"] = lambda method=method: compress_conv(
            W, method, ratio=0.5, X=X, padding=1, input_hw=(16, 16))
    if not quick:
        out["conv512x192 aware spatial_svd"] = lambda: compress_conv(
            W5, "spatial_svd", ratio=0.5, X=X5, padding=1, input_hw=(16, 16))
        out["fc1024 aware svd"] = lambda: compress_linear(W_lin, ratio=0.5, X=X_lin)
    T100 = noisy_cpd(np.random.default_rng(3), 100, 10)
    start = [np.random.default_rng(4).standard_normal((100, 10)) for _ in range(3)]

    def engine() -> Any:
        model = sdf.Model(T=sdf.CPD(T100, [sdf.Variable(A) for A in start]))
        return model.fit(method="nls", max_iter=200)

    out["engine CPD 100^3 R=10"] = engine
    if not quick:
        T200 = noisy_cpd(np.random.default_rng(5), 200, 20)
        out["cpd driver 200^3 R=20"] = lambda: cpd(T200, 20, seed=0)
        Tl = noisy_tucker(np.random.default_rng(6), 100, 10)
        out["lmlra driver 100^3 (10,10,10)"] = lambda: lmlra(Tl, (10, 10, 10))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="runs per case and mode")
    parser.add_argument("--quick", action="store_true", help="fewer cases")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    pools = [f"{Path(i['filepath']).parent.name}/{Path(i['filepath']).name}: "
             f"{i['num_threads']} threads" for i in threadpool_info()
             if i["user_api"] == "blas"]
    lines = [f"BLAS pools at start: {'; '.join(pools)}; {os.cpu_count()} CPUs; "
             f"wall seconds, medians over {args.reps} runs per mode (modes alternate)",
             f"{'case':32}" + "".join(f"{m:>11}" for m in MODES)
             + f"{'one/two':>9}{'one/1thr':>9}"]
    print(lines[0], flush=True)
    for name, call in cases(args.quick).items():
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for rep in range(args.reps):
            for m in MODES if rep % 2 == 0 else MODES[::-1]:
                with mode(m):
                    t0 = time.perf_counter()
                    call()
                    times[m].append(time.perf_counter() - t0)
        med = {m: statistics.median(v) for m, v in times.items()}
        line = (f"{name:32}" + "".join(f"{med[m]:11.2f}" for m in MODES)
                + f"{med['one pool'] / med['two pools']:9.2f}"
                + f"{med['one pool'] / med['1 thread']:9.2f}")
        print(line, flush=True)
        lines.append(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
