"""--stop_on_collapse: a collapsing run ends with one line and exit code 4, keeps its checkpoint, and resumes;
a healthy run is not stopped."""

from __future__ import annotations

import json

from conftest import TINY_GAUSSIAN, run_main
from mimax.cli import main
from mimax.store.atomic import read_csv

# JMI without its marginal term at a high learning rate collapses within two epochs (docs/experiments.md)
COLLAPSING = [*TINY_GAUSSIAN, "--model_name", "JMI", "--no_marginal", "--initial_lr", "0.03", "--epochs", "6",
              "--mi_interval", "0"]


def test_collapsing_run_stops_with_exit_4_and_resumes(tmp_path):
    out = tmp_path / "r"
    proc = run_main([*COLLAPSING, "--stop_on_collapse", "2", "--output_dir", str(out)])
    assert proc.returncode == 4, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mimax:")]
    assert len(lines) == 1 and lines[0].startswith("mimax: stopped: collapse at epoch 2: encoder f has")
    assert "Traceback" not in proc.stderr
    seed = out / "seed_0"
    status = json.loads((seed / "status.json").read_text())
    assert status["status"] == "stopped_on_collapse" and status["epoch"] == 2
    assert (seed / "checkpoints" / "ckpt_epoch_0002.pt").is_file()
    rows = read_csv(seed / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["emb_std_f"]) < 0.1 or float(r["emb_erank_f"]) < 1.2 for r in rows)
    assert not (seed / "results.json").exists()
    # resumable: continue without the criterion and finish; same numbers as a run never stopped
    assert main(["train", "--resume", str(out), "--stop_on_collapse", "0"]) == 0
    assert json.loads((seed / "status.json").read_text())["status"] == "complete"
    assert main(["train", *COLLAPSING, "--output_dir", str(tmp_path / "full")]) == 0
    full = read_csv(tmp_path / "full" / "seed_0" / "metrics.csv")
    resumed = read_csv(seed / "metrics.csv")
    drop = ("epoch_time_s", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == \
        [{k: v for k, v in r.items() if k not in drop} for r in full]


def test_healthy_run_is_not_stopped(tmp_path):
    args = [*TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "2", "--mi_interval", "0", "--stop_on_collapse", "1"]
    assert main(["train", *args, "--output_dir", str(tmp_path / "ok")]) == 0
    assert json.loads((tmp_path / "ok" / "seed_0" / "status.json").read_text())["status"] == "complete"


def test_bad_stop_on_collapse_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", *TINY_GAUSSIAN, "--stop_on_collapse", "-1", "--output_dir", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == "mimax: error: --stop_on_collapse: must be >= 0 (0 = off; got -1)"
    assert not (tmp_path / "x").exists()
