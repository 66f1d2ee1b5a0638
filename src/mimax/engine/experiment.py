"""An experiment = ``--num_runs`` seeds of one configuration, aggregated into mean ± std results."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from mimax.callbacks import Callback
from mimax.config import Config
from mimax.engine.divergence import TrainingDiverged
from mimax.engine.trainer import train_run
from mimax.errors import UserError
from mimax.evaluation.results import aggregate, results_markdown
from mimax.monitors import default_callbacks
from mimax.runtime import distributed
from mimax.store import faults
from mimax.store.atomic import atomic_write_text, write_json
from mimax.store.rundir import ExperimentDir


def run_experiment(cfg: Config, resume_checkpoint: Path | None = None,
                   callbacks_factory=None, progress: bool = True) -> dict[str, Any] | None:
    """Train every seed (resuming unfinished ones when ``cfg.resume`` is set); write the experiment's
    ``results.json`` and ``results.md``. Returns the aggregated results, or None if stopped early.
    Without ``callbacks_factory``, every seed gets :func:`mimax.monitors.default_callbacks`.

    Under ``torchrun`` every process calls this; rank 0 creates the directories and writes the files,
    and returns the results (the other ranks return None)."""
    device = distributed.init_from_env(cfg.device)
    try:
        return _run_seeds(cfg, device, resume_checkpoint, callbacks_factory, progress)
    finally:
        distributed.shutdown()


def _run_seeds(cfg: Config, device: torch.device, resume_checkpoint: Path | None,
               callbacks_factory, progress: bool) -> dict[str, Any] | None:
    main = distributed.is_main()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.resume:
        exp = ExperimentDir(cfg.output_dir)
        if main:
            exp.remove_torn_writes()  # torn atomic writes of a killed session
    else:
        created: str | UserError = ""
        if main:  # one process creates the directory (its default name has a timestamp)
            try:
                exp = ExperimentDir.create(cfg.output_dir, cfg.overwrite, ExperimentDir.default_path(cfg))
                exp.write_config(cfg)
                exp.write_env(device, world_size=distributed.world_size())
                created = str(exp.path)
            except UserError as err:
                created = err
        shared = distributed.broadcast_object(str(created) if isinstance(created, UserError) else ("", created))
        if isinstance(created, UserError):
            raise created
        if isinstance(shared, str):  # rank 0 refused the directory: every rank stops with its message
            raise UserError(shared)
        exp = ExperimentDir(shared[1])
        cfg.output_dir = str(exp.path)
    if main:
        exp.write_status("incomplete")
    runs = []
    for k in range(cfg.num_runs):
        seed_dir = exp.seed(cfg.seed + k)
        use_ckpt = resume_checkpoint if (resume_checkpoint and seed_dir.owns_checkpoint(resume_checkpoint)) else None
        callbacks: list[Callback] = (callbacks_factory or default_callbacks)(cfg, seed_dir.path)
        try:
            result = train_run(cfg, seed_dir.path, seed_dir.seed, callbacks, resume_from=use_ckpt, progress=progress)
        except TrainingDiverged as err:
            if main:
                seed_dir.write_status("diverged", message=str(err))
            raise
        except UserError:  # e.g. a corrupt data file found while loading: nothing was trained
            if main and not cfg.resume and k == 0 and seed_dir.latest_checkpoint() is None:
                shutil.rmtree(exp.path, ignore_errors=True)  # this invocation made it; rerunning must not be refused
            raise
        if faults.ARMED:
            faults.hit("seed_done")
        if result is None:
            if not main:
                return None
            print(f"stopped after epoch {cfg.stop_after} of this session; continue with: "
                  f"mimax train --resume {exp.path}")
            return None
        runs.append(result)
    if not main:
        return None
    summary = aggregate(runs)
    results = {"method": cfg.model_name, "dataset": cfg.dataset, "architecture": cfg.architecture,
               "epochs": cfg.epochs, "num_runs": cfg.num_runs, "seeds": [r["seed"] for r in runs],
               "summary": summary, "runs": runs}
    write_json(exp.results_json, results)
    if faults.ARMED:
        faults.hit("results")
    atomic_write_text(exp.results_md, results_markdown(summary, cfg.dataset, cfg.num_runs))
    exp.write_status("complete")
    return results
