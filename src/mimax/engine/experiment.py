"""An experiment = ``--num_runs`` seeds of one configuration, aggregated into mean ± std results."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from mimax.callbacks import Callback
from mimax.config import Config
from mimax.engine.divergence import TrainingDiverged
from mimax.engine.precision import resolve_run_precision
from mimax.engine.preemption import Preempted, Preemption
from mimax.engine.trainer import train_run
from mimax.errors import Interrupted, UserError
from mimax.evaluation.results import aggregate, results_markdown
from mimax.monitors import default_callbacks
from mimax.runtime import distributed
from mimax.runtime.allocator import keep_freed_memory
from mimax.store import faults
from mimax.store.atomic import OutputWriteError, atomic_write_text, strict_json, write_json
from mimax.store.rundir import ExperimentDir, check_outside_runs, read_env, record_resume, run_identity


def _write_failure(err: OSError | OutputWriteError) -> str:
    """``cannot write PATH (reason)`` for a failed write or directory creation."""
    if isinstance(err, OutputWriteError):
        return str(err)
    return f"cannot write {err.filename or 'an output file'} ({err.strerror or err})"


def run_experiment(cfg: Config, resume_checkpoint: Path | None = None,
                   callbacks_factory=None, progress: bool = True) -> dict[str, Any] | None:
    """Train every seed (resuming unfinished ones when ``cfg.resume`` is set); write the experiment's
    ``results.json`` and ``results.md``. Returns the aggregated results, or None if stopped early.
    Without ``callbacks_factory``, every seed gets :func:`mimax.monitors.default_callbacks`.

    Under ``torchrun`` every process calls this; rank 0 creates the directories and writes the files,
    and returns the results (the other ranks return None)."""
    device = distributed.init_from_env(cfg.device)
    if device.type == "cpu":  # the step's tensors live in malloc'd memory: no page faults per step
        keep_freed_memory()
    held: list[ExperimentDir] = []  # the experiment whose lock this process holds
    threads = torch.get_num_threads()  # --num_threads is this run's: the caller's count is given back
    try:
        with Preemption(cfg.save_every_minutes) as preemption:
            return _run_seeds(cfg, device, resume_checkpoint, callbacks_factory, progress, held, preemption)
    except (OutputWriteError, OSError) as err:  # a full disk or lost permissions: nothing is lost
        text = _write_failure(err)
        if "nothing was kept" in text or not (cfg.output_dir and ExperimentDir(cfg.output_dir).is_experiment()):
            raise OutputWriteError(text) from None  # nothing to resume (a fresh run removes what it created)
        raise OutputWriteError(f"{text}; free space or fix permissions, then continue with --resume") from None
    except KeyboardInterrupt:  # Ctrl-C: what was written stays, and the run continues where it was checkpointed
        launcher = " (under torchrun, as it was started)" if distributed.world_size() > 1 else ""
        if held and held[0].is_experiment():  # the run this process created or resumed, with its config.json
            raise Interrupted(f"continue with: mimax train --resume {held[0].path}{launcher}") from None
        if cfg.resume:  # stopped before it claimed the run: the run is as it was
            raise Interrupted(f"the run is as it was; continue with: mimax train --resume {cfg.output_dir}"
                              f"{launcher}") from None
        raise Interrupted("nothing was kept") from None
    except UserError as err:  # raised by this rank's own work (e.g. an image of its share): the CLI names the rank
        if distributed.rank() > 0 and not getattr(err, "every_rank", False):
            err.rank = distributed.rank()
        raise
    finally:
        for exp in held:
            exp.release()
        torch.set_num_threads(threads)
        distributed.shutdown()


def _run_seeds(cfg: Config, device: torch.device, resume_checkpoint: Path | None, callbacks_factory,
               progress: bool, held: list[ExperimentDir], preemption: Preemption) -> dict[str, Any] | None:
    main = distributed.is_main()
    # auto is resolved once, before config.json is written: the run records its choice, and says it
    cfg.precision, line = resolve_run_precision(cfg, device)
    if main and progress:
        print(line, flush=True)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    exp, mine = _open_experiment(cfg, device, held)
    if main:
        exp.write_status("incomplete")
    runs = []
    budget = cfg.stop_after  # --stop_after: epochs this invocation trains, over all its seeds
    for k in range(cfg.num_runs):
        seed_dir = exp.seed(cfg.seed + k)
        if k and preemption.signal_name:
            raise Preempted(f"stopped by {preemption.signal_name} before seed {seed_dir.seed} (seeds {cfg.seed}.."
                            f"{seed_dir.seed - 1} are finished); continue with --resume")
        use_ckpt = resume_checkpoint if (resume_checkpoint and seed_dir.owns_checkpoint(resume_checkpoint)) else None
        callbacks: list[Callback] = (callbacks_factory or default_callbacks)(cfg, seed_dir.path)
        start = seed_dir.epochs_done()
        if budget is not None and budget <= 0 and start < cfg.epochs:
            return _stopped(exp, cfg, seed_dir, main)
        seed_cfg = cfg if budget is None else dataclasses.replace(cfg, stop_after=budget)
        try:
            result = train_run(seed_cfg, seed_dir.path, seed_dir.seed, callbacks, resume_from=use_ckpt,
                               progress=progress, preemption=preemption)
        except TrainingDiverged as err:
            if main:
                seed_dir.write_status("diverged", message=str(err))
            raise
        except Exception as err:  # e.g. a corrupt data file found while loading, no memory: nothing was trained
            if mine is not None and not cfg.resume and k == 0 and seed_dir.latest_checkpoint() is None:
                held.remove(mine)
                mine.discard()  # nothing kept: rerunning the same command must not be refused
                if isinstance(err, (OutputWriteError, OSError)):
                    raise OutputWriteError(f"{_write_failure(err)}; nothing was kept: free space or fix "
                                           "permissions, then run the same command again") from None
            raise
        if faults.ARMED:
            faults.hit("seed_done")
        if result is None:
            return _stopped(exp, cfg, seed_dir, main)
        if budget is not None:
            budget -= cfg.epochs - start
        runs.append(result)
    if not main:
        return None
    return finish_experiment(exp, cfg, runs)


def _open_experiment(cfg: Config, device: torch.device, held: list[ExperimentDir]
                     ) -> tuple[ExperimentDir, ExperimentDir | None]:
    """``(the experiment directory, the one this process locked or None)``: the resumed run, claimed by rank 0;
    or a new one created by rank 0 and shared with every rank (a refusal stops every rank with its message).
    A new run's ``cfg.output_dir`` becomes the created directory (its default name has a timestamp)."""
    main = distributed.is_main()
    mine: ExperimentDir | None = None  # the directory this process locked (rank 0)
    if cfg.resume:
        exp = ExperimentDir(cfg.output_dir)
        if main:
            mine = exp.claim("--resume")  # one writer: refused while another process holds the run
            held.append(mine)
            exp.remove_torn_writes()  # torn atomic writes of a killed session
            for seed_dir in exp.seeds():  # a damaged one is refused before anything is recorded
                read_env(seed_dir.env_json)
            record_resume(exp.env_json, device, world_size=distributed.world_size())
    else:
        created: str | UserError = ""
        if main:  # one process creates the directory (its default name has a timestamp)
            try:
                # a run nested in another would be a foreign file of it (its --overwrite refused, its plots broken)
                check_outside_runs(Path(cfg.output_dir or ExperimentDir.default_path(cfg)), flag="--output_dir",
                                   what="new runs")
                mine = create_experiment(cfg, device)
                held.append(mine)
                created = str(mine.path)
            except UserError as err:
                created = err
        shared = distributed.broadcast_object(str(created) if isinstance(created, UserError) else ("", created))
        if isinstance(created, UserError):
            raise created
        if isinstance(shared, str):  # rank 0 refused the directory: every rank stops with its message
            refused = UserError(shared)
            refused.every_rank = True  # rank 0 says it
            raise refused
        exp = ExperimentDir(shared[1])
        cfg.output_dir = str(exp.path)
    return exp, mine


