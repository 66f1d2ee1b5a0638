"""Training speed of the candidate Fashion-MNIST CPU protocols (scripts/README.md): backbone width 16 vs 32,
image size 28 vs 32, batch 128 vs 256, each a full training step of the method (both views, bf16 autocast where
the CPU computes bf16 natively, channels-last, LARS), candidates interleaved round by round in one process so
that a busy machine slows each of them alike. Besides the wall time it prints the process CPU time per step:
on a shared machine the wall time is inflated by the other jobs, while CPU time / threads estimates the
step's wall time when the process has the cores to itself (optimistic by the threads' idle time).

    python benchmarks/fashion_protocol.py --threads 2 --rounds 3 --steps 2
    python benchmarks/fashion_protocol.py --methods SimCLR,BYOL --candidates 16x28x256
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import known, machine_info

DEFAULT_CANDIDATES = "16x28x256,16x28x128,32x28x256,16x32x256,32x32x256"
TRAIN_IMAGES = 60_000  # the Fashion-MNIST training split


def step_fn(method_name: str, width: int, size: int, batch: int):
    """One training step of ``method_name`` with the FashionMNIST preset at (width, image size, batch)."""
    from mimax.config import resolve
    from mimax.engine.optim import build_optimizer
    from mimax.engine.precision import StepPrecision, prepare_model, resolve_precision, to_layout
    from mimax.methods import METHODS, build_method

    # Digits resolves without data on disk; the method's Fashion-MNIST recipe is put on top
    preset = METHODS[method_name].Options.presets("FashionMNIST")
    cfg = resolve({"model_name": method_name, "dataset": "Digits", **preset, "resnet_width": width,
                   "image_size": size, "batch_size": batch})
    torch.manual_seed(0)
    method = build_method(cfg, (1, size, size))
    prepare_model(method, True, compile_backbones=False)
    opts = {k: build_optimizer(cfg.optimizer, g, cfg.initial_lr, cfg.weight_decay, cfg.momentum, cfg.lars_eta)
            for k, g in method.optimizer_groups().items()}
    precision = resolve_precision("auto", torch.device("cpu"), "ResNet18")[0]
    prec = StepPrecision(precision, torch.device("cpu"))
    x_a, x_b = (to_layout(torch.randn(batch, 1, size, size), True) for _ in range(2))
    state = {"step": 0}

    def step():
        k = state["step"]
        opt = opts[method.active_optimizer(k)]
        with prec.autocast():
            loss = method(x_a, x_b, k)["loss"]
        opt.zero_grad(set_to_none=True)
        prec.backward(loss)
        prec.step(opt)
        method.after_step(k, 1000)
        state["step"] = k + 1

    return step, precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per candidate per round")
    parser.add_argument("--methods", default="SimCLR", help="comma-separated methods (default: SimCLR)")
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES, help="WIDTHxSIZExBATCH, comma-separated "
                        f"(default: {DEFAULT_CANDIDATES})")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_info())
    from mimax.methods import METHODS

    candidates = []
    for c in args.candidates.split(","):
        parts = c.split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            parser.error(f"--candidates: expected WIDTHxSIZExBATCH of positive integers (4x16x8), got {c!r}")
        candidates.append(tuple(map(int, parts)))
    methods = known(parser, "--methods", args.methods.split(","), METHODS)
    settings = [(m, *c) for m in methods for c in candidates]
    steps = {}
    for s in settings:
        steps[s], precision = step_fn(*s)
    print(f"precision: {precision} (--precision auto), channels-last, {args.threads} threads")
    for step in steps.values():  # warm-up: oneDNN primitive creation
        step(), step()
    wall: dict[tuple, list[float]] = {s: [] for s in settings}
    cpu: dict[tuple, list[float]] = {s: [] for s in settings}
    for _ in range(args.rounds):
        for s, step in steps.items():
            for _ in range(args.steps):
                w0, c0 = time.perf_counter(), time.process_time()
                step()
                wall[s].append(time.perf_counter() - w0)
                cpu[s].append(time.process_time() - c0)
    print(f"\nmedian of {args.rounds}x{args.steps} interleaved steps; img/s = training images (2 views each) per "
          f"second; 'quiet' = batch / (CPU time / {args.threads} threads); epoch = {TRAIN_IMAGES} images")
    print(f"{'method':<8} {'width':>5} {'size':>4} {'batch':>5} {'wall s/step':>11} {'img/s':>6} "
          f"{'CPU s/step':>10} {'quiet img/s':>11} {'quiet s/epoch':>13}")
    for (m, width, size, batch) in settings:
        w, c = statistics.median(wall[(m, width, size, batch)]), statistics.median(cpu[(m, width, size, batch)])
        quiet = batch / (c / args.threads)
        print(f"{m:<8} {width:>5} {size:>4} {batch:>5} {w:>11.3f} {batch / w:>6.0f} {c:>10.3f} {quiet:>11.0f} "
              f"{TRAIN_IMAGES / quiet:>13.0f}")
    import os
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
