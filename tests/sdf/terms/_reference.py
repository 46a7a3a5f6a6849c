"""Reference objectives in autograd.numpy for the LMLRA, BTD and LL1 terms.

Each reference expands the model to a dense array (small sizes only) and compares it with
the data's dense form at the known entries; autograd then gives the gradient and the
Jacobian-vector products used to check the engine's structured pieces.
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, make_jvp, make_vjp

from sdf.tensors import Tensor


def tucker(factors, core):
    """Dense ``core ×_n factors[n]`` in autograd.numpy."""
    X = core
    for n, U in enumerate(factors):
        X = anp.moveaxis(anp.tensordot(U, X, axes=([1], [n])), 0, n)
    return X


def lmlra_model(values):
    return tucker(values[:-1], values[-1])


def btd_model(values, sizes):
    out, k = 0.0, 0
    for s in sizes:
        out = out + tucker(values[k : k + s - 1], values[k + s - 1])
        k += s
    return out


def ll1_model(values, L):
    A, B, C = values
    index = np.repeat(np.arange(len(L)), L)
    return anp.einsum("ir,jr,kr->ijk", A, B, C[:, index])


def residual_fn(data: Tensor, model_fn):
    """r(values) = model - data at the known entries (all entries unless some missing)."""
    dense = data.to_dense()
    if data.known_entries() is not None:
        known = ~np.isnan(dense)
        target = dense[known]
        return lambda values: model_fn(values)[known] - target
    return lambda values: anp.ravel(model_fn(values) - dense)


def check_state(term, values, rng, rtol=1e-8):
    """The term's fval, gradient and GN product at ``values`` match autograd's."""
    res = residual_fn(term.data, _model_of(term))
    shapes = [np.shape(v) for v in values]
    sizes = [int(np.prod(s)) for s in shapes]

    def unpack(z):
        out, k = [], 0
        for s, n in zip(shapes, sizes):
            out.append(anp.reshape(z[k : k + n], s))
            k += n
        return out

    def r_flat(z):
        return res(unpack(z))

    def f_flat(z):
        return 0.5 * anp.sum(r_flat(z) ** 2)

    z = np.concatenate([np.ravel(v) for v in values])
    state = term.prepare(values)
    assert state.fval == pytest.approx(f_flat(z), rel=rtol)
    g = np.concatenate([np.ravel(x) for x in state.gradient()])
    g_ref = grad(f_flat)(z)
    np.testing.assert_allclose(g, g_ref, rtol=rtol, atol=rtol * np.abs(g_ref).max())
    v = rng.standard_normal(z.size)
    jtjv_ref = make_vjp(r_flat)(z)[0](make_jvp(r_flat)(z)(v)[1])
    jtjv = np.concatenate([np.ravel(x) for x in state.gn_product(unpack(v))])
    np.testing.assert_allclose(jtjv, jtjv_ref, rtol=rtol, atol=rtol * np.abs(jtjv_ref).max())
    return state


def _model_of(term):
    kind = type(term).__name__
    if kind == "LMLRA":
        return lmlra_model
    if kind == "BTD":
        return lambda values: btd_model(values, term.block_sizes)
    if kind == "LL1":
        return lambda values: ll1_model(values, term.L)
    raise TypeError(kind)


def check_model(model, residuals, rng, rtol=1e-8, check_f=True):
    """A compiled model's f, gradient and ``J^T W J v`` match autograd's.

    ``residuals(vars)`` maps variable name -> array to a list of (weight, residual).
    """
    from sdf.problem import Problem

    problem = Problem.from_model(model)
    z = problem.z0 + 0.1 * rng.standard_normal(problem.n)
    point = problem.point(z)

    def unpack(zz):
        return {
            name: anp.reshape(zz[problem.offsets[k] : problem.offsets[k + 1]], v.shape)
            for k, (name, v) in enumerate(zip(problem.names, problem.variables))
        }

    def f_ref(zz):
        return sum(0.5 * w * anp.sum(r**2) for w, r in residuals(unpack(zz)))

    def r_ref(zz):
        return anp.concatenate([anp.sqrt(w) * anp.ravel(r) for w, r in residuals(unpack(zz))])

    if check_f:
        assert point.f == pytest.approx(f_ref(z), rel=rtol)
    np.testing.assert_allclose(point.gradient(), grad(f_ref)(z), rtol=rtol, atol=rtol * 1e-2)
    v = rng.standard_normal(problem.n)
    jtjv = make_vjp(r_ref)(z)[0](make_jvp(r_ref)(z)(v)[1])
    np.testing.assert_allclose(gauss_newton_part(point, v), jtjv, rtol=rtol, atol=rtol * 1e-2)
    return point


def gauss_newton_part(point, v):
    """``J^T W J v``: the engine's product less its diagonal transform curvature."""
    out = point.gn_product(v)
    problem = point.problem
    for var_id, extra in point.curvature().items():
        k = problem.var_index[var_id]
        sl = slice(problem.offsets[k], problem.offsets[k + 1])
        out[sl] -= extra.ravel() * v[sl]
    return out


