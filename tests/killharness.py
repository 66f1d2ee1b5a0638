"""Kill-safety harness: SIGKILL a real ``main.py`` run at a named point, resume it, compare with an
uninterrupted run.

The kill is deterministic: ``MIMAX_KILL_AT=<point>:<n>`` makes the process SIGKILL itself the n-th time it
reaches ``<point>`` (:mod:`mimax.store.faults`). After every kill the harness checks that nothing in the
experiment directory is torn (every JSON and CSV parses, every checkpoint loads with ``weights_only=True``,
the experiment is not marked complete); after the final resume it checks that the run finished, left no
temp files, and that its final weights (bitwise), metrics, evaluations and results equal the reference.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from conftest import ROOT

# 2 seeds x 3 epochs x 4 steps; a checkpoint every epoch; evaluations at epochs 0, 2 and 3.
ARGS = ["--model_name", "SDMI", "--dataset", "Gaussian", "--gm_train_size", "256", "--gm_test_size", "128",
        "--gm_monitor_size", "64",
        "--batch_size", "64", "--num_threads", "1", "--epochs", "3", "--model_save_interval", "1",
        "--model_evaluation_interval", "2", "--num_runs", "2"]
TIMING_COLUMNS = {"epoch_time_s", "images_per_s"}

# Every kind of point the engine can die at (>= 20); counts are arrivals within one process.
KILL_POINTS = [
    ("step", 1), ("step", 6), ("step", 12), ("step", 13), ("step", 24),
    ("eval", 1), ("eval", 2), ("eval", 3), ("eval", 5),
    ("write:ckpt", 1), ("write:ckpt", 3), ("write:ckpt", 5),
    ("write:metrics.csv", 2), ("write:eval.csv", 3),
    ("write:config.json", 1), ("write:config.json", 2), ("write:env.json", 3),
    ("write:status.json", 1), ("write:status.json", 4), ("write:status.json", 6), ("write:status.json", 12),
    ("write:results.json", 1), ("write:results.json", 3), ("write:results.md", 1),
    ("seed_done", 1), ("seed_done", 2), ("results", 1),
]


def run(args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("MIMAX_KILL_AT", None)
    if kill_at:
        env["MIMAX_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=env)


def start(out: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    return run([*ARGS, "--output_dir", str(out)], kill_at)


def resume(out: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``--resume``; an experiment killed before its ``config.json`` existed is started again instead."""
    if not (out / "config.json").is_file():
        return start(out, kill_at)
    return run(["--resume", str(out)], kill_at)


def assert_killed(proc: subprocess.CompletedProcess, where: str) -> None:
    assert proc.returncode == -9, f"{where}: expected SIGKILL, got rc={proc.returncode}\n{proc.stderr[-2000:]}"


def assert_intact(exp: Path, finished: bool) -> None:
    """No torn file: JSON and CSV parse, checkpoints load with weights_only; status never lies."""
    from mimax.store.atomic import TEMP_RE
    from mimax.store.checkpoint import load_checkpoint

    for path in sorted(exp.rglob("*")):
        if not path.is_file():
            continue
        if TEMP_RE.match(path.name):
            assert not finished, f"temp file left after a finished run: {path}"
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            assert rows and all(len(r) == len(rows[0]) for r in rows), f"ragged or empty CSV {path}"
            epochs = [int(r[0]) for r in rows[1:]]
            assert epochs == sorted(epochs), f"{path}: epochs out of order {epochs}"
            if path.name == "metrics.csv":
                assert epochs == list(range(1, len(epochs) + 1)), f"{path}: epochs {epochs}"
        elif path.suffix == ".pt":
            load_checkpoint(path)
    status = exp / "status.json"
    if status.is_file():
        want = "complete" if finished else "incomplete"
        assert json.loads(status.read_text())["status"] == want, f"{status} should say {want}"
    if finished:
        for seed_dir in sorted(exp.glob("seed_*")):
            assert json.loads((seed_dir / "status.json").read_text())["status"] == "complete"


def snapshot(exp: Path) -> dict:
    """What must not depend on interruptions: final weights, metrics (minus timings), evaluations, results."""
    from mimax.store.atomic import read_csv
    from mimax.store.checkpoint import load_checkpoint
    from mimax.store.rundir import SeedDir

    out: dict = {"results": json.loads((exp / "results.json").read_text()), "seeds": {}}
    for seed_dir in sorted(exp.glob("seed_*")):
        ckpt = load_checkpoint(SeedDir.at(seed_dir).latest_checkpoint())
        out["seeds"][seed_dir.name] = {
            "epoch": ckpt["epoch"], "model": ckpt["model"], "optimizers": ckpt["optimizers"],
            "metrics": [{k: v for k, v in r.items() if k not in TIMING_COLUMNS}
                        for r in read_csv(seed_dir / "metrics.csv")],
            "eval": read_csv(seed_dir / "eval.csv"),
            "results": json.loads((seed_dir / "results.json").read_text()),
        }
    return out


def assert_same_run(got: dict, ref: dict) -> None:
    assert got["results"] == ref["results"]
    assert got["seeds"].keys() == ref["seeds"].keys()
    for seed, want in ref["seeds"].items():
        have = got["seeds"][seed]
        assert have["epoch"] == want["epoch"]
        assert have["model"].keys() == want["model"].keys()
        for name, tensor in want["model"].items():
            assert torch.equal(have["model"][name], tensor), f"{seed}: weight {name} differs"
        assert str(have["optimizers"]) == str(want["optimizers"]), f"{seed}: optimizer state differs"
        for key in ("metrics", "eval", "results"):
            assert have[key] == want[key], f"{seed}: {key} differs"


def run_in_process(args: list[str]) -> int:
    """The same command through ``mimax.cli.main`` in this process (what ``main.py`` calls)."""
    from mimax.cli import main

    return main(["train", *args])


def kill_and_resume(out: Path, points: list[tuple[str, int]], finish_in_process: bool = False) -> dict:
    """Start, kill at ``points[0]``, resume killed at each further point, resume to the end (in this process
    if ``finish_in_process``: the kills are always real subprocesses); snapshot."""
    proc = start(out, f"{points[0][0]}:{points[0][1]}")
    assert_killed(proc, f"start killed at {points[0]}")
    assert_intact(out, finished=False)
    for point, n in points[1:]:
        proc = resume(out, f"{point}:{n}")
        assert_killed(proc, f"resume killed at {point}:{n}")
        assert_intact(out, finished=False)
    if finish_in_process:
        assert run_in_process(["--resume", str(out)]) == 0
    else:
        proc = resume(out)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert_intact(out, finished=True)
    return snapshot(out)
