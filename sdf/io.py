"""The file format of saved results and checkpoints: netCDF files holding arrays and a
JSON record, written atomically and read without ever loading code.

A result file is a netCDF-3 file written by xarray with scipy's backend (no pickle, no
code is ever loaded from it). It holds named arrays (each with its dims and an optional
``name`` attribute) and, in the global attributes, ``sdfusion_result`` (the format
version, an integer) and ``result`` (a JSON record). Floats go through JSON as their
shortest round-trip text, so the round trip is exact. What the arrays and the record hold
is decided by :meth:`sdf.Result.save` and :func:`sdf.load_result`. netCDF-3 has no
complex type: a complex array is stored as a float64 array with a trailing dim of size 2
(real part, imaginary part; :func:`complex_to_pairs`), which :func:`pairs_to_complex`
turns back into the same complex values, bit for bit (signed zeros and NaN payloads
included); the JSON record says which arrays those are.

Files are written to a temporary file next to the target and moved over it, so an
interrupted save never leaves a truncated file behind; the file gets the permissions the
process's umask gives new files.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np

from sdf.errors import FileFormatError

__all__ = ["FORMAT_VERSION", "check_writable", "complex_to_pairs", "pairs_to_complex",
           "read_result_file", "write_result_file"]

#: Version of the file layout; files of a newer version are refused.
FORMAT_VERSION = 1
_MARK = "sdfusion_result"

Arrays = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]]


def check_writable(path: str | os.PathLike[str], where: str) -> str:
    """Raise :class:`OSError` naming ``where`` unless a file can be written at ``path``.

    Checked before a long run starts, so that a checkpoint path in a missing folder, or
    naming a folder, is found out at once instead of after the run.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> check_writable(os.path.join(folder, "run.nc"), "checkpoint").endswith("run.nc")
    True
    >>> check_writable(folder, "checkpoint")
    Traceback (most recent call last):
    ...
    IsADirectoryError: checkpoint: ... is a folder, not a file path
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{where}: {path!r} is a folder, not a file path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{where}: the folder {folder!r} of {path!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{where}: the folder {folder!r} is not writable")
    return path


def complex_to_pairs(values: np.ndarray) -> np.ndarray:
    """A complex array as float64 pairs: shape ``values.shape + (2,)``, real then imaginary.

    Examples
    --------
    >>> complex_to_pairs(np.array([1 + 2j, -0.0 - 3j])).tolist()
    [[1.0, 2.0], [-0.0, -3.0]]
    """
    z = np.asarray(values, dtype=np.complex128)
    return np.stack([z.real, z.imag], axis=-1)


def pairs_to_complex(pairs: np.ndarray) -> np.ndarray:
    """The inverse of :func:`complex_to_pairs`: float pairs (trailing dim 2) to complex128.

    The parts are copied into the complex array's memory, not added (``a + 1j * b`` would
    turn a real part ``-0.0`` into ``0.0``), so the round trip is exact.

    Examples
    --------
    >>> z = np.array([[1 + 2j, -0.0 - 3j]])
    >>> back = pairs_to_complex(complex_to_pairs(z))
    >>> back.shape, bool(np.array_equal(back.view(np.float64), z.view(np.float64)))
    ((1, 2), True)
    """
    P = np.asarray(pairs, dtype=np.float64)
    if P.ndim == 0 or P.shape[-1] != 2:
        raise FileFormatError(f"complex values: expected a trailing dim of size 2 (real, "
                              f"imaginary), got shape {P.shape}")
    return np.ascontiguousarray(P).view(np.complex128)[..., 0].copy()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_result_file(path: str | os.PathLike[str], arrays: Arrays,
                      record: dict[str, Any]) -> None:
    """Write ``arrays`` (name -> (dims, values, attrs)) and the JSON ``record`` to ``path``.

    The write is atomic: a temporary file in the same folder is renamed over ``path``.
    """
    import xarray as xr

    path = os.fspath(path)
    data = {name: xr.Variable(dims, values, attrs=attrs)
            for name, (dims, values, attrs) in arrays.items()}
    attrs = {_MARK: np.int32(FORMAT_VERSION), "result": json.dumps(record)}
    ds = xr.Dataset(data, attrs=attrs)
    encoding = {name: {"_FillValue": None} for name in ds.variables}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".sdf-", suffix=".nc.tmp", dir=folder)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="scipy", format="NETCDF3_64BIT", encoding=encoding)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 is not what the user asked for
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_result_file(path: str | os.PathLike[str]
                     ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Read a result file: ``(arrays, their name attributes, the JSON record)``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    sdf.errors.FileFormatError
        A truncated, damaged or foreign file, or one of a newer format.
    """
    import xarray as xr

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_result: no such file {path!r}")
    try:
        with xr.open_dataset(path, engine="scipy", decode_cf=False,
                             mask_and_scale=False) as ds:
            arrays = {str(name): np.array(var.values) for name, var in ds.variables.items()}
            attrs = dict(ds.attrs)
            names = {str(name): var.attrs.get("name") for name, var in ds.variables.items()}
    except Exception as exc:  # scipy raises many kinds on a damaged file
        raise FileFormatError(
            f"load_result: {path!r} is not a readable netCDF file "
            f"({type(exc).__name__}: {exc}); it may be truncated or of another format"
        ) from None
    if _MARK not in attrs:
        raise FileFormatError(
            f"load_result: {path!r} is a netCDF file but not an sdfusion result "
            f"(no {_MARK!r} attribute)")
    marker = np.asarray(attrs[_MARK]).ravel()
    if marker.size != 1 or marker.dtype.kind not in "iu":
        raise FileFormatError(
            f"load_result: {path!r}: damaged {_MARK!r} attribute (expected one integer, "
            f"got {attrs[_MARK]!r})")
    version = int(marker[0])
    if version > FORMAT_VERSION:
        raise FileFormatError(
            f"load_result: {path!r} has result format {version}, newer than this "
            f"version of sdfusion reads ({FORMAT_VERSION}); upgrade sdfusion")
    try:
        record = json.loads(str(attrs["result"]))
    except (KeyError, ValueError, RecursionError) as exc:
        raise FileFormatError(
            f"load_result: {path!r}: damaged 'result' attribute ({type(exc).__name__})"
        ) from None
    if not isinstance(record, dict):
        raise FileFormatError(f"load_result: {path!r}: damaged 'result' attribute "
                              f"(expected a JSON object, got {type(record).__name__})")
    return arrays, names, record
