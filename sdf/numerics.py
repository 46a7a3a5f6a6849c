"""Numerical checks shared by the engine and the drivers: factors, balancing, degeneracy.

Each exists once, with one set of thresholds: the after-fit diagnosis of
:class:`sdf.Result`, :func:`sdf.models.degeneracy`, :func:`sdf.models.corcondia`, the
GEVD start (:func:`sdf.decomp.gevd_init`), the model drivers and the figures all call
these functions.

==============================  ============================================================
:func:`check_factors`           factor matrices validated, with errors naming the factor
:func:`balance_columns`         equal column norms within every rank-one term, same model
:func:`cpd_degeneracy`          cancelling pairs, vanished components, norms of a CPD
==============================  ============================================================
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sdf.errors import DataError, SdfError

__all__ = [
    "DEGENERACY_CONGRUENCE",
    "DEGENERACY_NORM_RATIO",
    "Degeneracy",
    "SCALE_THRESHOLD",
    "ZERO_COMPONENT",
    "balance_columns",
    "check_factors",
    "cpd_degeneracy",
    "ldexp",
]

#: Two CPD components are degenerate (cancel each other) when their congruence -- the
#: product over the modes of the cosines between their columns, i.e. the cosine between
#: the two rank-one tensors -- is at most this ...
DEGENERACY_CONGRUENCE = -0.9
#: ... and their norms add up to at least this many times the norm of the whole model.
DEGENERACY_NORM_RATIO = 10.0
#: A component whose norm is at most this fraction of the largest one has vanished.
ZERO_COMPONENT = 1e-12


def ldexp(x: Any, exponent: Any) -> Any:
    """``x * 2**exponent``, exactly, for real or complex ``x`` (numpy's ``ldexp`` takes
    real numbers only; complex ones are scaled part by part and stay complex).

    Examples
    --------
    >>> import numpy as np
    >>> ldexp(np.array([1.0 + 2.0j]), 3)
    array([8.+16.j])
    >>> ldexp(np.array([0.5]), -1)
    array([0.25])
    """
    if np.iscomplexobj(x):
        x = np.asarray(x)
        out = np.empty(x.shape, dtype=np.complex128)
        out.real = np.ldexp(x.real, exponent)
        out.imag = np.ldexp(x.imag, exponent)
        return out
    return np.ldexp(x, exponent)


# ----------------------------------------------------------------------------- validation
def _describe(x: object) -> str:
    shape = getattr(x, "shape", None)
    return f"{type(x).__name__} of shape {shape}" if shape is not None else type(x).__name__


def _as_number_array(x: object, where: str, real: bool, error: type[SdfError]) -> np.ndarray:
    try:
        A = np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise error(f"{where}: expected a numeric matrix ({err})") from None
    if np.iscomplexobj(A):
        if real:
            raise error(f"{where}: expected real numbers, got dtype {A.dtype}")
        return A.astype(np.complex128, copy=False)
    if A.dtype.kind not in "biuf":
        raise error(f"{where}: expected numbers, got dtype {A.dtype}")
    return A.astype(np.float64, copy=False)


def check_factors(
    factors: object,
    *,
    shape: Sequence[int] | None = None,
    columns: int | Sequence[int] | Literal["same"] | None = None,
    name: str = "factors",
    finite: bool = False,
    real: bool = False,
    error: type[SdfError] = DataError,
) -> list[np.ndarray]:
    """Factor matrices as float (or complex) arrays, or an error naming the bad one.

    Parameters
    ----------
    factors : sequence of array_like, each of shape (I_n, R_n)
        A list (or tuple) of matrices; a 3-D ndarray counts as a stack of matrices, any
        other ndarray is refused as ambiguous.
    shape : sequence of int, optional
        The data's shape: one factor per mode, factor ``n`` with ``shape[n]`` rows.
    columns : int, sequence of int or "same", optional
        Required column counts: one for all, one per factor, or only equal ones.
    name : str, default "factors"
        How the caller names ``factors`` in messages (``"init"``, ``"term 'eem'"``...).
    finite : bool, default False
        Refuse NaN and Inf entries.
    real : bool, default False
        Refuse complex entries (otherwise kept complex, never made real).
    error : type of SdfError, default DataError
        The exception raised: DataError for data, ModelError for a model's inputs.

    Returns
    -------
    list of ndarray
        float64 (complex128) arrays; no copy is made when an input already is one, so
        callers that write into them copy first.

    Raises
    ------
    SdfError
        Of type ``error``, the message starting with ``name[n]`` for the bad factor.

    Examples
    --------
    >>> import numpy as np
    >>> [A.shape for A in check_factors([np.ones((3, 2)), [[1, 2]]], columns="same")]
    [(3, 2), (1, 2)]
    >>> check_factors([np.ones((3, 2)), np.ones((4, 2))], shape=(3, 5), name="init")
    Traceback (most recent call last):
    ...
    sdf.errors.DataError: init[1]: expected 5 rows to match mode 1 of the data, got 4
    """
    if isinstance(factors, np.ndarray) and factors.ndim != 3 or isinstance(factors, str) \
            or not isinstance(factors, (Sequence, np.ndarray)):
        raise error(f"{name}: expected a sequence of factor matrices (I_n, R), got "
                    f"{_describe(factors)}; wrap a single matrix in a list")
    if len(factors) == 0:
        raise error(f"{name}: expected at least one factor matrix, got none")
    if shape is not None and len(factors) != len(shape):
        raise error(f"{name}: expected {len(shape)} factor matrices (one per mode of the "
                    f"data, shape {tuple(shape)}), got {len(factors)}")
    if isinstance(columns, Sequence) and not isinstance(columns, str) \
            and len(columns) != len(factors):
        raise error(f"{name}: expected {len(columns)} factor matrices, got {len(factors)}")
    mats = []
    for n, x in enumerate(factors):
        where = f"{name}[{n}]"
        A = _as_number_array(x, where, real, error)
        if A.ndim != 2:
            raise error(f"{where}: expected a matrix (I_n, R), got shape {A.shape}")
        if shape is not None and A.shape[0] != shape[n]:
            raise error(f"{where}: expected {shape[n]} rows to match mode {n} of the data, "
                        f"got {A.shape[0]}")
        if isinstance(columns, (int, np.integer)) or isinstance(columns, Sequence) \
                and not isinstance(columns, str):
            want = columns if isinstance(columns, (int, np.integer)) else columns[n]
            if A.shape[1] != want:
                raise error(f"{where}: expected {want} columns, got {A.shape[1]}")
        if finite and not np.isfinite(A).all():
            raise error(f"{where}: expected finite entries, got NaN or Inf")
        mats.append(A)
    if columns == "same" and len({A.shape[1] for A in mats}) > 1:
        raise error(f"{name}: expected the same number of columns in every factor, got "
                    f"{[A.shape[1] for A in mats]}")
    return mats


# ----------------------------------------------------------------------------- balancing
def balance_columns(factors: Sequence[np.ndarray]) -> list[np.ndarray]:
    r"""Spread every rank-one term's scale evenly over its columns; the model is unchanged.

    Column ``r`` of every factor gets the norm ``(prod_n ||a_r^{(n)}||)^{1/N}`` (the
    geometric mean of the column norms, computed through logarithms so that it neither
    overflows nor underflows); signs and phases are kept. A term with a zero column is
    left as it is.

    Parameters
    ----------
    factors : sequence of ndarray, each of shape (I_n, R)
        Validated factor matrices (see :func:`check_factors`); not modified.

    Returns
    -------
    list of ndarray, each of shape (I_n, R)
        New arrays.

    Examples
    --------
    >>> import numpy as np
    >>> A, B = balance_columns([np.array([[4.0], [0.0]]), np.array([[0.0], [-1.0]])])
    >>> A.ravel().tolist(), B.ravel().tolist()
    ([2.0, 0.0], [0.0, -2.0])
    """
    norms = np.array([np.linalg.norm(A, axis=0) for A in factors])
    zero = (norms == 0).any(axis=0)
    safe = np.where(norms > 0, norms, 1.0)
    target = np.exp(np.mean(np.log(safe), axis=0))
    scale = np.where(zero, 1.0, target / safe)
    return [A * scale[n] for n, A in enumerate(factors)]


# ----------------------------------------------------------------------------- degeneracy
@dataclass(frozen=True)
class Degeneracy:
    """What :func:`cpd_degeneracy` found in a CPD.

    Attributes
    ----------
    congruence : ndarray of shape (R, R)
        ``C[r, s] = Re prod_n <a_r^{(n)}, a_s^{(n)}> / (||a_r^{(n)}|| ||a_s^{(n)}||)``: the
        cosine between rank-one terms ``r`` and ``s`` (ones on the diagonal; a zero column
        counts as a unit one).
    component_norms : ndarray of shape (R,)
        ``prod_n ||a_r^{(n)}||``, the norm of every rank-one term.
    model_norm : float
        The Frobenius norm of the whole model.
    norm_ratio : float
        ``sum_r component_norms[r] / model_norm``: 1 for orthogonal terms, large when
        terms cancel (inf for a zero model).
    pairs : list of tuple (int, int, float)
        ``(r, s, C[r, s])``, ``r < s``, of the degenerate pairs, most negative first:
        congruence at most the threshold and norms adding up to at least the norm-ratio
        threshold times ``model_norm``.
    zero_components : list of int
        Terms whose norm is at most ``ZERO_COMPONENT`` times the largest one (none when
        every term is zero).
    """

    congruence: np.ndarray
    component_norms: np.ndarray
    model_norm: float
    norm_ratio: float
    pairs: list[tuple[int, int, float]]
    zero_components: list[int]

    @property
    def degenerate(self) -> bool:
        """True when some pair of terms cancels (``pairs`` is not empty)."""
        return bool(self.pairs)


@functools.lru_cache(maxsize=64)
def _upper_pairs(R: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(R, k=1)``, made once per ``R`` (read-only: shared by every call)."""
    r, s = np.triu_indices(R, k=1)
    r.setflags(write=False)
    s.setflags(write=False)
    return r, s


