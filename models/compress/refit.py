"""Whole-network refit: the compressed network's outputs fitted to the original network's.

Compressing layer by layer (:func:`~sdf.models.compress.compress_network`) fits every
layer to its own inputs; in the compressed network each layer then reads the *compressed*
layers' activations, and the errors add up. :func:`refit_network` refits the factored
pieces on calibration inputs ``X`` so that the network as a whole matches:

1. **Sequentially**, layer by layer with propagated activations: layer ``k``'s pieces are
   refitted to map the compressed network's actual inputs ``X̃_k`` to the original layer's
   outputs ``Y_k``, a regularised least-squares problem in closed form. With ``P`` the
   (centered) rows of ``X̃_k`` (im2col patches for a convolution), ``W`` the original
   weight and ``λ = ridge · tr(PᵀP) / d``::

       min  ||P Ŵᵀ + 1 bᵀ − Y||² + λ ||Ŵ − W||²

   For a two-factor layer (``Ŵ = A Bᵀ``: linear SVD, channel SVD) this is a ridge
   reduced-rank regression, solved exactly: the ridge solution ``W_λ`` projected on the
   leading right singular vectors of the augmented fit ``[P; √λ I] W_λᵀ``. For the other
   factorizations the last piece (linear in its weight given the others) is refitted the
   same way, regularised towards its current weight.
2. **Jointly** on the engine: every free piece's weight and bias is an
   :class:`sdf.Variable`, the network (nonlinearities included) one
   :func:`sdf.transforms.custom` transform of them, and the original network's outputs on
   the calibration inputs the data term; an :class:`sdf.L2` term pulls the factors towards
   their start (weight ``ridge`` relative to the data term). L-BFGS (``"minf"``) by
   default, or any registered method (``"nls"``: Gauss-Newton).

A share ``holdout`` of the calibration inputs is kept aside: each layer's refit is kept
only when it lowers that layer's output error on the held-out inputs, each stage only
when it lowers the network's held-out output error, and the joint fit is stopped once
the held-out error has not improved for ``patience`` iterations and returns the iterate
with the least held-out error: with few calibration samples the refit cannot overfit
past its start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import scipy.linalg as sla

from sdf.errors import DataError, ModelError, OptionError
from sdf.solvers import MethodName, get_solver
from sdf.models.compress.layers import Piece, im2col, run_pieces
from sdf.models.compress.result import CompressedLayer
from sdf.models.compress.sequential import SequentialNet, as_sequential
from sdf._blas import with_one_blas_pool

if TYPE_CHECKING:
    from sdf.models.compress.nets import SmallNet
    from sdf.models.compress.network import NetworkCompression

__all__ = ["RefitOptions", "RefitResult", "RefitStage", "refit_network"]

Pieces = tuple[Piece, ...]


@dataclass(frozen=True, kw_only=True)
class RefitOptions:
    """Settings of :func:`refit_network`.

    Attributes
    ----------
    holdout : float in (0, 1), default 0.25
        Share of the calibration inputs kept aside for the overfitting guard.
    ridge : float, default 1e-3
        Regularisation: relative weight of the pull towards the original weight
        (sequential stage) and towards the start (joint stage).
    sequential, joint : bool, default True
        Which stages run.
    method : str, default "minf"
        Engine solver of the joint stage: any registered method. L-BFGS (``"minf"``) needs
        only gradients of the network; Gauss-Newton (``"nls"``) also needs its forward-mode
        derivatives in every inner CG step: on the digits MLP at 30 % of the parameters
        ``"minf"`` reached the same held-out error about 10 times faster.
    max_iter : int, default 200
        Iterations of the joint stage.
    patience : int, default 10
        The joint stage stops after this many iterations without a lower held-out error.
    seed : int, default 0
        Seed of the split into fitting and held-out inputs.
    """

    holdout: float = 0.25
    ridge: float = 1e-3
    sequential: bool = True
    joint: bool = True
    method: MethodName = "minf"
    max_iter: int = 200
    patience: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise OptionError(f"RefitOptions.holdout must be in (0, 1), got {self.holdout}")
        if not self.ridge >= 0.0:
            raise OptionError(f"RefitOptions.ridge must be >= 0, got {self.ridge}")
        if self.max_iter < 1:
            raise OptionError(f"RefitOptions.max_iter must be >= 1, got {self.max_iter}")
        if self.patience < 1:
            raise OptionError(f"RefitOptions.patience must be >= 1, got {self.patience}")
        get_solver(self.method, where="RefitOptions.method")


@dataclass(frozen=True)
class RefitStage:
    """What one stage of the refit did.

    Attributes
    ----------
    name : {"sequential", "joint"}
    train_error, holdout_error : float
        Relative output error of the network after the stage (what was kept).
    accepted : bool
        False when the stage raised the held-out error and was undone.
    guarded : bool
        True when the held-out check changed the outcome: a layer's refit or the stage
        undone, or the joint fit stopped early or rolled back to an earlier iterate.
    iterations : int
        Layers refitted (sequential) or solver iterations (joint).
    message : str
    """

    name: str
    train_error: float
    holdout_error: float
    accepted: bool
    guarded: bool
    iterations: int
    message: str


@dataclass(frozen=True, repr=False)
class RefitResult:
    """The refitted pieces and the network's output errors before and after.

    Errors are ``||f_hat(X) - f(X)|| / ||f(X)||`` of the network outputs, on the inputs
    the refit was fitted to (``train``) and on the held-out share (``holdout``).

    Attributes
    ----------
    pieces : dict of str to tuple of Piece
        Per layer, the pieces to run (pass as ``replace`` to
        :meth:`SequentialNet.forward`).
    train_error_before, train_error_after, holdout_error_before, holdout_error_after : float
    stages : tuple of RefitStage
    n_train, n_holdout : int
    """

    pieces: dict[str, Pieces]
    train_error_before: float
    train_error_after: float
    holdout_error_before: float
    holdout_error_after: float
    stages: tuple[RefitStage, ...]
    n_train: int
    n_holdout: int

    @property
    def guard_triggered(self) -> bool:
        """True when the held-out check changed the outcome of any stage."""
        return any(s.guarded for s in self.stages)

    def __repr__(self) -> str:
        """Errors before and after, then one line per stage."""
        head = (f"RefitResult({len(self.pieces)} layers, {self.n_train} fitting / "
                f"{self.n_holdout} held-out inputs: output error train "
                f"{self.train_error_before:.4g} -> {self.train_error_after:.4g}, held-out "
                f"{self.holdout_error_before:.4g} -> {self.holdout_error_after:.4g})")
        lines = [f"  {s.name}: train {s.train_error:.4g}, held-out {s.holdout_error:.4g}, "
                 f"{'kept' if s.accepted else 'undone'}{', guarded' if s.guarded else ''}: "
                 f"{s.message}" for s in self.stages]
        return "\n".join([head, *lines])


# ---------------------------------------------------------------- least squares per layer
def _rows(x: np.ndarray, piece: Piece) -> np.ndarray:
    """The rows a piece multiplies its weight with: samples, or im2col patches."""
    if piece.kind == "linear":
        return x
    return im2col(x, piece.kernel_size, piece.stride, piece.padding, piece.dilation)


def _target_rows(y: np.ndarray) -> np.ndarray:
    return y if y.ndim == 2 else y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])


def _ridge_system(P: np.ndarray, Y: np.ndarray, prior: np.ndarray, ridge: float, center: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``M = PcᵀPc + λI``, ``W_λᵀ = M⁻¹(PcᵀYc + λ priorᵀ)`` and the row means.

    ``center=False`` (a piece without bias): the rows are used as they are, means zero.
    """
    mu_p = P.mean(axis=0) if center else np.zeros(P.shape[1])
    mu_y = Y.mean(axis=0) if center else np.zeros(Y.shape[1])
    Pc, Yc = P - mu_p, Y - mu_y
    M = Pc.T @ Pc
    lam = ridge * float(np.trace(M)) / M.shape[0]
    M[np.diag_indices_from(M)] += lam if lam > 0 else 1e-12 * (float(np.trace(M)) or 1.0)
    rhs = Pc.T @ Yc + lam * prior.T
    W_t = sla.solve(M, rhs, assume_a="pos")
    return M, W_t, mu_p, mu_y


