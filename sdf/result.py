"""What a fit returns: values, errors, history and why it stopped."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sdf.errors import ModelError
from sdf.expr import Expr

if TYPE_CHECKING:
    from sdf.model import Model

__all__ = ["History", "IterationInfo", "Result", "StopReason"]


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

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 1)), name="a")
    >>> b = sdf.Variable(np.ones((4, 1)), name="b")
    >>> res = sdf.Model(m=sdf.CPD(np.outer(np.arange(1, 4), np.ones(4)), [a, b])).fit()
    >>> bool(res.relerr["m"] < 1e-8), res[a].shape
    (True, (3, 1))
    """

    model: Model
    variables: dict[str, np.ndarray]
    objective: float
    abserr: dict[str, float]
    relerr: dict[str, float]
    history: History
    iterations: int
    stop: StopReason
    method: str
    _values: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def message(self) -> str:
        return self.stop.message

    @property
    def success(self) -> bool:
        """True when the run ended on a tolerance or at the iteration/time budget."""
        return self.stop not in (StopReason.NONFINITE, StopReason.STEP_FAILED,
                                 StopReason.CG_BREAKDOWN)

    def __getitem__(self, key: Expr | str) -> np.ndarray:
        if isinstance(key, str):
            if key in self.variables:
                return self.variables[key]
            for expr_id, expr in self.model.named_expressions().items():
                if expr.name == key:
                    return self[expr]
            raise KeyError(f"no variable or named expression {key!r} in the result")
        if not isinstance(key, Expr):
            raise TypeError(f"index a Result with an expression or a name, not {type(key).__name__}")
        if id(key) not in self._values:
            self._values[id(key)] = self.model.evaluate(key, self.variables)
        return self._values[id(key)]

    def factors(self, term: str) -> list[np.ndarray]:
        """Values of the inputs (factors, then core) of the term named ``term``."""
        if term not in self.model.terms:
            raise ModelError(f"no term {term!r} (terms: {', '.join(self.model.terms)})")
        return [self[e] for e in self.model.terms[term].inputs]

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
        >>> ds["time_factor"].dims, list(ds["time_factor"].coords["time"].values)
        (('time', 'component'), [0.1, 0.2, 0.3])
        """
        import xarray as xr

        data_vars: dict[str, Any] = {}
        sources: dict[str, int] = {}
        covered: set[int] = set()
        n_components: int | None = None
        for name, term in self.model.terms.items():
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
        for var, vname in zip(self.model.variables, self.model.variable_names):
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
