"""TT and TR terms: blocks, data strategies, coupling, the dict language, errors.

Derivatives against autograd on every data kind are in tests/contracts/test_terms.py.
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest

import sdf
from sdf import transforms as tf
from sdf.errors import ModelError
from sdf.problem import Problem
from sdf import algebra
from sdf.tensors import IncompleteTensor, Tensor, TTTensor

from _reference import check_blocks, check_model

SHAPE = (5, 4, 6, 3)


def ring_array(cores):
    """The array of a ring (a train when the end sizes are 1), in autograd.numpy."""
    N = len(cores)
    modes, bonds = "ijkl"[:N], "abcd"
    spec = ",".join(f"{bonds[k]}{modes[k]}{bonds[(k + 1) % N]}" for k in range(N))
    return anp.einsum(f"{spec}->{modes}", *cores)


def random_cores(rng, ranks, shape=SHAPE):
    return [rng.standard_normal((ranks[k], n, ranks[k + 1])) for k, n in enumerate(shape)]


def _complex_cores(rng, ranks, shape=SHAPE):
    return [rng.standard_normal((ranks[k], n, ranks[k + 1]))
            + 1j * rng.standard_normal((ranks[k], n, ranks[k + 1]))
            for k, n in enumerate(shape)]


@pytest.fixture
def train(rng):
    return random_cores(rng, (1, 2, 3, 2, 1))


@pytest.mark.parametrize("complex_", [False, True])
def test_train_blocks_are_the_exact_kronecker_blocks(rng, train, complex_):
    if complex_:  # J^H J: Hermitian blocks, the transposes of the environments
        train = _complex_cores(rng, (1, 2, 3, 2, 1))
    T = rng.standard_normal(SHAPE)
    state = sdf.TT(T, train).prepare(train)
    check_blocks(state, train, rng)


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("closing", [1, 2])
@pytest.mark.parametrize("missing", [False, True])
def test_blocks_are_positive_semidefinite_kronecker_factors(rng, closing, missing, complex_):
    ranks = (closing, 2, 3, 2, closing)
    cores = _complex_cores(rng, ranks) if complex_ else random_cores(rng, ranks)
    T = rng.standard_normal(SHAPE)
    if missing:
        T[rng.random(SHAPE) < 0.5] = np.nan
    term = sdf.TT(T, cores) if closing == 1 else sdf.TR(T, cores)
    for block, G in zip(term.prepare(cores).blocks(), cores):
        assert isinstance(block, tuple) and len(block) == 3
        assert [B.shape[0] for B in block] == list(G.shape)
        for B in block:
            np.testing.assert_allclose(B, B.conj().T, atol=1e-12 * np.abs(B).max())
            assert np.linalg.eigvalsh(B).min() >= -1e-10 * np.abs(B).max()


def test_ring_block_is_the_nearest_kronecker_product(rng):
    cores = random_cores(rng, (2, 2, 3, 2, 2))
    state = sdf.TR(rng.standard_normal(SHAPE), cores).prepare(cores)
    P, _, Q = state.blocks()[1]
    # The exact block of core 1, column by column.
    n = cores[1].shape[0] * cores[1].shape[2]
    exact = np.zeros((n, n))
    for j in range(n):
        V = [np.zeros_like(G) for G in cores]
        V[1][np.unravel_index(j, (2, 3))[0], 0, np.unravel_index(j, (2, 3))[1]] = 1.0
        exact[:, j] = state.gn_product(V)[1][:, 0, :].ravel()
    approx = np.kron(P, Q)
    # Within the best Kronecker approximation's error, which a fresh SVD confirms.
    W = exact.reshape(2, 3, 2, 3).transpose(0, 2, 1, 3).reshape(4, 9)
    s = np.linalg.svd(W, compute_uv=False)
    assert np.linalg.norm(exact - approx) == pytest.approx(np.sqrt(np.sum(s[1:] ** 2)),
                                                           rel=1e-6, abs=1e-10)


def test_tt_data_are_read_core_by_core_and_match_the_dense_data(rng, train):
    data_cores = random_cores(rng, (1, 3, 2, 2, 1))
    tensor = TTTensor(data_cores)
    dense = tensor.to_dense()
    on_tt = sdf.TT(tensor, train).prepare(train)
    on_dense = sdf.TT(dense, train).prepare(train)
    assert on_tt.fval == pytest.approx(on_dense.fval, rel=1e-10)
    for a, b in zip(on_tt.gradient(), on_dense.gradient()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(b).max())


def test_missing_entries_use_the_known_entries_only(rng, train):
    T = rng.standard_normal(SHAPE)
    T[rng.random(SHAPE) < 0.5] = np.nan
    state = sdf.TT(T, train).prepare(train)
    known = ~np.isnan(T)
    residual = ring_array(train)[known] - T[known]
    assert state.fval == pytest.approx(0.5 * np.sum(residual**2), rel=1e-12)


def test_a_core_shared_with_a_matrix_term_matches_autograd_and_is_recovered(rng):
    cores = random_cores(rng, (1, 3, 2, 2, 1))
    B = rng.standard_normal((7, 3))
    T = np.asarray(ring_array(cores))
    Y = cores[0][0] @ B.T  # the first core's slice explains the side matrix
    g = [sdf.Variable(G + 0.05 * rng.standard_normal(G.shape), name=f"g{k}")
         for k, G in enumerate(cores)]
    b = sdf.Variable(B + 0.05 * rng.standard_normal(B.shape), name="b")
    model = sdf.Model(T=sdf.TT(T, g), Y=sdf.CPD(Y, [tf.reshape(g[0], (5, 3)), b]))
    w = model.weights

    def residuals(v):
        return [(w["T"], ring_array([v[f"g{k}"] for k in range(4)]) - T),
                (w["Y"], anp.reshape(v["g0"], (5, 3)) @ v["b"].T - Y)]

    check_model(model, residuals, rng, rtol=1e-7)
    result = model.fit(max_iter=200)
    assert result.relerr["T"] < 1e-8 and result.relerr["Y"] < 1e-8
    # Shared: the core both terms use is one array.
    np.testing.assert_allclose(result[g[0]][0] @ result[b].T, Y, atol=1e-7 * np.abs(Y).max())


def test_ring_fit_from_a_nearby_start(rng):
    cores = random_cores(rng, (2, 2, 3, 2, 2))
    T = np.asarray(ring_array(cores))
    g = [sdf.Variable(G + 0.02 * rng.standard_normal(G.shape)) for G in cores]
    result = sdf.Model(T=sdf.TR(T, g)).fit(max_iter=200)
    assert result.relerr["T"] < 1e-8


def test_dict_language_reads_and_writes_tt_and_tr(rng, train):
    T = rng.standard_normal(SHAPE)
    ring = random_cores(rng, (2, 2, 2, 2, 2))
    spec = {
        "variables": {f"g{k}": G for k, G in enumerate(train)}
        | {f"h{k}": G for k, G in enumerate(ring)},
        "factorizations": {"train": {"data": T, "tt": ["g0", "g1", "g2", "g3"]},
                           "ring": {"data": T, "tr": ["h0", "h1", "h2", "h3"],
                                    "relweight": 0.5}},
    }
    model = sdf.Model.from_dict(spec)
    assert type(model.terms["train"]) is sdf.TT and type(model.terms["ring"]) is sdf.TR
    back = model.to_dict()
    assert back["factorizations"]["train"]["tt"] == ["g0", "g1", "g2", "g3"]
    assert back["factorizations"]["ring"]["tr"] == ["h0", "h1", "h2", "h3"]
    again = sdf.Model.from_dict(back)
    p, q = Problem.from_model(model), Problem.from_model(again)
    assert p.point(p.z0).f == pytest.approx(q.point(q.z0).f, rel=1e-12)


def test_bad_core_shapes_are_located(rng):
    T = np.zeros((8, 9, 10, 11))
    cores = random_cores(rng, (1, 3, 4, 3, 1), T.shape)
    bad = [cores[0], sdf.Variable(np.ones((2, 9, 4)), name="G1"), *cores[2:]]
    with pytest.raises(ModelError, match=r"term 'x', core 1 \('G1'\): expected shape "
                                         r"\(3, 9, r\) to match mode 1 of the data and the "
                                         r"last size of core 0, got \(2, 9, 4\)"):
        sdf.Model(x=sdf.TT(T, bad)).check()
    with pytest.raises(ModelError, match=r"term 'x', core 0 .*expected shape \(1, 8, r\) to "
                                         r"match mode 0 of the data and a train starting "
                                         r"with size 1, got \(2, 8, 3\)"):
        sdf.Model(x=sdf.TT(T, [np.ones((2, 8, 3)), *cores[1:]])).check()
    ring = random_cores(rng, (2, 3, 4, 3, 2), T.shape)
    with pytest.raises(ModelError, match=r"core 3 .*expected shape \(3, 11, 2\) .*the first "
                                         r"size of core 0 \(closing the ring\), got "
                                         r"\(3, 11, 1\)"):
        sdf.Model(x=sdf.TR(T, [*ring[:3], np.ones((3, 11, 1))])).check()
    with pytest.raises(ModelError, match=r"term 'x': 3 cores given but the data has 4 modes"):
        sdf.Model(x=sdf.TT(T, cores[:3])).check()
    with pytest.raises(ModelError, match=r"core 2 .*expected shape \(4, 10, r\).*got "
                                         r"\(4, 10\)"):
        sdf.Model(x=sdf.TT(T, [*cores[:2], np.ones((4, 10)), cores[3]])).check()


@pytest.mark.parametrize("key, ranks", [("TT", (1, 2, 3, 2, 1)), ("TR", (2, 2, 3, 2, 2))])
@pytest.mark.parametrize("missing", [False, True])
def test_complex_trains_and_rings_are_fitted_as_they_are(rng, key, ranks, missing):
    """A complex matrix product state (a quantum state's amplitudes) and a complex ring,
    whole or with 30 % of the entries missing (completion), are fitted from perturbed
    starts to the rounding level with complex cores; they were refused."""
    planted = _complex_cores(rng, ranks)
    T = np.asarray(ring_array(planted))
    data = np.where(rng.random(SHAPE) < 0.3, np.nan, T) if missing else T
    g = [sdf.Variable(G + 0.05 * rng.standard_normal(G.shape)) for G in planted]
    result = sdf.Model(t=getattr(sdf, key)(data, g)).fit(max_iter=200)
    assert result.success and result.relerr["t"] < 1e-8
    assert all(np.iscomplexobj(result[v]) for v in g)
    full = np.asarray(ring_array([result[v] for v in g]))
    assert np.linalg.norm(full - T) < 1e-6 * np.linalg.norm(T)  # the missing entries too


def test_complex_tensor_train_data_are_contracted_core_by_core(rng):
    """Complex tensor-train data (never expanded) against a complex train of lower rank:
    the reported error is the one of the expanded arrays."""
    data = TTTensor(_complex_cores(rng, (1, 3, 4, 3, 1)))
    g = [sdf.Variable(G) for G in _complex_cores(rng, (1, 2, 2, 2, 1))]
    term = sdf.TT(data, g)
    result = sdf.Model(t=term).fit(max_iter=50)
    T = data.to_dense()
    relerr = np.linalg.norm(term.model_array([result[v] for v in g]) - T) / np.linalg.norm(T)
    assert result.relerr["t"] == pytest.approx(relerr, rel=1e-8)
    assert relerr < 0.9


def test_cores_must_be_a_list(rng):
    with pytest.raises(ModelError, match=r"TT: cores must be a list of expressions"):
        sdf.TT(np.zeros((3, 3)), np.ones((1, 3, 1)))


def test_model_array_and_reported_error_agree(rng, train):
    T = np.asarray(ring_array(train)) + 0.01 * rng.standard_normal(SHAPE)
    g = [sdf.Variable(G) for G in train]
    term = sdf.TT(IncompleteTensor(np.where(rng.random(SHAPE) < 0.3, np.nan, T)), g)
    result = sdf.Model(t=term).fit(max_iter=30)
    known = ~np.isnan(term.data.to_dense())
    full = term.model_array([result[v] for v in g])
    relerr = np.linalg.norm((full - T)[known]) / np.linalg.norm(T[known])
    assert result.relerr["t"] == pytest.approx(relerr, rel=1e-10)


def test_error_on_tensor_train_data_is_exact_near_the_solution(rng, train):
    # f from norms would have lost every digit at this distance; the orthonormalised
    # difference keeps them.
    data = TTTensor(train)
    near = [G.copy() for G in train]
    near[2] = near[2] * (1 + 1e-10)
    term = sdf.TT(data, near)
    fval = term.exact_fval(near, term.prepare(near).fval)
    exact = 0.5 * np.sum((ring_array(near) - ring_array(train)) ** 2)
    assert fval == pytest.approx(exact, rel=1e-4)


class MTTKRPOnly(Tensor):
    """Data known through MTTKRPs and a norm only."""

    kind = "function"

    def __init__(self, array):
        self._array, self._shape = array, array.shape

    def _norm_squared(self):
        return float(np.sum(self._array**2))

    def _mttkrp(self, mats, n):
        return algebra.mttkrp(self._array, mats, n)


def test_data_read_only_through_mttkrps_with_large_ranks_are_refused(rng):
    data = MTTKRPOnly(rng.standard_normal((4, 3, 5)))
    cores = [np.ones((20, 4, 20)), np.ones((20, 3, 20)), np.ones((20, 5, 20))]
    with pytest.raises(ModelError, match=r"term 't': function data of shape \(4, 3, 5\) can "
                                         r"be read neither as an array nor as a tensor train"):
        sdf.Model(t=sdf.TR(data, cores)).check()


def test_lbfgs_fits_a_train_through_the_gradient(rng):
    cores = random_cores(rng, (1, 2, 3, 1), SHAPE[:3])
    T = np.asarray(ring_array(cores))
    g = [sdf.Variable(G + 0.05 * rng.standard_normal(G.shape)) for G in cores]
    result = sdf.Model(T=sdf.TT(T, g)).fit(method="minf", max_iter=500)
    assert result.relerr["T"] < 1e-6
    assert "TT of dense data (5, 4, 6), ranks (1, 2, 3, 1)" in sdf.Model(T=sdf.TT(T, g)).summary()
