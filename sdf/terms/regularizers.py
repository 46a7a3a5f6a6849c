"""Regularization terms: L2 (optionally towards a target), smoothed L1, smoothed L0, and
Smooth (a roughness penalty on differences down the columns).

Each is written as a sum of squares ``||r(x)||^2 / 2`` so that Gauss-Newton treats it
like any data term. For L2, L1 and L0 the residual is elementwise: the gradient is
``r r'`` and the Gramian the diagonal ``r'^2``. For Smooth it is linear, ``r = D x`` with
``D`` a difference operator: the gradient is ``D^T D x`` and the Gramian ``D^T D``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sdf.errors import ModelError
from sdf.expr import Expr
from sdf.terms._base import Term, TermState

__all__ = ["L0", "L1", "L2", "Smooth"]


def _as_list(factors: Any, kind: str) -> list[Any]:
    if isinstance(factors, (Expr, np.ndarray)):
        return [factors]
    if isinstance(factors, (list, tuple)):
        return list(factors)
    raise ModelError(f"{kind}: factors must be an sdf expression, an array or a list of "
                     f"them, got {type(factors).__name__} {factors!r}")


class _ElementwiseState(TermState):
    """State of a regularizer f = sum phi(x): gradient phi'(x), Gramian diag(gn_diag)."""

    def __init__(self, fval: float, grads: list[np.ndarray], gn_diags: list[np.ndarray]):
        self.fval = fval
        self._grads = grads
        self._diags = gn_diags

    def gradient(self) -> list[np.ndarray]:
        return self._grads

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [d * dv for d, dv in zip(self._diags, dvalues)]

    def blocks(self) -> list[Any]:
        out: list[Any] = []
        for d in self._diags:
            if d.ndim == 2:
                out.append(d[:, :, None] * np.eye(d.shape[1]))
            else:
                out.append(float(np.mean(d)))
        return out


class _Regularizer(Term):
    def __init__(self, factors: Any, weight: float | None, relweight: float | None) -> None:
        super().__init__(_as_list(factors, self.kind), weight=weight, relweight=relweight)
        if not self.inputs:
            raise ModelError(f"{self.kind}: give at least one factor to regularize")

    def _positive_smoothing(self, smoothing: Any) -> float:
        if not (isinstance(smoothing, (int, float, np.integer, np.floating))
                and np.isfinite(smoothing) and smoothing > 0):
            raise ModelError(f"{self.kind}: smoothing must be > 0, got {smoothing!r}")
        return float(smoothing)

    @property
    def n_entries(self) -> int:
        return int(sum(int(np.prod(e.shape)) for e in self.inputs))

    def describe(self) -> str:
        names = ", ".join(e.label() for e in self.inputs)
        return f"{self.kind} on {names}"

    def spec_option_values(self) -> dict[str, Any]:
        smoothing = getattr(self, "smoothing", None)
        return {} if smoothing is None else {"smoothing": smoothing}


class L2(_Regularizer):
    """Ridge term ``sum_k ||F_k - target_k||^2 / 2`` (``|.|^2`` for complex factors or
    targets).

    Parameters
    ----------
    factors : Expr or sequence of Expr
        Expressions to regularize.
    weight, relweight : float, optional
        See :class:`sdf.terms.Term`.
    target : array_like or sequence of array_like, optional
        Values the factors are pulled towards (zero by default), one per factor.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 2)), name="a")
    >>> term = sdf.L2(a, weight=1e-3, target=np.zeros((3, 2)))
    >>> term.n_entries
    6
    """

    kind = "L2"
    spec_key = "regL2"
    spec_options = ("target",)
    complex_values = True

    def __init__(
        self,
        factors: Any,
        weight: float | None = None,
        relweight: float | None = None,
        target: Any = None,
    ) -> None:
        super().__init__(factors, weight, relweight)
        if target is None:
            self.target = None
        else:
            several = isinstance(target, (list, tuple)) and all(
                isinstance(t, np.ndarray) for t in target)
            targets = list(target) if several else [target]
            self.target = [_target_array(t, k) for k, t in enumerate(targets)]

    def spec_option_values(self) -> dict[str, Any]:
        return {} if self.target is None else {"target": [np.array(t) for t in self.target]}

    def check(self, where: str) -> None:
        if self.target is None:
            return
        if len(self.target) != len(self.inputs):
            raise ModelError(
                f"{where}: {len(self.target)} targets for {len(self.inputs)} factors"
            )
        for k, (t, e) in enumerate(zip(self.target, self.inputs)):
            if t.shape != e.shape:
                raise ModelError(
                    f"{where}, target {k}: shape {t.shape} does not match factor "
                    f"{e.label()!r} of shape {e.shape}"
                )
            if not np.all(np.isfinite(t)):
                raise ModelError(f"{where}, target {k}: has non-finite entries")

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        res = (list(values) if self.target is None
               else [v - t for v, t in zip(values, self.target)])
        fval = 0.5 * sum(float(np.vdot(r, r).real) for r in res)
        return _ElementwiseState(fval, res, [np.ones(np.shape(v)) for v in values])


