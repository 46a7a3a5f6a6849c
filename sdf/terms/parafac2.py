r"""PARAFAC2 term: slices ``X_k ≈ A diag(c_k) B^T P_k^T`` with orthonormal ``P_k``.

The term's inputs are ``A`` (I x R), ``B`` (R x R) and ``C`` (K x R); the projections
``P_k`` (J_k x R, ``P_k^T P_k = I``) are not variables of the engine but are eliminated
at every point (variable projection): the term's objective is

.. math:: f(A, B, C) = \min_{P_k^T P_k = I} \tfrac12 \sum_k
   \| W_k * (A D_k B^T P_k^T - X_k) \|^2, \qquad D_k = \mathrm{diag}(c_k),

``W_k`` the known entries of slice ``k``. With every entry known the minimiser is the
orthogonal Procrustes solution ``P_k = U V^T`` of ``X_k^T A D_k B^T = U S V^T``, and
``f = (||X||^2 - 2 sum_k tr S_k + sum_k ||A D_k B^T||^2) / 2``. With missing entries it is
found by majorization (the missing entries filled with the model, Procrustes again),
warm-started from the previous point's projections.

Derivatives. ``P_k`` minimises the inner problem, so the gradient is the partial
gradient at fixed ``P_k`` (envelope theorem): with ``M_k = A D_k B^T`` and
``F_k = (W_k * (M_k P_k^T - X_k)) P_k``, it is the CPD adjoint of ``F`` (a CPD of the
I x R x K array ``F`` in ``A, B, C``). The Gauss-Newton product is that of the joint
problem in ``(A, B, C, P)`` with the change of ``P`` eliminated (its Schur complement):
``J^T (I - Π) J v`` with ``Π`` the projection on the rotations ``P_k -> P_k (I + Ω_k)``
(``Ω_k`` skew). With every entry known, the other tangent directions of ``P_k`` are
orthogonal to the model's directions, so this is exactly the Gauss-Newton matrix of the
reduced problem (the Hessian of ``f`` at an exact fit): Gauss-Newton converges
quadratically on exact data, where alternating updates of ``P`` and ``(A, B, C)``
(the fixed-``P`` Gramian) converge linearly. It costs ``O(K I R^2)`` per product, the data
are not read: the products use ``Q_{k,i} = P_k^T diag(W_k[i]) P_k`` (the identity with
every entry known), formed once per point.

Complex values. The model ``A D_k B^T P_k^T`` is holomorphic in ``A``, ``B``, ``C`` at
fixed ``P_k``, and ``P_k`` is unitary (``P_k^H P_k = I``): the Procrustes problem is
that of ``X_k^T conj(M_k)``, ``F_k = (W_k * (M_k P_k^T - X_k)) conj(P_k)``, the gradient
the conjugate cogradient ``J^H r`` and the Gauss-Newton product ``J^H (I - Π) J v`` (see
:mod:`sdf.problem`). The rotations are then ``P_k -> P_k (I + Ω_k)`` with ``Ω_k``
skew-Hermitian: ``R^2`` real directions per slice (``R (R - 1) / 2`` for real values),
and ``Π`` their projection for the real inner product ``Re <a, b>``; the product is real-
but not complex-linear, as the engine allows (it works on the real split).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sdf.algebra import cpd_norm_squared, frob
from sdf.errors import DataError, ModelError
from sdf.expr import Expr
from sdf.numerics import ldexp
from sdf.tensors._base import _native
from sdf.terms._base import Block, Findings, RefBuilder, Term, TermState, _exponent_of
from sdf.terms.cpd import _cpd_findings

__all__ = ["PARAFAC2"]

#: The majorization for missing entries stops when no entry of any ``P_k`` moves more
#: (f is stationary in P: its error is of the order of the square of this).
_INNER_TOL = 1e-9
_INNER_MAX_ITER = 1000


class _Slices:
    """The slices padded to a common width: zeros where missing or beyond ``J_k``."""

    def __init__(self, data: Any) -> None:
        if isinstance(data, np.ndarray) and data.ndim == 3:
            data = list(data)
        if (isinstance(data, (str, bytes, np.ndarray, Mapping))
                or not isinstance(data, Sequence) or len(data) == 0):
            raise DataError("PARAFAC2 data: expected a non-empty list of matrices X_k "
                            f"(I, J_k) or a 3-D array of slices, got {type(data).__name__}")
        slices: list[np.ndarray] = []
        for k, X in enumerate(data):
            where = f"PARAFAC2 data, slice {k}"
            raw = np.asarray(X)
            try:
                arr = np.array(raw, dtype=complex if np.iscomplexobj(raw) else float)
            except (TypeError, ValueError):
                raise DataError(f"{where}: expected a numeric matrix, got "
                                f"{type(X).__name__}") from None
            if arr.ndim != 2 or 0 in arr.shape:
                raise DataError(f"{where}: expected a non-empty matrix (I, J_k), got shape "
                                f"{arr.shape}")
            if slices and arr.shape[0] != slices[0].shape[0]:
                raise DataError(f"{where}: expected {slices[0].shape[0]} rows like slice 0 "
                                f"(the shared mode), got {arr.shape[0]}")
            bad = np.argwhere(np.isinf(arr))  # (either part of a complex entry)
            if bad.size:
                raise DataError(f"{where}: Inf entry at {tuple(int(i) for i in bad[0])} "
                                f"({len(bad)} in all); mark missing entries with NaN")
            arr.setflags(write=False)
            slices.append(arr)
        self.slices: list[np.ndarray] = slices
        self.widths = np.array([X.shape[1] for X in slices])
        K, I, J = len(slices), slices[0].shape[0], int(self.widths.max())
        self.shape = (I, K)
        #: Whether any slice is complex (then every one is held as complex).
        self.is_complex = any(np.iscomplexobj(X) for X in slices)
        self.X = np.zeros((K, I, J), dtype=complex if self.is_complex else float)
        known = np.zeros((K, I, J), dtype=bool)
        for k, X in enumerate(slices):
            ok = ~np.isnan(X)  # NaN in either part of a complex entry: missing
            known[k, :, : X.shape[1]] = ok
            self.X[k, :, : X.shape[1]] = np.where(ok, X, 0.0)
        self.n_known = int(known.sum())
        if self.n_known == 0:
            raise DataError("PARAFAC2 data: no known entry (all NaN)")
        all_known = self.n_known == sum(X.size for X in slices)
        #: Known entries as 0/1 (None: every entry of every slice is known).
        self.W: np.ndarray | None = None if all_known else known.astype(float)
        #: Rows of P_k that exist (None: every slice has the full width).
        self.valid: np.ndarray | None = (
            None if np.all(self.widths == J) else np.arange(J) < self.widths[:, None])
        self.norm_squared = frob(self.X, squared=True)

    def filled(self, X: np.ndarray) -> _Slices:
        """Slices of the same widths with every entry known, from the padded (K, I, J)
        array ``X`` (zeros beyond ``J_k``; taken as is, not copied nor checked)."""
        out = object.__new__(_Slices)
        out.widths, out.shape, out.valid = self.widths, self.shape, self.valid
        out.X, out.W = X, None
        out.is_complex = bool(np.iscomplexobj(X))
        out.slices = [Y[:, :J] for Y, J in zip(X, self.widths)]
        out.n_known = sum(Y.size for Y in out.slices)
        out.norm_squared = frob(X, squared=True)
        return out


def _as_values(values: Sequence[Any]) -> list[np.ndarray]:
    """``[A, B, C]`` as float or complex arrays (complex ones stay complex)."""
    return [_native(v) for v in values]


def _procrustes_target(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``X_k^T conj(M_k)`` per slice (K, J, R): ``P_k = polar(.)`` maximises ``Re <X_k,
    M_k P_k^T>`` over (semi-)unitary ``P_k``."""
    return np.swapaxes(X, 1, 2) @ (M.conj() if np.iscomplexobj(M) else M)


