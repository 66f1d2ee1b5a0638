"""The run directory: every path and file of an experiment and of a seed, in one place.

Layout::

    <output_dir>/            .mimax-run  .mimax.lock  config.json  env.json  status.json  results.json  results.md
        seed_<k>/            config.json  env.json  status.json  results.json
                             metrics.csv  eval.csv  mi.csv  trajectories.json  eval_ckpt_epoch_<n>.json
            checkpoints/     ckpt_epoch_<epoch>.pt  ckpt_epoch_<epoch>_step_<k>.pt (mid-epoch)

Ownership: ``.mimax-run`` (the marker, written first: format + run id) is what makes a directory provably
mimax's, so ``--overwrite`` clears nothing else. ``.mimax.lock`` carries an exclusive ``flock`` held by
the one process writing the directory; the OS releases it when that process exits or is killed, so a
``kill -9`` never leaves a stale lock.

:class:`ExperimentDir` and :class:`SeedDir` own these names: creating an experiment without clobbering,
finding its seeds (numeric order: ``seed_10`` after ``seed_2``), reading ``config.json`` back, and a
seed's checkpoints. Nothing else in mimax builds these paths or globs run directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy
import torch

from mimax import __version__
from mimax.config import RUNTIME_FIELDS, Config, validate
from mimax.config.parsing import coerce, field_type
from mimax.config.presets import refuse_unread_data_flags
from mimax.config.schema import whole_warmup
from mimax.errors import ConfigError, UserError
from mimax.methods import METHODS, MethodNotFound
from mimax.methods.registry import canonical_name, display_name
from mimax.naming import RUN_MARKER, printable
from mimax.store.atomic import (
    CKPT_RE,
    OutputWriteError,
    checkpoint_position,
    read_csv,
    remove_stale_temp_files,
    temp_file_of,
    write_json,
)

SEED_DIR_RE = re.compile(r"^seed_(\d+)$")
RUN_DIR_LAYOUT = "a mimax experiment directory (with config.json) or one of its seed_<k> directories"
MARKER = RUN_MARKER
MARKER_FORMAT = "mimax-run-v1"
LOCK = ".mimax.lock"
# What mimax writes at the top of an experiment directory; --overwrite clears a marked directory only if
# it holds nothing else.
OWN_FILES = {MARKER, LOCK, "config.json", "env.json", "status.json", "results.json", "results.md", ".write_test"}


def run_identity(cfg: Config, seed: int | None = None) -> str:
    """Hash of what is trained: the resolved config without its runtime fields (and the seed, for one
    seed's run). Two runs share it exactly when they train the same thing."""
    trained = {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_FIELDS}
    if seed is not None:
        trained["__seed__"] = seed
    return hashlib.sha256(json.dumps(trained, sort_keys=True, default=str).encode()).hexdigest()[:16]


_HELD_LOCK_FDS: set[int] = set()  # this process's run locks: a forked child (a DataLoader worker) closes them


def _close_inherited_locks() -> None:
    """In a forked child: close its copies of the parent's lock descriptors. A flock belongs to the open file,
    shared by every copy, so a DataLoader worker outliving its SIGKILLed parent by seconds (until its watchdog
    notices) kept the run locked, and the ``--resume`` right after was refused as "in use"."""
    for fd in list(_HELD_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


class RunLock:
    """One writer per experiment directory: an exclusive ``flock`` on ``<dir>/.mimax.lock`` holding the
    owner's PID. Released by :meth:`release`, or by the OS when the process exits or is killed (its forked
    children do not hold it: :func:`_close_inherited_locks`)."""

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
            raise RunInUse(f"{flag}: {self.path.parent} is in use by another mimax process (PID {holder}); "
                           "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        _HELD_LOCK_FDS.add(fd)
        return self

    def release(self) -> None:
        if self.fd is not None:
            _HELD_LOCK_FDS.discard(self.fd)
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


class RunInUse(UserError):
    """The run directory's lock is held by another process."""


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


def git_commit() -> str:
    """The git commit of the mimax source tree (``+dirty`` when it has uncommitted changes), or ``unknown``
    when mimax is not run from a git checkout of its own source: an installed mimax may sit inside someone
    else's repository (a project-local ``.venv``), whose commit says nothing about mimax's code."""
    root = Path(__file__).resolve().parents[3]  # <root>/src/mimax/store/rundir.py in a source checkout

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
            return "unknown"
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, machine, device, git commit and command line, for ``env.json``."""
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


def read_env(env_json: Path) -> dict[str, Any]:
    """A run's ``env.json`` (``{}`` if there is none); a damaged one is refused in one line: rewriting it would
    lose the start's record silently."""
    try:
        env = json.loads(env_json.read_text())
        if not isinstance(env, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        env = {}  # nothing recorded to keep
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # rewriting it would lose the start's record silently
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split("\n")[0][:120]
        raise UserError(f"{env_json}: unreadable ({reason}); resuming would replace the run's record of how it "
                        "started (versions, command, machine): restore the file, or start again with --overwrite"
                        ) from None
    return env


def record_resume(env_json: Path, device: torch.device, **extra: Any) -> None:
    """Append this invocation's environment (:func:`environment` and ``extra``: process count, epoch, ...) to
    ``env.json``'s ``resumes`` list; the start's entries stay as written (a damaged file is refused, not
    replaced: :func:`read_env`). A run resumed on another machine, torch or number of processes says so (its
    ``world_size`` used to stay the first invocation's)."""
    env = read_env(env_json)
    env["resumes"] = [*(env.get("resumes") if isinstance(env.get("resumes"), list) else []),
                      {**environment(device), **extra}]
    write_json(env_json, env)


def config_from_saved(saved: Any, path: Path) -> Config:
    """A saved ``config.json`` as a :class:`Config` (not re-validated: it was at training). Runs written
    before ``view_recipe`` was resolved at training time get the method's augmentation family."""
    if not isinstance(saved, dict):
        raise UserError(f"{path}: expected a JSON object of config fields")
    unknown = sorted(set(saved) - {f.name for f in fields(Config)})
    if unknown:
        raise UserError(f"{path}: fields this mimax does not know ({', '.join(unknown)}); "
                        "was the run trained by a newer version?")
    try:  # a damaged file (a hand edit, a bad copy) is one line, not a crash later
        typed = {k: coerce(k, v) if field_type(k)[0] in (int, float, bool, str) else v for k, v in saved.items()}
    except ConfigError as err:
        raise UserError(f"{path}: damaged config ({err})") from None
    cfg = Config(**typed)
    if not isinstance(cfg.model_name, str) or not cfg.model_name.strip():
        raise UserError(f"{path}: damaged config (unknown method {cfg.model_name!r})")
    # a user method (import path, entry point) is loaded where it is needed, with its own one-line error
    method = METHODS.get(cfg.model_name)
    if cfg.view_recipe in (None, "auto") and method is not None:
        cfg.view_recipe = method.view_recipe
    return cfg


@dataclass(frozen=True)
class SeedDir:
    """One seed's directory: its files, its checkpoints."""

    path: Path
    seed: int

    config_json = property(lambda self: self.path / "config.json")
    env_json = property(lambda self: self.path / "env.json")
    status_json = property(lambda self: self.path / "status.json")
    results_json = property(lambda self: self.path / "results.json")
    metrics_csv = property(lambda self: self.path / "metrics.csv")
    eval_csv = property(lambda self: self.path / "eval.csv")
    mi_csv = property(lambda self: self.path / "mi.csv")
    trajectories_json = property(lambda self: self.path / "trajectories.json")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    tensorboard_dir = property(lambda self: self.path / "tensorboard")
    monitors_png = property(lambda self: self.path / "monitors.png")
    wandb_json = property(lambda self: self.path / "wandb.json")  # the seed's W&B run id (resume continues it)

    @classmethod
    def at(cls, path: Path | str) -> SeedDir:
        """The seed directory at ``path`` (``seed_<k>``; another name gets seed -1)."""
        path = Path(path)
        m = SEED_DIR_RE.match(path.name)
        return cls(path, int(m.group(1)) if m else -1)

    # what mimax writes in a seed directory (the properties above, `mimax eval`'s records, W&B's own folder)
    OWN_FILES = frozenset({"config.json", "env.json", "status.json", "results.json", "metrics.csv", "eval.csv",
                           "mi.csv", "trajectories.json", "monitors.png", "wandb.json"})
    EVAL_RECORD_RE = re.compile(r"^eval_ckpt_epoch_\d+(?:_step_\d+)?\.json$")
    TFEVENTS_PREFIX = "events.out.tfevents."

    def create(self) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)

    def foreign_entries(self) -> list[Path]:
        """Entries of this seed directory mimax did not write: anything but its files (:attr:`OWN_FILES`,
        `mimax eval`'s records, atomic-write temp files), ``checkpoints/`` holding checkpoints only,
        ``tensorboard/`` holding event files only, and W&B's ``wandb/`` folder holding this seed's W&B run only
        (:meth:`foreign_wandb_entries`); a symlink anywhere else is foreign
        (``--overwrite`` must not delete, or follow, what a user put there)."""
        subdirs = {"checkpoints": CKPT_RE.match, "tensorboard": lambda n: n.startswith(self.TFEVENTS_PREFIX)}
        foreign = []
        for p in self.path.iterdir():
            if own_file(p, self.owns_file_name):
                continue
            if p.is_symlink() or not p.is_dir() or p.name not in (*subdirs, "wandb"):
                foreign.append(p)
            elif p.name in subdirs:
                foreign += [q for q in p.iterdir() if not own_file(q, subdirs[p.name])]
            else:
                foreign += self.foreign_wandb_entries()
        return foreign

    WANDB_LINKS = frozenset({"latest-run", "debug.log", "debug-internal.log"})

    def foreign_wandb_entries(self) -> list[Path]:
        """Entries of ``wandb/`` that W&B did not write for this seed's run: its own are the run folders
        ``(offline-)run-<date>_<time>-<id>`` of the id in ``wandb.json``, and W&B's links ``latest-run``,
        ``debug.log`` and ``debug-internal.log`` into them."""
        try:
            run_id = str(json.loads(self.wandb_json.read_text())["id"])
        except (OSError, ValueError, KeyError, TypeError):
            run_id = None  # no id recorded: nothing in wandb/ is provably this run's
        own_run = re.compile(rf"(offline-)?run-\d{{8}}_\d{{6}}-{re.escape(run_id)}") if run_id else None

        def own(p: Path) -> bool:
            if own_run is None:
                return False
            if p.is_symlink():  # a link W&B made: relative, into one of this run's folders
                target = Path(os.readlink(p))
                inside = bool(target.parts) and not target.is_absolute() and ".." not in target.parts
                return p.name in self.WANDB_LINKS and inside and bool(own_run.fullmatch(target.parts[0]))
            return p.is_dir() and bool(own_run.fullmatch(p.name))

        return [p for p in (self.path / "wandb").iterdir() if not own(p)]

    def owns_file_name(self, name: str) -> bool:
        """A file name mimax writes in a seed directory."""
        return name in self.OWN_FILES or bool(self.EVAL_RECORD_RE.match(name))

    def remove_torn_writes(self) -> None:
        """Temp files of atomic writes a killed session left (the seed dir and its checkpoints)."""
        remove_stale_temp_files(self.path, self.owns_file_name)
        remove_stale_temp_files(self.checkpoint_dir, lambda name: bool(CKPT_RE.match(name)))

    def checkpoint(self, epoch: int, step_in_epoch: int = 0) -> Path:
        """The checkpoint after ``epoch`` epochs and ``step_in_epoch`` steps of the next one (mid-epoch)."""
        mid = f"_step_{step_in_epoch:06d}" if step_in_epoch else ""
        return self.checkpoint_dir / f"ckpt_epoch_{epoch:04d}{mid}.pt"

    def checkpoints(self) -> list[Path]:
        """The seed's checkpoints in training order (a mid-epoch one between its epoch's neighbours)."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = sorted((pos, p) for p in self.checkpoint_dir.iterdir() if (pos := checkpoint_position(p)))
        return [p for _, p in found]

    def remove_superseded(self, newest: Path, scheduled: Callable[[int], bool]) -> None:
        """Delete the checkpoints older than ``newest`` that only exist to survive preemption: the mid-epoch ones,
        and the epoch ones whose epoch is not ``scheduled`` (written at an epoch's end by ``--save_every_minutes``,
        a signal or ``--stop_after``, off the ``--model_save_interval`` schedule: kept, a long run's disk grew
        by a full training state per tick)."""
        keep = checkpoint_position(newest)
        for p in self.checkpoints():
            pos = checkpoint_position(p)
            if pos < keep and (pos[1] or not scheduled(pos[0])):
                p.unlink(missing_ok=True)

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def epochs_done(self) -> int:
        """Completed epochs of the latest checkpoint (0 without one)."""
        latest = self.latest_checkpoint()
        return checkpoint_position(latest)[0] if latest is not None else 0

    def owns_checkpoint(self, path: Path) -> bool:
        path = Path(path).resolve()
        return path.parent == self.checkpoint_dir.resolve() and CKPT_RE.match(path.name) is not None

    def eval_record(self, epoch: int, step_in_epoch: int = 0) -> Path:
        """Where ``mimax eval`` writes its re-evaluation of the checkpoint of ``epoch`` (and, for a mid-epoch
        checkpoint, ``step_in_epoch`` steps into the next epoch)."""
        mid = f"_step_{step_in_epoch:06d}" if step_in_epoch else ""
        return self.path / f"eval_ckpt_epoch_{epoch:04d}{mid}.json"

    def write_status(self, status: str, epoch: int | None = None, **extra: Any) -> None:
        record = {"status": status, **({} if epoch is None else {"epoch": epoch}), "seed": self.seed, **extra}
        write_json(self.status_json, record)

    def read_results(self) -> dict[str, Any] | None:
        return json.loads(self.results_json.read_text()) if self.results_json.is_file() else None

    def read_rows(self, which: str, up_to_epoch: int | None = None) -> list[dict[str, str]]:
        """Rows of ``metrics``, ``eval`` or ``mi`` (.csv), optionally those of epochs <= ``up_to_epoch``."""
        rows = read_csv(self.path / f"{which}.csv")
        return rows if up_to_epoch is None else [r for r in rows if int(r["epoch"]) <= up_to_epoch]


# what `mimax train` advises when --output_dir already holds files
OCCUPIED_ADVICE = "pass --overwrite to replace that run or --resume to continue it"


class ExperimentDir:
    """An experiment directory: its config, environment, status and results, and its seeds."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.lock: RunLock | None = None  # held while this process writes the experiment
        self.created: Path | None = None  # the topmost folder this invocation created
        self.lock_created = False  # whether this invocation created the lock file (in a folder that existed)

    def claim(self, flag: str = "--resume") -> ExperimentDir:
        """Take the experiment's lock (one writer); refused with one line naming the holder's PID."""
        self.lock = RunLock(self.path).acquire(flag)
        return self

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def discard(self) -> None:
        """Undo a fresh run that failed before it kept anything: delete what it wrote (only mimax's files
        are there), then the folders this invocation created, if empty."""
        for p in self.path.iterdir():
            if p.name != LOCK and (p.name in OWN_FILES or temp_file_of(p.name, OWN_FILES.__contains__)
                                   or SEED_DIR_RE.match(p.name)):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        self.release_and_drop_lock()
        if self.created is not None:
            _remove_empty_dirs(self.path, self.created)

    def release_and_drop_lock(self) -> None:
        """Release the lock, and delete its file if this invocation created it (its folder, or the file in an
        existing folder): a failed fresh run leaves nothing behind."""
        if self.created is not None or self.lock_created:
            (self.path / LOCK).unlink(missing_ok=True)
        self.release()

    def __repr__(self) -> str:
        return f"ExperimentDir({str(self.path)!r})"

    config_json = property(lambda self: self.path / "config.json")
    env_json = property(lambda self: self.path / "env.json")
    status_json = property(lambda self: self.path / "status.json")
    results_json = property(lambda self: self.path / "results.json")
    results_md = property(lambda self: self.path / "results.md")

    def recorded_threads(self) -> int | None:
        """The torch CPU thread count the run's last session trained and evaluated with (``env.json``: its last
        resume's, else the start's), or None where not recorded."""
        try:
            env = json.loads(self.env_json.read_text())
        except (OSError, ValueError):
            return None
        sessions = [env, *(env.get("resumes") or [])] if isinstance(env, dict) else []
        threads = [s.get("cpu_threads") for s in sessions if isinstance(s, dict)]
        last = threads[-1] if threads else None
        return last if isinstance(last, int) and last >= 1 else None

    def is_experiment(self) -> bool:
        return self.config_json.is_file()

    def seed(self, seed: int) -> SeedDir:
        return SeedDir(self.path / f"seed_{seed}", seed)

    def seeds(self) -> list[SeedDir]:
        """The seed directories that exist, in numeric order."""
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), d) for d in self.path.iterdir() if d.is_dir() and (m := SEED_DIR_RE.match(d.name))]
        return [SeedDir(d, k) for k, d in sorted(found)]

    def finished_seeds(self) -> list[SeedDir]:
        return [s for s in self.seeds() if s.results_json.is_file()]

    # --- config ---------------------------------------------------------------------------------
    def read_config(self) -> Config:
        """The saved ``config.json`` as a :class:`Config`; a one-line :class:`UserError` if unusable."""
        try:
            saved = json.loads(self.config_json.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.config_json}: unreadable config ({exc})") from None
        return config_from_saved(saved, self.config_json)

    def read_config_dict(self) -> dict[str, Any] | None:
        """The saved config as plain JSON values (None if missing or unreadable)."""
        try:
            saved = json.loads(self.config_json.read_text())
        except (OSError, ValueError):
            return None
        return saved if isinstance(saved, dict) else None

    def write_config(self, cfg: Config) -> None:
        write_json(self.config_json, {**cfg.to_dict(), "output_dir": str(self.path)})

    def write_env(self, device: torch.device, **extra: Any) -> None:
        write_json(self.env_json, {**environment(device), **extra})

    def write_status(self, status: str) -> None:
        write_json(self.status_json, {"status": status})

    def read_results(self) -> dict[str, Any]:
        """``results.json`` of a finished experiment; one-line :class:`UserError` otherwise."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such experiment directory")
        if SEED_DIR_RE.match(self.path.name) and (self.path.parent / "config.json").is_file():
            raise UserError(f"{self.path}: a seed of the experiment {self.path.parent}; give the experiment "
                            "directory (its results.json holds every seed)")
        if not self.results_json.is_file():
            raise UserError(f"{self.path}: no results.json (expected a finished mimax experiment directory)")
        try:
            return json.loads(self.results_json.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.results_json}: not a mimax results file ({exc})") from None

    def remove_torn_writes(self) -> None:
        remove_stale_temp_files(self.path, OWN_FILES.__contains__)

    # --- creation -------------------------------------------------------------------------------
    @classmethod
    def default_path(cls, cfg: Config) -> Path:
        return Path("runs") / f"{display_name(cfg.model_name)}_{cfg.dataset}_{time.strftime('%Y%m%d-%H%M%S')}"

    @classmethod
    def create(cls, output_dir: str | None, overwrite: bool, default: Path | None = None,
               run_id: str = "", occupied: str = OCCUPIED_ADVICE) -> ExperimentDir:
        """Create (or, with ``overwrite``, clear) the directory of a new experiment and take its lock.
        ``occupied``: what the refusal of a folder that already holds files advises (the command's own flags).

        The lock is taken before the directory's content is looked at, so of two runs started together on
        one directory exactly one proceeds. ``overwrite`` clears only a directory carrying mimax's marker
        and nothing but mimax's files; a directory without the marker is refused untouched (not even a
        lock file is created in it). A refused run removes the folders it created. The returned
        experiment holds the lock: :meth:`release` it (or :meth:`discard` a failed fresh run)."""
        if not output_dir:
            return cls._create_default(default, run_id, occupied)
        out = Path(output_dir)
        check_output_path(out, overwrite)
        if out.is_dir() and read_marker(out) is None and _torn_start(out) is None:
            if not overwrite:
                raise ConfigError("--output_dir", f"{out} already holds files; {occupied}")
            raise ConfigError("--overwrite", f"{out} is not a mimax run (no {MARKER} marker); refusing to clear it")
        created = _missing_ancestor(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("--output_dir", f"cannot write to {out} ({exc.strerror})") from None
        exp = cls(out)
        exp.created = created
        exp.lock_created = not os.path.lexists(out / LOCK)
        try:
            exp.claim("--output_dir")
        except BaseException:
            if created is not None:
                _remove_empty_dirs(out, created)
            raise
        try:
            if not (out / "config.json").exists():
                for p in _torn_start(out) or []:
                    p.unlink(missing_ok=True)
            if any(p.name != LOCK for p in out.iterdir()):
                if not overwrite:
                    raise ConfigError("--output_dir", f"{out} already holds files; {occupied}")
                _check_clearable(out)
                _clear_run(out)
            try:
                write_json(out / MARKER, {"format": MARKER_FORMAT, "run_id": run_id})
            except OutputWriteError as exc:
                raise ConfigError("--output_dir", str(exc)) from None
        except BaseException:
            if created is not None:
                exp.discard()
            else:
                exp.release_and_drop_lock()
            raise
        return exp

    @classmethod
    def _create_default(cls, default: Path, run_id: str, occupied: str) -> ExperimentDir:
        """The default folder (named by the second it starts), or, when another run already took that name
        (array jobs started in the same second), the same name with ``-2``, ``-3``, ...: never ``--overwrite``
        there, which would clear the other job's run."""
        for k in range(1, 1000):
            path = default if k == 1 else default.with_name(f"{default.name}-{k}")
            if path.is_dir() and any(p.name != LOCK for p in path.iterdir()):
                continue
            try:
                return cls.create(str(path), False, run_id=run_id, occupied=occupied)
            except RunInUse:
                continue
            except ConfigError:
                if path.is_dir() and any(p.name != LOCK for p in path.iterdir()):
                    continue  # filled by another run in the meantime
                raise
        raise ConfigError("--output_dir", f"{default} and its 998 numbered variants are taken; give --output_dir")

    # --- opening what the user points at --------------------------------------------------------
    @classmethod
    def for_resume(cls, path: str) -> tuple[ExperimentDir, Path | None]:
        """``--resume PATH`` (experiment dir, ``seed_<k>`` dir or checkpoint file) as
        ``(experiment, checkpoint file or None)``."""
        p = Path(path)
        if not p.exists():
            raise ConfigError("--resume", f"{p} does not exist")
        ckpt = None
        if p.is_file():
            if not CKPT_RE.match(p.name) or p.parent.name != "checkpoints":
                raise ConfigError("--resume", f"{p} is not a checkpoint (expected <run>/seed_<k>/checkpoints/"
                                              "ckpt_epoch_<n>.pt)")
            ckpt, p = p, p.parent.parent.parent
        elif SEED_DIR_RE.match(p.name) and (p.parent / "config.json").is_file():
            p = p.parent
        if not (p / "config.json").is_file():
            raise ConfigError("--resume", f"{p} is not a mimax experiment directory (no config.json)")
        return cls(p), ckpt

    @classmethod
    def open(cls, path: str | Path) -> tuple[ExperimentDir, list[SeedDir]]:
        """``path`` is an experiment directory (all its seeds) or one ``seed_<k>`` directory (that seed)."""
        p = Path(path)
        if not p.exists():
            raise UserError(f"{p}: no such directory; expected {RUN_DIR_LAYOUT}")
        if not p.is_dir():
            raise UserError(f"{p}: not a directory; expected {RUN_DIR_LAYOUT}")
        if SEED_DIR_RE.match(p.name) and (p.parent / "config.json").is_file():
            return cls(p.parent), [SeedDir.at(p)]
        exp = cls(p)
        if not exp.is_experiment():
            raise UserError(f"{p}: not a mimax experiment (no config.json); expected {RUN_DIR_LAYOUT}")
        return exp, exp.seeds()

    def resume_config(self, given: dict[str, Any]) -> Config:
        """The saved config with the runtime flags of this invocation applied. Flags that would change
        what is trained (method, architecture, data, hyperparameters) are refused."""
        try:
            saved = json.loads(self.config_json.read_text())
            cfg = config_from_saved(saved, self.config_json)
        except (OSError, ValueError, TypeError, UserError) as exc:
            raise ConfigError("--resume", f"{self.config_json} is unreadable ({exc})") from None
        cfg.stop_after = None  # an invocation's own budget: a resume without it trains to the end
        refuse_unread_data_flags(cfg.dataset, given, METHODS.get(cfg.model_name))  # e.g. --download on Digits
        for key, value in given.items():
            # the same normalization a fresh run applies (config.presets.resolve_with_notes), so that the command
            # that started the run also continues it (a requeued job script runs unchanged)
            if key == "model_name" and isinstance(value, str):
                value = canonical_name(value)
            if key == "warmup_epochs":  # a flag's 1.0 is the run's 1 (said as such when refused)
                value = whole_warmup(value)
            if key == "view_recipe" and value == "auto":  # the method's declared recipe: what the run resolved
                continue
            if key == "method_options" and isinstance(value, dict):  # each option given, against the saved one
                for name, option in value.items():
                    if cfg.method_options.get(name) != option:
                        raise ConfigError(f"--{name}", f"the run in {self.path} was trained with {name}="
                                                       f"{cfg.method_options.get(name)!r}; resuming with {option!r} "
                                                       "is refused")
                continue
            if key == "output_dir" and value is not None and not _same_path(value, self.path):
                raise ConfigError("--output_dir", f"{value} is not the run being resumed ({self.path}); a resumed run "
                                                  "continues in its own directory (drop --output_dir)")
            if key in RUNTIME_FIELDS:
                setattr(cfg, key, value)
            elif getattr(cfg, key) != value:
                raise ConfigError(f"--{key}", f"the run in {self.path} was trained with {key}={getattr(cfg, key)!r}; "
                                              f"resuming with {value!r} is refused")
        cfg.output_dir = str(self.path)
        cfg.resume = str(self.path)
        try:
            METHODS[cfg.model_name]
        except MethodNotFound as err:
            raise ConfigError("--resume", f"the run in {self.path} was trained with method {cfg.model_name!r}, "
                                          f"which cannot be loaded now: {err}") from None
        validate(cfg)
        return cfg


