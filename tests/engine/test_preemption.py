"""Preemption: SIGTERM / SIGUSR1 at random steps checkpoint mid-epoch and exit 75; ``--resume`` then
finishes bitwise-identically to an uninterrupted run. Also: loaders start an epoch at a step and yield
exactly the batches of the full epoch from there; ``--save_every_minutes``; ``--resume auto``.

The signal is a real one: ``MIMAX_SIGNAL_AT=SIGTERM:step:n`` makes the process send it to itself after
the n-th optimizer step (in-process trials arm it with :func:`mimax.store.faults.arm_signal`), and one
subprocess trial is signalled from outside at a random moment."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import killharness as kh
import pytest
import torch
from image_fixtures import write_cifar, write_class_tree

from conftest import ROOT
from mimax.cli import main
from mimax.config import resolve
from mimax.data import build_data
from mimax.data.gaussian import GaussianViewLoader
from mimax.engine.preemption import EXIT_PREEMPTED
from mimax.store import faults
from mimax.store.atomic import read_csv
from mimax.store.checkpoint import save_checkpoint
from mimax.store.rundir import SeedDir


def _checkpoints(seed_dir: Path) -> list[Path]:
    return SeedDir.at(seed_dir).checkpoints()


STEPS = 24  # kh.ARGS: 2 seeds x 3 epochs x 4 steps
CPU = torch.device("cpu")


# --- loaders: epoch(e, start=k) == epoch(e)[k:] -------------------------------------------------------

def _same_batches(loader, epoch: int) -> None:
    full = list(loader.epoch(epoch))
    assert len(full) == len(loader)
    for start in sorted({1, len(full) // 2, len(full) - 1, len(full)}):
        tail = list(loader.epoch(epoch, start=start))
        assert len(tail) == len(full) - start, f"start={start}"
        for k, ((a, b), (fa, fb)) in enumerate(zip(tail, full[start:])):
            assert torch.equal(a, fa) and torch.equal(b, fb), f"start={start}: batch {start + k} differs"


def test_gaussian_loader_starts_at_a_step():
    x = torch.randn(100, 5, generator=torch.Generator().manual_seed(0))
    _same_batches(GaussianViewLoader(x, 16, noise=0.5, scaling=True, seed=3), epoch=2)
    _same_batches(GaussianViewLoader(x, 16, noise=0.5, scaling=True, seed=3, rank=1, world=2), epoch=2)


@pytest.mark.parametrize("gpu_augment", [False, True])
def test_image_view_loader_starts_at_a_step(tmp_path, gpu_augment):
    """The loader training builds (build_data), on image files with 2 persistent workers and on in-memory
    images, alone and as rank 1 of 2; the workers are not re-forked between epochs."""
    write_class_tree(tmp_path / "jpg", ["a"], per_class=24, ext=".jpg", size=(20, 14))
    write_cifar(tmp_path / "cifar", per_batch=8)
    common = dict(model_name="BYOL", batch_size=8, augmentation=True, gpu_augment=gpu_augment, monitor_size=4)
    files = resolve({**common, "dataset": "Folder", "data_dir": str(tmp_path / "jpg"), "image_size": 8,
                     "num_workers": 2})
    memory = resolve({**common, "dataset": "CIFAR10", "data_dir": str(tmp_path / "cifar"), "num_workers": 0})
    loader = build_data(files, CPU, 5).train_views
    _same_batches(loader, epoch=3)
    pids = [w.pid for w in loader.loader._iterator._workers]
    _same_batches(loader, epoch=4)
    assert [w.pid for w in loader.loader._iterator._workers] == pids  # persistent workers
    _same_batches(build_data(files, CPU, 5, rank=1, world=2).train_views, epoch=1)
    _same_batches(build_data(memory, CPU, 5).train_views, epoch=2)
    _same_batches(build_data(memory, CPU, 5, rank=1, world=2).train_views, epoch=2)


# --- signals -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "exp"
    assert kh.run_in_process([*kh.ARGS, "--output_dir", str(out)]) == 0
    return _snapshot(out)


def _snapshot(exp: Path) -> dict:
    snap = kh.snapshot(exp)
    for seed_dir in sorted(exp.glob("seed_*")):
        snap["seeds"][seed_dir.name]["mi"] = read_csv(seed_dir / "mi.csv")
    return snap


def _assert_same(got: dict, ref: dict) -> None:
    kh.assert_same_run(got, ref)
    for seed, want in ref["seeds"].items():
        assert got["seeds"][seed]["mi"] == want["mi"], f"{seed}: mi.csv differs"


def signal_and_resume(out: Path, sig: str, step: int, capsys) -> str:
    """Train with ``sig`` arriving after optimizer step ``step``; check the stop; resume to the end."""
    faults.arm_signal(f"{sig}:step:{step}")
    try:
        capsys.readouterr()
        code = kh.run_in_process([*kh.ARGS, "--output_dir", str(out)])
    finally:
        faults.arm_signal(None)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_PREEMPTED, err
    assert len(err) == 1 and err[0].startswith(f"mimax: stopped by {sig} at "), err
    seed_dir = out / f"seed_{(step - 1) // 12}"
    ckpts = _checkpoints(seed_dir)
    assert ckpts, "no checkpoint written on the signal"
    assert str(ckpts[-1]) in err[0]
    kh.assert_intact(out, finished=False)
    assert kh.run_in_process(["--resume", str(out)]) == 0
    kh.assert_intact(out, finished=True)
    assert not [p for p in out.rglob("ckpt_*_step_*.pt")], "a mid-epoch checkpoint outlived the run"
    return ckpts[-1].name


def _trials(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(rng.choice(["SIGTERM", "SIGUSR1"]), rng.randint(1, STEPS)) for _ in range(n)]


# the last step of an epoch (4) and of a seed (12) are edge cases, the rest random; SIGHUP: a closed terminal
DEFAULT_TRIALS = [("SIGTERM", 4), ("SIGUSR1", 12), ("SIGHUP", 6)] + _trials(2, seed=13)
SLOW_TRIALS = _trials(20, seed=2026)


@pytest.mark.parametrize("sig,step", DEFAULT_TRIALS, ids=[f"{s}@{n}" for s, n in DEFAULT_TRIALS])
def test_signal_at_a_step_then_resume_is_bitwise_identical(tmp_path, reference, capsys, sig, step):
    name = signal_and_resume(tmp_path / "exp", sig, step, capsys)
    at_epoch_end = step % 4 == 0
    assert ("_step_" in name) or at_epoch_end, name
    _assert_same(_snapshot(tmp_path / "exp"), reference)


@pytest.mark.slow
@pytest.mark.parametrize("sig,step", SLOW_TRIALS, ids=[f"{s}@{n}" for s, n in SLOW_TRIALS])
def test_signal_at_random_steps_slow(tmp_path, reference, capsys, sig, step):
    signal_and_resume(tmp_path / "exp", sig, step, capsys)
    _assert_same(_snapshot(tmp_path / "exp"), reference)


def test_sighup_under_nohup_is_ignored_and_the_run_goes_on(tmp_path, capsys):
    """``nohup`` sets SIGHUP to be ignored so that the run outlives its terminal: the handler that turns it
    into a preemption is not installed then."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    faults.arm_signal("SIGHUP:step:3")
    try:
        code = kh.run_in_process([*kh.ARGS, "--output_dir", str(tmp_path / "exp"), "--num_runs", "1"])
    finally:
        faults.arm_signal(None)
        signal.signal(signal.SIGHUP, previous)
    assert code == 0 and not list((tmp_path / "exp").rglob("ckpt_*_step_*.pt"))
    assert signal.getsignal(signal.SIGHUP) is previous


