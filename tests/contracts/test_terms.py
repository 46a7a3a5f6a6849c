"""Contract tests run over every registered term and every data kind.

Every data term is compiled on every data kind (the kinds of :mod:`sdf.tensors` and a
kind defined here from MTTKRPs and a norm only), at orders 2 and 3 (kinds of one order
only, such as the fourth-order cumulant, at theirs), with one input sent
through a transform: the engine's f, gradient and Gauss-Newton product ``J^T W J v``
must match autograd on a reference residual, and nothing passed in (data, initial
values) may change, even read-only. Regularizers have no data and run on their own. A
combination a term does not support must raise a located error (``UNSUPPORTED``).
The guards at the end fail naming any term or data kind these tables do not cover.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest

import sdf
import sdf.tensors
from sdf import algebra
from sdf import transforms as tf
from sdf.errors import ModelError, SdfWarning
from sdf.problem import Problem
from sdf.tensorize import hankelize, loewnerize, segmentize
from sdf.tensors import (BTDTensor, CPDTensor, Cumulant4Tensor, DaskEntriesTensor,
                         DaskTensor, DenseTensor, HankelTensor, HigherOrderLoewnerTensor,
                         IncompleteTensor, LL1Tensor, LoewnerTensor, MaskedTensor,
                         OverlappingSegmentedTensor, SegmentedTensor, SparseTensor, Tensor,
                         TTTensor, TuckerTensor, as_tensor)
from sdf.terms import term_types

from _reference import check_model, tucker

SHAPES = {2: (4, 3), 3: (4, 3, 5), 4: (3, 3, 3, 3)}
#: Orders every kind is tested at (KIND_ORDERS lists the exceptions).
ORDERS = (2, 3)


# ----------------------------------------------------------------------------- data kinds


class FunctionTensor(Tensor):
    """Data known only through a function returning MTTKRPs, and its squared norm."""

    kind = "function"

    def __init__(self, shape: tuple[int, ...],
                 mttkrp: Callable[[list[np.ndarray], int], np.ndarray],
                 norm_squared: float) -> None:
        self._shape = tuple(shape)
        self._mttkrp_fn = mttkrp
        self._norm2 = norm_squared

    def _norm_squared(self) -> float:
        return self._norm2

    def _mttkrp(self, mats: list[np.ndarray], n: int) -> np.ndarray:
        return self._mttkrp_fn(mats, n)


@dataclass
class Data:
    """A data set of one kind: the tensor, its dense form, the known entries (None: all)
    and the arrays the caller passed in (checked untouched after use)."""

    tensor: Tensor
    dense: np.ndarray
    known: np.ndarray | None
    given: list[np.ndarray]


def _frozen(*arrays: np.ndarray) -> list[np.ndarray]:
    for a in arrays:
        a.setflags(write=False)  # any in-place write by the engine raises
    return list(arrays)


def dense_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    D = rng.standard_normal(shape)
    return Data(DenseTensor(D), D, None, _frozen(D))


def incomplete_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    D = rng.standard_normal(shape)
    D[rng.random(shape) < 0.4] = np.nan
    D.flat[0] = 1.0
    return Data(IncompleteTensor(D), D, ~np.isnan(D), _frozen(D))


def sparse_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    keep = rng.random(shape) < 0.4
    keep.flat[0] = True
    subs = np.argwhere(keep)
    vals = rng.standard_normal(len(subs))
    dense = np.zeros(shape)
    dense[tuple(subs.T)] = vals
    return Data(SparseTensor.from_entries(subs, vals, shape), dense, None, _frozen(subs, vals))


def cpd_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    F = [rng.standard_normal((n, 2)) for n in shape]
    w = rng.standard_normal(2)
    dense = algebra.cpd_to_tensor([F[0] * w, *F[1:]])
    return Data(CPDTensor(F, weights=w), dense, None, _frozen(*F, w))


def tucker_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    U = [rng.standard_normal((n, 2)) for n in shape]
    core = rng.standard_normal((2,) * len(shape))
    dense = algebra.tucker_to_tensor(U, core)
    return Data(TuckerTensor(U, core), dense, None, _frozen(*U, core))


def function_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    D = rng.standard_normal(shape)
    tensor = FunctionTensor(shape, lambda mats, n: algebra.mttkrp(D, mats, n),
                            float(np.sum(D * D)))
    return Data(tensor, D, None, _frozen(D))


def masked_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    D = rng.standard_normal(shape)
    D[rng.random(shape) < 0.2] = np.nan
    D.flat[0] = 1.0
    return Data(MaskedTensor(D), D, ~np.isnan(D), _frozen(D))


def dask_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    import dask.array as da

    D = rng.standard_normal(shape)
    tensor = as_tensor(da.from_array(D, chunks=2))
    return Data(tensor, D, None, _frozen(D))


def dask_entries_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    import dask.array as da

    keep = rng.random(shape) < 0.4
    keep.flat[0] = True
    subs = np.argwhere(keep)
    vals = rng.standard_normal(len(subs))
    dense = np.zeros(shape)
    dense[tuple(subs.T)] = vals
    tensor = as_tensor((da.from_array(subs, chunks=(7, subs.shape[1])),
                        da.from_array(vals, chunks=7), shape))
    return Data(tensor, dense, None, _frozen(subs, vals))


def hankel_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    x = rng.standard_normal(sum(shape) - len(shape) + 1)
    tensor = hankelize(x, sizes=shape, full=False)
    return Data(tensor, tensor.to_dense(), None, _frozen(x))


def segmented_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    x = rng.standard_normal(int(np.prod(shape)))
    tensor = segmentize(x, shape, full=False)
    return Data(tensor, tensor.to_dense(), None, _frozen(x))


def tt_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    ranks = [1, *([2] * (len(shape) - 1)), 1]
    cores = [rng.standard_normal((ranks[k], n, ranks[k + 1])) for k, n in enumerate(shape)]
    tensor = TTTensor(cores)
    return Data(tensor, tensor.to_dense(), None, _frozen(*cores))


def btd_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    blocks = [([rng.standard_normal((n, r)) for n in shape], rng.standard_normal((r,) * len(shape)))
              for r in (2, 1)]
    dense = sum(algebra.tucker_to_tensor(U, core) for U, core in blocks)
    return Data(BTDTensor(blocks), dense, None,
                _frozen(*(a for U, core in blocks for a in (*U, core))))


def ll1_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    A, B = (rng.standard_normal((n, 3)) for n in shape[:2])
    C = rng.standard_normal((shape[2], 2))
    dense = algebra.cpd_to_tensor([A, B, C[:, [0, 0, 1]]])
    return Data(LL1Tensor([A, B, C], [2, 1]), dense, None, _frozen(A, B, C))


def overlapping_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    # Windows of length shape[0] shifted by 2 for an order-2 shape; for more modes, the
    # other modes are further signals.
    x = rng.standard_normal((shape[0] + 2 * (shape[1] - 1), *shape[2:]))
    tensor = segmentize(x, shape[0], shift=2, full=False)
    return Data(tensor, tensor.to_dense(), None, _frozen(x))


def cumulant_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    X = rng.laplace(size=(40, shape[0]))
    tensor = Cumulant4Tensor(X)
    return Data(tensor, tensor.to_dense(), None, _frozen(X))


def higher_loewner_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    points = np.arange(sum(shape), dtype=float)
    values = np.cos(points / 3.0) + 0.1 * rng.standard_normal(points.shape)
    sets = np.split(rng.permutation(points.size), np.cumsum(shape)[:-1])
    tensor = loewnerize(values, points, order=len(shape), sets=sets, full=False)
    return Data(tensor, tensor.to_dense(), None, _frozen(points, values))


def loewner_data(shape: tuple[int, ...], rng: np.random.Generator) -> Data:
    points = np.arange(sum(shape), dtype=float)
    values = np.cos(points / 3.0) + 0.1 * rng.standard_normal(points.shape)
    tensor = loewnerize(values, points, rows=np.arange(shape[0]), full=False)
    return Data(tensor, tensor.to_dense(), None, _frozen(points, values))


#: One maker per data kind, by the class it makes.
KINDS: dict[type[Tensor], Callable[[tuple[int, ...], np.random.Generator], Data]] = {
    DenseTensor: dense_data,
    IncompleteTensor: incomplete_data,
    MaskedTensor: masked_data,
    DaskTensor: dask_data,
    DaskEntriesTensor: dask_entries_data,
    SparseTensor: sparse_data,
    CPDTensor: cpd_data,
    TuckerTensor: tucker_data,
    FunctionTensor: function_data,
    HankelTensor: hankel_data,
    SegmentedTensor: segmented_data,
    TTTensor: tt_data,
    LoewnerTensor: loewner_data,
    BTDTensor: btd_data,
    LL1Tensor: ll1_data,
    OverlappingSegmentedTensor: overlapping_data,
    Cumulant4Tensor: cumulant_data,
    HigherOrderLoewnerTensor: higher_loewner_data,
}

#: Orders a kind exists at, where not every order (a Loewner matrix is of order 2).
KIND_ORDERS: dict[type[Tensor], tuple[int, ...]] = {
    LoewnerTensor: (2,), LL1Tensor: (3,), Cumulant4Tensor: (4,)}


# ----------------------------------------------------------------------------- data terms


@dataclass
class Built:
    """A term on some data, the variables' initial arrays (as passed in) and the dense
    model in autograd.numpy from the variables' values by name."""

    term: sdf.Term
    starts: list[np.ndarray]
    model: Callable[[dict[str, Any]], Any]