def recorded_model_name(resume: str, output_dir: str | None = None) -> str | None:
    """The ``model_name`` in the ``config.json`` of the run ``--resume`` names (its experiment directory, a
    ``seed_<k>`` directory or a checkpoint file; ``auto``: ``--output_dir``), or None where none can be read
    (resuming itself reports why)."""
    where = output_dir if resume == "auto" else resume
    if not where:
        return None
    path = Path(where).expanduser()
    for folder in (path, *path.parents[:3]):  # <run>/seed_<k>/checkpoints/ckpt_epoch_<n>.pt at most
        config = ExperimentDir(folder).config_json
        if config.is_file():
            try:
                name = json.loads(config.read_text()).get("model_name")
            except (OSError, ValueError, AttributeError):
                return None
            return name if isinstance(name, str) else None
    return None


def _same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same place (after ``~``, ``..`` and symbolic links)."""
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


# the longest path a run writes under its directory: a mid-epoch checkpoint's temp file, bounded for any seed
# (32-bit) and epoch count (7 digits)
DEEPEST_RUN_FILE = Path("seed_4294967295", "checkpoints", ".ckpt_epoch_9999999_step_999999.pt.abcdefgh.tmp")


def own_file(p: Path, named: Callable[[str], Any]) -> bool:
    """A regular file (no symlink) named as mimax names its files there (``named``), or the temp file of one:
    mimax writes regular files only, so a folder or link so named is the user's."""
    return not p.is_symlink() and p.is_file() and bool(named(p.name) or temp_file_of(p.name, named))