def _python_child() -> None:
    """A child as a terminal starts it: SIGINT at its default (a test runner may ignore it, and a child
    inherits that), so that Python turns it into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupted(tmp_path: Path, at: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIMAX_SIGNAL_AT": f"SIGINT:{at}"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *kh.ARGS, *extra], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=_python_child)


def test_ctrl_c_says_how_to_continue_the_run_it_names(tmp_path, reference):
    out = tmp_path / "exp"
    proc = _interrupted(tmp_path, "step:6", "--output_dir", str(out))
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == f"mimax: interrupted; continue with: mimax train --resume {out}"  # one line
    assert kh.run_in_process(["--resume", str(out)]) == 0
    _assert_same(_snapshot(out), reference)


def test_ctrl_c_before_the_run_has_its_config_leaves_nothing(tmp_path):
    """Interrupted while writing its config.json, a fresh run left a folder that --resume called "not a mimax
    experiment directory" and advice to resume it."""
    out = tmp_path / "new" / "exp"
    proc = _interrupted(tmp_path, "write:config.json:1", "--output_dir", str(out))
    assert proc.returncode == 130 and proc.stderr.strip() == "mimax: interrupted; nothing was kept", proc.stderr
    assert not (tmp_path / "new").exists()


def test_a_closed_log_pipe_does_not_stop_the_run(tmp_path):
    """``mimax train ... | head -1``: once the reader is gone, the next progress line raised BrokenPipeError
    and the run stopped (exit 2, "cannot write an output file (Broken pipe); free space ...")."""
    out = tmp_path / "exp"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *kh.ARGS, "--output_dir", str(out)], cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline()  # the first line, as `head -1` reads it; then the reader goes away
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert err.strip() == "" and (out / "results.json").is_file()
    assert '"complete"' in (out / "status.json").read_text()


