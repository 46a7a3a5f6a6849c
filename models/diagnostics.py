"""Diagnostics of CPD solutions: factor match, per-factor errors, core consistency, degeneracy,
and the imputation of missing entries from a fitted CPD.

All functions take factors as a sequence of matrices ``[A_0, ..., A_{N-1}]`` (each of
shape (I_n, R)) or anything with a ``.factors`` list (a :class:`sdf.models.Decomposition`
of kind ``"CPD"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from sdf import algebra
from sdf._warn import warn_user
from sdf.errors import DataError, DegeneracyWarning, ModelError
from sdf.numerics import (DEGENERACY_CONGRUENCE, Degeneracy, balance_columns, check_factors,
                          cpd_degeneracy)
from sdf.tensors import as_tensor

__all__ = [
    "CPDError",
    "Degeneracy",
    "DegeneracyWarning",
    "congruence",
    "corcondia",
    "cpderr",
    "degeneracy",
    "fms",
    "impute",
]

#: Entries up to which :func:`impute` builds the dense tensor.
MAX_IMPUTE = 20_000_000


class HasFactors(Protocol):
    """Anything holding CPD factor matrices as ``.factors`` (a Decomposition, a CPDTensor)."""

    @property
    def factors(self) -> Sequence[ArrayLike]: ...


#: CPD factors: the matrices ``[A_0, ..., A_{N-1}]`` or an object holding them.
CPDFactors: TypeAlias = Sequence[ArrayLike] | HasFactors


def _factor_list(factors: CPDFactors, name: str) -> list[np.ndarray]:
    """CPD factors (or a Decomposition's), validated: real or complex matrices with equal
    columns."""
    return check_factors(getattr(factors, "factors", factors), columns="same", name=name,
                         error=ModelError)


def _normalized(A: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(A, axis=0)
    return A / np.where(norms > 0, norms, 1.0)


def _cross_congruence(est: list[np.ndarray], ref: list[np.ndarray]) -> np.ndarray:
    """``C[r, s] = prod_n |cos(est_n[:, r], ref_n[:, s])|``, with the Hermitian inner
    product ``a^H b`` (the modulus drops sign and phase)."""
    C = np.ones((est[0].shape[1], ref[0].shape[1]))
    for A, B in zip(est, ref):
        C *= np.abs(_normalized(A).conj().T @ _normalized(B))
    return C


def _match(est: list[np.ndarray], ref: list[np.ndarray], name: str
           ) -> tuple[np.ndarray, np.ndarray]:
    if len(est) != len(ref):
        raise ModelError(f"{name}: {len(est)} estimated factors but {len(ref)} reference "
                         "factors; both need one factor per mode")
    for n, (A, B) in enumerate(zip(est, ref)):
        if A.shape[0] != B.shape[0]:
            raise ModelError(f"{name}: factor {n} has {A.shape[0]} rows in the estimate "
                             f"and {B.shape[0]} in the reference")
    if est[0].shape[1] < ref[0].shape[1]:
        raise ModelError(f"{name}: the estimate has {est[0].shape[1]} components, fewer "
                         f"than the reference's {ref[0].shape[1]}")
    C = _cross_congruence(est, ref)
    rows, cols = linear_sum_assignment(C, maximize=True)
    perm = np.empty(ref[0].shape[1], dtype=int)
    perm[cols] = rows
    return perm, C[perm, np.arange(len(perm))]


def fms(estimate: CPDFactors, reference: CPDFactors) -> float:
    r"""Factor match score between an estimated and a reference CPD.

    .. math::

        \mathrm{FMS} = \max_{\pi} \frac{1}{R} \sum_{r=1}^{R} \prod_{n}
        \frac{|\mathbf{a}^{(n)\mathsf{H}}_{\pi(r)} \mathbf{b}^{(n)}_{r}|}
             {\lVert \mathbf{a}^{(n)}_{\pi(r)} \rVert \, \lVert \mathbf{b}^{(n)}_{r} \rVert}

    over injective maps ``pi`` from the reference's ``R`` components to the estimate's
    components (solved exactly by ``scipy.optimize.linear_sum_assignment``). Scaling and
    sign of each column are ignored (normalised columns, absolute cosines); component
    weights are not compared. 1 means identical up to permutation, scaling and sign.
    Complex factors use the Hermitian inner product ``a^H b``, whose modulus ignores a
    complex scaling of each column (its unit-modulus phase included).

    Parameters
    ----------
    estimate, reference : sequence of ndarray, each of shape (I_n, R)
        Factors (or objects with a ``.factors`` list). The estimate may have more
        components than the reference; the best-matching ones are used.

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = [rng.standard_normal((n, 3)) for n in (4, 5, 6)]
    >>> B = [-2.0 * M[:, [2, 0, 1]] for M in A]
    >>> round(fms(B, A), 12)
    1.0
    >>> Z = [M + 1j * rng.standard_normal(M.shape) for M in A]
    >>> round(fms([np.exp(0.7j) * M for M in Z], Z), 12)
    1.0
    """
    est = _factor_list(estimate, "estimate")
    ref = _factor_list(reference, "reference")
    _, scores = _match(est, ref, "fms")
    return float(np.mean(scores))


@dataclass(frozen=True)
class CPDError:
    """Per-factor errors of an estimated CPD after optimal permutation and scaling.

    Attributes
    ----------
    errors : ndarray of shape (N,)
        ``||B_n - A_n[:, perm] diag(scales[n])|| / ||B_n||`` per mode ``n``
        (``A``: estimate, ``B``: reference).
    permutation : ndarray of int, shape (R,)
        Estimate column matched to each reference column.
    scales : list of ndarray, each of shape (R,)
        Least-squares column scalings (signs included; complex, phases included, for
        complex factors) applied to the estimate.
    fms : float
        Factor match score of the same matching.
    """

    errors: np.ndarray
    permutation: np.ndarray
    scales: list[np.ndarray]
    fms: float


def cpderr(estimate: CPDFactors, reference: CPDFactors) -> CPDError:
    r"""Relative error of each factor after optimal permutation and scaling.

    The permutation is the one of :func:`fms`. Then, per mode ``n`` and component ``r``,
    the estimate's column is scaled by the least-squares scalar
    ``d = a^H b / a^H a`` (sign included; for complex factors a complex number, which
    also resolves the unit-modulus phase ambiguity of each column), and
    ``errors[n] = ||B_n - A_n P D_n||_F / ||B_n||_F``.

    Parameters
    ----------
    estimate, reference : sequence of ndarray, each of shape (I_n, R)
        Factors (or objects with a ``.factors`` list); the estimate may have more columns.

    Returns
    -------
    CPDError

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = [rng.standard_normal((n, 2)) for n in (4, 5, 6)]
    >>> err = cpderr([3.0 * M[:, ::-1] for M in A], A)
    >>> np.round(err.errors, 12).tolist(), err.permutation.tolist()
    ([0.0, 0.0, 0.0], [1, 0])
    """
    est = _factor_list(estimate, "estimate")
    ref = _factor_list(reference, "reference")
    perm, scores = _match(est, ref, "cpderr")
    errors, scales = [], []
    for A, B in zip(est, ref):
        Ap = A[:, perm]
        den = np.einsum("ir,ir->r", Ap.conj(), Ap).real
        d = np.einsum("ir,ir->r", Ap.conj(), B) / np.where(den > 0, den, 1.0)
        scales.append(d)
        nb = np.linalg.norm(B)
        errors.append(np.linalg.norm(B - Ap * d) / (nb if nb > 0 else 1.0))
    return CPDError(errors=np.array(errors), permutation=perm, scales=scales,
                    fms=float(np.mean(scores)))


def congruence(factors: CPDFactors) -> np.ndarray:
    r"""Tucker congruence between the rank-one components of one CPD.

    ``C[r, s] = prod_n cos(a^{(n)}_r, a^{(n)}_s)``, signed: the cosine between the
    vectorised rank-one tensors ``a_r^{(0)} o ... o a_r^{(N-1)}``. Values near -1 for a
    pair mean the two components nearly cancel (see :func:`degeneracy`). For complex
    factors the cosines use the Hermitian inner product ``a^H b / (||a|| ||b||)`` and
    ``C`` is the real part of their product (the real cosine between the two rank-one
    tensors, which is what decides whether they cancel).

    Parameters
    ----------
    factors : sequence of ndarray, each of shape (I_n, R)

    Returns
    -------
    ndarray of shape (R, R), ones on the diagonal

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0, 1.0], [0.0, 0.1]])
    >>> C = congruence([a, a, a * [1.0, -1.0]])
    >>> bool(C[0, 1] < -0.98)
    True
    """
    return cpd_degeneracy(_factor_list(factors, "factors")).congruence


def degeneracy(factors: CPDFactors, threshold: float = DEGENERACY_CONGRUENCE,
               warn: bool = True) -> Degeneracy:
    """Look for components cancelling each other; warn when some do.

    Two-factor degeneracy (the 'swamp' of CPD fits) shows as a pair of components whose
    congruence tends to -1 while their norms grow. A pair is flagged when its congruence
    is at most ``threshold`` and the two components' norms add up to at least
    ``sdf.numerics.DEGENERACY_NORM_RATIO`` (10) times the model's norm: the test the
    engine runs after every fit (:func:`sdf.numerics.cpd_degeneracy`).

    Parameters
    ----------
    factors : sequence of ndarray, each of shape (I_n, R)
    threshold : float, default ``sdf.numerics.DEGENERACY_CONGRUENCE`` (-0.9)
        Congruence at or below which a pair is reported; in (-1, 0).
    warn : bool, default True
        Issue a :class:`DegeneracyWarning` naming the pairs when any is found.

    Returns
    -------
    sdf.numerics.Degeneracy
        ``congruence``, ``pairs``, ``norm_ratio``, ``degenerate`` and the component norms.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0, 1.0], [0.0, 0.05]])
    >>> report = degeneracy([a, a, a * [1.0, -1.0]], warn=False)
    >>> report.degenerate, report.pairs[0][:2]
    (True, (0, 1))
    """
    if not (isinstance(threshold, (int, float, np.integer, np.floating))
            and -1.0 < float(threshold) < 0.0):
        raise ModelError(f"threshold: expected a number in (-1, 0), got {threshold!r}")
    found = cpd_degeneracy(_factor_list(factors, "factors"), congruence=float(threshold))
    if found.pairs and warn:
        listed = ", ".join(f"({a}, {b}): {c:.3f}" for a, b, c in found.pairs[:5])
        warn_user(
            f"degenerate CPD: components cancel each other, congruence {listed}; "
            f"norm ratio {found.norm_ratio:.3g}. Try a lower rank, constraints or more "
            "iterations", DegeneracyWarning)
    return found


def corcondia(data: object, factors: CPDFactors) -> float:
    r"""Core consistency diagnostic (CORCONDIA) of a CPD.

    The factors are first balanced: every column of every mode gets the same norm
    ``λ_r^{1/N}`` (``λ_r``: the product of the column norms of component ``r``), signs
    kept. With those factors ``B_n`` fixed, the least-squares Tucker core
    ``G = T x_0 B_0^+ ... x_{N-1} B_{N-1}^+`` (``^+``: pseudo-inverse) is compared with
    the superdiagonal core ``S`` of ones (Bro and Kiers, 2003):

    .. math:: \mathrm{CC} = 100 \left(1 - \frac{\lVert G - S \rVert^2}{R}\right)

    Balancing makes the value independent of how the CPD's scaling is spread over the
    modes, while every component counts alike. Near 100: a trilinear structure fits;
    near 0 or negative: too many components or a model that does not fit.

    Parameters
    ----------
    data : array_like or sdf.tensors.Tensor
        Fully known data (dense, sparse or factored); incomplete data are rejected.
    factors : sequence of ndarray, each of shape (I_n, R)
        CPD factors with the scaling in them (weights absorbed), or a Decomposition.

    Returns
    -------
    float, in percent (at most 100)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = [rng.standard_normal((n, 3)) for n in (5, 6, 7)]
    >>> T = np.einsum("ir,jr,kr->ijk", *A)
    >>> round(corcondia(T, A), 6)
    100.0
    """
    T = as_tensor(data, name="data")
    mats = _factor_list(factors, "factors")
    if T.known_entries() is not None:
        raise DataError("data: corcondia needs fully known data, got incomplete data; "
                        "fill the missing entries from the fit first: "
                        "corcondia(impute(data, factors), factors)")
    check_factors(mats, shape=T.shape, name="factors", error=ModelError)
    if not all(np.linalg.norm(A, axis=0).all() for A in mats):
        raise ModelError("factors: a component is zero; corcondia needs nonzero components")
    pinvs = [np.linalg.pinv(B) for B in balance_columns(mats)]  # (R, I_n)
    G = T.project([P.T for P in pinvs])  # T ×_n pinv(A_n), in the data's own form
    R = mats[0].shape[1]
    G = G.copy()
    G[(np.arange(R),) * T.ndim] -= 1.0
    return float(100.0 * (1.0 - np.sum(np.abs(G) ** 2) / R))


def impute(data: object, factors: CPDFactors) -> np.ndarray:
    r"""The data as a dense array, every missing entry filled from a fitted CPD.

    Known entries keep their values; a missing entry ``(i_0, ..., i_{N-1})`` becomes the
    model's value ``sum_r prod_n A_n[i_n, r]``. Fully known data come back as a dense
    copy. This is the tensor the masked least-squares fit treats as its data at a
    stationary point (the expectation-maximisation view), so diagnostics that need
    complete data (:func:`corcondia`) can be computed on it:
    ``corcondia(impute(T, dec), dec)``.

    Parameters
    ----------
    data : array_like or sdf.tensors.Tensor
        NaN (or a mask) marks the missing entries; at most 2e7 entries.
    factors : sequence of ndarray, each of shape (I_n, R)
        CPD factors fitted to ``data``, or a Decomposition of kind ``"CPD"``.

    Returns
    -------
    ndarray of the data's shape
        A new array; ``data`` is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> A = [np.array([[1.0], [2.0]]), np.array([[1.0], [3.0]])]
    >>> T = np.array([[1.0, np.nan], [2.0, 6.5]])
    >>> impute(T, A)
    array([[1. , 3. ],
           [2. , 6.5]])
    """
    T = as_tensor(data, name="data")
    mats = _factor_list(factors, "factors")
    check_factors(mats, shape=T.shape, name="factors", error=ModelError)
    if T.size > MAX_IMPUTE:
        raise DataError(f"data: impute builds a dense tensor of at most {MAX_IMPUTE} entries, "
                        f"got shape {T.shape} ({T.size} entries)")
    dense = T.to_dense()
    D = np.array(dense, dtype=np.result_type(dense, *mats))
    if T.known_entries() is None:
        return D
    missing = np.nonzero(np.isnan(D))
    rows = np.ones((missing[0].size, mats[0].shape[1]), dtype=D.dtype)
    for A, idx in zip(mats, missing):
        rows *= A[idx]
    D[missing] = rows.sum(axis=1)
    return D
