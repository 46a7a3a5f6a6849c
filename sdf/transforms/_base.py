"""The transform contract shared by every structure in :mod:`sdf.transforms`.

A transform maps the values of its input expression(s) ``z`` to a new value ``x``. It
provides three methods:

``value(z)``
    the output ``x``;
``jvp(z, dz)``
    the directional derivative ``J(z) dz`` (forward mode);
``vjp(z, g)``
    the adjoint product ``J(z)^T g`` (reverse mode).

Complex values (see :attr:`Transform.complex_vjp`): ``jvp`` is the real-linear derivative
``dz -> dx``; the engine needs the adjoint of it for the real inner product ``Re <a, b>``,
which is ``J^H g`` for a holomorphic (complex-linear) derivative. Transforms written as
analytic formulas give ``vjp(z, g) = J^T g`` without conjugation (``complex_vjp =
"transpose"``; the engine then applies ``conj(vjp(z, conj(g)))``), transforms that
conjugate (``conj``, ``abs``, ``normalize``...) give the adjoint themselves
(``"adjoint"``), and transforms meant for real values only refuse complex inputs
(``None``: :meth:`sdf.Model.check` raises naming the place).

For a transform of one input, ``z``, ``dz`` and the result of ``vjp`` are arrays. For a
transform of several inputs (``n_inputs > 1``) they are tuples of arrays, one per input, in
the order the inputs were given; ``vjp`` returns such a tuple. ``Transform`` is generic in
that type: a transform of one input is a ``Transform[np.ndarray]``, one of several a
``Transform[tuple[np.ndarray, ...]]``.

Calling a transform on expressions (or arrays, which become constants) makes a
:class:`~sdf.expr.Node`; its output shape is checked at once by ``output_shape``.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeAlias, TypeVar, cast

import numpy as np
from numpy.typing import ArrayLike

from sdf.errors import TransformError
from sdf.expr import Expr, Node, as_expr

__all__ = ["BlockRoute", "ExprLike", "Linearization", "Transform"]

#: What transforms take as an input: an expression, or an array (made a Constant).
ExprLike: TypeAlias = Expr | ArrayLike
#: A preconditioner block carried to a transform's input (see Transform.route_block).
BlockRoute: TypeAlias = (
    tuple[Literal["rows"], np.ndarray] | tuple[Literal["kron"], np.ndarray, np.ndarray] | None
)
#: The values of a transform's inputs (``z``, ``dz``, the result of ``vjp``): an array for a
#: transform of one input, a tuple of arrays (one per input, in order) for several.
Inputs = TypeVar("Inputs", bound=np.ndarray | tuple[np.ndarray, ...])


class Linearization(Generic[Inputs]):
    """A transform evaluated at one point: its value and derivative products there.

    The engine asks each node for one linearization per iteration and then calls
    ``jvp``/``vjp`` many times (inside conjugate gradients), so transforms with costly
    set-up (factorizations, inverses) override :meth:`Transform.linearize` to cache it.
    """

    def __init__(self, transform: Transform[Inputs], z: Inputs) -> None:
        self.transform = transform
        self.z = z
        self.value = transform.value(z)

    def jvp(self, dz: Inputs) -> np.ndarray:
        return self.transform.jvp(self.z, dz)

    def vjp(self, g: np.ndarray) -> Inputs:
        return self.transform.vjp(self.z, g)


class Transform(Generic[Inputs]):
    """Base class of transforms; subclasses implement value, jvp, vjp and output_shape.

    Attributes
    ----------
    n_inputs : int
        Number of input expressions (1 for most transforms).
    elementwise : bool
        Whether the transform acts entry by entry (nonneg, sigmoid, exp...).
    name : str
        Short name shown in summaries (``nonneg``, ``matvec``...).
    """

    n_inputs: int = 1
    name: str = "transform"
    #: How ``vjp`` treats complex values: ``"transpose"`` (``vjp`` is ``J^T g`` of an
    #: analytic formula, no conjugation; the engine applies ``conj(vjp(z, conj(g)))``, the
    #: adjoint for ``Re <a, b>``; this is also autograd's convention for any function),
    #: ``"adjoint"`` (``vjp`` already is the adjoint of the real-linear ``jvp`` for
    #: ``Re <a, b>``) or None (real values only: a complex input is refused by
    #: :meth:`sdf.Model.check`). None unless a transform says otherwise.
    complex_vjp: Literal["transpose", "adjoint"] | None = None
    #: True when output entry k depends on input entry k only (same shape): the engine then
    #: maps Gauss-Newton preconditioner blocks through the diagonal derivative jvp(z, 1).
    elementwise: bool = False

    def __call__(self, *inputs: ExprLike, name: str | None = None) -> Node:
        if len(inputs) != self.n_inputs:
            raise TransformError(
                f"{self.name}: expected {self.n_inputs} input expression(s), got {len(inputs)}"
            )
        exprs = tuple(as_expr(x, where=f"{self.name} input {i}") for i, x in enumerate(inputs))
        return Node(self, exprs, name=name)

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the output for inputs of the given shapes; raise TransformError if invalid."""
        return shapes[0]

    def value(self, z: Inputs) -> np.ndarray:
        raise NotImplementedError

    def jvp(self, z: Inputs, dz: Inputs) -> np.ndarray:
        raise NotImplementedError

    def vjp(self, z: Inputs, g: np.ndarray) -> Inputs:
        raise NotImplementedError

    def complex_output(self, inputs: tuple[bool, ...]) -> bool:
        """Whether the output is complex, given which inputs are: by default when any
        input or any array parameter is complex."""
        return any(inputs) or any(_is_complex_array(v) for v in self.params().values())

    def linearize(self, z: Inputs) -> Linearization[Inputs]:
        """Evaluate at ``z`` once; the result answers jvp/vjp products at that point."""
        return Linearization(self, z)

    def route_block(self, lin: Linearization[Inputs], block: np.ndarray) -> BlockRoute:
        """Map a preconditioner block on this transform's output to its (single) input.

        ``block`` is an ``(R, R)`` matrix shared by the output's rows or an ``(I, R, R)``
        array of per-row blocks, both approximating ``J_out^T J_out``. Return
        ``("rows", B)`` with ``B`` of the same two forms for the input, ``("kron", L, W)``
        for ``L ⊗ W`` acting on an ``(n, R)`` input as ``V -> L V W``, or None when the
        transform has no cheap block-diagonal image (the input is then left unscaled).
        Elementwise transforms map blocks through their diagonal derivative.
        """
        if not (self.elementwise and self.n_inputs == 1):
            return None
        # One input (checked above), so z and dz are arrays.
        single = cast("Linearization[np.ndarray]", lin)
        dg = np.asarray(single.jvp(np.ones(np.shape(single.z))))
        if dg.ndim != 2:
            return None
        return ("rows", dg[:, :, None] * block * dg[:, None, :])

    def curvature(self, z: Inputs) -> np.ndarray | None:
        """Second derivative ``x''(z)`` of an elementwise transform (None: not available).

        Gauss-Newton drops the term ``sum_k g_k x''(z_k)`` (``g`` the objective's gradient
        with respect to ``x``) from the Hessian; where it is positive the engine adds it
        back, which restores fast convergence at active bounds of ``nonneg`` and friends.
        """
        return None

    def params(self) -> dict[str, Any]:
        """Parameters that define this transform (for summaries and ``Model.to_dict``)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _is_complex_array(value: Any) -> bool:
    """Whether a parameter is an array (numpy or scipy.sparse) of complex numbers."""
    dtype = getattr(value, "dtype", None)
    return dtype is not None and np.dtype(dtype).kind == "c"
