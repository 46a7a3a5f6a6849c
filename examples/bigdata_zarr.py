"""Data larger than memory: a zarr store written chunk by chunk, then fitted lazily.

The script writes a rank-5 tensor plus 1 % Gaussian noise to a zarr store in a temporary
folder, one chunk at a time (the full tensor never exists in memory), opens the store
lazily and fits it with the ``cpd`` driver: a randomized MLSVD reads the store four
times and compresses it to a 5 x 5 x 5 core, the core is fitted in memory, and a few
Gauss-Newton iterations refine the factors on the store, each one pass over its chunks.
It prints progress, the stages with their times and errors, the peak resident memory
against the store's size, and writes ``bigdata_zarr.png`` (the fitted factors) next to
itself. Needs the dask extra: ``pip install "sdfusion[dask]"``.

Run from anywhere::

    python examples/bigdata_zarr.py                 # 400^3 float32: a 256 MB store
    python examples/bigdata_zarr.py --size 1500     # 13.5 GB: larger than most laptops
    python examples/bigdata_zarr.py --folder /data/scratch --keep

**On a cluster.** Nothing in the model changes: the chunk tasks go to whatever dask
scheduler is active. Start a scheduler and workers (``dask scheduler`` on one machine,
``dask worker tcp://HOST:8786`` on each of the others, or a ``dask_jobqueue`` /
``dask_kubernetes`` cluster), put the store where every worker can read it (a shared
file system, or object storage such as ``s3://bucket/cube.zarr`` with ``fsspec``) and
pass ``--scheduler tcp://HOST:8786``, which runs ``distributed.Client(address)`` before
the fit. ``--workers 2`` starts a ``LocalCluster`` with two worker processes on this
machine instead. Only the factors and per-chunk partial results travel between the
workers and this process.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

import sdf
from sdf import algebra
from sdf.models import cpd, fms

HERE = Path(__file__).resolve().parent


def resident_mb() -> float:
    """Current resident memory of this process, in MB (Linux; peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return peak_mb()


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_store(path: Path, size: int, chunk: int, rank: int, noise: float,
                seed: int) -> list[np.ndarray]:
    """Write ``[[A, B, C]] + noise`` to a zarr store chunk by chunk; return the factors.

    The noise has standard deviation ``noise * ||[[A, B, C]]|| / sqrt(size**3)``, so
    the best rank-``rank`` fit has a relative error of about ``noise``.
    """
    import zarr

    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((size, rank)) for _ in range(3)]
    norm = np.sqrt(np.sum(algebra.hadamard(algebra.gramians(factors))))
    sigma = noise * norm / np.sqrt(float(size) ** 3)
    store = zarr.open_array(str(path), mode="w", shape=(size,) * 3,
                            chunks=(chunk,) * 3, dtype="float32")
    starts = range(0, size, chunk)
    blocks = [(i, j, k) for i in starts for j in starts for k in starts]
    seeds = np.random.SeedSequence(seed).spawn(len(blocks))  # one noise stream per chunk
    for done, ((i, j, k), s) in enumerate(zip(blocks, seeds), start=1):
        box = tuple(slice(o, o + chunk) for o in (i, j, k))
        rows = [A[b] for A, b in zip(factors, box)]
        block = algebra.cpd_to_tensor(rows)
        block += sigma * np.random.default_rng(s).standard_normal(block.shape)
        store[box] = block.astype(np.float32)
        if done % max(1, len(blocks) // 5) == 0 or done == len(blocks):
            print(f"  wrote {done}/{len(blocks)} chunks, resident {resident_mb():.0f} MB",
                  flush=True)
    return factors


def connect(args: argparse.Namespace) -> Any:
    """A dask.distributed Client when asked for one (``--scheduler`` or ``--workers``)."""
    if args.scheduler is None and args.workers == 0:
        return None
    from distributed import Client, LocalCluster

    if args.scheduler is not None:
        return Client(args.scheduler)
    return Client(LocalCluster(n_workers=args.workers, threads_per_worker=1,
                               processes=True, dashboard_address=None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=400, help="size of every mode")
    parser.add_argument("--chunk", type=int, default=100, help="chunk size per mode")
    parser.add_argument("--rank", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.01, help="relative noise level")
    parser.add_argument("--folder", type=Path, default=None,
                        help="where to write the store (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    parser.add_argument("--scheduler", default=None, help="address of a dask scheduler")
    parser.add_argument("--workers", type=int, default=0,
                        help="start a LocalCluster with this many worker processes")
    args = parser.parse_args()

    import dask.array as da

    folder = Path(tempfile.mkdtemp(dir=args.folder))
    path = folder / "cube.zarr"
    client = connect(args)
    try:
        size_mb = 4 * args.size**3 / 2**20
        print(f"writing a {args.size}^3 float32 rank-{args.rank} tensor plus "
              f"{100 * args.noise:g} % noise in {args.chunk}^3 chunks to {path}")
        t0 = time.perf_counter()
        truth = write_store(path, args.size, args.chunk, args.rank, args.noise, seed=0)
        print(f"store: {path.name}, {size_mb:.0f} MB, written in "
              f"{time.perf_counter() - t0:.1f} s")
        print(f"resident memory before the fit: {resident_mb():.0f} MB"
              + ("" if client is None else f" (scheduler: {client.scheduler.address})"))

        data = da.from_zarr(str(path))  # lazy: nothing is read here
        t0 = time.perf_counter()
        tracemalloc.start()  # arrays allocated during the fit (numpy reports its own)
        dec = cpd(data, args.rank, seed=0, display=1)
        fit_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        seconds = time.perf_counter() - t0
    finally:
        if client is not None:
            client.close()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print("\nstages:")
    for stage in dec.stages:
        err = "" if np.isnan(stage.relerr) else f", relative error {100 * stage.relerr:.3f} %"
        print(f"  {stage.name:9s} {stage.detail}: {stage.iterations} iterations, "
              f"{stage.time:.1f} s{err}")
    print(f"fit of the store: {seconds:.1f} s, relative error {100 * dec.relerr:.3f} % "
          f"(noise level {100 * args.noise:g} %)")
    print(f"factor match score against the planted factors: {fms(dec.factors, truth):.5f}")
    print(f"peak resident memory: {peak_mb():.0f} MB for a {size_mb:.0f} MB store")
    print(f"peak of the arrays allocated during the fit: {fit_peak_mb:.0f} MB")
    out = HERE / "bigdata_zarr.png"
    figure(dec).savefig(out, dpi=100)
    print(f"figure written to {out}")


def figure(dec: Any) -> Any:
    from sdf.viz import plot_factors

    drawn = plot_factors(dec.factors)
    fig = drawn.figure if hasattr(drawn, "figure") else drawn
    fig.suptitle("CPD of a zarr store fitted chunk by chunk")
    return fig


if __name__ == "__main__":
    main()
