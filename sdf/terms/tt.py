r"""Tensor train and tensor ring terms: data ≈ a train (ring) of third-order cores.

.. math:: M_{i_0 \dots i_{N-1}} = \mathrm{tr}\big(G_0[:, i_0, :]\, G_1[:, i_1, :] \cdots
   G_{N-1}[:, i_{N-1}, :]\big), \qquad G_k \in \mathbb{R}^{r_k \times I_k \times r_{k+1}},

with ``r_N = r_0``: a tensor ring (TR); a tensor train (TT) is the ring with
``r_0 = r_N = 1`` (the trace is then the single entry).

The model is linear in each core: the entry's derivative with respect to ``G_k`` is the
product of the cores on its right times those on its left (the "interfaces"). Every
quantity the engine asks for is a contraction of two rings, one pair of cores at a time:
with left environments ``L_k`` (cores ``< k`` of both rings contracted, shape
``(r_0, s_0, r_k, s_k)``) and right environments ``R_k`` (cores ``> k``, shape
``(r_{k+1}, s_{k+1}, r_0, s_0)``), ``<A, B> = tr(E_0 ... E_{N-1})`` and the gradient of
``<A, B>`` with respect to ``B_k`` is ``L_k A_k R_k`` contracted over the ``A`` side.
Costs are ``O(N I r_0^2 r^3)`` per pass (``O(N I r^3)`` for a train), whatever the number of
entries.

* **Gauss-Newton product** ``J^T J v``: the derivative of the gradient of ``<M, M>``
  along the first ring's cores ``G + e V`` (dual environments), never the Jacobian nor the
  data. The preconditioner's block of core ``k`` is ``J_k^T J_k``: for a train exactly
  ``kron(L_k, I, R_k)`` (given as that tuple, inverted mode by mode); for a ring the
  nearest Kronecker product of the exact ``(r_k r_{k+1})``-square block.
* **Gradient**, by what the data offer: dense arrays form the residual (exact ``f``) and
  contract it with the interfaces (``O(N r_0 r prod I)``); tensor-train data
  (:class:`sdf.tensors.TTTensor`) are contracted core by core, never expanded; other data
  that can be expanded are expanded once; the rest (data read only through MTTKRPs) see the
  ring as a CPD of rank ``prod r_k`` (small ranks and orders only).
* **Missing entries** (TT completion): everything from the known entries, with per-entry
  interfaces: values, gradients and products cost ``O(nnz N r_0 r^2)``; the preconditioner
  blocks are the nearest Kronecker product of the summed entry blocks, scaled per slice by
  the slice's share.

**Complex values** (complex data, complex cores, or both): the model is holomorphic in
the cores, so every formula above holds with the second ring of each contraction
conjugated: the environments of ``(A, conj(B))`` give ``sum A conj(B)`` and, opened at a
core, ``J^H`` applied to ``A`` (the conjugate cogradient of :mod:`sdf.problem`); the
Gauss-Newton product is ``J^H J v`` and the blocks are Hermitian. A ring's (and the
completion's) block is then approximated by its partial traces (``P = tr_Q(B)``, ``Q =
tr_P(B) / tr(B)``: Hermitian positive semidefinite, exact for a Kronecker product).
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from sdf.algebra import _leading_kron_pair
from sdf.errors import DataError, ModelError
from sdf.tensors import KnownEntries, Tensor, TTTensor
from sdf.tensors._base import _native
from sdf.numerics import ldexp
from sdf.terms._base import Block, DataTerm, TermState, _exponent_of

__all__ = ["TR", "TT"]

#: Entries up to which data read otherwise are expanded once into an array.
_MAX_EXPAND = 20_000_000
#: Largest ``prod r_k`` for which data read only through MTTKRPs see the ring as a CPD.
_MAX_CPD_RANK = 4096

Cores = list[np.ndarray]


# --------------------------------------------------------------------- ring environments
def _identity_env(r: int, s: int) -> np.ndarray:
    """``delta(p, a) delta(q, b)`` of shape (r, s, r, s)."""
    return np.einsum("pa,qb->pqab", np.eye(r), np.eye(s))


def _left_step(L: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``L'[p, q, c, d] = sum L[p, q, a, b] A[a, i, c] B[b, i, d]``."""
    X = np.tensordot(L, A, axes=([2], [0]))  # (p, q, b, i, c)
    return np.tensordot(X, B, axes=([2, 3], [0, 1]))  # (p, q, c, d)


