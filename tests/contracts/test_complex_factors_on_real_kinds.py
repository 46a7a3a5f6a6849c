"""Structured data kinds and complex values: a complex model of real data (harmonic
retrieval from a Hankel tensor, a complex CPD of a tensor train) is compared in full with
the data, so every reduction of a real kind must keep the imaginary parts the factors
bring; the kinds built from signals (Hankel, windows, segmentations) also hold complex
signals. Each kind is checked against the entrywise formulas on its own array."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import sdf
from sdf import algebra, tensorize
from sdf.decomp import tt_svd
from sdf.tensors import (BTDTensor, CPDTensor, Cumulant4Tensor, DaskEntriesTensor, DaskTensor,
                         HankelTensor, HigherOrderLoewnerTensor, LoewnerTensor,
                         OverlappingSegmentedTensor, SegmentedTensor, Tensor)

_LETTERS = "abcde"


def _cpd(factors: list[np.ndarray]) -> np.ndarray:
    N = len(factors)
    return np.einsum(",".join(f"{_LETTERS[n]}z" for n in range(N)) + "->" + _LETTERS[:N],
                     *factors)


def _mttkrp(T: np.ndarray, factors: list[np.ndarray], n: int) -> np.ndarray:
    N = T.ndim
    others = [m for m in range(N) if m != n]
    spec = ",".join([_LETTERS[:N]] + [f"{_LETTERS[m]}z" for m in others])
    return np.einsum(spec + "->" + _LETTERS[n] + "z", T, *(factors[m] for m in others))


def _project(T: np.ndarray, mats: list[np.ndarray]) -> np.ndarray:
    N = T.ndim
    upper = _LETTERS.upper()
    spec = ",".join([_LETTERS[:N]] + [f"{_LETTERS[m]}{upper[m]}" for m in range(N)])
    return np.einsum(spec + "->" + upper[:N], T, *mats)


def _dask_entries(T: np.ndarray) -> DaskEntriesTensor:
    import dask.array as da

    subs = np.argwhere(T != 0)
    return DaskEntriesTensor(da.from_array(subs, chunks=(7, T.ndim)),
                             da.from_array(T[tuple(subs.T)], chunks=7), T.shape)


def _kinds(rng: np.random.Generator) -> Iterator[tuple[str, Callable[[], Tensor]]]:
    x = rng.standard_normal(11)
    signals = rng.standard_normal((11, 3))
    t = np.arange(12.0) + 0.3 * rng.random(12)
    yield "hankel", lambda: HankelTensor(x, (4, 4, 5))
    yield "hankel, several signals", lambda: HankelTensor(signals, (6, 6))
    yield "hankel with steps", lambda: HankelTensor(x, (3, 5), steps=(1, 2))
    yield "windows, strided", lambda: OverlappingSegmentedTensor(x, 4, 3)
    yield "windows, several signals", lambda: OverlappingSegmentedTensor(signals, 5, 2)
    yield "segmented", lambda: SegmentedTensor(rng.standard_normal(12), (2, 3, 2))
    yield "loewner", lambda: LoewnerTensor(rng.standard_normal(12), t)
    yield "loewner, several signals", lambda: LoewnerTensor(rng.standard_normal((12, 2)), t)
    yield "loewner order 3", lambda: HigherOrderLoewnerTensor(rng.standard_normal(12), t)
    yield "tensor train", lambda: tt_svd(rng.standard_normal((3, 4, 2, 3)))
    yield "cumulant", lambda: Cumulant4Tensor(rng.standard_normal((30, 3)))

    def dask_array() -> Tensor:
        import dask.array as da

        return DaskTensor(da.from_array(rng.standard_normal((4, 3, 5)), chunks=(2, 3, 2)))

    yield "dask", dask_array
    yield "dask entries", lambda: _dask_entries(
        np.where(rng.random((4, 3, 5)) < 0.5, rng.standard_normal((4, 3, 5)), 0.0))


_CASES = [name for name, _ in _kinds(np.random.default_rng(0))]


def _complex_signal_kinds(rng: np.random.Generator
                          ) -> Iterator[tuple[str, Callable[[], Tensor]]]:
    x = rng.standard_normal(11) + 1j * rng.standard_normal(11)
    signals = rng.standard_normal((3, 11)) + 1j * rng.standard_normal((3, 11))
    yield "hankel", lambda: HankelTensor(x, (4, 4, 5))
    yield "hankel, several signals", lambda: HankelTensor(signals, (6, 6), axis=1)
    yield "windows, strided", lambda: OverlappingSegmentedTensor(x, 4, 3)
    yield "windows, several signals", lambda: OverlappingSegmentedTensor(signals, 5, 2, axis=1)
    yield "segmented", lambda: SegmentedTensor(x[:10], (2, 5))
    yield "decimated", lambda: SegmentedTensor(signals[:, :10], (5, 2), axis=1, order="C")
    omega = np.linspace(0.1, 3.0, 12)
    yield "loewner, complex points", lambda: LoewnerTensor(x[:11], 1j * omega[:11])
    yield "loewner, several signals", lambda: LoewnerTensor(signals[:, :10], omega[:10], axis=1)
    yield "loewner order 3", lambda: HigherOrderLoewnerTensor(
        np.concatenate([x, x[:1]]), omega * np.exp(0.3j))


_SIGNAL_CASES = [name for name, _ in _complex_signal_kinds(np.random.default_rng(0))]


def _complex(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.mark.parametrize("case", _CASES)
def test_reductions_keep_the_imaginary_parts_of_complex_factors(case, rng):
    T = dict(_kinds(rng))[case]()
    assert not np.iscomplexobj(T.to_dense())
    _check_reductions(T, case, rng, complex_factors=True)


@pytest.mark.parametrize("complex_factors", [False, True])
@pytest.mark.parametrize("case", _SIGNAL_CASES)
def test_complex_signals_give_complex_structured_data(case, complex_factors, rng):
    """Hankel tensors, windows and segmentations of complex signals (complex baseband
    signals, NMR decays) stay complex, never expanded; they were refused."""
    T = dict(_complex_signal_kinds(rng))[case]()
    assert T.is_complex and np.iscomplexobj(T.to_dense())
    assert T.norm_squared() == pytest.approx(float(np.sum(np.abs(T.to_dense()) ** 2)),
                                             rel=1e-12)
    _check_reductions(T, case, rng, complex_factors)


def _check_reductions(T: Tensor, case: str, rng: np.random.Generator,
                      complex_factors: bool) -> None:
    """Inner products, MTTKRPs and projections of ``T`` against the formulas on its array."""
    dense = T.to_dense()
    draw = _complex if complex_factors else (lambda g, *shape: g.standard_normal(shape))
    factors = [draw(rng, n, 2) for n in T.shape]
    scale = np.linalg.norm(dense) * np.prod([np.linalg.norm(A) for A in factors])
    want = np.sum(dense * _cpd(factors))
    assert abs(T.inner_cpd(factors) - want) <= 1e-12 * scale, case
    session = T.mttkrp_session(factors)
    assert abs(session.inner() - want) <= 1e-12 * scale, case
    for n, (M, S) in enumerate(zip(T.mttkrp_all(factors), session.all())):
        expected = _mttkrp(dense, factors, n)
        np.testing.assert_allclose(M, expected, atol=1e-12 * scale, err_msg=f"{case}, {n}")
        np.testing.assert_allclose(S, expected, atol=1e-12 * scale, err_msg=f"{case}, {n}")
        np.testing.assert_allclose(T.mttkrp(factors, n), expected, atol=1e-12 * scale,
                                   err_msg=f"{case}, mode {n}")
    mats = [draw(rng, n, 2) for n in T.shape]
    core = draw(rng, *(2,) * T.ndim)
    projected = _project(dense, mats)
    scale = np.linalg.norm(dense) * np.prod([np.linalg.norm(U) for U in mats])
    np.testing.assert_allclose(T.project(mats), projected, atol=1e-12 * scale, err_msg=case)
    P, K = T.project_tucker(mats, core)
    np.testing.assert_allclose(P, projected, atol=1e-12 * scale, err_msg=case)
    for n in range(T.ndim):
        partial = _project(dense, [np.eye(I) if m == n else U
                                   for m, (I, U) in enumerate(zip(T.shape, mats))])
        np.testing.assert_allclose(
            K[n], algebra.unfold(partial, n) @ algebra.unfold(core, n).T,
            atol=1e-12 * scale * np.linalg.norm(core), err_msg=f"{case}, K[{n}]")
    assert (abs(T.inner_tucker(mats, core) - np.sum(projected * core))
            <= 1e-12 * scale * np.linalg.norm(core)), case


def test_complex_block_terms_have_the_norm_of_their_array(rng):
    blocks = [([_complex(rng, n, r) for n, r in zip((4, 3, 5), ranks)], _complex(rng, *ranks))
              for ranks in ((2, 2, 1), (1, 2, 2))]
    T = BTDTensor(blocks)
    assert T.norm_squared() == pytest.approx(float(np.sum(np.abs(T.to_dense()) ** 2)),
                                             rel=1e-12)


def test_harmonic_retrieval_from_a_structured_hankel_tensor(rng):
    """Two damped real cosines are four complex exponentials: the complex CPD of the
    signal's Hankel tensor, never expanded, returns their poles."""
    poles = np.array([0.95 * np.exp(0.4j), 0.9 * np.exp(1.1j)])
    poles = np.concatenate([poles, poles.conj()])
    amplitudes = np.array([1 + 0.5j, 0.7 - 0.2j])
    amplitudes = np.concatenate([amplitudes, amplitudes.conj()])
    signal = (poles[None, :] ** np.arange(40)[:, None] @ amplitudes).real
    H = tensorize.hankelize(signal, order=3, full=False)
    assert isinstance(H, HankelTensor)
    dec = sdf.models.cpd(H, 4, complex=True, seed=0)
    A = dec.factors[0]
    found = np.sum(A[1:] * A[:-1].conj(), axis=0) / np.sum(np.abs(A[:-1]) ** 2, axis=0)
    # matched one to one (not sorted: a conjugate pair's real parts differ by rounding
    # only, so sorting by real part orders the pair by rounding)
    distance = np.abs(found[:, None] - poles[None, :])
    rows, cols = linear_sum_assignment(distance)
    assert distance[rows, cols].max() < 1e-8
    fitted = algebra.cpd_to_tensor(dec.factors)
    dense = H.to_dense()
    assert np.linalg.norm(fitted - dense) / np.linalg.norm(dense) < 1e-10
    assert dec.relerr < 1e-7


