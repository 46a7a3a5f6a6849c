"""The CPD term on incomplete data against an explicit dense Jacobian.

The strategies for data with missing entries (coordinates: ``_SampledCPDState``; masked
arrays with few entries missing: ``_ComplementCPDState``; with many missing:
``_MaskedCPDState``) never form the Jacobian densely; here ``J`` is built column by
column (the model is multilinear, so column (n, i, r) is the model with ``A_n``
replaced by the unit matrix ``E_ir``), and f, ``J^T r``, ``J^T J v`` and the exact
per-row blocks of ``J^T J`` must match it.
"""

import numpy as np
import pytest
from sdf.models import fms

import sdf
from sdf import algebra
from sdf.tensors import IncompleteTensor, MaskedTensor
from sdf.terms import cpd as cpd_module

SHAPES = [(5, 4), (4, 3, 5), (3, 4, 2, 3)]
#: (storage, largest missing fraction for the complement strategy, state class)
STORAGES = [("coordinates", 0.0, "_SampledCPDState"),
            ("masked", 0.0, "_MaskedCPDState"),
            ("masked", 1.0, "_ComplementCPDState")]
IDS = ["coordinates", "masked-dense", "masked-complement"]


def incomplete(shape, rank, rng, known=0.5, empty_row=True, storage="coordinates"):
    """Noisy rank-``rank`` data with a fraction known; optionally a row with no entries."""
    T = algebra.cpd_to_tensor([rng.standard_normal((I, rank)) for I in shape])
    T = T + 0.1 * rng.standard_normal(shape)
    mask = rng.random(shape) < known
    if empty_row:
        mask[(slice(None),) * (len(shape) - 1) + (0,)] = False  # last mode, row 0
    kind = IncompleteTensor if storage == "coordinates" else MaskedTensor
    return kind(np.where(mask, T, np.nan))


def dense_jacobian(data, factors):
    subs = tuple(data.known_entries().subs.T)
    cols = []
    for n, A in enumerate(factors):
        for i in range(A.shape[0]):
            for r in range(A.shape[1]):
                E = np.zeros_like(A)
                E[i, r] = 1.0
                mats = [E if m == n else B for m, B in enumerate(factors)]
                cols.append(algebra.cpd_to_tensor(mats)[subs])
    return np.stack(cols, axis=1)  # columns in (n, i, r) order, i.e. A_n.ravel()


def state_and_reference(shape, rank, rng, storage=STORAGES[0], **kw):
    kind, complement_max, strategy = storage
    data = incomplete(shape, rank, rng, storage=kind, **kw)
    factors = [rng.standard_normal((I, rank)) for I in shape]
    term = sdf.CPD(data, [sdf.Variable(A) for A in factors])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpd_module, "_COMPLEMENT_MAX_MISSING", complement_max)
        state = term.prepare(factors)
    assert type(state).__name__ == strategy
    J = dense_jacobian(data, factors)
    entries = data.known_entries()
    residual = algebra.cpd_to_tensor(factors)[tuple(entries.subs.T)] - entries.vals
    return state, factors, J, residual


def flat(parts):
    return np.concatenate([np.asarray(p).ravel() for p in parts])


