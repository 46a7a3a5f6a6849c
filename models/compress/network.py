"""Several layers at once: shared factors, and one global parameter budget.

:func:`compress_shared` fits layers that read the same input in one model whose input
factor ``B`` is shared (the query, key and value projections of an attention block, or
convolutions on the same feature map)::

    weight_k   = CPD(W_k,     [A_k, B])
    response_k = CPD(X W_k^T, [matvec(X, B), A_k])      for every layer k

With a common weighting this is the whitened truncated SVD of the stacked weights.
:func:`compress_network` compresses every layer of a network to one budget, choosing
ranks from each layer's error-against-rank curve (:func:`~sdf.models.compress.allocate_ranks`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Mapping, cast

import numpy as np

from sdf.errors import DataError, ModelError
import sdf.models.compress._fit as _fit
from sdf.models._progress import FitTracker, progress_bar
from sdf.models.compress.budget import allocate_ranks, expand_rank
from sdf.models.compress.conv import (CONV_METHODS, ConvMethod, _conv_calibration, _grid_curve,
                                      _maps_error, compress_conv)
from sdf.models.compress.layers import Piece
from sdf.models.compress.linear import compress_linear
from sdf.models.compress.result import (CompressedLayer, CompressOptions, FitInfo, RankCurve,
                                        check_rank_args)
from sdf._blas import with_one_blas_pool

__all__ = ["LayerSpec", "NetworkCompression", "SharedCompression", "compress_network",
           "compress_shared"]


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a network to compress.

    Attributes
    ----------
    layer : Piece
        The original layer (weight, bias, geometry).
    method : str, default "auto"
        ``"svd"`` for linear layers; a conv method for convolutions (``"auto"``: ``"svd"``
        for linear, ``"channel_svd"`` for convolutions).
    X : ndarray, optional
        Calibration inputs of this layer (its input activations).
    X_test : ndarray, optional
        Held-out inputs of this layer, for the reported output error.
    input_hw : pair of int, optional
        Input spatial size (convolutions), when ``X`` is not given.
    """

    layer: Piece
    method: str = "auto"
    X: np.ndarray | None = None
    X_test: np.ndarray | None = None
    input_hw: tuple[int, int] | None = None

    @property
    def resolved_method(self) -> str:
        if self.method != "auto":
            return self.method
        return "svd" if self.layer.kind == "linear" else "channel_svd"


@dataclass(frozen=True, repr=False)
class NetworkCompression:
    """Every layer compressed under one budget (parameters, MACs or both).

    Attributes
    ----------
    layers : dict of str to CompressedLayer
    curves : dict of str to RankCurve
        The per-layer error-against-rank curves that drove the allocation.
    budget : float or None
        Parameters allowed for the compressed layers together (None: no parameter budget).
    test_output_error : dict of str to float
        Output error of each layer on its held-out inputs (when given).
    mac_budget : float or None
        Multiply-accumulates per sample allowed for the layers together (None: no MAC
        budget).
    """

    layers: dict[str, CompressedLayer]
    curves: dict[str, RankCurve]
    budget: float | None
    test_output_error: dict[str, float] = field(default_factory=dict)
    mac_budget: float | None = None

    @property
    def params_before(self) -> int:
        return int(sum(c.params_before for c in self.layers.values()))

    @property
    def params_after(self) -> int:
        return int(sum(c.params_after for c in self.layers.values()))

    @property
    def macs_before(self) -> int | None:
        """MACs per sample of the original layers (None when a convolution's input size
        is unknown)."""
        counts = [c.macs_before for c in self.layers.values()]
        return None if any(m is None for m in counts) else int(sum(counts))  # type: ignore[arg-type]

    @property
    def macs_after(self) -> int | None:
        """MACs per sample of the compressed layers (None when unknown)."""
        counts = [c.macs_after for c in self.layers.values()]
        return None if any(m is None for m in counts) else int(sum(counts))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        """A header line, then one line per layer (no arrays)."""
        budgets = []
        if self.budget is not None:
            budgets.append(f"budget {self.budget:.0f} params")
        if self.mac_budget is not None:
            budgets.append(f"{self.mac_budget:.0f} MACs")
        before, after = self.macs_before, self.macs_after
        macs = ("" if before is None or after is None else
                f", MACs {before} -> {after} ({after / (before or 1):.3f})")
        head = (f"NetworkCompression({len(self.layers)} layers, {' and '.join(budgets)}, "
                f"params {self.params_before} -> {self.params_after} "
                f"({self.params_after / (self.params_before or 1):.3f}){macs})")
        return "\n".join([head, *(f"  {c!r}" for c in self.layers.values())])

    def ranks(self) -> dict[str, object]:
        return {k: c.rank for k, c in self.layers.items()}

    def table(self) -> list[dict[str, object]]:
        """One row per layer (for printing), held-out output error included."""
        rows = []
        for k, c in self.layers.items():
            row = c.summary()
            row["test_output_error"] = self.test_output_error.get(k)
            rows.append(row)
        return rows


