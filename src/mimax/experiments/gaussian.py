"""The controlled Gaussian-mixture experiments (docs/methods.md §7) and ``mimax demo``.

Trains every method plus the ablations on the Gaussian mixture with the MLP encoder and a low-dimensional
embedding, ``--num_runs`` seeds each, one CPU thread per run and ``--num_workers`` runs in parallel, then
writes into one folder: ``trajectories.png`` (Figure 3), ``mi.png`` (Figure 2), ``results.md`` /
``results.json`` (probe accuracies, separation, final MI estimates, collapse flag; mean ± std over seeds)
and ``claims.md`` (each claim of the paper checked against these numbers).

Run as ``mimax demo [--quick] [--output_dir DIR] ...``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mimax.config import Config, config_from_args, resolve
from mimax.engine.experiment import create_experiment, finish_experiment
from mimax.engine.precision import resolve_run_precision
from mimax.engine.trainer import train_run
from mimax.errors import ConfigError, Interrupted, OneLineParser
from mimax.experiments.trajectories import TrajectoryRecorder
from mimax.methods import METHODS
from mimax.monitors import CollapseMonitor, MIMonitor, default_callbacks
from mimax.runtime.allocator import keep_freed_memory
from mimax.store.rundir import ExperimentDir, SeedDir, check_outside_runs


@dataclass(frozen=True)
class DemoRun:
    label: str  # panel / row title
    slug: str  # folder name
    role: str  # "method", "ablation" or "paper-setting"
    flags: tuple[str, ...]

    @property
    def family(self) -> str:
        """"SDMI" or "JMI": the paradigm of the method, read from the registry."""
        return "SDMI" if METHODS[self.flags[1]].paradigm == "self-distillation" else "JMI"


DEMO_RUNS: tuple[DemoRun, ...] = (
    DemoRun("SDMI", "sdmi", "method", ("--model_name", "SDMI")),
    DemoRun("BYOL", "byol", "method", ("--model_name", "BYOL")),
    DemoRun("SimSiam", "simsiam", "method", ("--model_name", "SimSiam")),
    DemoRun("MoCo-v3", "mocov3", "method", ("--model_name", "MoCoV3")),
    DemoRun("JMI", "jmi", "method", ("--model_name", "JMI")),
    DemoRun("SimCLR", "simclr", "method", ("--model_name", "SimCLR")),
    DemoRun("Barlow Twins", "barlowtwins", "method", ("--model_name", "BarlowTwins")),
    DemoRun("VICReg", "vicreg", "method", ("--model_name", "VICReg")),
    DemoRun("SDMI, no marginal", "sdmi_nomarg", "ablation", ("--model_name", "SDMI", "--no_marginal")),
    DemoRun("JMI, no marginal", "jmi_nomarg", "ablation", ("--model_name", "JMI", "--no_marginal")),
    DemoRun("SDMI, no marginal + predictor (alternate)", "sdmi_nomarg_pred_alt", "ablation",
            ("--model_name", "SDMI", "--no_marginal", "--predictor", "--target_update", "alternate")),
    DemoRun("SDMI, no marginal + predictor (ema)", "sdmi_nomarg_pred_ema", "ablation",
            ("--model_name", "SDMI", "--no_marginal", "--predictor", "--target_update", "ema")),
    # The analogues at the setting under which the paper's separation claim was found to hold
    # (docs/methods.md §7: m_0 = 0.99, predictor width 16), beside the tuned defaults above.
    DemoRun("BYOL (m0=0.99, pred 16)", "byol_paper", "paper-setting",
            ("--model_name", "BYOL", "--ema_momentum", "0.99", "--ema_min_time_constants", "0",
             "--predictor_dim", "16")),
    DemoRun("SimSiam (pred 16)", "simsiam_paper", "paper-setting",
            ("--model_name", "SimSiam", "--predictor_dim", "16")),
    DemoRun("MoCo-v3 (m0=0.99, pred 16)", "mocov3_paper", "paper-setting",
            ("--model_name", "MoCoV3", "--ema_momentum", "0.99", "--ema_min_time_constants", "0",
             "--predictor_dim", "16")),
)


def _preset(field: str, method: str = "SDMI") -> object:
    """The Gaussian preset of ``field`` (the demo trains the presets unless a flag says otherwise)."""
    return resolve({"dataset": "Gaussian", "model_name": method}).__dict__[field]


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="mimax demo", description="Controlled Gaussian-mixture experiments: Figures 2 and 3 "
                      "and the paper's claims, on this machine, with no data and no network. Every setting not "
                      "given is the Gaussian preset of `mimax train` (docs/experiments.md).")
    p.add_argument("--output_dir", default=None, help="output folder (default: runs/demo_<time>); never reused")
    p.add_argument("--out", dest="output_dir", help=argparse.SUPPRESS)  # the former name, still accepted
    p.add_argument("--quick", action="store_true", help="seconds-long smoke version (tiny data, 3 epochs)")
    p.add_argument("--num_runs", type=int, default=None, help="seeds per configuration (default 3; quick: 1)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs per run (default: the preset, "
                   f"{_preset('epochs')}; quick: 3)")
    p.add_argument("--batch_size", type=int, default=None, help=f"batch size (default: the preset, "
                   f"{_preset('batch_size')}; quick: at most 128)")
    p.add_argument("--initial_lr", type=float, default=None, help=f"Adam learning rate, cosine decay (default: the "
                   f"preset, {_preset('initial_lr')})")
    p.add_argument("--temperature", type=float, default=None, help=f"critic temperature tau of the methods that "
                   f"read it (default: the preset, {_preset('temperature')})")
    p.add_argument("--embedding_dim", type=int, default=None, help=f"embedding dimension D >= 2; trajectories.png "
                   f"draws the centers on the circle (2) or sphere (3), and for D > 3 their first 3 coordinates "
                   f"(default: the preset, {_preset('projection_dim')})")
    p.add_argument("--ema_momentum", type=float, default=None, help=f"base EMA momentum m_0 of BYOL/MoCo-v3 in the "
                   f"tuned runs (default: the preset, {_preset('ema_momentum', 'BYOL')}; paper-setting runs: 0.99)")
    p.add_argument("--predictor_dim", type=int, default=None, help=f"predictor hidden width of the tuned runs "
                   f"(default: the preset, {_preset('predictor_dim', 'BYOL')})")
    for name in ("gm_clusters", "gm_dim", "gm_radius", "gm_sigma", "gm_view_noise"):
        field = Config.__dataclass_fields__[name]
        p.add_argument(f"--{name}", type=type(field.default), default=None,
                       help=f"{field.metadata['help']} (default: {field.default})")
    p.add_argument("--gm_train_size", type=int, default=None, help=f"training points (default: "
                   f"{Config.gm_train_size}; quick: 512)")
    p.add_argument("--mi_interval", type=int, default=5,
                   help="epochs between fixed-critic MI-monitor scores, and the first and last epoch (default: 5)")
    p.add_argument("--num_workers", type=int, default=2,
                   help="runs trained in parallel, one CPU thread each (default: 2)")
    p.add_argument("--workers", type=int, dest="num_workers", help=argparse.SUPPRESS)  # the former name
    p.add_argument("--only", default=None, help="comma-separated run slugs to train (default: all)")
    return p


QUICK = {"--epochs": 3, "--gm_train_size": 512, "--gm_test_size": 256, "--gm_monitor_size": 256}


def run_flags(args: argparse.Namespace, run: DemoRun, out: Path) -> list[str]:
    """The ``mimax train`` flags of one demo configuration: the Gaussian preset of the method, the flags
    the user gave, the quick version's sizes, and the run's own flags (ablations, paper settings)."""
    method = run.flags[1]
    reads = set(METHODS[method].Options.names())
    given = {"--epochs": args.epochs, "--batch_size": args.batch_size, "--initial_lr": args.initial_lr,
             "--projection_dim": args.embedding_dim, "--gm_clusters": args.gm_clusters, "--gm_dim": args.gm_dim,
             "--gm_radius": args.gm_radius, "--gm_sigma": args.gm_sigma, "--gm_view_noise": args.gm_view_noise,
             "--gm_train_size": args.gm_train_size}
    if "temperature" in reads:
        given["--temperature"] = args.temperature
    if method in ("BYOL", "MoCoV3") and "--ema_momentum" not in run.flags:
        given["--ema_momentum"] = args.ema_momentum
    uses_predictor = method in ("BYOL", "MoCoV3", "SimSiam") or "--predictor" in run.flags
    if uses_predictor and "--predictor_dim" not in run.flags:
        given["--predictor_dim"] = args.predictor_dim
    if args.quick:
        for flag, value in QUICK.items():
            given[flag] = value if given.get(flag) is None else given[flag]
        # `is None`: a given 0 is the user's (refused by `mimax train`'s check), not "not given"
        given["--batch_size"] = min(_preset("batch_size") if args.batch_size is None else args.batch_size, 128)
    flags = ["--dataset", "Gaussian", "--num_runs", str(args.num_runs if args.num_runs is not None else
                                                        (1 if args.quick else 3)),
             "--seed", str(args.seed), "--mi_interval", str(args.mi_interval), "--num_threads", "1",
             "--device", "cpu", "--output_dir", str(out / "runs" / run.slug)]
    flags += [str(x) for flag, value in given.items() if value is not None for x in (flag, value)]
    return flags + list(run.flags)


# The demo's trained critic: a smaller network, a larger step size and at most 120 steps instead of
# estimate_mi's defaults (its embeddings have 2-3 dimensions), on the embedding pair only, at the first and last
# epoch of each configuration's first seed: the full critic on every seed would cost more than the demo's
# training itself. On the closed-form tasks of up to 5 dimensions at 2,048 pairs its bias is within 0.05 nat
# of the defaults' at about a third of their time (docs/experiments.md: benchmarks/mi_estimators.py --demo_critic).
DEMO_CRITIC = dict(hidden=32, embed_dim=16, batch_size=128, lr=5e-3, max_steps=120, eval_every=20, patience=3)
# Trained-critic estimates shared by the configurations (OUT/critic_cache): configurations that start from the
# same initialization have the same epoch-0 embeddings, whose estimate is then fitted once.
CRITIC_CACHE = "critic_cache"
# Probe accuracies shared the same way (OUT/probe_cache): the epoch-0 evaluation of an encoder whose features
# another configuration has already evaluated is read back (mimax.store.memo).
PROBE_CACHE = "probe_cache"


def critic_cache_dir(cfg) -> Path:
    """The demo folder's critic cache; :func:`run_flags` puts every configuration at ``OUT/runs/<slug>``."""
    return Path(cfg.output_dir).parents[1] / CRITIC_CACHE


