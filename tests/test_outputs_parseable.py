"""Outputs people can parse: ASCII machine-readable names (CSV columns, TensorBoard tags), MI and collapse
values in TensorBoard, ``mimax export`` making its folder and printing the preprocessing, ``mimax eval``
reproducing training's numbers exactly."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import run_cli, run_mimax
from mimax.naming import ascii_name, ascii_tag

RUN = ["--model_name", "SDMI", "--dataset", "Digits", "--resnet_width", "8", "--epochs", "2", "--warmup_epochs", "0",
       "--batch_size", "64", "--num_workers", "0", "--train_subset", "256", "--test_subset", "128",
       "--monitor_size", "64", "--mi_batch_size", "32", "--mi_interval", "1", "--model_evaluation_interval", "1",
       "--channels_last", "--num_threads", "1"]


def test_ascii_names():
    assert [ascii_name(s) for s in ("f_θ", "g_ξ", "f", "Ω_x", "é", "★")] == ["f_theta", "g_xi", "f", "Omega_x", "e",
                                                                            "u2605"]
    assert ascii_tag("SDMI (f_θ)") == "SDMI_f_theta" and ascii_tag("cos-DV") == "cos-DV"


@pytest.fixture(scope="module")
def sdmi_run(tmp_path_factory):
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("outputs") / "sdmi"
    proc = run_cli(["train", *RUN, "--tensorboard", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_csv_columns_are_ascii(sdmi_run):
    for name in ("metrics.csv", "mi.csv", "eval.csv"):
        header = (sdmi_run / "seed_0" / name).read_text().splitlines()[0]
        assert header.isascii(), (name, header)
    columns = next(csv.reader(open(sdmi_run / "seed_0" / "metrics.csv")))
    assert {"emb_std_f_theta", "emb_std_g_xi", "emb_erank_f_theta", "emb_erank_g_xi"} <= set(columns)


def test_tensorboard_has_mi_collapse_and_eval_under_ascii_tags(sdmi_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(sdmi_run / "seed_0" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert all(t.isascii() for t in tags), sorted(tags)
    for tag in ("train/loss", "train/emb_std_f_theta", "train/emb_erank_g_xi", "mi/embedding/InfoNCE/value",
                "mi/embedding/cos-DV/gap", "mi/backbone/JSD/shuffled", "eval/SDMI_f_theta/linear",
                "eval/SDMI_g_xi/knn"):
        assert tag in tags, (tag, sorted(tags))
    mi_rows = [r for r in csv.DictReader(open(sdmi_run / "seed_0" / "mi.csv"))
               if r["representation"] == "embedding" and r["estimator"] == "InfoNCE" and r["epoch"] == "2"]
    logged = {e.step: e.value for e in acc.Scalars("mi/embedding/InfoNCE/value")}
    assert logged[2] == pytest.approx(float(mi_rows[0]["value"]), rel=1e-6)


def test_eval_reproduces_training_exactly(sdmi_run):
    """Trained with --channels_last (NHWC convolutions); `mimax eval` with no flags must give the same numbers."""
    proc = run_mimax(["eval", str(sdmi_run)])
    assert proc.returncode == 0, proc.stderr
    trained = json.loads((sdmi_run / "seed_0" / "results.json").read_text())["final"]
    again = json.loads((sdmi_run / "seed_0" / "eval_ckpt_epoch_0002.json").read_text())["final"]
    assert set(trained) == {"SDMI (f_θ)", "SDMI (g_ξ)"}
    assert again == trained  # every encoder, every metric, bit for bit


def test_export_makes_its_folder_and_prints_the_preprocessing(sdmi_run, tmp_path):
    out = tmp_path / "new" / "dir" / "g.pt"
    proc = run_mimax(["export", str(sdmi_run), "--out", str(out), "--encoder", "g_xi"])
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and (tmp_path / "new" / "dir" / "g.pt.json").is_file()
    lines = proc.stdout.splitlines()
    assert ("expects the evaluation preprocessing of Digits: grayscale (luma), turned upright by its EXIF "
            "orientation; resize the shorter side to 8 px "
            "(bilinear, antialiased); center-crop 8x8; scale to [0, 1]; normalize with mean (0.3053,) and std "
            "(0.3759,)") in lines
    assert any(ln.startswith("as torchvision transforms") and "T.Normalize((0.3053,), (0.3759,))" in ln
               and "ImageOps.exif_transpose(im).convert('L')" in ln for ln in lines)
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    proc = run_mimax(["export", str(sdmi_run), "--out", str(blocker / "x.pt")])
    assert proc.returncode == 2 and "cannot be made" in proc.stderr and blocker.read_text() == "mine"
