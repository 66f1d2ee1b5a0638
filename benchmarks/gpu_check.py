"""GPU acceptance run: every method and every speed setting of mimax trained for real on CUDA.

``bash benchmarks/gpu_check.sh`` (this script) writes a CIFAR-10 dataset in the official python format
(random pixels: the check is about code paths and speed, not accuracy; nothing is downloaded), then
trains, each in its own ``mimax train`` process as a user runs it:

- every built-in method for two short epochs at CIFAR shape (ResNet-18, bf16, ``--gpu_augment``);
- SimCLR under each speed setting: fp16 (GradScaler), ``--channels_last``, ``--compile``, per-image
  views in DataLoader workers instead of ``--gpu_augment``; SDMI (two alternating optimizers) in fp16
  and compiled;
- SimCLR for a full 50,000-image epoch (the speed goal: a CIFAR-10 ResNet-18 SimCLR epoch);
- SimCLR stopped by SIGTERM in its second epoch (a mid-epoch checkpoint, exit 75), then resumed to the end
  (its img/s and s/epoch are those of the uninterrupted first epoch);
- with two or more GPUs, SimCLR under ``torchrun --nproc_per_node 2`` with ``--sync_bn``.

Each row reads the run's own ``metrics.csv``: img/s and seconds of the last epoch (the first holds the
cuDNN autotuning and compilation), the epoch's peak GPU memory (``gpu_mem_peak_gb``), and whether every
logged loss is finite. One table is printed (also written to ``OUT/gpu_check.md``); the exit status is 1
if any row failed.

``--smoke`` runs the same rows tiny on the CPU (< 2 minutes on 2 cores; most of each row is the
interpreter importing torch): a ResNet-18 of width 8 on 128 images. Rows that need CUDA run as the
nearest CPU path and say so: fp16 → bf16 (fp16 autocast is refused off CUDA), the torchrun row → 2
processes on gloo without ``--sync_bn`` (SyncBatchNorm is CUDA-only). The ``--compile`` rows are left
out of the smoke unless ``--compile_rows`` is given: inductor compiles C++ for minutes on a small CPU
(the compiled backbone's equivalence to eager is a test of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the CIFAR writer the data tests use (the official format)

METHODS = ("SDMI", "JMI", "SimCLR", "BYOL", "SimSiam", "MoCoV3", "BarlowTwins", "VICReg")
CIFAR_TRAIN = 50_000


@dataclass
class Case:
    name: str
    method: str
    setting: str
    flags: list[str] = field(default_factory=list)
    processes: int = 1
    full_epoch: bool = False
    gpu_augment: bool = True  # False: per-image views in DataLoader workers
    preempt: bool = False  # SIGTERM during epoch 2 (exit 75), then ``--resume``


@dataclass
class Result:
    case: Case
    ok: bool
    images_per_s: float = math.nan
    epoch_s: float = math.nan
    peak_gb: float = math.nan
    finite: bool = False
    wall_s: float = math.nan
    why: str = ""


def cases(gpus: int, smoke: bool, compile_rows: bool = True) -> list[Case]:
    """The rows: every method at the base setting, then the speed settings."""
    rows = [Case(f"{m}/base", m, "bf16 gpu_augment") for m in METHODS]
    half = "bf16 (fp16 needs CUDA)" if smoke else "fp16"
    rows += [
        Case("SimCLR/fp16", "SimCLR", half, ["--precision", "bf16" if smoke else "fp16"]),
        Case("SimCLR/channels_last", "SimCLR", "bf16 gpu_augment channels_last", ["--channels_last"]),
        Case("SimCLR/compile", "SimCLR", "bf16 gpu_augment compile", ["--compile"]),
        Case("SimCLR/workers", "SimCLR", "bf16 per-image workers", gpu_augment=False),
        # SDMI's two optimizers alternate: one GradScaler over both, and two compiled backbones
        Case("SDMI/fp16", "SDMI", half, ["--precision", "bf16" if smoke else "fp16"]),
        Case("SDMI/compile", "SDMI", "bf16 gpu_augment compile", ["--compile"]),
    ]
    if not compile_rows:
        rows = [c for c in rows if "--compile" not in c.flags]
    rows.append(Case("SimCLR/full_epoch", "SimCLR", "bf16 gpu_augment channels_last, whole train set",
                     ["--channels_last"], full_epoch=True))
    rows.append(Case("SimCLR/preempt_resume", "SimCLR", "SIGTERM in epoch 2 → exit 75 → --resume",
                     full_epoch=True, preempt=True))
    if smoke:
        rows.append(Case("SimCLR/torchrun2", "SimCLR", "2 processes (gloo; sync_bn needs CUDA)", processes=2))
    elif gpus >= 2:
        rows.append(Case("SimCLR/torchrun2", "SimCLR", "2 GPUs torchrun sync_bn", ["--sync_bn"], processes=2))
    return rows


def write_dataset(root: Path, smoke: bool) -> Path:
    """CIFAR-10 in the official python format (extracted folder), random pixels."""
    from image_fixtures import write_cifar

    per_batch = 128 if smoke else CIFAR_TRAIN // 5
    folder, _ = write_cifar(root, "CIFAR10", per_batch=per_batch, extracted=True)
    return folder


def row_workers(case: Case, smoke: bool, workers: int | None) -> int:
    """DataLoader workers of one row: ``--workers`` when given; else min(8, cores) on a GPU machine, and in the
    smoke 0 (start-up dominates its tiny runs) except for the per-image row, whose point is the worker path."""
    if workers is not None:
        return workers
    if smoke:
        return 0 if case.gpu_augment else 2
    return min(8, os.cpu_count() or 1)


def train_args(case: Case, data: Path, out: Path, smoke: bool, workers: int | None) -> list[str]:
    """The ``mimax train`` flags of one row."""
    args = ["--model_name", case.method, "--dataset", "CIFAR10", "--data_dir", str(data),
            "--architecture", "ResNet18", "--epochs", "2", "--warmup_epochs", "0", "--mi_interval", "0",
            "--model_evaluation_interval", "1000", "--model_save_interval", "1000", "--output_dir", str(out),
            "--num_workers", str(row_workers(case, smoke, workers)), "--seed", "0"]
    if smoke:
        args += ["--device", "cpu", "--resnet_width", "8", "--batch_size", "32", "--test_subset", "64",
                 "--monitor_size", "32", "--num_threads", "1", "--knn_k", "5"]
        if not case.full_epoch:
            args += ["--train_subset", "128"]
    else:
        args += ["--device", "cuda", "--batch_size", "256", "--test_subset", "1000", "--monitor_size", "512"]
        if not case.full_epoch:
            args += ["--train_subset", "10240"]
    if "--precision" not in case.flags:
        args += ["--precision", "bf16"]
    if case.gpu_augment:
        args.append("--gpu_augment")
    return args + case.flags


def command(case: Case, args: list[str]) -> list[str]:
    if case.processes == 1:
        return [sys.executable, "-m", "mimax", "train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(case.processes), "-m", "mimax", "train", *args]


def read_metrics(out: Path) -> list[dict[str, str]]:
    path = out / "seed_0" / "metrics.csv"
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def run_case(case: Case, data: Path, work: Path, smoke: bool, workers: int | None, timeout: float) -> Result:
    out = work / case.name.replace("/", "_")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUNBUFFERED": "1"}
    if smoke:
        env["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    log = work / f"{out.name}.log"
    cmd = command(case, train_args(case, data, out, smoke, workers))
    try:
        if case.preempt:
            code, text = preempt(cmd, out, env, timeout)
            if code == 75:
                resumed = subprocess.run(command(case, ["--resume", str(out)]), capture_output=True, text=True,
                                         env=env, cwd=ROOT, timeout=timeout)
                code, text = resumed.returncode, text + resumed.stdout + resumed.stderr
            elif code == 0:
                code, text = -1, text + "\nthe run ended before the signal: no preemption happened"
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
            code, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        return Result(case, False, why=f"timed out after {timeout:.0f} s")
    wall = time.perf_counter() - start
    log.write_text(text)
    if code != 0:
        last = (text.strip() or "no output").splitlines()[-1]
        return Result(case, False, wall_s=wall, why=f"exit {code}: {last[:160]} (log {log})")
    rows = read_metrics(out)
    losses = [float(r["loss"]) for r in rows]
    if case.preempt and [int(r["epoch"]) for r in rows] != [1, 2]:
        return Result(case, False, wall_s=wall, why=f"resumed run logged epochs {[r['epoch'] for r in rows]}")
    last = rows[0] if case.preempt else rows[-1]
    peak = float(last.get("gpu_mem_peak_gb") or "nan")
    finite = all(math.isfinite(v) for v in losses)
    why = "" if finite else "non-finite loss"
    if not smoke and math.isnan(peak):
        finite, why = False, "no gpu_mem_peak_gb in metrics.csv (not a CUDA run?)"
    return Result(case, finite, float(last["images_per_s"]), float(last["epoch_time_s"]), peak, finite, wall,
                  why)


def preempt(cmd: list[str], out: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Start the run, send SIGTERM once its first epoch is logged (so, during the second), and return
    its exit status and output. mimax finishes the step, checkpoints mid-epoch and exits 75."""
    metrics = out / "seed_0" / "metrics.csv"
    with tempfile.TemporaryFile("w+") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:  # header + epoch 1
                time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.05)
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        sink.seek(0)
        return code, sink.read()


