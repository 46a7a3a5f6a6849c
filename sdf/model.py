"""The fusion model: named terms over shared expressions, checked, summarised and fitted."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np

from sdf.errors import ModelError
from sdf.expr import Constant, Expr, Node, Variable
from sdf.fit import fit_model
from sdf.result import IterationInfo, Result
from sdf.solvers import MethodName, SolverOptions
from sdf.spec import terms_from_dict, to_dict
from sdf.terms._base import Term

__all__ = ["Model"]


class Model:
    r"""A structured data fusion model: several terms sharing expressions.

    The objective is

    .. math:: f = \sum_t \frac{w_t}{2} \lVert r_t \rVert^2,

    ``r_t`` being term ``t``'s residual: model minus data over the known entries for a
    factorization, or the regularizer's residual. A term given ``weight=w`` uses it as is.
    Terms given ``relweight=rho`` (the default, ``rho = 1``) follow Tensorlab's relative
    weight convention: ``w_t = 2 rho_t / (sum_s rho_s * N_t)``, the sum running over the
    terms with a relative weight and ``N_t`` being the number of residual entries (known
    data entries, or regularized entries). Each such term then contributes
    ``rho_t / sum(rho)`` times its mean squared error, so data sets of different sizes
    weigh alike unless told otherwise.

    Parameters
    ----------
    terms : mapping of str to Term, optional
        Terms by name; they may also be given as keyword arguments.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = (rng.standard_normal((n, 2)) for n in (6, 5, 4))
    >>> T = np.einsum("ir,jr,kr->ijk", A, B, C)
    >>> a, b, c = (sdf.Variable.random((n, 2), seed=s, name=k)
    ...            for s, (k, n) in enumerate(zip("abc", (6, 5, 4))))
    >>> model = sdf.Model(T=sdf.CPD(T, [a, b, c]), Y=sdf.CPD(A @ A.T[:, :3], [a, A[:3]]))
    >>> result = model.fit(max_iter=100)
    >>> bool(result.relerr["T"] < 1e-6)
    True
    """

    def __init__(self, terms: Mapping[str, Term] | None = None, /, **kwargs: Term) -> None:
        merged: dict[str, Term] = {}
        for source in (terms or {}, kwargs):
            if not isinstance(source, Mapping):
                raise ModelError(
                    f"Model: terms must be given as a mapping name -> term, got {type(source).__name__}"
                )
            for name, term in source.items():
                if name in merged:
                    raise ModelError(f"Model: term {name!r} given twice")
                if not isinstance(name, str):
                    raise ModelError(f"Model: term names must be strings, got {name!r}")
                if not isinstance(term, Term):
                    raise ModelError(
                        f"term {name!r}: expected an sdf term (CPD, L2, ...), got "
                        f"{type(term).__name__}"
                    )
                merged[name] = term
        if not merged:
            raise ModelError("Model: no terms given")
        self.terms: dict[str, Term] = merged
        self.variables: list[Variable] = []
        seen: set[int] = set()
        for term in merged.values():
            for e in term.inputs:
                for v in e.variables():
                    if id(v) not in seen:
                        seen.add(id(v))
                        self.variables.append(v)
        taken = {v.name for v in self.variables if v.name is not None}
        names, k = [], 0
        for v in self.variables:
            if v.name is not None:
                names.append(v.name)
                continue
            while f"x{k}" in taken:
                k += 1
            names.append(f"x{k}")
            taken.add(f"x{k}")
        self.variable_names: list[str] = names

    @staticmethod
    def from_dict(spec: Mapping[str, Any]) -> Model:
        """Build a model from a Tensorlab-style dict; see :mod:`sdf.spec` for the format.

        Examples
        --------
        >>> import numpy as np, sdf
        >>> spec = {"variables": {"a": np.ones((3, 2)), "b": np.ones((4, 2))},
        ...         "factorizations": {"m": {"data": np.ones((3, 4)), "cpd": ["a", "b"]}}}
        >>> sorted(sdf.Model.from_dict(spec).variable_names)
        ['a', 'b']
        """
        return Model(terms_from_dict(spec))

    def to_dict(self) -> dict[str, Any]:
        """This model as a Tensorlab-style dict that :meth:`from_dict` reads back.

        Examples
        --------
        >>> import numpy as np, sdf
        >>> a = sdf.Variable(np.ones((3, 2)), name="a")
        >>> sorted(sdf.Model(m=sdf.CPD(np.ones((3, 3)), [a, a])).to_dict())
        ['factorizations', 'factors', 'variables']
        """
        return to_dict(self)

    # ------------------------------------------------------------------ checking
    @property
    def weights(self) -> dict[str, float]:
        """The absolute weight ``w_t`` of every term (see the class docstring)."""
        rel_total = sum(t.relweight for t in self.terms.values() if t.relweight is not None)
        out = {}
        for name, t in self.terms.items():
            if t.weight is not None:
                out[name] = t.weight
            else:
                assert t.relweight is not None
                out[name] = 2.0 * t.relweight / (rel_total * max(t.n_entries, 1)) if rel_total > 0 else 0.0
        return out

    def check(self) -> None:
        """Raise :class:`sdf.ModelError` naming the place of the first inconsistency.

        Examples
        --------
        >>> import numpy as np, sdf
        >>> a = sdf.Variable(np.ones((3, 2)), name="a")
        >>> b = sdf.Variable(np.ones((5, 2)), name="b")
        >>> sdf.Model(m=sdf.CPD(np.ones((3, 4)), [a, b])).check()
        Traceback (most recent call last):
        ...
        sdf.errors.ModelError: term 'm', factor 1 ('b'): expected 4 rows to match mode 1 of the data, got 5
        """
        by_name: dict[str, Variable] = {}
        for v, name in zip(self.variables, self.variable_names):
            if name in by_name:
                raise ModelError(
                    f"variable {name!r}: two different variables share this name; "
                    "rename one (results are keyed by name)"
                )
            by_name[name] = v
            bad = ~np.isfinite(v.value)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ModelError(
                    f"variable {name!r}: initial value has a non-finite entry at {idx} "
                    f"({v.value[idx]!r})"
                )
        for name, term in self.terms.items():
            term.check(f"term {name!r}")
        complex_ids: set[int] = set()
        for name, term in self.terms.items():
            _check_complex(term, f"term {name!r}", complex_ids)
        tiny = float(np.finfo(float).tiny)
        for name, weight in self.weights.items():
            if 0.0 < weight < tiny:
                raise ModelError(
                    f"term {name!r}: weight {weight:.3g} is below the smallest normal "
                    f"float64 ({tiny:.3g}), too small to scale the objective by; use a "
                    "larger weight, or 0 to leave the term out")
        if all(w == 0.0 for w in self.weights.values()):
            raise ModelError("Model: every term has weight 0; nothing to fit")
        if not self.variables:
            raise ModelError("Model: no variables; every factor is a constant")

    # ------------------------------------------------------------------ inspection
    def named_expressions(self) -> dict[int, Expr]:
        """Every expression the terms read, by id, in dependency order."""
        out: dict[int, Expr] = {}
        for term in self.terms.values():
            for e in term.inputs:
                for node in e.walk():
                    out.setdefault(id(node), node)
        return out

    def summary(self) -> str:
        """Text showing variables -> transforms -> factors -> terms, with sizes.

        Examples
        --------
        >>> import numpy as np, sdf
        >>> a = sdf.Variable(np.ones((3, 2)), name="a")
        >>> print(sdf.Model(m=sdf.CPD(np.ones((3, 3)), [a, a])).summary())  # doctest: +ELLIPSIS
        Model: 1 term, 1 variable, 6 unknowns
        ...
        """
        names = dict(zip(map(id, self.variables), self.variable_names))
        n_unknowns = sum(v.value.size for v in self.variables)
        nt, nv = len(self.terms), len(self.variables)
        lines = [f"Model: {nt} term{'s' * (nt != 1)}, {nv} variable{'s' * (nv != 1)}, "
                 f"{n_unknowns} unknowns", "Variables:"]
        for v in self.variables:
            lines.append(f"  {names[id(v)]:<12} {v.shape}")
        nodes = [e for e in self.named_expressions().values() if isinstance(e, Node)]
        if nodes:
            lines.append("Transforms:")
            rows = []
            for node in nodes:
                args = ", ".join(_label(i, names) for i in node.inputs)
                formula = f"{node.transform.name}({args})"
                label = _label(node, names)
                rows.append((formula if label == formula else f"{label} = {formula}", node.shape))
            width = max(len(text) for text, _ in rows)
            lines.extend(f"  {text:<{width}} -> {shape}" for text, shape in rows)
        lines.append("Terms:")
        weights = self.weights
        for name, term in self.terms.items():
            lines.append(f"  {name!r}: {term.describe()}, weight {weights[name]:.3g}")
            for k, e in enumerate(term.inputs):
                lines.append(f"      [{k}] {_label(e, names)} {e.shape}")
        return "\n".join(lines)

    def evaluate(self, expr: Expr, variables: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Value of ``expr`` at the given variable values (default: the initial values)."""
        values: dict[int, Any] = {}
        lookup = dict(zip(map(id, self.variables), self.variable_names))
        for node in expr.walk():
            if isinstance(node, Variable):
                name = lookup.get(id(node))
                if variables is not None and name is not None and name in variables:
                    values[id(node)] = np.asarray(variables[name])
                else:
                    values[id(node)] = node.value
            elif isinstance(node, Node):
                args = [values[id(i)] for i in node.inputs]
                values[id(node)] = np.asarray(
                    node.transform.value(args[0] if node.transform.n_inputs == 1 else tuple(args))
                )
            else:  # expressions are Variables, Nodes and Constants
                values[id(node)] = cast(Constant, node).value
        return values[id(expr)]

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        method: MethodName = "nls",
        *,
        options: SolverOptions | None = None,
        display: int = 0,
        callback: Callable[[IterationInfo], Any] | None = None,
        resume: str | os.PathLike[str] | Result | None = None,
        **option_values: Any,
    ) -> Result:
        """Fit the model; returns a :class:`sdf.Result` (see :mod:`sdf.fit`).

        The solvers work in units where the start is of order one (see
        :class:`sdf.solvers._run.ScaledProblem`), so results are scale-invariant: data
        scaled by ``s`` and initial values scaled to match give the scaled result.
        Nothing given is modified: data, initial values and options stay as they were.

        Parameters
        ----------
        method : str, default "nls"
            A registered solver (:func:`sdf.solvers.solver_names`): ``"nls"``
            (Gauss-Newton with trust region) or ``"minf"`` (L-BFGS-B), or one added with
            :func:`sdf.solvers.register_solver`.
        options : NLSOptions, MinfOptions or the registered method's options, optional
            Solver settings; keyword arguments override single fields
            (``max_iter=50, tol_fun=1e-10`` ...). Unknown names raise ModelError.
            ``checkpoint="run.nc", checkpoint_every=10`` saves the run every 10
            iterations and at the end. ``lower=``/``upper=`` bound the variables (a
            number, or ``{variable name: number or array}``), for both solvers.
        display : int, default 0
            Print an iteration table every ``display`` iterations (0: silent).
        callback : callable, optional
            Called with an :class:`sdf.IterationInfo` after every iteration; returning
            True stops the run.
        resume : str, os.PathLike or Result, optional
            A checkpoint file or a result of this model to continue from: the run starts
            at its variables, keeps its history and iteration numbers, and ``max_iter``
            counts the iterations of both runs. Gauss-Newton's trust radius restarts
            (Levenberg-Marquardt's damping too, L-BFGS its memory), so a resumed run
            follows the uninterrupted one closely but not bit for bit.

        Returns
        -------
        Result
            Also carries ``warnings``: what the checks after the fit found (degenerate
            CPD components, zero components, ...), each also issued as a warning.

        Notes
        -----
        Reproducibility: the engine draws no random numbers (seed the initial values) and
        its arithmetic is deterministic, so the same model and start give the same result
        bit for bit across runs in one environment. The one source of difference is the
        BLAS library: another BLAS, CPU kernel or number of BLAS threads
        (``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``; ``threadpoolctl`` sets them at run
        time) may round matrix products differently.

        Threads: while the fit runs, every BLAS library but numpy's runs on one thread
        (PyPI's numpy and scipy each bring an OpenBLAS, whose thread pools otherwise
        slow each other down); ``SDF_KEEP_BLAS_THREADS=1`` in the environment turns
        this off (see the performance guide).

        Examples
        --------
        >>> import numpy as np, sdf
        >>> a = sdf.Variable(np.ones((3, 1)), name="a")
        >>> res = sdf.Model(m=sdf.CPD(np.outer([1.0, 2, 3], [1.0, 1]), [a, np.ones((2, 1))])).fit()
        >>> np.round(res["a"].ravel(), 6)
        array([1., 2., 3.])
        """
        return fit_model(self, method, options=options, display=display, callback=callback,
                         resume=resume, **option_values)


