"""Factor plots: one panel per mode, components against the mode's coordinates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sdf.errors import ModelError
from sdf.viz._common import (
    FactorView,
    _is_result,
    as_decomposition,
    component_color,
    coupled_view,
    is_categorical,
    new_figure,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

__all__ = ["ComplexParts", "FactorPlot", "align_signs", "normalize_columns", "plot_factors"]

_STYLES = ("-", "--", ":", "-.")

#: How :func:`plot_factors` draws complex factors: modulus and phase (radians), or real
#: and imaginary parts, in two rows of panels.
ComplexParts = Literal["magnitude-phase", "real-imag"]
_PART_LABELS = {"magnitude-phase": ("magnitude |a|", "phase arg(a) [rad]"),
                "real-imag": ("real part Re(a)", "imaginary part Im(a)")}


@dataclass
class FactorPlot:
    """What :func:`plot_factors` drew.

    Attributes
    ----------
    figure : Figure
    axes : list of list of Axes
        ``axes[m][n]``: model ``m``, mode ``n`` (core panels not included).
    artists : list of list of list
        ``artists[m][n][r]``: the ``Line2D`` (or ``BarContainer`` for a categorical mode)
        of column ``r`` of factor ``n`` of model ``m``.
    factors : list of list of ndarray
        The values drawn (after normalisation, sign alignment and component matching),
        ``factors[m][n]`` of shape (I_n, R_n).
    core_axes, core_images : list of (Axes or None), list of (AxesImage or None)
        Per model, the core heatmap (Tucker/LMLRA models only; the modulus of a complex
        core).
    cores : list of (ndarray or None)
        Per model, the core drawn (compensated for normalisation and sign flips).
    complex_parts : {"magnitude-phase", "real-imag"} or None
        How complex factors were drawn (None when every factor is real). Then ``axes``
        and ``artists`` hold the first part (magnitude, or real part), ...
    second_axes, second_artists : list of list
        ... and these the second one (phase, or imaginary part), in a row of panels
        under the first; empty lists for real factors.
    """

    figure: Figure
    axes: list[list[Axes]]
    artists: list[list[list[Any]]]
    factors: list[list[np.ndarray]]
    core_axes: list[Axes | None]
    core_images: list[AxesImage | None]
    cores: list[np.ndarray | None]
    complex_parts: ComplexParts | None = None
    second_axes: list[list[Axes]] = field(default_factory=list)
    second_artists: list[list[list[Any]]] = field(default_factory=list)


# ----------------------------------------------------------------------------- transforms
def normalize_columns(source: object, term: str | None = None) -> FactorView:
    """Scale every factor column to unit 2-norm; an LMLRA/BTD core absorbs the scales.

    A CPD or LL1 model's scales are dropped (the plot shows shapes, not sizes).

    Parameters
    ----------
    source : FactorView, Result, sdf.models.Decomposition or anything else
        :func:`sdf.viz._common.as_decomposition` accepts (factor lists, CPDTensor...).
    term : str, optional
        For a Result or a Decomposition: which term (default: the first data term).

    Returns
    -------
    FactorView
        The normalised factors (and core) in the figures' common form; ``source`` is
        not modified.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models import lmlra
    >>> rng = np.random.default_rng(0)
    >>> view = normalize_columns(lmlra(rng.standard_normal((5, 6, 7)), (2, 2, 2)))
    >>> view.kind, [round(float(np.linalg.norm(A[:, 0])), 12) for A in view.factors]
    ('LMLRA', [1.0, 1.0, 1.0])
    """
    dec = _view(source, term)
    norms = [np.linalg.norm(A, axis=0) for A in dec.factors]
    norms = [np.where(s > 0, s, 1.0) for s in norms]
    factors = [A / s for A, s in zip(dec.factors, norms)]
    return _compensate(dec, factors, norms)


def _view(source: object, term: str | None) -> FactorView:
    if isinstance(source, FactorView):
        if term is not None:
            raise ModelError(f"term={term!r} needs an sdf.Result or a Decomposition, got a "
                             "FactorView")
        return source
    return as_decomposition(source, term)


def _compensate(dec: FactorView, factors: list[np.ndarray],
                scales: list[np.ndarray]) -> FactorView:
    """New factors ``A_n / scales_n`` (columnwise), with the cores multiplied back."""
    core, cores = dec.core, dec.cores
    if core is not None:
        core = _scale_core(core, scales)
    if cores is not None:
        cores = [_scale_core(S, [s[g == b] for s, g in zip(scales, dec.groups)])
                 for b, S in enumerate(cores)]
    return replace(dec, factors=factors, core=core, cores=cores)


def _scale_core(S: np.ndarray, scales: Sequence[np.ndarray]) -> np.ndarray:
    out = np.array(S, dtype=np.result_type(S, *scales, float))
    for n, s in enumerate(scales):
        shape = [1] * out.ndim
        shape[n] = -1
        out = out * s.reshape(shape)
    return out


def _peak_sign(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sign of the largest-magnitude entry of every column, and its share of the norm."""
    idx = np.argmax(np.abs(A), axis=0)
    peak = A[idx, np.arange(A.shape[1])]
    norms = np.linalg.norm(A, axis=0)
    share = np.abs(peak) / np.where(norms > 0, norms, 1.0)
    return np.where(peak < 0, -1.0, 1.0), share


