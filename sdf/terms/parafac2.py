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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sdf.errors import DataError, ModelError
from sdf.expr import Expr
from sdf.terms._base import Block, Findings, RefBuilder, Term, TermState
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
            if np.iscomplexobj(raw):
                raise DataError(f"{where}: complex entries are not supported")
            try:
                arr = np.array(raw, dtype=float)
            except (TypeError, ValueError):
                raise DataError(f"{where}: expected a numeric matrix, got "
                                f"{type(X).__name__}") from None
            if arr.ndim != 2 or 0 in arr.shape:
                raise DataError(f"{where}: expected a non-empty matrix (I, J_k), got shape "
                                f"{arr.shape}")
            if slices and arr.shape[0] != slices[0].shape[0]:
                raise DataError(f"{where}: expected {slices[0].shape[0]} rows like slice 0 "
                                f"(the shared mode), got {arr.shape[0]}")
            bad = np.argwhere(np.isinf(arr))
            if bad.size:
                raise DataError(f"{where}: Inf entry at {tuple(int(i) for i in bad[0])} "
                                f"({len(bad)} in all); mark missing entries with NaN")
            arr.setflags(write=False)
            slices.append(arr)
        self.slices: list[np.ndarray] = slices
        self.widths = np.array([X.shape[1] for X in slices])
        K, I, J = len(slices), slices[0].shape[0], int(self.widths.max())
        self.shape = (I, K)
        self.X = np.zeros((K, I, J))
        known = np.zeros((K, I, J), dtype=bool)
        for k, X in enumerate(slices):
            ok = ~np.isnan(X)
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
        self.norm_squared = float(np.sum(self.X * self.X))

    def filled(self, X: np.ndarray) -> _Slices:
        """Slices of the same widths with every entry known, from the padded (K, I, J)
        array ``X`` (zeros beyond ``J_k``; taken as is, not copied nor checked)."""
        out = object.__new__(_Slices)
        out.widths, out.shape, out.valid = self.widths, self.shape, self.valid
        out.X, out.W = X, None
        out.slices = [Y[:, :J] for Y, J in zip(X, self.widths)]
        out.n_known = sum(Y.size for Y in out.slices)
        out.norm_squared = float(np.sum(X * X))
        return out


