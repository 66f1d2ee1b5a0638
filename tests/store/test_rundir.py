"""The run directory owns every path of an experiment and of a seed: seed discovery in numeric order,
config.json read back, checkpoints; no other module of the package builds these paths or globs them."""

from __future__ import annotations

import ast
import json
import re

import pytest

from conftest import ROOT, TINY_GAUSSIAN
from mimax.cli import main
from mimax.config import config_from_args
from mimax.errors import UserError
from mimax.store.rundir import ExperimentDir, SeedDir


def test_seeds_are_found_in_numeric_order(tmp_path):
    exp = ExperimentDir(tmp_path)
    for k in (10, 2, 1, 33):
        exp.seed(k).create()
    (tmp_path / "seed_x").mkdir()
    (tmp_path / "notes_seed_3").mkdir()
    assert [s.seed for s in exp.seeds()] == [1, 2, 10, 33]
    assert [s.path.name for s in exp.seeds()] == ["seed_1", "seed_2", "seed_10", "seed_33"]


def test_checkpoints_in_epoch_order_and_ownership(tmp_path):
    seed = ExperimentDir(tmp_path).seed(3)
    seed.create()
    for epoch in (9, 10, 100):
        seed.checkpoint(epoch).write_bytes(b"")
    (seed.checkpoint_dir / "ckpt_epoch_x.pt").write_bytes(b"")
    assert [p.name for p in seed.checkpoints()] == ["ckpt_epoch_0009.pt", "ckpt_epoch_0010.pt", "ckpt_epoch_0100.pt"]
    assert seed.latest_checkpoint() == seed.checkpoint(100)
    assert seed.owns_checkpoint(seed.checkpoint(9)) and not ExperimentDir(tmp_path).seed(4).owns_checkpoint(
        seed.checkpoint(9))


def test_config_is_read_back_as_the_config_that_trained(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", "BYOL", "--epochs", "1", "--mi_interval", "0",
                 "--output_dir", str(out)]) == 0
    exp, seeds = ExperimentDir.open(out)
    want = config_from_args([*TINY_GAUSSIAN, "--model_name", "BYOL", "--epochs", "1", "--mi_interval", "0",
                             "--output_dir", str(out)])
    assert want.precision == "auto"
    want.precision = "fp32"  # config.json records what --precision auto chose (the MLP of vector data: fp32)
    assert exp.read_config() == want
    assert [s.seed for s in seeds] == [0] and ExperimentDir.open(out / "seed_0")[1] == [SeedDir(out / "seed_0", 0)]
    # a run written before view_recipe was resolved at training time reads back the method's recipe
    saved = json.loads(exp.config_json.read_text())
    exp.config_json.write_text(json.dumps({**saved, "view_recipe": "auto"}))
    assert exp.read_config().view_recipe == "byol"


def test_unknown_or_broken_config_is_one_line(tmp_path):
    exp = ExperimentDir(tmp_path)
    exp.config_json.write_text("{")
    with pytest.raises(UserError, match="unreadable config"):
        exp.read_config()
    exp.config_json.write_text(json.dumps({"model_name": "SDMI", "from_the_future": 1}))
    with pytest.raises(UserError, match="from_the_future"):
        exp.read_config()


def test_no_other_module_builds_run_paths_or_globs_run_directories():
    """File names of the layout and seed_<k> discovery appear only in mimax.store.rundir."""
    names = {"config.json", "env.json", "status.json", "results.json", "results.md", "metrics.csv", "eval.csv",
             "mi.csv", "trajectories.json", "checkpoints"}
    offenders = []
    for path in sorted((ROOT / "src" / "mimax").rglob("*.py")):
        if path.name == "rundir.py" and path.parent.name == "store":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value in names or re.match(r"seed_(\*|\d|$)", node.value)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.Attribute) and node.attr in ("glob", "rglob") and path.parent.name != "data":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert not offenders, offenders
