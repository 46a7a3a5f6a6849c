"""The engine's seams: an acyclic import graph, registered solvers usable everywhere."""

import ast
import dataclasses
import pathlib

import numpy as np
import pytest

import sdf
from sdf import algebra
from sdf.errors import OptionError
from sdf.solvers import SolverOptions, StopReason, register_solver, unregister_solver

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Source folders and the package names they install as.
FOLDERS = {"sdf": "sdf", "models": "sdf.models", "viz": "sdf.viz"}


def _import_graph():
    """Module -> modules of the package it imports (all imports, function-level ones
    included), over the engine and the packages installed inside it."""
    modules = {}
    for folder, prefix in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((prefix, *rel))
            modules[name.removesuffix(".__init__")] = path
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        if name == "sdf":  # the package's re-export hub
            continue
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target not in (name, "sdf"):
                    graph[name].add(target)
    return graph


def test_the_import_graph_of_sdf_is_acyclic():
    graph = _import_graph()
    state: dict[str, int] = {}

    def visit(module, path):
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_language_never_imports_the_solvers():
    graph = _import_graph()
    language = ["sdf.expr", "sdf.terms", "sdf.transforms", "sdf.tensors"]
    for module, targets in graph.items():
        if any(module == m or module.startswith(m + ".") for m in language):
            assert not any(t.startswith("sdf.solvers") or t == "sdf.fit" for t in targets), \
                module


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyOptions(SolverOptions):
    """Options of the toy solver (the common ones only)."""


def _toy(problem, options, run):
    """Steepest descent with backtracking, in the problem's scaled units."""
    point = problem.point(problem.z0.copy())
    run.record(point, 0, np.nan, np.nan, np.nan, 0)
    step = 1.0
    for k in range(1, options.max_iter + 1):
        g = point.gradient()
        while step > 1e-12:
            trial = problem.point(point.z - step * g)
            if trial.f < point.f:
                break
            step /= 2
        else:
            return point, StopReason.STEP_FAILED
        relchange = (point.f - trial.f) / max(point.f, 1e-300)
        point, step = trial, 2 * step
        run.record(point, k, relchange, float(np.linalg.norm(step * g)), np.nan, 0)
        if relchange < 1e-12:
            return point, StopReason.TOL_FUN
    return point, StopReason.MAX_ITER


@pytest.fixture
def toy_solver():
    register_solver("toy", _toy, ToyOptions, description="steepest descent (test)")
    yield ToyOptions
    unregister_solver("toy")


def test_a_registered_solver_fits_a_model(toy_solver, rng):
    A = [rng.standard_normal((n, 2)) for n in (5, 4)]
    T = A[0] @ A[1].T
    start = [sdf.Variable(a + 0.05 * rng.standard_normal(a.shape), name=k)
             for a, k in zip(A, "ab")]
    result = sdf.Model(m=sdf.CPD(T, start)).fit(method="toy", max_iter=500)
    assert result.method == "toy"
    assert result.relerr["m"] < 1e-3
    fitted = result.variables["a"] @ result.variables["b"].T
    assert np.linalg.norm(fitted - T) / np.linalg.norm(T) == pytest.approx(
        result.relerr["m"], rel=1e-6)


def test_a_registered_solver_serves_the_drivers(toy_solver, rng):
    A = [rng.standard_normal((n, 2)) for n in (6, 5, 4)]
    dec = sdf.models.cpd(algebra.cpd_to_tensor(A), 2, method="toy", max_iter=50, seed=0)
    assert dec.result.method == "toy"
    assert dec.relerr < 1e-2


def test_an_unknown_method_names_the_known_ones():
    a = sdf.Variable(np.ones((2, 1)))
    with pytest.raises(OptionError, match=r"method must be one of \['minf', 'nls'\]"):
        sdf.Model(m=sdf.CPD(np.ones((2, 2)), [a, np.ones((2, 1))])).fit(method="newton")


def test_registering_needs_a_solver_options_dataclass():
    with pytest.raises(OptionError, match="options_class must be a dataclass extending"):
        register_solver("bad", _toy, dict)


def test_compression_accepts_any_registered_method(toy_solver):
    from sdf.models.compress import CompressOptions

    assert CompressOptions(engine_method="toy").engine_method == "toy"
    with pytest.raises(OptionError, match=r"CompressOptions.engine_method: method must be"):
        CompressOptions(engine_method="newton")
