"""The training loop. It knows the method contract (:mod:`mimax.paradigms.base`), never a method's math.

One call of :func:`train_run` trains one seed in one run directory: it restores the latest checkpoint if
there is one, runs :func:`train_epochs`, and writes ``results.json``. Everything that writes something is
a collaborator of :mod:`mimax.engine.records`; evaluation is :func:`mimax.evaluation.evaluate`.
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

from mimax.callbacks import Callback, RunState
from mimax.config import Config
from mimax.data import build_data
from mimax.engine.divergence import NonFiniteGuard, check_weights
from mimax.engine.loggers import build_loggers
from mimax.engine.optim import build_optimizer, lr_factor, set_learning_rates
from mimax.engine.precision import StepPrecision, prepare_model, resolve_run_precision, to_layout
from mimax.engine.preemption import Preempted, Preemption
from mimax.engine.progress import ConsoleLog, eta_seconds, format_duration, format_eval, format_mi
from mimax.engine.records import Checkpoints, EvalLog, MetricsLog, SeedRecord
from mimax.errors import CollapseStopped, TrainingDiverged
from mimax.evaluation.evaluate import evaluate
from mimax.fit import knn_k_for
from mimax.methods import build_method
from mimax.monitors.estimators import RELIABLE_PAIRS
from mimax.runtime import distributed
from mimax.runtime.device import peak_memory_gb, start_epoch_clock, stop_epoch_clock
from mimax.runtime.signals import shut_down_workers
from mimax.seeding import seed_everything
from mimax.store import faults
from mimax.store.rundir import SeedDir


@dataclass
class Training:
    """The objects the loop drives and the collaborators that record it (records on rank 0 only)."""

    state: RunState
    model: torch.nn.Module  # the method, or its DistributedDataParallel wrapper
    optimizers: dict[str, torch.optim.Optimizer]
    precision: StepPrecision
    guard: NonFiniteGuard
    steps_per_epoch: int
    warmup_steps: int
    metrics: MetricsLog | None
    evals: EvalLog
    checkpoints: Checkpoints
    record: SeedRecord
    random_init: dict[str, Any] = field(default_factory=dict)
    params: dict[str, list[torch.nn.Parameter]] = field(default_factory=dict)
    log: ConsoleLog = field(default_factory=lambda: ConsoleLog(enabled=False))  # the printed lines (rank 0)
    epoch_times: list[float] = field(default_factory=list)  # wall time of this invocation's epochs (ETA)
    first_epoch: int = 0  # the epoch this invocation started the seed at (ETA within --stop_after)
    preemption: Preemption = field(default_factory=Preemption)
    partial: dict[str, Any] = field(default_factory=dict)  # where a mid-epoch checkpoint left its epoch
    callbacks: list[Callback] = field(default_factory=list)  # the run's monitors and recorders (rank 0)
    eval_cache: Path | None = None  # probe accuracies shared with other runs (evaluate's cache; mimax demo)

    def __post_init__(self) -> None:
        self.params = {n: [p for g in o.param_groups for p in g["params"]] for n, o in self.optimizers.items()}

    def save_checkpoint(self, in_epoch: int = 0, partial: dict[str, Any] | None = None) -> Path:
        """The callbacks' files first (:meth:`Callback.before_checkpoint`), then the checkpoint (rank 0)."""
        for cb in self.callbacks:
            cb.before_checkpoint(self.state)
        return self.checkpoints.save(self.state, self.optimizers, self.precision, self.random_init, in_epoch, partial)

    def checked_params(self, name: str) -> list[torch.nn.Parameter] | tuple:
        """The parameters the non-finite guard checks after a backward of optimizer ``name``: none under
        fp16, whose GradScaler expects overflowing gradients and skips those steps itself."""
        return () if self.precision.scaler is not None else self.params[name]

    def set_learning_rates(self, factor: float) -> float:
        lr = 0.0
        for opt in self.optimizers.values():
            lr = set_learning_rates(opt, factor)
        return lr

    def resume_point(self) -> tuple[int, LossTotals]:
        """``(steps already done in this epoch, its loss totals so far)``: ``(0, empty)`` except for the
        first epoch after a mid-epoch checkpoint."""
        partial, self.partial = self.partial, {}
        if not partial:
            return 0, LossTotals()
        self.guard.skipped = int(partial["skipped"])
        return int(partial["in_epoch"]), LossTotals.restore(partial, self.state.device)

    def batches(self, epoch: int, start: int):
        views = self.state.data.train_views
        return views.epoch(epoch, start=start) if start else views.epoch(epoch)

    def after_step(self, in_epoch: int, totals: LossTotals, lr: float) -> None:
        """Checkpoint mid-epoch when ``--save_every_minutes`` is due or a signal came (then stop with
        :class:`Preempted`). At an epoch's last step only a signal saves here: the epoch end does the rest."""
        stop, due = self.preemption.due()
        if not due or (in_epoch == self.steps_per_epoch and not stop):
            return
        self.guard.check(self.steps_per_epoch, self.checkpoints.last_good())  # never save a diverged state
        path = None
        if distributed.is_main():
            check_weights(self.state.method, self.state.step, self.checkpoints.last_good())
            path = self.save_checkpoint(in_epoch, totals.partial(lr, self.guard.skipped))
            self.record.status(self.state.epoch - 1, step=self.state.step)
        self.preemption.saved()
        distributed.barrier()
        if stop:
            raise self.stopped(path, in_epoch)

    def after_epoch(self, saved: bool) -> None:
        """At an epoch's end: checkpoint when ``--save_every_minutes`` is due and the epoch did not, and
        stop on a signal that came during the evaluation or the monitors."""
        state = self.state
        stop, due = self.preemption.due() if state.epoch < state.cfg.epochs else (False, False)
        path = None
        if due and distributed.is_main():
            if not saved:
                check_weights(state.method, state.step, self.checkpoints.last_good())
                self.save_checkpoint()
                self.record.status(state.epoch)
            path = self.checkpoints.last_good()
        if due:
            self.preemption.saved()
        if stop:
            distributed.barrier()
            raise self.stopped(path)

    def stopped(self, path: Path | str | None, in_epoch: int = 0) -> Preempted:
        state = self.state
        where = (f"epoch {state.epoch}, after {in_epoch} of its {self.steps_per_epoch} steps" if in_epoch
                 else f"the end of epoch {state.epoch}")
        return Preempted(f"stopped by {self.preemption.signal_name} at {where} (step {state.step}); checkpoint "
                         f"{path or self.checkpoints.last_good()}; continue with --resume")


