"""Every paper script (scripts/<Dataset>/<Method>.sh) is a valid ``python main.py`` call: its flags parse
and resolve into a validated Config, and the recipe it trains is the preset of its (method, dataset): the
presets are the one source of the recipes, the scripts add only how and how often to run them. The
data location checks that validation runs for image datasets (``mimax.data.DATA_CHECKS``) are switched
off here: the scripts leave ``--data_dir`` to the user.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

import mimax.data
from conftest import ROOT
from mimax.config import explicit_values, resolve
from mimax.config.presets import recipe_keys
from mimax.methods import METHODS as REGISTRY

DATASETS = ["CIFAR10", "CIFAR100", "TinyImageNet", "ImageNet100", "FashionMNIST"]
METHODS = ["SDMI", "JMI", "SimCLR", "BYOL", "SimSiam", "MoCoV3", "BarlowTwins", "VICReg"]
RUNNERS = [ROOT / "scripts" / "FashionMNIST" / "reproduce.sh"]  # loops over the per-method scripts
SCRIPTS = sorted(p for p in (ROOT / "scripts").glob("*/*.sh") if p not in RUNNERS)

# The reference repository's example command (the seed README), which scripts/ImageNet100/SDMI.sh must keep.
REFERENCE = ("--model_name SDMI --dataset ImageNet100 --architecture ResNet50 --num_classes 100 --epochs 800 "
             "--warmup_epochs 10 --batch_size 64 --initial_lr 0.05 --weight_decay 0.0001 --temperature 0.1 "
             "--num_runs 3 --augmentation --feature_dim 512 --projection_dim 256 --projection_layer 3 "
             "--model_save_interval 50 --model_evaluation_interval 1000 --num_workers 16")


def main_py_args(script: Path) -> list[str]:
    """The arguments of the script's ``python main.py`` call (line continuations joined, ``"$@"`` dropped)."""
    text = script.read_text().replace("\\\n", " ")
    calls = [line for line in text.splitlines() if line.strip().startswith("python main.py")]
    assert len(calls) == 1, f"{script}: expected one `python main.py` call"
    words = shlex.split(calls[0])
    assert words[:2] == ["python", "main.py"] and words[-1] == "$@", f"{script}: expected python main.py ... \"$@\""
    return words[2:-1]


def test_runner_scripts_parse():  # reproduce.sh end to end: tests/test_reproduce.py
    for runner in RUNNERS:
        assert subprocess.run(["bash", "-n", str(runner)], check=False).returncode == 0


def test_every_dataset_method_pair_has_a_script():
    assert {(p.parent.name, p.stem) for p in SCRIPTS} == {(d, m) for d in DATASETS for m in METHODS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_script_resolves_to_a_valid_config(script, monkeypatch):
    monkeypatch.setattr(mimax.data, "DATA_CHECKS", {}, raising=False)  # no data on disk needed
    assert subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True).returncode == 0
    args = main_py_args(script)
    given = explicit_values(args)
    assert given["model_name"] == script.stem and given["dataset"] == script.parent.name
    assert "data_dir" not in given and "output_dir" not in given  # left to the user ("$@")
    cfg = resolve(given)
    assert cfg.model_name == script.stem and cfg.num_runs >= 1
    if script.parent.name == "FashionMNIST":  # the CPU-scale protocol
        assert (cfg.resnet_width, cfg.precision, cfg.num_threads, cfg.channels_last) == (16, "auto", 2, True)


def test_imagenet100_sdmi_script_is_the_reference_command():
    assert main_py_args(ROOT / "scripts" / "ImageNet100" / "SDMI.sh") == REFERENCE.split()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_script_trains_the_preset_recipe_of_its_method_and_dataset(script, monkeypatch):
    """A script and the preset it reproduces never disagree; only the reference command restates it."""
    monkeypatch.setattr(mimax.data, "DATA_CHECKS", {}, raising=False)
    given = explicit_values(main_py_args(script))
    method, dataset = given["model_name"], given["dataset"]
    keys = recipe_keys(REGISTRY[method], dataset)
    from_script, from_preset = resolve(given), resolve({"model_name": method, "dataset": dataset})
    disagree = {k: (getattr(from_script, k), getattr(from_preset, k)) for k in keys
                if getattr(from_script, k) != getattr(from_preset, k)}
    assert not disagree, f"{script} vs the preset of ({method}, {dataset}): {disagree}"
    restated = sorted(set(given) & keys - {"model_name", "dataset"})
    if (dataset, method) != ("ImageNet100", "SDMI"):  # that script is the reference command verbatim
        assert not restated, f"{script} restates preset values {restated}; derive them from the preset"


def _readme_cifar_table() -> dict[str, dict[str, str]]:
    """The per-method rows of scripts/README.md's CIFAR table (the documented solo-learn recipes)."""
    text = (ROOT / "scripts" / "README.md").read_text()
    table = text[text.index("| method | optimizer |"):].split("\n\n")[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header, cells)) for row in table[2:]
            if (cells := [c.strip() for c in row.strip("|").split("|")])}


@pytest.mark.parametrize("method", ["SimCLR", "BYOL", "SimSiam", "MoCoV3", "BarlowTwins", "VICReg"])
def test_no_flags_train_the_documented_cifar_recipe(method, monkeypatch):
    """`mimax train --model_name M --dataset CIFAR10` = the row of scripts/README.md's table (solo-learn)."""
    monkeypatch.setattr(mimax.data, "DATA_CHECKS", {}, raising=False)
    row = _readme_cifar_table()[method]
    cfg = resolve({"model_name": method, "dataset": "CIFAR10"})
    assert cfg.optimizer == row["optimizer"].split()[0].lower()
    assert cfg.initial_lr == float(row["LR"]) and cfg.weight_decay == float(row["weight decay"])
    assert (row["τ"] == "–" and cfg.temperature is None) or cfg.temperature == float(row["τ"])
    layers, widths = row["projector (layers, hidden → out)"].split(", ")
    hidden, out = (int(w) for w in widths.split(" → "))
    assert (cfg.projection_layer, cfg.feature_dim, cfg.projection_dim) == (int(layers), hidden, out)
    assert (cfg.epochs, cfg.batch_size, cfg.warmup_epochs, cfg.augmentation) == (1000, 256, 10, True)


def test_mocov3_projector_has_the_two_layers_of_its_resnet_setting(monkeypatch):
    """solo-learn's MoCo-v3 and the official code build a 2-layer projector for ResNets (3 for ViTs)."""
    monkeypatch.setattr(mimax.data, "DATA_CHECKS", {}, raising=False)
    for dataset in ("CIFAR10", "ImageNet100", "FashionMNIST", "MNIST"):
        assert resolve({"model_name": "MoCoV3", "dataset": dataset}).projection_layer == 2
