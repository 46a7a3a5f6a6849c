"""Ready-made models on the sdf engine: CPD, LMLRA, BTD, LL1, PARAFAC2, tensor train and
ring (TT, TR) and coupled (CMTF) drivers, rank estimation and diagnostics.

Every driver returns a :class:`Decomposition` (factors, relative error, history, and the
engine :class:`sdf.Result` of the final fit); :func:`parafac2` returns a
:class:`Parafac2Decomposition` (the same, with the projections ``P_k``).
"""

from sdf.models._result import Decomposition, DecompositionKind, Stage
from sdf.models.btd import btd
from sdf.models.cmtf import cmtf
from sdf.models.cpd import cpd
from sdf.models.cpd_rbs import cpd_rbs
from sdf.models.diagnostics import (
    CPDError,
    Degeneracy,
    DegeneracyWarning,
    congruence,
    corcondia,
    cpderr,
    degeneracy,
    fms,
    impute,
)
from sdf.models.fuse import fuse, fuse_model
from sdf.models.ll1 import ll1
from sdf.models.lmlra import lmlra
from sdf.models.parafac2 import Parafac2Decomposition, parafac2
from sdf.models.tt import tr, tt
from sdf.models.rank import (
    MLRankEstimate,
    RankCriteria,
    RankEstimate,
    RankProgress,
    Stability,
    lcorner,
    mlrankest,
    rankest,
    stability,
)

__all__ = [
    "CPDError",
    "Decomposition",
    "DecompositionKind",
    "Degeneracy",
    "DegeneracyWarning",
    "MLRankEstimate",
    "Parafac2Decomposition",
    "RankCriteria",
    "RankEstimate",
    "RankProgress",
    "Stability",
    "Stage",
    "btd",
    "cmtf",
    "congruence",
    "corcondia",
    "cpd",
    "cpd_rbs",
    "cpderr",
    "degeneracy",
    "fms",
    "fuse",
    "fuse_model",
    "impute",
    "lcorner",
    "ll1",
    "lmlra",
    "mlrankest",
    "parafac2",
    "rankest",
    "stability",
    "tr",
    "tt",
]
