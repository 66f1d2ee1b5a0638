"""MI-monitor overhead: the monitors' share of training time at the default settings.

Two settings (docs/performance.md, "MI monitor overhead"):

1. Gaussian mixture at its preset (5,000 points, batch 256, MLP, 2,048 monitor pairs): whole runs through
   the real trainer (``train_run``) with the default monitors wrapped in timers. Share = monitor seconds /
   training-loop seconds (``metrics.csv``'s ``epoch_time_s``, which excludes the monitors).
2. A small ResNet on 28x28 synthetic tensors (Fashion-MNIST's preset and shape: ResNet-18 layout at
   ``--resnet_width`` 16, the preset's batch of 128, SGD, 60,000 training images, ``--monitor_size`` 1,024
   monitor pairs, the preset's). A full epoch on
   this CPU takes minutes, so the benchmark times ``--steps`` real training steps (``training_loss`` +
   backward + optimizer step; median after one warm-up) and one MI estimate and one collapse measurement
   on the monitor set, and reports the share of a whole run of the preset's epochs of ``--train_size``
   images: ``(E t_collapse + R t_mi + 2 t_critic) / (E steps_per_epoch t_step)``, R the MI records of the run
   (epoch 0, every interval-th epoch, the last).

Usage: ``python benchmarks/mi_overhead.py [--methods JMI SDMI] [--steps 3] [--skip_resnet | --skip_gaussian]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import known, positive_int  # noqa: E402

from mimax.callbacks import Callback, RunState  # noqa: E402
from mimax.config import config_from_args  # noqa: E402
from mimax.engine.optim import build_optimizer  # noqa: E402
from mimax.engine.precision import StepPrecision, prepare_model, resolve_precision, to_layout  # noqa: E402
from mimax.engine.trainer import train_run  # noqa: E402
from mimax.methods import METHODS, build_method  # noqa: E402
from mimax.monitors import default_callbacks  # noqa: E402
from mimax.monitors.base import run_dtype  # noqa: E402
from mimax.monitors.collapse import CollapseMonitor  # noqa: E402
from mimax.monitors.mi import (  # noqa: E402
    fixed_critic_rows,
    geometry_values,
    monitor_embeddings,
    trained_critic_rows,
)
from mimax.store.atomic import read_csv  # noqa: E402


class Timed(Callback):
    """Wraps a callback and accumulates the seconds spent in its hooks."""

    def __init__(self, inner: Callback):
        self.inner, self.seconds, self.cpu_seconds, self.calls = inner, 0.0, 0.0, 0

    def _time(self, fn, *args):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.seconds += time.perf_counter() - t0
        self.cpu_seconds += time.process_time() - c0
        self.calls += 1
        return out

    def on_train_start(self, state):
        return self._time(self.inner.on_train_start, state)

    def on_epoch_end(self, state):
        return self._time(self.inner.on_epoch_end, state)


def gaussian_run(method: str, mi_interval: int | None) -> dict[str, float]:
    flags = ["--model_name", method, "--dataset", "Gaussian", "--num_threads", "1", "--device", "cpu"]
    if mi_interval is not None:
        flags += ["--mi_interval", str(mi_interval)]
    cfg = config_from_args(flags)
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = [Timed(cb) for cb in default_callbacks(cfg, Path(tmp))]
        t0 = time.perf_counter()
        train_run(cfg, Path(tmp), 0, callbacks, progress=False)
        wall = time.perf_counter() - t0
        train_s = sum(float(r["epoch_time_s"]) for r in read_csv(Path(tmp) / "metrics.csv"))
    collapse, mi = (callbacks + [None])[:2]
    out = {"interval": cfg.mi_interval, "epochs": cfg.epochs, "train_s": train_s, "wall_s": wall,
           "collapse_s": collapse.seconds, "mi_s": mi.seconds if mi else 0.0}
    out["share"] = (out["collapse_s"] + out["mi_s"]) / train_s
    return out


def resnet_costs(method: str, steps: int, monitor_size: int, width: int) -> dict[str, float]:
    """Fashion-MNIST's preset (ResNet-18, its batch, optimizer and heads) on synthetic 28x28x1 tensors, trained
    and monitored as the protocol's scripts run it: ``--precision auto`` (bf16 autocast where the CPU has
    native bf16, else fp32) and ``--channels_last``; the monitors embed in the run's precision."""
    cfg = config_from_args(["--model_name", method, "--dataset", "FashionMNIST", "--resnet_width", str(width),
                            "--num_threads", "1", "--device", "cpu", "--channels_last"])
    device = torch.device("cpu")
    cfg.precision = resolve_precision(cfg.precision, device, cfg.architecture)[0]
    precision = StepPrecision(cfg.precision, device)
    gen = torch.Generator().manual_seed(0)
    method_ = build_method(cfg, (1, 28, 28)).to(device)
    prepare_model(method_, cfg.channels_last, False)
    params = sum(p.numel() for p in method_.parameters())
    opts = {n: build_optimizer(cfg.optimizer, g, cfg.initial_lr, cfg.weight_decay, cfg.momentum, cfg.lars_eta)
            for n, g in method_.optimizer_groups().items()}
    x_a = to_layout(torch.randn(cfg.batch_size, 1, 28, 28, generator=gen), cfg.channels_last)
    x_b = to_layout(torch.randn(cfg.batch_size, 1, 28, 28, generator=gen), cfg.channels_last)
    step_times = []
    method_.train()
    for step in range(steps + 1):  # the first step is warm-up
        t0 = time.perf_counter()
        opt = opts[method_.active_optimizer(step)]
        with precision.autocast():
            loss = method_.training_loss(x_a, x_b, step)["loss"]
        opt.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(opt)
        method_.after_step(step, steps + 1)
        step_times.append(time.perf_counter() - t0)
    mon = (torch.randn(monitor_size, 1, 28, 28, generator=gen), torch.randn(monitor_size, 1, 28, 28, generator=gen))
    data = type("Data", (), {"monitor_views": mon, "name": "synthetic"})()
    state = RunState(cfg, method_, data, device, Path("."), 0)
    t0 = time.perf_counter()
    CollapseMonitor(cfg.mi_batch_size).measure(state)
    t_collapse = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        pairs = monitor_embeddings(method_, *mon, cfg.mi_batch_size, device, run_dtype(cfg))
    fixed_critic_rows(pairs, cfg.mi_batch_size, cfg.mi_temperature)
    geometry_values(pairs)
    t_mi = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained_critic_rows(pairs)
    t_critic = time.perf_counter() - t0
    return {"step_s": statistics.median(step_times[1:]), "collapse_s": t_collapse, "mi_s": t_mi,
            "critic_s": t_critic, "epochs": cfg.epochs,
            "batch": cfg.batch_size, "params": params, "interval": cfg.mi_interval, "mi_batch": cfg.mi_batch_size,
            "width": width, "precision": cfg.precision}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["JMI", "SimCLR"], choices=sorted(METHODS))
    p.add_argument("--steps", type=int, default=3, help="timed ResNet training steps (after one warm-up)")
    p.add_argument("--train_size", type=int, default=60000, help="images per epoch for the ResNet share")
    p.add_argument("--monitor_size", type=int, default=1024, help="monitor pairs (the FashionMNIST preset's)")
    p.add_argument("--resnet_width", type=int, default=16, help="base width of the ResNet-18 layout")
    p.add_argument("--intervals", type=positive_int, nargs="+", default=[1, 2, 5, 10])
    p.add_argument("--skip_resnet", action="store_true")
    p.add_argument("--skip_gaussian", action="store_true")
    p.add_argument("--demo", nargs="*", default=None, metavar="SLUG",
                   help="time the demo's configurations (default slugs: sdmi jmi byol simclr) and nothing else")
    p.add_argument("--repeats", type=positive_int, default=1)
    args = p.parse_args()
    if args.demo:
        from mimax.experiments.gaussian import DEMO_RUNS

        known(p, "--demo", args.demo, {r.slug for r in DEMO_RUNS})
    torch.set_num_threads(1)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"command: python {' '.join(sys.argv)}\n")
    if args.demo is not None:
        demo_table(args.demo or ["sdmi", "jmi", "byol", "simclr"], args.repeats)
        return

    if not args.skip_gaussian:
        gaussian_table(args.methods)
    if not args.skip_resnet:
        resnet_table(args)


