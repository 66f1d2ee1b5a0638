"""The run directory is one run's: one writer at a time (an OS-released lock), ``--overwrite`` clears only
a directory mimax marked as its own, a checkpoint belongs to one run, output files respect the umask,
and a full disk (bytes or inodes, at any fill level) is one line, exit 2, and nothing lost."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_GAUSSIAN
from mimax.cli import main
from mimax.errors import UserError
from mimax.store.atomic import atomic_write_text
from mimax.store.checkpoint import load_checkpoint, save_checkpoint
from mimax.store.rundir import LOCK, MARKER, RunLock, SeedDir


def latest_checkpoint(seed_dir: Path) -> Path | None:
    return SeedDir.at(seed_dir).latest_checkpoint()


RUN = ["train", *TINY_GAUSSIAN, "--model_name", "JMI", "--epochs", "2", "--model_save_interval", "1"]
LONG = [*TINY_GAUSSIAN[:-2], "--model_name", "JMI", "--epochs", "400", "--gm_train_size", "4096",
        "--mi_interval", "0", "--model_evaluation_interval", "1000", "--num_threads", "1"]
ENV = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_lock(out: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not ((out / LOCK).is_file() and (out / LOCK).read_text().strip() == str(proc.pid)
               and (out / "seed_0" / "metrics.csv").is_file()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- one writer ----------------------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder_and_kill_9_frees_the_lock(tmp_path, capsys):
    """A training process holds the lock: a resume and an --overwrite are refused naming its PID. After
    ``kill -9`` of the holder the OS has released the lock: the resume proceeds at once."""
    out = tmp_path / "exp"
    holder = _start([*LONG, "--output_dir", str(out)])
    try:
        _wait_for_lock(out, holder)
        capsys.readouterr()
        assert main(["train", "--resume", str(out)]) == 2
        assert _err(capsys) == (f"mimax: error: --resume: {out} is in use by another mimax process (PID "
                                f"{holder.pid}); wait for it to finish or stop it first")
        assert main(["train", *LONG, "--output_dir", str(out), "--overwrite", "--initial_lr", "0.002"]) == 2
        assert f"is in use by another mimax process (PID {holder.pid})" in _err(capsys)
        assert (out / "config.json").is_file() and json.loads((out / "config.json").read_text())["initial_lr"] == 1e-3
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    killed = time.monotonic()
    lock = RunLock(out).acquire("--resume")  # no stale lock: acquired right after the kill
    acquired = time.monotonic() - killed
    lock.release()
    assert acquired < 1.0
    assert (out / LOCK).read_text().strip() == str(os.getpid())


def test_two_runs_started_together_on_one_directory(tmp_path):
    """Started at the same moment with different learning rates: exactly one trains, the other is
    refused with one line; the directory holds one consistent run (its config is the winner's)."""
    out = tmp_path / "exp"
    args = [*RUN[1:], "--output_dir", str(out)]
    procs = [_start([*args, "--initial_lr", lr]) for lr in ("0.001", "0.002")]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[2] == 2)
    assert "Traceback" not in loser[1]
    msg = loser[1].strip()
    assert ("is in use by another mimax process" in msg or "already holds files" in msg), msg
    winner_lr = [0.001, 0.002][[r[2] for r in results].index(0)]
    assert json.loads((out / "config.json").read_text())["initial_lr"] == winner_lr
    assert json.loads((out / "seed_0" / "config.json").read_text())["initial_lr"] == winner_lr