def test_sigterm_from_outside_at_a_random_moment(tmp_path, capsys):
    """A real ``main.py`` process signalled by another process while it trains (a longer run, so the
    signal lands inside training); the resumed run equals an uninterrupted one."""
    args = [*kh.ARGS, "--epochs", "40", "--num_runs", "1", "--model_save_interval", "10", "--mi_interval", "10",
            "--model_evaluation_interval", "20"]
    ref = tmp_path / "ref"
    assert kh.run_in_process([*args, "--output_dir", str(ref)]) == 0
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args, "--output_dir", str(out)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "seed_0" / "metrics.csv").is_file():  # training has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(random.Random(7).uniform(0.0, 0.3))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived (machine too fast for this trial)")
    assert proc.returncode == EXIT_PREEMPTED, err
    assert "Traceback" not in err and err.strip().startswith("mimax: stopped by SIGTERM at ")
    assert kh.run_in_process(["--resume", str(out)]) == 0
    _assert_same(_snapshot(out), _snapshot(ref))


@pytest.mark.parametrize("gpu_augment", [False, True])
def test_sigterm_to_the_process_group_reaches_dataloader_workers_and_still_checkpoints(tmp_path, gpu_augment):
    """What SLURM's scancel and time limit do: SIGTERM to every process of the job, DataLoader workers
    included. The workers leave it to the training process (before, a worker died of it and the run
    crashed with "DataLoader worker ... is killed by signal: Terminated", losing the steps since the last
    checkpoint): exit 75, the one line, a checkpoint at the step; `--resume` continues."""
    write_class_tree(tmp_path / "jpg", ["a", "b"], per_class=96, ext=".jpg", size=(20, 14))
    out = tmp_path / "exp"
    args = ["--dataset", "Folder", "--data_dir", str(tmp_path / "jpg"), "--image_size", "16", "--model_name", "SimCLR",
            "--resnet_width", "4", "--feature_dim", "16", "--projection_dim", "8", "--batch_size", "16",
            "--num_workers", "2", "--num_threads", "1", "--epochs", "40", "--mi_interval", "0", "--monitor_size", "16",
            "--model_save_interval", "40", *(["--gpu_augment"] if gpu_augment else [])]
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args, "--output_dir", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "seed_0" / "metrics.csv").is_file():  # epoch 1 is done: the workers are up
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)  # the training process and its DataLoader workers
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived (machine too fast for this trial)")
    assert proc.returncode == EXIT_PREEMPTED, err[-3000:]
    assert "Traceback" not in err and err.strip().startswith("mimax: stopped by SIGTERM at "), err[-3000:]
    assert len(_checkpoints(out / "seed_0")) == 1  # the step's (mid-epoch) or the epoch's checkpoint
    assert main(["train", "--resume", str(out), "--stop_after", "1"]) == 0


