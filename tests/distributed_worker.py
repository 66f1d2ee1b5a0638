"""Loss and gradients of every registered method on one fixed global batch, in 1 process or under torchrun.

``python tests/distributed_worker.py OUT.pt`` computes them on the whole batch in one process;
``torchrun --nproc_per_node 2 tests/distributed_worker.py OUT.pt`` gives each rank its half of the batch
and runs the engine's DDP wrapper, so the objective must gather the global batch to match. Rank 0 (or the
single process) saves ``{method: {step: {"loss": tensor, "<param name>": grad}}}``. Used by
tests/runtime/test_distributed.py; not a test itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mimax.config import resolve  # noqa: E402
from mimax.methods import METHODS, build_method  # noqa: E402
from mimax.runtime import distributed  # noqa: E402

GLOBAL_BATCH, DIM, STEPS = 16, 8, (0, 1)  # steps 0 and 1: both sides of an alternating method


def method_config(name: str):
    return resolve({"model_name": name, "dataset": "Gaussian", "gm_dim": DIM, "batch_size": GLOBAL_BATCH,
                    "gm_train_size": 64, "mlp_hidden_dim": 16, "feature_dim": 16, "device": "cpu"})


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(GLOBAL_BATCH, DIM, generator=gen)
    return x + 0.3 * torch.randn(x.shape, generator=gen), x + 0.3 * torch.randn(x.shape, generator=gen)


def losses_and_grads(name: str) -> dict[int, dict[str, torch.Tensor]]:
    """BatchNorm in eval mode (running statistics): without SyncBatchNorm, which torch runs only on GPUs,
    train-mode BN would normalize each rank's half, a different function from the 1-process run."""
    cfg = method_config(name)
    torch.manual_seed(0)
    method = build_method(cfg, (DIM,)).eval()
    groups = [[p for g in groups for p in g["params"]] for groups in method.optimizer_groups().values()]
    model = distributed.wrap_ddp(method, torch.device("cpu"), groups)
    rank, world = distributed.rank(), distributed.world_size()
    lo, hi = rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world
    x_a, x_b = global_batch()
    out = {}
    for step in STEPS:
        method.zero_grad(set_to_none=True)
        loss = model(x_a[lo:hi], x_b[lo:hi], step)["loss"]
        loss.backward()
        out[step] = {"loss": loss.detach().clone(),
                     **{n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}}
    return out


def live_threads() -> list[str]:
    """This process's threads by name (Linux): gloo's are ``gloo_tcp_loop`` and ``pt_gloo_runloop``."""
    tasks = Path("/proc/self/task")
    return sorted((task / "comm").read_text().strip() for task in tasks.iterdir()) if tasks.is_dir() else []


def main(out: str) -> None:
    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    rank = distributed.rank()
    try:
        results = {name: losses_and_grads(name) for name in sorted(METHODS)}
        if distributed.is_main():
            torch.save(results, out)
    finally:
        distributed.shutdown()
    # What is left of the process group once shut down (DDP and the gather used it): nothing may outlive it
    Path(f"{out}.rank{rank}.threads").write_text("\n".join(live_threads()))


if __name__ == "__main__":
    main(sys.argv[1])