def _variables(shapes: list[tuple[int, ...]], names: list[str], rng: np.random.Generator
               ) -> tuple[list[sdf.Variable], list[np.ndarray]]:
    starts = _frozen(*(rng.standard_normal(s) for s in shapes))
    return [sdf.Variable(a, name=n) for a, n in zip(starts, names)], starts


def _cpd_full(factors: list[Any]) -> Any:
    letters = "ijklm"[: len(factors)]
    return anp.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)


def build_cpd(data: Tensor, rng: np.random.Generator) -> Built:
    names = [f"a{n}" for n in range(data.ndim)]
    vs, starts = _variables([(I, 2) for I in data.shape], names, rng)
    inputs: list[Any] = [vs[0], tf.nonneg(vs[1]), *vs[2:]]

    def model(v: dict[str, Any]) -> Any:
        return _cpd_full([v["a0"], v["a1"] ** 2, *(v[n] for n in names[2:])])

    return Built(sdf.CPD(data, inputs), starts, model)


def build_lmlra(data: Tensor, rng: np.random.Generator) -> Built:
    names = [f"u{n}" for n in range(data.ndim)]
    vs, starts = _variables([(I, 2) for I in data.shape] + [(2,) * data.ndim],
                            [*names, "s"], rng)
    term = sdf.LMLRA(data, [vs[0], tf.nonneg(vs[1]), *vs[2:-1]], vs[-1])

    def model(v: dict[str, Any]) -> Any:
        return tucker([v["u0"], v["u1"] ** 2, *(v[n] for n in names[2:])], v["s"])

    return Built(term, starts, model)


