"""The loop reads like the algorithm: one function of at most ~60 lines that writes nothing itself and
carries no test-only hook; the writers are the collaborators of mimax.engine.records."""

from __future__ import annotations

import ast
import itertools

from conftest import ROOT
from mimax.config import Config
from mimax.engine.trainer import invocation_epochs_left

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


def test_the_eta_counts_every_epoch_left_in_the_invocation():
    """The ETA counted the current seed's epochs only: `--num_runs 2` read "ETA 0 s" at seed 0's last epoch, and
    `--epochs 1000000 --stop_after 2` too. Checked against a simulation of which (seed, epoch) an invocation
    trains: from a resumed epoch of its first seed, each seed up to --epochs, within the --stop_after budget."""
    for num_runs, epochs, budget, start in itertools.product((1, 2, 3), (1, 2, 5), (None, 1, 2, 4, 7), (0, 1, 3)):
        if start >= epochs:
            continue
        trained, left_budget = [], budget  # (seed, epoch, budget at the seed's start, its first epoch, stop epoch)
        for seed in range(10, 10 + num_runs):
            first = start if seed == 10 else 0
            stop = epochs if left_budget is None else min(epochs, first + left_budget)
            trained += [(seed, e, left_budget, first, stop) for e in range(first + 1, stop + 1)]
            left_budget = None if left_budget is None else left_budget - (stop - first)
        for i, (seed, epoch, seed_budget, first, stop) in enumerate(trained):
            cfg = Config(seed=10, num_runs=num_runs, epochs=epochs, stop_after=seed_budget)
            got = invocation_epochs_left(cfg, seed, epoch, stop, first)
            assert got == len(trained) - 1 - i, (num_runs, epochs, budget, start, seed, epoch, got)