def _right_step(A: np.ndarray, B: np.ndarray, R: np.ndarray) -> np.ndarray:
    """``R'[a, b, p, q] = sum A[a, i, c] B[b, i, d] R[c, d, p, q]``."""
    X = np.tensordot(B, R, axes=([2], [1]))  # (b, i, c, p, q)
    return np.tensordot(A, X, axes=([1, 2], [1, 2]))  # (a, b, p, q)


def _open(L: np.ndarray, A: np.ndarray, R: np.ndarray) -> np.ndarray:
    """``g[b, i, d] = sum L[p, q, a, b] A[a, i, c] R[c, d, p, q]``: the gradient of
    ``<A-ring, B-ring>`` with respect to the ``B`` core between ``L`` and ``R``."""
    X = np.tensordot(L, A, axes=([2], [0]))  # (p, q, b, i, c)
    return np.tensordot(X, R, axes=([0, 1, 4], [2, 3, 0]))


def _environments(A: Cores, B: Cores) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Left environments ``L_0..L_N`` and right ones ``R_0..R_{N-1}`` of two rings."""
    N = len(A)
    left = [_identity_env(A[0].shape[0], B[0].shape[0])]
    for k in range(N):
        left.append(_left_step(left[-1], A[k], B[k]))
    right = [np.empty(0)] * N
    right[N - 1] = _identity_env(A[0].shape[0], B[0].shape[0])
    for k in range(N - 1, 0, -1):
        right[k - 1] = _right_step(A[k], B[k], right[k])
    return left, right


def _closed(L: np.ndarray) -> float:
    """Real part of the ``tr`` of a full left environment: ``Re sum L[p, q, p, q]`` (the
    environments of ``(A, conj(B))`` close to ``sum A conj(B)``, whose real part is the
    real inner product of the two)."""
    return float(np.real(np.einsum("pqpq->", L)))


def _conj(cores: Cores) -> Cores:
    """The cores conjugated (the same arrays when real)."""
    return [G.conj() if np.iscomplexobj(G) else G for G in cores]


def _partial_traces(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P, Q)`` with ``kron(P, Q)`` standing for the block ``block[b, a, d, c]`` (row
    ``(b, d)``, column ``(a, c)``): its partial traces, ``Q`` divided by the trace. Hermitian
    positive semidefinite for a Hermitian positive semidefinite block, and exact for a
    Kronecker product."""
    P = np.einsum("badd->ba", block)
    Q = np.einsum("bbdc->dc", block)
    total = float(np.real(np.trace(P)))
    Q = Q / total if total > 0 else Q
    return 0.5 * (P + P.conj().T), 0.5 * (Q + Q.conj().T)


