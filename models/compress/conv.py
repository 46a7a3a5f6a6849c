"""Compression of 2-D convolutions: each method is a factorization of the (reshaped) weight.

With ``W`` of shape (out, in, kh, kw) and ``Wm = W.reshape(out, in*kh*kw)``:

``"weight_svd"``  1x1 conv (in -> r), then kh x kw conv (r -> out):
                  ``W[o,i,h,w] = sum_r C[o,r,h,w] F[i,r]``, i.e. ``Wm = C_m kron(F, I)^T``.
``"spatial_svd"`` kh x 1 conv (in -> r), then 1 x kw conv (r -> out):
                  ``W[o,i,h,w] = sum_r C[o,r,w] F[(i,h),r]``.
``"channel_svd"`` kh x kw conv (in -> r), then 1x1 conv (r -> out): ``Wm = A B^T``
                  (the convolutional twin of the linear case; data-aware in closed form).
``"cp"``          1x1, depthwise kh x 1, depthwise 1 x kw, 1x1: a 4-way CPD of ``W``.
``"tucker2"``     1x1 (in -> r_in), kh x kw core (r_in -> r_out), 1x1 (r_out -> out).

Given calibration inputs (feature maps entering the layer), the response term is added on
the im2col patches ``P``: ``P Wm^T ~ (P K) A^T`` with ``K`` the input-side factor
expression (``matvec`` of the patches with ``kron(F, I)``, ``kr(U_in, U_h, U_w)``, ...).
The data-aware weight SVD, spatial SVD and Tucker-2 share one structure (``Wm = C
kron(F, I)^T``, Tucker-2 with ``C`` of rank ``r_out``): they alternate closed forms (best
``C`` for ``F``, a conjugate-gradient step on ``F``; :mod:`sdf.models.compress._kron`),
then take Newton steps on ``span(F)`` with ``C`` eliminated (Tucker-2: with the output
basis eliminated too, :mod:`sdf.models.compress._kron_tucker`), from the better of the
data-free fit (truncated SVD, HOOI) and the generalised SVD of the nearest
Kronecker-structured metric. Tucker-2 rank candidates go in the order of a lower bound on
their objective, skipped when it is above an objective reached, the others screened after
a few alternations; with every input channel kept the fit is closed form. CP
(:mod:`sdf.models.compress._cp`) starts from
water-filled truncated SVDs of the weight's slices in the principal spatial bases (an
exact CP; a GEVD, :func:`sdf.decomp.gevd_init`, when that reproduces the weight; on small
layers also from a few seeded random and perturbed starts, keeping the best), runs
accelerated ALS sweeps on the weight and, data-aware, rounds of closed-form output-factor
updates and preconditioned conjugate gradients on the input and spatial factors (exact
quadratics; rounds extrapolated from the last two), each stage to a deterministic work
budget; the smallest models (``CompressOptions.cp_engine_size``, and data-free layers of
up to ``_LM_WEIGHTS`` weights) are also fitted as an engine model
(:mod:`sdf.models.compress._engine`, Gauss-Newton from the GEVD or random factors, the
response term joining after a short data-free stretch), keeping the lower objective;
data-aware layers of up to ``_LM_WEIGHTS`` weights get Levenberg-Marquardt runs from
seeded random starts instead of further alternating starts
(:mod:`sdf.models.compress._cp_lm`: exact Gauss-Newton steps with the output factor
eliminated, crossing the swamps where the alternating fits stop).
Tucker-2 without calibration inputs is HOOI (:func:`sdf.decomp.lmlra_hooi`).
``CompressOptions(solver="engine")`` fits every data-aware model on the engine instead (see
:func:`sdf.models.compress._engine.fit_tucker2`). With a bias, the patches are centered and
the bias refitted (see :mod:`sdf.models.compress._fit`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Sequence, cast

import numpy as np

from sdf.algebra import cpd_to_tensor
from sdf.decomp import gevd_init
from sdf.errors import DataError, ModelError
from sdf.models._common import quiet
from sdf.numerics import balance_columns
import sdf.models.compress._cp as _cp
import sdf.models.compress._cp_lm as _cp_lm
import sdf.models.compress._engine as _engine
import sdf.models.compress._fit as _fit
import sdf.models.compress._kron as _kron
import sdf.models.compress._kron_tucker as _kron_tucker
import sdf.models.compress._roots as _roots
from sdf.models.compress.budget import (Rank, RatioOf, expand_rank, layer_cost, max_rank,
                                        max_scalar_rank, rank_for_ratio, rank_for_tol,
                                        tucker_ratio_candidates)
from sdf.models.compress.layers import Piece, _pair, im2col
from sdf.models.compress.linear import (_bias_change, _check_balance, _check_finite_inputs,
                                        fit_lowrank_layer, refit_bias)
from sdf.models.compress.result import (CompressedLayer, CompressOptions, FitInfo, RankCurve,
                                        check_rank_args)
from sdf._blas import one_blas_thread, with_one_blas_pool

__all__ = ["CONV_METHODS", "ConvMethod", "compress_conv"]

ConvMethod = Literal["weight_svd", "spatial_svd", "channel_svd", "cp", "tucker2"]
CONV_METHODS: tuple[str, ...] = ("channel_svd", "cp", "spatial_svd", "tucker2", "weight_svd")

_EXACT_START = 1e-6  # relative error under which a GEVD start is taken as the CP itself
# HOOI stops when a sweep changes the fit 1 - relerr^2 by at most this: on conv weights
# the relative error then agrees with tol=1e-10 to about 1e-8, in half the sweeps
_HOOI_TOL = 1e-8
# the data-free stretch of a data-aware CP: a start for the model with the response term,
# not an answer, so it stops early
_WARM_ITER, _WARM_TOL = 50, 1e-6
#: CP starts of the alternating fit (:func:`_cp_starts`): the work all starts may take
#: (in units of :func:`_cp_engine_size`), the fixed cost counted per start (data-free,
#: data-aware), the most starts. On 24 synthetic layers of 8x4x3x3 to 32x16x3x3
#: (benchmarks/bench_cp_small.py) one start took 0.03-0.05 CPU s data-free, 0.1-0.4 s
#: data-aware (about 0.1 s of it fixed): this keeps all starts under about 0.5 s there.
_STARTS_WORK, _MAX_STARTS = {False: 1.45e6, True: 1.4e6}, 8
_START_OVERHEAD = {False: 1.8e5, True: 3e5}
#: ALS sweeps of each data-free start of :func:`_fit_cp_starts`, in units of ``max_iter``:
#: in the swamps of small layers ALS still gains there (on the 24x12x3x3 and 32x16x3x3
#: layers of benchmarks/bench_cp_small.py, 1000 sweeps ended 1-4 % below 200 on most
#: starts; a start of 1000 sweeps took 0.08-0.15 CPU s)
_FREE_SWEEPS = 5
#: Levenberg-Marquardt runs of the CP (:func:`_cp_lm_starts`): the most weights of a layer
#: that gets them (tiny layers, where ranks at a given compression come near the weight's
#: size and the fits meet swamps), the multiply-adds all runs may take (``max_iter``
#: steps of :func:`sdf.models.compress._cp_lm.step_cost` each) and the most runs. One run
#: of 200 steps took about 0.07 CPU s on 8x4x3x3 layers (rank 8) and 0.3-0.5 s on
#: 16x8x3x3 (rank 19, 2.5e9 multiply-adds; one BLAS thread)
_LM_WEIGHTS, _LM_WORK, _MAX_LM_STARTS = 2000, 3e9, 4
# HOOI sweeps for the start of a data-aware Tucker-2: its data-aware objective moves by
# about 1e-4 relative over the sweeps after these (on conv weights; the sweeps to
# HOOI's own tolerance cost a quarter of a 256x256x3x3 layer's data-aware fit)
_AWARE_HOOI_ITER = 3
# alternations before the Newton steps of a data-aware Tucker-2 fit: the first one takes
# most of the decrease the alternations give cheaply; on the 256x256x3x3 benchmark layer
# 1 (8.1 CPU s) and 2 (8.3 s) beat 3 (9.3 s) at the same objective to 1e-6
_RANK_NEWTON_AFTER = 1


# ---------------------------------------------------------------- kron-structured SVDs
def _kron_split(method: str, W: np.ndarray) -> tuple[int, int]:
    o, i, kh, kw = W.shape
    return (i, kh * kw) if method == "weight_svd" else (i * kh, kw)


def _kron_weight_only(W3: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W3[o,a,m] ~ sum_r C[o,r,m] F[a,r]`` by SVD; returns C (o,r,m), F (a,r), s."""
    o, a, m = W3.shape
    T = W3.transpose(1, 0, 2).reshape(a, o * m)
    U, s, Vt = np.linalg.svd(T, full_matrices=False)
    root = np.sqrt(s[:rank])
    F = U[:, :rank] * root
    C = (root[:, None] * Vt[:rank]).reshape(rank, o, m).transpose(1, 0, 2)
    return C, F, s




