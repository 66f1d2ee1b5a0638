"""Reading runs back for ``mimax eval`` and ``mimax export``: the experiment and seed directories, the
saved config, a seed's checkpoints, and the method rebuilt from them through the method registry.

Layout (see :mod:`mimax.engine.rundir`): ``<experiment>/config.json`` and ``<experiment>/seed_<k>/
checkpoints/ckpt_epoch_<n>.pt``. Every mistake raises a one-line :class:`~mimax.errors.UserError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from mimax.config import Config
from mimax.engine.checkpoint import CheckpointError, latest_checkpoint
from mimax.errors import UserError

SEED_DIR_RE = re.compile(r"^seed_(\d+)$")
RUN_DIR_LAYOUT = "a mimax experiment directory (with config.json) or one of its seed_<k> directories"


@dataclass
class Run:
    """An experiment directory, its config, and the seed directories asked for."""

    exp_dir: Path
    cfg: Config
    seed_dirs: list[Path]


def read_config(exp_dir: Path) -> Config:
    """The experiment's saved ``config.json`` as a :class:`Config` (not re-validated: it was at training)."""
    path = exp_dir / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable config ({exc})") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path}: expected a JSON object of config fields")
    unknown = sorted(set(saved) - {f.name for f in fields(Config)})
    if unknown:
        raise UserError(f"{path}: fields this mimax does not know ({', '.join(unknown)}); "
                        "was the run trained by a newer version?")
    return Config(**saved)


def open_run(path: str) -> Run:
    """``path`` is an experiment directory (all its seeds) or one ``seed_<k>`` directory (that seed)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such directory; expected {RUN_DIR_LAYOUT}")
    if not p.is_dir():
        raise UserError(f"{p}: not a directory; expected {RUN_DIR_LAYOUT}")
    if SEED_DIR_RE.match(p.name) and (p.parent / "config.json").is_file():
        return Run(p.parent, read_config(p.parent), [p])
    if not (p / "config.json").is_file():
        raise UserError(f"{p}: not a mimax experiment (no config.json); expected {RUN_DIR_LAYOUT}")
    seeds = sorted((int(m.group(1)), d) for d in p.iterdir() if d.is_dir() and (m := SEED_DIR_RE.match(d.name)))
    return Run(p, read_config(p), [d for _, d in seeds])


def checkpoints_to_use(run: Run, checkpoint: str | None) -> list[tuple[Path, Path]]:
    """``(seed_dir, checkpoint file)`` pairs: the given ``--checkpoint`` (which must belong to ``run``), or
    the latest checkpoint of every seed directory that has one."""
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise UserError(f"--checkpoint: {ckpt} is not a file")
        seed_dir = ckpt.resolve().parent.parent
        if ckpt.resolve().parent.name != "checkpoints" or seed_dir not in [d.resolve() for d in run.seed_dirs]:
            raise UserError(f"--checkpoint: {ckpt} is not in {run.exp_dir}'s "
                            f"{'/'.join(d.name for d in run.seed_dirs) or 'seed_<k>'}/checkpoints/")
        return [(seed_dir, ckpt)]
    pairs = [(d, c) for d in run.seed_dirs if (c := latest_checkpoint(d)) is not None]
    if not pairs:
        raise UserError(f"{run.exp_dir}: no checkpoint found (expected seed_<k>/checkpoints/ckpt_epoch_<n>.pt)")
    return pairs


def rebuild_method(cfg: Config, ckpt: dict[str, Any], path: Path, input_shape: tuple[int, ...]) -> torch.nn.Module:
    """The method of ``cfg`` (from the registry) with the checkpoint's weights, in eval mode on the CPU."""
    from mimax.methods import METHODS, MethodNotFound

    for key, want in (("method", cfg.model_name), ("architecture", cfg.architecture), ("dataset", cfg.dataset)):
        if ckpt.get(key) != want:
            raise CheckpointError(f"{path}: checkpoint is for {key} {ckpt.get(key)!r}, the run's config says {want!r}")
    try:
        cls = METHODS[cfg.model_name]
    except MethodNotFound as err:
        raise UserError(f"{path}: the run's method {cfg.model_name!r} cannot be loaded now: {err}") from None
    method = cls(cfg, tuple(input_shape))
    try:
        method.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: checkpoint does not match the run's model ({reason})") from None
    return method.eval()

