"""Fast CP of a convolution weight: a closed-form start and alternating updates (private).

The layer's CP is 4-way, ``W[o,i,h,w] ~ sum_r U_out[o,r] U_in[i,r] U_h[h,r] U_w[w,r]``
(1x1, depthwise kh x 1, depthwise 1 x kw, 1x1 pieces). Conv weights have few spatial
positions (``kh * kw``, e.g. 9) and compressed ranks far above that, where random starts
and Gauss-Newton on the full model are slow.

The start (:func:`spatial_slices_start`): rotate both spatial modes to their principal
bases ``Q_h``, ``Q_w`` (left singular vectors of the mode unfoldings); the rotated weight
``W' = W x_3 Q_h^T x_4 Q_w^T`` has ``kh * kw`` slices ``W'[:, :, a, b]`` (out x in), and
slice ``(a, b)`` gets its own truncated SVD of rank ``r_ab``, each component having the
spatial factors ``Q_h[:, a]``, ``Q_w[:, b]``. That is an exact CP of rank ``sum r_ab``;
its squared error is the sum of the discarded squared singular values, least when the
ranks keep the ``R`` largest singular values of all slices together (water-filling).

The polish (:func:`als_weight`): alternating least squares on the weight, Nesterov-
extrapolated with restarts, after a seeded perturbation of the spatial factors (at the
start many components share one spatial factor, a point plain ALS leaves only slowly).
Every MTTKRP comes from two products with the weight (``Wt U_in`` and ``U_out^T Wm``);
the spatial modes and the input mode reuse the second.

Data-aware (:func:`als_response`), with the metric ``M = w_w I + w_r G`` on the flattened
input side ``(in, kh, kw)`` and the objective ``tr(E M E^T)``, ``E = U_out K^T - Wm``,
``K = kr(U_in, U_h, U_w)``: the output factor has the closed form
``U_out = Wm M K (K^T M K)^{-1}``; the input factor takes an exactly line-searched step
along its gradient preconditioned with the nearest Kronecker product of ``M``. Both
updates are minimisers (over a factor, or along a line), so the objective never rises
above the warm start's; once those rounds gain little, a step on both spatial factors
along their preconditioned gradients joins each round, minimised exactly along that line
(a quartic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

__all__: list[str] = []

#: Relative size of the seeded perturbation of the spatial factors before ALS
SHAKE = 0.5
#: The data-aware rounds add a step on the spatial factors once a round lowers the
#: objective by at most this share (before, the other updates gain more per multiply-add)
SPATIAL_AFTER = 1e-3


@dataclass(frozen=True)
class CPFit:
    """Factors ``[U_out, U_in, U_h, U_w]``, the objective, iterations and the stop reason."""

    factors: list[np.ndarray]
    objective: float
    iterations: int
    stop: str


def spatial_slices_start(W: np.ndarray, rank: int) -> tuple[list[np.ndarray], float]:
    """The water-filled slice-SVD CP of ``W`` (out, in, kh, kw) (see the module docstring).

    Returns the factors ``[U_out, U_in, U_h, U_w]`` (rank columns; fewer only when the
    slices have fewer singular values in all) and the squared error ``||W - W_hat||^2``,
    which is the sum of the discarded squared singular values.
    """
    o, i, kh, kw = W.shape
    Qh = np.linalg.svd(W.transpose(2, 0, 1, 3).reshape(kh, -1), full_matrices=False)[0]
    Qw = np.linalg.svd(W.transpose(3, 0, 1, 2).reshape(kw, -1), full_matrices=False)[0]
    Wr = np.einsum("oihw,ha,wb->aboi", W, Qh, Qw, optimize=True).reshape(kh * kw, o, i)
    # each slice's squared singular values and right singular vectors from the smaller
    # Gram matrix (an eigendecomposition: a few times cheaper than the SVD)
    side = Wr if i <= o else Wr.transpose(0, 2, 1)
    lam, V = np.linalg.eigh(np.matmul(side.transpose(0, 2, 1), side))
    lam, V = np.maximum(lam[:, ::-1], 0.0), V[:, :, ::-1]   # descending
    n = lam.shape[1]
    order = np.argsort(-lam.ravel(), kind="stable")[:rank]   # the R largest of all slices
    slc, comp = np.divmod(order, n)
    keep = np.lexsort((comp, slc))                            # slice by slice, in order
    slc, comp = slc[keep], comp[keep]
    vecs = V[slc, :, comp].T                                  # unit singular vectors
    other = np.empty((side.shape[1], len(slc)))
    for k in np.unique(slc):                                  # slice @ its vectors
        cols = np.flatnonzero(slc == k)
        other[:, cols] = side[k] @ vecs[:, cols]
    Uo, Ui = (other, vecs) if i <= o else (vecs, other)
    a, b = np.divmod(slc, kw)
    factors = [Uo, Ui, Qh[:, a], Qw[:, b]]
    discarded = lam.copy()
    discarded[slc, comp] = 0.0
    return factors, float(discarded.sum())


def _solve_gram(rhs: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``rhs V^{-1}`` for a symmetric positive semidefinite ``V`` (R x R)."""
    try:
        return sla.cho_solve(sla.cho_factor(V, check_finite=False), rhs.T,
                             check_finite=False).T
    except np.linalg.LinAlgError:  # singular Gramian: the least-squares solution
        return np.linalg.lstsq(V, rhs.T, rcond=None)[0].T


