"""Terms of a fusion model: factorizations of data sets and regularizers.

Every term kind is registered here by its dictionary-language key (``"cpd"``,
``"regL2"``...), so the dict language reads and writes any registered term without
knowing its kind; :func:`register_term` adds a new one.
"""

from sdf.errors import ModelError
from sdf.terms._base import DataTerm, Term, TermState
from sdf.terms.btd import BTD
from sdf.terms.cpd import CPD
from sdf.terms.ll1 import LL1
from sdf.terms.lmlra import LMLRA
from sdf.terms.parafac2 import PARAFAC2
from sdf.terms.regularizers import L0, L1, L2, Smooth
from sdf.terms.tt import TR, TT

__all__ = ["BTD", "CPD", "DataTerm", "L0", "L1", "L2", "LL1", "LMLRA", "PARAFAC2", "Smooth",
           "TR", "TT",
           "Term", "TermState", "register_term", "term_types"]

_TERM_TYPES: dict[str, type[Term]] = {}


def register_term(cls: type[Term]) -> type[Term]:
    """Register a term class under its ``spec_key``; usable as a class decorator.

    Examples
    --------
    >>> import sdf
    >>> sorted(term_types())[:3]
    ['btd', 'cpd', 'll1']
    """
    key = getattr(cls, "spec_key", "")
    if not (isinstance(cls, type) and issubclass(cls, Term)) or not key:
        raise ModelError(f"register_term: expected a Term subclass with a spec_key, got {cls!r}")
    if key in _TERM_TYPES and _TERM_TYPES[key] is not cls:
        raise ModelError(f"register_term: the key {key!r} is taken by "
                         f"{_TERM_TYPES[key].__name__}")
    _TERM_TYPES[key] = cls
    return cls


def term_types() -> dict[str, type[Term]]:
    """The registered term classes by dictionary key."""
    return dict(_TERM_TYPES)


for _cls in (CPD, LMLRA, BTD, LL1, PARAFAC2, TT, TR, L2, L1, L0, Smooth):
    register_term(_cls)