def _reduced_rank(p0: Piece, p1: Piece, P: np.ndarray, Y: np.ndarray, prior: np.ndarray,
                  ridge: float) -> Pieces:
    """Both factors of ``Ŵ = A Bᵀ`` by ridge reduced-rank regression (exact)."""
    r = p1.weight.shape[1]
    M, W_t, mu_p, mu_y = _ridge_system(P, Y, prior, ridge, p1.bias is not None)
    S = W_t.T @ M @ W_t                                   # Gram of the augmented fit
    V = np.linalg.eigh((S + S.T) / 2)[1][:, ::-1][:, :r]  # (out, r)
    B = W_t @ V                                           # (d, r)
    scale = np.sqrt(np.linalg.norm(B, axis=0) + 1e-300)   # balance the two factors
    A, B = V * scale, B / scale
    bias = None if p1.bias is None else mu_y - A @ (B.T @ mu_p)
    return (dataclasses.replace(p0, weight=B.T.reshape(p0.weight.shape)),
            dataclasses.replace(p1, weight=A.reshape(p1.weight.shape), bias=bias))


def _last_piece(pieces: Pieces, x: np.ndarray, Y: np.ndarray, ridge: float) -> Pieces:
    """The last piece's weight and bias by ridge regression on the others' output."""
    last = pieces[-1]
    feats = run_pieces(pieces[:-1], x)
    Wm = last.weight.reshape(last.out_features, -1)
    _, W_t, mu_p, mu_y = _ridge_system(_rows(feats, last), Y, Wm, ridge, last.bias is not None)
    bias = None if last.bias is None else mu_y - W_t.T @ mu_p
    return (*pieces[:-1], dataclasses.replace(last, weight=W_t.T.reshape(last.weight.shape),
                                              bias=bias))


