"""Factorized embedding tables: TT-matrix or CP-matrix, looked up without the table.

An embedding table ``E`` (vocab x dim) is the weight of the linear map ``onehot(id) -> row``:
``E^T`` (dim x vocab) is tensorized like a linear layer
(:mod:`sdf.models.compress.tensorized`) with ``vocab = v_1 ... v_d`` and
``dim = e_1 ... e_d``. A row look-up takes the mixed-radix digits ``(v_1(id), ...,
v_d(id))`` of each id and gathers one slice per core, ``G_k[:, :, v_k(id), :]`` (TT) or
``A_k[:, v_k(id), :]`` (CP), then multiplies the slices: O(d e r^2) per id, never the
table.

Data-aware (a calibration corpus of ids), the fit weights each row by its token count:
the response of the one-hot inputs has Gram matrix ``diag(counts)``, so the objective of
:mod:`sdf.models.compress._fit` becomes ``w_w ||E_hat - E||^2 + w_r sum_v count_v
||E_hat[v] - E[v]||^2`` (``balance`` the share of the second term; the first keeps unseen
rows from drifting). It is minimised exactly one core at a time (alternating least
squares under a diagonal metric).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

import sdf.models.compress._formats as fmt
from sdf.decomp import tt_svd
from sdf.errors import DataError, ModelError
from sdf.models.compress._fit import MIN_WEIGHT_SHARE
from sdf.models.compress.linear import _check_balance, _check_matrix
from sdf.models.compress.result import CompressOptions, FitInfo, check_rank_args
from sdf.models.compress.tensorized import (_sizes, cp_start, params_at, rank_for_budget)
from sdf._blas import with_one_blas_pool

__all__ = ["EmbeddingFormat", "FactorizedEmbedding", "factorize_embedding"]

EmbeddingFormat = Literal["tt", "cp"]


def _check_ids(where: str, ids: object, vocab: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{where}: ids must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab):
        raise DataError(f"{where}: ids must lie in [0, {vocab}), got values in "
                        f"[{arr.min()}, {arr.max()}]")
    return arr.astype(np.intp)


@dataclass(frozen=True, repr=False)
class FactorizedEmbedding:
    """An embedding table stored as a TT-matrix or CP-matrix of its transpose.

    Attributes
    ----------
    format : {"tt", "cp"}
    num_embeddings, embedding_dim : int
        Table shape (vocab, dim); the factored sizes may be larger (padding).
    factors : tuple of ndarray
        TT: cores of shape ``(r_{k-1}, e_k, v_k, r_k)``; CP: ``(e_k, v_k, R)``.
    rank : int or tuple of int
        TT: ``(1, r_1, ..., r_{d-1}, 1)``; CP: R.
    weight_error : float
        ``||E_hat - E|| / ||E||`` over all rows.
    weighted_error : float or None
        ``sqrt(sum_v c_v ||E_hat[v] - E[v]||^2 / sum_v c_v ||E[v]||^2)`` with the
        calibration counts ``c_v`` (None without a corpus).
    info : FitInfo
    name : str

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import factorize_embedding
    >>> E = np.random.default_rng(0).standard_normal((1000, 16))
    >>> emb = factorize_embedding(E, "tt", ratio=0.2)
    >>> emb.vocab_sizes, emb.dim_sizes, emb.lookup(np.array([[3, 999]])).shape
    ((10, 10, 10), (4, 2, 2), (1, 2, 16))
    """

    format: EmbeddingFormat
    num_embeddings: int
    embedding_dim: int
    factors: tuple[np.ndarray, ...]
    rank: int | tuple[int, ...]
    weight_error: float
    weighted_error: float | None
    info: FitInfo
    name: str = "embedding"

    def __repr__(self) -> str:
        """One line: format, sizes, rank, counts and errors (no arrays)."""
        we = "" if self.weighted_error is None else f", weighted_error={self.weighted_error:.4g}"
        return (f"FactorizedEmbedding({self.name!r}, {self.format}, {self.vocab_sizes} x "
                f"{self.dim_sizes}, rank={self.rank}, params {self.params_before} -> "
                f"{self.n_params} ({self.param_ratio:.3f}), "
                f"weight_error={self.weight_error:.4g}{we})")

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        """``(v_1, ..., v_d)``: digits of an id, first most significant."""
        return tuple(int(G.shape[-2 if self.format == "tt" else 1]) for G in self.factors)

    @property
    def dim_sizes(self) -> tuple[int, ...]:
        """``(e_1, ..., e_d)``."""
        return tuple(int(G.shape[-3 if self.format == "tt" else 0]) for G in self.factors)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``E_hat[ids]``, shape ``ids.shape + (dim,)``, from per-core slices.

        Each distinct id is computed once: O(d e r^2) per distinct id (TT), O(e R) (CP).

        Parameters
        ----------
        ids : array_like of int
            Token ids in ``[0, num_embeddings)``, any shape.
        """
        arr = _check_ids(f"FactorizedEmbedding {self.name!r}.lookup", ids,
                         self.num_embeddings)
        # each distinct id once: corpora repeat their frequent tokens
        unique, inverse = np.unique(arr.reshape(-1), return_inverse=True)
        dig = fmt.digits(unique, self.vocab_sizes)
        rows = (fmt.tt_columns(self.factors, dig) if self.format == "tt"
                else fmt.cp_columns(self.factors, dig))
        return rows[inverse, :self.embedding_dim].reshape(*arr.shape, self.embedding_dim)

    def dense(self) -> np.ndarray:
        """The table the factors implement, (num_embeddings, embedding_dim) (for checks)."""
        W = fmt.tt_dense(self.factors) if self.format == "tt" else fmt.cp_dense(self.factors)
        return np.array(W[:self.embedding_dim, :self.num_embeddings].T)

    @property
    def n_params(self) -> int:
        """Entries of the factors."""
        return int(sum(F.size for F in self.factors))

    @property
    def params_before(self) -> int:
        """``num_embeddings * embedding_dim``."""
        return int(self.num_embeddings * self.embedding_dim)

    @property
    def param_ratio(self) -> float:
        """``n_params / params_before``."""
        return self.n_params / self.params_before


