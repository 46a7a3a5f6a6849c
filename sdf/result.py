"""What a fit returns: values, errors, history and why it stopped."""

from __future__ import annotations

import enum
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdf import io
from sdf.errors import FileFormatError, ModelError
from sdf.expr import Expr
from sdf.problem import ModelLike

__all__ = ["History", "IterationInfo", "Result", "STILL_DECREASING", "StopReason", "TermFactors",
           "attach_model", "load_result"]

#: The words of the finding (:func:`sdf.fit.diagnose`) of a run stopped by its iteration or
#: time budget while the objective was still decreasing; :attr:`Result.converged` reads it.
STILL_DECREASING = "stopped while the objective was still decreasing"

_HISTORY = ("objective", "relchange", "step", "radius", "cg_iterations", "time")


class StopReason(enum.Enum):
    """Why a solver stopped; ``.message`` says it in words."""

    TOL_FUN = "objective change below tol_fun"
    TOL_X = "step size below tol_x"
    TOL_ABS = "objective below tol_abs (exact fit)"
    TOL_GRAD = "gradient below tol_grad"
    MAX_ITER = "maximum number of iterations reached"
    MAX_TIME = "time budget max_time reached"
    CALLBACK = "stopped by the callback"
    INTERRUPTED = "interrupted (Ctrl-C); best iterate returned"
    NONFINITE = "objective or gradient became non-finite; last finite iterate returned"
    STEP_FAILED = "no step decreased the objective (trust region collapsed)"
    CG_BREAKDOWN = "conjugate gradients broke down on a singular Gramian"
    STATIONARY = ("the gradient vanished where the model does not fit: a stationary point "
                  "or saddle (e.g. all-zero or symmetric initial values)")
    CHECKPOINT = "checkpoint of a run in progress; continue with model.fit(resume=...)"

    @property
    def message(self) -> str:
        return self.value

    @property
    def converged(self) -> bool:
        """True when a tolerance was met (the iterate is a local solution)."""
        return self in (StopReason.TOL_FUN, StopReason.TOL_X, StopReason.TOL_ABS,
                        StopReason.TOL_GRAD)


@dataclass
class IterationInfo:
    """What a callback sees after each iteration (return True from it to stop)."""

    iteration: int
    objective: float
    relchange: float
    step: float
    radius: float
    cg_iterations: int
    time: float
    fvals: np.ndarray
    z: np.ndarray


@dataclass
class History:
    """Per-iteration records; entry 0 is the starting point."""

    objective: list[float] = field(default_factory=list)
    relchange: list[float] = field(default_factory=list)
    step: list[float] = field(default_factory=list)
    radius: list[float] = field(default_factory=list)
    cg_iterations: list[int] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    relerr: dict[str, list[float]] = field(default_factory=dict)

    def record(self, info: IterationInfo, relerr: dict[str, float]) -> None:
        self.objective.append(info.objective)
        self.relchange.append(info.relchange)
        self.step.append(info.step)
        self.radius.append(info.radius)
        self.cg_iterations.append(info.cg_iterations)
        self.time.append(info.time)
        for name, value in relerr.items():
            self.relerr.setdefault(name, []).append(value)

    @property
    def iterations(self) -> np.ndarray:
        return np.arange(len(self.objective))


