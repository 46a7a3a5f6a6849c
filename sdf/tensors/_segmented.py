"""Segmented and decimated signals: :class:`SegmentedTensor`, a signal array whose signal
axis is reshaped into several modes, held once and never copied again."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from sdf import _multilinear as ml
from sdf import algebra
from sdf.errors import DataError
from sdf.tensors._base import MTTKRPSession, Tensor, _number, _readonly, _TreeSession
from sdf.tensors._signals import check_sizes, read_signals

__all__ = ["SegmentedTensor"]


class _PermutedSession:
    """A dense session on the stored array, its MTTKRPs put back in the tensor's order."""

    def __init__(self, session: _TreeSession, perm: list[int]) -> None:
        self._session = session
        self._perm = perm

    def inner(self) -> float | complex:
        return self._session.inner()

    def all(self) -> list[np.ndarray]:
        got = self._session.all()
        return [got[b] for b in self._perm]


class SegmentedTensor(Tensor):
    """Signals whose signal axis is reshaped into K modes: segmentation or decimation.

    With ``order="F"`` (segmentation, the first new index fastest),
    ``T[..., i_0, ..., i_{K-1}, ...] = x[..., i_0 + I_0 i_1 + I_0 I_1 i_2 + ..., ...]``: for
    K = 2, column j holds the j-th segment of I_0 consecutive samples. With ``order="C"``
    (decimation, the last new index fastest), ``T[..., i, j, ...] = x[..., i I_1 + j, ...]``:
    column j is the signal decimated by I_1 from sample j. These are numpy's reshapes in
    that order. The signals are held once (a read-only copy); every operation works on
    views of them, permuting the factors rather than the data.

    Parameters
    ----------
    signals : array_like
        One signal (a vector) or several (the signal axis is ``axis``), real or complex,
        finite.
    sizes : sequence of int
        Sizes of the K >= 2 new modes; their product is the signal length L.
    axis : int, default 0
        Axis of ``signals`` along which the signals run.
    order : {"F", "C"}, default "F"
        Reshape order: "F" segments, "C" decimates.
    name : str, default "data"

    Examples
    --------
    >>> import numpy as np
    >>> T = SegmentedTensor(np.arange(6.0), (3, 2))
    >>> T.to_dense()
    array([[0., 3.],
           [1., 4.],
           [2., 5.]])
    >>> SegmentedTensor(np.arange(6.0), (3, 2), order="C").to_dense()[:, 1]
    array([1., 3., 5.])
    """

    kind: ClassVar[str] = "segmented"

    def __init__(self, signals: Any, sizes: Sequence[int], axis: int = 0, *,
                 order: Literal["F", "C"] = "F", name: str = "data") -> None:
        x, ax = read_signals(signals, axis, name, complex_ok=True)
        sz = check_sizes(sizes, name)
        if order not in ("F", "C"):
            raise DataError(f"{name}: order must be 'F' (segment) or 'C' (decimate), "
                            f"got {order!r}")
        if len(sz) < 2 or math.prod(sz) != x.shape[ax]:
            raise DataError(f"{name}: sizes {sz} do not reshape a signal of length "
                            f"{x.shape[ax]}; expected K >= 2 sizes whose product is the length")
        K = len(sz)
        stored = sz if order == "C" else sz[::-1]
        self._base = _readonly(np.array(
            x, dtype=np.result_type(x, np.float64), order="C", copy=True).reshape(
                x.shape[:ax] + stored + x.shape[ax + 1:]))
        block = list(range(ax, ax + K))
        inner = block if order == "C" else block[::-1]
        self._perm = [*range(ax), *inner, *range(ax + K, self._base.ndim)]
        self._inv = [int(b) for b in np.argsort(self._perm)]
        self._shape = x.shape[:ax] + sz + x.shape[ax + 1:]
        self._axis, self._sizes, self._order = ax, sz, order

    # ------------------------------------------------------------ description
    @property
    def signal(self) -> np.ndarray:
        """The signals, as given, read-only (a view of the stored array)."""
        s = self._base.shape
        K = len(self._sizes)
        return self._base.reshape(s[:self._axis] + (-1,) + s[self._axis + K:])

    @property
    def sizes(self) -> tuple[int, ...]:
        """Sizes of the modes the signal axis is reshaped into."""
        return self._sizes

    @property
    def axis(self) -> int:
        """First of the new modes (the signal axis of ``signals``)."""
        return self._axis

    @property
    def order(self) -> str:
        """Reshape order: "F" (segmentation) or "C" (decimation)."""
        return self._order

    def _extra_repr(self) -> str:
        return f", sizes={self._sizes}, axis={self._axis}, order={self._order!r}"

    def _stored(self, mats: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Matrices in the stored array's mode order."""
        return [mats[t] for t in self._inv]

    @property
    def is_complex(self) -> bool:
        return bool(np.iscomplexobj(self._base))

    # ------------------------------------------------------------ protocol
    def dense_view(self) -> np.ndarray:
        return self._base.transpose(self._perm)

    def _norm_squared(self) -> float:
        return algebra.frob(self._base, squared=True)

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return algebra.mttkrp(self._base, self._stored(mats), self._perm[n])

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        got = algebra.mttkrp_all(self._base, self._stored(mats))
        return [got[b] for b in self._perm]

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        session = _TreeSession(self._base, self._stored(mats))
        return _PermutedSession(session, self._perm)  # type: ignore[return-value]

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        stored = self._stored(mats)
        return _number(np.sum(stored[0] * algebra.mttkrp(self._base, stored, 0)))

    def _project(self, mats: list[np.ndarray]) -> np.ndarray:
        P = algebra.tmprod(self._base, self._stored(mats), transpose=True)
        return P.transpose(self._perm)

    def _inner_tucker(self, mats: list[np.ndarray], core: np.ndarray) -> float | complex:
        return _number(np.sum(self._project(mats) * core))

    def _project_tucker(self, mats: list[np.ndarray], core: np.ndarray
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        stored = self._stored(mats)
        core_b = core.transpose(self._inv)
        Y = ml.leave_one_out(self._base, [U.T for U in stored], large=True)
        K = [ml.contract_others(Y[b], core_b, b) for b in range(core_b.ndim)]
        P = ml.mode_product(Y[0], stored[0].T, 0)
        return P.transpose(self._perm), [K[b] for b in self._perm]

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        return self._base[tuple(subs[:, self._inv].T)]

    def to_dense(self) -> np.ndarray:
        return np.ascontiguousarray(self.dense_view())
