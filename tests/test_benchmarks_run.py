"""Every script in benchmarks/ runs, tiny, and prints its result line: a benchmark that the code's API has left
behind fails here instead of on the day someone needs its numbers (benchmarks/precision_auto.py once built
methods with an outdated signature and crashed before printing anything). The numbers are not checked:
timings belong to benchmarks, not to tests. benchmarks/gpu_check.py has its own test (test_gpu_check.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
NUMBER = r"[0-9][0-9.,]*"

# script, tiny arguments, a line the full run prints too (its numbers as numbers)
CASES = [
    ("precision_auto.py", ["--threads", "1", "--rounds", "1", "--steps", "1", "--width", "4", "--batch", "8"],
     rf"bf16 \+ channels_last\s+{NUMBER} ms/step\s+{NUMBER} images/s\s+fp32 / this = {NUMBER}"),
    ("objectives.py", ["--rounds", "1"], rf"NT-Xent\s+1024\s+128\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"),
    ("augmentation_throughput.py", ["--batch", "8", "--per_image_count", "4", "--size", "16"],
     rf"simclr\s+batched\s+{NUMBER}\s+per-image torchvision\s+{NUMBER}"),
    ("nan_guard_overhead.py", ["--steps", "2", "--rounds", "1"],
     rf"skip: before_step \+ observe alone {NUMBER} ms/step"),
    ("user_method_overhead.py", ["--steps", "2"],
     rf"BYOL: built-in {NUMBER} ms wall .* user / built-in: wall {NUMBER}"),
    ("step_time.py", ["--steps", "1", "--warmup", "1", "--methods", "SimCLR,SDMI", "--settings", "fp32",
                      "--batch", "8", "--width", "4", "--threads", "1"],
     rf"\| SDMI \| {NUMBER} / {NUMBER} / {NUMBER} \| {NUMBER} \|"),
    ("mi_estimators.py", ["--pairs", "256", "--repeats", "1", "--tasks", "gauss 2x2", "--bounds", "infonce"],
     rf"\| gauss 2x2 [^|]*\| 256 \| {NUMBER} \| infonce \| -?{NUMBER} \|"),
    ("fashion_protocol.py", ["--rounds", "1", "--steps", "1", "--candidates", "4x16x8", "--threads", "1"],
     rf"SimCLR\s+4\s+16\s+8\s+{NUMBER}\s+{NUMBER}"),
    ("contract_check_overhead.py", ["--rounds", "1", "--steps", "1"],
     rf"SDMI: step {NUMBER} ms without the check, {NUMBER} ms with it; with / without = {NUMBER}"),
    ("mi_overhead.py", ["--steps", "1", "--skip_gaussian", "--train_size", "512", "--monitor_size", "64",
                        "--resnet_width", "4", "--intervals", "5", "--methods", "JMI"],
     rf"\| JMI \| 4 \| {NUMBER} M \| {NUMBER} \(128\) \|.*\| {NUMBER}% \|"),
]


def _run(script: str, args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.parametrize("script, args, expected", CASES, ids=[c[0] for c in CASES])
def test_benchmark_runs_and_prints_its_result(script, args, expected, tmp_path):
    out = _run(script, args, tmp_path)
    assert re.search(expected, out), f"{script}: no line matching {expected!r} in:\n{out[-3000:]}"
    assert re.search(r"^machine: .*\S", out, re.M) and "torch" in out, f"{script} names no machine or versions"


BAD_FLAGS = [  # each was a traceback or an empty table with exit 0
    ("mi_overhead.py", ["--demo", "sdim"], "--demo: unknown 'sdim'"),
    ("mi_overhead.py", ["--intervals", "0"], "argument --intervals: expected an integer >= 1"),
    ("mi_estimators.py", ["--tasks", "gaus 2x2"], "--tasks: 'gaus 2x2' match no task"),
    ("mi_estimators.py", ["--shard", "1/0"], "--shard: expected K/M with 0 <= K < M"),
    ("step_time.py", ["--methods", "SimCRL"], "--methods: unknown 'SimCRL'"),
    ("step_time.py", ["--settings", "bf61"], "--settings: unknown 'bf61'"),
    ("fashion_protocol.py", ["--candidates", "16x28"], "--candidates: expected WIDTHxSIZExBATCH"),
    ("pipeline.py", ["--steps", "-1"], "argument --steps: expected an integer >= 1"),  # ran: -22M img/s
    ("gpu_check.py", ["--smoke", "--workers", "-3"], "--workers: expected an integer >= 0"),  # a FAILED row
]


@pytest.mark.parametrize("script, args, message", BAD_FLAGS, ids=[f"{c[0]} {c[1][0]}" for c in BAD_FLAGS])
def test_a_bad_benchmark_flag_is_a_usage_error(script, args, message, tmp_path):
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{script}: error: {message}" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_pipeline_benchmark_runs_two_ranks(tmp_path):
    """The pipeline benchmark starts torchrun ranks (about a minute even tiny): slow suite only."""
    out = _run("pipeline.py", ["--images", "64", "--batch", "16", "--steps", "1", "--jpeg_dir", str(tmp_path / "jpegs"),
                               "--work", str(tmp_path / "work"), "--jpeg_size", "16"], tmp_path)
    row = rf"\| JPEG folder \| batched \| 2 \| 32, 32 \| 32, 32 \| 32 \| yes \| {NUMBER} \|"
    assert re.search(row, out), out[-3000:]


def test_every_benchmark_script_is_covered():
    """A new benchmark gets a case here (or is named as covered elsewhere)."""
    covered = {c[0] for c in CASES} | {"pipeline.py", "gpu_check.py", "common.py"}
    assert {p.name for p in BENCHMARKS.glob("*.py")} == covered


def test_pipeline_jpeg_folder_holds_exactly_n_images_and_foreign_folders_are_refused(tmp_path):
    """An earlier run's folder of 8 JPEGs was reused for --images 4 (the table then said N = 4 over 8 images),
    and any --jpeg_dir or --work folder was written into and emptied without being the script's own."""
    import importlib.util

    pytest.importorskip("PIL")
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    spec = importlib.util.spec_from_file_location("pipeline_bench", BENCHMARKS / "pipeline.py")
    pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pipeline)
    jpegs = tmp_path / "jpegs"
    pipeline.write_jpegs(jpegs, 8)
    first = (jpegs / "00001.jpg").read_bytes()
    pipeline.write_jpegs(jpegs, 4)
    assert sorted(p.name for p in jpegs.glob("*.jpg")) == [f"{i:05d}.jpg" for i in range(4)]
    assert (jpegs / "00001.jpg").read_bytes() == first  # image i does not depend on N
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(SystemExit, match="was not made by this benchmark"):
        pipeline.write_jpegs(foreign, 4)
    with pytest.raises(SystemExit, match="was not made by this benchmark"):
        pipeline.own_folder(foreign)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"] and (foreign / "holiday.jpg").read_bytes() == b"mine"
    work = pipeline.own_folder(tmp_path / "work")  # the JPEGs inside the work folder: both the script's own
    pipeline.write_jpegs(work / "jpegs", 2)
    assert pipeline.own_folder(work) == work and len(list((work / "jpegs").glob("*.jpg"))) == 2
