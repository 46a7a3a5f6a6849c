"""Result and option types of layer compression."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping

import numpy as np
from numpy.typing import DTypeLike

from sdf.errors import ModelError, OptionError
from sdf.solvers import MethodName, get_solver
from sdf.models.compress.layers import Piece, count_macs, count_params, run_pieces

__all__ = ["CompressOptions", "CompressedLayer", "FitInfo", "RankCurve", "Solver"]

Solver = Literal["auto", "engine", "numpy"]


#: Default tolerances of :class:`CompressOptions` (``alt_tol`` None): an iteration's
#: decrease for the alternating fits, and the decrease still to come for the data-aware
#: weight SVD, spatial SVD and Tucker-2 fits
_SWEEP_TOL, _SUBSPACE_TOL = 1e-6, 1e-4


@dataclass(frozen=True, kw_only=True)
class CompressOptions:
    """How a compression model is fitted.

    Attributes
    ----------
    solver : {"auto", "engine", "numpy"}, default "auto"
        ``"auto"``: closed forms where they are exact (truncated SVD, whitened SVD for
        the two-factor layers) and :func:`sdf.decomp.lmlra_hooi` for the weight-only
        Tucker-2; the data-aware weight SVD, spatial SVD and Tucker-2 alternate closed
        forms (best core / output factor, then a conjugate-gradient step on the input
        factor) from the better of the data-free fit and a generalised SVD; CP starts
        from water-filled SVDs of the rotated spatial slices, then runs ALS sweeps and
        (data-aware) response rounds to the budgets ``cp_work`` and ``cp_response_work``
        (small layers, see ``cp_engine_size``, also by ``sdf.Model.fit``, keeping the
        lower objective). ``"engine"``: the engine fits every model with a response
        term (two-factor layers started from the truncated SVD of the weight).
        ``"numpy"``: deprecated alias of ``"auto"``.
    max_iter : int, default 200
        Iterations of the engine's solver (and HOOI sweeps of the Tucker-2 start,
        alternations of the data-aware kron-structured fits and steps of each
        Levenberg-Marquardt run of a tiny layer's CP).
    tol_fun : float, default 1e-12
        Relative objective tolerance.
    max_calib_rows : int, default 20000
        Calibration rows (samples or im2col patches) kept, sampled without replacement.
    seed : int, default 0
        Seed for initialisations and row sampling.
    engine_method : str, default "nls"
        Engine solver: any registered method (:func:`sdf.solvers.solver_names`), e.g.
        ``"nls"`` (Gauss-Newton, trust region) or ``"minf"`` (L-BFGS).
    engine_options : mapping, optional
        Further keyword options of ``sdf.Model.fit`` (``tol_x``, ``cg_max_iter``, ...);
        the engine rejects unknown names.
    tucker_tol_fun : float, default 1e-5
        Relative objective tolerance of the engine's data-aware Tucker-2 fit (used there
        instead of ``tol_fun``). The Tucker model is invariant under ``U -> U A``,
        ``S -> S x A^{-1}``; Gauss-Newton reaches the L-BFGS optimum in a few tens of
        iterations and then crawls along that invariance for gains of ~1e-3 of the error.
    alt_tol : float, optional
        The alternating fits stop when an alternation lowers the objective by at most
        ``alt_tol`` times its value (also the CP sweeps and response rounds; default
        ``1e-6``, :attr:`sweep_tol`); the data-aware weight SVD, spatial SVD and Tucker-2
        fits when the decrease still to come, predicted from the rate of the last
        iterations, is at most ``alt_tol`` times the objective (default ``1e-4``,
        :attr:`subspace_tol`; on the slow layers of ``benchmarks/bench_compress_fits.py``
        their objectives then ended 0 to ``1.3e-4`` (relative) above those of ``1e-6``,
        which took up to 1.9 times as long).
    cp_work : float, default 1e10
        Work budget of the CP's ALS sweeps on the weight, in multiply-adds: the sweeps
        are capped at ``cp_work`` over the cost of one sweep (about ``2 out in kh kw R``
        plus four ``R x R`` factorizations) and at ``max_iter`` (five times that for
        each start of a data-free layer small enough for several starts). Deterministic (not a
        time limit); the default is about 0.7 s of one core for a 256x256x3x3 conv at
        rank 569. A fit stopped by it says "iteration cap" in its message.
    cp_response_work : float, default 3e10
        Work budget of the data-aware CP's response rounds, in multiply-adds (a round
        costs about ``d^2 R + d R^2 + 4 out d R`` with ``d = in kh kw`` for the output
        factor, plus ``2 out d R + out d^2`` per conjugate-gradient iteration on the
        input or a spatial factor; with fewer calibration patches ``k`` than ``d``, the
        ``d^2`` terms become ``4 k d``); the iterations per round follow the budget; at
        least one round runs, at most ``max_iter``.
    cp_engine_size : float, default 1e4
        Layers whose engine model costs at most this many multiply-adds per Gauss-Newton
        product (``R out in kh kw``, plus ``R k d`` when data-aware, with ``d = in kh kw``
        and ``k`` the smaller of ``d`` and the number of calibration patches)
        are also fitted by the engine (Gauss-Newton from a GEVD or random start), and the
        fit with the lower objective is kept; so are data-free layers of up to 2000
        weights while this is positive; 0 switches that off. The engine's data-free fit
        of such a layer takes 0.2-0.4 CPU s (200 iterations; there they ended up to 3 %
        below the alternating fits); its data-aware fits take several times longer
        (the response term goes through transforms): data-aware layers of up to 2000
        weights get Levenberg-Marquardt runs instead (numpy, dense steps, seeded
        starts, ``max_iter`` steps each), larger ones only the alternating fit unless
        this is raised (on layers of up to a few thousand weights the engine then ended
        0-4 % lower on some and higher on others, at 10-20 times the time).
    """

    solver: Solver = "auto"
    max_iter: int = 200
    tol_fun: float = 1e-12
    max_calib_rows: int = 20000
    seed: int = 0
    engine_method: MethodName = "nls"
    engine_options: Mapping[str, Any] | None = None
    tucker_tol_fun: float = 1e-5
    alt_tol: float | None = None
    cp_work: float = 1e10
    cp_response_work: float = 3e10
    cp_engine_size: float = 1e4

    def __post_init__(self) -> None:
        if self.solver not in ("auto", "engine", "numpy"):
            raise OptionError(
                f"CompressOptions.solver must be 'auto', 'engine' or 'numpy', got {self.solver!r}")
        if self.solver == "numpy":
            warnings.warn("CompressOptions(solver='numpy') is a deprecated alias of 'auto' "
                          "(closed forms where exact, the engine otherwise); pass "
                          "solver='auto'", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "solver", "auto")
        if self.max_iter < 1:
            raise OptionError(f"CompressOptions.max_iter must be >= 1, got {self.max_iter}")
        get_solver(self.engine_method, where="CompressOptions.engine_method")
        if not self.tucker_tol_fun >= 0:
            raise OptionError(
                f"CompressOptions.tucker_tol_fun must be >= 0, got {self.tucker_tol_fun}")
        if self.alt_tol is not None and not self.alt_tol >= 0:
            raise OptionError(f"CompressOptions.alt_tol must be >= 0, got {self.alt_tol}")
        for name in ("cp_work", "cp_response_work", "cp_engine_size"):
            if not getattr(self, name) >= 0:
                raise OptionError(
                    f"CompressOptions.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_calib_rows < 1:
            raise OptionError(
                f"CompressOptions.max_calib_rows must be >= 1, got {self.max_calib_rows}")

    @property
    def sweep_tol(self) -> float:
        """The alternating fits' tolerance on one iteration's decrease (``alt_tol``,
        default ``1e-6``).

        Examples
        --------
        >>> CompressOptions().sweep_tol, CompressOptions(alt_tol=1e-8).sweep_tol
        (1e-06, 1e-08)
        """
        return _SWEEP_TOL if self.alt_tol is None else self.alt_tol

    @property
    def subspace_tol(self) -> float:
        """The data-aware weight SVD, spatial SVD and Tucker-2 fits' tolerance on the
        decrease still to come (``alt_tol``, default ``1e-4``).

        Examples
        --------
        >>> CompressOptions().subspace_tol, CompressOptions(alt_tol=1e-8).subspace_tol
        (0.0001, 1e-08)
        """
        return _SUBSPACE_TOL if self.alt_tol is None else self.alt_tol


@dataclass(frozen=True)
class FitInfo:
    """How the fit went: solver used, iterations, stop message, per-term relative errors
    and, where the fit reports it, the objective value of the returned weight."""

    solver: str
    iterations: int = 0
    message: str = "closed form"
    relerr: dict[str, float] = field(default_factory=dict)
    objective: float | None = None


@dataclass(frozen=True, repr=False)
class RankCurve:
    """Error against rank for one layer: what drove the rank choice (for plotting).

    Attributes
    ----------
    ranks, params, macs : ndarray of int
    errors : ndarray of float
        Relative error of the fitted objective at each rank (weighted combination of weight
        and response errors when data-aware).
    """

    ranks: np.ndarray
    params: np.ndarray
    macs: np.ndarray
    errors: np.ndarray

    def __repr__(self) -> str:
        """Ranges of the curve (never the arrays)."""
        n = len(self.ranks)
        if n == 0:
            return "RankCurve(empty)"
        return (f"RankCurve({n} ranks {_span(self.ranks, 'd')}, params "
                f"{_span(self.params, 'd')}, errors {_span(self.errors, '.4g')})")


def _span(values: np.ndarray, fmt: str) -> str:
    """``first..last`` of an array, formatted."""
    return f"{format(values[0], fmt)}..{format(values[-1], fmt)}"


def _ratio(before: int | None, after: int | None) -> str:
    if before is None or after is None:
        return "?"
    return f"{before} -> {after} ({after / before:.3f})" if before else f"{before} -> {after}"


@dataclass(frozen=True, repr=False)
class CompressedLayer:
    """A compressed layer: the pieces to run, the approximated weight, counts and errors.

    Attributes
    ----------
    name, method : str
    rank : int or tuple of int
    original : Piece
        The layer that was compressed.
    pieces : tuple of Piece
        Consecutive layers that replace it (the original bias is on the last one).
    weight_approx : ndarray
        The weight the pieces implement, in the original shape (see :meth:`dense`).
    balance : float
        Share of the response term in the objective (0: weight only).
    input_hw : pair of int or None
        Spatial input size used for MAC counts (convolutions).
    weight_error : float
        ``||W_hat - W|| / ||W||``.
    calib_output_error : float or None
        Output error on the calibration inputs (see :meth:`output_error`).
    curve : RankCurve or None
        Error against rank, when it was computed.
    info : FitInfo
    """

    name: str
    method: str
    rank: Any
    original: Piece
    pieces: tuple[Piece, ...]
    weight_approx: np.ndarray
    balance: float
    input_hw: tuple[int, int] | None
    weight_error: float
    calib_output_error: float | None
    curve: RankCurve | None
    info: FitInfo

    def __repr__(self) -> str:
        """One line: method, rank, shapes, parameter/MAC counts and errors (no arrays)."""
        shapes = ", ".join(str(tuple(p.weight.shape)) for p in self.pieces)
        out = "" if self.calib_output_error is None else (
            f", calib_output_error={self.calib_output_error:.4g}")
        return (f"CompressedLayer({self.name!r}, {self.method}, rank={self.rank}: "
                f"{tuple(self.original.weight.shape)} -> [{shapes}], params "
                f"{_ratio(self.params_before, self.params_after)}, MACs "
                f"{_ratio(self.macs_before, self.macs_after)}, "
                f"weight_error={self.weight_error:.4g}{out}, fit: {self.info.solver}, "
                f"{self.info.iterations} iterations)")

    def dense(self) -> np.ndarray:
        """The reconstructed weight, in the original layer's shape (a copy)."""
        return np.array(self.weight_approx, copy=True)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run the pieces on ``x`` (shape (N, in) or (N, in, H, W))."""
        return run_pieces(self.pieces, x)

    def output_error(self, x: np.ndarray) -> float:
        """``||f_hat(x) - f(x)|| / ||f(x) - bias||``: relative error of the layer response.

        The bias is left out of the denominator so that it does not hide the error.
        """
        error, response = self.response_norms(x)
        return error / (response or 1.0)

    def response_norms(self, x: np.ndarray) -> tuple[float, float]:
        """``(||f_hat(x) - f(x)||, ||f(x) - bias||)`` on inputs ``x``.

        The responses without biases and the biases' contribution (the pieces run on a zero
        input) are differenced apart: a bias far larger than the response would otherwise
        round the response, and the error with it, away.

        Examples
        --------
        >>> import numpy as np
        >>> from sdf.models.compress import compress_linear
        >>> W = np.random.default_rng(0).standard_normal((6, 5))
        >>> layer = compress_linear(W, rank=5, bias=np.full(6, 1e20))
        >>> error, response = layer.response_norms(np.eye(5))
        >>> bool(error < 1e-12 * response)
        True
        """
        y = _without_bias(self.original).forward(x)
        e = run_pieces([_without_bias(p) for p in self.pieces], x) - y
        if any(p.bias is not None for p in self.pieces) or self.original.bias is not None:
            offset = run_pieces(self.pieces, np.zeros_like(x[:1]))
            if self.original.bias is not None:
                b = self.original.bias
                offset = offset - (b if offset.ndim == 2 else b[:, None, None])
            e = e + offset
        return float(np.linalg.norm(e)), float(np.linalg.norm(y))

    @property
    def params_before(self) -> int:
        return self.original.n_params

    @property
    def params_after(self) -> int:
        return count_params(self.pieces)

    @property
    def macs_before(self) -> int | None:
        if self.original.kind == "conv2d" and self.input_hw is None:
            return None
        return self.original.macs(self.input_hw)

    @property
    def macs_after(self) -> int | None:
        if self.original.kind == "conv2d" and self.input_hw is None:
            return None
        return count_macs(self.pieces, self.input_hw)

    @property
    def param_ratio(self) -> float:
        """``params_after / params_before``."""
        return self.params_after / self.params_before

    def summary(self) -> dict[str, Any]:
        """One row of a report table."""
        return {"layer": self.name, "method": self.method, "rank": self.rank,
                "params_before": self.params_before, "params_after": self.params_after,
                "macs_before": self.macs_before, "macs_after": self.macs_after,
                "weight_error": self.weight_error, "output_error": self.calib_output_error}

    def to_torch(self, dtype: DTypeLike = "float32") -> Any:
        """The pieces as a ``torch.nn.Sequential`` with ``dtype`` parameters (float32 by
        default, PyTorch's own; needs PyTorch). See
        :func:`~sdf.models.compress.pieces_to_torch`.

        Raises
        ------
        ModuleNotFoundError
            When torch is not installed.
        """
        from sdf.models.compress.export import pieces_to_torch

        return pieces_to_torch(self.pieces, dtype)


def _without_bias(piece: Piece) -> Piece:
    return piece if piece.bias is None else replace(piece, bias=None)


def check_rank_args(where: str, rank: Any, ratio: float | None, tol: float | None) -> None:
    given = [n for n, v in (("rank", rank), ("ratio", ratio), ("tol", tol)) if v is not None]
    if len(given) != 1:
        raise ModelError(
            f"{where}: give exactly one of rank, ratio or tol, got "
            f"{', '.join(given) if given else 'none'}")
    if ratio is not None and not 0 < ratio:
        raise ModelError(f"{where}: ratio must be > 0, got {ratio}")
    if tol is not None and not 0 <= tol < 1:
        raise ModelError(f"{where}: tol must be in [0, 1), got {tol}")
