"""Precision, memory layout and compilation of the training step (``--precision``, ``--channels_last``,
``--compile``).

- ``bf16`` / ``fp16``: the networks run under ``torch.autocast``; every objective casts its inputs to fp32
  (``mimax.objectives``), so losses, bounds and their log-sum-exps are fp32 whatever the precision.
  ``fp16`` scales the loss with a GradScaler (CUDA only; refused on the CPU by config validation).
- ``channels_last``: models and 4-D batches in NHWC, the layout oneDNN and cuDNN convolutions prefer.
- ``compile``: ``torch.compile`` on each encoder's backbone (the bulk of the compute); heads and the
  objective stay eager, so a method's Python control flow (alternation, EMA) never causes recompiles.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class StepPrecision:
    """Autocast context, (scaled) backward and optimizer step for one ``--precision``."""

    def __init__(self, precision: str, device: torch.device):
        self.dtype = DTYPES[precision]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)  # skips the step if the scaled gradients overflowed
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def to_layout(x: Tensor, channels_last: bool) -> Tensor:
    """A 4-D image batch in channels-last (NHWC) memory layout when asked; anything else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def prepare_model(method: nn.Module, channels_last: bool, compile_backbones: bool) -> None:
    """Apply ``--channels_last`` (to the whole method) and ``--compile`` (to every encoder's backbone), in place."""
    if channels_last:
        method.to(memory_format=torch.channels_last)
    if compile_backbones:
        seen: set[int] = set()
        for encoder in method.encoders().values():
            if id(encoder.backbone) not in seen:
                seen.add(id(encoder.backbone))
                encoder.backbone.compile()