def _peak_phase(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phase ``p / |p|`` of the largest-modulus entry ``p`` of every column (1 for a zero
    column), and its share of the norm."""
    idx = np.argmax(np.abs(A), axis=0)
    peak = A[idx, np.arange(A.shape[1])]
    norms = np.linalg.norm(A, axis=0)
    share = np.abs(peak) / np.where(norms > 0, norms, 1.0)
    modulus = np.abs(peak)
    return np.where(modulus > 0, peak / np.where(modulus > 0, modulus, 1.0), 1.0), share


def _cpd_phases(phases: Sequence[np.ndarray], shares: Sequence[np.ndarray]
                ) -> list[np.ndarray]:
    """Unit multipliers per mode and component that turn every column's peak real
    positive, except, per component, the column whose peak is least dominant: it takes the
    product of the others' phases, so that the component is unchanged."""
    mult = np.array(phases, dtype=complex).conj()
    cols = np.arange(mult.shape[1])
    keep = np.argmin(np.array(shares), axis=0)
    mult[keep, cols] = 1.0
    mult[keep, cols] = np.prod(mult, axis=0).conj()
    return list(mult)


def _complex_phases(dec: FactorView) -> list[np.ndarray]:
    """Unit multipliers of the columns that leave the model unchanged (the cores of LMLRA
    and BTD models take them back) and make the columns' peaks real positive."""
    phases, shares = zip(*(_peak_phase(A) for A in dec.factors))
    if dec.kind in ("LMLRA", "BTD"):
        return [p.conj() for p in phases]
    if dec.kind == "CPD":
        return _cpd_phases(phases, shares)
    R = max(int(g.max()) for g in dec.groups) + 1
    wide = [n for n, A in enumerate(dec.factors) if A.shape[1] != R]
    if not wide:  # every L_r = 1: the model is a CPD
        return _cpd_phases(phases, shares)
    mult = [np.ones(A.shape[1], dtype=complex) for A in dec.factors]
    for n in (n for n in range(dec.ndim) if n not in wide):
        mult[n] = phases[n].conj()  # c_r's phase moves into the A columns of block r
        mult[wide[0]] = mult[wide[0]] * phases[n][dec.groups[wide[0]]]
    pair = _cpd_phases([phases[n] * mult[n] for n in wide], [shares[n] for n in wide])
    for k, n in enumerate(wide):
        mult[n] = mult[n] * pair[k]
    return mult


def align_signs(source: object, term: str | None = None) -> FactorView:
    """Flip factor columns so the largest-magnitude entry of each is positive.

    The model is unchanged: in a CPD, columns of a component are flipped in pairs (when an
    odd number are negative, the column whose peak is least dominant stays negative); in
    an LMLRA or BTD model the core absorbs every flip; in an LL1 model a negative ``c_r``
    is flipped together with the ``A`` columns of block ``r``, then ``A``/``B`` columns
    in pairs. Complex factors are rotated instead, by unit-modulus phases, so that the
    largest-modulus entry of each column is real positive; in a CPD the column whose peak
    is least dominant takes the product of the other columns' phases (a component is
    only defined up to phases whose product is 1).

    Parameters
    ----------
    source : FactorView, Result, sdf.models.Decomposition or anything else
        :func:`sdf.viz._common.as_decomposition` accepts.
    term : str, optional
        For a Result or a Decomposition: which term (default: the first data term).

    Returns
    -------
    FactorView
        ``view.full()`` equals the source's model; ``source`` is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models import cpd
    >>> rng = np.random.default_rng(0)
    >>> T = np.einsum("ir,jr,kr->ijk", *(rng.standard_normal((n, 2)) for n in (4, 5, 6)))
    >>> dec = cpd(T, 2, seed=0)
    >>> view = align_signs(dec)
    >>> view.kind, bool(np.allclose(view.full(), np.einsum("ir,jr,kr->ijk", *dec.factors)))
    ('CPD', True)
    """
    dec = _view(source, term)
    if dec.is_complex:
        mult = _complex_phases(dec)
        return _compensate(dec, [A * m for A, m in zip(dec.factors, mult)],
                           [m.conj() for m in mult])
    signs, shares = zip(*(_peak_sign(A) for A in dec.factors))
    if dec.kind in ("LMLRA", "BTD"):
        flips = [s.copy() for s in signs]
    elif dec.term_modes is not None:
        flips = _coupled_flips(signs, shares, dec.term_modes)
    elif dec.kind == "CPD":
        flips = _cpd_flips(signs, shares)
    else:
        flips = _ll1_flips(dec, signs, shares)
    factors = [A * f for A, f in zip(dec.factors, flips)]
    return _compensate(dec, factors, flips)


def _cpd_flips(signs: Sequence[np.ndarray], shares: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per component, flip the negative columns in pairs, most dominant peaks first."""
    flips = [np.ones(len(s)) for s in signs]
    for r in range(len(signs[0])):
        neg = [n for n in range(len(signs)) if signs[n][r] < 0]
        neg.sort(key=lambda n: -shares[n][r])
        for n in neg[: len(neg) - len(neg) % 2]:
            flips[n][r] = -1.0
    return flips


#: Coupled views with more factors than this keep their signs (2**n sign patterns tried).
_MAX_COUPLED_FACTORS = 14


def _coupled_flips(signs: Sequence[np.ndarray], shares: Sequence[np.ndarray],
                   term_modes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Per component, the flips that keep every coupled term unchanged (an even number
    among each term's factors) and turn the most peak weight positive."""
    F = len(signs)
    flips = [np.ones(len(s)) for s in signs]
    if F > _MAX_COUPLED_FACTORS:
        return flips
    patterns = 1.0 - 2.0 * ((np.arange(2**F)[:, None] >> np.arange(F)) & 1)  # (2**F, F)
    keeps = np.ones(len(patterns), dtype=bool)
    for modes in term_modes:
        keeps &= np.prod(patterns[:, list(modes)], axis=1) > 0
    allowed = patterns[keeps]
    for r in range(len(signs[0])):
        gain = allowed @ np.array([signs[f][r] * shares[f][r] for f in range(F)])
        best = allowed[int(np.argmax(gain))]
        for f in range(F):
            flips[f][r] = best[f]
    return flips


def _ll1_flips(dec: FactorView, signs: Sequence[np.ndarray],
               shares: Sequence[np.ndarray]) -> list[np.ndarray]:
    R = max(int(g.max()) for g in dec.groups) + 1
    wide = [n for n, A in enumerate(dec.factors) if A.shape[1] != R]
    if not wide:  # every L_r = 1: the model is a CPD
        return _cpd_flips(signs, shares)
    narrow = [n for n in range(dec.ndim) if n not in wide]
    flips = [np.ones(A.shape[1]) for A in dec.factors]
    for n in narrow:
        for r in np.flatnonzero(signs[n] < 0):
            flips[n][r] = -1.0
            flips[wide[0]][dec.groups[wide[0]] == r] *= -1.0
    wide_signs = [signs[n] * flips[n] for n in wide]
    pair = _cpd_flips(wide_signs, [shares[n] for n in wide])
    for k, n in enumerate(wide):
        flips[n] = flips[n] * pair[k]
    return flips


def _match_components(ref: FactorView, dec: FactorView) -> FactorView:
    """Reorder the components of a CPD to best match ``ref`` (congruence, Hungarian), then
    flip column pairs (complex: rotate columns by phases whose product is 1) so that each
    column points the way the reference's does."""
    if (ref.kind != "CPD" or dec.kind != "CPD" or ref.shape != dec.shape
            or ref.factors[0].shape[1] != dec.factors[0].shape[1]):
        return dec
    from scipy.optimize import linear_sum_assignment

    score = np.ones((ref.factors[0].shape[1],) * 2)
    for A, B in zip(ref.factors, dec.factors):
        na = np.linalg.norm(A, axis=0)
        nb = np.linalg.norm(B, axis=0)
        score = score * np.abs((A / np.where(na > 0, na, 1)).conj().T
                               @ (B / np.where(nb > 0, nb, 1)))
    _, perm = linear_sum_assignment(-score)
    factors = [B[:, perm] for B in dec.factors]
    cos = [np.einsum("ir,ir->r", A.conj(), B) for A, B in zip(ref.factors, factors)]
    if dec.is_complex or ref.is_complex:
        unit = [np.where(np.abs(c) > 0, c / np.where(np.abs(c) > 0, np.abs(c), 1.0), 1.0)
                for c in cos]
        mult = _cpd_phases(unit, [np.abs(c) for c in cos])
        return replace(dec, factors=[B * m for B, m in zip(factors, mult)])
    flips = _cpd_flips([np.where(c < 0, -1.0, 1.0) for c in cos], [np.abs(c) for c in cos])
    return replace(dec, factors=[B * f for B, f in zip(factors, flips)])


# ----------------------------------------------------------------------------- drawing
def _draw_mode(ax: Axes, dec: FactorView, n: int, values: np.ndarray) -> list[Any]:
    coord = dec.coord(n)
    groups = dec.groups[n]
    within = _position_in_group(groups)
    cat = is_categorical(coord)
    R = values.shape[1]
    artists: list[Any] = []
    pos = np.arange(values.shape[0])
    width = 0.8 / max(R, 1)
    for r in range(R):
        color = component_color(groups[r])
        label = _column_label(dec, n, r, within[r])
        if cat:
            artists.append(ax.bar(pos + (r - (R - 1) / 2) * width, values[:, r], width,
                                  color=color, label=label))
        else:
            (line,) = ax.plot(coord, values[:, r], color=color, label=label,
                              linestyle=_STYLES[within[r] % len(_STYLES)])
            artists.append(line)
    if cat:
        _category_ticks(ax, [str(c) for c in coord])
    ax.axhline(0.0, color="0.7", linewidth=0.6, zorder=0)
    ax.set_xlabel(dec.axis_label(n))
    return artists


#: At most this many category labels per panel; more are thinned to every k-th.
_MAX_CATEGORY_TICKS = 24


def _category_ticks(ax: Axes, labels: list[str]) -> None:
    """Tick labels that do not overlap: every k-th of many, rotated when long or many."""
    step = max(1, -(-len(labels) // _MAX_CATEGORY_TICKS))
    shown = np.arange(0, len(labels), step)
    longest = max((len(t) for t in labels), default=0)
    rotation = 90 if len(shown) > 8 or longest * len(shown) > 40 else 0
    ax.set_xticks(shown, [labels[i] for i in shown], rotation=rotation, fontsize="small")
    if step > 1:
        ax.set_xticks(np.arange(len(labels)), minor=True)


def _position_in_group(groups: np.ndarray) -> np.ndarray:
    out = np.zeros(len(groups), dtype=int)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = np.arange(len(idx))
    return out


def _column_label(dec: FactorView, n: int, r: int, within: int) -> str:
    if dec.kind == "CPD":
        return f"component {r}"
    if dec.kind == "LMLRA":
        return f"column {r}"
    return f"block {dec.groups[n][r]}" + (f".{within}" if within else "")


def _draw_core(ax: Axes, core: np.ndarray) -> AxesImage:
    M = core.reshape(core.shape[0], -1)
    vmax = float(np.max(np.abs(M))) or 1.0
    if np.iscomplexobj(M):
        im = ax.imshow(np.abs(M), cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto",
                       interpolation="nearest")
    else:
        im = ax.imshow(M, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto",
                       interpolation="nearest")
    name = "|core|" if np.iscomplexobj(M) else "core"
    ax.set_title(name + (f" {core.shape}, mode-0 unfolding" if core.ndim > 2 else ""))
    ax.set_ylabel("mode-0 column")
    ax.set_xlabel("other modes' columns" if core.ndim > 2 else "mode-1 column")
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return im


def _split_parts(values: np.ndarray, parts: ComplexParts) -> tuple[np.ndarray, np.ndarray]:
    """The two real arrays drawn for complex (or real) ``values``."""
    if parts == "magnitude-phase":
        return np.abs(values), np.angle(values)
    return values.real, np.imag(values)


def _is_decomposition(obj: object) -> bool:
    """A fitted decomposition (a Result, an sdf.models result, a TensorLy CPTensor...),
    as opposed to a factor matrix or a BTD block."""
    return _is_result(obj) or (hasattr(obj, "factors")
                               and not isinstance(obj, (np.ndarray, list, tuple)))


def _refuse_unlabelled_list(source: object) -> None:
    if isinstance(source, (list, tuple)) and len(source) > 1 \
            and all(_is_decomposition(d) for d in source):
        hint = ", ".join(f"'model {k}': d{k}" for k in range(min(len(source), 3)))
        raise ModelError(f"plot_factors: got a {type(source).__name__} of {len(source)} "
                         "decompositions; to compare several models pass a mapping "
                         f"{{label: decomposition}}, e.g. {{{hint}}}")


def _tensorly_cp(source: object) -> object:
    """TensorLy's ``CPTensor`` or a ``(weights, factors)`` tuple -> the weighted factors."""
    weights = factors = None
    if hasattr(source, "weights") and hasattr(source, "factors") \
            and not hasattr(source, "result"):
        weights, factors = getattr(source, "weights"), getattr(source, "factors")
    elif (isinstance(source, tuple) and len(source) == 2 and np.ndim(source[0]) == 1
          and isinstance(source[1], (list, tuple)) and len(source[1]) >= 2
          and all(np.ndim(A) == 2 for A in source[1])):
        weights, factors = source
    if factors is None:
        return source
    mats = [np.asarray(A) for A in factors]
    if weights is not None and np.size(weights):
        mats[0] = mats[0] * np.asarray(weights)[None, :]
    return mats


def _prepare(sources: list[tuple[str, object]], term: str | None, normalize: bool,
             signs: bool, L: int | Sequence[int] | None) -> list[FactorView]:
    decs: list[FactorView] = []
    for k, (label, src) in enumerate(sources):
        _refuse_unlabelled_list(src)
        src = _tensorly_cp(src)
        coupled = None
        if term is None:
            result = src if _is_result(src) else getattr(src, "result", None)
            coupled = coupled_view(result) if _is_result(result) else None
        dec = coupled or as_decomposition(src, term, L=L,
                                          where=f"model {label!r}" if label else "source")
        if normalize:
            dec = normalize_columns(dec)
        if signs:
            dec = align_signs(dec)
        if decs:
            dec = _match_components(decs[0], dec)
            if dec.dims is None and decs[0].dims is not None and dec.shape == decs[0].shape:
                dec = replace(dec, dims=decs[0].dims, coords=decs[0].coords)
        decs.append(dec)
    if len({d.ndim for d in decs}) > 1:
        raise ModelError("plot_factors: the models compared have different numbers of "
                         f"modes {[d.ndim for d in decs]}")
    return decs


def plot_factors(
    source: object,
    *,
    term: str | None = None,
    normalize: bool = True,
    align: bool = True,
    L: int | Sequence[int] | None = None,
    complex_parts: ComplexParts = "magnitude-phase",
    fig: Figure | None = None,
) -> FactorPlot:
    """Plot the factors of a decomposition: one panel per mode.

    Component ``r`` has the same colour (``"C{r}"``) in every panel; the x-axis shows the
    mode's coordinates and is labelled with its dim name and the coordinate's ``units``
    attribute (``"emission (nm)"``); without dims, the panels are named by the model's
    names for the factors (the Variables' names, ``fuse``/``cmtf`` labels), and "mode n"
    only when nothing names them. Many string coordinates are thinned and rotated so that
    no tick labels overlap. Modes whose coordinates are strings get grouped bars. A Tucker
    (LMLRA) model gets an extra panel with its core as a heatmap (mode-0 unfolding); the
    columns of BTD and LL1 blocks share the block's colour, told apart by line style.
    Complex factors get two rows of panels per model, labelled: the modulus ``|a|`` over
    the phase ``arg(a)`` in radians (default), or the real over the imaginary part; their
    columns are rotated so that each column's largest entry is real positive (see
    :func:`align_signs`).

    Parameters
    ----------
    source : Result, decomposition, sequence of factors, or mapping of str to any of these
        Anything :func:`sdf.viz._common.as_decomposition` accepts: an ``sdf.Result``,
        a list of factor matrices (``(U_0, ..., S)`` tuples for BTD blocks), a
        ``CPDTensor``/``TuckerTensor``, an ``xarray.Dataset`` of factors, an
        ``sdf.models`` result, TensorLy's ``CPTensor`` or a ``(weights, factors)`` tuple.
        A mapping ``{label: source}`` draws several models side by side (one row each,
        e.g. constrained against unconstrained); the components of later CPDs are
        reordered to match the first. (A list of decompositions is refused with that
        hint.)
    term : str, optional
        For Results: which term's factors. Default: every factor of every data term when
        the result couples several CPDs (``fuse``, ``cmtf``; sign flips then keep every
        term unchanged), else the first data term.
    normalize : bool, default True
        Scale every column to unit norm (a core absorbs the scales).
    align : bool, default True
        Flip columns so that their largest-magnitude entry is positive, in pairs that
        leave the model unchanged (see :func:`align_signs`).
    L : int or sequence of int, optional
        Block sizes when ``source`` holds plain LL1 factors.
    complex_parts : {"magnitude-phase", "real-imag"}, default "magnitude-phase"
        What the two rows of a complex model show (ignored when every factor is real).
    fig : Figure, optional
        Figure to draw on (new pyplot figure by default).

    Returns
    -------
    FactorPlot
        The figure, the axes ``[model][mode]``, the artist of every column and the values
        drawn.

    Examples
    --------
    >>> import io, matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sdf.viz import plot_factors
    >>> rng = np.random.default_rng(0)
    >>> fp = plot_factors([rng.standard_normal((n, 3)) for n in (10, 12, 14)])
    >>> len(fp.axes[0]), len(fp.artists[0][0])
    (3, 3)
    >>> fp.figure.savefig(io.BytesIO(), format="png")
    >>> Z = [rng.standard_normal((n, 2)) * np.exp(1j * rng.standard_normal((n, 2)))
    ...      for n in (10, 12)]
    >>> fp = plot_factors(Z)
    >>> fp.complex_parts, fp.axes[0][0].get_ylabel(), fp.second_axes[0][0].get_ylabel()
    ('magnitude-phase', 'magnitude |a|', 'phase arg(a) [rad]')
    """
    if complex_parts not in _PART_LABELS:
        raise ModelError(f"plot_factors: complex_parts must be one of "
                         f"{sorted(_PART_LABELS)}, got {complex_parts!r}")
    source = _tensorly_cp(source)  # a CPTensor reads as a Mapping
    sources: list[tuple[str, object]] = [("", source)]
    if isinstance(source, Mapping) and not type(source).__module__.startswith("xarray"):
        sources = [(str(k), v) for k, v in source.items()]
    if not sources:
        raise ModelError("plot_factors: the mapping of models to compare is empty")
    decs = _prepare(sources, term, normalize, align, L)
    N = decs[0].ndim
    has_core = any(d.core is not None for d in decs)
    parts: ComplexParts | None = complex_parts if any(d.is_complex for d in decs) else None
    rows = 2 if parts is not None else 1  # per model
    fig, grid = new_figure(fig, rows * len(decs), N + has_core,
                           size=(3.2 * (N + has_core), 2.6 * rows * len(decs)))
    axes, artists, core_axes, images = [], [], [], []
    second_axes, second_artists = [], []
    for m, ((label, _), dec) in enumerate(zip(sources, decs)):
        row = list(grid[rows * m, :N])
        drawn = ([_split_parts(A, parts) for A in dec.factors] if parts is not None
                 else [(A, A) for A in dec.factors])
        artists.append([_draw_mode(ax, dec, n, first) for n, (ax, (first, _)) in
                        enumerate(zip(row, drawn))])
        for n, ax in enumerate(row):
            ax.set_title(f"{label}: {dec.mode_name(n)}" if label else dec.mode_name(n))
        row[0].legend(fontsize="small", loc="best")
        row[0].set_ylabel("loading (unit norm)" if normalize else "loading")
        axes.append(row)
        if parts is not None:
            below = list(grid[rows * m + 1, :N])
            second_artists.append([_draw_mode(ax, dec, n, second) for n, (ax, (_, second))
                                   in enumerate(zip(below, drawn))])
            row[0].set_ylabel(_PART_LABELS[parts][0])
            below[0].set_ylabel(_PART_LABELS[parts][1])
            if parts == "magnitude-phase":
                for ax in below:
                    ax.set_ylim(-1.1 * np.pi, 1.1 * np.pi)
                    ax.set_yticks([-np.pi, 0.0, np.pi], ["-π", "0", "π"])
            for ax in row:
                ax.set_xlabel("")
            second_axes.append(below)
            if has_core:
                grid[rows * m + 1, N].set_axis_off()
        if has_core:
            cax = grid[rows * m, N]
            core_axes.append(cax if dec.core is not None else None)
            images.append(_draw_core(cax, dec.core) if dec.core is not None else None)
            if dec.core is None:
                cax.set_axis_off()
        else:
            core_axes.append(None)
            images.append(None)
    return FactorPlot(fig, axes, artists, [d.factors for d in decs], core_axes, images,
                      [d.core for d in decs], parts, second_axes, second_artists)