# --- time-based checkpoints, --resume auto ---------------------------------------------------------

def test_save_every_minutes_checkpoints_mid_epoch_and_a_kill_loses_at_most_one_step(tmp_path, reference):
    """With a clock that is always due, every step leaves a checkpoint (the older mid-epoch ones are
    removed); SIGKILL after step 7 and the resume starts from step 6, not from the epoch-1 checkpoint."""
    out = tmp_path / "exp"
    proc = kh.run([*kh.ARGS, "--save_every_minutes", "1e-9", "--output_dir", str(out)], kill_at="step:7")
    kh.assert_killed(proc, "step:7")
    ckpts = [p.name for p in _checkpoints(out / "seed_0")]
    assert ckpts == ["ckpt_epoch_0001.pt", "ckpt_epoch_0001_step_000002.pt"], ckpts
    assert kh.run_in_process(["--resume", str(out)]) == 0
    _assert_same(_snapshot(out), reference)


def test_checkpoints_off_the_save_schedule_go_once_superseded(tmp_path):
    """`--save_every_minutes` at an epoch's end and each `--stop_after` invocation's last epoch wrote an epoch
    checkpoint that was kept for good (a long run kept one full training state per tick); only the
    `--model_save_interval` ones and the last are kept, as in an uninterrupted run, and the newest always is."""
    args = [a if a != "1" or kh.ARGS[i - 1] != "--model_save_interval" else "2" for i, a in enumerate(kh.ARGS)]
    assert args[args.index("--model_save_interval") + 1] == "2" and args[args.index("--epochs") + 1] == "3"
    names = lambda out, seed: [p.name for p in _checkpoints(out / f"seed_{seed}")]  # noqa: E731
    plain, ticking, chunked = tmp_path / "plain", tmp_path / "ticking", tmp_path / "chunked"
    assert kh.run_in_process([*args, "--output_dir", str(plain)]) == 0
    assert kh.run_in_process([*args, "--save_every_minutes", "1e-9", "--output_dir", str(ticking)]) == 0
    assert kh.run_in_process([*args, "--stop_after", "1", "--output_dir", str(chunked)]) == 0
    assert names(chunked, 0) == ["ckpt_epoch_0001.pt"]  # the newest: what --resume continues from
    for _ in range(5):
        assert kh.run_in_process(["--resume", str(chunked), "--stop_after", "1"]) == 0
    for out in (plain, ticking, chunked):
        for seed in (0, 1):
            assert names(out, seed) == ["ckpt_epoch_0002.pt", "ckpt_epoch_0003.pt"], (out.name, names(out, seed))
    _assert_same(_snapshot(chunked), _snapshot(plain))


def test_resume_auto_starts_then_continues(tmp_path, reference, capsys):
    out = tmp_path / "exp"
    job = [*kh.ARGS, "--output_dir", str(out), "--resume", "auto"]
    faults.arm_signal("SIGTERM:step:6")  # the first submission starts the run and is preempted
    try:
        assert kh.run_in_process(job) == EXIT_PREEMPTED
    finally:
        faults.arm_signal(None)
    assert (out / "seed_0" / "checkpoints" / "ckpt_epoch_0001_step_000002.pt").is_file()
    assert kh.run_in_process(job) == 0  # the requeued job: the same command continues it
    _assert_same(_snapshot(out), reference)
    capsys.readouterr()
    assert main(["train", *kh.ARGS, "--resume", "auto"]) == 2
    assert capsys.readouterr().err.strip() == ("mimax: error: --resume: auto needs --output_dir (the run to "
                                               "continue, or to start there)")


