"""Blind source separation: four non-Gaussian sources recovered from five mixtures, by a
symmetric CPD of the fourth-order cumulant and by SOBI-like coupled lagged covariances.

The observations are ``x(t) = M s(t) + noise`` with an unknown 5 x 4 mixing matrix M. After
prewhitening (``y = W x`` has identity covariance, so ``W M`` is orthogonal):

- the fourth-order cumulant of y is the symmetric CPD ``sum_r kappa_r u_r ∘ u_r ∘ u_r ∘
  u_r`` with ``U = W M`` (kappa_r the sources' kurtoses): one variable ``u`` in three modes,
  the signed kurtoses carried by the fourth factor (a real ``u ∘ u ∘ u ∘ u`` term is
  never negative, and three of these sources have negative kurtosis);
- the lagged covariances of y are ``U D_k Uᵀ`` for sources with different spectra: a
  CPD with ``u`` in its first two modes (SOBI).

Both give ``M`` back as ``pinv(W) U`` up to the order and scale of its columns; the Amari
index (0 for a perfect separation) measures how close, and the figure shows the sources
against their estimates.

Run from anywhere: ``python examples/bss.py``; writes ``bss.png`` next to this script and
prints a short report.
"""

from pathlib import Path

import numpy as np

import sdf
from sdf.statistics import cum4_tensor, scov

HERE = Path(__file__).resolve().parent
SAMPLES, NOISE = 20000, 0.05
NAMES = ("sawtooth", "square", "sinusoid", "Laplacian noise")
LAGS = np.arange(1, 21)


def make_sources(rng: np.random.Generator) -> np.ndarray:
    """Four unit-variance sources with different kurtoses and spectra, shape (n, 4)."""
    t = np.arange(SAMPLES)
    sources = np.stack([
        2 * ((t / 137.0) % 1.0) - 1,           # sawtooth, kurtosis -1.2
        np.sign(np.sin(2 * np.pi * t / 61.0)),  # square, -2
        np.sin(2 * np.pi * t / 23.0 + 1.0),     # sinusoid, -1.5
        rng.laplace(size=SAMPLES),              # white Laplacian noise, +3
    ], axis=1)
    sources = sources - sources.mean(axis=0)
    return sources / sources.std(axis=0)


def whitening(X: np.ndarray, rank: int) -> np.ndarray:
    """W (rank x I) with ``(W x)(W x)ᵀ`` averaging to the identity over the observations."""
    Xc = X - X.mean(axis=0)
    _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    return np.sqrt(X.shape[0]) * Vt[:rank] / s[:rank, None]


def amari_index(estimate: np.ndarray, truth: np.ndarray) -> float:
    """0 when ``pinv(estimate) @ truth`` is a scaled permutation, 1 at worst."""
    P = np.abs(np.linalg.pinv(estimate) @ truth)
    R = P.shape[0]
    rows = (P.sum(axis=1) / P.max(axis=1) - 1).sum()
    cols = (P.sum(axis=0) / P.max(axis=0) - 1).sum()
    return float((rows + cols) / (2 * R * (R - 1)))