@pytest.mark.parametrize("storage", STORAGES, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fval_is_half_squared_residual(shape, storage, rng):
    state, _, _, residual = state_and_reference(shape, 3, rng, storage)
    assert state.fval == pytest.approx(0.5 * residual @ residual, rel=1e-12)


@pytest.mark.parametrize("storage", STORAGES, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradient_is_jacobian_transpose_residual(shape, storage, rng):
    state, _, J, residual = state_and_reference(shape, 3, rng, storage)
    np.testing.assert_allclose(flat(state.gradient()), J.T @ residual, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("storage", STORAGES, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gn_product_is_jtj_v(shape, storage, rng):
    state, factors, J, _ = state_and_reference(shape, 3, rng, storage)
    dvalues = [rng.standard_normal(A.shape) for A in factors]
    out = state.gn_product(dvalues)
    assert [o.shape for o in out] == [A.shape for A in factors]
    np.testing.assert_allclose(flat(out), J.T @ (J @ flat(dvalues)), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("storage", [STORAGES[0], STORAGES[2]], ids=[IDS[0], IDS[2]])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_blocks_are_the_row_blocks_of_jtj(shape, storage, rng):
    rank = 3
    state, factors, J, _ = state_and_reference(shape, rank, rng, storage)
    G = J.T @ J
    lo = 0
    for A, block in zip(factors, state.blocks()):
        for i in range(A.shape[0]):
            k = lo + i * rank
            np.testing.assert_allclose(block[i], G[k : k + rank, k : k + rank],
                                       rtol=1e-12, atol=1e-12)
        lo += A.size
    # the row without known entries (the complement strategy: W_n minus the same sum)
    np.testing.assert_allclose(state.blocks()[-1][0], 0.0, atol=1e-12 * np.abs(G).max())


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_masked_blocks_are_known_fractions_of_the_full_data_blocks(shape, rng, monkeypatch):
    """Many entries missing: block i of mode n is ``rho_n[i] W_n``, ``rho_n[i]`` the
    fraction of row i's entries known (0 for the empty row) and ``W_n`` the block of the
    same factors on complete data (the Hadamard product of the other Gramians)."""
    monkeypatch.setattr(cpd_module, "_SHARED_ROW_SPREAD", -1.0)  # never shared
    rank = 3
    data = incomplete(shape, rank, rng, storage="masked")
    factors = [rng.standard_normal((I, rank)) for I in shape]
    state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    assert type(state).__name__ == "_MaskedCPDState"
    mask = data.masked_view()[1]
    for n, (A, block) in enumerate(zip(factors, state.blocks())):
        others = [B.T @ B for m, B in enumerate(factors) if m != n]
        W = np.prod(others, axis=0)
        rho = np.moveaxis(mask, n, 0).reshape(A.shape[0], -1).mean(axis=1)
        np.testing.assert_allclose(block, rho[:, None, None] * W, rtol=1e-12, atol=1e-12)
    assert np.all(state.blocks()[-1][0] == 0.0)  # the row without known entries


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_masked_blocks_are_exact_on_complete_rows(shape, rng, monkeypatch):
    """With every entry known the masked strategy's blocks are the exact row blocks."""
    monkeypatch.setattr(cpd_module, "_SHARED_ROW_SPREAD", -1.0)  # never shared
    rank = 3
    T = rng.standard_normal(shape)
    T.flat[0] = np.nan  # one missing entry keeps the data masked
    data = MaskedTensor(T)
    factors = [rng.standard_normal((I, rank)) for I in shape]
    monkeypatch.setattr(cpd_module, "_COMPLEMENT_MAX_MISSING", 0.0)
    state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    assert type(state).__name__ == "_MaskedCPDState"
    G = dense_jacobian(MaskedTensor(np.zeros(shape)), factors)
    G = G.T @ G
    lo = 0
    for n, (A, block) in enumerate(zip(factors, state.blocks())):
        for i in range(A.shape[0]):
            k = lo + i * rank
            rho = 1.0 - (i == 0) / (data.size // A.shape[0])  # row 0 misses entry 0
            np.testing.assert_allclose(block[i], rho * G[k : k + rank, k : k + rank],
                                       rtol=1e-12, atol=1e-12)
        lo += A.size


def test_chunks_without_cache_match_one_pass(rng, monkeypatch):
    data = incomplete((6, 5, 7), 3, rng, known=0.7)
    factors = [rng.standard_normal((I, 3)) for I in data.shape]
    dvalues = [rng.standard_normal(A.shape) for A in factors]
    term = sdf.CPD(data, [sdf.Variable(A) for A in factors])
    whole = term.prepare(factors)
    assert whole._jacobians is not None  # small: products with the explicit Jacobian
    monkeypatch.setattr(cpd_module, "_JACOBIAN_FLOATS", 0)  # beyond the Jacobian's budget
    monkeypatch.setattr(cpd_module, "_CHUNK_FLOATS", 20)  # a few entries per chunk
    monkeypatch.setattr(cpd_module, "_CACHE_FLOATS", 0)  # recomputed every time
    chunked = term.prepare(factors)
    assert len(chunked._chunks) > 10 and not chunked._cache
    assert chunked.fval == pytest.approx(whole.fval, rel=1e-13)
    for got, want in ((chunked.gradient(), whole.gradient()),
                      (chunked.gn_product(dvalues), whole.gn_product(dvalues)),
                      (chunked.blocks(), whole.blocks())):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_rank_one_and_all_known(rng):
    shape = (3, 4, 2)
    data = IncompleteTensor(rng.standard_normal(shape), mask=np.ones(shape, bool))
    factors = [rng.standard_normal((I, 1)) for I in shape]
    state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    J = dense_jacobian(data, factors)
    v = [rng.standard_normal(A.shape) for A in factors]
    np.testing.assert_allclose(flat(state.gn_product(v)), J.T @ (J @ flat(v)), rtol=1e-12)


def test_same_data_other_rank_gets_its_own_layout(rng):
    data = incomplete((4, 3, 5), 2, rng)
    for rank in (2, 4, 2):
        factors = [rng.standard_normal((I, rank)) for I in data.shape]
        state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
        J = dense_jacobian(data, factors)
        entries = data.known_entries()
        residual = algebra.cpd_to_tensor(factors)[tuple(entries.subs.T)] - entries.vals
        np.testing.assert_allclose(flat(state.gradient()), J.T @ residual, rtol=1e-12,
                                   atol=1e-12)


def test_planted_fit_recovers_the_factors(rng):
    shape, rank = (15, 12, 10), 3
    truth = [rng.standard_normal((I, rank)) for I in shape]
    mask = rng.random(shape) < 0.3
    data = np.where(mask, algebra.cpd_to_tensor(truth), np.nan)
    start = [A + 0.1 * rng.standard_normal(A.shape) for A in truth]
    variables = [sdf.Variable(A, name=f"x{n}") for n, A in enumerate(start)]
    res = sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=100)
    assert res.relerr["t"] < 1e-8
    assert fms([res.variables[f"x{n}"] for n in range(3)], truth) > 0.9999


def array_bytes(obj, exclude, seen=None):
    """Bytes of the numpy arrays (and scipy sparse arrays' parts) an object holds, through
    its attributes, lists, tuples and dicts, leaving out arrays sharing ``exclude``'s memory."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return 0 if any(np.shares_memory(obj, x) for x in exclude) else obj.nbytes
    if hasattr(obj, "indptr"):  # scipy.sparse
        return sum(array_bytes(getattr(obj, k), exclude, seen)
                   for k in ("data", "indices", "indptr"))
    if isinstance(obj, (list, tuple)):
        return sum(array_bytes(x, exclude, seen) for x in obj)
    if isinstance(obj, dict):
        return sum(array_bytes(x, exclude, seen) for x in obj.values())
    if type(obj).__module__.startswith("sdf.terms"):
        return sum(array_bytes(x, exclude, seen) for x in vars(obj).values())
    return 0


def test_coordinate_state_costs_a_few_bytes_per_known_entry(rng, monkeypatch):
    # Beyond a fixed budget, a state keeps the residual per known entry (8 bytes) and
    # nothing else per entry; the old layout and Jacobian kept ~1.3 KB per entry.
    monkeypatch.setattr(cpd_module, "_CACHE_FLOATS", 0)
    monkeypatch.setattr(cpd_module, "_JACOBIAN_FLOATS", 0)
    data = incomplete((30, 30, 30), 5, rng, known=0.3)
    entries = data.known_entries()
    factors = [rng.standard_normal((I, 5)) for I in data.shape]
    state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    state.gradient(), state.gn_product(factors), state.blocks()
    held = array_bytes(state, [entries.subs, entries.vals, *entries.index, *factors])
    factor_sized = sum(A.nbytes for A in factors)
    assert (held - factor_sized) / entries.nnz <= 8.0 + 1e-9


def test_masked_states_cost_the_dense_fit_plus_the_missing_entries(rng, monkeypatch):
    shape, rank = (30, 30, 30), 5
    T = rng.standard_normal(shape)
    T[rng.random(shape) < 0.01] = np.nan
    data = MaskedTensor(T)
    filled, mask = data.masked_view()
    factors = [rng.standard_normal((I, rank)) for I in shape]
    term = sdf.CPD(data, [sdf.Variable(A) for A in factors])
    n_missing = data.size - data.n_known
    monkeypatch.setattr(cpd_module, "_CACHE_FLOATS", 0)
    monkeypatch.setattr(cpd_module, "_JACOBIAN_FLOATS", 0)
    state = term.prepare(factors)
    assert type(state).__name__ == "_ComplementCPDState"
    state.gradient(), state.gn_product(factors), state.blocks()
    held = array_bytes(state, [filled, mask, *factors]) + array_bytes(
        cpd_module._missing_index(data, mask), [])
    # the missing entries' indices (int32 per mode) and residual, plus factor-sized arrays
    assert held <= n_missing * (4 * 3 + 8) + 200 * sum(A.nbytes for A in factors)
    monkeypatch.setattr(cpd_module, "_COMPLEMENT_MAX_MISSING", 0.0)
    state = term.prepare(factors)
    assert type(state).__name__ == "_MaskedCPDState"
    # the residual, and Khatri-Rao-sized arrays (R x I_1 I_2: K, A_2^T, [dK | K]); the
    # mask's rows (its float copy, the known fraction per row) are kept once per data set
    held = array_bytes(state, [filled, mask, *factors, cpd_module._mask_rows(data, mask).weights])
    assert held <= 8 * data.size + 8 * rank * (3 * shape[1] * shape[2] + shape[2] + sum(shape))


@pytest.mark.parametrize("missing", [0.005, 0.5])
def test_planted_fit_on_masked_data(missing, rng):
    shape, rank = (14, 12, 10, 8), 3
    truth = [rng.standard_normal((I, rank)) for I in shape]
    T = algebra.cpd_to_tensor(truth)
    data = sdf.tensors.as_tensor(np.where(rng.random(shape) < missing, np.nan, T))
    assert isinstance(data, MaskedTensor)
    start = [A + 0.2 * rng.standard_normal(A.shape) for A in truth]
    variables = [sdf.Variable(A, name=f"x{n}") for n, A in enumerate(start)]
    res = sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=100)
    assert res.relerr["t"] < 1e-8
    assert fms([res.variables[f"x{n}"] for n in range(4)], truth) > 0.9999


# ----------------------------------------------------------------------------- explicit Jacobian
# Within a budget (``_JACOBIAN_FLOATS``) the sampled entries' products run on an explicit
# sparse Jacobian and the row blocks as batched products on entries laid out row by row
# (segment sums where that layout pads too much): each against the dense reference, real
# and complex, and against the chunked products.

EXPLICIT = [("coordinates", 0.0, "_SampledCPDState"),
            ("masked", 1.0, "_ComplementCPDState")]


def complex_state_and_reference(shape, rank, rng, storage):
    kind, complement_max, strategy = storage
    data = incomplete(shape, rank, rng, storage=kind)
    values = data.to_dense()
    values = values + 1j * np.where(np.isnan(values), 0.0, rng.standard_normal(shape))
    data = (IncompleteTensor if kind == "coordinates" else MaskedTensor)(values)
    factors = [rng.standard_normal((I, rank)) + 1j * rng.standard_normal((I, rank))
               for I in shape]
    term = sdf.CPD(data, [sdf.Variable(A) for A in factors])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpd_module, "_COMPLEMENT_MAX_MISSING", complement_max)
        state = term.prepare(factors)
    assert type(state).__name__ == strategy
    entries = data.known_entries()
    residual = algebra.cpd_to_tensor(factors)[tuple(entries.subs.T)] - entries.vals
    return state, factors, dense_jacobian(data, factors), residual


@pytest.mark.parametrize("pad", [4, 0], ids=["batched-blocks", "segment-sum-blocks"])
@pytest.mark.parametrize("storage", EXPLICIT, ids=["coordinates", "masked-complement"])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_complex_explicit_jacobian_matches_the_dense_one(shape, storage, pad, rng,
                                                         monkeypatch):
    monkeypatch.setattr(cpd_module, "_PAD_FACTOR", pad)
    rank = 3
    state, factors, J, residual = complex_state_and_reference(shape, rank, rng, storage)
    sampled = getattr(state, "missing", state)
    assert sampled._jacobians is not None
    assert all((s is None) == (pad == 0) for s in sampled._pattern.slots)
    JH = J.conj().T
    assert state.fval == pytest.approx(0.5 * np.vdot(residual, residual).real, rel=1e-12)
    np.testing.assert_allclose(flat(state.gradient()), JH @ residual, rtol=1e-11,
                               atol=1e-11)
    dvalues = [rng.standard_normal(A.shape) + 1j * rng.standard_normal(A.shape)
               for A in factors]
    np.testing.assert_allclose(flat(state.gn_product(dvalues)), JH @ (J @ flat(dvalues)),
                               rtol=1e-11, atol=1e-11)
    G = JH @ J
    lo = 0
    for A, block in zip(factors, state.blocks()):
        for i in range(A.shape[0]):
            k = lo + i * rank
            # stored transposed: applied to rows, x_i^T B_i = (G_ii x_i)^T
            np.testing.assert_allclose(block[i], G[k:k + rank, k:k + rank].T, rtol=1e-11,
                                       atol=1e-11)
        lo += A.size


@pytest.mark.parametrize("pad", [4, 0], ids=["batched-blocks", "segment-sum-blocks"])
def test_explicit_jacobian_matches_the_chunked_products(pad, rng, monkeypatch):
    monkeypatch.setattr(cpd_module, "_PAD_FACTOR", pad)
    data = incomplete((7, 6, 5, 4), 3, rng, known=0.6)
    factors = [rng.standard_normal((I, 3)) for I in data.shape]
    dvalues = [rng.standard_normal(A.shape) for A in factors]
    explicit = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    monkeypatch.setattr(cpd_module, "_JACOBIAN_FLOATS", 0)
    chunked = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    assert explicit._jacobians is not None and chunked._jacobians is None
    assert explicit.fval == pytest.approx(chunked.fval, rel=1e-13)
    for got, want in ((explicit.gradient(), chunked.gradient()),
                      (explicit.gn_product(dvalues), chunked.gn_product(dvalues)),
                      (explicit.blocks(), chunked.blocks())):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_rows_with_most_entries_get_segment_sums(rng):
    # one row holds almost every entry: padding every row to its length would cost 10x
    shape = (10, 6, 5)
    mask = np.zeros(shape, bool)
    mask[0] = True
    mask[1:, 0, 0] = True
    T = np.where(mask, rng.standard_normal(shape), np.nan)
    data = IncompleteTensor(T)
    factors = [rng.standard_normal((I, 2)) for I in shape]
    state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    assert state._pattern.slots[0] is None and state._pattern.slots[1] is not None
    J = dense_jacobian(data, factors)
    G = J.T @ J
    lo = 0
    for A, block in zip(factors, state.blocks()):
        for i in range(A.shape[0]):
            k = lo + 2 * i
            np.testing.assert_allclose(block[i], G[k:k + 2, k:k + 2], rtol=1e-12, atol=1e-12)
        lo += A.size


def test_the_pattern_is_made_once_per_entries_and_rank(rng):
    data = incomplete((5, 4, 6), 2, rng)
    factors = [rng.standard_normal((I, 2)) for I in data.shape]
    term = sdf.CPD(data, [sdf.Variable(A) for A in factors])
    first = term.prepare(factors)._pattern
    assert term.prepare([2.0 * A for A in factors])._pattern is first
    wider = [rng.standard_normal((I, 3)) for I in data.shape]
    assert term.prepare(wider)._pattern is not first


@pytest.mark.parametrize("storage", EXPLICIT, ids=["coordinates", "masked-complement"])
def test_planted_complex_fit_with_the_explicit_jacobian(storage, rng, monkeypatch):
    kind, complement_max, _ = storage
    monkeypatch.setattr(cpd_module, "_COMPLEMENT_MAX_MISSING", complement_max)
    shape, rank = (9, 8, 7), 2
    truth = [rng.standard_normal((I, rank)) + 1j * rng.standard_normal((I, rank))
             for I in shape]
    T = algebra.cpd_to_tensor(truth)
    T[rng.random(shape) < (0.02 if kind == "masked" else 0.5)] = np.nan
    data = (IncompleteTensor if kind == "coordinates" else MaskedTensor)(T)
    start = [A + 0.1 * rng.standard_normal(A.shape) for A in truth]
    variables = [sdf.Variable(A, name=f"x{n}") for n, A in enumerate(start)]
    res = sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=100)
    assert res.relerr["t"] < 1e-8
    assert fms([res.variables[f"x{n}"] for n in range(3)], truth) > 0.9999


def test_the_explicit_jacobian_stays_within_its_budget(rng, monkeypatch):
    data = incomplete((8, 7, 6), 3, rng, known=0.5)
    factors = [rng.standard_normal((I, 3)) for I in data.shape]
    floats = data.known_entries().nnz * 3 * 3  # N R values per entry
    for budget, explicit in ((floats, True), (floats - 1, False)):
        monkeypatch.setattr(cpd_module, "_JACOBIAN_FLOATS", budget)
        state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
        assert (state._jacobians is not None) == explicit
        if explicit:  # the values per state; the pattern (indices) is shared
            assert sum(J.data.nbytes for J in state._jacobians) == 8 * floats
            assert all(J.indptr is state._pattern.indptr for J in state._jacobians)


# ----------------------------------------------------------------------------- masked fast path
# Real factors on masked data with many entries missing: the flat product (the inner CG
# loop's) and the gradient run on rank-first Khatri-Rao suffixes kept per state.

@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_masked_flat_product_is_jtj_v(shape, rng):
    state, factors, J, _ = state_and_reference(shape, 3, rng, STORAGES[1])
    v = rng.standard_normal(J.shape[1])
    out = state.gn_product_flat(v.copy())
    np.testing.assert_allclose(out, J.T @ (J @ v), rtol=1e-12,
                               atol=1e-12 * np.abs(J.T @ (J @ v)).max())
    # a second product on the same state (the kept suffixes) gives the same numbers
    np.testing.assert_array_equal(state.gn_product_flat(v.copy()), out)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_masked_products_with_entry_weights(shape, rng):
    """The weights a loss's curvature puts in place of the mask: ``J^T diag(c) J v``."""
    rank = 2
    factors = [rng.standard_normal((I, rank)) for I in shape]
    weights = rng.random(shape) * (rng.random(shape) < 0.6)
    data = np.where(weights > 0, rng.standard_normal(shape), 0.0)
    state = cpd_module._MaskedCPDState(data, weights, factors)
    J = dense_jacobian(MaskedTensor(np.zeros(shape)), factors)  # every entry
    v = rng.standard_normal(J.shape[1])
    expected = J.T @ (weights.ravel() * (J @ v))
    np.testing.assert_allclose(state.gn_product_flat(v), expected, rtol=1e-12,
                               atol=1e-12 * np.abs(expected).max())
    residual = state.residual.ravel()  # a loss's state puts its slope ell'(M) here
    np.testing.assert_allclose(flat(state.gradient()), J.T @ residual, rtol=1e-12,
                               atol=1e-12 * np.abs(J.T @ residual).max())


def test_masked_flat_product_leaves_complex_factors_to_the_listed_form(rng):
    shape = (4, 3, 5)
    data = incomplete(shape, 2, rng, storage="masked")
    factors = [rng.standard_normal((I, 2)) + 1j * rng.standard_normal((I, 2)) for I in shape]
    state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    assert type(state).__name__ == "_MaskedCPDState"
    assert state.gn_product_flat(rng.standard_normal(sum(A.size for A in factors))) is None


def test_planted_noisy_fit_with_half_missing_from_a_random_start(rng):
    """Half the entries missing, 1 % noise, a random start: the factors are found and the
    reported error is the one recomputed from the returned factors."""
    shape, rank = (16, 15, 14), 3
    truth = [rng.standard_normal((I, rank)) for I in shape]
    T = algebra.cpd_to_tensor(truth)
    noise = rng.standard_normal(shape)
    T = T + 0.01 * np.linalg.norm(T) / np.linalg.norm(noise) * noise
    mask = rng.random(shape) >= 0.5
    data = sdf.tensors.as_tensor(np.where(mask, T, np.nan))
    assert isinstance(data, MaskedTensor)
    variables = [sdf.Variable.random((I, rank), seed=n, name=f"x{n}")
                 for n, I in enumerate(shape)]
    res = sdf.Model(t=sdf.CPD(data, variables)).fit(max_iter=200)
    found = [res.variables[f"x{n}"] for n in range(3)]
    assert res.success
    assert fms(found, truth) > 0.999
    recomputed = (np.linalg.norm(mask * (algebra.cpd_to_tensor(found) - T))
                  / np.linalg.norm(mask * T))
    assert res.relerr["t"] == pytest.approx(recomputed, rel=1e-10)
    assert 0.005 < res.relerr["t"] < 0.012  # at the noise level (1 %), not below it


def test_masked_state_on_the_boolean_mask_matches_the_float_one(rng, monkeypatch):
    """Beyond ``_FLOAT_MASK_ENTRIES`` the state multiplies by the boolean mask itself: the
    same f, gradient and products."""
    shape, rank = (6, 5, 4), 2
    T = np.where(rng.random(shape) < 0.5, rng.standard_normal(shape), np.nan)
    factors = [rng.standard_normal((I, rank)) for I in shape]
    v = rng.standard_normal(sum(A.size for A in factors))
    monkeypatch.setattr(cpd_module, "_COMPLEMENT_MAX_MISSING", 0.0)
    floats = sdf.CPD(MaskedTensor(T), [sdf.Variable(A) for A in factors]).prepare(factors)
    monkeypatch.setattr(cpd_module, "_FLOAT_MASK_ENTRIES", 0)
    bools = sdf.CPD(MaskedTensor(T), [sdf.Variable(A) for A in factors]).prepare(factors)
    assert floats.mask.dtype == float and bools.mask.dtype == bool
    assert bools.fval == floats.fval
    np.testing.assert_array_equal(flat(bools.gradient()), flat(floats.gradient()))
    np.testing.assert_array_equal(bools.gn_product_flat(v), floats.gn_product_flat(v))


def test_masked_flat_product_on_complex_data_and_real_factors(rng):
    """Real factors on complex data: the residual is complex, ``J`` (and so ``J^T J``) is
    real, and the flat product is the real one."""
    shape, rank = (4, 3, 5), 2
    data = MaskedTensor(np.where(rng.random(shape) < 0.4,
                                 rng.standard_normal(shape) + 1j * rng.standard_normal(shape),
                                 np.nan))
    factors = [rng.standard_normal((I, rank)) for I in shape]
    state = sdf.CPD(data, [sdf.Variable(A) for A in factors]).prepare(factors)
    assert type(state).__name__ == "_MaskedCPDState" and np.iscomplexobj(state.residual)
    J = dense_jacobian(data, factors)
    entries = data.known_entries()
    residual = algebra.cpd_to_tensor(factors)[tuple(entries.subs.T)] - entries.vals
    assert state.fval == pytest.approx(0.5 * np.vdot(residual, residual).real, rel=1e-12)
    np.testing.assert_allclose(flat(state.gradient()), J.T @ residual, rtol=1e-12,
                               atol=1e-12)
    v = rng.standard_normal(J.shape[1])
    np.testing.assert_allclose(state.gn_product_flat(v), J.T @ (J @ v), rtol=1e-12,
                               atol=1e-12)


def test_masked_fit_modifies_nothing_passed_in(rng):
    """The data array, its mask and the start values are left as they were."""
    shape, rank = (9, 8, 7), 2
    T = algebra.cpd_to_tensor([rng.standard_normal((I, rank)) for I in shape])
    T[rng.random(shape) < 0.5] = np.nan
    mask = np.isfinite(T)
    before, starts = T.copy(), [rng.standard_normal((I, rank)) for I in shape]
    copies = [A.copy() for A in starts]
    variables = [sdf.Variable(A, name=f"x{n}") for n, A in enumerate(starts)]
    res = sdf.Model(t=sdf.CPD(MaskedTensor(T, mask), variables)).fit(max_iter=30)
    assert res.iterations > 0
    np.testing.assert_array_equal(T, before)
    assert np.array_equal(mask, np.isfinite(before))
    for A, B, var in zip(starts, copies, variables):
        np.testing.assert_array_equal(A, B)
        np.testing.assert_array_equal(var.value, B)


def test_masked_blocks_shared_by_rows_with_even_known_fractions(rng, monkeypatch):
    """Where every row of a mode has about the same fraction of its entries known, the
    mode's rows share one block: the mean fraction times the full-data block."""
    shape, rank = (6, 50, 40), 2
    mask = rng.random(shape) < 0.5
    mask[:, 0, :] = rng.random((6, 40)) < 0.1  # one uneven row in mode 1
    T = np.where(mask, rng.standard_normal(shape), np.nan)
    factors = [rng.standard_normal((I, rank)) for I in shape]
    monkeypatch.setattr(cpd_module, "_COMPLEMENT_MAX_MISSING", 0.0)
    state = sdf.CPD(MaskedTensor(T), [sdf.Variable(A) for A in factors]).prepare(factors)
    blocks = state.blocks()
    for n, A in enumerate(factors):
        W = np.prod([B.T @ B for m, B in enumerate(factors) if m != n], axis=0)
        rho = np.moveaxis(mask, n, 0).reshape(A.shape[0], -1).mean(axis=1)
        even = np.all(np.abs(rho - rho.mean()) <= 0.1 * rho.mean())
        assert even == (n != 1) or n == 2  # mode 0: 2000 entries a row; mode 1: uneven
        if even:
            np.testing.assert_allclose(blocks[n], rho.mean() * W, rtol=1e-12)
        else:
            np.testing.assert_allclose(blocks[n], rho[:, None, None] * W, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_masked_state_in_column_chunks_matches_the_jacobian(shape, rng, monkeypatch):
    """f, the gradient (formed with f) and the products, a few columns of the mode-0
    unfolding at a time (the last chunk shorter), against the explicit Jacobian."""
    monkeypatch.setattr(cpd_module, "_PRODUCT_CHUNK_FLOATS", 2 * shape[0] + 1)
    state, factors, J, residual = state_and_reference(shape, 3, rng, STORAGES[1])
    assert state._fused is not None and not hasattr(state, "residual")
    assert state.fval == pytest.approx(0.5 * residual @ residual, rel=1e-12)
    np.testing.assert_allclose(flat(state.gradient()), J.T @ residual, rtol=1e-12,
                               atol=1e-12)
    v = rng.standard_normal(J.shape[1])
    np.testing.assert_allclose(state.gn_product_flat(v), J.T @ (J @ v), rtol=1e-12,
                               atol=1e-12 * np.abs(J.T @ (J @ v)).max())