def train_epochs(t: Training, callbacks: list[Callback], stop_epoch: int, progress: bool) -> None:
    """The loop: per step the LR, the active optimizer, the forward under autocast, the backward, the
    non-finite guard, the optimizer step and the method's ``after_step``; per epoch the callbacks and
    (rank 0) the records: metrics, evaluation, checkpoint. Other ranks wait at the epoch's barrier."""
    state, method, cfg = t.state, t.state.method, t.state.cfg
    main = distributed.is_main()
    method.train()
    while state.epoch < stop_epoch:
        state.epoch += 1
        state.extra.pop("mi", None)  # the MI monitor puts this epoch's estimates here, if it measures
        first, totals = t.resume_point()  # mid-epoch after a preemption: its later steps only
        clock = totals.started = start_epoch_clock(state.device)
        bar = tqdm(t.batches(state.epoch, first), total=t.steps_per_epoch, initial=first,
                   desc=f"seed {state.seed} epoch {state.epoch}/{cfg.epochs}", leave=False, dynamic_ncols=True,
                   disable=None if (progress and main) else True)  # on a terminal, rank 0 only
        lr = totals.lr
        for in_epoch, (x_a, x_b) in enumerate(bar, start=first + 1):
            lr = t.set_learning_rates(lr_factor(state.step, state.total_steps, t.warmup_steps))
            name = method.active_optimizer(state.step)
            x_a, x_b = to_layout(x_a, cfg.channels_last), to_layout(x_b, cfg.channels_last)
            t.guard.before_step(method)
            with t.precision.autocast():
                terms = t.model(x_a, x_b, state.step)  # = method.training_loss, through DDP when distributed
            t.optimizers[name].zero_grad(set_to_none=True)
            t.precision.backward(terms["loss"])
            if t.guard.observe(state.step, terms, t.checked_params(name)):
                t.precision.step(t.optimizers[name])
                method.after_step(state.step, state.total_steps)
                totals.add(terms)
            state.step += 1
            if t.guard.due():
                t.guard.check(t.steps_per_epoch, t.checkpoints.last_good())
            totals.show(bar, state.step, t.steps_per_epoch, terms, lr, x_a.shape[0])
            t.after_step(in_epoch, totals, lr)  # --save_every_minutes, SIGTERM/SIGUSR1
        bar.close()
        elapsed = totals.earlier_s + stop_epoch_clock(state.device, clock)  # a resumed epoch: both sessions
        peak = peak_memory_gb(state.device)  # this epoch's training steps, before monitors and evaluation
        t.guard.check(t.steps_per_epoch, t.checkpoints.last_good())
        saved, stop = False, None
        if main:
            try:
                extra = {k: v for cb in callbacks for k, v in cb.on_epoch_end(state).items()}
            except TrainingDiverged as err:  # a monitor found non-finite embeddings of finite weights
                raise TrainingDiverged(f"training diverged by step {state.step}: {err}; no checkpoint written; "
                                       f"last good checkpoint: {t.checkpoints.last_good()}") from None
            if peak is not None:
                extra["gpu_mem_peak_gb"] = peak
            stop, state.stop_reason = state.stop_reason, None
            saved = end_epoch(t, totals.means(), lr, extra, elapsed, stop_epoch, clock, force_save=bool(stop))
        t.after_epoch(saved)
        stop = distributed.broadcast_object(stop)  # also the epoch's barrier
        if stop:  # --stop_on_collapse: this epoch's checkpoint is written; every rank ends here
            path = t.checkpoints.last_good()
            if main:
                t.record.seed_dir.write_status("stopped_on_collapse", state.epoch, message=stop)
            raise CollapseStopped(f"{stop}; checkpoint {path} kept, resume with: mimax train --resume "
                                  f"{state.run_dir.parent} --stop_on_collapse 0")


