"""Progress a user can follow in a log file: with stdout redirected (no terminal), a run prints one line
per epoch (loss terms, lr, img/s, time, ETA; collapse and MI values when measured; accuracy when
evaluated), short lines for the random-init evaluation, the MI estimate and checkpoints, and a summary
line per encoder; no progress bar (no carriage return) is written into the file."""

from __future__ import annotations

import re

from conftest import run_main
from mimax.engine.progress import eta_seconds, format_duration, format_epoch_line

DIGITS = ["--dataset", "Digits", "--resnet_width", "4", "--epochs", "2", "--warmup_epochs", "0",
          "--batch_size", "64", "--num_threads", "1", "--num_workers", "0", "--train_subset", "256",
          "--test_subset", "128", "--monitor_size", "64", "--mi_batch_size", "32", "--precision", "fp32"]


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 42, 187, 3727)] == ["0 s", "42 s", "3:07", "1:02:07"]


def test_eta_is_remaining_epochs_times_mean_epoch_time():
    assert eta_seconds([10.0, 20.0], 3) == 45.0
    assert eta_seconds([10.0], 0) == 0.0
    assert eta_seconds([], 3) is None


def test_epoch_line_holds_every_measured_value():
    row = {"epoch": 2, "step": 8, "lr": 0.05, "loss": 1.23456, "joint": -0.5, "emb_std_f_theta": 0.031,
           "emb_erank_f_theta": 2.5, "epoch_time_s": 65.0, "images_per_s": 512.4}
    mi = [{"representation": "embedding", "estimator": "InfoNCE", "value": 2.5, "gap": 1.75},
          {"representation": "backbone", "estimator": "InfoNCE", "value": 9.0, "gap": 9.0}]
    line = format_epoch_line(0, 2, 5, row, 195.0, mi, {"SimCLR": {"linear": 0.8125, "knn": 0.75}})
    assert line == ("seed 0 epoch 2/5: loss 1.235 joint -0.5 | lr 0.05 | 512 img/s | 1:05 | ETA 3:15 | "
                    "emb_std_f_theta 0.031 | MI InfoNCE 2.5 (gap 1.75) | SimCLR linear 81.25% kNN 75.00%")
    bare = format_epoch_line(1, 1, 1, {k: row[k] for k in ("epoch", "step", "lr", "loss", "epoch_time_s",
                                                           "images_per_s")}, None)
    assert bare == "seed 1 epoch 1/1: loss 1.235 | lr 0.05 | 512 img/s | 1:05"


def test_epoch_line_shows_peak_gpu_memory_apart_from_the_loss_terms():
    row = {"epoch": 1, "step": 4, "lr": 0.1, "loss": 2.0, "gpu_mem_peak_gb": 3.254, "epoch_time_s": 8.0,
           "images_per_s": 6250.0}
    assert format_epoch_line(0, 1, 1, row, None) == ("seed 0 epoch 1/1: loss 2 | lr 0.1 | 6250 img/s | 8 s | "
                                                     "peak 3.25 GiB")


def test_redirected_run_prints_its_progress(tmp_path):
    """Subprocess with stdout captured through a pipe, as `mimax train ... > log` on a cluster."""
    out = tmp_path / "run"
    proc = run_main(["--model_name", "SDMI", *DIGITS, "--mi_interval", "1", "--model_evaluation_interval", "1",
                     "--model_save_interval", "1", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "\r" not in proc.stdout and "\r" not in proc.stderr
    assert lines[0] == "precision: fp32 (--precision fp32)"
    epochs = [ln for ln in lines if re.match(r"seed 0 epoch \d/2: ", ln)]
    assert [ln.split(":")[0] for ln in epochs] == ["seed 0 epoch 1/2", "seed 0 epoch 2/2"]
    pattern = (r"seed 0 epoch \d/2: loss \S+ joint \S+ marginal \S+ \| lr \S+ \| \d+ img/s \| \d+ s( \| ETA \d+ s)? "
               r"\| emb_std_f_theta \S+ emb_std_g_xi \S+ \| MI cos-DV \S+ \(gap \S+\), InfoNCE \S+ \(gap \S+\), "
               r"JSD \S+ \(gap \S+\) \| SDMI \(f_θ\) linear \S+% kNN \S+%; SDMI \(g_ξ\) linear \S+% kNN \S+%$")
    for ln in epochs:
        assert re.match(pattern, ln), ln
    assert "ETA" in epochs[0]
    assert any(re.match(r"seed 0: Random init \(ResNet18\) linear \S+% kNN \S+% \(\d+ s\)$", ln) for ln in lines)
    assert any(ln.startswith("seed 0: before training: MI cos-DV ") for ln in lines)
    ckpts = [ln for ln in lines if ln.startswith("seed 0: checkpoint ")]
    assert [ln.rsplit("_", 1)[1] for ln in ckpts] == ["0001.pt", "0002.pt"]
    finals = [ln for ln in lines if ln.startswith("seed 0: final ")]
    assert [ln.split(":")[1].strip() for ln in finals] == ["final SDMI (f_θ)", "final SDMI (g_ξ)"]
    assert all(re.search(r"linear \S+%, kNN \S+% \(random init \S+% / \S+%: [+-]\S+ / [+-]\S+ points\)$", ln)
               for ln in finals)
    # the numbers printed are the numbers recorded
    import csv

    metrics = list(csv.DictReader(open(out / "seed_0" / "metrics.csv")))
    assert f"loss {float(metrics[-1]['loss']):.4g} " in epochs[-1]