def _weighted_error(E: np.ndarray, E_hat: np.ndarray, counts: np.ndarray) -> float:
    err = np.einsum("v,v->", counts, np.sum((E_hat - E) ** 2, axis=1))
    ref = np.einsum("v,v->", counts, np.sum(E * E, axis=1))
    return float(np.sqrt(err / (ref or 1.0)))


@with_one_blas_pool
def factorize_embedding(
    E: np.ndarray,
    format: EmbeddingFormat = "tt",
    rank: int | None = None,
    ratio: float | None = None,
    ids: np.ndarray | None = None,
    *,
    shape: tuple[Sequence[int], Sequence[int]] | None = None,
    order: int = 3,
    pad: bool = True,
    balance: float = 0.9,
    sweeps: int = 10,
    name: str = "embedding",
    options: CompressOptions | None = None,
) -> FactorizedEmbedding:
    """Factor an embedding table as a TT-matrix or CP-matrix, optionally frequency-weighted.

    Parameters
    ----------
    E : ndarray of shape (vocab, dim)
        The table (row ``v`` is the embedding of token ``v``).
    format : {"tt", "cp"}, default "tt"
    rank : int, optional
        TT: cap on every TT rank; CP: number of terms. Give exactly one of ``rank`` and
        ``ratio``.
    ratio : float, optional
        Target share of the table's parameters.
    ids : array_like of int, optional
        A calibration corpus of token ids (any shape): rows are weighted by their counts
        (see :mod:`sdf.models.compress.embedding`).
    shape : pair of int sequences, optional
        ``((v_1, ..., v_d), (e_1, ..., e_d))``, products at least (vocab, dim). Default:
        :func:`~sdf.models.compress.factor_sizes` of both with ``order`` factors.
    order : int, default 3
    pad : bool, default True
        Passed to :func:`~sdf.models.compress.factor_sizes`.
    balance : float in [0, 1], default 0.9
        Share of the count-weighted term (ignored without ``ids``). With ``balance=1`` and
        rows never seen in the corpus, a share of 1e-6 stays with the plain term: it holds
        those rows near their values, which the counts alone leave free.
    sweeps : int, default 10
        Alternating least squares sweeps after the TT-SVD / CP start.
    name : str, default "embedding"
    options : CompressOptions, optional
        ``alt_tol``, ``seed`` and engine settings (CP start for d >= 3).

    Returns
    -------
    FactorizedEmbedding

    Examples
    --------
    >>> import numpy as np
    >>> from sdf.models.compress import factorize_embedding
    >>> rng = np.random.default_rng(0)
    >>> E = rng.standard_normal((1000, 16))
    >>> ids = rng.zipf(1.3, 5000) % 1000                     # a skewed corpus
    >>> aware = factorize_embedding(E, ratio=0.2, ids=ids)
    >>> aware.rank, bool(aware.weighted_error < 0.6 < aware.weight_error)
    ((1, 11, 11, 1), True)
    >>> bool(np.allclose(aware.lookup(ids[:5]), aware.dense()[ids[:5]]))
    True
    """
    where = f"factorize_embedding({name!r})"
    opts = options or CompressOptions()
    E = _check_matrix(where, E)
    if format not in ("tt", "cp"):
        raise ModelError(f"{where}: format must be 'tt' or 'cp', got {format!r}")
    check_rank_args(where, rank, ratio, None)
    balance = _check_balance(where, balance)
    if isinstance(sweeps, bool) or not isinstance(sweeps, (int, np.integer)) or sweeps < 0:
        raise ModelError(f"{where}: sweeps must be an int >= 0, got {sweeps!r}")
    vocab, dim = E.shape
    counts = None if ids is None else np.bincount(_check_ids(where, ids, vocab).reshape(-1),
                                                  minlength=vocab).astype(float)
    if shape is not None:
        shape = (shape[1], shape[0])  # the fit sees E^T: (dim sizes, vocab sizes)
    dsz, vsz = _sizes(where, shape, dim, vocab, order, pad)
    if rank is None:
        assert ratio is not None
        rank = rank_for_budget(where, format, dsz, vsz, ratio * vocab * dim)
    elif isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ModelError(f"{where}: rank must be an int >= 1, got {rank!r}")
    Wp = np.zeros((int(np.prod(dsz)), int(np.prod(vsz))))
    Wp[:dim, :vocab] = E.T
    diag = np.zeros(Wp.shape[1])
    use_counts = counts is not None and counts.sum() > 0 and balance > 0
    if use_counts:
        assert counts is not None
        norm_w = float(np.vdot(E, E)) or 1.0
        norm_r = float(counts @ np.sum(E * E, axis=1)) or 1.0
        if balance > 1.0 - MIN_WEIGHT_SHARE and np.any(counts == 0):
            balance = 1.0 - MIN_WEIGHT_SHARE  # unseen rows: see _fit.MIN_WEIGHT_SHARE
        diag[:vocab] = (1.0 - balance) / norm_w + balance * counts / norm_r
    else:
        diag[:vocab] = 1.0
    metric = fmt.Metric(diag=diag)
    if format == "tt":
        tt = tt_svd(fmt.paired_tensor(Wp, dsz, vsz), tol=0.0, max_rank=int(rank))
        cores: list[np.ndarray] = [G.reshape(G.shape[0], e, v, G.shape[2])
                                   for G, e, v in zip(tt.cores, dsz, vsz)]
        start = "TT-SVD"
        res = fmt.tt_als(Wp, cores, metric, dim, sweeps, opts.sweep_tol) if sweeps else None
    else:
        F, start = cp_start(fmt.paired_tensor(Wp, dsz, vsz), int(rank), opts, sweeps > 0)
        cores = [np.reshape(A, (e, v, int(rank))) for A, e, v in zip(F, dsz, vsz)]
        res = fmt.cp_als(Wp, cores, metric, dim, sweeps, opts.sweep_tol) if sweeps else None
    factors = cores if res is None else res.factors
    info = FitInfo("numpy", 0 if res is None else res.sweeps,
                   start if res is None else f"{start}, then {res.sweeps} ALS sweeps")
    rank_out: int | tuple[int, ...] = ((1, *(int(G.shape[3]) for G in factors))
                                       if format == "tt" else int(rank))
    emb = FactorizedEmbedding(format, vocab, dim, tuple(factors), rank_out, 0.0, None, info,
                              name)
    E_hat = emb.dense()
    return dataclasses.replace(
        emb, weight_error=float(np.linalg.norm(E_hat - E) / (np.linalg.norm(E) or 1.0)),
        weighted_error=None if counts is None else _weighted_error(E, E_hat, counts))
