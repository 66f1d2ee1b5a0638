"""Defaults that fit the data: image size from the folder's images, warmup scaled to --epochs, kNN's k, the
MI monitor set and the held-out split sized for small datasets, each change said in one line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from image_fixtures import write_class_tree, write_image

from conftest import run_main
from mimax.config import resolve, resolve_with_notes
from mimax.fit import infer_image_size, knn_k_for, median_short_side, warmup_for


def test_warmup_is_capped_at_a_tenth_of_the_epochs():
    assert [warmup_for(10, e) for e in (2, 15, 100, 1000)] == [0, 1, 10, 10]


def test_knn_k_is_at_most_a_fifth_of_the_training_images():
    assert [knn_k_for(200, n) for n in (270, 1000, 5000, 3)] == [54, 200, 200, 1]


def test_median_short_side():
    assert median_short_side([(25, 30), (40, 20), (100, 100)]) == 25
    assert median_short_side([(10, 10), (30, 30)]) == 10  # an actual image's side, not 20


def test_image_size_inferred_from_the_files(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i, size in enumerate([(25, 25)] * 5 + [(300, 400)] * 2):
        files.append(tmp_path / f"{i}.png")
        write_image(files[-1], rng, size)
    assert infer_image_size(files) == (25, 7)
    big = [tmp_path / f"b{i}.png" for i in range(3)]
    for f in big:
        write_image(f, rng, (500, 640))
    assert infer_image_size(big) == (224, 3)


def test_preset_warmup_fitted_and_said_but_explicit_warmup_kept():
    cfg, notes = resolve_with_notes({"dataset": "Digits", "epochs": 2})
    assert cfg.warmup_epochs == 0
    assert notes == ["--warmup_epochs 0: the preset's 5 reduced to at most 10% of --epochs 2"]
    cfg, notes = resolve_with_notes({"dataset": "Digits", "epochs": 20, "warmup_epochs": 7})
    assert cfg.warmup_epochs == 7 and notes == []


def test_folder_implies_no_labels_and_gets_its_size(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        write_image(tmp_path / "faces" / f"{i}.jpg", rng, (25, 25))
    cfg, notes = resolve_with_notes({"dataset": "Folder", "data_dir": str(tmp_path / "faces")})
    assert cfg.no_labels and cfg.image_size == 25
    assert notes == [f"--image_size 25: the median shorter side of 4 of the 4 images in {tmp_path / 'faces'} "
                     "(at most 224; give --image_size to choose)"]
    assert resolve({"dataset": "Folder", "data_dir": str(tmp_path / "faces"), "image_size": 32}).image_size == 32


def test_small_image_folder_end_to_end(tmp_path):
    """300 face-sized images in 3 classes: 25 px, a 20% held-out split, a monitor set and k that fit."""
    write_class_tree(tmp_path / "faces", ["a", "b", "c"], per_class=100, size=(25, 25))
    out = tmp_path / "run"
    proc = run_main(["--dataset", "ImageFolder", "--data_dir", str(tmp_path / "faces"), "--model_name", "SimCLR",
                     "--epochs", "2", "--batch_size", "64", "--resnet_width", "4", "--num_threads", "1",
                     "--num_workers", "0", "--mi_batch_size", "64", "--precision", "fp32", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = [ln for ln in proc.stdout.splitlines() if ln.startswith("note: ")]
    assert notes[:2] == [
        "note: --warmup_epochs 0: the preset's 10 reduced to at most 10% of --epochs 2",
        f"note: --image_size 25: the median shorter side of 256 of the 300 images in {tmp_path / 'faces'} "
        "(at most 224; give --image_size to choose)"]
    assert "note: 300 images, no test split: 20% of each class is held out for the linear probe and kNN " \
           "(10% from 1000 images on)" in notes
    assert "note: MI monitor set of 240 pairs from the training images (--monitor_size 512 reduced: the dataset " \
           "has 240 training images)" in notes
    assert "note: kNN k = 48 (--knn_k 200 reduced to a fifth of the 240 training images)" in notes
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["image_size"], cfg["warmup_epochs"]) == (25, 0)
    mi = (out / "seed_0" / "mi.csv").read_text().splitlines()
    fixed = [row for row in mi[1:] if ",critic-InfoNCE," not in row]  # the trained critic has its own batches
    assert len(fixed) < len(mi) - 1 and all(re.search(r",64,3,", row) for row in fixed)  # 240 // 64 = 3 batches


@pytest.mark.parametrize("n_per_class,held", [(100, 20), (400, 40)])
def test_held_out_fraction(tmp_path, n_per_class, held):
    from mimax.data.folders import held_out_split

    files = [tmp_path / f"{c}_{i}.png" for c in range(3) for i in range(n_per_class)]
    labels = [c for c in range(3) for _ in range(n_per_class)]
    train, test = held_out_split(files, labels)
    assert len(test) == 3 * held and len(train) == 3 * (n_per_class - held)