def build_btd(data: Tensor, rng: np.random.Generator) -> Built:
    N, cores = data.ndim, [(2,) * data.ndim, (1,) * data.ndim]
    names = [[f"u{b}{n}" for n in range(N)] + [f"s{b}"] for b in range(len(cores))]
    shapes = [[(I, R) for I, R in zip(data.shape, cs)] + [cs] for cs in cores]
    vs, starts = _variables([s for blk in shapes for s in blk],
                            [n for blk in names for n in blk], rng)
    blocks: list[list[Any]] = [vs[: N + 1], vs[N + 1:]]
    blocks[0][0] = tf.nonneg(blocks[0][0])

    def model(v: dict[str, Any]) -> Any:
        first = [v["u00"] ** 2, *(v[n] for n in names[0][1:N])]
        second = [v[n] for n in names[1][:N]]
        return tucker(first, v["s0"]) + tucker(second, v["s1"])

    return Built(sdf.BTD(data, blocks), starts, model)


def build_ll1(data: Tensor, rng: np.random.Generator) -> Built:
    L = [2, 1]
    # Third-order data give (I, 3), (J, 3), (K, 2); other orders get a C of the same kind
    # so that the term is built and its check has something to refuse.
    rows = (*data.shape[:2], data.shape[2] if data.ndim > 2 else 2)
    vs, starts = _variables([(rows[0], 3), (rows[1], 3), (rows[2], 2)], ["a", "b", "c"], rng)
    index = np.repeat(np.arange(len(L)), L)

    def model(v: dict[str, Any]) -> Any:
        return anp.einsum("ir,jr,kr->ijk", v["a"], v["b"], (v["c"] ** 2)[:, index])

    return Built(sdf.LL1(data, [vs[0], vs[1], tf.nonneg(vs[2])], L=L), starts, model)


def _ring(cores: list[Any]) -> Any:
    """The array of a tensor ring (a train when the end sizes are 1)."""
    N = len(cores)
    modes, bonds = "ijkl"[:N], "abcd"
    spec = ",".join(f"{bonds[k]}{modes[k]}{bonds[(k + 1) % N]}" for k in range(N))
    return anp.einsum(f"{spec}->{modes}", *cores)


