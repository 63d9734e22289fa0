"""Import discipline (issue 10, "One engine, one loader").

Layers, lowest first. A module may import its own layer or lower ones, never a higher one:

    layer  modules                                            may import (from pyserini_diffret)
    0      core/*                                             core
    1      backbones/*                                        core, backbones
    2      runtimes/*                                         core, backbones, runtimes
    3      engine: pyserini_diffret/__init__.py, model.py,    core, backbones, runtimes, engine
           registry.py and any other top-level module
           that is not a command (no ``__main__`` block),
           e.g. a future shared.py
    4      everything else: encoders/, workflow/,             anything
           onnx_export/, train/, integration/, and the
           command modules (run.py, search_*.py, hook.py, ...)

Layers 0-3 (the engine) thus never import ``encoders``, ``workflow``, ``integration``, ``onnx_export`` or
``train``, and never ``pyserini`` or ``jnius``: Pyserini and Java belong to layer 4, and
``pyserini_diffret.integration.setup()`` (Java selection, import hook, Pyserini patches) is called only
from there. Importing ``pyserini_diffret`` or any engine module changes no environment variable, path or
import hook. The import graph has no cycles (a package ``__init__`` may import its own submodules, so
long as none of them imports it back).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "pyserini_diffret"
PACKAGE_DIR = REPO / PACKAGE

LAYER_NAMES = {0: "core", 1: "backbones", 2: "runtimes", 3: "engine", 4: "application"}
SUBPACKAGE_LAYERS = {"core": 0, "backbones": 1, "runtimes": 2}
ENGINE_MODULES = {"model", "parallel", "registry", "shared"}  # top-level engine modules by name (others: no __main__ block)
APPLICATION = 4
FORBIDDEN_IN_ENGINE = ("pyserini", "jnius", "jnius_config")  # third-party, by top-level name


# -- the static import graph ----------------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _has_main_block(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) \
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__":
            return True
    return False


def layer_of(name: str, modules: dict[str, Path], trees: dict[str, ast.Module] | None = None) -> int:
    parts = name.split(".")
    if parts[0] != PACKAGE:
        raise ValueError(name)
    if len(parts) == 1:
        return 3  # the package itself exposes load_model & co. (lazily)
    if parts[1] in SUBPACKAGE_LAYERS:
        return SUBPACKAGE_LAYERS[parts[1]]
    if len(parts) == 2 and parts[1] in ENGINE_MODULES:
        return 3
    path = modules.get(name)
    if len(parts) == 2 and path is not None and path.name != "__init__.py":
        tree = (trees or {}).get(name) or ast.parse(path.read_text(encoding="utf-8"))
        if not _has_main_block(tree):
            return 3  # a new top-level engine module (a top-level command has a __main__ block)
    return APPLICATION


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (dotted; internal or third-party)
    line: int

    def where(self, modules: dict[str, Path]) -> str:
        return f"{modules[self.source].relative_to(REPO)}:{self.line}"


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, path: Path, tree: ast.Module, modules: dict[str, Path]) -> list[Import]:
    """All imports of one module, wherever they are (functions and ``TYPE_CHECKING`` blocks included)."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            if base == "__future__":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` imports mod.
                found.append(Import(module, sub if sub in modules else base, node.lineno))
    return found


def import_graph() -> tuple[dict[str, Path], dict[str, ast.Module], list[Import]]:
    modules = package_modules()
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in modules.items()}
    edges = [edge for name, path in modules.items() for edge in imports_of(name, path, trees[name], modules)]
    return modules, trees, edges


