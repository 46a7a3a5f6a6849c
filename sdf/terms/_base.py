"""The term contract: what every factorization and regularizer gives the engine.

A term reads the values of its input expressions (factors, cores) and contributes
``w/2 * ||r||^2`` to the objective, ``r`` being its residual (model minus data over the
known entries, or the regularizer's residual). For one point it builds a
:class:`TermState` that answers, without ever forming a Jacobian ``J`` of ``r``:

``fval``
    ``||r||^2 / 2`` (unweighted);
``gradient()``
    ``J^T r`` split per input;
``gn_product(dvalues)``
    ``J^T J dv`` split per input (the Gauss-Newton Gramian product); optionally
    ``gn_product_flat(dflat)``, the same on the inputs' directions as one flat vector;
``blocks()``
    per input, a block-diagonal approximation of ``J^T J`` for the preconditioner.

Blocks are ``None`` (no information), a float ``s`` (``s * I``), an ``(R, R)`` array
shared by every row of an ``(I, R)`` input, or an ``(I, R, R)`` array with one block per
row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import copy
import math

import numpy as np

from sdf._keywords import parameters_of, takes_any_keyword, unknown_keywords
from sdf.errors import DataError, ModelError
from sdf.losses import Loss, LossLike, as_loss
from sdf.numerics import SCALE_THRESHOLD, ldexp
from sdf.expr import Expr, as_expr
from sdf.tensors import IncompleteTensor, KnownEntries, Tensor, as_tensor

__all__ = ["Block", "DataTerm", "Findings", "LossData", "RefBuilder", "Structure", "Term",
           "TermScale", "TermState"]


Block = Any  # None | float | ndarray (R, R) | ndarray (I, R, R)
#: ``refs(value, path)``: the expressions a dict entry's references name (see sdf.spec).
RefBuilder = Callable[[Any, str], list[Expr]]
#: What the checks after a fit found: (warning class, message) pairs.
Findings = list[tuple[type[Warning], str]]


@dataclass(frozen=True)
class Structure:
    """How a data term's values decompose its data, in a form figures know how to draw.

    ``kind`` is ``"CPD"`` (``factors``), ``"LL1"`` (``factors`` and the group sizes
    ``L``), ``"LMLRA"`` (``factors`` and ``core``) or ``"BTD"`` (``blocks``, each a list of
    factors then the core).
    """

    kind: Literal["CPD", "LMLRA", "BTD", "LL1"]
    factors: list[np.ndarray]
    core: np.ndarray | None = None
    blocks: list[list[np.ndarray]] | None = None
    L: tuple[int, ...] | None = None


class TermState:
    """A term evaluated at one point (see the module docstring).

    ``block_exponents``, when set, says that ``blocks()[k]`` is to be read times
    ``2**block_exponents[k]`` (states computed in scaled units keep their blocks in range).
    """

    fval: float
    block_exponents: list[int] | None = None
    #: Whether a Gauss-Newton product reads the data (masked or sampled entries), so that
    #: it costs about as much as a gradient; the solver then keeps its inner CG short.
    products_read_data: bool = False

    def gradient(self) -> list[np.ndarray]:
        raise NotImplementedError

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def gn_product_flat(self, dflat: np.ndarray) -> np.ndarray | None:
        """``J^T J dv`` on real inputs with the directions raveled and concatenated in
        input order, as a new flat array; None when the state has no such form (the
        engine then calls :meth:`gn_product`). A fast path for the inner CG loop."""
        return None

    def blocks(self) -> list[Block]:
        return [None] * len(self.gradient())


_TermT = TypeVar("_TermT", bound="Term")


class Term:
    """Base class of terms.

    Parameters
    ----------
    inputs : sequence of Expr or array_like
        The expressions the term reads; arrays become constants.
    weight : float, optional
        Absolute weight ``w`` in ``w/2 * ||r||^2``.
    relweight : float, optional
        Relative weight, normalised over the model (see :class:`sdf.Model`). At most one
        of ``weight`` and ``relweight`` may be given; by default ``relweight=1``.
    """

    kind: str = "term"
    is_data_term: bool = False
    #: Whether the term takes complex data and inputs (see :mod:`sdf.problem` for the
    #: conventions); a term that does not is refused them by :meth:`sdf.Model.check`.
    complex_values: ClassVar[bool] = False
    #: Key naming the term in the dictionary language (``{"data": T, "cpd": [...]}``).
    spec_key: ClassVar[str] = ""
    #: Keys its dictionary form takes besides the data, the weights and ``spec_key``.
    spec_options: ClassVar[tuple[str, ...]] = ()

    def __new__(cls: type[_TermT], *args: Any, **kwargs: Any) -> _TermT:
        # A misspelt keyword (relweigth=) gets the closest name, not Python's TypeError.
        init = cls.__init__
        unknown = set(kwargs) - set(parameters_of(init))
        if unknown and not takes_any_keyword(init):
            raise ModelError(unknown_keywords(
                cls.__name__, unknown, {f"{cls.__name__}'s parameters": parameters_of(init)},
                noun="argument"))
        return super().__new__(cls)

    def __init__(
        self,
        inputs: Sequence[Any],
        weight: float | None = None,
        relweight: float | None = None,
    ) -> None:
        self.inputs: tuple[Expr, ...] = tuple(
            as_expr(x, where=f"{self.kind} input {i}") for i, x in enumerate(inputs)
        )
        if weight is not None and relweight is not None:
            raise ModelError(f"{self.kind}: give weight or relweight, not both")
        for label, w in (("weight", weight), ("relweight", relweight)):
            is_number = isinstance(w, (int, float, np.integer, np.floating)) and not isinstance(w, bool)
            if w is not None and not (is_number and np.isfinite(w) and w >= 0):
                raise ModelError(f"{self.kind}: {label} must be a finite number >= 0, got {w!r}")
        self.weight = None if weight is None else float(weight)
        self.relweight = None if relweight is None else float(relweight)
        if self.weight is None and self.relweight is None:
            self.relweight = 1.0

    @property
    def n_entries(self) -> int:
        """Number of residual entries (known data entries, or regularized entries)."""
        raise NotImplementedError

    @property
    def data_norm(self) -> float:
        """Norm used to turn the residual norm into a relative error (NaN if none)."""
        return float("nan")

    def model_log2_norm(self, values: Sequence[np.ndarray]) -> float | None:
        """``log2 ||M||``, the norm of the term's model at ``values`` (``-inf`` for a zero
        model; None: not available).

        Used to rescale a start far from the data's scale (:func:`sdf.fit.rescaled_start`);
        computed from normalised inputs, so that it holds whatever the scales.
        """
        return None

    def data_log2_norm(self) -> float:
        """``log2`` of :attr:`data_norm` (``-inf`` for zero data, NaN without data)."""
        norm = self.data_norm
        return math.log2(norm) if norm > 0 else (-math.inf if norm == 0 else math.nan)

    def scale_groups(self) -> list[list[int]]:
        """Input positions whose product makes each summand of the model (the model is
        linear in each input of a group); a multilinear term scales through them."""
        return [list(range(len(self.inputs)))]

    def check(self, where: str) -> None:
        """Raise ModelError, prefixed by ``where``, if the term's pieces don't fit."""

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        raise NotImplementedError

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        """``||r||^2 / 2`` recomputed without cancellation where ``fval`` may have lost it.

        Terms that evaluate ``f`` from norms and inner products (never forming the
        residual) lose its relative accuracy once the fit is within ``sqrt(eps)`` of the
        data; results are reported with this value. The default returns ``fval``.
        """
        return fval

    def iterate_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        """``fval`` as the solvers' iterations read it: :meth:`exact_fval` where it is no
        measure of the fit, else ``fval`` itself.

        The default recomputes an ``fval`` that cancelled to zero (or below, clipped): an
        exact fit only if the residual says so. Terms that know the size of the terms
        their expansion sums also recompute where the model's own terms cancel (see
        :class:`~sdf.terms.CPD`). Near an ordinary exact fit the lost digits are below
        the solvers' rounding floor, where steps are judged by the gradient.
        """
        return self.exact_fval(values, fval) if fval <= 0.0 else fval

    def describe(self) -> str:
        """One line for Model.summary()."""
        return self.kind

    # ------------------------------------------------------------ self-description
    @classmethod
    def from_spec(cls, entry: Mapping[str, Any], refs: RefBuilder, where: str) -> Term:
        """Build the term from its dictionary form (``entry[cls.spec_key]`` and options).

        The default reads a list of references as the term's inputs.
        """
        weights = {k: entry[k] for k in ("weight", "relweight") if k in entry}
        options = {k: entry[k] for k in cls.spec_options if k in entry}
        make: Any = cls  # a regularizer's constructor takes (inputs, weights, options)
        return make(refs(entry[cls.spec_key], f"{where}[{cls.spec_key!r}]"),
                    **weights, **options)

    def spec_entry(self, ref: Callable[[Expr], Any]) -> dict[str, Any]:
        """The term's dictionary form; ``ref(expr)`` names an expression."""
        entry: dict[str, Any] = {self.spec_key: [ref(e) for e in self.inputs]}
        entry.update(self.spec_option_values())
        if self.weight is not None:
            entry["weight"] = self.weight
        else:
            entry["relweight"] = self.relweight
        return entry

    def spec_option_values(self) -> dict[str, Any]:
        """Values of :attr:`spec_options` to write in the dictionary form."""
        return {}

    def check_result(self, name: str, values: Sequence[np.ndarray],
                     start: Sequence[np.ndarray], relerr: float) -> Findings:
        """What is suspicious in this term's fitted ``values`` (the start values, given when
        the relative error exceeds 0.5, and the relative error help tell why); called after
        every fit. The default finds nothing."""
        return []

    def structure(self, values: Sequence[np.ndarray]) -> Structure | None:
        """The term's ``values`` (its inputs' values) as a :class:`Structure` for the
        figures; None for terms that do not decompose a data set."""
        return None

    def mode_factors(self) -> list[Expr] | None:
        """The inputs that are factor matrices of the data's modes, in mode order (for
        ``Result.to_xarray`` and the figures); None when the term has no such factors."""
        return None

    def dims(self) -> tuple[str, ...] | None:
        """Names of the data's modes, when the data came with them."""
        return None

    def coords(self) -> dict[str, np.ndarray] | None:
        """Coordinates of the data's modes, when the data came with them."""
        return None


