"""The loop reads like the algorithm: one function of at most ~60 lines that writes nothing itself and
carries no test-only hook; the writers are the collaborators of mimax.engine.records."""

from __future__ import annotations

import ast

from conftest import ROOT

TRAINER = ROOT / "src" / "mimax" / "engine" / "trainer.py"


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def test_train_epochs_is_one_short_function_without_test_hooks():
    tree = ast.parse(TRAINER.read_text())
    loop = _function(tree, "train_epochs")
    assert loop.end_lineno - loop.lineno + 1 <= 60
    names = {n.id for n in ast.walk(loop) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(loop) if isinstance(n, ast.Attribute)}
    assert "faults" not in names and "hit" not in names
    # the step loop's algorithm, in order of appearance
    lines = TRAINER.read_text().splitlines()[loop.body[1].lineno - 1:loop.end_lineno]  # after the docstring
    source = "\n".join(lines)
    steps = ["lr_factor", "active_optimizer", "autocast", "t.model(", "backward", "guard.observe",
             "precision.step", "after_step", "on_epoch_end"]
    positions = [source.index(s) for s in steps]
    assert positions == sorted(positions)


def test_the_trainer_writes_through_its_collaborators_only():
    tree = ast.parse(TRAINER.read_text())
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & {"write_json", "write_csv", "atomic_torch_save", "atomic_write_text", "open"}