def eigen_start(slices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Orthogonal start: eigenvectors of a random combination of symmetric slices."""
    weights = rng.standard_normal(slices.shape[2:])
    combo = np.tensordot(slices, weights, axes=slices.ndim - 2)
    return np.linalg.eigh((combo + combo.T) / 2)[1]


def by_cumulant(Y: np.ndarray, rank: int, rng: np.random.Generator) -> tuple:
    """Symmetric CPD of the whitened observations' fourth-order cumulant."""
    C = cum4_tensor(Y)  # the observations themselves: never the I^4 entries
    small = C.to_dense()  # only for the start: a 4 x 4 x 4 x 4 array
    u0 = eigen_start(small, rng)
    kappa0 = np.einsum("ijkl,ir,jr,kr,lr->r", small, u0, u0, u0, u0)
    u = sdf.Variable(u0, name="u")
    v = sdf.Variable(u0 * kappa0, name="v")
    result = sdf.Model(cumulant=sdf.CPD(C, [u, u, u, v])).fit(max_iter=200)
    return result[u], np.sum(result[u] * result[v], axis=0), result


def by_lagged_covariances(Y: np.ndarray, rng: np.random.Generator) -> tuple:
    """SOBI: a CPD of the symmetrized lagged covariances with one factor in two modes."""
    S = scov(Y, LAGS)
    S = (S + S.transpose(1, 0, 2)) / 2
    u0 = eigen_start(S, rng)
    u = sdf.Variable(u0, name="u")
    d = sdf.Variable(np.einsum("ijk,ir,jr->kr", S, u0, u0), name="d")
    result = sdf.Model(lagged=sdf.CPD(S, [u, u, d])).fit(max_iter=200)
    return result[u], result


def matched(estimates: np.ndarray, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Estimates reordered, signed and scaled to the sources; and each pair's correlation."""
    corr = np.corrcoef(sources.T, estimates.T)[:4, 4:]
    order = np.argmax(np.abs(corr), axis=1)
    signs = np.sign(corr[np.arange(4), order])
    best = estimates[:, order] * signs
    best = (best - best.mean(axis=0)) / best.std(axis=0)
    return best, np.abs(corr[np.arange(4), order])


def main() -> None:
    rng = np.random.default_rng(0)
    sources = make_sources(rng)
    mixing = rng.standard_normal((5, 4))
    X = sources @ mixing.T + NOISE * rng.standard_normal((SAMPLES, 5))
    print(f"{SAMPLES} observations of 5 mixtures of 4 sources ({', '.join(NAMES)}), "
          f"noise {NOISE}")
    W = whitening(X, 4)
    Y = (X - X.mean(axis=0)) @ W.T  # whitened: 4 channels, identity covariance
    dewhiten = np.linalg.pinv(W)

    U, kurtoses, res_c = by_cumulant(Y, 4, rng)
    mixing_c = dewhiten @ U
    print(f"cumulant CPD: {res_c.iterations} iterations, relative error "
          f"{100 * res_c.relerr['cumulant']:.2f} %, stop: {res_c.message}")
    print(f"  Amari index of the estimated mixing matrix: {amari_index(mixing_c, mixing):.4f}")
    est_c, corr_c = matched(Y @ np.linalg.pinv(U).T, sources)
    print("  kurtoses found: " + ", ".join(f"{k:+.2f}" for k in np.sort(kurtoses))
          + "  (true -2.00, -1.50, -1.20, +3.00)")

    V, res_s = by_lagged_covariances(Y, rng)
    mixing_s = dewhiten @ V
    print(f"lagged covariances (SOBI, {LAGS.size} lags): {res_s.iterations} iterations, "
          f"relative error {100 * res_s.relerr['lagged']:.2f} %, stop: {res_s.message}")
    print(f"  Amari index of the estimated mixing matrix: {amari_index(mixing_s, mixing):.4f}")
    est_s, corr_s = matched(Y @ np.linalg.pinv(V).T, sources)

    print(f"{'source':<16} {'corr (cumulant)':>16} {'corr (SOBI)':>12}")
    for name, a, b in zip(NAMES, corr_c, corr_s):
        print(f"{name:<16} {a:>16.4f} {b:>12.4f}")
    out = HERE / "bss.png"
    _figure(sources, est_c, est_s).savefig(out, dpi=110)
    print(f"figure written to {out}")


def _figure(sources: np.ndarray, est_c: np.ndarray, est_s: np.ndarray):
    import matplotlib.pyplot as plt

    window = slice(0, 300)
    fig, axes = plt.subplots(4, 1, figsize=(10, 8), sharex=True)
    t = np.arange(SAMPLES)[window]
    for r, ax in enumerate(axes):
        ax.plot(t, sources[window, r], color="k", lw=2.2, label="source")
        ax.plot(t, est_c[window, r], color="C3", lw=1.0, label="cumulant CPD")
        ax.plot(t, est_s[window, r], color="C0", lw=1.0, ls="--", label="SOBI CPD")
        ax.set_ylabel(NAMES[r])
    axes[0].legend(loc="upper right", ncol=3, fontsize=8)
    axes[-1].set_xlabel("sample")
    fig.suptitle("Sources against their estimates from 5 mixtures (first 300 samples)")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