def test_harmonic_retrieval_of_a_complex_signal_and_its_denoising(rng):
    """Three complex exponentials in noise: the CPD of the never-expanded Hankel tensor
    gives the poles and the same fit as the dense tensor; the signal back from the
    factors (FFT convolutions, never expanded) is complex and less noisy."""
    poles = np.array([0.97 * np.exp(0.5j), 0.93 * np.exp(-1.3j), 0.9 * np.exp(2.2j)])
    signal = poles[None, :] ** np.arange(60)[:, None] @ np.array([1.0, 0.6 - 0.3j, 0.4j])
    noisy = signal + 1e-3 * (rng.standard_normal(60) + 1j * rng.standard_normal(60))
    H = tensorize.hankelize(noisy, order=3, full=False)
    assert isinstance(H, HankelTensor) and H.is_complex
    dec = sdf.models.cpd(H, 3, seed=0)
    dense = sdf.models.cpd(tensorize.hankelize(noisy, order=3, full=True), 3, seed=0)
    assert dec.relerr == pytest.approx(dense.relerr, rel=1e-8)
    A = dec.factors[0]
    found = np.sum(A[1:] * A[:-1].conj(), axis=0) / np.sum(np.abs(A[:-1]) ** 2, axis=0)
    assert np.sort_complex(found) == pytest.approx(np.sort_complex(poles), abs=1e-3)
    denoised = tensorize.dehankelize(CPDTensor(dec.factors), order=3)
    assert np.iscomplexobj(denoised)
    np.testing.assert_allclose(
        denoised, tensorize.dehankelize(algebra.cpd_to_tensor(dec.factors), order=3),
        atol=1e-12)
    assert (np.linalg.norm(denoised - signal)
            < 0.5 * np.linalg.norm(noisy - signal))