def test_resume_refuses_a_checkpoint_of_another_run_and_a_fresh_run_never_loads_one(tmp_path, capsys):
    """A checkpoint copied in from a run with another lr and seed is refused by --resume (run identity);
    a fresh run cannot start in a directory that holds one."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert main([*RUN, "--output_dir", str(ours), "--stop_after", "1"]) == 0
    assert main([*RUN, "--output_dir", str(theirs), "--initial_lr", "0.002", "--seed", "0", "--stop_after", "1"]) == 0
    foreign = load_checkpoint(latest_checkpoint(theirs / "seed_0"))
    target = ours / "seed_0" / "checkpoints" / "ckpt_epoch_0001.pt"
    target.write_bytes(latest_checkpoint(theirs / "seed_0").read_bytes())
    capsys.readouterr()
    assert main(["train", "--resume", str(ours)]) == 2
    assert _err(capsys).startswith(f"mimax: error: {target}: checkpoint belongs to another run (run id "
                                   f"{foreign['run_id']}, seed 0; this run is ")
    (ours / "seed_0" / "results.json").unlink(missing_ok=True)
    assert main([*RUN, "--output_dir", str(ours)]) == 2
    assert "already holds files" in _err(capsys)


# --- --overwrite -----------------------------------------------------------------------------------

def test_overwrite_replaces_a_marked_run_and_keeps_nothing_of_it(tmp_path):
    out = tmp_path / "exp"
    assert main([*RUN, "--output_dir", str(out), "--stop_after", "1"]) == 0
    old_id = json.loads((out / MARKER).read_text())["run_id"]
    assert main([*RUN, "--output_dir", str(out), "--overwrite", "--initial_lr", "0.002"]) == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["format"] == "mimax-run-v1" and marker["run_id"] != old_id
    assert json.loads((out / "seed_0" / "config.json").read_text())["initial_lr"] == 0.002
    assert load_checkpoint(latest_checkpoint(out / "seed_0"))["epoch"] == 2


@pytest.mark.parametrize("name", ["results.md", ".status.json.notes_v2.tmp"])
def test_overwrite_refuses_a_users_folder_named_like_a_mimax_file(tmp_path, capsys, name):
    """At the top level names alone were checked: a user's folder called results.md, or named like a temp
    file of status.json, was deleted with its contents by --overwrite."""
    out = tmp_path / "exp"
    assert main([*RUN, "--output_dir", str(out), "--stop_after", "1"]) == 0
    if (out / name).exists():
        (out / name).unlink()
    (out / name).mkdir()
    (out / name / "keep.txt").write_text("mine")
    capsys.readouterr()
    assert main([*RUN, "--output_dir", str(out), "--overwrite"]) == 2
    assert f"holds files mimax did not write ({name})" in capsys.readouterr().err
    assert (out / name / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("user_file", ["seed_0/notes.txt", "seed_0/analysis/fig.txt", "seed_0/checkpoints/best.pt",
                                       "seed_0/tensorboard/notes.md", "seed_0/link"])
def test_overwrite_refuses_a_run_with_a_user_file_inside_a_seed_directory(tmp_path, capsys, user_file):
    # only the top level was checked: a seed_<k> folder was cleared whole, with the user's files in it
    out = tmp_path / "exp"
    assert main([*RUN, "--output_dir", str(out), "--stop_after", "1", "--tensorboard"]) == 0
    assert main(["eval", str(out)]) == 0  # its records are mimax's own files too
    target = out / user_file
    target.parent.mkdir(parents=True, exist_ok=True)
    if user_file.endswith("link"):
        (tmp_path / "elsewhere").write_text("mine")
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.write_text("mine")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    capsys.readouterr()
    assert main([*RUN, "--output_dir", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    named = "seed_0/analysis" if "analysis" in user_file else user_file  # a folder of the user's: named whole
    assert f"holds files mimax did not write ({named})" in err, err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    target.unlink()
    if target.parent.name == "analysis":
        target.parent.rmdir()
    assert main([*RUN, "--output_dir", str(out), "--overwrite"]) == 0  # a run of mimax's files only


def test_runs_started_in_the_same_second_without_output_dir_get_their_own_folders(tmp_path, monkeypatch, capsys):
    # the default name is runs/<method>_<dataset>_<second>: the second job was refused, advised to --overwrite
    # the first one's run
    from mimax.store.rundir import ExperimentDir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ExperimentDir, "default_path", classmethod(lambda cls, cfg: Path("runs") / "JMI_Gaussian_x"))
    for _ in range(2):
        assert main(RUN) == 0
    assert main([*RUN, "--overwrite"]) == 0  # never clears the other run: the default name is not a request
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["JMI_Gaussian_x", "JMI_Gaussian_x-2",
                                                                     "JMI_Gaussian_x-3"]
    assert "run directory: runs/JMI_Gaussian_x-3" in capsys.readouterr().out
    (tmp_path / "runs" / "JMI_Gaussian_x-4").mkdir()  # just made by a job that holds its lock
    held = RunLock(tmp_path / "runs" / "JMI_Gaussian_x-4").acquire("--output_dir")
    try:
        assert main(RUN) == 0
    finally:
        held.release()
    assert (tmp_path / "runs" / "JMI_Gaussian_x-5" / "results.json").is_file()
    assert [p.name for p in (tmp_path / "runs" / "JMI_Gaussian_x-4").iterdir()] == [LOCK]


def test_a_failed_fresh_run_leaves_nothing_and_the_same_command_works(tmp_path, capsys):
    """A fresh run that fails after creating its directory (here: a data error) removes everything it
    created, down to the parent folders, so the identical command is not refused later."""
    out = tmp_path / "a" / "b" / "exp"
    data = tmp_path / "d"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(b"garbage")
    args = ["train", "--model_name", "JMI", "--dataset", "CIFAR10", "--data_dir", str(data), "--epochs", "1",
            "--warmup_epochs", "0", "--batch_size", "4", "--resnet_width", "8", "--num_threads", "1",
            "--output_dir", str(out)]
    assert main(args) == 2
    assert not (tmp_path / "a").exists()


# --- files: umask, checksums -----------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_output_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
        save_checkpoint({"x": torch.ones(2)}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    for name in ("f.json", "c.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_every_file_of_a_run_is_group_readable_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        assert main([*RUN, "--output_dir", str(tmp_path / "exp")]) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "exp").rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o644}, modes


def test_a_flipped_bit_in_tensor_data_is_refused(tmp_path):
    """Flip one bit inside a weight's stored bytes (found by its value): the load fails on the checksum."""
    path = tmp_path / "c.pt"
    weight = torch.full((64,), 0.123456789, dtype=torch.float32)
    save_checkpoint({"model": {"w": weight}}, path)
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(weight[:4].numpy().tobytes())
    assert at > 0
    raw[at + 5] ^= 0x01
    path.write_bytes(bytes(raw))
    assert torch.load(path, weights_only=True)["model"]["w"][1].item() != weight[1].item()  # torch loads it
    with pytest.raises(UserError, match="checkpoint is corrupt \\(its content does not match its checksum\\)"):
        load_checkpoint(path)