def _kr(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Khatri-Rao product, the second matrix varying fastest."""
    return (A[:, None, :] * B[None, :, :]).reshape(-1, A.shape[1])


def sweep_cost(shape: tuple[int, ...], rank: int) -> float:
    """Multiply-adds of one ALS sweep on a weight of ``shape``: the two products with the
    weight, four R x R factorizations and the two large solves."""
    o, i, kh, kw = shape
    return 2.0 * o * i * kh * kw * rank + 4.0 * rank ** 3 / 3 + 2.0 * (o + i) * rank ** 2


def _sweep(Wm: np.ndarray, Wt: np.ndarray, shape: tuple[int, ...], factors: list[np.ndarray],
           norm2: float) -> tuple[list[np.ndarray], float]:
    """One ALS sweep (out, in, h, w); returns the factors and their objective.

    ``Wm`` is the weight as (out, in*kh*kw), ``Wt`` as (out*kh*kw, in): the MTTKRPs come
    from ``Wt U_in`` and ``U_out^T Wm`` without forming a Khatri-Rao product of the weight's
    size.
    """
    o, i, kh, kw = shape
    m = kh * kw
    Uo, Ui, Uh, Uw = factors
    R = Uo.shape[1]
    Gi, Gh, Gw = Ui.T @ Ui, Uh.T @ Uh, Uw.T @ Uw
    S = _kr(Uh, Uw)
    Y = (Wt @ Ui).reshape(o, m, R)
    Mo = Y[:, 0, :] * S[0]
    for s in range(1, m):
        Mo += Y[:, s, :] * S[s]
    Uo = _solve_gram(Mo, Gi * Gh * Gw)
    Go = Uo.T @ Uo
    A = (Uo.T @ Wm).reshape(R, i, m)          # the other MTTKRPs contract this
    Ui = _solve_gram(np.einsum("ris,sr->ir", A, S, optimize=True), Go * Gh * Gw)
    Gi = Ui.T @ Ui
    B = np.einsum("ris,ir->rs", A, Ui, optimize=True).reshape(R, kh, kw)
    Uh = _solve_gram(np.einsum("rhw,wr->hr", B, Uw), Go * Gi * Gw)
    Gh = Uh.T @ Uh
    Mw = np.einsum("rhw,hr->wr", B, Uh)
    Uw = _solve_gram(Mw, Go * Gi * Gh)
    model2 = float(np.sum(Go * Gi * Gh * (Uw.T @ Uw)))
    return [Uo, Ui, Uh, Uw], max(norm2 - 2 * float(np.vdot(Mw, Uw)) + model2, 0.0) / norm2


def als_weight(W: np.ndarray, factors: list[np.ndarray], max_sweeps: int, tol: float,
               seed: int, shake: float = SHAKE) -> CPFit:
    """Accelerated ALS on ``||W - W_hat||^2`` from ``factors``.

    The spatial factors are first perturbed by seeded noise of relative size ``shake``
    (the slice start shares each spatial factor among many components, a point ALS
    leaves only slowly). Each sweep starts from the Nesterov extrapolation of the last
    two iterates; a sweep that raises the objective is redone from the last iterate
    without extrapolation. Stops when a sweep lowers the objective by at most ``tol``
    times its value ("converged") or after ``max_sweeps`` sweeps ("iteration
    cap"). Returns the best iterate, the start included, with its squared error
    ``||W - W_hat||^2`` recomputed from the factors.
    """
    o, i = W.shape[:2]
    Wm = W.reshape(o, -1)
    Wt = W.transpose(0, 2, 3, 1).reshape(-1, i)
    norm2 = float(np.vdot(Wm, Wm)) or 1.0
    current = [np.array(f, dtype=float) for f in factors]
    best, best_value = current, _weight_objective(Wm, current, norm2)  # relative
    rng = np.random.default_rng(seed)
    current = [*current[:2], *(U + shake * np.linalg.norm(U, axis=0)
                               * rng.standard_normal(U.shape) for U in current[2:])]
    previous: list[np.ndarray] | None = None
    value, momentum, stop, sweeps = np.inf, 0, "iteration cap", 0
    while sweeps < max_sweeps:
        beta = momentum / (momentum + 3)
        point = current if previous is None or beta == 0 else [
            U + beta * (U - V) for U, V in zip(current, previous)]
        new, new_value = _sweep(Wm, Wt, W.shape, point, norm2)
        sweeps += 1
        if new_value > value and beta > 0:   # extrapolation failed: a plain sweep instead
            momentum = 0
            continue
        gain = value - new_value
        previous, current, value, momentum = current, new, new_value, momentum + 1
        if value < best_value:
            best, best_value = current, value
        if gain <= tol * value:
            stop = "converged"
            break
    return CPFit(best, _weight_objective(Wm, best, 1.0), sweeps, stop)


def _weight_objective(Wm: np.ndarray, factors: list[np.ndarray], norm2: float) -> float:
    Uo, Ui, Uh, Uw = factors
    E = Uo @ _kr(Ui, _kr(Uh, Uw)).T - Wm
    return float(np.vdot(E, E)) / norm2


def response_objective(Wm: np.ndarray, factors: list[np.ndarray], M: np.ndarray) -> float:
    """``tr(E M E^T)`` with ``E = W_hat - Wm`` (out x d), from the factors."""
    Uo, Ui, Uh, Uw = factors
    E = Uo @ _kr(Ui, _kr(Uh, Uw)).T - Wm
    return float(np.vdot(E @ M, E))


def round_cost(shape: tuple[int, ...], rank: int) -> float:
    """Multiply-adds of one round of :func:`als_response` on a weight of ``shape``."""
    o, i, kh, kw = shape
    d = i * kh * kw
    return d * d * rank + d * rank ** 2 + 4.0 * o * d * rank + o * d * d + rank ** 3 / 3


def spatial_step_cost(shape: tuple[int, ...], rank: int) -> float:
    """Multiply-adds of one :func:`_spatial_step` on a weight of ``shape``."""
    o, i, kh, kw = shape
    d = i * kh * kw
    return 4.0 * o * d * rank + 2.0 * o * d * d


def nearest_kron(M: np.ndarray, i: int, m: int, iterations: int = 20
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``A`` (i x i), ``B`` (m x m) with ``A kron B`` nearest to ``M`` (Frobenius; Van Loan
    and Pitsianis: the leading singular pair of the rearranged ``M``, by power iteration
    from ``B = I``), signed so that ``trace(B) > 0``."""
    Rm = M.reshape(i, m, i, m).transpose(0, 2, 1, 3).reshape(i * i, m * m)
    v = np.eye(m).ravel() / np.sqrt(m)
    for _ in range(iterations):
        v = Rm.T @ (Rm @ v)
        v /= np.linalg.norm(v) or 1.0
    A, B = (Rm @ v).reshape(i, i), v.reshape(m, m)
    return (-A, -B) if np.trace(B) < 0 else (A, B)


def _min_quartic(coef: np.ndarray) -> float:
    """The real ``t`` minimising the polynomial with coefficients ``coef`` (``t^0`` first,
    degree 4 with a nonnegative leading term); 0 when no ``t`` lowers it."""
    roots = np.roots(np.polynomial.polynomial.polyder(coef)[::-1])
    cands = [0.0, *(float(r.real) for r in roots if abs(r.imag) <= 1e-9 * (1 + abs(r)))]
    values = [float(np.polynomial.polynomial.polyval(t, coef)) for t in cands]
    return cands[int(np.argmin(values))]


def _spatial_step(Wm: np.ndarray, M: np.ndarray, factors: list[np.ndarray], EM: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One joint step on both spatial factors along their gradients preconditioned by the
    weight-only normal matrices, minimised exactly (the objective is quartic along it).
    ``EM`` is ``E M`` at ``factors``; returns the new ``U_h``, ``U_w`` and ``E M``."""
    Uo, Ui, Uh, Uw = factors
    i, R = Ui.shape
    kh, kw = Uh.shape[0], Uw.shape[0]
    GS = np.einsum("ihwr,ir->hwr", (EM.T @ Uo).reshape(i, kh, kw, R), Ui, optimize=True)
    Go, Gi = Uo.T @ Uo, Ui.T @ Ui
    Dh = -_solve_gram(np.einsum("hwr,wr->hr", GS, Uw), Go * Gi * (Uw.T @ Uw))
    Dw = -_solve_gram(np.einsum("hwr,hr->wr", GS, Uh), Go * Gi * (Uh.T @ Uh))
    E0 = Uo @ _kr(Ui, _kr(Uh, Uw)).T - Wm
    E1 = Uo @ _kr(Ui, _kr(Dh, Uw) + _kr(Uh, Dw)).T
    E2 = Uo @ _kr(Ui, _kr(Dh, Dw)).T
    E1M, E2M = E1 @ M, E2 @ M
    coef = np.array([float(np.vdot(EM, E0)), 2 * float(np.vdot(EM, E1)),
                     2 * float(np.vdot(EM, E2)) + float(np.vdot(E1M, E1)),
                     2 * float(np.vdot(E1M, E2)), float(np.vdot(E2M, E2))])
    t = _min_quartic(coef)
    return Uh + t * Dh, Uw + t * Dw, EM + t * E1M + t * t * E2M


def als_response(W: np.ndarray, factors: list[np.ndarray], M: np.ndarray, max_rounds: int,
                 tol: float, work: float = np.inf) -> CPFit:
    """Rounds of updates on ``tr(E M E^T)`` from ``factors`` (see the module docstring).

    A round: the output factor in closed form, then a step on the input factor along its
    gradient preconditioned by the input factor's normal matrix with ``M`` replaced by its
    nearest Kronecker product ``A kron B`` (:func:`nearest_kron`; that normal matrix is
    then ``A kron (U_out^T U_out * S^T B S)``, ``S = kr(U_h, U_w)``, solved by two small
    factorizations), with an exact line search (the objective is quadratic along it).
    Once a round lowers the objective by at most ``SPATIAL_AFTER`` times its value, every
    later round also steps both spatial factors (:func:`_spatial_step`). Stops when a
    round with that step lowers the objective by at most ``tol`` times its value
    ("converged"), or when ``max_rounds`` rounds are done or the next would take the
    multiply-adds spent past ``work`` (at least one round runs; "iteration cap").
    Returns the better of the start and the last iterate, with its objective recomputed
    from the factors.
    """
    o, i, kh, kw = W.shape
    m = kh * kw
    Wm = W.reshape(o, -1)
    Z = Wm @ M                                               # M is symmetric
    KA, KB = nearest_kron(M, i, m)
    Uo, Ui, Uh, Uw = (np.array(f, dtype=float) for f in factors)
    R = Uo.shape[1]
    S = _kr(Uh, Uw)
    C = S.T @ KB @ S
    const = float(np.vdot(Z, Wm))
    costs = (round_cost(W.shape, R), spatial_step_cost(W.shape, R))
    start_value = value = np.inf
    stop, rounds, spent, spatial = "iteration cap", 0, 0.0, False
    while rounds < max_rounds and (rounds == 0 or spent + costs[0] + spatial * costs[1]
                                   <= work):
        rounds += 1
        spent += costs[0] + spatial * costs[1]
        K = _kr(Ui, S)
        MK = M @ K
        H, ZK = K.T @ MK, Wm @ MK
        if rounds == 1:  # the start's objective, from the products the round needs anyway
            start_value = value = max(float(np.vdot(Uo @ H, Uo)) - 2 * float(np.vdot(Uo, ZK))
                                      + const, 0.0)
        Uo = _solve_gram(ZK, H)
        EM = Uo @ MK.T - Z                                   # E M for the new U_out
        GK = (EM.T @ Uo).reshape(i, m, R)                    # half the gradient in K
        gi = np.einsum("isr,sr->ir", GK, S, optimize=True)
        Di = -_solve_gram(_solve_gram(gi.T, KA).T, (Uo.T @ Uo) * C)
        E1 = Uo @ _kr(Di, S).T
        E1M = E1 @ M
        curv = float(np.vdot(E1M, E1))
        slope = float(np.vdot(EM, E1))                       # half the derivative at 0
        t = -slope / curv if curv > 0 else 0.0
        Ui = Ui + t * Di
        EM = EM + t * E1M
        if spatial:
            Uh, Uw, EM = _spatial_step(Wm, M, [Uo, Ui, Uh, Uw], EM)
            S = _kr(Uh, Uw)
            C = S.T @ KB @ S
        new = float(np.vdot(EM, Uo @ _kr(Ui, S).T - Wm))
        gain, value = value - new, new
        if spatial and gain <= tol * new:
            stop = "converged"
            break
        spatial = spatial or gain <= SPATIAL_AFTER * new
    final = [Uo, Ui, Uh, Uw]
    final_value = response_objective(Wm, final, M)
    if rounds == 0 or final_value > start_value:
        start = [np.array(f, dtype=float) for f in factors]
        return CPFit(start, response_objective(Wm, start, M), rounds, stop)
    return CPFit(final, final_value, rounds, stop)