def _label(e: Expr, names: Mapping[int, str]) -> str:
    return e.label(names)


def _check_complex(term: Term, where: str, complex_ids: set[int]) -> None:
    """Complex values only where they make sense: no complex input to a transform for real
    values, no complex data or factor in a term that takes real ones only. ``complex_ids``
    collects the expressions found complex (shared between terms)."""
    for k, expr in enumerate(term.inputs):
        for node in expr.walk():
            if id(node) in complex_ids:
                continue
            if isinstance(node, (Variable, Constant)):
                if np.iscomplexobj(node.value):
                    complex_ids.add(id(node))
            elif isinstance(node, Node):
                flags = tuple(id(i) in complex_ids for i in node.inputs)
                if any(flags) and node.transform.complex_vjp is None:
                    inp = node.inputs[flags.index(True)]
                    raise ModelError(
                        f"{where}, factor {k} ({expr.label()!r}): {node.transform.name} "
                        f"takes real values only, but its input {inp.label()!r} is complex "
                        "(use a real variable there, or a transform defined for complex "
                        "values)")
                if node.transform.complex_output(flags):
                    complex_ids.add(id(node))
    data = getattr(term, "data", None)
    uses_complex = (any(id(e) in complex_ids for e in term.inputs)
                    or bool(getattr(data, "is_complex", False)))
    if uses_complex and not term.complex_values:
        raise ModelError(f"{where}: {term.kind} terms take real data and factors only, and "
                         "this one has complex values (CPD, LMLRA, BTD, LL1, TT, TR and L2 "
                         "terms take complex values)")
    loss = getattr(term, "loss", None)
    if uses_complex and loss is not None and not loss.is_gaussian:
        raise ModelError(f"{where}: the {loss.name!r} loss takes real data and models only; "
                         "complex values are fitted by least squares (loss='gaussian')")
