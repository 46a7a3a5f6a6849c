"""CPD by randomized block sampling: planted recovery on dense, chunked and structured
data, chunk-aligned reads, honest stopping and located errors."""

from __future__ import annotations

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.errors import DataError, ModelError, SdfWarning
from sdf.models import cpd, cpd_rbs, fms
from sdf.result import StopReason
from sdf.tensorize import hankelize


def _planted(rng: np.random.Generator, shape: tuple[int, ...], rank: int, noise: float = 0.0
             ) -> tuple[np.ndarray, list[np.ndarray]]:
    A = [rng.standard_normal((I, rank)) for I in shape]
    T = algebra.cpd_to_tensor(A)
    if noise:
        T = T + noise * np.linalg.norm(T) / np.sqrt(T.size) * rng.standard_normal(shape)
    return T, A


def test_exact_low_rank_data_are_recovered_from_blocks(rng):
    T, A = _planted(rng, (60, 50, 40), 3)
    dec = cpd_rbs(T, 3, block_shape=(20, 20, 20), seed=1)
    assert dec.relerr < 1e-8
    assert fms(dec.factors, A) > 0.9999
    assert [s.name for s in dec.stages] == ["init", "sample", "evaluate"]
    sample = dec.stages[1]
    assert sample.stop is StopReason.TOL_FUN and sample.iterations > 0


def test_noisy_data_reach_the_noise_level_of_the_full_data_fit(rng):
    T, A = _planted(rng, (90, 80, 70), 4, noise=0.05)
    full = cpd(T, 4, seed=0)
    dec = cpd_rbs(T, 4, block_shape=(30, 30, 30), seed=2)
    assert dec.relerr <= 1.005 * full.relerr
    assert fms(dec.factors, A) > 0.99


def test_the_reported_error_is_the_error_of_the_returned_factors(rng):
    T, _ = _planted(rng, (40, 30, 20), 2, noise=0.1)
    dec = cpd_rbs(T, 2, block_shape=(10, 10, 10), seed=0)
    recomputed = np.linalg.norm(T - algebra.cpd_to_tensor(dec.factors)) / np.linalg.norm(T)
    assert dec.relerr == pytest.approx(recomputed, rel=1e-10)


def test_a_seed_gives_the_same_fit_and_the_input_is_not_modified(rng):
    T, _ = _planted(rng, (30, 20, 25), 2, noise=0.01)
    before = T.copy()
    a = cpd_rbs(T, 2, block_shape=(10, 10, 10), seed=5)
    b = cpd_rbs(T, 2, block_shape=(10, 10, 10), seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a.factors, b.factors))
    assert np.array_equal(T, before)


def test_four_way_data_and_given_start(rng):
    T, A = _planted(rng, (16, 14, 12, 10), 2)
    start = [M + 0.1 * rng.standard_normal(M.shape) for M in A]
    dec = cpd_rbs(T, 2, init=start, block_shape=(8, 7, 6, 5), seed=0)
    assert dec.stages[0].detail == "given"
    assert fms(dec.factors, A) > 0.9999


def test_refinement_runs_gauss_newton_on_the_full_data(rng):
    T, _ = _planted(rng, (40, 30, 20), 3, noise=0.01)
    dec = cpd_rbs(T, 3, block_shape=(10, 10, 10), seed=0, max_epochs=3, refine=5)
    assert dec.stages[-1].name == "refine"
    assert 0 < dec.stages[-1].iterations <= 5


def test_budget_end_while_still_improving_warns_and_is_not_converged(rng):
    T, _ = _planted(rng, (60, 50, 40), 4, noise=0.01)
    with pytest.warns(SdfWarning, match="still decreasing.*cpd_rbs"):
        dec = cpd_rbs(T, 4, block_shape=(20, 20, 20), seed=0, max_epochs=2)
    assert dec.stop is StopReason.MAX_ITER
    assert not dec.converged and dec.success


def test_structured_data_are_sampled_through_their_entries():
    # A Hankelized sum of four real exponentials: exact CPD rank 4, never formed densely.
    t = np.arange(299)
    signal = sum(c * z ** t for c, z in [(1.0, 0.995), (0.8, -0.99), (0.6, 0.98),
                                         (0.5, -0.97)])
    H = hankelize(signal, order=3, full=False)
    dec = cpd_rbs(H, 4, block_shape=(40, 40, 40), seed=0, max_epochs=100)
    dense = hankelize(signal, order=3, full=True)
    assert dec.relerr < 1e-6
    assert np.linalg.norm(dense - algebra.cpd_to_tensor(dec.factors)) < 1e-5 * np.linalg.norm(
        dense)


def test_chunked_data_are_read_in_whole_chunks(rng):
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    T, A = _planted(rng, (60, 48, 40), 3)
    x = da.from_array(T, chunks=(12, 12, 10))
    from sdf.models.cpd_rbs import _Sampler

    sampler = _Sampler(sdf.tensors.as_tensor(x), (25, 25, 25), 3)
    assert sampler.block_shape == [24, 24, 20]
    idx = [ix[0] for ix in sampler.epoch(np.random.default_rng(0))]
    for ix, size in zip(idx, (12, 12, 10)):
        assert len(np.unique(ix // size)) * size == len(ix)  # whole chunks only
    assert np.array_equal(sampler.read(idx), T[np.ix_(*idx)])
    with dask.config.set(scheduler="threads"):
        dec = cpd_rbs(x, 3, block_shape=(25, 25, 25), seed=1, max_epochs=100)
    assert dec.relerr < 1e-8 and fms(dec.factors, A) > 0.9999


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"block_shape": (10, 10)}, ModelError, r"block_shape: expected 3 sizes"),
    ({"block_shape": (10, 0, 10)}, ModelError, r"block_shape\[1\]: expected an integer"),
    ({"init": "gevd"}, ModelError, r"init: expected 'block', 'random' or a list"),
    ({"stall": 2.0}, ModelError, r"stall: expected a finite number in \[0, 1\]"),
    ({"patience": 0}, ModelError, r"patience: expected an integer >= 1"),
    ({"init": [np.ones((5, 2))] * 3}, ModelError, r"init"),
])
def test_bad_settings_are_located_errors(kwargs, error, match):
    T = np.ones((6, 5, 4))
    with pytest.raises(error, match=match):
        cpd_rbs(T, 2, **kwargs)


def test_missing_entries_are_refused_with_the_alternative():
    T = np.ones((6, 5, 4))
    T[0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"cpd_rbs needs fully known data.*sdf.models.cpd"):
        cpd_rbs(T, 2)


def test_complex_data_give_complex_factors():
    """Complex data: Hermitian Gramians and conjugated MTTKRPs in the block updates (the
    block start raised a numpy casting error)."""
    rng = np.random.default_rng(0)
    A = [rng.standard_normal((n, 3)) + 1j * rng.standard_normal((n, 3)) for n in (30, 25, 20)]
    T = algebra.cpd_to_tensor(A)
    dec = cpd_rbs(T, 3, block_shape=(10, 10, 10), seed=1)
    assert np.iscomplexobj(dec.factors[0])
    assert dec.relerr < 1e-10
    assert fms(dec.factors, A) > 0.9999
    model = algebra.cpd_to_tensor(dec.factors)
    assert np.linalg.norm(model - T) / np.linalg.norm(T) == pytest.approx(dec.relerr, abs=1e-12)
