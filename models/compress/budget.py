"""Costs of compressed layers and the choice of ranks: per layer and under one budget.

Per layer, a rank comes from a target ratio of parameters (or MACs), or from an error
tolerance on the layer's error-against-rank curve. Across layers,
:func:`allocate_ranks` spends one global parameter budget, MAC budget or both where it
lowers the error most per unit of cost: a greedy walk on the lower convex hull of each layer's curve (squared
relative error against parameters), which is optimal for the convexified problem and never
worse than the plain greedy.
"""

from __future__ import annotations

from typing import Literal, Mapping, Tuple, Union

import numpy as np

from sdf.errors import ModelError
from sdf.models.compress.layers import Piece
from sdf.models.compress.result import RankCurve

__all__ = ["Rank", "RatioOf", "allocate_ranks", "layer_cost", "max_rank", "rank_for_ratio",
           "rank_for_tol"]

RatioOf = Literal["params", "macs"]
#: A rank: an int, or ``(r_out, r_in)`` for Tucker-2.
Rank = Union[int, Tuple[int, int]]
#: ``(H, W, H_out, W_out, H_mid)``: input, output and middle-piece spatial sizes.
_Sizes = Tuple[int, int, int, int, int]


def _pair_of(rank: Rank) -> tuple[int, int]:
    """``(r_out, r_in)`` of a Tucker-2 rank (an int r means ``(r, r)``)."""
    if isinstance(rank, tuple):
        return int(rank[0]), int(rank[1])
    return int(rank), int(rank)


def _geometry(orig: Piece, input_hw: tuple[int, int] | None
              ) -> tuple[int, int, int, int, _Sizes | None]:
    o, i = orig.out_features, orig.in_features
    kh, kw = orig.kernel_size
    if orig.kind == "linear" or input_hw is None:
        return o, i, kh, kw, None
    H, W = input_hw
    Ho, Wo = orig.output_hw(input_hw)
    # width after a kh x 1 piece that keeps the input width (spatial SVD / CP middle piece)
    Hm = Ho
    return o, i, kh, kw, (H, W, Ho, Wo, Hm)


def layer_cost(method: str, orig: Piece, rank: Rank | None,
               input_hw: tuple[int, int] | None = None) -> tuple[int, int | None]:
    """Parameters and MACs per sample of ``orig`` compressed by ``method`` at ``rank``.

    Parameters
    ----------
    method : {"svd", "channel_svd", "weight_svd", "spatial_svd", "cp", "tucker2", "dense"}
    orig : Piece
        The original layer.
    rank : int or pair of int or None
        The rank (``(r_out, r_in)`` for Tucker-2; an int r means ``(r, r)``); None for
        ``"dense"``.
    input_hw : pair of int, optional
        Input spatial size of a convolution, for the MAC count (None: MACs unknown).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece, layer_cost
    >>> layer_cost("svd", Piece("linear", np.zeros((30, 20)), bias=np.zeros(30)), 5)
    (280, 250)
    """
    o, i, kh, kw, g = _geometry(orig, input_hw)
    nb = 0 if orig.bias is None else o
    m: int | None
    if method == "dense":
        return orig.n_params, (None if g is None and orig.kind != "linear" else
                               orig.macs(input_hw))
    if method == "tucker2":
        if rank is None:
            raise ModelError("layer_cost: method 'tucker2' needs a rank")
        ro, ri = _pair_of(rank)
        p = i * ri + ri * ro * kh * kw + ro * o
        m = None if g is None else i * ri * g[0] * g[1] + (ri * ro * kh * kw + ro * o) * g[2] * g[3]
        return int(p + nb), (None if m is None else int(m))
    if rank is None or isinstance(rank, tuple):
        raise ModelError(f"layer_cost: method {method!r} needs an int rank, got {rank!r}")
    r = int(rank)
    if method in ("svd", "channel_svd"):
        p = r * i * kh * kw + o * r
        m = p if orig.kind == "linear" else (None if g is None else p * g[2] * g[3])
    elif method == "weight_svd":
        p = i * r + r * o * kh * kw
        m = None if g is None else i * r * g[0] * g[1] + r * o * kh * kw * g[2] * g[3]
    elif method == "spatial_svd":
        p = i * kh * r + r * kw * o
        m = None if g is None else i * kh * r * g[4] * g[1] + r * kw * o * g[2] * g[3]
    elif method == "cp":
        p = r * (i + kh + kw + o)
        m = None if g is None else (i * r * g[0] * g[1] + r * kh * g[4] * g[1]
                                    + r * kw * g[2] * g[3] + r * o * g[2] * g[3])
    else:
        raise ModelError(f"layer_cost: unknown method {method!r}")
    return int(p + nb), (None if m is None else int(m))