class LossTotals:
    """Per-epoch sums of the loss terms, kept on the device (no host sync per step), and the epoch's training
    time: a mid-epoch checkpoint keeps the time spent so far, so that a resumed epoch's ``epoch_time_s`` and
    ``images_per_s`` are those of all its steps, not of the steps after the resumption."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.lr = 0.0  # the learning rate of the last step (a resumed epoch may have no step left)
        self.earlier_s = 0.0  # training seconds of this epoch before the resumption
        self.started = time.perf_counter()  # this session's start of the epoch (train_epochs sets it)

    @classmethod
    def restore(cls, partial: dict[str, Any], device: torch.device) -> LossTotals:
        totals = cls()
        totals.sums = {k: v.to(device) for k, v in partial["sums"].items()}
        totals.count, totals.lr = int(partial["count"]), float(partial["lr"])
        totals.earlier_s = float(partial.get("elapsed_s", 0.0))  # absent from older checkpoints
        return totals

    def partial(self, lr: float, skipped: int) -> dict[str, Any]:
        """What a mid-epoch checkpoint keeps so that the epoch's metrics row comes out the same."""
        return {"sums": {k: v.detach().cpu() for k, v in self.sums.items()}, "count": self.count, "lr": lr,
                "skipped": skipped, "elapsed_s": self.elapsed()}

    def elapsed(self) -> float:
        """Training seconds of this epoch so far, over every session."""
        return self.earlier_s + time.perf_counter() - self.started

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0) + v.detach()
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: (v / self.count).item() for k, v in self.sums.items()}

    def show(self, bar: Any, step: int, steps_per_epoch: int, terms: dict[str, torch.Tensor], lr: float,
             batch: int) -> None:
        """Refresh the progress bar about ten times per epoch (``.item()`` syncs: only when shown)."""
        if bar.disable or not self.count or step % max(1, steps_per_epoch // 10):
            return
        rate = self.count * batch / self.elapsed()
        bar.set_postfix(loss=f"{terms['loss'].item():.4f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}", refresh=False)


def end_epoch(t: Training, means: dict[str, float], lr: float, extra: dict[str, float], elapsed: float,
              stop_epoch: int, clock: float, force_save: bool = False) -> bool:
    """Rank 0 after an epoch: the metrics row, then evaluation and checkpoint when due (never of
    non-finite weights). Returns whether it wrote a checkpoint."""
    state, cfg = t.state, t.state.cfg
    row: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "lr": lr, **means}
    if t.guard.mode == "skip":
        row["skipped_steps"] = t.guard.epoch_report(f"seed {state.seed} epoch {state.epoch}")
    row.update(extra)
    row.update({"epoch_time_s": round(elapsed, 4),
                "images_per_s": round(t.steps_per_epoch * cfg.batch_size / max(elapsed, 1e-9), 1)})
    t.metrics.log(row)
    t.metrics.log_mi(state.epoch, state.extra.get("mi"))
    final = state.epoch == cfg.epochs
    evaluating = state.epoch % cfg.model_evaluation_interval == 0 or final
    saving = state.epoch % cfg.model_save_interval == 0 or final or state.epoch == stop_epoch or force_save
    if evaluating or saving:
        check_weights(state.method, state.step, t.checkpoints.last_good())
    results = None
    if evaluating:
        results = evaluate(state.method, state.data, state.device, cfg.knn_k, cfg.knn_temperature,
                           t.precision.dtype, t.eval_cache)
        t.evals.add(state.epoch, results)
        t.metrics.log_eval(state.epoch, results)
    if saving:
        t.save_checkpoint()
        t.record.status(state.epoch)
    t.epoch_times.append(time.perf_counter() - clock)
    left = invocation_epochs_left(cfg, state.seed, state.epoch, stop_epoch, t.first_epoch)
    t.log.epoch(state.seed, state.epoch, cfg.epochs, row, eta_seconds(t.epoch_times, left),
                state.extra.get("mi"), results)
    if saving:
        t.log.phase(state.seed, f"checkpoint {t.checkpoints.seed_dir.checkpoint(state.epoch)}")
    return saving


