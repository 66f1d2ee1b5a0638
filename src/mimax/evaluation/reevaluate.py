"""``mimax eval RUN_DIR``: re-evaluate saved checkpoints with the same protocol as training.

For each seed (or the one ``--checkpoint``), the method is rebuilt from the run's ``config.json`` through
the registry, the checkpoint is loaded with ``weights_only=True``, and every encoder the method exposes
(SDMI: f_θ and g_ξ) gets the linear probe and kNN of :func:`mimax.evaluation.evaluate.evaluate`, in the
memory layout (``--channels_last``), autocast precision (``--precision``) and CPU thread count
(``--num_threads``) training used, so the numbers are the ones training reported (all three change the
rounding of the convolutions). The result
goes to ``seed_<k>/eval_ckpt_epoch_<n>.json`` (written atomically; the training outputs ``eval.csv`` and
``results.json`` are never touched; an existing re-evaluation file is replaced only with ``--overwrite``).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from mimax.data import build_data
from mimax.errors import UserError
from mimax.evaluation.evaluate import evaluate
from mimax.evaluation.runs import Run, checkpoints_to_use, rebuild_method
from mimax.runtime.device import PRECISION_DTYPES
from mimax.store.atomic import remove_torn_writes, write_json
from mimax.store.checkpoint import load_checkpoint
from mimax.store.rundir import git_commit


def reevaluate(run: Run, checkpoint: str | None, device: torch.device, overwrite: bool = False,
               data_dir: str | None = None) -> list[dict[str, Any]]:
    """Evaluate the chosen checkpoints; returns one record per checkpoint (also written to disk).
    All checkpoints are opened and the outputs checked before any evaluation starts."""
    cfg = run.cfg
    if data_dir is not None:
        cfg.data_dir = data_dir
    cfg.device = str(device)
    jobs = []
    for seed_dir, path in checkpoints_to_use(run, checkpoint):
        ckpt = load_checkpoint(path)
        out = seed_dir.eval_record(int(ckpt["epoch"]), int((ckpt.get("partial") or {}).get("in_epoch", 0)))
        if out.exists() and not overwrite:
            raise UserError(f"{out} already exists (an earlier `mimax eval`); pass --overwrite to replace it")
        jobs.append((seed_dir, path, ckpt, out))
    records = []
    for seed_dir, path, ckpt, out in jobs:
        seed = int(ckpt["seed"])
        data = build_data(cfg, device, seed)
        method = rebuild_method(cfg, ckpt, path, data.input_shape).to(device)
        # the memory layout training evaluated in: NHWC convolutions round differently from NCHW ones
        if cfg.channels_last:
            method.to(memory_format=torch.channels_last)
        if data.probe_train is None or not data.num_classes:
            print(f"{seed_dir.path}: the dataset has no labels; linear probe and kNN are skipped")
        record = {
            "checkpoint": str(path), "epoch": int(ckpt["epoch"]), "seed": seed, "method": cfg.model_name,
            "dataset": cfg.dataset, "architecture": cfg.architecture, "device": str(device),
            "git_commit": git_commit(), "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "final": evaluate(method, data, device, cfg.knn_k, cfg.knn_temperature,
                              PRECISION_DTYPES.get(cfg.precision)),
            "random_init": ckpt.get("random_init", {}),
        }
        write_json(out, record)
        remove_torn_writes(out)  # what a killed earlier `mimax eval` left beside the record in the run
        records.append(record)
        print(f"wrote {out}")
    return records
