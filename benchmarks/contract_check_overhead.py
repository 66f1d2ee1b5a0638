"""What checking every objective's return costs (``mimax.paradigms.base.check_loss_terms``: a dict of 0-d
tensors with a ``"loss"``): training steps of JMI and SDMI on the Gaussian preset's MLP (batch 256), with
the check and with it replaced by a no-op, alternated in one process; medians of the per-round step times.

    python benchmarks/contract_check_overhead.py [--rounds 30 --steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine_info

import mimax.paradigms.base as base
from mimax.config import resolve
from mimax.methods import build_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=20, help="steps per setting per round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_info())
    check = base.check_loss_terms
    for name in ("JMI", "SDMI"):
        torch.manual_seed(0)
        method = build_method(resolve({"model_name": name, "dataset": "Gaussian"}), (16,))
        x_a, x_b = torch.randn(256, 16), torch.randn(256, 16)

        def step(i: int, method=method, x_a=x_a, x_b=x_b) -> None:
            method.zero_grad(set_to_none=True)
            method.training_loss(x_a, x_b, i)["loss"].backward()

        for i in range(10):
            step(i)
        times: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(args.rounds):
            for setting in times:
                base.check_loss_terms = check if setting == "with" else (lambda *a, **k: None)
                t0 = time.perf_counter()
                for i in range(args.steps):
                    step(i)
                times[setting].append((time.perf_counter() - t0) / args.steps)
        base.check_loss_terms = check
        on, off = statistics.median(times["with"]), statistics.median(times["without"])
        print(f"{name}: step {off * 1e3:.3f} ms without the check, {on * 1e3:.3f} ms with it; with / without = "
              f"{on / off:.4f}")


if __name__ == "__main__":
    main()
