"""What ``--precision auto`` chooses on this machine, and the training-step time of fp32 vs bf16 that
justifies it: the Fashion-MNIST CPU protocol's step (SimCLR, CIFAR-stem ResNet-18 of base width 16 on
1x28x28, batch 128 per view, LARS as in scripts/FashionMNIST), the precisions interleaved round by round in
one process so that a busy machine slows each of them alike.

    python benchmarks/precision_auto.py --threads 2 --rounds 5 --steps 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine_info


def step_fn(precision: str, channels_last: bool, width: int, batch: int):
    from mimax.config import resolve
    from mimax.engine.optim import build_optimizer
    from mimax.engine.precision import StepPrecision, prepare_model, to_layout
    from mimax.methods import build_method

    cfg = resolve({"model_name": "SimCLR", "dataset": "Digits", "resnet_width": width, "feature_dim": 512,
                   "projection_dim": 128, "projection_layer": 2, "optimizer": "lars", "initial_lr": 0.2,
                   "temperature": 0.2, "batch_size": batch})
    torch.manual_seed(0)
    method = build_method(cfg, (1, 28, 28))
    prepare_model(method, channels_last, compile_backbones=False)
    opts = {k: build_optimizer("lars", g, 0.2, 1e-4, 0.9, 0.02) for k, g in method.optimizer_groups().items()}
    prec = StepPrecision(precision, torch.device("cpu"))
    x_a, x_b = (to_layout(torch.randn(batch, 1, 28, 28), channels_last) for _ in range(2))

    def step():
        opt = opts[method.active_optimizer(0)]
        with prec.autocast():
            loss = method(x_a, x_b, 0)["loss"]
        opt.zero_grad(set_to_none=True)
        prec.backward(loss)
        prec.step(opt)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per setting per round")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from mimax.engine.precision import native_bf16, resolve_precision

    print(machine_info())
    print(f"native bf16: {native_bf16(torch.device('cpu'))}")
    print(resolve_precision("auto", torch.device("cpu"), "ResNet18")[1])
    settings = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16 + channels_last": ("bf16", True)}
    steps = {name: step_fn(p, cl, args.width, args.batch) for name, (p, cl) in settings.items()}
    for step in steps.values():  # warm-up: oneDNN primitive creation
        step(), step()
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, step in steps.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["fp32"])
    print(f"\nSimCLR step, width-{args.width} ResNet-18, batch {args.batch} per view on 1x28x28, "
          f"{args.threads} threads, median of {args.rounds}x{args.steps} interleaved steps:")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"  {name:<22} {med * 1000:8.1f} ms/step  {args.batch / med:7.0f} images/s  "
              f"fp32 / this = {base / med:.2f}")


if __name__ == "__main__":
    main()
