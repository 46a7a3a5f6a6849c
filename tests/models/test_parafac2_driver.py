"""PARAFAC2 driver: planted recovery (full, varying widths, missing entries, nonnegative),
compression, starts, bad arguments."""

import numpy as np
import pytest

from sdf.errors import ModelError
from sdf.models import fms, parafac2


def planted(rng, widths, rank=3, rows=15, noise=0.0, missing=0.0):
    A, C = rng.random((rows, rank)), rng.random((len(widths), rank)) + 0.1
    B = rng.standard_normal((rank, rank))
    P = [np.linalg.qr(rng.standard_normal((J, rank)))[0] for J in widths]
    X = [A @ np.diag(c) @ (Pk @ B).T for c, Pk in zip(C, P)]
    X = [x + noise * np.linalg.norm(x) / np.sqrt(x.size) * rng.standard_normal(x.shape)
         for x in X]
    for x in X:
        x[rng.random(x.shape) < missing] = np.nan
    return X, [A, B, C], [Pk @ B for Pk in P]


def match(dec, truth, slice_truth):
    """FMS of A, C and the stacked B_k (the B_k share the sign and scale of their
    column across k, so they compare as one matrix)."""
    return fms([dec.factors[0], np.vstack(dec.slice_factors), dec.factors[2]],
               [truth[0], np.vstack(slice_truth), truth[2]])


@pytest.mark.parametrize("widths", [(10,) * 8, (6, 9, 12, 7, 15, 8, 10, 30)])
def test_planted_recovery(widths, rng):
    X, truth, Bk = planted(rng, widths, noise=0.01)
    dec = parafac2(X, 3, seed=0)
    assert dec.relerr < 0.011
    assert match(dec, truth, Bk) > 0.99
    assert [P.shape for P in dec.projections] == [(J, 3) for J in widths]
    for P in dec.projections:
        np.testing.assert_allclose(P.T @ P, np.eye(3), atol=1e-10)


def test_exact_data_fitted_to_the_objective_s_precision(rng):
    X, truth, Bk = planted(rng, (20, 25, 18, 30, 22, 19))
    dec = parafac2(X, 3, seed=1)
    # f is formed from norms and inner products: its relative accuracy stops near sqrt(eps).
    assert dec.relerr < 1e-7
    assert match(dec, truth, Bk) > 1 - 1e-6
    assert [s.name for s in dec.stages] == ["compress", "init", "fit"]


def test_missing_entries(rng):
    X, truth, Bk = planted(rng, (8, 12, 10, 9, 14, 11, 10, 13), noise=0.01, missing=0.3)
    before = [x.copy() for x in X]
    dec = parafac2(X, 3, seed=0)
    assert dec.relerr < 0.011
    assert match(dec, truth, Bk) > 0.98
    for x, y in zip(X, before):
        np.testing.assert_array_equal(x, y)


def _known_relerr(dec, X):
    A, B, C = dec.factors
    models = [A @ np.diag(C[k]) @ (P @ B).T for k, P in enumerate(dec.projections)]
    num = sum(np.nansum((m - x) ** 2) for m, x in zip(models, X))
    return np.sqrt(num / sum(np.nansum(x**2) for x in X))


def test_missing_entries_report_the_error_of_the_returned_projections():
    """With missing entries the projections at a point depend on where the inner
    majorization starts; the returned ones are those the fit's last point used, so the
    reported error is theirs (it was 3.8e-11 where the returned projections gave 7.3e-3:
    they had been recomputed from a rejected trial point's)."""
    rng = np.random.default_rng(3)
    A, B, C = rng.random((3, 3)), rng.standard_normal((3, 3)), rng.random((2, 3)) + 0.1
    X = []
    for k, J in enumerate((4, 5)):
        P = np.linalg.qr(rng.standard_normal((J, 3)))[0]
        X.append(A @ np.diag(C[k]) @ (P @ B).T + 0.01 * rng.standard_normal((3, J)))
    X[0][0, 1] = X[0][2, 3] = np.nan
    dec = parafac2(X, 3, nonneg=("A", "C"), seed=3)
    # (an error near 2e-11: its recomputation in float64 is itself accurate to about
    # 1e-16 / 2e-11 = 5e-6 relative, hence the absolute tolerance)
    assert dec.relerr == pytest.approx(_known_relerr(dec, X), rel=1e-6, abs=1e-15)
    for seed in range(4):
        X, _, _ = planted(np.random.default_rng(seed), (4, 6, 5), missing=0.15, noise=0.01)
        dec = parafac2(X, 3, seed=seed)
        assert dec.relerr == pytest.approx(_known_relerr(dec, X), rel=1e-6, abs=0)


def test_nonnegative_factors(rng):
    X, truth, Bk = planted(rng, (10, 12, 9, 11, 10, 13), noise=0.01)
    dec = parafac2(X, 3, nonneg=["A", "C"], seed=0)
    assert np.all(dec.factors[0] >= 0) and np.all(dec.factors[2] >= 0)
    assert match(dec, truth, Bk) > 0.99