def probe_cache_dir(cfg) -> Path:
    """The demo folder's probe cache (beside :func:`critic_cache_dir`)."""
    return Path(cfg.output_dir).parents[1] / PROBE_CACHE


def demo_callbacks(cfg, run_dir: Path) -> list:
    """The demo's monitors: the default ones without the per-run figure (the demo draws its own), the
    collapse monitor at the MI monitor's epochs (the report reads the last epoch's), the MI monitor on the
    embedding pair only (what its figures and claims read), the trained critic as :data:`DEMO_CRITIC` on the
    first seed only, its estimates shared through :func:`critic_cache_dir`, and the trajectory recorder
    (Figure 3)."""
    callbacks = default_callbacks(cfg, run_dir, figure=False)
    for cb in callbacks:
        if isinstance(cb, CollapseMonitor):
            cb.interval = cfg.mi_interval
        if isinstance(cb, MIMonitor):
            cb.critic_representations, cb.critic_options = ("embedding",), dict(DEMO_CRITIC)
            cb.representations = ("embedding",)  # the demo's figures and claims read the embedding only
            cb.critic_cache = critic_cache_dir(cfg)
            if SeedDir.at(run_dir).seed != cfg.seed:
                cb.critic_interval = -1
    return [*callbacks, TrajectoryRecorder(run_dir)]