def gaussian_table(methods: list[str]) -> None:
    print("## Gaussian mixture (preset: 50 epochs, 5,000 points, batch 256, MLP; 2,048 monitor pairs)\n")
    print("| method | --mi_interval | training loop s | collapse s | MI s | monitor share of training | "
          "share of run wall time |")
    print("|---|---|---|---|---|---|---|")
    for method in methods:
        for interval in (None, 1, 10, 0):
            r = gaussian_run(method, interval)
            label = f"{r['interval']}" + (" (default)" if interval is None else "") + (" (off)" if r["interval"] == 0
                                                                                     else "")
            print(f"| {method} | {label} | {r['train_s']:.2f} | {r['collapse_s']:.3f} | {r['mi_s']:.3f} | "
                  f"{100 * r['share']:.1f}% | {100 * (r['collapse_s'] + r['mi_s']) / r['wall_s']:.1f}% |")


def mi_records(interval: int, epochs: int) -> int:
    """How many times a run of ``epochs`` epochs measures the fixed-critic scores: before the first step,
    every ``interval``-th epoch and at the last epoch (:class:`mimax.monitors.MIMonitor`)."""
    return len({0, epochs} | {e for e in range(1, epochs + 1) if e % interval == 0})


def run_monitor_seconds(r: dict[str, float], interval: int) -> float:
    """A whole run's monitor seconds: the collapse monitor every epoch, the fixed critic + geometry at its
    records, the trained critic (every representation it estimates) at the first and the last epoch."""
    return r["epochs"] * r["collapse_s"] + mi_records(interval, r["epochs"]) * r["mi_s"] + 2 * r["critic_s"]


