"""Coupled matrix and tensor factorization: CPDs of several data sets sharing factors.

Each data set (a matrix or a tensor, NaN entries missing) gets a CPD of the same rank;
its modes carry labels, and modes with the same label share one factor matrix. The
objective is the engine's weighted sum of the data sets' squared errors (Tensorlab's
relative weights: each data set's mean squared error, weighted by
``relweights[name] / sum(relweights)``, the ``relweight`` of :class:`sdf.CPD`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import warnings

import numpy as np

import sdf
from sdf import algebra
from sdf.errors import ModelError
from sdf.losses import Loss, LossLike, as_loss
from sdf.solvers import MethodName
from sdf.tensors import Tensor, as_tensor

from sdf.models._common import (Timer, check_fit_options, check_int, check_number, engine_fit,
                                make_rng, quiet)
from sdf.models._loss_start import working_array
from sdf.models._result import Decomposition, Stage
from sdf.models._starts import best_of_starts
from sdf.models.cpd import cpd
from sdf._blas import with_one_blas_pool

__all__ = ["cmtf"]


def _mode_labels(data: Mapping[str, Tensor], modes: Mapping[str, Sequence[str]] | None
                 ) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, X in data.items():
        if modes is not None and name in modes:
            labels = list(modes[name])
        elif X.dims is not None:
            labels = list(X.dims)
        else:
            raise ModelError(f"modes: no mode labels for data set {name!r}; give "
                             f"modes={{{name!r}: [label per mode]}} or an xarray.DataArray")
        if len(labels) != X.ndim:
            raise ModelError(f"modes[{name!r}]: expected {X.ndim} labels, got {len(labels)}")
        if len(set(labels)) != len(labels):
            raise ModelError(f"modes[{name!r}]: labels repeat within one data set {labels}")
        out[name] = [str(lab) for lab in labels]
    if modes is not None:
        extra = sorted(set(modes) - set(data))
        if extra:
            raise ModelError(f"modes: labels given for unknown data sets {extra}")
    return out


def _sizes(data: Mapping[str, Tensor], labels: Mapping[str, list[str]]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    where: dict[str, str] = {}
    for name, X in data.items():
        for lab, I in zip(labels[name], X.shape):
            if lab in sizes and sizes[lab] != I:
                raise ModelError(f"modes: label {lab!r} has {sizes[lab]} entries in data set "
                                 f"{where[lab]!r} but {I} in {name!r}")
            sizes.setdefault(lab, I)
            where.setdefault(lab, name)
    return sizes


def _least_squares_mode(X: Tensor, factors: list[np.ndarray | None], n: int) -> np.ndarray:
    """The factor of mode ``n`` minimising the error with the other factors fixed.

    For incomplete data the missing entries count as zeros scaled by the fraction
    known: a cheap start, not the exact masked least-squares solution.
    """
    R = next(A.shape[1] for A in factors if A is not None)
    mats = [A if A is not None else np.zeros((X.shape[k], R)) for k, A in enumerate(factors)]
    # Normal equations A W^T = M with M = unfold(T, n) conj(KR), W = hadamard(A_k^H A_k)
    # (for real factors, M is the MTTKRP and W the usual Gramian product).
    M = X.mttkrp([A.conj() for A in mats], n) * (X.size / max(X.n_known, 1))
    W = algebra.hadamard([A.conj().T @ A for k, A in enumerate(mats) if k != n])
    return np.linalg.lstsq(W, M.T, rcond=None)[0].T


@with_one_blas_pool
def cmtf(
    data: Mapping[str, object],
    rank: int,
    *,
    modes: Mapping[str, Sequence[str]] | None = None,
    relweights: Mapping[str, float] | None = None,
    init: Literal["auto", "random"] | Mapping[str, np.ndarray] = "auto",
    n_starts: int = 1,
    seed: int | np.random.Generator | None = None,
    method: MethodName = "nls",
    display: int = 0,
    callback: Callable[[sdf.IterationInfo], Any] | None = None,
    options: sdf.NLSOptions | sdf.MinfOptions | None = None,
    weights: Mapping[str, float] | None = None,
    losses: Mapping[str, LossLike] | None = None,
    **fit_options: Any,
) -> Decomposition:
    r"""Coupled CPDs: ``X_t ≈ [[A_{l(t,0)}, ..., A_{l(t,N_t-1)}]]`` for every data set ``t``.

    Parameters
    ----------
    data : mapping of str to array_like, scipy.sparse, xarray.DataArray or Tensor
        The data sets (matrices or tensors, NaN = missing) by name.
    rank : int
        Number of components R shared by all data sets.
    modes : mapping of str to sequence of str, optional
        Label of each mode of each data set; equal labels share a factor. Default: the
        DataArrays' dims.
    relweights : mapping of str to float, optional
        Relative weight per data set (default 1 each; see the module docstring), as
        ``relweights`` of :func:`sdf.models.fuse` and ``relweight`` of :class:`sdf.CPD`.
    init : {"auto", "random"} or mapping of label to ndarray, default "auto"
        ``"auto"``: :func:`sdf.models.cpd` of the data set with the most known entries
        among those of order >= 3 (else random), then each other data set's
        remaining factor by least squares when it has only one, random otherwise.
        A mapping gives factors ``(I, R)`` by label (missing labels: as ``"auto"``
        would do after the given ones).
    n_starts : int, default 1
        Number of starts: ``init``, then random ones (seeded by ``seed``); the fit with
        the lowest error is returned, every start is listed in its ``starts``
        (:meth:`Decomposition.starts_table`).
    seed : int or numpy.random.Generator, optional
    method : str, default "nls"
    display : int, default 0
    callback : callable, optional
    options : sdf.NLSOptions or sdf.MinfOptions, optional
        Settings of the joint fit; ``**fit_options`` override single fields.
    weights : mapping of str to float, optional
        Deprecated name of ``relweights`` (a DeprecationWarning; removed in the next
        release).
    losses : mapping of str to loss, optional
        The loss of each data set by name (default ``"gaussian"``; see
        :mod:`sdf.losses`): counts with ``"poisson"`` and covariates by least squares in
        one model. With ``init="auto"`` a data set with a non-Gaussian loss starts from
        its working data (:func:`sdf.models.cpd` with ``loss=``).

    Returns
    -------
    Decomposition
        ``factors``: one matrix per label, in the order of ``labels`` (first seen
        first); ``relerr``: ``sqrt(sum_t D_t / sum_t D_null,t)`` over the known
        entries, with ``D_t = ||r_t||^2`` and ``D_null,t = ||X_t||^2`` for least-squares
        data sets and the deviances of the model and of the constant model for the
        others (the plain relative error when every loss is Gaussian); ``relerrs``: per
        data set.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models import cmtf
    >>> rng = np.random.default_rng(0)
    >>> A, B, C, D = (rng.standard_normal((n, 2)) for n in (8, 7, 6, 5))
    >>> X = np.einsum("ir,jr,kr->ijk", A, B, C)
    >>> Y = A @ D.T
    >>> dec = cmtf({"X": X, "Y": Y}, 2, modes={"X": ["i", "j", "k"], "Y": ["i", "l"]}, seed=0)
    >>> dec.labels, bool(dec.relerr < 1e-6)
    (['i', 'j', 'k', 'l'], True)
    """
    check_fit_options(cmtf, fit_options, method=method, options=options, display=display)
    if not isinstance(data, Mapping) or not data:
        raise ModelError("data: expected a non-empty mapping {name: data set}")
    if modes is not None and not isinstance(modes, Mapping):
        raise ModelError(f"modes: expected a mapping {{name: labels}}, got {type(modes).__name__}")
    tensors = {str(k): as_tensor(v, name=f"data[{k!r}]") for k, v in data.items()}
    rank = check_int(rank, "rank")
    labels = _mode_labels(tensors, modes)
    sizes = _sizes(tensors, labels)
    order = list(sizes)
    rel = _relweights(tensors, _renamed_weights(relweights, weights))
    loss_of = _losses(tensors, losses)
    if check_int(n_starts, "n_starts") > 1:
        def one(k: int, rng: np.random.Generator) -> Decomposition:
            return cmtf(tensors, rank, modes=labels, relweights=rel,
                        init=init if k == 0 else "random", seed=rng, losses=losses,
                        method=method,
                        display=display, callback=callback, options=options, **fit_options)
        return best_of_starts(one, n_starts, make_rng(seed))
    rng = make_rng(seed)
    timer = Timer()
    start = _initial(tensors, labels, sizes, rank, init, rng, loss_of)
    stages = [Stage("init", "auto" if isinstance(init, str) and init == "auto" else
                    "random" if isinstance(init, str) else "given", 0, timer.lap())]
    variables = {lab: sdf.Variable(start[lab], name=lab) for lab in order}
    terms = {name: sdf.CPD(X, [variables[lab] for lab in labels[name]], relweight=rel[name],
                           loss=loss_of[name])
             for name, X in tensors.items()}
    res = engine_fit(sdf.Model(terms), method, options, fit_options, display, callback)
    stages.append(Stage("fit", f"coupled CPD of {len(tensors)} data sets",
                        int(res.iterations), timer.lap()))
    num = sum(res.abserr[n] ** 2 for n in tensors)
    den = 0.0
    for n, X in tensors.items():
        null = terms[n].null_fval
        den += X.norm_squared() if null is None else 2.0 * null
    relerr = float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))
    return Decomposition(kind="CMTF", factors=[res.variables[lab] for lab in order],
                         relerr=relerr, history=res.history, result=res, stages=stages,
                         relerrs=dict(res.relerr), labels=order)


def _renamed_weights(relweights: Mapping[str, float] | None,
                     weights: Mapping[str, float] | None) -> Mapping[str, float] | None:
    """``relweights``, or the deprecated ``weights`` (with a DeprecationWarning)."""
    if weights is None:
        return relweights
    if relweights is not None:
        raise ModelError("weights: deprecated name of relweights; give relweights only")
    warnings.warn("cmtf: weights= is deprecated, use relweights= (same meaning: relative "
                  "weights, as in sdf.models.fuse and sdf.CPD(relweight=)); weights= will "
                  "be removed in the next release", DeprecationWarning, stacklevel=3)
    return weights


def _losses(tensors: Mapping[str, Tensor], given: Mapping[str, LossLike] | None
            ) -> dict[str, Loss]:
    out = {name: as_loss("gaussian") for name in tensors}
    if given is None:
        return out
    if not isinstance(given, Mapping):
        raise ModelError(f"losses: expected a mapping {{name: loss}}, got {type(given).__name__}")
    unknown = sorted(set(given) - set(tensors))
    if unknown:
        raise ModelError(f"losses: unknown data sets {unknown}")
    for name, loss in given.items():
        try:
            out[name] = as_loss(loss, f"losses[{name!r}]")
        except ValueError as err:
            raise ModelError(str(err)) from None
    return out


def _relweights(tensors: Mapping[str, Tensor], given: Mapping[str, float] | None
                ) -> dict[str, float]:
    rel = {name: 1.0 for name in tensors}
    if given is not None:
        unknown = sorted(set(given) - set(tensors))
        if unknown:
            raise ModelError(f"relweights: unknown data sets {unknown}")
        rel.update({k: check_number(v, f"relweights[{k!r}]") for k, v in given.items()})
    return rel


def _initial(tensors: Mapping[str, Tensor], labels: Mapping[str, list[str]],
             sizes: Mapping[str, int], rank: int, init: object, rng: np.random.Generator,
             loss_of: Mapping[str, Loss]) -> dict[str, np.ndarray]:
    start: dict[str, np.ndarray] = {}
    if isinstance(init, Mapping):
        for lab, A in init.items():
            if lab not in sizes:
                raise ModelError(f"init: unknown label {lab!r} (labels: {list(sizes)})")
            A = np.array(A)
            A = A.astype(np.complex128 if np.iscomplexobj(A) else np.float64)
            if A.shape != (sizes[lab], rank):
                raise ModelError(f"init[{lab!r}]: expected shape {(sizes[lab], rank)}, "
                                 f"got {A.shape}")
            start[lab] = A
    elif init not in ("auto", "random"):
        raise ModelError(f"init: expected 'auto', 'random' or a mapping label -> factor, "
                         f"got {init!r}")
    if init == "random":
        return {lab: rng.standard_normal((I, rank)) for lab, I in sizes.items()}
    candidates = [n for n, X in tensors.items() if X.ndim >= 3
                  and not all(lab in start for lab in labels[n])]
    if candidates:
        main = max(candidates, key=lambda n: tensors[n].n_known)
        with quiet():
            dec = cpd(tensors[main], rank, seed=rng, max_iter=50, loss=loss_of[main])
        for lab, A in zip(labels[main], dec.factors):
            start.setdefault(lab, A)
    for name, X in sorted(tensors.items(), key=lambda kv: -kv[1].n_known):
        missing = [k for k, lab in enumerate(labels[name]) if lab not in start]
        if len(missing) == 1 and len(missing) < X.ndim:
            factors = [start.get(lab) for lab in labels[name]]
            if not loss_of[name].is_gaussian:  # least squares on the working data
                W = working_array(X, loss_of[name])
                if W is None:
                    continue
                X = as_tensor(W, name=f"data[{name!r}] working data")
            start[labels[name][missing[0]]] = _least_squares_mode(X, factors, missing[0])
    for lab, I in sizes.items():
        if lab not in start:
            start[lab] = rng.standard_normal((I, rank))
    return start
