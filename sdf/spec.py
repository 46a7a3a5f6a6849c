"""The Tensorlab-style dictionary language: ``Model.from_dict`` and ``Model.to_dict``.

A specification is a dict with three parts::

    {
        "variables": {"a": array, "b": array, ...},        # or a list (referenced by index)
        "factors": {                                       # optional, or a list
            "A": "a",                                      # a variable as is
            "B": ("b", tf.nonneg),                         # a chain: reference, transforms...
            "P": ("c", tf.Poly(points=t), tf.nonneg),      # chains of any length
            "K": (("a", "b"), tf.kr),                      # several inputs: a tuple first
            "S": ["s1", ("s2", tf.nonneg)],                # sub-factors stacked by rows
            "G": [["g1", "g2"]],                           # blocks: rows of column blocks
        },
        "transform": [(["x", "y"], tf.nonneg)],            # one transform, many variables:
                                                           # makes factors named x and y
        "factorizations": {
            "eem": {"data": T, "cpd": ["A", "B", "P"], "relweight": 1.0},
            "tucker": {"data": T2, "lmlra": ["A", "B", "C", "S"]},       # factors then core
            "blocks": {"data": T3, "btd": [["A1", "B1", "C1", "S1"], ...]},
            "ll1": {"data": T4, "ll1": ["A", "B", "C"], "L": [2, 3]},
            "ridge": {"regL2": ["B", "P"], "weight": 1e-3, "target": ...},
            "sparse": {"regL1": ["A"]}, "count": {"regL0": ["A"]},
        },
    }

References are names (or indices into a list). Inside ``factors`` a reference names a
variable if one has that name, else another factor (cycles are refused); inside
``factorizations`` it names a factor if one has that name, else a variable (an implicit
factor). A numpy array in place of a reference is a constant. Every error names its place
in the dict, e.g. ``factorizations['eem']['cpd'][1]: unknown factor 'Bx' (known: A, B, C)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from sdf.errors import ModelError, SdfError
from sdf.expr import Constant, Expr, Node, Variable
from sdf.problem import ModelLike
from sdf.terms import Term, term_types

__all__ = ["terms_from_dict", "to_dict"]


def _keyed(part: object, where: str) -> dict[Any, Any]:
    if part is None:
        return {}
    if isinstance(part, Mapping):
        return dict(part)
    if isinstance(part, (list, tuple)):
        return dict(enumerate(part))
    raise ModelError(f"{where}: expected a dict or a list, got {type(part).__name__}")


def _fmt(key: object) -> str:
    return f"[{key!r}]"


class _Builder:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping):
            raise ModelError(f"model spec: expected a dict, got {type(spec).__name__}")
        unknown = sorted(set(spec) - {"variables", "factors", "factorizations", "transform"})
        if unknown:
            raise ModelError(
                f"model spec: unknown key(s) {', '.join(map(repr, unknown))} "
                "(known: variables, factors, factorizations, transform)"
            )
        self.variables: dict[Any, Variable] = {}
        for key, value in _keyed(spec.get("variables"), "variables").items():
            where = f"variables{_fmt(key)}"
            if isinstance(value, Variable):
                self.variables[key] = value
                continue
            try:  # complex initial values stay complex
                arr = np.asarray(value, dtype=complex if np.iscomplexobj(value) else float)
            except (TypeError, ValueError) as exc:
                raise ModelError(f"{where}: expected a numeric array, got {type(value).__name__}") from exc
            if arr.size == 0:
                raise ModelError(f"{where}: initial value is empty (shape {arr.shape})")
            self.variables[key] = Variable(arr, name=str(key))
        self.factor_specs = _keyed(spec.get("factors"), "factors")
        for k, entry in enumerate(spec.get("transform") or []):
            self._add_transform_entry(entry, f"transform[{k}]")
        self.factors: dict[Any, Expr] = {}
        self.spec = spec

    def _add_transform_entry(self, entry: object, where: str) -> None:
        if not (isinstance(entry, (list, tuple)) and len(entry) >= 2):
            raise ModelError(f"{where}: expected (variable names, transform, ...), got {entry!r}")
        names, steps = entry[0], tuple(entry[1:])
        names = [names] if isinstance(names, (str, int)) else list(names)
        for name in names:
            if name not in self.variables:
                raise ModelError(f"{where}: unknown variable {name!r} (known: {_known(self.variables)})")
            if name in self.factor_specs:
                raise ModelError(f"{where}: factor {name!r} is already defined in 'factors'")
            self.factor_specs[name] = (name, *steps)

    # -------------------------------------------------------------- factors
    def factor(self, key: Hashable, where: str) -> Expr:
        """The factor ``key``, built after the factors it references (iteratively, so
        reference chains of any length are read; a cycle is refused)."""
        if key not in self.factors:
            for dep in self._build_order(key):
                expr = self.build(self.factor_specs[dep], f"factors{_fmt(dep)}",
                                  in_factors=True)
                if expr.name is None and isinstance(expr, Node):
                    expr.name = str(dep)
                self.factors[dep] = expr
        return self.factors[key]

    def _build_order(self, key: Any) -> list[Any]:
        """The unbuilt factors ``key`` depends on, each after its own dependencies."""
        order: list[Any] = []
        done: set[Any] = set()
        path: list[Any] = []  # factors entered but not finished: the chain from key
        stack: list[tuple[Any, bool]] = [(key, False)]
        while stack:
            item, finished = stack.pop()
            if finished:
                path.pop()
                done.add(item)
                order.append(item)
                continue
            if item in done or item in self.factors:
                continue
            if item in path:
                cycle = " -> ".join(map(str, path[path.index(item):] + [item]))
                raise ModelError(f"factors{_fmt(item)}: cycle of references {cycle}")
            path.append(item)
            stack.append((item, True))
            stack.extend((dep, False) for dep in reversed(self._factor_refs(item)))
        return order

    def _factor_refs(self, key: Any) -> list[Any]:
        """The factors that the spec of factor ``key`` references (see :meth:`reference`:
        inside ``factors`` a name is a variable's if one has it)."""
        refs: list[Any] = []
        items: list[Any] = [self.factor_specs[key]]
        while items:
            item = items.pop()
            if isinstance(item, tuple) and item:  # a chain: its head is the input(s)
                head = item[0]
                items.extend(reversed(head) if isinstance(head, tuple) else [head])
            elif isinstance(item, list):
                items.extend(reversed(item))
            elif (isinstance(item, (str, int, np.integer)) and not isinstance(item, bool)
                  and item not in self.variables and item in self.factor_specs):
                refs.append(item)
        return refs

    def reference(self, ref: object, where: str, in_factors: bool) -> Expr:
        if isinstance(ref, Expr):
            return ref
        if isinstance(ref, np.ndarray):
            if not np.all(np.isfinite(ref)):
                raise ModelError(f"{where}: constant array has non-finite entries")
            return Constant(ref)
        if not isinstance(ref, (str, int, np.integer)) or isinstance(ref, bool):
            raise ModelError(f"{where}: expected a name, an index or an array, got {ref!r}")
        order = ("variable", "factor") if in_factors else ("factor", "variable")
        for kind in order:
            if kind == "variable" and ref in self.variables:
                return self.variables[ref]
            if kind == "factor" and ref in self.factor_specs:
                return self.factor(ref, where)
        what = "variable or factor" if in_factors else "factor"
        known = _known(self.factor_specs) or "none"
        variables = _known(self.variables) or "none"
        raise ModelError(f"{where}: unknown {what} {ref!r} (known: {known}; variables: {variables})")

    def build(self, item: object, where: str, in_factors: bool) -> Expr:
        if isinstance(item, tuple):
            if not item:
                raise ModelError(f"{where}: empty chain")
            head, steps = item[0], item[1:]
            if isinstance(head, tuple):
                inputs = [self.build(h, f"{where}[0][{i}]", in_factors) for i, h in enumerate(head)]
            else:
                inputs = [self.build(head, f"{where}[0]", in_factors)]
            expr: Any = inputs
            for k, step in enumerate(steps):
                if not callable(step):
                    raise ModelError(f"{where}[{k + 1}]: expected a transform, got {step!r}")
                try:
                    expr = step(*expr) if isinstance(expr, list) else step(expr)
                except SdfError as exc:
                    raise ModelError(f"{where}[{k + 1}]: {exc}") from exc
                except TypeError as exc:
                    raise ModelError(f"{where}[{k + 1}]: could not apply {step!r}: {exc}") from exc
                if not isinstance(expr, Expr):
                    raise ModelError(
                        f"{where}[{k + 1}]: a chain step must return an expression, "
                        f"got {type(expr).__name__}"
                    )
            if isinstance(expr, list):
                if len(expr) != 1:
                    raise ModelError(f"{where}: several inputs need a transform to combine them")
                expr = expr[0]
            return expr
        if isinstance(item, list):
            return self._blocks(item, where, in_factors)
        return self.reference(item, where, in_factors)

    def _blocks(self, item: list[Any], where: str, in_factors: bool) -> Expr:
        if not item:
            raise ModelError(f"{where}: empty list of sub-factors")
        rows = []
        for i, row in enumerate(item):
            if isinstance(row, list):
                parts = [self.build(p, f"{where}[{i}][{j}]", in_factors) for j, p in enumerate(row)]
                rows.append(parts[0] if len(parts) == 1 else _concat(parts, 1, f"{where}[{i}]"))
            else:
                rows.append(self.build(row, f"{where}[{i}]", in_factors))
        return rows[0] if len(rows) == 1 else _concat(rows, 0, where)

    # -------------------------------------------------------------- terms
    def terms(self) -> dict[str, Term]:
        types = term_types()
        out: dict[str, Term] = {}
        for name, fz in _keyed(self.spec.get("factorizations"), "factorizations").items():
            where = f"factorizations{_fmt(name)}"
            if str(name) in out:
                raise ModelError(
                    f"{where}: another factorization is keyed {str(name)!r} too (terms are "
                    "named by the text of their keys); rename one")
            if not isinstance(fz, Mapping):
                raise ModelError(f"{where}: expected a dict, got {type(fz).__name__}")
            kinds = [k for k in types if k in fz]
            if len(kinds) != 1:
                raise ModelError(
                    f"{where}: expected exactly one of {', '.join(types)}, got "
                    f"{', '.join(kinds) if kinds else 'none'}"
                )
            cls = types[kinds[0]]
            allowed = {"weight", "relweight", cls.spec_key, *cls.spec_options}
            if cls.is_data_term:
                allowed.add("data")
            extra = sorted(set(fz) - allowed, key=str)
            if extra:
                raise ModelError(
                    f"{where}: unknown key(s) {', '.join(map(repr, extra))} for a "
                    f"{kinds[0]!r} factorization (it takes {', '.join(sorted(allowed))})")
            out[str(name)] = self._term(cls, fz, where)
        if not out:
            raise ModelError("factorizations: no factorizations given")
        return out

    def _refs(self, refs: object, where: str) -> list[Expr]:
        if isinstance(refs, (str, int, np.ndarray, Expr)) or not isinstance(refs, Sequence):
            raise ModelError(f"{where}: expected a list of factor references, got {refs!r}")
        return [self.build(r, f"{where}[{i}]", in_factors=False) for i, r in enumerate(refs)]

    def _term(self, cls: type[Term], fz: Mapping[str, Any], where: str) -> Term:
        try:
            return cls.from_spec(fz, self._refs, where)
        except ModelError as exc:
            if str(exc).startswith(("factorizations", "factors", "variables", "transform")):
                raise
            raise ModelError(f"{where}: {exc}") from exc
        except SdfError as exc:
            raise ModelError(f"{where}: {exc}") from exc
        except TypeError as exc:
            raise ModelError(f"{where}: {exc}") from exc


def _concat(parts: list[Expr], axis: int, where: str) -> Expr:
    from sdf.transforms import concat

    try:
        return concat(parts, axis=axis)
    except SdfError as exc:
        raise ModelError(f"{where}: {exc}") from exc


def _known(mapping: Mapping[Any, Any]) -> str:
    return ", ".join(map(str, mapping))


def terms_from_dict(spec: Mapping[str, Any]) -> dict[str, Term]:
    """The terms of a Tensorlab-style dict (see the module docstring), by name.

    :meth:`sdf.Model.from_dict` makes the model of them.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> from sdf import transforms as tf
    >>> rng = np.random.default_rng(0)
    >>> spec = {
    ...     "variables": {"a": rng.random((4, 2)), "b": rng.random((5, 2))},
    ...     "factors": {"A": "a", "B": ("b", tf.nonneg)},
    ...     "factorizations": {"m": {"data": rng.random((4, 5)), "cpd": ["A", "B"]}},
    ... }
    >>> terms_from_dict(spec)["m"].describe()
    'CPD of dense data (4, 5), rank 2'
    """
    builder = _Builder(spec)
    try:
        for key in builder.factor_specs:
            builder.factor(key, f"factors{_fmt(key)}")
        return builder.terms()
    except RecursionError:
        raise ModelError("model spec: nested too deeply (lists or tuples inside one entry); "
                         "name the inner parts as factors instead") from None


def to_dict(model: ModelLike) -> dict[str, Any]:
    """Write a model as a Tensorlab-style dict that :func:`from_dict` reads back.

    Variables are written by name with their initial values, every transformed factor as
    a chain (or multi-input chain) of transform instances, and terms with their data and
    weights.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> a = sdf.Variable(np.ones((3, 2)), name="a")
    >>> spec = sdf.Model(m=sdf.CPD(np.ones((3, 3)), [a, a])).to_dict()
    >>> spec["factorizations"]["m"]["cpd"]
    ['a', 'a']
    """
    names = dict(zip(map(id, model.variables), model.variable_names))
    factors: dict[str, Any] = {}
    node_names: dict[int, str] = {}

    taken = set(names.values())

    def leaf(e: Expr) -> str | np.ndarray:
        if isinstance(e, Variable):
            return names[id(e)]
        if isinstance(e, Constant):
            return np.array(e.value)
        return node_names[id(e)]

    def ref(e: Expr) -> Any:
        # Inputs before users (Expr.walk is iterative): chains of any depth are written.
        for node in e.walk():
            if not isinstance(node, Node) or id(node) in node_names:
                continue
            inputs = tuple(leaf(i) for i in node.inputs)
            label = node.name or node.label(names)
            while label in factors or label in taken:
                label += "'"
            factors[label] = (inputs if len(inputs) > 1 else inputs[0], node.transform)
            node_names[id(node)] = label
        return leaf(e)

    out_terms: dict[str, Any] = {}
    for name, term in model.terms.items():
        if not term.spec_key:
            raise ModelError(f"to_dict: term {name!r} of kind {term.kind!r} has no dict form")
        out_terms[name] = term.spec_entry(ref)
    return {
        "variables": {names[id(v)]: v.value.copy() for v in model.variables},
        "factors": factors,
        "factorizations": out_terms,
    }
