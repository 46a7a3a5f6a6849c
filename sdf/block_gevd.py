"""Algebraic starts for block terms: rank-(L, L, 1) and block term decompositions by a
generalized eigenvalue decomposition (GEVD), after Tensorlab's ``ll1_gevd``.

A third-order tensor ``T = sum_r (A_r G_r) x_2 B_r x_3 C_r`` with blocks of sizes
``(L_r, L_r, N_r)`` (``N_r = 1``: the LL1 case ``sum_r (A_r B_r^T) o c_r``) has frontal
slices ``T_k = A D_k B^T`` with ``A = [A_1 ... A_R]``, ``B`` likewise and ``D_k``
block-diagonal. Compressed by an MLSVD to ``(S, S, K')`` (``S = sum L_r``), two random
combinations ``P_1, P_2`` of the slices give the pencil ``P_1 v = lambda P_2 v``: its
eigenvectors ``V`` are ``B^{-T}`` up to a change of basis inside each block, and
``P_2 V`` spans the blocks of ``A``. In that basis every slice is block-diagonal:
``H_k = (P_2 V)^{-1} T_k V``. The eigenvectors are grouped into blocks of the given sizes
(LL1: by their diagonal profiles ``H_k[i, i]``, which are equal inside a block; BTD: by
their coupling ``|H_k[i, j]|``, zero between blocks), each block's bases are made real,
and each block's slices are compressed to ``(L_r, L_r, N_r)`` by an MLSVD, which gives
its core and mode-3 factor. Exact for noise-free data with generic factors when
``sum L_r <= I, J`` and ``K >= 2``; a start for Gauss-Newton otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg

from sdf.decomp import mlsvd
from sdf.errors import DataError

__all__ = ["btd_gevd", "btd_gevd_applies", "ll1_gevd", "ll1_gevd_applies"]


def ll1_gevd_applies(shape: Sequence[int], L: Sequence[int]) -> bool:
    """True when :func:`ll1_gevd` applies: third order, ``sum L <= I, J``, ``K >= 2``.

    Examples
    --------
    >>> ll1_gevd_applies((10, 9, 4), [2, 3]), ll1_gevd_applies((4, 9, 4), [2, 3])
    (True, False)
    """
    return btd_gevd_applies(shape, [(int(n), int(n), 1) for n in L])


def btd_gevd_applies(shape: Sequence[int], core_shapes: Sequence[Sequence[int]]) -> bool:
    """True when :func:`btd_gevd` applies: third order, every block's core ``(L, L, N)``
    square in its first two modes, ``sum L <= I, J``, ``K >= 2``, ``N <= K``, and either
    every ``N = 1`` (the LL1 case) or every ``N >= 2`` (the eigenvectors are grouped by
    equal profiles in the first case, by their coupling in the second; a mix of both
    has no grouping rule here).

    Examples
    --------
    >>> btd_gevd_applies((8, 8, 5), [(2, 2, 2), (3, 3, 2)])
    True
    >>> btd_gevd_applies((8, 8, 5), [(2, 3, 2)]), btd_gevd_applies((8, 8, 5), [(2, 2, 2), (1, 1, 1)])
    (False, False)
    """
    if len(shape) != 3 or not core_shapes:
        return False
    if any(len(cs) != 3 or cs[0] != cs[1] for cs in core_shapes):
        return False
    if len({int(cs[2]) == 1 for cs in core_shapes}) > 1:
        return False
    total = sum(int(cs[0]) for cs in core_shapes)
    I, J, K = (int(n) for n in shape)
    return total <= min(I, J) and K >= 2 and max(int(cs[2]) for cs in core_shapes) <= K


def ll1_gevd(T: np.ndarray, L: Sequence[int], seed: int | np.random.Generator | None = None
             ) -> list[np.ndarray]:
    """Rank-(L_r, L_r, 1) decomposition by a GEVD (see the module docstring).

    Parameters
    ----------
    T : ndarray of shape (I, J, K)
        Fully known data.
    L : sequence of int
        ``L_r`` per term.
    seed : int or numpy.random.Generator, optional
        Seeds the two random combinations of the slices.

    Returns
    -------
    list of ndarray
        ``[A, B, C]`` of shapes (I, sum L), (J, sum L), (K, R), the layout of
        :class:`sdf.LL1`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = rng.standard_normal((9, 5)), rng.standard_normal((8, 5)), rng.standard_normal((6, 2))
    >>> T = np.einsum("ir,jr,kr->ijk", A, B, C[:, [0, 0, 1, 1, 1]])
    >>> F = ll1_gevd(T, [2, 3], seed=1)
    >>> model = np.einsum("ir,jr,kr->ijk", F[0], F[1], F[2][:, [0, 0, 1, 1, 1]])
    >>> bool(np.linalg.norm(model - T) < 1e-8 * np.linalg.norm(T))
    True
    """
    sizes = [_positive(n, f"L[{r}]") for r, n in enumerate(L)]
    blocks = btd_gevd(T, [(n, n, 1) for n in sizes], seed)
    # A block (U_0 S U_1^T) o u_2 with a (L, L, 1) core S is (A_r B_r^T) o c_r with
    # A_r = U_0 S[:, :, 0], B_r = U_1, c_r = u_2.
    A = np.concatenate([b[0] @ b[3][:, :, 0] for b in blocks], axis=1)
    B = np.concatenate([b[1] for b in blocks], axis=1)
    C = np.concatenate([b[2] for b in blocks], axis=1)
    return [A, B, C]


def btd_gevd(T: np.ndarray, core_shapes: Sequence[Sequence[int]],
             seed: int | np.random.Generator | None = None) -> list[list[np.ndarray]]:
    """Block term decomposition with blocks of core sizes ``(L_r, L_r, N_r)`` by a GEVD.

    Parameters
    ----------
    T : ndarray of shape (I, J, K)
        Fully known data.
    core_shapes : sequence of (L_r, L_r, N_r)
        The blocks' core shapes (square in the first two modes).
    seed : int or numpy.random.Generator, optional
        Seeds the two random combinations of the slices.

    Returns
    -------
    list of [U_0, U_1, U_2, S]
        One block each, the layout of :class:`sdf.BTD`.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.algebra import tucker_to_tensor
    >>> rng = np.random.default_rng(0)
    >>> blocks = [([rng.standard_normal((n, 2)) for n in (7, 6, 5)],
    ...            rng.standard_normal((2, 2, 2))) for _ in range(2)]
    >>> T = sum(tucker_to_tensor(U, S) for U, S in blocks)
    >>> fit = btd_gevd(T, [(2, 2, 2), (2, 2, 2)], seed=0)
    >>> model = sum(tucker_to_tensor(b[:3], b[3]) for b in fit)
    >>> bool(np.linalg.norm(model - T) < 1e-8 * np.linalg.norm(T))
    True
    """
    T = np.asarray(T)
    if T.ndim != 3 or not np.all(np.isfinite(T)):
        raise DataError(f"btd_gevd: expected a finite third-order array, got shape {T.shape}")
    shapes = [tuple(_positive(n, f"core_shapes[{b}]") for n in cs)
              for b, cs in enumerate(core_shapes)]
    if not btd_gevd_applies(T.shape, shapes):
        raise DataError(
            f"btd_gevd: needs cores (L, L, N) with sum L <= {min(T.shape[:2])} (the first two "
            f"sizes), 2 <= K, N <= K, and N = 1 for all blocks or N >= 2 for all; got cores "
            f"{shapes} for shape {T.shape}. Use a random start instead.")
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    L = [cs[0] for cs in shapes]
    N = [cs[2] for cs in shapes]
    total = sum(L)
    K3 = min(T.shape[2], max(sum(N), 2))
    comp = mlsvd(T, core_shape=(total, total, K3))
    G = comp.core
    w = rng.standard_normal((2, K3))
    P1, P2 = G @ w[0], G @ w[1]
    _, V = scipy.linalg.eig(P1, P2)
    A = P2 @ V                                      # spans the blocks of A
    Binv = np.linalg.pinv(V).T                      # spans the blocks of B
    H = np.einsum("ij,jlk,lm->imk", np.linalg.pinv(A), G, V)  # (P_2 V)^{-1} G_k V
    groups = _groups(H, L, ll1=all(n == 1 for n in N))
    real = not np.iscomplexobj(T)
    A_blocks = [_basis(A[:, idx], n, real) for idx, n in zip(groups, L)]
    B_blocks = [_basis(Binv[:, idx], n, real) for idx, n in zip(groups, L)]
    Afull, Bfull = np.concatenate(A_blocks, axis=1), np.concatenate(B_blocks, axis=1)
    # Every slice in the blocks' bases: block-diagonal up to noise.
    D = np.einsum("ij,jlk,ml->imk", np.linalg.pinv(Afull), G, np.linalg.pinv(Bfull))
    out = []
    start = 0
    for Ab, Bb, n, cs in zip(A_blocks, B_blocks, L, shapes):
        sl = slice(start, start + n)
        start += n
        block = mlsvd(D[sl, sl, :], core_shape=cs)
        U0 = comp.factors[0] @ Ab @ block.factors[0]
        U1 = comp.factors[1] @ Bb @ block.factors[1]
        U2 = comp.factors[2] @ block.factors[2]
        out.append([U0, U1, U2, block.core])
    return out


def _positive(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{where}: expected integers >= 1, got {value!r}")
    return int(value)


def _groups(H: np.ndarray, sizes: list[int], ll1: bool) -> list[np.ndarray]:
    """Eigenvector indices of each block, in the order of ``sizes``."""
    n = H.shape[0]
    if ll1:  # equal diagonal profiles inside a block
        prof = np.einsum("iik->ik", H)
        scale = np.linalg.norm(prof, axis=1)
        dist = np.linalg.norm(prof[:, None, :] - prof[None, :, :], axis=2)
        dist = dist / np.maximum(scale[:, None] + scale[None, :], 1e-300)
    else:  # coupling between eigenvectors: zero across blocks
        mag = np.sqrt(np.sum(np.abs(H) ** 2, axis=2))
        diag = np.sqrt(np.diag(mag) + 1e-300)
        coupling = (mag + mag.T) / (diag[:, None] * diag[None, :])
        dist = -coupling
    np.fill_diagonal(dist, -np.inf)
    left = np.ones(n, dtype=bool)
    out: list[np.ndarray] = [np.zeros(0, dtype=int)] * len(sizes)
    for r in sorted(range(len(sizes)), key=lambda r: -sizes[r]):
        size = sizes[r]
        free = np.flatnonzero(left)
        best, best_cost = free[:size], np.inf
        for i in free:
            near = free[np.argsort(dist[i, free], kind="stable")[:size]]
            sub = dist[np.ix_(near, near)]
            cost = float(np.sum(sub[np.isfinite(sub)]))
            if cost < best_cost:
                best, best_cost = near, cost
        out[r] = np.sort(best)
        left[best] = False
    return out


def _basis(X: np.ndarray, size: int, real: bool) -> np.ndarray:
    """An orthonormal basis of the span of the columns of ``X`` (of their real and
    imaginary parts for real data: conjugate eigenvector pairs span a real subspace)."""
    M = np.concatenate([X.real, X.imag], axis=1) if real else X
    U = np.linalg.svd(M, full_matrices=False)[0]
    return U[:, :size]
