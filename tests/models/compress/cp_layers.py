"""Conv weights and calibration maps shared by the CP compression tests (the layers of
``benchmarks/bench_cp_small.py``)."""

import numpy as np


def planted(rng, shape, rank, noise=0.0):
    """A rank-``rank`` CP weight of ``shape`` plus relative Gaussian ``noise``, and its
    factors."""
    U = [rng.standard_normal((n, rank)) for n in shape]
    W = np.einsum("or,ir,hr,wr->oihw", *U)
    N = rng.standard_normal(shape)
    return W + noise * np.linalg.norm(W) / np.linalg.norm(N) * N, U


def decaying_weight(rng, o, i):
    """A trained-like 3x3 weight: singular values k^-0.6 of the (out, in*9) matrix."""
    k = min(o, 9 * i)
    U = np.linalg.qr(rng.standard_normal((o, k)))[0]
    V = np.linalg.qr(rng.standard_normal((9 * i, k)))[0]
    return ((U * np.arange(1, k + 1) ** -0.6) @ V.T).reshape(o, i, 3, 3)


def relu_maps(rng, n, i, hw):
    """``n`` ReLU feature maps (n, i, hw, hw) with correlated channels."""
    mix = rng.standard_normal((i, i)) * np.linspace(0.2, 2, i)
    return np.maximum(np.einsum("ij,njhw->nihw", mix, rng.standard_normal((n, i, hw, hw)))
                      + 0.3, 0.0)