def resnet_table(args: argparse.Namespace) -> None:
    print(f"\n## ResNet-18 layout on 28x28x1 synthetic tensors (epoch = {args.train_size:,} images, "
          f"{args.monitor_size:,} monitor pairs)\n")
    print("| method | width | params | step s (batch) | epoch s (extrapolated) | collapse+rank s | MI+geometry s "
          "| trained critic s | " + " | ".join(f"share @ interval {k}" for k in args.intervals) + " |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(args.intervals))
    for method in args.methods:
        r = resnet_costs(method, args.steps, args.monitor_size, args.resnet_width)
        epoch = args.train_size // r["batch"] * r["step_s"]
        # per epoch: collapse + rank every epoch, fixed critic + geometry every k epochs and before the first
        # step, the trained critic (embedding + backbone) before the first step and at the last epoch
        shares = [100 * run_monitor_seconds(r, k) / (r["epochs"] * epoch) for k in args.intervals]
        print(f"| {method} | {r['width']} | {r['params'] / 1e6:.2f} M | {r['step_s']:.3f} ({r['batch']}) | "
              f"{epoch:.0f} | {r['collapse_s']:.2f} | {r['mi_s']:.2f} | {r['critic_s']:.2f} | "
              + " | ".join(f"{s:.2f}%" for s in shares) + " |")
    print(f"\n(precision {r['precision']}, channels-last; default --mi_interval {r['interval']}, "
          f"--mi_batch_size {r['mi_batch']}, {r['epochs']} epochs; share = "
          "(epochs x collapse + MI records x MI + 2 x critic) / (epochs x epoch), the MI records being epoch 0, "
          "every interval-th epoch and the last)")


def demo_table(slugs: list[str], repeats: int) -> None:
    """`mimax demo`'s configurations through the real trainer with the demo's callbacks timed, in this process
    (one thread, as the demo's workers). Process CPU time, not wall time, so that other jobs on the machine
    do not enter the shares: monitors' CPU / CPU of the rest of the run (training steps, evaluation,
    checkpoints: the run without its monitors). Each configuration's first seed carries the trained critic,
    the second stands for the demo's other two seeds (weighted twice in the demo's share). The configurations
    share one demo folder, in the demo's order, so that, as in the demo, an epoch-0 critic estimate already
    fitted for the same initialization is read from the demo's critic cache."""

    from mimax.experiments.gaussian import DEMO_RUNS, build_parser, demo_callbacks, run_flags

    print("## mimax demo configurations (defaults: 50 epochs, 5,000 points, 2,048 monitor pairs); CPU seconds\n")
    print("| configuration | seed | run without monitors | collapse+rank | MI monitor (incl. critic) | "
          "trajectory recorder | monitor share | wall: monitors / training-loop wall |")
    print("|---|---|---|---|---|---|---|---|")
    args = build_parser().parse_args([])
    totals = {"train": 0.0, "mon": 0.0, "traj": 0.0}
    for _ in range(repeats):
        # one demo folder for all configurations: the trained-critic cache is shared as in the demo
        with tempfile.TemporaryDirectory() as demo_dir:
            for run in [r for r in DEMO_RUNS if r.slug in slugs]:
                flags = run_flags(args, run, Path(demo_dir))
                run_out = Path(flags[flags.index("--output_dir") + 1])
                cfg = config_from_args([*flags[:flags.index("--num_runs")], *flags[flags.index("--num_runs") + 2:],
                                        "--num_runs", "1"])
                for seed, weight in ((cfg.seed, 1), (cfg.seed + 1, 2)):  # the first seed carries the critic
                    rd = run_out / f"seed_{seed}"
                    callbacks = [Timed(cb) for cb in demo_callbacks(cfg, rd)]
                    c0 = time.process_time()
                    train_run(cfg, rd, seed, callbacks, progress=False)
                    run_cpu = time.process_time() - c0
                    loop_wall = sum(float(r["epoch_time_s"]) for r in read_csv(rd / "metrics.csv"))
                    col, mi, traj = (c.cpu_seconds for c in callbacks)
                    rest = run_cpu - col - mi - traj
                    totals["train"] += weight * rest
                    totals["mon"] += weight * (col + mi)
                    totals["traj"] += weight * traj
                    wall_mon = callbacks[0].seconds + callbacks[1].seconds
                    print(f"| {run.label} | {seed} | {rest:.2f} | {col:.3f} | {mi:.3f} | {traj:.3f} | "
                          f"{100 * (col + mi) / rest:.1f}% | {100 * wall_mon / loop_wall:.1f}% |", flush=True)
    print(f"\nall (the demo's weighting: 3 seeds per configuration, critic on one): monitors "
          f"{totals['mon']:.1f} s / run without monitors {totals['train']:.1f} s = "
          f"{100 * totals['mon'] / totals['train']:.1f}% CPU; with the trajectory recorder (Figure 3's data) "
          f"{100 * (totals['mon'] + totals['traj']) / totals['train']:.1f}%")
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