def _build_ring(data: Tensor, rng: np.random.Generator, closing: int) -> Built:
    N = data.ndim
    ranks = [closing, *([2] * (N - 1)), closing]
    names = [f"g{k}" for k in range(N)]
    vs, starts = _variables([(ranks[k], I, ranks[k + 1]) for k, I in enumerate(data.shape)],
                            names, rng)
    inputs: list[Any] = [vs[0], tf.nonneg(vs[1]), *vs[2:]]

    def model(v: dict[str, Any]) -> Any:
        return _ring([v["g0"], v["g1"] ** 2, *(v[n] for n in names[2:])])

    term = sdf.TT(data, inputs) if closing == 1 else sdf.TR(data, inputs)
    return Built(term, starts, model)


def build_tt(data: Tensor, rng: np.random.Generator) -> Built:
    return _build_ring(data, rng, 1)


def build_tr(data: Tensor, rng: np.random.Generator) -> Built:
    return _build_ring(data, rng, 2)


#: One builder per registered data term, by its dictionary key.
DATA_TERMS: dict[str, Callable[[Tensor, np.random.Generator], Built]] = {
    "btd": build_btd,
    "cpd": build_cpd,
    "ll1": build_ll1,
    "lmlra": build_lmlra,
    "tr": build_tr,
    "tt": build_tt,
}
#: The data terms whose inputs include factor matrices of the data's modes.
FACTOR_TERMS = ("btd", "cpd", "ll1", "lmlra")

#: (term key, data order) pairs a term refuses, and the located error it must raise.
UNSUPPORTED: dict[tuple[str, int], str] = {
    ("ll1", 2): r"term 't': an LL1 term needs third-order data, got 2 modes",
    ("ll1", 4): r"term 't': an LL1 term needs third-order data, got 4 modes",
}

DATA_CASES = [(key, kind, order) for key in DATA_TERMS for kind in KINDS for order in SHAPES
              if order in KIND_ORDERS.get(kind, ORDERS)]


def _case_id(case: tuple[str, type[Tensor], int]) -> str:
    key, kind, order = case
    return f"{key}-{kind.__name__}-order{order}"


def _build(case: tuple[str, type[Tensor], int], rng: np.random.Generator
           ) -> tuple[sdf.Model, Data, Built]:
    key, kind, order = case
    data = KINDS[kind](SHAPES[order], rng)
    assert type(data.tensor) is kind
    built = DATA_TERMS[key](data.tensor, rng)
    return sdf.Model(t=built.term), data, built


def _residuals(model: sdf.Model, data: Data, built: Built
               ) -> Callable[[dict[str, Any]], list[tuple[float, Any]]]:
    w = model.weights["t"]
    if data.known is None:
        return lambda v: [(w, built.model(v) - data.dense)]
    target = data.dense[data.known]
    return lambda v: [(w, built.model(v)[data.known] - target)]


@pytest.mark.parametrize("case", DATA_CASES, ids=_case_id)
def test_data_term_matches_autograd(case, rng):
    model, data, built = _build(case, rng)
    refused = UNSUPPORTED.get((case[0], case[2]))
    if refused is not None:
        with pytest.raises(ModelError, match=refused):
            model.check()
        return
    model.check()
    check_model(model, _residuals(model, data, built), rng, rtol=1e-7)


@pytest.mark.parametrize("case", DATA_CASES, ids=_case_id)
def test_data_term_leaves_its_inputs_untouched(case, rng):
    model, data, built = _build(case, rng)
    given = data.given + built.starts
    copies = [a.copy() for a in given]
    if (case[0], case[2]) in UNSUPPORTED:
        with pytest.raises(ModelError, match=UNSUPPORTED[case[0], case[2]]):
            model.fit(max_iter=2)
    else:
        _exercise(model)
    for a, c in zip(given, copies):
        np.testing.assert_array_equal(a, c)
    for var, c in zip(model.variables, built.starts):
        np.testing.assert_array_equal(var.value, c)


def _exercise(model: sdf.Model) -> None:
    """Compile, evaluate every derivative product and fit a few steps with both solvers."""
    model.check()
    problem = Problem.from_model(model)
    point = problem.point(problem.z0 + 0.1)
    point.gradient()
    point.gn_product(np.ones(problem.n))
    point.preconditioner()(np.ones(problem.n))
    with warnings.catch_warnings():  # three steps from a random start fit poorly
        warnings.simplefilter("ignore", SdfWarning)
        model.fit(max_iter=3)
        model.fit(method="minf", max_iter=3)


