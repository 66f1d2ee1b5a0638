"""What one seed of a run writes, one collaborator per file family, all on rank 0 and all atomic:

- :class:`MetricsLog`: ``metrics.csv`` (one row per epoch) and the scalar loggers (``--tensorboard``,
  ``--wandb``: :mod:`mimax.engine.loggers`);
- :class:`EvalLog`: ``eval.csv`` (linear probe / kNN per encoder, epoch 0 and every evaluation epoch);
- :class:`Checkpoints`: ``checkpoints/ckpt_epoch_<n>.pt`` (save, restore, the last good one);
- :class:`SeedRecord`: ``config.json``, ``env.json``, ``status.json`` and ``results.json`` of the seed.

Paths come from :class:`mimax.store.rundir.SeedDir`; the loop only calls these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mimax.callbacks import RunState
from mimax.engine.loggers import ScalarLogger, epoch_scalars, eval_scalars
from mimax.engine.precision import StepPrecision
from mimax.paradigms import Method
from mimax.store.atomic import atomic_torch_save, write_csv, write_json
from mimax.store.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    first_sentence,
    load_checkpoint,
    restore_rng_state,
    rng_state,
)
from mimax.store.rundir import SeedDir, environment


class MetricsLog:
    """``metrics.csv``: loss terms, LR, skipped steps, callback columns, epoch time and throughput."""

    def __init__(self, seed_dir: SeedDir, loggers: list[ScalarLogger] = (), resumed_epoch: int | None = None):
        self.path = seed_dir.metrics_csv
        self.rows = [] if resumed_epoch is None else seed_dir.read_rows("metrics", resumed_epoch)
        self.loggers = list(loggers)

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        write_csv(self.path, self.rows)  # always, whatever the loggers
        for logger in self.loggers:
            logger.log(epoch_scalars(row), row["epoch"])

    def log_eval(self, epoch: int, results: dict[str, dict[str, float]]) -> None:
        for logger in self.loggers:
            logger.log(eval_scalars(results), epoch)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


class EvalLog:
    """``eval.csv``: one row per (epoch, encoder)."""

    def __init__(self, seed_dir: SeedDir, resumed_epoch: int | None = None):
        self.path = seed_dir.eval_csv
        self.rows = [] if resumed_epoch is None else seed_dir.read_rows("eval", resumed_epoch)

    def add(self, epoch: int, results: dict[str, dict[str, float]]) -> None:
        self.rows += [{"epoch": epoch, "encoder": label, **m} for label, m in results.items()]
        write_csv(self.path, self.rows)

    def at(self, epoch: int) -> dict[str, dict[str, float]]:
        """The evaluation of ``epoch`` by encoder (numbers, also for rows read back from disk)."""
        return {r["encoder"]: {k: float(v) for k, v in r.items() if k not in ("epoch", "encoder")}
                for r in self.rows if int(r["epoch"]) == epoch}


class Checkpoints:
    """The seed's checkpoints: the full training state, written atomically, restored bitwise."""

    def __init__(self, seed_dir: SeedDir, cfg: Any):
        self.seed_dir, self.cfg = seed_dir, cfg

    def last_good(self) -> str:
        return str(self.seed_dir.latest_checkpoint() or "none (no checkpoint yet)")

    def save(self, state: RunState, optimizers: dict[str, torch.optim.Optimizer], precision: StepPrecision,
             random_init: dict[str, Any]) -> None:
        cfg = self.cfg
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "method": cfg.model_name, "architecture": cfg.architecture,
            "dataset": cfg.dataset, "epoch": state.epoch, "step": state.step, "seed": state.seed,
            "model": state.method.state_dict(), "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
            "rng": rng_state(), "random_init": random_init, "grad_scaler": precision.state_dict(),
            "input_shape": list(state.data.input_shape),  # lets `mimax export` rebuild the model without data
        }, self.seed_dir.checkpoint(state.epoch))

    def restore(self, path: Path, method: Method, optimizers: dict[str, torch.optim.Optimizer],
                precision: StepPrecision) -> dict[str, Any]:
        """Load ``path`` into the method, optimizers, grad scaler and global RNGs; returns the checkpoint."""
        ckpt = load_checkpoint(path)
        cfg = self.cfg
        for key, want in (("method", cfg.model_name), ("architecture", cfg.architecture), ("dataset", cfg.dataset)):
            if ckpt.get(key) != want:
                raise CheckpointError(f"{path}: checkpoint is for {key} {ckpt.get(key)!r}, this run uses {want!r}")
        try:
            method.load_state_dict(ckpt["model"])
            for name, opt in optimizers.items():
                opt.load_state_dict(ckpt["optimizers"][name])
        except (KeyError, RuntimeError, ValueError) as exc:
            reason = first_sentence(exc, 300)
            raise CheckpointError(f"{path}: checkpoint does not match this model ({reason})") from None
        restore_rng_state(ckpt["rng"])
        precision.load_state_dict(ckpt.get("grad_scaler", {}))
        return ckpt


class SeedRecord:
    """The seed's ``config.json``/``env.json`` (fresh runs), ``status.json`` and ``results.json``."""

    def __init__(self, seed_dir: SeedDir):
        self.seed_dir = seed_dir

    def start(self, cfg: Any, device: torch.device, world: int) -> None:
        write_json(self.seed_dir.config_json, cfg.to_dict())
        write_json(self.seed_dir.env_json, {**environment(device), "world_size": world,
                                            "per_rank_batch": cfg.batch_size // world})

    def status(self, epoch: int, complete: bool = False) -> None:
        self.seed_dir.write_status("complete" if complete else "incomplete", epoch)

    def finish(self, results: dict[str, Any]) -> None:
        write_json(self.seed_dir.results_json, results)
        self.status(results["epochs"], complete=True)