def check_blocks(state, values, rng):
    """Matrix blocks and Kronecker blocks (a tuple of per-mode matrices) are the exact
    diagonal blocks of J^T J; a scalar block is the mean of that block's diagonal."""
    blocks = state.blocks()
    assert len(blocks) == len(values)
    for k, block in enumerate(blocks):
        if block is None:
            continue
        zeros = [np.zeros_like(v) for v in values]
        if np.isscalar(block):
            diag = []
            for j in range(values[k].size):
                e = np.zeros(values[k].size)
                e[j] = 1.0
                zeros[k] = e.reshape(values[k].shape)
                diag.append(np.vdot(e, state.gn_product(zeros)[k]))
            assert block == pytest.approx(np.mean(diag), rel=1e-8)
            continue
        dv = rng.standard_normal(values[k].shape)
        zeros[k] = dv
        out = state.gn_product(zeros)[k]
        if isinstance(block, tuple):  # kron(G_0, ..., G_{N-1}) on an N-way input
            want = dv
            for n, G in enumerate(block):
                want = np.moveaxis(np.tensordot(G, want, axes=(1, n)), 0, n)
        elif np.ndim(block) == 2:
            want = dv @ block
        else:
            want = np.einsum("ir,irs->is", dv, block)
        np.testing.assert_allclose(out, want, rtol=1e-8, atol=1e-10 * np.abs(want).max())


def make_data(kind: str, shape, rng):
    """A small random data set of the given kind (factored kinds have rank/core 2)."""
    from sdf.tensors import (CPDTensor, IncompleteTensor, MaskedTensor, SparseTensor,
                             TuckerTensor, as_tensor)

    D = rng.standard_normal(shape)
    if kind == "dense":
        return as_tensor(D)
    if kind in ("incomplete", "masked"):
        D[rng.random(shape) < 0.4] = np.nan
        D.flat[0] = 1.0  # at least one known entry
        return (IncompleteTensor if kind == "incomplete" else MaskedTensor)(D)
    if kind == "sparse":
        keep = rng.random(shape) < 0.3
        subs = np.argwhere(keep)
        return SparseTensor.from_entries(subs, D[keep], shape)
    if kind == "cpd":
        return CPDTensor([rng.standard_normal((n, 2)) for n in shape],
                         weights=rng.standard_normal(2))
    if kind == "tucker":
        return TuckerTensor([rng.standard_normal((n, 2)) for n in shape],
                            rng.standard_normal((2,) * len(shape)))
    raise ValueError(kind)


KINDS = ["dense", "incomplete", "masked", "sparse", "cpd", "tucker"]


def storage(kind: str):
    """The constructor of an array with NaN for ``kind``: coordinates for "incomplete",
    dense with a mask for "masked", else whatever ``as_tensor`` chooses."""
    from sdf.tensors import IncompleteTensor, MaskedTensor, as_tensor

    return {"incomplete": IncompleteTensor, "masked": MaskedTensor}.get(kind, as_tensor)


def subspace_cos(X, Y) -> float:
    """Cosine of the largest principal angle between the column spaces of X and Y."""
    from scipy.linalg import subspace_angles

    return float(np.cos(np.max(subspace_angles(X, Y))))


def orth_start(shape, ranks, rng):
    """Random orthonormal factors of the given sizes (a data-independent start)."""
    return [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip(shape, ranks)]


def add_noise(T, level, rng):
    """T plus Gaussian noise of relative norm ``level``."""
    N = rng.standard_normal(T.shape)
    return T + level * np.linalg.norm(T) / np.linalg.norm(N) * N


def multistart(build, seeds, target):
    """Fit ``build(rng)`` -> (model, payload) for each seed until relerr < target.

    Returns (result, payload) of the first run below target, else of the best run.
    """
    best = None
    for seed in seeds:
        model, payload = build(np.random.default_rng(seed))
        result = model.fit(max_iter=60)
        err = max(result.relerr.values())
        if best is None or err < best[0]:
            best = (err, result, payload)
        if err < target:
            break
    return best[1], best[2]
