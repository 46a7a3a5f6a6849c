"""Benchmark: structured signal and tensor-train data kinds against dense tensors.

Run as ``python benchmarks/bench_tensorize.py`` (writes
``benchmarks/results/bench_tensorize.txt``). Six tables:

1. Hankel MTTKRP sessions (all modes) of a HankelTensor (FFT convolutions) against the
   DenseTensor of the same expanded tensor, interleaved repetition by repetition in this
   process; median times, their ratio, and the largest relative disagreement.
2. A third-order Hankel tensor of a signal of length 10**6 (3.7e16 entries): one MTTKRP
   session's time and peak memory (tracemalloc), then a rank-4 CPD fitted by Model.fit
   from a perturbed start, its time and error against the noise level.
3. A tensor train with 20 modes of size 10 and TT ranks 5 (1e20 entries): norm, CPD inner
   product, MTTKRP session and inner product with another tensor train, times and peak
   memory, with their ratio to the norm's time (the baseline: one pass over the cores).
4. Overlapping segmentation (windows overlapping 4 times, read as strided blocks, and
   100 times, through FFTs) against the dense windows: MTTKRP session times, ratio and
   agreement.
5. The fourth-order cumulant held as observations (Cumulant4Tensor) against the dense
   cumulant: MTTKRP session times, ratio, agreement, and the dense tensor's memory.
6. A third-order Loewner tensor (HigherOrderLoewnerTensor) against its dense expansion:
   MTTKRP session times, ratio and agreement.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

import sdf
from sdf.statistics import cum4_tensor
from sdf.tensorize import hankelize, loewnerize, segmentize
from sdf.tensors import DenseTensor, HankelTensor, TTTensor

HANKEL_CASES = [(300, 3, 4), (600, 3, 4), (2001, 2, 10)]  # (signal length, order, rank)
REPEATS = 7


def interleaved_medians(funcs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per function, the functions alternating within each repetition."""
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for f in funcs.values():  # warm-up
        f()
    for _ in range(repeats):
        for name, f in funcs.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def peak_memory(f: Callable[[], object]) -> tuple[float, float]:
    """(seconds, peak MB traced) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    f()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak


def session_all(T: sdf.tensors.Tensor, factors: list[np.ndarray]) -> list[np.ndarray]:
    s = T.mttkrp_session(factors)
    s.inner()
    return s.all()


def hankel_vs_dense(rng: np.random.Generator) -> None:
    print("1. Hankel MTTKRP session, structured vs dense")
    print(f"{'L':>6} {'K':>2} {'R':>3} {'shape':>16} {'dense [ms]':>11} "
          f"{'hankel [ms]':>12} {'ratio':>7} {'max rel diff':>13}")
    for L, K, R in HANKEL_CASES:
        x = rng.standard_normal(L)
        H = hankelize(x, K, full=False)
        D = DenseTensor(H.to_dense())
        A = [rng.standard_normal((I, R)) for I in H.shape]
        got, ref = session_all(H, A), session_all(D, A)
        diff = max(float(np.abs(g - r).max() / np.abs(r).max()) for g, r in zip(got, ref))
        med = interleaved_medians({"dense": lambda: session_all(D, A),
                                   "hankel": lambda: session_all(H, A)}, REPEATS)
        print(f"{L:>6} {K:>2} {R:>3} {'x'.join(map(str, H.shape)):>16} "
              f"{1e3 * med['dense']:>11.2f} {1e3 * med['hankel']:>12.3f} "
              f"{med['hankel'] / med['dense']:>7.4f} {diff:>13.1e}")


def long_signal(rng: np.random.Generator) -> None:
    L, noise = 10**6, 1e-2
    print(f"\n2. Hankel tensor of a signal of length {L}, order 3, rank-4 CPD")
    poles = np.array([np.exp(-1e-6), np.exp(-4e-6), -np.exp(-2e-6), -np.exp(-5e-6)])
    amplitudes = np.array([1.0, -1.0, 0.8, 1.2])
    t = np.arange(L)
    clean = (amplitudes * poles ** t[:, None]).sum(axis=1)
    x = clean + noise * rng.standard_normal(L)
    H = hankelize(x, 3)
    assert isinstance(H, HankelTensor)
    print(f"   shape {H.shape}, {H.size:.2e} entries (dense: {8 * H.size:.1e} bytes)")
    truth = [poles ** np.arange(I)[:, None] for I in H.shape]
    truth[0] = truth[0] * amplitudes
    seconds, peak = peak_memory(lambda: session_all(H, truth))
    print(f"   one MTTKRP session (inner + 3 modes, R = 4): {seconds:.3f} s, "
          f"peak {peak:.0f} MB traced (signal {8 * L / 2**20:.0f} MB)")
    noise_level = HankelTensor(x - clean, H.sizes).norm() / H.norm()
    start = [V * (1 + 0.02 * rng.standard_normal(V.shape)) for V in truth]
    variables = [sdf.Variable(s, name=k) for s, k in zip(start, "abc")]
    begin = time.perf_counter()
    result = sdf.Model(h=sdf.CPD(H, variables)).fit(max_iter=50)
    seconds = time.perf_counter() - begin
    found = np.sort([c[:-1] @ c[1:] / (c[:-1] @ c[:-1]) for c in result.variables["a"].T])
    print(f"   CPD fit: {seconds:.1f} s, {result.iterations} iterations, relerr "
          f"{result.relerr['h']:.3e} (noise level {noise_level:.3e}), stop: {result.message}")
    print(f"   poles 1 - |z|: found {np.array2string(1 - np.abs(found), precision=3)}, "
          f"true {np.array2string(np.sort(1 - np.abs(poles)), precision=3)}")


def tensor_train(rng: np.random.Generator) -> None:
    N, I, r, R = 20, 10, 5, 4
    print(f"\n3. Tensor train, {N} modes of size {I}, TT ranks {r}, CPD rank {R}")
    ranks = [1] + [r] * (N - 1) + [1]
    T = TTTensor([rng.standard_normal((ranks[k], I, ranks[k + 1])) / np.sqrt(I * r)
                  for k in range(N)])
    S = TTTensor([rng.standard_normal((ranks[k], I, ranks[k + 1])) / np.sqrt(I * r)
                  for k in range(N)])
    A = [rng.standard_normal((I, R)) for _ in range(N)]
    print(f"   {float(T.size):.0e} entries (dense: {8.0 * T.size:.0e} bytes, impossible)")
    cases = [("norm (baseline)", lambda: T._norm_squared()),  # uncached
             ("inner with a CPD (session)", lambda: T.mttkrp_session(A).inner()),
             ("MTTKRP session (all modes)", lambda: session_all(T, A)),
             ("inner with a TT (ranks 5)", lambda: T.inner_tt(S))]
    med = interleaved_medians({label: f for label, f in cases}, REPEATS)
    base = med["norm (baseline)"]
    print(f"   {'operation':<28} {'median [ms]':>11} {'ratio':>7} {'peak traced':>12}")
    for label, f in cases:
        _, peak = peak_memory(f)
        print(f"   {label:<28} {1e3 * med[label]:>11.2f} {med[label] / base:>7.2f} "
              f"{peak:>9.2f} MB")


def compare(label: str, structured: sdf.tensors.Tensor, dense: DenseTensor,
            factors: list[np.ndarray]) -> None:
    """One table row: dense vs structured MTTKRP session, ratio and agreement."""
    got, ref = session_all(structured, factors), session_all(dense, factors)
    diff = max(float(np.abs(g - r).max() / np.abs(r).max()) for g, r in zip(got, ref))
    med = interleaved_medians({"dense": lambda: session_all(dense, factors),
                               "structured": lambda: session_all(structured, factors)}, REPEATS)
    print(f"   {label:<34} {1e3 * med['dense']:>10.2f} {1e3 * med['structured']:>11.2f} "
          f"{med['structured'] / med['dense']:>7.3f} {diff:>9.1e}")


def header() -> None:
    print(f"   {'case':<34} {'dense [ms]':>10} {'struct [ms]':>11} {'ratio':>7} {'max rel':>9}")


def overlapping_segments(rng: np.random.Generator) -> None:
    print("\n4. Overlapping segmentation, MTTKRP session, rank 4")
    header()
    for L, length, shift in [(20000, 400, 100), (80000, 2000, 500), (20000, 2000, 20)]:
        x = rng.standard_normal(L)
        T = segmentize(x, length, shift=shift, full=False)
        D = DenseTensor(T.to_dense())
        A = [rng.standard_normal((n, 4)) for n in T.shape]
        compare(f"L={L}, {T.shape[0]}x{T.shape[1]}, shift {shift}", T, D, A)


def cumulant(rng: np.random.Generator) -> None:
    print("\n5. Fourth-order cumulant: observations (structured) vs dense, MTTKRP session, "
          "rank 4")
    header()
    for n, I in [(20000, 10), (20000, 40)]:
        X = rng.laplace(size=(n, I))
        T = cum4_tensor(X)
        D = DenseTensor(T.to_dense())
        A = [rng.standard_normal((I, 4)) for _ in range(4)]
        compare(f"n={n}, I={I} (dense {8 * I ** 4 / 2**20:.1f} MB)", T, D, A)


def loewner_order3(rng: np.random.Generator) -> None:
    print("\n6. Third-order Loewner tensor, MTTKRP session, rank 4")
    header()
    for L in [150, 450]:
        t = np.linspace(0.0, 1.0, L)
        f = 1.0 / (t - 1.5) + 0.5 / (t + 0.7)
        T = loewnerize(f, t, order=3, full=False)
        D = DenseTensor(T.to_dense())
        A = [rng.standard_normal((n, 4)) for n in T.shape]
        compare(f"L={L}, shape {'x'.join(map(str, T.shape))}", T, D, A)


class _Tee(io.StringIO):
    """Standard output that is also kept, for the results file."""

    def write(self, text: str) -> int:
        sys.__stdout__.write(text)
        sys.__stdout__.flush()
        return super().write(text)


def main() -> None:
    rng = np.random.default_rng(0)
    tee = _Tee()
    with redirect_stdout(tee):
        hankel_vs_dense(rng)
        long_signal(rng)
        tensor_train(rng)
        overlapping_segments(rng)
        cumulant(rng)
        loewner_order3(rng)
    out = Path(__file__).parent / "results" / "bench_tensorize.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(tee.getvalue())


if __name__ == "__main__":
    main()