def _two_factor(pieces: Pieces) -> bool:
    """``[any, 1x1 or linear]`` with no bias and no groups on the first: ``Ŵ = A Bᵀ``."""
    if len(pieces) != 2:
        return False
    p0, p1 = pieces
    pointwise = p1.kind == "linear" or (p1.kernel_size == (1, 1) and p1.stride == (1, 1)
                                        and p1.padding == (0, 0))
    return pointwise and p0.bias is None and p0.groups == 1 and p1.groups == 1


def _refit_layer(original: Piece, pieces: Pieces, x: np.ndarray, y: np.ndarray,
                 ridge: float) -> Pieces:
    """Pieces refitted to map ``x`` (compressed network's input) to ``y`` (original output)."""
    Y = _target_rows(y)
    if _two_factor(pieces):
        p0, p1 = pieces
        same_input = (p0.kind == original.kind and p0.kernel_size == original.kernel_size
                      and p0.stride == original.stride and p0.padding == original.padding
                      and p0.dilation == original.dilation and original.groups == 1)
        W = (original.weight.reshape(original.out_features, -1) if same_input
             else p1.weight.reshape(p1.out_features, -1) @ p0.weight.reshape(
                 p0.out_features, -1))
        return _reduced_rank(p0, p1, _rows(x, p0), Y, W, ridge)
    if pieces[-1].groups != 1:
        return pieces
    return _last_piece(pieces, x, Y, ridge)


# ---------------------------------------------------------------- the stages
@dataclass
class _Data:
    """Calibration inputs split into fitting and held-out parts, with the original outputs."""

    X: np.ndarray
    X_hold: np.ndarray
    Y: np.ndarray
    Y_hold: np.ndarray


def _relerr(net: SequentialNet, pieces: Mapping[str, Pieces], X: np.ndarray,
            Y: np.ndarray) -> float:
    out = net.forward(X, pieces).reshape(Y.shape)
    return float(np.linalg.norm(out - Y) / (np.linalg.norm(Y) or 1.0))


def _errors(net: SequentialNet, pieces: Mapping[str, Pieces], data: _Data) -> tuple[float, float]:
    return _relerr(net, pieces, data.X, data.Y), _relerr(net, pieces, data.X_hold, data.Y_hold)


def _layer_error(pieces: Pieces, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(run_pieces(pieces, x) - y))


def _sequential(net: SequentialNet, start: dict[str, Pieces], data: _Data, ridge: float
                ) -> tuple[dict[str, Pieces], int, list[str]]:
    """Layer by layer in order; returns the pieces, layers refitted, layers kept as they were."""
    original = net.layer_io(data.X)
    original_hold = net.layer_io(data.X_hold)
    pieces = dict(start)
    h, h_hold = net.as_batch(data.X), net.as_batch(data.X_hold)
    refitted, kept = 0, []
    for step in net.steps:
        if not isinstance(step, Piece):
            h, h_hold = step.forward(h), step.forward(h_hold)
            continue
        name = step.name
        if name in pieces:
            new = _refit_layer(step, pieces[name], h, original[name][1], ridge)
            y_hold = original_hold[name][1]
            if _layer_error(new, h_hold, y_hold) < _layer_error(pieces[name], h_hold, y_hold):
                pieces[name] = new
                refitted += 1
            else:
                kept.append(name)
        h = run_pieces(pieces.get(name, (step,)), h)
        h_hold = run_pieces(pieces.get(name, (step,)), h_hold)
    return pieces, refitted, kept


