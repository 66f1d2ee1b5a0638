"""scripts/FashionMNIST/reproduce.sh end to end on a few steps of a subset (the protocol's CI smoke): one method
stopped after its first epoch (a sitting cut short), resumed by the same command, skipped once finished; the
table, the speed table and the two figures written; the small files copied under a docs folder, from which
`mimax table` rebuilds the same table without the run directories."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

FASHION = Path("/usr/share/datasets/fashion-mnist")
SCRIPT = ROOT / "scripts" / "FashionMNIST" / "reproduce.sh"
# a few steps of the protocol: 128 training images in 2 epochs of 2 steps, a 128-image test subset
SMOKE = ["--train_subset", "128", "--test_subset", "128", "--batch_size", "64", "--epochs", "2",
         "--monitor_size", "64", "--knn_k", "5"]


def reproduce(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def table_lines(text: str) -> list[str]:
    return [line for line in text.split("Sources:")[0].splitlines() if line.startswith("|")]


needs_fashion = pytest.mark.skipif(not FASHION.is_dir(),
                                   reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")


@needs_fashion
def test_reproduce_smoke_writes_the_table_figures_and_docs_copy(tmp_path):
    out, docs = tmp_path / "out", tmp_path / "docs"
    done = reproduce("--seeds", "3", "--methods", "SimCLR", "--out", str(out), "--docs", str(docs), "--", *SMOKE)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(out / "timings.csv", newline="") as f:
        sittings = list(csv.DictReader(f))
    assert [(r["method"], r["seed"], r["exit_code"]) for r in sittings] == [("SimCLR", "3", "0")]
    assert int(sittings[0]["wall_s"]) >= 0 and sittings[0]["load_start"]
    table = (out / "table.md").read_text()
    assert "| SimCLR |" in table and "Random init" in table and "Δ vs random init" in table
    assert "| SimCLR | 3 |" in (out / "speed.md").read_text()
    for fig in ("accuracy.png", "mi.png"):
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"
    copied = docs / "SimCLR" / "seed3"
    assert {p.name for p in copied.iterdir()} == {"results.json", "config.json", "env.json", "seed_3"}
    assert {p.name for p in (copied / "seed_3").iterdir()} == {"results.json", "config.json", "metrics.csv",
                                                               "eval.csv", "mi.csv"}
    assert not list(docs.rglob("*.pt"))  # no checkpoint travels to docs

    # a later sitting on another method: the summaries keep every finished run, not only this sitting's
    more = reproduce("--seeds", "3", "--methods", "JMI", "--out", str(out), "--docs", str(docs), "--", *SMOKE)
    assert more.returncode == 0, more.stdout + more.stderr
    for where in (out, docs):
        assert "| SimCLR |" in (where / "table.md").read_text() and "| JMI |" in (where / "table.md").read_text()
        speed = (where / "speed.md").read_text()
        assert "| SimCLR | 3 |" in speed and "| JMI | 3 |" in speed, speed
    with open(docs / "timings.csv", newline="") as f:
        assert [(r["method"], r["seed"]) for r in csv.DictReader(f)] == [("SimCLR", "3"), ("JMI", "3")]
    # DOCS keeps the runs of earlier sittings even when OUT no longer has them
    shutil.rmtree(out / "SimCLR")
    again = reproduce("--seeds", "3", "--methods", "JMI", "--out", str(out), "--docs", str(docs), "--", *SMOKE)
    assert again.returncode == 0 and "JMI seed 3: finished, skipped" in again.stdout, again.stdout + again.stderr
    assert "| SimCLR |" not in (out / "table.md").read_text()
    assert "| SimCLR |" in (docs / "table.md").read_text() and "| JMI |" in (docs / "table.md").read_text()
    with open(docs / "timings.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2  # merged, not duplicated

    shutil.rmtree(out)  # the table from docs alone
    rebuilt = run_cli(["table", str(copied)])
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert table_lines(rebuilt.stdout) == table_lines(table)


@pytest.mark.slow
@needs_fashion
def test_reproduce_resumes_an_unfinished_run_and_skips_a_finished_one(tmp_path):
    out = tmp_path / "out"
    flags = ["--seeds", "3", "--methods", "SimCLR", "--out", str(out), "--docs", "none"]
    cut = reproduce(*flags, "--", *SMOKE, "--stop_after", "1")  # a sitting that ends after epoch 1
    assert cut.returncode == 1 and "no finished run yet" in cut.stderr, cut.stderr
    assert not (out / "SimCLR" / "seed3" / "results.json").exists()
    done = reproduce(*flags, "--", *SMOKE)  # the same command continues it
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stdout and "resumed at epoch 1/2" in (out / "SimCLR" / "seed3.log").read_text()
    again = reproduce(*flags, "--", *SMOKE)
    assert again.returncode == 0 and "SimCLR seed 3: finished, skipped" in again.stdout
    with open(out / "timings.csv", newline="") as f:
        assert [r["exit_code"] for r in csv.DictReader(f)] == ["0", "0"]
    assert "| SimCLR | 3 |" in (out / "speed.md").read_text() and "| 2 |" in (out / "speed.md").read_text()
    replot = subprocess.run(["python", "-m", "mimax", "plot", "accuracy", str(out / "SimCLR" / "seed3"), "--out",
                             str(tmp_path / "a.png")], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=300)
    assert replot.returncode == 0, replot.stderr


def test_reproduce_refuses_bad_arguments_in_one_line(tmp_path):
    for args, flag in ((["--seeds", "0,x"], "--seeds"), (["--methods", "SimCLR,Nope"], "--methods"),
                       (["--data_dir", str(tmp_path / "none")], "--data_dir"), (["--bogus"], "--bogus")):
        proc = reproduce(*args, "--out", str(tmp_path / "o"))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and flag in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()
