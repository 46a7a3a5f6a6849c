"""Helpers shared by the model drivers: argument checks, stages, engine fits."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

import sdf
from sdf.errors import DataError, ModelError, SdfWarning
from sdf.numerics import check_factors
from sdf.result import IterationInfo, Result, StopReason
from sdf._keywords import parameters_of
from sdf.solvers import MethodName, SolverOptions, check_display, make_options
from sdf.tensors import Tensor, as_tensor

from sdf.models._result import Stage

__all__ = ["Timer", "as_data", "check_fit_options", "check_int", "check_number", "engine_fit",
           "labels_of", "make_rng", "quiet", "random_array", "random_factors", "stage_from",
           "user_factors"]


def as_data(data: object, min_order: int = 2) -> Tensor:
    """The data as a Tensor with at least ``min_order`` modes."""
    X = as_tensor(data, name="data")
    if X.ndim < min_order:
        raise DataError(f"data: expected at least {min_order} modes, got shape {X.shape}")
    return X


def factors_are_complex(complex_flag: object, data_complex: bool, nonneg: object,
                    data: str = "data") -> bool:
    """Whether a driver's factors are complex (``complex=True`` or complex ``data``);
    ModelError for a non-boolean flag or nonnegative factors asked beside them."""
    if not isinstance(complex_flag, (bool, np.bool_)):
        raise ModelError(f"complex: expected True or False, got {complex_flag!r}")
    out = bool(complex_flag) or data_complex
    if nonneg and out:
        raise ModelError("nonneg: nonnegative factors are real, but the factors are complex "
                         f"(complex {data} or complex=True); drop one of the two")
    return out


def check_int(value: object, name: str, low: int = 1) -> int:
    """``value`` as an int ``>= low``, or ModelError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ModelError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def check_number(value: object, name: str, low: float = 0.0, high: float | None = None
                 ) -> float:
    """``value`` as a finite float in ``[low, high]``, or ModelError naming ``name``."""
    number = (float(value) if isinstance(value, (int, float, np.integer, np.floating))
              and not isinstance(value, bool) else None)
    if number is None or not (np.isfinite(number) and number >= low
                              and (high is None or number <= high)):
        bounds = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise ModelError(f"{name}: expected a finite number {bounds}, got {value!r}")
    return number


def check_fit_options(driver: Callable[..., Any], fit_options: Mapping[str, Any],
                      *, method: MethodName = "nls", options: Any = None, display: object = 0,
                      passed_to: Sequence[Callable[..., Any]] = (),
                      set_by_driver: Sequence[str] = ()) -> None:
    """Refuse unknown solver options and a bad ``display`` before any fitting.

    The error names ``driver`` (the function the user called), the closest known name
    and the names known: the driver's parameters, those of the functions in
    ``passed_to`` (which receive the driver's ``**fit_options``) other than
    ``set_by_driver``, and the method's options.
    """
    where = driver.__name__
    parameters = parameters_of(driver)
    for inner in passed_to:
        parameters += [p for p in parameters_of(inner)
                       if p not in parameters and p not in set_by_driver]
    option_values = {k: v for k, v in fit_options.items() if k not in parameters}
    make_options(method, options, where, parameters, **option_values)
    check_display(display, where)


def make_rng(seed: object) -> np.random.Generator:
    """A Generator from None, an int or a Generator (used as is)."""
    if seed is None or isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    raise ModelError(f"seed: expected None, an int or a numpy Generator, got {seed!r}")


def labels_of(X: Tensor) -> list[str]:
    """Mode names: the data's dims, or ``mode0, mode1, ...``."""
    return list(X.dims) if X.dims is not None else [f"mode{n}" for n in range(X.ndim)]


def random_array(shape: Sequence[int], rng: np.random.Generator, complex: bool = False
                 ) -> np.ndarray:
    """Standard normal array; with ``complex``, circular complex standard normal (real and
    imaginary parts of variance 1/2, drawn in that order)."""
    if not complex:
        return rng.standard_normal(tuple(shape))
    return (rng.standard_normal(tuple(shape)) + 1j * rng.standard_normal(tuple(shape))) \
        / np.sqrt(2.0)


def random_factors(shape: Sequence[int], cols: Sequence[int] | int,
                   rng: np.random.Generator, complex: bool = False) -> list[np.ndarray]:
    """Standard normal matrices (I_n, R_n) (complex ones with ``complex``, see
    :func:`random_array`), drawn mode after mode from ``rng``."""
    if isinstance(cols, (int, np.integer)):
        cols = [int(cols)] * len(shape)
    return [random_array((int(I), int(R)), rng, complex) for I, R in zip(shape, cols)]


def user_factors(init: object, shape: Sequence[int], cols: Sequence[int], name: str = "init"
                 ) -> list[np.ndarray]:
    """Copies of given factor matrices (real or complex), checked against the data shape
    and column counts."""
    mats = check_factors(init, shape=shape, columns=cols, name=name, finite=True,
                         error=ModelError)
    return [A.copy() for A in mats]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the engine's after-fit warnings for intermediate (internal) fits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdfWarning)
        yield


class Timer:
    """Wall-clock stopwatch for pipeline stages."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        out, self.start = now - self.start, now
        return out


def engine_fit(model: sdf.Model, method: MethodName, options: SolverOptions | None,
               fit_options: dict[str, Any], display: int,
               callback: Callable[[IterationInfo], Any] | None,
               evaluate_only: bool = False) -> Result:
    """``model.fit`` with the driver's solver settings.

    With ``evaluate_only`` the fit stops after evaluating the start (iteration 0): the
    start is already a converged solution (e.g. of HOOI) and the Result records it,
    reported as ``StopReason.TOL_FUN``.
    """
    if callback is not None and not callable(callback):  # the wrapper below would hide it
        raise ModelError(f"fit: callback must be callable, got {type(callback).__name__}")
    if evaluate_only:
        def stop_at_start(info: IterationInfo) -> bool:
            if callback is not None:
                callback(info)
            return True

        res = model.fit(method=method, options=options, display=display,
                        callback=stop_at_start, **fit_options)
        if res.stop is StopReason.CALLBACK:
            res.stop = StopReason.TOL_FUN
        return res
    return model.fit(method=method, options=options, display=display, callback=callback,
                     **fit_options)


def stage_from(name: str, detail: str, res: Result, seconds: float, term: str) -> Stage:
    return Stage(name=name, detail=detail, iterations=int(res.iterations), time=seconds,
                 relerr=float(res.relerr.get(term, np.nan)), stop=res.stop,
                 history=res.history)
