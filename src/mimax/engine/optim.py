"""Optimizers (SGD, LARS, Adam/AdamW) and the per-step warmup + cosine learning-rate schedule.

Each parameter group remembers its ``base_lr``; the engine sets ``lr = base_lr * lr_factor(step)`` before
every step (groups marked ``fixed_lr``, e.g. SimSiam's predictor, keep ``base_lr``). The schedule is a
pure function of the global step, so resuming needs only the step number.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base LR at 0-based ``step``: linear warmup ``(step + 1) / W`` for the first W
    steps, then cosine decay ``0.5 (1 + cos(pi (step - W) / (T - W)))`` down to 0 at step T."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class LARS(torch.optim.Optimizer):
    """LARS (You, Gitman & Ginsburg, 2017, "Large Batch Training of Convolutional Networks") with momentum.

    For a group not marked ``exclude_from_lars``:
    ``g <- grad + wd * w``;  ``trust = eta * ||w|| / ||g||`` (1 if either norm is 0);
    ``buf <- momentum * buf + trust * g``;  ``w <- w - lr * buf``.
    Groups marked ``exclude_from_lars`` (biases and normalization parameters) get neither weight decay
    nor the trust ratio: plain momentum SGD, as in SimCLR and BYOL.
    """

    def __init__(self, params: Any, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        if lr <= 0 or eta <= 0:
            raise ValueError(f"LARS needs lr > 0 and eta > 0, got lr={lr}, eta={eta}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      exclude_from_lars=False))

    @torch.no_grad()
    def step(self, closure: Any = None) -> Tensor | None:
        """One step over each group's parameters at once (``torch._foreach_*``: a handful of kernels
        per group rather than several per parameter, and no host synchronization)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if not group["exclude_from_lars"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
                w_norm = torch.stack(torch._foreach_norm(params))
                g_norm = torch.stack(torch._foreach_norm(grads))
                trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                    torch.ones_like(w_norm))
                torch._foreach_mul_(grads, list(trust.unbind()))
            fresh = [i for i, p in enumerate(params) if "momentum_buffer" not in self.state[p]]
            for i in fresh:
                self.state[params[i]]["momentum_buffer"] = grads[i].clone()
            fresh_set = set(fresh)
            old = [i for i in range(len(params)) if i not in fresh_set]
            if old:
                bufs = [self.state[params[i]]["momentum_buffer"] for i in old]
                torch._foreach_mul_(bufs, group["momentum"])
                torch._foreach_add_(bufs, [grads[i] for i in old])
            torch._foreach_add_(params, [self.state[p]["momentum_buffer"] for p in params], alpha=-group["lr"])
        return loss


def build_optimizer(name: str, groups: list[dict[str, Any]], lr: float, weight_decay: float,
                    momentum: float, lars_eta: float = 0.02) -> torch.optim.Optimizer:
    """An optimizer over ``groups``; each group's ``base_lr`` is ``lr`` (times its ``lr_scale``)."""
    prepared = []
    for g in groups:
        g = dict(g)
        g["base_lr"] = lr * g.pop("lr_scale", 1.0)
        g.setdefault("fixed_lr", False)
        g["lr"] = g["base_lr"]
        if name != "lars":
            g.pop("exclude_from_lars", None)
        prepared.append(g)
    fused = {"fused": True} if fused_kernels_apply(prepared) else {}
    if name == "sgd":
        return torch.optim.SGD(prepared, lr=lr, momentum=momentum, weight_decay=weight_decay, **fused)
    if name == "lars":
        return LARS(prepared, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=lars_eta)
    if name == "adam":
        return torch.optim.Adam(prepared, lr=lr, weight_decay=weight_decay, **fused)
    if name == "adamw":
        return torch.optim.AdamW(prepared, lr=lr, weight_decay=weight_decay, **fused)
    raise ValueError(f"unknown optimizer {name!r}")


def fused_kernels_apply(groups: list[dict[str, Any]]) -> bool:
    """Whether torch's fused SGD/Adam/AdamW kernels can update every parameter of ``groups``: dense,
    contiguous floating-point tensors on one device type that has them (CPU and CUDA among others).

    Contiguous: torch's fused CPU kernels assume a gradient laid out like its parameter, and a
    channels-last parameter (``--channels_last``) can receive a standard-layout gradient; the fused Adam
    and SGD then update the wrong elements (measured: a 0.97 difference after 5 Adam steps) and in a
    training run corrupted the heap ("corrupted double-linked list"). Such runs keep the per-parameter
    kernels.

    The fused kernel updates a whole parameter in one vectorized pass instead of torch's default
    (on the CPU) of about ten elementwise kernels per parameter, each a separate dispatch. On the
    Gaussian MLPs of ``mimax demo`` an Adam step took 0.60 ms single-tensor, 0.43 ms ``foreach`` and 0.16 ms
    fused (docs/performance.md). Same update rule; the rounding differs from the per-parameter kernels
    in the last bit (a checkpoint remembers whether its run was fused, so a resumed run keeps its kernels)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices  # the list torch's optimizers check

    params = [p for g in groups for p in g["params"]]
    return bool(params) and len({p.device.type for p in params}) == 1 and all(
        p.device.type in _get_fused_kernels_supported_devices() and torch.is_floating_point(p) and not p.is_sparse
        and p.is_contiguous() for p in params)


def set_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Apply the schedule factor to every non-fixed group; return the first group's LR (for logging)."""
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] if g["fixed_lr"] else g["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]
