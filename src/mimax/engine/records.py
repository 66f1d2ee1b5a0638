"""What one seed of a run writes, one collaborator per file family, all on rank 0 and all atomic:

- :class:`MetricsLog`: ``metrics.csv`` (one row per epoch) and the scalar loggers (``--tensorboard``,
  ``--wandb``: :mod:`mimax.engine.loggers`);
- :class:`EvalLog`: ``eval.csv`` (linear probe / kNN per encoder, epoch 0 and every evaluation epoch);
- :class:`Checkpoints`: ``checkpoints/ckpt_epoch_<n>.pt`` and mid-epoch ``ckpt_epoch_<n>_step_<k>.pt``
  (save with the run's identity and a checksum, restore, the last good one);
- :class:`SeedRecord`: ``config.json``, ``env.json``, ``status.json`` and ``results.json`` of the seed.

Paths come from :class:`mimax.store.rundir.SeedDir`; the loop only calls these.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from mimax.callbacks import RunState
from mimax.engine.loggers import ScalarLogger, epoch_scalars, eval_scalars, mi_scalars
from mimax.engine.precision import StepPrecision
from mimax.paradigms import Method
from mimax.store.atomic import read_csv, write_csv, write_json
from mimax.store.checkpoint import (
    CheckpointError,
    first_sentence,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from mimax.store.rundir import SeedDir, environment, record_resume, run_identity


def restored_rows(path: Path, epochs: set[int], upto: int, ckpt_name: str) -> list[dict[str, str]]:
    """The rows of ``path`` (metrics.csv, eval.csv) up to epoch ``upto``, which must hold ``epochs``; an
    emptied or damaged file is refused (rewriting it would lose its earlier rows silently)."""
    advice = f"resuming from {ckpt_name} needs its rows of epochs up to {upto}: restore the file, or start again " \
             "with --overwrite"
    try:
        rows = [r for r in read_csv(path) if int(r["epoch"]) <= upto]
    except KeyError:
        raise CheckpointError(f"{path}: unreadable (no epoch column); {advice}") from None
    except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as exc:
        raise CheckpointError(f"{path}: unreadable ({first_sentence(exc)}); {advice}") from None
    missing = sorted(epochs - {int(r["epoch"]) for r in rows})
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise CheckpointError(f"{path}: lacks the rows of epoch(s) {shown} (emptied or damaged); resuming from "
                              f"{ckpt_name} would lose them: restore the file, or start again with --overwrite")
    return rows


class MetricsLog:
    """``metrics.csv``: loss terms, LR, skipped steps, callback columns, epoch time and throughput."""

    def __init__(self, seed_dir: SeedDir, loggers: list[ScalarLogger] = (), resumed_epoch: int | None = None,
                 ckpt_name: str = ""):
        self.path = seed_dir.metrics_csv
        self.rows = [] if resumed_epoch is None else restored_rows(
            self.path, set(range(1, resumed_epoch + 1)), resumed_epoch, ckpt_name)
        self.loggers = list(loggers)

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        write_csv(self.path, self.rows)  # always, whatever the loggers
        for logger in self.loggers:
            logger.log(epoch_scalars(row), row["epoch"])

    def log_mi(self, epoch: int, mi_rows: list[dict[str, Any]] | None) -> None:
        """The MI monitor's rows of this epoch (:func:`mimax.engine.loggers.mi_scalars`)."""
        for logger in self.loggers:
            scalars = mi_scalars(mi_rows or [])
            if scalars:
                logger.log(scalars, epoch)

    def log_eval(self, epoch: int, results: dict[str, dict[str, float]]) -> None:
        for logger in self.loggers:
            logger.log(eval_scalars(results), epoch)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


class EvalLog:
    """``eval.csv``: one row per (epoch, encoder)."""

    def __init__(self, seed_dir: SeedDir, resumed_epoch: int | None = None, expected: set[int] = frozenset(),
                 ckpt_name: str = ""):
        """``expected``: the epochs whose rows a resumed run must find (0 and the evaluation epochs)."""
        self.path = seed_dir.eval_csv
        self.rows = [] if resumed_epoch is None else restored_rows(self.path, set(expected), resumed_epoch, ckpt_name)

    def add(self, epoch: int, results: dict[str, dict[str, float]]) -> None:
        self.rows += [{"epoch": epoch, "encoder": label, **m} for label, m in results.items()]
        write_csv(self.path, self.rows)

    def at(self, epoch: int) -> dict[str, dict[str, float]]:
        """The evaluation of ``epoch`` by encoder (numbers, also for rows read back from disk)."""
        return {r["encoder"]: {k: float(v) for k, v in r.items() if k not in ("epoch", "encoder")}
                for r in self.rows if int(r["epoch"]) == epoch}