class DataTerm(Term):
    """Base class of the terms that explain a data set (CPD, LMLRA, BTD, LL1, ...).

    Holds the data as a :class:`sdf.tensors.Tensor` (anything ``as_tensor`` accepts is
    converted, with the term's kind naming it in errors) and answers what every data term
    shares: the number of known entries, the data's norm (computed once by the tensor,
    whose values never change), the loss (:mod:`sdf.losses`; Gaussian by default) and the
    one-line description.
    """

    is_data_term = True
    spec_options: ClassVar[tuple[str, ...]] = ("loss",)

    def __init__(self, data: Any, inputs: Sequence[Any], weight: float | None = None,
                 relweight: float | None = None, loss: LossLike = "gaussian") -> None:
        self.data: Tensor = (data if isinstance(data, Tensor)
                             else as_tensor(data, name=f"{self.kind} data"))
        try:
            self.loss: Loss = as_loss(loss, f"{self.kind} loss")
        except ValueError as err:
            raise ModelError(str(err)) from None
        super().__init__(inputs, weight=weight, relweight=relweight)

    def check(self, where: str) -> None:
        """The data fit the loss (subclasses check their inputs, then call this)."""
        if not self.loss.is_gaussian:
            self.loss_data(where)

    def loss_data(self, where: str = "") -> LossData:
        """The data's known entries for a non-Gaussian loss, checked against its domain
        (made once per data set); raises ModelError prefixed by ``where``."""
        cached = getattr(self, "_loss_data", None)
        if cached is not None and cached[0] is self.data and (cached[1] is self.loss
                                                               or cached[1] == self.loss):
            return cached[2]
        place = f"{where}, loss {self.loss.name!r}" if where else f"{self.kind} loss {self.loss.name!r}"
        found = _loss_data(self.data, place)
        problem = self.loss.check_data(found.values)
        if problem is not None:
            raise ModelError(f"{place}: {problem}")
        self._loss_data = (self.data, self.loss, found)
        return found

    @property
    def null_fval(self) -> float | None:
        """Half the deviance of the loss's reference constant model (None for the
        Gaussian loss): the relative error is ``sqrt(fval / null_fval)``."""
        if self.loss.is_gaussian:
            return None
        cached = getattr(self, "_null_fval", None)
        if cached is None or cached[0] is not self.data or not (cached[1] is self.loss
                                                                  or cached[1] == self.loss):
            values = self.loss_data().values
            with np.errstate(all="ignore"):
                null = np.full(values.shape, self.loss.null_model(values))
                cached = (self.data, self.loss, float(np.sum(self.loss.value(null, values))))
            self._null_fval = cached
        return cached[2]

    def spec_option_values(self) -> dict[str, Any]:
        return {} if self.loss.is_gaussian else {"loss": self.loss.spec()}

    @property
    def n_entries(self) -> int:
        return int(self.data.n_known)

    def _data_exponent(self) -> int:
        """The data's scale exponent when beyond ``SCALE_THRESHOLD``, else 0.

        The (cached) norm settles it for most data without another pass over them: the
        largest entry lies between ``||T|| / sqrt(n)`` and ``||T||``.
        """
        norm_squared = self.data.norm_squared()
        if 0 < norm_squared < np.inf:
            top = 0.5 * np.log2(norm_squared)
            bottom = top - 0.5 * np.log2(max(self.data.n_known, 1))
            if -SCALE_THRESHOLD < bottom and top < SCALE_THRESHOLD:
                return 0
        e = self.data.scale_exponent()
        return e if abs(e) > SCALE_THRESHOLD else 0

    @property
    def data_norm(self) -> float:
        e = self._data_exponent()
        if e == 0:
            return self.data.norm()
        # Computed on the scaled copy: the squares of tiny or huge entries leave the range.
        return float(ldexp(self._scaled_data(e).norm(), e))

    @property
    def data_norm_squared(self) -> float:
        """Squared norm of the data over the known entries."""
        return self.data.norm_squared()

    def _scaled_data(self, exponent: int) -> Tensor:
        """The data times ``2**-exponent``, made once per term."""
        cached = getattr(self, "_scaled_cache", None)
        if cached is None or cached[0] != exponent:
            cached = (exponent, self.data.scaled(-exponent))
            self._scaled_cache = cached
        return cached[1]

    def describe(self) -> str:
        loss = "" if self.loss.is_gaussian else f", {self.loss!r} loss"
        return (f"{self.kind} of {self.data.kind} data {self.data.shape}, "
                f"{self.describe_shape()}{loss}")

    def dims(self) -> tuple[str, ...] | None:
        return self.data.dims

    def coords(self) -> dict[str, np.ndarray] | None:
        return self.data.coords

    @classmethod
    def from_spec(cls, entry: Mapping[str, Any], refs: RefBuilder, where: str) -> Term:
        if "data" not in entry:
            raise ModelError(f"{where}: missing 'data'")
        weights = {k: entry[k] for k in ("weight", "relweight") if k in entry}
        options = {k: entry[k] for k in cls.spec_options if k in entry}
        inputs = cls._spec_inputs(entry[cls.spec_key], refs, f"{where}[{cls.spec_key!r}]")
        make: Any = cls  # each data term's constructor takes (data, *inputs, weights...)
        return make(entry["data"], *inputs, **weights, **options)

    @classmethod
    def _spec_inputs(cls, value: Any, refs: RefBuilder, path: str) -> tuple[Any, ...]:
        """The constructor's arguments after the data, from the dictionary value."""
        return (refs(value, path),)

    def spec_entry(self, ref: Callable[[Expr], Any]) -> dict[str, Any]:
        entry = super().spec_entry(ref)
        return {"data": self.data, **entry}

    def describe_shape(self) -> str:
        """The sizes that define the term (rank, core, ...), for :meth:`describe`."""
        return ""

    # ------------------------------------------------------------ extreme scales
    def data_log2_norm(self) -> float:
        """``log2 ||T||`` over the known entries (``-inf`` for zero data)."""
        e = self._data_exponent()
        norm = self.data.norm() if e == 0 else self._scaled_data(e).norm()
        return math.log2(norm) + e if norm > 0 else -math.inf

    def with_data(self, data: Tensor) -> DataTerm:
        """The same term on other data (same inputs, weights and options)."""
        twin = copy.copy(self)
        twin.data = data
        return twin

    def choose_scale(self, values: Sequence[np.ndarray]) -> TermScale | None:
        """How to fit data far from unit scale (None: as they are).

        Data whose largest entry is about ``2**e`` with ``|e| > SCALE_THRESHOLD`` are fitted
        through a copy scaled by ``2**-e`` (exact: a power of two), and the model through
        its inputs scaled by powers of two ``2**-e_k`` (their exponents add up to ``e``
        over every summand, so the scaled model is the model times ``2**-e``), chosen
        from the inputs' ``values`` at the start so that the scaled inputs are near unit
        scale. Norms, inner products and Gramians then stay far from underflow and
        overflow, and the fit is the one of the rescaled problem, exactly.
        """
        e = self._data_exponent()
        if e == 0 or not self.loss.is_gaussian:  # other losses are not scale-homogeneous
            return None
        exponents = _split_exponent(e, self.inputs, self.scale_groups(), values)
        if exponents is None:
            return None
        return TermScale(self.with_data(self._scaled_data(e)), exponents, e)