def test_complex_signals_round_trip_through_every_reshaping(rng):
    x = rng.standard_normal(24) + 1j * rng.standard_normal(24)
    for full in (True, False):
        H = tensorize.hankelize(x, order=3, full=full)
        # (the mean of an anti-diagonal's equal entries rounds)
        np.testing.assert_allclose(tensorize.dehankelize(H, order=3), x, rtol=1e-14)
        np.testing.assert_array_equal(tensorize.desegmentize(
            tensorize.segmentize(x, 6, full=full)), x)
        np.testing.assert_array_equal(tensorize.dedecimate(
            tensorize.decimate(x, 4, full=full)), x)
        windows = tensorize.segmentize(x, 8, shift=4, full=full)
        np.testing.assert_allclose(tensorize.desegmentize(windows, shift=4), x, atol=1e-15)


def test_a_complex_frequency_response_gives_a_loewner_matrix_of_its_degree():
    """Three complex poles sampled on the imaginary axis: the Loewner matrix of ``H(j w)``
    (complex values at complex points, never expanded) has rank 3 and a rank-3 CPD fits
    it (Loewner system identification); such data were refused."""
    poles = np.array([-0.2 + 1.0j, -0.1 - 2.0j, -0.5 + 0.3j])
    s = 1j * np.linspace(0.1, 3.0, 40)
    response = (np.array([1.0, 0.5 - 0.5j, 0.3j]) / (s[:, None] - poles)).sum(axis=1)
    L = tensorize.loewnerize(response, s, full=False)
    assert isinstance(L, LoewnerTensor) and L.is_complex
    dense = L.to_dense()
    singular = np.linalg.svd(dense, compute_uv=False)
    assert singular[3] < 1e-12 * singular[0] < singular[2]
    dec = sdf.models.cpd(L, 3, seed=0)
    assert np.linalg.norm(algebra.cpd_to_tensor(dec.factors) - dense) < 1e-10 * np.linalg.norm(
        dense)


def test_a_complex_model_of_a_structured_loewner_matrix(rng):
    """A real rational function of degree 3 (a complex-conjugate pair of poles and a real
    one): the complex CPD of its Loewner matrix, never expanded, fits it exactly, and the
    reported error is that of the returned complex factors."""
    t = np.linspace(0.0, 3.0, 24)
    f = ((1 - 0.3j) / (t - (-0.5 + 2j))).real + 0.4 / (t + 1.5)
    L = tensorize.loewnerize(f, t, full=False)
    assert isinstance(L, LoewnerTensor)
    dec = sdf.models.cpd(L, 3, complex=True, seed=0)
    dense = L.to_dense()
    fitted = algebra.cpd_to_tensor(dec.factors)
    assert np.iscomplexobj(dec.factors[0])
    assert np.linalg.norm(fitted - dense) / np.linalg.norm(dense) < 1e-10
    assert dec.relerr < 1e-6  # from norms and inner products: about sqrt(eps)
