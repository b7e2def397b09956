"""The shape of ``nas``: which sub-package may import which, no cycles, no hidden imports.

An AST walk over ``nas/`` (nothing is imported). The rules, as README's "Layout" says:

- layers, lowest first: ``nas._errors``/``nas._lazy`` (foundation), ``nas._optuna`` (the Optuna
  adapter), ``measure``, ``proxies``, ``study``, ``fleet``, then ``export`` and ``guidelines`` (which
  do not import each other), then ``cli``; a module imports only its own layer and lower ones;
- ``measure`` and ``proxies`` know no Optuna; ``dashboards`` is imported only by ``nas.cli``;
- no import cycle between modules;
- a function-local import only defers an optional heavy dependency (onnx, onnxruntime, optuna_dashboard,
  executorch, psycopg, plotly / dashboards, scikit-learn) and carries a comment saying so;
- Optuna's private modules and attributes are reached only from ``nas/_optuna.py``.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NAS = REPO / "nas"

LAYERS = {
    "nas._errors": 0, "nas._lazy": 0, "nas": 9, "nas.__main__": 9,
    "nas._optuna": 1,
    "nas.measure": 2, "nas.proxies": 3, "nas.study": 4, "nas.fleet": 5,
    "nas.export": 6, "nas.guidelines": 6, "nas.cli": 7,
}
NO_OPTUNA = ("nas.measure", "nas.proxies")
HEAVY = ("onnx", "onnxruntime", "executorch", "psycopg", "plotly", "dashboards", "optuna_dashboard",
         "sklearn")   # scikit-learn: only a fit needs it (the latency model's correction, the predictor)
OPTUNA_PRIVATE = re.compile(r"\._storage\b|\._study_id\b|\._trial_id\b|\._thread_local\b|\._cached_frozen_trial\b"
                            r"|\._backend\b|\._file_path\b|_get_stale_trial_ids|_create_scoped_session"
                            r"|_set_trial_attr_without_commit|optuna\.storages\._|optuna\._")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(NAS.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _unit(module: str) -> str:
    """The layer unit of a module: its sub-package (``nas.study``) or a root module (``nas._optuna``)."""
    parts = module.split(".")
    if len(parts) >= 2 and f"nas.{parts[1]}" in LAYERS:
        return f"nas.{parts[1]}"
    return module


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The nas modules an import statement loads (``from nas.study import x`` -> ``nas.study``, or
    ``nas.study.x`` when x is a submodule)."""
    out = []
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        pkg = module.split(".")
        if not MODULES[module].name == "__init__.py":
            pkg = pkg[:-1]
        pkg = pkg[:len(pkg) - node.level + 1]
        base = ".".join(pkg + ([base] if base else []))
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    if len(subs) < len(node.names):   # names of the package itself (not only its submodules)
        out.append(base)
    return out + subs


def _imports(module: str) -> tuple[list[tuple[str, int]], list[tuple[ast.AST, int]]]:
    """(module-level imports as (target, line), function-local import nodes)."""
    tree = ast.parse(MODULES[module].read_text())
    top, local = [], []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top += [(t, node.lineno) for t in _resolve(module, node)]
        elif isinstance(node, ast.If):   # `if TYPE_CHECKING:` blocks count as module level
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    top += [(t, sub.lineno) for t in _resolve(module, sub)]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    local.append((sub, sub.lineno))
    return top, local


def _lazy_targets(module: str) -> list[str]:
    """The modules a package's lazy ``_EXPORTS`` table names."""
    text = MODULES[module].read_text()
    return sorted(set(re.findall(r'^\s*"\w+": "(nas[\w.]*)",', text, flags=re.M)))


def test_every_module_sits_in_a_layer():
    for module in MODULES:
        assert _unit(module) in LAYERS, f"{module}: not in a layer of tests/nas/test_layout.py (add it there)"


def test_imports_run_one_way():
    bad = []
    for module in MODULES:
        me = _unit(module)
        targets = [t for t, _ in _imports(module)[0]] + _lazy_targets(module)
        for target in targets:
            if not (target == "nas" or target.startswith("nas.")):
                continue
            them = _unit(target)
            if them == me:
                continue
            if LAYERS[them] > LAYERS[me] or (LAYERS[them] == LAYERS[me]):
                bad.append(f"{module} imports {target} ({them} is not below {me})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {}
    for module in MODULES:
        targets = {t for t, _ in _imports(module)[0]} | set(_lazy_targets(module))
        # importing nas.x.y runs nas/__init__ and nas/x/__init__ first, but those are lazy tables:
        # only the named module itself counts
        graph[module] = {t for t in targets if t in MODULES and t != module}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                cycle = visit(n)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_measure_and_proxies_know_no_optuna():
    bad = []
    for module in MODULES:
        if _unit(module) in NO_OPTUNA:
            for target, line in _imports(module)[0]:
                if target.split(".")[0] == "optuna" or target == "nas._optuna":
                    bad.append(f"{module}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_dashboards_only_from_the_cli():
    for module in MODULES:
        top, local = _imports(module)
        names = [t for t, _ in top] + [t for node, _ in local for t in _resolve(module, node)]
        if any(t.split(".")[0] == "dashboards" for t in names):
            assert _unit(module) == "nas.cli", f"{module} imports dashboards"


def test_function_local_imports_only_defer_heavy_optional_dependencies():
    bad = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node, line in _imports(module)[1]:
            roots = {t.split(".")[0] for t in _resolve(module, node)}
            commented = any("#" in lines[i] for i in range(max(0, line - 2), node.end_lineno))
            if not roots <= set(HEAVY):
                bad.append(f"{path.relative_to(REPO)}:{line}: {ast.unparse(node)} (not an optional heavy dependency)")
            elif not commented:
                bad.append(f"{path.relative_to(REPO)}:{line}: {ast.unparse(node)} (say why it is deferred)")
    assert not bad, "\n".join(bad)


def test_optuna_internals_only_in_the_adapter():
    bad = []
    for module, path in MODULES.items():
        if module == "nas._optuna":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = re.sub(r"\bnas(\.\w+)+", "", line.split("#", 1)[0])   # our own module paths
            if OPTUNA_PRIVATE.search(code):
                bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("code", [
    "import nas",
    "import nas.study._schema, nas.study._pareto",
    "from nas.study import pareto_front, front_summary, hypervolume, is_feasible, METRIC_KEYS",
    "from nas.proxies import kendall_tau_b, spearman_rho",
    "from nas.fleet import Worker, join_study, open_worker_storage, write_user_attrs, study_lock",
    "import search_space",
    "import dashboards",
])
def test_light_imports_pull_in_no_torch(code):
    check = f"import sys\n{code}\nbad = [m for m in ('torch', 'shufflenet') if m in sys.modules]\nprint(bad)\n" \
            "sys.exit(1 if bad else 0)"
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