@dataclass
class Result:
    """The outcome of ``Model.fit``.

    Attributes
    ----------
    model : Model
        The fitted model (its variables keep their initial values).
    variables : dict of str to ndarray
        Final value of every variable, by name.
    objective : float
        Final objective value.
    abserr, relerr : dict of str to float
        Per term ``||r_t||`` and, for data terms, ``||r_t|| / ||data_t||``. For a data
        term with a non-Gaussian loss: ``sqrt(D_t)`` and ``sqrt(D_t / D_null)``, its
        deviance and the deviance of the constant model (see :mod:`sdf.losses`).
    history : History
        Per-iteration records.
    iterations : int
        Number of iterations done.
    stop : StopReason
        Why the solver stopped.
    method : str
        The solver's registered name (``"nls"``, ``"minf"``, ...).
    warnings : list of str
        What the checks after the fit found (degenerate CPD components, zero components,
        all-zero data, a fit worse than the zero model, singular Gramians...); each was
        also issued as an :class:`sdf.errors.SdfWarning`.
    state : dict of str to float
        Solver state a resumed run continues from (first objective, trust radius, units).
    starts : list
        For a driver run from several starts (``sdf.models.fuse(n_starts=...)``): one
        :class:`sdf.models.StartRecord` per start, in order; empty otherwise (not saved
        by :meth:`save`).

    Per data term, :attr:`losses` names the loss, :attr:`loss_values` gives its value
    (unweighted) and :attr:`deviance` twice that (the deviance of the built-in losses;
    the squared error for least squares).

    ``Result.save(path)`` writes everything but the model to a netCDF file;
    :func:`sdf.load_result` reads it back.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 1)), name="a")
    >>> b = sdf.Variable(np.ones((4, 1)), name="b")
    >>> res = sdf.Model(m=sdf.CPD(np.outer(np.arange(1, 4), np.ones(4)), [a, b])).fit()
    >>> bool(res.relerr["m"] < 1e-8), res[a].shape
    (True, (3, 1))
    """

    model: ModelLike | None
    variables: dict[str, np.ndarray]
    objective: float
    abserr: dict[str, float]
    relerr: dict[str, float]
    history: History
    iterations: int
    stop: StopReason
    method: str
    warnings: list[str] = field(default_factory=list)
    state: dict[str, float] = field(default_factory=dict)
    starts: list[Any] = field(default_factory=list, repr=False)
    _values: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def message(self) -> str:
        return self.stop.message

    @property
    def losses(self) -> dict[str, str]:
        """The loss of every data term by term name (``"gaussian"`` for least squares);
        empty when the result has no model attached."""
        if self.model is None:
            return {}
        return {name: getattr(term, "loss").name for name, term in self.model.terms.items()
                if getattr(term, "loss", None) is not None}

    @property
    def loss_values(self) -> dict[str, float]:
        """Per term the unweighted value of its loss, ``sum_e ell(m_e, x_e)`` (half the
        squared error for least squares, half the deviance for the built-in losses)."""
        return {name: 0.5 * err * err for name, err in self.abserr.items()}

    @property
    def deviance(self) -> dict[str, float]:
        """Per data term its deviance ``2 * loss_values[name]`` (the squared error
        ``||r_t||^2`` for least squares; see :mod:`sdf.losses`)."""
        return {name: err * err for name, err in self.abserr.items() if name in self.relerr}

    @property
    def success(self) -> bool:
        """True when the run ended on a tolerance or at the iteration/time budget."""
        return self.stop not in (StopReason.NONFINITE, StopReason.STEP_FAILED,
                                 StopReason.CG_BREAKDOWN, StopReason.STATIONARY)

    @property
    def converged(self) -> bool:
        """True when a tolerance was met, or the iteration/time budget ended a run whose
        objective had stopped decreasing (no :data:`STILL_DECREASING` finding in
        :attr:`warnings`; see :func:`sdf.fit.diagnose` for the rule). False for a run
        stopped while still improving, by a failure, a callback or an interrupt."""
        if self.stop.converged:
            return True
        if self.stop in (StopReason.MAX_ITER, StopReason.MAX_TIME):
            return not any(STILL_DECREASING in w for w in self.warnings)
        return False

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this result (all but the model) to a netCDF file; see :mod:`sdf.io`.

        Complex variables are written as their real and imaginary parts (a trailing dim
        of size 2) and read back as the same complex values, bit for bit.

        Examples
        --------
        >>> import os, tempfile, numpy as np, sdf
        >>> a = sdf.Variable(np.ones((3, 1)), name="a")
        >>> res = sdf.Model(m=sdf.CPD(np.outer([1.0, 2, 3], [1.0, 1]), [a, np.ones((2, 1))])).fit()
        >>> path = os.path.join(tempfile.mkdtemp(), "fit.nc")
        >>> res.save(path)
        >>> back = sdf.load_result(path)
        >>> np.array_equal(back.variables["a"], res.variables["a"]), back.stop is res.stop
        (True, True)
        """
        arrays: io.Arrays = {}
        names = list(self.variables)
        complex_names = []
        for k, name in enumerate(names):
            value = np.asarray(self.variables[name])
            dims = tuple(f"variable_{k}_dim{d}" for d in range(value.ndim))
            if np.iscomplexobj(value):
                # netCDF-3 has no complex type: the real and imaginary parts, bit for bit
                value = io.complex_to_pairs(value)
                dims += (f"variable_{k}_part",)
                complex_names.append(str(name))
            else:
                value = np.asarray(value, dtype=np.float64)
            arrays[f"variable_{k}"] = (dims, value, {"name": str(name)})
        h = self.history
        for field_name in _HISTORY:
            dtype = np.int32 if field_name == "cg_iterations" else np.float64
            arrays[f"history_{field_name}"] = (
                ("iteration",), np.asarray(getattr(h, field_name), dtype=dtype), {})
        relerr_terms = list(h.relerr)
        if relerr_terms:
            rows = np.array([h.relerr[t] for t in relerr_terms], dtype=np.float64)
            arrays["history_relerr"] = (("relerr_term", "relerr_iteration"), rows, {})
        record = {
            "variables": [str(n) for n in names],
            "objective": float(self.objective),
            "abserr": {str(k): float(v) for k, v in self.abserr.items()},
            "relerr": {str(k): float(v) for k, v in self.relerr.items()},
            "iterations": int(self.iterations),
            "stop": self.stop.name,
            "method": str(self.method),
            "warnings": [str(w) for w in self.warnings],
            "state": {str(k): float(v) for k, v in self.state.items()},
            "relerr_terms": [str(t) for t in relerr_terms],
            "complex_variables": complex_names,
        }
        io.write_result_file(path, arrays, record)

    def _require_model(self, what: str) -> ModelLike:
        if self.model is None:
            raise ModelError(
                f"Result{what}: this result has no model (it was loaded from a file); "
                "pass model= to sdf.load_result to evaluate expressions and terms "
                f"(variables: {', '.join(self.variables)})"
            )
        return self.model

    def __getitem__(self, key: Expr | str) -> np.ndarray:
        if isinstance(key, str):
            if key in self.variables:
                return self.variables[key]
            model = self._require_model(f"[{key!r}]")
            for expr_id, expr in model.named_expressions().items():
                if expr.name == key:
                    return self[expr]
            raise KeyError(f"no variable or named expression {key!r} in the result")
        if not isinstance(key, Expr):
            raise TypeError(f"index a Result with an expression or a name, not {type(key).__name__}")
        if id(key) not in self._values:
            model = self._require_model(f"[{key.label()!r}]")
            self._values[id(key)] = model.evaluate(key, self.variables)
        return self._values[id(key)]

    @property
    def factors(self) -> TermFactors:
        """Per term, the values of its inputs (factors, then core): ``result.factors["eem"]``.

        Examples
        --------
        >>> import numpy as np, sdf
        >>> a = sdf.Variable(np.ones((3, 1)), name="a")
        >>> res = sdf.Model(m=sdf.CPD(np.ones((3, 2)), [a, np.ones((2, 1))])).fit()
        >>> [A.shape for A in res.factors["m"]]
        [(3, 1), (2, 1)]
        """
        return TermFactors(self)

    def to_xarray(self) -> Any:
        """The factors as an ``xarray.Dataset`` with the data's dim names and coordinates.

        For every factorization whose data carried dim names (an ``xarray.DataArray``), the
        factor of mode ``n`` becomes the variable ``"<dim>_factor"`` with dims
        ``(dim, "component")`` and the data's coordinates (xarray reserves the bare dim name
        for its coordinate). A dim that two terms explain by different expressions is
        written once per term, as ``"<term>_<dim>_factor"``. Variables not covered that way
        are added under their own names, with dims ``"<name>_dim<k>"``.
        The coordinates keep their attributes (``units``, ``long_name``...); a data set's
        own attributes go in the Dataset's as ``"<term>_<attr>"``. Per-term relative
        errors, the objective, the iteration count and the stop reason go in the
        attributes too; ``Dataset.to_netcdf(path, engine="scipy")`` writes it.

        Examples
        --------
        >>> import numpy as np, xarray as xr, sdf
        >>> X = xr.DataArray(np.outer([1.0, 2, 3], [1.0, 1]), dims=("time", "space"),
        ...                  coords={"time": [0.1, 0.2, 0.3]})
        >>> t, s = sdf.Variable(np.ones((3, 1)), name="t"), sdf.Variable(np.ones((2, 1)), name="s")
        >>> ds = sdf.Model(m=sdf.CPD(X, [t, s])).fit().to_xarray()
        >>> ds["time_factor"].dims, ds["time_factor"].coords["time"].values.tolist()
        (('time', 'component'), [0.1, 0.2, 0.3])
        """
        import xarray as xr

        model = self._require_model(".to_xarray()")
        data_vars: dict[str, Any] = {}
        sources: dict[str, int] = {}
        covered: set[int] = set()
        data_attrs: dict[str, Any] = {}
        n_components: int | None = None
        for name, term in model.terms.items():
            modes = term.mode_factors()
            dims = term.dims()
            if modes is None or dims is None:
                continue
            coords = term.coords() or {}
            data = getattr(term, "data", None)
            coord_attrs = getattr(data, "coord_attrs", {})
            data_attrs.update({f"{name}_{k}": v for k, v in getattr(data, "attrs", {}).items()
                               if isinstance(v, (str, int, float, np.number))})
            for dim, expr in zip(dims, modes):
                value = self[expr]
                if value.ndim != 2:
                    continue
                key = (f"{dim}_factor" if sources.get(dim, id(expr)) == id(expr)
                       else f"{name}_{dim}_factor")
                if key in data_vars:
                    continue
                sources.setdefault(dim, id(expr))
                n_components = value.shape[1] if n_components is None else n_components
                comp = "component" if value.shape[1] == n_components else f"{key}_component"
                da_coords = {dim: np.asarray(coords[dim])} if dim in coords else {}
                data_vars[key] = xr.DataArray(value, dims=(dim, comp), coords=da_coords)
                if dim in da_coords and coord_attrs.get(dim):
                    data_vars[key][dim].attrs.update(coord_attrs[dim])
                covered.update(id(v) for v in expr.variables())
        for var, vname in zip(model.variables, model.variable_names):
            if id(var) not in covered and vname not in data_vars:
                value = self.variables[vname]
                data_vars[vname] = xr.DataArray(
                    value, dims=tuple(f"{vname}_dim{k}" for k in range(value.ndim)))
        attrs: dict[str, Any] = {f"relerr_{k}": v for k, v in self.relerr.items()}
        attrs.update(data_attrs)
        attrs.update(objective=self.objective, iterations=self.iterations,
                     stop=self.stop.name, method=self.method)
        ds = xr.Dataset(data_vars, attrs=attrs)
        if "component" in ds.dims:
            ds = ds.assign_coords(component=np.arange(ds.sizes["component"]))
        return ds

    def __repr__(self) -> str:
        errs = ", ".join(f"{k}: {v:.3g}" for k, v in self.relerr.items())
        other = {k: v for k, v in self.losses.items() if v != "gaussian"}
        deviance = self.deviance
        losses = ", ".join(f"{k}: {v} deviance {deviance[k]:.6g}" for k, v in other.items()
                           if k in deviance)
        return (f"Result(method={self.method!r}, iterations={self.iterations}, "
                f"objective={self.objective:.6g}, relerr={{{errs}}}, "
                + (f"losses={{{losses}}}, " if losses else "") + f"stop={self.stop.name})")


class TermFactors(Mapping[str, list[np.ndarray]]):
    """``result.factors[term]``: the values of a term's inputs, by term name.

    Calling it, ``result.factors(term)``, is the form of sdfusion 0.1 and still works for
    one release, with a :class:`DeprecationWarning`.
    """

    def __init__(self, result: Result) -> None:
        self._result = result

    def _model(self, term: str | None = None) -> ModelLike:
        return self._result._require_model(".factors" if term is None else f".factors[{term!r}]")

    def __getitem__(self, term: str) -> list[np.ndarray]:
        model = self._model(term)
        if term not in model.terms:
            raise KeyError(f"no term {term!r} (terms: {', '.join(model.terms)})")
        return [self._result[e] for e in model.terms[term].inputs]

    def __iter__(self) -> Iterator[str]:
        return iter(self._model().terms)

    def __len__(self) -> int:
        return len(self._model().terms)

    def __call__(self, term: str) -> list[np.ndarray]:
        warnings.warn("Result.factors(term) is deprecated; use Result.factors[term]",
                      DeprecationWarning, stacklevel=2)
        if term not in self._model().terms:
            raise ModelError(f"no term {term!r} (terms: {', '.join(self._model().terms)})")
        return self[term]


def load_result(path: str | os.PathLike[str], model: ModelLike | None = None) -> Result:
    """Read a result written by :meth:`sdf.Result.save` (or a checkpoint).

    Parameters
    ----------
    path : str or os.PathLike
        The netCDF file.
    model : Model, optional
        The model that was fitted. With it, ``result[expr]``, ``result.factors[term]``
        and ``to_xarray()`` work; its variables' names and shapes must match the file's.
        Without it, the variables, errors, history and stop reason are available and
        evaluating expressions raises :class:`sdf.ModelError`.

    Returns
    -------
    Result

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    sdf.errors.FileFormatError
        A truncated, damaged or foreign file, or one of a newer format.
    sdf.ModelError
        ``model`` does not match the saved variables.

    Examples
    --------
    >>> import os, tempfile, numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 1)), name="a")
    >>> model = sdf.Model(m=sdf.CPD(np.outer([1.0, 2, 3], [1.0, 1]), [a, np.ones((2, 1))]))
    >>> path = os.path.join(tempfile.mkdtemp(), "fit.nc")
    >>> model.fit().save(path)
    >>> np.round(sdf.load_result(path, model=model)[a].ravel(), 6)
    array([1., 2., 3.])
    """
    path = os.fspath(path)
    arrays, names, meta = io.read_result_file(path)
    try:
        variables = {}
        for k, name in enumerate(meta["variables"]):
            key = f"variable_{k}"
            if names.get(key) != name:
                raise KeyError(key)
            if name in meta.get("complex_variables", ()):
                variables[name] = io.pairs_to_complex(arrays[key])
            else:
                variables[name] = np.asarray(arrays[key], dtype=np.float64)
        n_iter = len(arrays["history_objective"])
        def floats(f: str) -> list[float]:
            return [float(v) for v in arrays[f"history_{f}"]]

        history = History(objective=floats("objective"), relchange=floats("relchange"),
                          step=floats("step"), radius=floats("radius"), time=floats("time"),
                          cg_iterations=[int(v) for v in arrays["history_cg_iterations"]])
        if meta["relerr_terms"]:
            rows = arrays["history_relerr"]
            if rows.shape != (len(meta["relerr_terms"]), n_iter):
                raise KeyError("history_relerr")
            history.relerr = {t: [float(v) for v in row]
                              for t, row in zip(meta["relerr_terms"], rows)}
        result = Result(
            model=None, variables=variables, objective=float(meta["objective"]),
            abserr=dict(meta["abserr"]), relerr=dict(meta["relerr"]), history=history,
            iterations=int(meta["iterations"]), stop=StopReason[meta["stop"]],
            method=str(meta["method"]), warnings=list(meta["warnings"]),
            state={str(k): float(v) for k, v in dict(meta["state"]).items()})
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise FileFormatError(
            f"load_result: {path!r}: an sdfusion result with missing or damaged content "
            f"({type(exc).__name__}: {exc})") from None
    if model is not None:
        attach_model(result, model, where=f"load_result({path!r})")
    return result


def attach_model(result: Result, model: ModelLike, where: str = "result") -> Result:
    """Attach ``model`` to ``result`` after checking that its variables and terms match.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 1)), name="a")
    >>> res = sdf.Model(m=sdf.CPD(np.ones((3, 2)), [a, np.ones((2, 1))])).fit()
    >>> other = sdf.Model(n=sdf.CPD(np.ones((3, 2)), [a, np.ones((2, 1))]))
    >>> attach_model(res, other)
    Traceback (most recent call last):
    ...
    sdf.errors.ModelError: result: the saved terms ['m'] do not match the model's ['n'] ...
    """
    if not isinstance(model, ModelLike):
        raise ModelError(f"{where}: model must be an sdf.Model, got {type(model).__name__}")
    expected = dict(zip(model.variable_names, (v.shape for v in model.variables)))
    missing = sorted(set(expected) - set(result.variables))
    extra = sorted(set(result.variables) - set(expected))
    if missing or extra:
        raise ModelError(
            f"{where}: the saved variables {sorted(result.variables)} do not match the "
            f"model's {sorted(expected)} (missing: {missing or 'none'}, "
            f"unknown: {extra or 'none'})")
    for name, shape in expected.items():
        got = result.variables[name].shape
        if got != shape:
            raise ModelError(f"{where}: variable {name!r} has shape {got} in the result, "
                             f"{shape} in the model")
    saved_terms = sorted(result.abserr)
    if saved_terms != sorted(model.terms):
        raise ModelError(
            f"{where}: the saved terms {saved_terms} do not match the model's "
            f"{sorted(model.terms)} (terms renamed, added or removed since the run)")
    result.model = model
    result._values.clear()
    return result