def invocation_epochs_left(cfg: Config, seed: int, epoch: int, stop_epoch: int, first_epoch: int) -> int:
    """Epochs this invocation still trains after ``epoch`` of ``seed``: this seed's up to ``stop_epoch``, then
    the later seeds' (``--num_runs``), within what is left of ``--stop_after`` (``cfg.stop_after`` is the budget
    at this seed's start, ``first_epoch`` where this seed started). The ETA counted this seed only."""
    later = (cfg.seed + cfg.num_runs - 1 - seed) * cfg.epochs
    if cfg.stop_after is not None:
        later = min(later, cfg.stop_after - (stop_epoch - first_epoch))
    return stop_epoch - epoch + later


def setup(cfg: Config, seed_dir: SeedDir, resume_from: Path | None, preemption: Preemption) -> Training:
    """Data, method, optimizers, DDP and precision for one seed; the latest checkpoint restored if any."""
    device = distributed.init_from_env(cfg.device)
    main, rank, world = distributed.is_main(), distributed.rank(), distributed.world_size()
    if cfg.precision == "auto":  # run_experiment resolves it first; a direct call resolves it here
        cfg.precision = resolve_run_precision(cfg, device)[0]
    seed_everything(seed_dir.seed)
    data = build_data(cfg, device, seed_dir.seed, rank, world)  # its view loader loads this rank's share
    # Re-seeded after the data, whose set-up draws a method-dependent amount of randomness (view recipes):
    # the same seed builds the same first backbone whatever the method, so random-init baselines agree.
    torch.manual_seed(seed_dir.seed)
    method = build_method(cfg, data.input_shape).to(device)
    if cfg.sync_bn:
        method = distributed.convert_sync_batchnorm(method, device)
    prepare_model(method, cfg.channels_last, cfg.compile)
    optimizers = {name: build_optimizer(cfg.optimizer, groups, cfg.initial_lr, cfg.weight_decay, cfg.momentum,
                                        cfg.lars_eta)
                  for name, groups in method.optimizer_groups().items()}
    model = distributed.wrap_ddp(method, device, [[p for g in o.param_groups for p in g["params"]]
                                                  for o in optimizers.values()])
    if faults.ARMED:  # the kill tests' "step" point, outside the loop
        faults.arm_step(method)
    steps = len(data.train_views)
    state = RunState(cfg, method, data, device, seed_dir.path, seed_dir.seed, total_steps=cfg.epochs * steps)
    t = Training(state, model, optimizers, StepPrecision(cfg.precision, device), NonFiniteGuard(cfg.on_nan),
                 steps, round(cfg.warmup_epochs * steps), None, EvalLog(seed_dir), Checkpoints(seed_dir, cfg),
                 SeedRecord(seed_dir), preemption=preemption)
    ckpt_file = resume_from or seed_dir.latest_checkpoint()
    if ckpt_file is not None:
        ckpt = t.checkpoints.restore(ckpt_file, method, optimizers, t.precision)
        state.epoch, state.step, t.random_init = ckpt["epoch"], ckpt["step"], ckpt["random_init"]
        t.partial = ckpt.get("partial") or {}
        evaluated = {e for e in range(1, state.epoch + 1) if e % cfg.model_evaluation_interval == 0 or e == cfg.epochs}
        t.evals = EvalLog(seed_dir, state.epoch, ({0} | evaluated) if t.random_init else set(), ckpt_file.name)
        if main:
            t.record.resumed(cfg, device, world, state.epoch, state.step)
    elif main:
        t.record.start(cfg, device, world)
    if main:
        resumed = state.epoch if ckpt_file is not None else None
        t.metrics = MetricsLog(seed_dir, build_loggers(cfg, seed_dir, resumed), resumed,
                               ckpt_file.name if ckpt_file is not None else "")
        t.record.status(state.epoch)
    return t