@dataclass
class _Best:
    """The iterate with the least held-out error so far."""

    error: float
    iteration: int
    params: list[np.ndarray]


def _unpack(z: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    out, at = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(z[at:at + size].reshape(shape))
        at += size
    return out


def _joint(net: SequentialNet, start: dict[str, Pieces], data: _Data, opts: RefitOptions
           ) -> tuple[dict[str, Pieces], int, str, bool]:
    """All free pieces at once on the engine; returns pieces, iterations, message, guarded."""
    import sdf
    from sdf import transforms as tf
    from sdf.models._common import quiet
    from sdf.models.compress._trace import traced_forward

    free = list(start)
    fun, params0, slots = traced_forward(net, start, free, data.X)
    fun_hold, _, _ = traced_forward(net, start, free, data.X_hold)
    names = [f"{layer}_{j}_{what}" for layer, j, what in slots]
    variables = [sdf.Variable(p, name=n) for p, n in zip(params0, names)]
    outputs = tf.custom(fun, n_inputs=len(variables), label="network")(*variables)
    Y, Y_hold = data.Y.reshape(len(data.Y), -1), data.Y_hold.reshape(len(data.Y_hold), -1)
    terms: dict[str, Any] = {"outputs": sdf.CPD(Y, [outputs, np.eye(Y.shape[1])],
                                                weight=1.0 / float(np.vdot(Y, Y) or 1.0))}
    if opts.ridge > 0:
        size2 = sum(float(np.vdot(p, p)) for p in params0) or 1.0
        terms["prior"] = sdf.L2(variables, weight=opts.ridge / size2, target=params0)
    model = sdf.Model(**terms)
    order = [names.index(n) for n in model.variable_names]
    shapes = [params0[k].shape for k in order]
    norm_hold = float(np.linalg.norm(Y_hold)) or 1.0
    best = _Best(float(np.linalg.norm(fun_hold(*params0) - Y_hold)) / norm_hold, 0, params0)

    def watch(info: Any) -> bool:
        values = _unpack(np.array(info.z, dtype=float), shapes)  # a copy
        params = [values[order.index(k)] for k in range(len(names))]
        err = float(np.linalg.norm(fun_hold(*params) - Y_hold)) / norm_hold
        if err < best.error:
            best.error, best.iteration, best.params = err, int(info.iteration), params
        return info.iteration - best.iteration >= opts.patience

    with quiet():  # a held-out stop is planned, not a failure of the fit
        result = model.fit(method=opts.method, max_iter=opts.max_iter, callback=watch)
    iterations = int(result.iterations)
    pieces = {name: list(ps) for name, ps in start.items()}
    for (layer, j, what), value in zip(slots, best.params):
        piece = pieces[layer][j]
        pieces[layer][j] = (dataclasses.replace(piece, weight=value) if what == "weight"
                            else dataclasses.replace(piece, bias=value))
    kept = best.iteration
    guarded = kept < iterations
    if kept == 0:
        message = f"{iterations} iterations; no iterate lowered the held-out error"
    elif guarded:
        message = (f"{iterations} iterations, held-out error lowest at iteration {kept} "
                   f"(kept); stop: {result.stop.message}" if result.stop.name != "CALLBACK"
                   else f"stopped at iteration {iterations}: held-out error lowest at "
                        f"iteration {kept} (kept)")
    else:
        message = f"{iterations} iterations, stop: {result.stop.message}"
    return {k: tuple(v) for k, v in pieces.items()}, iterations, message, guarded


# ---------------------------------------------------------------- driver
def _as_pieces(net: SequentialNet, compressed: Any) -> dict[str, Pieces]:
    layers = getattr(compressed, "layers", compressed)
    if not isinstance(layers, Mapping):
        raise ModelError(f"refit_network: compressed must be a NetworkCompression or a mapping "
                         f"of layer names to CompressedLayer or pieces, got "
                         f"{type(compressed).__name__}")
    out = {}
    for name, item in layers.items():
        pieces = item.pieces if isinstance(item, CompressedLayer) else item
        if not isinstance(pieces, Sequence) or not all(isinstance(p, Piece) for p in pieces):
            raise ModelError(f"refit_network: layer {name!r}: expected a CompressedLayer or a "
                             f"sequence of Piece, got {type(item).__name__}")
        out[str(name)] = tuple(pieces)
    net.count_params(out)  # names checked against the network's layers
    return out


def _split(X: np.ndarray, opts: RefitOptions) -> tuple[np.ndarray, np.ndarray]:
    n = X.shape[0]
    n_hold = int(round(opts.holdout * n))
    if n_hold < 1 or n - n_hold < 1:
        raise DataError(f"refit_network: {n} calibration inputs cannot be split into fitting "
                        f"and held-out parts with holdout={opts.holdout}")
    idx = np.random.default_rng(opts.seed).permutation(n)
    return X[np.sort(idx[n_hold:])], X[np.sort(idx[:n_hold])]


@with_one_blas_pool
def refit_network(
    net: SequentialNet | SmallNet,
    compressed: NetworkCompression | Mapping[str, CompressedLayer | Sequence[Piece]],
    X: np.ndarray,
    *,
    options: RefitOptions | None = None,
) -> RefitResult:
    """Refit a compressed network's pieces so that its outputs match the original network's.

    Parameters
    ----------
    net : SequentialNet or SmallNet
        The original network.
    compressed : NetworkCompression or mapping of str to CompressedLayer or pieces
        The compressed layers (:func:`compress_network`'s result, or per layer name the
        pieces that replace it). Layers not named stay as they are and are not refitted.
    X : ndarray of shape (n, ...)
        Calibration inputs of the network; a share ``options.holdout`` is held out.
    options : RefitOptions, optional
        Stages, regularisation, held-out share, joint solver and its budget.

    Returns
    -------
    RefitResult
        The refitted pieces (same shapes and parameter count) and the network's output
        errors before and after, on the fitting and held-out inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Op, Piece, SequentialNet, compress_network
    >>> from sdf.models.compress import refit_network
    >>> rng = np.random.default_rng(0)
    >>> net = SequentialNet([Piece("linear", rng.standard_normal((32, 16)), name="fc1"),
    ...                      Op("relu"),
    ...                      Piece("linear", rng.standard_normal((4, 32)), name="fc2")],
    ...                     (16,))
    >>> X = rng.standard_normal((200, 16))
    >>> compressed = compress_network(net.layer_specs(X), 0.5)
    >>> res = refit_network(net, compressed, X)
    >>> res.train_error_after < res.train_error_before
    True
    >>> res.holdout_error_after <= res.holdout_error_before
    True
    """
    opts = options or RefitOptions()
    net = as_sequential(net)
    start = _as_pieces(net, compressed)
    X = net.as_batch(X)
    if not np.all(np.isfinite(X)):
        raise DataError("refit_network: X has non-finite entries")
    X_fit, X_hold = _split(X, opts)
    data = _Data(X_fit, X_hold, net.forward(X_fit), net.forward(X_hold))
    train0, hold0 = _errors(net, start, data)
    pieces, stages = start, []
    if opts.sequential and pieces:
        new, refitted, kept = _sequential(net, pieces, data, opts.ridge)
        stages.append(_stage("sequential", net, pieces, new, data, refitted, bool(kept),
                             f"{refitted} layers refitted" + (
                                 f"; kept as they were (held-out error would rise): "
                                 f"{', '.join(kept)}" if kept else "")))
        pieces = new if stages[-1].accepted else pieces
    if opts.joint and pieces:
        new, iterations, message, guarded = _joint(net, pieces, data, opts)
        stages.append(_stage("joint", net, pieces, new, data, iterations, guarded, message))
        pieces = new if stages[-1].accepted else pieces
    train1, hold1 = _errors(net, pieces, data)
    return RefitResult(dict(pieces), train0, train1, hold0, hold1, tuple(stages),
                       len(X_fit), len(X_hold))


def _stage(name: str, net: SequentialNet, before: dict[str, Pieces], after: dict[str, Pieces],
           data: _Data, iterations: int, guarded: bool, message: str) -> RefitStage:
    """The stage's outcome, undone when it raised the network's held-out error."""
    hold_before = _relerr(net, before, data.X_hold, data.Y_hold)
    train, hold = _errors(net, after, data)
    if hold > hold_before:
        train, hold = _errors(net, before, data)
        return RefitStage(name, train, hold, False, True, iterations,
                          f"{message}; undone: the held-out error rose")
    return RefitStage(name, train, hold, True, guarded, iterations, message)