@dataclass(frozen=True)
class LossData:
    """A data set's known entries as a non-Gaussian loss reads them.

    ``array`` is the data held densely (zeros at missing entries; None when only
    coordinates are available), ``mask`` marks its known entries (None: all known);
    ``values`` are the known values (flat, C order). ``entries()`` gives them as
    coordinates (made on first use for dense data).
    """

    array: np.ndarray | None
    mask: np.ndarray | None
    values: np.ndarray
    known: KnownEntries | None

    def entries(self) -> KnownEntries:
        if self.known is not None:
            return self.known
        assert self.array is not None
        filled = self.array if self.mask is None else np.where(self.mask, self.array, np.nan)
        known = IncompleteTensor(filled).known_entries()
        object.__setattr__(self, "known", known)
        return known


def _loss_data(data: Tensor, place: str) -> LossData:
    """The entries of ``data`` for a loss: dense where the data are (or can be) held so.

    The arrays are read-only views (the data never change during a fit; losses keep
    what they compute from read-only data, see :mod:`sdf.losses`).
    """
    masked = data.masked_view()
    if masked is not None:
        filled, mask = masked
        found = LossData(_frozen(filled), mask, _frozen(filled[mask]), None)
    elif (array := data.dense_view()) is not None:
        found = LossData(_frozen(array), None, _frozen(array.ravel()), None)
    elif (entries := data.known_entries()) is not None:
        entries = KnownEntries(entries.shape, entries.subs, _frozen(entries.vals),
                               entries.mode_indicator)
        found = LossData(None, None, entries.vals, entries)
    else:
        try:
            array = data.to_dense()
        except DataError:
            raise ModelError(f"{place}: needs the data's entries, and {data.kind} data "
                             "cannot be read entry by entry (use least squares, or give "
                             "the data as an array)") from None
        found = LossData(_frozen(array), None, _frozen(array.ravel()), None)
    return found