def test_several_starts_keep_the_best(rng):
    X, _, _ = planted(rng, (10, 12, 9, 11), noise=0.05)
    dec = parafac2(X, 3, init="random", n_starts=3, seed=0)
    fits = [s.relerr for s in dec.stages if s.name == "fit"]
    assert len(fits) == 3 and dec.relerr == pytest.approx(min(fits))


@pytest.mark.parametrize("kwargs,message", [
    (dict(rank=0), r"rank: expected an integer >= 1, got 0"),
    (dict(rank=5), r"rank: slice 0 has 4 columns, fewer than the rank 5"),
    (dict(rank=2, nonneg="A"), r"nonneg: expected a list of factor names among 'A', 'C'"),
    (dict(rank=2, nonneg=["B"]), r"nonneg: expected a list of factor names"),
    (dict(rank=2, init="gevd"), r"init: expected 'svd', 'random' or a list \[A, B, C\]"),
    (dict(rank=2, n_starts=0), r"n_starts: expected an integer >= 1, got 0"),
])
def test_bad_arguments(kwargs, message, rng):
    X = [rng.standard_normal((5, 4)) for _ in range(3)]
    with pytest.raises(ModelError, match=message):
        parafac2(X, **kwargs)


def test_given_start_is_checked(rng):
    X = [rng.standard_normal((5, 4)) for _ in range(3)]
    with pytest.raises(ModelError, match=r"init"):
        parafac2(X, 2, init=[np.ones((5, 2)), np.ones((3, 2)), np.ones((3, 2))])


def known_relerr(X, dec):
    """The relative error recomputed from the returned factors on the known entries."""
    A, _, C = dec.factors
    res = data = 0.0
    for x, c, Bk in zip(X, C, dec.slice_factors):
        ok = ~np.isnan(x)
        res += float(np.sum(((A * c) @ Bk.T - x)[ok] ** 2))
        data += float(np.sum(x[ok] ** 2))
    return np.sqrt(res / data)


@pytest.mark.parametrize("widths", [(14,) * 10, (8, 12, 10, 9, 14, 11, 10, 13, 16, 9)])
def test_missing_entries_imputation_warm_start(widths, rng):
    X, truth, Bk = planted(rng, widths, noise=0.01, missing=0.3)
    dec = parafac2(X, 3, seed=0)
    assert [s.name for s in dec.stages] == ["init", "impute", "fit"]
    impute = dec.stages[1]
    assert impute.iterations >= 1 and impute.relerr < 0.02
    assert match(dec, truth, Bk) >= 0.99
    # The exact fit on the known entries finishes: the error is that of the factors.
    assert dec.relerr == pytest.approx(known_relerr(X, dec), rel=1e-10)
    assert dec.relerr <= impute.relerr * (1 + 1e-12)
    assert dec.starts[0].time == pytest.approx(sum(s.time for s in dec.stages))


def test_imputation_is_reproducible():
    rng = np.random.default_rng(1)  # data whose random start converges in a few dozen steps
    X, _, _ = planted(rng, (10, 12, 9, 11, 10, 13), noise=0.01, missing=0.3)
    runs = [parafac2(X, 3, n_starts=2, seed=7) for _ in range(2)]
    # The SVD-based start goes through the imputation, the random one straight to the fit.
    assert [s.name for s in runs[0].stages] == ["init", "impute", "fit", "init", "fit"]
    assert [s.init for s in runs[0].starts] == ["svd", "random"]
    assert runs[0].relerr == runs[1].relerr
    for F, G in zip(runs[0].factors, runs[1].factors):
        np.testing.assert_array_equal(F, G)


def test_no_imputation_with_nonnegative_factors_or_few_missing(rng):
    X, truth, Bk = planted(rng, (10, 12, 9, 11, 10, 13), noise=0.01, missing=0.3)
    dec = parafac2(X, 3, nonneg=["A", "C"], seed=0)
    assert [s.name for s in dec.stages] == ["init", "fit"]
    assert dec.relerr == pytest.approx(known_relerr(X, dec), rel=1e-10)
    X, _, _ = planted(rng, (10, 12, 9, 11, 10, 13), noise=0.01)
    X[0][0, 0] = np.nan  # 1 of 650 entries missing: below the imputation's threshold
    assert [s.name for s in parafac2(X, 3, seed=0).stages] == ["init", "fit"]


# ----------------------------------------------------------------------------- complex values
def planted_complex(rng, widths, rank=3, rows=12, noise=0.0, missing=0.0):
    """Complex A, B, C and unitary P_k (P_k^H P_k = I); complex Gaussian noise."""
    def cplx(*shape):
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    A, B, C = cplx(rows, rank), cplx(rank, rank), cplx(len(widths), rank)
    P = [np.linalg.qr(cplx(J, rank))[0] for J in widths]
    X = [A @ np.diag(c) @ (Pk @ B).T for c, Pk in zip(C, P)]
    X = [x + noise * np.linalg.norm(x) / np.sqrt(2 * x.size) * cplx(*x.shape) for x in X]
    for x in X:
        x[rng.random(x.shape) < missing] = np.nan
    return X, [A, B, C], [Pk @ B for Pk in P]