def values_as_run(cfg: Config, data) -> dict[str, int | None]:
    """The values fitted to the data at run time, which ``config.json`` keeps as given: kNN's k (at most a fifth
    of the probe's training images), the probe's split sizes and the MI monitor set's pairs."""
    train, test, monitor = data.probe_train, data.probe_test, data.monitor_views
    return {"knn_k": knn_k_for(cfg.knn_k, len(train)) if train is not None else None,
            "probe_train_images": len(train) if train is not None else None,
            "probe_test_images": len(test) if test is not None else None,
            "monitor_pairs": int(monitor[0].shape[0]) if monitor is not None else None}


def start_notes(cfg: Config, state: RunState) -> list[str]:
    """The values the data builder and the method fitted to the run, the kNN k fitted to the probe's training
    images, and a monitor set too small for the trained-critic MI estimate (said before training starts)."""
    notes = [*state.data.extras.get("notes", []), *state.method.notes(state.total_steps)]
    probe_train = state.data.probe_train
    if probe_train is not None and knn_k_for(cfg.knn_k, len(probe_train)) != cfg.knn_k:
        notes.append(f"kNN k = {knn_k_for(cfg.knn_k, len(probe_train))} (--knn_k {cfg.knn_k} reduced to a fifth "
                     f"of the {len(probe_train)} training images)")
    monitor = state.data.monitor_views
    if monitor is not None and cfg.mi_interval and cfg.mi_critic_interval >= 0 and len(monitor[0]) < RELIABLE_PAIRS:
        notes.append(f"MI estimate on {len(monitor[0])} monitor pairs: the trained critic is validated on a tenth "
                     f"of them, too few to reject one that does not generalize, which then reads 0 nats; "
                     f"{RELIABLE_PAIRS} pairs or more make it reliable (--monitor_size, --gm_monitor_size)")
    return notes


