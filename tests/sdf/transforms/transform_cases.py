"""Registry of transform examples for the contract tests.

Each case: a transform (or a chain of transforms), a maker of valid inputs, and a
reference formula written independently with ``autograd.numpy``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import autograd.numpy as anp
import numpy as np
import scipy.linalg
import scipy.sparse as sp

from sdf import transforms as tf
from sdf.transforms._base import Linearization, Transform


class Chain(Transform):
    """Test-only composition: steps[0] may take several inputs, the others one."""

    def __init__(self, *steps: Transform) -> None:
        self.steps = steps
        self.n_inputs = steps[0].n_inputs
        self.name = " -> ".join(s.name for s in steps)

    def output_shape(self, *shapes):
        shape = self.steps[0].output_shape(*shapes)
        for s in self.steps[1:]:
            shape = s.output_shape(shape)
        return shape

    def _forward(self, z):
        points = [z]
        for s in self.steps[:-1]:
            points.append(s.value(points[-1]))
        return points

    def value(self, z):
        return self.steps[-1].value(self._forward(z)[-1])

    def jvp(self, z, dz):
        for s, p in zip(self.steps, self._forward(z)):
            dz = s.jvp(p, dz)
        return dz

    def vjp(self, z, g):
        for s, p in reversed(list(zip(self.steps, self._forward(z)))):
            g = s.vjp(p, g)
        return g

    def linearize(self, z):
        lins = []
        point = z
        for s in self.steps:
            lins.append(s.linearize(point))
            point = lins[-1].value
        lin = Linearization.__new__(Linearization)
        lin.transform, lin.z, lin.value = self, z, point

        def jvp(dz):
            for ln in lins:
                dz = ln.jvp(dz)
            return dz

        def vjp(g):
            for ln in reversed(lins):
                g = ln.vjp(g)
            return g

        lin.jvp, lin.vjp = jvp, vjp
        return lin

    def __repr__(self):
        return f"Chain({', '.join(map(repr, self.steps))})"


@dataclass
class Case:
    id: str
    transform: Transform
    make: Callable[[np.random.Generator], Any]  # valid input(s): array or tuple of arrays
    ref: Callable[..., Any]  # autograd.numpy formula: ref(z) or ref(*z)

    @property
    def is_chain(self) -> bool:
        return isinstance(self.transform, Chain)

    def __repr__(self) -> str:
        return self.id


# ----------------------------------------------------------------------------- helpers

def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def positive(*shape):
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def several(*shapes):
    return lambda rng: tuple(rng.standard_normal(s) for s in shapes)


def pattern_ref(mask: np.ndarray):
    """x = P z with P scattering free entries (row-major positions of mask) into a matrix."""
    pos = np.flatnonzero(mask)
    P = np.zeros((mask.size, pos.size))
    P[pos, np.arange(pos.size)] = 1.0
    return lambda z: anp.reshape(anp.dot(P, anp.ravel(z)), mask.shape)


def spd(n, noise=0.1):
    def make(rng):
        B = rng.standard_normal((n, n))
        return B @ B.T / n + np.eye(n) + noise * rng.standard_normal((n, n))
    return make


def db_invsqrt(A, iters=40):
    """Denman-Beavers iteration: converges to A^(-1/2); differentiable with autograd."""
    Y, Z = A, anp.eye(A.shape[0])
    for _ in range(iters):
        Y, Z = 0.5 * (Y + anp.linalg.inv(Z)), 0.5 * (Z + anp.linalg.inv(Y))
    return Z


def orth_ref(z):
    return anp.dot(z, db_invsqrt(anp.dot(z.T, z)))


def monotone_ref(direction, nonneg):
    sign = 1.0 if direction == "increasing" else -1.0

    def ref(z):
        if nonneg and direction == "decreasing":
            return anp.sum(z**2, axis=0) - anp.cumsum(z**2, axis=0) + z**2
        if nonneg:
            return anp.cumsum(z**2, axis=0)
        return z[0] + anp.concatenate([anp.zeros_like(z[:1]), anp.cumsum(sign * z[1:] ** 2, axis=0)])
    return ref


def unimodal_ref(peaks):
    """Column by column: products of ratios 1/(1+z^2) walking away from the peak."""
    def column(z, m):
        out = [None] * z.shape[0]
        out[m] = z[m] ** 2
        for i in range(m + 1, z.shape[0]):
            out[i] = out[i - 1] / (1.0 + z[i] ** 2)
        for i in range(m - 1, -1, -1):
            out[i] = out[i + 1] / (1.0 + z[i] ** 2)
        return anp.array(out)

    def ref(z):
        if z.ndim == 1:
            return column(z, peaks[0])
        return anp.stack([column(z[:, r], m) for r, m in enumerate(peaks)], axis=1)
    return ref


def normalize_ref(z):
    return z / anp.sqrt(anp.sum(z**2, axis=0))


def kr_ref(*mats):
    out = mats[0]
    for m in mats[1:]:
        out = anp.reshape(out[:, None, :] * m[None, :, :], (-1, m.shape[1]))
    return out


def kron_ref(*mats):
    out = mats[0]
    for m in mats[1:]:
        out = anp.kron(out, m)
    return out


def rbf_ref(t):
    def ref(z):
        k = z.shape[0] // 3
        w, c, s = z[:k], z[k:2 * k], z[2 * k:]
        u = t[:, None, None] - c[None]
        return anp.sum(w[None] * anp.exp(-(u**2) / s[None] ** 2), axis=1)
    return ref


def rbf_make(k, r):
    def make(rng):
        return np.concatenate([
            rng.standard_normal((k, r)), rng.uniform(0, 1, (k, r)), rng.uniform(0.3, 1.0, (k, r))
        ])
    return make


def rational_make(rng):
    return np.concatenate([rng.standard_normal((3, 2)), rng.uniform(0.1, 0.5, (1, 2))])


def cauchy_make(rng):
    return np.concatenate([rng.uniform(0, 1, 3), rng.uniform(2, 3, 4)])


T6 = np.linspace(0.0, 1.0, 6)
X54 = np.random.default_rng(1).standard_normal((5, 4))
X45 = X54.T.copy()
XSP = sp.random(5, 4, density=0.5, random_state=2, format="csr")
VALUES = np.random.default_rng(3).standard_normal((4, 3))
MASK = np.random.default_rng(4).uniform(size=(4, 3)) < 0.5
TOEP_IDX = scipy.linalg.toeplitz(np.arange(4), np.r_[0, 4:6])
TOEP53 = scipy.linalg.toeplitz(np.arange(5), np.r_[0, 5:7])
HANK_IDX = scipy.linalg.hankel(np.arange(3), np.arange(2, 6))
I, J = np.ogrid[:5, :5]
custom_sin = tf.custom(lambda z: anp.sin(z) * z, label="sinz")
custom_two = tf.custom(lambda a, b: anp.dot(a, anp.tanh(b)), n_inputs=2, label="dot_tanh")


CASES: list[Case] = [
    # elementwise
    Case("identity", tf.Identity(), normal(4, 3), lambda z: z),
    Case("nonneg", tf.Nonneg(), normal(4, 3), lambda z: z**2),
    Case("sigmoid", tf.Sigmoid((-1.0, 2.0)), normal(4, 3),
         lambda z: -1.0 + 3.0 / (1.0 + anp.exp(-z))),
    Case("exp", tf.Exp(), normal(4, 3), anp.exp),
    Case("log", tf.Log(), positive(4, 3), anp.log),
    Case("sqrt", tf.Sqrt(), positive(4, 3), anp.sqrt),
    Case("abs", tf.Abs(), normal(4, 3), anp.abs),
    Case("conj", tf.Conj(), normal(4, 3), anp.conj),
    Case("abs-smooth", tf.Abs(eps=0.1), normal(4, 3), lambda z: anp.sqrt(z**2 + 0.01) - 0.1),
    Case("power-int", tf.Power(3), normal(4, 3), lambda z: z**3),
    Case("power-real", tf.Power(2.5), positive(4, 3), lambda z: z**2.5),
    Case("scale", tf.Scale(-2.5), normal(4, 3), lambda z: -2.5 * z),
    Case("shift", tf.Shift([1.0, 2.0, 3.0]), normal(4, 3), lambda z: z + anp.array([1.0, 2.0, 3.0])),
    Case("const-mask", tf.Const(VALUES, MASK), normal(4, 3), lambda z: anp.where(MASK, VALUES, z)),
    Case("const-all", tf.Const(VALUES), normal(4, 3), lambda z: VALUES + 0.0 * z),
    # structured
    Case("toeplitz", tf.Toeplitz((4, 3)), normal(6), lambda z: z[TOEP_IDX]),
    Case("toeplitz-column", tf.Toeplitz((4, 3)), normal(6, 1), lambda z: z[TOEP_IDX, 0]),
    Case("hankel", tf.Hankel((3, 4)), normal(6), lambda z: z[HANK_IDX]),
    Case("vander", tf.Vander(4), normal(5), lambda z: anp.stack([z**d for d in range(4)], axis=1)),
    Case("cauchy", tf.Cauchy((3, 4)), cauchy_make, lambda z: 1.0 / (z[:3, None] - z[None, 3:])),
    Case("band", tf.Band(5, lower=1, upper=2), normal(16),
         pattern_ref((J - I >= -1) & (J - I <= 2))),
    Case("diag", tf.Diag((3, 4)), normal(3), pattern_ref(np.eye(3, 4, dtype=bool))),
    Case("tridiag", tf.Tridiag(4), normal(10), pattern_ref(np.abs(I - J)[:4, :4] <= 1)),
    Case("tril", tf.Tril(4), normal(10), pattern_ref(np.tril(np.ones((4, 4), bool)))),
    Case("triu-k1", tf.Triu((3, 5), k=1), normal(9), pattern_ref(np.triu(np.ones((3, 5), bool), 1))),
    # matrix
    Case("matvec-left", tf.MatVec(X54), normal(4, 3), lambda z: anp.dot(X54, z)),
    Case("matvec-vector", tf.MatVec(X54), normal(4), lambda z: anp.dot(X54, z)),
    Case("matvec-right", tf.MatVec(X45, side="right"), normal(3, 4), lambda z: anp.dot(z, X45)),
    Case("matvec-sparse", tf.MatVec(XSP), normal(4, 3), lambda z: anp.dot(XSP.toarray(), z)),
    Case("mtimes", tf.MTimes(), several((3, 4), (4, 2)), anp.dot),
    Case("gram", tf.Gram(), normal(5, 3), lambda z: anp.dot(z.T, z)),
    Case("inv", tf.Inv(), spd(4), anp.linalg.inv),
    Case("invtransp", tf.Invtransp(), spd(4), lambda z: anp.linalg.inv(z).T),
    Case("invsqrtm", tf.Invsqrtm(), spd(4), lambda z: db_invsqrt(0.5 * (z + z.T))),
    Case("orth", tf.Orth(), normal(6, 3), orth_ref),
    Case("normalize", tf.Normalize(), normal(5, 3), lambda z: normalize_ref(z)),
    Case("normalize-vector", tf.Normalize(), normal(4), lambda z: z / anp.sqrt(anp.sum(z**2))),
    Case("transpose", tf.Transpose(), normal(3, 4), lambda z: z.T),
    Case("ctranspose", tf.CTranspose(), normal(3, 4), lambda z: anp.conj(z).T),
    Case("transpose-axes", tf.Transpose((1, 2, 0)), normal(2, 3, 4),
         lambda z: anp.transpose(z, (1, 2, 0))),
    # several inputs
    Case("kr-2", tf.Kr(2), several((3, 2), (4, 2)), kr_ref),
    Case("kr-3", tf.Kr(3), several((2, 3), (3, 3), (2, 3)), kr_ref),
    Case("kron-2", tf.Kron(2), several((2, 3), (3, 2)), kron_ref),
    Case("kron-3", tf.Kron(3), several((2, 1), (1, 2), (2, 2)), kron_ref),
    Case("concat-0", tf.Concat(2, axis=0), several((2, 3), (4, 3)),
         lambda a, b: anp.concatenate([a, b], axis=0)),
    Case("concat-last", tf.Concat(3, axis=-1), several((2, 3), (2, 1), (2, 2)),
         lambda a, b, c: anp.concatenate([a, b, c], axis=1)),
    Case("plus-broadcast", tf.Plus(3), several((4, 3), (3,), (4, 1)), lambda a, b, c: a + b + c),
    Case("prod-broadcast", tf.Prod(3), several((4, 3), (3,), (4, 1)), lambda a, b, c: a * b * c),
    Case("times", tf.Times(), several((4, 3), (4, 3)), lambda a, b: a * b),
    # indexing
    Case("select-flat", tf.Select([0, 5, 5, 2]), normal(3, 4),
         lambda z: anp.ravel(z)[np.array([0, 5, 5, 2])]),
    Case("select-cols", tf.Select([2, 0, 2], axis=1), normal(3, 4), lambda z: z[:, [2, 0, 2]]),
    Case("select-mask", tf.Select(MASK), normal(4, 3), lambda z: z[MASK]),
    Case("ll1", tf.LL1([2, 1, 3]), normal(4, 3), lambda z: z[:, [0, 0, 1, 2, 2, 2]]),
    Case("reshape", tf.Reshape((2, -1)), normal(3, 4), lambda z: anp.reshape(z, (2, 6))),
    Case("sum-axis", tf.Sum(axis=0), normal(4, 3), lambda z: anp.sum(z, axis=0)),
    Case("sum-all", tf.Sum(), normal(4, 3), lambda z: anp.sum(z)),
    Case("sum-keepdims", tf.Sum(axis=1, keepdims=True), normal(4, 3),
         lambda z: anp.sum(z, axis=1, keepdims=True)),
    Case("fd", tf.FD(), normal(5, 3), lambda z: z[1:] - z[:-1]),
    Case("fd-order2-axis1", tf.FD(order=2, axis=1), normal(4, 5),
         lambda z: z[:, 2:] - 2 * z[:, 1:-1] + z[:, :-2]),
    # functional
    Case("poly", tf.Poly(T6), normal(3, 2), lambda z: anp.dot(T6[:, None] ** np.arange(3), z)),
    Case("poly-vector", tf.Poly(T6), normal(4), lambda z: anp.dot(T6[:, None] ** np.arange(4), z)),
    Case("rational", tf.Rational(T6, degree=(2, 1)), rational_make,
         lambda z: anp.dot(T6[:, None] ** np.arange(3), z[:3]) / (1.0 + anp.dot(T6[:, None], z[3:]))),
    Case("rbf", tf.RBF(T6), rbf_make(2, 3), rbf_ref(T6)),
    Case("rbf-vector", tf.RBF(T6), lambda rng: rbf_make(2, 1)(rng)[:, 0],
         lambda z: rbf_ref(T6)(z[:, None])[:, 0]),
    # shape constraints
    Case("simplex", tf.Simplex(), normal(5, 3), lambda z: z**2 / anp.sum(z**2, axis=0)),
    Case("simplex-vector", tf.Simplex(), normal(4), lambda z: z**2 / anp.sum(z**2)),
    Case("monotone-increasing", tf.Monotone(), normal(5, 3), monotone_ref("increasing", False)),
    Case("monotone-decreasing", tf.Monotone("decreasing"), normal(5, 2),
         monotone_ref("decreasing", False)),
    Case("monotone-nonneg-increasing", tf.Monotone(nonneg=True), normal(4, 3),
         monotone_ref("increasing", True)),
    Case("monotone-nonneg-decreasing", tf.Monotone("decreasing", nonneg=True), normal(6),
         monotone_ref("decreasing", True)),
    Case("unimodal", tf.Unimodal([0, 3, 5]), normal(6, 3), unimodal_ref([0, 3, 5])),
    Case("unimodal-vector", tf.Unimodal(2), normal(5), unimodal_ref([2])),
    # custom
    Case("custom-1", tf.Custom(custom_sin.fun, 1, "sinz"), normal(4, 3),
         lambda z: anp.sin(z) * z),
    Case("custom-2", custom_two, several((3, 4), (4, 2)), lambda a, b: anp.dot(a, anp.tanh(b))),
    # chains
    Case("chain-poly-nonneg", Chain(tf.Poly(T6), tf.Nonneg()), normal(3, 2),
         lambda z: anp.dot(T6[:, None] ** np.arange(3), z) ** 2),
    Case("chain-toeplitz-orth-transpose", Chain(tf.Toeplitz((5, 3)), tf.Orth(), tf.Transpose()),
         normal(7), lambda z: orth_ref(z[TOEP53]).T),
    Case("chain-kr-sigmoid", Chain(tf.Kr(2), tf.Sigmoid()), several((3, 2), (2, 2)),
         lambda a, b: 1.0 / (1.0 + anp.exp(-kr_ref(a, b)))),
    Case("chain-poly-unimodal", Chain(tf.Poly(T6), tf.Unimodal([1, 4])), normal(3, 2),
         lambda z: unimodal_ref([1, 4])(anp.dot(T6[:, None] ** np.arange(3), z))),
    Case("chain-matvec-normalize-exp", Chain(tf.MatVec(X54), tf.Normalize(), tf.Exp()),
         normal(4, 3), lambda z: anp.exp(normalize_ref(anp.dot(X54, z)))),
]

#: every public transform class appears in at least one case (checked by a test)
COVERED = {type(c.transform) for c in CASES} | {
    type(s) for c in CASES if isinstance(c.transform, Chain) for s in c.transform.steps
}