def _nearest_kron(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P, Q)`` with ``kron(P, Q)`` nearest to the block given as ``block[b, a, d, c]``
    (row ``(b, d)``, column ``(a, c)``; Van Loan and Pitsianis): the leading singular pair
    of its rearrangement. Both are positive semidefinite for a positive semidefinite
    block; the sign is chosen so."""
    rp, rq = block.shape[0], block.shape[2]
    A, B = _leading_kron_pair(block.reshape(rp * rp, rq * rq), (rp, rp), (rq, rq))
    scale = np.sqrt(np.linalg.norm(A)) or 1.0
    P, Q = A / scale, B * scale
    return 0.5 * (P + P.T), 0.5 * (Q + Q.T)


class _RingGramian:
    """The Gauss-Newton part of a ring state: ``J^T J v`` and the blocks, from the model's
    own environments (the data are not read)."""

    cores: Cores
    left: list[np.ndarray]
    right: list[np.ndarray]

    def _set_model(self, cores: Cores) -> None:
        self.cores = cores
        self.bra = _conj(cores)
        self.left, self.right = _environments(cores, self.bra)

    def _model_gradient(self) -> list[np.ndarray]:
        """Gradient of ``<M, M> / 2``: ``J^H M``."""
        return [_open(self.left[k], G, self.right[k]) for k, G in enumerate(self.cores)]

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        G, H, V = self.cores, self.bra, [np.asarray(v) for v in dvalues]
        N = len(G)
        dleft = [np.zeros_like(self.left[0])]
        for k in range(N - 1):
            dleft.append(_left_step(dleft[-1], G[k], H[k])
                         + _left_step(self.left[k], V[k], H[k]))
        dright = [np.empty(0)] * N
        dright[N - 1] = np.zeros_like(self.right[N - 1])
        for k in range(N - 1, 0, -1):
            dright[k - 1] = (_right_step(G[k], H[k], dright[k])
                             + _right_step(V[k], H[k], self.right[k]))
        return [_open(dleft[k], G[k], self.right[k]) + _open(self.left[k], V[k], self.right[k])
                + _open(self.left[k], G[k], dright[k]) for k in range(N)]

    def blocks(self) -> list[Block]:
        out: list[Block] = []
        for k, G in enumerate(self.cores):
            L, R = self.left[k], self.right[k]
            if L.shape[0] == 1:  # a train: exactly kron(L_k^T, I, R_k^T)
                # (J_k^H J_k V)[b, i, d] = sum L[a, b] V[a, i, c] R[c, d]: mode products
                # with L^T and R^T (Hermitian; when real, L and R are symmetric)
                left, right = L[0, 0], R[:, :, 0, 0]
                if np.iscomplexobj(left) or np.iscomplexobj(right):
                    left, right = left.T, right.T
                out.append((left, np.eye(G.shape[1]), right))
                continue
            # (J_k^H J_k V)[b, i, d] = sum L[p, q, a, b] V[a, i, c] R[c, d, p, q]
            block = np.einsum("pqab,cdpq->badc", L, R)
            P, Q = _partial_traces(block) if np.iscomplexobj(block) else _nearest_kron(block)
            out.append((P, np.eye(G.shape[1]), Q))
        return out


# --------------------------------------------------------------------- full data
def _interfaces(cores: Cores) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Left interfaces ``(prod I_<k, r_0, r_k)`` for k = 0..N and right interfaces
    ``(r_{k+1}, prod I_>k, r_0)`` for k = 0..N-1."""
    N, r0 = len(cores), cores[0].shape[0]
    left: list[np.ndarray] = [np.eye(r0)[None]]
    for G in cores:
        m = left[-1].shape[0]
        step = np.tensordot(left[-1], G, axes=([2], [0]))  # (m, p, i, b)
        left.append(np.transpose(step, (0, 2, 1, 3)).reshape(m * G.shape[1], r0, G.shape[2]))
    right: list[np.ndarray] = [np.empty(0)] * N
    right[N - 1] = np.eye(r0)[:, None, :]
    for k in range(N - 1, 0, -1):
        G = cores[k]
        step = np.tensordot(G, right[k], axes=([2], [0]))  # (a, i, m, p)
        right[k - 1] = step.reshape(G.shape[0], -1, r0)
    return left, right


