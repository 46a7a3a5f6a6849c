"""The fourth-order cumulant of real observations, never expanded: :class:`Cumulant4Tensor`.

For centered observations x_t (t = 1..n, I channels) with covariance ``C = (1/n) sum_t x_t
x_tᵀ``, the cumulant is the moment ``M = (1/n) sum_t x_t ∘ x_t ∘ x_t ∘ x_t`` (a CPD with n
terms) minus the three pairings of C. Contracting with factors touches the observations
once: an MTTKRP session costs O(n I R) time and O(n R + I²) memory instead of O(I⁴ R) and
O(I⁴) for the dense tensor. The tensor is symmetric, so every mode's MTTKRP is the same
function of the other three factors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from sdf.errors import DataError
from sdf.tensors._base import MTTKRPSession, Tensor, _check_finite, _float_array, _number, \
    _readonly, _TreeSession
from sdf.tensors._signals import check_densify

__all__ = ["Cumulant4Tensor"]

_BLOCK_FLOATS = 1 << 22  # entries of a Gram block formed at a time (32 MB)


class _CumulantSession:
    """The products X @ A_k once: the inner product from them, then every mode's MTTKRP."""

    def __init__(self, data: Cumulant4Tensor, mats: list[np.ndarray]) -> None:
        self._data, self._mats = data, mats
        X, C = data._X, data._C
        self._P = [X @ A for A in mats]
        CA = [C @ A for A in mats]
        # pair[k][m] = column-wise a_kᵀ C a_m
        self._pair = [[np.sum(mats[k] * CA[m], axis=0) for m in range(4)] for k in range(4)]
        self._CA = CA
        moment = np.sum(self._P[0] * self._P[1] * self._P[2] * self._P[3]) / X.shape[0]
        p = self._pair
        self._inner = _number(moment - np.sum(p[0][1] * p[2][3] + p[0][2] * p[1][3]
                                              + p[0][3] * p[1][2]))
        self._all: list[np.ndarray] | None = None

    def inner(self) -> float | complex:
        return self._inner

    def all(self) -> list[np.ndarray]:
        if self._all is None:
            X, P, p, CA = self._data._X, self._P, self._pair, self._CA
            out = []
            for n in range(4):
                b, c, d = (m for m in range(4) if m != n)
                M = X.T @ (P[b] * P[c] * P[d]) / X.shape[0]
                out.append(M - CA[b] * p[c][d] - CA[c] * p[b][d] - CA[d] * p[b][c])
            self._all = out
        return self._all