def cpd_degeneracy(
    factors: Sequence[np.ndarray],
    congruence: float = DEGENERACY_CONGRUENCE,
    norm_ratio: float = DEGENERACY_NORM_RATIO,
) -> Degeneracy:
    """Look for rank-one terms of a CPD that cancel each other or vanished.

    Two-factor degeneracy (the 'swamp' of CPD fits) shows as a pair of terms whose
    congruence tends to -1 while their norms grow without bound, each far larger than
    the model they sum to. A pair is reported when both happen: congruence at most
    ``congruence`` and norms adding up to at least ``norm_ratio`` times the model's norm.
    Correlated but well-scaled terms (which fits of collinear data legitimately have) are
    not reported. Cost: ``O(N R^2 I)``, the factors' Gramians.

    Parameters
    ----------
    factors : sequence of ndarray, each of shape (I_n, R)
        Finite factor matrices (see :func:`check_factors`), real or complex.
    congruence : float, default ``DEGENERACY_CONGRUENCE`` (-0.9)
    norm_ratio : float, default ``DEGENERACY_NORM_RATIO`` (10)

    Returns
    -------
    Degeneracy

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0, 1.0], [0.0, 0.05]])
    >>> found = cpd_degeneracy([a, a, a * [1.0, -1.0]])
    >>> found.degenerate, found.pairs[0][:2], round(found.pairs[0][2], 3)
    (True, (0, 1), -0.996)
    """
    col_norms = np.array([np.linalg.norm(A, axis=0) for A in factors])
    norms = np.prod(col_norms, axis=0)
    R = norms.size
    C = np.ones((R, R), dtype=np.result_type(*factors, float))
    gram = np.ones_like(C)
    for A, n in zip(factors, col_norms):
        G = A.conj().T @ A
        gram *= G
        unit = np.where(n > 0, n, 1.0)
        C *= G / np.outer(unit, unit)
    C = C.real
    model_norm = math.sqrt(max(float(gram.sum().real), 0.0))
    total = float(norms.sum())
    ratio = total / model_norm if model_norm > 0 else math.inf
    top = float(norms.max(initial=0.0))
    zero = np.flatnonzero(norms <= ZERO_COMPONENT * top).tolist() if top > 0 else []
    r, s = _upper_pairs(R)
    floor = max(model_norm, 1e-300 * top)
    hit = (C[r, s] <= congruence) & (norms[r] + norms[s] >= norm_ratio * floor) & (top > 0)
    order = np.argsort(C[r, s][hit], kind="stable")
    pairs = [(int(a), int(b), float(c)) for a, b, c in
             zip(r[hit][order], s[hit][order], C[r, s][hit][order])]
    return Degeneracy(congruence=C, component_norms=norms, model_norm=model_norm,
                      norm_ratio=ratio, pairs=pairs, zero_components=zero)


#: Data whose largest entry is beyond ``2**±SCALE_THRESHOLD``, and variables whose scale is
#: that far from the others', are handled in scaled units (exact powers of two), so that
#: sums of squares neither underflow nor overflow; within it nothing is rescaled.
SCALE_THRESHOLD = 64
