"""The training loop. It knows the method contract (:mod:`mimax.paradigms.base`), never a method's math.

One call of :func:`train_run` trains one seed in one run directory: it restores the latest checkpoint if
there is one, trains epoch by epoch, evaluates, checkpoints atomically, and writes ``results.json``.
Determinism: the model is initialized from ``seed``, and every epoch's batches and views come from a
generator seeded by ``(seed, epoch)``, so a resumed run is bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mimax.config import Config
from mimax.data import DataBundle, build_data
from mimax.data.loading import shard_views
from mimax.engine.divergence import NonFiniteGuard, check_weights
from mimax.engine.loggers import build_loggers, epoch_scalars, eval_scalars
from mimax.engine.optim import build_optimizer, lr_factor, set_learning_rates
from mimax.engine.precision import StepPrecision, prepare_model, to_layout
from mimax.evaluation.probe import extract_features, knn_accuracy, linear_probe
from mimax.methods import build_method
from mimax.paradigms import Method
from mimax.runtime import distributed
from mimax.runtime.device import seed_everything
from mimax.store import faults
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


@dataclass
class RunState:
    """What callbacks see: the run's objects and where training stands."""

    cfg: Config
    method: Method
    data: DataBundle
    device: torch.device
    run_dir: Path
    seed: int
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Hooks into the loop (MI monitors, collapse monitors, trajectory recorders, TensorBoard)."""

    def on_train_start(self, state: RunState) -> None:
        """Before the first step of a fresh run (not called when resuming past epoch 0)."""

    def on_epoch_end(self, state: RunState) -> dict[str, float]:
        """After each epoch; returned values become extra columns of that epoch's ``metrics.csv`` row."""
        return {}

    def on_train_end(self, state: RunState) -> None:
        """After the last epoch of a completed run."""


@torch.no_grad()
def evaluate(method: Method, data: DataBundle, cfg: Config, device: torch.device) -> dict[str, dict[str, float]]:
    """Linear probe and kNN on frozen backbone features (plus a linear probe on the embedding) for every
    encoder the method exposes. Empty if the dataset has no labels."""
    if data.probe_train is None or data.probe_test is None or not data.num_classes:
        return {}
    results = {}
    was_training = method.training
    method.eval()
    try:
        for key, label in method.row_labels().items():
            encoder = method.encoders()[key]
            results[label] = evaluate_encoder(encoder, data, cfg, device)
    finally:
        method.train(was_training)
    return results


def evaluate_encoder(encoder: torch.nn.Module, data: DataBundle, cfg: Config, device: torch.device) -> dict[str, float]:
    def both(x):
        feats = encoder.backbone(x)
        return torch.cat([feats, encoder.projector(feats)], dim=1)

    out = {}
    tr, ytr = extract_features(both, data.probe_train, device, num_workers=data.extras.get("eval_workers", 0))
    if faults.ARMED:
        faults.hit("eval")
    te, yte = extract_features(both, data.probe_test, device, num_workers=data.extras.get("eval_workers", 0))
    width = tr.shape[1] - cfg.projection_dim
    out["linear"] = linear_probe(tr[:, :width], ytr, te[:, :width], yte, data.num_classes)
    out["knn"] = knn_accuracy(tr[:, :width], ytr, te[:, :width], yte, data.num_classes, cfg.knn_k, cfg.knn_temperature)
    out["linear_embedding"] = linear_probe(tr[:, width:], ytr, te[:, width:], yte, data.num_classes)
    return out


def _load_into(method: Method, optimizers: dict[str, torch.optim.Optimizer], ckpt: dict[str, Any],
               cfg: Config, path: Path) -> None:
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