# --- a full disk, at every fill level --------------------------------------------------------------

def _mount(mnt: Path, options: str) -> None:
    mnt.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")


def _fill_and_recover(tmp_path: Path, options: str, capsys) -> tuple[int, str]:
    """Train on a tmpfs mounted with ``options``; on failure: one line, exit 2, no temp file; then grow
    the tmpfs and continue (--resume, or the same command when the fresh run kept nothing): it finishes."""
    mnt = tmp_path / "small"
    _mount(mnt, options)
    out = mnt / "o"
    args = [*RUN, "--epochs", "3", "--output_dir", str(out)]
    try:
        capsys.readouterr()
        code = main(args)
        err = capsys.readouterr().err.strip()
        leftovers = [p.name for p in mnt.rglob(".*.tmp")]
        assert leftovers == [], "a failed write must remove its temp file"
        if code == 0:
            return code, ""
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("mimax: error: "), err
        subprocess.run(["mount", "-o", "remount,size=64m,nr_inodes=100000", str(mnt)], check=True)
        again = ["train", "--resume", str(out)] if (out / "config.json").is_file() else args
        assert "--resume" in err or "same command" in err or again == args, err
        assert main(again) == 0
        assert json.loads((out / "status.json").read_text())["status"] == "complete"
        return code, err
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