@dataclass(frozen=True, repr=False)
class SharedCompression:
    """Layers reading one input, compressed with a shared input factor.

    Attributes
    ----------
    layers : dict of str to CompressedLayer
        Per layer: pieces ``[shared, own]`` (the shared piece is the same object).
    shared : Piece
        The shared input projection (``in -> rank``).
    rank : int
    info : FitInfo
    """

    layers: dict[str, CompressedLayer]
    shared: Piece
    rank: int
    info: FitInfo

    @property
    def params_before(self) -> int:
        return int(sum(c.params_before for c in self.layers.values()))

    def __repr__(self) -> str:
        """A header line (shared piece, rank, counts, error), then one line per layer."""
        head = (f"SharedCompression({len(self.layers)} layers, rank={self.rank}, shared "
                f"{self.shared!r}, params {self.params_before} -> {self.params_after} "
                f"({self.params_after / (self.params_before or 1):.3f}), "
                f"weight_error={self.weight_error():.4g})")
        return "\n".join([head, *(f"  {c!r}" for c in self.layers.values())])

    @property
    def params_after(self) -> int:
        """Parameters with the shared piece counted once."""
        return int(self.shared.n_params
                   + sum(c.pieces[-1].n_params for c in self.layers.values()))

    def weight_error(self) -> float:
        """Relative error of all weights together: ``sqrt(sum ||E_k||^2 / sum ||W_k||^2)``."""
        num = sum(float(np.sum((c.dense() - c.original.weight) ** 2)) for c in self.layers.values())
        den = sum(float(np.sum(c.original.weight ** 2)) for c in self.layers.values())
        return float(np.sqrt(num / (den or 1.0)))

    def output_error(self, x: np.ndarray) -> float:
        """Relative error of all responses together on inputs ``x``."""
        return _joint_output_error(self.layers.values(), x)


def _joint_output_error(layers: Iterable[CompressedLayer], x: np.ndarray) -> float:
    norms = [c.response_norms(x) for c in layers]
    num = sum(e * e for e, _ in norms)
    den = sum(y * y for _, y in norms)
    return float(np.sqrt(num / (den or 1.0)))


def _shared_matrices(where: str, layers: Mapping[str, Piece]) -> list[np.ndarray]:
    if not layers:
        raise ModelError(f"{where}: needs at least one layer")
    first = next(iter(layers.values()))
    for name, p in layers.items():
        same = (p.kind == first.kind and p.weight.shape[1:] == first.weight.shape[1:]
                and p.stride == first.stride and p.padding == first.padding
                and p.dilation == first.dilation and p.groups == 1)
        if not same:
            raise ModelError(
                f"{where}: layer {name!r} (shape {p.weight.shape}) does not read the same input "
                f"the same way as the first layer (shape {first.weight.shape}); shared factors "
                "need equal input sizes, kernels and geometry")
    return [p.weight.reshape(p.out_features, -1) for p in layers.values()]


