"""Safe loading (weights_only checkpoints, safe YAML, no eval) and outputs that are never clobbered."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from mimax.config import resolve
from mimax.errors import UserError
from mimax.store.atomic import atomic_write_text, remove_stale_temp_files
from mimax.store.checkpoint import CheckpointError, load_checkpoint
from mimax.store.rundir import ExperimentDir

SRC = ROOT / "src" / "mimax"


class _Touch:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def prepare_experiment_dir(cfg) -> ExperimentDir:
    """A new experiment's directory, its lock held (the caller releases it)."""
    return ExperimentDir.create(cfg.output_dir, cfg.overwrite)


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    target = tmp_path / "pwned"
    ckpt = tmp_path / "ckpt_epoch_0001.pt"
    torch.save({"format": "mimax-checkpoint-v1", "x": _Touch(str(target))}, ckpt)
    torch.load(ckpt, weights_only=False)  # the payload is real: unrestricted unpickling runs it
    assert target.is_dir()
    target.rmdir()
    with pytest.raises(CheckpointError, match="refused: it holds pickled objects other than tensors"):
        load_checkpoint(ckpt)
    assert not target.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            yield node, owner, name


def test_sources_never_eval_or_load_unsafely():
    """No eval/exec, no pickle.load(s), no yaml.load / unsafe_load, every torch.load with weights_only=True."""
    files = sorted(SRC.rglob("*.py"))
    assert files
    for path in files:
        for node, owner, name in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            assert not (owner == "" and name in ("eval", "exec")), f"{where}: {name}()"
            assert not (owner == "pickle" and name in ("load", "loads")), f"{where}: pickle.{name}"
            assert not (owner == "yaml" and name in ("load", "unsafe_load", "full_load")), f"{where}: yaml.{name}"
            if owner == "torch" and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, \
                    f"{where}: torch.load without weights_only=True"


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    atomic_write_text(path, "old\n")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(UserError, match=r"cannot write .*metrics.csv \(No space left on device\)"):
        atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path):
    """Only mkstemp's names (``.<name>.<8 characters>.tmp``) around a file mimax writes there: a user's
    ``.notes.tmp`` or ``.analysis.tmp`` beside a run was deleted by every --resume."""
    from mimax.store.atomic import CKPT_RE

    (tmp_path / ".ckpt_epoch_0002.pt.ab_c1234.tmp").write_bytes(b"torn")
    kept = ["ckpt_epoch_0001.pt", "notes.tmp", ".notes.tmp", ".analysis.tmp", ".notes.txt.abcdefgh.tmp",
            ".ckpt_epoch_0002.pt.abc123.tmp"]
    for name in kept:
        (tmp_path / name).write_text("kept")
    owned = [p.name for p in remove_stale_temp_files(tmp_path, lambda name: bool(CKPT_RE.match(name)))]
    assert owned == [".ckpt_epoch_0002.pt.ab_c1234.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_resume_and_overwrite_leave_a_users_dot_tmp_files(tmp_path):
    """End to end: files a user put in a run (hidden ``.tmp`` names) survive ``--resume``, and make
    ``--overwrite`` refuse (they are not mimax's)."""
    from conftest import TINY_GAUSSIAN, run_cli

    out = tmp_path / "exp"
    first = run_cli(["train", *TINY_GAUSSIAN, "--epochs", "2", "--stop_after", "1", "--output_dir", str(out)])
    assert first.returncode == 0, first.stderr
    mine = [out / ".notes.tmp", out / "seed_0" / ".analysis.tmp", out / "seed_0" / "checkpoints" / ".keep.tmp"]
    for p in mine:
        p.write_text("user")
    assert run_cli(["train", "--resume", str(out)]).returncode == 0
    assert all(p.read_text() == "user" for p in mine)
    proc = run_cli(["train", *TINY_GAUSSIAN, "--epochs", "2", "--output_dir", str(out), "--overwrite"])
    assert proc.returncode == 2 and "holds files mimax did not write" in proc.stderr, proc.stderr
    assert all(p.read_text() == "user" for p in mine)


def _cfg(out: Path, **kw):
    return resolve({"dataset": "Gaussian", "output_dir": str(out), **kw})


def test_directory_of_a_run_killed_at_birth_is_reused(tmp_path):
    """Killed while writing its first config.json: only that temp file exists; the same command starts."""
    out = tmp_path / "exp"
    out.mkdir()
    (out / ".config.json.x1y2z3w4.tmp").write_text("{")
    claim = prepare_experiment_dir(_cfg(out))
    claim.release()
    assert claim.path == out
    assert sorted(p.name for p in out.iterdir()) == [".mimax-run", ".mimax.lock"]


def test_user_files_next_to_a_temp_file_still_block(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / ".config.json.x1y2z3w4.tmp").write_text("{")
    (out / "precious.txt").write_text("keep")
    with pytest.raises(UserError, match="already holds files"):
        prepare_experiment_dir(_cfg(out))
    with pytest.raises(UserError, match="not a mimax run"):
        prepare_experiment_dir(_cfg(out, overwrite=True))
    assert (out / "precious.txt").read_text() == "keep" and (out / ".config.json.x1y2z3w4.tmp").exists()


def test_a_run_whose_path_is_not_utf8_is_tabled_exported_and_analyzed(tmp_path):
    """Linux file names are bytes: a Latin-1 name (old archives, SMB shares) reaches Python as a lone
    surrogate. Training into such a folder worked, then table, export and analyze crashed with a
    UnicodeEncodeError (or matplotlib's TypeError) traceback. Their outputs now hold the escape ``\\udcff``."""
    import json

    from conftest import TINY_GAUSSIAN, run_cli

    run = tmp_path / os.fsdecode(b"caf\xe9_run")
    assert run_cli(["train", *TINY_GAUSSIAN, "--epochs", "1", "--output_dir", str(run)]).returncode == 0
    table = tmp_path / "t.md"
    proc = run_cli(["table", str(run), "--out", str(table)])
    assert proc.returncode == 0, proc.stderr
    assert "caf\\udce9_run" in table.read_text(encoding="utf-8")
    out = tmp_path / os.fsdecode(b"e\xff") / "x.pt"
    proc = run_cli(["export", str(run), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    sidecar = json.loads(Path(f"{out}.json").read_bytes().decode("utf-8"))  # valid UTF-8 and JSON
    assert str(run) in json.dumps(sidecar, ensure_ascii=False)  # the escape reads back as the real path
    proc = run_cli(["analyze", str(run), "--output_dir", str(tmp_path / "rep"), "--num_threads", "1"])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rep" / "analysis.png").stat().st_size > 0


def test_an_output_name_of_up_to_255_bytes_is_written_and_its_torn_temp_files_found(tmp_path):
    """The temp file of an atomic write was the name plus 14 bytes, so a legal 242-255 byte --out name failed
    with "File name too long"; its temp name is now cut to fit, and found again by the next write."""
    import shutil
    import tempfile

    from mimax.store.atomic import _temp_prefix, remove_torn_writes

    for size in (241, 242, 255):
        path = tmp_path / ("é" * 60 + "r" * (size - 123) + ".md")  # 2-byte characters: the cut may split one
        assert len(os.fsencode(path.name)) == size
        atomic_write_text(path, "table\n")
        assert path.read_text() == "table\n"
        torn = tmp_path / "torn"
        torn.mkdir()
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=torn)  # a killed write's
        os.close(fd)
        (torn / path.name).write_text("x")
        remove_torn_writes(torn / path.name)
        assert [p.name for p in torn.iterdir()] == [path.name]
        shutil.rmtree(torn)
    assert sorted(len(os.fsencode(p.name)) for p in tmp_path.iterdir()) == [241, 242, 255]  # no temp file left


def test_a_killed_runs_dataloader_workers_do_not_keep_it_locked(tmp_path):
    """The run lock is a flock, shared by every copy of its descriptor: the DataLoader workers forked from the
    run held it for seconds after the run was SIGKILLed (until their watchdog noticed), and the --resume
    right after was refused as "in use by another mimax process". Workers now close their copies."""
    import fcntl
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIMAX_KILL_AT": "write:ckpt:1"}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--dataset", "Digits", "--epochs", "2",
                           "--train_subset", "256", "--resnet_width", "4", "--batch_size", "32", "--num_threads", "1",
                           "--num_workers", "2", "--output_dir", str(out)], env=env, timeout=300,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # pipes: we would wait for the workers
    assert proc.returncode == -9
    fd = os.open(out / ".mimax.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # at once: nothing alive holds the run
    finally:
        os.close(fd)