def _stopped(exp: ExperimentDir, cfg: Config, seed_dir, main: bool) -> None:
    """``--stop_after``'s end of an invocation: where the run stands and how to continue it (rank 0 says it)."""
    if main:
        print(f"stopped after {cfg.stop_after} epoch(s) in this invocation, at epoch {seed_dir.epochs_done()} of "
              f"{cfg.epochs} of seed {seed_dir.seed}; continue with: mimax train --resume {exp.path}")
    return None


def create_experiment(cfg: Config, device: torch.device) -> ExperimentDir:
    """A fresh experiment directory, locked by this process, with its ``config.json`` and ``env.json``
    (``cfg.precision`` already resolved); nothing is left behind if writing them fails."""
    exp = ExperimentDir.create(cfg.output_dir, cfg.overwrite, ExperimentDir.default_path(cfg), run_id=run_identity(cfg))
    try:
        exp.write_config(cfg)
        exp.write_env(device, world_size=distributed.world_size())
    except BaseException:  # a full disk, Ctrl-C: a run without its config.json is no run; nothing is left
        exp.discard()
        raise
    return exp


def finish_experiment(exp: ExperimentDir, cfg: Config, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate the seeds' results (mean ± std) into the experiment's ``results.json`` / ``results.md``
    and mark it complete. Returns the results."""
    summary = aggregate(runs)
    results = {"method": cfg.model_name, "dataset": cfg.dataset, "architecture": cfg.architecture,
               "epochs": cfg.epochs, "num_runs": cfg.num_runs, "seeds": [r["seed"] for r in runs],
               "summary": summary, "runs": runs}
    results = strict_json(results)  # what results.json holds (std null for one seed), also for the caller
    write_json(exp.results_json, results)
    if faults.ARMED:
        faults.hit("results")
    atomic_write_text(exp.results_md, results_markdown(summary, cfg.dataset, cfg.num_runs))
    exp.write_status("complete")
    return results
