"""Tensor algebra: unfoldings, Khatri-Rao and Kronecker products, multilinear products,
MTTKRPs, Gramians, norms and inner products.

Index convention (C order, used everywhere in sdfusion)
-------------------------------------------------------
``unfold(T, n)`` is ``np.moveaxis(T, n, 0).reshape(I_n, -1)``: its columns are indexed by
the remaining modes in increasing order, the **last** one varying fastest. Khatri-Rao and
Kronecker products follow the same rule, the last matrix varying fastest::

    khatri_rao([B, C])[j * K + k, r] == B[j, r] * C[k, r]
    kron(B, C)[j * K + k, l * M + m] == B[j, l] * C[k, m]

so that a CPD with factors ``A_0, ..., A_{N-1}`` satisfies
``unfold(T, n) == A_n @ khatri_rao([A_m for m != n]).T``.

Complex data: Gramians, inner products and norms conjugate their first argument
(``A^H A``, ``vdot``); MTTKRPs and multilinear products never conjugate.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from sdf.errors import DataError
from sdf.numerics import check_factors

__all__ = [
    "MTTKRPTree",
    "cpd_inner",
    "cpd_norm_squared",
    "cpd_to_tensor",
    "fold",
    "frob",
    "gramians",
    "hadamard",
    "inner",
    "khatri_rao",
    "kron",
    "mttkrp",
    "mttkrp_all",
    "nearest_kron",
    "tmprod",
    "tucker_to_tensor",
    "unfold",
]


# --------------------------------------------------------------------------- helpers
def _check_mode(mode: object, ndim: int, name: str = "mode") -> int:
    """Return ``mode`` as a nonnegative int in ``[0, ndim)``, negative values wrapped."""
    if isinstance(mode, bool) or not isinstance(mode, (int, np.integer)):
        raise DataError(f"{name}: expected an integer, got {type(mode).__name__}")
    if not -ndim <= mode < ndim:
        raise DataError(
            f"{name}: expected an integer in [{-ndim}, {ndim - 1}] for order {ndim}, got {mode}"
        )
    return int(mode) % ndim


def _as_matrix_list(matrices: object, name: str) -> list[np.ndarray]:
    """Validate a sequence of 2-D arrays (a 2-D ndarray is refused as ambiguous)."""
    if isinstance(matrices, np.ndarray) and matrices.ndim != 3:
        raise DataError(f"{name}: expected a sequence of matrices, got an array of shape "
                        f"{matrices.shape}; wrap a single matrix in a list")
    try:
        # Anything iterable is tried; what is not raises TypeError, reported below.
        mats = [np.asarray(M) for M in cast("Iterable[ArrayLike]", matrices)]
    except TypeError:
        raise DataError(
            f"{name}: expected a sequence of matrices, got {type(matrices).__name__}"
        ) from None
    for i, M in enumerate(mats):
        if M.ndim != 2:
            raise DataError(f"{name}[{i}]: expected a 2-D array, got shape {M.shape}")
    return mats


def _check_same_columns(mats: list[np.ndarray], name: str, labels: list[int]) -> int:
    """Check that all matrices have as many columns as the first; return that count."""
    R = mats[0].shape[1]
    for M, i in zip(mats[1:], labels[1:]):
        if M.shape[1] != R:
            raise DataError(
                f"{name}[{i}]: expected {R} columns like {name}[{labels[0]}], got shape {M.shape}"
            )
    return R


def _check_factors(
    factors: object, shape: tuple[int, ...] | None = None, name: str = "factors"
) -> list[np.ndarray]:
    """Validate CPD factors: 2-D, equal column counts, rows matching ``shape``."""
    return check_factors(factors, shape=shape, columns="same", name=name)


def _skip_one(mats: list[np.ndarray], skip: int | None) -> tuple[list[np.ndarray], list[int]]:
    """Drop ``mats[skip]``; return the rest (nonempty) and their original indices."""
    labels = list(range(len(mats)))
    if skip is not None and mats:
        s = _check_mode(skip, len(mats), "skip")
        del mats[s], labels[s]
    if not mats:
        raise DataError("matrices: expected at least one matrix (after skip), got none")
    return mats, labels


def _ct(M: np.ndarray) -> np.ndarray:
    """Conjugate transpose; a view (no copy) for real matrices."""
    return M.conj().T if np.iscomplexobj(M) else M.T


def _kr(mats: Sequence[np.ndarray]) -> np.ndarray:
    """Khatri-Rao product without validation (last matrix varies fastest)."""
    out = mats[-1]
    for M in reversed(mats[:-1]):
        out = _kr_pair(M, out)
    return out


def _kr_pair(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Khatri-Rao product of two matrices (``B`` varying fastest), into ``out`` (a buffer
    of at least its size and of its dtype) when given, else a new array.

    Written in C order whatever the factors' layout: of column-major factors (solves
    return them transposed) numpy would write the product column-major, and flattening
    it would copy it whole (on a 64x192x7x7 conv's CP at rank 850, 64 MB per product)."""
    R = A.shape[1]
    shape = (A.shape[0], B.shape[0], R)
    size = shape[0] * shape[1] * R
    dtype = np.result_type(A, B)
    target = (np.empty(shape, dtype) if out is None or out.size < size or out.dtype != dtype
              else out.reshape(-1)[:size].reshape(shape))
    np.multiply(A[:, None, :], B[None, :, :], out=target)
    return target.reshape(-1, R)