@pytest.mark.parametrize("key", FACTOR_TERMS)
def test_data_term_names_the_factor_that_does_not_fit(key, rng):
    data = dense_data(SHAPES[3], rng)
    built = DATA_TERMS[key](data.tensor, rng)
    term = built.term
    bad = sdf.Variable(np.ones((SHAPES[3][0] + 1, term.inputs[0].shape[1])), name="wrong")
    inputs = [bad, *term.inputs[1:]]
    rebuilt = {
        "cpd": lambda: sdf.CPD(data.tensor, inputs),
        "lmlra": lambda: sdf.LMLRA(data.tensor, inputs[:-1], inputs[-1]),
        "btd": lambda: sdf.BTD(data.tensor, [inputs[:4], inputs[4:]]),
        "ll1": lambda: sdf.LL1(data.tensor, inputs, L=[2, 1]),
    }[key]()
    with pytest.raises(ModelError, match=r"term 't'.*factor 0 \('wrong'\): expected 4 rows "
                                         r"to match mode 0 of the data, got 5"):
        sdf.Model(t=rebuilt).check()


@pytest.mark.parametrize("key", sorted(set(DATA_TERMS) - set(FACTOR_TERMS)))
def test_data_term_names_the_core_that_does_not_fit(key, rng):
    data = dense_data(SHAPES[3], rng)
    term = DATA_TERMS[key](data.tensor, rng).term
    bad = sdf.Variable(np.ones((2, SHAPES[3][1] + 1, 2)), name="wrong")
    inputs = [term.inputs[0], bad, term.inputs[2]]
    rebuilt = sdf.TT(data.tensor, inputs) if key == "tt" else sdf.TR(data.tensor, inputs)
    with pytest.raises(ModelError, match=r"term 't', core 1 \('wrong'\): expected shape "
                                         r"\(2, 3, r\) to match mode 1 of the data and the "
                                         r"last size of core 0, got \(2, 4, 2\)"):
        sdf.Model(t=rebuilt).check()


# ----------------------------------------------------------------------------- regularizers


@dataclass
class Regularized:
    """A regularizer on its own: the term, the arrays passed in, the residual whose
    Jacobian the engine's Gauss-Newton product uses, and the exact objective."""

    term: sdf.Term
    given: list[np.ndarray]
    residual: Callable[[dict[str, Any]], Any]
    objective: Callable[[dict[str, np.ndarray]], float]


def _two_variables(rng: np.random.Generator) -> tuple[sdf.Variable, sdf.Variable,
                                                      list[np.ndarray]]:
    A, B = _frozen(rng.standard_normal((4, 2)), rng.standard_normal((3, 2)))
    return sdf.Variable(A, name="a"), sdf.Variable(B, name="b"), [A, B]


def build_l2(rng: np.random.Generator) -> Regularized:
    a, b, given = _two_variables(rng)
    targets = _frozen(rng.standard_normal((4, 2)), rng.standard_normal((3, 2)))
    term = sdf.L2([a, tf.nonneg(b)], weight=0.3, target=targets)

    def residual(v: dict[str, Any]) -> Any:
        return anp.concatenate([anp.ravel(v["a"] - targets[0]),
                                anp.ravel(v["b"] ** 2 - targets[1])])

    return Regularized(term, given + targets, residual,
                       lambda v: 0.5 * float(np.sum(residual(v) ** 2)))


def build_l1(rng: np.random.Generator) -> Regularized:
    a, b, given = _two_variables(rng)
    mu = 0.5
    term = sdf.L1([a, tf.nonneg(b)], weight=0.2, smoothing=mu)

    def entries(v: dict[str, Any]) -> Any:
        return anp.concatenate([anp.ravel(v["a"]), anp.ravel(v["b"] ** 2)])

    # Gauss-Newton uses r = sqrt(2) (x^2 + mu^2)^(1/4): the objective's square root up
    # to the constant offset mu per entry.
    return Regularized(term, given,
                       lambda v: anp.sqrt(2.0) * (entries(v) ** 2 + mu**2) ** 0.25,
                       lambda v: float(np.sum(np.sqrt(entries(v) ** 2 + mu**2) - mu)))


def build_l0(rng: np.random.Generator) -> Regularized:
    a, b, given = _two_variables(rng)
    sigma = 0.7
    term = sdf.L0([a, tf.nonneg(b)], weight=0.1, smoothing=sigma)

    def entries(v: dict[str, Any]) -> Any:
        return anp.concatenate([anp.ravel(v["a"]), anp.ravel(v["b"] ** 2)])

    def residual(v: dict[str, Any]) -> Any:
        return anp.sqrt(2.0 * (1.0 - anp.exp(-entries(v) ** 2 / sigma**2)))

    return Regularized(term, given, residual,
                       lambda v: float(np.sum(1.0 - np.exp(-entries(v) ** 2 / sigma**2))))


