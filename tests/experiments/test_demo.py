"""The controlled Gaussian experiments: `mimax demo --quick` end to end, the collapse flag, Figure 3."""

from __future__ import annotations

import json

import matplotlib
import pytest

from conftest import TINY_GAUSSIAN, run_cli, run_main, run_mimax
from mimax.experiments.gaussian import DEMO_RUNS
from mimax.experiments.report import collapse_flags
from mimax.plots import plot_trajectories
from mimax.store.atomic import read_csv

matplotlib.use("Agg")


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = run_mimax(["demo", "--quick", "--output_dir", str(out)], timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # stdout is a pipe here: no progress bar in it (no carriage returns), one line per finished configuration
    assert "\r" not in proc.stdout and "\r" not in proc.stderr
    done = [line for line in proc.stdout.splitlines() if line.startswith("demo: ") and " done: " in line]
    assert len(done) == len(DEMO_RUNS) and done[-1].startswith(f"demo: {len(DEMO_RUNS)}/{len(DEMO_RUNS)} done: ")
    for name in ("trajectories.png", "mi.png", "results.md", "results.json", "claims.md"):
        assert (out / name).is_file(), name
    assert not (out / "critic_cache").exists() and not (out / "probe_cache").exists()  # working folders
    # configurations with the same initialization share their epoch-0 embeddings, hence the critic's estimate
    first = {slug: next(r for r in read_csv(out / "runs" / slug / "seed_0" / "mi.csv")
                        if r["estimator"] == "critic-InfoNCE" and r["epoch"] == "0") for slug in ("jmi", "simclr")}
    assert first["jmi"] == first["simclr"]
    results = json.loads((out / "results.json").read_text())
    configs = results["configurations"]
    assert [c["slug"] for c in configs] == [r.slug for r in DEMO_RUNS]
    for c in configs:
        assert 0 <= c["aggregate"]["probe"]["linear_embedding"]["mean"] <= 1
        assert c["aggregate"]["separation"]["min_center_angle"]["mean"] >= 0
        assert set(c["aggregate"]["mi_final"]) == {"cos-DV", "InfoNCE", "JSD"}
    table = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(DEMO_RUNS)  # header + one row per configuration
    assert all(line.count("|") == table[0].count("|") for line in table)
    claims = (out / "claims.md").read_text()
    for heading in ("MI grows", "marginal term collapses", "predictor prevents collapse", "separates cluster"):
        assert heading in claims
    assert claims.count("**holds**") + claims.count("**does not hold**") + claims.count("**inconclusive**") >= 7
    # Figure 3 can be redrawn from the saved folders: one panel per method
    seeds = [out / "runs" / r.slug / "seed_0" for r in DEMO_RUNS]
    fig = plot_trajectories(seeds, [r.label for r in DEMO_RUNS])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [r.label for r in DEMO_RUNS]
    redraw = tmp_path / "fig3.png"
    proc = run_mimax(["plot", "trajectories", *map(str, seeds[:3]), "--out", str(redraw)])
    assert proc.returncode == 0 and redraw.stat().st_size > 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_refuses_an_existing_folder_and_bad_options(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "x").write_text("keep")
    proc = run_cli(["demo", "--quick", "--output_dir", str(out)])
    # the advice names the demo's own way out (it has no --overwrite or --resume, which `mimax train` offers)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"mimax: error: --output_dir: {out} already holds files; mimax demo writes a new folder: give another "
        "--output_dir")
    assert (out / "x").read_text() == "keep" and sorted(p.name for p in out.iterdir()) == ["x"]
    proc = run_cli(["demo", "--quick", "--only", "nope", "--output_dir", str(tmp_path / "d2")])
    assert proc.returncode == 2 and "--only: unknown run(s) nope" in proc.stderr
    assert not (tmp_path / "d2" / "runs").exists()
    for flag, value in (("--num_runs", "0"), ("--epochs", "0"), ("--gm_train_size", "0"), ("--mi_interval", "0")):
        proc = run_cli(["demo", "--quick", flag, value, "--output_dir", str(tmp_path / "d3")])
        assert proc.returncode == 2 and f"{flag}: must be" in proc.stderr, proc.stderr
        assert not (tmp_path / "d3").exists()  # validated before the folder is made