def _fit_kron(method: str, W: np.ndarray, rank: int, calib: _fit.Calibration | None,
              w_w: float, w_r: float, opts: CompressOptions
              ) -> tuple[tuple[np.ndarray, np.ndarray], FitInfo]:
    """Truncated SVD of the kron-structured unfolding; with a response term, alternating
    closed forms (:func:`sdf.models.compress._kron.fit_kron`) or, with
    ``solver="engine"``, the engine's fusion model."""
    o = W.shape[0]
    a, m = _kron_split(method, W)
    W3 = W.reshape(o, a, m)
    if calib is not None and w_r != 0.0 and opts.solver != "engine":
        # the alternations start from the truncated SVD's span: its basis is enough
        fit = _alternate(W3, _fit.response_metric(calib, w_w, w_r),
                         [("truncated SVD", _kron.leading_input_basis(W3, rank))], None, opts)
        return (fit.C, fit.F), _kron_info(fit, opts)
    C, F, _ = _kron_weight_only(W3, rank)
    if calib is None or w_r == 0.0:
        return (C, F), FitInfo("numpy", 0, "closed form (truncated SVD)")
    Cm, F, info = _engine.fit_two_factor(W.reshape(o, -1), calib, w_w, w_r,
                                         C.reshape(o, -1), F, m, opts)
    info = dataclasses.replace(info, message=f"truncated SVD, then "
                                             f"{_engine.method_name(opts)}: {info.message}")
    return (Cm.reshape(o, rank, m), F), info


def _alternate(W3: np.ndarray, metric: _fit.Metric,
               starts: list[tuple[str, np.ndarray] | _kron.Start], out_rank: int | None,
               opts: CompressOptions, newton_after: int | None = None,
               problem: _kron._Problem | None = None,
               give_up: Callable[[float, Sequence[float]], bool] | None = None
               ) -> _kron.KronFit:
    """:func:`_kron.fit_kron` from the given starts and the nearest-Kronecker GSVD (with
    an output rank, its Newton steps are :class:`_kron_tucker.RankNewton`'s, after
    ``_RANK_NEWTON_AFTER`` alternations unless ``newton_after`` says otherwise);
    ``problem``: the fit's problem when already built (its :class:`_kron.Start` s
    evaluated on it); ``give_up``: see :func:`_kron.fit_kron`."""
    if newton_after is None:
        newton_after = 3 if out_rank is None else _RANK_NEWTON_AFTER
    first = starts[0]
    rank = (first.F if isinstance(first, _kron.Start) else first[1]).shape[1]
    if problem is None:
        problem = _kron._Problem(W3, metric, out_rank, rank)
    gsvd = _kron.nearest_kron_start(W3, problem.kron_pair(), rank)
    if gsvd is not None:
        starts = [*starts, ("generalised SVD", gsvd)]
    # One position per group (a 1x1 kernel; a kh x 1 one for the spatial SVD): M is its own
    # Kronecker product, and the generalised SVD the optimum (with an output rank k too:
    # C K^T then has rank at most min(k, r), and the best such matrix in the metric is the
    # generalised SVD's truncation, which the closed-form C of its F reaches).
    exact = gsvd is not None and W3.shape[2] == 1
    return _kron.fit_kron(W3, metric, starts, out_rank,
                          max_iter=0 if exact else opts.max_iter, tol=opts.subspace_tol,
                          newton_after=newton_after,
                          newton=None if out_rank is None else _kron_tucker.RankNewton(),
                          problem=problem, give_up=give_up)


def _kron_info(fit: _kron.KronFit, opts: CompressOptions) -> FitInfo:
    if fit.iterations == 0 and fit.converged:
        return FitInfo("numpy", 0, f"{fit.start}: closed form")
    stop = "converged" if fit.converged else "stopped at the iteration cap"
    alternations = fit.iterations - fit.newton_steps
    steps = f"{alternations} alternation{'' if alternations == 1 else 's'}"
    if fit.newton_steps:
        steps += f" and {fit.newton_steps} Newton step{'' if fit.newton_steps == 1 else 's'}"
    return FitInfo("numpy", fit.iterations,
                   f"{fit.start}, then alternating closed forms ({steps}, {stop})")


# ---------------------------------------------------------------- CP and Tucker-2
def _cp_start(W: np.ndarray, rank: int, seed: int) -> tuple[list[np.ndarray], str]:
    """GEVD start (:func:`sdf.decomp.gevd_init`) when it reproduces W, else seeded random.

    A GEVD is exact for a weight of CP rank ``rank``; for a trained weight (no exact low
    rank) its start led Gauss-Newton into worse local minima than random starts did (on
    the digits CNN, 0.2-1.6 % higher errors on average over seeds), so it is kept only
    when its relative error is below ``_EXACT_START``.
    """
    factors, name = _cp_exact_gevd(W, rank, seed)
    if factors is not None:
        return factors, name
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, rank)) for n in W.shape], "random start"


def _fit_cp(W: np.ndarray, rank: int, calib: _fit.Calibration | None, w_w: float,
            w_r: float, opts: CompressOptions) -> tuple[list[np.ndarray], FitInfo]:
    """CP of the conv weight: the fast alternating fit (:func:`_fit_cp_fast`) and, for
    small models (:func:`_cp_engine_size` at most ``opts.cp_engine_size``, or data-free
    models small enough for Levenberg-Marquardt, :func:`_cp_lm_starts`, while
    ``opts.cp_engine_size`` is positive) or ``solver="engine"``, the engine's fit
    (:func:`_fit_cp_engine`); with both, the lower objective is kept. Without the engine,
    the alternating fit gets the starts of :func:`_cp_starts` (:func:`_fit_cp_starts`),
    data-aware models small enough for Levenberg-Marquardt its runs instead of further
    alternating starts. On such small models, the engine's data-free model costs about
    what a dense Levenberg-Marquardt step does per step (1-2 ms at 16x8x3x3), its
    data-aware one several times more (the response term goes through transforms)."""
    if opts.solver == "engine":
        return _fit_cp_engine(W, rank, calib, w_w, w_r, opts)
    calib_rows = calib.n_rows if calib is not None and w_r > 0 else 0
    size = _cp_engine_size(W.shape, rank, calib_rows)
    lm_starts = _cp_lm_starts(W.shape, rank, opts.max_iter)
    with_engine = size <= opts.cp_engine_size or (
        opts.cp_engine_size > 0 and lm_starts > 0 and not calib_rows)
    if not with_engine and lm_starts and calib_rows:
        return _fit_cp_starts(W, rank, calib, w_w, w_r, opts, 1, lm_starts)
    if not with_engine:
        return _fit_cp_starts(W, rank, calib, w_w, w_r, opts, _cp_starts(size, calib_rows > 0))
    fast, fast_info = _fit_cp_fast(W, rank, calib, w_w, w_r, opts)
    with quiet():  # a candidate: its warnings would describe a fit that may be dropped
        engine, engine_info = _fit_cp_engine(W, rank, calib, w_w, w_r, opts)
    M = _fit.metric_matrix(calib, w_w, w_r) if calib is not None and w_r > 0 else None
    values = [_cp_objective(W, f, w_w, M) for f in (fast, engine)]
    factors, info = (fast, fast_info) if values[0] <= values[1] else (engine, engine_info)
    return factors, dataclasses.replace(
        info, objective=min(values),
        message=f"{info.message} (the lower objective of the alternating fit, "
                f"{values[0]:.6g}, and {_engine.method_name(opts)}, {values[1]:.6g})")