def _target_array(target: Any, k: int) -> np.ndarray:
    where = f"L2, target {k}"
    if isinstance(target, (str, bytes)):
        raise ModelError(f"{where}: expected a numeric array (or None for zero), got "
                         f"{type(target).__name__} {target!r}")
    try:
        raw = np.asarray(target)
        return np.array(raw, dtype=np.complex128 if np.iscomplexobj(raw) else float)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: expected a numeric array (or None for zero), got "
                         f"{type(target).__name__} ({exc})") from None


class L1(_Regularizer):
    """Smoothed L1 term ``sum sqrt(x^2 + mu^2) - mu`` (tends to ``sum |x|`` as mu -> 0).

    Parameters
    ----------
    factors : Expr or sequence of Expr
        Expressions to make sparse.
    weight, relweight : float, optional
        See :class:`sdf.terms.Term`.
    smoothing : float, default 1e-3
        ``mu``; smaller is closer to the L1 norm but harder to optimize.

    Examples
    --------
    >>> import sdf
    >>> sdf.L1(sdf.Variable.random((3, 2), seed=0), weight=0.1).kind
    'L1'
    """

    kind = "L1"
    spec_key = "regL1"
    spec_options = ("smoothing",)

    def __init__(self, factors: Any, weight: float | None = None,
                 relweight: float | None = None, smoothing: float = 1e-3) -> None:
        super().__init__(factors, weight, relweight)
        self.smoothing = self._positive_smoothing(smoothing)

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        mu2 = self.smoothing**2
        roots = [np.sqrt(v * v + mu2) for v in values]
        fval = float(sum(np.sum(s - self.smoothing) for s in roots))
        grads = [v / s for v, s in zip(values, roots)]
        # residual r = sqrt(2) (x^2 + mu^2)^(1/4): r'^2 = x^2 / (2 (x^2 + mu^2)^(3/2))
        diags = [v * v / (2.0 * s**3) for v, s in zip(values, roots)]
        return _ElementwiseState(fval, grads, diags)


class L0(_Regularizer):
    """Smoothed L0 term ``sum 1 - exp(-x^2 / sigma^2)`` (counts entries larger than sigma).

    Parameters
    ----------
    factors : Expr or sequence of Expr
        Expressions to make sparse.
    weight, relweight : float, optional
        See :class:`sdf.terms.Term`.
    smoothing : float, default 1e-2
        ``sigma``, the width under which an entry counts as zero.

    Examples
    --------
    >>> import sdf
    >>> sdf.L0(sdf.Variable.random((3, 2), seed=0), weight=0.1).kind
    'L0'
    """

    kind = "L0"
    spec_key = "regL0"
    spec_options = ("smoothing",)

    def __init__(self, factors: Any, weight: float | None = None,
                 relweight: float | None = None, smoothing: float = 1e-2) -> None:
        super().__init__(factors, weight, relweight)
        self.smoothing = self._positive_smoothing(smoothing)

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        s2 = self.smoothing**2
        e = [np.exp(-v * v / s2) for v in values]
        fval = float(sum(np.sum(1.0 - ei) for ei in e))
        grads = [2.0 * v * ei / s2 for v, ei in zip(values, e)]
        # residual r = sqrt(2 (1 - e)): r'^2 = (2 x e / s2)^2 / (2 (1 - e)), 2 / s2 at x = 0
        diags = []
        for v, ei, g in zip(values, e, grads):
            one_minus = -np.expm1(-v * v / s2)
            with np.errstate(divide="ignore", invalid="ignore"):
                d = np.where(one_minus > 1e-12, g * g / (2.0 * one_minus), 2.0 / s2)
            diags.append(d)
        return _ElementwiseState(fval, grads, diags)


