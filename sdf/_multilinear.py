"""Small multilinear helpers for Tucker models: mode products of small arrays, products
over a dimension tree, and the same on the rows of known entries (a core contracted,
entry by entry, with one factor row per mode). Shared by the coordinate data kinds (projections)
and the sampled Tucker strategy of the LMLRA/BTD terms. Work is chunked so that the
entries x core-size intermediates stay below ``CHUNK_FLOATS`` floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sdf import algebra

__all__ = [
    "chunks",
    "contract_others",
    "leave_one_out",
    "mode_product",
    "products",
    "rows_leave_one_out",
    "rows_outer_sum",
    "rows_values",
]

CHUNK_FLOATS = 1 << 21


def mode_product(X: np.ndarray, M: np.ndarray, n: int) -> np.ndarray:
    """``X ×_n M`` for small arrays (cores): one batched matmul, no validation."""
    s = X.shape
    Y = np.matmul(M, X.reshape(math.prod(s[:n]), s[n], -1))
    return Y.reshape(s[:n] + (M.shape[0],) + s[n + 1 :])


def products(X: np.ndarray, mats: Sequence[np.ndarray], modes: Sequence[int],
             large: bool = False) -> np.ndarray:
    """``X ×_m mats[m]`` for every m in ``modes`` (``mats`` indexed by mode)."""
    modes = list(modes)
    if large and modes:
        return algebra.tmprod(X, [mats[m] for m in modes], modes)
    for m in modes:
        X = mode_product(X, mats[m], m)
    return X


def contract_others(X: np.ndarray, Y: np.ndarray, n: int) -> np.ndarray:
    """Contract every mode but ``n``: ``unfold(X, n) @ unfold(Y, n)^T``."""
    # Any common order of the other modes will do: swap instead of moving axes.
    Xn = X.swapaxes(0, n).reshape(X.shape[n], -1)
    return Xn @ Y.swapaxes(0, n).reshape(Y.shape[n], -1).T


def leave_one_out(X: np.ndarray, mats: Sequence[np.ndarray], large: bool = False
                  ) -> list[np.ndarray]:
    """``[X ×_{m≠n} mats[m] for n]``, sharing partial products over a dimension tree."""
    out: list[np.ndarray] = [X] * X.ndim

    def descend(Y: np.ndarray, modes: list[int]) -> None:
        if len(modes) == 1:
            out[modes[0]] = Y
            return
        half = len(modes) // 2
        left, right = modes[:half], modes[half:]
        descend(products(Y, mats, right, large), left)
        descend(products(Y, mats, left, large), right)

    descend(X, list(range(X.ndim)))
    return out


def chunks(n_entries: int, width: int) -> list[slice]:
    step = max(1, CHUNK_FLOATS // max(width, 1))
    return [slice(lo, min(lo + step, n_entries)) for lo in range(0, n_entries, step)]


def _contract_rows(
    X: np.ndarray, batched: bool, modes: list[int], m: int, row: np.ndarray
) -> tuple[np.ndarray, list[int]]:
    """Contract mode ``m`` of X (entry axis first when batched) with one row per entry."""
    ax = modes.index(m) + int(batched)
    Xm = np.moveaxis(X, ax, -1)
    e, R = row.shape
    rest = Xm.shape[1:-1] if batched else Xm.shape[:-1]
    if batched:
        Y = np.matmul(Xm.reshape(e, -1, R), row[:, :, None])
    else:
        Y = row @ Xm.reshape(-1, R).T
    return Y.reshape((e, *rest)), [k for k in modes if k != m]


def rows_leave_one_out(S: np.ndarray, rows: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per entry e and mode n, the vector ``S ×_{m≠n} rows[m][e]``: list of (nnz, R_n)."""
    N, nnz = S.ndim, rows[0].shape[0]
    dtype = np.result_type(S, *rows, float)  # complex when any input is
    out = [np.empty((nnz, S.shape[n]), dtype=dtype) for n in range(N)]

    def descend(Y: np.ndarray, batched: bool, modes: list[int], rw: list[np.ndarray],
                sl: slice) -> None:
        if len(modes) == 1:
            out[modes[0]][sl] = Y
            return
        half = len(modes) // 2
        for keep, drop in ((modes[:half], modes[half:]), (modes[half:], modes[:half])):
            Z, b, ms = Y, batched, modes
            for m in drop:
                Z, ms = _contract_rows(Z, b, ms, m, rw[m])
                b = True
            descend(Z, b, ms, rw, sl)

    for sl in chunks(nnz, S.size):
        if N == 1:
            out[0][sl] = S
        else:
            descend(S, False, list(range(N)), [r[sl] for r in rows], sl)
    return out


def rows_values(S: np.ndarray, rows: Sequence[np.ndarray]) -> np.ndarray:
    """Per entry e, the scalar ``S ×_m rows[m][e]`` over all modes: shape (nnz,)."""
    nnz = rows[0].shape[0]
    out = np.empty(nnz, dtype=np.result_type(S, *rows, float))
    for sl in chunks(nnz, S.size):
        Y, batched, modes = S, False, list(range(S.ndim))
        for m in range(S.ndim):
            Y, modes = _contract_rows(Y, batched, modes, m, rows[m][sl])
            batched = True
        out[sl] = Y
    return out


def rows_outer_sum(w: np.ndarray, rows: Sequence[np.ndarray], shape: tuple[int, ...]
                    ) -> np.ndarray:
    """``sum_e w_e rows[0][e] ∘ ... ∘ rows[N-1][e]``, an array of the given core shape."""
    acc = np.zeros((int(np.prod(shape[:-1])), shape[-1]), dtype=np.result_type(w, *rows, float))
    for sl in chunks(len(w), int(np.prod(shape))):
        X = w[sl, None]
        for r in rows[:-1]:
            X = (X[:, :, None] * r[sl, None, :]).reshape(X.shape[0], -1)
        acc += X.T @ rows[-1][sl]
    return acc.reshape(shape)