def test_a_resumed_epoch_reports_the_time_and_throughput_of_all_its_steps(tmp_path, capsys):
    """A mid-epoch checkpoint keeps the epoch's training time so far; the resumed epoch's ``epoch_time_s`` adds
    both sessions and ``images_per_s`` divides all its images by it. Here the first session is made to have
    taken 1000 s (written into its checkpoint): before, the resumed epoch reported only the second session's
    time and all the epoch's images over it (10-20x the real throughput)."""
    out = tmp_path / "exp"
    faults.arm_signal("SIGTERM:step:2")  # epoch 1 of 4 steps, stopped after its second
    try:
        assert kh.run_in_process([*kh.ARGS, "--num_runs", "1", "--output_dir", str(out)]) == EXIT_PREEMPTED
    finally:
        faults.arm_signal(None)
    ckpt_file = _checkpoints(out / "seed_0")[-1]
    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=True)
    assert ckpt["partial"]["in_epoch"] == 2 and 0 < ckpt["partial"]["elapsed_s"] < 1000
    ckpt["partial"]["elapsed_s"] = 1000.0
    save_checkpoint(ckpt, ckpt_file)  # sealed again with its checksum
    assert kh.run_in_process(["--resume", str(out)]) == 0
    rows = read_csv(out / "seed_0" / "metrics.csv")
    first, later = rows[0], rows[1:]
    assert 1000 < float(first["epoch_time_s"]) < 1000 + 60
    assert float(first["images_per_s"]) == pytest.approx(4 * 64 / float(first["epoch_time_s"]), abs=0.051)  # 1 decimal
    assert all(float(r["epoch_time_s"]) < 60 for r in later)  # the uninterrupted epochs: their own time
    capsys.readouterr()


EXIT_WITH_LIVE_WORKERS = """
import sys
sys.path.insert(0, {src!r})
from mimax.config import resolve
from mimax.data import build_data
import torch
cfg = resolve(dict(model_name="SimCLR", dataset="Folder", data_dir={data!r}, image_size=8, batch_size=8,
                   monitor_size=4, num_workers=2))
LOADER = build_data(cfg, torch.device("cpu"), 0).train_views  # a module global: alive at interpreter exit
for _ in LOADER.epoch(1):
    pass
print("iterated", flush=True)
"""


def test_a_process_exits_while_a_loader_with_workers_is_still_alive(tmp_path):
    """mimax's workers ignore SIGTERM (preemption is the training process's); multiprocessing's exit hook
    SIGTERMs daemonic children and joins them without a timeout, so a loader alive at exit (a module global,
    or a reference cycle the GC had not collected: a finished `mimax train` with --num_workers 2) hung the
    process forever. mimax's own exit hook shuts the workers down first."""
    write_class_tree(tmp_path / "jpg", ["a"], per_class=16, ext=".jpg", size=(20, 14))
    script = tmp_path / "exit.py"
    script.write_text(EXIT_WITH_LIVE_WORKERS.format(src=str(ROOT / "src"), data=str(tmp_path / "jpg")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung at exit, joining DataLoader workers that ignore SIGTERM")
    assert proc.returncode == 0 and "iterated" in proc.stdout, proc.stderr[-2000:]


def test_a_run_started_with_its_output_streams_closed_trains(tmp_path):
    """``mimax train ... >&- 2>&-`` (a cron job, a detached launcher): Python's sys.stderr is then None and the
    progress bar raised AttributeError before the first step (exit 1)."""
    out = tmp_path / "exp"
    args = " ".join([sys.executable, str(ROOT / "main.py"), *kh.ARGS, "--num_runs", "1", "--output_dir", str(out)])
    proc = subprocess.run(["bash", "-c", f"exec {args} >&- 2>&-"], cwd=tmp_path, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and (out / "results.json").is_file()


def test_ctrl_c_during_a_resume_names_the_run(tmp_path, reference):
    out = tmp_path / "exp"
    assert kh.run_in_process([*kh.ARGS, "--output_dir", str(out), "--stop_after", "1"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIMAX_SIGNAL_AT": "SIGINT:write:env.json:1"}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--resume", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=_python_child)
    assert proc.returncode == 130 and proc.stderr == f"mimax: interrupted; continue with: mimax train --resume {out}\n"
    assert kh.run_in_process(["--resume", str(out)]) == 0
    _assert_same(_snapshot(out), reference)
