"""Block term decomposition term: data ≈ sum_b S_b ×_0 U_{b,0} ... ×_{N-1} U_{b,N-1}.

Each block is a Tucker model (an LMLRA); the engine of :mod:`sdf.terms.lmlra` evaluates
the sum with the cross-block Gramians ``U_{b,n}^T U_{c,n}``, so the Gauss-Newton product
couples the blocks exactly and never touches the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math
from typing import Any

import numpy as np

from sdf.errors import ModelError
from sdf.expr import Expr
from sdf.losses import LossLike
from sdf.numerics import ldexp
from sdf.tensors import BTDTensor
from sdf.terms._base import DataTerm, RefBuilder, Structure, TermState, _exponent_of
from sdf.terms.lmlra import (_check_tucker_block, _exact_tucker_sum_fval,
                              _iterate_tucker_sum_fval, _prepare_tucker_sum, _split)

__all__ = ["BTD"]


class BTD(DataTerm):
    r"""Block term decomposition of a data set: a sum of low multilinear rank terms.

    .. math:: T \approx \sum_{b} S_b \times_0 U_{b,0} \times_1 U_{b,1} \cdots
       \times_{N-1} U_{b,N-1}.

    The term's inputs are the blocks flattened in order:
    ``(U_{0,0}, ..., U_{0,N-1}, S_0, U_{1,0}, ..., S_1, ...)``. Each block is only
    determined up to ``U_{b,n} -> U_{b,n} A_n``, ``S_b -> S_b ×_n A_n^{-1}`` and the
    blocks up to their order: compare subspaces, not factors.

    Parameters
    ----------
    data : array_like, sdf.tensors.Tensor or xarray.DataArray
        Any data ``sdf.tensors.as_tensor`` accepts; NaN entries are missing.
    blocks : sequence of sequences ``(U_0, ..., U_{N-1}, S)``
        Per block, one factor of shape (I_n, R_{b,n}) per mode, then the core of shape
        (R_{b,0}, ..., R_{b,N-1}); each an Expr or array_like.
    weight, relweight : float, optional
        See :class:`sdf.terms.Term` (default: Tensorlab's relative weight convention).
    loss : str, dict or sdf.losses.Loss, default "gaussian"
        See :mod:`sdf.losses`; a non-Gaussian loss works on the known entries.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> rng = np.random.default_rng(0)
    >>> blocks = [[rng.standard_normal((n, 2)) for n in (6, 5, 4)] + [rng.standard_normal((2, 2, 2))]
    ...           for _ in range(2)]
    >>> T = sum(np.einsum("abc,ia,jb,kc->ijk", S, U, V, W) for U, V, W, S in blocks)
    >>> init = [[sdf.Variable(x + 0.01 * rng.standard_normal(x.shape)) for x in blk]
    ...         for blk in blocks]
    >>> result = sdf.Model(T=sdf.BTD(T, init)).fit(max_iter=100)
    >>> bool(result.relerr["T"] < 1e-6)
    True
    """

    kind = "BTD"
    spec_key = "btd"
    complex_values = True

    def __init__(
        self,
        data: Any,
        blocks: Sequence[Sequence[Any]],
        weight: float | None = None,
        relweight: float | None = None,
        loss: LossLike = "gaussian",
    ) -> None:
        if isinstance(blocks, np.ndarray) or not isinstance(blocks, Sequence) or not blocks:
            raise ModelError(
                f"{self.kind}: blocks must be a non-empty list of blocks (U_0, ..., U_{{N-1}}, S)"
            )
        sizes = []
        for b, block in enumerate(blocks):
            if isinstance(block, np.ndarray) or not isinstance(block, Sequence) or len(block) < 2:
                raise ModelError(
                    f"{self.kind}: block {b} must be a sequence (U_0, ..., U_{{N-1}}, S) of "
                    f"factors then the core, got {type(block).__name__}"
                )
            sizes.append(len(block))
        self.block_sizes: tuple[int, ...] = tuple(sizes)
        super().__init__(data, [x for block in blocks for x in block], weight=weight,
                         relweight=relweight, loss=loss)

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return len(self.block_sizes)

    @property
    def core_shapes(self) -> list[tuple[int, ...]]:
        """The multilinear rank of every block."""
        return [tuple(S.shape) for _, S in _split(self.inputs, self.block_sizes)]

    def check(self, where: str) -> None:
        for b, (factors, core) in enumerate(_split(self.inputs, self.block_sizes)):
            _check_tucker_block(f"{where}, block {b}", self.data.shape, factors, core,
                               what="each BTD block")
        super().check(where)

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        return _prepare_tucker_sum(self.data, _split(values, self.block_sizes), self)

    def iterate_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        return _iterate_tucker_sum_fval(self, _split(values, self.block_sizes), fval)

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        return _exact_tucker_sum_fval(self, _split(values, self.block_sizes), fval)

    @classmethod
    def _spec_inputs(cls, value: Any, refs: RefBuilder, path: str) -> tuple[Any, ...]:
        if isinstance(value, (str, np.ndarray)) or not isinstance(value, Sequence):
            raise ModelError(f"{path}: expected a list of blocks [U1, ..., UN, S]")
        return ([refs(b, f"{path}[{i}]") for i, b in enumerate(value)],)

    def spec_entry(self, ref: Callable[[Expr], Any]) -> dict[str, Any]:
        entry = super().spec_entry(ref)
        flat, blocks, k = entry["btd"], [], 0
        for size in self.block_sizes:
            blocks.append(flat[k : k + size])
            k += size
        entry["btd"] = blocks
        return entry

    def structure(self, values: Sequence[np.ndarray]) -> Structure:
        blocks = [[*U, S] for U, S in _split(list(values), self.block_sizes)]
        return Structure("BTD", [], blocks=blocks)

    def model_log2_norm(self, values: Sequence[np.ndarray]) -> float | None:
        if self.loss.link != "identity":
            return None  # the model is not on the data's scale
        # each block from normalised inputs, its core scaled relative to the largest
        # block's scale: the blocks' norm (BTDTensor's Gramians) stays in range
        normalised, shifts = [], []
        for factors, core in _split(values, self.block_sizes):
            e = [_exponent_of(A) for A in (*factors, core)]
            normalised.append(([ldexp(A, -k) for A, k in zip(factors, e)], ldexp(core, -e[-1])))
            shifts.append(sum(e))
        top = max(shifts)
        norm = BTDTensor([(U, ldexp(S, shift - top)) for (U, S), shift in
                          zip(normalised, shifts)]).norm()
        return math.log2(norm) + top if norm > 0 else -math.inf

    def scale_groups(self) -> list[list[int]]:
        starts = np.cumsum([0, *self.block_sizes])
        return [list(range(a, b)) for a, b in zip(starts[:-1], starts[1:])]

    def describe_shape(self) -> str:
        cores = ", ".join(str(s) for s in self.core_shapes)
        return f"{self.n_blocks} blocks, cores {cores}"
