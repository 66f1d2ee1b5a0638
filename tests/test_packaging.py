"""What the package declares against what it does: every third-party module the source imports is a declared
dependency (an optional extra only where imported inside a function, so that ``import mimax`` and the CLI
work without it), and the source distribution carries what its tests and docs need."""

from __future__ import annotations

import ast
import subprocess
import sys
import tarfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mimax"


def declared() -> tuple[set[str], set[str]]:
    """(required, optional) distribution names of pyproject.toml, normalized."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def name(req: str) -> str:
        for sep in "<>=!~[; ":
            req = req.split(sep)[0]
        return req.strip().lower().replace("_", "-")

    optional = {name(r) for extra, reqs in project["optional-dependencies"].items() if extra != "dev" for r in reqs}
    return {name(r) for r in project["dependencies"]}, optional


def imports() -> dict[str, bool]:
    """Top-level module name → whether some file imports it unconditionally at module level (not inside a
    function, nor under ``try: ... except ImportError`` as an opt-in module such as the Lightning callback)."""
    found: dict[str, bool] = {}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        in_function |= {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try)
                        and any(ast.unparse(h.type or ast.Name("")) in ("ImportError", "ModuleNotFoundError")
                                for h in t.handlers)
                        for stmt in t.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names}:
                found[top] = found.get(top, False) or id(node) not in in_function
    return found


def test_every_imported_third_party_module_is_declared():
    required, optional = declared()
    dists = packages_distributions()
    undeclared, hard_optional = [], []
    for module, at_top in sorted(imports().items()):
        if module in sys.stdlib_module_names or module == "mimax":
            continue
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if names & required:
            continue
        if names & optional:
            if at_top:
                hard_optional.append(module)
            continue
        undeclared.append(f"{module} ({', '.join(sorted(names))})")
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    assert not hard_optional, f"optional dependencies imported at module level: {hard_optional}"


def test_the_sdist_carries_tests_docs_and_license(tmp_path):
    pytest.importorskip("setuptools", minversion="77")
    out = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                          "print(b.build_sdist(sys.argv[1]))", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    with tarfile.open(tmp_path / out.stdout.strip().splitlines()[-1]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tracked = subprocess.run(["git", "ls-files", "tests", "docs", "benchmarks", "scripts"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    expected = {"LICENSE", "README.md", "main.py", "pyproject.toml", "src/mimax/data/imagenet100_classes.txt",
                "tests/conftest.py", "docs/methods.md", "benchmarks/gpu_check.sh", *tracked}
    assert not expected - names, sorted(expected - names)[:10]
