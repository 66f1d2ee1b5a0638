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

from mimax.errors import ConfigError
from mimax.naming import ascii_tag
from mimax.store.atomic import atomic_write_text
from mimax.store.checkpoint import first_sentence
from mimax.store.rundir import SeedDir


class ScalarLogger(Protocol):
    def log(self, scalars: dict[str, float], epoch: int) -> None: ...

    def close(self) -> None: ...


class TensorBoardLogger:
    """Event files in ``seed_<k>/tensorboard``. A run resumed after epoch ``resumed_epoch`` purges the events a
    killed session wrote past its checkpoint (TensorBoard's ``purge_step``): the epochs it trains again are
    not shown twice."""

    def __init__(self, log_dir: Path, resumed_epoch: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resumed_epoch is None else resumed_epoch + 1
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)

    def log(self, scalars: dict[str, float], epoch: int) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, epoch)

    def close(self) -> None:
        self.writer.close()


def wandb_run_id(path: Path) -> str:
    """The seed's W&B run id: read from ``path`` (``seed_<k>/wandb.json``), or created and written there first."""
    if path.is_file():
        return str(json.loads(path.read_text())["id"])
    alphabet = string.ascii_lowercase + string.digits  # W&B's id alphabet; never the seeded global RNGs
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    atomic_write_text(path, json.dumps({"id": run_id}) + "\n")
    return run_id


class WandbLogger:
    """A W&B run per seed (``--wandb_project``, ``--wandb_entity``, ``--wandb_mode``)."""

    def __init__(self, cfg, sd: SeedDir):
        import wandb

        exp = sd.path.parent.name
        try:
            self.run = wandb.init(
                project=cfg.wandb_project, entity=cfg.wandb_entity, mode=cfg.wandb_mode,
                id=wandb_run_id(sd.wandb_json), resume="allow", dir=str(sd.path), name=f"{exp}/seed_{sd.seed}",
                group=exp, config=cfg.to_dict(), reinit="finish_previous")
        except Exception as err:  # no API key, no network, a bad entity: W&B's own exception types vary
            why = f"{type(err).__name__}: {first_sentence(err)}"
            raise ConfigError("--wandb", f"W&B could not start a run ({why}); run `wandb login`, or give "
                                         "--wandb_mode offline (`wandb sync` uploads later)") from None
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")

    def log(self, scalars: dict[str, float], epoch: int) -> None:
        self.run.log({**scalars, "epoch": epoch})

    def close(self) -> None:
        self.run.finish()


def build_loggers(cfg, sd: SeedDir, resumed_epoch: int | None = None) -> list[ScalarLogger]:
    """The loggers ``cfg`` asks for; ``resumed_epoch``: the checkpoint's epoch when the seed is resumed."""
    loggers: list[ScalarLogger] = []
    if cfg.tensorboard:
        loggers.append(TensorBoardLogger(sd.tensorboard_dir, resumed_epoch))
    if cfg.wandb:
        loggers.append(WandbLogger(cfg, sd))
    return loggers


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """A ``metrics.csv`` row as ``train/<column>`` scalars (ASCII tags, :mod:`mimax.naming`)."""
    return {f"train/{ascii_tag(k)}": float(v) for k, v in row.items() if k != "epoch"}


def eval_scalars(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Evaluation results as ``eval/<encoder>/<metric>`` scalars."""
    return {f"eval/{ascii_tag(label)}/{k}": float(v) for label, m in results.items() for k, v in m.items()}


def mi_scalars(mi_rows: list[dict[str, Any]]) -> dict[str, float]:
    """The MI monitor's rows of an epoch: ``mi/<representation>/<estimator>/value|shuffled|gap`` for the
    fixed-critic contrast scores, ``mi/<representation>/critic-InfoNCE/value|ci_low|ci_high`` for the
    trained-critic MI estimate (a row's empty fields are left out)."""
    return {f"mi/{ascii_tag(r['representation'])}/{ascii_tag(r['estimator'])}/{k}": float(r[k])
            for r in mi_rows for k in ("value", "shuffled", "gap", "ci_low", "ci_high") if r.get(k, "") != ""}
