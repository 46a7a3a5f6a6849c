"""What a fit returns: values, errors, history and why it stopped."""

from __future__ import annotations

import enum
import math
import os
import warnings as _warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sdf.errors import ModelError
from sdf.expr import Expr

if TYPE_CHECKING:
    from sdf.model import Model

__all__ = ["History", "IterationInfo", "Result", "StopReason", "diagnose", "result_from_run"]


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
        Per term ``||r_t||`` and, for data terms, ``||r_t|| / ||data_t||``.
    history : History
        Per-iteration records.
    iterations : int
        Number of iterations done.
    stop : StopReason
        Why the solver stopped.
    method : str
        ``"nls"`` or ``"minf"``.
    warnings : list of str
        What the checks after the fit found (degenerate CPD components, zero components,
        all-zero data, a fit worse than the zero model, singular Gramians...); each was
        also issued as an :class:`sdf.errors.SdfWarning`.
    state : dict of str to float
        Solver state a resumed run continues from (first objective, trust radius, units).

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

    model: Model | None
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
    _values: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def message(self) -> str:
        return self.stop.message

    @property
    def success(self) -> bool:
        """True when the run ended on a tolerance or at the iteration/time budget."""
        return self.stop not in (StopReason.NONFINITE, StopReason.STEP_FAILED,
                                 StopReason.CG_BREAKDOWN, StopReason.STATIONARY)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this result (all but the model) to a netCDF file; see :mod:`sdf.io`.

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
        from sdf.io import save_result

        save_result(self, path)

    def _require_model(self, what: str) -> Model:
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

    def factors(self, term: str) -> list[np.ndarray]:
        """Values of the inputs (factors, then core) of the term named ``term``."""
        model = self._require_model(f".factors({term!r})")
        if term not in model.terms:
            raise ModelError(f"no term {term!r} (terms: {', '.join(model.terms)})")
        return [self[e] for e in model.terms[term].inputs]

    def to_xarray(self) -> Any:
        """The factors as an ``xarray.Dataset`` with the data's dim names and coordinates.

        For every factorization whose data carried dim names (an ``xarray.DataArray``), the
        factor of mode ``n`` becomes the variable ``"<dim>_factor"`` with dims
        ``(dim, "component")`` and the data's coordinates (xarray reserves the bare dim name
        for its coordinate). A dim that two terms explain by different expressions is
        written once per term, as ``"<term>_<dim>_factor"``. Variables not covered that way
        are added under their own names, with dims ``"<name>_dim<k>"``.
        Per-term relative errors, the objective, the iteration count and the stop reason go
        in the attributes; ``Dataset.to_netcdf(path, engine="scipy")`` writes it.

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
        n_components: int | None = None
        for name, term in model.terms.items():
            data = getattr(term, "data", None)
            dims = getattr(data, "dims", None)
            if not dims or term.kind == "BTD":
                continue
            coords = getattr(data, "coords", None) or {}
            for dim, expr in zip(dims, term.inputs[: len(dims)]):
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
                covered.update(id(v) for v in expr.variables())
        for var, vname in zip(model.variables, model.variable_names):
            if id(var) not in covered and vname not in data_vars:
                value = self.variables[vname]
                data_vars[vname] = xr.DataArray(
                    value, dims=tuple(f"{vname}_dim{k}" for k in range(value.ndim)))
        attrs: dict[str, Any] = {f"relerr_{k}": v for k, v in self.relerr.items()}
        attrs.update(objective=self.objective, iterations=self.iterations,
                     stop=self.stop.name, method=self.method)
        ds = xr.Dataset(data_vars, attrs=attrs)
        if "component" in ds.dims:
            ds = ds.assign_coords(component=np.arange(ds.sizes["component"]))
        return ds

    def __repr__(self) -> str:
        errs = ", ".join(f"{k}: {v:.3g}" for k, v in self.relerr.items())
        return (f"Result(method={self.method!r}, iterations={self.iterations}, "
                f"objective={self.objective:.6g}, relerr={{{errs}}}, stop={self.stop.name})")


class _Errors:
    """Per-term ``||r||^2 / 2`` in the form ``Run.relerr`` reads."""

    def __init__(self, fvals: np.ndarray) -> None:
        self.fvals = fvals


def result_from_run(problem: Any, point: Any, stop: StopReason, run: Any, method: str) -> Result:
    """The :class:`Result` of a run at ``point`` (scaled problems and points accepted).

    Variables are copied out of the point in the model's units; errors and the history
    come from the run (see :class:`sdf.solvers._run.Run`).
    """
    raw = getattr(point, "raw", point)
    raw_problem = getattr(problem, "raw", problem)
    variables = {name: np.array(arr, copy=True)
                 for name, arr in zip(raw_problem.names, raw_problem.unpack(raw.z))}
    fvals = np.array(raw.fvals, dtype=float)
    if np.all(np.isfinite(fvals)):
        fvals = np.array([
            term.exact_fval([raw.value(e) for e in term.inputs], fv)
            for term, fv in zip(raw_problem.terms, fvals)])
    abserr = {n: float(np.sqrt(2.0 * fv)) for n, fv in zip(raw_problem.term_names, fvals)}
    objective = float(raw_problem.weights @ fvals) if np.all(np.isfinite(fvals)) else float(raw.f)
    return Result(
        model=raw_problem.model, variables=variables, objective=objective, abserr=abserr,
        relerr=run.relerr(_Errors(fvals)), history=run.history, iterations=int(run.iterations),
        stop=stop, method=method, state=dict(getattr(run, "state", {})),
    )


#: A pair of CPD components is reported as degenerate when their congruence (product
#: over the modes of the cosines between their columns) is at most this ...
DEGENERACY_CONGRUENCE = -0.9
#: ... and the norms of the two rank-one terms add up to this many times the model's norm.
DEGENERACY_NORM_RATIO = 10.0


def _cpd_findings(name: str, factors: list[np.ndarray]) -> list[tuple[type[Warning], str]]:
    from sdf.errors import DegeneracyWarning, SdfWarning

    out: list[tuple[type[Warning], str]] = []
    if any(A.ndim != 2 for A in factors) or not np.all([np.isfinite(A).all() for A in factors]):
        return out
    col_norms = np.array([np.linalg.norm(A, axis=0) for A in factors])
    norms = np.prod(col_norms, axis=0)
    top = float(norms.max(initial=0.0))
    if top == 0.0:
        return out
    dead = np.flatnonzero(norms <= 1e-12 * top)
    if dead.size:
        out.append((SdfWarning,
                    f"term {name!r}: component(s) {dead.tolist()} are zero in the result; "
                    f"the effective rank is {norms.size - dead.size} of {norms.size} "
                    "(rank-deficient factors: try a lower rank or another start)"))
    if norms.size < 2:
        return out
    C = np.ones((norms.size, norms.size))
    gram = np.ones_like(C)
    for A, n in zip(factors, col_norms):
        G = A.T @ A
        gram *= G
        unit = np.where(n > 0, n, 1.0)
        C *= G / np.outer(unit, unit)
    model_norm = math.sqrt(max(float(gram.sum()), 0.0))
    r, s = np.triu_indices(norms.size, k=1)
    hit = (C[r, s] <= DEGENERACY_CONGRUENCE) & (
        norms[r] + norms[s] >= DEGENERACY_NORM_RATIO * max(model_norm, 1e-300 * top))
    if hit.any():
        listed = ", ".join(f"({a}, {b}): {c:.4f}" for a, b, c in
                           zip(r[hit][:5], s[hit][:5], C[r, s][hit][:5]))
        ratio = float(norms.sum() / model_norm) if model_norm > 0 else math.inf
        out.append((DegeneracyWarning,
                    f"term {name!r}: degenerate CPD, components cancel each other "
                    f"(congruence {listed}; component norms add up to {ratio:.3g} times "
                    "the model's norm): try a lower rank, constraints (e.g. nonnegativity) "
                    "or a small L2 regularization"))
    return out


def _start_scale(name: str, term: Any, model: Model, data_norm: float
                 ) -> list[tuple[type[Warning], str]]:
    """A warning when the initial CPD model and the data differ in scale by > 1e6."""
    from sdf.errors import SdfWarning

    with np.errstate(over="ignore", invalid="ignore"):
        gram = np.ones((term.rank, term.rank))
        for e in term.inputs:
            A = np.asarray(model.evaluate(e))
            gram = gram * (A.T @ A)
        start_norm = math.sqrt(max(float(gram.sum()), 0.0))
    ratio = start_norm / data_norm
    if np.isfinite(ratio) and 1e-6 <= ratio <= 1e6:
        return []
    return [(SdfWarning, f"term {name!r}: the initial model's norm ({start_norm:.3g}) and "
             f"the data's norm ({data_norm:.3g}) differ by a factor {ratio:.3g}; scale the "
             "initial values to the data (fits are scale-invariant only when both are "
             "scaled together)")]


def diagnose(result: Result, problem: Any = None) -> list[tuple[type[Warning], str]]:
    """Checks of a fitted result: ``(warning class, message)`` for every finding.

    Looks for degenerate CPD components (congruence <= ``DEGENERACY_CONGRUENCE`` with
    norms adding up to ``DEGENERACY_NORM_RATIO`` times the model's norm), components that
    vanished, all-zero data, data terms fitted worse than by the zero model, and, when the
    run ended in a CG breakdown, how often the Gauss-Newton Gramian was found singular
    along a search direction (``problem`` being the
    :class:`~sdf.solvers._run.ScaledProblem` the solver ran on).

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 1)), name="a")
    >>> res = sdf.Model(m=sdf.CPD(np.zeros((3, 2)), [a, np.ones((2, 1))])).fit()
    >>> [msg.split(";")[0] for _, msg in diagnose(res)]
    ["term 'm': the data are all zero"]
    """
    from sdf.errors import SdfWarning

    model = result.model
    found: list[tuple[type[Warning], str]] = []
    if model is None:
        return found
    for name, term in model.terms.items():
        if not term.is_data_term:
            continue
        norm = term.data_norm
        if norm == 0:
            found.append((SdfWarning, f"term {name!r}: the data are all zero; its relative "
                          "error is reported as the absolute error ||model||"))
        elif result.relerr.get(name, 0.0) > 1.0:
            found.append((SdfWarning,
                          f"term {name!r}: relative error {result.relerr[name]:.3g} > 1, "
                          "worse than the zero model: the start may be badly scaled for "
                          "the data, or the run too short"))
        if term.kind == "CPD":
            found += _cpd_findings(name, [result[e] for e in term.inputs])
            if result.relerr.get(name, 0.0) > 0.5 and norm > 0:
                found += _start_scale(name, term, model, norm)
    singular = getattr(problem, "singular_products", 0)
    if singular and result.stop is StopReason.CG_BREAKDOWN:
        found.append((SdfWarning,
                      f"the Gauss-Newton Gramian was singular along {singular} search "
                      "direction(s): rank-deficient or collinear factors, or a transform "
                      "whose derivative vanishes"))
    return found


def emit(findings: list[tuple[type[Warning], str]], stacklevel: int = 3) -> None:
    """Issue every finding of :func:`diagnose` as a warning."""
    for category, message in findings:
        _warnings.warn(message, category, stacklevel=stacklevel)
