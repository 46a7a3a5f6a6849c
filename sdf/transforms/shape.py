"""Shape constraints on the columns of a factor: simplex, monotone, unimodal.

Each acts column by column on a matrix (a vector is one column) and is smooth in ``z``, so
Gauss-Newton handles a constrained factor like any other transformed one:

* :class:`Simplex`: ``x[:, r] = z[:, r]**2 / sum(z[:, r]**2)``, nonnegative columns summing
  to one (squares normalised, not a softmax: a zero stays reachable);
* :class:`Monotone`: ``x`` a cumulative sum of squares, increasing or decreasing columns;
* :class:`Unimodal`: columns increasing up to a peak row and decreasing after it, peak
  height ``z[m]**2`` and ratios ``1 / (1 + z[k]**2)`` between neighbours away from the peak.

Each class has ``preimage(x)``: initial values ``z`` whose image is ``x`` (after projecting
``x`` onto the constraint where it is not on it), to start a constrained fit from an
estimate. A roughness penalty on a transform's output is the regularizer
:class:`sdf.Smooth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from sdf.expr import Node
from sdf.transforms._base import ExprLike
from sdf.transforms._util import Base, Shape, fail

__all__ = ["Monotone", "Simplex", "Unimodal", "monotone", "simplex", "unimodal"]


def _columns_shape(name: str, shape: Shape) -> Shape:
    if len(shape) not in (1, 2) or shape[0] < 1:
        raise fail(name, f"input must be a vector or a matrix (columns constrained), "
                         f"got shape {tuple(shape)}")
    return tuple(shape)


def _as_float(z: Any) -> np.ndarray:
    return np.asarray(z, dtype=float)


def _revcumsum(a: np.ndarray) -> np.ndarray:
    """``out[i] = sum(a[i:])`` along axis 0."""
    return np.flip(np.cumsum(np.flip(a, axis=0), axis=0), axis=0)


class Simplex(Base[np.ndarray]):
    """x[:, r] = z[:, r]**2 / sum_i z[i, r]**2: columns on the probability simplex.

    Squares normalised rather than a softmax, so that an exact zero is reachable (a
    softmax keeps every entry positive). The scale of each column of ``z`` does not
    change ``x``: the Gauss-Newton Gramian is singular along it, which the trust region
    tolerates. A column of ``z`` must not be all zero.
    """

    name = "simplex"

    def output_shape(self, *shapes: Shape) -> Shape:
        return _columns_shape("simplex", shapes[0])

    def value(self, z: np.ndarray) -> np.ndarray:
        s = np.square(_as_float(z))
        return s / np.sum(s, axis=0)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        z = _as_float(z)
        total = np.sum(z * z, axis=0)
        ds = 2.0 * z * _as_float(dz)
        return (ds - (z * z / total) * np.sum(ds, axis=0)) / total

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        z = _as_float(z)
        total = np.sum(z * z, axis=0)
        g = _as_float(g)
        x = z * z / total
        return 2.0 * z * (g - np.sum(x * g, axis=0)) / total

    def preimage(self, x: Any) -> np.ndarray:
        """``z`` with ``value(z)`` the columns of ``x`` clipped at 0 and normalised.

        Examples
        --------
        >>> import numpy as np
        >>> t = Simplex()
        >>> np.round(t.value(t.preimage(np.array([[1.0, 0.0], [3.0, 2.0]]))), 12).tolist()
        [[0.25, 0.0], [0.75, 1.0]]
        """
        return np.sqrt(np.maximum(_as_float(x), 0.0))


Direction = Literal["increasing", "decreasing"]


class Monotone(Base[np.ndarray]):
    """Monotone columns: cumulative sums of squares down each column.

    With ``nonneg=False`` the first row is free and each next entry adds (increasing) or
    subtracts (decreasing) a square: ``x[0] = z[0]``, ``x[i] = x[i-1] +- z[i]**2``. With
    ``nonneg=True`` the columns are also nonnegative: increasing ``x[i] = sum_{k<=i}
    z[k]**2``; decreasing ``x[i] = sum_{k>=i} z[k]**2`` (the last row is the smallest).

    Parameters
    ----------
    direction : {"increasing", "decreasing"}, default "increasing"
    nonneg : bool, default False
    """

    name = "monotone"

    def __init__(self, direction: Direction = "increasing", nonneg: bool = False) -> None:
        if direction not in ("increasing", "decreasing"):
            raise fail("monotone", f"direction must be 'increasing' or 'decreasing', "
                                   f"got {direction!r}")
        if not isinstance(nonneg, (bool, np.bool_)):
            raise fail("monotone", f"nonneg must be True or False, got {nonneg!r}")
        self.direction: Direction = direction
        self.nonneg = bool(nonneg)

    def params(self) -> dict[str, Any]:
        return {"direction": self.direction, "nonneg": self.nonneg}

    def output_shape(self, *shapes: Shape) -> Shape:
        return _columns_shape("monotone", shapes[0])

    @property
    def _reverse(self) -> bool:
        return self.nonneg and self.direction == "decreasing"

    def _steps_derivative(self, z: np.ndarray) -> np.ndarray:
        """d(step_i)/dz_i, the steps being what the cumulative sum adds up."""
        d = 2.0 * z
        if not self.nonneg:
            d = d if self.direction == "increasing" else -d
            d[0] = 1.0
        return d

    def _accumulate(self, steps: np.ndarray) -> np.ndarray:
        return _revcumsum(steps) if self._reverse else np.cumsum(steps, axis=0)

    def _accumulate_adjoint(self, g: np.ndarray) -> np.ndarray:
        return np.cumsum(g, axis=0) if self._reverse else _revcumsum(g)

    def value(self, z: np.ndarray) -> np.ndarray:
        z = _as_float(z)
        steps = z * z
        if not self.nonneg:
            steps = steps if self.direction == "increasing" else -steps
            steps[0] = z[0]
        return self._accumulate(steps)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self._accumulate(self._steps_derivative(_as_float(z)) * _as_float(dz))

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self._steps_derivative(_as_float(z)) * self._accumulate_adjoint(_as_float(g))

    def preimage(self, x: Any) -> np.ndarray:
        """``z`` whose image is ``x`` where ``x`` is monotone in this direction (steps
        against the direction are set to zero, so the image is then a monotone envelope).

        Examples
        --------
        >>> import numpy as np
        >>> t = Monotone("decreasing", nonneg=True)
        >>> np.round(t.value(t.preimage(np.array([5.0, 4.0, 1.0]))), 12).tolist()
        [5.0, 4.0, 1.0]
        """
        x = _as_float(x)
        if self._reverse:
            steps = x - np.concatenate([x[1:], np.zeros_like(x[:1])], axis=0)
            return np.sqrt(np.maximum(steps, 0.0))
        steps = np.diff(x, axis=0, prepend=np.zeros_like(x[:1]))
        if self.direction == "decreasing":
            steps = -steps
        z = np.sqrt(np.maximum(steps, 0.0))
        if not self.nonneg:
            z[0] = x[0]
        return z


class Unimodal(Base[np.ndarray]):
    """Unimodal nonnegative columns with a given peak row per column.

    ``x[m] = z[m]**2`` at the peak row ``m`` of the column, and away from it every entry
    is its neighbour towards the peak times ``1 / (1 + z[k]**2)``:
    ``x[i] = z[m]**2 * prod_{k between i and m, k != m} 1 / (1 + z[k]**2)``. Columns rise
    (weakly) to the peak and fall after it, stay nonnegative, and the map is smooth in
    ``z``.

    The peak rows are parameters, not unknowns. Unimodal least squares as used in
    chemometrics (Bro and Sidiropoulos, J. Chemometrics 12 (1998) 223-247, after Frisén)
    fits, inside alternating least squares, an increasing regression left of each
    candidate peak and a decreasing one right of it and keeps the best candidate: the
    peak position is a discrete choice, and the fit is not differentiable in it. Here
    the choice is made once, before the fit (:meth:`from_profiles` takes the row of each
    column's maximum of an estimate, e.g. an unconstrained or nonnegative fit); the fit
    then cannot move a peak, only flatten the profile towards a neighbour (ratios of 1).
    A peak placed a few rows wrong shows as a plateau: refit with the peaks of the
    result, or try neighbouring rows. Where a ratio sits at 1 (a flat step) its
    derivative vanishes, as for squares at zero, so Gauss-Newton converges linearly
    there: expect more iterations than for an unconstrained fit.

    Parameters
    ----------
    peaks : int or sequence of int
        The peak row of each column (an int for a vector).
    """

    name = "unimodal"

    def __init__(self, peaks: int | Sequence[int]) -> None:
        arr = np.atleast_1d(np.asarray(peaks))
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise fail("unimodal", f"peaks must be an integer or a sequence of integers "
                                   f"(one per column), got {peaks!r}")
        if np.any(arr < 0):
            raise fail("unimodal", f"peaks must be row indices >= 0, got {arr.tolist()}")
        self.peaks = tuple(int(p) for p in arr)

    def params(self) -> dict[str, Any]:
        return {"peaks": list(self.peaks)}

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = _columns_shape("unimodal", shapes[0])
        columns = shape[1] if len(shape) == 2 else 1
        if len(self.peaks) != columns:
            raise fail("unimodal", f"{len(self.peaks)} peak row(s) given for {columns} "
                                   f"column(s) of the input of shape {shape}")
        if max(self.peaks) >= shape[0]:
            raise fail("unimodal", f"peak row {max(self.peaks)} is outside the {shape[0]} "
                                   "rows of the input")
        return shape

    def _masks(self, shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right of peak, left of peak, at peak) boolean masks of the input's shape."""
        rows = np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
        m = np.asarray(self.peaks) if len(shape) == 2 else self.peaks[0]
        return rows > m, rows < m, rows == m

    def _log_ratio_sums(self, logs: np.ndarray, right: np.ndarray, left: np.ndarray
                        ) -> np.ndarray:
        """Per entry, the sum of ``logs`` over the rows between it and its peak."""
        return (np.where(right, np.cumsum(np.where(right, logs, 0.0), axis=0), 0.0)
                + np.where(left, _revcumsum(np.where(left, logs, 0.0)), 0.0))

    def _parts(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                             np.ndarray, np.ndarray]:
        right, left, peak = self._masks(z.shape)
        top = np.sum(np.where(peak, z, 0.0), axis=0)        # z[m] per column
        decay = np.exp(self._log_ratio_sums(-np.log1p(z * z), right, left))
        return top, decay, right, left, peak

    def value(self, z: np.ndarray) -> np.ndarray:
        z = _as_float(z)
        top, decay, *_ = self._parts(z)
        return top * top * decay

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        z, dz = _as_float(z), _as_float(dz)
        top, decay, right, left, peak = self._parts(z)
        dtop = np.sum(np.where(peak, dz, 0.0), axis=0)
        dlogs = -2.0 * z * dz / (1.0 + z * z)
        return (2.0 * top * dtop + top * top * self._log_ratio_sums(dlogs, right, left)) * decay

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        z, g = _as_float(z), _as_float(g)
        top, decay, right, left, peak = self._parts(z)
        weighted = top * top * decay * _as_float(g)
        # Adjoint of the masked cumulative sums: a ratio at row k reaches every entry
        # further from the peak than k.
        reach = (np.where(right, _revcumsum(np.where(right, weighted, 0.0)), 0.0)
                 + np.where(left, np.cumsum(np.where(left, weighted, 0.0), axis=0), 0.0))
        out = -2.0 * z / (1.0 + z * z) * reach
        at_peak = 2.0 * top * np.sum(decay * g, axis=0)
        return np.where(peak, at_peak, out)

    def preimage(self, x: Any) -> np.ndarray:
        """``z`` whose image is ``x`` where ``x`` is nonnegative and unimodal about these
        peaks (elsewhere, the image is the nearest such profile built outwards from the
        peak: ratios are clipped to at most 1, and zeros to a tiny fraction of the peak).

        Examples
        --------
        >>> import numpy as np
        >>> t = Unimodal(peaks=1)
        >>> np.round(t.value(t.preimage(np.array([1.0, 4.0, 2.0]))), 12).tolist()
        [1.0, 4.0, 2.0]
        """
        x = _as_float(x)
        _columns_shape("unimodal", x.shape)
        right, left, peak = self._masks(x.shape)
        top = np.sum(np.where(peak, x, 0.0), axis=0)
        floor = 1e-12 * np.maximum(np.abs(top), 1e-300)
        x = np.maximum(x, floor)
        towards_peak_right = np.concatenate([x[:1], x[:-1]], axis=0)   # x[k-1]
        towards_peak_left = np.concatenate([x[1:], x[-1:]], axis=0)    # x[k+1]
        neighbour = np.where(right, towards_peak_right, towards_peak_left)
        ratio = np.clip(x / neighbour, 1e-300, 1.0)
        z = np.sqrt(1.0 / ratio - 1.0)
        return np.where(peak, np.sqrt(np.maximum(top, 0.0)), z)

    @classmethod
    def from_profiles(cls, x: Any) -> tuple[Unimodal, np.ndarray]:
        """The transform with the peaks of ``x`` (each column's largest entry) and the
        initial values ``z`` that reproduce ``x`` (see :meth:`preimage`).

        Examples
        --------
        >>> import numpy as np
        >>> t, z = Unimodal.from_profiles(np.array([[0.0, 3.0], [2.0, 1.0], [1.0, 0.5]]))
        >>> t.peaks
        (1, 0)
        """
        x = np.abs(_as_float(x))
        _columns_shape("unimodal", x.shape)
        peaks = np.argmax(x, axis=0)
        transform = cls(peaks.tolist() if x.ndim == 2 else int(peaks))
        return transform, transform.preimage(x)


def simplex(z: ExprLike, *, name: str | None = None) -> Node:
    """x[:, r] = z[:, r]**2 / sum_i z[i, r]**2: columns on the probability simplex.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> from sdf import transforms as tf
    >>> a = sdf.Variable(np.array([[1.0, 1.0], [1.0, 3.0]]), name="a")
    >>> tf.Simplex().value(a.value).sum(axis=0).tolist()
    [1.0, 1.0]
    >>> tf.simplex(a).label()
    'simplex(a)'
    """
    return Simplex()(z, name=name)


def monotone(z: ExprLike, direction: Direction = "increasing", nonneg: bool = False, *,
             name: str | None = None) -> Node:
    """Monotone columns (cumulative sums of squares); see :class:`Monotone`.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Monotone("increasing").value(np.array([-1.0, 2.0, 1.0])).tolist()
    [-1.0, 3.0, 4.0]
    >>> tf.Monotone("decreasing", nonneg=True).value(np.array([1.0, 1.0, 2.0])).tolist()
    [6.0, 5.0, 4.0]
    """
    return Monotone(direction, nonneg)(z, name=name)


def unimodal(z: ExprLike, peaks: int | Sequence[int], *, name: str | None = None) -> Node:
    """Unimodal nonnegative columns peaking at the rows ``peaks``; see :class:`Unimodal`.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Unimodal(peaks=1).value(np.array([1.0, 2.0, 1.0])).tolist()
    [2.0, 4.0, 2.0]
    """
    return Unimodal(peaks)(z, name=name)