def _cp_starts(size: int, aware: bool) -> int:
    """How many starts of the alternating fit a model of ``size`` (:func:`_cp_engine_size`)
    gets: as many as fit in ``_STARTS_WORK``, each counted ``size`` plus its fixed cost
    (``_START_OVERHEAD``; the data-aware rounds' fixed costs dominate on tiny layers;
    data-free, for starts of ``_FREE_SWEEPS`` times the usual sweeps), at most
    ``_MAX_STARTS``."""
    overhead = _START_OVERHEAD[aware]
    return int(min(_MAX_STARTS, max(1, _STARTS_WORK[aware] // (size + overhead))))


def _cp_lm_starts(shape: tuple[int, ...], rank: int, max_iter: int) -> int:
    """How many Levenberg-Marquardt runs (:func:`_fit_cp_lm`) a CP of ``shape`` at
    ``rank`` gets: none on layers of more than ``_LM_WEIGHTS`` weights, else as many as
    ``_LM_WORK`` pays for at ``max_iter`` steps each, at most ``_MAX_LM_STARTS``."""
    if np.prod(shape) > _LM_WEIGHTS:
        return 0
    work = max_iter * _cp_lm.step_cost(shape, rank)
    return int(min(_MAX_LM_STARTS, _LM_WORK // work))


def _fit_cp_lm(W: np.ndarray, rank: int, calib: _fit.Calibration | None, w_w: float,
               w_r: float, opts: CompressOptions) -> tuple[list[np.ndarray], FitInfo]:
    """Levenberg-Marquardt (:func:`sdf.models.compress._cp_lm.levenberg_marquardt`) on
    the fitted objective from standard normal factors drawn with ``opts.seed`` (the
    engine's random start, :func:`_cp_start`), for ``opts.max_iter`` steps."""
    rng = np.random.default_rng(opts.seed)
    factors = [rng.standard_normal((n, rank)) for n in W.shape]
    d = int(np.prod(W.shape[1:]))
    M = _fit.metric_matrix(calib, w_w, w_r) if calib is not None and w_r > 0 else w_w * np.eye(d)
    fit = _cp_lm.levenberg_marquardt(W, factors, M, opts.max_iter, opts.sweep_tol)
    message = f"random start, then Levenberg-Marquardt ({fit.iterations} steps, {fit.stop})"
    return balance_columns(fit.factors), FitInfo("numpy", fit.iterations, message,
                                                 objective=fit.objective)


def _fit_cp_starts(W: np.ndarray, rank: int, calib: _fit.Calibration | None, w_w: float,
                   w_r: float, opts: CompressOptions, starts: int, lm_starts: int = 0
                   ) -> tuple[list[np.ndarray], FitInfo]:
    """The alternating fit (:func:`_fit_cp_fast`) from ``starts`` starts and
    Levenberg-Marquardt (:func:`_fit_cp_lm`) from ``lm_starts`` random ones, keeping the
    lowest objective: start 0 is the default one, the other alternating starts alternate
    random factors and the slice-SVD start perturbed with the seed ``opts.seed + k`` (the
    fits end in different local minima, a few per cent apart on small layers, and neither
    kind of start was the better one on most layers); the Levenberg-Marquardt runs draw
    their factors with the seeds ``opts.seed + k``, ``k = 0, 1, ...``. Data-free, several
    starts run ``_FREE_SWEEPS`` times the usual ALS sweeps each. An exact GEVD start (the
    weight's own CP) is not repeated. BLAS runs on one thread meanwhile
    (:func:`sdf._blas.one_blas_thread`) when there are several starts."""
    if starts == 1 and not lm_starts:
        return _fit_cp_fast(W, rank, calib, w_w, w_r, opts)
    with one_blas_thread():
        return _best_cp_start(W, rank, calib, w_w, w_r, opts, starts, lm_starts)


def _best_cp_start(W: np.ndarray, rank: int, calib: _fit.Calibration | None, w_w: float,
                   w_r: float, opts: CompressOptions, starts: int, lm_starts: int
                   ) -> tuple[list[np.ndarray], FitInfo]:
    """The body of :func:`_fit_cp_starts` with several starts."""
    aware = calib is not None and w_r > 0
    sweep_factor = _FREE_SWEEPS if starts > 1 and not aware else 1
    best, best_info = _fit_cp_fast(W, rank, calib, w_w, w_r, opts, sweep_factor=sweep_factor)
    if best_info.message.startswith("GEVD"):
        return best, best_info
    values = [cast(float, best_info.objective)]
    runs = [(k, False) for k in range(1, starts)] + [(k, True) for k in range(lm_starts)]
    for k, lm in runs:
        seeded = dataclasses.replace(opts, seed=opts.seed + k)
        factors, info = (_fit_cp_lm(W, rank, calib, w_w, w_r, seeded) if lm else
                         _fit_cp_fast(W, rank, calib, w_w, w_r, seeded,
                                      random_start=k % 2 == 1, sweep_factor=sweep_factor))
        values.append(cast(float, info.objective))
        if values[-1] < min(values[:-1]):
            best, best_info = factors, info
    chosen = int(np.argmin(values))
    total = starts + lm_starts
    return best, dataclasses.replace(
        best_info, message=f"{best_info.message} (the lowest objective of {total} starts, "
                           f"start {chosen}: {min(values):.6g}; start 0: {values[0]:.6g})")


def _cp_engine_size(shape: tuple[int, ...], rank: int, calib_rows: int) -> int:
    """Multiply-adds of one Gauss-Newton product of the engine's CP model:
    ``R out in kh kw`` for the weight term, plus ``R k d`` (``d = in kh kw``, ``k =
    min(d, calib_rows)``; 0 rows: data-free) for the response term, whose Jacobian
    multiplies the ``k x d`` calibration root by the Khatri-Rao product of the input
    factors (the term that dominates on wide layers)."""
    d = int(np.prod(shape[1:]))
    return rank * (int(np.prod(shape)) + min(d, calib_rows) * d)


def _cp_objective(W: np.ndarray, factors: Sequence[np.ndarray], w_w: float,
                  M: np.ndarray | None) -> float:
    """The fitted objective: ``w_w ||E||^2``, or ``tr(E M E^T)`` with the metric M."""
    o = W.shape[0]
    E = (cpd_to_tensor(list(factors)) - W).reshape(o, -1)
    return w_w * float(np.vdot(E, E)) if M is None else float(np.vdot(E @ M, E))


def _fit_cp_fast(W: np.ndarray, rank: int, calib: _fit.Calibration | None, w_w: float,
                 w_r: float, opts: CompressOptions, random_start: bool = False,
                 sweep_factor: int = 1) -> tuple[list[np.ndarray], FitInfo]:
    """Slice-SVD start, accelerated ALS on the weight, then (data-aware) the response
    rounds of :mod:`sdf.models.compress._cp`, each stage capped by its work budget
    (``opts.cp_work``, ``opts.cp_response_work``) and ``opts.max_iter`` (the ALS sweeps
    at ``sweep_factor`` times that).

    A GEVD (:func:`sdf.decomp.gevd_init`) that reproduces the weight replaces the
    slice-SVD start (it is then the exact CP); with ``random_start``, standard normal
    factors drawn with ``opts.seed`` do (ALS then starts from them unperturbed).
    """
    factors, start = _cp_exact_gevd(W, rank, opts.seed)
    if factors is None:
        sweeps = max(1, min(sweep_factor * opts.max_iter,
                            int(opts.cp_work // _cp.sweep_cost(W.shape, rank))))
        if random_start:
            rng = np.random.default_rng(opts.seed)
            factors, start = [rng.standard_normal((n, rank)) for n in W.shape], "random start"
            fit = _cp.als_weight(W, factors, sweeps, opts.sweep_tol, opts.seed, shake=0.0)
        else:
            factors, err2 = _cp.spatial_slices_start(W, rank)
            start = ("slice-SVD start (relative error "
                     f"{np.sqrt(err2 / (np.vdot(W, W) or 1.0)):.4g})")
            fit = _cp.als_weight(W, factors, sweeps, opts.sweep_tol, opts.seed,
                                 start_error2=err2)
        start = f"{start}, then ALS ({fit.iterations} sweeps, {fit.stop})"
        iterations, objective, factors = fit.iterations, w_w * fit.objective, fit.factors
    else:
        iterations, objective = 0, _cp_objective(W, factors, w_w, None)
    message = start
    if calib is not None and w_r > 0:
        aware = _cp.als_response(W, factors, _fit.response_metric(calib, w_w, w_r),
                                 opts.max_iter,
                                 opts.sweep_tol, opts.cp_response_work)
        message += f", then response updates ({aware.iterations} rounds, {aware.stop})"
        iterations, objective = iterations + aware.iterations, aware.objective
        factors = aware.factors
    return balance_columns(factors), FitInfo("numpy", iterations, message, objective=objective)


def _cp_exact_gevd(W: np.ndarray, rank: int, seed: int
                   ) -> tuple[list[np.ndarray] | None, str]:
    """The GEVD CP of W when it reproduces W (relative error <= ``_EXACT_START``)."""
    try:
        factors = gevd_init(W, rank, seed=seed)
    except DataError:  # no two mode groups of size >= rank and a third of size >= 2
        return None, ""
    err = np.linalg.norm(cpd_to_tensor(factors) - W) / (np.linalg.norm(W) or 1.0)
    return (factors, "GEVD") if err <= _EXACT_START else (None, "")


def _fit_cp_engine(W: np.ndarray, rank: int, calib: _fit.Calibration | None, w_w: float,
                   w_r: float, opts: CompressOptions) -> tuple[list[np.ndarray], FitInfo]:
    """The engine's CP from :func:`_cp_start`; data-aware, warm-started from its data-free
    CP (``solver="engine"``: the model with the response term from the start directly).

    The weight-only model is much cheaper per iteration than the one with the response
    term, and its optimum is close to the data-aware one, so the response term is
    switched on only for the last stretch.
    """
    factors, start = _cp_start(W, rank, opts.seed)
    if calib is not None and w_r > 0 and opts.solver != "engine":
        warm = dataclasses.replace(opts, max_iter=min(opts.max_iter, _WARM_ITER),
                                   tol_fun=max(opts.tol_fun, _WARM_TOL))
        # (a weight-only start: with the whole share on the response, w_w is 0)
        start_w = w_w if w_w > 0 else 1.0 / float(np.vdot(W, W))
        with quiet():  # an intermediate fit: its budget is meant to stop it early
            factors, free = _engine.fit_cp(W, None, start_w, 0.0, factors, warm)
        start = f"{start}, then {_engine.method_name(opts)} on the weight ({free.iterations} " \
                "iterations)"
    factors, info = _engine.fit_cp(W, calib, w_w, w_r, factors, opts)
    M = _fit.metric_matrix(calib, w_w, w_r) if calib is not None and w_r > 0 else None
    return factors, dataclasses.replace(
        info, objective=_cp_objective(W, factors, w_w, M),
        message=f"{start}, then {_engine.method_name(opts)}: {info.message}")


def _leading_basis(M: np.ndarray, r: int) -> np.ndarray:
    """The ``r`` leading left singular vectors of ``M``, from the eigenvectors of the
    smaller of ``M M^T`` and ``M^T M`` (with more rows than columns and ``r`` at most the
    columns: ``M V`` orthonormalised, ``V`` the leading eigenvectors of ``M^T M``; a
    64x1024x3x3 conv's input unfolding has 1024 rows and a few hundred columns); each
    column's largest-magnitude entry made positive."""
    rows, cols = M.shape
    if rows > cols >= r:
        V = np.linalg.qr(M @ np.linalg.eigh(M.T @ M)[1][:, ::-1][:, :r])[0]
    else:
        V = np.linalg.eigh(M @ M.T)[1][:, ::-1][:, :r]
    peak = V[np.argmax(np.abs(V), axis=0), np.arange(r)]
    return V * np.where(peak < 0, -1.0, 1.0)


def _hooi(W: np.ndarray, ranks: tuple[int, int], max_iter: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Tucker-2 of W (out, in, kh, kw) on its channel modes by HOOI on the two channel modes.

    Started from the truncated HOSVD (leading left singular vectors of the two channel
    unfoldings; it ends at lower errors than the sequentially truncated MLSVD start on
    conv weights). The spatial modes keep their full size (an exact change of basis), so
    a sweep updates only ``U_out`` and ``U_in``, each from the Gram matrix of the weight
    projected on the other; it stops when the fit ``1 - relerr^2`` changes by at most
    :data:`_HOOI_TOL` (as :func:`sdf.decomp.lmlra_hooi`, which this equals). Returns
    ``U_out`` (out, r_out), ``U_in`` (in, r_in), the core (r_out, r_in, kh, kw) and the
    number of sweeps.
    """
    o, i, kh, kw = W.shape
    W3 = W.reshape(o, i, kh * kw)
    norm2 = float(np.vdot(W3, W3)) or 1.0
    Ui = _leading_basis(W3.transpose(1, 0, 2).reshape(i, -1), ranks[1])
    fit_old, sweeps = -np.inf, 0
    Uo = core = np.zeros(0)
    for sweeps in range(1, max(max_iter, 1) + 1):
        Y = np.tensordot(W3, Ui, axes=(1, 0))                    # (o, s, r_in)
        Uo = _leading_basis(Y.reshape(o, -1), ranks[0])
        Z = np.tensordot(Uo, W3, axes=(0, 0))                    # (r_out, i, s)
        Ui = _leading_basis(Z.transpose(1, 0, 2).reshape(i, -1), ranks[1])
        core = np.tensordot(Z, Ui, axes=(1, 0))                  # (r_out, s, r_in)
        fit = float(np.vdot(core, core)) / norm2
        if abs(fit - fit_old) <= _HOOI_TOL:
            break
        fit_old = fit
    core = core.transpose(0, 2, 1).reshape(ranks[0], ranks[1], kh, kw)
    return Uo, Ui, core, sweeps


def _fit_tucker2(W: np.ndarray, ranks: tuple[int, int], calib: _fit.Calibration | None,
                 w_w: float, w_r: float, opts: CompressOptions
                 ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], FitInfo]:
    if calib is not None and w_r != 0.0 and opts.solver != "engine":
        fit = _aware_tucker2(W, _fit.response_metric(calib, w_w, w_r), ranks, opts)
        return _tucker2_factors(W, ranks, fit), _kron_info(fit, opts)
    Uo, Ui, core, sweeps = _hooi(W, ranks, opts.max_iter)
    if calib is None or w_r == 0.0:
        return (Uo, core, Ui), FitInfo("numpy", sweeps, "HOOI")
    (Uo, Ui, core), info = _engine.fit_tucker2(W, calib, w_w, w_r, Uo, Ui, core, opts)
    return (Uo, core, Ui), dataclasses.replace(
        info, message=f"HOOI, then {_engine.method_name(opts)}: {info.message}")


def _aware_tucker2(W: np.ndarray, metric: _fit.Metric, ranks: tuple[int, int],
                   opts: CompressOptions, newton_after: int = 3) -> _kron.KronFit:
    """Data-aware Tucker-2 by :func:`_alternate` from HOOI's input factor (after
    ``_AWARE_HOOI_ITER`` sweeps); with every input
    channel kept (``r_in = in``) in closed form (the reduced-rank regression for ``F =
    I``: no HOOI, no iteration)."""
    o, i, kh, kw = W.shape
    W3 = W.reshape(o, i, kh * kw)
    if ranks[1] >= i:
        return _kron.every_input_fit(W3, metric, ranks[0], "every input channel kept")
    Ui = _hooi(W, ranks, min(opts.max_iter, _AWARE_HOOI_ITER))[1]
    return _alternate(W3, metric, [("HOOI", Ui)], ranks[0], opts, newton_after)


def _tucker2_factors(W: np.ndarray, ranks: tuple[int, int], fit: _kron.KronFit
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(U_out, core, U_in)`` of a kron-structured fit whose ``C`` has rank ``r_out``."""
    o, i, kh, kw = W.shape
    C = fit.C.reshape(o, -1)
    # an output rank above C's r_in kh kw columns (a candidate of a ratio may ask for
    # one) gets orthonormal columns beyond C's span, with zero core slices
    Uo = np.linalg.svd(C, full_matrices=C.shape[1] < ranks[0])[0][:, :ranks[0]]
    core = (Uo.T @ C).reshape(ranks[0], ranks[1], kh, kw)
    return Uo, core, fit.F


#: Alternations every Tucker-2 rank candidate gets before the ones that cannot catch up
#: are dropped (see :func:`_screened_tucker2`).
_SCREEN_ITER = 5


def _screened_tucker2(W: np.ndarray, candidates: Sequence[tuple[int, int]],
                      calib: _fit.Calibration, w_w: float, w_r: float, opts: CompressOptions
                      ) -> tuple[list[tuple[tuple[int, int], _kron.KronFit]], list[str]]:
    """Data-aware Tucker-2 at several rank pairs, refined only where it may win.

    The candidates that keep every input channel come first (closed form), then the
    others in the order of a lower bound on their objective
    (:func:`_tucker2_aware_lower_bounds`); one whose bound is at or above an objective
    already reached is not fitted (it cannot win). A candidate to iterate reaches the
    objective of its start (HOOI's input factor with the closed-form core) at once, and
    every start is evaluated before any candidate iterates: a fit from a start ends at
    or below it, so each candidate is screened against the other candidates' starts as
    well as their fits. When one candidate is left and no closed form, it is fitted in
    full directly. Otherwise each gets ``_SCREEN_ITER`` alternations, fewer where the
    gain of those after the first and the rate of its decreases already show it cannot
    catch up (:func:`_cannot_catch_up`). The alternations lower the objective by less
    and less, so a candidate whose objective after them, lowered again by as much as they
    lowered it, is still above the best candidate's is dropped; the others are refined to
    convergence (a few more alternations, then Newton steps:
    :class:`_kron_tucker.RankNewton`). The early rule only shortens the screen, it drops
    nothing: a rate from two alternations can mislead (a 12x12x3x3 conv's (7, 6)
    candidate, stopped after two 6 % above a closed form's objective, ended 7 % below
    it). Returns the refined fits and the notes on the candidates dropped or not fitted.
    """
    o, i, kh, kw = W.shape
    W3, metric = W.reshape(o, i, kh * kw), _fit.response_metric(calib, w_w, w_r)
    screen = dataclasses.replace(opts, max_iter=min(opts.max_iter, _SCREEN_ITER))
    bounds = _tucker2_aware_lower_bounds(W3, metric, candidates)
    order = sorted(range(len(candidates)), key=lambda k: (candidates[k][1] < i, bounds[k]))
    fits: dict[int, _kron.KronFit] = {}
    # the problem and its start, built once for the screen and the refinement
    starts: dict[int, tuple[_kron.Start, _kron._Problem]] = {}
    dropped: list[str] = []

    def not_fitted(k: int) -> str:
        return (f"{candidates[k]} not fitted: its lower bound {bounds[k]:.4g} is above the "
                "objective reached")

    reached = np.inf  # (a fit from a start ends at or below the start's objective)
    for k in order:
        ranks = candidates[k]
        if bounds[k] >= reached:
            dropped.append(not_fitted(k))
        elif ranks[1] >= i:
            fits[k] = _aware_tucker2(W, metric, ranks, screen)
            reached = min(reached, fits[k].objective)
        else:
            Ui = _hooi(W, ranks, min(opts.max_iter, _AWARE_HOOI_ITER))[1]
            prob = _kron._Problem(W3, metric, ranks[0], ranks[1])
            starts[k] = (_kron.evaluate_start(prob, "HOOI", Ui), prob)
            reached = min(reached, starts[k][0].f)
    iterating = [k for k in starts if bounds[k] < reached or starts[k][0].f <= reached]
    dropped += [not_fitted(k) for k in starts if k not in iterating]
    if not fits and len(iterating) == 1:
        k, = iterating
        start, prob = starts[k]
        return [(candidates[k], _alternate(W3, metric, [start], candidates[k][0], opts,
                                           problem=prob))], dropped
    skipped: set[int] = set()  # (their starts bound no fit that is returned)
    for k in iterating:
        start, prob = starts[k]
        others = min([fit.objective for fit in fits.values()]
                     + [starts[j][0].f for j in iterating
                        if j != k and j not in fits and j not in skipped], default=np.inf)
        if bounds[k] >= others:
            dropped.append(not_fitted(k))
            skipped.add(k)
            continue
        fits[k] = _alternate(W3, metric, [start], candidates[k][0], screen,
                             newton_after=_SCREEN_ITER, problem=prob,
                             give_up=_cannot_catch_up(start.f, others))
    short = [(candidates[k], fits[k]) for k in order if k in fits]
    reached = min(fit.objective for _, fit in short)
    problems = {candidates[k]: starts[k][1] for k in starts}
    kept: list[tuple[tuple[int, int], _kron.KronFit]] = []
    for ranks, fit in short:
        # (never the one that reached the best objective: rounding in its recomputed
        # objective must not drop every candidate)
        if fit.objective > reached and 2 * fit.objective - fit.start_objective > reached:
            dropped.append(f"{ranks} dropped after {fit.iterations} alternations")
            continue
        if not fit.converged and fit.iterations < opts.max_iter:
            # the screen's alternations were the ones before the Newton steps
            assert fit.MF is not None  # (only the converged closed form has none)
            again = _kron.Start(fit.start, fit.F, fit.MF, fit.C, fit.objective)
            more = _kron.fit_kron(W3, metric, [again], ranks[0],
                                  max_iter=opts.max_iter - fit.iterations,
                                  tol=opts.subspace_tol,
                                  newton_after=0, newton=_kron_tucker.RankNewton(),
                                  problem=problems.get(ranks))
            fit = dataclasses.replace(more, iterations=fit.iterations + more.iterations,
                                      start_objective=fit.start_objective)
        kept.append((ranks, fit))
    return kept, dropped


def _cannot_catch_up(f0: float, reached: float) -> Callable[[float, Sequence[float]], bool]:
    """The screen's early stop (see :func:`_screened_tucker2`) for a candidate from
    the objective ``f0``, against another's ``reached``: after two or more alternations,
    its objective lowered again by as much as the alternations after the first lowered it
    stays above ``reached``, and the rate of the last ones predicts less than that still
    to come (:func:`_kron.remaining_decrease`). The first alternation is left out: from a
    far start it gains most, which says how far the start was, not what is left (a
    64x64x7x7 conv's (43, 43) candidate gained 5.5e-3 of 7.5e-3 in its first of five
    alternations, and 2.1e-4 remained; after two, 1.2e-3 gained by the second and 3.0e-4
    predicted, its objective was 3.7e-3 above the closed form's, which won). A
    192x384x3x3 conv's (65, 329) candidate, 1.2e-5 above the other's objective with
    2.7e-7 gained after the first and 6e-8 predicted, ends its screen after 2
    alternations of 1.1 s instead of 5 (and the screen's rule then drops it)."""
    def give_up(f: float, decreases: Sequence[float]) -> bool:
        later = f0 - f - decreases[0] if decreases else 0.0
        return (len(decreases) >= 2 and f - later > reached
                and _kron.remaining_decrease(decreases) <= later)
    return give_up


def _tucker2_aware_lower_bounds(W3: np.ndarray, metric: _fit.Metric,
                                candidates: Sequence[tuple[int, int]]) -> np.ndarray:
    """A lower bound on ``tr(E M E^T)`` (``E = Wm_hat - Wm``) for every Tucker-2 of ranks
    ``(r_out, r_in)``, the larger of two:

    - ``Wm_hat`` has rank at most ``r_out``, and the best such matrix in the metric leaves
      the eigenvalues of ``Wm M Wm^T`` beyond the ``r_out`` largest;
    - with ``M = s I + (M - s I)`` (``s`` the metric's identity part), the first term is at
      least ``s`` times the data-free bound (:func:`_tucker2_lower_bounds`, which sees the
      input rank too) and the second at least the eigenvalues of ``Wm (M - s I) Wm^T``
      beyond the ``r_out`` largest. An input rank well below the weight's keeps this one
      high where the first is low (a 128x128x7x7 layer's (87, 87) candidate was screened
      for 27 s against a closed form 16 times below it)."""
    o = W3.shape[0]
    Wm = W3.reshape(o, -1)
    WMW = metric.outer(Wm)
    WW = Wm @ Wm.T

    def tail(N: np.ndarray) -> np.ndarray:
        ev = np.clip(np.linalg.eigvalsh((N + N.T) / 2)[::-1], 0.0, None)
        return np.concatenate([np.cumsum(ev[::-1])[::-1], [0.0]])

    whole, response = tail(WMW), tail(WMW - metric.scale * WW)
    free = _tucker2_lower_bounds(W3, candidates)
    return np.array([max(whole[min(ro, o)], metric.scale * f + response[min(ro, o)])
                     for (ro, _), f in zip(candidates, free)])


def _tucker2_lower_bounds(W: np.ndarray, candidates: Sequence[tuple[int, int]]
                          ) -> np.ndarray:
    """A lower bound on ``||W - W_hat||^2`` for every Tucker-2 of ranks ``(r_out, r_in)``:
    the larger of the energies of the two channel unfoldings beyond those ranks (a
    Tucker-2 at those ranks is, per mode, a matrix of rank at most r_n)."""
    o, i = W.shape[:2]
    tails = []
    for M in (W.reshape(o, -1), np.moveaxis(W, 1, 0).reshape(i, -1)):
        # the nonzero eigenvalues of M M^T are those of the smaller M^T M
        G = M @ M.T if M.shape[0] <= M.shape[1] else M.T @ M
        ev = np.clip(np.linalg.eigvalsh(G)[::-1], 0.0, None)
        tails.append(np.concatenate([np.cumsum(ev[::-1])[::-1], [0.0]]))
    return np.array([max(tails[0][min(ro, len(tails[0]) - 1)],
                         tails[1][min(ri, len(tails[1]) - 1)]) for ro, ri in candidates])


def _best_tucker2(orig: Piece, candidates: Sequence[tuple[int, int]],
                  calib: _fit.Calibration | None, w_w: float, w_r: float,
                  opts: CompressOptions
                  ) -> tuple[tuple[int, int], Sequence[np.ndarray], FitInfo]:
    """Tucker-2 fitted at each candidate pair of ranks; the one with the least objective
    (data-aware with the alternating fits: among the candidates :func:`_screened_tucker2`
    refines; data-free: candidates in the order of their lower bounds
    (:func:`_tucker2_lower_bounds`), skipping those whose bound is at or above an
    objective already reached)."""
    W = orig.weight
    Wm = W.reshape(W.shape[0], -1)
    fits: list[tuple[tuple[int, int], Sequence[np.ndarray], FitInfo]] = []
    dropped: list[str] = []
    if calib is not None and w_r > 0 and opts.solver != "engine" and len(candidates) > 1:
        kept, dropped = _screened_tucker2(W, candidates, calib, w_w, w_r, opts)
        fits = [(ranks, _tucker2_factors(W, ranks, fit), _kron_info(fit, opts))
                for ranks, fit in kept]
    elif calib is not None and w_r > 0:
        fits = [(ranks, *_fit_tucker2(W, ranks, calib, w_w, w_r, opts)) for ranks in candidates]
    best: tuple[float, tuple[int, int], Sequence[np.ndarray], FitInfo] | None = None

    def consider(ranks: tuple[int, int], factors: Sequence[np.ndarray], info: FitInfo) -> None:
        nonlocal best
        E = _fitted_weight("tucker2", orig, factors).reshape(Wm.shape) - Wm
        value = w_w * float(np.vdot(E, E))
        if calib is not None and w_r > 0:
            value += w_r * calib.response_norm2(E)
        if best is None or value < best[0]:
            best = (value, ranks, factors, info)

    if len(fits) == 1:  # nothing to compare: its objective is not needed
        best = (np.nan, *fits[0])
    else:
        for ranks, factors, info in fits:
            consider(ranks, factors, info)
    if not fits:
        # Data-free: a candidate whose lower bound is at or above an objective already
        # reached cannot win, so it is not fitted (the choice is that of fitting them all).
        bounds = _tucker2_lower_bounds(W, candidates)
        for k in np.argsort(bounds, kind="stable"):
            if best is not None and w_w * bounds[k] >= best[0]:
                dropped.append(f"{candidates[k]} not fitted: its lower bound "
                               f"{w_w * bounds[k]:.4g} is above the objective reached")
                continue
            consider(candidates[k], *_fit_tucker2(W, candidates[k], calib, w_w, w_r, opts))
    assert best is not None, "_best_tucker2 needs at least one candidate"
    _, chosen, chosen_factors, chosen_info = best
    if len(candidates) > 1:
        notes = "".join(f"; {note}" for note in dropped)
        chosen_info = dataclasses.replace(
            chosen_info, message=f"{chosen_info.message} (ranks {chosen}: the lower objective "
                                 f"of {list(candidates)}{notes})")
    return chosen, chosen_factors, chosen_info


# ---------------------------------------------------------------- pieces
def _pieces(method: str, orig: Piece, factors: Sequence[np.ndarray], name: str,
            bias: np.ndarray | None = None) -> list[Piece]:
    """The pieces of a factored layer, the last one with ``bias`` (default the
    original's)."""
    o, i = orig.out_features, orig.in_features
    kh, kw = orig.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = orig.stride, orig.padding, orig.dilation
    b = orig.bias if bias is None else bias

    def same_geometry(weight: np.ndarray, suffix: str, bias: np.ndarray | None = None) -> Piece:
        return Piece("conv2d", weight, bias=bias, stride=orig.stride, padding=orig.padding,
                     dilation=orig.dilation, name=f"{name}.{suffix}")

    if method == "channel_svd":
        A, B = factors
        r = A.shape[1]
        return [same_geometry(B.T.reshape(r, i, kh, kw), "0"),
                Piece("conv2d", A.reshape(o, r, 1, 1), bias=b, name=f"{name}.1")]
    if method == "weight_svd":
        C, F = factors
        r = F.shape[1]
        return [Piece("conv2d", F.T.reshape(r, i, 1, 1), name=f"{name}.0"),
                same_geometry(C.reshape(o, r, kh, kw), "1", b)]
    if method == "spatial_svd":
        C, F = factors
        r = F.shape[1]
        return [Piece("conv2d", F.T.reshape(r, i, kh, 1), stride=(sh, 1), padding=(ph, 0),
                      dilation=(dh, 1), name=f"{name}.0"),
                Piece("conv2d", C.reshape(o, r, 1, kw), bias=b, stride=(1, sw),
                      padding=(0, pw), dilation=(1, dw), name=f"{name}.1")]
    if method == "cp":
        Uo, Ui, Uh, Uw = factors
        r = Uo.shape[1]
        return [Piece("conv2d", Ui.T.reshape(r, i, 1, 1), name=f"{name}.0"),
                Piece("conv2d", Uh.T.reshape(r, 1, kh, 1), groups=r, stride=(sh, 1),
                      padding=(ph, 0), dilation=(dh, 1), name=f"{name}.1"),
                Piece("conv2d", Uw.T.reshape(r, 1, 1, kw), groups=r, stride=(1, sw),
                      padding=(0, pw), dilation=(1, dw), name=f"{name}.2"),
                Piece("conv2d", Uo.reshape(o, r, 1, 1), bias=b, name=f"{name}.3")]
    Uo, core, Ui = factors  # tucker2
    ro, ri = core.shape[:2]
    return [Piece("conv2d", Ui.T.reshape(ri, i, 1, 1), name=f"{name}.0"),
            same_geometry(core, "1"),
            Piece("conv2d", Uo.reshape(o, ro, 1, 1), bias=b, name=f"{name}.2")]


def _fitted_weight(method: str, orig: Piece, factors: Sequence[np.ndarray]) -> np.ndarray:
    """The weight the pieces of :func:`_pieces` run, in the original's shape."""
    o, i = orig.out_features, orig.in_features
    kh, kw = orig.kernel_size
    if method == "channel_svd":
        A, B = factors
        return (A @ B.T).reshape(o, i, kh, kw)
    if method == "weight_svd":
        C, F = factors
        return np.einsum("orm,ir->oim", C, F, optimize=True).reshape(o, i, kh, kw)
    if method == "spatial_svd":
        C, F = factors
        return np.einsum("orw,ar->oaw", C, F, optimize=True).reshape(o, i, kh, kw)
    if method == "cp":
        return cpd_to_tensor(list(factors))
    Uo, core, Ui = factors  # tucker2
    return np.einsum("abhw,oa,ib->oihw", core, Uo, Ui, optimize=True)


# ---------------------------------------------------------------- driver
#: weights whose norm lies outside [1 / _SCALE_BAND, _SCALE_BAND] are fitted scaled (see
#: :func:`_unit_scale`); within it the fits, whose random starts (CP's Gauss-Newton
#: candidate) are not scale-free, see the weight as it is
_SCALE_BAND = 2.0 ** 32


def _unit_scale(W: np.ndarray) -> float:
    """The power of two that takes ``||W||`` to about 1 when the norm lies outside
    ``_SCALE_BAND`` (products of squared weights would under- or overflow in the float32
    phases), else 1."""
    norm = float(np.linalg.norm(W))
    if norm == 0 or 1 / _SCALE_BAND <= norm <= _SCALE_BAND:
        return 1.0
    return 2.0 ** -round(np.log2(norm))


def _unscaled(method: str, factors: Sequence[np.ndarray], scale: float
              ) -> Sequence[np.ndarray]:
    """The factors of a fit of ``scale W`` turned into those of ``W``: the magnitude goes
    where it sits (the kron fits' ``C``, Tucker-2's core; CP's factors share it)."""
    if scale == 1.0:
        return factors
    if method == "cp":
        root = scale ** -0.25
        return [U * root for U in factors]
    if method == "tucker2":
        Uo, core, Ui = factors
        return Uo, core / scale, Ui
    C, F = factors
    return C / scale, F


def _check_conv(where: str, W: Any, X: Any, groups: int) -> tuple[np.ndarray, np.ndarray | None]:
    W = np.asarray(W, dtype=float)
    if W.ndim != 4:
        raise ModelError(f"{where}: W has shape {W.shape} but a conv weight needs 4 dims "
                         "(out, in, kh, kw)")
    if not np.all(np.isfinite(W)):
        raise DataError(f"{where}: W has non-finite entries")
    if groups != 1:
        raise ModelError(f"{where}: groups={groups} is not supported; compress each group's "
                         "weight as its own layer")
    if X is None:
        return W, None
    X = np.asarray(X, dtype=float)
    if X.ndim != 4 or X.shape[1] != W.shape[1]:
        raise DataError(f"{where}: X has shape {X.shape} but the layer reads "
                        f"(n, {W.shape[1]}, H, W) feature maps")
    _check_finite_inputs(where, X)
    return W, X


#: Iterations and objective tolerance of each fit along a CP rank path (the curve only
#: ranks candidates; the chosen rank is fitted in full afterwards).
_PATH_ITER, _PATH_TOL = 40, 1e-7


def _cp_path(W: np.ndarray, ranks: np.ndarray, calib: _fit.Calibration | None,
             w_w: float, w_r: float, opts: CompressOptions) -> list[list[np.ndarray]]:
    """CP fits (:func:`_fit_cp`) at each rank with a short iteration budget: the
    slice-SVD start is closed-form at every rank, so each rank starts afresh."""
    path_opts = dataclasses.replace(opts, max_iter=min(opts.max_iter, _PATH_ITER),
                                    tol_fun=max(opts.tol_fun, _PATH_TOL))
    out: list[list[np.ndarray]] = []
    for r in ranks:
        with quiet():  # a budgeted fit: stopping at its cap is expected
            out.append(_fit_cp(W, int(r), calib, w_w, w_r, path_opts)[0])
    return out


def _grid_curve(method: str, orig: Piece, W: np.ndarray, calib: _fit.Calibration | None,
                w_w: float, w_r: float, L: np.ndarray | None, opts: CompressOptions,
                input_hw: tuple[int, int] | None, n_points: int = 8) -> RankCurve:
    """Error against rank on a geometric grid of ranks up to the dense layer's cost.

    Tucker-2: a HOOI per point. CP: budgeted fits at each rank (:func:`_cp_path`), whose
    errors are at or slightly above those of the full fits.
    """
    top = max_scalar_rank(method, orig)
    if method != "tucker2":
        # Ranks that cost at least the dense layer are never chosen: stop below them.
        per_rank = layer_cost(method, orig, 1, input_hw)[0]
        top = max(1, min(top, 4 * max(W.shape[:2]), (orig.n_params - 1) // per_rank))
    ranks = np.unique(np.geomspace(1, top, n_points).round().astype(int))
    Wm = W.reshape(W.shape[0], -1)
    fits: list[Sequence[np.ndarray]]
    if method == "cp":
        fits = list(_cp_path(W, ranks, calib, w_w, w_r, opts))
    else:
        fits = [_fit_tucker2(W, cast(tuple[int, int], expand_rank(method, orig, int(r))), calib,
                             w_w, w_r, opts)[0] for r in ranks]
    errs: list[float] = []
    params: list[int] = []
    macs: list[int] = []
    for r, f in zip(ranks, fits):
        E = (_fitted_weight(method, orig, f).reshape(Wm.shape) - Wm)
        E = E @ L if L is not None else E * np.sqrt(w_w)
        errs.append(float(np.linalg.norm(E)))
        p, m = layer_cost(method, orig, expand_rank(method, orig, int(r)), input_hw)
        params.append(p)
        macs.append(-1 if m is None else m)
    return RankCurve(ranks, np.array(params), np.array(macs), np.array(errs))


@with_one_blas_pool
def compress_conv(
    W: np.ndarray,
    method: ConvMethod = "weight_svd",
    rank: int | tuple[int, int] | None = None,
    ratio: float | None = None,
    X: np.ndarray | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    bias: np.ndarray | None = None,
    tol: float | None = None,
    balance: float = 0.9,
    ratio_of: RatioOf = "params",
    input_hw: tuple[int, int] | None = None,
    name: str = "conv",
    options: CompressOptions | None = None,
) -> CompressedLayer:
    """Compress a 2-D convolution into a few cheaper convolutions.

    Parameters
    ----------
    W : ndarray of shape (out, in, kh, kw)
    method : {"weight_svd", "spatial_svd", "channel_svd", "cp", "tucker2"}
        The factorization (see the module docstring for the pieces of each).
    rank : int or pair of int, optional
        Rank (Tucker-2: ``(r_out, r_in)``). Give exactly one of rank, ratio or tol.
    ratio : float, optional
        Target share of the original parameters (or MACs with ``ratio_of="macs"``).
    X : ndarray of shape (n, in, H, W), optional
        Calibration feature maps entering the layer; given, the fit is data-aware (response
        term on the im2col patches).
    stride, padding, dilation, groups : layer geometry (groups must be 1).
    bias : ndarray of shape (out,), optional
        On the last piece. With ``X`` it is refitted to ``b + (Wm - Wm_hat) mean(P)`` over
        the patches ``P``, and the response term reads the centered patches.
    tol : float, optional
        Smallest rank whose relative error is at most ``tol``. For ``weight_svd`` and
        ``spatial_svd`` with ``X`` this reads the weight-only curve; for CP and Tucker-2 it
        reads a grid of fitted ranks.
    balance : float in [0, 1], default 0.9
        Share of the response term when ``X`` is given.
        At 1, a share of 1e-6 stays with the weight term when the calibration leaves input
        directions unseen (fewer rows than inputs, a dead input): it settles the weights
        along them, which the response alone leaves arbitrary.
    ratio_of : {"params", "macs"}, default "params"
    input_hw : pair of int, optional
        Input spatial size for MAC counts (taken from ``X`` when given).
    name : str, default "conv"
    options : CompressOptions, optional

    Returns
    -------
    CompressedLayer

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import compress_conv
    >>> W = np.random.default_rng(0).standard_normal((16, 8, 3, 3))
    >>> res = compress_conv(W, "spatial_svd", ratio=0.5, padding=1, input_hw=(8, 8))
    >>> [p.weight.shape for p in res.pieces]
    [(8, 8, 3, 1), (16, 8, 1, 3)]
    >>> res.forward(np.ones((1, 8, 8, 8))).shape
    (1, 16, 8, 8)
    """
    where = f"compress_conv({name!r}, method={method!r})"
    opts = options or CompressOptions()
    if method not in CONV_METHODS:
        raise ModelError(f"{where}: method must be one of {', '.join(CONV_METHODS)}")
    W, X = _check_conv(where, W, X, groups)
    check_rank_args(where, rank, ratio, tol)
    balance = _check_balance(where, balance)
    orig = Piece("conv2d", W, bias=bias, stride=_pair(stride, "stride"),
                 padding=_pair(padding, "padding"), dilation=_pair(dilation, "dilation"),
                 name=name)
    if X is not None:
        input_hw = (int(X.shape[2]), int(X.shape[3]))
    calib, every_patch = (None, None) if X is None else _conv_calibration(X, orig, opts, method)
    o = W.shape[0]
    Wm = W.reshape(o, -1)
    curve = None
    if method == "channel_svd":
        rank, A, B, curve, info, calib = fit_lowrank_layer(
            where, orig, Wm, None, "channel_svd", rank, ratio, tol, balance, ratio_of,
            input_hw, opts, calib)
        factors: Sequence[np.ndarray] = (A, B)
    else:
        # a weight of extreme norm is fitted scaled by a power of two to about unit norm
        # (exact, and undone on the factors): the float32 phases and Gram matrices then
        # neither overflow nor underflow
        scale = _unit_scale(W)
        fit_orig = orig if scale == 1.0 else dataclasses.replace(orig, weight=W * scale)
        Wf = fit_orig.weight
        w_w, w_r = _fit.term_weights(Wf.reshape(o, -1), calib,
                                     balance if calib is not None else 0.0)
        if method in ("weight_svd", "spatial_svd"):
            a, m = _kron_split(method, W)
            s = np.linalg.svd(W.reshape(o, a, m).transpose(1, 0, 2).reshape(a, o * m),
                              compute_uv=False)
            top = len(s)
            ranks = np.arange(1, top + 1)
            cost = [layer_cost(method, orig, int(r), input_hw) for r in ranks]
            curve = RankCurve(ranks, np.array([c[0] for c in cost]),
                              np.array([-1 if c[1] is None else c[1] for c in cost]),
                              _fit.tail_errors(s)[1:])
        elif tol is not None:
            L = _fit.whitener(Wm.shape[1], calib, w_w, w_r)  # only the curve reads it
            curve = _grid_curve(method, fit_orig, Wf, calib, w_w, w_r, L, opts, input_hw)
        candidates = None
        if ratio is not None and method == "tucker2":
            candidates = tucker_ratio_candidates(orig, ratio, ratio_of, input_hw,
                                                 where=where)
            rank = candidates[0]  # rank_for_ratio's pair
        elif ratio is not None:
            rank = rank_for_ratio(method, orig, ratio, ratio_of, input_hw, where=where)
        elif tol is not None:
            assert curve is not None  # computed above for every method when tol is given
            rank = expand_rank(method, orig, rank_for_tol(curve.ranks, curve.errors, tol))
        checked = _check_rank(where, method, orig, rank)
        if isinstance(checked, tuple) and candidates is not None:
            checked, factors, info = _best_tucker2(fit_orig, candidates, calib, w_w, w_r,
                                                   opts)
        elif isinstance(checked, tuple):
            factors, info = _fit_tucker2(Wf, checked, calib, w_w, w_r, opts)
        elif method == "cp":
            factors, info = _fit_cp(Wf, checked, calib, w_w, w_r, opts)
        else:
            factors, info = _fit_kron(method, Wf, checked, calib, w_w, w_r, opts)
        factors = _unscaled(method, factors, scale)
        rank = checked
    W_hat = _fitted_weight(method, orig, factors)
    new_bias = refit_bias(orig.bias, calib, Wm, W_hat.reshape(o, -1))
    pieces = _pieces(method, orig, factors, name, new_bias)
    out_err = None
    if every_patch is not None:
        out_err = _maps_error(every_patch, Wm, W_hat.reshape(o, -1), orig.bias, new_bias)
    elif calib is not None:
        out_err = calib.output_error(  # through the Gram matrix, the rows or the responses
            Wm, W_hat.reshape(o, -1), _bias_change(orig.bias, new_bias),
            factors=(factors[0], factors[1]) if method == "channel_svd" else None)
    return CompressedLayer(
        name=name, method=method, rank=rank, original=orig, pieces=tuple(pieces),
        weight_approx=W_hat, balance=balance if X is not None else 0.0, input_hw=input_hw,
        weight_error=float(np.linalg.norm(W_hat - W) / (np.linalg.norm(W) or 1.0)),
        calib_output_error=out_err, curve=curve, info=info)


def _conv_calibration(X: np.ndarray, orig: Piece, opts: CompressOptions, method: str
                      ) -> tuple[_fit.Calibration, _roots.PatchMaps | None]:
    """The calibration ``method`` is fitted with, and the maps of every patch when it
    samples them (for the output error over all of them, :func:`_maps_error`): the
    responses' route where it serves (:func:`_responses_calibration`), a sample of too
    many patches (:func:`_sampled_calibration`), the Gram matrix from the maps (at stride
    1 by :func:`_maps_calibration`, else summed a few images at a time when there are at
    least as many patches as values), else the im2col patches, fewer than their values
    (:func:`_patch_calibration`: they are the metric's root)."""
    calib = _responses_calibration(X, orig, opts, _RESPONSES_SHARE.get(method, 0))
    if calib is not None:
        return calib, None
    calib, every_patch = _sampled_calibration(X, orig, opts)
    if calib is not None:
        return calib, every_patch
    calib = _maps_calibration(X, orig, opts)
    if calib is None and _patch_count(X, orig) >= int(np.prod(orig.weight.shape[1:])):
        # no root in the rows: the Gram matrix up front (the fits read the whole metric),
        # without every patch's rows
        kept = _fit.Calibration.from_source(
            _roots.PatchMaps.from_maps(X, orig.kernel_size, orig.stride, orig.padding,
                                       orig.dilation), center=orig.bias is not None)
        calib = dataclasses.replace(kept, stored_gram=kept.gram)
    if calib is None:
        calib = _patch_calibration(X, im2col(X, orig.kernel_size, orig.stride, orig.padding,
                                             orig.dilation), orig)
    return calib, None


def _patch_count(X: np.ndarray, orig: Piece) -> int:
    """Number of im2col patches of ``X`` under ``orig``'s geometry."""
    n, _, h, w = X.shape
    ho, wo = orig.output_hw((h, w))
    return n * ho * wo


def _maps_calibration(X: np.ndarray, orig: Piece, opts: CompressOptions
                      ) -> _fit.Calibration | None:
    """The calibration of a stride-1 layer's patches straight from the feature maps
    (:meth:`_fit.Calibration.from_maps`: no im2col, a third of the Gram matrix's
    multiply-adds); None where the patches are needed (a stride, more patches than
    ``opts.max_calib_rows``, fewer patches than values per patch, see there)."""
    n, _, h, w = X.shape
    ho, wo = orig.output_hw((h, w))
    if orig.stride != (1, 1) or ho < 1 or wo < 1 or n * ho * wo > opts.max_calib_rows:
        return None
    return _fit.Calibration.from_maps(X, orig.kernel_size, orig.padding, orig.dilation,
                                      center=orig.bias is not None)


#: Methods whose fits may need the calibration only through its responses ``P Wm^T``, and
#: how many times the outputs the values per patch must be for that route: the channel
#: SVD's closed form always (with fewer outputs than values); Tucker-2's closed form with
#: every input channel and its rank screen's bounds, where its other candidates then
#: form the Gram matrix anyway (the responses cost ``out / d`` of it, so only for few
#: outputs).
_RESPONSES_SHARE = {"channel_svd": 1, "tucker2": 10}


def _responses_calibration(X: np.ndarray, orig: Piece, opts: CompressOptions, share: int
                           ) -> _fit.Calibration | None:
    """The calibration kept as the maps (:meth:`_fit.Calibration.from_source`), its Gram
    matrix formed on first use only, where fits need mostly the responses: ``share``
    times the outputs at most the values per patch, and more patches than values (and at
    most ``opts.max_calib_rows``). None where the im2col patches or the Gram matrix up
    front serve better (``share`` 0, fewer patches: they are the root; more outputs: the
    Gram matrix is cheaper; too many patches: they are sampled)."""
    o, d = orig.weight.shape[0], int(np.prod(orig.weight.shape[1:]))
    patches = _patch_count(X, orig)
    if share < 1 or o >= d or share * o > d or not d <= patches <= opts.max_calib_rows:
        return None
    maps = _roots.PatchMaps.from_maps(np.asarray(X, dtype=float), orig.kernel_size,
                                      orig.stride, orig.padding, orig.dilation)
    return _fit.Calibration.from_source(maps, center=orig.bias is not None)


def _sampled_calibration(X: np.ndarray, orig: Piece, opts: CompressOptions
                         ) -> tuple[_fit.Calibration | None, _roots.PatchMaps | None]:
    """With more patches than ``opts.max_calib_rows``: the calibration of a random
    ``max_calib_rows`` of them (:meth:`_fit.Calibration.from_rows`'s sample, taken from
    the maps without the others' im2col rows: a 64x64x3x3 layer on 32 maps of 56x56 had
    100352 patches, 460 MB) and the maps of every patch, for the output error; ``(None,
    None)`` with fewer patches."""
    if _patch_count(X, orig) <= opts.max_calib_rows:
        return None, None
    maps = _roots.PatchMaps.from_maps(np.asarray(X, dtype=float), orig.kernel_size,
                                      orig.stride, orig.padding, orig.dilation)
    index = np.random.default_rng(opts.seed).choice(maps.rows, opts.max_calib_rows,
                                                    replace=False)
    calib = _fit.Calibration.from_rows(maps.take(np.sort(index)), center=orig.bias is not None)
    return dataclasses.replace(calib, sampled=True), maps


def _maps_error(maps: _roots.PatchMaps, Wm: np.ndarray, Wm_hat: np.ndarray,
                bias: np.ndarray | None, new_bias: np.ndarray | None) -> float:
    """The calibration output error over every patch ``P`` of ``maps``, ``||P (Wm_hat -
    Wm)^T + 1 (b_hat - b)^T|| / ||P Wm^T||``, as convolutions (one pass with the weight
    and the change stacked)."""
    o = Wm.shape[0]
    R = maps.products(np.vstack([Wm, Wm_hat - Wm]))
    E = R[:, o:]
    if bias is not None and new_bias is not None:
        E += new_bias - bias
    return float(np.linalg.norm(E) / (np.linalg.norm(R[:, :o]) or 1.0))


def _patch_calibration(X: np.ndarray, rows: np.ndarray, orig: Piece) -> _fit.Calibration:
    """The calibration of the im2col patches ``rows`` of ``X`` (every one of them: at most
    ``opts.max_calib_rows``, see :func:`_sampled_calibration`); when it keeps them as its
    rows, with the maps too (products with the rows as convolutions, see
    :class:`_roots.PatchRoot`)."""
    calib = _fit.Calibration.from_rows(rows, center=orig.bias is not None)
    if calib.rows is None:
        return calib
    maps = _roots.PatchMaps.from_maps(np.asarray(X, dtype=float), orig.kernel_size,
                                      orig.stride, orig.padding, orig.dilation)
    return dataclasses.replace(calib, source=maps)


def _check_rank(where: str, method: str, orig: Piece, rank: Any) -> Rank:
    top = max_rank(method, orig)
    if isinstance(top, tuple):
        pair = (rank, rank) if isinstance(rank, (int, np.integer)) else tuple(rank)
        ro, ri = int(pair[0]), int(pair[1])
        if not (1 <= ro <= top[0] and 1 <= ri <= top[1]):
            raise ModelError(f"{where}: Tucker-2 ranks must be within (1..{top[0]}, 1..{top[1]}),"
                             f" got {(ro, ri)}")
        return (ro, ri)
    if not isinstance(rank, (int, np.integer)) or not 1 <= int(rank) <= top:
        raise ModelError(f"{where}: rank must be an int in [1, {top}], got {rank!r}")
    return int(rank)
