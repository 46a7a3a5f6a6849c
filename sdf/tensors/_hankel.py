"""Hankel tensors of signals, never expanded: :class:`HankelTensor`.

A K-th order Hankel tensor of a signal x of length L has entries
``H[i_0, ..., i_{K-1}] = x[i_0 + ... + i_{K-1}]`` with ``I_0 + ... + I_{K-1} - K + 1 = L``.
Contracting it with vectors is a convolution: ``<H, a_0 ∘ ... ∘ a_{K-1}> = <x, a_0 * ... *
a_{K-1}>`` (``*`` the full linear convolution, length exactly L), and the MTTKRP of mode k
is the correlation of x with the convolution of the other factors. Both run through FFTs
of length ``n >= L`` (real ones for real factors): an MTTKRP session costs O(K n log n R)
time and O(K n R) memory, whatever the (astronomical) number of entries.

With steps (dilations) ``s_k`` the entries are ``x[s_0 i_0 + ... + s_{K-1} i_{K-1}]`` and the
factors enter the convolutions upsampled by their step: steps ``(1, s)`` give the
segmentation of a signal into overlapping windows of length I_0 shifted by s
(:class:`OverlappingSegmentedTensor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from sdf import algebra
from sdf.errors import DataError
from sdf.tensors._base import MTTKRPSession, Tensor, _number, _readonly, _TreeSession
from sdf.tensors._signals import check_densify, check_sizes, read_signals, signals_first

__all__ = ["HankelTensor", "OverlappingSegmentedTensor", "anti_diagonal_counts",
           "default_hankel_sizes", "sample_counts"]


def default_hankel_sizes(length: int, order: int) -> tuple[int, ...]:
    """The most nearly cubical sizes of an order-K Hankel tensor of a length-L signal.

    ``I_0 + ... + I_{K-1} = L + K - 1``, the first sizes one larger when K does not
    divide ``L + K - 1``.

    Examples
    --------
    >>> default_hankel_sizes(10, 2), default_hankel_sizes(10, 3)
    ((6, 5), (4, 4, 4))
    """
    total = length + order - 1
    q, extra = divmod(total, order)
    return tuple(q + 1 if k < extra else q for k in range(order))


def anti_diagonal_counts(sizes: Sequence[int]) -> np.ndarray:
    """How many entries of a Hankel tensor of ``sizes`` hold each sample: ``w[l] = #{(i_k) :
    sum i_k = l}``, shape (L,), float64 (exact below 2**53).

    Examples
    --------
    >>> anti_diagonal_counts((3, 2)).tolist()
    [1.0, 2.0, 2.0, 1.0]
    """
    w = np.ones(int(sizes[0]))
    for I in sizes[1:]:
        # Convolution with a box of ones, exact through cumulative sums.
        cs = np.concatenate([[0.0], np.cumsum(w)])
        ell = np.arange(w.size + int(I) - 1)
        w = cs[np.minimum(ell + 1, w.size)] - cs[np.maximum(ell - int(I) + 1, 0)]
    return w


def sample_counts(sizes: Sequence[int], steps: Sequence[int]) -> np.ndarray:
    """How many entries of a Hankel tensor with steps hold each sample:
    ``w[l] = #{(i_k) : sum s_k i_k = l}``, shape (sum s_k (I_k - 1) + 1,), float64.

    Examples
    --------
    >>> sample_counts((3, 3), (1, 2)).tolist()  # windows of 3 shifted by 2
    [1.0, 1.0, 2.0, 1.0, 2.0, 1.0, 1.0]
    """
    if all(int(st) == 1 for st in steps):
        return anti_diagonal_counts(sizes)
    w = np.ones(1)
    for I, st in zip(sizes, steps):
        I, st = int(I), int(st)
        out = np.zeros(w.size + st * (I - 1))
        padded = np.concatenate([w, np.zeros(st * (I - 1))])
        for rho in range(min(st, out.size)):
            # Along one residue class the comb of I ones spaced st is a box of width I,
            # summed exactly through cumulative sums.
            u = padded[rho::st]
            cs = np.concatenate([[0.0], np.cumsum(u)])
            m = np.arange(u.size)
            out[rho::st] = cs[m + 1] - cs[np.maximum(m - I + 1, 0)]
        w = out
    return w


def _upsampled(A: np.ndarray, step: int) -> np.ndarray:
    """Rows of A placed ``step`` apart (zeros between): the factor of a dilated mode."""
    if step == 1:
        return A
    out = np.zeros((step * (A.shape[0] - 1) + 1, A.shape[1]), dtype=A.dtype)
    out[::step] = A
    return out


class _HankelSession:
    """Inner product first (one FFT per Hankel factor), the MTTKRPs of every mode after.

    Real factors go through real FFTs; complex ones (a complex model of real signals, as
    in harmonic retrieval) through complex FFTs of the same length."""

    def __init__(self, data: HankelTensor, mats: list[np.ndarray]) -> None:
        import scipy.fft  # here, not at import: ``import sdf`` stays light

        self._data = data
        K, n, L = data.order, data._nfft, data.signal_length
        hankel = [_upsampled(np.asarray(mats[data.axis + k]), st)
                  for k, st in enumerate(data._steps)]
        self._rest = [np.asarray(mats[t]) for t in data._rest_modes]
        self._complex = data.is_complex or any(np.iscomplexobj(A) for A in mats)
        forward = scipy.fft.fft if self._complex else scipy.fft.rfft
        self._spectra = [forward(A, n, axis=0) for A in hankel]
        x = data._x
        if self._rest:
            # G[l, r] = sum over the other modes of x[l, ...] times their factors' rows.
            G = x.reshape(L, -1) @ algebra.khatri_rao(self._rest)
            self._G, self._Gf = G, forward(G, n, axis=0)
        else:  # the signal's spectrum is kept in the form its own dtype takes
            xf = data._xf if data.is_complex or not self._complex else forward(x, n)
            self._G, self._Gf = x[:, None], xf[:, None]
        spectrum = self._spectra[0]
        for S in self._spectra[1:]:
            spectrum = spectrum * S
        conv = (scipy.fft.ifft(spectrum, n, axis=0) if self._complex
                else scipy.fft.irfft(spectrum, n, axis=0))
        self._conv = conv[:L]  # a_0 * ... * a_{K-1}, (L, R)
        self._inner = _number(np.sum(self._G * self._conv))
        self._all: list[np.ndarray] | None = None

    def inner(self) -> float | complex:
        return self._inner

    def _others(self) -> list[np.ndarray]:
        """Product of the spectra of all Hankel factors but k, for every k."""
        S = self._spectra
        out: list[np.ndarray] = []
        prefix = np.ones_like(S[0])
        for k in range(len(S)):
            out.append(prefix)
            prefix = prefix * S[k]
        suffix = np.ones_like(S[0])
        for k in range(len(S) - 1, -1, -1):
            out[k] = out[k] * suffix
            suffix = suffix * S[k]
        return out

    def all(self) -> list[np.ndarray]:
        if self._all is None:
            import scipy.fft

            d = self._data
            out: list[np.ndarray] = [np.empty(0)] * d.ndim
            n = d._nfft
            for k, Q in enumerate(self._others()):
                # Correlation of G with the other factors' convolution c: no wrap-around,
                # since i + s <= L - 1 < n for every term. It needs the spectrum of c
                # reversed in time, Q at -f: conj(Q) for a real c.
                if self._complex:
                    corr = scipy.fft.ifft(self._Gf * np.roll(Q[::-1], 1, axis=0), n, axis=0)
                else:
                    corr = scipy.fft.irfft(self._Gf * np.conj(Q), n, axis=0)
                st = d._steps[k]
                out[d.axis + k] = np.ascontiguousarray(corr[:st * (d.sizes[k] - 1) + 1:st])
            for q, t in enumerate(d._rest_modes):
                out[t] = algebra.mttkrp(d._x, [self._conv, *self._rest], 1 + q)
            self._all = out
        return self._all


class HankelTensor(Tensor):
    """Hankel tensors of one signal or of an array of signals, never expanded.

    Along ``axis``, each signal of length L is replaced by K modes of sizes ``sizes``:
    ``T[..., i_0, ..., i_{K-1}, ...] = x[..., i_0 + ... + i_{K-1}, ...]``, the other axes
    of the signal array staying before and after. Norm, inner products and MTTKRPs use
    FFT convolutions: one MTTKRP session costs O(K n log n R) for FFT length n >= L,
    plus one pass over the signals per session when there are other modes.

    Parameters
    ----------
    signals : array_like
        One signal (a vector) or several (the signal axis is ``axis``), real or complex,
        finite.
    sizes : sequence of int, optional
        Sizes of the K >= 2 Hankel modes, ``sum(sizes) - K + 1 = L``. Default: the most
        nearly square order-2 sizes (see :func:`default_hankel_sizes`).
    axis : int, default 0
        Axis of ``signals`` along which the signals run.
    steps : sequence of int, optional
        Dilations s_k >= 1 of the modes, ``T[..., i_0, ..., i_{K-1}, ...] = x[..., s_0 i_0
        + ... + s_{K-1} i_{K-1}, ...]`` with ``sum s_k (I_k - 1) + 1 = L``; default all 1
        (a Hankel tensor).
    name : str, default "data"

    Examples
    --------
    >>> import numpy as np
    >>> H = HankelTensor(np.arange(5.0), sizes=(3, 2, 2))
    >>> H.shape, float(H.to_dense()[1, 1, 0]), H.norm_squared()
    ((3, 2, 2), 2.0, 62.0)
    """

    kind: ClassVar[str] = "hankel"

    def __init__(self, signals: Any, sizes: Sequence[int] | None = None, axis: int = 0, *,
                 steps: Sequence[int] | None = None, name: str = "data") -> None:
        import scipy.fft

        x, ax = read_signals(signals, axis, name, complex_ok=True)
        L = x.shape[ax]
        sz = default_hankel_sizes(L, 2) if sizes is None else check_sizes(sizes, name)
        st = (1,) * len(sz) if steps is None else check_sizes(steps, name, "steps")
        if len(st) != len(sz):
            raise DataError(f"{name}: {len(st)} steps for {len(sz)} Hankel modes")
        if len(sz) < 2 or sum(s * (I - 1) for s, I in zip(st, sz)) + 1 != L:
            want = ("sum(sizes) - K + 1 == L" if steps is None
                    else "sum(steps[k] * (sizes[k] - 1)) + 1 == L")
            raise DataError(f"{name}: Hankel sizes {sz} do not fit a signal of length {L}; "
                            f"expected K >= 2 sizes with {want}")
        self._steps = st
        self._x = signals_first(x, ax)  # (L, *rest)
        self._axis, self._sizes = ax, sz
        rest = x.shape[:ax] + x.shape[ax + 1:]
        self._shape = x.shape[:ax] + sz + x.shape[ax + 1:]
        K = len(sz)
        self._rest_modes = [*range(ax), *range(ax + K, ax + K + len(rest) - ax)]
        self._nfft = scipy.fft.next_fast_len(L, real=True)
        forward = scipy.fft.fft if np.iscomplexobj(self._x) else scipy.fft.rfft
        self._xf = _readonly(forward(self._x, self._nfft, axis=0)) \
            if self._x.ndim == 1 else np.empty(0)
        self._name = name

    # ------------------------------------------------------------ description
    @property
    def signal(self) -> np.ndarray:
        """The signals, as given (signal axis at ``axis``), read-only."""
        return _readonly(np.moveaxis(self._x, 0, self._axis))

    @property
    def signal_length(self) -> int:
        """Length L of each signal."""
        return int(self._x.shape[0])

    @property
    def sizes(self) -> tuple[int, ...]:
        """Sizes of the Hankel modes."""
        return self._sizes

    @property
    def order(self) -> int:
        """Number K of Hankel modes."""
        return len(self._sizes)

    @property
    def axis(self) -> int:
        """First of the Hankel modes in the tensor (the signal axis of ``signals``)."""
        return self._axis

    @property
    def steps(self) -> tuple[int, ...]:
        """Dilations of the Hankel modes (all 1 for a Hankel tensor)."""
        return self._steps

    def _extra_repr(self) -> str:
        steps = "" if set(self._steps) == {1} else f", steps={self._steps}"
        return f", sizes={self._sizes}, axis={self._axis}{steps}"

    @property
    def is_complex(self) -> bool:
        return bool(np.iscomplexobj(self._x))

    # ------------------------------------------------------------ protocol
    def _norm_squared(self) -> float:
        energy = (self._x.conj() * self._x).real.reshape(self.signal_length, -1).sum(axis=1)
        return float(sample_counts(self._sizes, self._steps) @ energy)

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        return _HankelSession(self, mats)  # type: ignore[return-value]

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        return _HankelSession(self, mats).inner()

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return _HankelSession(self, mats).all()[n]

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        return _HankelSession(self, mats).all()

    def _values_at(self, subs: np.ndarray) -> np.ndarray:
        K, ax = self.order, self._axis
        sample = subs[:, ax:ax + K] @ np.asarray(self._steps, dtype=np.int64)
        index = (sample, *subs[:, self._rest_modes].T)
        return self._x[index]

    def to_dense(self) -> np.ndarray:
        check_densify(self.shape, self._name, "Hankel")
        K = self.order
        grids = np.ix_(*[st * np.arange(I) for I, st in zip(self._sizes, self._steps)])
        index = sum(grids[1:], start=grids[0])
        block = self._x[index]  # (*sizes, *rest)
        return np.ascontiguousarray(
            np.moveaxis(block, list(range(K)), list(range(self._axis, self._axis + K))))



#: Most row blocks (window length / shift) read through the strided view.
_MAX_BLOCKS = 64


class OverlappingSegmentedTensor(HankelTensor):
    """Signals cut into overlapping windows: ``T[..., i, j, ...] = x[..., i + s j, ...]``.

    Column j holds the j-th window of I consecutive samples, windows starting ``s``
    samples apart (s < I overlaps them; s = I is plain segmentation, s > I skips
    samples). There are ``J = (L - I) // s + 1`` windows; samples after the last window
    are not part of the tensor. Held as the signal: a Hankel tensor with steps (1, s).
    Its MTTKRPs are FFT correlations with the upsampled factors (O(L log L R)) when the
    windows overlap many times; when they overlap a few times (I / s <= 64, one signal)
    they read the signal as I / s blocks of one strided view (O(I J R), the dense cost,
    in I / s matrix products), never a copy of the overlapping windows.

    Parameters
    ----------
    signals : array_like
        One signal (a vector) or several (the signal axis is ``axis``), real or complex,
        finite.
    length : int
        Window length I, at most L.
    shift : int
        Distance s >= 1 between the starts of consecutive windows.
    axis : int, default 0
    name : str, default "data"

    Examples
    --------
    >>> import numpy as np
    >>> T = OverlappingSegmentedTensor(np.arange(7.0), length=3, shift=2)
    >>> T.to_dense()
    array([[0., 2., 4.],
           [1., 3., 5.],
           [2., 4., 6.]])
    >>> T.n_segments, T.norm_squared() == float(np.sum(T.to_dense() ** 2))
    (3, True)
    """

    kind: ClassVar[str] = "overlapping-segmented"

    def __init__(self, signals: Any, length: int, shift: int, axis: int = 0, *,
                 name: str = "data") -> None:
        x, ax = read_signals(signals, axis, name, complex_ok=True)
        L = x.shape[ax]
        (I,) = check_sizes([length], name, "length")
        (s,) = check_sizes([shift], name, "shift")
        if I > L:
            raise DataError(f"{name}: window length {I} is longer than the signal ({L})")
        J = (L - I) // s + 1
        used = np.take(x, np.arange(I + s * (J - 1)), axis=ax)
        super().__init__(used, (I, J), ax, steps=(1, s), name=name)
        p = -(-I // s)  # blocks of s rows per window
        L_used = I + s * (J - 1)
        # Windows that overlap a few times are cheaper read directly, as p row blocks of
        # one strided view, than through FFTs of the whole signal: I J R flops in p BLAS
        # calls against about 6 L log2(L) R.
        self._blocks = p if (self.ndim == 2 and p <= _MAX_BLOCKS
                             and I * J <= 6 * L_used * max(np.log2(L_used), 1.0)) else 0
        if self._blocks:
            padded = np.zeros(s * (p + J - 1), dtype=self._x.dtype)
            padded[:L_used] = self._x
            self._rows = _readonly(padded.reshape(-1, s))  # rows[m, a] = x[a + s m]

    @property
    def segment_length(self) -> int:
        """Window length I."""
        return self._sizes[0]

    @property
    def shift(self) -> int:
        """Distance s between the starts of consecutive windows."""
        return self._steps[1]

    @property
    def n_segments(self) -> int:
        """Number J of windows."""
        return self._sizes[1]

    def _extra_repr(self) -> str:
        return f", length={self.segment_length}, shift={self.shift}, axis={self._axis}"

    # ------------------------------------------------------------ strided strategy
    def _mode0(self, B: np.ndarray) -> np.ndarray:
        """sum_j x[i + s j] B[j]: block b of s rows is rows[b:b+J]ᵀ @ B."""
        I, J = self._sizes
        out = np.concatenate([self._rows[b:b + J].T @ B for b in range(self._blocks)])
        return out[:I]

    def _mode1(self, A: np.ndarray) -> np.ndarray:
        """sum_i x[i + s j] A[i]: the blocks of s rows of A against rows[b:b+J]."""
        I, J = self._sizes
        s = self.shift
        Ap = np.zeros((s * self._blocks, A.shape[1]), dtype=A.dtype)
        Ap[:I] = A
        out = self._rows[0:J] @ Ap[0:s]
        for b in range(1, self._blocks):
            out += self._rows[b:b + J] @ Ap[s * b:s * b + s]
        return out

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        if not self._blocks:
            return super()._mttkrp(mats, n)
        return self._mode0(mats[1]) if n == 0 else self._mode1(mats[0])

    def _mttkrp_all(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        if not self._blocks:
            return super()._mttkrp_all(mats)
        return [self._mode0(mats[1]), self._mode1(mats[0])]

    def _inner_cpd(self, mats: list[np.ndarray]) -> float | complex:
        if not self._blocks:
            return super()._inner_cpd(mats)
        return _number(np.sum(mats[0] * self._mode0(mats[1])))

    def _mttkrp_session(self, mats: list[np.ndarray]) -> MTTKRPSession | _TreeSession:
        if not self._blocks:
            return super()._mttkrp_session(mats)
        return MTTKRPSession(self, mats)