def build_smooth(rng: np.random.Generator) -> Regularized:
    a, b, given = _two_variables(rng)
    term = sdf.Smooth([tf.unimodal(a, peaks=[1, 2]), tf.nonneg(b)], weight=0.4, order=2)

    def unimodal(z: Any, peaks: list[int]) -> Any:
        columns = []
        for r, m in enumerate(peaks):
            col = [None] * z.shape[0]
            col[m] = z[m, r] ** 2
            for i in range(m + 1, z.shape[0]):
                col[i] = col[i - 1] / (1.0 + z[i, r] ** 2)
            for i in range(m - 1, -1, -1):
                col[i] = col[i + 1] / (1.0 + z[i, r] ** 2)
            columns.append(anp.array(col))
        return anp.stack(columns, axis=1)

    def second_differences(x: Any) -> Any:
        return anp.ravel(x[2:] - 2.0 * x[1:-1] + x[:-2])

    def residual(v: dict[str, Any]) -> Any:
        return anp.concatenate([second_differences(unimodal(v["a"], [1, 2])),
                                second_differences(v["b"] ** 2)])

    return Regularized(term, given, residual,
                       lambda v: 0.5 * float(np.sum(residual(v) ** 2)))


#: One builder per registered regularizer, by its dictionary key.
REGULARIZERS: dict[str, Callable[[np.random.Generator], Regularized]] = {
    "regL0": build_l0,
    "regL1": build_l1,
    "regL2": build_l2,
    "regSmooth": build_smooth,
}


@pytest.mark.parametrize("key", sorted(REGULARIZERS))
def test_regularizer_matches_autograd(key, rng):
    reg = REGULARIZERS[key](rng)
    model = sdf.Model(r=reg.term)
    model.check()
    w = model.weights["r"]
    point = check_model(model, lambda v: [(w, reg.residual(v))], rng, rtol=1e-7,
                        check_f=False)
    values = dict(zip(point.problem.names, point.problem.unpack(point.z)))
    assert point.f == pytest.approx(w * reg.objective(values), rel=1e-10)


@pytest.mark.parametrize("key", sorted(REGULARIZERS))
def test_regularizer_leaves_its_inputs_untouched(key, rng):
    reg = REGULARIZERS[key](rng)
    copies = [a.copy() for a in reg.given]
    _exercise(sdf.Model(r=reg.term))
    for a, c in zip(reg.given, copies):
        np.testing.assert_array_equal(a, c)


# ----------------------------------------------------------------------------- guards


#: Data terms whose data are not one tensor (PARAFAC2: a list of slices) and whose
#: Gauss-Newton product is not the one of a fixed residual (variable projection): their
#: own test file holds the same contract (autograd, untouched inputs, located errors).
OWN_CONTRACTS: dict[str, str] = {"parafac2": "tests/sdf/terms/test_parafac2.py"}


def test_every_registered_term_has_a_contract_case():
    missing = sorted(set(term_types()) - set(DATA_TERMS) - set(REGULARIZERS)
                     - set(OWN_CONTRACTS))
    assert missing == [], f"terms without a contract case: {missing}"
    for key, cls in term_types().items():
        assert cls.is_data_term == (key in DATA_TERMS or key in OWN_CONTRACTS), key


def test_every_exported_data_kind_has_a_contract_case():
    exported = {obj for name in sdf.tensors.__all__
                if inspect.isclass(obj := getattr(sdf.tensors, name))
                and issubclass(obj, Tensor) and not inspect.isabstract(obj)}
    missing = sorted(cls.__name__ for cls in exported - set(KINDS))
    assert missing == [], f"data kinds without a contract case: {missing}"


def test_every_data_kind_defined_in_sdf_has_a_contract_case():
    def subclasses(cls: type) -> set[type]:
        return {s for c in cls.__subclasses__() for s in {c, *subclasses(c)}}

    defined = {c for c in subclasses(Tensor) if c.__module__.startswith("sdf.")
               and not c.__name__.startswith("_") and not inspect.isabstract(c)}
    missing = sorted(cls.__name__ for cls in defined - set(KINDS))
    assert missing == [], f"data kinds without a contract case: {missing}"
