"""LMLRA term: derivatives against autograd on every data type, coupling, recovery, errors."""

import numpy as np
import pytest
from _reference import (KINDS, storage, add_noise, check_blocks, check_model, check_state, make_data,
                        orth_start, subspace_cos, tucker)

import sdf
from sdf.tensors import CPDTensor, SparseTensor, TuckerTensor, as_tensor


def random_values(shape, ranks, rng):
    return [rng.standard_normal((n, r)) for n, r in zip(shape, ranks)] + [
        rng.standard_normal(ranks)]


@pytest.mark.parametrize("kind", KINDS)
def test_derivatives_match_autograd(kind, rng):
    shape, ranks = (5, 4, 3), (2, 3, 2)
    data = make_data(kind, shape, rng)
    values = random_values(shape, ranks, rng)
    check_state(sdf.LMLRA(data, values[:-1], values[-1]), values, rng)


@pytest.mark.parametrize("shape,ranks", [((6, 5), (2, 3)), ((4, 3, 3, 2), (2, 2, 1, 2))])
@pytest.mark.parametrize("kind", ["dense", "incomplete", "masked", "sparse", "tucker"])
def test_derivatives_other_orders(kind, shape, ranks, rng):
    data = make_data(kind, shape, rng)
    values = random_values(shape, ranks, rng)
    check_state(sdf.LMLRA(data, values[:-1], values[-1]), values, rng)


@pytest.mark.parametrize("kind", ["dense", "incomplete", "masked"])
def test_blocks_are_exact_diagonal_blocks(kind, rng):
    shape, ranks = (5, 4, 3), (2, 3, 2)
    values = random_values(shape, ranks, rng)
    term = sdf.LMLRA(make_data(kind, shape, rng), values[:-1], values[-1])
    check_blocks(term.prepare(values), values, rng)


def test_symmetric_factor_and_transform_through_problem(rng):
    """Same expression in two modes and a transformed core: the chain rule holds."""
    from sdf import transforms as tf

    T = rng.standard_normal((4, 4, 3))
    u, w = sdf.Variable(rng.standard_normal((4, 2)), name="u"), sdf.Variable(
        rng.standard_normal((3, 2)), name="w")
    s = sdf.Variable(rng.standard_normal((2, 2, 2)), name="s")
    model = sdf.Model(T=sdf.LMLRA(T, [u, u, w], tf.nonneg(s)))
    wt = model.weights["T"]
    check_model(model, lambda v: [(wt, tucker([v["u"], v["u"], v["w"]], v["s"] ** 2) - T)], rng)


def test_coupled_with_cpd_derivatives(rng):
    T = rng.standard_normal((5, 4, 3))
    Y = rng.standard_normal((5, 6))
    u = [sdf.Variable(rng.standard_normal((n, 2)), name=f"u{k}") for k, n in enumerate((5, 4, 3))]
    s = sdf.Variable(rng.standard_normal((2, 2, 2)), name="s")
    b = sdf.Variable(rng.standard_normal((6, 2)), name="b")
    model = sdf.Model(T=sdf.LMLRA(T, u, s), Y=sdf.CPD(Y, [u[0], b]))
    w = model.weights

    def residuals(v):
        return [(w["T"], tucker([v["u0"], v["u1"], v["u2"]], v["s"]) - T),
                (w["Y"], v["u0"] @ v["b"].T - Y)]

    check_model(model, residuals, rng)


# ----------------------------------------------------------------- planted recovery
SHAPE, RANKS = (12, 10, 8), (3, 2, 2)


def planted(rng):
    U = orth_start(SHAPE, RANKS, rng)
    S = rng.standard_normal(RANKS)
    return U, S, tucker(U, S)


def fit_lmlra(data, dense_for_start, rng):
    """Start: random orthonormal factors, core = projection of the (zero-filled) data."""
    u0 = orth_start(SHAPE, RANKS, rng)
    s0 = np.einsum("ijk,ia,jb,kc->abc", np.nan_to_num(dense_for_start), *u0)
    u = [sdf.Variable(x) for x in u0]
    result = sdf.Model(T=sdf.LMLRA(data, u, sdf.Variable(s0))).fit(max_iter=100)
    return [result[x] for x in u], result


@pytest.mark.parametrize("kind", ["dense", "incomplete", "masked"])
def test_planted_recovery(kind, rng):
    U, S, T = planted(rng)
    noisy = add_noise(T, 0.01, rng)
    if kind in ("incomplete", "masked"):
        noisy[rng.random(SHAPE) < 0.3] = np.nan
    found, result = fit_lmlra(storage(kind)(noisy), noisy, rng)
    assert min(subspace_cos(F, Ut) for F, Ut in zip(found, U)) >= 0.99
    assert result.relerr["T"] < 0.02


def test_planted_recovery_sparse(rng):
    """Zero slices (true zeros) in mode 0; noise on the stored entries."""
    U, S, _ = planted(rng)
    U[0][:5] = 0.0
    T = add_noise(tucker(U, S), 0.01, rng)
    T[:5] = 0.0
    subs = np.argwhere(T != 0)
    data = SparseTensor.from_entries(subs, T[tuple(subs.T)], SHAPE)
    found, result = fit_lmlra(data, T, rng)
    assert min(subspace_cos(F, Ut) for F, Ut in zip(found, U)) >= 0.99
    assert result.relerr["T"] < 0.02