def _differences_adjoint(y: np.ndarray, order: int) -> np.ndarray:
    """``D^T y`` for ``D = np.diff(., n=order, axis=0)``."""
    for _ in range(order):
        pad = np.zeros((1,) + y.shape[1:])
        y = np.concatenate([pad, y], axis=0) - np.concatenate([y, pad], axis=0)
    return y


class _SmoothState(TermState):
    """State of Smooth: gradient ``D^T D x``, Gramian ``D^T D`` (preconditioned by its
    diagonal)."""

    def __init__(self, order: int, values: Sequence[np.ndarray]) -> None:
        self.order = order
        diffs = [np.diff(v, n=order, axis=0) for v in values]
        self.fval = 0.5 * sum(float(np.vdot(d, d)) for d in diffs)
        self._grads = [_differences_adjoint(d, order) for d in diffs]
        self._shapes = [v.shape for v in values]

    def gradient(self) -> list[np.ndarray]:
        return self._grads

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [_differences_adjoint(np.diff(dv, n=self.order, axis=0), self.order)
                for dv in dvalues]

    def blocks(self) -> list[Any]:
        out: list[Any] = []
        # diag(D^T D)[i]: the squared difference coefficients of the rows of D reaching i
        squares = np.diff(np.eye(self.order + 1), n=self.order, axis=0)[0] ** 2
        for shape in self._shapes:
            diag = np.convolve(np.ones(shape[0] - self.order), squares)
            if len(shape) == 2:
                out.append(diag[:, None, None] * np.eye(shape[1]))
            else:
                out.append(float(np.mean(diag)))
        return out


class Smooth(_Regularizer):
    """Roughness penalty ``sum_k ||D F_k||^2 / 2``, ``D`` the ``order``-th differences
    down the columns (second differences by default).

    Put it on a transform's output to ask for smooth profiles (spectra, elution or time
    profiles): ``sdf.Smooth(tf.unimodal(a, peaks), weight=1e-2)``. The penalty is zero on
    polynomials of degree below ``order`` (straight lines for second differences), so it
    bends profiles, not their level or slope.

    Parameters
    ----------
    factors : Expr or sequence of Expr
        Expressions (vectors or matrices) whose columns should be smooth.
    weight, relweight : float, optional
        See :class:`sdf.terms.Term`.
    order : int, default 2
        Order of the differences (1: first differences, 2: curvature...).

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.outer(np.arange(5.0), [1.0, 2.0]), name="a")
    >>> term = sdf.Smooth(a, weight=0.1)
    >>> term.n_entries, term.prepare([a.value]).fval   # straight lines are not penalised
    (6, 0.0)
    """

    kind = "Smooth"
    spec_key = "regSmooth"
    spec_options = ("order",)

    def __init__(self, factors: Any, weight: float | None = None,
                 relweight: float | None = None, order: int = 2) -> None:
        super().__init__(factors, weight, relweight)
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
            raise ModelError(f"Smooth: order must be an integer >= 1, got {order!r}")
        self.order = int(order)

    @property
    def n_entries(self) -> int:
        return int(sum(max(e.shape[0] - self.order, 0) * int(np.prod(e.shape[1:]))
                       for e in self.inputs))

    def spec_option_values(self) -> dict[str, Any]:
        return {"order": self.order}

    def check(self, where: str) -> None:
        for k, e in enumerate(self.inputs):
            if len(e.shape) not in (1, 2) or e.shape[0] <= self.order:
                raise ModelError(
                    f"{where}, factor {k} ({e.label()!r}): expected a vector or matrix with "
                    f"more than {self.order} rows for differences of order {self.order}, "
                    f"got shape {e.shape}")

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        return _SmoothState(self.order, [np.asarray(v, dtype=float) for v in values])
