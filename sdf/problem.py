"""A model compiled for the solvers: one vector of unknowns and the pieces built on it.

:class:`Problem` packs the model's variables into one vector ``z``; :meth:`Problem.point`
evaluates everything at a ``z`` and returns a :class:`Point` giving the objective, its
gradient, Gauss-Newton Gramian products and the block-Jacobi preconditioner, all assembled
from the terms' and transforms' own pieces by the chain rule (``J = J_term J_transform``).

Complex variables. ``z`` is always real: a complex variable ``x + iy`` occupies its real and
imaginary parts, interleaved (``z[k:k+2n]`` viewed as complex128 is the variable), so the
solvers (L-BFGS, the trust region, PCG) run unchanged on the real split. Every derivative
is the real-split one, written in complex arithmetic:

* the gradient of the real objective ``f`` with respect to a complex variable is the
  *conjugate cogradient* ``df/dx + i df/dy = 2 df/d(conj z)``, which is the real-split
  gradient read as complex numbers; for ``f = 1/2 ||r||^2`` with ``r`` holomorphic in the
  variable it is ``J^H r``;
* a cotangent (``vjp`` input and output) is such a gradient; a product ``J dz`` is the
  real-linear derivative; ``vjp`` is its adjoint for the real inner product
  ``Re <a, b>``, which for a holomorphic (complex-linear) ``J`` is ``J^H``;
* where a cotangent meets a real-valued expression (a real variable in a complex term, or
  a real input of a transform with a complex output) its real part is kept: the adjoint of
  a real-to-complex linear map for ``Re <a, b>`` is ``Re(J^H g)``.

The Gauss-Newton product is ``J^T J`` of the real-split residual ``[Re r; Im r]``; for
holomorphic terms it is ``J^H J`` computed in complex arithmetic (see the terms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sdf import _multilinear as ml
from sdf.numerics import ldexp
from sdf.expr import Constant, Expr, Node, Variable
from sdf.terms._base import DataTerm, Term, TermScale

__all__ = ["ModelLike", "Point", "Problem"]


@runtime_checkable
class ModelLike(Protocol):
    """What the engine reads of a model (:class:`sdf.Model` is one): named terms, their
    absolute weights, the variables with their names, and evaluation of expressions."""

    terms: dict[str, Term]
    variables: list[Variable]
    variable_names: list[str]

    @property
    def weights(self) -> dict[str, float]: ...

    def check(self) -> None: ...

    def evaluate(self, expr: Expr, variables: Mapping[str, np.ndarray] | None = None
                 ) -> np.ndarray: ...

    def named_expressions(self) -> dict[int, Expr]: ...


class Problem:
    """Terms and their unknowns packed into one vector, and how to evaluate at any vector.

    Parameters
    ----------
    terms : mapping of str to Term
        The terms by name (checked).
    weights : mapping of str to float
        The absolute weight ``w_t`` of every term.
    variables : sequence of Variable
        The unknowns, in the order they are packed into ``z``.
    names : sequence of str
        Their names.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 1)), name="a")
    >>> p = Problem({"m": sdf.CPD(np.ones((3, 2)), [a, np.ones((2, 1))])}, {"m": 1.0},
    ...             [a], ["a"])
    >>> p.n, p.point(p.z0).f
    (3, 0.0)
    """

    def __init__(self, terms: Mapping[str, Term], weights: Mapping[str, float],
                 variables: Sequence[Variable], names: Sequence[str]) -> None:
        self.term_names = list(terms)
        self.terms = [terms[n] for n in self.term_names]
        #: The terms' weights w_t as given (model units).
        self.model_weights = np.array([float(weights[n]) for n in self.term_names])
        #: Per term, how it is fitted when its data are far from unit scale (None: as is).
        self.scales: list[TermScale | None] = [None] * len(self.terms)
        #: Per term, ``fvals`` are in units of ``2**fval_exponents`` (0 unless scaled).
        self.fval_exponents = np.zeros(len(self.terms), dtype=int)
        #: ``f`` is computed in units of ``2**f_exponent`` (see :meth:`set_units`).
        self.f_exponent = 0
        #: Effective weights: ``w_t 2**(2 e_t - f_exponent)``, ``e_t`` a term's data scale.
        self.weights = self.model_weights.copy()
        self.variables: list[Variable] = list(variables)
        self.names = list(names)
        #: Per variable, whether it is complex (two reals per entry in ``z``).
        self.complex_variables = [bool(np.iscomplexobj(v.value)) for v in self.variables]
        sizes = [v.value.size * (2 if c else 1)
                 for v, c in zip(self.variables, self.complex_variables)]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n = int(self.offsets[-1])
        self.z0 = self.pack([v.value for v in self.variables]) if sizes else np.zeros(0)
        order: list[Expr] = []
        seen: set[int] = set()
        for term in self.terms:
            for e in term.inputs:
                for node in e.walk():
                    if id(node) not in seen:
                        seen.add(id(node))
                        order.append(node)
        self.active = {id(e) for e in order if isinstance(e, Variable)}
        for e in order:  # inputs come first, so one pass propagates dependence
            if isinstance(e, Node) and any(id(i) in self.active for i in e.inputs):
                self.active.add(id(e))
        self.nodes = [e for e in order if isinstance(e, Node) and id(e) in self.active]
        # Values of expressions that do not depend on any variable, computed once.
        self.fixed: dict[int, np.ndarray] = {}
        for e in order:
            if isinstance(e, Constant):
                self.fixed[id(e)] = e.value
            elif isinstance(e, Node) and id(e) not in self.active:
                self.fixed[id(e)] = e.transform.value(_args(e, self.fixed))
        self.var_index = {id(v): k for k, v in enumerate(self.variables)}
        # Where each term input sits in z (None for constants): the Gauss-Newton product
        # of a model without transforms skips the expression graph (it runs inside CG).
        self.slots = [[self.var_index.get(id(e)) for e in term.inputs] for term in self.terms]
        #: Per term, the slice ``(lo, hi)`` of z its inputs fill when they are distinct real
        #: variables packed one after the other in input order (None otherwise): its
        #: Gauss-Newton product then runs on that slice directly (TermState.gn_product_flat).
        self.spans = [self._span(slots) for slots in self.slots]

    def _span(self, slots: list[int | None]) -> tuple[int, int] | None:
        first = slots[0] if slots else None
        if first is None or slots != list(range(first, first + len(slots))):
            return None
        if any(self.complex_variables[k] for k in range(first, first + len(slots))):
            return None
        return int(self.offsets[first]), int(self.offsets[first + len(slots)])

    @classmethod
    def from_model(cls, model: ModelLike) -> Problem:
        """The problem of a (checked) model: its terms, weights and variables."""
        return cls(model.terms, model.weights, model.variables, model.variable_names)

    def input_values(self, z: np.ndarray) -> list[list[np.ndarray]]:
        """Per term, its inputs' values at ``z`` (no term is evaluated)."""
        values: dict[int, Any] = dict(self.fixed)
        for v, arr in zip(self.variables, self.unpack(z)):
            values[id(v)] = arr
        for node in self.nodes:
            values[id(node)] = np.asarray(node.transform.value(_args(node, values)))
        return [[values[id(e)] for e in term.inputs] for term in self.terms]

    def choose_scales(self, z: np.ndarray) -> None:
        """Let data terms far from unit scale work in scaled units, chosen at ``z``
        (the start): see :meth:`sdf.terms.DataTerm.choose_scale`. :meth:`set_units` must
        follow (the weights then carry the terms' units)."""
        inputs = self.input_values(z)
        self.scales = [term.choose_scale(vals) if isinstance(term, DataTerm) else None
                       for term, vals in zip(self.terms, inputs)]
        self.fval_exponents = np.array(
            [0 if s is None else 2 * s.data_exponent for s in self.scales], dtype=int)

    def set_units(self, f_exponent: int) -> None:
        """Compute ``f`` (and its derivatives) in units of ``2**f_exponent``."""
        self.f_exponent = int(f_exponent)
        self.weights = np.ldexp(self.model_weights, self.fval_exponents - self.f_exponent)

    def unpack(self, z: np.ndarray) -> list[np.ndarray]:
        """Split a vector into the variables' arrays (views where ``z`` is contiguous);
        a complex variable is read from its interleaved real and imaginary parts."""
        return [
            (as_complex(z[self.offsets[k] : self.offsets[k + 1]]) if c
             else z[self.offsets[k] : self.offsets[k + 1]]).reshape(v.shape)
            for k, (v, c) in enumerate(zip(self.variables, self.complex_variables))
        ]

    def pack(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """The vector ``z`` of the variables' arrays (the inverse of :meth:`unpack`)."""
        return np.concatenate([split_complex(a) if c else np.ravel(a)
                               for a, c in zip(arrays, self.complex_variables)])

    def point(self, z: np.ndarray) -> Point:
        """Evaluate the model at ``z``."""
        return Point(self, z)


def as_complex(seg: np.ndarray) -> np.ndarray:
    """A real vector of interleaved real and imaginary parts read as complex numbers (a
    view where the vector is contiguous)."""
    if seg.flags.c_contiguous and seg.dtype == np.float64:
        return seg.view(np.complex128)
    return seg[0::2] + 1j * seg[1::2]


def split_complex(a: np.ndarray) -> np.ndarray:
    """A complex array as the real vector of its interleaved real and imaginary parts."""
    return np.ascontiguousarray(a, dtype=np.complex128).ravel().view(np.float64)


def _args(node: Node, values: dict[int, Any]) -> Any:
    vals = [values[id(i)] for i in node.inputs]
    return vals[0] if node.transform.n_inputs == 1 else tuple(vals)


class Point:
    """The model evaluated at one vector ``z``.

    Attributes
    ----------
    f : float
        Objective ``sum_t w_t/2 ||r_t||^2``, in units of ``2**problem.f_exponent``.
    fvals : ndarray
        Each term's unweighted ``||r_t||^2 / 2``, in units of
        ``2**problem.fval_exponents`` (model units unless the term's data are scaled).
    """

    def __init__(self, problem: Problem, z: np.ndarray) -> None:
        self.problem = problem
        self.z = z
        values: dict[int, Any] = dict(problem.fixed)
        for v, arr in zip(problem.variables, problem.unpack(z)):
            values[id(v)] = arr
        self.lins: dict[int, Any] = {}
        for node in problem.nodes:
            lin = node.transform.linearize(_args(node, values))
            self.lins[id(node)] = lin
            values[id(node)] = np.asarray(lin.value)
        self.values = values
        #: Expressions whose value is complex: a cotangent reaching any other keeps its
        #: real part (see the module docstring).
        self.complex_ids = {k for k, v in values.items() if np.iscomplexobj(v)}
        #: Nodes whose vjp is a transpose formula applied to complex values: the engine
        #: uses ``conj(vjp(conj(g)))``, the adjoint for ``Re <a, b>``.
        self._conjugate_vjp = {
            id(node) for node in problem.nodes
            if node.transform.complex_vjp == "transpose"
            and (id(node) in self.complex_ids
                 or any(id(i) in self.complex_ids for i in node.inputs))}
        self.states = [
            (term if scale is None else scale).prepare([values[id(e)] for e in term.inputs])
            for term, scale in zip(problem.terms, problem.scales)
        ]
        self.fvals = np.array([s.fval for s in self.states], dtype=float)
        for k, (term, scale) in enumerate(zip(problem.terms, problem.scales)):
            # an expansion ||T||^2 - 2<T, M> + ||M||^2 of components or blocks far larger
            # than their sum has no digits left: recomputed (a BTD of data at 1e-12 from
            # a unit start stopped as an exact fit at relative error 29)
            self.fvals[k] = (term if scale is None else scale).iterate_fval(
                [values[id(e)] for e in term.inputs], float(self.fvals[k]))
        self.f = float(problem.weights @ self.fvals)
        self._gradient: np.ndarray | None = None

    def value(self, expr: Expr) -> np.ndarray:
        return self.values[id(expr)]

    @property
    def products_read_data(self) -> bool:
        """Whether a Gauss-Newton product reads some weighted term's data (masked or
        sampled entries), costing about as much as a gradient (see
        :attr:`sdf.terms.TermState.products_read_data`)."""
        return any(state.products_read_data
                   for w, state in zip(self.problem.weights, self.states) if w != 0.0)

    def _backprop(self, grads: dict[int, np.ndarray],
                  seen: dict[int, np.ndarray] | None = None) -> np.ndarray:
        problem = self.problem
        for node in reversed(problem.nodes):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if seen is not None:
                seen[id(node)] = g
            if id(node) in self._conjugate_vjp:
                back = self.lins[id(node)].vjp(np.conj(g))
                back = (np.conj(back) if node.transform.n_inputs == 1
                        else tuple(np.conj(b) for b in back))
            else:
                back = self.lins[id(node)].vjp(g)
            if node.transform.n_inputs == 1:
                back = (back,)
            for inp, b in zip(node.inputs, back):
                if id(inp) in problem.active:
                    _accumulate(grads, inp, self._cotangent(inp, b))
        out = np.zeros(problem.n)
        for k, v in enumerate(problem.variables):
            g = grads.get(id(v))
            if g is not None:
                out[problem.offsets[k] : problem.offsets[k + 1]] = (
                    split_complex(g) if problem.complex_variables[k] else np.ravel(g))
        return out

    def _cotangent(self, expr: Expr, g: np.ndarray) -> np.ndarray:
        """``g`` as a cotangent of ``expr``: its real part when ``expr`` is real-valued."""
        if np.iscomplexobj(g) and id(expr) not in self.complex_ids:
            return np.real(g)
        return g

    def _term_outputs(self, per_term: list[list[np.ndarray]]) -> dict[int, np.ndarray]:
        grads: dict[int, np.ndarray] = {}
        for w, term, outs in zip(self.problem.weights, self.problem.terms, per_term):
            if w == 0.0:
                continue
            for e, g in zip(term.inputs, outs):
                if id(e) in self.problem.active:
                    _accumulate(grads, e, self._cotangent(e, w * g))
        return grads

    def gradient(self) -> np.ndarray:
        """Gradient of ``f`` with respect to ``z``."""
        if self._gradient is None and not self.problem.nodes:
            self._gradient, self._curvature = self._direct_gradient(), {}
        if self._gradient is None:
            per_term = [s.gradient() for s in self.states]
            node_grads: dict[int, np.ndarray] = {}
            self._gradient = self._backprop(self._term_outputs(per_term), node_grads)
            self._curvature = self._transform_curvature(node_grads)
        return self._gradient

    def _direct_gradient(self) -> np.ndarray:
        """The gradient of a problem without transforms: the terms' gradients written into
        their variables' slices."""
        problem = self.problem
        out = np.zeros(problem.n)
        for w, state, slots in zip(problem.weights, self.states, problem.slots):
            if w == 0.0:
                continue
            for k, g in zip(slots, state.gradient()):
                if k is None:
                    continue
                sl = slice(problem.offsets[k], problem.offsets[k + 1])
                if problem.complex_variables[k]:
                    out[sl] += split_complex(w * g)
                else:
                    out[sl] += np.real(w * g).ravel()
        return out

    def _transform_curvature(self, node_grads: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Per expression fed to elementwise transforms, the positive part of
        ``g * x''(z)``: second-order information Gauss-Newton drops."""
        out: dict[int, np.ndarray] = {}
        for node in self.problem.nodes:
            inp = node.inputs[0]
            g = node_grads.get(id(node))
            if g is None or node.transform.n_inputs != 1 or id(inp) not in self.problem.active:
                continue
            if np.iscomplexobj(g) or id(inp) in self.complex_ids:
                continue  # the curvature of a real elementwise map only
            second = node.transform.curvature(self.values[id(inp)])
            if second is None:
                continue
            _accumulate(out, inp, np.maximum(np.asarray(g) * second, 0.0))
        return out

    def curvature(self) -> dict[int, np.ndarray]:
        """The transform curvature added to Gauss-Newton products (see gn_product)."""
        self.gradient()
        return self._curvature

    def directions(self, v: np.ndarray) -> dict[int, np.ndarray]:
        """Forward-mode derivatives of every active expression along ``v``."""
        problem = self.problem
        d: dict[int, Any] = {}
        for var, arr in zip(problem.variables, problem.unpack(v)):
            d[id(var)] = arr
        for node in problem.nodes:
            dz = [d[id(i)] if id(i) in d else np.zeros(i.shape) for i in node.inputs]
            arg = dz[0] if node.transform.n_inputs == 1 else tuple(dz)
            d[id(node)] = np.asarray(self.lins[id(node)].jvp(arg))
        return d

    def gn_product(self, v: np.ndarray) -> np.ndarray:
        """Gauss-Newton product ``(J^T W J + C) v``.

        ``C`` is diagonal: for a variable sent through an elementwise transform ``x(z)``,
        the positive part of ``g * x''(z)`` with ``g`` the gradient of ``f`` with respect to
        ``x`` -- the part of the exact Hessian that plain Gauss-Newton drops, kept where it
        adds curvature (it is zero at an exact fit, so fast local convergence is kept).
        """
        problem = self.problem
        if not problem.nodes:
            return self._direct_gn_product(v)
        d = self.directions(v)
        per_term = []
        for term, state in zip(self.problem.terms, self.states):
            dvals = [d[id(e)] if id(e) in d else np.zeros(e.shape) for e in term.inputs]
            per_term.append(state.gn_product(dvals))
        grads = self._term_outputs(per_term)
        # The curvature acts on the transform's input; earlier transforms carry it down.
        for expr_id, extra in self.curvature().items():
            contribution = extra * d[expr_id]
            grads[expr_id] = contribution if expr_id not in grads else grads[expr_id] + contribution
        return self._backprop(grads)

    def _direct_gn_product(self, v: np.ndarray) -> np.ndarray:
        problem = self.problem
        parts: list[np.ndarray] | None = None
        out: np.ndarray | None = None
        for w, term, state, slots, span in zip(problem.weights, problem.terms, self.states,
                                                problem.slots, problem.spans):
            if w == 0.0:
                continue
            if span is not None:
                lo, hi = span
                flat = state.gn_product_flat(v[lo:hi])
                if flat is not None:
                    if w != 1.0:
                        flat *= w
                    if out is None and hi - lo == problem.n:
                        out = flat  # one term on all of z: no accumulation
                    else:
                        if out is None:
                            out = np.zeros(problem.n)
                        out[lo:hi] += flat
                    continue
            if out is None:
                out = np.zeros(problem.n)
            if parts is None:
                parts = problem.unpack(v)
            dvals = [parts[k] if k is not None else np.zeros(e.shape)
                     for k, e in zip(slots, term.inputs)]
            for k, product in zip(slots, state.gn_product(dvals)):
                if k is None:
                    continue
                sl = slice(problem.offsets[k], problem.offsets[k + 1])
                if problem.complex_variables[k]:
                    out[sl] += w * split_complex(product)
                else:
                    out[sl] += w * np.real(product).ravel()
        return np.zeros(problem.n) if out is None else out

    def preconditioner(self, units: Sequence[int] | None = None) -> Preconditioner:
        """Block-Jacobi approximation of ``(J^T W J)^{-1}`` (see :class:`Preconditioner`
        for ``units``)."""
        return Preconditioner(self, units)


def _accumulate(store: dict[int, np.ndarray], expr: Expr, g: np.ndarray) -> None:
    prev = store.get(id(expr))
    store[id(expr)] = g if prev is None else prev + g



class Preconditioner:
    """Block-Jacobi preconditioner: each variable's blocks summed over its uses, inverted.

    Exact for variables used directly as factors. A block on a transformed factor is
    carried to the variable through the transforms' ``route_block`` (elementwise
    transforms scale it by their diagonal derivative; ``matvec`` turns it into a Kronecker
    block ``(X^T X) ⊗ W``). Several Kronecker contributions to one variable are merged into
    the nearest single Kronecker product (exact when they share either factor). A term may
    give an N-way input (a Tucker core) the block ``kron(G_0, ..., G_{N-1})`` as the tuple
    of its factors: on a variable it is inverted exactly, mode by mode, together with a
    scalar block (a ridge) if any; summed with other blocks it becomes its mean diagonal.
    Variables without any block are left unscaled.

    With ``units`` (per variable, the exponent of its unit ``2**units[k]``), the blocks and
    the preconditioner are those of the problem in the variables ``z_k 2**-units[k]``:
    each block is scaled once, together with its term's own block exponent, so blocks of
    variables far from unit scale never leave the float range on the way.
    """

    def __init__(self, point: Point, units: Sequence[int] | None = None) -> None:
        problem = point.problem
        var_units = {id(v): (0 if units is None else int(units[k]))
                     for k, v in enumerate(problem.variables)}
        rows: dict[int, Any] = {}
        krons: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        modes: dict[int, list[tuple[np.ndarray, ...]]] = {}
        # Kronecker blocks of N-way inputs that reach their variable through elementwise
        # transforms, with the chain's diagonal derivative
        scaled_modes: dict[int, list[tuple[tuple[np.ndarray, ...], np.ndarray]]] = {}
        for w, term, state in zip(problem.weights, problem.terms, point.states):
            if w == 0.0:
                continue
            exponents = state.block_exponents or [0] * len(term.inputs)
            for e, block, x in zip(term.inputs, state.blocks(), exponents):
                if block is None:
                    continue
                if isinstance(block, tuple):
                    # Complex (Hermitian) Kronecker blocks act on complex variables only.
                    if isinstance(e, Variable) and (id(e) in point.complex_ids or not any(
                            np.iscomplexobj(G) for G in block)):
                        modes.setdefault(id(e), []).append(
                            _scaled(block, w, x + 2 * var_units[id(e)]))
                        continue
                    through = (None if len(e.shape) == 2 or any(np.iscomplexobj(G) for G in block)
                               else _route_elementwise(point, e))
                    if through is not None:
                        var, d = through
                        scaled_modes.setdefault(id(var), []).append(
                            (_scaled(block, w, x + 2 * var_units[id(var)]), d))
                        continue
                    block = _mode_diagonal_mean(block)
                if isinstance(e, Variable):
                    routed = _route_block(point, e, _scaled(block, w, x + 2 * var_units[id(e)]))
                else:
                    # Routing is linear in the block: shift once, after it, so that the
                    # two shifts (often opposite and large) never meet an overflow.
                    routed = _route_block(point, e, _scaled(block, w))
                    if routed is not None:
                        routed = _unit_shift(routed, x + 2 * var_units[id(routed[0])])
                if routed is None:
                    continue
                var, kind, *parts = routed
                if np.iscomplexobj(parts[0]) and id(var) not in point.complex_ids:
                    # A real variable in a complex term: the real part of its block.
                    parts = [np.real(p) for p in parts]
                if kind == "rows":
                    rows[id(var)] = _add_block(rows.get(id(var)), parts[0], var.shape[0])
                else:
                    krons.setdefault(id(var), []).append((parts[0], parts[1]))
        curvature = point.curvature()
        for var in problem.variables:
            extra = curvature.get(id(var))
            if extra is not None and extra.ndim == 2 and (id(var) in rows or id(var) in krons):
                if var_units[id(var)]:
                    extra = np.ldexp(extra, 2 * var_units[id(var)])
                rows[id(var)] = _add_block(rows.get(id(var)),
                                           extra[:, :, None] * np.eye(extra.shape[1]),
                                           var.shape[0])
        mode_inverses = {id(var): _invert_modes(modes[id(var)], rows.get(id(var)),
                                                id(var) in krons)
                         for var in problem.variables if id(var) in modes}
        for var in problem.variables:
            if id(var) in scaled_modes and id(var) not in modes:
                mode_inverses[id(var)] = _invert_scaled_modes(
                    scaled_modes[id(var)], rows.get(id(var)), id(var) in krons)
                if mode_inverses[id(var)] is None:
                    del mode_inverses[id(var)]  # (left unscaled, as before)
        for var in problem.variables:  # blocks no mode-wise inverse takes: their mean diagonal
            if id(var) in mode_inverses and mode_inverses[id(var)] is None:
                for block in modes[id(var)]:
                    rows[id(var)] = _add_block(rows.get(id(var)), _mode_diagonal_mean(block),
                                               var.shape[0])
        self.offsets = problem.offsets
        self.complex_variables = problem.complex_variables
        self.inverses: list[Any] = []
        shared: dict[int, np.ndarray] = {}  # one (R, R) block shared by all rows
        for var in problem.variables:
            if mode_inverses.get(id(var)) is not None:
                self.inverses.append(mode_inverses[id(var)])
            elif id(var) in krons:
                self.inverses.append(_invert_kron(krons[id(var)], rows.get(id(var)), var.shape))
            else:
                block = rows.get(id(var))
                if (len(var.shape) == 2 and isinstance(block, np.ndarray)
                        and block.shape == (var.shape[1],) * 2):
                    shared[len(self.inverses)] = block
                self.inverses.append(None if len(self.inverses) in shared
                                     else _invert(block, var.shape))
        for k, inverse in _invert_shared(shared).items():
            self.inverses[k] = inverse
        self._plan = self._batches()

    def _batches(self) -> list[tuple[int, int, Any]]:
        """How ``__call__`` applies the inverses: ``(lo, hi, what)`` per run of z, ``what``
        an ``(K, R, R)`` stack of inverses shared by the rows of ``K`` real variables of one
        shape that follow each other (one batched product), else a variable's index."""
        plan: list[tuple[int, int, Any]] = []
        run: list[int] = []

        def close() -> None:
            if run:
                stack = np.array([self.inverses[k] for k in run])  # stacked, one call
                plan.append((int(self.offsets[run[0]]), int(self.offsets[run[-1] + 1]), stack))
                run.clear()

        for k, inv in enumerate(self.inverses):
            size = self.offsets[k + 1] - self.offsets[k]
            if (isinstance(inv, np.ndarray) and inv.ndim == 2 and not self.complex_variables[k]
                    and size % inv.shape[0] == 0):
                if run and (inv.shape != self.inverses[run[0]].shape
                            or size != self.offsets[run[0] + 1] - self.offsets[run[0]]):
                    close()
                run.append(k)
                continue
            close()
            plan.append((int(self.offsets[k]), int(self.offsets[k + 1]), k))
        close()
        return plan

    def __call__(self, v: np.ndarray) -> np.ndarray:
        out = np.empty_like(v)
        for lo, hi, what in self._plan:
            if isinstance(what, np.ndarray):
                K, R = what.shape[0], what.shape[1]
                shape = (K, (hi - lo) // (K * R), R)
                np.matmul(v[lo:hi].reshape(shape), what, out=out[lo:hi].reshape(shape))
                continue
            inv = self.inverses[what]
            if inv is None:
                out[lo:hi] = v[lo:hi]
            elif self.complex_variables[what]:  # the block acts on the complex entries
                out[lo:hi] = split_complex(_apply_inverse(inv, as_complex(v[lo:hi])))
            else:
                out[lo:hi] = _apply_inverse(inv, v[lo:hi])
        return out


def _apply_inverse(inv: Any, seg: np.ndarray) -> np.ndarray:
    """One variable's inverse block applied to its (flat) segment."""
    if isinstance(inv, _ModeInverses):
        return inv(seg)
    if isinstance(inv, tuple):
        L_inv, W_inv = inv
        return (L_inv @ seg.reshape(L_inv.shape[0], -1) @ W_inv).ravel()
    if np.isscalar(inv):
        return seg * inv
    if inv.ndim == 2:
        return (seg.reshape(-1, inv.shape[0]) @ inv).ravel()
    x = seg.reshape(inv.shape[0], inv.shape[1])
    return np.einsum("ir,irs->is", x, inv).ravel()


class _ModeInverses:
    """Inverse of ``kron(G_0, ..., G_{N-1}) + shift I`` on an N-way variable, applied mode by
    mode in the eigenbases of the ``G_n`` (each ``G_n`` symmetric positive semidefinite, or
    Hermitian for a complex variable)."""

    def __init__(self, grams: tuple[np.ndarray, ...], shift: float = 0.0) -> None:
        eigs = [np.linalg.eigh(G) for G in grams]
        self.bases = [V for _, V in eigs]
        diagonal = np.ones(())
        for lam, _ in eigs:
            diagonal = np.multiply.outer(diagonal, np.maximum(lam, 0.0))
        # The same relative shift as _invert keeps a rank-deficient block invertible.
        floor = 1e-10 * max(float(np.mean(diagonal)), 0.0) + shift
        with np.errstate(over="ignore", divide="ignore"):
            self.scale = 1.0 / np.where(diagonal + floor > 0, diagonal + floor, 1.0)

    def __call__(self, seg: np.ndarray) -> np.ndarray:
        modes = range(len(self.bases))
        X = ml.products(seg.reshape(self.scale.shape),
                        [V.conj().T if np.iscomplexobj(V) else V.T for V in self.bases], modes)
        return ml.products(X * self.scale, self.bases, modes).ravel()


def _invert_modes(blocks: list[tuple[np.ndarray, ...]], rows: Any, kron: bool
                  ) -> _ModeInverses | None:
    """The exact inverse of one block ``kron(G_0, ..., G_{N-1})`` plus a scalar block, or
    None when more is added to it (a sum of such blocks has no mode-wise inverse)."""
    if len(blocks) != 1 or kron or (rows is not None and np.ndim(rows) != 0):
        return None
    if not all(np.all(np.isfinite(G)) for G in blocks[0]):
        return None
    inverse = _ModeInverses(blocks[0], 0.0 if rows is None else float(np.asarray(rows)))
    # A block too small to invert in floating point: left to the scalar fallback.
    return inverse if np.all(np.isfinite(inverse.scale)) else None


class _ScaledModeInverses(_ModeInverses):
    """Inverse of ``D kron(G_0, ..., G_{N-1}) D`` on an N-way variable that reaches an
    input through elementwise transforms (``D = diag(d)``, their chain's derivative):
    ``D^{-1} kron(G)^{-1} D^{-1}``, with ``|d|`` floored at a tenth of its largest.

    The floor keeps entries where the derivative nearly vanishes (``nonneg`` at zero)
    from taking the largest steps: with it at ``1e-8`` of the largest, 2 of 6 planted
    nonnegative trains stopped at 1.4 to 2 times the noise level; at ``1e-2`` and ``0.1``
    all six reached it (25 to 188 and 24 to 58 iterations), at ``0.3`` in up to 611.
    """

    def __init__(self, grams: tuple[np.ndarray, ...], d: np.ndarray, shift: float = 0.0
                 ) -> None:
        top = float(np.max(np.abs(d), initial=0.0))
        floor = 0.1 * top if top > 0 else 1.0
        self.inv_d = 1.0 / np.where(d < 0, np.minimum(d, -floor), np.maximum(d, floor))
        # a scalar block c I beside D G D: c D^-2 read as its mean, c / mean(d^2)
        mean_d2 = float(np.mean(d * d))
        super().__init__(grams, shift / mean_d2 if shift and mean_d2 > 0 else 0.0)

    def __call__(self, seg: np.ndarray) -> np.ndarray:
        scaled = (seg.reshape(self.inv_d.shape) * self.inv_d).ravel()
        return (super().__call__(scaled).reshape(self.inv_d.shape) * self.inv_d).ravel()


def _invert_scaled_modes(blocks: list[tuple[tuple[np.ndarray, ...], np.ndarray]], rows: Any,
                         kron: bool) -> _ScaledModeInverses | None:
    """:class:`_ScaledModeInverses` of one routed Kronecker block plus a scalar block;
    None when more is added to it or it cannot be inverted."""
    if len(blocks) != 1 or kron or (rows is not None and np.ndim(rows) != 0):
        return None
    grams, d = blocks[0]
    if not (all(np.all(np.isfinite(G)) for G in grams) and np.all(np.isfinite(d))):
        return None
    inverse = _ScaledModeInverses(grams, d, 0.0 if rows is None else float(np.asarray(rows)))
    ok = np.all(np.isfinite(inverse.scale)) and np.all(np.isfinite(inverse.inv_d))
    return inverse if ok else None


def _route_elementwise(point: Point, expr: Expr) -> tuple[Variable, np.ndarray] | None:
    """The variable under a chain of elementwise one-input transforms and the chain's
    derivative (its Jacobian is ``diag(d)``, d shaped like ``expr``); None for anything
    else, or complex values (the routed blocks are real)."""
    d: np.ndarray | None = None
    while not isinstance(expr, Variable):
        if not (isinstance(expr, Node) and expr.transform.n_inputs == 1
                and getattr(expr.transform, "elementwise", False)):
            return None
        lin = point.lins.get(id(expr))
        if (lin is None or id(expr) in point.complex_ids
                or id(expr.inputs[0]) in point.complex_ids):
            return None
        step = np.broadcast_to(np.asarray(lin.jvp(np.ones(np.shape(lin.z))), dtype=float),
                               expr.shape)
        d = step if d is None else d * step
        expr = expr.inputs[0]
    return (expr, d) if d is not None else None


def _mode_diagonal_mean(grams: tuple[np.ndarray, ...]) -> float:
    """Mean diagonal entry of ``kron(G_0, ..., G_{N-1})`` (real: the ``G_n`` are
    Hermitian)."""
    return float(np.prod([np.real(np.trace(G)) / G.shape[0] for G in grams]))


def _scaled(block: Any, w: float, shift: int = 0) -> Any:
    """``w * block * 2**shift`` (the shift applied first: it brings the block to unit scale).

    A tuple ``(G_0, ..., G_{N-1})`` stands for ``kron(G_0, ..., G_{N-1})``: the shift is
    shared out over its factors (each stays in range when the product does), ``w`` goes
    to ``G_0``."""
    if isinstance(block, tuple):
        shares = [shift // len(block)] * len(block)
        shares[0] += shift - sum(shares)
        grams = [ldexp(G, k) if k else np.asarray(G) for G, k in zip(block, shares)]
        return (w * grams[0], *grams[1:])
    # One scalar factor where w * 2**shift is a normal float, else the shift first (it
    # brings an extreme block to unit scale).
    factor = math.ldexp(w, shift) if -1000 < shift < 1000 else 0.0
    if isinstance(block, np.ndarray) and block.ndim and 2.3e-308 < abs(factor) < 1e300:
        return factor * block  # the common case, in the fewest calls (once per block)
    scalar = np.isscalar(block) or np.ndim(block) == 0
    if not 2.3e-308 < abs(factor) < 1e300:
        return w * (float(np.ldexp(float(block), shift)) if scalar else ldexp(block, shift))
    return factor * (float(block) if scalar else np.asarray(block))


def _unit_shift(routed: tuple[Any, ...], shift: int) -> tuple[Any, ...]:
    """A routed block ``(variable, kind, parts...)`` times ``2**shift``."""
    if not shift:
        return routed
    var, kind, *parts = routed
    return (var, kind, ldexp(parts[0], shift), *parts[1:])


def _route_block(point: Point, expr: Expr, block: Any) -> tuple[Any, ...] | None:
    """Carry a term's block on ``expr`` down to a variable: (variable, kind, parts...)."""
    while not isinstance(expr, Variable):
        if not (isinstance(expr, Node) and expr.transform.n_inputs == 1):
            return None
        lin = point.lins.get(id(expr))
        if lin is None or len(expr.shape) != 2:
            return None
        if ((np.iscomplexobj(block) or id(expr) in point.complex_ids
                or id(expr.inputs[0]) in point.complex_ids)
                and not getattr(expr.transform, "routes_complex_blocks", False)):
            return None  # most transforms map real blocks only: the variable stays unscaled
        if np.isscalar(block) or np.ndim(block) == 0:
            block = float(block) * np.eye(expr.shape[1])
        routed = expr.transform.route_block(lin, np.asarray(block))
        if routed is None:
            return None
        expr = expr.inputs[0]
        if routed[0] == "kron":
            return (expr, "kron", routed[1], routed[2]) if isinstance(expr, Variable) else None
        block = routed[1]
    return expr, "rows", block


def _add_block(acc: Any, block: Any, rows: int) -> Any:
    """Sum two blocks of the forms None, scalar, (R, R), (I, R, R)."""
    if block is None:
        return acc
    if acc is None:
        return block
    if np.ndim(acc) == 0 and np.ndim(block) == 0:
        return float(np.asarray(acc)) + float(np.asarray(block))
    a = _block_array(acc)
    b = _block_array(block)
    if a.ndim == 0 or b.ndim == 0:
        scal, mat = (a, b) if a.ndim == 0 else (b, a)
        return mat + float(scal) * np.eye(mat.shape[-1])
    if a.ndim == b.ndim:
        return a + b
    return (a if a.ndim == 3 else np.broadcast_to(a, (rows, *a.shape))) + (
        b if b.ndim == 3 else np.broadcast_to(b, (rows, *b.shape))
    )


def _block_array(block: Any) -> np.ndarray:
    """A block as a float64 array, complex128 when complex (Hermitian blocks of complex
    variables)."""
    if isinstance(block, np.ndarray) and block.dtype in (np.float64, np.complex128):
        return block
    return np.asarray(block, dtype=np.complex128 if np.iscomplexobj(block) else float)


def _invert_kron(pairs: list[tuple[np.ndarray, np.ndarray]], rows: Any,
                 shape: tuple[int, ...]) -> Any:
    """Inverse factors of the Kronecker product nearest to sum_k L_k ⊗ W_k (+ row blocks)."""
    if len(shape) != 2:
        return None
    n, R = shape
    if rows is not None:
        if np.isscalar(rows) or np.ndim(rows) == 0:
            rows = float(rows) * np.eye(R)
        rows = np.asarray(rows)
        pairs = pairs + [(np.eye(n), rows if rows.ndim == 2 else rows.mean(axis=0))]
    if len(pairs) == 1:
        L, W = pairs[0]
    else:
        a = [np.trace(Lk) / n for Lk, _ in pairs]
        b = [np.trace(Wk) / R for _, Wk in pairs]
        norm = sum(x * y for x, y in zip(a, b))
        if norm <= 0:
            return None
        L = sum(Lk * bk for (Lk, _), bk in zip(pairs, b))
        W = sum(Wk * ak for (_, Wk), ak in zip(pairs, a)) / norm
    L_inv, W_inv = _invert(L, (n, n)), _invert(W, (R, R))
    if L_inv is None or W_inv is None:
        return None
    return L_inv, W_inv


def _invert_shared(blocks: dict[int, np.ndarray]) -> dict[int, Any]:
    """:func:`_invert` of several ``(R, R)`` blocks (by variable index), those of one size
    and type in one batched call: the same inverses, fewer calls."""
    out: dict[int, Any] = {}
    groups: dict[tuple[int, bool], list[int]] = {}
    for k, block in blocks.items():
        groups.setdefault((block.shape[0], block.dtype.kind == "c"), []).append(k)
    for (R, _), keys in groups.items():
        stack = np.array([_block_array(blocks[k]) for k in keys])  # stacked, one call
        scale = np.real(stack.diagonal(axis1=1, axis2=2).sum(axis=1)) / R
        scale = np.where(scale > 0, scale, 1.0)
        try:
            inverses = np.linalg.inv(stack + (1e-10 * scale)[:, None, None] * np.eye(R))
        except np.linalg.LinAlgError:  # a singular block: each on its own (pinv for it)
            out.update({k: _invert(blocks[k], (0, R)) for k in keys})
            continue
        finite = (np.isfinite(inverses).all(axis=(1, 2)) if not np.isfinite(inverses.sum())
                  else [True] * len(keys))
        out.update({k: inv if ok else None for k, inv, ok in zip(keys, inverses, finite)})
    return out


def _invert(block: Any, shape: tuple[int, ...]) -> Any:
    if block is None:
        return None
    if np.isscalar(block) or np.ndim(block) == 0:
        s = float(block)
        return 1.0 / s if s > 0 and np.isfinite(1.0 / s) else None
    block = _block_array(block)
    if len(shape) != 2 or block.shape[-1] != shape[1]:
        return None
    R = block.shape[-1]
    # A relative shift keeps nearly singular blocks (rank-deficient factors) invertible.
    scale = np.real(np.trace(block, axis1=-2, axis2=-1)) / R
    scale = np.where(scale > 0, scale, 1.0)
    eye = np.eye(R)
    shifted = block + (1e-10 * np.asarray(scale))[..., None, None] * eye
    try:
        inverse = np.linalg.inv(shifted)
    except np.linalg.LinAlgError:
        inverse = np.linalg.pinv(shifted)
    # A block too small to invert in floating point (a term whose weight is negligible
    # next to the others') scales nothing: the variable is then left unscaled.
    return inverse if np.all(np.isfinite(inverse)) else None
