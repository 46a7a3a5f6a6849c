"""Tucker and CP weights with a calibration response term, as fusion models (private).

The weight tensor ``T`` has output modes ``(o_1, ..., o_m)`` then input modes
``(i_1, ..., i_p)``; as a matrix ``Wm = T.reshape(out, in)`` it maps inputs to outputs.
With ``R`` (in x in, ``R^T R = P^T P`` for the calibration rows ``P``), the layer's
response ``P Wm^T`` is matched through ``Wm R^T`` (same norm of the error)::

    Tucker:  weight   = LMLRA(T,                      [U_1..U_m, V_1..V_p],            S)
             response = LMLRA(Wm R^T as (o.., in),    [U_1..U_m, matvec(R, kron(V..))], S as (R_1.., prod S))
    CP:      weight   = CPD(T,                        [A_1..A_m, B_1..B_p])
             response = CPD(R Wm^T as (in, o..),      [matvec(R, kr(B..)), A_1..A_m])

weighted ``2 w_w`` and ``2 w_r`` (the engine's objective is ``sum_t w_t/2 ||.||^2``), so
the objective is ``w_w ||Wm_hat - Wm||^2 + w_r ||P (Wm_hat - Wm)^T||^2`` as in
:mod:`sdf.models.compress._fit`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import sdf
from sdf import transforms as tf
from sdf.models.compress.result import CompressOptions, FitInfo

__all__: list[str] = []


def _fit(terms: dict[str, Any], variables: Sequence[Any], opts: CompressOptions,
         tol_fun: float) -> tuple[list[np.ndarray], FitInfo]:
    res = sdf.Model(**terms).fit(method=opts.engine_method, max_iter=opts.max_iter,
                                 tol_fun=tol_fun, **dict(opts.engine_options or {}))
    values = [np.array(res[v], dtype=float) for v in variables]
    relerr = {k: float(v) for k, v in dict(getattr(res, "relerr", {})).items()}
    return values, FitInfo("engine", int(getattr(res, "iterations", 0)),
                           str(getattr(res, "message", "")), relerr)


def fit_tucker(T: np.ndarray, n_out_modes: int, root: np.ndarray | None, w_w: float,
               w_r: float, factors0: Sequence[np.ndarray], core0: np.ndarray,
               opts: CompressOptions) -> tuple[list[np.ndarray], np.ndarray, FitInfo]:
    """Tucker of ``T`` (weight term) with the response on the calibration root ``R``."""
    m = n_out_modes
    out = int(np.prod(T.shape[:m]))
    U = [sdf.Variable(np.array(F, dtype=float), name=f"U{k}") for k, F in enumerate(factors0)]
    S = sdf.Variable(np.array(core0, dtype=float), name="core")
    terms: dict[str, Any] = {}
    if w_w > 0:
        terms["weight"] = sdf.LMLRA(T, U, S, weight=2 * w_w)
    if root is not None and w_r > 0:
        data = (T.reshape(out, -1) @ root.T).reshape(*T.shape[:m], -1)
        inner = U[m] if len(U) == m + 1 else tf.kron(*U[m:])
        core_shape = (*core0.shape[:m], int(np.prod(core0.shape[m:])))
        terms["response"] = sdf.LMLRA(data, [*U[:m], tf.matvec(root, inner)],
                                      tf.reshape(S, core_shape), weight=2 * w_r)
    values, info = _fit(terms, [*U, S], opts, opts.tucker_tol_fun)
    return values[:-1], values[-1], info


def fit_cp(T: np.ndarray, n_out_modes: int, root: np.ndarray | None, w_w: float,
           w_r: float, factors0: Sequence[np.ndarray], opts: CompressOptions
           ) -> tuple[list[np.ndarray], FitInfo]:
    """CP of ``T`` (weight term) with the response on the calibration root ``R``."""
    m = n_out_modes
    out = int(np.prod(T.shape[:m]))
    A = [sdf.Variable(np.array(F, dtype=float), name=f"A{k}") for k, F in enumerate(factors0)]
    terms: dict[str, Any] = {}
    if w_w > 0:
        terms["weight"] = sdf.CPD(T, A, weight=2 * w_w)
    if root is not None and w_r > 0:
        data = (root @ T.reshape(out, -1).T).reshape(-1, *T.shape[:m])
        inner = A[m] if len(A) == m + 1 else tf.kr(*A[m:])
        terms["response"] = sdf.CPD(data, [tf.matvec(root, inner), *A[:m]], weight=2 * w_r)
    return _fit(terms, A, opts, opts.tol_fun)