def _polar(Z: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per slice, the orthonormal ``P`` nearest to ``Z`` (J x R) and the singular values."""
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    P = U @ Vt
    if valid is not None:
        P *= valid[:, :, None]  # rows beyond J_k stay exactly zero
    return P, s


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
    """The adjoint of :func:`_forward`: ``F`` (K, I, R) -> gradients for A, B, C."""
    FtA = np.swapaxes(F, 1, 2) @ A  # (K, R, R): [k, s, r] = sum_i F[k, i, s] A[i, r]
    gA = np.einsum("kir,kr->ir", F @ B, C)
    gB = np.einsum("ksr,kr->sr", FtA, C)
    gC = np.einsum("ksr,sr->kr", FtA, B)
    return [gA, gB, gC]


class _Parafac2State(TermState):
    """The term at one point; ``Q`` is None when every entry is known (then Q = I)."""

    def __init__(self, values: Sequence[np.ndarray], P: np.ndarray, F: np.ndarray,
                 Q: np.ndarray | None, fval: float) -> None:
        self.A, self.B, self.C = (np.asarray(v, dtype=float) for v in values)
        self.P, self.Q, self.fval = P, Q, fval
        self.M = _model_rows(self.A, self.B, self.C)
        self._gradient = _adjoint(self.A, self.B, self.C, F)
        R = self.A.shape[1]
        self._ia, self._ib = np.triu_indices(R, 1)
        self._ginv = self._rotation_gramian_pinv() if R > 1 else None

    def _apply_q(self, dM: np.ndarray) -> np.ndarray:
        """``(W_k * (dM_k P_k^T)) P_k`` for every k: the fixed-P Gramian in M's space."""
        return dM if self.Q is None else np.einsum("kia,kiab->kib", dM, self.Q)

    def _rotation_gramian_pinv(self) -> np.ndarray:
        """Per slice, the pseudo-inverse of the Gramian of the rotation directions
        ``M_k S_m`` (``S_m = E_ab - E_ba``, a < b), shape (K, m, m)."""
        M, Q, ia, ib = self.M, self.Q, self._ia, self._ib
        R = M.shape[2]
        # T[k, a, c, d, b] = sum_i M_ia M_ic Q_i[d, b]: <M S_m, Q(M S_n)> in four of its terms.
        if Q is None:
            T = np.einsum("kac,db->kacdb", np.swapaxes(M, 1, 2) @ M, np.eye(R))
        else:
            T = np.einsum("kia,kic,kidb->kacdb", M, M, Q)
        a, b = ia[:, None], ib[:, None]
        c, d = ia[None, :], ib[None, :]
        G = T[:, a, c, d, b] - T[:, a, d, c, b] - T[:, b, c, d, a] + T[:, b, d, c, a]
        G = 0.5 * (G + np.swapaxes(G, 1, 2))
        w, V = np.linalg.eigh(G)
        top = np.max(np.abs(w), axis=1, keepdims=True)
        keep = w > 1e-12 * np.where(top > 0, top, 1.0)
        inv_w = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
        return np.einsum("kmi,ki,kni->kmn", V, inv_w, V)

    def gradient(self) -> list[np.ndarray]:
        return self._gradient

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.Q is None:
            return self._gramian_gn_product(*dvalues)
        dA, dB, dC = dvalues
        H = self._apply_q(_forward(self.A, self.B, self.C, dA, dB, dC))
        if self._ginv is not None:
            # Remove the part a rotation of the P_k explains: J^T (I - Π) J v.
            S = np.swapaxes(self.M, 1, 2) @ H
            coords = S[:, self._ia, self._ib] - S[:, self._ib, self._ia]
            omega = np.einsum("kmn,kn->km", self._ginv, coords)
            Om = np.zeros_like(S)
            Om[:, self._ia, self._ib] = omega
            Om[:, self._ib, self._ia] = -omega
            H = H - self._apply_q(self.M @ Om)
        return _adjoint(self.A, self.B, self.C, H)

    def _gramian_gn_product(self, dA: np.ndarray, dB: np.ndarray, dC: np.ndarray
                            ) -> list[np.ndarray]:
        """:meth:`gn_product` with every entry known, from R x R products only."""
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
        S = (B[None] * C[:, None, :]) @ AtdM
        coords = S[:, self._ia, self._ib] - S[:, self._ib, self._ia]
        omega = np.einsum("kmn,kn->km", self._ginv, coords)
        Om = np.zeros_like(S)
        Om[:, self._ia, self._ib] = omega
        Om[:, self._ib, self._ia] = -omega
        BtOB = B.T @ Om @ B  # (K, R, R)
        CC = C[:, :, None] * C[:, None, :]
        out[0] = out[0] - A @ np.sum(CC * BtOB, axis=0)
        out[1] = out[1] - np.sum(np.swapaxes(Om, 1, 2) @ (B[None] * C[:, None, :])
                                 @ (AtA[None] * C[:, None, :]), axis=0)
        out[2] = out[2] - np.einsum("rs,ks,ksr->kr", AtA, C, BtOB)
        return out

    def blocks(self) -> list[Block]:
        """The fixed-P diagonal blocks (an upper bound of the reduced ones)."""
        A, B, C, Q = self.A, self.B, self.C, self.Q
        if Q is None:
            AtA, BtB, CtC = A.T @ A, B.T @ B, C.T @ C
            return [BtB * CtC, AtA * CtC, AtA * BtB]
        BQB = np.einsum("ar,kiab,bt->kirt", B, Q, B)
        AC = A[None] * C[:, None, :]
        diagQ = np.einsum("kiss->kis", Q)
        return [np.einsum("kirt,kr,kt->irt", BQB, C, C),
                np.einsum("kis,kir,kit->srt", diagQ, AC, AC),
                np.einsum("ir,it,kirt->krt", A, A, BQB)]


class PARAFAC2(Term):
    r"""PARAFAC2 of a list of matrices with a shared first mode.

    .. math:: X_k \approx A \,\mathrm{diag}(c_k)\, B_k^T, \qquad B_k = P_k B,
       \quad P_k^T P_k = I,

    so that ``B_k^T B_k = B^T B`` for every k (Kiers, ten Berge and Bro's direct fitting
    formulation). The term's inputs are ``[A, B, C]``; the projections ``P_k`` are
    eliminated at every point in closed form (orthogonal Procrustes; see the module
    docstring for missing entries), so ``A``, ``B`` and ``C`` can be shared with other
    terms, sent through transforms (e.g. ``tf.nonneg``) and fitted by any solver.
    ``A``, ``B_k`` and ``C`` are unique up to a common permutation and scaling of the
    components and the sign of each ``B_k`` column together with ``c_k``;
    ``B`` itself only up to ``B -> Q B`` (Q orthogonal): compare the ``B_k``.

    Parameters
    ----------
    slices : sequence of array_like, each of shape (I, J_k), or array of shape (K, I, J)
        The matrices ``X_k``; their widths ``J_k`` may differ (each ``J_k >= R``). NaN
        entries are missing; Inf entries are an error. Copied, never modified.
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
        # own, for :meth:`projections`.
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
        XtM = np.swapaxes(d.X, 1, 2) @ M
        if d.W is None:
            return _polar(XtM, d.valid)
        P = self._warm
        if P is None or P.shape != XtM.shape:
            P, s = _polar(XtM, d.valid)
        unknown = 1.0 - d.W
        for _ in range(_INNER_MAX_ITER):
            filled_part = np.swapaxes(unknown * (M @ np.swapaxes(P, 1, 2)), 1, 2) @ M
            P_new, s = _polar(XtM + filled_part, d.valid)
            step = float(np.max(np.abs(P_new - P)))
            P = P_new
            if step <= _INNER_TOL:
                break
        self._warm = P
        return P, s

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        A, B, C = (np.asarray(v, dtype=float) for v in values)
        d = self._data
        M = _model_rows(A, B, C)
        P, s = self._projections(A, B, C, M)
        if d.W is None:
            F = M - d.X @ P
            fval = 0.5 * (d.norm_squared - 2.0 * float(s.sum())
                          + float(np.sum((A.T @ A) * (B.T @ B) * (C.T @ C))))
            return _Parafac2State(values, P, F, None, max(fval, 0.0))
        residual = d.W * (M @ np.swapaxes(P, 1, 2) - d.X)
        K, J, R = P.shape
        PP = (P[:, :, :, None] * P[:, :, None, :]).reshape(K, J, R * R)
        Q = (d.W @ PP).reshape(K, -1, R, R)
        fval = 0.5 * float(np.sum(residual**2))
        if fval < self._lowest.get("fval", np.inf):
            self._lowest.update(fval=fval, key=_point_key(A, B, C), P=P)
        return _Parafac2State(values, P, residual @ P, Q, fval)

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        # With every entry known, f comes from ||X||^2 - 2 tr S + ||M||^2: below ~1e-6 of
        # ||X||^2 it has lost digits, so the residual is formed.
        if self._data.W is not None or fval > 1e-6 * self._data.norm_squared:
            return fval
        A, B, C = (np.asarray(v, dtype=float) for v in values)
        M = _model_rows(A, B, C)
        P, _ = self._projections(A, B, C, M)
        residual = M @ np.swapaxes(P, 1, 2) - self._data.X
        return 0.5 * float(np.sum(residual**2))

    def projections(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The optimal ``P_k`` (J_k, R) at ``values = [A, B, C]``: with missing entries,
        those the term used there when it is the lowest point evaluated (where a fit
        ended: its reported error is theirs)."""
        A, B, C = (np.asarray(v, dtype=float) for v in values)
        lowest = self._lowest
        if self._data.W is not None and lowest.get("key") == _point_key(A, B, C):
            P = lowest["P"]
        else:
            P, _ = self._projections(A, B, C, _model_rows(A, B, C))
        return [P[k, :J].copy() for k, J in enumerate(self._data.widths)]

    def slice_factors(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The evolving factors ``B_k = P_k B`` (J_k, R) at ``values = [A, B, C]``."""
        B = np.asarray(values[1], dtype=float)
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
