"""Benchmark: structured signal and tensor-train data kinds against dense tensors.

Run as ``python benchmarks/bench_tensorize.py``. Three tables:

1. Hankel MTTKRP sessions (all modes) of a HankelTensor (FFT convolutions) against the
   DenseTensor of the same expanded tensor, interleaved repetition by repetition in this
   process; median times, their ratio, and the largest relative disagreement.
2. A third-order Hankel tensor of a signal of length 10**6 (3.7e16 entries): one MTTKRP
   session's time and peak memory (tracemalloc), then a rank-4 CPD fitted by Model.fit
   from a perturbed start, its time and error against the noise level.
3. A tensor train with 20 modes of size 10 and TT ranks 5 (1e20 entries): norm, CPD inner
   product and MTTKRP session times and peak memory.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

import sdf
from sdf.tensorize import hankelize
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
    A = [rng.standard_normal((I, R)) for _ in range(N)]
    print(f"   {float(T.size):.0e} entries (dense: {8.0 * T.size:.0e} bytes, impossible)")
    for label, f in [("norm", T.norm),
                     ("inner with a CPD", lambda: T.inner_cpd(A)),
                     ("MTTKRP session (all modes)", lambda: session_all(T, A))]:
        seconds, peak = peak_memory(f)
        print(f"   {label:<28} {1e3 * seconds:8.2f} ms, peak {peak:6.2f} MB traced")


def main() -> None:
    rng = np.random.default_rng(0)
    hankel_vs_dense(rng)
    long_signal(rng)
    tensor_train(rng)


if __name__ == "__main__":
    main()