def check_run_path_length(out: Path) -> None:
    """The run's deepest file must fit the file system's PATH_MAX: found only at the first checkpoint, after
    training, it cost the epochs trained (and a rerun failed the same way)."""
    path_max = 4096
    with contextlib.suppress(OSError, ValueError):
        path_max = os.pathconf("/", "PC_PATH_MAX")
    if len(os.fsencode(str(out / DEEPEST_RUN_FILE))) >= path_max:
        raise ConfigError("--output_dir", f"too long: the paths of the run's files under it (seed_<k>/checkpoints/"
                                          f"...) would exceed this file system's limit of {path_max} bytes; use a "
                                          "shorter path")


def check_output_path(out: Path, overwrite: bool) -> None:
    """What can be refused before anything exists: a symlink, a non-directory, the current directory, a path
    too long for the run's files."""
    check_run_path_length(out)
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


def _torn_start(out: Path) -> list[Path] | None:
    """The entries of a directory that holds nothing but what a run killed while creating it leaves (its
    marker, ``.write_test``, the temp file of its marker's or first ``config.json``/``env.json`` write; an
    empty directory gives ``[]``), else None. The lock file is never listed."""
    entries = [p for p in out.iterdir() if p.name != LOCK]
    torn = [p for p in entries if p.is_file() and (p.name in (".write_test", MARKER) or (
        temp_file_of(p.name, {"config.json", "env.json", "status.json", MARKER}.__contains__)))]
    return torn if len(torn) == len(entries) else None


