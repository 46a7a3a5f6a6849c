"""Checks of a fit on incomplete data: a poor local minimum, and factors blown up where
no data constrain them.

With many entries missing, a fit from a random start can end far above what an
algebraic start reaches, or fit the known entries well while its factors grow without
bound along directions the known entries do not see (the model's values at the missing
entries are then meaningless). Both are found after the fit, cheaply:

* the **reference**: the error on the known entries of a truncated MLSVD of the data with
  the missing entries imputed (rounds of "fill with the current multilinear-rank
  approximation, recompute it", i.e. the kind of start the drivers build), at the
  multilinear rank the term's mode factors allow; a fit ending at more than
  :data:`POOR_FIT_RATIO` times that error (and at least :data:`POOR_FIT_GAP` above it) is
  reported;
* the **norm check**: the model's norm over the whole grid against the norm the known
  entries suggest for it (``||T_known|| sqrt(size / known)``); more than
  :data:`NORM_RATIO` times that is reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sdf.algebra import tucker_to_tensor
from sdf.decomp import mlsvd
from sdf.errors import SdfWarning
from sdf.terms._base import DataTerm, Findings

__all__ = ["NORM_RATIO", "POOR_FIT_GAP", "POOR_FIT_RATIO", "imputed_mlsvd_error", "incomplete_findings"]

#: A fit whose relative error on the known entries exceeds this many times the imputed
#: MLSVD's is reported as a poor local minimum.
POOR_FIT_RATIO = 3.0
#: A model whose norm over the grid exceeds this many times the data's (scaled to the
#: grid) is reported as blown up.
NORM_RATIO = 10.0
#: Data larger than this many entries skip the reference (the norm check still runs).
_MAX_REFERENCE_SIZE = 500_000
#: A fit is reported only when its relative error is also this much above the
#: reference's; so fits at or below it need no reference (it costs rounds of MLSVDs).
POOR_FIT_GAP = 0.01


def imputed_mlsvd_error(data: np.ndarray, ranks: Sequence[int], max_rounds: int = 20,
                        tol: float = 1e-2) -> float:
    """Relative error on the known (non-NaN) entries of a truncated MLSVD of ``data`` with
    the missing entries imputed by rounds of low-multilinear-rank approximation.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> T = np.einsum("ir,jr,kr->ijk", *(rng.standard_normal((n, 2)) for n in (8, 7, 6)))
    >>> T[rng.random(T.shape) < 0.3] = np.nan
    >>> bool(imputed_mlsvd_error(T, (2, 2, 2)) < 0.05)
    True
    """
    known = ~np.isnan(data)
    values = data[known]
    norm = float(np.linalg.norm(values)) or 1.0
    filled = np.where(known, data, 0.0)
    core = tuple(min(int(n), int(r)) for n, r in zip(data.shape, ranks))
    err = math.inf
    for _ in range(max_rounds):
        ml = mlsvd(filled, core_shape=core)
        approx = tucker_to_tensor(ml.factors, ml.core)
        new = float(np.linalg.norm(approx[known] - values)) / norm
        filled = np.where(known, data, approx)
        if abs(err - new) <= tol * new:
            return new
        err = new
    return err


def incomplete_findings(name: str, term: DataTerm, values: Sequence[np.ndarray],
                        relerr: float) -> Findings:
    """The two checks of the module docstring for one data term at its fitted values."""
    X = term.data
    # n_known, not known_entries(): the coordinates of masked data are built on demand
    if X.n_known >= X.size or not term.loss.is_gaussian:
        return []
    factors = term.mode_factors()
    if factors is None or len(factors) != X.ndim:
        return []
    found: Findings = []
    model = term.model_log2_norm(values)
    expected = term.data_log2_norm() + 0.5 * math.log2(X.size / max(X.n_known, 1))
    if model is not None and math.isfinite(expected) and model - expected > math.log2(NORM_RATIO):
        ratio = 2.0 ** (model - expected)
        found.append((SdfWarning,
                      f"term {name!r}: the model's norm over the whole grid is {ratio:.3g} "
                      f"times what the known entries suggest ({X.n_known} of {X.size} "
                      "known): the factors blew up where no data constrain them, so the "
                      "values at the missing entries are meaningless; start from the "
                      "driver (sdf.models.cpd, which imputes before fitting) or add a small "
                      "ridge term (sdf.L2 on the factors)"))
    if relerr > POOR_FIT_GAP and X.size <= _MAX_REFERENCE_SIZE:
        ranks = [e.shape[-1] for e in factors]
        with np.errstate(all="ignore"):
            reference = imputed_mlsvd_error(X.to_dense(), ranks)
        if relerr > POOR_FIT_RATIO * reference and relerr > reference + POOR_FIT_GAP:
            found.append((SdfWarning,
                          f"term {name!r}: relative error {relerr:.3g} on the known entries, "
                          f"far above the {reference:.3g} of a multilinear-rank {tuple(ranks)} "
                          "MLSVD of the data with the missing entries imputed: the fit "
                          "likely ended in a poor local minimum; refit from the driver's "
                          "start (sdf.models.cpd(data, rank) imputes and starts "
                          "algebraically) or with several starts (n_starts=)"))
    return found