def machine(smoke: bool) -> str:
    import torch

    if torch.cuda.is_available():
        gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        accel = f"GPUs: {torch.cuda.device_count()} × ({gpus}), CUDA {torch.version.cuda}, " \
                f"cuDNN {torch.backends.cudnn.version()}"
    else:
        accel = "no GPU"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    import torchvision

    return (f"machine: {cpu}, {os.cpu_count()} cores, {accel}; load {os.getloadavg()[0]:.2f}\n"
            f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}"
            f"{' (smoke mode: tiny CPU runs)' if smoke else ''}")


def table(results: list[Result], smoke: bool) -> str:
    lines = ["| row | setting | img/s | s/epoch | s per 50k images | peak GPU GiB | loss finite | wall s | status |",
             "|---|---|---:|---:|---:|---:|---|---:|---|"]
    for r in results:
        per_50k = CIFAR_TRAIN / r.images_per_s if r.images_per_s > 0 else math.nan
        peak = "–" if smoke else f"{r.peak_gb:.2f}"
        lines.append(f"| {r.case.name} | {r.case.setting} | {r.images_per_s:.0f} | {r.epoch_s:.2f} | "
                     f"{per_50k:.1f} | {peak} | {'yes' if r.finite else 'no'} | {r.wall_s:.0f} | "
                     f"{'ok' if r.ok else 'FAILED: ' + r.why} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny CPU runs of the same rows (< 2 minutes)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a new temporary one)")
    parser.add_argument("--only", default="", help="comma-separated row names or prefixes to run (default: all)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers (default: min(8, cores); in the smoke 0, and 2 for the per-image row)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds allowed per row")
    parser.add_argument("--compile_rows", action="store_true", help="with --smoke: also the --compile rows")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers: expected an integer >= 0, got {args.workers}")
    if not args.timeout > 0:
        parser.error(f"--timeout: expected seconds > 0, got {args.timeout}")
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA GPU here; use --smoke for the CPU version", file=sys.stderr)
        return 2
    rows = cases(torch.cuda.device_count(), args.smoke, compile_rows=not args.smoke or args.compile_rows)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        rows = [c for c in rows if any(c.name == w or c.name.startswith(w) for w in wanted)]
        if not rows:  # before anything is written: an empty table would read as a passed check
            names = ", ".join(c.name for c in cases(torch.cuda.device_count(), args.smoke,
                                                    compile_rows=not args.smoke or args.compile_rows))
            print(f"gpu_check: error: --only {args.only!r} matches no row; rows: {names}", file=sys.stderr)
            return 2
    # absolute: the rows run with the repository as their working directory
    work = (args.out or Path(tempfile.mkdtemp(prefix="mimax_gpu_check_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    header = machine(args.smoke)
    print(header, flush=True)
    t0 = time.perf_counter()
    data = write_dataset(work / "data", args.smoke)
    print(f"dataset written in {time.perf_counter() - t0:.1f} s: {data}", flush=True)
    if args.smoke and not args.compile_rows:
        print("smoke: the --compile rows are left out (add --compile_rows: minutes of C++ compilation)")
    results = []
    for case in rows:
        result = run_case(case, data, work, args.smoke, args.workers, args.timeout)
        results.append(result)
        print(f"{case.name}: {'ok' if result.ok else 'FAILED ' + result.why} ({result.wall_s:.0f} s, "
              f"{result.images_per_s:.0f} img/s)", flush=True)
        # rewritten after every row, so that a check cut short still leaves the rows it finished
        (work / "gpu_check.md").write_text(header + "\n\n" + table(results, args.smoke) + "\n")
    report = table(results, args.smoke)
    print(report)
    print(f"total {time.perf_counter() - t0:.0f} s")
    if not args.out:
        shutil.rmtree(work / "data", ignore_errors=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
