"""benchmarks/gpu_check.sh, the GPU acceptance run, in its CPU ``--smoke`` mode: the script itself
(dataset in the official CIFAR format, one ``mimax train`` process per row, metrics read back, the table,
the exit status) must keep working on machines without a GPU, where CI runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def smoke(tmp_path: Path, *extra: str, out: str | None = None) -> tuple[subprocess.CompletedProcess, str]:
    """The script run from ``tmp_path``; ``out``: its ``--out`` as given (relative to ``tmp_path``)."""
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", "--out", out or str(tmp_path),
                           *extra], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    md = tmp_path / (out or ".") / "gpu_check.md"
    report = md.read_text() if md.exists() else ""
    return proc, report


def rows(report: str) -> dict[str, list[str]]:
    table = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line][1:]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table)}


def test_smoke_rows_train_and_report(tmp_path):
    """Two rows in the default run (the preemption row trains, is stopped, resumes; the torchrun row starts
    two processes); the whole smoke is the slow test below."""
    proc, report = smoke(tmp_path, "--only", "SimCLR/preempt,SimCLR/torchrun2", out="check")  # relative: the caller's
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = rows(report)
    assert list(table) == ["SimCLR/preempt_resume", "SimCLR/torchrun2"]
    assert "stopped by SIGTERM" in (tmp_path / "check" / "SimCLR_preempt_resume.log").read_text()
    for cells in table.values():
        assert cells[-1] == "ok" and cells[6] == "yes", cells
        assert float(cells[2]) > 0 and float(cells[3]) > 0, cells  # img/s and s/epoch read from metrics.csv
    assert "machine:" in report and "torch" in report


def test_a_failing_row_is_reported_and_fails_the_check(tmp_path):
    gc = gpu_check()
    data = gc.write_dataset(tmp_path / "data", smoke=True)
    bad = gc.Case("SimCLR/bad", "SimCLR", "bad flag", ["--batch_size", "0"])
    result = gc.run_case(bad, data, tmp_path, smoke=True, workers=0, timeout=300)
    assert not result.ok and "exit 2" in result.why and "--batch_size" in result.why
    assert "FAILED: exit 2" in gc.table([result], smoke=True)


def test_only_matching_no_row_is_an_error_before_anything_is_written(tmp_path):
    proc, report = smoke(tmp_path, "--only", "simclr/base,nothing", out="check")  # names are case-sensitive
    assert proc.returncode == 2 and not report, proc.stdout + proc.stderr
    assert proc.stderr.startswith("gpu_check: error: --only 'simclr/base,nothing' matches no row; rows: SDMI/base")
    assert not (tmp_path / "check").exists()


def test_the_per_image_row_runs_dataloader_workers():
    """The smoke's other rows run without workers (start-up dominates them); the per-image row exists to run
    the DataLoader worker path, so it has workers unless --workers says otherwise."""
    gc = gpu_check()

    def workers(case, smoke, given=None):
        args = gc.train_args(case, Path("data"), Path("out"), smoke, given)
        return int(args[args.index("--num_workers") + 1])

    by_name = {c.name: c for c in gc.cases(gpus=1, smoke=True)}
    assert workers(by_name["SimCLR/workers"], smoke=True) == 2 and workers(by_name["SimCLR/base"], smoke=True) == 0
    assert workers(by_name["SimCLR/workers"], smoke=True, given=0) == 0
    assert workers(by_name["SimCLR/base"], smoke=False) == min(8, os.cpu_count() or 1)


def test_every_method_and_setting_has_a_row():
    gc = gpu_check()
    names = [c.name for c in gc.cases(gpus=2, smoke=False)]
    assert {n.split("/")[0] for n in names if n.endswith("/base")} == set(gc.METHODS)
    for setting in ("fp16", "channels_last", "compile", "workers"):
        assert f"SimCLR/{setting}" in names
    assert "SDMI/fp16" in names and "SDMI/compile" in names
    assert "SimCLR/full_epoch" in names and "SimCLR/torchrun2" in names and "SimCLR/preempt_resume" in names
    assert "SimCLR/torchrun2" not in [c.name for c in gc.cases(gpus=1, smoke=False)]
    two = next(c for c in gc.cases(gpus=2, smoke=False) if c.name == "SimCLR/torchrun2")
    assert two.processes == 2 and "--sync_bn" in two.flags


@pytest.mark.slow
def test_full_smoke_passes(tmp_path):
    proc, report = smoke(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = rows(report)
    assert len(table) == 8 + 3 + 1 + 2 + 1 and all(cells[-1] == "ok" for cells in table.values()), report
