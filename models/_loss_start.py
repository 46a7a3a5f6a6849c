"""Starts for data fitted with a non-Gaussian loss (see :func:`sdf.models.cpd`).

A loss's own objective is not a sum of squares, so the least-squares pipeline (MLSVD
compression, GEVD, fit on the core) does not apply to it directly. It applies to the
loss's *working data* (:meth:`sdf.losses.Loss.working_data`: ``log(x + 1/2)`` for Poisson
counts with the log link, ``4 (x - 1/2)`` for binary data with the logit link, the data
themselves for identity links): its least-squares CPD starts the fit of the loss. Models
that must stay nonnegative (identity links of counts and positive data) start from the
absolute values of those factors, a nonnegative model of about the data's size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sdf.errors import DataError
from sdf.losses import Loss
from sdf.tensors import Tensor

from sdf.models._common import quiet
from sdf.models._pipeline import MAX_DENSIFY
from sdf.models._result import Decomposition

__all__ = ["least_squares_start", "working_array"]


def working_array(X: Tensor, loss: Loss) -> np.ndarray | None:
    """The loss's working data of ``X`` as a dense array (NaN at missing entries); None
    when the data do not fit in memory densely (more than ``MAX_DENSIFY`` entries) or
    cannot be expanded."""
    if X.size > MAX_DENSIFY:
        return None
    try:
        array = X.to_dense()
    except DataError:
        return None
    with np.errstate(all="ignore"):
        return loss.working_data(np.asarray(array, dtype=float))


def least_squares_start(X: Tensor, loss: Loss,
                        fit_cpd: Callable[[np.ndarray], Decomposition]
                        ) -> tuple[list[np.ndarray], str] | None:
    """Factors of the least-squares CPD ``fit_cpd(W)`` of the working data ``W``, and what
    was done; None when the working data cannot be formed (the caller then starts at
    random)."""
    W = working_array(X, loss)
    if W is None:
        return None
    with quiet():
        dec = fit_cpd(W)
    factors = [np.array(A) for A in dec.factors]
    what = f"least-squares CPD of the {loss.name} working data"
    if loss.nonnegative_model:
        factors = [np.abs(A) for A in factors]
        what += ", absolute values"
    return factors, what
