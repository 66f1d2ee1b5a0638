"""Reading runs back for ``mimax eval`` and ``mimax export``: the experiment and the seeds asked for,
the saved config, a seed's checkpoints, and the method rebuilt from them through the method registry.

Paths and seed discovery belong to :mod:`mimax.store.rundir`. Every mistake raises a one-line
:class:`~mimax.errors.UserError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mimax.config import Config
from mimax.errors import UserError
from mimax.methods import METHODS, MethodNotFound, build_method
from mimax.store.checkpoint import CheckpointError
from mimax.store.rundir import ExperimentDir, SeedDir


@dataclass
class Run:
    """An experiment directory, its config, and the seed directories asked for."""

    exp: ExperimentDir
    cfg: Config
    seeds: list[SeedDir]

    @property
    def exp_dir(self) -> Path:
        return self.exp.path


def open_run(path: str) -> Run:
    """``path`` is an experiment directory (all its seeds) or one ``seed_<k>`` directory (that seed)."""
    exp, seeds = ExperimentDir.open(path)
    return Run(exp, exp.read_config(), seeds)


def checkpoints_to_use(run: Run, checkpoint: str | None) -> list[tuple[SeedDir, Path]]:
    """``(seed dir, checkpoint file)`` pairs: the given ``--checkpoint`` (which must belong to ``run``), or
    the latest checkpoint of every seed directory that has one."""
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise UserError(f"--checkpoint: {ckpt} is not a file")
        owner = next((s for s in run.seeds if s.owns_checkpoint(ckpt)), None)
        if owner is None:
            raise UserError(f"--checkpoint: {ckpt} is not in {run.exp_dir}'s "
                            f"{'/'.join(s.path.name for s in run.seeds) or 'seed_<k>'}/checkpoints/")
        return [(owner, ckpt)]
    pairs = [(s, c) for s in run.seeds if (c := s.latest_checkpoint()) is not None]
    if not pairs:
        raise UserError(f"{run.exp_dir}: no checkpoint found (expected seed_<k>/checkpoints/ckpt_epoch_<n>.pt)")
    return pairs


def rebuild_method(cfg: Config, ckpt: dict[str, Any], path: Path, input_shape: tuple[int, ...]) -> torch.nn.Module:
    """The method of ``cfg`` (from the registry) with the checkpoint's weights, in eval mode on the CPU."""
    for key, want in (("method", cfg.model_name), ("architecture", cfg.architecture), ("dataset", cfg.dataset)):
        if ckpt.get(key) != want:
            raise CheckpointError(f"{path}: checkpoint is for {key} {ckpt.get(key)!r}, the run's config says {want!r}")
    try:
        METHODS[cfg.model_name]
    except MethodNotFound as err:
        raise UserError(f"{path}: the run's method {cfg.model_name!r} cannot be loaded now: {err}") from None
    method = build_method(cfg, tuple(input_shape))
    try:
        method.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: checkpoint does not match the run's model ({reason})") from None
    return method.eval()
