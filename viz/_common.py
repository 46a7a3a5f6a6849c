"""Shared plumbing of :mod:`sdf.viz`: inputs to one decomposition form, figures, colours.

Everything a plotting function accepts is turned into a :class:`FactorView` by
:func:`as_decomposition`: an ``sdf.Result`` (one term chosen by name), an
:class:`sdf.models.Decomposition` (through its engine result, so every driver's output
is drawn alike), a list of factor matrices, an ``sdf.tensors.CPDTensor`` /
``TuckerTensor``, an ``xarray.Dataset`` of factors (``result.to_xarray()``), a list of
factor ``xarray.DataArray`` s, or any object with ``.factors`` and optionally ``.core``
(e.g. :class:`sdf.decomp.MLSVDResult`). Kinds are the engine's term kinds ``"CPD"``,
``"LMLRA"``, ``"BTD"``, ``"LL1"``. matplotlib is imported only inside functions.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from numpy.typing import ArrayLike

from sdf.errors import DataError, ModelError
from sdf.numerics import check_factors

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sdf.tensors import CPDTensor, Tensor, TuckerTensor

__all__ = ["FactorView", "ViewKind", "as_data", "as_decomposition", "component_color",
           "coupled_view", "get_axes", "interactive_backend", "leverage", "new_figure",
           "pyplot"]

#: The engine's term kinds (``sdf.CPD.kind``...): the decompositions a figure can show.
ViewKind = Literal["CPD", "LMLRA", "BTD", "LL1"]


# ----------------------------------------------------------------------------- matplotlib
def pyplot() -> ModuleType:
    """``matplotlib.pyplot``, imported on first use."""
    import matplotlib.pyplot as plt

    return plt


def component_color(r: int) -> str:
    """Colour of component (or block) ``r``: the same in every panel of every function."""
    return f"C{int(r) % 10}"


def new_figure(fig: Figure | None, nrows: int, ncols: int, *, size: tuple[float, float],
               **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """Axes grid (always 2-D) on ``fig``, or on a new pyplot figure of ``size`` inches."""
    if fig is None:
        fig = pyplot().figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def get_axes(ax: Axes | None, size: tuple[float, float] = (5.0, 3.5)) -> tuple[Figure, Axes]:
    """``(figure, ax)``: the root figure holding ``ax``, or a new figure with one axes."""
    from matplotlib.figure import SubFigure

    if ax is None:
        fig = pyplot().figure(figsize=size, layout="constrained")
        return fig, fig.add_subplot()
    # An axes in a subfigure: the root figure is the one that saves and shows.
    parent = ax.figure
    return (parent.figure if isinstance(parent, SubFigure) else parent), ax


def interactive_backend() -> bool:
    """True when the current matplotlib backend shows windows that take mouse events."""
    import matplotlib

    backend = matplotlib.get_backend().lower()
    try:
        from matplotlib.backends import BackendFilter, backend_registry

        names = backend_registry.list_builtin(BackendFilter.INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        from matplotlib import rcsetup

        # Gone (with its stub) since 3.9, where this branch no longer runs.
        names = getattr(rcsetup, "interactive_bk")
    return backend in {n.lower() for n in names} or "ipympl" in backend or "widget" in backend


# ----------------------------------------------------------------------------- decompositions
@dataclass
class FactorView:
    """One decomposition's factors in the common form the figures draw.

    Not a fit result (that is :class:`sdf.models.Decomposition` or :class:`sdf.Result`):
    :func:`~sdf.viz.normalize_columns` drops a CPD's column scales, for instance.

    Attributes
    ----------
    kind : {"CPD", "LMLRA", "BTD", "LL1"}
    factors : list of ndarray, each of shape (I_n, R_n)
        Per mode; BTD blocks are concatenated column-wise, LL1 as Tensorlab
        (``A (I, sum L)``, ``B (J, sum L)``, ``C (K, R)``).
    groups : list of int ndarray, each of shape (R_n,)
        Block (component) of every column, per mode: ``arange(R)`` for a CPD.
    core : ndarray or None
        LMLRA (Tucker) core.
    cores : list of ndarray or None
        BTD block cores.
    dims : list of str or None
        Mode names (from the data or the factors' DataArrays).
    coords : list of ndarray or None
        Coordinate values per mode.
    data : Tensor or None
        The data set the decomposition was fitted to, when known.
    units : list of (str or None) or None
        Per mode, the ``units`` attribute of its coordinate, when known.
    terms : list of str or None
        For the factors of several coupled terms of one result (:func:`coupled_view`):
        the terms; the modes are then the distinct factors of all of them, and no single
        model tensor exists.
    term_modes : list of list of int or None
        With ``terms``: the modes (indices into ``factors``) each term multiplies.
    """

    kind: ViewKind
    factors: list[np.ndarray]
    groups: list[np.ndarray]
    core: np.ndarray | None = None
    cores: list[np.ndarray] | None = None
    dims: list[str] | None = None
    coords: list[np.ndarray] | None = None
    data: Tensor | None = field(default=None, repr=False)
    units: list[str | None] | None = None
    terms: list[str] | None = None
    term_modes: list[list[int]] | None = None

    def axis_label(self, n: int) -> str:
        """The mode's name with its units, ``"emission (nm)"``, or ``"index"``."""
        if self.dims is None:
            return "index"
        unit = self.units[n] if self.units is not None else None
        return f"{self.dims[n]} ({unit})" if unit else self.dims[n]

    @property
    def ndim(self) -> int:
        return len(self.factors)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(A.shape[0] for A in self.factors)

    @property
    def is_complex(self) -> bool:
        """Whether any factor or core holds complex values."""
        parts = [*self.factors, *([self.core] if self.core is not None else []),
                 *(self.cores or [])]
        return any(np.iscomplexobj(x) for x in parts)

    def mode_name(self, n: int) -> str:
        return self.dims[n] if self.dims is not None else f"mode {n}"

    def coord(self, n: int) -> np.ndarray:
        return self.coords[n] if self.coords is not None else np.arange(self.shape[n])

    def _cpd_form(self) -> list[np.ndarray]:
        """LL1 as a CPD: every column of the rank-R mode repeated L_r times."""
        size = max(A.shape[1] for A in self.factors)
        g = next(gr for A, gr in zip(self.factors, self.groups) if A.shape[1] == size)
        return [A if A.shape[1] == size else A[:, g] for A in self.factors]

    def _tucker_blocks(self) -> list[tuple[list[np.ndarray], np.ndarray]]:
        if self.kind == "LMLRA":
            assert self.core is not None
            return [(self.factors, self.core)]
        assert self.cores is not None
        return [([A[:, g == b] for A, g in zip(self.factors, self.groups)], S)
                for b, S in enumerate(self.cores)]

    def full(self) -> np.ndarray:
        """The model tensor, dense (C order)."""
        from sdf import algebra

        if self.terms is not None:
            raise ModelError(f"the factors of the coupled terms {self.terms} make no single "
                             "model tensor; view one term (term=...)")
        if self.kind in ("CPD", "LL1"):
            return algebra.cpd_to_tensor(self._cpd_form())
        return reduce(operator.add,
                      (algebra.tucker_to_tensor(U, S) for U, S in self._tucker_blocks()))

    def values_at(self, subs: np.ndarray) -> np.ndarray:
        """Model values at the entries ``subs`` (m, N), never forming the full tensor."""
        from sdf.tensors import CPDTensor, TuckerTensor

        if self.kind in ("CPD", "LL1"):
            return CPDTensor(self._cpd_form()).values_at(subs)
        return reduce(operator.add,
                      (TuckerTensor(U, S).values_at(subs) for U, S in self._tucker_blocks()))


def _column_groups(sizes: ArrayLike) -> np.ndarray:
    """Block number of every column, for blocks of ``sizes`` columns."""
    counts = np.asarray(sizes, dtype=int)
    return np.repeat(np.arange(len(counts)), counts)


def _matrices(factors: Sequence[Any], where: str) -> list[np.ndarray]:
    """Real or complex factor matrices; a vector counts as a one-column matrix."""
    if isinstance(factors, Sequence) and not isinstance(factors, str):
        factors = [A[:, None] if np.ndim(A) == 1 else A for A in factors]
    return check_factors(factors, name=f"{where}, factors")


def _numbers(x: ArrayLike) -> np.ndarray:
    """float64 array, or complex128 when ``x`` is complex (never made real)."""
    A = np.asarray(x)
    return A.astype(np.complex128 if np.iscomplexobj(A) else np.float64, copy=False)


def leverage(A: np.ndarray) -> np.ndarray:
    """Leverage of every row, ``diag(A (AᴴA)⁺ Aᴴ)`` (real, also for complex A).

    Examples
    --------
    >>> import numpy as np
    >>> leverage(np.array([[1.0], [1.0j]])).tolist()
    [0.5, 0.5]
    """
    return np.einsum("ir,ir->i", A.conj(), A @ np.linalg.pinv(A.conj().T @ A)).real


def _from_factors(factors: Sequence[Any], core: ArrayLike | None = None,
                  L: int | Sequence[int] | None = None,
                  where: str = "factors") -> FactorView:
    """A FactorView from matrices, a core (Tucker), block tuples (BTD) or L (LL1)."""
    if len(factors) and all(isinstance(b, (tuple, list)) for b in factors):
        return _from_blocks(factors, where)
    mats = _matrices(factors, where)
    cols = [A.shape[1] for A in mats]
    if core is not None:
        S = _numbers(core)
        if S.shape != tuple(cols):
            raise DataError(f"{where}: core must have shape {tuple(cols)} (the factors' "
                            f"columns), got {S.shape}")
        return FactorView("LMLRA", mats, [np.arange(c) for c in cols], core=S)
    if L is not None:
        Ls = np.atleast_1d(np.asarray(L, dtype=int))
        sizes = {int(Ls.sum()), len(Ls)}
        if any(c not in sizes for c in cols) or Ls.min() < 1:
            raise DataError(f"{where}: LL1 with L={Ls.tolist()} needs factors with "
                            f"{int(Ls.sum())} or {len(Ls)} columns, got {cols}")
        groups = [_column_groups(Ls) if c == Ls.sum() else np.arange(len(Ls)) for c in cols]
        return FactorView("LL1", mats, groups)
    if len(set(cols)) != 1:
        raise DataError(f"{where}: CPD factors need the same number of columns, got {cols}; "
                        "pass core= for an LMLRA (Tucker) model or L= for an LL1 model")
    return FactorView("CPD", mats, [np.arange(cols[0])] * len(mats))


def _from_blocks(blocks: Sequence[Sequence[Any]], where: str) -> FactorView:
    """BTD blocks ``[(U_0, ..., U_{N-1}, S), ...]``."""
    Us, Ss = [], []
    for b, block in enumerate(blocks):
        *U, S = block
        U = _matrices(U, f"{where}, block {b}")
        S = _numbers(S)
        if S.shape != tuple(A.shape[1] for A in U):
            raise DataError(f"{where}, block {b}: core shape {S.shape} does not match the "
                            f"factors' columns {tuple(A.shape[1] for A in U)}")
        Us.append(U)
        Ss.append(S)
    N = len(Us[0])
    if any(len(U) != N for U in Us):
        raise DataError(f"{where}: every BTD block needs {N} factors and a core")
    factors = [np.hstack([U[n] for U in Us]) for n in range(N)]
    groups = [_column_groups([U[n].shape[1] for U in Us]) for n in range(N)]
    return FactorView("BTD", factors, groups, cores=Ss)


def _default_term(model: Any) -> str:
    for name, t in model.terms.items():
        if getattr(t, "is_data_term", False):
            return name
    raise ModelError("the result's model has no data term (CPD, LMLRA, BTD, LL1) to plot")


def _from_result(result: Any, term: str | None) -> FactorView:
    model = result.model
    name = _default_term(model) if term is None else term
    if name not in model.terms:
        raise ModelError(f"no term {name!r} in the result (terms: {', '.join(model.terms)})")
    t = model.terms[name]
    if not getattr(t, "is_data_term", False):
        raise ModelError(f"term {name!r} is a {t.kind} regularizer, not a data term; "
                         "choose a factorization term")
    structure = t.structure(result.factors[name])
    if structure is None and t.kind == "PARAFAC2":
        # X_k = A diag(c_k) (P_k B)^T: A, B and C as a CPD of the slices in their own
        # fitted bases (X_k P_k); flipping any two of a component's columns keeps it.
        dec = _from_factors(result.factors[name], where=f"term {name!r}")
        dec.dims = _expression_names(model, t.inputs)
        return dec
    if structure is None:
        raise ModelError(f"term {name!r} ({t.kind}) does not say how to draw its values")
    where = f"term {name!r}"
    if structure.blocks is not None:
        dec = _from_blocks(structure.blocks, where)
    elif structure.core is not None:
        dec = _from_factors(structure.factors, core=structure.core, where=where)
    else:
        dec = _from_factors(structure.factors, L=structure.L, where=where)
    dec = _attach_data(dec, t.data)
    modes = t.mode_factors()
    if dec.dims is None and modes is not None and len(modes) == dec.ndim:
        dec.dims = _expression_names(model, modes)  # the model's names for its factors
    return dec


def _attach_data(dec: FactorView, data: Tensor | None) -> FactorView:
    if data is None:
        return dec
    if tuple(data.shape) != dec.shape:
        raise DataError(f"data: shape {tuple(data.shape)} does not match the decomposition's "
                        f"{dec.shape}")
    dec.data = data
    if data.dims is not None:
        dec.dims = list(data.dims)
        coords = data.coords or {}
        dec.coords = [np.asarray(coords.get(d, np.arange(s))) for d, s in
                      zip(data.dims, data.shape)]
        attrs = data.coord_attrs
        dec.units = [_unit(attrs.get(d, {})) for d in data.dims]
    return dec


def _unit(attrs: Mapping[str, Any]) -> str | None:
    unit = attrs.get("units", attrs.get("unit"))
    return None if unit is None else str(unit)


def _expression_names(model: Any, exprs: Sequence[Any]) -> list[str] | None:
    """The model's names of the expressions (``"a"``, ``"nonneg(b)"``); None when one is a
    constant (no variable to name it by)."""
    names = {id(v): n for v, n in zip(model.variables, model.variable_names)}
    if not all(e.variables() for e in exprs):
        return None
    return [e.label(names) for e in exprs]


def coupled_view(result: Any) -> FactorView | None:
    """Every distinct factor of a result's CPD data terms, each once, as one view.

    Coupled terms (``fuse``, ``cmtf``, a model sharing variables) explain several data
    sets; the view's modes are their factors in first-seen order, named by the data's
    dims (with units) or else by the model's names of the factor expressions. None when
    the result has fewer than two data terms or one is not a CPD.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> rng = np.random.default_rng(0)
    >>> a, b, c = (sdf.Variable(rng.random((n, 2)), name=k) for k, n in zip("abc", (4, 3, 5)))
    >>> model = sdf.Model(x=sdf.CPD(rng.random((4, 3)), [a, b]),
    ...                   y=sdf.CPD(rng.random((4, 5)), [a, c]))
    >>> coupled_view(model.fit(max_iter=3)).dims  # doctest: +SKIP
    ['a', 'b', 'c']
    """
    model = result.model
    data_terms = [(k, t) for k, t in model.terms.items() if getattr(t, "is_data_term", False)]
    if len(data_terms) < 2 or any(t.kind != "CPD" for _, t in data_terms):
        return None
    exprs: list[Any] = []
    dims: list[str] = []
    coords: list[np.ndarray] = []
    units: list[str | None] = []
    term_modes: list[list[int]] = []
    for name, t in data_terms:
        modes = t.mode_factors()
        labels = _expression_names(model, modes)
        tdims = t.dims()
        tcoords = t.coords() or {}
        attrs = getattr(t.data, "coord_attrs", {})
        for n, expr in enumerate(modes):
            if any(e is expr for e in exprs):
                continue
            exprs.append(expr)
            size = int(expr.shape[0])
            if tdims is not None:
                dims.append(tdims[n])
                coords.append(np.asarray(tcoords.get(tdims[n], np.arange(size))))
                units.append(_unit(attrs.get(tdims[n], {})))
            else:
                dims.append(labels[n] if labels is not None else f"{name} mode {n}")
                coords.append(np.arange(size))
                units.append(None)
        term_modes.append([next(i for i, e in enumerate(exprs) if e is expr)
                           for expr in modes])
    mats = _matrices([result[e] for e in exprs], "result")
    if len({A.shape[1] for A in mats}) != 1:
        return None
    R = mats[0].shape[1]
    return FactorView("CPD", mats, [np.arange(R)] * len(mats), dims=dims, coords=coords,
                      units=units, terms=[k for k, _ in data_terms], term_modes=term_modes)


def _from_xarray_factors(arrays: Sequence[Any], core: ArrayLike | None, where: str) -> FactorView:
    """Factor DataArrays with dims ``(dim, "component")``."""
    dims, coords, mats = [], [], []
    for n, da in enumerate(arrays):
        if da.ndim != 2 or "component" not in da.dims:
            raise DataError(f"{where}: factor {n} must have dims (dim, 'component'), "
                            f"got {da.dims}")
        dim = next(str(d) for d in da.dims if d != "component")
        da = da.transpose(dim, "component")
        dims.append(dim)
        coords.append(np.asarray(da[dim].values) if dim in da.coords
                      else np.arange(da.shape[0]))
        mats.append(_numbers(da.values))
    dec = _from_factors(mats, core=None if core is None else np.asarray(core), where=where)
    dec.dims, dec.coords = dims, coords
    dec.units = [_unit(da[dim].attrs) if dim in da.coords else None
                 for dim, da in zip(dims, arrays)]
    return dec


def _from_dataset(ds: Any, where: str) -> FactorView:
    arrays = [da for da in ds.data_vars.values() if "component" in da.dims and da.ndim == 2]
    if not arrays:
        raise DataError(f"{where}: the Dataset has no factor variables with dims "
                        f"(dim, 'component'); got variables {list(ds.data_vars)}")
    core = ds["core"].values if "core" in ds.data_vars else None
    return _from_xarray_factors(arrays, core, where)


def _is_xarray(x: object, name: str) -> bool:
    return type(x).__module__.startswith("xarray") and type(x).__name__ == name


def as_decomposition(obj: object, term: str | None = None, *, data: object = None,
                     L: int | Sequence[int] | None = None, where: str = "source") -> FactorView:
    """Turn any accepted input into a :class:`FactorView`.

    Parameters
    ----------
    obj : Result, sdf.models.Decomposition, sequence of array_like, CPDTensor, TuckerTensor,
        xarray.Dataset, sequence of xarray.DataArray, or an object with ``.factors`` (and
        optionally ``.core``, ``.L``)
        The decomposition. A sequence of ``(U_0, ..., U_{N-1}, S)`` tuples is a BTD. An
        ``sdf.models.Decomposition`` is read from its engine result (``.result``): the
        term fitted, its data, dims and coordinates.
    term : str, optional
        For a Result or a Decomposition: the term to use (default: the first data term;
        for a CMTF decomposition, its first data set).
    data : array_like, xarray.DataArray or Tensor, optional
        The data set (overrides the one found in a Result).
    L : int or sequence of int, optional
        Block sizes of an LL1 model given as plain factors.
    where : str
        Name used at the start of error messages.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.viz._common import as_decomposition
    >>> dec = as_decomposition([np.ones((3, 2)), np.ones((4, 2))])
    >>> dec.kind, dec.shape, dec.full().shape
    ('CPD', (3, 4), (3, 4))
    """
    from sdf.tensors import CPDTensor, Tensor, TuckerTensor

    if term is not None and not hasattr(obj, "model") and not hasattr(obj, "result"):
        raise ModelError(f"{where}: term={term!r} needs an sdf.Result, got {type(obj).__name__}")
    if _is_result(obj):
        dec = _from_result(obj, term)
    elif _is_result(inner := getattr(obj, "result", None)):  # an sdf.models.Decomposition
        dec = _from_result(inner, term)
    elif _is_xarray(obj, "Dataset"):
        dec = _from_dataset(obj, where)
    elif isinstance(obj, Tensor):
        if isinstance(obj, CPDTensor):
            W = obj.factors
            dec = _from_factors([W[0] * obj.weights, *W[1:]], where=where)
        elif isinstance(obj, TuckerTensor):
            dec = _from_factors(obj.factors, core=obj.core, where=where)
        else:
            raise DataError(f"{where}: a {type(obj).__name__} is data, not a "
                            "decomposition; pass it as data= with the factors")
        if obj.dims is not None:
            dec = _attach_data(dec, obj)
            dec.data = None
    elif hasattr(obj, "factors") and not isinstance(obj, (list, tuple, np.ndarray)):
        dec = _from_model_result(obj, term, where)
    elif isinstance(obj, Sequence) and not isinstance(obj, str):
        if len(obj) and all(_is_xarray(a, "DataArray") for a in obj):
            dec = _from_xarray_factors(obj, None, where)
        else:
            dec = _from_factors(obj, L=L, where=where)
    else:
        raise DataError(
            f"{where}: expected an sdf.Result, a list of factor matrices, a CPDTensor/"
            f"TuckerTensor, an xarray.Dataset of factors or a decomposition result; got "
            f"{type(obj).__name__}")
    if data is not None:
        dec = _attach_data(dec, as_data(data))
    return dec


def _is_result(obj: object) -> bool:
    """An ``sdf.Result`` (or what reads like one: a model and a ``factors(term)`` method)."""
    return hasattr(obj, "model") and callable(getattr(obj, "factors", None))


def _from_model_result(obj: Any, term: str | None, where: str) -> FactorView:
    """Any other object with ``.factors`` (and optionally ``.core``, ``.L``)."""
    factors = obj.factors
    if _is_xarray(factors, "Dataset"):
        return _from_dataset(factors, where)
    return _from_factors(list(factors), core=getattr(obj, "core", None),
                         L=getattr(obj, "L", None), where=where)


def as_data(data: object) -> Tensor:
    """The data as an ``sdf.tensors.Tensor`` (DataArray dims/coords kept)."""
    from sdf.tensors import as_tensor

    return as_tensor(data, name="data")


def require_data(dec: FactorView, where: str) -> Tensor:
    if dec.data is None:
        raise DataError(f"{where}: no data set to compare with; pass data= (the array the "
                        "decomposition approximates) or an sdf.Result")
    return dec.data


def data_and_model(dec: FactorView, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Dense data (NaN where missing) and model (NaN at the same entries)."""
    T = require_data(dec, where)
    D = T.to_dense()
    entries = T.known_entries()
    if entries is not None:
        subs = entries.subs
        values = dec.values_at(subs)
        M = np.full(T.shape, np.nan, dtype=np.result_type(values, float))
        M[tuple(subs.T)] = values
    else:
        M = dec.full()
    return D, M


def check_mode(mode: object, ndim: int, where: str) -> int:
    if not (isinstance(mode, (int, np.integer)) and -ndim <= mode < ndim):
        raise ModelError(f"{where}: mode must be an int in [0, {ndim}), got {mode!r}")
    return int(mode) % ndim


def is_categorical(coord: np.ndarray) -> bool:
    """Coordinates that are labels (strings, objects), not positions."""
    return np.asarray(coord).dtype.kind in "OUS"


def label_runs(items: object, labels: Sequence[str] | None, what: str
               ) -> list[tuple[str, object]]:
    """``[(label, item), ...]`` from one item, a sequence or a mapping label -> item."""
    if isinstance(items, Mapping):
        pairs = [(str(k), v) for k, v in items.items()]
    elif isinstance(items, (list, tuple)):
        pairs = [(f"{what} {k}", v) for k, v in enumerate(items)]
    else:
        pairs = [("", items)]
    if labels is not None:
        if len(labels) != len(pairs):
            raise ModelError(f"labels: {len(labels)} labels given for {len(pairs)} {what}s")
        pairs = [(str(lab), v) for lab, (_, v) in zip(labels, pairs)]
    return pairs