@pytest.mark.parametrize("method,flags,collapsed", [
    ("SDMI", ["--no_marginal"], True),  # joint term only: both encoders collapse to a point
    ("JMI", [], False),
])
def test_collapse_flag_on_real_runs(tmp_path, method, flags, collapsed):
    out = tmp_path / method
    args = [*TINY_GAUSSIAN, "--gm_train_size", "1024", "--initial_lr", "0.01", "--epochs", "10", "--mi_interval", "0",
            "--model_name", method, *flags, "--output_dir", str(out)]
    proc = run_main(args)
    assert proc.returncode == 0, proc.stderr
    flags_by_encoder = collapse_flags(read_csv(out / "seed_0" / "metrics.csv")[-1])
    assert all(f["collapsed"] == collapsed for f in flags_by_encoder.values()), flags_by_encoder


def test_collapse_flag_needs_monitor_columns():
    with pytest.raises(ValueError, match="collapse-monitor"):
        collapse_flags({"epoch": "1", "loss": "0.3"})


def test_demo_seeds_in_parallel_make_the_experiments_mimax_trains(tmp_path):
    """The demo trains every seed as its own task (a configuration's seeds side by side in the workers);
    each configuration's folder is still the experiment `run_experiment` makes: the same seeds, the same
    aggregated results to the last digit."""
    import argparse

    from mimax.config import config_from_args
    from mimax.engine.experiment import run_experiment
    from mimax.experiments.gaussian import build_parser, demo_callbacks, run_flags

    out = tmp_path / "demo"
    proc = run_mimax(["demo", "--quick", "--only", "sdmi,byol", "--num_runs", "2", "--epochs", "2",
                      "--output_dir", str(out)], timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    args: argparse.Namespace = build_parser().parse_args(["--quick", "--num_runs", "2", "--epochs", "2"])
    for run in (r for r in DEMO_RUNS if r.slug in ("sdmi", "byol")):
        demo = json.loads((out / "runs" / run.slug / "results.json").read_text())
        assert json.loads((out / "runs" / run.slug / "status.json").read_text())["status"] == "complete"
        cfg = config_from_args(run_flags(args, run, tmp_path / "reference"))
        reference = run_experiment(cfg, callbacks_factory=demo_callbacks, progress=False)
        assert demo["seeds"] == reference["seeds"] == [0, 1]
        assert demo["summary"] == reference["summary"] and demo["runs"] == reference["runs"]


def test_demo_report_reads_a_non_finite_separation_written_as_null(tmp_path):
    """JSON records write NaN/inf as null (strict JSON); the report read the separation ratio back as a number
    (TypeError: int + NoneType for a seed whose clusters have zero spread)."""
    import math

    from mimax.experiments.report import collect_run
    from mimax.store.rundir import ExperimentDir

    out = tmp_path / "demo"
    proc = run_mimax(["demo", "--quick", "--only", "sdmi", "--num_runs", "1", "--epochs", "1",
                      "--output_dir", str(out)], timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    exp = ExperimentDir(out / "runs" / "sdmi")
    traj_file = exp.finished_seeds()[0].trajectories_json
    traj = json.loads(traj_file.read_text())
    traj["records"][-1]["ratio"] = None
    traj_file.write_text(json.dumps(traj))
    run = next(r for r in DEMO_RUNS if r.slug == "sdmi")
    ratio = collect_run(exp, run)["aggregate"]["separation"]["ratio"]
    assert math.isnan(ratio["mean"]) and ratio["n"] == 1


def test_an_interrupted_demo_says_its_folder_cannot_be_continued(tmp_path):
    """Ctrl-C from a terminal reaches every process of its group, the demo's workers included: each printed a
    KeyboardInterrupt traceback, then the line said "resume with --resume RUN_DIR", which the demo does not
    have (and the folder is refused on the next try). Now: the workers leave it to the demo, one line."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "mimax", "demo", "--quick", "--num_workers", "2", "--output_dir",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True,  # its own process group, as a terminal's job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().startswith("demo: ")  # started; the workers are spawned and training
    deadline = time.monotonic() + 120
    while not list(out.glob("runs/*/seed_*/metrics.csv")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert err == (f"mimax: interrupted; {out} holds the unfinished demo, which cannot be continued: delete it, "
                   "or give another --output_dir\n")