def _model_array(left_full: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.einsum("mpp->m", left_full).reshape(shape)


def _contract(X: np.ndarray, left: list[np.ndarray], right: list[np.ndarray]
              ) -> list[np.ndarray]:
    """``J^T x``: per core, ``g[a, i, b] = sum X[.., i, ..] (interfaces)[b .. p .. a]``
    (``J^H x`` from the interfaces of the conjugated cores)."""
    out = []
    for k in range(len(right)):
        L, R = left[k], right[k]
        X3 = X.reshape(L.shape[0], -1, R.shape[1])
        Y = np.tensordot(L, X3, axes=([0], [0]))  # (p, a, i, m_r)
        out.append(np.tensordot(Y, R, axes=([0, 3], [2, 1])))  # (a, i, b)
    return out


class _DenseRingState(_RingGramian, TermState):
    """Full data held as an array: the residual is formed (exact f)."""

    def __init__(self, array: np.ndarray, cores: Cores) -> None:
        self._set_model(cores)
        left, right = _interfaces(self.bra)  # conjugated interfaces: J^H
        model = _model_array(left[-1], array.shape)
        residual = (model.conj() if np.iscomplexobj(model) else model) - array
        self.fval = 0.5 * float(np.real(np.vdot(residual, residual)))
        self._gradient = _contract(residual, left, right)

    def gradient(self) -> list[np.ndarray]:
        return self._gradient


class _FactoredRingState(_RingGramian, TermState):
    """Full data read through inner products: ``f = (||T||^2 - 2 Re<T, M> + <M, M>) / 2``;
    the gradient is ``J^H M - J^H T``, the data part given."""

    def __init__(self, norm_squared: float, inner: float, data_part: list[np.ndarray],
                 cores: Cores) -> None:
        self._set_model(cores)
        model_sq = _closed(self.left[-1])
        self.fval = 0.5 * max(norm_squared - 2.0 * inner + model_sq, 0.0)
        self._gradient = [m - d for m, d in zip(self._model_gradient(), data_part)]

    def gradient(self) -> list[np.ndarray]:
        return self._gradient


def _tt_data_part(data: TTTensor, cores: Cores) -> tuple[float, list[np.ndarray]]:
    """``Re<T, M>`` and ``J^H T`` for tensor-train data, core by core."""
    left, right = _environments(data.cores, _conj(cores))
    inner = _closed(left[-1])
    return inner, [_open(left[k], X, right[k]) for k, X in enumerate(data.cores)]


def _train_difference_norm(cores: Cores, data: Cores) -> float:
    """``||TT(cores) - TT(data)||`` from the difference as one train (block-diagonal
    cores), left-orthonormalised by QR: no cancellation between the two norms."""
    N = len(cores)
    diff = []
    for k, (G, X) in enumerate(zip(cores, data)):
        if k == 0:
            D = np.concatenate([G, -X], axis=2)
        elif k == N - 1:
            D = np.concatenate([G, X], axis=0)
        else:
            D = np.zeros((G.shape[0] + X.shape[0], G.shape[1], G.shape[2] + X.shape[2]),
                         dtype=np.result_type(G, X))
            D[: G.shape[0], :, : G.shape[2]] = G
            D[G.shape[0]:, :, G.shape[2]:] = X
        diff.append(D)
    for k in range(N - 1):
        D = diff[k]
        _, R = np.linalg.qr(D.reshape(-1, D.shape[2]))
        diff[k + 1] = np.tensordot(R, diff[k + 1], axes=([1], [0]))
    return float(np.linalg.norm(diff[-1]))


def _cpd_data_part(data: Tensor, cores: Cores) -> tuple[float, list[np.ndarray]]:
    """``Re<T, M>`` and ``J^H T`` through one MTTKRP session: the (conjugated) ring as a
    CPD whose components run over every choice of the bond indices ``(b_0, ...,
    b_{N-1})``."""
    N = len(cores)
    bonds = [G.shape[0] for G in cores]
    grid = np.indices(bonds).reshape(N, -1)  # (N, R), C order
    mats = [G[grid[n], :, grid[(n + 1) % N]].T for n, G in enumerate(_conj(cores))]
    session = data.mttkrp_session(mats)
    letters = string.ascii_lowercase[:N]
    out = []
    for k, Mk in enumerate(session.all()):
        spec = f"Z{letters}->{letters[k]}Z{letters[(k + 1) % N]}"
        out.append(np.einsum(spec, np.asarray(Mk).reshape(Mk.shape[0], *bonds)))
    return float(np.real(session.inner())), out


# --------------------------------------------------------------------- known entries
class _SampledRingState(TermState):
    """Known entries only: per entry the products of the cores on each side."""

    def __init__(self, entries: KnownEntries, cores: Cores) -> None:
        self.entries = entries
        self.cores = cores
        subs, N = entries.subs, len(cores)
        r0 = cores[0].shape[0]
        nnz = len(entries.vals)
        rows = [np.transpose(G[:, subs[:, k], :], (1, 0, 2)) for k, G in enumerate(cores)]
        left = [np.broadcast_to(np.eye(r0), (nnz, r0, r0))]
        for k in range(N - 1):
            left.append(left[-1] @ rows[k])
        right: list[np.ndarray] = [np.empty(0)] * N
        right[N - 1] = np.broadcast_to(np.eye(r0), (nnz, r0, r0))
        for k in range(N - 1, 0, -1):
            right[k - 1] = rows[k] @ right[k]
        model = np.einsum("epq,eqp->e", left[N - 1] @ rows[N - 1], right[N - 1])
        # Z_k[e, (a, b)]: the derivative of entry e with respect to G_k[a, i_k(e), b].
        self.Z = [np.ascontiguousarray(np.swapaxes(right[k] @ left[k], 1, 2)).reshape(nnz, -1)
                  for k in range(N)]
        # conj(Z_k): the adjoint J^H reads them (the same arrays when real)
        self.Zh = [Z.conj() if np.iscomplexobj(Z) else Z for Z in self.Z]
        self.residual = model - entries.vals
        self.fval = 0.5 * float(np.real(np.vdot(self.residual, self.residual)))

    def _scatter(self, weights: np.ndarray) -> list[np.ndarray]:
        out = []
        for k, (G, Z) in enumerate(zip(self.cores, self.Zh)):
            flat = self.entries.mode_indicator(k) @ (weights[:, None] * Z)
            out.append(np.transpose(np.asarray(flat).reshape(G.shape[1], G.shape[0],
                                                             G.shape[2]), (1, 0, 2)))
        return out

    def gradient(self) -> list[np.ndarray]:
        return self._scatter(self.residual)

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        subs = self.entries.subs
        jv: np.ndarray = np.zeros(len(self.residual))
        for k, (V, Z) in enumerate(zip(dvalues, self.Z)):
            # The rows of V (slices of mode k, flattened) at every entry's index.
            rows = np.transpose(np.asarray(V), (1, 0, 2)).reshape(V.shape[1], -1)
            jv = jv + np.einsum("eq,eq->e", rows[subs[:, k]], Z)
        return self._scatter(jv)

    def blocks(self) -> list[Block]:
        out: list[Block] = []
        for k, (G, Z, Zh) in enumerate(zip(self.cores, self.Z, self.Zh)):
            ra, rb = G.shape[0], G.shape[2]
            Z3 = Z.reshape(len(Z), ra, rb)
            # The entry blocks summed, as block[b, a, d, c] (row (b, d), column (a, c))...
            total = np.einsum("ebd,eac->badc", Zh.reshape(Z3.shape), Z3)
            P, Q = _partial_traces(total) if np.iscomplexobj(total) else _nearest_kron(total)
            # ... shared by the slices of mode k in proportion to their entries' weight.
            share = np.asarray(self.entries.mode_indicator(k)
                               @ np.real(np.einsum("eq,eq->e", Zh, Z))).ravel()
            scale = float(share.sum())
            share = share / scale if scale > 0 else share
            out.append((P, np.diag(share), Q))
        return out


# --------------------------------------------------------------------- the terms
def _cores(values: Sequence[Any]) -> Cores:
    """The cores as float64 arrays, or complex128 where complex."""
    return [_native(v) for v in values]


#: Multiply-adds a ring's model norm may take (:meth:`_RingTerm.model_log2_norm`): about
#: a tenth of a second, once per fit.
_NORM_BUDGET = 1e9


class _RingTerm(DataTerm):
    """What TT and TR share: a ring of cores on a data set."""

    spec_options = ()
    complex_values = True
    closed_train = False  # TT: the first and last sizes are 1

    def __init__(self, data: Any, cores: Sequence[Any], weight: float | None = None,
                 relweight: float | None = None) -> None:
        if isinstance(cores, np.ndarray) or not isinstance(cores, Sequence):
            raise ModelError(f"{self.kind}: cores must be a list of expressions, one per mode")
        super().__init__(data, list(cores), weight=weight, relweight=relweight)

    @property
    def ranks(self) -> tuple[int, ...]:
        """The sizes ``(r_0, r_1, ..., r_{N-1}, r_N)`` of the cores (``r_N = r_0``)."""
        return (*(int(e.shape[0]) for e in self.inputs), int(self.inputs[-1].shape[-1]))

    def check(self, where: str) -> None:
        shape, N = self.data.shape, self.data.ndim
        what = "TT" if self.closed_train else "TR"
        if N < 2:
            raise ModelError(f"{where}: a {what} term needs data with at least 2 modes, "
                             f"got shape {shape}")
        if len(self.inputs) != N:
            raise ModelError(f"{where}: {len(self.inputs)} cores given but the data has {N} "
                             f"modes (shape {shape}); a {what} needs one core per mode")
        for k, expr in enumerate(self.inputs):
            place = f"{where}, core {k} ({expr.label()!r})"
            first = "1" if (k == 0 and self.closed_train) else (
                "r" if k == 0 else str(self.inputs[k - 1].shape[-1])
                if len(self.inputs[k - 1].shape) == 3 else "r")
            last = ("1" if self.closed_train else str(self.inputs[0].shape[0])
                    if len(self.inputs[0].shape) == 3 else "r") if k == N - 1 else "r"
            want = f"({first}, {shape[k]}, {last})"
            got = tuple(expr.shape)
            ok = (len(got) == 3 and got[1] == shape[k] and min(got) >= 1
                  and (first == "r" or got[0] == int(first))
                  and (last == "r" or got[2] == int(last)))
            if not ok:
                why = [f"mode {k} of the data"]
                if k > 0:
                    why.append(f"the last size of core {k - 1}")
                if self.closed_train and k in (0, N - 1):
                    why.append(f"a train {'starting' if k == 0 else 'ending'} with size 1")
                elif k == N - 1:
                    why.append("the first size of core 0 (closing the ring)")
                raise ModelError(f"{place}: expected shape {want} to match "
                                 f"{', '.join(why[:-1]) + ' and ' if len(why) > 1 else ''}"
                                 f"{why[-1]}, got {got}")
        if (math.prod(self.ranks[:-1]) > _MAX_CPD_RANK and self.data.known_entries() is None
                and not isinstance(self.data, TTTensor) and self._array() is None):
            raise ModelError(f"{where}: {self._unreadable()}")
        super().check(where)

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        cores = _cores(values)
        entries = self.data.known_entries()
        if entries is not None:
            return _SampledRingState(entries, cores)
        array = self._array()
        if array is not None:
            return _DenseRingState(array, cores)
        if isinstance(self.data, TTTensor):
            inner, part = _tt_data_part(self.data, cores)
        else:
            if math.prod(G.shape[0] for G in cores) > _MAX_CPD_RANK:
                raise ModelError(f"{self.kind}: {self._unreadable()}")
            inner, part = _cpd_data_part(self.data, cores)
        return _FactoredRingState(self.data_norm_squared, inner, part, cores)

    def _unreadable(self) -> str:
        return (f"{self.data.kind} data of shape {self.data.shape} can be read neither as "
                f"an array nor as a tensor train, and the ranks {self.ranks} are too large "
                f"to read them through MTTKRPs (product of the ranks above {_MAX_CPD_RANK}); "
                "give the data as an array or a TTTensor")

    def _array(self) -> np.ndarray | None:
        """The data as an array when held so or cheap to expand (once), else None."""
        view = self.data.dense_view()
        if view is not None:
            return view
        cached = getattr(self, "_expanded", None)
        if cached is not None and cached[0] is self.data:
            return cached[1]
        array = None
        if (not isinstance(self.data, TTTensor) and not self.data.out_of_core
                and self.data.size <= _MAX_EXPAND):
            try:
                array = np.asarray(self.data.to_dense())
            except DataError:
                array = None
        self._expanded = (self.data, array)
        return array

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        # Tensor-train data: f from norms and inner products has lost digits below ~1e-6
        # of ||T||^2; the difference of the two trains is orthonormalised instead.
        if (not isinstance(self.data, TTTensor) or fval > 1e-6 * self.data_norm_squared
                or values[0].shape[0] != 1):
            return fval
        return 0.5 * _train_difference_norm(_cores(values), self.data.cores) ** 2

    def describe_shape(self) -> str:
        return f"ranks {self.ranks}"

    def model_log2_norm(self, values: Sequence[np.ndarray]) -> float | None:
        """``log2 ||M||`` from the cores' transfer products: ``||M||^2 = sum_{a, a'}
        X[a, a', a, a']`` with ``X`` the product over the modes of ``sum_i G[:, i, :] (x)
        conj(G[:, i, :])`` (``r_0^2 r^2`` numbers; a train has ``r_0 = 1``), from the
        cores normalised to their largest entries so that it holds at any scale. None
        (the start kept as given) where the products would take more than
        ``_NORM_BUDGET`` multiply-adds (``r_0^2 r^3`` per entry of a core: rings of large
        ranks)."""
        if self.loss.link != "identity":
            return None  # the model is not on the data's scale
        r0 = int(np.shape(values[0])[0])
        if r0 * r0 * sum(np.size(G) * np.shape(G)[2] for G in values) > _NORM_BUDGET:
            return None
        shifts = [_exponent_of(G) for G in values]
        cores = [ldexp(np.asarray(G), -k) for G, k in zip(values, shifts)]
        X = np.einsum("ac,bd->abcd", np.eye(r0), np.eye(r0))
        for G in cores:
            X = np.einsum("abcd,cie,dif->abef", X, G, G.conj(), optimize=True)
        norm = math.sqrt(max(float(np.einsum("abab->", X).real), 0.0))
        return math.log2(norm) + sum(shifts) if norm > 0 else -math.inf

    def model_array(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """The full array of the model at ``values`` (the cores), for checks and figures.

        Examples
        --------
        >>> import numpy as np, sdf
        >>> cores = [np.ones((1, 2, 2)), np.ones((2, 3, 1))]
        >>> sdf.TT(np.zeros((2, 3)), cores).model_array(cores)
        array([[2., 2., 2.],
               [2., 2., 2.]])
        """
        left, _ = _interfaces(_cores(values))
        return _model_array(left[-1], self.data.shape)


class TT(_RingTerm):
    r"""Tensor train (matrix product state) of a data set.

    .. math:: T_{i_0 \dots i_{N-1}} \approx G_0[:, i_0, :]\, G_1[:, i_1, :] \cdots
       G_{N-1}[:, i_{N-1}, :],

    cores ``G_k`` of shape ``(r_k, I_k, r_{k+1})`` with ``r_0 = r_N = 1``. The cores are
    ordinary inputs: variables, transformed expressions or constants, shared with other
    terms at will. Fitted by Gauss-Newton on the TT Gramian structure (products by
    left/right interface contractions, the exact Kronecker block per core as
    preconditioner; see the module docstring of ``sdf.terms.tt``). NaN entries are
    missing (TT completion: the cost is then proportional to the known entries times
    ``N r^2``). The train is
    invariant under ``G_k -> G_k A``, ``G_{k+1} -> A^{-1} G_{k+1}``: compare full tensors
    or interface subspaces, not cores. Complex data and cores are fitted as they are
    (see the module docstring).

    Parameters
    ----------
    data : array_like, sdf.tensors.Tensor or xarray.DataArray
        Any data ``sdf.tensors.as_tensor`` accepts; NaN entries are missing.
    cores : sequence of Expr or array_like, each of shape (r_k, I_k, r_{k+1})
        One core per mode.
    weight, relweight : float, optional
        See :class:`sdf.terms.Term` (default: Tensorlab's relative weight convention).

    Examples
    --------
    >>> import numpy as np, sdf
    >>> rng = np.random.default_rng(0)
    >>> ranks = (1, 2, 2, 1)
    >>> planted = [rng.standard_normal((ranks[k], n, ranks[k + 1]))
    ...            for k, n in enumerate((5, 6, 4))]
    >>> T = np.einsum("aib,bjc,ckd->ijk", *planted)
    >>> g = [sdf.Variable(G + 0.05 * rng.standard_normal(G.shape)) for G in planted]
    >>> result = sdf.Model(T=sdf.TT(T, g)).fit(max_iter=100)
    >>> bool(result.relerr["T"] < 1e-8)
    True
    """

    kind = "TT"
    spec_key = "tt"
    closed_train = True


class TR(_RingTerm):
    r"""Tensor ring of a data set.

    .. math:: T_{i_0 \dots i_{N-1}} \approx \mathrm{tr}\big(G_0[:, i_0, :]\,
       G_1[:, i_1, :] \cdots G_{N-1}[:, i_{N-1}, :]\big),

    cores ``G_k`` of shape ``(r_k, I_k, r_{k+1})`` with ``r_N = r_0`` (the trace closes
    the ring). Everything else as :class:`TT` (which is the ring with ``r_0 = 1``); the
    preconditioner block of a core is the nearest Kronecker product of its exact block.
    A ring is invariant under ``G_k -> G_k A``, ``G_{k+1} -> A^{-1} G_{k+1}`` on every
    bond, the closing one included.

    Parameters
    ----------
    data : array_like, sdf.tensors.Tensor or xarray.DataArray
        Any data ``sdf.tensors.as_tensor`` accepts; NaN entries are missing.
    cores : sequence of Expr or array_like, each of shape (r_k, I_k, r_{k+1})
        One core per mode, the last one's third size equal to the first one's first.
    weight, relweight : float, optional
        See :class:`sdf.terms.Term`.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> rng = np.random.default_rng(1)
    >>> planted = [rng.standard_normal((2, n, 2)) for n in (5, 6, 4)]
    >>> T = np.einsum("aib,bjc,cka->ijk", *planted)
    >>> g = [sdf.Variable(G + 0.01 * rng.standard_normal(G.shape)) for G in planted]
    >>> result = sdf.Model(T=sdf.TR(T, g)).fit(max_iter=200)
    >>> bool(result.relerr["T"] < 1e-6)
    True
    """

    kind = "TR"
    spec_key = "tr"