def strongly_connected(nodes: list[str], successors: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(successors.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(successors.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _shortest_cycle(start: str, successors: dict[str, set[str]], members: set[str]) -> list[str]:
    """The shortest import path from ``start`` back to itself inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(successors.get(node, set()) & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start]


def find_cycles() -> list[str]:
    """One readable entry per import cycle (strongly connected component of more than one module)."""
    modules, _, edges = import_graph()
    successors: dict[str, set[str]] = {}
    for edge in edges:
        if edge.target in modules and edge.target != edge.source:
            successors.setdefault(edge.source, set()).add(edge.target)
    report = []
    for component in strongly_connected(sorted(modules), successors):
        if len(component) < 2:
            continue
        members = set(component)
        inside = sorted({(e.source, e.target, e.where(modules)) for e in edges
                         if e.source in members and e.target in members and e.source != e.target})
        lines = [f"  {source} -> {target}  ({where})" for source, target, where in inside]
        example = " -> ".join(_shortest_cycle(component[0], successors, members))
        report.append(f"cycle among {', '.join(component)} (e.g. {example}):\n" + "\n".join(lines))
    return report


def find_layer_violations() -> list[str]:
    modules, trees, edges = import_graph()
    report = []
    for edge in sorted(set(edges), key=lambda e: (e.source, e.line, e.target)):
        source_layer = layer_of(edge.source, modules, trees)
        top = edge.target.split(".")[0]
        if top == PACKAGE:
            target_layer = layer_of(edge.target, modules, trees)
            if target_layer > source_layer:
                report.append(f"{edge.where(modules)}: {edge.source} ({LAYER_NAMES[source_layer]}) imports "
                              f"{edge.target} ({LAYER_NAMES[target_layer]}, a higher layer)")
        elif top in FORBIDDEN_IN_ENGINE and source_layer < APPLICATION:
            report.append(f"{edge.where(modules)}: {edge.source} ({LAYER_NAMES[source_layer]}) imports "
                          f"{edge.target} (Pyserini/Java belong to the application layer)")
    return report


def engine_modules() -> list[str]:
    modules, trees, _ = import_graph()
    return sorted(name for name in modules if layer_of(name, modules, trees) < APPLICATION)


# -- tests ---------------------------------------------------------------------------------------------------
def test_layer_table_classifies_known_modules():
    modules, trees, _ = import_graph()
    expected = {
        "pyserini_diffret.core.config": 0, "pyserini_diffret.backbones.base": 1,
        "pyserini_diffret.runtimes.torch_runtime": 2, "pyserini_diffret.model": 3,
        "pyserini_diffret.registry": 3, "pyserini_diffret": 3, "pyserini_diffret.run": APPLICATION,
        "pyserini_diffret.hook": APPLICATION, "pyserini_diffret.integration.java": APPLICATION,
        "pyserini_diffret.shared": 3, "pyserini_diffret.onnx_export.exporter": APPLICATION,
    }
    got = {name: layer_of(name, modules, trees) for name in expected if name in modules}
    assert got == {name: layer for name, layer in expected.items() if name in modules}


def test_no_import_cycles():
    cycles = find_cycles()
    assert not cycles, f"{len(cycles)} import cycle(s) in {PACKAGE}/:\n" + "\n".join(cycles)


def test_engine_layers_import_only_downwards():
    violations = find_layer_violations()
    assert not violations, (f"{len(violations)} layer violation(s) (see the table in tests/test_imports.py):\n"
                            + "\n".join(violations))


# A fresh interpreter (start-up hook off) records its state, imports pyserini_diffret, then every engine
# module (core/backbones/runtimes found with pkgutil, the top-level ones passed in), records it again.
_IMPORT_PROBE = r"""
import importlib, json, os, pkgutil, sys

def name_of(obj):
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}" + ("" if isinstance(obj, type) else " instance")

def state():
    return {"environ": dict(os.environ), "meta_path": [name_of(f) for f in sys.meta_path],
            "path_hooks": [name_of(h) if not callable(h) or isinstance(h, type) else repr(h).split(" at 0x")[0]
                           for h in sys.path_hooks],
            "path": list(sys.path)}

names = json.loads(sys.argv[1])
before = state()
imported, failed = [], {}
import pyserini_diffret
imported.append("pyserini_diffret")
for sub in ("core", "backbones", "runtimes"):
    package = importlib.import_module("pyserini_diffret." + sub)
    names += [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".",
                                                          onerror=lambda name: failed.setdefault(name, "walk"))]
for name in dict.fromkeys(names):
    try:
        importlib.import_module(name)
        imported.append(name)
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
after = state()
print(json.dumps({"before": before, "after": after, "imported": imported, "failed": failed,
                  "loaded": sorted(m for m in ("pyserini", "jnius", "jnius_config") if m in sys.modules)}))
"""


def _probe(names: list[str]) -> dict:
    env = {**os.environ, "PYSERINI_DIFFRET_HOOK": "0"}
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, json.dumps(names)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"probe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _changes(result: dict) -> set[str]:
    before, after = result["before"], result["after"]
    changes = set()
    env_before, env_after = before["environ"], after["environ"]
    for key in set(env_before) | set(env_after):
        if env_before.get(key) != env_after.get(key):
            changes.add(f"os.environ[{key!r}]: {env_before.get(key)!r} -> {env_after.get(key)!r}")
    for what in ("meta_path", "path_hooks", "path"):
        old, new = before[what], after[what]
        if old == new:
            continue
        gained = {f"sys.{what} gained {entry!r}" for entry in new if entry not in old}
        lost = {f"sys.{what} lost {entry!r}" for entry in old if entry not in new}
        changes |= (gained | lost) or {f"sys.{what} reordered: {old} -> {new}"}
    return changes


@pytest.fixture(scope="module")
def import_probe() -> dict:
    """Import ``pyserini_diffret`` and every engine module in a fresh interpreter (start-up hook off)."""
    return _probe(engine_modules())


def test_importing_the_package_and_engine_changes_nothing(import_probe):
    for required in ("pyserini_diffret", "pyserini_diffret.core.config"):
        assert required in import_probe["imported"]
    assert import_probe["loaded"] == [], f"importing the engine loaded {import_probe['loaded']}"
    changes = _changes(import_probe)
    assert not changes, ("importing pyserini_diffret and its engine changed the process:\n"
                         + "\n".join(sorted(changes)))


def test_every_engine_module_imports(import_probe):
    assert not import_probe["failed"], f"engine modules that do not import: {import_probe['failed']}"
    for required in ("pyserini_diffret.model", "pyserini_diffret.registry"):
        assert required in import_probe["imported"]
    assert any(name.startswith("pyserini_diffret.runtimes.") for name in import_probe["imported"])
    assert any(name.startswith("pyserini_diffret.backbones.") for name in import_probe["imported"])


def test_setup_is_idempotent_and_the_only_switch():
    code = (
        "import os, sys, json\n"
        "from pyserini_diffret import integration\n"
        "from pyserini_diffret.integration import module_hooks\n"
        "before = len(sys.meta_path)\n"
        "assert module_hooks._finder not in sys.meta_path\n"
        "first = integration.setup()\n"
        "env = dict(os.environ)\n"
        "second = integration.setup()\n"
        "assert first is second, (first, second)\n"
        "assert dict(os.environ) == env\n"
        "assert sys.meta_path.count(module_hooks._finder) == 1 and len(sys.meta_path) == before + 1\n"
        "assert first is None or os.environ['PATH'].split(os.pathsep)[0] == str(first.home / 'bin')\n"
        "assert 'pyserini' not in sys.modules and 'jnius' not in sys.modules\n"
        "print('OK')\n"
    )
    env = {**os.environ, "PYSERINI_DIFFRET_HOOK": "0"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
