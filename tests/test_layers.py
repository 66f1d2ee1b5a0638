"""The package's import structure: layers import downward only, no import cycles, and no function-local
``mimax`` import except of the modules that wrap a heavy dependency (matplotlib, torchvision). Parsed with
``ast``, so the test sees every import statement, including ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"
# Lowest first. A module may import modules of its own layer or below, never above.
LAYERS: list[set[str]] = [
    {"mimax", "mimax.errors", "mimax.naming"},
    {"mimax.bounds"},
    {"mimax.objectives", "mimax.nets", "mimax.runtime", "mimax.data"},
    {"mimax.paradigms"},
    {"mimax.methods"},
    {"mimax.config", "mimax.fit"},
    {"mimax.store"},
    {"mimax.callbacks", "mimax.evaluation"},
    {"mimax.monitors"},
    {"mimax.engine"},
    {"mimax.experiments", "mimax.plots", "mimax.integrations", "mimax.api"},
    {"mimax.cli"},
    {"mimax.console", "mimax.__main__"},
]
# Modules imported inside the functions that need them: matplotlib, and torchvision (the image data and the
# commands that read images), which cost seconds at start-up that vector-data runs and the demo never need.
# And the CLI itself, imported by the console script inside its Ctrl-C handling (mimax.console).
HEAVY = {"mimax.plots", "mimax.experiments.report", "mimax.data.folders", "mimax.data.images",
         "mimax.evaluation.commands", "mimax.monitors.analyze", "mimax.cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, depth = None, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = i, prefix.count(".")
    assert best is not None, f"{module} is in no layer"
    return best


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported mimax module, line, inside a function)`` for every import statement of the file."""
    tree = ast.parse(path.read_text())
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            local = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import
                    parts = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                if base == "mimax" or base.startswith("mimax."):
                    for alias in child.names:
                        sub = f"{base}.{alias.name}"
                        target = sub if (SRC / Path(*sub.split("."))).with_suffix(".py").exists() or \
                            (SRC / Path(*sub.split("."))).is_dir() else base
                        found.append((target, child.lineno, in_function))
            elif isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names
                             if a.name == "mimax" or a.name.startswith("mimax."))
            visit(child, local)

    visit(tree, False)
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "mimax").rglob("*.py"))}


def test_every_module_has_a_layer():
    for name in all_modules():
        layer_of(name)


def test_layers_import_downward_only():
    upward = []
    for name, path in all_modules().items():
        for target, line, _ in imports(path):
            if layer_of(target) > layer_of(name):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {name} -> {target}")
    assert not upward, "\n".join(upward)


def test_no_function_local_package_imports_except_heavy_modules():
    local = [f"{path.relative_to(ROOT)}:{line}: {target}" for name, path in all_modules().items()
             for target, line, in_function in imports(path) if in_function and target not in HEAVY]
    assert not local, "\n".join(local)


def test_no_import_cycles():
    modules = all_modules()
    graph = {name: {t for t, _, _ in imports(path) if t in modules and t != name} for name, path in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node, [node])
    assert not cycles, cycles


def test_named_rules_of_the_architecture():
    """The rules in words: paradigms do not import the engine, data does not import methods or config,
    engine and evaluation do not import each other both ways, library code never imports the CLI."""
    modules = all_modules()
    edges = {(n, t) for n, p in modules.items() for t, _, _ in imports(p)}

    def imports_from(src: str, dst: str) -> bool:
        return any((n == src or n.startswith(src + ".")) and (t == dst or t.startswith(dst + ".")) for n, t in edges)

    assert not imports_from("mimax.paradigms", "mimax.engine")
    assert not imports_from("mimax.data", "mimax.methods") and not imports_from("mimax.data", "mimax.config")
    assert not (imports_from("mimax.engine", "mimax.evaluation") and imports_from("mimax.evaluation", "mimax.engine"))
    assert not any(t == "mimax.cli" for n, t in edges if n not in ("mimax.cli", "mimax.console"))
