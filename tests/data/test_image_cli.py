"""Image datasets end to end through ``python main.py`` (subprocesses, as users run it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from image_fixtures import write_cifar, write_image

from conftest import run_main, run_mimax
from mimax.cli import main

FASHION = Path("/usr/share/datasets/fashion-mnist")
TINY = ["--model_name", "SimCLR", "--num_threads", "1", "--num_workers", "0", "--resnet_width", "8",
        "--epochs", "1", "--warmup_epochs", "0", "--feature_dim", "32", "--projection_dim", "16"]


def test_cifar_archive_with_batched_augmentation(tmp_path):
    write_cifar(tmp_path / "data", per_batch=16)
    out = tmp_path / "run"
    proc = run_main([*TINY, "--dataset", "CIFAR10", "--data_dir", str(tmp_path / "data"), "--batch_size", "16",
                     "--augmentation", "--gpu_augment", "--monitor_size", "16", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr
    final = json.loads((out / "results.json").read_text())["runs"][0]["final"]
    assert set(final["SimCLR"]) >= {"linear", "knn"}
    config = json.loads((out / "config.json").read_text())
    assert config["resnet_width"] == 8 and config["image_size"] == 32 and config["gpu_augment"] is True


def test_unlabelled_folder_pretrains_and_skips_evaluation(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(8):
        write_image(tmp_path / "imgs" / f"{i}.png", rng, (40, 30))
    out = tmp_path / "run"
    proc = run_main([*TINY, "--dataset", "Folder", "--no_labels", "--data_dir", str(tmp_path / "imgs"),
                     "--image_size", "16", "--batch_size", "4", "--monitor_size", "4", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "linear probe and kNN evaluation are skipped" in proc.stdout
    assert (out / "seed_0" / "metrics.csv").is_file()
    assert json.loads((out / "results.json").read_text())["runs"][0]["final"] == {}
    # no accuracies: results.md says so (it was a table with an empty header), table and plot refuse in one line
    assert "No linear probe or kNN: the run has no labels" in (out / "results.md").read_text()
    for argv in (["table", str(out)], ["plot", "accuracy", str(out), "--out", str(tmp_path / "a.png")]):
        proc = run_mimax(argv)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "has no linear probe or kNN" in proc.stderr
    assert not (tmp_path / "a.png").exists()


def test_bad_data_is_one_line_exit_2_before_any_output(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar-10-python.tar.gz").write_bytes(b"this is not an archive")
    out = tmp_path / "run"
    proc = run_main([*TINY, "--dataset", "CIFAR10", "--data_dir", str(tmp_path / "data"), "--output_dir", str(out)])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cifar-10-python.tar.gz: not a readable tar archive" in lines[0]
    assert not out.exists()
    code = main(["train", *TINY, "--dataset", "TinyImageNet", "--data_dir", str(tmp_path / "missing"),
                 "--output_dir", str(out)])  # in process: the same CLI path, without a second start-up
    assert code == 2 and capsys.readouterr().err.strip() == (
        f"mimax: error: {tmp_path / 'missing'}: directory not found; expected tiny-imagenet-200/ with wnids.txt, "
        "train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt")
    assert not out.exists()


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_smoke(tmp_path):
    out = tmp_path / "run"
    proc = run_main([*TINY, "--dataset", "FashionMNIST", "--train_subset", "512", "--test_subset", "256",
                     "--batch_size", "64", "--monitor_size", "64", "--augmentation", "--num_workers", "1",
                     "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())["runs"][0]
    assert json.loads((out / "config.json").read_text())["data_dir"] is None  # the Debian default was used
    linear = results["final"]["SimCLR"]["linear"]
    assert 0.2 < linear <= 1.0  # 10 classes: far above chance even after one epoch on 512 images
