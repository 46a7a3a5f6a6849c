"""Terms of a fusion model: factorizations of data sets and regularizers."""

from sdf.terms._base import Term, TermState
from sdf.terms.btd import BTD
from sdf.terms.cpd import CPD
from sdf.terms.ll1 import LL1
from sdf.terms.lmlra import LMLRA
from sdf.terms.regularizers import L0, L1, L2

__all__ = ["BTD", "CPD", "L0", "L1", "L2", "LL1", "LMLRA", "Term", "TermState"]
