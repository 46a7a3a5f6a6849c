"""Solvers: Gauss-Newton with trust region (``nls``) and L-BFGS (``minf``)."""

from sdf.solvers.minf import minf
from sdf.solvers.nls import nls, pcg
from sdf.solvers.options import MinfOptions, NLSOptions, make_options

__all__ = ["MinfOptions", "NLSOptions", "make_options", "minf", "nls", "pcg"]
