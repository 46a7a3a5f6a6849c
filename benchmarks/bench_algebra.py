"""Benchmark: all-mode MTTKRP (dimension tree) against the naive per-mode loop.

Run as ``python benchmarks/bench_algebra.py``. Both variants run in this process on the
same data, interleaved repetition by repetition (so that load from other processes hits
both alike); the table reports median wall-clock times and their ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from sdf.algebra import khatri_rao, mttkrp_all, unfold

CASES = [((200, 200, 200), 20), ((100, 100, 100), 10)]
REPEATS = 15


def naive(T: np.ndarray, factors: list[np.ndarray]) -> list[np.ndarray]:
    """The reference: one unfolding copy and one Khatri-Rao product per mode."""
    return [unfold(T, n) @ khatri_rao(factors, skip=n) for n in range(T.ndim)]


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


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'shape':>16} {'R':>3} {'naive [ms]':>11} {'mttkrp_all [ms]':>16} {'ratio':>6}")
    for shape, rank in CASES:
        T = rng.standard_normal(shape)
        factors = [rng.standard_normal((s, rank)) for s in shape]
        fast, ref = mttkrp_all(T, factors), naive(T, factors)
        err = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(fast, ref))
        assert err < 1e-10, f"mttkrp_all disagrees with the naive loop (rel. err. {err:.1e})"
        med = interleaved_medians(
            {"naive": lambda: naive(T, factors), "fast": lambda: mttkrp_all(T, factors)},
            REPEATS,
        )
        print(
            f"{'x'.join(map(str, shape)):>16} {rank:>3} {1e3 * med['naive']:>11.2f} "
            f"{1e3 * med['fast']:>16.2f} {med['fast'] / med['naive']:>6.3f}"
        )


if __name__ == "__main__":
    main()
