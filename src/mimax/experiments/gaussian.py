"""The controlled Gaussian-mixture experiments (METHODS.md §7) and ``mimax demo``.

Trains every method plus the ablations on the Gaussian mixture with the MLP encoder and a low-dimensional
embedding, ``--num_runs`` seeds each, one CPU thread per run and ``--workers`` runs in parallel, then
writes into one folder: ``trajectories.png`` (Figure 3), ``mi.png`` (Figure 2), ``results.md`` /
``results.json`` (probe accuracies, separation, final MI estimates, collapse flag; mean ± std over seeds)
and ``claims.md`` (each claim of the paper checked against these numbers).

Run as ``mimax demo [--quick] [--out DIR] ...`` or ``python -m mimax.experiments.gaussian``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm


@dataclass(frozen=True)
class DemoRun:
    label: str  # panel / row title
    slug: str  # folder name
    role: str  # "method", "ablation" or "paper-setting"
    flags: tuple[str, ...]

    @property
    def family(self) -> str:
        """"SDMI" or "JMI": the paradigm of the method, read from the registry."""
        from mimax.methods import METHODS

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
    # (METHODS.md §7: m_0 = 0.99, predictor width 16), beside the tuned defaults above.
    DemoRun("BYOL (m0=0.99, pred 16)", "byol_paper", "paper-setting",
            ("--model_name", "BYOL", "--ema_momentum", "0.99", "--predictor_dim", "16")),
    DemoRun("SimSiam (pred 16)", "simsiam_paper", "paper-setting",
            ("--model_name", "SimSiam", "--predictor_dim", "16")),
    DemoRun("MoCo-v3 (m0=0.99, pred 16)", "mocov3_paper", "paper-setting",
            ("--model_name", "MoCoV3", "--ema_momentum", "0.99", "--predictor_dim", "16")),
)


def build_parser() -> argparse.ArgumentParser:
    from mimax.errors import OneLineParser

    p = OneLineParser(prog="mimax demo", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Controlled Gaussian-mixture experiments: Figures 2 and 3 and the paper's "
                                   "claims, on this machine, with no data and no network.")
    p.add_argument("--out", default=None, help="output folder (default: runs/demo_<time>); never reused")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke version (tiny data, 3 epochs)")
    p.add_argument("--num_runs", type=int, default=None, help="seeds per configuration (default 3; quick: 1)")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 50; quick: 3)")
    p.add_argument("--batch_size", type=int, default=256, help="batch size")
    p.add_argument("--initial_lr", type=float, default=1e-3, help="Adam learning rate (cosine decay)")
    p.add_argument("--temperature", type=float, default=0.2, help="critic temperature tau")
    p.add_argument("--embedding_dim", type=int, default=3, help="embedding dimension D (2: circle, 3: sphere)")
    p.add_argument("--ema_momentum", type=float, default=0.9, help="base EMA momentum m_0 of BYOL/MoCo-v3 "
                                                                   "(tuned runs; paper-setting runs use 0.99)")
    p.add_argument("--predictor_dim", type=int, default=64, help="predictor hidden width (tuned runs)")
    p.add_argument("--gm_clusters", type=int, default=5, help="clusters K")
    p.add_argument("--gm_dim", type=int, default=16, help="input dimension d")
    p.add_argument("--gm_radius", type=float, default=3.0, help="radius of the cluster means")
    p.add_argument("--gm_sigma", type=float, default=1.0, help="within-cluster std")
    p.add_argument("--gm_view_noise", type=float, default=0.5, help="per-view noise std")
    p.add_argument("--gm_train_size", type=int, default=None, help="training points (default 5000; quick: 512)")
    p.add_argument("--mi_interval", type=int, default=2, help="epochs between MI estimates (and the last epoch)")
    p.add_argument("--workers", type=int, default=2, help="runs trained in parallel (one CPU thread each)")
    p.add_argument("--only", default=None, help="comma-separated run slugs to train (default: all)")
    return p


def run_flags(args: argparse.Namespace, run: DemoRun, out: Path) -> list[str]:
    """The ``mimax train`` flags of one demo configuration."""
    quick = args.quick

    def pick(value, quick_default, default):  # None means "not given" (0 is a value, and is validated)
        return value if value is not None else (quick_default if quick else default)

    flags = [
        "--dataset", "Gaussian", "--epochs", str(pick(args.epochs, 3, 50)), "--warmup_epochs", "0",
        "--batch_size", str(args.batch_size if not quick else min(args.batch_size, 128)),
        "--optimizer", "adam", "--initial_lr", str(args.initial_lr), "--weight_decay", "0",
        "--temperature", str(args.temperature), "--projection_dim", str(args.embedding_dim),
        "--feature_dim", "64", "--projection_layer", "2", "--num_runs", str(pick(args.num_runs, 1, 3)),
        "--seed", str(args.seed), "--gm_clusters", str(args.gm_clusters), "--gm_dim", str(args.gm_dim),
        "--gm_radius", str(args.gm_radius), "--gm_sigma", str(args.gm_sigma),
        "--gm_view_noise", str(args.gm_view_noise),
        "--gm_train_size", str(pick(args.gm_train_size, 512, 5000)),
        "--gm_test_size", "256" if quick else "1000", "--gm_monitor_size", "256" if quick else "2048",
        "--mi_interval", str(args.mi_interval), "--num_threads", "1", "--device", "cpu",
        "--output_dir", str(out / "runs" / run.slug),
    ]
    flags += list(run.flags)
    if "--ema_momentum" not in run.flags and run.flags[1] in ("BYOL", "MoCoV3"):
        flags += ["--ema_momentum", str(args.ema_momentum)]
    has_predictor = run.flags[1] in ("BYOL", "MoCoV3", "SimSiam") or "--predictor" in run.flags
    if "--predictor_dim" not in run.flags and has_predictor:
        flags += ["--predictor_dim", str(args.predictor_dim)]
    return flags


def _train_one(flags: list[str]) -> str:
    """Worker: one configuration (all its seeds), one CPU thread, monitors + trajectory recorder."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from mimax.config import config_from_args
    from mimax.engine.experiment import run_experiment
    from mimax.experiments.trajectories import TrajectoryRecorder
    from mimax.monitors import default_callbacks

    cfg = config_from_args(flags)
    run_experiment(cfg, callbacks_factory=lambda c, rd: [*default_callbacks(c, rd), TrajectoryRecorder(rd)],
                   progress=False)
    return cfg.output_dir