# --------------------------------------------------------------------- unfold / fold
def unfold(T: ArrayLike, mode: int) -> np.ndarray:
    """Mode-``mode`` unfolding (matricization) of a tensor.

    ``unfold(T, n) = np.moveaxis(T, n, 0).reshape(I_n, -1)``: columns are indexed by the
    other modes in increasing order, the last one varying fastest.

    Parameters
    ----------
    T : array_like, shape (I_0, ..., I_{N-1})
    mode : int
        Mode ``n`` whose index becomes the row index (negative: from the end).

    Returns
    -------
    ndarray, shape (I_n, prod of the other I_m)
        A view when possible (``mode=0`` of a C-contiguous tensor), else a copy.

    Examples
    --------
    >>> import numpy as np
    >>> T = np.arange(24).reshape(2, 3, 4)
    >>> unfold(T, 1).shape, bool(unfold(T, 1)[2, 5] == T[1, 2, 1])
    ((3, 8), True)
    """
    T = np.asarray(T)
    n = _check_mode(mode, T.ndim)
    rest = math.prod(s for m, s in enumerate(T.shape) if m != n)
    return np.moveaxis(T, n, 0).reshape(T.shape[n], rest)


def fold(M: ArrayLike, mode: int, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`unfold`: rebuild a tensor of ``shape`` from its unfolding.

    Parameters
    ----------
    M : array_like, shape (shape[mode], prod of the other entries of shape)
    mode : int
    shape : sequence of int

    Returns
    -------
    ndarray of shape ``shape``

    Examples
    --------
    >>> import numpy as np
    >>> T = np.arange(24.0).reshape(2, 3, 4)
    >>> np.array_equal(fold(unfold(T, 2), 2, T.shape), T)
    True
    """
    M = np.asarray(M)
    shape = tuple(int(s) for s in shape)
    n = _check_mode(mode, len(shape))
    rest = tuple(s for m, s in enumerate(shape) if m != n)
    expected = (shape[n], math.prod(rest))
    if M.shape != expected:
        raise DataError(f"M: expected shape {expected} to fold mode {n} into {shape}, "
                        f"got {M.shape}")
    return np.moveaxis(M.reshape((shape[n],) + rest), 0, n)


# ------------------------------------------------------------ Khatri-Rao, Kronecker
def khatri_rao(matrices: Sequence[ArrayLike], skip: int | None = None) -> np.ndarray:
    """Column-wise Kronecker (Khatri-Rao) product, the last matrix varying fastest.

    ``khatri_rao([B, C])[j * K + k, r] = B[j, r] * C[k, r]``.

    Parameters
    ----------
    matrices : sequence of array_like, each of shape (I_n, R)
    skip : int, optional
        Index of a matrix to leave out (e.g. the mode of an MTTKRP).

    Returns
    -------
    ndarray, shape (prod of the I_n used, R)

    Examples
    --------
    >>> import numpy as np
    >>> B, C = np.ones((2, 3)), np.arange(12.0).reshape(4, 3)
    >>> khatri_rao([B, C]).shape, khatri_rao([B, C, B], skip=2).shape
    ((8, 3), (8, 3))
    """
    mats, labels = _skip_one(_as_matrix_list(matrices, "matrices"), skip)
    _check_same_columns(mats, "matrices", labels)
    return _kr(mats) if len(mats) > 1 else mats[0].copy()


def kron(*matrices: ArrayLike | Sequence[ArrayLike]) -> np.ndarray:
    """Kronecker product of several matrices (or several vectors), C order.

    ``kron(B, C)[j * K + k, l * M + m] = B[j, l] * C[k, m]`` (as ``np.kron``; the last
    argument varies fastest, as in :func:`khatri_rao`).

    Parameters
    ----------
    *matrices : array_like
        Matrices (all 2-D) or vectors (all 1-D), as separate arguments or one list/tuple.

    Returns
    -------
    ndarray, shape (prod I_n, prod J_n) for matrices, (prod I_n,) for vectors

    Examples
    --------
    >>> import numpy as np
    >>> B, C = np.eye(2), np.arange(6.0).reshape(2, 3)
    >>> kron(B, C).shape, np.array_equal(kron([B, C]), np.kron(B, C))
    ((4, 6), True)
    """
    items: Sequence = matrices
    if len(matrices) == 1 and isinstance(matrices[0], (list, tuple)):
        items = matrices[0]
    mats, _ = _skip_one([np.asarray(M) for M in items], None)
    nd = mats[0].ndim
    for i, M in enumerate(mats):
        if M.ndim not in (1, 2) or M.ndim != nd:
            raise DataError(
                f"matrices[{i}]: expected a {nd}-D array like matrices[0] (all 1-D or all "
                f"2-D), got shape {M.shape}"
            )
    out = mats[0].copy()
    for M in mats[1:]:
        if nd == 1:
            out = (out[:, None] * M[None, :]).reshape(-1)
        else:
            shape = (out.shape[0] * M.shape[0], out.shape[1] * M.shape[1])
            out = (out[:, None, :, None] * M[None, :, None, :]).reshape(shape)
    return out



def nearest_kron(M: ArrayLike, shape_a: tuple[int, int], shape_b: tuple[int, int], *,
                 shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Nearest Kronecker product: ``A``, ``B`` minimising ``||M - shift I - kron(A, B)||_F``.

    Van Loan and Pitsianis: rearranged so that ``kron(A, B)`` becomes the rank-one
    ``vec(A) vec(B)^T``, the nearest one is the leading singular pair of the rearranged
    ``M``, computed exactly here from the smaller of its two Gram matrices. The shift
    enters as the rank-one rearrangement of the identity, so ``M - shift I`` is never
    formed. For a symmetric positive semidefinite ``M`` (and ``shift`` 0) both factors are
    symmetric and semidefinite up to rounding.

    Parameters
    ----------
    M : array_like, shape (p_a p_b, q_a q_b)
    shape_a, shape_b : (int, int)
        Shapes ``(p_a, q_a)`` of ``A`` and ``(p_b, q_b)`` of ``B``.
    shift : float, default 0.0
        Approximate ``M - shift I`` instead (square factors only).

    Returns
    -------
    A : ndarray, shape (p_a, q_a)
        Carries the scale: ``||A||_F`` is the leading singular value.
    B : ndarray, shape (p_b, q_b)
        Unit Frobenius norm, signed so that its entries sum to a nonnegative trace (square
        ``B``) or a nonnegative sum (otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> A0, B0 = np.array([[2.0, 1], [1, 3]]), np.array([[1.0, 0.5], [0.5, 1]])
    >>> A, B = nearest_kron(np.kron(A0, B0), (2, 2), (2, 2))
    >>> bool(np.allclose(np.kron(A, B), np.kron(A0, B0)))
    True
    """
    X = np.asarray(M)
    (pa, qa), (pb, qb) = shape_a, shape_b
    if X.shape != (pa * pb, qa * qb):
        raise DataError(f"M: expected shape ({pa * pb}, {qa * qb}) for factors of shapes "
                        f"{tuple(shape_a)} and {tuple(shape_b)}, got {X.shape}")
    if shift and (pa != qa or pb != qb):
        raise DataError(f"shift: needs square factors, got shapes {tuple(shape_a)} and "
                        f"{tuple(shape_b)}")
    R = X.reshape(pa, pb, qa, qb).transpose(0, 2, 1, 3).reshape(pa * qa, pb * qb)
    return _leading_kron_pair(R, shape_a, shape_b, shift)


def _leading_kron_pair(R: np.ndarray, shape_a: tuple[int, int], shape_b: tuple[int, int],
                      shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_kron` from the rearranged matrix ``R`` (``(p_a q_a, p_b q_b)``), for
    callers that rearrange once and shift several times.

    Examples
    --------
    >>> import numpy as np
    >>> R = np.outer(np.eye(2).ravel(), np.eye(3).ravel())  # kron(I_2, I_3) rearranged
    >>> A, B = _leading_kron_pair(R, (2, 2), (3, 3), shift=0.5)
    >>> bool(np.allclose(np.kron(A, B), 0.5 * np.eye(6)))
    True
    """
    e_a = np.eye(*shape_a).ravel() if shift else None
    e_b = np.eye(*shape_b).ravel() if shift else None

    def times(v: np.ndarray) -> np.ndarray:  # (R - shift e_a e_b^T) v
        out = R @ v
        return out if e_a is None or e_b is None else out - shift * float(e_b @ v) * e_a

    def times_t(u: np.ndarray) -> np.ndarray:  # (R - shift e_a e_b^T)^T u
        out = R.T @ u
        return out if e_a is None or e_b is None else out - shift * float(e_a @ u) * e_b

    rows, cols = R.shape
    if min(rows, cols) > _DENSE_KRON_PAIR:
        v = _leading_right_vector(times, times_t, rows, cols)
        if v is not None:
            return _signed_pair(times(v), v, shape_a, shape_b)
    if rows < cols:
        G = R @ R.T
        if e_a is not None and e_b is not None:
            Re = R @ e_b
            G = G - shift * (np.outer(Re, e_a) + np.outer(e_a, Re)) \
                + shift ** 2 * float(e_b @ e_b) * np.outer(e_a, e_a)
        v = times_t(np.linalg.eigh((G + G.T) / 2)[1][:, -1])
    else:
        G = R.T @ R
        if e_a is not None and e_b is not None:
            Re = R.T @ e_a
            G = G - shift * (np.outer(Re, e_b) + np.outer(e_b, Re)) \
                + shift ** 2 * float(e_a @ e_a) * np.outer(e_b, e_b)
        v = np.linalg.eigh((G + G.T) / 2)[1][:, -1]
    v = v / (np.linalg.norm(v) or 1.0)
    return _signed_pair(times(v), v, shape_a, shape_b)


#: Up to this size of the smaller side, :func:`_leading_kron_pair` takes the leading pair
#: from a dense eigendecomposition of the smaller Gram matrix; above it, Lanczos on the
#: rearranged matrix's products (a 64x64x7x7 conv's metric: Gram 2401 x 2401, 1.2 s
#: dense, about 0.1 s by Lanczos)
_DENSE_KRON_PAIR = 256


def _leading_right_vector(times: Any, times_t: Any, rows: int, cols: int) -> np.ndarray | None:
    """The leading right singular vector (unit norm) of the operator ``times`` (adjoint
    ``times_t``) of shape (rows, cols), by Lanczos (ARPACK, to full accuracy) on its
    smaller Gram operator from a fixed pseudo-random start (reproducible); None when
    Lanczos does not converge or the operator is zero (the caller then decomposes
    densely)."""
    import scipy.sparse.linalg as ssl

    small = min(rows, cols)
    if rows < cols:  # on R R^T: u, then v = R^T u
        def gram(u: np.ndarray) -> np.ndarray:
            return times(times_t(u))
    else:
        def gram(u: np.ndarray) -> np.ndarray:
            return times_t(times(u))
    start = np.random.default_rng(0).standard_normal(small)
    op = ssl.LinearOperator((small, small), matvec=gram, dtype=float)
    try:
        # ARPACK's restarts capped: a near tie of the two leading values (which makes
        # Lanczos slow) falls back to the dense decomposition
        vec = ssl.eigsh(op, k=1, which="LA", v0=start, tol=0.0, maxiter=200)[1][:, 0]
    except ssl.ArpackNoConvergence:
        return None
    v = times_t(vec) if rows < cols else vec
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else None


def _signed_pair(a: np.ndarray, b: np.ndarray, shape_a: tuple[int, int],
                 shape_b: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` from the vectors ``a``, ``b`` signed as :func:`nearest_kron` says."""
    A, B = a.reshape(shape_a), b.reshape(shape_b)
    sign = np.trace(B) if shape_b[0] == shape_b[1] else B.sum()
    return (-A, -B) if sign < 0 else (A, B)

# ------------------------------------------------------------ multilinear products
#: Rows of the left factor per BLAS call in :func:`_tall_product` (about 512 kB of it).
_TALL_BLOCK_FLOATS = 1 << 16


def _tall_product(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B`` for a tall ``A`` (M x K, C-contiguous) and a narrow ``B`` (K x N, N <= 16):
    in blocks of rows. One BLAS call on the whole of a tall A with a narrow result runs
    several times slower than the same work in cache-sized blocks (measured with
    OpenBLAS: 10^4 x 100 times 100 x 10, 3.8 ms at once, 1.9 ms in blocks)."""
    M, K = A.shape
    rows = max(1, _TALL_BLOCK_FLOATS // max(K, 1))
    if B.shape[1] > 16 or M < 4 * rows:
        return A @ B
    out = np.empty((M, B.shape[1]), dtype=np.result_type(A, B))
    for lo in range(0, M, rows):
        np.matmul(A[lo : lo + rows], B, out=out[lo : lo + rows])
    return out


def _mode_product(T: np.ndarray, U: np.ndarray, n: int) -> np.ndarray:
    """``T ×_n U`` for a C-contiguous T; returns a C-contiguous array."""
    shape = T.shape
    IL, IR = math.prod(shape[:n]), math.prod(shape[n + 1 :])
    new_shape = shape[:n] + (U.shape[0],) + shape[n + 1 :]
    if IL == 1:
        out = U @ T.reshape(shape[n], IR)
    elif IR == 1:
        out = _tall_product(T.reshape(IL, shape[n]), U.T)
    elif IR >= 16:
        out = np.matmul(U, T.reshape(IL, shape[n], IR))
    else:
        out = np.moveaxis(np.tensordot(T, U, axes=(n, 1)), -1, n)
    return np.ascontiguousarray(out).reshape(new_shape)


def _tmprod(
    T: np.ndarray, mats: list[np.ndarray], modes: list[int], transpose: bool, name: str, tname: str
) -> np.ndarray:
    """Validated mode products applied in the order that shrinks the tensor fastest."""
    mats = [M.T if transpose else M for M in mats]
    for i, (M, n) in enumerate(zip(mats, modes)):
        if M.shape[1] != T.shape[n]:
            side = "rows" if transpose else "columns"
            got = M.T.shape if transpose else M.shape
            raise DataError(f"{name}[{i}]: expected {T.shape[n]} {side} to match mode {n} of "
                            f"{tname} (shape {T.shape}), got shape {got}")
    order = sorted(range(len(modes)), key=lambda i: mats[i].shape[0] / max(mats[i].shape[1], 1))
    out = np.ascontiguousarray(T)
    for i in order:
        out = _mode_product(out, mats[i], modes[i])
    return out if len(order) else out.copy()


def tmprod(
    T: ArrayLike,
    matrices: ArrayLike | Sequence[ArrayLike],
    modes: int | Sequence[int] | None = None,
    transpose: bool = False,
) -> np.ndarray:
    """Mode-n tensor-matrix products ``T ×_{n_1} U_1 ×_{n_2} U_2 ...``.

    ``unfold(T ×_n U, n) = U @ unfold(T, n)`` for ``U`` of shape (J_n, I_n); with
    ``transpose=True`` the products are with ``U.T`` (no conjugation). The products
    commute; they are applied in the order that shrinks the tensor fastest.

    Parameters
    ----------
    T : array_like, scipy.sparse matrix or sdf.tensors.Tensor, shape (I_0, ..., I_{N-1})
        Sparse and other data kinds are densified first (the products are dense).
    matrices : array_like or sequence of array_like
        One matrix if ``modes`` is an int, else one matrix per entry of ``modes``.
    modes : int or sequence of int, optional
        Distinct modes; default all modes ``0..N-1``.
    transpose : bool, default False

    Returns
    -------
    ndarray, shape of ``T`` with size ``J_n`` in each multiplied mode ``n``

    Examples
    --------
    >>> import numpy as np
    >>> T = np.ones((2, 3, 4))
    >>> tmprod(T, np.ones((5, 3)), 1).shape
    (2, 5, 4)
    >>> tmprod(T, [np.ones((2, 6)), np.ones((4, 7))], [0, 2], transpose=True).shape
    (6, 3, 7)
    """
    T = _as_dense(T)
    if isinstance(modes, (int, np.integer)):  # a bool is refused by _check_mode
        mode_list = [_check_mode(modes, T.ndim, "modes")]
        mats = [np.asarray(matrices)]
        if mats[0].ndim != 2:
            raise DataError(f"matrices: expected a 2-D matrix for an integer mode, got shape "
                            f"{mats[0].shape}")
    else:
        mats = _as_matrix_list(matrices, "matrices")
        if modes is None:
            if len(mats) != T.ndim:
                raise DataError(
                    f"matrices: expected {T.ndim} matrices (one per mode of T) when modes "
                    f"is not given, got {len(mats)}"
                )
            mode_list = list(range(T.ndim))
        else:
            mode_list = [_check_mode(m, T.ndim, f"modes[{i}]") for i, m in enumerate(modes)]
            if len(mode_list) != len(mats):
                raise DataError(
                    f"modes: expected {len(mats)} modes (one per matrix), got {len(mode_list)}"
                )
            if len(set(mode_list)) != len(mode_list):
                raise DataError(f"modes: expected distinct modes, got {list(modes)}")
    return _tmprod(T, mats, mode_list, transpose, "matrices", "T")


def cpd_to_tensor(factors: Sequence[ArrayLike], weights: ArrayLike | None = None) -> np.ndarray:
    """Full tensor of a CPD: ``T = sum_r w_r a_{0,r} ∘ a_{1,r} ∘ ... ∘ a_{N-1,r}``.

    Parameters
    ----------
    factors : sequence of array_like, each of shape (I_n, R)
    weights : array_like, shape (R,), optional
        Default all ones.

    Returns
    -------
    ndarray, shape (I_0, ..., I_{N-1})

    Examples
    --------
    >>> import numpy as np
    >>> A, B, C = np.ones((2, 3)), np.ones((4, 3)), np.ones((5, 3))
    >>> T = cpd_to_tensor([A, B, C], weights=[1.0, 2.0, 3.0])
    >>> T.shape, float(T[0, 0, 0])
    ((2, 4, 5), 6.0)
    """
    mats = _check_factors(factors)
    w = _check_weights(weights, mats[0].shape[1], "weights")
    first = mats[0] if w is None else mats[0] * w
    if len(mats) == 1:
        return first.sum(axis=1)
    shape = tuple(M.shape[0] for M in mats)
    return (first @ _kr(mats[1:]).T).reshape(shape)


def tucker_to_tensor(factors: Sequence[ArrayLike], core: ArrayLike) -> np.ndarray:
    """Full tensor of a Tucker model / LMLRA: ``S ×_0 U_0 ×_1 U_1 ... ×_{N-1} U_{N-1}``.

    Parameters
    ----------
    factors : sequence of array_like, each of shape (I_n, R_n)
    core : array_like, shape (R_0, ..., R_{N-1})

    Returns
    -------
    ndarray, shape (I_0, ..., I_{N-1})

    Examples
    --------
    >>> import numpy as np
    >>> U = [np.ones((4, 2)), np.ones((5, 3))]
    >>> tucker_to_tensor(U, np.ones((2, 3))).shape
    (4, 5)
    """
    S, mats = np.asarray(core), _as_matrix_list(factors, "factors")
    if len(mats) != S.ndim:
        raise DataError(f"factors: expected {S.ndim} matrices (one per mode of the core, shape "
                        f"{S.shape}), got {len(mats)}")
    return _tmprod(S, mats, list(range(S.ndim)), False, "factors", "core")


# --------------------------------------------------------------------------- MTTKRP
def _is_scipy_sparse(T: object) -> bool:
    # Only a module already imported can have made T: no scipy.sparse import here.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(T))


def _is_data_tensor(T: object) -> bool:
    """An :class:`sdf.tensors.Tensor` (sparse, incomplete, factored... data kinds)."""
    return all(callable(getattr(T, name, None)) for name in ("mttkrp", "to_dense",
                                                           "known_entries"))


def _as_dense(T: object, name: str = "T") -> np.ndarray:
    """``T`` as an ndarray; scipy.sparse matrices and sdf data tensors densified, and a
    located error for a raw ``(subs, vals, shape)`` tuple (ambiguous as an array)."""
    if _is_scipy_sparse(T):
        return cast(Any, T).toarray()
    if _is_data_tensor(T):
        return np.asarray(cast(Any, T).to_dense())
    if (isinstance(T, tuple) and len(T) == 3 and isinstance(T[2], tuple)
            and all(isinstance(n, (int, np.integer)) for n in T[2])):
        raise DataError(f"{name}: a (subs, vals, shape) tuple is coordinate data, not an "
                        f"array; pass sdf.tensors.as_tensor({name}) (shape {T[2]})")
    if isinstance(T, (list, tuple)) and T and not np.isscalar(T[0]) \
            and len({np.shape(x) for x in T}) > 1:
        raise DataError(f"{name}: expected an array, scipy.sparse matrix or "
                        f"sdf.tensors.Tensor, got a {type(T).__name__} of differently "
                        "shaped items")
    out = np.asarray(T)
    if out.dtype == object:
        raise DataError(f"{name}: expected numeric data (an array, scipy.sparse matrix or "
                        f"sdf.tensors.Tensor), got {type(T).__name__}")
    return out


def _prepare_mttkrp(T: ArrayLike, factors: object) -> tuple[np.ndarray, list[np.ndarray]]:
    T = _as_dense(T)
    if T.ndim < 2:
        raise DataError(f"T: expected a tensor of order >= 2, got shape {T.shape}")
    mats = _check_factors(factors, T.shape)
    return T, mats


def _mttkrp_c(T: np.ndarray, mats: list[np.ndarray], n: int) -> np.ndarray:
    """One MTTKRP of a C-contiguous tensor, never copying the tensor."""
    shape, N = T.shape, T.ndim
    IL, IR = math.prod(shape[:n]), math.prod(shape[n + 1 :])
    if n == 0:
        return T.reshape(shape[0], IR) @ _kr(mats[1:])
    if n == N - 1:
        return T.reshape(IL, shape[n]).T @ _kr(mats[:-1])
    R = mats[0].shape[1]
    # Contract the larger side by one GEMM on a free reshape, the smaller one after.
    if IR >= IL:
        W = (T.reshape(IL * shape[n], IR) @ _kr(mats[n + 1 :])).reshape(IL, shape[n], R)
        return np.einsum("lir,lr->ir", W, _kr(mats[:n]))
    W = (T.reshape(IL, shape[n] * IR).T @ _kr(mats[:n])).reshape(shape[n], IR, R)
    return np.einsum("imr,mr->ir", W, _kr(mats[n + 1 :]))


def mttkrp(T: ArrayLike, factors: Sequence[ArrayLike], mode: int) -> np.ndarray:
    """Matricized tensor times Khatri-Rao product for one mode.

    ``mttkrp(T, A, n) = unfold(T, n) @ khatri_rao(A, skip=n)`` (no conjugation), computed
    by one GEMM on a free reshape of a C- or F-contiguous ``T`` (no unfolding copy).

    Parameters
    ----------
    T : array_like, scipy.sparse matrix or sdf.tensors.Tensor, N >= 2 modes
        Shape ``(I_0, ..., I_{N-1})``. A sparse matrix or a data tensor (sparse, incomplete, factored...) is read
        through its own MTTKRP: only the stored entries.
    factors : sequence of array_like, each of shape (I_m, R)
        One per mode; ``factors[mode]`` is checked but not used.
    mode : int

    Returns
    -------
    ndarray, shape (I_mode, R)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> T = rng.standard_normal((3, 4, 5))
    >>> A = [rng.standard_normal((s, 2)) for s in T.shape]
    >>> np.allclose(mttkrp(T, A, 1), unfold(T, 1) @ khatri_rao(A, skip=1))
    True
    """
    if _is_data_tensor(T):  # reads only what the data kind stores (nonzeros, factors...)
        return np.asarray(cast(Any, T).mttkrp(factors, mode))
    if _is_scipy_sparse(T):
        M = cast(Any, T)
        mats = _check_factors(factors, M.shape)
        n = _check_mode(mode, 2)
        return np.asarray(M @ mats[1] if n == 0 else M.T @ mats[0])
    T, mats = _prepare_mttkrp(T, factors)
    n = _check_mode(mode, T.ndim)
    if not T.flags.c_contiguous and T.flags.f_contiguous:
        return _mttkrp_c(T.T, mats[::-1], T.ndim - 1 - n)
    return _mttkrp_c(np.ascontiguousarray(T), mats, n)


def _kr_rows(mats: Sequence[np.ndarray]) -> np.ndarray:
    """``khatri_rao(mats).T`` as a C-contiguous (R, prod I_n) array, no validation."""
    out = mats[-1].T
    R = out.shape[0]
    for M in reversed(mats[:-1]):
        out = (M.T[:, :, None] * out[:, None, :]).reshape(R, -1)
    return out


def _descend(W: np.ndarray, shape: tuple, mats: list[np.ndarray], out: list, offset: int) -> None:
    """Dimension-tree step: ``W`` (R, prod(shape)) is the data contracted with every
    factor outside ``shape``'s modes (rank first); split those modes in two halves and
    recurse. With the rank first, both contractions are batched BLAS products on
    contiguous slices (rank last, they were strided loops several times slower)."""
    if len(shape) == 1:
        out[offset] = np.ascontiguousarray(W.T)
        return
    q = (len(shape) + 1) // 2
    IL, IR = math.prod(shape[:q]), math.prod(shape[q:])
    W3 = W.reshape(W.shape[0], IL, IR)
    _descend(np.matmul(W3, _kr_rows(mats[q:])[:, :, None])[:, :, 0], shape[:q], mats[:q],
             out, offset)
    _descend(np.matmul(_kr_rows(mats[:q])[:, None, :], W3)[:, 0, :], shape[q:], mats[q:],
             out, offset + q)


def mttkrp_all(T: ArrayLike, factors: Sequence[ArrayLike]) -> list[np.ndarray]:
    """All N MTTKRPs ``[mttkrp(T, factors, n) for n in range(N)]``, sharing the work.

    Dimension tree: with ``p = floor(N/2)`` and ``T2 = T.reshape(I_0...I_{p-1}, -1)`` (free
    for a C-contiguous ``T``), two GEMMs ``T2 @ khatri_rao(A_p..A_{N-1})`` and
    ``T2.T @ khatri_rao(A_0..A_{p-1})`` are the only operations reading the whole tensor
    (the naive loop does N GEMMs and N - 1 unfolding copies). Each half is then split
    again on these small partial products (einsum over the rank) down to single modes.

    Parameters
    ----------
    T : array_like, shape (I_0, ..., I_{N-1}), N >= 2
        Any layout; a tensor neither C- nor F-contiguous is copied once.
    factors : sequence of array_like, each of shape (I_n, R)

    Returns
    -------
    list of ndarray, entry n of shape (I_n, R)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> T = rng.standard_normal((3, 4, 5, 2))
    >>> A = [rng.standard_normal((s, 3)) for s in T.shape]
    >>> G = mttkrp_all(T, A)
    >>> all(np.allclose(G[n], mttkrp(T, A, n)) for n in range(4))
    True
    """
    return MTTKRPTree(T, factors).all()


class MTTKRPTree:
    """The dimension tree of :func:`mttkrp_all`, evaluated half by half.

    Constructing it does the first of the two GEMMs, which is enough for the inner product
    ``<T, [[A_0, ..., A_{N-1}]]>`` (:meth:`inner`); :meth:`all` adds the second GEMM and
    returns every MTTKRP. A solver that evaluates trial points thus pays one pass over the
    tensor for a rejected point and two for an accepted one.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> T = rng.standard_normal((3, 4, 5))
    >>> A = [rng.standard_normal((s, 2)) for s in T.shape]
    >>> tree = MTTKRPTree(T, A)
    >>> bool(np.isclose(tree.inner(), np.sum(T * cpd_to_tensor(A))))
    True
    """

    def __init__(self, T: ArrayLike, factors: Sequence[ArrayLike]) -> None:
        self._build(*_prepare_mttkrp(T, factors))

    @classmethod
    def _unchecked(cls, T: np.ndarray, factors: list[np.ndarray]) -> MTTKRPTree:
        """The tree of an array and factors known to fit it (the engine's hot path: no
        validation)."""
        tree = cls.__new__(cls)
        tree._build(T, factors)
        return tree

    def _build(self, T: np.ndarray, mats: list[np.ndarray]) -> None:
        self.reversed = not T.flags.c_contiguous and T.flags.f_contiguous
        if self.reversed:
            T, mats = T.T, mats[::-1]
        T = np.ascontiguousarray(T)
        shape, N = T.shape, T.ndim
        # p = floor(N/2): the larger GEMM then contracts T2's long, contiguous rows.
        self.p = p = N // 2
        self.shape, self.mats = shape, mats
        self.T2 = T.reshape(math.prod(shape[:p]), math.prod(shape[p:]))
        # Partial products are kept rank first, (R, I...): see _descend.
        self.W_left = _kr_rows(mats[p:]) @ self.T2.T
        self._kr_left: np.ndarray | None = None
        self._all: list[np.ndarray] | None = None

    def _left_kr(self) -> np.ndarray:
        if self._kr_left is None:
            self._kr_left = _kr_rows(self.mats[: self.p])
        return self._kr_left

    def inner(self) -> float | complex:
        """``sum(T * [[A_0, ..., A_{N-1}]])`` from the first half of the tree (no
        conjugation; complex when T or the factors are)."""
        s = np.sum(self.W_left * self._left_kr())
        return complex(s) if np.iscomplexobj(s) else float(s)

    def all(self) -> list[np.ndarray]:
        """Every mode's MTTKRP (computed once, then cached)."""
        if self._all is None:
            p, shape, mats = self.p, self.shape, self.mats
            W_right = self._left_kr() @ self.T2
            out: list = [None] * len(shape)
            _descend(self.W_left, shape[:p], mats[:p], out, 0)
            _descend(W_right, shape[p:], mats[p:], out, p)
            self._all = out[::-1] if self.reversed else out
        return self._all


# ---------------------------------------------------------- Gramians, norms, inners
def gramians(factors: Sequence[ArrayLike]) -> list[np.ndarray]:
    """Gramians ``A^H A`` of each factor matrix.

    Parameters
    ----------
    factors : sequence of array_like, each of shape (I_n, R_n)

    Returns
    -------
    list of ndarray, each of shape (R_n, R_n)

    Examples
    --------
    >>> import numpy as np
    >>> [G.shape for G in gramians([np.ones((4, 2)), np.ones((3, 2))])]
    [(2, 2), (2, 2)]
    """
    return [_ct(M) @ M for M in _as_matrix_list(factors, "factors")]


def hadamard(matrices: Sequence[ArrayLike], skip: int | None = None) -> np.ndarray:
    """Elementwise (Hadamard) product of equally shaped matrices, optionally skipping one.

    ``hadamard(gramians(A), skip=n)`` equals ``K^H @ K`` with ``K = khatri_rao(A, skip=n)``.

    Parameters
    ----------
    matrices : sequence of array_like, all of the same shape
    skip : int, optional
        Index of a matrix to leave out.

    Returns
    -------
    ndarray, the common shape

    Examples
    --------
    >>> import numpy as np
    >>> hadamard([np.full((2, 2), 2.0), np.full((2, 2), 3.0), np.zeros((2, 2))], skip=2)
    array([[6., 6.],
           [6., 6.]])
    """
    mats, labels = _skip_one(_as_matrix_list(matrices, "matrices"), skip)
    for M, i in zip(mats[1:], labels[1:]):
        if M.shape != mats[0].shape:
            raise DataError(f"matrices[{i}]: expected shape {mats[0].shape} like "
                            f"matrices[{labels[0]}], got {M.shape}")
    out = mats[0].copy()
    for M in mats[1:]:
        out = out * M
    return out


def _flat(X: ArrayLike) -> np.ndarray:
    x = np.asarray(X).reshape(-1)
    return x if np.issubdtype(x.dtype, np.inexact) else x.astype(np.float64)


def frob(T: ArrayLike, squared: bool = False) -> float:
    """Frobenius norm ``sqrt(sum |T|^2)`` of an array of any shape.

    Parameters
    ----------
    T : array_like
    squared : bool, default False
        Return the squared norm instead (no square root).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> frob(np.full((2, 2, 2), 0.5)), frob(np.ones((2, 3)), squared=True)
    (1.4142135623730951, 6.0)
    """
    x = _flat(T)
    s = float(np.vdot(x, x).real)
    return s if squared else math.sqrt(s)


def inner(X: ArrayLike, Y: ArrayLike) -> float | complex:
    """Inner product ``sum(conj(X) * Y)`` of two arrays of the same shape.

    For real data this is the sum of elementwise products; ``inner(T, T) = frob(T)**2``.

    Parameters
    ----------
    X, Y : array_like, same shape

    Returns
    -------
    float, or complex when either input is complex

    Examples
    --------
    >>> import numpy as np
    >>> inner(np.ones((2, 3)), np.full((2, 3), 2.0))
    12.0
    """
    X, Y = np.asarray(X), np.asarray(Y)
    if X.shape != Y.shape:
        raise DataError(f"Y: expected shape {X.shape} to match X, got {Y.shape}")
    s = np.vdot(_flat(X), _flat(Y))
    return complex(s) if np.iscomplexobj(s) else float(s)


def _weighted_sum(H: np.ndarray, wa: np.ndarray | None, wb: np.ndarray | None) -> complex:
    left = np.ones(H.shape[0]) if wa is None else wa.conj()
    right = np.ones(H.shape[1]) if wb is None else wb
    return complex(left @ H @ right)


def _check_weights(weights: ArrayLike | None, R: int, name: str) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights)
    if w.shape != (R,):
        raise DataError(f"{name}: expected shape ({R},) to match the rank, got {w.shape}")
    return w


def cpd_norm_squared(factors: Sequence[ArrayLike], weights: ArrayLike | None = None) -> float:
    """Squared Frobenius norm of a CPD from its Gramians, never forming the tensor.

    ``||T||^2 = w^H (A_0^H A_0 * ... * A_{N-1}^H A_{N-1}) w`` (``*``: Hadamard product).

    Parameters
    ----------
    factors : sequence of array_like, each of shape (I_n, R)
    weights : array_like, shape (R,), optional

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> A = [np.ones((2, 1)), np.ones((3, 1))]
    >>> cpd_norm_squared(A, weights=[2.0])
    24.0
    """
    mats = _check_factors(factors)
    w = _check_weights(weights, mats[0].shape[1], "weights")
    return _weighted_sum(hadamard(gramians(mats)), w, w).real


def cpd_inner(
    factors_a: Sequence[ArrayLike],
    factors_b: Sequence[ArrayLike],
    *,
    weights_a: ArrayLike | None = None,
    weights_b: ArrayLike | None = None,
) -> float | complex:
    """Inner product ``<T_a, T_b>`` of two CPDs of the same shape (ranks may differ).

    ``<T_a, T_b> = w_a^H (A_0^H B_0 * ... * A_{N-1}^H B_{N-1}) w_b`` (``*``: Hadamard), as
    :func:`inner` of the full tensors, which are never formed.

    Parameters
    ----------
    factors_a, factors_b : sequence of array_like, each of shape (I_n, R_a) / (I_n, R_b)
    weights_a, weights_b : array_like, shape (R_a,) / (R_b,), optional

    Returns
    -------
    float, or complex when any input is complex

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = [rng.standard_normal((s, 2)) for s in (3, 4, 5)]
    >>> B = [rng.standard_normal((s, 3)) for s in (3, 4, 5)]
    >>> bool(np.isclose(cpd_inner(A, B), inner(cpd_to_tensor(A), cpd_to_tensor(B))))
    True
    """
    A = _check_factors(factors_a, name="factors_a")
    B = _check_factors(factors_b, tuple(M.shape[0] for M in A), name="factors_b")
    wa = _check_weights(weights_a, A[0].shape[1], "weights_a")
    wb = _check_weights(weights_b, B[0].shape[1], "weights_b")
    H = hadamard([_ct(a) @ b for a, b in zip(A, B)])
    s = _weighted_sum(H, wa, wb)
    pieces = A + B + [w for w in (wa, wb) if w is not None]
    return s if any(np.iscomplexobj(x) for x in pieces) else s.real
