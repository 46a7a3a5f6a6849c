"""Dask data against numpy data in the same process: same iterates, time ratios.

1. A CPD of a ``size^3`` rank-``rank`` tensor plus 1 % noise (default 200^3, rank 10)
   held in numpy and as a dask array in ``chunk^3`` chunks (default 50^3), fitted from
   the same start for a fixed number of Gauss-Newton iterations (default 3: beyond the
   noise level, steps are decided by rounding and either run may take other, equally
   good ones): the largest relative difference of the final factors and the time ratio
   dask (threaded) / numpy.
2. The same fit of the data stored in zarr (read by the workers, not shipped in the
   graph) on a ``LocalCluster`` with 2 worker processes against the threaded scheduler:
   the difference of the factors and the time ratio cluster / threaded.
3. The ``cpd`` driver on the dask array (randomized MLSVD, core fit, refinement) against
   the driver on the numpy array: relative errors and the time ratio.

Run: ``python benchmarks/bench_dask.py [--size 200 --chunk 50 --rank 10 --iterations 3]``;
the table goes to ``benchmarks/results/bench_dask.txt``.
The memory figure for a store larger than memory comes from
``examples/bigdata_zarr.py --size 1500`` (see its report).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import sdf
from sdf import algebra
from sdf.models import cpd


def fit(data: object, start: list[np.ndarray], iterations: int) -> tuple[sdf.Result, float]:
    names = [f"x{n}" for n in range(len(start))]
    variables = [sdf.Variable(s.copy(), name=nm) for s, nm in zip(start, names)]
    t0 = time.perf_counter()
    res = sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=iterations, tol_fun=0, tol_x=0)
    return res, time.perf_counter() - t0


def reldiff(a: sdf.Result, b: sdf.Result) -> float:
    return max(float(np.abs(a.variables[k] - b.variables[k]).max()
                     / np.abs(a.variables[k]).max()) for k in a.variables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    A = [rng.standard_normal((args.size, args.rank)) for _ in range(3)]
    T = algebra.cpd_to_tensor(A)
    T += 0.01 * np.linalg.norm(T) / np.sqrt(T.size) * rng.standard_normal(T.shape)
    x = da.from_array(T, chunks=args.chunk)
    start = [M + 0.2 * rng.standard_normal(M.shape) for M in A]

    res_np, t_np = fit(T, start, args.iterations)
    with dask.config.set(scheduler="threads"):
        res_th, t_th = fit(x, start, args.iterations)
    lines = [f"{args.size}^3 rank {args.rank} in {args.chunk}^3 chunks, "
             f"{args.iterations} GN iterations",
             f"  numpy {t_np:.2f} s, dask threaded {t_th:.2f} s: ratio {t_th / t_np:.2f}; "
             f"max rel. difference of the factors {reldiff(res_np, res_th):.1e}"]

    with tempfile.TemporaryDirectory() as folder:
        da.to_zarr(x, f"{folder}/cube.zarr")
        stored = da.from_zarr(f"{folder}/cube.zarr")
        with dask.config.set(scheduler="threads"):
            res_zt, t_zt = fit(stored, start, args.iterations)
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        with Client(cluster):
            fit(stored, start, 1)  # warm the workers up (imports)
            res_cl, t_cl = fit(stored, start, args.iterations)
        cluster.close()
    lines.append(f"  zarr store: threaded {t_zt:.2f} s, LocalCluster (2 processes) "
                 f"{t_cl:.2f} s: ratio {t_cl / t_zt:.2f}; max rel. difference "
                 f"{reldiff(res_zt, res_cl):.1e}")

    t0 = time.perf_counter()
    dec_np = cpd(T, args.rank, seed=0)
    t_dnp = time.perf_counter() - t0
    t0 = time.perf_counter()
    dec_da = cpd(x, args.rank, seed=0)
    t_dda = time.perf_counter() - t0
    lines.append(f"  cpd driver: numpy {t_dnp:.2f} s (relerr {dec_np.relerr:.5f}), dask "
                 f"{t_dda:.2f} s (relerr {dec_da.relerr:.5f}): ratio {t_dda / t_dnp:.2f}")
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).resolve().parent / "results" / "bench_dask.txt"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