def main(argv: list[str] | None = None) -> int:
    from mimax.config import ConfigError, config_from_args
    from mimax.store.rundir import ExperimentDir

    args = build_parser().parse_args(argv)
    runs = list(DEMO_RUNS)
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {r.slug for r in runs})
        if unknown:
            raise ConfigError("--only", f"unknown run(s) {', '.join(unknown)}; expected slugs among "
                                        f"{', '.join(r.slug for r in runs)}")
        runs = [r for r in runs if r.slug in wanted]
    if args.workers < 1:
        raise ConfigError("--workers", f"must be >= 1 (got {args.workers})")
    out_dir = args.out or f"runs/demo_{time.strftime('%Y%m%d-%H%M%S')}"
    all_flags = [run_flags(args, r, Path(out_dir)) for r in runs]
    for flags in all_flags:  # validate every configuration before anything is written
        config_from_args(flags)
    out = ExperimentDir.create(out_dir, overwrite=False).path

    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(runs), desc="demo", unit="config", dynamic_ncols=True, file=sys.stdout)
    with ProcessPoolExecutor(max_workers=min(args.workers, len(runs)), mp_context=ctx) as pool:
        futures = [(pool.submit(_train_one, f), r) for f, r in zip(all_flags, runs)]
        while True:
            running = [r.label for f, r in futures if not f.done()][: args.workers]
            if not running:
                break
            bar.set_postfix_str("training: " + "; ".join(running))
            done, _ = wait([f for f, _ in futures if not f.done()], return_when=FIRST_COMPLETED)
            for fut in done:
                fut.result()  # re-raise a worker's error here
            bar.update(sum(f.done() for f, _ in futures) - bar.n)
    bar.close()
    elapsed = time.perf_counter() - t0

    from mimax.experiments.report import write_report

    write_report(out, runs, args, elapsed)
    print(f"demo written to {out} in {elapsed:.0f} s: trajectories.png, mi.png, results.md, claims.md")
    return 0


if __name__ == "__main__":
    from mimax.cli import main as cli_main

    sys.exit(cli_main(["demo", *sys.argv[1:]]))
