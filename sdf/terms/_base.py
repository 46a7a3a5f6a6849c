"""The term contract: what every factorization and regularizer gives the engine.

A term reads the values of its input expressions (factors, cores) and contributes
``w/2 * ||r||^2`` to the objective, ``r`` being its residual (model minus data over the
known entries, or the regularizer's residual). For one point it builds a
:class:`TermState` that answers, without ever forming a Jacobian ``J`` of ``r``:

``fval``
    ``||r||^2 / 2`` (unweighted);
``gradient()``
    ``J^T r`` split per input;
``gn_product(dvalues)``
    ``J^T J dv`` split per input (the Gauss-Newton Gramian product);
``blocks()``
    per input, a block-diagonal approximation of ``J^T J`` for the preconditioner.

Blocks are ``None`` (no information), a float ``s`` (``s * I``), an ``(R, R)`` array
shared by every row of an ``(I, R)`` input, or an ``(I, R, R)`` array with one block per
row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sdf.errors import ModelError
from sdf.expr import Expr, as_expr
from sdf.tensors import Tensor, as_tensor

__all__ = ["Block", "DataTerm", "Term", "TermState"]

Block = Any  # None | float | ndarray (R, R) | ndarray (I, R, R)


class TermState:
    """A term evaluated at one point (see the module docstring)."""

    fval: float

    def gradient(self) -> list[np.ndarray]:
        raise NotImplementedError

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def blocks(self) -> list[Block]:
        return [None] * len(self.gradient())


class Term:
    """Base class of terms.

    Parameters
    ----------
    inputs : sequence of Expr or array_like
        The expressions the term reads; arrays become constants.
    weight : float, optional
        Absolute weight ``w`` in ``w/2 * ||r||^2``.
    relweight : float, optional
        Relative weight, normalised over the model (see :class:`sdf.Model`). At most one
        of ``weight`` and ``relweight`` may be given; by default ``relweight=1``.
    """

    kind: str = "term"
    is_data_term: bool = False

    def __init__(
        self,
        inputs: Sequence[Any],
        weight: float | None = None,
        relweight: float | None = None,
    ) -> None:
        self.inputs: tuple[Expr, ...] = tuple(
            as_expr(x, where=f"{self.kind} input {i}") for i, x in enumerate(inputs)
        )
        if weight is not None and relweight is not None:
            raise ModelError(f"{self.kind}: give weight or relweight, not both")
        for label, w in (("weight", weight), ("relweight", relweight)):
            is_number = isinstance(w, (int, float, np.integer, np.floating)) and not isinstance(w, bool)
            if w is not None and not (is_number and np.isfinite(w) and w >= 0):
                raise ModelError(f"{self.kind}: {label} must be a finite number >= 0, got {w!r}")
        self.weight = None if weight is None else float(weight)
        self.relweight = None if relweight is None else float(relweight)
        if self.weight is None and self.relweight is None:
            self.relweight = 1.0

    @property
    def n_entries(self) -> int:
        """Number of residual entries (known data entries, or regularized entries)."""
        raise NotImplementedError

    @property
    def data_norm(self) -> float:
        """Norm used to turn the residual norm into a relative error (NaN if none)."""
        return float("nan")

    def check(self, where: str) -> None:
        """Raise ModelError, prefixed by ``where``, if the term's pieces don't fit."""

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        raise NotImplementedError

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        """``||r||^2 / 2`` recomputed without cancellation where ``fval`` may have lost it.

        Terms that evaluate ``f`` from norms and inner products (never forming the
        residual) lose its relative accuracy once the fit is within ``sqrt(eps)`` of the
        data; results are reported with this value. The default returns ``fval``.
        """
        return fval

    def describe(self) -> str:
        """One line for Model.summary()."""
        return self.kind


class DataTerm(Term):
    """Base class of the terms that explain a data set (CPD, LMLRA, BTD, LL1, ...).

    Holds the data as a :class:`sdf.tensors.Tensor` (anything ``as_tensor`` accepts is
    converted, with the term's kind naming it in errors) and answers what every data term
    shares: the number of known entries, the data's norm (computed once by the tensor,
    whose values never change) and the one-line description.
    """

    is_data_term = True

    def __init__(self, data: Any, inputs: Sequence[Any], weight: float | None = None,
                 relweight: float | None = None) -> None:
        self.data: Tensor = (data if isinstance(data, Tensor)
                             else as_tensor(data, name=f"{self.kind} data"))
        super().__init__(inputs, weight=weight, relweight=relweight)

    @property
    def n_entries(self) -> int:
        return int(self.data.n_known)

    @property
    def data_norm(self) -> float:
        return self.data.norm()

    @property
    def data_norm_squared(self) -> float:
        """Squared norm of the data over the known entries."""
        return self.data.norm_squared()

    def describe(self) -> str:
        return f"{self.kind} of {self.data.kind} data {self.data.shape}, {self.describe_shape()}"

    def describe_shape(self) -> str:
        """The sizes that define the term (rank, core, ...), for :meth:`describe`."""
        return ""
