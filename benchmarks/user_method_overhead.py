"""Step time of a user-defined method (``--model_name file.py:Class``) ÷ the same method built in.

The user method is a copy of a built-in method's declaration in a file outside the package (SimCLR:
joint; BYOL: self-distillation with an EMA target and a predictor), loaded through the method registry
as ``--model_name`` loads it. Both are built by the engine's own path (``resolve`` -> ``build_method``,
same seed, so the weights are identical) and trained step by step, alternating built-in and user steps
(A B B A ...), each step = forward, backward, optimizer step and ``after_step``, as the training loop
runs it. Per step we record the wall time and the thread's CPU time (``time.thread_time``, which a busy
machine disturbs far less than the wall clock). Reported: median user step ÷ median built-in step.

    PYTHONPATH=src python benchmarks/user_method_overhead.py --steps 200
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import machine_info

from mimax.config import resolve
from mimax.engine.optim import build_optimizer
from mimax.methods import build_method

COPIES = {
    "SimCLR": '''from mimax import JointMethod
from mimax.objectives import nt_xent_loss
from mimax.paradigms import TemperatureOptions


class UserSimCLR(JointMethod):
    Options = TemperatureOptions

    def objective(self, z_a, z_b):
        return nt_xent_loss(z_a, z_b, self.options.temperature)
''',
    "BYOL": '''from mimax import SelfDistillationMethod
from mimax.methods.byol import BYOLOptions
from mimax.objectives import byol_loss


class UserBYOL(SelfDistillationMethod):
    Options, rule, has_predictor, reduction = BYOLOptions, "ema", True, "sum"

    def objective(self, p, z):
        return byol_loss(p, z)
''',
}


def build(name: str, architecture: str, width: int, shape: tuple[int, ...], batch: int):
    """The method and its optimizers as the engine builds them (config resolved for ``name``; an image
    backbone is set on the encoder spec directly, so no dataset is read)."""
    cfg = resolve({"dataset": "Gaussian", "model_name": name, "batch_size": batch})
    cfg.architecture, cfg.resnet_width = architecture, width
    torch.manual_seed(0)
    method = build_method(cfg, shape)
    optimizers = {n: build_optimizer(cfg.optimizer, g, cfg.initial_lr, cfg.weight_decay, cfg.momentum, cfg.lars_eta)
                  for n, g in method.optimizer_groups().items()}
    return method, optimizers


def step(method, optimizers, x_a, x_b, k: int, total: int) -> tuple[float, float]:
    """One training step as the loop runs it; (wall seconds, thread CPU seconds)."""
    w0, c0 = time.perf_counter(), time.thread_time()
    opt = optimizers[method.active_optimizer(k)]
    loss = method(x_a, x_b, k)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    method.after_step(k, total)
    return time.perf_counter() - w0, time.thread_time() - c0


SETTINGS = {  # name: (architecture, resnet width, input shape, batch, timed steps as a fraction of --steps)
    "Gaussian MLP, batch 256": ("MLP", 64, (16,), 256, 1.0),
    "ResNet-18 width 16, 32 px, batch 32": ("ResNet18", 16, (3, 32, 32), 32, 0.1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per method (MLP; ResNet: a tenth)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_info())
    tmp = Path(tempfile.mkdtemp(prefix="mimax_user_overhead_"))
    for builtin, code in COPIES.items():
        (tmp / f"user_{builtin}.py").write_text(code)
    for setting, (arch, width, shape, batch, fraction) in SETTINGS.items():
        steps = max(4, int(args.steps * fraction))
        for builtin in COPIES:
            user = f"{tmp / f'user_{builtin}.py'}:User{builtin}"
            names = {"builtin": builtin, "user": user}
            runs = {kind: build(name, arch, width, shape, batch) for kind, name in names.items()}
            gen = torch.Generator().manual_seed(0)
            times = {kind: ([], []) for kind in runs}
            total = steps + 5
            for k in range(total):
                x = torch.randn(batch, *shape, generator=gen)
                x_a, x_b = x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)
                for kind in (("builtin", "user") if k % 2 == 0 else ("user", "builtin")):
                    wall, cpu = step(*runs[kind], x_a, x_b, k, total)
                    if k >= 5:  # warm-up steps are not counted
                        times[kind][0].append(wall)
                        times[kind][1].append(cpu)
            wall = {kind: statistics.median(w) for kind, (w, _) in times.items()}
            cpu = {kind: statistics.median(c) for kind, (_, c) in times.items()}
            print(f"{setting}, {builtin}: built-in {1e3 * wall['builtin']:.2f} ms wall / {1e3 * cpu['builtin']:.2f} ms "
                  f"CPU, user {1e3 * wall['user']:.2f} / {1e3 * cpu['user']:.2f} ms; user / built-in: wall "
                  f"{wall['user'] / wall['builtin']:.3f}, CPU {cpu['user'] / cpu['builtin']:.3f} "
                  f"(medians of {steps} interleaved steps)")
    print(f"finished {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main()