@with_one_blas_pool
def compress_shared(
    layers: Mapping[str, Piece],
    rank: int | None = None,
    ratio: float | None = None,
    X: np.ndarray | None = None,
    *,
    balance: float = 0.9,
    options: CompressOptions | None = None,
) -> SharedCompression:
    """Compress layers that read the same input with one shared input factor.

    Parameters
    ----------
    layers : mapping of str to Piece
        Linear layers with equal ``in``, or convolutions with equal input channels, kernel
        and geometry.
    rank : int, optional
        Width of the shared projection. Give ``rank`` or ``ratio``.
    ratio : float, optional
        Target share of the layers' total parameters (shared piece counted once): the
        largest rank within it, at most ``min(in, total outputs)``.
    X : ndarray, optional
        Calibration inputs (n, in) or feature maps (n, in, H, W): data-aware fit.
    balance : float in [0, 1], default 0.9
        Share of the response terms (one weighting for all layers, normalised by the
        summed norms, so the numpy optimum is one whitened SVD of the stacked weights).
    options : CompressOptions, optional
        ``solver="engine"`` fits the multi-term model with ``sdf.Model.fit``.

    Returns
    -------
    SharedCompression

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece, compress_shared
    >>> rng = np.random.default_rng(0)
    >>> qkv = {k: Piece("linear", rng.standard_normal((16, 16))) for k in "qkv"}
    >>> res = compress_shared(qkv, rank=8)
    >>> res.params_after, res.params_before
    (512, 768)
    """
    where = "compress_shared"
    opts = options or CompressOptions()
    check_rank_args(where, rank, ratio, None)
    Ws = _shared_matrices(where, layers)
    first = next(iter(layers.values()))
    d, outs = Ws[0].shape[1], [W.shape[0] for W in Ws]
    nbias = sum(0 if p.bias is None else p.out_features for p in layers.values())
    top = min(d, sum(outs))
    if ratio is not None:
        before = sum(p.n_params for p in layers.values())
        per_rank = d + sum(outs)
        rank = min(int((ratio * before - nbias) // per_rank), top)
        if rank < 1:
            least = (per_rank + nbias) / before
            raise ModelError(
                f"{where}: even rank 1 costs {least:.3g} of the layers' params, more than "
                f"ratio={ratio}: ask for a ratio of at least {least:.3g}")
    if rank is None or not 1 <= int(rank) <= top:
        raise ModelError(f"{where}: rank must be in [1, {top}], got {rank}")
    rank = int(rank)
    Wall = np.vstack(Ws)
    calib, every_patch = None, None
    if X is not None:
        X = np.asarray(X, dtype=float)
        if (X.shape[1:] != (d,) if first.kind == "linear"
                else X.ndim != 4 or X.shape[1] != first.in_features):
            raise DataError(f"{where}: X has shape {X.shape}, which does not match the layers' "
                            f"input")
        if first.kind == "linear":
            calib = _fit.Calibration.from_rows(
                X, opts.max_calib_rows, opts.seed,
                outputs=None if opts.solver == "engine" else len(Wall))
        else:  # the stacked layer's, as compress_conv's channel SVD takes it
            stacked = dataclasses.replace(
                first, weight=Wall.reshape(len(Wall), *first.weight.shape[1:]), bias=None)
            calib, every_patch = _conv_calibration(X, stacked, opts, "channel_svd")
    w_w, w_r = _fit.term_weights(Wall, calib, balance if calib is not None else 0.0)
    if opts.solver == "engine":
        import sdf.models.compress._engine as _engine

        A0, B0, _ = _fit.lowrank_fit(Wall, rank, None)
        splits = np.cumsum(outs)[:-1]
        As, B, info = _engine.fit_shared(Ws, calib, [(w_w, w_r)] * len(Ws),
                                         np.split(A0, splits), B0, opts)
    else:
        A, B = _fit.WhitenedSVD(Wall, calib, w_w, w_r).factors(rank)
        As = np.split(A, np.cumsum(outs)[:-1])
        info = FitInfo("numpy", 0, "closed form (whitened SVD of the stacked weights)")
    kh, kw = first.kernel_size
    if first.kind == "linear":
        shared = Piece("linear", B.T, name="shared")
    else:
        shared = Piece("conv2d", B.T.reshape(rank, first.in_features, kh, kw),
                       stride=first.stride, padding=first.padding, dilation=first.dilation,
                       name="shared")
    out = {}
    for (name, p), W, Ak in zip(layers.items(), Ws, As):
        w2 = Ak if p.kind == "linear" else Ak.reshape(p.out_features, rank, 1, 1)
        own = Piece(p.kind, w2, bias=p.bias, name=f"{name}.out")
        W_hat = (Ak @ B.T).reshape(p.weight.shape)
        cal = None
        if every_patch is not None:
            cal = _maps_error(every_patch, W, Ak @ B.T, None, None)
        elif calib is not None and not calib.sampled:
            cal = calib.output_error(W, Ak @ B.T, factors=(Ak, B))
        elif X is not None:  # a sample of a linear layer's inputs: the error on all of them
            cal = float(np.linalg.norm(X @ (Ak @ B.T - W).T) / (np.linalg.norm(X @ W.T) or 1.0))
        out[name] = CompressedLayer(
            name=name, method="shared_svd", rank=rank, original=p, pieces=(shared, own),
            weight_approx=W_hat, balance=balance if X is not None else 0.0,
            input_hw=None if X is None or X.ndim != 4 else (X.shape[2], X.shape[3]),
            weight_error=float(np.linalg.norm(W_hat - p.weight)
                               / (np.linalg.norm(p.weight) or 1.0)),
            calib_output_error=cal, curve=None, info=info)
    return SharedCompression(out, shared, rank, info)


def _layer_curve(spec: LayerSpec, name: str, balance: float, opts: CompressOptions
                 ) -> RankCurve:
    p, method = spec.layer, spec.resolved_method
    if _grouped(p):  # no factorization: the layer is kept dense (rank 0 only)
        empty = np.zeros(0, dtype=int)
        return RankCurve(empty, empty, empty, np.zeros(0))
    if method == "svd":
        return _curve_of(compress_linear(p.weight, rank=1, X=spec.X, bias=p.bias,
                                         balance=balance, name=name,
                                         options=_closed_forms(opts)))
    hw = _input_hw(spec)
    if method in ("channel_svd", "weight_svd", "spatial_svd"):
        return _curve_of(compress_conv(
            p.weight, _conv_method(name, method), rank=1,
            X=spec.X if method == "channel_svd" else None, bias=p.bias, stride=p.stride,
            padding=p.padding, dilation=p.dilation, input_hw=hw, balance=balance, name=name,
            options=_closed_forms(opts)))
    # CP and Tucker-2: the same objective as the final fit (data-aware when X is given),
    # so that their errors compare with the other layers' curves.
    Wm = p.weight.reshape(p.out_features, -1)
    calib = None
    if spec.X is not None:  # the final fit's calibration
        calib = _conv_calibration(np.asarray(spec.X, dtype=float), p, opts, method)[0]
    w_w, w_r = _fit.term_weights(Wm, calib, balance if calib is not None else 0.0)
    L = None if calib is None else _fit.whitener(Wm.shape[1], calib, w_w, w_r)
    return _grid_curve(method, p, p.weight, calib, w_w, w_r, L, _closed_forms(opts), hw)


def _curve_of(res: CompressedLayer) -> RankCurve:
    """The error-against-rank curve of a fit that computes one (the SVD-type methods)."""
    if res.curve is None:
        raise ModelError(f"layer {res.name!r}: method {res.method!r} gave no rank curve")
    return res.curve


def _conv_method(name: str, method: str) -> ConvMethod:
    """``method`` checked to be a convolution method."""
    if method not in CONV_METHODS:
        raise ModelError(f"compress_network: layer {name!r}: method must be 'svd' (linear) or "
                         f"one of {', '.join(CONV_METHODS)} (conv), got {method!r}")
    return cast(ConvMethod, method)


def _with_dense(curve: RankCurve, layer: Piece, input_hw: tuple[int, int] | None,
                by_macs: bool = False) -> RankCurve:
    """Drop ranks that cost as much as the layer (in parameters, and in MACs too when a MAC
    budget counts); add rank 0 = keep the layer dense, at the layer's own counts."""
    dense_macs = -1 if layer.kind == "conv2d" and input_hw is None else layer.macs(input_hw)
    keep = curve.params < layer.n_params
    if by_macs:
        keep |= (curve.macs >= 0) & (curve.macs < dense_macs)
    return RankCurve(np.append(curve.ranks[keep], 0), np.append(curve.params[keep], layer.n_params),
                     np.append(curve.macs[keep], dense_macs),
                     np.append(curve.errors[keep], 0.0))


def _grouped(p: Piece) -> bool:
    """A grouped convolution (depthwise ones included): the conv methods factor the weight
    of a convolution whose every output reads every input, so it is kept dense."""
    return p.kind == "conv2d" and p.groups != 1


def _kept_dense(p: Piece, spec: LayerSpec, name: str, curve: RankCurve) -> CompressedLayer:
    X = spec.X
    why = (f"a grouped convolution (groups={p.groups})" if _grouped(p)
           else "every factorization costs as much")
    return CompressedLayer(
        name=name, method="dense", rank=0, original=p, pieces=(p,), weight_approx=p.weight,
        balance=0.0, input_hw=_input_hw(spec), weight_error=0.0,
        calib_output_error=None if X is None else 0.0, curve=curve,
        info=FitInfo("numpy", 0, f"kept dense: {why}"))


def _closed_forms(opts: CompressOptions) -> CompressOptions:
    """The options with closed forms where they are exact (the curves need many fits)."""
    return dataclasses.replace(opts, solver="auto")


def _input_hw(spec: LayerSpec) -> tuple[int, int] | None:
    if spec.X is not None and np.ndim(spec.X) == 4:
        return (int(spec.X.shape[2]), int(spec.X.shape[3]))
    return spec.input_hw


@with_one_blas_pool
def compress_network(
    layers: Mapping[str, LayerSpec],
    ratio: float | None = None,
    *,
    macs_ratio: float | None = None,
    balance: float = 0.9,
    layer_weights: Mapping[str, float] | None = None,
    options: CompressOptions | None = None,
    progress: bool = False,
) -> NetworkCompression:
    """Compress every layer to one global budget of parameters, of MACs, or of both.

    Each layer's error-against-rank curve (relative error of its fitted objective, from
    singular values for the SVD-type methods, from budgeted fits on a grid of ranks for CP and a
    grid of fits for Tucker-2) goes into :func:`~sdf.models.compress.allocate_ranks`,
    which spends ``ratio`` times the total parameters and/or ``macs_ratio`` times the
    total multiply-accumulates per sample where the summed squared relative errors drop
    fastest. Each layer is then fitted at its rank. A parameter budget favours layers
    with many weights (often dense heads); a MAC budget favours layers that run on large
    feature maps (early convolutions), which is what latency follows.

    Parameters
    ----------
    layers : mapping of str to LayerSpec
        Grouped convolutions (``groups > 1``, depthwise ones included) are kept dense:
        every conv method factors a weight whose outputs read every input.
    ratio : float, optional
        Target share of the total parameters of the given layers, in (0, 1].
    macs_ratio : float, optional
        Target share of their total MACs per sample, in (0, 1]; every convolution then
        needs its input size (``LayerSpec.input_hw`` or calibration inputs ``X``). Give
        ``ratio``, ``macs_ratio`` or both.
    balance : float in [0, 1], default 0.9
        Share of the response terms for layers with calibration inputs.
    layer_weights : mapping of str to float, optional
        Importance of each layer's error in the allocation.
    options : CompressOptions, optional
    progress : bool, default False
        Show a progress bar on stderr, one step per layer's curve and per layer's fit,
        labelled with the layer (tqdm's when installed, else a one-line text bar).

    Returns
    -------
    NetworkCompression

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import LayerSpec, Piece, compress_network
    >>> rng = np.random.default_rng(0)
    >>> net = {"fc1": LayerSpec(Piece("linear", rng.standard_normal((32, 64)))),
    ...        "fc2": LayerSpec(Piece("linear", rng.standard_normal((10, 32))))}
    >>> res = compress_network(net, 0.5)
    >>> res.params_after <= 0.5 * res.params_before
    True
    >>> by_macs = compress_network(net, macs_ratio=0.5)
    >>> by_macs.macs_after <= 0.5 * by_macs.macs_before
    True
    """
    opts = options or CompressOptions()
    if ratio is None and macs_ratio is None:
        raise ModelError("compress_network: give ratio (a share of the parameters), "
                         "macs_ratio (a share of the MACs) or both")
    for what, value in (("ratio", ratio), ("macs_ratio", macs_ratio)):
        if value is not None and not 0 < value <= 1:
            raise ModelError(f"compress_network: {what} must be in (0, 1], got {value}")
    if not isinstance(layers, Mapping):
        raise ModelError("compress_network: layers must be a mapping of layer name to "
                         f"LayerSpec, got {type(layers).__name__}")
    if not layers:
        raise ModelError("compress_network: needs at least one layer")
    for name, spec in layers.items():
        if not isinstance(spec, LayerSpec):
            raise ModelError(f"compress_network: layer {name!r} is a {type(spec).__name__}, "
                             "not a LayerSpec")
        if _grouped(spec.layer) and spec.method != "auto":
            raise ModelError(
                f"compress_network: layer {name!r} is a grouped convolution (groups="
                f"{spec.layer.groups}), which {spec.method!r} cannot factor; with "
                "method='auto' it is kept dense")
    if macs_ratio is not None:
        for name, spec in layers.items():
            if spec.layer.kind == "conv2d" and _input_hw(spec) is None:
                raise ModelError(
                    f"compress_network: layer {name!r}: a MAC budget needs the input size "
                    "of every convolution; give LayerSpec(input_hw=(H, W)) or calibration "
                    "inputs X")
    if not isinstance(progress, (bool, np.bool_)):
        raise ModelError(f"compress_network: progress must be True or False, got {progress!r}")
    with progress_bar(bool(progress), 2 * len(layers), "compress_network") as bar:
        return _compress_network(layers, ratio, macs_ratio, balance, layer_weights, opts,
                                 FitTracker("compress_network", bar))


def _compress_network(layers: Mapping[str, LayerSpec], ratio: float | None,
                      macs_ratio: float | None, balance: float,
                      layer_weights: Mapping[str, float] | None, opts: CompressOptions,
                      track: FitTracker) -> NetworkCompression:
    by_macs = macs_ratio is not None
    curves = {}
    for name, spec in layers.items():
        curves[name] = _with_dense(_layer_curve(spec, name, balance, opts), spec.layer,
                                   _input_hw(spec), by_macs)
        track.after(f"{name}: error curve")
    before = sum(spec.layer.n_params for spec in layers.values())
    macs_before = sum(int(c.macs[-1]) for c in curves.values()) if by_macs else 0
    budget = None if ratio is None else ratio * before
    mac_budget = None if macs_ratio is None else macs_ratio * macs_before
    ranks = allocate_ranks(curves, budget, layer_weights=layer_weights, mac_budget=mac_budget,
                           where="compress_network")
    out: dict[str, CompressedLayer] = {}
    test_err: dict[str, float] = {}
    for name, spec in layers.items():
        p, method = spec.layer, spec.resolved_method
        if ranks[name] == 0:
            c = _kept_dense(p, spec, name, curves[name])
        elif method == "svd":
            c = compress_linear(p.weight, rank=ranks[name], X=spec.X, bias=p.bias, balance=balance,
                                name=name, options=opts)
        else:
            c = compress_conv(p.weight, _conv_method(name, method),
                              rank=expand_rank(method, p, ranks[name]), X=spec.X, bias=p.bias,
                              stride=p.stride, padding=p.padding, dilation=p.dilation,
                              balance=balance, input_hw=_input_hw(spec), name=name,
                              options=opts)
        out[name] = c
        track.after(f"{name}: kept dense" if ranks[name] == 0
                    else f"{name}: {c.method} at rank {c.rank}")
        if spec.X_test is not None:
            test_err[name] = c.output_error(spec.X_test)
    return NetworkCompression(out, curves, budget, test_err, mac_budget)