class Cumulant4Tensor(Tensor):
    r"""Fourth-order cumulant of real observations, held as the observations themselves.

    .. math::

       \mathcal{C}_{ijkl} = \frac1n \sum_t x_{ti} x_{tj} x_{tk} x_{tl}
           - C_{ij} C_{kl} - C_{ik} C_{jl} - C_{il} C_{jk},
       \qquad C = \frac1n \sum_t x_t x_t^\top,

    with x_t the centered observations. The same tensor as :func:`sdf.statistics.cum4`
    (for real data) in O(n I) memory: MTTKRPs and inner products cost O(n I R), the norm
    O(n I⁴) or O(n² I) (the cheaper is used), never the I⁴ entries. It is symmetric, so a
    symmetric CPD (``sdf.CPD(C, [a, a, a, b])`` with one variable shared) fits it directly.

    Parameters
    ----------
    observations : array_like of shape (n, I)
        One observation per row, one channel per column (a vector is one channel); real
        and finite.
    center : bool, default True
        Subtract each channel's mean first (the cumulant's definition); False when the
        observations are already centered.
    name : str, default "data"

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).laplace(size=(20000, 2))
    >>> T = Cumulant4Tensor(X)
    >>> T.shape
    (2, 2, 2, 2)
    >>> e = np.eye(2)[:, :1]  # C_0000 = E[x^4] - 3 var^2: 3 var^2 for a Laplacian
    >>> bool(abs(T.inner_cpd([e, e, e, e]) / T.covariance[0, 0] ** 2 - 3) < 0.5)
    True
    """

    kind: ClassVar[str] = "cumulant4"

    def __init__(self, observations: Any, *, center: bool = True,
                 name: str = "data") -> None:
        X = _float_array(observations, name, "observations")
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise DataError(f"{name}: observations must be a nonempty (n, I) array (one "
                            f"observation per row), got shape {X.shape}")
        _check_finite([X], name, "observations")
        X = X - X.mean(axis=0) if center else X.copy()
        self._X = _readonly(np.ascontiguousarray(X))
        self._C = _readonly(X.T @ X / X.shape[0])
        I = X.shape[1]
        self._shape = (I, I, I, I)
        self._name = name

    @property
    def observations(self) -> np.ndarray:
        """The (centered) observations x_t as rows, shape (n, I), read-only."""
        return self._X

    @property
    def covariance(self) -> np.ndarray:
        """C = (1/n) sum_t x_t x_tᵀ, shape (I, I), read-only."""
        return self._C

    def _extra_repr(self) -> str:
        return f", samples={self._X.shape[0]}"

    # ------------------------------------------------------------ protocol
    def _mode0(self, others: Sequence[np.ndarray], P: Sequence[np.ndarray]) -> np.ndarray:
        """MTTKRP of mode 0 given the other three factors and their products X @ A."""
        X, C = self._X, self._C
        B, K, D = others
        moment = X.T @ (P[0] * P[1] * P[2]) / X.shape[0]

        def pair(U: np.ndarray, V: np.ndarray) -> np.ndarray:
            return np.einsum("ir,ij,jr->r", U, C, V)

        return moment - (C @ B) * pair(K, D) - (C @ K) * pair(B, D) - (C @ D) * pair(B, K)

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        return _CumulantSession(self, mats).all()

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        return _CumulantSession(self, mats)  # type: ignore[return-value]

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        others = [mats[m] for m in range(4) if m != n]
        return self._mode0(others, [self._X @ A for A in others])

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _number(np.sum(mats[0] * self._mttkrp(mats, 0)))

    def _moment_norm_squared(self) -> float:
        """||M||² as ||ZᵀZ||² / n² (rows z_t = x_t ⊗ x_t) or (1/n²) sum (x_tᵀ x_u)⁴."""
        X = self._X
        n, I = X.shape
        if I ** 3 <= n and I ** 4 <= 4 * _BLOCK_FLOATS:
            Z = (X[:, :, None] * X[:, None, :]).reshape(n, I * I)
            return float(np.sum((Z.T @ Z) ** 2)) / n ** 2
        step = max(1, _BLOCK_FLOATS // n)
        total = 0.0
        for s in range(0, n, step):
            total += float(np.sum((X[s:s + step] @ X.T) ** 4))
        return total / n ** 2

    def _norm_squared(self) -> float:
        X, C = self._X, self._C
        quad = np.einsum("ti,ij,tj->t", X, C, X)  # x_tᵀ C x_t
        cross = 3.0 * float(quad @ quad) / X.shape[0]  # <M, each pairing>, three pairings
        C2 = C @ C
        pairs = 3.0 * float(np.sum(C * C)) ** 2 + 6.0 * float(np.sum(C2 * C2))
        return self._moment_norm_squared() - 2.0 * cross + pairs

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        X, C = self._X, self._C
        i, j, k, l = subs.T
        moment = np.mean(X[:, i] * X[:, j] * X[:, k] * X[:, l], axis=0)
        return moment - C[i, j] * C[k, l] - C[i, k] * C[j, l] - C[i, l] * C[j, k]

    def to_dense(self) -> np.ndarray:
        check_densify(self.shape, self._name, "cumulant")
        X, C = self._X, self._C
        n, I = X.shape
        Z = (X[:, :, None] * X[:, None, :]).reshape(n, I * I)
        moment = (Z.T @ Z / n).reshape(self.shape)
        return (moment - np.einsum("ij,kl->ijkl", C, C) - np.einsum("ik,jl->ijkl", C, C)
                - np.einsum("il,jk->ijkl", C, C))
