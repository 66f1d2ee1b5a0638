"""Precision, memory layout and compilation of the training step (``--precision``, ``--channels_last``,
``--compile``).

- ``auto`` (the default): ``bf16`` where the device computes bf16 natively (a CUDA GPU that supports it;
  an x86 CPU with AVX512-BF16 or AMX; an ARM CPU with the BF16 extension), ``fp32`` otherwise, and always
  ``fp32`` for the MLP of vector data (its matrices are too small for bf16 to pay for the casts). On a CPU
  without native bf16, oneDNN emulates bf16 through fp32 conversions and the step is slower than fp32.
  :func:`choose_precision` is the decision (a pure function of the capability), :func:`native_bf16` the
  probe; the run resolves ``auto`` once at start, records the choice in ``config.json`` and prints it.
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

from mimax.data import DATASET_CHANNELS
from mimax.nets.backbones import convolutions_of_a_single_pixel
from mimax.runtime.device import PRECISION_DTYPES

DTYPES = PRECISION_DTYPES
PRECISIONS = ("auto", *DTYPES)


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and the capability that says so (for the start-up line)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported(including_emulation=False)
        return ok, f"{torch.cuda.get_device_name(device)} {'supports' if ok else 'lacks'} native bf16"
    if device.type != "cpu":
        return False, f"no bf16 autocast policy for {device.type}"
    if torch.backends.cpu.get_cpu_capability().startswith("AVX"):  # x86: oneDNN's bf16 instructions
        probes = (("AVX512-BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))
        found = [name for name, probe in probes if getattr(torch.cpu, probe, lambda: False)()]
        return bool(found), ("CPU has " + " and ".join(found)) if found else "CPU has neither AVX512-BF16 nor AMX"
    ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # ARM: the BF16 extension
    return ok, f"CPU {'has' if ok else 'lacks'} native bf16 ({torch.backends.cpu.get_cpu_capability()})"


def choose_precision(requested: str, device_type: str, architecture: str, has_native_bf16: bool) -> str:
    """The precision to train in: ``requested`` unless it is ``auto``, then ``bf16`` for convolutional
    backbones on a device with native bf16 and ``fp32`` otherwise (never ``fp16``: it needs loss scaling)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    return "bf16" if has_native_bf16 and architecture != "MLP" and device_type in ("cpu", "cuda") else "fp32"


def resolve_precision(requested: str, device: torch.device, architecture: str,
                      single_pixel_convs: list[str] | None = None) -> tuple[str, str]:
    """``(precision, one-line reason)`` for this run; probes the device only for ``auto``. ``single_pixel_convs``:
    the backbone's convolutions that see a 1x1 map (:func:`mimax.nets.backbones.convolutions_of_a_single_pixel`),
    where CPU bf16 gradients are wrong: ``auto`` keeps fp32 on the CPU for such a backbone."""
    if requested != "auto":
        return requested, f"precision: {requested} (--precision {requested})"
    native, why = native_bf16(device)
    chosen = choose_precision(requested, device.type, architecture, native)
    if architecture == "MLP":
        why = "the MLP of vector data trains in fp32"
    elif chosen == "bf16" and device.type == "cpu" and single_pixel_convs:
        chosen, why = "fp32", (f"{architecture} convolves a 1x1 feature map ({single_pixel_convs[0]}"
                               f"{', ...' if len(single_pixel_convs) > 1 else ''}), where torch's CPU bf16 kernels "
                               "give wrong gradients; larger images (--image_size) allow bf16")
    return chosen, f"precision: {chosen} (--precision auto: {why})"


def resolve_run_precision(cfg: Any, device: torch.device) -> tuple[str, str]:
    """:func:`resolve_precision` for a run's config: for ``auto`` on the CPU, its backbone is first checked for
    convolutions of a 1x1 map on the run's image size."""
    convs: list[str] = []
    if cfg.precision == "auto" and device.type == "cpu" and cfg.architecture != "MLP" and cfg.image_size:
        shape = (DATASET_CHANNELS.get(cfg.dataset, 3), cfg.image_size, cfg.image_size)
        convs = convolutions_of_a_single_pixel(cfg.architecture, shape, cfg.mlp_hidden_dim, cfg.resnet_width)
    return resolve_precision(cfg.precision, device, cfg.architecture, convs)


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
