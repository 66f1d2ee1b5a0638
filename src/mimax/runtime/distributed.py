"""torch.distributed for mimax: process-group setup from ``torchrun``'s environment, rank helpers, the
autograd-aware gather that gives every objective the global batch, and DDP/SyncBatchNorm wrapping.

Launch (one node, 4 processes; for many nodes add
``--nnodes N --rdzv_backend c10d --rdzv_id JOB --rdzv_endpoint HOST:PORT`` on each node)::

    torchrun --nproc_per_node 4 main.py --model_name SimCLR ...

Semantics (docs/performance.md, "Distributed training"):

- ``--batch_size`` is the GLOBAL batch: each of the W processes trains on ``batch_size / W`` inputs per
  step, and the objective sees all ``batch_size`` pairs (:func:`gather_batch`). A W-process run is the same
  experiment as a 1-process run; ``--initial_lr`` is the LR of that global batch and is never rescaled
  behind the user's back (scale it yourself, e.g. linearly with the batch, when you change ``--batch_size``).
- Gradients: every rank computes the same global loss L. The gather's backward sums the incoming
  gradients over ranks (reduce-scatter), so rank r holds ``W dL/dz_r``; DDP then averages parameter
  gradients over the W ranks, which leaves exactly ``dL/dtheta`` of the single-process run.
- BatchNorm normalizes each rank's share of the batch unless ``--sync_bn`` (torch's SyncBatchNorm, GPU
  only) is given.
- Rank 0 alone writes files, logs, evaluates and prints; the other ranks wait at barriers.
"""

from __future__ import annotations

import datetime
import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
from torch import Tensor, nn

from mimax.errors import ConfigError
from mimax.runtime.device import resolve_device

# Imported here, before any process group exists, on purpose: its functions take ``group=group.WORLD`` as a
# default argument, evaluated when the module is first imported. Imported after init_process_group (as
# DistributedDataParallel's constructor does lazily), the default pins the world process group for the life of
# the process: destroy_process_group then leaves gloo's worker threads running, and a worker that frees its last
# collective's tensors while the interpreter finalizes aborts the process ("terminate called without an active
# exception", SIGABRT, in about 1 of 40 two-process CPU runs here; tests/runtime/test_distributed.py).
# torch 2.x marks torch.distributed.nn.functional.all_gather deprecated in favour of a private
# (underscore) module; the public function is still the documented autograd-aware gather.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
                        category=FutureWarning)


def launched_world_size() -> int:
    """The number of processes ``torchrun`` started (``WORLD_SIZE``; 1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``; 0 when not launched by ``torchrun``)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. the experiment directory rank 0 created)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in one process); also a barrier."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def init_from_env(device_name: str) -> torch.device:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR/PORT``) and return this process's device: ``cuda:LOCAL_RANK`` with NCCL when CUDA is
    used, the CPU with gloo otherwise. A no-op returning the resolved device when not launched by
    torchrun or already initialized."""
    device = resolve_device(device_name)
    if launched_world_size() <= 1 or is_distributed():
        if is_distributed() and device.type == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ConfigError("--device", f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) "
                                          "visible; lower --nproc_per_node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError("--device", f"distributed training supports cpu (gloo) and cuda (nccl), not {device}")
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return device


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def gather_batch(x: Tensor) -> Tensor:
    """Concatenate every rank's ``x`` along dim 0 (rank order), keeping gradients.

    ``torch.distributed.nn.functional.all_gather`` is autograd-aware: its backward reduce-scatters
    (sums over ranks) the gradient of the gathered tensor, so this rank's slice receives the gradient
    every rank's loss sends it. A raw ``dist.all_gather`` would cut the graph: negatives from other
    ranks would carry no gradient back. Identity in a single process.
    """
    if not is_distributed() or world_size() == 1:
        return x
    return _ContiguousGrad.apply(torch.cat(dist_functional.all_gather(x, group=dist.group.WORLD), dim=0))


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient.

    Why: the backward of ``torch.distributed.nn.functional.all_gather`` passes the gradient's slices to the
    collective as they come, and a gradient in another memory layout (a column-major one, as
    :func:`mimax.bounds.pair_products` produces on purpose) then came back wrong from gloo's all-to-all:
    the 2-process SDMI gradients were off by up to 100% (tests/runtime/test_distributed.py). Gloo collectives
    given non-contiguous tensors return wrong results silently (pytorch/pytorch#192920, open)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``--sync_bn``: BatchNorm layers become torch's SyncBatchNorm (statistics over the global batch).

    Must run before optimizers are built; the converted layers keep the same Parameter objects.
    torch's SyncBatchNorm only runs on GPUs, so a CPU multi-process run is refused.
    """
    if world_size() == 1:
        return module
    if device.type != "cuda":
        raise ConfigError("--sync_bn", "torch's SyncBatchNorm needs CUDA devices; on CPU ranks each rank's "
                                       "BatchNorm normalizes its own share of the batch (drop --sync_bn)")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def wrap_ddp(method: nn.Module, device: torch.device, optimizer_params: list[list[nn.Parameter]]) -> nn.Module:
    """Wrap the whole method in DistributedDataParallel; the engine then calls ``model(x_a, x_b, step)``,
    i.e. ``Method.forward`` = ``training_loss``, so DDP sees every parameter the step uses, whatever the
    method's module layout (one encoder, online + target, predictor), without knowing the method.

    ``optimizer_params`` lists each optimizer's parameters. With one optimizer that owns every trainable
    parameter, each step uses all of them and DDP takes its cheap static path. Otherwise (SDMI's
    alternating theta-/xi-steps, or a trainable module outside the optimizers) some parameters get no
    gradient in a step, so DDP must look for unused parameters (``find_unused_parameters=True``).
    Identity in a single process.
    """
    if world_size() == 1:
        return method
    from torch.nn.parallel import DistributedDataParallel

    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    first = {id(p) for p in optimizer_params[0]} if optimizer_params else set()
    find_unused = len(optimizer_params) != 1 or first != trainable
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(method, device_ids=ids, find_unused_parameters=find_unused)
