"""Harmonic retrieval: the poles and amplitudes of a noisy sum of damped exponentials,
from a CPD of its third-order Hankel tensor, which is never formed.

A signal ``x[t] = sum_r c_r z_r**t`` gives a Hankel tensor ``H[i, j, k] = x[i + j + k]``
of rank R whose factor columns are the Vandermonde vectors ``(1, z_r, z_r**2, ...)``: a
CPD separates the exponentials, and each column's shift invariance gives its pole. With
3000 samples the tensor has 1e9 entries; :func:`sdf.tensorize.hankelize` returns it as a
HankelTensor whose products with the factors are FFT convolutions.

Run from anywhere: ``python examples/harmonic_retrieval.py``; writes
``harmonic_retrieval.png`` next to this script and prints a short report.
"""

from pathlib import Path

import numpy as np

import sdf.models
from sdf.tensorize import dehankelize, hankelize
from sdf.tensors import CPDTensor, HankelTensor

HERE = Path(__file__).resolve().parent
POLES = np.array([0.998, 0.993, -0.996])
AMPLITUDES = np.array([1.0, -2.0, 1.5])
LENGTH, NOISE = 3000, 0.05


def pole_of(column: np.ndarray) -> float:
    """Least-squares ratio of a Vandermonde column's shifted halves: a[1:] = z a[:-1]."""
    return float(column[:-1] @ column[1:] / (column[:-1] @ column[:-1]))


def main() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(LENGTH)
    clean = (AMPLITUDES * POLES ** t[:, None]).sum(axis=1)
    x = clean + NOISE * rng.standard_normal(LENGTH)

    H = hankelize(x, 3)  # 1001 x 1001 x 1000: structured, never expanded
    print(f"Hankel tensor: {type(H).__name__}, shape {H.shape}, {H.size:.1e} entries")
    dec = sdf.models.cpd(H, rank=3, seed=1)
    noise_level = HankelTensor(x - clean, H.sizes).norm() / H.norm()
    print(f"CPD: {dec.result.iterations} iterations, relative error {100 * dec.relerr:.2f} % "
          f"(noise level {100 * noise_level:.2f} %)")

    found = np.array([pole_of(c) for c in dec.factors[0].T])
    vandermonde = found[None, :] ** t[:, None]
    amplitudes = np.linalg.lstsq(vandermonde, x, rcond=None)[0]
    order = np.argsort(found)
    truth = np.argsort(POLES)
    print("pole (true)   pole (found)   amplitude (true)   amplitude (found)")
    for r, s in zip(truth, order):
        print(f"{POLES[r]:>11.4f} {found[s]:>14.5f} {AMPLITUDES[r]:>18.3f} "
              f"{amplitudes[s]:>19.3f}")
    pole_error = np.abs(np.sort(found) - np.sort(POLES)).max()
    print(f"largest pole error: {pole_error:.1e}")

    denoised = dehankelize(CPDTensor(dec.factors), 3)  # anti-diagonal means, factored
    print(f"denoised signal error: {np.linalg.norm(denoised - clean) / np.linalg.norm(clean):.3f}"
          f" (noisy: {np.linalg.norm(x - clean) / np.linalg.norm(clean):.3f})")
    out = HERE / "harmonic_retrieval.png"
    _figure(t, x, clean, denoised, found).savefig(out, dpi=110)
    print(f"figure written to {out}")


def _figure(t, x, clean, denoised, found):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    ax1.plot(t, x, lw=0.5, color="0.6", label="noisy signal")
    ax1.plot(t, clean, lw=1.5, color="k", label="clean")
    ax1.plot(t, denoised, lw=1.0, ls="--", color="C3", label="from the CPD")
    ax1.set(xlim=(0, 60), xlabel="sample", title="signal (first 60 samples)")
    ax1.legend()
    true_sorted, found_sorted = np.sort(POLES), np.sort(found)
    ax2.plot(true_sorted, 1 - np.abs(true_sorted), "ko", ms=10, mfc="none", label="true")
    ax2.plot(found_sorted, 1 - np.abs(found_sorted), "C3x", ms=9, label="from the CPD")
    ax2.set(xlim=(-1.05, 1.05), yscale="log", xlabel="pole z", ylabel="damping 1 - |z|",
            title="poles")
    ax2.legend()
    fig.suptitle("Harmonic retrieval by a CPD of a 3000-sample Hankel tensor")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
