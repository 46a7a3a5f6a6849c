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
    ``J^T J dv`` split per input (the Gauss-Newton Gramian product);
``blocks()``
    per input, a block-diagonal approximation of ``J^T J`` for the preconditioner.

Blocks are ``None`` (no information), a float ``s`` (``s * I``), an ``(R, R)`` array
shared by every row of an ``(I, R)`` input, or an ``(I, R, R)`` array with one block per
row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from sdf.errors import ModelError
from sdf.expr import Expr, as_expr
from sdf.tensors import Tensor, as_tensor

__all__ = ["Block", "DataTerm", "Findings", "RefBuilder", "Structure", "Term", "TermState"]

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
    """A term evaluated at one point (see the module docstring)."""

    fval: float

    def gradient(self) -> list[np.ndarray]:
        raise NotImplementedError

    def gn_product(self, dvalues: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def blocks(self) -> list[Block]:
        return [None] * len(self.gradient())


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
    #: Key naming the term in the dictionary language (``{"data": T, "cpd": [...]}``).
    spec_key: ClassVar[str] = ""
    #: Keys its dictionary form takes besides the data, the weights and ``spec_key``.
    spec_options: ClassVar[tuple[str, ...]] = ()

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
        """What is suspicious in this term's fitted ``values`` (the start values and the
        relative error help tell why); called after every fit. The default finds nothing."""
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
    whose values never change) and the one-line description.
    """

    is_data_term = True

    def __init__(self, data: Any, inputs: Sequence[Any], weight: float | None = None,
                 relweight: float | None = None) -> None:
        self.data: Tensor = (data if isinstance(data, Tensor)
                             else as_tensor(data, name=f"{self.kind} data"))
        super().__init__(inputs, weight=weight, relweight=relweight)

    @property
    def n_entries(self) -> int:
        return int(self.data.n_known)

    @property
    def data_norm(self) -> float:
        return self.data.norm()

    @property
    def data_norm_squared(self) -> float:
        """Squared norm of the data over the known entries."""
        return self.data.norm_squared()

    def describe(self) -> str:
        return f"{self.kind} of {self.data.kind} data {self.data.shape}, {self.describe_shape()}"

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
