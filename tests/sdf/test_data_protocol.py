"""The data protocol: a data kind defined here, from MTTKRPs and a norm only, fits a CPD
and an LMLRA through the ordinary Model.fit, and the protocol's defaults agree with the
kinds that override them."""

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.errors import DataError
from sdf.tensors import (CPDTensor, DenseTensor, IncompleteTensor, MaskedTensor, SparseTensor,
                         Tensor, TuckerTensor, as_tensor, register_data_kind)


class FunctionTensor(Tensor):
    """Data known only through a function returning MTTKRPs, and its squared norm."""

    kind = "function"

    def __init__(self, shape, mttkrp, norm_squared):
        self._shape = tuple(shape)
        self._mttkrp_fn = mttkrp
        self._norm2 = norm_squared

    def _norm_squared(self):
        return self._norm2

    def _mttkrp(self, mats, n):
        return self._mttkrp_fn(mats, n)


def _function_tensor(T):
    return FunctionTensor(T.shape, lambda mats, n: algebra.mttkrp(T, mats, n),
                          float(np.sum(T * T)))


def test_a_function_data_kind_fits_a_cpd(rng):
    A = [rng.standard_normal((n, 3)) for n in (7, 6, 5)]
    T = algebra.cpd_to_tensor(A)
    start = [a + 0.1 * rng.standard_normal(a.shape) for a in A]
    variables = [sdf.Variable(s, name=k) for s, k in zip(start, "abc")]
    result = sdf.Model(t=sdf.CPD(_function_tensor(T), variables)).fit(max_iter=100)
    # Without the array, the error comes from norms and inner products: ~sqrt(eps).
    assert result.relerr["t"] < 1e-6
    fitted = algebra.cpd_to_tensor([result.variables[k] for k in "abc"])
    assert np.linalg.norm(fitted - T) / np.linalg.norm(T) < 1e-8


def test_a_function_data_kind_fits_an_lmlra(rng):
    U = [np.linalg.qr(rng.standard_normal((n, 2)))[0] for n in (6, 5, 4)]
    S = rng.standard_normal((2, 2, 2))
    T = algebra.tucker_to_tensor(U, S)
    start = [np.linalg.qr(u + 0.05 * rng.standard_normal(u.shape))[0] for u in U]
    core = sdf.Variable(algebra.tmprod(T, start, transpose=True), name="s")
    factors = [sdf.Variable(u, name=k) for u, k in zip(start, "uvw")]
    result = sdf.Model(t=sdf.LMLRA(_function_tensor(T), factors, core)).fit(max_iter=100)
    assert result.relerr["t"] < 1e-6
    fitted = algebra.tucker_to_tensor([result.variables[k] for k in "uvw"], result["s"])
    assert np.linalg.norm(fitted - T) / np.linalg.norm(T) < 1e-8


def _kinds(rng):
    A = [rng.standard_normal((n, 2)) for n in (4, 3, 5)]
    T = algebra.cpd_to_tensor(A) + 0.1 * rng.standard_normal((4, 3, 5))
    U = [rng.standard_normal((n, 2)) for n in (4, 3, 5)]
    H = rng.standard_normal((2, 2, 2))
    yield "dense", T, DenseTensor(T)
    yield "function", T, _function_tensor(T)
    sparse = np.where(rng.random(T.shape) < 0.4, T, 0.0)
    subs = np.argwhere(sparse != 0)
    yield "sparse", sparse, SparseTensor.from_entries(subs, sparse[tuple(subs.T)], T.shape)
    holed = np.where(rng.random(T.shape) < 0.7, T, np.nan)
    yield "incomplete", np.nan_to_num(holed), IncompleteTensor(holed)
    yield "masked", np.nan_to_num(holed), MaskedTensor(holed)
    yield "cpd", algebra.cpd_to_tensor(A), CPDTensor(A)
    yield "tucker", algebra.tucker_to_tensor(U, H), TuckerTensor(U, H)


