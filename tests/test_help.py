"""``mimax train --help`` answers "how do I use my data": flags grouped, --dataset lists its choices and the
folder layouts, the Gaussian-mixture flags in their own group; one vocabulary across commands."""

from __future__ import annotations

import re
from dataclasses import fields

from conftest import run_cli
from mimax.config import HELP_GROUPS, Config
from mimax.config.schema import FLAG_FIELDS
from mimax.data import DATASETS

EXPECTED = {"dataset": "data", "data_dir": "data", "no_labels": "data", "architecture": "model",
            "resnet_width": "model", "model_name": "method", "target_update": "method", "epochs": "optimization",
            "initial_lr": "optimization", "knn_k": "evaluation", "mi_interval": "monitoring",
            "precision": "speed", "num_workers": "speed", "output_dir": "output", "resume": "output",
            "gm_dim": "synthetic data", "gm_train_size": "synthetic data"}


def help_sections(text: str) -> dict[str, list[str]]:
    """``{group title: [flags]}`` of an argparse help text."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^[a-z][a-z ]*:$", line):
            current = line[:-1]
            sections[current] = []
        elif current and (m := re.match(r"^  (--\w+)", line)):
            sections[current].append(m.group(1)[2:])
    return sections


def test_every_flag_has_a_help_group():
    assert {f.metadata.get("group") for f in FLAG_FIELDS} == set(HELP_GROUPS)


def test_train_help_is_grouped():
    proc = run_cli(["train", "--help"])
    assert proc.returncode == 0
    sections = help_sections(proc.stdout)
    assert [s for s in sections if s != "options"] == list(HELP_GROUPS)
    for flag, group in EXPECTED.items():
        assert flag in sections[group], (flag, group)
    gm = [f.name for f in fields(Config) if f.name.startswith("gm_")]
    assert sorted(sections["synthetic data"]) == sorted(gm)
    negatable = sum(1 for f in FLAG_FIELDS if f.metadata.get("negatable"))  # --no_<flag>
    assert sum(len(v) for v in sections.values()) == len(FLAG_FIELDS) + negatable + 1  # + --config


def test_dataset_help_lists_choices_and_folder_layouts():
    text = " ".join(run_cli(["train", "--help"]).stdout.split())
    for name in DATASETS:
        assert name in text
    assert "ImageFolder = one sub-folder of images per class (DATA_DIR/train/<class>/*.jpg" in text
    assert "Folder = a folder of image files (searched recursively), without labels (implies --no_labels" in text


def test_demo_speaks_trains_vocabulary():
    text = run_cli(["demo", "--help"]).stdout
    assert "--output_dir" in text and "--num_workers" in text
    assert "--out " not in text and "--workers" not in text
    proc = run_cli(["demo", "--quick", "--num_workers", "0"])
    assert proc.returncode == 2 and proc.stderr.strip() == "mimax: error: --num_workers: must be >= 1 (got 0)"
    proc = run_cli(["demo", "--quick", "--workers", "0"])  # the former name is still understood
    assert proc.returncode == 2 and "--num_workers: must be >= 1" in proc.stderr