def complex_known_relerr(X, dec):
    A, _, C = dec.factors
    res = data = 0.0
    for x, c, Bk in zip(X, C, dec.slice_factors):
        ok = ~np.isnan(x)
        res += float(np.sum(np.abs((A * c) @ Bk.T - x)[ok] ** 2))
        data += float(np.sum(np.abs(x[ok]) ** 2))
    return np.sqrt(res / data)


def complex_match(dec, truth, slice_truth):
    """The least FMS of ``[A, B_k diag(c_k)]`` over the slices, and of the moduli of C:
    complex PARAFAC2 leaves a phase per slice free (``e^{iθ_k} B_k`` with ``e^{-iθ_k}
    c_k``, ``P_k -> e^{iθ_k} P_k``), so C compares slice by slice, with its B_k."""
    A, _, C = dec.factors
    per_slice = min(fms([A, Bk * c], [truth[0], Tk * t])
                    for Bk, c, Tk, t in zip(dec.slice_factors, C, slice_truth, truth[2]))
    return min(per_slice, fms([np.abs(C)], [np.abs(truth[2])]))


@pytest.mark.parametrize("widths,missing", [((6, 9, 12, 7, 15, 8, 10, 30), 0.0),
                                            ((8, 12, 10, 9, 14, 11, 10, 13), 0.3)])
def test_complex_planted_recovery(widths, missing, rng):
    """Complex slices (wide ones compressed, or 30 % missing through the imputation):
    complex factors, unitary projections, the planted components, and the reported
    error that of the returned factors."""
    X, truth, Bk = planted_complex(rng, widths, noise=0.01, missing=missing)
    before = [x.copy() for x in X]
    dec = parafac2(X, 3, seed=0)
    assert all(np.iscomplexobj(F) for F in dec.factors)
    assert dec.relerr < 0.011
    assert dec.relerr == pytest.approx(complex_known_relerr(X, dec), rel=1e-8)
    assert complex_match(dec, truth, Bk) > 0.99
    for P, J in zip(dec.projections, widths):
        assert P.shape == (J, 3)
        np.testing.assert_allclose(P.conj().T @ P, np.eye(3), atol=1e-10)
    stages = [s.name for s in dec.stages]
    assert stages == (["init", "impute", "fit"] if missing else ["compress", "init", "fit"])
    for x, y in zip(X, before):
        np.testing.assert_array_equal(x, y)


def test_complex_exact_data_from_random_starts(rng):
    # (8 slices: with 5, both random starts of one planted case ended at relative error
    # 4e-8 on another decomposition, A's FMS 0.98)
    X, truth, Bk = planted_complex(rng, (10, 12, 9, 11, 10, 8, 9, 12), rank=2, rows=8)
    dec = parafac2(X, 2, init="random", n_starts=3, seed=3)
    assert dec.relerr < 1e-6
    assert complex_match(dec, truth, Bk) > 1 - 1e-6


def test_complex_factors_for_real_slices(rng):
    """``complex=True``: complex factors for real slices (the fit is then at least as
    good as the real one from the same start)."""
    X, _, _ = planted(rng, (6, 7, 8, 6), rank=2, noise=0.05)
    real = parafac2(X, 2, seed=0)
    cplx = parafac2(X, 2, seed=0, complex=True)
    assert np.iscomplexobj(cplx.factors[0]) and not np.iscomplexobj(real.factors[0])
    assert cplx.relerr <= real.relerr * (1 + 1e-6)
    assert cplx.relerr == pytest.approx(complex_known_relerr(X, cplx), rel=1e-8)


@pytest.mark.parametrize("kwargs,message", [
    (dict(complex=True, nonneg=["A"]), r"nonneg: nonnegative factors are real, but the "
                                       r"factors are complex \(complex slices or complex=True\)"),
    (dict(complex="yes"), r"complex: expected True or False, got 'yes'"),
])
def test_complex_bad_arguments(kwargs, message, rng):
    X = [rng.standard_normal((5, 4)) for _ in range(3)]
    with pytest.raises(ModelError, match=message):
        parafac2(X, 2, **kwargs)


@pytest.mark.parametrize("cplx", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("scale", [1e-8, 1e8])
def test_random_starts_fit_data_at_any_scale(scale, cplx, rng):
    """Starts far from the data's scale are rescaled to it (the engine's
    ``rescaled_start``, which now reads PARAFAC2's model norm): L-BFGS from unit factors
    on data at 1e-8 shrank C alone and stopped on tol_fun at relative error 0.95 and
    0.88."""
    def draw(*shape):
        return rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if cplx else 0)
    A, B, C = draw(5, 1), draw(1, 1), draw(4, 1)
    X = [scale * A @ np.diag(c) @ (np.linalg.qr(draw(J, 1))[0] @ B).T
         for c, J in zip(C, (4, 6, 5, 7))]
    for seed in range(1, 4):
        dec = parafac2(X, 1, init="random", method="minf", seed=seed)
        assert dec.relerr < 1e-6, (seed, dec.relerr)