def _train_seed(cfg: Config, seed: int) -> dict | None:
    """Worker: one seed of one configuration (its experiment directory made by the demo's process), one CPU
    thread, monitors + trajectory recorder. Returns the seed's results."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    keep_freed_memory()
    run_dir = ExperimentDir(cfg.output_dir).seed(seed).path
    return train_run(cfg, run_dir, seed, demo_callbacks(cfg, run_dir), progress=False,
                     eval_cache=probe_cache_dir(cfg))


def _check_demo_flags(args: argparse.Namespace) -> None:
    """The demo's own requirements, checked before anything is trained or written (``mimax train`` accepts
    what these refuse): Figure 3 needs D >= 2, and an empty ``--output_dir`` names no folder."""
    if args.embedding_dim is not None and args.embedding_dim < 2:
        raise ConfigError("--embedding_dim", f"must be >= 2: trajectories.png draws the cluster centers on the "
                                             f"circle (2) or sphere (3) (got {args.embedding_dim})")
    if args.output_dir is not None and not args.output_dir.strip():
        raise ConfigError("--output_dir", "must name a folder (got an empty path); leave the flag out for "
                                          "runs/demo_<time>")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = list(DEMO_RUNS)
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {r.slug for r in runs})
        if unknown:
            raise ConfigError("--only", f"unknown run(s) {', '.join(unknown)}; expected slugs among "
                                        f"{', '.join(r.slug for r in runs)}")
        runs = [r for r in runs if r.slug in wanted]
    if args.num_workers < 1:
        raise ConfigError("--num_workers", f"must be >= 1 (got {args.num_workers})")
    if args.mi_interval < 1:  # 0 switches the MI monitor off in `mimax train`; the demo's figures and claims read it
        raise ConfigError("--mi_interval", f"must be >= 1: Figure 2 and the claims read the MI monitor "
                                           f"(got {args.mi_interval})")
    _check_demo_flags(args)
    out_dir = args.output_dir if args.output_dir is not None else f"runs/demo_{time.strftime('%Y%m%d-%H%M%S')}"
    cfgs = [config_from_args(run_flags(args, r, Path(out_dir))) for r in runs]  # every one valid before any write
    check_outside_runs(Path(out_dir), flag="--output_dir", what="the demo")
    demo = ExperimentDir.create(out_dir, overwrite=False, run_id="demo",  # locked: one demo per folder
                                occupied="mimax demo writes a new folder: give another --output_dir")
    try:
        return _run_demo(demo.path, runs, cfgs, args)
    except KeyboardInterrupt:  # a demo is not resumable, and its folder is not reused: say so
        raise Interrupted(f"{demo.path} holds the unfinished demo, which cannot be continued: delete it, or give "
                          "another --output_dir") from None
    finally:
        demo.release()


def _run_demo(out: Path, runs: list[DemoRun], cfgs: list[Config], args: argparse.Namespace) -> int:
    """Every seed of every configuration is one task for the worker pool (a configuration's seeds run in
    parallel, so no worker idles while the last configuration trains its seeds one after the other); this
    process creates and holds each configuration's experiment directory and writes its results when its
    last seed is done."""
    t0 = time.perf_counter()
    device = torch.device("cpu")
    experiments: list[ExperimentDir] = []
    # the bar on a terminal only (disable=None); one line per finished configuration in every mode
    bar = tqdm(total=len(runs), desc="demo", unit="config", dynamic_ncols=True, file=sys.stdout, disable=None)
    print(f"demo: {len(runs)} configurations, {args.num_workers} in parallel, into {out}", flush=True)
    torch.set_num_threads(1)  # as its workers: every env.json records the threads the runs trained with
    try:
        for cfg in cfgs:
            cfg.precision = resolve_run_precision(cfg, device)[0]
            experiments.append(create_experiment(cfg, device))
            experiments[-1].write_status("incomplete")
        _train_all(runs, cfgs, experiments, bar, args.num_workers, t0)
    finally:
        for exp in experiments:
            exp.release()
    bar.close()
    elapsed = time.perf_counter() - t0
    for cache in (CRITIC_CACHE, PROBE_CACHE):  # the demo's own working folders, not results
        shutil.rmtree(out / cache, ignore_errors=True)

    from mimax.experiments.report import write_report  # matplotlib: imported where it draws

    write_report(out, runs, args, elapsed)
    print(f"demo written to {out} in {elapsed:.0f} s: trajectories.png, mi.png, results.md, claims.md")
    return 0


def _quiet_exit(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


def _leave_ctrl_c_to_the_demo() -> None:
    """A demo worker's initializer: a terminal's Ctrl-C reaches every process of its group, and a worker waiting
    for its next seed printed a KeyboardInterrupt traceback before the demo's one line. It now ends quietly
    (SystemExit: no traceback, and the process exits normally, releasing its semaphores); a worker inside a
    seed hands the SystemExit back to the demo, which says the one line."""
    signal.signal(signal.SIGINT, _quiet_exit)


def _train_all(runs: list[DemoRun], cfgs: list[Config], experiments: list[ExperimentDir], bar, num_workers: int,
               t0: float) -> None:
    """Train every seed in ``num_workers`` spawned processes; write a configuration's results as soon as its
    last seed is done. A failed seed ends the demo: the seeds not started yet never start."""
    seeds = [[cfg.seed + k for k in range(cfg.num_runs)] for cfg in cfgs]
    results: list[dict[int, dict]] = [{} for _ in cfgs]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(num_workers, sum(map(len, seeds))), mp_context=ctx,
                             initializer=_leave_ctrl_c_to_the_demo) as pool:
        tasks = {pool.submit(_train_seed, cfg, seed): (i, seed) for i, cfg in enumerate(cfgs) for seed in seeds[i]}
        try:
            while tasks:
                training = dict.fromkeys(runs[i].label for i, _ in sorted(tasks.values()))
                bar.set_postfix_str("training: " + "; ".join(list(training)[:num_workers]))
                done, _ = wait(list(tasks), return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: tasks[f]):
                    i, seed = tasks.pop(fut)
                    try:
                        results[i][seed] = fut.result()  # re-raises a worker's error here
                    except SystemExit:  # a worker's Ctrl-C (_quiet_exit) handed back before this process's own
                        raise KeyboardInterrupt from None
                    if len(results[i]) < len(seeds[i]):
                        continue
                    finish_experiment(experiments[i], cfgs[i], [results[i][s] for s in seeds[i]])
                    finished = sum(len(r) == len(s) for r, s in zip(results, seeds))
                    tqdm.write(f"demo: {finished}/{len(runs)} done: {runs[i].label} "
                               f"({time.perf_counter() - t0:.0f} s)", file=sys.stdout)
                    sys.stdout.flush()
                    bar.update(finished - bar.n)
        except BaseException:
            for fut in tasks:
                fut.cancel()
            raise
