"""Experiment and run directories: creation without clobbering, environment records, resume lookup.

Layout::

    <output_dir>/            .mimax-run  .mimax.lock  config.json  env.json  status.json  results.json  results.md
        seed_<k>/            config.json  env.json  status.json  metrics.csv  eval.csv  results.json
            checkpoints/     ckpt_epoch_<epoch>.pt  ckpt_epoch_<epoch>_step_<k>.pt

Ownership: ``.mimax-run`` (the marker, written first: format + run id) is what makes a directory provably
mimax's, so ``--overwrite`` clears nothing else. ``.mimax.lock`` carries an exclusive ``flock`` held by
the one process writing the directory; the OS releases it when that process exits or is killed, so a
``kill -9`` never leaves a stale lock.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mimax.config import RUNTIME_FIELDS, Config, ConfigError, validate
from mimax.engine.checkpoint import CKPT_RE, TEMP_RE, OutputWriteError, atomic_write_text
from mimax.errors import UserError

MARKER = ".mimax-run"
MARKER_FORMAT = "mimax-run-v1"
LOCK = ".mimax.lock"
# What mimax writes at the top of an experiment directory; --overwrite clears a marked directory only
# if it holds nothing else.
OWN_FILES = {MARKER, LOCK, "config.json", "env.json", "status.json", "results.json", "results.md", ".write_test"}
SEED_DIR = re.compile(r"^seed_\d+$")


def run_identity(cfg: Config, seed: int | None = None) -> str:
    """Hash of what is trained: the resolved config without its runtime fields (and the seed, for one
    seed's run). Two runs share it exactly when they train the same thing."""
    trained = {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_FIELDS}
    if seed is not None:
        trained["__seed__"] = seed
    return hashlib.sha256(json.dumps(trained, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunLock:
    """One writer per experiment directory: an exclusive ``flock`` on ``<dir>/.mimax.lock`` holding the
    owner's PID. Released by :meth:`release`, or by the OS when the process exits or is killed."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK
        self.fd: int | None = None

    def acquire(self, flag: str) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise UserError(f"{flag}: cannot write to {self.path.parent} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"{flag}: {self.path.parent} is in use by another mimax process (PID {holder}); "
                            "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The ``.mimax-run`` marker of ``directory`` if it is one mimax wrote, else None."""
    path = Path(directory) / MARKER
    try:
        if path.is_symlink() or not path.is_file():
            return None
        marker = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return marker if isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT else None


def write_marker(directory: Path, cfg: Any) -> None:
    """The marker: the format and the run id (for a folder of runs, e.g. the demo's, a hash of its options)."""
    run_id = (run_identity(cfg) if isinstance(cfg, Config) else
              hashlib.sha256(json.dumps(vars(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16])
    write_json(Path(directory) / MARKER, {"format": MARKER_FORMAT, "run_id": run_id})


def _check_clearable(out: Path) -> None:
    """Refuse ``--overwrite`` unless ``out`` is provably one mimax run and holds nothing else."""
    if read_marker(out) is None:
        raise ConfigError("--overwrite", f"{out} is not a mimax run (no {MARKER} marker); refusing to clear it")
    foreign = sorted(p.name for p in out.iterdir() if not (
        p.name in OWN_FILES or TEMP_RE.match(p.name)
        or (SEED_DIR.match(p.name) and p.is_dir() and not p.is_symlink())))
    if foreign:
        raise ConfigError("--overwrite", f"{out} holds files mimax did not write ({', '.join(foreign[:5])}); "
                                         "refusing to clear it")
    for root, dirs, files in os.walk(out):
        if Path(root) != out and MARKER in files:
            raise ConfigError("--overwrite", f"{out} holds another mimax run ({root}); refusing to clear it")


def _clear_run(out: Path) -> None:
    """Delete a checked mimax run's contents, keeping the lock file this process holds."""
    for p in out.iterdir():
        if p.name == LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def git_commit() -> str:
    """The git commit of the mimax source tree (``+dirty`` when it has uncommitted changes)."""
    for where in (Path(__file__).resolve().parents[3], Path.cwd()):
        try:
            head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                                  text=True, timeout=10)
            if head.returncode != 0:
                continue
            dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return head.stdout.strip() + ("+dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            continue
    return "unknown"


def environment(device: torch.device) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import numpy

    from mimax import __version__

    try:
        torchvision_version = version("torchvision")  # no import: torchvision takes seconds to import
    except PackageNotFoundError:
        torchvision_version = "not installed"

    return {
        "mimax": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision_version, "numpy": numpy.__version__, "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "git_commit": git_commit(), "argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(Path(path), json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite a CSV atomically; columns are the union of the rows' keys in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), buf.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def default_output_dir(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.model_name}_{cfg.dataset}_{time.strftime('%Y%m%d-%H%M%S')}"


def check_output_path(out: Path, overwrite: bool) -> None:
    """What can be refused before anything exists: a symlink, a non-directory, the current directory."""
    try:
        if out.is_symlink():
            raise ConfigError("--output_dir", f"{out} is a symbolic link; give the real directory "
                                              f"({os.path.realpath(out)})")
        if out.exists() and not out.is_dir():
            raise ConfigError("--output_dir", f"{out} exists and is not a directory")
        if overwrite:
            here, target = Path.cwd().resolve(), out.resolve()
            if here == target or target in here.parents:
                raise ConfigError("--overwrite", f"{out} is the current directory or holds it; refusing to "
                                                 "clear it (run from elsewhere)")
    except OSError as exc:
        raise ConfigError("--output_dir", f"cannot use {out} ({exc.strerror})") from None


@dataclass
class Claim:
    """An experiment directory this process writes: its path, the held lock, and the topmost directory
    this invocation created (None when it existed), which a failed fresh run removes again."""

    path: Path
    lock: RunLock
    created: Path | None = None

    def release(self) -> None:
        self.lock.release()

    def discard(self) -> None:
        """Undo a fresh run that failed before training anything: delete what it wrote (only mimax's
        own files are there), then the directories it created, if empty."""
        for p in self.path.iterdir():
            if p.name != LOCK and (p.name in OWN_FILES or TEMP_RE.match(p.name) or SEED_DIR.match(p.name)):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        if self.created is not None:
            (self.path / LOCK).unlink(missing_ok=True)
        self.lock.release()
        if self.created is not None:
            _remove_empty_dirs(self.path, self.created)


def _remove_empty_dirs(path: Path, top: Path) -> None:
    """``rmdir`` ``path`` and its parents up to ``top`` while they are empty."""
    for p in [path, *path.parents]:
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return


def prepare_experiment_dir(cfg: Config) -> Claim:
    """Create (or, with ``--overwrite``, clear) the experiment directory of a new run and take its lock.

    The lock is taken before the directory's content is looked at, so of two runs started together on
    one directory exactly one proceeds. ``--overwrite`` clears only a directory carrying mimax's marker
    and nothing but mimax's files. A refused run removes the directory it created."""
    out = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    check_output_path(out, cfg.overwrite)
    if out.is_dir() and read_marker(out) is None and _torn_start(out) is None:  # not ours: leave it untouched
        if not cfg.overwrite:
            raise ConfigError("--output_dir", f"{out} already holds files; pass --overwrite to replace that "
                                              "run or --resume to continue it")
        raise ConfigError("--overwrite", f"{out} is not a mimax run (no {MARKER} marker); refusing to clear it")
    created = _missing_ancestor(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--output_dir", f"cannot write to {out} ({exc.strerror})") from None
    try:
        claim = Claim(out, RunLock(out).acquire("--output_dir"), created)
    except BaseException:
        if created is not None:
            _remove_empty_dirs(out, created)
        raise
    try:
        if not (out / "config.json").exists():
            _remove_torn_start(out)
        if any(p.name != LOCK for p in out.iterdir()):
            if not cfg.overwrite:
                raise ConfigError("--output_dir", f"{out} already holds files; pass --overwrite to replace "
                                                  "that run or --resume to continue it")
            _check_clearable(out)
            _clear_run(out)
        try:
            write_marker(out, cfg)
        except OutputWriteError as exc:
            raise ConfigError("--output_dir", str(exc)) from None
    except BaseException:
        if claim.created is not None:
            claim.discard()
        else:
            claim.release()
        raise
    return claim


def claim_for_resume(exp_dir: Path) -> Claim:
    """Take the lock of an existing experiment directory for ``--resume``."""
    return Claim(exp_dir, RunLock(exp_dir).acquire("--resume"))


def _missing_ancestor(path: Path) -> Path | None:
    """The topmost of ``path`` and its parents that does not exist yet (what ``mkdir -p`` would create)."""
    missing = None
    for p in [path, *path.parents]:
        if os.path.lexists(p):
            break
        missing = p
    return missing


def _torn_start(out: Path) -> list[Path] | None:
    """The entries of a directory that holds nothing but what a run killed while creating it leaves (its
    marker, lock, ``.write_test``, the temp file of its first ``config.json``/``env.json`` write; an empty
    directory qualifies with ``[]``), else None."""
    entries = [p for p in out.iterdir() if p.name != LOCK]
    torn = [p for p in entries if p.is_file() and (p.name in (".write_test", MARKER) or (
        TEMP_RE.match(p.name) and p.name.startswith((".config.json.", ".env.json.", ".status.json.",
                                                     f".{MARKER}."))))]
    return torn if len(torn) == len(entries) else None


def _remove_torn_start(out: Path) -> None:
    """Clear a torn start (never the lock this process holds) so the same command can start again."""
    for p in _torn_start(out) or []:
        p.unlink(missing_ok=True)


def find_experiment_dir(path: str) -> tuple[Path, Path | None]:
    """Map ``--resume PATH`` (experiment dir, ``seed_<k>`` dir or checkpoint file) to
    ``(experiment_dir, checkpoint_file or None)``."""
    p = Path(path)
    if not p.exists():
        raise ConfigError("--resume", f"{p} does not exist")
    ckpt = None
    if p.is_file():
        if not CKPT_RE.match(p.name) or p.parent.name != "checkpoints":
            raise ConfigError("--resume", f"{p} is not a checkpoint (expected <run>/seed_<k>/checkpoints/"
                                          "ckpt_epoch_<n>.pt)")
        ckpt, p = p, p.parent.parent.parent
    elif p.name.startswith("seed_") and (p.parent / "config.json").is_file():
        p = p.parent
    if not (p / "config.json").is_file():
        raise ConfigError("--resume", f"{p} is not a mimax experiment directory (no config.json)")
    return p, ckpt


def resume_config(exp_dir: Path, given: dict[str, Any]) -> Config:
    """The saved config of ``exp_dir`` with the runtime flags of this invocation applied. Flags that would
    change what is trained (method, architecture, data, hyperparameters) are refused."""
    try:
        saved = json.loads((exp_dir / "config.json").read_text())
        cfg = Config(**saved)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError("--resume", f"{exp_dir / 'config.json'} is unreadable ({exc})") from None
    for key, value in given.items():
        if key in RUNTIME_FIELDS:
            setattr(cfg, key, value)
        elif getattr(cfg, key) != value:
            raise ConfigError(f"--{key}", f"the run in {exp_dir} was trained with {key}={getattr(cfg, key)!r}; "
                                          f"resuming with {value!r} is refused")
    cfg.output_dir = str(exp_dir)
    cfg.resume = str(exp_dir)
    validate(cfg)
    return cfg
