"""Scalar loggers beside the CSVs (which are always written): TensorBoard (``--tensorboard``) and
Weights & Biases (``--wandb``). Each logs one epoch's ``metrics.csv`` row under ``train/`` and its
evaluation under ``eval/<encoder>/``; only rank 0 logs.

W&B: one W&B run per seed, grouped by the experiment directory. Its id is written to
``seed_<k>/wandb.json`` before ``wandb.init``, so ``--resume`` continues the same W&B run (``resume=
"allow"``), also in offline mode (``--wandb_mode offline``: no network; ``wandb sync`` uploads later).
Charts use ``epoch`` as their x axis, so epochs repeated after a resume from an earlier checkpoint are
kept, not dropped as out-of-order steps.
"""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path
from typing import Any, Protocol

from mimax.engine.checkpoint import atomic_write_text

WANDB_ID_FILE = "wandb.json"


class ScalarLogger(Protocol):
    def log(self, scalars: dict[str, float], epoch: int) -> None: ...

    def close(self) -> None: ...


class TensorBoardLogger:
    """Event files in ``seed_<k>/tensorboard``."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, scalars: dict[str, float], epoch: int) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, epoch)

    def close(self) -> None:
        self.writer.close()


def wandb_run_id(run_dir: Path) -> str:
    """The seed's W&B run id: read from ``wandb.json``, or created and written there first."""
    path = run_dir / WANDB_ID_FILE
    if path.is_file():
        return str(json.loads(path.read_text())["id"])
    alphabet = string.ascii_lowercase + string.digits  # W&B's id alphabet; never the seeded global RNGs
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    atomic_write_text(path, json.dumps({"id": run_id}) + "\n")
    return run_id


class WandbLogger:
    """A W&B run per seed (``--wandb_project``, ``--wandb_entity``, ``--wandb_mode``)."""

    def __init__(self, cfg, run_dir: Path, seed: int):
        import wandb

        exp = Path(cfg.output_dir).name if cfg.output_dir else run_dir.parent.name
        self.run = wandb.init(
            project=cfg.wandb_project, entity=cfg.wandb_entity, mode=cfg.wandb_mode, id=wandb_run_id(run_dir),
            resume="allow", dir=str(run_dir), name=f"{exp}/seed_{seed}", group=exp, config=cfg.to_dict(),
            reinit="finish_previous")
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")

    def log(self, scalars: dict[str, float], epoch: int) -> None:
        self.run.log({**scalars, "epoch": epoch})

    def close(self) -> None:
        self.run.finish()


def build_loggers(cfg, run_dir: Path, seed: int) -> list[ScalarLogger]:
    loggers: list[ScalarLogger] = []
    if cfg.tensorboard:
        loggers.append(TensorBoardLogger(run_dir))
    if cfg.wandb:
        loggers.append(WandbLogger(cfg, run_dir, seed))
    return loggers


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """A ``metrics.csv`` row as ``train/<column>`` scalars."""
    return {f"train/{k}": float(v) for k, v in row.items() if k != "epoch"}


def eval_scalars(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Evaluation results as ``eval/<encoder>/<metric>`` scalars."""
    return {f"eval/{label}/{k}": float(v) for label, m in results.items() for k, v in m.items()}