def max_rank(method: str, orig: Piece) -> Rank:
    """Largest useful rank (an exact factorization exists at this rank, except for CP)."""
    o, i = orig.out_features, orig.in_features
    kh, kw = orig.kernel_size
    if method in ("svd", "channel_svd"):
        return min(o, i * kh * kw)
    if method == "weight_svd":
        return min(i, o * kh * kw)
    if method == "spatial_svd":
        return min(i * kh, o * kw)
    if method == "tucker2":
        return (o, i)
    if method == "cp":
        return int(o * i * kh * kw // max(o, i, kh, kw))
    raise ModelError(f"max_rank: unknown method {method!r}")


def _scalar_ranks(method: str, orig: Piece) -> np.ndarray:
    return np.arange(1, max_scalar_rank(method, orig) + 1)


def max_scalar_rank(method: str, orig: Piece) -> int:
    """Largest scalar rank index (Tucker-2: the larger channel count)."""
    top = max_rank(method, orig)
    return max(top) if isinstance(top, tuple) else top


def _tucker_rank(orig: Piece, r: int) -> tuple[int, int]:
    """Tucker-2 ranks grown together in proportion to the channel counts."""
    o, i = orig.out_features, orig.in_features
    big = max(o, i)
    return max(1, min(o, round(r * o / big))), max(1, min(i, round(r * i / big)))


def expand_rank(method: str, orig: Piece, r: int) -> Rank:
    """The rank object of a scalar rank index (a pair for Tucker-2)."""
    return _tucker_rank(orig, r) if method == "tucker2" else int(r)


def rank_for_ratio(method: str, orig: Piece, ratio: float, ratio_of: RatioOf = "params",
                   input_hw: tuple[int, int] | None = None, *,
                   where: str = "rank_for_ratio") -> Rank:
    """Largest rank whose cost is at most ``ratio`` times the original's (``where``: the
    caller, named in the error when even rank 1 costs more).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import Piece, rank_for_ratio
    >>> rank_for_ratio("svd", Piece("linear", np.zeros((100, 100))), 0.5)
    25
    """
    k = 0 if ratio_of == "params" else 1
    before = layer_cost("dense", orig, None, input_hw)[k]
    if before is None:
        raise ModelError(f"{where}: a MAC ratio of a convolution needs input_hw")
    if method == "tucker2":
        return _tucker_ranks_within(orig, ratio * before, k, input_hw, ratio, ratio_of, where)
    return _grown_rank(method, orig, ratio, ratio_of, input_hw, where)


def tucker_ratio_candidates(orig: Piece, ratio: float, ratio_of: RatioOf = "params",
                            input_hw: tuple[int, int] | None = None, *,
                            where: str = "tucker_ratio_candidates") -> list[tuple[int, int]]:
    """Tucker-2 ranks within the ratio: :func:`rank_for_ratio`'s pair, then the pair of
    ranks grown together in proportion to the channel counts (when it differs)."""
    first = rank_for_ratio("tucker2", orig, ratio, ratio_of, input_hw, where=where)
    grown = _grown_rank("tucker2", orig, ratio, ratio_of, input_hw, where)
    pairs = [first if isinstance(first, tuple) else (first, first)]
    if isinstance(grown, tuple) and grown not in pairs:
        pairs.append(grown)
    return pairs


def _grown_rank(method: str, orig: Piece, ratio: float, ratio_of: RatioOf,
                input_hw: tuple[int, int] | None, where: str) -> Rank:
    """Largest scalar rank index (expanded by :func:`expand_rank`) within the ratio."""
    k = 0 if ratio_of == "params" else 1
    before = layer_cost("dense", orig, None, input_hw)[k] or 0
    best: Rank | None = None
    for r in _scalar_ranks(method, orig):
        rank = expand_rank(method, orig, int(r))
        if (layer_cost(method, orig, rank, input_hw)[k] or 0) <= ratio * before:
            best = rank
        else:
            break
    if best is None:
        first = layer_cost(method, orig, expand_rank(method, orig, 1), input_hw)[k] or 0
        raise _too_small(where, str(method), ratio, ratio_of, first / (before or 1))
    return best


def _too_small(where: str, method: str, ratio: float, ratio_of: RatioOf, least: float
               ) -> ModelError:
    return ModelError(
        f"{where}: even rank 1 of {method!r} costs {least:.3g} of the layer's {ratio_of}, "
        f"more than ratio={ratio}: ask for a ratio of at least {least:.3g} or another "
        "method")


def _left_basis(M: np.ndarray) -> np.ndarray:
    """Left singular vectors of ``M``, leading first: for a wide ``M`` the eigenvectors of
    ``M M^T`` (an orthonormal basis, a fraction of the SVD's time)."""
    if M.shape[1] < M.shape[0]:
        return np.linalg.svd(M, full_matrices=False)[0]
    return np.linalg.eigh(M @ M.T)[1][:, ::-1]


def _tucker_ranks_within(orig: Piece, budget: float, k: int,
                         input_hw: tuple[int, int] | None, ratio: float,
                         ratio_of: RatioOf, where: str) -> tuple[int, int]:
    """Tucker-2 ranks ``(r_out, r_in)`` within ``budget`` with the least truncated-HOSVD error.

    With ``U_out``, ``U_in`` the left singular vectors of the two channel unfoldings and
    ``S = W x_0 U_out^T x_1 U_in^T``, the truncated HOSVD at ranks ``(a, b)`` keeps the
    energy ``sum_{p < a, q < b} ||S[p, q]||^2``: one 2-D cumulative sum scores every pair
    of ranks, and the pair that fits the budget with the least error is taken (HOOI then
    starts there). So a layer with few input channels keeps its input rank and cuts the
    output rank, where ranks grown in proportion to the channel counts (``(10, 1)`` on a
    3-input-channel conv) discard whole input channels.
    """
    W = orig.weight
    o, i = W.shape[:2]
    Uo = _left_basis(W.reshape(o, -1))
    Ui = _left_basis(np.moveaxis(W, 1, 0).reshape(i, -1))
    S = np.einsum("oihw,op,iq->pqhw", W, Uo, Ui, optimize=True)
    energy = np.zeros((o, i))
    energy[:S.shape[0], :S.shape[1]] = np.sum(S * S, axis=(2, 3))
    total = float(np.vdot(W, W))
    # relative to the weight's energy: the rounding below ties equal errors at any scale
    error = 1.0 - energy.cumsum(axis=0).cumsum(axis=1) / (total or 1.0)
    # the cost is bilinear in (r_out, r_in): four evaluations give it for every pair
    c11, c12, c21, c22 = (float(layer_cost("tucker2", orig, pair, input_hw)[k] or 0)
                          for pair in ((1, 1), (1, 2), (2, 1), (2, 2)))
    a_out, b_in = np.arange(o)[:, None], np.arange(i)[None, :]
    cost = c11 + (c21 - c11) * a_out + (c12 - c11) * b_in + (c22 - c21 - c12 + c11) * a_out * b_in
    error = np.where(cost <= budget, error, np.inf)
    if not np.isfinite(error).any():
        raise _too_small(where, "tucker2", ratio, ratio_of, c11 * ratio / (budget or 1))
    # least error; among equal errors (e.g. exact ranks) the cheapest pair
    best = np.lexsort((cost.ravel(), np.round(error.ravel(), 12)))[0]
    a, b = np.unravel_index(best, error.shape)
    return int(a) + 1, int(b) + 1


def rank_for_tol(ranks: np.ndarray, errors: np.ndarray, tol: float) -> int:
    """Smallest rank in ``ranks`` whose error is at most ``tol`` (the largest if none is)."""
    ok = np.flatnonzero(np.asarray(errors) <= tol)
    return int(ranks[ok[0]] if ok.size else ranks[-1])


def _lower_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the lower convex hull of points sorted by x (y decreasing overall)."""
    hull: list[int] = []
    for k in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b if it lies on or above the segment a -> k
            if (y[b] - y[a]) * (x[k] - x[a]) >= (y[k] - y[a]) * (x[b] - x[a]):
                hull.pop()
            else:
                break
        hull.append(k)
    return np.asarray(hull)


def allocate_ranks(curves: Mapping[str, RankCurve], budget: float | None = None,
                   fixed_cost: float = 0.0, layer_weights: Mapping[str, float] | None = None,
                   *, mac_budget: float | None = None, fixed_macs: float = 0.0,
                   where: str = "allocate_ranks") -> dict[str, int]:
    """Spend a parameter budget, a MAC budget or both over layers, where squared error
    drops most per unit of cost.

    Each layer's curve is reduced to its lower convex hull in (cost, weighted squared
    error); a greedy walk then takes, among the next hull steps that keep every budget,
    the one with the largest error drop per unit of cost. With one budget the cost is that
    count; with both it is ``params / budget + macs / mac_budget`` (each budget's share),
    and every step must keep both.

    Parameters
    ----------
    curves : mapping of str to RankCurve
        Per layer: ranks, their parameter and MAC counts and relative errors (rank 0, if
        present, is the layer kept dense).
    budget : float, optional
        Total parameters allowed for all layers together.
    fixed_cost : float, default 0
        Parameters spent elsewhere (subtracted from the budget).
    layer_weights : mapping of str to float, optional
        Importance of each layer's squared relative error (default 1 each).
    mac_budget : float, optional
        Total multiply-accumulates per sample allowed for all layers together (every
        curve must then know its MACs: no ``-1`` entries).
    fixed_macs : float, default 0
        MACs spent elsewhere.
    where : str, default "allocate_ranks"
        The caller, named in the error when even the smallest ranks exceed a budget.

    Returns
    -------
    dict of str to int
        The chosen rank of each layer (an entry of its curve's ``ranks``).

    Raises
    ------
    ModelError
        No budget, a MAC budget with a curve whose MACs are unknown, or budgets that the
        cheapest ranks already exceed.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import RankCurve, allocate_ranks
    >>> c = lambda e, m: RankCurve(np.arange(1, 4), np.array([10, 20, 30]), np.array(m),
    ...                            np.array(e))
    >>> curves = {"a": c([0.5, 0.1, 0.0], [100, 200, 300]), "b": c([0.2, 0.15, 0.1], [1, 2, 3])}
    >>> allocate_ranks(curves, 50)
    {'a': 2, 'b': 3}
    >>> allocate_ranks(curves, mac_budget=203)
    {'a': 2, 'b': 3}
    >>> allocate_ranks(curves, mac_budget=120)
    {'a': 1, 'b': 3}
    """
    if budget is None and mac_budget is None:
        raise ModelError("allocate_ranks: give a parameter budget, a MAC budget or both")
    for name, c in curves.items():
        if mac_budget is not None and np.any(np.asarray(c.macs) < 0):
            raise ModelError(f"allocate_ranks: layer {name!r} has unknown MAC counts (a "
                             "convolution without its input size); a MAC budget needs them")
    weights = layer_weights or {}
    limits = [(k, float(b), float(f)) for k, b, f in ((0, budget, fixed_cost),
                                                       (1, mac_budget, fixed_macs))
              if b is not None]

    def counts(c: RankCurve) -> np.ndarray:
        return np.stack([np.asarray(c.params, float), np.asarray(c.macs, float)])

    def cost(v: np.ndarray) -> np.ndarray:
        return sum(v[k] / max(b, 1e-300) for k, b, _ in limits)

    state: dict[str, tuple[np.ndarray, int]] = {}
    spent = np.array([fixed_cost, fixed_macs], dtype=float)
    for name, c in curves.items():
        w = float(weights.get(name, 1.0))
        x = cost(counts(c))
        order = np.argsort(x, kind="stable")
        hull = order[_lower_hull(x[order], w * np.asarray(c.errors, float)[order] ** 2)]
        state[name] = (hull, 0)
        spent += counts(c)[:, hull[0]]
    for k, b, _ in limits:
        if spent[k] > b:
            what = "parameters" if k == 0 else "MACs"
            raise ModelError(
                f"{where}: the smallest ranks already cost {spent[k]:.0f} {what}, "
                f"over the budget of {b:.0f}")
    while True:
        best, best_slope = None, 0.0
        for name, c in curves.items():
            hull, j = state[name]
            if j + 1 >= len(hull):
                continue
            a, b = hull[j], hull[j + 1]
            step = counts(c)[:, b] - counts(c)[:, a]
            if any(spent[k] + step[k] > lim for k, lim, _ in limits):
                continue
            w = float(weights.get(name, 1.0))
            gain = w * float(c.errors[a] ** 2 - c.errors[b] ** 2)
            slope = gain / max(float(cost(step)), 1e-300)
            if slope > best_slope:
                best, best_slope = name, slope
        if best is None:
            break
        hull, j = state[best]
        spent += counts(curves[best])[:, hull[j + 1]] - counts(curves[best])[:, hull[j]]
        state[best] = (hull, j + 1)
    return {name: int(curves[name].ranks[hull[j]]) for name, (hull, j) in state.items()}