def before_training(t: Training, callbacks: list[Callback], seed: int) -> None:
    """A fresh seed's epoch 0 (rank 0): the random-init evaluation (``eval.csv`` written at once, so that a
    killed run keeps it) and the monitors' first measurement (``on_train_start``), each logged."""
    state, cfg, log = t.state, t.state.cfg, t.log
    log.phase(seed, f"{cfg.model_name} on {cfg.dataset}: {cfg.epochs} epochs of {t.steps_per_epoch} steps; "
                    "evaluating the random init and estimating MI before the first step")
    clock = time.perf_counter()
    initial = evaluate(state.method, state.data, state.device, cfg.knn_k, cfg.knn_temperature,
                       t.precision.dtype, t.eval_cache)
    first = next(iter(initial.values()), None)
    if first is not None:
        t.random_init = {f"Random init ({cfg.architecture})": first}
        t.evals.add(0, initial)  # now: a resumed run reads the epoch-0 rows from disk
        t.metrics.log_eval(0, initial)
        log.phase(seed, f"{format_eval(t.random_init)} ({format_duration(time.perf_counter() - clock)})")
    clock = time.perf_counter()
    for cb in callbacks:
        cb.on_train_start(state)
    t.metrics.log_mi(0, state.extra.get("mi"))
    if state.extra.get("mi"):
        log.phase(seed, f"before training: {format_mi(state.extra['mi'])} "
                        f"({format_duration(time.perf_counter() - clock)})")


def train_run(cfg: Config, run_dir: Path, seed: int, callbacks: list[Callback] = (),
              resume_from: Path | None = None, progress: bool = True,
              preemption: Preemption | None = None, eval_cache: Path | None = None) -> dict[str, Any] | None:
    """Train (or resume) one seed in ``run_dir``. Returns its results, or None if stopped by
    ``--stop_after`` before the last epoch (the run stays resumable). On a signal seen by ``preemption``
    it checkpoints where it stands (mid-epoch if need be) and raises :class:`Preempted`. ``eval_cache``:
    a folder of probe accuracies shared with runs whose features may coincide
    (:func:`mimax.evaluation.evaluate.evaluate_encoder`)."""
    seed_dir = SeedDir(Path(run_dir), seed)
    seed_dir.create()
    main = distributed.is_main()
    if main:  # torn atomic writes of a killed session (only rank 0 writes files)
        seed_dir.remove_torn_writes()
    done = seed_dir.read_results() if resume_from is None else None
    if done is not None:  # this seed already finished
        if main:  # a kill between results.json and status.json left "incomplete": repair it
            seed_dir.write_status("complete", done["epochs"])
        return done
    started = time.perf_counter()
    t = setup(cfg, seed_dir, resume_from, preemption or Preemption())
    t.callbacks = list(callbacks) if main else []  # rank 0 watches and writes; before_checkpoint at every save
    t.eval_cache = eval_cache
    state, log = t.state, ConsoleLog(enabled=progress and main)
    t.log = log
    for note in start_notes(cfg, state):
        log.line(f"note: {note}")
    if state.step > 0:
        log.phase(seed, f"resumed at epoch {state.epoch}/{cfg.epochs} (step {state.step})")
    if state.step == 0 and main:  # a fresh start (a mid-epoch-1 checkpoint has steps behind it)
        before_training(t, callbacks, seed)
    distributed.barrier()
    stop_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, state.epoch + cfg.stop_after)
    t.first_epoch = state.epoch
    try:
        train_epochs(t, list(callbacks), stop_epoch, progress)
    finally:
        shut_down_workers()  # the seed's DataLoader workers stop now, whatever holds the loaders
        if t.metrics is not None:
            t.metrics.close()
    if state.epoch < cfg.epochs:
        if main:
            t.record.status(state.epoch)
        return None
    if not main:
        return {"seed": seed}  # results are rank 0's to write
    for cb in callbacks:
        cb.on_train_end(state)
    results = {"seed": seed, "method": cfg.model_name, "dataset": cfg.dataset, "architecture": cfg.architecture,
               "epochs": cfg.epochs, "final": t.evals.at(cfg.epochs), "random_init": t.random_init,
               "as_run": values_as_run(cfg, state.data)}
    t.record.finish(results)
    log.summary(seed, results["final"], t.random_init, time.perf_counter() - started)
    return results
