"""Rank-(L_r, L_r, 1) block term decomposition: data ≈ sum_r (A_r B_r^T) ∘ c_r.

With ``A = [A_0 ... A_{R-1}]`` (I x sum L), ``B`` likewise and ``C`` (K x R), the model
is the CPD ``[[A, B, C P]]`` where ``P`` (R x sum L) repeats column r of C ``L_r`` times.
The term runs the CPD engine on the expanded factors and maps back through ``P``'s
adjoint (summing each group's columns), which keeps value, gradient and Gauss-Newton
product exact on every data type, and the block-Jacobi blocks those of the CPD engine
(exact, except on masked data with many entries missing: see :mod:`sdf.terms.cpd`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sdf.errors import ModelError
from sdf.expr import Expr
from sdf.losses import LossLike
from sdf.tensors import Tensor
from sdf.terms._base import Block, DataTerm, RefBuilder, Structure, Term, TermState
from sdf.terms.cpd import CPD

__all__ = ["LL1"]


def _group_sum(X: np.ndarray, starts: np.ndarray, axis: int) -> np.ndarray:
    """Sum the columns (along ``axis``) of each group: the adjoint of the expansion P."""
    return np.add.reduceat(X, starts, axis=axis)


class _LL1State(TermState):
    def __init__(self, cpd: TermState, index: np.ndarray, starts: np.ndarray) -> None:
        self.cpd, self.index, self.starts = cpd, index, starts
        self.fval = cpd.fval

    def _reduce(self, outs: list[np.ndarray]) -> list[np.ndarray]:
        return [outs[0], outs[1], _group_sum(outs[2], self.starts, axis=1)]

    def gradient(self) -> list[np.ndarray]:
        return self._reduce(self.cpd.gradient())

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        dA, dB, dC = dvalues
        return self._reduce(self.cpd.gn_product([dA, dB, dC[:, self.index]]))

    def blocks(self) -> list[Block]:
        bA, bB, bC = self.cpd.blocks()
        if bC is not None and not np.isscalar(bC):
            bC = _group_sum(_group_sum(np.asarray(bC), self.starts, -1), self.starts, -2)
        return [bA, bB, bC]


class LL1(DataTerm):
    r"""Decomposition in rank-(L_r, L_r, 1) terms of a third-order data set.

    .. math:: T \approx \sum_{r=0}^{R-1} (A_r B_r^T) \circ c_r,

    ``A_r`` and ``B_r`` being the r-th groups of ``L_r`` columns of ``A`` and ``B`` and
    ``c_r`` the r-th column of ``C``. Each ``A_r B_r^T`` is only determined as a matrix:
    compare the column spaces of ``A_r``, ``B_r`` and the direction of ``c_r``.

    Parameters
    ----------
    data : array_like, sdf.tensors.Tensor or xarray.DataArray, third-order
        Any data ``sdf.tensors.as_tensor`` accepts; NaN entries are missing.
    factors : sequence ``[A, B, C]`` of Expr or array_like
        ``A`` of shape (I, sum L), ``B`` of shape (J, sum L), ``C`` of shape (K, R).
    L : int or sequence of int
        The group sizes ``L_r >= 1``; an int means the same size for all R terms.
    weight, relweight : float, optional
        See :class:`sdf.terms.Term` (default: Tensorlab's relative weight convention).
    loss : str, dict or sdf.losses.Loss, default "gaussian"
        See :mod:`sdf.losses` (the CPD engine's strategies for losses).

    Examples
    --------
    >>> import numpy as np, sdf
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = rng.standard_normal((6, 3)), rng.standard_normal((5, 3)), rng.standard_normal((4, 2))
    >>> T = np.einsum("ir,jr,kr->ijk", A, B, C[:, [0, 0, 1]])
    >>> a, b, c = (sdf.Variable(x + 0.01 * rng.standard_normal(x.shape)) for x in (A, B, C))
    >>> result = sdf.Model(T=sdf.LL1(T, [a, b, c], L=[2, 1])).fit(max_iter=100)
    >>> bool(result.relerr["T"] < 1e-6)
    True
    """

    kind = "LL1"
    spec_key = "ll1"
    spec_options = ("L", "loss")
    complex_values = True  # the CPD of the expanded C: holomorphic, J^H in complex arithmetic

    def __init__(
        self,
        data: Any,
        factors: Sequence[Any],
        L: int | Sequence[int],
        weight: float | None = None,
        relweight: float | None = None,
        loss: LossLike = "gaussian",
    ) -> None:
        if isinstance(factors, np.ndarray) or not isinstance(factors, Sequence):
            raise ModelError(f"{self.kind}: factors must be a list [A, B, C]")
        if len(factors) != 3:
            raise ModelError(
                f"{self.kind}: expected 3 factors [A, B, C], got {len(factors)}"
            )
        if isinstance(L, (int, np.integer)) and not isinstance(L, bool):
            sizes: int | tuple[int, ...] = int(L)
            bad = [L] if L < 1 else []
        elif isinstance(L, Sequence) and not isinstance(L, str) and len(L) > 0:
            bad = [x for x in L if isinstance(x, bool) or not isinstance(x, (int, np.integer))
                   or x < 1]
            sizes = tuple(int(x) for x in L) if not bad else ()
        else:
            raise ModelError(f"{self.kind}: L must be an int or a non-empty list of ints, got {L!r}")
        if bad:
            raise ModelError(f"{self.kind}: every L_r must be an int >= 1, got {L!r}")
        self._L = sizes
        super().__init__(data, factors, weight=weight, relweight=relweight, loss=loss)
        # The CPD engine, on the expanded factors [A, B, C P] (its own inputs are unused).
        self._cpd = CPD(self.data, [np.zeros((1, 1))] * len(self.data.shape), loss=self.loss)

    @property
    def L(self) -> tuple[int, ...]:
        """The group sizes ``(L_0, ..., L_{R-1})``."""
        if isinstance(self._L, int):
            return (self._L,) * int(self.inputs[2].shape[-1])
        return self._L

    def check(self, where: str) -> None:
        shape = self.data.shape
        if len(shape) != 3:
            raise ModelError(
                f"{where}: an LL1 term needs third-order data, got {len(shape)} modes "
                f"(shape {shape})"
            )
        for n, expr in enumerate(self.inputs):
            place = f"{where}, factor {n} ({expr.label()!r})"
            if len(expr.shape) != 2:
                raise ModelError(f"{place}: expected a matrix, got shape {expr.shape}")
            if expr.shape[0] != shape[n]:
                raise ModelError(
                    f"{place}: expected {shape[n]} rows to match mode {n} of the data, "
                    f"got {expr.shape[0]}"
                )
        L, R = self.L, self.inputs[2].shape[1]
        if len(L) != R:
            raise ModelError(
                f"{where}, factor 2 ({self.inputs[2].label()!r}): expected {len(L)} columns, "
                f"one per entry of L = {list(L)}, got {R}"
            )
        for n in (0, 1):
            expr = self.inputs[n]
            if expr.shape[1] != sum(L):
                raise ModelError(
                    f"{where}, factor {n} ({expr.label()!r}): expected sum(L) = {sum(L)} "
                    f"columns for L = {list(L)}, got {expr.shape[1]}"
                )
        super().check(where)

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        L = np.array(self.L)
        index = np.repeat(np.arange(len(L)), L)
        starts = np.concatenate([[0], np.cumsum(L)[:-1]])
        A, B, C = values
        return _LL1State(self._cpd.prepare([A, B, C[:, index]]), index, starts)

    def describe_shape(self) -> str:
        return f"L = {list(self.L)}"

    def with_data(self, data: Tensor) -> LL1:
        twin = super().with_data(data)
        assert isinstance(twin, LL1)
        twin._cpd = CPD(data, [np.zeros((1, 1))] * len(data.shape), loss=self.loss)
        return twin

    def mode_factors(self) -> list[Expr]:
        return list(self.inputs)

    def structure(self, values: Sequence[np.ndarray]) -> Structure:
        return Structure("LL1", list(values), L=self.L)

    def model_log2_norm(self, values: Sequence[np.ndarray]) -> float | None:
        A, B, C = values
        return self._cpd.model_log2_norm([A, B, C[:, np.repeat(np.arange(len(self.L)), self.L)]])

    def spec_option_values(self) -> dict[str, Any]:
        return {"L": list(self.L), **super().spec_option_values()}

    @classmethod
    def from_spec(cls, entry: Mapping[str, Any], refs: RefBuilder, where: str) -> Term:
        if "L" not in entry:
            raise ModelError(f"{where}: an ll1 factorization needs 'L'")
        return super().from_spec(entry, refs, where)