DEFAULT_FILLS = ["size=48k", "nr_inodes=6"]
SLOW_FILLS = [f"size={k}k" for k in (4, 8, 16, 24, 32, 64, 96, 128, 200, 320, 480, 640)] + \
             [f"nr_inodes={n}" for n in (2, 3, 4, 5, 7, 8, 10, 12, 16, 24)]


@pytest.mark.parametrize("options", DEFAULT_FILLS)
def test_disk_full_at_a_fill_level(tmp_path, capsys, options):
    _fill_and_recover(tmp_path, options, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("options", SLOW_FILLS)
def test_disk_full_at_every_fill_level(tmp_path, capsys, options):
    code, err = _fill_and_recover(tmp_path, options, capsys)
    print(f"{options}: exit {code} {err}")


def _wandb_layout(seed_dir: Path, run_id: str = "51y5btx3") -> None:
    """What ``wandb.init(dir=seed_dir, id=run_id, mode="offline")`` leaves (W&B 0.19+): the run folder and
    W&B's three relative links into it; ``wandb.json`` is mimax's record of the id."""
    (seed_dir / "wandb.json").write_text(json.dumps({"id": run_id}) + "\n")
    run = seed_dir / "wandb" / f"offline-run-20261207_234953-{run_id}"
    for sub in ("files", "logs", "tmp"):
        (run / sub).mkdir(parents=True)
    (run / f"run-{run_id}.wandb").write_bytes(b":W&B\xe1\xbe\x00")
    (run / "logs" / "debug.log").write_text("")
    (seed_dir / "wandb" / "latest-run").symlink_to(run.name)
    (seed_dir / "wandb" / "debug.log").symlink_to(f"{run.name}/logs/debug.log")


@pytest.mark.parametrize("user_entry", ["notes.txt", "offline-run-20260101_000000-otherrun/keep.txt", "latest-run"])
def test_overwrite_refuses_what_w_and_b_did_not_write_in_its_folder(tmp_path, capsys, user_entry):
    """The whole wandb/ folder counted as mimax's: --overwrite deleted a user's notes in it, another W&B run's
    folder, and followed nothing but removed a link the user had pointed elsewhere."""
    out = tmp_path / "exp"
    assert main([*RUN, "--output_dir", str(out), "--stop_after", "1"]) == 0
    _wandb_layout(out / "seed_0")
    wandb = out / "seed_0" / "wandb"
    target = wandb / user_entry
    if user_entry == "latest-run":
        target.unlink()
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("mine")
    capsys.readouterr()
    assert main([*RUN, "--output_dir", str(out), "--overwrite"]) == 2
    named = f"seed_0/wandb/{Path(user_entry).parts[0]}"
    assert f"holds files mimax did not write ({named})" in capsys.readouterr().err
    assert target.is_symlink() or target.read_text() == "mine"


def test_overwrite_replaces_a_run_whose_wandb_folder_is_w_and_b_s_own(tmp_path):
    out = tmp_path / "exp"
    assert main([*RUN, "--output_dir", str(out), "--stop_after", "1"]) == 0
    _wandb_layout(out / "seed_0")
    assert main([*RUN, "--output_dir", str(out), "--overwrite"]) == 0
    assert not (out / "seed_0" / "wandb").exists()


def test_a_refused_resume_records_no_resume(tmp_path, capsys):
    """A seed's damaged env.json refuses the resume; the experiment's env.json had already recorded it, one
    phantom entry per attempt."""
    out = tmp_path / "exp"
    assert main([*RUN, "--output_dir", str(out), "--stop_after", "1"]) == 0
    before = (out / "env.json").read_text()
    (out / "seed_0" / "env.json").write_text('{"mimax": "0.1')
    for _ in range(2):
        capsys.readouterr()
        assert main(["train", "--resume", str(out)]) == 2
        assert "seed_0/env.json: unreadable" in capsys.readouterr().err
    assert (out / "env.json").read_text() == before