def _frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array``."""
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class TermScale:
    """A data term fitted in scaled units (see :meth:`DataTerm.choose_scale`).

    ``term`` is the same term on the data times ``2**-data_exponent``; input ``k`` enters
    it times ``2**-input_exponents[k]``; its ``fval`` is the term's times
    ``2**(-2 data_exponent)``.
    """

    term: DataTerm
    input_exponents: list[int]
    data_exponent: int

    def inputs(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The inputs' values in the scaled units."""
        return [ldexp(v, -k) if k else v for v, k in zip(values, self.input_exponents)]

    def prepare(self, values: Sequence[np.ndarray]) -> TermState:
        return _ScaledState(self.term.prepare(self.inputs(values)), self.input_exponents)

    def exact_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        return self.term.exact_fval(self.inputs(values), fval)

    def iterate_fval(self, values: Sequence[np.ndarray], fval: float) -> float:
        return self.term.iterate_fval(self.inputs(values), fval)


class _ScaledState(TermState):
    """A state computed in scaled units, read in the units of the inputs.

    With ``x'_k = x_k 2**-e_k`` and ``f' = f 2**-2e``, derivatives with respect to ``x_k``
    are those with respect to ``x'_k`` times ``2**-e_k`` (the ``2**-2e`` is carried by the
    term's weight).
    """

    def __init__(self, state: TermState, exponents: list[int]) -> None:
        self._state = state
        self._exponents = exponents
        self.fval = state.fval
        self.block_exponents = [-2 * k for k in exponents]
        self.products_read_data = state.products_read_data

    def gradient(self) -> list[np.ndarray]:
        return [ldexp(g, -k) for g, k in zip(self._state.gradient(), self._exponents)]

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        scaled = [ldexp(d, -k) for d, k in zip(dvalues, self._exponents)]
        return [ldexp(o, -k) for o, k in zip(self._state.gn_product(scaled),
                                                self._exponents)]

    def blocks(self) -> list[Block]:
        return self._state.blocks()  # to be read times 2**block_exponents


