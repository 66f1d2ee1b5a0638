"""Experiment and run directories: creation without clobbering, environment records, resume lookup.

Layout::

    <output_dir>/            config.json  env.json  status.json  results.json  results.md
        seed_<k>/            config.json  env.json  status.json  metrics.csv  eval.csv  results.json
            checkpoints/     ckpt_epoch_<epoch>.pt
"""

from __future__ import annotations

import csv
import io
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mimax.config import RUNTIME_FIELDS, Config, ConfigError, validate
from mimax.engine.checkpoint import CKPT_RE, TEMP_RE, atomic_write_text


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
    from mimax.methods.registry import display_name

    return Path("runs") / f"{display_name(cfg.model_name)}_{cfg.dataset}_{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_experiment_dir(cfg: Config) -> Path:
    """Create the experiment directory for a new run; never reuse a non-empty one without ``--overwrite``.

    ``--overwrite`` only clears a directory that is itself a mimax experiment (has ``config.json``), so a
    mistyped path cannot wipe unrelated files.
    """
    out = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    if out.exists() and not out.is_dir():
        raise ConfigError("--output_dir", f"{out} exists and is not a directory")
    if out.is_dir() and not (out / "config.json").exists():
        _remove_torn_start(out)
    if out.is_dir() and any(out.iterdir()):
        if not cfg.overwrite:
            raise ConfigError("--output_dir", f"{out} already holds files; pass --overwrite to replace that "
                                              "run or --resume to continue it")
        if not (out / "config.json").is_file():
            raise ConfigError("--overwrite", f"{out} is not a mimax experiment (no config.json); refusing to clear it")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError("--output_dir", f"cannot write to {out} ({exc.strerror})") from None
    return out


def _remove_torn_start(out: Path) -> None:
    """A run killed while creating its directory leaves only ``.write_test`` or the temp file of its first
    ``config.json``/``env.json`` write; clear exactly those so the same command can start again."""
    entries = list(out.iterdir())
    torn = [p for p in entries if p.is_file() and (p.name == ".write_test" or (
        TEMP_RE.match(p.name) and p.name.startswith((".config.json.", ".env.json.", ".status.json."))))]
    if entries and len(torn) == len(entries):
        for p in torn:
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
    from mimax.methods import METHODS, MethodNotFound

    try:
        METHODS[cfg.model_name]
    except MethodNotFound as err:
        raise ConfigError("--resume", f"the run in {exp_dir} was trained with method {cfg.model_name!r}, which "
                                      f"cannot be loaded now: {err}") from None
    validate(cfg)
    return cfg
