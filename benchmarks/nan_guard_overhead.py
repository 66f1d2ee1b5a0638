"""Per-step cost of the divergence guard (``--on_nan``): a training step with and without
``NonFiniteGuard.observe`` on the Gaussian-mixture MLP (or a ResNet18 on 32 px images with ``--resnet``).

    PYTHONPATH=src python benchmarks/nan_guard_overhead.py [--device cuda] [--resnet] [--steps 200]

Prints milliseconds per step for: no guard, ``stop`` (device-side flag, no host sync) and ``skip`` (one
host sync per step), interleaved in rounds so that machine noise hits all three alike; then the cost of
``observe`` alone (after one backward), which is what the guard adds to a step and is less noise-prone.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine_info

from mimax.config import resolve
from mimax.engine.divergence import NonFiniteGuard
from mimax.methods import build_method


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resnet", action="store_true")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch_size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(machine_info())
    device = torch.device(args.device)
    cfg = resolve({"dataset": "Gaussian", "model_name": "JMI", "batch_size": args.batch_size})
    shape: tuple[int, ...] = (cfg.gm_dim,)
    if args.resnet:
        cfg.architecture, shape = "ResNet18", (3, 32, 32)
    method = build_method(cfg, shape).to(device)
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)
    params = list(method.parameters())
    x_a = torch.randn(args.batch_size, *shape, device=device)
    x_b = x_a + 0.1 * torch.randn_like(x_a)

    def run(mode: str | None) -> float:
        guard = NonFiniteGuard(mode) if mode else None
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for step in range(args.steps):
            if guard is not None:
                guard.before_step(method)
            terms = method.training_loss(x_a, x_b, step)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if guard is None or guard.observe(step, terms, params):
                opt.step()
        if guard is not None and mode == "stop":
            guard.check(args.steps, "none")
        sync()
        return (time.perf_counter() - t0) / args.steps * 1e3

    run(None), run("stop"), run("skip")  # warm-up
    times: dict[str, list[float]] = {"none": [], "stop": [], "skip": []}
    for _ in range(args.rounds):
        for mode in times:
            times[mode].append(run(None if mode == "none" else mode))
    base = min(times["none"])
    for mode, ts in times.items():
        print(f"{mode:>5}: {min(ts):.3f} ms/step (best of {args.rounds}; {100 * (min(ts) / base - 1):+.1f}%)")
    terms = method.training_loss(x_a, x_b, 0)
    terms["loss"].backward()
    for mode in ("stop", "skip"):
        guard = NonFiniteGuard(mode, check_interval=10**9)
        guard.before_step(method)
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for step in range(100):
                guard.before_step(method)
                guard.observe(step, terms, params)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - t0) / 100 * 1e3)
        print(f"{mode:>5}: before_step + observe alone {best:.3f} ms/step "
              f"({100 * best / base:.1f}% of the unguarded step)")


if __name__ == "__main__":
    main()
