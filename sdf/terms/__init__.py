"""Terms of a fusion model: factorizations of data sets and regularizers."""

from sdf.terms._base import Term, TermState
from sdf.terms.cpd import CPD
from sdf.terms.regularizers import L0, L1, L2

__all__ = ["CPD", "L0", "L1", "L2", "Term", "TermState"]