def _cancels(fval: float, data_norm_squared: float, expansion_size: float) -> bool:
    """Whether ``fval`` from an expansion whose model terms sum to far more than the data
    (``expansion_size`` above ``16 ||T||^2``: components or blocks that cancel, as in a
    degenerate CPD or blocks grown against each other) has lost its digits (below ``1e-6``
    of that size): the solvers' rounding floor, set by the data, does not cover them."""
    return expansion_size > 16.0 * data_norm_squared and fval <= 1e-6 * expansion_size


def _exponent_of(value: np.ndarray) -> int:
    top = float(np.max(np.abs(value), initial=0.0))
    return int(np.frexp(top)[1]) if top > 0 and np.isfinite(top) else 0


def _split_exponent(total: int, inputs: Sequence[Expr], groups: list[list[int]],
                    values: Sequence[np.ndarray]) -> list[int] | None:
    """Exponents per input position adding up to ``total`` over every group, one per
    expression (an expression used twice gets one exponent); None if impossible."""
    by_expr: dict[int, int] = {}
    for group in groups:
        members: dict[int, int] = {}  # expression id -> multiplicity in the group
        for k in group:
            members[id(inputs[k])] = members.get(id(inputs[k]), 0) + 1
        fixed = sum(by_expr[i] * m for i, m in members.items() if i in by_expr)
        free = [(i, m) for i, m in members.items() if i not in by_expr]
        rest = total - fixed
        if not free:
            if rest != 0:
                return None
            continue
        # Start from each free input's own magnitude, then share what is left evenly.
        own = {i: _exponent_of(values[next(k for k in group if id(inputs[k]) == i)])
               for i, _ in free}
        left = rest - sum(own[i] * m for i, m in free)
        weight = sum(m for _, m in free)
        for i, m in free:
            by_expr[i] = own[i] + left // weight
        left -= (left // weight) * weight
        single = next((i for i, m in free if m == 1), None)
        if left:
            if single is None:
                return None
            by_expr[single] += left
    return [by_expr[id(e)] for e in inputs]