@pytest.mark.parametrize("kind", ["tucker", "cpd"])
def test_planted_recovery_factored(kind, rng):
    """Structured data never expanded: truth plus a 1 % perturbation in factored form."""
    U, S, T = planted(rng)
    noise_f = [rng.standard_normal((n, 2)) for n in SHAPE]
    noise_c = rng.standard_normal((2, 2, 2))
    scale = 0.01 * np.linalg.norm(T) / np.linalg.norm(tucker(noise_f, noise_c))
    if kind == "tucker":
        core = np.zeros((5, 4, 4))
        core[:3, :2, :2], core[3:, 2:, 2:] = S, scale * noise_c
        data = TuckerTensor([np.hstack([Ut, V]) for Ut, V in zip(U, noise_f)], core)
    else:  # the planted Tucker model written as a CPD of its core, plus two noise terms
        idx = np.argwhere(np.ones(RANKS))
        factors = [np.hstack([Ut[:, idx[:, n]], V]) for n, (Ut, V) in enumerate(zip(U, noise_f))]
        weights = np.concatenate([S.ravel(), [scale, -scale]])
        data = CPDTensor(factors, weights=weights)
    found, result = fit_lmlra(data, data.to_dense(), rng)
    assert min(subspace_cos(F, Ut) for F, Ut in zip(found, U)) >= 0.99
    assert result.relerr["T"] < 0.02


def test_coupled_with_cpd_recovery(rng):
    """A Tucker tensor and a matrix share the mode-0 subspace: both fit at the noise level."""
    U, S, T = planted(rng)
    B = rng.standard_normal((7, 3))
    Y = add_noise(U[0] @ B.T, 0.01, rng)
    u0 = orth_start(SHAPE, RANKS, rng)
    s0 = np.einsum("ijk,ia,jb,kc->abc", T, *u0)
    u = [sdf.Variable(x) for x in u0]
    b = sdf.Variable(Y.T @ u0[0])
    model = sdf.Model(T=sdf.LMLRA(add_noise(T, 0.01, rng), u, sdf.Variable(s0)),
                      Y=sdf.CPD(Y, [u[0], b]))
    result = model.fit(max_iter=100)
    assert subspace_cos(result[u[0]], U[0]) >= 0.99
    assert result.relerr["T"] < 0.02 and result.relerr["Y"] < 0.02


# ----------------------------------------------------------------- errors and text
def test_describe(rng):
    term = sdf.LMLRA(np.zeros((4, 3, 2)), [np.ones((4, 2)), np.ones((3, 2)), np.ones((2, 1))],
                     np.ones((2, 2, 1)))
    assert term.describe() == "LMLRA of dense data (4, 3, 2), core (2, 2, 1)"


def _model(data, factors, core):
    vars_ = [sdf.Variable(np.ones(s), name=f"U{k}") for k, s in enumerate(factors)]
    return sdf.Model(t=sdf.LMLRA(data, vars_, sdf.Variable(np.ones(core), name="S")))


@pytest.mark.parametrize("factors,core,message", [
    ([(4, 2), (3, 2)], (2, 2), r"term 't': 2 factors given but the data has 3 modes"),
    ([(4, 2), (5, 2), (2, 2)], (2, 2, 2),
     r"term 't', factor 1 \('U1'\): expected 3 rows to match mode 1 of the data, got 5"),
    ([(4, 2), (3, 2), (2,)], (2, 2, 2), r"factor 2 \('U2'\): expected a matrix"),
    ([(4, 2), (3, 2), (2, 1)], (2, 2), r"core \('S'\): expected a core with 3 modes"),
    ([(4, 2), (3, 2), (2, 1)], (2, 2, 2),
     r"core \('S'\): expected shape \(2, 2, 1\) to match the factors' columns, got \(2, 2, 2\)"),
])
def test_check_errors(factors, core, message):
    with pytest.raises(sdf.ModelError, match=message):
        _model(np.zeros((4, 3, 2)), factors, core).check()


def test_factors_must_be_a_list():
    with pytest.raises(sdf.ModelError, match="LMLRA: factors must be a list"):
        sdf.LMLRA(np.zeros((2, 2)), np.ones((2, 2)), np.ones((2, 2)))


@pytest.mark.parametrize("noise", [1e-4, 1e-7, 1e-10])
def test_relerr_near_the_data_equals_the_residual_of_the_factors(noise, rng):
    # Near the data the norms' expansion of f loses its digits: the reported error is
    # recomputed from the residual.
    shape, ranks = (9, 8, 7), (2, 3, 2)
    U = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip(shape, ranks)]
    T = sdf.algebra.tucker_to_tensor(U, rng.standard_normal(ranks))
    E = rng.standard_normal(shape)
    T = T + noise * np.linalg.norm(T) / np.linalg.norm(E) * E
    ml = sdf.decomp.mlsvd(T, ranks)
    result = sdf.Model(T=sdf.LMLRA(T, [sdf.Variable(u) for u in ml.factors],
                                   sdf.Variable(ml.core))).fit(max_iter=3)
    values = [result.variables[name] for name in result.model.variable_names]
    residual = np.linalg.norm(T - sdf.algebra.tucker_to_tensor(values[:-1], values[-1]))
    assert result.relerr["T"] == pytest.approx(residual / np.linalg.norm(T), rel=1e-6)
