"""sdfusion: structured data fusion with coupled tensor decompositions.

Declare data sets that share factors, send factors through structure-imposing transforms,
and fit everything jointly with Gauss-Newton or L-BFGS::

    import sdf
    from sdf import transforms as tf
    model = sdf.Model(eem=sdf.CPD(T, [a, tf.nonneg(b), c]), conc=sdf.CPD(Y, [a, d]))
    result = model.fit(method="nls")
"""

from sdf import _source_tree  # noqa: F401  (first: maps sdf.models, sdf.viz in a checkout)
from sdf import errors, losses
from sdf.errors import DataError, ModelError, OptionError, SdfError, TransformError
from sdf.expr import Constant, Expr, Variable
from sdf.model import Model
from sdf.result import History, IterationInfo, Result, StopReason, load_result
from sdf.solvers import MinfOptions, NLSOptions, SolverOptions, register_solver
from sdf.terms import BTD, CPD, L0, L1, L2, LL1, LMLRA, PARAFAC2, TR, TT, Smooth, Term

__version__ = "0.1.0"

__all__ = [
    "BTD",
    "CPD",
    "Constant",
    "DataError",
    "Expr",
    "History",
    "IterationInfo",
    "L0",
    "L1",
    "L2",
    "LL1",
    "LMLRA",
    "MinfOptions",
    "Model",
    "ModelError",
    "NLSOptions",
    "OptionError",
    "PARAFAC2",
    "Result",
    "SdfError",
    "Smooth",
    "SolverOptions",
    "StopReason",
    "TR",
    "TT",
    "Term",
    "TransformError",
    "Variable",
    "errors",
    "load_result",
    "losses",
    "register_solver",
]


def __getattr__(name: str) -> object:
    # Submodules loaded on first use keep `import sdf` light.
    import importlib

    if name in ("algebra", "tensors", "decomp", "transforms", "models", "viz", "statistics",
                "tensorize"):
        return importlib.import_module(f"sdf.{name}")
    raise AttributeError(f"module 'sdf' has no attribute {name!r}")
