"""Private helpers shared by the transform families (not part of the public API)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from sdf.errors import TransformError
from sdf.expr import Constant, Expr
from sdf.transforms._base import ExprLike, Inputs, Linearization, Transform

Shape = tuple[int, ...]
#: Input values of a transform of several inputs: one array per input.
Arrays = tuple[np.ndarray, ...]


def fail(name: str, message: str) -> TransformError:
    """A TransformError whose message starts with the transform's name."""
    return TransformError(f"{name}: {message}")


def fmt_shapes(shapes: Sequence[Shape]) -> str:
    return ", ".join(str(tuple(s)) for s in shapes)


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (returned by transforms that would otherwise alias)."""
    v = a.view()
    v.flags.writeable = False
    return v


def numeric(x: Any) -> np.ndarray:
    """``x`` as a float64 array, or complex128 when it is complex (never made real)."""
    arr = np.asarray(x)
    return np.asarray(arr, dtype=np.complex128 if np.iscomplexobj(arr) else float)


def frozen(value: Any, name: str, param: str, *, dtype: Any = float) -> np.ndarray:
    """A read-only copy of a parameter array (a complex one stays complex where floats are
    asked for); non-finite numbers are rejected."""
    try:
        if dtype is float and np.iscomplexobj(value):
            dtype = np.complex128
        arr = np.array(value, dtype=dtype, copy=True)
    except (TypeError, ValueError) as exc:
        raise fail(name, f"{param} must be a numeric array, got {type(value).__name__}") from exc
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise fail(name, f"{param} has non-finite entries")
    arr.setflags(write=False)
    return arr


def as_int(value: Any, name: str, param: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise fail(name, f"{param} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_shape(value: Any, name: str, param: str = "shape", ndim: int | None = None) -> Shape:
    """Validate a shape parameter (tuple of positive ints, optionally of given length)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(value)
    except TypeError:
        raise fail(name, f"{param} must be a tuple of positive integers, got {value!r}") from None
    ok = all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape)
    if not ok or (ndim is not None and len(shape) != ndim):
        what = f"a tuple of {ndim} positive integers" if ndim else "a tuple of positive integers"
        raise fail(name, f"{param} must be {what}, got {value!r}")
    return tuple(int(s) for s in shape)


def vector_length(shape: Shape) -> int | None:
    """Length of a vector-shaped array (at most one axis longer than 1), else None."""
    if sum(1 for s in shape if s != 1) > 1:
        return None
    return int(np.prod(shape, dtype=int))


def unpack_inputs(inputs: tuple[ExprLike | Sequence[ExprLike], ...]) -> tuple[ExprLike, ...]:
    """Accept ``f(a, b)`` as well as ``f([a, b])`` for transforms of several inputs."""
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        return tuple(inputs[0])
    # Several arguments are one input each (a list among them is an array, not a group).
    return cast("tuple[ExprLike, ...]", inputs)


def is_known(x: Any) -> bool:
    """True for data (arrays, sparse matrices, Constants), False for other expressions."""
    return isinstance(x, Constant) or not isinstance(x, Expr)


def unbroadcast(g: np.ndarray, shape: Shape) -> np.ndarray:
    """Sum ``g`` over the axes that broadcasting added or stretched to reach ``shape``."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def param_repr(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.size <= 6:
            return np.array2string(value, separator=", ").replace("\n", "")
        return f"<array {value.shape}>"
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    return repr(value)


class Base(Transform[Inputs]):
    """Common base: a repr built from ``params()``."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={param_repr(v)}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class CachedLinearization(Linearization[Inputs]):
    """A linearization whose products are closures over cached factorizations."""

    def __init__(
        self,
        transform: Transform[Inputs],
        z: Inputs,
        value: np.ndarray,
        jvp: Callable[[Inputs], np.ndarray],
        vjp: Callable[[np.ndarray], Inputs],
    ) -> None:
        self.transform = transform
        self.z = z
        self.value = value
        self._jvp = jvp
        self._vjp = vjp

    def jvp(self, dz: Inputs) -> np.ndarray:
        return self._jvp(dz)

    def vjp(self, g: np.ndarray) -> Inputs:
        return self._vjp(g)


class Gather(Base[np.ndarray]):
    """x = z.ravel()[index], with index -1 giving a structural zero: a linear selection.

    Subclasses set ``self._index`` (int array of the output's shape) in ``_build(shape)``
    for an input of the given shape (called by ``output_shape`` and cached per shape).
    """

    complex_vjp = "transpose"

    def _build(self, shape: Shape) -> np.ndarray:
        raise NotImplementedError

    def _plan(self, shape: Shape) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """(index, zero mask or None, safe index, kept positions) for inputs of ``shape``."""
        cache = self.__dict__.setdefault("_plan_cache", {})
        plan = cache.get(shape)
        if plan is None:
            idx = np.asarray(self._build(shape), dtype=np.intp)
            zero = idx < 0
            safe = np.where(zero, 0, idx)
            keep = np.flatnonzero(~zero)
            plan = (idx, zero if zero.any() else None, safe, keep)
            for a in plan:
                if a is not None:
                    a.setflags(write=False)
            cache.clear()
            cache[shape] = plan
        return plan

    def _index(self, shape: Shape) -> np.ndarray:
        return self._plan(shape)[0]

    def output_shape(self, *shapes: Shape) -> Shape:
        return self._index(tuple(shapes[0])).shape

    def _gather(self, z: np.ndarray) -> np.ndarray:
        z = numeric(z)
        _, zero, safe, _ = self._plan(z.shape)
        out = z.ravel()[safe]
        if zero is not None:
            out[zero] = 0.0
        return out

    def value(self, z: np.ndarray) -> np.ndarray:
        return self._gather(z)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self._gather(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        shape = tuple(np.shape(z))
        idx, zero, _, keep = self._plan(shape)
        size = int(np.prod(shape, dtype=int))
        g = numeric(g)
        if np.iscomplexobj(g):  # bincount sums real weights: the two parts apart
            return self._scatter(g.real, idx, zero, keep, size).reshape(shape) + 1j * \
                self._scatter(g.imag, idx, zero, keep, size).reshape(shape)
        return self._scatter(g, idx, zero, keep, size).reshape(shape)

    @staticmethod
    def _scatter(g: np.ndarray, idx: np.ndarray, zero: np.ndarray | None, keep: np.ndarray,
                 size: int) -> np.ndarray:
        if zero is None:
            return np.bincount(idx.ravel(), weights=g.ravel(), minlength=size)
        return np.bincount(idx.ravel()[keep], weights=g.ravel()[keep], minlength=size)


__all__: list[str] = []
