"""Saving and loading fit results (and checkpoints) as netCDF files.

A result file is a netCDF-3 file written by xarray with scipy's backend (no pickle, no
code is ever loaded from it). It holds

* one array per model variable, ``variable_<k>``, exact float64, with the variable's name
  in the attribute ``name``;
* the iteration history, ``history_<field>`` along the dim ``iteration`` and
  ``history_relerr`` along ``(relerr_term, iteration)``;
* in the global attributes: ``sdfusion_result`` (the format version, an integer) and
  ``result`` (JSON: objective, per-term errors, iterations, stop reason, method, warnings,
  solver state, the names of the variables and terms). Floats go through JSON as their
  shortest round-trip text, so the round trip is exact.

Files are written to a temporary file next to the target and moved over it, so an
interrupted save never leaves a truncated file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from sdf.errors import FileFormatError, ModelError
from sdf.result import History, Result, StopReason

if TYPE_CHECKING:
    from sdf.model import Model

__all__ = ["FORMAT_VERSION", "load_result", "save_result"]

#: Version of the file layout; files of a newer version are refused.
FORMAT_VERSION = 1
_MARK = "sdfusion_result"
_HISTORY = ("objective", "relchange", "step", "radius", "cg_iterations", "time")


def _dataset(result: Result) -> Any:
    import xarray as xr

    data: dict[str, Any] = {}
    names = list(result.variables)
    for k, name in enumerate(names):
        value = np.asarray(result.variables[name], dtype=np.float64)
        dims = tuple(f"variable_{k}_dim{d}" for d in range(value.ndim))
        data[f"variable_{k}"] = xr.Variable(dims, value, attrs={"name": str(name)})
    h = result.history
    for field in _HISTORY:
        values = getattr(h, field)
        dtype = np.int32 if field == "cg_iterations" else np.float64
        data[f"history_{field}"] = xr.Variable(("iteration",), np.asarray(values, dtype=dtype))
    relerr_terms = list(h.relerr)
    if relerr_terms:
        rows = np.array([h.relerr[t] for t in relerr_terms], dtype=np.float64)
        data["history_relerr"] = xr.Variable(("relerr_term", "relerr_iteration"), rows)
    meta = {
        "variables": [str(n) for n in names],
        "objective": float(result.objective),
        "abserr": {str(k): float(v) for k, v in result.abserr.items()},
        "relerr": {str(k): float(v) for k, v in result.relerr.items()},
        "iterations": int(result.iterations),
        "stop": result.stop.name,
        "method": str(result.method),
        "warnings": [str(w) for w in result.warnings],
        "state": {str(k): float(v) for k, v in result.state.items()},
        "relerr_terms": [str(t) for t in relerr_terms],
    }
    attrs = {_MARK: np.int32(FORMAT_VERSION), "result": json.dumps(meta)}
    return xr.Dataset(data, attrs=attrs)


def save_result(result: Result, path: str | os.PathLike[str]) -> None:
    """Write ``result`` (all but its model) to the netCDF file ``path``.

    The write is atomic: a temporary file in the same folder is renamed over ``path``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, sdf
    >>> a = sdf.Variable(np.ones((2, 1)), name="a")
    >>> res = sdf.Model(m=sdf.CPD(np.ones((2, 2)), [a, np.ones((2, 1))])).fit()
    >>> path = os.path.join(tempfile.mkdtemp(), "fit.nc")
    >>> save_result(res, path)
    >>> load_result(path).objective == res.objective
    True
    """
    if not isinstance(result, Result):
        raise ModelError(f"save_result: expected an sdf.Result, got {type(result).__name__}")
    path = os.fspath(path)
    ds = _dataset(result)
    encoding = {name: {"_FillValue": None} for name in ds.variables}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".sdf-", suffix=".nc.tmp", dir=folder)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="scipy", format="NETCDF3_64BIT", encoding=encoding)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import xarray as xr

    if not os.path.exists(path):
        raise FileNotFoundError(f"load_result: no such file {path!r}")
    try:
        with xr.open_dataset(path, engine="scipy", decode_cf=False,
                             mask_and_scale=False) as ds:
            arrays = {name: np.array(var.values) for name, var in ds.variables.items()}
            attrs = dict(ds.attrs)
            names = {name: var.attrs.get("name") for name, var in ds.variables.items()}
    except Exception as exc:  # scipy raises many kinds on a damaged file
        raise FileFormatError(
            f"load_result: {path!r} is not a readable netCDF file "
            f"({type(exc).__name__}: {exc}); it may be truncated or of another format"
        ) from None
    if _MARK not in attrs:
        raise FileFormatError(
            f"load_result: {path!r} is a netCDF file but not an sdfusion result "
            f"(no {_MARK!r} attribute)")
    version = int(np.asarray(attrs[_MARK]).ravel()[0])
    if version > FORMAT_VERSION:
        raise FileFormatError(
            f"load_result: {path!r} has result format {version}, newer than this "
            f"version of sdfusion reads ({FORMAT_VERSION}); upgrade sdfusion")
    try:
        meta = json.loads(str(attrs["result"]))
    except (KeyError, ValueError) as exc:
        raise FileFormatError(f"load_result: {path!r}: damaged 'result' attribute ({exc})") from None
    arrays["__names__"] = names  # type: ignore[assignment]
    return arrays, meta


def load_result(path: str | os.PathLike[str], model: Model | None = None) -> Result:
    """Read a result written by :meth:`sdf.Result.save` (or a checkpoint).

    Parameters
    ----------
    path : str or os.PathLike
        The netCDF file.
    model : Model, optional
        The model that was fitted. With it, ``result[expr]``, ``result.factors(term)``
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
    arrays, meta = _read(path)
    names = arrays.pop("__names__")  # type: ignore[arg-type]
    try:
        variables = {}
        for k, name in enumerate(meta["variables"]):
            key = f"variable_{k}"
            if names.get(key) != name:  # type: ignore[union-attr]
                raise KeyError(key)
            variables[name] = np.asarray(arrays[key], dtype=np.float64)
        n_iter = len(arrays["history_objective"])
        history = History(**{
            field: [int(v) for v in arrays[f"history_{field}"]] if field == "cg_iterations"
            else [float(v) for v in arrays[f"history_{field}"]] for field in _HISTORY})
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
            state=dict(meta["state"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(
            f"load_result: {path!r}: an sdfusion result with missing or damaged content "
            f"({type(exc).__name__}: {exc})") from None
    if model is not None:
        attach_model(result, model, where=f"load_result({path!r})")
    return result


def attach_model(result: Result, model: Model, where: str = "result") -> Result:
    """Attach ``model`` to ``result`` after checking that the variables match."""
    from sdf.model import Model

    if not isinstance(model, Model):
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
    result.model = model
    result._values.clear()
    return result
