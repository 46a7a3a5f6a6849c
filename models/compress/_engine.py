"""Compression models written in the sdf modelling language and fitted by the engine (private).

Two terms share the factors: ``weight`` (the layer weight as a data set) and ``response``
(the layer's output on the calibration rows as a second data set). The calibration rows
``P`` (n x d) enter only through ``R`` (d x d) with ``R^T R = P^T P``: ``||P E^T|| =
||R E^T||`` for every ``E``, so the response data ``R Wm^T`` is exact and small.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import sdf
from sdf import transforms as tf
from sdf.numerics import balance_columns
from sdf.models.compress._fit import Calibration
from sdf.models.compress.result import CompressOptions, FitInfo

__all__: list[str] = []

_METHOD_NAMES = {"nls": "Gauss-Newton", "minf": "L-BFGS"}


def method_name(opts: CompressOptions) -> str:
    """What the engine's solver is called in the fit messages ("Gauss-Newton", ...)."""
    return _METHOD_NAMES.get(opts.engine_method, opts.engine_method)


def _fit(model: Any, variables: Sequence[Any], opts: CompressOptions,
         tol_fun: float | None = None) -> tuple[list[np.ndarray], FitInfo]:
    tol_fun = opts.tol_fun if tol_fun is None else tol_fun
    res = model.fit(method=opts.engine_method, max_iter=opts.max_iter, tol_fun=tol_fun,
                    **dict(opts.engine_options or {}))
    values = [np.array(res[v], dtype=float) for v in variables]
    relerr = {k: float(v) for k, v in dict(getattr(res, "relerr", {})).items()}
    info = FitInfo("engine", int(getattr(res, "iterations", 0)), str(getattr(res, "message", "")),
                   relerr)
    return values, info


def fit_two_factor(Wm: np.ndarray, calib: Calibration | None, w_w: float, w_r: float,
                   A0: np.ndarray, F0: np.ndarray, m: int | None, opts: CompressOptions
                   ) -> tuple[np.ndarray, np.ndarray, FitInfo]:
    """Fit ``Wm ~ A K^T`` with ``K = F`` (m None) or ``K = kron(F, I_m)``.

    Model: ``weight = CPD(Wm, [A, K])``, ``response = CPD(R Wm^T, [matvec(R, K), A])``;
    a zero weight switches a term off.
    """
    A = sdf.Variable(A0, name="A")
    F = sdf.Variable(F0, name="F")
    K = F if m is None else tf.kron(F, np.eye(m), name="K")
    terms = {}
    if w_w > 0:
        terms["weight"] = sdf.CPD(Wm, [A, K], weight=2 * w_w)
    if calib is not None and w_r > 0:
        R = calib.root()
        terms["response"] = sdf.CPD(R @ Wm.T, [tf.matvec(R, K), A], weight=2 * w_r)
    (A_fit, F_fit), info = _fit(sdf.Model(**terms), [A, F], opts)
    return A_fit, F_fit, info


def fit_cp(W4: np.ndarray, calib: Calibration | None, w_w: float, w_r: float,
           factors0: Sequence[np.ndarray], opts: CompressOptions
           ) -> tuple[list[np.ndarray], FitInfo]:
    """Fit the 4-way CP of a conv weight, optionally with the response on the patches.

    Model: ``weight = CPD(W, [U_out, U_in, U_h, U_w])``,
    ``response = CPD(R Wm^T, [matvec(R, kr(U_in, U_h, U_w)), U_out])``. The fitted
    factors come back with balanced columns (:func:`sdf.numerics.balance_columns`).
    """
    names = ("U_out", "U_in", "U_h", "U_w")
    U = [sdf.Variable(f, name=n) for f, n in zip(factors0, names)]
    terms = {}
    if w_w > 0:
        terms["weight"] = sdf.CPD(W4, U, weight=2 * w_w)
    if calib is not None and w_r > 0:
        R = calib.root()
        Wm = W4.reshape(W4.shape[0], -1)
        terms["response"] = sdf.CPD(R @ Wm.T, [tf.matvec(R, tf.kr(U[1], U[2], U[3])), U[0]],
                                    weight=2 * w_r)
    values, info = _fit(sdf.Model(**terms), U, opts)
    return balance_columns(values), info


def fit_shared(Ws: Sequence[np.ndarray], calib: Calibration | None,
               weights: Sequence[tuple[float, float]], A0: Sequence[np.ndarray],
               B0: np.ndarray, opts: CompressOptions
               ) -> tuple[list[np.ndarray], np.ndarray, FitInfo]:
    """Several weights reading one input, sharing the input factor ``B``.

    Model: for each layer k, ``weight_k = CPD(W_k, [A_k, B])`` and
    ``response_k = CPD(R W_k^T, [matvec(R, B), A_k])``.
    """
    B = sdf.Variable(B0, name="B")
    A = [sdf.Variable(a, name=f"A{k}") for k, a in enumerate(A0)]
    R = None if calib is None else calib.root()
    RB = None if R is None else tf.matvec(R, B)
    terms = {}
    for k, (W, (w_w, w_r)) in enumerate(zip(Ws, weights)):
        if w_w > 0:
            terms[f"weight{k}"] = sdf.CPD(W, [A[k], B], weight=2 * w_w)
        if R is not None and w_r > 0:
            terms[f"response{k}"] = sdf.CPD(R @ W.T, [RB, A[k]], weight=2 * w_r)
    values, info = _fit(sdf.Model(**terms), [*A, B], opts)
    return values[:-1], values[-1], info


def fit_tucker2(W4: np.ndarray, calib: Calibration | None, w_w: float, w_r: float,
                Uo0: np.ndarray, Ui0: np.ndarray, core0: np.ndarray, opts: CompressOptions
                ) -> tuple[list[np.ndarray], FitInfo]:
    """Fit the Tucker-2 of a conv weight, optionally with the response on the patches.

    With ``m = kh * kw``, ``W3 = W4.reshape(out, in, m)`` and the core ``S`` of shape
    (r_out, r_in, m) (the spatial mode carries the constant factor ``I_m``)::

        weight   = LMLRA(W3,        [U_out, U_in, I_m],                    S)
        response = LMLRA(Wm R^T,    [U_out, matvec(R, kron(U_in, I_m))],   reshape(S))

    since ``Wm_hat = U_out S_(0) kron(U_in, I_m)^T`` and ``||P E^T|| = ||E R^T||``.
    Stops at ``opts.tucker_tol_fun``. Returns ``[U_out, U_in, S]`` with S of shape
    (r_out, r_in, kh, kw).
    """
    o, i, kh, kw = W4.shape
    m = kh * kw
    ro, ri = core0.shape[:2]
    Uo = sdf.Variable(Uo0, name="U_out")
    Ui = sdf.Variable(Ui0, name="U_in")
    S = sdf.Variable(core0.reshape(ro, ri, m), name="core")
    terms = {}
    if w_w > 0:
        terms["weight"] = sdf.LMLRA(W4.reshape(o, i, m), [Uo, Ui, np.eye(m)], S,
                                    weight=2 * w_w)
    if calib is not None and w_r > 0:
        R = calib.root()
        K = tf.matvec(R, tf.kron(Ui, np.eye(m)))
        terms["response"] = sdf.LMLRA(W4.reshape(o, -1) @ R.T, [Uo, K],
                                      tf.reshape(S, (ro, ri * m)), weight=2 * w_r)
    (Uo_f, Ui_f, S_f), info = _fit(sdf.Model(**terms), [Uo, Ui, S], opts, opts.tucker_tol_fun)
    return [Uo_f, Ui_f, S_f.reshape(ro, ri, kh, kw)], info
