"""Compression models written in the sdf modelling language and fitted by the engine (private).

Two terms share the factors: ``weight`` (the layer weight as a data set) and ``response``
(the layer's output on the calibration rows as a second data set). The calibration rows
``P`` (n x d) enter only through ``R`` (d x d) with ``R^T R = P^T P``: ``||P E^T|| =
||R E^T||`` for every ``E``, so the response data ``R Wm^T`` is exact and small.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from sdf.errors import ModelError
from sdf.models.compress._fit import Calibration
from sdf.models.compress.result import CompressOptions, FitInfo

__all__: list[str] = []


def available() -> bool:
    """True when ``sdf.Model`` and ``sdf.CPD`` can be imported."""
    try:
        import sdf
        from sdf import transforms as tf

        return all(hasattr(sdf, n) for n in ("Model", "CPD", "Variable")) and hasattr(tf, "matvec")
    except Exception:  # noqa: BLE001 - a half-written engine must not break numpy paths
        return False


def require() -> None:
    if not available():
        raise ModelError("compression: solver='engine' needs sdf.Model and sdf.CPD, which "
                         "cannot be imported; use CompressOptions(solver='numpy')")


def _fit(model: Any, variables: Sequence[Any], opts: CompressOptions
         ) -> tuple[list[np.ndarray], FitInfo]:
    res = model.fit(method=opts.engine_method, max_iter=opts.max_iter, tol_fun=opts.tol_fun,
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
    import sdf
    from sdf import transforms as tf

    require()
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
    ``response = CPD(R Wm^T, [matvec(R, kr(U_in, U_h, U_w)), U_out])``.
    """
    import sdf
    from sdf import transforms as tf

    require()
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
    return _fit(sdf.Model(**terms), U, opts)


def fit_shared(Ws: Sequence[np.ndarray], calib: Calibration | None,
               weights: Sequence[tuple[float, float]], A0: Sequence[np.ndarray],
               B0: np.ndarray, opts: CompressOptions
               ) -> tuple[list[np.ndarray], np.ndarray, FitInfo]:
    """Several weights reading one input, sharing the input factor ``B``.

    Model: for each layer k, ``weight_k = CPD(W_k, [A_k, B])`` and
    ``response_k = CPD(R W_k^T, [matvec(R, B), A_k])``.
    """
    import sdf
    from sdf import transforms as tf

    require()
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