def _polar(Z: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per slice, the orthonormal (unitary) ``P`` nearest to ``Z`` (J x R) and the singular
    values."""
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    P = U @ Vt
    if valid is not None:
        P *= valid[:, :, None]  # rows beyond J_k stay exactly zero
    return P, s


@functools.lru_cache(maxsize=None)
def _rotation_basis(R: int, complex_values: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A basis (m, R, R) of the skew-symmetric (real) or skew-Hermitian (complex) R x R
    matrices, orthonormal up to scale for ``Re <S, T>``: ``E_ab - E_ba`` (a < b), and for
    complex values also ``i (E_ab + E_ba)`` and ``i E_aa``; and its nonzeros, two per
    element (the second of ``i E_aa`` a zero): rows, columns and values, each (m, 2).
    Read-only (shared by every point)."""
    ia, ib = np.triu_indices(R, 1)
    diag = np.arange(R)
    pairs = [(np.stack([ia, ib], 1), np.stack([ib, ia], 1), np.tile([1.0, -1.0], (len(ia), 1)))]
    if complex_values:
        pairs += [(np.stack([ia, ib], 1), np.stack([ib, ia], 1), np.full((len(ia), 2), 1j)),
                  (np.stack([diag, diag], 1), np.stack([diag, diag], 1),
                   np.tile([1j, 0.0], (R, 1)))]
    rows, cols, vals = (np.concatenate(parts) for parts in zip(*pairs))
    basis = np.zeros((len(rows), R, R), dtype=vals.dtype)
    for p in range(2):
        np.add.at(basis, (np.arange(len(rows)), rows[:, p], cols[:, p]), vals[:, p])
    for arr in (basis, rows, cols, vals):
        arr.setflags(write=False)
    return basis, rows, cols, vals


def _point_key(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> bytes:
    """A point's identity: the bytes of its factors."""
    return b"".join(np.ascontiguousarray(X).tobytes() for X in (A, B, C))


def _model_rows(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``M_k = A D_k B^T`` for every k, shape (K, I, R)."""
    return (A[None] * C[:, None, :]) @ B.T


def _forward(A: np.ndarray, B: np.ndarray, C: np.ndarray, dA: np.ndarray, dB: np.ndarray,
             dC: np.ndarray) -> np.ndarray:
    """The change of every ``M_k`` along ``(dA, dB, dC)``, shape (K, I, R)."""
    return ((dA[None] * C[:, None, :] + A[None] * dC[:, None, :]) @ B.T
            + (A[None] * C[:, None, :]) @ dB.T)


def _adjoint(A: np.ndarray, B: np.ndarray, C: np.ndarray, F: np.ndarray
             ) -> list[np.ndarray]:
    """The adjoint of :func:`_forward`: ``F`` (K, I, R) -> gradients for A, B, C (complex:
    the Hermitian adjoint, ``J^H F``)."""
    if any(np.iscomplexobj(X) for X in (A, B, C)):
        A, B, C = A.conj(), B.conj(), C.conj()
    FtA = np.swapaxes(F, 1, 2) @ A  # (K, R, R): [k, s, r] = sum_i F[k, i, s] A[i, r]
    gA = np.einsum("kir,kr->ir", F @ B, C)
    gB = np.einsum("ksr,kr->sr", FtA, C)
    gC = np.einsum("ksr,sr->kr", FtA, B)
    return [gA, gB, gC]


class _Parafac2State(TermState):
    """The term at one point; ``Q`` is None when every entry is known (then Q = I)."""

    def __init__(self, values: Sequence[np.ndarray], P: np.ndarray, F: np.ndarray,
                 Q: np.ndarray | None, fval: float) -> None:
        self.A, self.B, self.C = _as_values(values)
        self.P, self.Q, self.fval = P, Q, fval
        self.is_complex = any(np.iscomplexobj(X) for X in (self.A, self.B, self.C, P))
        self.M = _model_rows(self.A, self.B, self.C)
        self._gradient = _adjoint(self.A, self.B, self.C, F)
        R = self.A.shape[1]
        self._basis, *self._entries = _rotation_basis(R, self.is_complex)
        self._ginv = self._rotation_gramian_pinv() if len(self._basis) else None

    def _apply_q(self, dM: np.ndarray) -> np.ndarray:
        """``(W_k * (dM_k P_k^T)) conj(P_k)`` for every k: the fixed-P Gramian in M's
        space."""
        return dM if self.Q is None else np.einsum("kia,kiab->kib", dM, self.Q)

    def _rotation_gramian_pinv(self) -> np.ndarray:
        """Per slice, the pseudo-inverse of the Gramian ``Re <M_k S_m, Q(M_k S_n)>`` of the
        rotation directions (``S_m`` the basis of :func:`_rotation_basis`), (K, m, m)."""
        M, Q = self.M, self.Q
        R = M.shape[2]
        Mh = M.conj() if self.is_complex else M
        # T[k, a, c, d, b] = sum_i conj(M_ia) M_ic Q_i[d, b], so that
        # <M S, Q(M S')> = sum conj(S[a, b]) T[a, c, d, b] S'[c, d]
        if Q is None:
            T = np.einsum("kac,db->kacdb", np.swapaxes(Mh, 1, 2) @ M, np.eye(R))
        else:
            T = np.einsum("kia,kic,kidb->kacdb", Mh, M, Q)
        rows, cols, vals = self._entries
        G = np.zeros((M.shape[0], len(rows), len(rows)))
        for p in range(2):
            for q in range(2):
                a, b = rows[:, p][:, None], cols[:, p][:, None]
                c, d = rows[:, q][None, :], cols[:, q][None, :]
                weight = vals[:, p].conj()[:, None] * vals[:, q][None, :]
                G += (weight * T[:, a, c, d, b]).real
        G = 0.5 * (G + np.swapaxes(G, 1, 2))
        w, V = np.linalg.eigh(G)
        top = np.max(np.abs(w), axis=1, keepdims=True)
        keep = w > 1e-12 * np.where(top > 0, top, 1.0)
        inv_w = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
        return np.einsum("kmi,ki,kni->kmn", V, inv_w, V)

    def _rotations(self, Z: np.ndarray) -> np.ndarray:
        """The rotations ``Ω_k`` (K, R, R) whose directions ``M_k Ω_k`` are the projection
        of a direction ``H`` with ``Z_k = M_k^H Q(H_k)`` (its inner products ``Re <M_k
        S_m, Q(H_k)>`` are ``Re <S_m, Z_k>``)."""
        S, ginv = self._basis, self._ginv
        assert ginv is not None  # (called only where there are rotations)
        coords = np.einsum("mab,kab->km", S.conj(), Z).real
        omega = np.einsum("kmn,kn->km", ginv, coords)
        return np.einsum("km,mab->kab", omega, S)

    def gradient(self) -> list[np.ndarray]:
        return self._gradient

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.Q is None and not self.is_complex:
            return self._gramian_gn_product(*dvalues)
        dA, dB, dC = _as_values(dvalues)
        H = self._apply_q(_forward(self.A, self.B, self.C, dA, dB, dC))
        if self._ginv is not None:
            # Remove the part a rotation of the P_k explains: J^H (I - Π) J v.
            Mh = self.M.conj() if self.is_complex else self.M
            H = H - self._apply_q(self.M @ self._rotations(np.swapaxes(Mh, 1, 2) @ H))
        return _adjoint(self.A, self.B, self.C, H)

    def _gramian_gn_product(self, dA: np.ndarray, dB: np.ndarray, dC: np.ndarray
                            ) -> list[np.ndarray]:
        """:meth:`gn_product` with every entry known and real values, from R x R products
        only."""
        A, B, C = self.A, self.B, self.C
        AtA, BtB, CtC = A.T @ A, B.T @ B, C.T @ C
        dAtA, dBtB, dCtC = dA.T @ A, dB.T @ B, dC.T @ C
        out = [dA @ (BtB * CtC) + A @ (BtB * dCtC + dBtB * CtC),
               dB @ (AtA * CtC) + B @ (dAtA * CtC + AtA * dCtC),
               dC @ (AtA * BtB) + C @ (dAtA * BtB + AtA * dBtB)]
        if self._ginv is None:
            return out
        # S_k = M_k^T dM_k, then the rotations Ω_k it asks for, then J^T (M_k Ω_k).
        AtdM = ((A.T @ dA)[None] * C[:, None, :] + AtA[None] * dC[:, None, :]) @ B.T \
            + (AtA[None] * C[:, None, :]) @ dB.T
        Om = self._rotations((B[None] * C[:, None, :]) @ AtdM)
        BtOB = B.T @ Om @ B  # (K, R, R)
        CC = C[:, :, None] * C[:, None, :]
        out[0] = out[0] - A @ np.sum(CC * BtOB, axis=0)
        out[1] = out[1] - np.sum(np.swapaxes(Om, 1, 2) @ (B[None] * C[:, None, :])
                                 @ (AtA[None] * C[:, None, :]), axis=0)
        out[2] = out[2] - np.einsum("rs,ks,ksr->kr", AtA, C, BtOB)
        return out

    def blocks(self) -> list[Block]:
        """The fixed-P diagonal blocks (an upper bound of the reduced ones; complex: the
        Hermitian blocks ``conj`` of the Gramians, as for a CPD)."""
        A, B, C, Q = self.A, self.B, self.C, self.Q
        Ac, Bc, Cc = (X.conj() for X in (A, B, C)) if self.is_complex else (A, B, C)
        if Q is None:
            AtA, BtB, CtC = A.T @ Ac, B.T @ Bc, C.T @ Cc
            return [BtB * CtC, AtA * CtC, AtA * BtB]
        BQB = np.einsum("ar,kiab,bt->kirt", B, Q, Bc)
        AC, ACc = A[None] * C[:, None, :], Ac[None] * Cc[:, None, :]
        diagQ = np.einsum("kiss->kis", Q).real
        return [np.einsum("kirt,kr,kt->irt", BQB, C, Cc),
                np.einsum("kis,kir,kit->srt", diagQ, AC, ACc),
                np.einsum("ir,it,kirt->krt", A, Ac, BQB)]


class PARAFAC2(Term):
    r"""PARAFAC2 of a list of matrices with a shared first mode.

    .. math:: X_k \approx A \,\mathrm{diag}(c_k)\, B_k^T, \qquad B_k = P_k B,
       \quad P_k^H P_k = I,

    so that ``B_k^T B_k = B^T B`` for every k (Kiers, ten Berge and Bro's direct fitting
    formulation). The term's inputs are ``[A, B, C]``; the projections ``P_k`` are
    eliminated at every point in closed form (orthogonal Procrustes; see the module
    docstring for missing entries), so ``A``, ``B`` and ``C`` can be shared with other
    terms, sent through transforms (e.g. ``tf.nonneg``) and fitted by any solver.
    ``A``, ``B_k`` and ``C`` are unique up to a common permutation and scaling of the
    components and the sign of each ``B_k`` together with ``c_k`` (complex values: a phase,
    ``e^{iθ_k} B_k`` with ``e^{-iθ_k} c_k``); ``B`` itself only up to ``B -> Q B`` (Q
    orthogonal or unitary): compare the ``B_k``. Complex slices or factors make the
    ``P_k`` unitary (``P_k^H P_k = I``; see the module docstring).

    Parameters
    ----------
    slices : sequence of array_like, each of shape (I, J_k), or array of shape (K, I, J)
        The matrices ``X_k``, real or complex; their widths ``J_k`` may differ (each ``J_k
        >= R``). NaN entries are missing; Inf entries are an error. Copied, never
        modified.
    factors : sequence ``[A, B, C]`` of Expr or array_like
        ``A`` of shape (I, R), ``B`` of shape (R, R), ``C`` of shape (K, R).
    weight, relweight : float, optional
        See :class:`sdf.terms.Term` (default: Tensorlab's relative weight convention,
        the weight being normalised by the number of known entries).

    Examples
    --------
    >>> import numpy as np, sdf
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = rng.standard_normal((8, 2)), rng.standard_normal((2, 2)), rng.random((5, 2))
    >>> P = [np.linalg.qr(rng.standard_normal((J, 2)))[0] for J in (4, 5, 6, 5, 4)]
    >>> X = [A @ np.diag(c) @ (Pk @ B).T for c, Pk in zip(C, P)]
    >>> a, b, c = (sdf.Variable(x + 0.01 * rng.standard_normal(x.shape)) for x in (A, B, C))
    >>> term = sdf.PARAFAC2(X, [a, b, c])
    >>> result = sdf.Model(X=term).fit(max_iter=100)
    >>> bool(result.relerr["X"] < 1e-6)
    True
    >>> [Pk.shape for Pk in term.projections([result[a], result[b], result[c]])][:2]
    [(4, 2), (5, 2)]
    """

    kind = "PARAFAC2"
    spec_key = "parafac2"
    is_data_term = True
    complex_values = True

    def __init__(self, slices: Any, factors: Sequence[Any], weight: float | None = None,
                 relweight: float | None = None) -> None:
        self._data = slices if isinstance(slices, _Slices) else _Slices(slices)
        if isinstance(factors, np.ndarray) or not isinstance(factors, Sequence):
            raise ModelError(f"{self.kind}: factors must be a list [A, B, C]")
        if len(factors) != 3:
            raise ModelError(f"{self.kind}: expected 3 factors [A, B, C], got {len(factors)}")
        super().__init__(factors, weight=weight, relweight=relweight)
        self._warm: np.ndarray | None = None  # last projections (majorization's start)
        # With missing entries the projections at a point depend on the majorization's
        # start, the last point's: the lowest point evaluated (where a fit ends) keeps its
        # own, for :meth:`projections`, or the point a fit reported where it ended
        # elsewhere (:meth:`_reported_fval`).
        self._lowest: dict[str, Any] = {}

    # ------------------------------------------------------------ data
    @property
    def slices(self) -> list[np.ndarray]:
        """The slices ``X_k`` as given (read-only copies, NaN where missing)."""
        return list(self._data.slices)

    @property
    def widths(self) -> tuple[int, ...]:
        """The widths ``J_k`` of the slices."""
        return tuple(int(J) for J in self._data.widths)

    @property
    def rank(self) -> int:
        return int(self.inputs[0].shape[-1])

    @property
    def n_entries(self) -> int:
        return self._data.n_known

    @property
    def data_norm(self) -> float:
        return float(np.sqrt(self._data.norm_squared))

    def model_log2_norm(self, values: Sequence[np.ndarray]) -> float:
        """``log2`` of the model's norm, ``sum_k ||A D_k B^T||^2 = sum (A^H A * B^H B * C^H
        C)`` (the ``P_k`` keep norms), from normalised factors: for rescaling a start far
        from the data's scale (:func:`sdf.fit.rescaled_start`)."""
        shifts = [_exponent_of(X) for X in values]
        norm = math.sqrt(cpd_norm_squared([ldexp(X, -k) for X, k in
                                           zip(_as_values(values), shifts)]))
        return math.log2(norm) + sum(shifts) if norm > 0 else -math.inf

    def check(self, where: str) -> None:
        I, K = self._data.shape
        A, B, C = self.inputs
        for n, (expr, rows, what) in enumerate(
                ((A, I, "the rows of every slice"), (B, None, ""),
                 (C, K, "the number of slices"))):
            place = f"{where}, factor {n} ({expr.label()!r})"
            if len(expr.shape) != 2:
                raise ModelError(f"{place}: expected a matrix, got shape {expr.shape}")
            if rows is not None and expr.shape[0] != rows:
                raise ModelError(f"{place}: expected {rows} rows to match {what}, "
                                 f"got {expr.shape[0]}")
        R = A.shape[1]
        if R < 1:
            raise ModelError(f"{where}: rank must be >= 1, got {R}")
        if B.shape != (R, R):
            raise ModelError(f"{where}, factor 1 ({B.label()!r}): expected shape (R, R) = "
                             f"({R}, {R}) for rank {R}, got {B.shape}")
        if C.shape[1] != R:
            raise ModelError(f"{where}, factor 2 ({C.label()!r}): expected {R} columns "
                             f"like A, got {C.shape[1]}")
        narrow = np.flatnonzero(self._data.widths < R)
        if narrow.size:
            k = int(narrow[0])
            raise ModelError(f"{where}: slice {k} has {self._data.widths[k]} columns, fewer "
                             f"than the rank {R} (P_k needs {R} orthonormal columns)")

    # ------------------------------------------------------------ evaluation
    def _projections(self, A: np.ndarray, B: np.ndarray, C: np.ndarray,
                     M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The optimal padded projections (K, J, R) and the singular values of the last
        Procrustes problem."""
        d = self._data
        XtM = _procrustes_target(d.X, M)
        if d.W is None:
            return _polar(XtM, d.valid)
        P = self._warm
        if P is None or P.shape != XtM.shape:
            P, s = _polar(XtM, d.valid)
        unknown = 1.0 - d.W
        for _ in range(_INNER_MAX_ITER):
            filled_part = _procrustes_target(unknown * (M @ np.swapaxes(P, 1, 2)), M)
            P_new, s = _polar(XtM + filled_part, d.valid)
            step = float(np.max(np.abs(P_new - P)))
            P = P_new
            if step <= _INNER_TOL:
                break
        self._warm = P
        return P, s

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        A, B, C = _as_values(values)
        d = self._data
        M = _model_rows(A, B, C)
        P, s = self._projections(A, B, C, M)
        Pc = P.conj() if np.iscomplexobj(P) else P
        if d.W is None:
            F = M - d.X @ Pc
            Ac, Bc, Cc = (X.conj() for X in (A, B, C))
            fval = 0.5 * (d.norm_squared - 2.0 * float(s.sum())
                          + float(np.sum((A.T @ Ac) * (B.T @ Bc) * (C.T @ Cc)).real))
            return _Parafac2State(values, P, F, None, max(fval, 0.0))
        residual = d.W * (M @ np.swapaxes(P, 1, 2) - d.X)
        K, J, R = P.shape
        PP = (P[:, :, :, None] * Pc[:, :, None, :]).reshape(K, J, R * R)
        Q = (d.W @ PP).reshape(K, -1, R, R)
        fval = 0.5 * frob(residual, squared=True)
        if fval < self._lowest.get("fval", np.inf):
            self._lowest.update(fval=fval, key=_point_key(A, B, C), P=P)
        return _Parafac2State(values, P, residual @ Pc, Q, fval)

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        if self._data.W is not None:
            return self._reported_fval(values, fval)
        # With every entry known, f comes from ||X||^2 - 2 tr S + ||M||^2: below ~1e-6 of
        # ||X||^2 it has lost digits, so the residual is formed.
        if fval > 1e-6 * self._data.norm_squared:
            return fval
        A, B, C = _as_values(values)
        M = _model_rows(A, B, C)
        P, _ = self._projections(A, B, C, M)
        residual = M @ np.swapaxes(P, 1, 2) - self._data.X
        return 0.5 * frob(residual, squared=True)

    def _reported_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        """With missing entries, the ``f`` a fit reports at ``values``: that of the
        projections :meth:`projections` returns there. Evaluated twice, a point may get two
        ``f`` (each majorization starts from the last point's projections): the lowest
        point evaluated keeps the lower (a complex fit reported relative error 5.255e-7
        where its returned projections gave 5.234e-7); any other point gets its projections
        anew and keeps them."""
        A, B, C = _as_values(values)
        key = _point_key(A, B, C)
        lowest = self._lowest
        if lowest.get("key") == key:
            return float(lowest["fval"])
        M = _model_rows(A, B, C)
        P, _ = self._projections(A, B, C, M)
        d = self._data
        f = 0.5 * frob(d.W * (M @ np.swapaxes(P, 1, 2) - d.X), squared=True)
        lowest.update(fval=f, key=key, P=P)
        return f

    def projections(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The optimal ``P_k`` (J_k, R) at ``values = [A, B, C]``: with missing entries,
        those the term used there when it is the lowest point evaluated or the one a fit
        reported (where a fit ended: its reported error is theirs)."""
        A, B, C = _as_values(values)
        lowest = self._lowest
        if self._data.W is not None and lowest.get("key") == _point_key(A, B, C):
            P = lowest["P"]
        else:
            P, _ = self._projections(A, B, C, _model_rows(A, B, C))
        return [P[k, :J].copy() for k, J in enumerate(self._data.widths)]

    def slice_factors(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The evolving factors ``B_k = P_k B`` (J_k, R) at ``values = [A, B, C]``."""
        B = _as_values(values)[1]
        return [P @ B for P in self.projections(values)]

    # ------------------------------------------------------------ self-description
    def describe(self) -> str:
        J = self._data.widths
        width = f"{J.min()}" if J.min() == J.max() else f"{J.min()}..{J.max()}"
        missing = "" if self._data.W is None else ", with missing entries"
        return (f"{self.kind} of {len(J)} slices ({self._data.shape[0]} x {width}"
                f"{missing}), rank {self.rank}")

    @classmethod
    def from_spec(cls, entry: Mapping[str, Any], refs: RefBuilder, where: str) -> Term:
        if "data" not in entry:
            raise ModelError(f"{where}: missing 'data' (the list of slices)")
        weights = {k: entry[k] for k in ("weight", "relweight") if k in entry}
        factors = refs(entry[cls.spec_key], f"{where}[{cls.spec_key!r}]")
        return cls(entry["data"], factors, **weights)

    def spec_entry(self, ref: Callable[[Expr], Any]) -> dict[str, Any]:
        return {"data": self.slices, **super().spec_entry(ref)}

    def check_result(self, name: str, values: Sequence[np.ndarray],
                     start: Sequence[np.ndarray], relerr: float) -> Findings:
        """Degenerate components (as in a CPD of ``A``, ``B``, ``C``)."""
        return _cpd_findings(name, [np.asarray(v) for v in values])