def train_run(cfg: Config, run_dir: Path, seed: int, callbacks: list[Callback] = (),
              resume_from: Path | None = None, progress: bool = True) -> dict[str, Any] | None:
    """Train (or resume) one seed in ``run_dir``. Returns its results, or None if stopped by
    ``--stop_after`` before the last epoch (the run stays resumable)."""
    run_dir = Path(run_dir)
    sd = SeedDir(run_dir, seed)
    sd.create()
    if distributed.is_main():  # torn atomic writes of a killed session (only rank 0 writes files)
        sd.remove_torn_writes()
    done = sd.read_results() if resume_from is None else None
    if done is not None:  # this seed already finished
        if distributed.is_main():  # a kill between results.json and status.json left "incomplete": repair it
            sd.write_status("complete", done["epochs"])
        return done
    device = distributed.init_from_env(cfg.device)
    main, rank, world = distributed.is_main(), distributed.rank(), distributed.world_size()
    seed_everything(seed)
    data = build_data(cfg, device, seed)
    data.train_views = shard_views(data.train_views, rank, world, cfg.batch_size)  # this rank's share
    method = build_method(cfg, data.input_shape).to(device)
    if cfg.sync_bn:
        method = distributed.convert_sync_batchnorm(method, device)
    prepare_model(method, cfg.channels_last, cfg.compile)
    optimizers = {name: build_optimizer(cfg.optimizer, groups, cfg.initial_lr, cfg.weight_decay, cfg.momentum,
                                        cfg.lars_eta)
                  for name, groups in method.optimizer_groups().items()}
    model = distributed.wrap_ddp(method, device, [[p for g in o.param_groups for p in g["params"]]
                                                  for o in optimizers.values()])
    precision = StepPrecision(cfg.precision, device)
    steps_per_epoch = len(data.train_views)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    state = RunState(cfg, method, data, device, run_dir, seed, total_steps=total_steps)

    ckpt_file = resume_from or sd.latest_checkpoint()
    metrics_rows: list[dict[str, Any]] = []
    eval_rows: list[dict[str, Any]] = []
    random_init: dict[str, dict[str, float]] = {}
    if ckpt_file is not None:
        ckpt = load_checkpoint(ckpt_file)
        _load_into(method, optimizers, ckpt, cfg, ckpt_file)
        precision.load_state_dict(ckpt.get("grad_scaler", {}))
        state.epoch, state.step = ckpt["epoch"], ckpt["step"]
        random_init = ckpt["random_init"]
        metrics_rows = sd.read_rows("metrics", state.epoch)
        eval_rows = sd.read_rows("eval", state.epoch)
    elif main:
        write_json(sd.config_json, cfg.to_dict())
        write_json(sd.env_json, {**environment(device), "world_size": world, "per_rank_batch": cfg.batch_size // world})
    if main:
        sd.write_status("incomplete", state.epoch)

    if state.epoch == 0 and main:
        initial = evaluate(method, data, cfg, device)
        first = next(iter(initial.values()), None)
        if first is not None:
            random_init = {f"Random init ({cfg.architecture})": first}
            eval_rows += [{"epoch": 0, "encoder": label, **m} for label, m in initial.items()]
            write_csv(sd.eval_csv, eval_rows)  # now: a resumed run reads the epoch-0 rows from disk
        for cb in callbacks:
            cb.on_train_start(state)
    distributed.barrier()
    stop_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, state.epoch + cfg.stop_after)

    loggers = build_loggers(cfg, sd) if main else []  # TensorBoard, W&B (the CSVs always)
    guard = NonFiniteGuard(cfg.on_nan)  # --on_nan: see mimax.engine.divergence
    opt_params = {n: [p for g in o.param_groups for p in g["params"]] for n, o in optimizers.items()}

    def last_good() -> str:
        return str(sd.latest_checkpoint() or "none (no checkpoint yet)")

    method.train()
    while state.epoch < stop_epoch:
        state.epoch += 1
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        t0 = time.perf_counter()
        bar = tqdm(data.train_views.epoch(state.epoch), total=steps_per_epoch,
                   desc=f"seed {seed} epoch {state.epoch}/{cfg.epochs}", leave=False, dynamic_ncols=True,
                   disable=None if (progress and main) else True)  # on a terminal, rank 0 only
        refresh = max(1, steps_per_epoch // 10)
        lr = 0.0
        for x_a, x_b in bar:
            factor = lr_factor(state.step, total_steps, warmup_steps)
            for opt in optimizers.values():
                lr = set_learning_rates(opt, factor)
            name = method.active_optimizer(state.step)
            active = optimizers[name]
            x_a, x_b = to_layout(x_a, cfg.channels_last), to_layout(x_b, cfg.channels_last)
            guard.before_step(method)
            with precision.autocast():
                terms = model(x_a, x_b, state.step)  # = method.training_loss, through DDP when distributed
            active.zero_grad(set_to_none=True)
            precision.backward(terms["loss"])
            # fp16's GradScaler expects overflowing gradients and skips those steps itself: check the loss only
            if guard.observe(state.step, terms, opt_params[name] if precision.scaler is None else ()):
                precision.step(active)
                method.after_step(state.step, total_steps)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0) + v.detach()
                    counts[k] = counts.get(k, 0) + 1
            if faults.ARMED:
                faults.hit("step")
            state.step += 1
            if guard.due():
                guard.check(steps_per_epoch, last_good())
            if not bar.disable and counts and state.step % refresh == 0:  # .item() syncs: only when shown
                seen = counts["loss"] * x_a.shape[0]
                bar.set_postfix(loss=f"{terms['loss'].item():.4f}", lr=f"{lr:.3g}",
                                img_s=f"{seen / (time.perf_counter() - t0):.0f}", refresh=False)
        bar.close()
        elapsed = time.perf_counter() - t0
        guard.check(steps_per_epoch, last_good())
        if not main:  # rank 0 logs, evaluates and checkpoints; the others wait for it
            distributed.barrier()
            continue
        row: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "lr": lr}
        row.update({k: (sums[k] / counts[k]).item() for k in sums})
        if guard.mode == "skip":
            row["skipped_steps"] = guard.epoch_report(f"seed {seed} epoch {state.epoch}")
        for cb in callbacks:
            row.update(cb.on_epoch_end(state))
        row.update({"epoch_time_s": round(elapsed, 4),
                    "images_per_s": round(steps_per_epoch * cfg.batch_size / max(elapsed, 1e-9), 1)})
        metrics_rows.append(row)
        write_csv(sd.metrics_csv, metrics_rows)
        for logger in loggers:
            logger.log(epoch_scalars(row), state.epoch)
        final = state.epoch == cfg.epochs
        evaluating = state.epoch % cfg.model_evaluation_interval == 0 or final
        saving = state.epoch % cfg.model_save_interval == 0 or final or state.epoch == stop_epoch
        if evaluating or saving:  # never evaluate or checkpoint non-finite weights
            check_weights(method, state.step, last_good())
        if evaluating:
            results = evaluate(method, data, cfg, device)
            eval_rows += [{"epoch": state.epoch, "encoder": label, **m} for label, m in results.items()]
            write_csv(sd.eval_csv, eval_rows)
            for logger in loggers:
                logger.log(eval_scalars(results), state.epoch)
        if saving:
            atomic_torch_save({
                "format": CHECKPOINT_FORMAT, "method": cfg.model_name, "architecture": cfg.architecture,
                "dataset": cfg.dataset, "epoch": state.epoch, "step": state.step, "seed": seed,
                "model": method.state_dict(), "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
                "rng": rng_state(), "random_init": random_init, "grad_scaler": precision.state_dict(),
                "input_shape": list(data.input_shape),  # lets `mimax export` rebuild the model without data
            }, sd.checkpoint(state.epoch))
            sd.write_status("incomplete", state.epoch)
        distributed.barrier()
    for logger in loggers:
        logger.close()
    if state.epoch < cfg.epochs:
        if main:
            sd.write_status("incomplete", state.epoch)
        return None
    if not main:
        return {"seed": seed}  # results are rank 0's to write
    for cb in callbacks:
        cb.on_train_end(state)
    final_eval = {r["encoder"]: {k: float(v) for k, v in r.items() if k not in ("epoch", "encoder")}
                  for r in eval_rows if int(r["epoch"]) == cfg.epochs}
    results = {"seed": seed, "method": cfg.model_name, "dataset": cfg.dataset, "architecture": cfg.architecture,
               "epochs": cfg.epochs, "final": final_eval, "random_init": random_init}
    write_json(sd.results_json, results)
    sd.write_status("complete", state.epoch)
    return results
