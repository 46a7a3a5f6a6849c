"""Expressions of the modelling language: variables, constants and transformed nodes.

An expression is a node of a small directed acyclic graph. Leaves are :class:`Variable`
(unknowns, packed into the solver's vector) and :class:`Constant` (known arrays). Inner
nodes are :class:`Node` objects: a :class:`~sdf.transforms.Transform` applied to one or
more input expressions. The same expression object used in several places is one
quantity: this is how factors are shared (coupled) between terms.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from sdf.errors import ModelError

__all__ = ["Constant", "Expr", "Node", "TransformLike", "Variable", "as_expr"]


class TransformLike(Protocol):
    """What a :class:`Node` needs of its transform (:class:`sdf.transforms.Transform`
    implements it; the protocol keeps this module free of the transform library)."""

    name: str
    n_inputs: int
    elementwise: bool
    complex_vjp: Any

    def complex_output(self, inputs: tuple[bool, ...]) -> bool: ...

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int, ...]: ...

    def value(self, z: Any) -> np.ndarray: ...

    def linearize(self, z: Any) -> Any: ...

    def route_block(self, lin: Any, block: np.ndarray) -> Any: ...

    def curvature(self, z: Any) -> np.ndarray | None: ...

    def params(self) -> dict[str, Any]: ...

_counter = itertools.count()


class Expr:
    """Base class of all expressions.

    Attributes
    ----------
    shape : tuple of int
        Shape of the expression's value.
    name : str or None
        Name used in summaries, error messages and results.
    inputs : tuple of Expr
        Expressions this one is computed from (empty for leaves).
    """

    shape: tuple[int, ...]
    name: str | None
    inputs: tuple[Expr, ...] = ()

    def __init__(self) -> None:
        self._uid = next(_counter)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def label(self, names: Mapping[int, str] | None = None) -> str:
        """Short text naming this expression in messages.

        An unnamed transformed expression is written as the formula of its inputs
        (``nonneg(b)``); ``names`` maps ``id(variable)`` to the name to use for a
        variable (a model names its unnamed variables ``x0, x1, ...``).
        """
        return _formula(self, names or {})

    def _own_label(self) -> str:
        return self.name if self.name is not None else f"<{type(self).__name__.lower()} {self._uid}>"

    def variables(self) -> list[Variable]:
        """The variables this expression depends on, in first-seen order."""
        seen: dict[int, Variable] = {}
        for node in self.walk():
            if isinstance(node, Variable):
                seen.setdefault(id(node), node)
        return list(seen.values())

    def walk(self) -> list[Expr]:
        """All expressions this one depends on, itself included, inputs before users.

        Iterative, so chains of any depth are walked. Raises :class:`sdf.ModelError`
        naming the expressions of a cycle (an expression among its own inputs, made by
        reassigning ``inputs``).
        """
        order: list[Expr] = []
        seen: set[int] = set()
        # Expressions entered but not finished, in order: the path from self downwards.
        # (A stale entry of a finished expression is skipped through ``seen``.)
        path: dict[int, Expr] = {}
        stack: list[tuple[Expr, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in seen:
                continue
            if expanded:
                del path[id(node)]
                seen.add(id(node))
                order.append(node)
                continue
            if id(node) in path:
                raise _cycle_error(list(path.values()), node)
            path[id(node)] = node
            stack.append((node, True))
            for inp in reversed(node.inputs):
                if id(inp) not in seen:
                    stack.append((inp, False))
        return order


class Variable(Expr):
    """An unknown of the model, with its initial value.

    Parameters
    ----------
    value : array_like
        Initial value; copied, so the caller's array is never modified. A complex value
        makes a complex variable (complex128): it stays complex through the fit, the
        solvers seeing its real and imaginary parts as unknowns (see the guide's chapter
        on complex data).
    name : str, optional
        Name used in results, summaries and error messages.

    Examples
    --------
    >>> import sdf
    >>> a = sdf.Variable([[1.0, 2.0], [3.0, 4.0]], name="a")
    >>> a.shape
    (2, 2)
    >>> sdf.Variable([1 + 2j, 3j], name="z").value.dtype
    dtype('complex128')
    """

    def __init__(self, value: Any, name: str | None = None) -> None:
        super().__init__()
        _check_name(name, "Variable")
        where = "Variable" if name is None else f"variable {name!r}"
        arr = _float_array(value, f"{where}: initial value")
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.size == 0:
            raise ModelError(f"variable {name!r}: initial value is empty (shape {arr.shape})")
        self.value = arr
        self.shape = arr.shape
        self.name = name

    @property
    def is_complex(self) -> bool:
        """Whether the variable is complex (its value is complex128)."""
        return bool(np.iscomplexobj(self.value))

    @classmethod
    def random(
        cls,
        shape: tuple[int, ...] | int,
        seed: int | np.random.Generator | None = None,
        name: str | None = None,
        dtype: Any = float,
    ) -> Variable:
        """A variable initialised with standard normal entries.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the variable.
        seed : int or numpy.random.Generator, optional
            Source of randomness, for reproducible starts.
        name : str, optional
            Name of the variable.
        dtype : {float, complex} or numpy dtype, default float
            ``complex`` (or any complex dtype) draws the real and the imaginary parts
            as independent standard normal numbers (as Tensorlab's ``randn + 1i*randn``)
            and makes a complex variable.

        Examples
        --------
        >>> import sdf
        >>> sdf.Variable.random((4, 2), seed=0, name="a").shape
        (4, 2)
        >>> sdf.Variable.random((4, 2), seed=0, dtype=complex).is_complex
        True
        """
        rng = np.random.default_rng(seed)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        try:
            kind = np.dtype(dtype).kind
        except TypeError:
            raise ModelError(f"Variable.random: dtype must be float or complex, got "
                             f"{dtype!r}") from None
        if kind not in "fc":
            raise ModelError(f"Variable.random: dtype must be float or complex, got "
                             f"{np.dtype(dtype)}")
        if kind == "c":
            real = rng.standard_normal(shape)
            return cls(real + 1j * rng.standard_normal(shape), name=name)
        return cls(rng.standard_normal(shape), name=name)

    def __repr__(self) -> str:
        return f"Variable({self.label()}, shape={self.shape})"


class Constant(Expr):
    """A known array used where an expression is expected (copied, read-only)."""

    def __init__(self, value: Any, name: str | None = None) -> None:
        super().__init__()
        _check_name(name, "Constant")
        arr = _float_array(value, "Constant" if name is None else f"constant {name!r}")
        arr.setflags(write=False)
        self.value = arr
        self.shape = arr.shape
        self.name = name

    def __repr__(self) -> str:
        return f"Constant({self.label()}, shape={self.shape})"


class Node(Expr):
    """A transform applied to input expressions; made by calling a transform."""

    def __init__(self, transform: TransformLike, inputs: tuple[Expr, ...],
                 name: str | None = None) -> None:
        super().__init__()
        _check_name(name, f"{transform.name} expression")
        self.transform = transform
        self.inputs = inputs
        self.name = name
        shapes = tuple(inp.shape for inp in inputs)
        self.shape = tuple(int(s) for s in transform.output_shape(*shapes))

    def __repr__(self) -> str:
        return f"Node({self.label()}, shape={self.shape})"


def as_expr(x: Any, where: str = "factor") -> Expr:
    """Return ``x`` if it is an expression, else wrap an array as a :class:`Constant`."""
    if isinstance(x, Expr):
        return x
    try:
        arr = np.asarray(x)
        arr = arr if np.iscomplexobj(arr) else np.asarray(arr, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{where}: expected an sdf expression or a numeric array, got {type(x).__name__}"
        ) from exc
    if not np.all(np.isfinite(arr)):
        raise ModelError(f"{where}: constant array has non-finite entries")
    return Constant(arr)


def _check_name(name: Any, what: str) -> None:
    if name is not None and not isinstance(name, str):
        raise ModelError(f"{what}: name must be a string or None, got {name!r} "
                         f"({type(name).__name__})")


def _float_array(value: Any, where: str) -> np.ndarray:
    """A float64 copy of ``value`` (complex128 when it is complex: never made real); a
    ModelError naming ``where`` if it is not numeric."""
    if isinstance(value, (str, bytes)):
        raise ModelError(f"{where}: expected a numeric array, got {type(value).__name__} "
                         f"{value!r}")
    try:
        raw = np.asarray(value)
        if np.iscomplexobj(raw):
            return np.array(raw, dtype=np.complex128, copy=True)
        return np.array(value, dtype=float, copy=True)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: expected a numeric array, got {type(value).__name__} "
                         f"({exc})") from None


def _formula(expr: Expr, names: Mapping[int, str]) -> str:
    """The label of ``expr``: its name, else the formula of its inputs (iterative)."""
    parts: list[str] = []
    path: dict[int, Expr] = {}
    # Items: an expression to write, a piece of text, or the id of an expression whose
    # formula is finished (leaving the path).
    stack: list[Expr | str | int] = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, int):
            del path[item]
        elif isinstance(item, Node) and item.name is None:
            if id(item) in path:
                raise _cycle_error(list(path.values()), item)
            path[id(item)] = item
            stack += [id(item), ")"]
            for k, inp in enumerate(reversed(item.inputs)):
                stack += [", ", inp] if k else [inp]
            stack.append(f"{item.transform.name}(")
        else:
            parts.append(names.get(id(item), item._own_label()))
    return "".join(parts)


def _short(expr: Expr) -> str:
    if isinstance(expr, Node) and expr.name is None:
        return f"<{expr.transform.name} expression {expr._uid}>"
    return expr._own_label()


def _cycle_error(path: list[Expr], again: Expr) -> ModelError:
    start = next(k for k, e in enumerate(path) if e is again)
    cycle = " -> ".join(_short(e) for e in path[start:] + [again])
    return ModelError(f"expression {_short(again)}: cycle of inputs {cycle}; an expression "
                      "cannot depend on itself (was an expression's inputs reassigned?)")
