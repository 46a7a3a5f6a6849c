"""Contract tests run over every public callable of :mod:`sdf.models`.

Drivers (functions that fit and return a fitted result) must refuse bad parameters with
an sdf error naming the parameter, give the same bits for the same seed, and accept
read-only inputs without modifying them. The helpers (diagnostics, rank curves, the
model builder of ``fuse``) take no solver, but the same rules hold for their parameters
and inputs. The guard at the end fails naming any public callable not listed here.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import xarray as xr

import sdf.models as models
from sdf import algebra
from sdf import transforms as tf
from sdf.errors import DataError, ModelError, OptionError, SdfError, SdfWarning

SHAPE = (6, 5, 4)
QUICK = {"max_iter": 8}  # the contracts hold at any iteration count; keep them fast

#: (parameters, error class, message pattern naming the parameter)
BadParameter = tuple[dict[str, Any], type[SdfError], str]


def planted(rng: np.random.Generator, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """A rank-2 CPD plus a little noise."""
    T = algebra.cpd_to_tensor([rng.standard_normal((n, 2)) for n in shape])
    return T + 0.05 * rng.standard_normal(shape)


def factors(rng: np.random.Generator, cols: int | tuple[int, ...] = 2,
            shape: tuple[int, ...] = SHAPE) -> list[np.ndarray]:
    widths = cols if isinstance(cols, tuple) else (cols,) * len(shape)
    return [rng.standard_normal((n, r)) for n, r in zip(shape, widths)]


@dataclass
class Case:
    """One public callable of sdf.models under contract.

    ``inputs(rng)`` makes what a user passes (arrays, possibly inside lists, dicts or
    DataArrays); ``call(inputs, **params)`` calls the function on them with working
    parameters that ``params`` override; ``outputs(result)`` lists the result's arrays.
    """

    inputs: Callable[[np.random.Generator], dict[str, Any]]
    call: Callable[..., Any]
    outputs: Callable[[Any], list[np.ndarray]]
    bad: list[BadParameter] = field(default_factory=list)


def decomposition_outputs(dec: models.Decomposition) -> list[np.ndarray]:
    out = [np.asarray(dec.relerr)]
    for F in dec.factors:
        out += [np.asarray(x) for x in (F if isinstance(F, list) else [F])]
    if dec.core is not None and not isinstance(dec.core, list):
        out.append(np.asarray(dec.core))
    return out


def result_outputs(res: Any) -> list[np.ndarray]:
    return [np.asarray(res.variables[name]) for name in sorted(res.variables)]


#: Bad parameters every driver that runs an engine fit must refuse.
FIT_PARAMETERS: list[BadParameter] = [
    ({"method": "bogus"}, OptionError, r"method must be one of \['minf', 'nls'\], got 'bogus'"),
    ({"max_iter": 0}, OptionError, r"max_iter must be an integer >= 1, got 0"),
    ({"bogus_option": 1}, OptionError, r"unknown option\(s\) 'bogus_option'"),
    ({"seed": "x"}, ModelError, r"seed: expected None, an int or a numpy Generator"),
    ({"callback": 3}, ModelError, r"callback must be callable, got int"),
]

DATA_PARAMETERS: list[BadParameter] = [
    ({"data": np.full(SHAPE, np.inf)}, DataError, r"data: entry \(0, 0, 0\) is inf"),
    ({"data": np.ones(4)}, DataError, r"data: expected at least \d modes, got shape \(4,\)"),
]


# ----------------------------------------------------------------------------- drivers

DRIVERS: dict[str, Case] = {
    "cpd": Case(
        inputs=lambda rng: {"data": planted(rng), "init": factors(rng)},
        call=lambda inp, **kw: models.cpd(**{
            "data": inp["data"], "rank": 2, "init": inp["init"], **QUICK, **kw}),
        outputs=decomposition_outputs,
        bad=[*FIT_PARAMETERS, *DATA_PARAMETERS,
             ({"rank": 0}, ModelError, r"rank: expected an integer >= 1, got 0"),
             ({"init": "bogus"}, ModelError, r"init: expected 'auto', 'gevd', 'random'"),
             ({"init": [np.ones((6, 2))]}, ModelError, r"init: expected 3 factor matrices"),
             ({"compress": "yes"}, ModelError, r"compress: expected 'auto', True or False")],
    ),
    "cpd_rbs": Case(
        inputs=lambda rng: {"data": planted(rng), "init": factors(rng)},
        call=lambda inp, **kw: models.cpd_rbs(**{
            "data": inp["data"], "rank": 2, "init": inp["init"], "block_shape": (3, 3, 3),
            "max_epochs": 4, **kw}),
        outputs=decomposition_outputs,
        bad=[*DATA_PARAMETERS,
             ({"seed": "x"}, ModelError, r"seed: expected None, an int or a numpy Generator"),
             ({"rank": 0}, ModelError, r"rank: expected an integer >= 1, got 0"),
             ({"init": "bogus"}, ModelError, r"init: expected 'block', 'random'"),
             ({"block_shape": (3, 3)}, ModelError, r"block_shape: expected 3 sizes"),
             ({"max_epochs": 0}, ModelError, r"max_epochs: expected an integer >= 1"),
             ({"refine": -1}, ModelError, r"refine: expected an integer >= 0"),
             ({"max_time": -1.0}, ModelError, r"max_time: expected a finite number >= 0")],
    ),
    "lmlra": Case(
        inputs=lambda rng: {"data": planted(rng), "init": factors(rng)},
        call=lambda inp, **kw: models.lmlra(**{
            "data": inp["data"], "core_shape": 2, "init": inp["init"], **QUICK, **kw}),
        outputs=decomposition_outputs,
        bad=[*FIT_PARAMETERS, *DATA_PARAMETERS,
             ({"core_shape": (7, 2, 2)}, ModelError, r"core_shape\[0\]: 7 exceeds the size 6"),
             ({"core_shape": (2, 2)}, ModelError, r"core_shape: expected 3 sizes"),
             ({"hooi_max_iter": -1}, ModelError, r"hooi_max_iter: expected an integer >= 0"),
             ({"init": "bogus"}, ModelError, r"init: expected 'auto', 'random'")],
    ),
    "btd": Case(
        inputs=lambda rng: {"data": planted(rng), "init": [
            [*factors(rng, 2), rng.standard_normal((2, 2, 2))],
            [*factors(rng, 1), rng.standard_normal((1, 1, 1))]]},
        call=lambda inp, **kw: models.btd(**{
            "data": inp["data"], "core_shapes": [(2, 2, 2), (1, 1, 1)], "init": inp["init"],
            **QUICK, **kw}),
        outputs=decomposition_outputs,
        bad=[*FIT_PARAMETERS, *DATA_PARAMETERS,
             ({"core_shapes": []}, ModelError, r"core_shapes: expected a non-empty list"),
             ({"core_shapes": [(7, 1, 1)], "init": "random"}, ModelError,
              r"core_shapes\[0\]\[0\]: 7 exceeds the size 6 of mode 0"),
             ({"init": "bogus"}, ModelError, r"init: expected 'auto', 'gevd', 'random' or a list of blocks"),
             ({"compress": "yes"}, ModelError, r"compress: expected 'auto', True or False")],
    ),
    "parafac2": Case(
        inputs=lambda rng: {"slices": [rng.standard_normal((6, J)) for J in (4, 5, 3, 4)]},
        call=lambda inp, **kw: models.parafac2(**{
            "slices": inp["slices"], "rank": 2, **QUICK, **kw}),
        outputs=lambda dec: [np.asarray(dec.relerr), *dec.factors, *dec.projections],
        bad=[*FIT_PARAMETERS,
             ({"slices": [np.full((3, 3), np.inf)]}, DataError,
              r"PARAFAC2 data, slice 0: Inf entry at \(0, 0\)"),
             ({"rank": 0}, ModelError, r"rank: expected an integer >= 1, got 0"),
             ({"init": "bogus"}, ModelError, r"init: expected 'svd', 'random' or a list")],
    ),
    "ll1": Case(
        inputs=lambda rng: {"data": planted(rng), "init": factors(rng, (3, 3, 2))},
        call=lambda inp, **kw: models.ll1(**{
            "data": inp["data"], "L": [2, 1], "init": inp["init"], **QUICK, **kw}),
        outputs=decomposition_outputs,
        bad=[*FIT_PARAMETERS, *DATA_PARAMETERS,
             ({"data": np.ones((6, 5))}, DataError, r"data: expected at least 3 modes"),
             ({"L": 0}, ModelError, r"L: expected an integer >= 1, got 0"),
             ({"L": [1, 1], "rank": 3}, ModelError, r"rank: 3 does not match the 2 sizes in L"),
             ({"init": "bogus"}, ModelError, r"init: expected 'auto', 'gevd', 'random' or a list \[A, B, C\]"),
             ({"compress": "yes"}, ModelError, r"compress: expected 'auto', True or False")],
    ),
    "tt": Case(
        inputs=lambda rng: {"data": planted(rng), "init": [
            rng.standard_normal(s) for s in ((1, 6, 2), (2, 5, 2), (2, 4, 1))]},
        call=lambda inp, **kw: models.tt(**{
            "data": inp["data"], "ranks": 2, "init": inp["init"], **QUICK, **kw}),
        outputs=decomposition_outputs,
        bad=[*FIT_PARAMETERS, *DATA_PARAMETERS,
             ({"ranks": 0}, ModelError, r"ranks\[1\]: expected an integer >= 1, got 0"),
             ({"ranks": (2, 2, 2)}, ModelError, r"ranks: expected an int, 2 inner ranks or 4"),
             ({"ranks": (2, 5)}, ModelError, r"ranks\[2\]: 5 exceeds I_2 \* ranks\[3\] = 4"),
             ({"init": "bogus"}, ModelError, r"init: expected 'auto', 'random' or a list"),
             ({"init": [np.ones((1, 6, 2))] * 3}, ModelError,
              r"init\[1\]: expected a core of shape \(2, 5, 2\), got shape \(1, 6, 2\)")],
    ),
    "tr": Case(
        inputs=lambda rng: {"data": planted(rng), "init": [
            rng.standard_normal(s) for s in ((2, 6, 2), (2, 5, 2), (2, 4, 2))]},
        call=lambda inp, **kw: models.tr(**{
            "data": inp["data"], "ranks": 2, "init": inp["init"], **QUICK, **kw}),
        outputs=decomposition_outputs,
        bad=[*FIT_PARAMETERS, *DATA_PARAMETERS,
             ({"ranks": 0}, ModelError, r"ranks\[0\]: expected an integer >= 1, got 0"),
             ({"ranks": (2, 2)}, ModelError, r"ranks: expected an int or 3 sizes"),
             ({"init": "bogus"}, ModelError, r"init: expected 'auto', 'random' or a list"),
             ({"init": [np.ones((2, 6, 2))] * 2}, ModelError,
              r"init: expected 3 cores \(one per mode\), got 2")],
    ),
    "cmtf": Case(
        inputs=lambda rng: {"data": {"X": planted(rng), "Y": rng.standard_normal((6, 3))},
                            "init": dict(zip("ijkl", factors(rng, 2, (*SHAPE, 3))))},
        call=lambda inp, **kw: models.cmtf(**{
            "data": inp["data"], "rank": 2, "modes": {"X": "ijk", "Y": "il"},
            "init": inp["init"], **QUICK, **kw}),
        outputs=decomposition_outputs,
        bad=[*FIT_PARAMETERS,
             ({"data": {"X": np.full(SHAPE, np.inf)}, "modes": {"X": "ijk"}}, DataError,
              r"data\['X'\]: entry \(0, 0, 0\) is inf"),
             ({"rank": 0}, ModelError, r"rank: expected an integer >= 1, got 0"),
             ({"modes": {"X": "ij", "Y": "il"}}, ModelError, r"modes\['X'\]: expected 3 labels"),
             ({"modes": {"X": "ijk", "Y": "jl"}}, ModelError,
              r"modes: label 'j' has 5 entries in data set 'X' but 6 in 'Y'"),
             ({"relweights": {"Z": 1.0}}, ModelError, r"relweights: unknown data sets \['Z'\]"),
             ({"relweights": {"X": -1.0}}, ModelError,
              r"relweights\['X'\]: expected a finite number >= 0, got -1.0"),
             ({"init": {"q": np.ones((6, 2))}}, ModelError, r"init: unknown label 'q'"),
             ({"init": {"i": np.ones((5, 2))}}, ModelError,
              r"init\['i'\]: expected shape \(6, 2\), got \(5, 2\)"),
             ({"init": "bogus"}, ModelError, r"init: expected 'auto', 'random' or a mapping")],
    ),
    "fuse": Case(
        inputs=lambda rng: {"data": {"x": xr.DataArray(planted(rng), dims=("i", "j", "k")),
                                     "y": xr.DataArray(rng.standard_normal((6, 3)),
                                                       dims=("i", "l"))},
                            "init": {"i": rng.standard_normal((6, 2))}},
        call=lambda inp, **kw: models.fuse(**{
            "data": inp["data"], "rank": 2, "init": inp["init"], "transforms": {"l": tf.nonneg},
            **QUICK, **kw}),
        outputs=result_outputs,
        bad=[*FIT_PARAMETERS,
             ({"data": {"x": np.ones(SHAPE)}}, ModelError,
              r"fuse: data\['x'\] must be an xarray.DataArray"),
             ({"rank": 0}, ModelError, r"fuse: rank must be an integer >= 1, got 0"),
             ({"relweights": {"z": 1.0}}, ModelError, r"fuse: relweights names unknown data set"),
             ({"relweights": {"x": -1.0}}, ModelError,
              r"fuse: relweights\['x'\]: expected a finite number >= 0, got -1.0"),
             ({"transforms": {"i": 3}}, ModelError, r"fuse: transforms\['i'\] must be callable"),
             ({"init": {"i": np.ones((5, 2))}}, ModelError,
              r"fuse: init\['i'\] has shape \(5, 2\), expected \(6, 2\)")],
    ),
    "rankest": Case(
        inputs=lambda rng: {"data": planted(rng)},
        call=lambda inp, **kw: models.rankest(**{
            "data": inp["data"], "max_rank": 3, **QUICK, **kw}),
        outputs=lambda est: [est.errors, est.corcondia, *(
            x for dec in est.fits for x in decomposition_outputs(dec))],
        bad=[*FIT_PARAMETERS, *DATA_PARAMETERS,
             ({"max_rank": 1}, ModelError, r"max_rank: expected an integer >= 2, got 1"),
             ({"n_starts": 0}, ModelError, r"n_starts: expected an integer >= 1, got 0"),
             ({"tol": "small"}, ModelError, r"tol: expected a finite number >= 0, got 'small'")],
    ),
    "stability": Case(
        inputs=lambda rng: {"data": planted(rng)},
        call=lambda inp, **kw: models.stability(**{
            "data": inp["data"], "rank": 2, "n_repeats": 2, **QUICK, **kw}),
        outputs=lambda st: [st.scores],
        bad=[*FIT_PARAMETERS, *DATA_PARAMETERS,
             ({"data": np.ones((6, 5))}, DataError, r"data: expected at least 3 modes"),
             ({"rank": 0}, ModelError, r"rank: expected an integer >= 1, got 0"),
             ({"scheme": "jackknife"}, ModelError,
              r"scheme: expected 'split-half' or 'bootstrap'"),
             ({"mode": 3}, ModelError, r"mode: expected an int in \[0, 3\), got 3"),
             ({"n_repeats": 0}, ModelError, r"n_repeats: expected an integer >= 1, got 0"),
             ({"threshold": 2.0}, ModelError, r"threshold: expected a finite number in \[0, 1\]")],
    ),
}

# ----------------------------------------------------------------------------- helpers


def _cpd_of_planted(rng: np.random.Generator) -> dict[str, Any]:
    return {"data": planted(rng), "factors": factors(rng)}


HELPERS: dict[str, Case] = {
    "congruence": Case(
        inputs=lambda rng: {"factors": factors(rng, 3)},
        call=lambda inp, **kw: models.congruence(kw.get("factors", inp["factors"])),
        outputs=lambda C: [C],
        bad=[({"factors": "A"}, ModelError, r"factors: expected a sequence of factor matrices")],
    ),
    "corcondia": Case(
        inputs=_cpd_of_planted,
        call=lambda inp, **kw: models.corcondia(kw.get("data", inp["data"]),
                                                kw.get("factors", inp["factors"])),
        outputs=lambda c: [np.asarray(c)],
        bad=[({"factors": [np.ones((6, 2))]}, ModelError, r"factors: expected 3 factor matrices"),
             ({"data": np.where(np.eye(6, 5)[:, :, None] > 0, np.nan, np.ones(SHAPE))},
              DataError, r"data: corcondia needs fully known data")],
    ),
    "cpderr": Case(
        inputs=lambda rng: {"estimate": factors(rng), "reference": factors(rng)},
        call=lambda inp, **kw: models.cpderr(kw.get("estimate", inp["estimate"]),
                                             inp["reference"]),
        outputs=lambda e: [np.asarray(e.errors)],
        bad=[({"estimate": [np.ones((n, 2)) for n in (5, 5, 4)]}, ModelError,
              r"cpderr: factor 0 has 5 rows in the estimate and 6 in the reference")],
    ),
    "degeneracy": Case(
        inputs=lambda rng: {"factors": factors(rng, 3)},
        call=lambda inp, **kw: models.degeneracy(inp["factors"], **kw),
        outputs=lambda d: [np.asarray(d.congruence)],
        bad=[({"threshold": 0.5}, ModelError, r"threshold: expected a number in \(-1, 0\)")],
    ),
    "fms": Case(
        inputs=lambda rng: {"estimate": factors(rng), "reference": factors(rng)},
        call=lambda inp, **kw: models.fms(kw.get("estimate", inp["estimate"]),
                                          inp["reference"]),
        outputs=lambda s: [np.asarray(s)],
        bad=[({"estimate": [np.ones((n, 2)) for n in (5, 5, 4)]}, ModelError,
              r"fms: factor 0 has 5 rows in the estimate and 6 in the reference")],
    ),
    "fuse_model": Case(
        inputs=lambda rng: {"data": {"x": xr.DataArray(planted(rng), dims=("i", "j", "k"))},
                            "init": {"j": rng.standard_normal((5, 2))}},
        call=lambda inp, **kw: models.fuse_model(**{
            "data": inp["data"], "rank": 2, "init": inp["init"], **kw}),
        outputs=lambda model: [v.value for v in model.variables],
        bad=[({"rank": 0}, ModelError, r"fuse: rank must be an integer >= 1, got 0"),
             ({"seed": "x"}, ModelError, r"seed: expected None, an int or a numpy Generator"),
             ({"init": {"q": np.ones((5, 2))}}, ModelError, r"fuse: init names unknown dim")],
    ),
    "impute": Case(
        inputs=lambda rng: {"data": np.where(rng.random(SHAPE) < 0.2, np.nan, planted(rng)),
                            "factors": factors(rng)},
        call=lambda inp, **kw: models.impute(kw.get("data", inp["data"]),
                                             kw.get("factors", inp["factors"])),
        outputs=lambda D: [D],
        bad=[({"factors": [np.ones((5, 2))] * 3}, ModelError,
              r"factors\[0\]: expected 6 rows to match mode 0 of the data, got 5")],
    ),
    "lcorner": Case(
        inputs=lambda rng: {"errors": np.array([1.0, 0.5, 0.01, 0.009, 0.008])},
        call=lambda inp, **kw: models.lcorner(kw.get("errors", inp["errors"])),
        outputs=lambda k: [np.asarray(k)],
        bad=[({"errors": [1.0]}, ModelError, r"errors: expected at least two finite errors")],
    ),
    "mlrankest": Case(
        inputs=lambda rng: {"data": planted(rng)},
        call=lambda inp, **kw: models.mlrankest(inp["data"], **kw),
        outputs=lambda est: [np.asarray(est.core_shape), *est.errors],
        bad=[({"max_ranks": [1]}, ModelError, r"max_ranks: expected 3 values, got 1"),
             ({"max_ranks": [0, 1, 1]}, ModelError, r"max_ranks\[0\]: expected an integer >= 1")],
    ),
}

#: The callables that take a seed (the drivers and the model builder of fuse).
SEEDED = {**DRIVERS, "fuse_model": HELPERS["fuse_model"]}
ALL = {**DRIVERS, **HELPERS}


# ----------------------------------------------------------------------------- tests


def _quietly(call: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():  # short fits of small noisy data may warn
        warnings.simplefilter("ignore", SdfWarning)
        return call()


def _bad_cases() -> Iterator[Any]:
    for name, case in ALL.items():
        for k, (params, error, match) in enumerate(case.bad):
            yield pytest.param(name, params, error, match, id=f"{name}-{k}-{'-'.join(params)}")


@pytest.mark.parametrize(("name", "params", "error", "match"), list(_bad_cases()))
def test_bad_parameter_raises_a_located_error(name, params, error, match, rng):
    case = ALL[name]
    inputs = case.inputs(rng)
    with pytest.raises(error, match=match):
        _quietly(lambda: case.call(inputs, **params))


@pytest.mark.parametrize("name", sorted(SEEDED))
@pytest.mark.parametrize("seed_kind", ["int", "generator"])
def test_same_seed_gives_the_same_bits(name, seed_kind, rng):
    case = SEEDED[name]
    inputs = case.inputs(rng)
    random_start = {"init": "random"} if name in ("cpd", "lmlra", "btd", "ll1", "cmtf") else {}

    def run() -> list[np.ndarray]:
        seed = 7 if seed_kind == "int" else np.random.default_rng(7)
        return case.outputs(_quietly(lambda: case.call(inputs, seed=seed, **random_start)))

    first, second = run(), run()
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("name", sorted(HELPERS.keys() - SEEDED.keys()))
def test_helper_is_deterministic(name, rng):
    case = HELPERS[name]
    inputs = case.inputs(rng)
    first, second = (case.outputs(case.call(inputs)) for _ in range(2))
    for a, b in zip(first, second):
        assert np.array_equal(a, b, equal_nan=True)


def _arrays(x: Any) -> Iterator[np.ndarray]:
    """The arrays inside what a user passes: arrays, lists, dicts, DataArrays."""
    if isinstance(x, np.ndarray):
        yield x
    elif isinstance(x, xr.DataArray):
        yield x.values
    elif isinstance(x, dict):
        for v in x.values():
            yield from _arrays(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _arrays(v)


@pytest.mark.parametrize("name", sorted(ALL))
def test_read_only_inputs_are_accepted_and_never_modified(name, rng):
    case = ALL[name]
    inputs = case.inputs(rng)
    arrays = list(_arrays(inputs))
    assert arrays
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.setflags(write=False)  # any in-place write raises
    params = {"seed": 0} if name in SEEDED else {}
    outputs = case.outputs(_quietly(lambda: case.call(inputs, **params)))
    assert all(np.all(np.isfinite(np.asarray(x, dtype=float))) for x in outputs)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


# ----------------------------------------------------------------------------- guard


def test_every_public_callable_of_sdf_models_has_a_contract_case():
    public = {name for name in models.__all__ if inspect.isfunction(getattr(models, name))}
    missing = sorted(public - ALL.keys())
    assert missing == [], f"public callables of sdf.models without a contract case: {missing}"
    assert not DRIVERS.keys() & HELPERS.keys()
    for name in DRIVERS:  # a driver fits: it takes a seed
        assert "seed" in inspect.signature(getattr(models, name)).parameters, name