@pytest.mark.parametrize("case", range(7))
def test_projections_agree_with_the_dense_formulas(case, rng):
    name, dense, T = list(_kinds(rng))[case]
    mats = [rng.standard_normal((n, r)) for n, r in zip(T.shape, (2, 3, 1))]
    core = rng.standard_normal((2, 3, 1))
    want_P = algebra.tmprod(dense, mats, transpose=True)
    P, K = T.project_tucker(mats, core)
    np.testing.assert_allclose(T.project(mats), want_P, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(P, want_P, atol=1e-10, err_msg=name)
    for n in range(3):
        others = [m for k, m in enumerate(mats) if k != n]
        modes = [k for k in range(3) if k != n]
        Y = algebra.tmprod(dense, others, modes, transpose=True)
        want = algebra.unfold(Y, n) @ algebra.unfold(core, n).T
        np.testing.assert_allclose(K[n], want, atol=1e-10, err_msg=f"{name}, K[{n}]")
    assert T.inner_tucker(mats, core) == pytest.approx(float(np.sum(want_P * core)))


@pytest.mark.parametrize("case", range(7))
def test_mttkrp_sessions_agree_with_the_dense_formulas(case, rng):
    name, dense, T = list(_kinds(rng))[case]
    factors = [rng.standard_normal((n, 3)) for n in T.shape]
    session = T.mttkrp_session(factors)
    assert session.inner() == pytest.approx(float(np.sum(dense * algebra.cpd_to_tensor(factors))))
    for n, M in enumerate(session.all()):
        np.testing.assert_allclose(M, algebra.mttkrp(dense, factors, n), atol=1e-10,
                                   err_msg=name)


def test_only_data_with_missing_entries_offer_known_entries(rng):
    kinds = {name: T for name, _, T in _kinds(rng)}
    assert [k for k, T in kinds.items() if T.known_entries() is not None] == ["incomplete",
                                                                             "masked"]
    assert [k for k, T in kinds.items() if T.dense_view() is not None] == ["dense"]
    assert [k for k, T in kinds.items() if T.masked_view() is not None] == ["masked"]


def test_masked_and_coordinate_storage_give_the_same_entries(rng):
    holed = np.where(rng.random((4, 3, 5)) < 0.7, rng.standard_normal((4, 3, 5)), np.nan)
    masked, coords = MaskedTensor(holed), IncompleteTensor(holed)
    a, b = masked.known_entries(), coords.known_entries()
    np.testing.assert_array_equal(a.subs, b.subs)
    np.testing.assert_array_equal(a.vals, b.vals)
    filled, mask = masked.masked_view()
    np.testing.assert_array_equal(mask, ~np.isnan(holed))
    np.testing.assert_array_equal(filled, np.nan_to_num(holed))
    assert not filled.flags.writeable and not mask.flags.writeable
    assert masked.n_known == coords.n_known
    # the same entries summed in another order: equal to rounding
    assert masked.norm_squared() == pytest.approx(coords.norm_squared(), rel=1e-14)
    np.testing.assert_array_equal(masked.values_at(b.subs), b.vals)


@pytest.mark.parametrize("storage", [MaskedTensor, IncompleteTensor])
def test_a_model_fits_either_storage_to_the_same_point(storage, rng):
    A = [rng.standard_normal((n, 2)) for n in (6, 5, 4)]
    T = algebra.cpd_to_tensor(A)
    holed = np.where(rng.random(T.shape) < 0.8, T, np.nan)
    start = [a + 0.05 * rng.standard_normal(a.shape) for a in A]
    variables = [sdf.Variable(s, name=k) for s, k in zip(start, "abc")]
    result = sdf.Model(t=sdf.CPD(storage(holed), variables)).fit(max_iter=50)
    assert result.relerr["t"] < 1e-8


def test_a_kind_without_expansion_says_so():
    T = _function_tensor(np.ones((2, 2)))
    with pytest.raises(DataError, match="FunctionTensor: these data cannot be expanded"):
        T.to_dense()


def test_registered_input_type_reaches_every_term(rng):
    class Wrapped:
        def __init__(self, array):
            self.array = array

    unregister = register_data_kind(lambda x: isinstance(x, Wrapped),
                                    lambda x, mask, name: _function_tensor(x.array))
    try:
        A = [rng.standard_normal((n, 2)) for n in (5, 4, 3)]
        term = sdf.CPD(Wrapped(algebra.cpd_to_tensor(A)), [sdf.Variable(a) for a in A])
        assert isinstance(term.data, FunctionTensor)
    finally:
        unregister()
    assert isinstance(as_tensor(np.ones((2, 2))), DenseTensor)


def test_dense_data_are_copied_so_later_edits_do_not_reach_the_model():
    T = np.ones((3, 4))
    tensor = as_tensor(T)
    T *= 10
    assert tensor.norm_squared() == 12.0