class Checkpoints:
    """The seed's checkpoints: the full training state, written atomically with the run's identity (a hash
    of the resolved config and the seed) and a checksum, restored bitwise. A mid-epoch checkpoint (after
    ``in_epoch`` steps of epoch ``state.epoch``) also holds the epoch's running loss sums; a newer
    checkpoint deletes the older ones that only exist to survive preemption (mid-epoch, or off the schedule)."""

    def __init__(self, seed_dir: SeedDir, cfg: Any):
        self.seed_dir, self.cfg = seed_dir, cfg
        self.run_id = run_identity(cfg, seed_dir.seed)

    def last_good(self) -> str:
        return str(self.seed_dir.latest_checkpoint() or "none (no checkpoint yet)")

    def save(self, state: RunState, optimizers: dict[str, torch.optim.Optimizer], precision: StepPrecision,
             random_init: dict[str, Any], in_epoch: int = 0, partial: dict[str, Any] | None = None) -> Path:
        cfg = self.cfg
        epoch = state.epoch - 1 if in_epoch else state.epoch  # completed epochs
        path = self.seed_dir.checkpoint(epoch, in_epoch)
        save_checkpoint({
            "method": cfg.model_name, "architecture": cfg.architecture, "dataset": cfg.dataset,
            "epoch": epoch, "step": state.step, "seed": state.seed, "run_id": self.run_id,
            "model": state.method.state_dict(), "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
            "rng": rng_state(), "random_init": random_init, "grad_scaler": precision.state_dict(),
            "input_shape": list(state.data.input_shape),  # lets `mimax export` rebuild the model without data
            "partial": {"in_epoch": in_epoch, **(partial or {})} if in_epoch else {},
        }, path)
        self.seed_dir.remove_superseded(path, self.scheduled)
        return path

    def scheduled(self, epoch: int) -> bool:
        """Whether ``epoch``'s checkpoint is one the run keeps: every ``--model_save_interval`` epochs and the last."""
        return epoch % self.cfg.model_save_interval == 0 or epoch == self.cfg.epochs

    def restore(self, path: Path, method: Method, optimizers: dict[str, torch.optim.Optimizer],
                precision: StepPrecision) -> dict[str, Any]:
        """Load ``path`` into the method, optimizers, grad scaler and global RNGs; returns the checkpoint."""
        ckpt = load_checkpoint(path)
        cfg = self.cfg
        for key, want in (("method", cfg.model_name), ("architecture", cfg.architecture), ("dataset", cfg.dataset)):
            if ckpt.get(key) != want:
                raise CheckpointError(f"{path}: checkpoint is for {key} {ckpt.get(key)!r}, this run uses {want!r}")
        if ckpt["run_id"] != self.run_id:
            raise CheckpointError(f"{path}: checkpoint belongs to another run (run id {ckpt['run_id']}, seed "
                                  f"{ckpt['seed']}; this run is {self.run_id}: its config or seed differ); refusing it")
        try:
            method.load_state_dict(ckpt["model"])
            for name, opt in optimizers.items():
                opt.load_state_dict(ckpt["optimizers"][name])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            reason = first_sentence(exc, 300)
            raise CheckpointError(f"{path}: checkpoint does not match this model ({reason})") from None
        try:
            restore_rng_state(ckpt["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise CheckpointError(f"{path}: checkpoint's random-generator state is unusable "
                                  f"({first_sentence(exc)})") from None
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

    def resumed(self, cfg: Any, device: torch.device, world: int, epoch: int, step: int) -> None:
        """Note this invocation in ``env.json``'s ``resumes``: its environment, process count and starting point."""
        record_resume(self.seed_dir.env_json, device, world_size=world, per_rank_batch=cfg.batch_size // world,
                      epoch=epoch, step=step)

    def status(self, epoch: int, complete: bool = False, **extra: Any) -> None:
        self.seed_dir.write_status("complete" if complete else "incomplete", epoch, **extra)

    def finish(self, results: dict[str, Any]) -> None:
        write_json(self.seed_dir.results_json, results)
        self.status(results["epochs"], complete=True)
