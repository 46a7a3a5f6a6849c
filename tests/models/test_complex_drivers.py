"""The drivers on complex data: complex factors from complex starts, planted structures
recovered, rank estimated; complex factors for real data on request."""

from __future__ import annotations

import numpy as np
import pytest

import sdf
from sdf.algebra import cpd_to_tensor
from sdf.models import cmtf, cpd, cpderr, fms, mlrankest, rankest


def _complex(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _noisy(rng, T, level):
    E = _complex(rng, *T.shape)
    return T + level * np.linalg.norm(T) / np.linalg.norm(E) * E


@pytest.fixture
def planted(rng):
    return [_complex(rng, n, 3) for n in (12, 10, 8)]


@pytest.mark.parametrize("init", ["auto", "random"])
def test_cpd_recovers_planted_complex_cpd(planted, init):
    dec = cpd(cpd_to_tensor(planted), 3, seed=0, init=init)
    assert all(A.dtype == np.complex128 for A in dec.factors)
    assert dec.relerr < 1e-8 and dec.result.success
    assert fms(dec, planted) >= 0.99
    err = cpderr(dec, planted)  # phases and scales resolved per column
    assert np.all(err.errors < 1e-6)


def test_cpd_complex_with_noise_and_compression(rng):
    F = [_complex(rng, n, 3) for n in (30, 25, 20)]
    dec = cpd(_noisy(rng, cpd_to_tensor(F), 0.05), 3, seed=1)
    assert [s.name for s in dec.stages] == ["compress", "init", "core", "refine"]
    assert "gevd" in dec.stages[1].detail
    assert fms(dec, F) >= 0.99
    assert 0.04 < dec.relerr < 0.06


def test_cpd_complex_with_missing_entries(rng, planted):
    T = cpd_to_tensor(planted)
    T[rng.random(T.shape) < 0.2] = np.nan
    dec = cpd(T, 3, seed=0)
    assert fms(dec, planted) >= 0.99 and np.iscomplexobj(dec.factors[0])


def test_cpd_relerr_agrees_with_the_returned_factors(rng, planted):
    T = _noisy(rng, cpd_to_tensor(planted), 0.1)
    dec = cpd(T, 3, seed=0)
    model = cpd_to_tensor(dec.factors)
    assert dec.relerr == pytest.approx(np.linalg.norm(model - T) / np.linalg.norm(T),
                                       rel=1e-8)


def test_cpd_given_complex_start(planted, rng):
    T = cpd_to_tensor(planted)
    start = [A + 0.1 * _complex(rng, *A.shape) for A in planted]
    dec = cpd(T, 3, init=start, compress=False)
    assert dec.stages[0].detail == "given" and fms(dec, planted) >= 0.99


def _complex_rank2_real_tensor(rng):
    """``2 Re(z o z o z)``: real 2 x 2 x 2, real rank 3, complex rank 2."""
    z = _complex(rng, 2, 1)
    return (cpd_to_tensor([z, z, z]) + cpd_to_tensor([z.conj()] * 3)).real


def test_cpd_complex_option_fits_real_tensor_of_lower_complex_rank(rng):
    T = _complex_rank2_real_tensor(rng)
    dec = cpd(T, 2, seed=0, complex=True)
    assert np.iscomplexobj(dec.factors[0]) and dec.relerr < 1e-10
    np.testing.assert_allclose(cpd_to_tensor(dec.factors), T, atol=1e-10)


@pytest.mark.parametrize("missing", [0.05, 0.3])
def test_cpd_complex_option_with_missing_entries_keeps_complex_factors(rng, missing):
    """Real data with 30 % missing go through a row-wise ALS stage, which is real: it
    took the complex start's real part (with a ComplexWarning), and the fit ended with
    real factors at relative error 0.25. A complex start now skips it."""
    a, b, c = (_complex(rng, n, 1) for n in (8, 9, 10))
    T = 2 * np.real(cpd_to_tensor([a, b, c]))  # real rank 3, complex rank 2
    T[rng.random(T.shape) < missing] = np.nan
    dec = cpd(T, 2, complex=True, seed=0)
    assert all(A.dtype == np.complex128 for A in dec.factors)
    assert dec.relerr < 1e-8


def test_cpd_real_data_keeps_real_factors_by_default(rng, planted):
    dec = cpd(cpd_to_tensor([A.real for A in planted]), 3, seed=0)
    assert all(A.dtype == np.float64 for A in dec.factors)


def test_cpd_complex_option_must_be_a_bool(planted):
    with pytest.raises(sdf.ModelError, match="complex: expected True or False"):
        cpd(cpd_to_tensor(planted), 3, complex=1)


def test_rankest_picks_planted_rank_on_complex_data(rng, planted):
    est = rankest(_noisy(rng, cpd_to_tensor(planted), 0.02), 5, seed=0, max_iter=100)
    assert est.rank == 3


def test_mlrankest_on_complex_tucker(rng):
    U = [np.linalg.qr(_complex(rng, n, r))[0] for n, r in zip((10, 9, 8), (2, 3, 2))]
    T = np.einsum("abc,ia,jb,kc->ijk", _complex(rng, 2, 3, 2), *U)
    assert mlrankest(_noisy(rng, T, 1e-3)).core_shape == (2, 3, 2)


def test_cmtf_couples_complex_data_sets(rng, planted):
    D = _complex(rng, 5, 3)
    dec = cmtf({"x": cpd_to_tensor(planted), "y": planted[0] @ D.T}, 3,
               modes={"x": ["i", "j", "k"], "y": ["i", "l"]}, seed=0)
    assert dec.relerr < 1e-6
    assert fms([dec.factors[dec.labels.index(k)] for k in "ijk"], planted) >= 0.99


def test_corcondia_of_complex_fit(rng, planted):
    from sdf.models import corcondia

    T = _noisy(rng, cpd_to_tensor(planted), 0.01)
    assert corcondia(T, cpd(T, 3, seed=0)) > 99.0


def test_stability_of_complex_cpd(rng):
    from sdf.models import stability

    F = [_complex(rng, n, 3) for n in (20, 10, 8)]
    assert stability(_noisy(rng, cpd_to_tensor(F), 0.01), 3, seed=0).stable


def test_fuse_couples_complex_data_arrays_by_dim_names(rng):
    import xarray as xr

    from sdf.models import fuse

    A, B, C, D = (_complex(rng, n, 2) for n in (8, 7, 6, 5))
    x = xr.DataArray(cpd_to_tensor([A, B, C]), dims=("i", "j", "k"))
    y = xr.DataArray(A @ D.T, dims=("i", "l"))
    res = fuse({"x": x, "y": y}, rank=2, seed=0)
    assert res.variables["i"].dtype == np.complex128
    assert max(res.relerr.values()) < 1e-6
    assert fms([res.variables[d] for d in "ijk"], [A, B, C]) >= 0.99


@pytest.mark.parametrize("compress", [True, False])
def test_ll1_recovers_planted_complex_blocks(rng, compress):
    import scipy.linalg

    from sdf.models import ll1

    A, B, C = _complex(rng, 8, 3), _complex(rng, 7, 3), _complex(rng, 6, 2)
    T = _noisy(rng, cpd_to_tensor([A, B, C[:, [0, 0, 1]]]), 0.01)
    dec = ll1(T, [2, 1], seed=0, compress=compress)
    assert all(F.dtype == np.complex128 for F in dec.factors)
    assert dec.relerr < 0.011
    assert fms([dec.factors[2]], [C]) > 0.999
    for got, true in ((dec.factors[0][:, :2], A[:, :2]), (dec.factors[1][:, :2], B[:, :2])):
        assert np.max(scipy.linalg.subspace_angles(got, true)) < 0.05


@pytest.fixture
def planted_tucker(rng):
    U = [_complex(rng, n, r) for n, r in zip((8, 7, 6), (2, 3, 2))]
    S = _complex(rng, 2, 3, 2)
    return U, S, np.einsum("abc,ia,jb,kc->ijk", S, *U)


@pytest.mark.parametrize("init", ["auto", "random"])
def test_lmlra_recovers_planted_complex_tucker(planted_tucker, init):
    import scipy.linalg

    from sdf.models import lmlra

    U, _, T = planted_tucker
    dec = lmlra(T, (2, 3, 2), init=init, seed=0)
    assert dec.core.dtype == np.complex128 and dec.relerr < 1e-6
    assert [s.name for s in dec.stages] == ["init", "hooi", "evaluate"]
    for got, true in zip(dec.factors, U):
        np.testing.assert_allclose(got.conj().T @ got, np.eye(got.shape[1]), atol=1e-12)
        assert np.max(scipy.linalg.subspace_angles(got, true)) < 1e-10
    model = np.einsum("abc,ia,jb,kc->ijk", dec.core, *dec.factors)
    np.testing.assert_allclose(model, T, atol=1e-10 * np.linalg.norm(T))


def test_lmlra_complex_with_missing_entries(rng, planted_tucker):
    from sdf.models import lmlra

    _, _, T = planted_tucker
    T = T.copy()
    T[rng.random(T.shape) < 0.2] = np.nan
    dec = lmlra(T, (2, 3, 2), seed=0)
    assert dec.relerr < 1e-6 and np.iscomplexobj(dec.core)


def test_btd_recovers_planted_complex_blocks(rng):
    import scipy.linalg

    from sdf.models import btd

    # (3, 3, 3) blocks: a generic complex 2 x 2 x 2 block has rank 2, so (2, 2, 2) blocks
    # would be pairs of rank-one terms that can be regrouped (no unique BTD)
    blocks = [([_complex(rng, n, 3) for n in (8, 7, 7)], _complex(rng, 3, 3, 3))
              for _ in range(2)]
    T = sum(np.einsum("abc,ia,jb,kc->ijk", S, *U) for U, S in blocks)
    dec = btd(_noisy(rng, T, 0.01), [(3, 3, 3), (3, 3, 3)], seed=0)
    assert all(np.iscomplexobj(S) for S in dec.core)
    assert dec.relerr < 0.011
    # blocks are unique up to a basis change inside each: compare subspaces, any order
    for U, _ in blocks:
        angle = min(np.max(scipy.linalg.subspace_angles(blk[0], U[0])) for blk in dec.factors)
        assert angle < 0.05