def _check_clearable(out: Path) -> None:
    """Refuse ``--overwrite`` unless ``out`` is provably one mimax run and holds nothing else, at its top level
    and inside its seed directories (:meth:`SeedDir.foreign_entries`)."""
    if read_marker(out) is None:
        raise ConfigError("--overwrite", f"{out} is not a mimax run (no {MARKER} marker); refusing to clear it")
    for root, _, files in os.walk(out):
        if Path(root) != out and MARKER in files:
            raise ConfigError("--overwrite", f"{out} holds another mimax run ({root}); refusing to clear it")
    foreign = sorted(p.name for p in out.iterdir() if not (
        own_file(p, OWN_FILES.__contains__) or (SEED_DIR_RE.match(p.name) and p.is_dir() and not p.is_symlink())))
    for d in sorted(out.iterdir()):  # and inside each seed directory (a user's notes or analysis beside the run)
        if SEED_DIR_RE.match(d.name) and d.is_dir() and not d.is_symlink():
            foreign += sorted(str(p.relative_to(out)) for p in SeedDir.at(d).foreign_entries())
    if foreign:
        raise ConfigError("--overwrite", f"{out} holds files mimax did not write ({', '.join(foreign[:5])}); "
                                         "refusing to clear it")


def _clear_run(out: Path) -> None:
    """Delete a checked mimax run's contents, keeping the lock file this process holds."""
    for p in out.iterdir():
        if p.name == LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _missing_ancestor(path: Path) -> Path | None:
    """The topmost of ``path`` and its parents that does not exist yet (what ``mkdir -p`` would create)."""
    missing = None
    for p in [path, *path.parents]:
        if os.path.lexists(p):
            break
        missing = p
    return missing


