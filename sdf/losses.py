r"""Losses of data terms: how far a model's value is from a data entry.

Every data term (:class:`sdf.CPD`, :class:`sdf.LMLRA`, :class:`sdf.BTD`, :class:`sdf.LL1`)
takes ``loss=``: a name (``"gaussian"``, the default, ``"poisson"``, ``"bernoulli"``,
``"gamma"``, ``"huber"``, ``"beta"``), a dict ``{"name": ..., parameters...}`` (the form
the dictionary language reads and writes) or a :class:`Loss` object. The term's value is

.. math:: f_t = \sum_{e \text{ known}} \ell(m_e, x_e),

``m_e`` the model's value at entry ``e`` and ``x_e`` the data. Every built-in loss is
*half the unit deviance* of its distribution: ``ell >= 0``, zero where the model explains
the entry exactly, and ``ell = (m - x)^2 / 2`` for the Gaussian loss, so that ``f_t`` is
half the deviance and the least-squares objective is the Gaussian case.

Solvers. Gauss-Newton becomes generalized Gauss-Newton (Fisher scoring): the gradient is
``J^T ell'(m)`` and the Gramian ``J^T diag(c) J`` with a nonnegative per-entry weight
``c`` (:meth:`Loss.curvature`: the Fisher information of the entry, which is the exact
second derivative for canonical links); the trust region is kept. L-BFGS needs the value
and gradient only.

Links. The model's value is the distribution's mean for identity links (``"gaussian"``,
``"huber"``, ``"beta"``, ``Poisson(link="identity")``, ``Gamma(link="identity")``: keep the
model nonnegative with nonnegative factors, e.g. ``tf.nonneg``; at negative values the loss
is infinite and steps there are rejected; ``mean = m + 1e-10`` guards the logarithms as in
GCP), its logarithm for log links (``"poisson"``, ``"gamma"``) and its log-odds for
``"bernoulli"``. :meth:`Loss.mean` maps model values to means.

Errors. A term with a non-Gaussian loss reports as relative error
``sqrt(D(model) / D(null))``: the square root of its deviance over the deviance of the
best constant model (:meth:`Loss.null_model`: the data's mean through the link; zero for
the Huber loss, as for least squares). It is 0 for an exact fit and 1 for a model no better
than the constant; the absolute error is ``sqrt(D(model))``.

Weights of terms with different losses. Relative weights divide each term by its number
of known entries (see :class:`sdf.Model`), so they weight mean deviances per entry. A
Gaussian term's deviance is in squared data units, a Poisson or Bernoulli term's has no
unit: to weight data sets as independent log-likelihoods, give the Gaussian term the
absolute weight ``1 / sigma^2`` (``sigma`` its noise level) and the others weight 1.

Sparse data (:class:`sdf.tensors.SparseTensor`: mostly zeros, the zeros true values). A
CPD term computes its exact objective as a sum over the stored entries plus a closed form
over all entries where the loss allows it: for ``Poisson(link="identity")`` and
``Beta(1.0)`` (Kullback-Leibler), ``ell(m, 0) = m`` so the zeros add the model's sum,
``sum_r prod_n (sum_i A_n[i, r])``, and everything costs O(nnz R) (the factors must then
be nonnegative, e.g. ``tf.nonneg``). For other losses (log and logit links) there is no
closed form: the exact objective reads every entry, O(size R). The option
``sdf.CPD(..., sampling=ZeroSampling(zeros=n, seed=s))`` replaces the zeros by ``n`` of
them drawn at random (stratified sampling as in GCP: every stored entry, and a seeded
uniform sample of the zeros weighted by the number of zeros over ``n``): an unbiased
estimate of the objective at O((nnz + n) R).

Writing a loss: subclass :class:`Loss` and give :meth:`Loss.value`,
:meth:`Loss.derivative` and :meth:`Loss.curvature` (elementwise on arrays), optionally
:meth:`Loss.check_data`, :meth:`Loss.null_model` and :meth:`Loss.mean`.

Examples
--------
A Cauchy (Lorentzian) loss for heavy-tailed noise, ``ell = s^2/2 log(1 + r^2/s^2)``, with
the curvature of its majorizer ``1 / (1 + r^2/s^2)`` as Gauss-Newton weight:

>>> import numpy as np, sdf
>>> from sdf.losses import Loss
>>> class Cauchy(Loss):
...     name = "cauchy"
...     def __init__(self, scale=1.0):
...         self.scale = float(scale)
...     def value(self, model, data):
...         return 0.5 * self.scale**2 * np.log1p(((model - data) / self.scale) ** 2)
...     def derivative(self, model, data):
...         r = model - data
...         return r / (1.0 + (r / self.scale) ** 2)
...     def curvature(self, model, data):
...         return 1.0 / (1.0 + ((model - data) / self.scale) ** 2)
>>> rng = np.random.default_rng(0)
>>> A, B = rng.standard_normal((20, 2)), rng.standard_normal((15, 2))
>>> X = A @ B.T
>>> X[0, :3] += 50.0  # gross outliers
>>> a = sdf.Variable(A + 0.1 * rng.standard_normal(A.shape))
>>> b = sdf.Variable(B + 0.1 * rng.standard_normal(B.shape))
>>> res = sdf.Model(x=sdf.CPD(X, [a, b], loss=Cauchy())).fit(max_iter=100)
>>> bool(np.abs(res[a] @ res[b].T - A @ B.T).max() < 0.2)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

__all__ = ["Bernoulli", "Beta", "Gamma", "Gaussian", "Huber", "Loss", "LossLike", "Poisson",
           "ZeroSampling", "as_loss", "loss_names", "register_loss"]

#: What ``loss=`` accepts: a name, a dict ``{"name": ..., parameters}`` or a Loss.
LossLike = Any
#: Added to the mean of identity-link losses before logarithms and divisions (as in GCP).
MEAN_EPS = 1e-10


class Loss:
    """Base class of losses: per-entry value, first derivative and Gauss-Newton weight.

    Subclasses give :meth:`value`, :meth:`derivative` and :meth:`curvature`, elementwise
    on arrays of model values ``model`` and data ``data`` of one shape (the known entries
    only); see the module docstring for the conventions and an example.
    """

    #: Name in messages and in the dictionary language.
    name: ClassVar[str] = "custom"
    #: How the model's value maps to the data's mean: "identity", "log" or "logit".
    link: ClassVar[str] = "identity"
    #: Only the Gaussian loss: terms then use their least-squares strategies.
    is_gaussian: ClassVar[bool] = False

    def value(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Per entry ``ell(m, x) >= 0``; ``inf`` where the model is outside the domain."""
        raise NotImplementedError(f"{type(self).__name__}.value")

    def derivative(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Per entry ``d ell / d m``."""
        raise NotImplementedError(f"{type(self).__name__}.derivative")

    def curvature(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Per entry a nonnegative Gauss-Newton weight (the Fisher information, or the
        second derivative ``d^2 ell / d m^2`` where it is nonnegative)."""
        raise NotImplementedError(f"{type(self).__name__}.curvature")

    def evaluate(self, model: np.ndarray, data: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(value, derivative, curvature)`` in one call (built-ins share their work)."""
        return (self.value(model, data), self.derivative(model, data),
                self.curvature(model, data))

    def totals(self, model: np.ndarray, data: np.ndarray
               ) -> tuple[float, np.ndarray, np.ndarray]:
        """``(sum of the values, derivative, curvature)`` as float arrays: what a term's
        state keeps (overflow to inf is allowed: it marks a model outside the domain)."""
        with np.errstate(all="ignore"):
            value, slope, weight = (np.asarray(x, dtype=float)
                                    for x in self.evaluate(model, data))
            return float(np.sum(value)), slope, weight

    def check_data(self, values: np.ndarray) -> str | None:
        """What is wrong with the known data ``values`` for this loss (None: nothing)."""
        return None

    def null_model(self, data: np.ndarray) -> float:
        """The model value of the reference constant fit for the relative error
        (default 0, the least-squares convention)."""
        return 0.0

    def mean(self, model: np.ndarray) -> np.ndarray:
        """The data's mean the model values stand for (the inverse link)."""
        return np.asarray(model)

    @property
    def nonnegative_model(self) -> bool:
        """Whether the model must stay nonnegative (identity links of count and positive
        data: the loss is infinite below zero)."""
        return False

    @property
    def linear_at_zero(self) -> bool:
        """Whether the loss is the Poisson deviance on the identity link,
        ``ell(m, x) = mu - x log mu + x log x - x`` with ``mu = m + MEAN_EPS``: then
        ``ell(m, 0) = mu`` and sparse data have an exact objective at O(nnz R)."""
        return False

    def working_data(self, data: np.ndarray) -> np.ndarray:
        """The data on the model's scale, for least-squares starts (the drivers fit a
        least-squares CPD of it first; NaN stays NaN). Default: the data themselves."""
        return np.asarray(data, dtype=float)

    def parameters(self) -> dict[str, Any]:
        """The loss's parameters by name, as its constructor takes them."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def spec(self) -> str | dict[str, Any]:
        """The dictionary-language form: the name, or a dict with the parameters."""
        params = self.parameters()
        return {"name": self.name, **params} if params else self.name

    def __eq__(self, other: object) -> bool:
        return (type(self) is type(other) and isinstance(other, Loss)
                and self.parameters() == other.parameters())

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.parameters().items()))))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({params})"


class _JointLoss(Loss):
    """A built-in loss that computes value, derivative and weight together in
    :meth:`evaluate` (they share their work); the single pieces come from it.

    The parts of the value that depend on the data only (``x log x`` and the like) are
    kept for the last read-only data array seen: a term's data never change, and a fit
    evaluates them at every point.
    """

    def _of_data(self, key: str, data: np.ndarray, make: Any) -> Any:
        """``make(data)``, remembered for a read-only ``data`` array (one per key)."""
        if not (isinstance(data, np.ndarray) and not data.flags.writeable):
            return make(data)
        cache: dict[str, tuple[np.ndarray, Any]] = self.__dict__.setdefault("_data_parts", {})
        hit = cache.get(key)
        if hit is None or hit[0] is not data:
            hit = cache[key] = (data, make(data))
        return hit[1]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_data_parts"}

    def evaluate(self, model: np.ndarray, data: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__}.evaluate")

    def value(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        return self.evaluate(model, data)[0]

    def derivative(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        return self.evaluate(model, data)[1]

    def curvature(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        return self.evaluate(model, data)[2]


def _xlogx(x: np.ndarray) -> np.ndarray:
    """``x log x`` with ``0 log 0 = 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def _identity_mean(model: np.ndarray) -> np.ndarray:
    """``m + eps`` where ``m >= 0``, NaN below (the loss is infinite there)."""
    return np.where(model >= 0, model + MEAN_EPS, np.nan)


def _outside(value: np.ndarray, model: np.ndarray) -> np.ndarray:
    """``value`` with ``inf`` where the model is negative (outside an identity link's domain)."""
    return np.where(model >= 0, value, np.inf)


def _first_bad(values: np.ndarray, bad: np.ndarray, want: str) -> str | None:
    if not bad.any():
        return None
    return f"needs data {want}, got {float(values[bad][0]):g} ({int(bad.sum())} such entries)"


class Gaussian(Loss):
    """Least squares, ``ell = (m - x)^2 / 2``: the default, fitted by the terms' own
    structured strategies (the model need never be formed)."""

    name = "gaussian"
    is_gaussian = True

    def value(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        return 0.5 * (model - data) ** 2

    def derivative(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        return model - data

    def curvature(self, model: np.ndarray, data: np.ndarray) -> np.ndarray:
        return np.ones(np.shape(model))


class Poisson(_JointLoss):
    """Counts: ``ell = mu - x + x log(x / mu)`` (half the Poisson deviance).

    Parameters
    ----------
    link : {"log", "identity"}, default "log"
        ``mu = exp(m)`` (unconstrained model; Fisher weight ``mu``, the exact second
        derivative) or ``mu = m`` (a nonnegative model, e.g. nonnegative factors; Fisher
        weight ``1 / mu``).
    """

    name = "poisson"

    def __init__(self, link: Literal["log", "identity"] = "log") -> None:
        if link not in ("log", "identity"):
            raise ValueError(f"Poisson: link must be 'log' or 'identity', got {link!r}")
        self.link = link  # type: ignore[misc]

    def evaluate(self, model: np.ndarray, data: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        constant = self._of_data("xlogx-x", data, lambda x: _xlogx(x) - x)
        if self.link == "log":
            mu = np.exp(model)
            value = mu - data * model + constant
            return value, mu - data, mu
        mu = _identity_mean(model)
        value = mu + constant - data * np.log(mu)
        return _outside(value, model), 1.0 - data / mu, 1.0 / mu

    def totals(self, model: np.ndarray, data: np.ndarray
               ) -> tuple[float, np.ndarray, np.ndarray]:
        if self.link != "log":
            return super().totals(model, data)
        m, x = np.asarray(model, dtype=float), np.asarray(data, dtype=float)
        with np.errstate(over="ignore"):
            mu = np.exp(m)
        constant = self._of_data("xlogx-x-sum", x, lambda v: float(np.sum(_xlogx(v) - v)))
        with np.errstate(invalid="ignore"):
            value = float(np.sum(mu)) - float(np.dot(x.ravel(), m.ravel())) + constant
        return value, mu - x, mu

    def check_data(self, values: np.ndarray) -> str | None:
        return _first_bad(values, values < 0, ">= 0 (counts)")

    @property
    def nonnegative_model(self) -> bool:
        return self.link == "identity"

    @property
    def linear_at_zero(self) -> bool:
        return self.link == "identity"

    def working_data(self, data: np.ndarray) -> np.ndarray:
        """``log(x + 1/2)`` for the log link (finite at zero counts), else ``x``."""
        x = np.asarray(data, dtype=float)
        return np.log(x + 0.5) if self.link == "log" else x

    def null_model(self, data: np.ndarray) -> float:
        mean = float(np.mean(data)) if data.size else 0.0
        return math.log(max(mean, 1e-300)) if self.link == "log" else mean

    def mean(self, model: np.ndarray) -> np.ndarray:
        return np.exp(model) if self.link == "log" else np.asarray(model)


class Bernoulli(_JointLoss):
    """Binary data (or frequencies in [0, 1]) with the logit link ``p = 1/(1 + exp(-m))``:
    ``ell = log(1 + e^m) - x m + x log x + (1 - x) log(1 - x)``; weight ``p (1 - p)``."""

    name = "bernoulli"
    link = "logit"

    def evaluate(self, model: np.ndarray, data: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        softplus, p, weight = self._pieces(model)
        constant = self._of_data("entropy", data, lambda x: _xlogx(x) + _xlogx(1.0 - x))
        return softplus - data * model + constant, p - data, weight

    def totals(self, model: np.ndarray, data: np.ndarray
               ) -> tuple[float, np.ndarray, np.ndarray]:
        softplus, p, weight = self._pieces(np.asarray(model, dtype=float))
        x = np.asarray(data, dtype=float)
        constant = self._of_data("entropy-sum", x, lambda v: float(np.sum(
            _xlogx(v) + _xlogx(1.0 - v))))
        value = float(np.sum(softplus)) - float(np.dot(x.ravel(), model.ravel())) + constant
        return value, p - x, weight

    @staticmethod
    def _pieces(model: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``log(1 + e^m)``, ``p`` and ``p (1 - p)`` from one exponential, without
        overflow: with ``e = exp(-|m|)``, ``p = 1/(1 + e)`` or ``e/(1 + e)`` and
        ``p (1 - p) = e / (1 + e)^2``."""
        e = np.exp(-np.abs(model))
        inv = 1.0 / (1.0 + e)
        softplus = np.maximum(model, 0.0) + np.log1p(e)
        e *= inv
        p = np.where(model >= 0, inv, e)
        return softplus, p, e * inv

    def check_data(self, values: np.ndarray) -> str | None:
        return _first_bad(values, (values < 0) | (values > 1), "in [0, 1]")

    def working_data(self, data: np.ndarray) -> np.ndarray:
        """``4 (x - 1/2)``: the first Fisher-scoring response from the zero model
        (``m + (x - p) / (p (1 - p))`` at ``m = 0``), ``+-2`` for binary data."""
        return 4.0 * (np.asarray(data, dtype=float) - 0.5)

    def null_model(self, data: np.ndarray) -> float:
        p = min(max(float(np.mean(data)) if data.size else 0.5, 1e-12), 1 - 1e-12)
        return math.log(p / (1.0 - p))

    def mean(self, model: np.ndarray) -> np.ndarray:
        return self._pieces(np.asarray(model, dtype=float))[1]


class Gamma(_JointLoss):
    """Positive, skewed data: ``ell = x / mu - log(x / mu) - 1`` (half the gamma deviance at
    unit shape).

    Parameters
    ----------
    link : {"log", "identity"}, default "log"
        ``mu = exp(m)`` (Fisher weight 1) or ``mu = m`` (a nonnegative model; Fisher
        weight ``1 / mu^2``).
    """

    name = "gamma"

    def __init__(self, link: Literal["log", "identity"] = "log") -> None:
        if link not in ("log", "identity"):
            raise ValueError(f"Gamma: link must be 'log' or 'identity', got {link!r}")
        self.link = link  # type: ignore[misc]

    def evaluate(self, model: np.ndarray, data: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        log_x = self._of_data("log", data, _log)
        if self.link == "log":
            ratio = data * np.exp(-model)
            return ratio + model - log_x - 1.0, 1.0 - ratio, np.ones(np.shape(ratio))
        mu = _identity_mean(model)
        ratio = data / mu
        value = ratio - log_x + np.log(mu) - 1.0
        return _outside(value, model), (1.0 - ratio) / mu, 1.0 / mu**2

    def check_data(self, values: np.ndarray) -> str | None:
        return _first_bad(values, values <= 0, "> 0")

    @property
    def nonnegative_model(self) -> bool:
        return self.link == "identity"

    def working_data(self, data: np.ndarray) -> np.ndarray:
        """``log x`` for the log link, else ``x``."""
        x = np.asarray(data, dtype=float)
        return _log(x) if self.link == "log" else x

    def null_model(self, data: np.ndarray) -> float:
        mean = float(np.mean(data)) if data.size else 1.0
        return math.log(mean) if self.link == "log" else mean

    def mean(self, model: np.ndarray) -> np.ndarray:
        return np.exp(model) if self.link == "log" else np.asarray(model)


class Huber(_JointLoss):
    """Least squares with gross outliers: ``ell = r^2 / 2`` for ``|r| <= threshold``, else
    ``threshold (|r| - threshold / 2)``, ``r = m - x``.

    The Gauss-Newton weight is the iteratively-reweighted-least-squares weight
    ``min(1, threshold / |r|)`` (the curvature of the quadratic majorizer): outliers keep
    a small positive weight.

    Parameters
    ----------
    threshold : float, default 1.0
        Residuals beyond it count linearly; in the data's units (e.g. 2-3 noise levels).
    """

    name = "huber"

    def __init__(self, threshold: float = 1.0) -> None:
        if not (isinstance(threshold, (int, float, np.integer, np.floating))
                and not isinstance(threshold, bool) and 0 < threshold < math.inf):
            raise ValueError(f"Huber: threshold must be a finite number > 0, got {threshold!r}")
        self.threshold = float(threshold)

    def evaluate(self, model: np.ndarray, data: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.threshold
        r = model - data
        a = np.abs(r)
        inside = a <= d
        value = np.where(inside, 0.5 * r * r, d * (a - 0.5 * d))
        with np.errstate(divide="ignore"):
            weight = np.where(inside, 1.0, d / np.where(inside, 1.0, a))
        return value, np.clip(r, -d, d), weight


class Beta(_JointLoss):
    r"""The beta divergence of the model from the data (identity link, nonnegative model):

    .. math:: \ell = \frac{x^\beta + (\beta - 1) \mu^\beta - \beta x \mu^{\beta - 1}}
       {\beta (\beta - 1)},

    with the limits ``x log(x/mu) - x + mu`` (Kullback-Leibler) at ``beta = 1`` and
    ``x/mu - log(x/mu) - 1`` (Itakura-Saito) at ``beta = 0``; ``beta = 2`` is least
    squares. Fisher weight ``mu^(beta - 2)``.

    Parameters
    ----------
    beta : float, default 1.0
    """

    name = "beta"

    def __init__(self, beta: float = 1.0) -> None:
        if not (isinstance(beta, (int, float, np.integer, np.floating))
                and not isinstance(beta, bool) and math.isfinite(beta)):
            raise ValueError(f"Beta: beta must be a finite number, got {beta!r}")
        self.beta = float(beta)

    def evaluate(self, model: np.ndarray, data: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.beta
        mu = _identity_mean(model)
        x = data
        if b == 1.0:
            value = self._of_data("xlogx-x", x, lambda v: _xlogx(v) - v) - x * np.log(mu) + mu
        elif b == 0.0:
            value = x / mu - np.log(x / mu) - 1.0
        else:
            value = (np.power(x, b) + (b - 1.0) * np.power(mu, b)
                     - b * x * np.power(mu, b - 1.0)) / (b * (b - 1.0))
        weight = np.power(mu, b - 2.0)
        return _outside(value, model), weight * (mu - x), weight

    def check_data(self, values: np.ndarray) -> str | None:
        if self.beta <= 0:
            return _first_bad(values, values <= 0, f"> 0 for beta = {self.beta:g}")
        return _first_bad(values, values < 0, ">= 0")

    def null_model(self, data: np.ndarray) -> float:
        return float(np.mean(data)) if data.size else 0.0

    @property
    def nonnegative_model(self) -> bool:
        return True

    @property
    def linear_at_zero(self) -> bool:
        return self.beta == 1.0


@dataclass(frozen=True, kw_only=True)
class ZeroSampling:
    """Stratified sampling of the zeros of sparse data (as in GCP), for a CPD term's
    ``sampling=``: every stored entry, and ``zeros`` of the zero entries drawn uniformly
    without replacement (seeded, drawn once per term), each weighted by the number of
    zeros over ``zeros``.

    Attributes
    ----------
    zeros : int
        Number of zero entries sampled (all of them when there are fewer).
    seed : int, default 0
        Seed of the sample.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, sdf
    >>> X = sp.random(200, 150, density=0.02, random_state=0, format="coo")
    >>> X.data = np.ones_like(X.data)
    >>> a, b = sdf.Variable.random((200, 2), seed=1), sdf.Variable.random((150, 2), seed=2)
    >>> term = sdf.CPD(X, [a, b], loss="bernoulli", sampling=ZeroSampling(zeros=3000, seed=0))
    >>> res = sdf.Model(x=term).fit(max_iter=20)
    >>> term.sampling, bool(np.isfinite(res.objective))
    (ZeroSampling(zeros=3000, seed=0), True)
    """

    zeros: int
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("zeros", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
                    value < (1 if name == "zeros" else 0):
                raise ValueError(f"ZeroSampling.{name} must be an integer >= "
                                 f"{1 if name == 'zeros' else 0}, got {value!r}")

    def spec(self) -> dict[str, int]:
        """The dictionary-language form."""
        return {"zeros": int(self.zeros), "seed": int(self.seed)}


_LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in
                                  (Gaussian, Poisson, Bernoulli, Gamma, Huber, Beta)}


def register_loss(cls: type[Loss]) -> type[Loss]:
    """Register a Loss subclass under its ``name`` so that names and dicts find it (the
    dictionary language then reads models using it); usable as a class decorator.

    Examples
    --------
    >>> @register_loss
    ... class Scaled(Gaussian):
    ...     name = "scaled-gaussian"
    >>> "scaled-gaussian" in loss_names()
    True
    """
    if not (isinstance(cls, type) and issubclass(cls, Loss)) or cls.name == Loss.name:
        raise ValueError(f"register_loss: expected a Loss subclass with its own name, got {cls!r}")
    taken = _LOSSES.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"register_loss: the name {cls.name!r} is taken by {taken.__name__}")
    _LOSSES[cls.name] = cls
    return cls


def loss_names() -> list[str]:
    """The built-in losses' names (what ``loss="..."`` takes).

    Examples
    --------
    >>> loss_names()[:6]
    ['bernoulli', 'beta', 'gamma', 'gaussian', 'huber', 'poisson']
    """
    return sorted(_LOSSES)


def as_loss(loss: LossLike, where: str = "loss") -> Loss:
    """A :class:`Loss` from a name, a dict ``{"name": ..., parameters}`` or a Loss.

    Raises ValueError naming ``where`` for anything else.

    Examples
    --------
    >>> as_loss("poisson"), as_loss({"name": "huber", "threshold": 0.5})
    (Poisson(link='log'), Huber(threshold=0.5))
    >>> as_loss(Beta(0.0)).spec()
    {'name': 'beta', 'beta': 0.0}
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        name, params = loss, {}
    elif isinstance(loss, dict) and isinstance(loss.get("name"), str):
        name, params = loss["name"], {k: v for k, v in loss.items() if k != "name"}
    else:
        raise ValueError(f"{where}: expected a loss name {loss_names()}, a dict "
                         f"{{'name': ..., parameters}} or an sdf.losses.Loss, got {loss!r}")
    cls = _LOSSES.get(name.lower())
    if cls is None:
        raise ValueError(f"{where}: unknown loss {name!r}; known: {loss_names()} "
                         "(or subclass sdf.losses.Loss)")
    try:
        return cls(**params)
    except TypeError as err:
        raise ValueError(f"{where}: loss {name!r} does not take the parameters "
                         f"{sorted(params)}: {err}") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