def _remove_empty_dirs(path: Path, top: Path) -> None:
    """``rmdir`` ``path`` and its parents up to ``top`` while they are empty."""
    for p in [path, *path.parents]:
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return


def enclosing_run(path: Path) -> Path | None:
    """The mimax run (a directory carrying :data:`MARKER`) that holds ``path`` at any depth, found along the path
    as given (absolute, links kept: named so in messages) or else along its real location (``shortcut/x`` where
    ``shortcut`` links into a run); None when no run holds it."""
    given = Path(path).expanduser().absolute()
    for parents in (given.parents, given.resolve().parents):
        found = next((d for d in parents if os.path.isfile(d / MARKER)), None)
        if found is not None:
            return found
    return None


def check_outside_runs(out: Path, run_dirs: Sequence[str | Path] = (), flag: str = "--out",
                       what: str = "tables and figures") -> None:
    """Refuse an output of ``mimax table``/``plot``/``export``/``embed``/``analyze`` (or a new run's directory)
    inside a mimax run directory, at any depth, whether it exists or not: inside one of ``run_dirs`` (the runs
    the command reads; for a ``seed_<k>`` given, its experiment too) or below any directory holding mimax's run
    marker (:data:`MARKER`), by the path as given or by its real location (:func:`enclosing_run`). A run holds
    only what its training wrote: ``--out RUN/seed_0/metrics.csv --overwrite`` replaced the run's own file, and
    any file put there would make ``--overwrite`` refuse to clear the run."""
    target = Path(out).expanduser().resolve()
    runs = [d.parent if SEED_DIR_RE.match(d.name) and (d.parent / "config.json").is_file() else d
            for d in map(Path, run_dirs)]
    inside = next((d for d in runs if _same_path(d, target) or d.expanduser().resolve() in target.parents), None)
    if inside is None:
        inside = enclosing_run(Path(out))
    if inside is not None:
        raise UserError(f"{flag}: {out} is inside the mimax run {inside}, which holds only what its training "
                        f"wrote; write {what} outside run directories")


def run_label(path: Path) -> str:
    """A short name of a run directory for figure legends: ``exp/seed_k`` or ``exp``."""
    path = Path(path)
    return printable(f"{path.parent.name}/{path.name}" if SEED_DIR_RE.match(path.name) else path.name)
